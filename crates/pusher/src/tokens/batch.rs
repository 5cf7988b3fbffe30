//! The batching task: everything noted is written in one `_bulk_docs` at most every
//! [`BATCH_EVERY`]; a batch that fails for a transient reason is retried with backoff,
//! the entries that exist already (409) are read together and written again together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pusher_core::outcome::retry_delay;
use pusher_io::couch::BulkItem;
use serde_json::{Value, json};

use super::{BATCH_EVERY, MAX_BULK, Shared, TOKENS_DB, Want, lock};

/// The batching task: writes what was noted, one `_bulk_docs` at a time, at most one
/// every [`BATCH_EVERY`]; retries a batch that failed for a transient reason.
pub(super) async fn batcher(shared: Arc<Shared>) {
    let mut failures = 0u32;
    loop {
        let notified = shared.wake.notified();
        let batch: Vec<(String, Want)> = {
            let mut q = lock(&shared.queue);
            let ids: Vec<String> = q.pending.keys().take(MAX_BULK).cloned().collect();
            ids.into_iter()
                .filter_map(|id| {
                    let want = q.pending.remove(&id)?;
                    q.in_flight.insert(id.clone());
                    Some((id, want))
                })
                .collect()
        };
        if batch.is_empty() {
            notified.await;
            continue;
        }
        let started = tokio::time::Instant::now();
        let result = write_batch(&shared, &batch).await;
        {
            let mut q = lock(&shared.queue);
            for (id, want) in batch {
                q.in_flight.remove(&id);
                if result.is_err() {
                    // Retried, unless a newer registration of the token replaced it.
                    q.pending.entry(id).or_insert(want);
                }
            }
        }
        shared.settled.send_modify(|n| *n = n.wrapping_add(1));
        let pause = match result {
            Ok(()) => {
                failures = 0;
                BATCH_EVERY.saturating_sub(started.elapsed())
            }
            Err(e) => {
                failures += 1;
                let delay = retry_delay(
                    failures,
                    None,
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                    rand::random(),
                );
                tracing::warn!(error.message = %e, attempt = failures, retry_in_ms = delay.as_millis() as u64,
                    "cannot write the token index; will retry");
                delay
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Writes one batch; `Err` only when the whole batch failed for a transient reason
/// (it is retried). Entries CouchDB refuses are logged and forgotten, so the next
/// registration of their token writes them again.
async fn write_batch(
    shared: &Shared,
    batch: &[(String, Want)],
) -> Result<(), pusher_io::couch::Error> {
    let docs: Vec<Value> = {
        let known = lock(&shared.known);
        batch
            .iter()
            .map(|(id, w)| {
                let mut doc = json!({"_id": id, "account_db": w.account_db,
                    "device_id": w.device_id, "registered_at_ms": w.at_ms});
                if let Some(rev) = known.get(id).and_then(|s| s.rev.clone()) {
                    doc["_rev"] = json!(rev);
                }
                doc
            })
            .collect()
    };
    let items = match shared.couch.bulk_docs(TOKENS_DB, &docs).await {
        Ok(items) => items,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            tracing::warn!(error.message = %e, entries = batch.len(), "token index batch refused; not indexed");
            let mut known = lock(&shared.known);
            for (id, _) in batch {
                known.remove(id);
            }
            return Ok(());
        }
    };
    let wants: HashMap<&str, &Want> = batch.iter().map(|(id, w)| (id.as_str(), w)).collect();
    let mut existing: Vec<(String, &Want)> = Vec::new();
    for item in items {
        match item {
            BulkItem::Written { id, rev } => set_rev(shared, &id, Some(rev)),
            // Indexed before (by another instance, or before a restart).
            BulkItem::Conflict { id } => {
                if let Some(want) = wants.get(id.as_str()) {
                    existing.push((id, want));
                }
            }
            BulkItem::Failed { id, error } => {
                tracing::warn!(error.message = %error, "token index entry refused; not indexed");
                lock(&shared.known).remove(&id);
            }
        }
    }
    if !existing.is_empty() {
        write_existing(shared, &existing).await;
    }
    Ok(())
}

/// Writes index entries that exist already: all read in one request, and those that do
/// not already say this (or a later registration) written in one `_bulk_docs`. After a
/// restart every token is such an entry: two requests per batch, not two per token.
async fn write_existing(shared: &Shared, entries: &[(String, &Want)]) {
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    let forget = |e: &dyn std::fmt::Display| {
        tracing::warn!(error.message = %e, entries = ids.len(), "cannot index these push tokens; indexed on their next registration");
        let mut known = lock(&shared.known);
        for id in &ids {
            known.remove(id);
        }
    };
    let stored = match shared.couch.get_docs(TOKENS_DB, &ids).await {
        Ok(docs) => docs,
        Err(e) => return forget(&e),
    };
    let mut docs = Vec::new();
    for ((id, want), stored) in entries.iter().zip(stored) {
        let mut doc = stored.clone().unwrap_or_else(|| json!({"_id": id}));
        if stored.is_some()
            && doc["account_db"] == want.account_db.as_str()
            && doc["device_id"] == want.device_id.as_str()
            && doc["registered_at_ms"]
                .as_u64()
                .is_some_and(|t| t >= want.at_ms)
        {
            set_rev(shared, id, doc["_rev"].as_str().map(str::to_string));
            continue;
        }
        doc["account_db"] = json!(want.account_db);
        doc["device_id"] = json!(want.device_id);
        doc["registered_at_ms"] = json!(want.at_ms);
        docs.push(doc);
    }
    if docs.is_empty() {
        return;
    }
    let items = match shared.couch.bulk_docs(TOKENS_DB, &docs).await {
        Ok(items) => items,
        Err(e) => return forget(&e),
    };
    for item in items {
        match item {
            BulkItem::Written { id, rev } => set_rev(shared, &id, Some(rev)),
            // Another instance wrote it meanwhile: its entry is as recent.
            BulkItem::Conflict { id } => set_rev(shared, &id, None),
            BulkItem::Failed { id, error } => {
                tracing::warn!(error.message = %error, "cannot index the push token");
                lock(&shared.known).remove(&id);
            }
        }
    }
}

/// Remembers the revision of index entry `id` this process wrote (`None`: unknown).
fn set_rev(shared: &Shared, id: &str, rev: Option<String>) {
    if let Some(seen) = lock(&shared.known).get_mut(id) {
        seen.rev = rev;
    }
}

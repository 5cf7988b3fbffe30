//! Token → device index, for dead-token clean-up.
//!
//! A `push_req` from Kamailio names a token but not the device that holds it, so the
//! service keeps its own small CouchDB database, `pusher_tokens`: one doc per
//! (provider, app, token) with the account database and device id, written when a
//! `reg_success` stores or confirms a `push` object. When a provider reports the token
//! dead and the app has `remove_invalid_tokens` on, the device's `push` object is removed —
//! only if it still holds that very token, and (APNs 410) only if the device has not
//! registered again after the moment Apple says the token became invalid.

use std::collections::HashSet;
use std::sync::Mutex;

use pusher_core::push_req::{PushReq, TokenType};
use pusher_io::couch::{CouchClient, UpdateOutcome};
use serde_json::{Map, Value, json};

/// Database of the token index (ours, not Kazoo's).
pub const TOKENS_DB: &str = "pusher_tokens";
/// Bound of the in-memory "already indexed" set.
const KNOWN_MAX: usize = 100_000;

/// The token index.
#[derive(Debug)]
pub struct TokenIndex {
    couch: CouchClient,
    known: Mutex<HashSet<String>>,
}

/// Doc id of a token: `<provider>:<app>:<token>` (firebase and firebase_v1 share one).
pub fn doc_id(token_type: &str, app: &str, token: &str) -> Option<String> {
    let provider = match TokenType::parse(token_type).ok()? {
        TokenType::Apple => "apple",
        TokenType::Firebase | TokenType::FirebaseV1 => "firebase",
    };
    Some(format!("{provider}:{app}:{token}"))
}

impl TokenIndex {
    /// An index stored through `couch`.
    pub fn new(couch: CouchClient) -> Self {
        Self {
            couch,
            known: Mutex::new(HashSet::new()),
        }
    }

    /// Creates the database if needed (best effort; logged).
    pub async fn ensure_db(&self) {
        if let Err(e) = self.couch.create_db(TOKENS_DB).await {
            tracing::warn!(error.message = %e, "cannot create the pusher_tokens database; dead-token clean-up will not find devices");
        }
    }

    /// Records that `push` (a device's push object) belongs to `device_id` in
    /// `account_db`. Skips the write when this process already recorded it.
    pub async fn record(&self, push: &Map<String, Value>, account_db: &str, device_id: &str) {
        let field = |k: &str| push.get(k).and_then(Value::as_str).unwrap_or_default();
        let Some(id) = doc_id(field("Token-Type"), field("Token-App"), field("Token-ID")) else {
            return;
        };
        let memo = format!("{id}\u{0}{account_db}\u{0}{device_id}");
        if self
            .known
            .lock()
            .map(|k| k.contains(&memo))
            .unwrap_or(false)
        {
            return;
        }
        let want = json!({"account_db": account_db, "device_id": device_id});
        let result = async {
            // Most tokens are new: try to create the entry first (one request); only an
            // existing entry needs the read-compare-write below.
            let fresh = json!({"_id": id, "account_db": account_db, "device_id": device_id,
                "registered_at_ms": crate::clock::unix_ms()});
            match self.couch.put_doc(TOKENS_DB, &fresh).await {
                Ok(_) => return Ok(()),
                Err(pusher_io::couch::Error::Conflict) => {}
                Err(e) => return Err(e),
            }
            let existing = self.couch.get_doc(TOKENS_DB, &id).await?;
            let mut doc = existing.clone().unwrap_or_else(|| json!({"_id": id}));
            if existing.is_some()
                && doc["account_db"] == want["account_db"]
                && doc["device_id"] == want["device_id"]
            {
                return Ok(());
            }
            doc["account_db"] = want["account_db"].clone();
            doc["device_id"] = want["device_id"].clone();
            doc["registered_at_ms"] = json!(crate::clock::unix_ms());
            self.couch.put_doc(TOKENS_DB, &doc).await.map(|_| ())
        }
        .await;
        match result {
            Ok(()) => {
                if let Ok(mut k) = self.known.lock() {
                    if k.len() >= KNOWN_MAX {
                        k.clear();
                    }
                    k.insert(memo);
                }
            }
            // A conflict means another instance indexed it at the same time: fine.
            Err(pusher_io::couch::Error::Conflict) => {}
            Err(e) => tracing::warn!(error.message = %e, device_id, "cannot index the push token"),
        }
    }

    /// Removes the `push` object of the device holding `req`'s dead token. Returns
    /// whether a device doc was changed.
    pub async fn remove_dead(&self, req: &PushReq, invalid_since_ms: Option<u64>) -> bool {
        let Some(id) = doc_id(req.token_type.as_str(), &req.token_app, &req.token_id) else {
            return false;
        };
        let entry = match self.couch.get_doc(TOKENS_DB, &id).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                tracing::info!(
                    "dead token not in the token index (registered before this service ran?); device left as is"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot read the token index; device left as is");
                return false;
            }
        };
        let registered = entry["registered_at_ms"].as_u64().unwrap_or(0);
        if let Some(ts) = invalid_since_ms
            && registered > ts
        {
            tracing::info!(
                registered_at_ms = registered,
                invalid_since_ms = ts,
                "device registered this token again after the provider invalidated it; kept"
            );
            return false;
        }
        let (Some(db), Some(device)) = (entry["account_db"].as_str(), entry["device_id"].as_str())
        else {
            return false;
        };
        let token = req.token_id.as_str();
        let changed = self
            .couch
            .update_doc(db, device, 10, |doc| {
                let holds = doc.pointer("/push/Token-ID").and_then(Value::as_str) == Some(token);
                holds
                    && doc
                        .as_object_mut()
                        .is_some_and(|d| d.remove("push").is_some())
            })
            .await;
        let mut tombstone = entry.clone();
        tombstone["_deleted"] = json!(true);
        if let Err(e) = self.couch.put_doc(TOKENS_DB, &tombstone).await {
            tracing::debug!(error.message = %e, "token index entry not deleted");
        }
        if let Ok(mut k) = self.known.lock() {
            k.retain(|m| !m.starts_with(&format!("{id}\u{0}")));
        }
        match changed {
            Ok(UpdateOutcome::Updated { .. }) => {
                tracing::warn!(
                    device_id = device,
                    "push object removed from the device (dead token)"
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error.message = %e, device_id = device, "cannot remove the dead token from the device");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_share_firebase_kinds() {
        assert_eq!(doc_id("apple", "a.b", "t").as_deref(), Some("apple:a.b:t"));
        assert_eq!(doc_id("android", "a", "t"), doc_id("firebase_v1", "a", "t"));
        assert_eq!(doc_id("pigeon", "a", "t"), None);
    }
}

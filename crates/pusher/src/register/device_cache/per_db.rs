//! The per-database watcher: one `_changes` long-poll per cached database.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pusher_io::couch::CouchClient;

use super::DeviceCache;
use super::state::Inner;

impl DeviceCache {
    pub(super) fn spawn_watcher(&self, db: String) {
        let couch = self.couch.clone();
        let inner = self.inner.clone();
        let stop = self.stop.clone();
        let longpoll = self.longpoll;
        tokio::spawn(async move {
            let mut epoch = None;
            tokio::select! {
                reason = watch(&couch, &inner, &db, longpoll, &mut epoch) => {
                    tracing::debug!(db = %db, reason = %reason, "device cache: feed ended; database no longer cached");
                }
                () = stop.cancelled() => {}
            }
            inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .ended(&db, epoch, Instant::now());
        });
    }
}

/// Follows one database's feed, evicting changed docs; returns why it stopped. `epoch`
/// is set once the watcher is live.
async fn watch(
    couch: &CouchClient,
    inner: &Mutex<Inner>,
    db: &str,
    longpoll: Duration,
    epoch: &mut Option<u64>,
) -> String {
    let since = match couch.db_info(db).await {
        Ok(Some(info)) => match info.get("update_seq") {
            Some(seq) => seq.clone(),
            None => return "no update_seq".into(),
        },
        Ok(None) => return "database does not exist".into(),
        Err(e) => return e.to_string(),
    };
    *epoch = Some(
        inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .watching(db),
    );
    tracing::debug!(db, "device cache: following the database's changes");
    let mut since = since;
    loop {
        match couch.changes_longpoll(db, &since, longpoll).await {
            Ok(Some(batch)) => {
                if !batch.ids.is_empty() {
                    let changes: Vec<(String, String)> = batch
                        .ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| (id.clone(), batch.revs.get(i).cloned().unwrap_or_default()))
                        .collect();
                    let foreign = inner
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .feed_batch(db, &changes);
                    tracing::trace!(
                        db,
                        changed = changes.len(),
                        foreign,
                        "device cache: feed batch"
                    );
                }
                since = batch.last_seq;
            }
            Ok(None) => return "database deleted".into(),
            Err(e) => return e.to_string(),
        }
    }
}

//! The `_db_updates` watcher: which feed the server offers, and where it offers
//! `_db_updates`, the one watcher every cached database joins.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pusher_io::couch::{CouchClient, DbEvent, Error};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::state::{Inner, Mode};
use super::{CATCH_UP, DeviceCache, FeedCell, FeedMode, MAX_DBS, RETRY_AFTER};

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DeviceCache {
    /// Starts the task that asks whether the server offers `_db_updates`, and follows
    /// it where it does.
    pub(super) fn spawn_db_updates(&self) {
        let couch = self.couch.clone();
        let inner = self.inner.clone();
        let feed = self.feed.clone();
        let stop = self.stop.clone();
        let longpoll = self.longpoll;
        tokio::spawn(async move {
            tokio::select! {
                () = run(&couch, &inner, &feed, longpoll, &stop) => {}
                () = stop.cancelled() => {}
            }
            let mut inner = lock(&inner);
            if matches!(inner.mode, Mode::DbUpdates(_)) {
                inner.run_ended(Instant::now());
            }
        });
    }

    /// `db` joins the `_db_updates` run `run`: reads its `update_seq` (at most
    /// [`JOINS`](super::JOINS) such reads at a time), then is cached from there.
    pub(super) fn spawn_join(&self, db: String, run: u64) {
        let couch = self.couch.clone();
        let inner = self.inner.clone();
        let joins = self.joins.clone();
        tokio::spawn(async move {
            let since = match joins.acquire().await {
                Ok(_permit) => match couch.db_info(&db).await {
                    Ok(Some(info)) => info.get("update_seq").cloned(),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(db = %db, error.message = %e, "device cache: update_seq not read; database not cached");
                        None
                    }
                },
                Err(_) => None,
            };
            let now = Instant::now();
            let mut inner = lock(&inner);
            match since {
                Some(since) => {
                    if inner.joined(&db, run, since, now) {
                        tracing::debug!(db = %db, "device cache: database joined the _db_updates feed");
                    }
                }
                None => inner.ended(&db, None, now),
            }
        });
    }
}

/// Asks the server for `_db_updates` until it answers; follows the feed while it
/// serves it, and settles on per-database feeds when it does not.
async fn run(
    couch: &CouchClient,
    inner: &Mutex<Inner>,
    feed: &FeedCell,
    longpoll: Duration,
    stop: &CancellationToken,
) {
    loop {
        match couch.db_updates(&Value::from("now"), None).await {
            Ok(start) => {
                let run = lock(inner).run_live();
                if feed.get() != Some(FeedMode::DbUpdates) {
                    feed.set(FeedMode::DbUpdates);
                    tracing::info!(
                        "device cache: following the server's _db_updates feed (one connection for every cached database)"
                    );
                }
                let reason = follow(couch, inner, run, start.last_seq, longpoll).await;
                tracing::info!(reason = %reason, "device cache: _db_updates feed ended; every cached database dropped until it is back");
                lock(inner).run_ended(Instant::now());
            }
            Err(e @ Error::Unreachable { .. }) => {
                tracing::debug!(error.message = %e, "device cache: CouchDB unreachable; asking for _db_updates again later");
            }
            Err(e) => {
                // Only before any database is watched: at start, or after a run ended.
                lock(inner).mode = Mode::PerDb;
                feed.set(FeedMode::PerDb);
                tracing::info!(answer = %e, max_dbs = MAX_DBS,
                    "device cache: the server offers no _db_updates; following one _changes feed per cached database");
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_AFTER) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Follows the `_db_updates` feed of run `run` from `since`; returns why it stopped.
async fn follow(
    couch: &CouchClient,
    inner: &Mutex<Inner>,
    run: u64,
    since: Value,
    longpoll: Duration,
) -> String {
    let mut since = since;
    loop {
        let batch = match couch.db_updates(&since, Some(longpoll)).await {
            Ok(b) => b,
            Err(e) => return e.to_string(),
        };
        let mut updated: Vec<(String, u64, Value)> = Vec::new();
        {
            let now = Instant::now();
            let mut inner = lock(inner);
            if inner.mode != Mode::DbUpdates(Some(run)) {
                return "run replaced".into();
            }
            for (db, event) in &batch.events {
                match event {
                    DbEvent::Updated => {
                        if !updated.iter().any(|(d, _, _)| d == db)
                            && let Some((epoch, from)) = inner.catch_up_from(db)
                        {
                            updated.push((db.clone(), epoch, from));
                        }
                    }
                    DbEvent::Created | DbEvent::Deleted => inner.db_gone(db, now),
                    DbEvent::Other => {}
                }
            }
        }
        futures_util::stream::iter(updated)
            .for_each_concurrent(CATCH_UP, |(db, epoch, from)| async move {
                catch_up(couch, inner, &db, epoch, &from).await;
            })
            .await;
        since = batch.last_seq;
    }
}

/// Reads `db`'s changes since `from` once and evicts the changed docs; a database
/// that cannot be read ends.
async fn catch_up(couch: &CouchClient, inner: &Mutex<Inner>, db: &str, epoch: u64, from: &Value) {
    match couch.changes_since(db, from).await {
        Ok(Some(batch)) => {
            let changes: Vec<(String, String)> = batch
                .ids
                .into_iter()
                .zip(
                    batch
                        .revs
                        .into_iter()
                        .chain(std::iter::repeat(String::new())),
                )
                .collect();
            let foreign = lock(inner).caught_up(db, epoch, &changes, batch.last_seq);
            tracing::trace!(
                db,
                changed = changes.len(),
                foreign,
                "device cache: caught up"
            );
        }
        Ok(None) => lock(inner).ended(db, Some(epoch), Instant::now()),
        Err(e) => {
            tracing::debug!(db, error.message = %e, "device cache: catch-up failed; database no longer cached");
            lock(inner).ended(db, Some(epoch), Instant::now());
        }
    }
}

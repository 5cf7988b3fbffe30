//! A cache of the `push` object of device documents, so a registration refresh that
//! changes nothing costs no CouchDB request (a phone re-registers every few minutes; a
//! registration storm after an outage is mostly refreshes).
//!
//! **Correctness comes from the change feed.** An account database is cached only while a
//! watcher follows its `_changes` feed; every change to a doc evicts that doc, whoever
//! made it (crossbar, another pusher, an operator with curl). The watcher reads the
//! database's `update_seq` *before* any entry of that database is stored, so no change
//! after a read can be missed; the feed generation in which each doc last changed stops a
//! read that raced with a change to that doc from being stored. The feed also reports
//! the revision of each change: our own write, cached with its revision, is not evicted
//! by its own echo. When a feed fails (CouchDB down,
//! database deleted) the database's entries are dropped and it is not cached again until
//! a new watcher is up. (`_db_updates` would need one connection instead of one per
//! database, but pouchdb-server does not implement it; per-database feeds work on both.)
//!
//! Bounds: at most [`MAX_DBS`] databases are watched (others are simply not cached) and
//! at most [`MAX_ENTRIES`] entries are kept (the cache is emptied when full).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pusher_core::reg_success::push_equal;
use pusher_io::couch::CouchClient;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Most account databases watched at once.
pub const MAX_DBS: usize = 512;
/// Most cached devices.
pub const MAX_ENTRIES: usize = 200_000;
/// Long-poll wait of each watcher.
const LONGPOLL: Duration = Duration::from_secs(25);
/// After a watcher failed, its database is not watched again for this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the cache knows of a device: its `push` object, or that it has none.
pub type CachedPush = Option<Value>;

#[derive(Debug)]
enum DbState {
    /// Watcher started, `update_seq` not read yet: nothing may be stored.
    Starting,
    /// Watcher following the feed. `generation` counts feed batches with foreign
    /// changes; `changed` says in which generation each doc last changed, so a read of a
    /// doc is stored only if that doc did not change since the read's ticket. Tickets
    /// below `floor` are refused (`changed` is emptied when it grows too big).
    Watching {
        generation: u64,
        changed: HashMap<String, u64>,
        floor: u64,
    },
    /// Watcher failed at this time; not cached until [`RETRY_AFTER`] has passed.
    Failed(Instant),
}

#[derive(Debug, Default)]
struct Inner {
    dbs: HashMap<String, DbState>,
    /// Device → (its push object, the revision we wrote, if we wrote it).
    entries: HashMap<(String, String), (CachedPush, Option<String>)>,
}

/// The cache; clone the `Arc` into handlers.
#[derive(Debug)]
pub struct DeviceCache {
    couch: CouchClient,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

/// A ticket for storing what a read returned: valid only if nothing changed in the
/// database's feed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl DeviceCache {
    /// An empty cache; its watchers end when `stop` fires.
    pub fn new(couch: CouchClient, stop: CancellationToken) -> Self {
        Self {
            couch,
            inner: Arc::default(),
            stop,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the device is known to have exactly the `wanted` push object (compared
    /// as [`push_equal`] does, without copying), with a ticket for storing a fresh read.
    /// Starts watching the database when it is not watched yet (then `(false, None)`).
    pub fn lookup(&self, db: &str, device_id: &str, wanted: &CachedPush) -> (bool, Option<Ticket>) {
        let mut inner = self.lock();
        match inner.dbs.get(db) {
            Some(DbState::Watching { generation, .. }) => {
                let ticket = Ticket(*generation);
                let key = (db.to_string(), device_id.to_string());
                let same =
                    inner
                        .entries
                        .get(&key)
                        .is_some_and(|(cached, _)| match (cached, wanted) {
                            (Some(a), Some(b)) => push_equal(a, b),
                            (None, None) => true,
                            _ => false,
                        });
                (same, Some(ticket))
            }
            Some(DbState::Starting) => (false, None),
            Some(DbState::Failed(at)) if at.elapsed() < RETRY_AFTER => (false, None),
            _ => {
                if inner.dbs.len() < MAX_DBS || inner.dbs.contains_key(db) {
                    inner.dbs.insert(db.to_string(), DbState::Starting);
                    drop(inner);
                    self.spawn_watcher(db.to_string());
                }
                (false, None)
            }
        }
    }

    /// Stores what a read or write established, unless the feed evicted anything of this
    /// database since `ticket` was issued. `written_rev` is the revision of our own
    /// write: when the feed reports exactly that revision, the entry stays.
    pub fn store(
        &self,
        db: &str,
        device_id: &str,
        push: CachedPush,
        written_rev: Option<String>,
        ticket: Ticket,
    ) {
        let mut inner = self.lock();
        let current = match inner.dbs.get(db) {
            Some(DbState::Watching { changed, floor, .. }) => {
                ticket.0 >= *floor && changed.get(device_id).is_none_or(|g| *g <= ticket.0)
            }
            _ => false,
        };
        if !current {
            tracing::trace!(
                db,
                device_id,
                "device cache: read raced with a change; not stored"
            );
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner
            .entries
            .insert((db.to_string(), device_id.to_string()), (push, written_rev));
    }

    /// Number of cached devices (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spawn_watcher(&self, db: String) {
        let couch = self.couch.clone();
        let inner = self.inner.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                reason = watch(&couch, &inner, &db) => {
                    tracing::debug!(db = %db, reason = %reason, "device cache: feed ended; database no longer cached");
                }
                () = stop.cancelled() => {}
            }
            let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
            guard.entries.retain(|(d, _), _| d != &db);
            guard.dbs.insert(db, DbState::Failed(Instant::now()));
        });
    }
}

/// Follows one database's feed, evicting changed docs; returns why it stopped.
async fn watch(couch: &CouchClient, inner: &Mutex<Inner>, db: &str) -> String {
    let since = match couch.db_info(db).await {
        Ok(Some(info)) => match info.get("update_seq") {
            Some(seq) => seq.clone(),
            None => return "no update_seq".into(),
        },
        Ok(None) => return "database does not exist".into(),
        Err(e) => return e.to_string(),
    };
    {
        let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
        guard.dbs.insert(
            db.to_string(),
            DbState::Watching {
                generation: 0,
                changed: HashMap::new(),
                floor: 0,
            },
        );
    }
    tracing::debug!(db, "device cache: following the database's changes");
    let mut since = since;
    loop {
        match couch.changes_longpoll(db, &since, LONGPOLL).await {
            Ok(Some(batch)) => {
                if !batch.ids.is_empty() {
                    let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
                    // Our own write, already cached with its revision, changes nothing;
                    // any other change evicts the doc and invalidates reads in flight.
                    let mut foreign = Vec::new();
                    for (i, id) in batch.ids.iter().enumerate() {
                        let key = (db.to_string(), id.clone());
                        let rev = batch.revs.get(i).map(String::as_str).unwrap_or("");
                        let own = guard
                            .entries
                            .get(&key)
                            .is_some_and(|(_, r)| !rev.is_empty() && r.as_deref() == Some(rev));
                        if !own {
                            guard.entries.remove(&key);
                            foreign.push(id.clone());
                        }
                    }
                    if let Some(DbState::Watching {
                        generation,
                        changed,
                        floor,
                    }) = guard.dbs.get_mut(db)
                        && !foreign.is_empty()
                    {
                        *generation += 1;
                        if changed.len() + foreign.len() > MAX_ENTRIES {
                            changed.clear();
                            *floor = *generation;
                        }
                        for id in &foreign {
                            changed.insert(id.clone(), *generation);
                        }
                    }
                    tracing::trace!(
                        db,
                        changed = batch.ids.len(),
                        foreign = foreign.len(),
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

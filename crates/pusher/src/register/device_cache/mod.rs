//! A cache of the `push` object of device documents, so a registration refresh that
//! changes nothing costs no CouchDB request (a phone re-registers every few minutes; a
//! registration storm after an outage is mostly refreshes) — and of the whole document
//! at its revision, so a registration that does change it costs one request: the `PUT`
//! of the cached copy with the new `push`, no `GET` first (issue #13, P3).
//!
//! **Whole documents.** CouchDB replaces a document whole, so a write must carry every
//! other field of it; the cached copy (with its `_rev`) is what a read or our own write
//! last saw. It is safe even when stale: CouchDB refuses a `PUT` based on an older
//! revision (409), and the write then re-reads and re-applies
//! ([`CouchClient::update_doc_from`](pusher_io::couch::CouchClient::update_doc_from)), so
//! another writer's fields survive; the feed below makes that rare. Copies are kept as
//! compact JSON, at most [`MAX_DOC_BYTES`] in all; beyond that an entry keeps only its
//! `push` object and a write of it reads the doc first.
//!
//! **Correctness comes from the change feed.** An account database is cached only while a
//! watcher follows its `_changes` feed; every change to a doc evicts that doc, whoever
//! made it (crossbar, another pusher, an operator with curl). The watcher reads the
//! database's `update_seq` *before* any entry of that database is stored, so no change
//! after a read can be missed; the feed generation in which each doc last changed stops a
//! read that raced with a change to that doc from being stored — unless the store names
//! a revision at least as new as the last one the feed reported for the doc (the echo of
//! our own write often arrives before the write's answer). The feed also reports
//! the revision of each change: our own write, cached with its revision, is not evicted
//! by its own echo (nor a read's entry by the echo of the change it read). When a feed fails (CouchDB down,
//! database deleted) the database's entries are dropped and it is not cached again until
//! a new watcher is up.
//!
//! **Tickets.** A read may store what it saw only with a [`Ticket`] taken before it, and
//! only if the feed reported no change of that doc since. A ticket names the watcher
//! that issued it by an *epoch*, unique among all watchers this cache ever ran: a
//! ticket taken before a watcher failed never passes against its replacement (whose
//! feed starts after changes the old ticket never saw). Emptying the cache when it is
//! full raises every feed's floor, so no ticket taken before counts either.
//!
//! **Revisions.** Two registrations of one device may finish in either order. A store
//! never replaces a cached entry written at a newer revision (CouchDB's `N-hash`, compared
//! by `N`); when the order cannot be told (same `N`, other hash) the entry is dropped.
//! A store that names no revision never replaces an entry whose revision is known (that
//! entry is either current, or the feed will evict it).
//!
//! **Which feed.** At start the cache asks the server for `_db_updates` (CouchDB 2/3
//! with admin rights: one feed for the whole server, telling which databases changed).
//! Where it answers, ONE watcher follows it and the cached databases join it: each reads
//! its `update_seq` after the feed's position was taken, and on an `updated` event its
//! `_changes` since the last sequence applied are read once (a normal request, at most
//! [`CATCH_UP`] at a time), to evict the changed docs; `deleted` or `created` ends the
//! database. Any gap in that feed (an error, a reconnect) ends every database at once,
//! so every earlier ticket is void, as a per-database watcher's end voids its own. Where
//! the server does not answer it (pouchdb-server answers 400, CouchDB without admin
//! rights 401), each cached database has its own `_changes` long-poll watcher. While the
//! server cannot be reached the question stays open and nothing is cached. The mode is
//! logged, and exposed as `pusher_device_cache_feed{mode}`.
//!
//! Bounds: at most [`MAX_DBS`] databases are watched with per-database feeds (one
//! long-poll connection each: at most [`MAX_DBS`] connections), [`MAX_DBS_DB_UPDATES`]
//! with `_db_updates` (one long-poll, plus at most [`CATCH_UP`] catch-up reads and
//! [`JOINS`] `update_seq` reads at a time); others are simply not cached. At most
//! [`MAX_ENTRIES`] entries are kept (the cache is emptied when full).
//!
//! Layout: `state` holds the cache's pure state (entries, the databases watched, the
//! ticket and revision rules), `per_db` the per-database watcher; this file the public
//! API.

mod db_updates;
mod per_db;
mod state;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pusher_io::couch::CouchClient;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::state::{DbState, Found, Inner, Mode};

/// Most account databases watched at once with per-database feeds (one long-poll
/// connection each).
pub const MAX_DBS: usize = 512;
/// Most account databases watched at once with `_db_updates` (no connection each).
pub const MAX_DBS_DB_UPDATES: usize = 50_000;
/// With `_db_updates`: most `_changes` catch-up reads at a time.
pub const CATCH_UP: usize = 8;
/// With `_db_updates`: most `update_seq` reads of joining databases at a time. Each is
/// one short request; after a restart every active database joins on its first
/// registration, and a database is not cached until it has joined (P10 in
/// BENCHMARKS.md: at 8, ten thousand databases took minutes to join under load).
pub const JOINS: usize = 32;
/// Most cached devices.
pub const MAX_ENTRIES: usize = 200_000;
/// Most bytes of cached whole documents (compact JSON), over every entry.
pub const MAX_DOC_BYTES: usize = 64 << 20;
/// Long-poll wait of each watcher (also how long a deleted database can go unnoticed:
/// pouchdb-server neither ends a pending long-poll on deletion nor honours `timeout`).
pub const LONGPOLL: Duration = Duration::from_secs(25);
/// After a watcher failed, its database is not watched again for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the cache knows of a device: its `push` object, or that it has none.
pub type CachedPush = Option<Value>;

/// Which feed keeps the cache right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedMode {
    /// One `_changes` long-poll per cached database (pouchdb-server).
    PerDb,
    /// The server's `_db_updates` feed (CouchDB 2/3).
    DbUpdates,
}

impl FeedMode {
    /// Both, in rendering order.
    pub const ALL: [FeedMode; 2] = [FeedMode::DbUpdates, FeedMode::PerDb];

    /// Label of `pusher_device_cache_feed{mode}`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedMode::PerDb => "per_db",
            FeedMode::DbUpdates => "db_updates",
        }
    }
}

/// The feed mode, readable without the cache's lock (for `/metrics`): `None` until the
/// server answered whether it offers `_db_updates`.
#[derive(Debug, Default)]
pub struct FeedCell(AtomicU8);

impl FeedCell {
    /// The mode decided, if any.
    pub fn get(&self) -> Option<FeedMode> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(FeedMode::PerDb),
            2 => Some(FeedMode::DbUpdates),
            _ => None,
        }
    }

    fn set(&self, mode: FeedMode) {
        let v = match mode {
            FeedMode::PerDb => 1,
            FeedMode::DbUpdates => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }
}

/// The cache; clone the `Arc` into handlers.
#[derive(Debug)]
pub struct DeviceCache {
    couch: CouchClient,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
    longpoll: Duration,
    feed: Arc<FeedCell>,
    /// With `_db_updates`: bounds the `update_seq` reads of joining databases.
    joins: Arc<tokio::sync::Semaphore>,
}

/// A ticket for storing what a read returned: valid only while the watcher that issued
/// it runs, and only if its feed reported no change of the doc in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    generation: u64,
}

/// What [`DeviceCache::lookup_doc`] found.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The device is known to have the wanted push object: nothing to write.
    pub hit: bool,
    /// For storing what the write establishes (`None`: the database is not watched).
    pub ticket: Option<Ticket>,
    /// On a miss, the cached whole document at its `_rev`, to write the change on.
    pub doc: Option<Value>,
}

impl DeviceCache {
    /// An empty cache; its watchers end when `stop` fires. Asks the server at once
    /// whether it offers `_db_updates` (a task on the current Tokio runtime).
    pub fn new(couch: CouchClient, stop: CancellationToken) -> Self {
        Self::with_longpoll(couch, stop, LONGPOLL)
    }

    /// Like [`DeviceCache::new`], each watcher long-polling for `longpoll` (tests use a
    /// short one to see a feed fail quickly).
    pub fn with_longpoll(couch: CouchClient, stop: CancellationToken, longpoll: Duration) -> Self {
        let cache = Self {
            couch,
            inner: Arc::new(Mutex::new(Inner {
                mode: Mode::Probing,
                ..Inner::default()
            })),
            stop,
            longpoll,
            feed: Arc::default(),
            joins: Arc::new(tokio::sync::Semaphore::new(JOINS)),
        };
        cache.spawn_db_updates();
        cache
    }

    /// The feed mode, once decided.
    pub fn feed_mode(&self) -> Option<FeedMode> {
        self.feed.get()
    }

    /// The feed mode's cell, for `/metrics`.
    pub fn feed_cell(&self) -> Arc<FeedCell> {
        self.feed.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the device is known to have exactly the `wanted` push object (compared
    /// as [`push_equal`](pusher_core::reg_success::push_equal) does, without copying), with a ticket for storing a fresh read.
    /// Starts watching the database when it is not watched yet (then `(false, None)`).
    pub fn lookup(&self, db: &str, device_id: &str, wanted: &CachedPush) -> (bool, Option<Ticket>) {
        let found = self.lookup_doc(db, device_id, wanted);
        (found.hit, found.ticket)
    }

    /// [`DeviceCache::lookup`], and on a miss the cached whole document (with its
    /// `_rev`) to write the change on, when one is kept.
    pub fn lookup_doc(&self, db: &str, device_id: &str, wanted: &CachedPush) -> Lookup {
        let found = self.lock().lookup(db, device_id, wanted, Instant::now());
        match found {
            Found::Watched(hit, ticket, doc) => Lookup {
                hit,
                ticket: Some(ticket),
                // Parsed outside the lock; a copy that does not parse is not used.
                doc: doc.and_then(|d| serde_json::from_str(&d).ok()),
            },
            Found::StartWatcher(None) => {
                self.spawn_watcher(db.to_string());
                Lookup::default()
            }
            Found::StartWatcher(Some(run)) => {
                self.spawn_join(db.to_string(), run);
                Lookup::default()
            }
            Found::NotWatched => Lookup::default(),
        }
    }

    /// Stores what a read or write established, unless the feed evicted this doc since
    /// `ticket` was issued, the watcher that issued it has ended, or a newer revision is
    /// cached. `written_rev` is the revision of our own write (`None`: a read that
    /// changed nothing): when the feed reports exactly that revision, the entry stays.
    pub fn store(
        &self,
        db: &str,
        device_id: &str,
        push: CachedPush,
        written_rev: Option<String>,
        ticket: Ticket,
    ) {
        self.store_doc(db, device_id, push, written_rev, None, ticket);
    }

    /// [`DeviceCache::store`] with the whole document as stored at `rev` (its `_rev`),
    /// for the next write of the device to start from: from a read (its `_rev`) or from
    /// our own write (the new revision).
    pub fn store_doc(
        &self,
        db: &str,
        device_id: &str,
        push: CachedPush,
        rev: Option<String>,
        doc: Option<&Value>,
        ticket: Ticket,
    ) {
        let doc = doc.map(|d| Arc::<str>::from(d.to_string()));
        if !self.lock().store(db, device_id, push, rev, doc, ticket) {
            tracing::trace!(
                db,
                device_id,
                "device cache: stale ticket or newer revision cached; not stored"
            );
        }
    }

    /// Bytes of whole documents cached (for tests and metrics).
    pub fn doc_bytes(&self) -> usize {
        self.lock().doc_bytes
    }

    /// Number of cached devices (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a watcher follows `db`'s feed now (entries of `db` can be stored).
    pub fn is_watching(&self, db: &str) -> bool {
        matches!(self.lock().dbs.get(db), Some(DbState::Watching(_)))
    }
}

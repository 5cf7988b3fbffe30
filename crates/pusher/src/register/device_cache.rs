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
//! entry is either current, or the feed will evict it). (`_db_updates` would need one connection instead of one per
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
/// Most bytes of cached whole documents (compact JSON), over every entry.
pub const MAX_DOC_BYTES: usize = 64 << 20;
/// Long-poll wait of each watcher (also how long a deleted database can go unnoticed:
/// pouchdb-server neither ends a pending long-poll on deletion nor honours `timeout`).
pub const LONGPOLL: Duration = Duration::from_secs(25);
/// After a watcher failed, its database is not watched again for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the cache knows of a device: its `push` object, or that it has none.
pub type CachedPush = Option<Value>;

#[derive(Debug)]
enum DbState {
    /// Watcher started, `update_seq` not read yet: nothing may be stored.
    Starting,
    /// Watcher following the feed.
    Watching(Feed),
    /// Watcher failed at this time; not cached until [`RETRY_AFTER`] has passed.
    Failed(Instant),
}

/// What a live watcher has seen of its feed.
#[derive(Debug)]
struct Feed {
    /// Names this watcher among every watcher the cache ever ran (never reused).
    epoch: u64,
    /// Counts feed batches with foreign changes.
    generation: u64,
    /// In which generation each doc last changed: a read of a doc is stored only if that
    /// doc did not change since the read's ticket.
    /// With the revision the feed reported last.
    changed: HashMap<String, (u64, String)>,
    /// Tickets of an older generation are refused (`changed` was emptied, or the cache).
    floor: u64,
}

/// A cached device.
#[derive(Debug)]
struct Entry {
    push: CachedPush,
    /// The revision the entry is at, when known.
    rev: Option<String>,
    /// The whole document at `rev` (compact JSON), when kept.
    doc: Option<Arc<str>>,
}

impl Entry {
    fn doc_bytes(&self) -> usize {
        self.doc.as_ref().map_or(0, |d| d.len())
    }
}

#[derive(Debug, Default)]
struct Inner {
    dbs: HashMap<String, DbState>,
    entries: HashMap<(String, String), Entry>,
    /// Sum of the entries' [`Entry::doc_bytes`].
    doc_bytes: usize,
    /// The last watcher epoch handed out.
    epochs: u64,
}

/// The cache; clone the `Arc` into handlers.
#[derive(Debug)]
pub struct DeviceCache {
    couch: CouchClient,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
    longpoll: Duration,
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

/// What [`Inner::lookup`] found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// The database is watched: whether the entry matches, a ticket, and the cached
    /// whole document when the entry does not match and one is kept.
    Watched(bool, Ticket, Option<Arc<str>>),
    /// Not watched; a watcher must be started (the state is `Starting` already).
    StartWatcher,
    /// Not watched, and no watcher to start now.
    NotWatched,
}

/// The `N` of a CouchDB revision `N-hash`.
fn rev_number(rev: &str) -> Option<u64> {
    rev.split_once('-')?.0.parse().ok()
}

/// Whether revision `rev` is `seen` or newer (by `N`; a same-`N` twin is not).
fn at_least(rev: &str, seen: &str) -> bool {
    !seen.is_empty()
        && (rev == seen
            || matches!((rev_number(rev), rev_number(seen)), (Some(r), Some(s)) if r > s))
}

/// What a store does to an existing entry of revision `old` with a new one of `new`.
#[derive(Debug, PartialEq, Eq)]
enum Replace {
    Yes,
    Keep,
    Drop,
}

fn replace(old: Option<&str>, new: Option<&str>) -> Replace {
    match (old, new) {
        (None, _) => Replace::Yes,
        (Some(_), None) => Replace::Keep,
        (Some(o), Some(n)) if o == n => Replace::Yes,
        (Some(o), Some(n)) => match (rev_number(o), rev_number(n)) {
            (Some(o), Some(n)) if n > o => Replace::Yes,
            (Some(o), Some(n)) if n < o => Replace::Keep,
            _ => Replace::Drop,
        },
    }
}

impl Inner {
    fn lookup(&mut self, db: &str, device_id: &str, wanted: &CachedPush, now: Instant) -> Found {
        match self.dbs.get(db) {
            Some(DbState::Watching(feed)) => {
                let ticket = Ticket {
                    epoch: feed.epoch,
                    generation: feed.generation,
                };
                let key = (db.to_string(), device_id.to_string());
                let entry = self.entries.get(&key);
                let same = entry.is_some_and(|e| match (&e.push, wanted) {
                    (Some(a), Some(b)) => push_equal(a, b),
                    (None, None) => true,
                    _ => false,
                });
                let doc = if same {
                    None
                } else {
                    entry.and_then(|e| e.doc.clone())
                };
                Found::Watched(same, ticket, doc)
            }
            Some(DbState::Starting) => Found::NotWatched,
            Some(DbState::Failed(at)) if now.saturating_duration_since(*at) < RETRY_AFTER => {
                Found::NotWatched
            }
            _ => {
                if self.dbs.len() < MAX_DBS || self.dbs.contains_key(db) {
                    self.dbs.insert(db.to_string(), DbState::Starting);
                    Found::StartWatcher
                } else {
                    Found::NotWatched
                }
            }
        }
    }

    /// A watcher has read `update_seq`: the database is cached from now on, under a
    /// fresh epoch. Returns the epoch (the watcher's name in [`Inner::ended`]).
    fn watching(&mut self, db: &str) -> u64 {
        self.epochs += 1;
        let epoch = self.epochs;
        self.dbs.insert(
            db.to_string(),
            DbState::Watching(Feed {
                epoch,
                generation: 0,
                changed: HashMap::new(),
                floor: 0,
            }),
        );
        epoch
    }

    /// The watcher of `db` (of `epoch`, or one still starting when `None`) ended: the
    /// database's entries go, and it is not cached until [`RETRY_AFTER`].
    fn ended(&mut self, db: &str, epoch: Option<u64>, now: Instant) {
        let ours = match (self.dbs.get(db), epoch) {
            (Some(DbState::Watching(feed)), Some(e)) => feed.epoch == e,
            (Some(DbState::Starting), None) => true,
            _ => false,
        };
        if ours {
            let mut freed = 0;
            self.entries.retain(|(d, _), e| {
                let keep = d != db;
                if !keep {
                    freed += e.doc_bytes();
                }
                keep
            });
            self.doc_bytes -= freed;
            self.dbs.insert(db.to_string(), DbState::Failed(now));
        }
    }

    /// Removes one entry, keeping [`Inner::doc_bytes`] right.
    fn remove(&mut self, key: &(String, String)) {
        if let Some(old) = self.entries.remove(key) {
            self.doc_bytes -= old.doc_bytes();
        }
    }

    /// Stores `push` (and the whole `doc` at `rev`, if given and within
    /// [`MAX_DOC_BYTES`]) unless `ticket` is stale or a newer revision is cached;
    /// returns whether it was stored.
    fn store(
        &mut self,
        db: &str,
        device_id: &str,
        push: CachedPush,
        rev: Option<String>,
        doc: Option<Arc<str>>,
        ticket: Ticket,
    ) -> bool {
        let current = match self.dbs.get(db) {
            Some(DbState::Watching(feed)) => {
                ticket.epoch == feed.epoch
                    && ticket.generation >= feed.floor
                    && feed.changed.get(device_id).is_none_or(|(g, seen)| {
                        *g <= ticket.generation || rev.as_deref().is_some_and(|r| at_least(r, seen))
                    })
            }
            _ => false,
        };
        if !current {
            return false;
        }
        let key = (db.to_string(), device_id.to_string());
        match self.entries.get(&key) {
            None => {}
            Some(old) => match replace(old.rev.as_deref(), rev.as_deref()) {
                Replace::Yes => {}
                Replace::Keep => return false,
                Replace::Drop => {
                    self.remove(&key);
                    return false;
                }
            },
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            self.clear();
        }
        self.remove(&key);
        // A copy is only useful with the revision it is at.
        let doc = doc.filter(|d| rev.is_some() && self.doc_bytes + d.len() <= MAX_DOC_BYTES);
        let entry = Entry { push, rev, doc };
        self.doc_bytes += entry.doc_bytes();
        self.entries.insert(key, entry);
        true
    }

    /// Empties the cache; tickets issued so far no longer count.
    fn clear(&mut self) {
        self.entries.clear();
        self.doc_bytes = 0;
        for state in self.dbs.values_mut() {
            if let DbState::Watching(feed) = state {
                feed.generation += 1;
                feed.floor = feed.generation;
                feed.changed.clear();
            }
        }
    }

    /// A batch of `db`'s feed: `(doc id, revision)` of each change. Our own write, cached
    /// with its revision, changes nothing, nor does the late echo of an older revision;
    /// any other change evicts the doc and
    /// invalidates the tickets of reads in flight. Returns how many were foreign.
    fn feed_batch(&mut self, db: &str, changes: &[(String, String)]) -> usize {
        let mut foreign = Vec::new();
        for (id, rev) in changes {
            let key = (db.to_string(), id.clone());
            // Ours, or older than what we cached (a feed lagging behind our writes: the
            // winning revision is the highest `N`, so the entry is still the winner).
            let own = self
                .entries
                .get(&key)
                .is_some_and(|e| e.rev.as_deref().is_some_and(|r| at_least(r, rev)));
            if !own {
                self.remove(&key);
                foreign.push((id.clone(), rev.clone()));
            }
        }
        if let Some(DbState::Watching(feed)) = self.dbs.get_mut(db)
            && !foreign.is_empty()
        {
            feed.generation += 1;
            if feed.changed.len() + foreign.len() > MAX_ENTRIES {
                feed.changed.clear();
                feed.floor = feed.generation;
            }
            for (id, rev) in &foreign {
                feed.changed
                    .insert(id.clone(), (feed.generation, rev.clone()));
            }
        }
        foreign.len()
    }
}

impl DeviceCache {
    /// An empty cache; its watchers end when `stop` fires.
    pub fn new(couch: CouchClient, stop: CancellationToken) -> Self {
        Self::with_longpoll(couch, stop, LONGPOLL)
    }

    /// Like [`DeviceCache::new`], each watcher long-polling for `longpoll` (tests use a
    /// short one to see a feed fail quickly).
    pub fn with_longpoll(couch: CouchClient, stop: CancellationToken, longpoll: Duration) -> Self {
        Self {
            couch,
            inner: Arc::default(),
            stop,
            longpoll,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the device is known to have exactly the `wanted` push object (compared
    /// as [`push_equal`] does, without copying), with a ticket for storing a fresh read.
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
            Found::StartWatcher => {
                self.spawn_watcher(db.to_string());
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

    fn spawn_watcher(&self, db: String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DB: &str = "account%2Fab%2Fcd%2Fef";

    fn push(token: &str) -> CachedPush {
        Some(json!({"Token-App": "org.x", "Token-Type": "apple", "Token-ID": token}))
    }

    /// A cache whose watcher of `DB` is live; returns its epoch.
    fn watched(inner: &mut Inner, now: Instant) -> u64 {
        assert_eq!(inner.lookup(DB, "d", &None, now), Found::StartWatcher);
        inner.watching(DB)
    }

    fn ticket(inner: &mut Inner, now: Instant) -> Ticket {
        match inner.lookup(DB, "d", &None, now) {
            Found::Watched(_, t, _) => t,
            other => panic!("not watched: {other:?}"),
        }
    }

    fn hit(inner: &mut Inner, wanted: &CachedPush, now: Instant) -> bool {
        matches!(
            inner.lookup(DB, "d", wanted, now),
            Found::Watched(true, _, _)
        )
    }

    #[test]
    fn a_ticket_from_before_a_watcher_failed_never_passes_against_its_replacement() {
        let mut inner = Inner::default();
        let t0 = Instant::now();
        let first = watched(&mut inner, t0);
        // A registration reads the device (push A) with this ticket ...
        let stale = ticket(&mut inner, t0);
        // ... the feed fails (its changes are lost) and a new watcher takes over.
        inner.ended(DB, Some(first), t0);
        assert_eq!(inner.lookup(DB, "d", &None, t0), Found::NotWatched);
        let later = t0 + RETRY_AFTER;
        let second = watched(&mut inner, later);
        assert_ne!(first, second);
        // Both watchers are at generation 0: only the epoch tells the tickets apart.
        let fresh = ticket(&mut inner, later);
        assert_eq!(stale.generation, fresh.generation);
        assert!(!inner.store(DB, "d", push("A"), None, None, stale));
        assert!(!hit(&mut inner, &push("A"), later), "stale push cached");
        assert!(inner.store(DB, "d", push("B"), None, None, fresh));
        assert!(hit(&mut inner, &push("B"), later));
    }

    #[test]
    fn the_end_of_an_old_watcher_does_not_touch_its_replacement() {
        let mut inner = Inner::default();
        let t0 = Instant::now();
        let first = watched(&mut inner, t0);
        inner.ended(DB, Some(first), t0);
        let later = t0 + RETRY_AFTER;
        watched(&mut inner, later);
        let t = ticket(&mut inner, later);
        assert!(inner.store(DB, "d", push("A"), None, None, t));
        inner.ended(DB, Some(first), later);
        inner.ended(DB, None, later);
        assert!(hit(&mut inner, &push("A"), later));
        assert_eq!(inner.entries.len(), 1);
    }

    #[test]
    fn an_older_revision_never_replaces_a_newer_one() {
        let mut inner = Inner::default();
        let now = Instant::now();
        watched(&mut inner, now);
        let t = ticket(&mut inner, now);
        // Two registrations of one device finish out of order: rev 3 first, then rev 2.
        assert!(inner.store(DB, "d", push("new"), Some("3-c".into()), None, t));
        assert!(!inner.store(DB, "d", push("old"), Some("2-b".into()), None, t));
        assert!(hit(&mut inner, &push("new"), now));
        // A read that changed nothing knows no revision: it cannot replace rev 3.
        assert!(!inner.store(DB, "d", push("old"), None, None, t));
        assert!(hit(&mut inner, &push("new"), now));
        // Rev 10 is newer than rev 3 (numbers, not strings).
        assert!(inner.store(DB, "d", push("ten"), Some("10-a".into()), None, t));
        assert!(hit(&mut inner, &push("ten"), now));
        // Same number, other hash: the order is unknown, the entry goes.
        assert!(!inner.store(DB, "d", push("twin"), Some("10-b".into()), None, t));
        assert!(inner.entries.is_empty());
        // A write replaces what a read cached.
        assert!(inner.store(DB, "d", push("read"), None, None, t));
        assert!(inner.store(DB, "d", push("write"), Some("11-a".into()), None, t));
        assert!(hit(&mut inner, &push("write"), now));
    }

    #[test]
    fn revision_order_table() {
        assert_eq!(replace(None, None), Replace::Yes);
        assert_eq!(replace(None, Some("1-a")), Replace::Yes);
        assert_eq!(replace(Some("1-a"), None), Replace::Keep);
        assert_eq!(replace(Some("1-a"), Some("1-a")), Replace::Yes);
        assert_eq!(replace(Some("9-a"), Some("10-a")), Replace::Yes);
        assert_eq!(replace(Some("10-a"), Some("9-a")), Replace::Keep);
        assert_eq!(replace(Some("2-a"), Some("2-b")), Replace::Drop);
        assert_eq!(replace(Some("junk"), Some("2-b")), Replace::Drop);
    }

    #[test]
    fn the_feed_evicts_foreign_changes_and_keeps_our_own_echo() {
        let mut inner = Inner::default();
        let now = Instant::now();
        watched(&mut inner, now);
        let t = ticket(&mut inner, now);
        assert!(inner.store(DB, "d", push("A"), Some("2-x".into()), None, t));
        // The echo of our own write changes nothing.
        assert_eq!(inner.feed_batch(DB, &[("d".into(), "2-x".into())]), 0);
        assert!(hit(&mut inner, &push("A"), now));
        // Someone else's write evicts it, and a read that began before is not stored.
        assert_eq!(inner.feed_batch(DB, &[("d".into(), "3-y".into())]), 1);
        assert!(!hit(&mut inner, &push("A"), now));
        assert!(!inner.store(DB, "d", push("A"), None, None, t));
        let after = ticket(&mut inner, now);
        assert!(inner.store(DB, "d", push("B"), None, None, after));
        // The late echo of an older revision leaves a newer entry alone.
        assert!(inner.store(DB, "d", push("B"), Some("3-z".into()), None, after));
        assert_eq!(inner.feed_batch(DB, &[("d".into(), "2-x".into())]), 0);
        assert!(hit(&mut inner, &push("B"), now));
        // A change of another doc does not stop this one's reads.
        assert_eq!(inner.feed_batch(DB, &[("other".into(), "1-z".into())]), 1);
        assert!(inner.store(DB, "d", push("C"), Some("4-a".into()), None, after));
    }

    #[test]
    fn emptying_a_full_cache_voids_every_earlier_ticket() {
        let mut inner = Inner::default();
        let now = Instant::now();
        watched(&mut inner, now);
        let before = ticket(&mut inner, now);
        inner.clear();
        assert!(!inner.store(DB, "d", push("A"), None, None, before));
        let after = ticket(&mut inner, now);
        assert!(inner.store(DB, "d", push("A"), None, None, after));
    }

    #[test]
    fn nothing_is_stored_while_not_watching() {
        let mut inner = Inner::default();
        let now = Instant::now();
        let epoch = watched(&mut inner, now);
        let t = ticket(&mut inner, now);
        inner.ended(DB, Some(epoch), now);
        assert!(!inner.store(DB, "d", push("A"), None, None, t));
        assert!(inner.entries.is_empty());
    }

    fn doc(token: &str, rev: &str) -> Arc<str> {
        Arc::from(
            json!({"_id": "d", "_rev": rev, "name": "phone", "push": push(token)}).to_string(),
        )
    }

    fn cached_doc(inner: &mut Inner, wanted: &CachedPush, now: Instant) -> Option<Arc<str>> {
        match inner.lookup(DB, "d", wanted, now) {
            Found::Watched(_, _, doc) => doc,
            other => panic!("not watched: {other:?}"),
        }
    }

    #[test]
    fn a_miss_hands_out_the_whole_document_at_its_revision() {
        let mut inner = Inner::default();
        let now = Instant::now();
        watched(&mut inner, now);
        let t = ticket(&mut inner, now);
        let written = doc("A", "2-x");
        assert!(inner.store(
            DB,
            "d",
            push("A"),
            Some("2-x".into()),
            Some(written.clone()),
            t
        ));
        assert_eq!(inner.doc_bytes, written.len());
        // A refresh with the same push object is a hit: no document needed.
        assert_eq!(cached_doc(&mut inner, &push("A"), now), None);
        assert!(hit(&mut inner, &push("A"), now));
        // A change gets the copy to write it on.
        assert_eq!(
            cached_doc(&mut inner, &push("B"), now),
            Some(written.clone())
        );
        // Our own echo keeps it; a foreign change evicts it, bytes and all.
        assert_eq!(inner.feed_batch(DB, &[("d".into(), "2-x".into())]), 0);
        assert_eq!(cached_doc(&mut inner, &push("B"), now), Some(written));
        assert_eq!(inner.feed_batch(DB, &[("d".into(), "3-y".into())]), 1);
        assert_eq!(cached_doc(&mut inner, &push("B"), now), None);
        assert_eq!(inner.doc_bytes, 0);
    }

    #[test]
    fn a_document_is_kept_only_with_its_revision_and_within_the_byte_bound() {
        let mut inner = Inner::default();
        let now = Instant::now();
        let epoch = watched(&mut inner, now);
        let t = ticket(&mut inner, now);
        // Without a revision a copy could not be written on: not kept.
        assert!(inner.store(DB, "d", push("A"), None, Some(doc("A", "1-a")), t));
        assert_eq!(cached_doc(&mut inner, &push("B"), now), None);
        assert_eq!(inner.doc_bytes, 0);
        // Replacing an entry replaces its bytes.
        assert!(inner.store(
            DB,
            "d",
            push("A"),
            Some("2-a".into()),
            Some(doc("A", "2-a")),
            t
        ));
        assert!(inner.store(
            DB,
            "d",
            push("B"),
            Some("3-a".into()),
            Some(doc("B", "3-a")),
            t
        ));
        assert_eq!(inner.doc_bytes, doc("B", "3-a").len());
        // Over the bound the entry keeps its push object only.
        inner.doc_bytes = MAX_DOC_BYTES;
        assert!(inner.store(
            DB,
            "e",
            push("C"),
            Some("1-c".into()),
            Some(doc("C", "1-c")),
            t
        ));
        assert!(
            inner.entries[&(DB.to_string(), "e".to_string())]
                .doc
                .is_none()
        );
        inner.doc_bytes = doc("B", "3-a").len();
        // A watcher's end frees its database's bytes.
        inner.ended(DB, Some(epoch), now);
        assert_eq!(inner.doc_bytes, 0);
        assert!(inner.entries.is_empty());
    }

    #[test]
    fn a_write_whose_echo_came_first_is_stored_and_a_stale_read_is_not() {
        let mut inner = Inner::default();
        let now = Instant::now();
        watched(&mut inner, now);
        let t = ticket(&mut inner, now);
        // Our PUT made rev 3; the feed reports it before the PUT's answer is stored.
        assert_eq!(inner.feed_batch(DB, &[("d".into(), "3-ours".into())]), 1);
        assert!(inner.store(
            DB,
            "d",
            push("A"),
            Some("3-ours".into()),
            Some(doc("A", "3-ours")),
            t
        ));
        assert!(hit(&mut inner, &push("A"), now));
        // Someone writes rev 4; a read (ticket from before) that saw rev 3 is stale,
        // one that saw rev 4 or later is not; a same-N twin is never taken for it.
        let t = ticket(&mut inner, now);
        assert_eq!(inner.feed_batch(DB, &[("d".into(), "4-them".into())]), 1);
        assert!(!inner.store(DB, "d", push("A"), Some("3-ours".into()), None, t));
        assert!(!inner.store(DB, "d", push("B"), Some("4-twin".into()), None, t));
        assert!(!inner.store(DB, "d", push("B"), None, None, t));
        assert!(inner.store(DB, "d", push("B"), Some("4-them".into()), None, t));
        assert!(inner.store(DB, "d", push("C"), Some("5-ours".into()), None, t));
        assert!(at_least("10-a", "9-b"));
        assert!(!at_least("9-b", "10-a"));
        assert!(!at_least("1-a", ""));
    }
}

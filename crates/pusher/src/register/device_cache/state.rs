//! The cache's state, without I/O: the entries, the databases watched and their feeds,
//! and the rules of tickets and revisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use pusher_core::reg_success::push_equal;

use serde_json::Value;

use super::{
    CachedPush, MAX_DBS, MAX_DBS_DB_UPDATES, MAX_DOC_BYTES, MAX_ENTRIES, RETRY_AFTER, Ticket,
};

/// Which feed keeps the entries right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Mode {
    /// Not known yet whether the server offers `_db_updates`: nothing is cached.
    Probing,
    /// One `_changes` watcher per database.
    #[default]
    PerDb,
    /// The server's `_db_updates` feed; the id of its live run (an epoch), `None`
    /// while it is down (nothing is cached then).
    DbUpdates(Option<u64>),
}

#[derive(Debug)]
pub(super) enum DbState {
    /// Watcher started, `update_seq` not read yet: nothing may be stored.
    Starting,
    /// Watcher following the feed.
    Watching(Feed),
    /// Watcher failed at this time; not cached until [`RETRY_AFTER`] has passed.
    Failed(Instant),
}

/// What a live watcher has seen of its feed.
#[derive(Debug)]
pub(super) struct Feed {
    /// Names this watcher among every watcher the cache ever ran (never reused).
    pub(super) epoch: u64,
    /// Counts feed batches with foreign changes.
    pub(super) generation: u64,
    /// In which generation each doc last changed: a read of a doc is stored only if that
    /// doc did not change since the read's ticket.
    /// With the revision the feed reported last.
    pub(super) changed: HashMap<String, (u64, String)>,
    /// Tickets of an older generation are refused (`changed` was emptied, or the cache).
    pub(super) floor: u64,
    /// `_db_updates` mode: the sequence up to which the database's changes were applied.
    pub(super) since: Option<Value>,
}

/// A cached device.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) push: CachedPush,
    /// The revision the entry is at, when known.
    pub(super) rev: Option<String>,
    /// The whole document at `rev` (compact JSON), when kept.
    pub(super) doc: Option<Arc<str>>,
}

impl Entry {
    pub(super) fn doc_bytes(&self) -> usize {
        self.doc.as_ref().map_or(0, |d| d.len())
    }
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) dbs: HashMap<String, DbState>,
    pub(super) entries: HashMap<(String, String), Entry>,
    /// Sum of the entries' [`Entry::doc_bytes`].
    pub(super) doc_bytes: usize,
    /// The last watcher epoch handed out.
    pub(super) epochs: u64,
    pub(super) mode: Mode,
}

/// What [`Inner::lookup`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// The database is watched: whether the entry matches, a ticket, and the cached
    /// whole document when the entry does not match and one is kept.
    Watched(bool, Ticket, Option<Arc<str>>),
    /// Not watched; a watcher must be started (the state is `Starting` already): the
    /// database's own (`None`), or it joins the `_db_updates` run of that id.
    StartWatcher(Option<u64>),
    /// Not watched, and no watcher to start now.
    NotWatched,
}

/// The `N` of a CouchDB revision `N-hash`.
pub(super) fn rev_number(rev: &str) -> Option<u64> {
    rev.split_once('-')?.0.parse().ok()
}

/// Whether revision `rev` is `seen` or newer (by `N`; a same-`N` twin is not).
pub(super) fn at_least(rev: &str, seen: &str) -> bool {
    !seen.is_empty()
        && (rev == seen
            || matches!((rev_number(rev), rev_number(seen)), (Some(r), Some(s)) if r > s))
}

/// What a store does to an existing entry of revision `old` with a new one of `new`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Replace {
    Yes,
    Keep,
    Drop,
}

pub(super) fn replace(old: Option<&str>, new: Option<&str>) -> Replace {
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
    pub(super) fn lookup(
        &mut self,
        db: &str,
        device_id: &str,
        wanted: &CachedPush,
        now: Instant,
    ) -> Found {
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
                let (most, run) = match self.mode {
                    Mode::PerDb => (MAX_DBS, None),
                    Mode::DbUpdates(Some(run)) => (MAX_DBS_DB_UPDATES, Some(run)),
                    Mode::Probing | Mode::DbUpdates(None) => return Found::NotWatched,
                };
                if self.dbs.len() < most || self.dbs.contains_key(db) {
                    self.dbs.insert(db.to_string(), DbState::Starting);
                    Found::StartWatcher(run)
                } else {
                    Found::NotWatched
                }
            }
        }
    }

    /// A watcher has read `update_seq`: the database is cached from now on, under a
    /// fresh epoch. Returns the epoch (the watcher's name in [`Inner::ended`]).
    pub(super) fn watching(&mut self, db: &str) -> u64 {
        self.watching_from(db, None)
    }

    fn watching_from(&mut self, db: &str, since: Option<Value>) -> u64 {
        self.epochs += 1;
        let epoch = self.epochs;
        self.dbs.insert(
            db.to_string(),
            DbState::Watching(Feed {
                epoch,
                generation: 0,
                changed: HashMap::new(),
                floor: 0,
                since,
            }),
        );
        epoch
    }

    /// The watcher of `db` (of `epoch`, or one still starting when `None`) ended: the
    /// database's entries go, and it is not cached until [`RETRY_AFTER`].
    pub(super) fn ended(&mut self, db: &str, epoch: Option<u64>, now: Instant) {
        let ours = match (self.dbs.get(db), epoch) {
            (Some(DbState::Watching(feed)), Some(e)) => feed.epoch == e,
            (Some(DbState::Starting), None) => true,
            _ => false,
        };
        if ours {
            self.drop_db(db, now);
        }
    }

    /// `db`'s entries go, and it is not cached until [`RETRY_AFTER`].
    fn drop_db(&mut self, db: &str, now: Instant) {
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

    /// A `_db_updates` run is live (its feed's position was read): databases may join
    /// it. Returns its id.
    pub(super) fn run_live(&mut self) -> u64 {
        self.epochs += 1;
        self.mode = Mode::DbUpdates(Some(self.epochs));
        self.epochs
    }

    /// The `_db_updates` run ended (a gap in the feed): like the end of every watcher
    /// at once, every entry goes, every database's tickets are void, and none is cached
    /// until a new run is live.
    pub(super) fn run_ended(&mut self, now: Instant) {
        self.mode = Mode::DbUpdates(None);
        self.entries.clear();
        self.doc_bytes = 0;
        for state in self.dbs.values_mut() {
            if matches!(state, DbState::Watching(_) | DbState::Starting) {
                *state = DbState::Failed(now);
            }
        }
    }

    /// A database that read its `update_seq` (`since`) after run `run` was live joins
    /// it, under a fresh epoch; refused (the database ends) if the run is over or the
    /// database went meanwhile.
    pub(super) fn joined(&mut self, db: &str, run: u64, since: Value, now: Instant) -> bool {
        let starting = matches!(self.dbs.get(db), Some(DbState::Starting));
        if starting && self.mode == Mode::DbUpdates(Some(run)) {
            self.watching_from(db, Some(since));
            true
        } else {
            self.ended(db, None, now);
            false
        }
    }

    /// `_db_updates` reported `db` deleted or created (again): its entries and its
    /// sequence belong to an old incarnation, it ends (also while it is joining).
    pub(super) fn db_gone(&mut self, db: &str, now: Instant) {
        if matches!(
            self.dbs.get(db),
            Some(DbState::Watching(_) | DbState::Starting)
        ) {
            self.drop_db(db, now);
        }
    }

    /// For a database `_db_updates` reported updated: the epoch it is watched under and
    /// the sequence its changes are to be read from (`None`: not watched).
    pub(super) fn catch_up_from(&self, db: &str) -> Option<(u64, Value)> {
        match self.dbs.get(db) {
            Some(DbState::Watching(feed)) => Some((feed.epoch, feed.since.clone()?)),
            _ => None,
        }
    }

    /// The changes of `db` read since [`Inner::catch_up_from`] (under `epoch`), up to
    /// `last_seq`: applied like a feed batch, unless the database ended meanwhile.
    pub(super) fn caught_up(
        &mut self,
        db: &str,
        epoch: u64,
        changes: &[(String, String)],
        last_seq: Value,
    ) -> usize {
        match self.dbs.get_mut(db) {
            Some(DbState::Watching(feed)) if feed.epoch == epoch => feed.since = Some(last_seq),
            _ => return 0,
        }
        self.feed_batch(db, changes)
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
    pub(super) fn store(
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
    pub(super) fn clear(&mut self) {
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
    pub(super) fn feed_batch(&mut self, db: &str, changes: &[(String, String)]) -> usize {
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

//! Token → device index, for dead-token clean-up.
//!
//! A `push_req` from Kamailio names a token but not the device that holds it, so the
//! service keeps its own small CouchDB database, `pusher_tokens`: one doc per
//! (provider, app, token) with the account database and device id, written when a
//! `reg_success` stores or confirms a `push` object. When a provider reports the token
//! dead and the app has `remove_invalid_tokens` on, the device's `push` object is removed —
//! only if it still holds that very token, and (APNs 410) only if the device has not
//! registered again after the moment Apple says the token became invalid.
//!
//! **`registered_at_ms` follows every registration**, not only the first: the 410 rule
//! compares Apple's timestamp with the device's *latest* registration. Writing it on
//! every refresh would cost a CouchDB write per registration, which the device cache
//! exists to avoid, so each process remembers when it last saw and last wrote each
//! token and writes `registered_at_ms` at most once per [`REFRESH_EVERY`] per token
//! (at once when the token moved to another device). The dead-token check takes the
//! later of the stored time and this process's own memory, so on the instance that
//! saw the registration the rule is exact, and across instances the stored time lags
//! the latest registration by less than [`REFRESH_EVERY`] (a device whose token Apple
//! invalidated in that window may lose its push object; it re-registers it within
//! minutes). Phones refresh every few minutes, so this is about one index write per
//! token every 15 minutes instead of one per refresh.
//!
//! **Writes are batched, off the registration's path** (issue #13, P3): a registration
//! only notes what must be written ([`TokenIndex::note`]); one task writes everything
//! noted in one `_bulk_docs` at most every [`BATCH_EVERY`], with the revision this
//! process last wrote (a token new to this process is created without one; if it
//! exists already, that 409 costs a read and a write of that entry). Nothing noted is
//! dropped without a log line: a batch that fails for a transient reason is retried
//! with backoff, one that CouchDB refuses is logged, what is still unwritten at
//! shutdown is logged by [`TokenIndex::flush`], and beyond [`MAX_PENDING`] noted
//! entries a new one is logged and not kept. A dead-token check first waits for its
//! token's pending write ([`FLUSH_WAIT`] at most), so it sees what was noted.
//!
//! The parts: this module (what is noted, waiting on writes, the shutdown flush),
//! `batch` (the task that writes what was noted) and `dead` (removing a dead token
//! from its device).

mod batch;
mod dead;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pusher_core::push_req::TokenType;
use pusher_io::couch::CouchClient;
use serde_json::{Map, Value};
use tokio::sync::{Notify, watch};

use self::batch::batcher;

/// Database of the token index (ours, not Kazoo's).
pub const TOKENS_DB: &str = "pusher_tokens";
/// Bound of the in-memory memory of indexed tokens (emptied when full).
const KNOWN_MAX: usize = 100_000;
/// Longest time `registered_at_ms` is left behind a token's latest registration.
pub const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);
/// Shortest time between two batches: at most this many bulk writes per second, so a
/// stream of registrations costs a fraction of a request each.
pub const BATCH_EVERY: Duration = Duration::from_millis(100);
/// Most entries in one `_bulk_docs`.
const MAX_BULK: usize = 1_000;
/// Most entries waiting to be written.
pub const MAX_PENDING: usize = 100_000;
/// Longest a dead-token check waits for its token's pending write.
pub const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// What this process knows of one token's index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    account_db: String,
    device_id: String,
    /// Latest registration seen here (Unix ms).
    seen_ms: u64,
    /// `registered_at_ms` this process last wrote (Unix ms).
    written_ms: u64,
    /// Revision of the index doc this process last wrote.
    rev: Option<String>,
}

/// An index entry to write: `registered_at_ms` = `at_ms`.
#[derive(Debug, Clone)]
struct Want {
    account_db: String,
    device_id: String,
    at_ms: u64,
}

/// Entries noted and not written yet.
#[derive(Debug, Default)]
struct Queue {
    /// Latest per index doc id.
    pending: HashMap<String, Want>,
    /// Taken by the batch being written.
    in_flight: HashSet<String>,
    /// The batching task runs.
    running: bool,
}

/// Whether a registration of the token at `now_ms` on `(account_db, device_id)` must
/// be written to the index: when this process has not indexed it, the token moved to
/// another device, or the stored time is `refresh_every` old.
fn must_write(
    seen: Option<&Seen>,
    account_db: &str,
    device_id: &str,
    now_ms: u64,
    refresh_every: Duration,
) -> bool {
    match seen {
        None => true,
        Some(s) => {
            s.account_db != account_db
                || s.device_id != device_id
                || now_ms.saturating_sub(s.written_ms) >= refresh_every.as_millis() as u64
        }
    }
}

/// The token index.
#[derive(Debug)]
pub struct TokenIndex {
    shared: Arc<Shared>,
    refresh_every: Duration,
}

/// What the index and its batching task share.
#[derive(Debug)]
struct Shared {
    couch: CouchClient,
    /// By index doc id.
    known: Mutex<HashMap<String, Seen>>,
    queue: Mutex<Queue>,
    /// Something was noted.
    wake: Notify,
    /// Bumped after every batch (written or not), for those waiting on it.
    settled: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// An index stored through `couch`, refreshing `registered_at_ms` every
    /// [`REFRESH_EVERY`].
    pub fn new(couch: CouchClient) -> Self {
        Self::with_refresh_every(couch, REFRESH_EVERY)
    }

    /// An index whose stored `registered_at_ms` lags by less than `refresh_every`
    /// (tests use short intervals).
    pub fn with_refresh_every(couch: CouchClient, refresh_every: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                couch,
                known: Mutex::new(HashMap::new()),
                queue: Mutex::default(),
                wake: Notify::new(),
                settled: watch::Sender::new(0),
            }),
            refresh_every,
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        lock(&self.shared.known)
    }

    /// The latest registration of index entry `id` this process saw, if any.
    fn seen_ms(&self, id: &str) -> Option<u64> {
        self.known().get(id).map(|s| s.seen_ms)
    }

    /// Creates the database if needed (best effort; logged).
    pub async fn ensure_db(&self) {
        if let Err(e) = self.shared.couch.create_db(TOKENS_DB).await {
            tracing::warn!(error.message = %e, "cannot create the pusher_tokens database; dead-token clean-up will not find devices");
        }
    }

    /// Notes that `push` (a device's push object) belongs to `device_id` in
    /// `account_db`, registered now, and returns at once. It is written (by the
    /// batching task) only when this process has not indexed it yet, the owner changed,
    /// or the stored `registered_at_ms` is [`REFRESH_EVERY`] old; otherwise the
    /// registration time is kept in memory. Returns the entry's doc id when it is to
    /// be written.
    pub fn note(
        &self,
        push: &Map<String, Value>,
        account_db: &str,
        device_id: &str,
    ) -> Option<String> {
        let field = |k: &str| push.get(k).and_then(Value::as_str).unwrap_or_default();
        let id = doc_id(field("Token-Type"), field("Token-App"), field("Token-ID"))?;
        let now = crate::clock::unix_ms();
        {
            let mut known = self.known();
            let entry = known.get_mut(&id);
            if !must_write(
                entry.as_deref(),
                account_db,
                device_id,
                now,
                self.refresh_every,
            ) {
                if let Some(s) = entry {
                    s.seen_ms = s.seen_ms.max(now);
                }
                return None;
            }
            // Counted as written from now: the batch writes it or says why not.
            if known.len() >= KNOWN_MAX && !known.contains_key(&id) {
                known.clear();
            }
            let seen = known.entry(id.clone()).or_insert_with(|| Seen {
                account_db: String::new(),
                device_id: String::new(),
                seen_ms: 0,
                written_ms: 0,
                rev: None,
            });
            seen.account_db = account_db.to_string();
            seen.device_id = device_id.to_string();
            seen.seen_ms = seen.seen_ms.max(now);
            seen.written_ms = now;
        }
        let want = Want {
            account_db: account_db.to_string(),
            device_id: device_id.to_string(),
            at_ms: now,
        };
        let spawn = {
            let mut q = lock(&self.shared.queue);
            if q.pending.len() >= MAX_PENDING && !q.pending.contains_key(&id) {
                drop(q);
                self.known().remove(&id);
                tracing::warn!(
                    device_id,
                    pending = MAX_PENDING,
                    "token index writes backed up; this registration is not indexed (the next one of the device is)"
                );
                return None;
            }
            q.pending.insert(id.clone(), want);
            !std::mem::replace(&mut q.running, true)
        };
        if spawn {
            tokio::spawn(batcher(self.shared.clone()));
        }
        self.shared.wake.notify_one();
        Some(id)
    }

    /// [`TokenIndex::note`], then waits (at most [`FLUSH_WAIT`]) until the entry is
    /// written, if it is to be.
    pub async fn record(&self, push: &Map<String, Value>, account_db: &str, device_id: &str) {
        if let Some(id) = self.note(push, account_db, device_id) {
            self.wait_written(&id, FLUSH_WAIT).await;
        }
    }

    /// Whether entry `id` waits to be written or is being written.
    fn is_pending(&self, id: &str) -> bool {
        let q = lock(&self.shared.queue);
        q.pending.contains_key(id) || q.in_flight.contains(id)
    }

    /// Waits (at most `limit`) until entry `id` is no longer waiting to be written.
    async fn wait_written(&self, id: &str, limit: Duration) {
        let mut settled = self.shared.settled.subscribe();
        let _ = tokio::time::timeout(limit, async {
            while self.is_pending(id) {
                if settled.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }

    /// Waits (at most `grace`) until everything noted is written; returns how many
    /// entries are still unwritten (and logs them), for the shutdown.
    pub async fn flush(&self, grace: Duration) -> usize {
        let mut settled = self.shared.settled.subscribe();
        let left = || {
            let q = lock(&self.shared.queue);
            q.pending.len() + q.in_flight.len()
        };
        let _ = tokio::time::timeout(grace, async {
            while left() > 0 {
                if settled.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        let n = left();
        if n > 0 {
            tracing::warn!(
                left = n,
                "token index entries not written before exit; those devices are indexed on their next registration"
            );
        }
        n
    }
}

#[cfg(test)]
mod tests;

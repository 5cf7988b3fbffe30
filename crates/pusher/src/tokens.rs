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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pusher_core::push_req::{PushReq, TokenType};
use pusher_io::couch::{CouchClient, UpdateOutcome};
use serde_json::{Map, Value, json};

/// Database of the token index (ours, not Kazoo's).
pub const TOKENS_DB: &str = "pusher_tokens";
/// Bound of the in-memory memory of indexed tokens (emptied when full).
const KNOWN_MAX: usize = 100_000;
/// Longest time `registered_at_ms` is left behind a token's latest registration.
pub const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);

/// What this process knows of one token's index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    account_db: String,
    device_id: String,
    /// Latest registration seen here (Unix ms).
    seen_ms: u64,
    /// `registered_at_ms` this process last wrote (Unix ms).
    written_ms: u64,
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
    couch: CouchClient,
    /// By index doc id.
    known: Mutex<HashMap<String, Seen>>,
    refresh_every: Duration,
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
            couch,
            known: Mutex::new(HashMap::new()),
            refresh_every,
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest registration of index entry `id` this process saw, if any.
    fn seen_ms(&self, id: &str) -> Option<u64> {
        self.known().get(id).map(|s| s.seen_ms)
    }

    /// Creates the database if needed (best effort; logged).
    pub async fn ensure_db(&self) {
        if let Err(e) = self.couch.create_db(TOKENS_DB).await {
            tracing::warn!(error.message = %e, "cannot create the pusher_tokens database; dead-token clean-up will not find devices");
        }
    }

    /// Records that `push` (a device's push object) belongs to `device_id` in
    /// `account_db`, registered now. Writes only when this process has not indexed it
    /// yet, the owner changed, or the stored `registered_at_ms` is [`REFRESH_EVERY`] old;
    /// otherwise the registration time is kept in memory.
    pub async fn record(&self, push: &Map<String, Value>, account_db: &str, device_id: &str) {
        let field = |k: &str| push.get(k).and_then(Value::as_str).unwrap_or_default();
        let Some(id) = doc_id(field("Token-Type"), field("Token-App"), field("Token-ID")) else {
            return;
        };
        let now = crate::clock::unix_ms();
        let known_before = {
            let mut known = self.known();
            let entry = known.get_mut(&id);
            let known_before = entry.is_some();
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
                return;
            }
            known_before
        };
        let result = self
            .write(&id, account_db, device_id, now, known_before)
            .await;
        match result {
            Ok(()) => {
                let mut known = self.known();
                if known.len() >= KNOWN_MAX && !known.contains_key(&id) {
                    known.clear();
                }
                let seen = known.entry(id).or_insert_with(|| Seen {
                    account_db: String::new(),
                    device_id: String::new(),
                    seen_ms: 0,
                    written_ms: 0,
                });
                seen.account_db = account_db.to_string();
                seen.device_id = device_id.to_string();
                seen.seen_ms = seen.seen_ms.max(now);
                seen.written_ms = now;
            }
            // A conflict means another instance indexed it at the same time: fine.
            Err(pusher_io::couch::Error::Conflict) => {}
            Err(e) => tracing::warn!(error.message = %e, device_id, "cannot index the push token"),
        }
    }

    /// Writes the index entry `id` → `(account_db, device_id)` registered at `now`.
    /// Most tokens are new: unless this process indexed it before, the entry is created
    /// in one request; an existing one is read, and written unless it already says
    /// this (or a later registration).
    async fn write(
        &self,
        id: &str,
        account_db: &str,
        device_id: &str,
        now: u64,
        known_before: bool,
    ) -> Result<(), pusher_io::couch::Error> {
        if !known_before {
            let fresh = json!({"_id": id, "account_db": account_db, "device_id": device_id,
                "registered_at_ms": now});
            match self.couch.put_doc(TOKENS_DB, &fresh).await {
                Ok(_) => return Ok(()),
                Err(pusher_io::couch::Error::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        let existing = self.couch.get_doc(TOKENS_DB, id).await?;
        let mut doc = existing.clone().unwrap_or_else(|| json!({"_id": id}));
        if existing.is_some()
            && doc["account_db"] == account_db
            && doc["device_id"] == device_id
            && doc["registered_at_ms"].as_u64().is_some_and(|t| t >= now)
        {
            return Ok(());
        }
        doc["account_db"] = json!(account_db);
        doc["device_id"] = json!(device_id);
        doc["registered_at_ms"] = json!(now);
        self.couch.put_doc(TOKENS_DB, &doc).await.map(|_| ())
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
        // The later of the stored time and this process's own memory (see the module doc).
        let registered = entry["registered_at_ms"]
            .as_u64()
            .unwrap_or(0)
            .max(self.seen_ms(&id).unwrap_or(0));
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
        self.known().remove(&id);
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

    #[test]
    fn registered_at_is_written_once_per_interval_or_when_the_owner_changes() {
        let every = Duration::from_secs(900);
        let seen = Seen {
            account_db: "db".into(),
            device_id: "dev".into(),
            seen_ms: 5_000,
            written_ms: 1_000,
        };
        assert!(must_write(None, "db", "dev", 1_000, every), "new token");
        assert!(
            !must_write(Some(&seen), "db", "dev", 1_000 + 899_999, every),
            "a refresh within the interval stays in memory"
        );
        assert!(
            must_write(Some(&seen), "db", "dev", 1_000 + 900_000, every),
            "the stored time is refreshed once the interval has passed"
        );
        assert!(must_write(Some(&seen), "db", "other", 1_001, every));
        assert!(must_write(Some(&seen), "db2", "dev", 1_001, every));
        assert!(must_write(Some(&seen), "db", "dev", 1_001, Duration::ZERO));
    }
}

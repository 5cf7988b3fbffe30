//! The legacy `push_resp` of the 2015 `kazoo_query` flow (spec §3.6, §5.5), opt-in.
//!
//! Kamailio configurations of 2015 sent the `push_req` with `kazoo_query` and blocked
//! until the pusher answered `push_resp` on exchange `targeted`, routing key = the
//! request's `Server-ID`, matched by `Msg-ID`; the Erlang pusher answered when the woken
//! device's `reg_success` arrived (it kept the request 20 s by `Token-ID`).
//!
//! The parts, all pure:
//! - [`Waiting::of`] reads what an answer needs from a `push_req` body (`Token-ID`,
//!   `Msg-ID`, `Server-ID`), or `None` when the request cannot be answered;
//! - [`PendingTable`] keeps waiting requests by token, each for its own wait, **bounded**
//!   in total ([`MAX_PENDING`]) and per token ([`MAX_PER_TOKEN`]): a flood of made-up
//!   requests evicts the oldest, it never grows memory without limit. [`PendingTable::take`]
//!   hands out a token's live requests and forgets them, so each is answered once;
//! - [`announcement`] / [`announced_token`]: the body instances exchange to say "this
//!   token registered", since the `reg_success` may reach another instance than the one
//!   holding the request;
//! - [`push_resp`]: the answer's body.
//!
//! Time is passed in (`now`), so the table is tested without a clock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::push_req::{BodyFields, check_token_id};

/// How long a request waits for its device when `legacy_push_resp_wait_ms` is unset:
/// Kamailio's `kazoo_query` timeout of 2015 (and the Erlang pusher's cache time).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// Shortest accepted `legacy_push_resp_wait_ms`.
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// Longest accepted `legacy_push_resp_wait_ms`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most requests waiting at once, all tokens together (≈ 1 KiB each at most).
pub const MAX_PENDING: usize = 10_000;
/// Most requests waiting for one token (several calls ringing one phone).
pub const MAX_PER_TOKEN: usize = 8;
/// Longest `Msg-ID` or `Server-ID` kept (an AMQP short string, the routing key limit).
pub const MAX_ID_LEN: usize = 255;

/// `Event-Category` of an announcement between pusher instances.
pub const ANNOUNCE_CATEGORY: &str = "pusher";
/// `Event-Name` of an announcement between pusher instances.
pub const ANNOUNCE_NAME: &str = "token_registered";

/// `legacy_push_resp_wait_ms` rule: a JSON unsigned integer of ms within 1–60 s, else
/// `None` (then [`DEFAULT_WAIT`]).
pub fn wait(v: Option<&Value>) -> Option<Duration> {
    v.and_then(Value::as_u64)
        .map(Duration::from_millis)
        .filter(|d| (MIN_WAIT..=MAX_WAIT).contains(d))
}

/// A `push_req` that a requester waits on: what its `push_resp` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// `Token-ID`: the device whose registration answers the request.
    pub token_id: String,
    /// `Msg-ID` of the request: Kamailio matches the answer by it.
    pub msg_id: String,
    /// `Server-ID` of the request: the routing key of the answer on `targeted`.
    pub server_id: String,
}

impl Waiting {
    /// Reads a `push_req` body; `None` unless it has a valid `Token-ID`, a `Msg-ID` and a
    /// `Server-ID` usable as a routing key (1–255 bytes, no control characters).
    pub fn of(body: &impl BodyFields) -> Option<Waiting> {
        let id = |name: &str| {
            body.field(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN)
                .filter(|s| !s.chars().any(char::is_control))
                .map(str::to_string)
        };
        let token_id = body.field("Token-ID").and_then(Value::as_str)?;
        check_token_id(token_id).ok()?;
        Some(Waiting {
            token_id: token_id.to_string(),
            msg_id: id("Msg-ID")?,
            server_id: id("Server-ID")?,
        })
    }
}

/// What [`PendingTable::remember`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    /// Added.
    Added,
    /// The same request (token, `Msg-ID`, `Server-ID`) already waits: kept as it was
    /// (a redelivered copy does not extend its wait).
    AlreadyWaiting,
    /// Added, after forgetting the oldest request (of this token, or of all) to stay
    /// within the bounds.
    AddedEvictingOldest,
}

#[derive(Debug)]
struct Entry {
    key: (Instant, u64),
    waiting: Waiting,
}

/// Requests waiting for their device's registration, by `Token-ID`, bounded in number
/// and each forgotten after its wait.
#[derive(Debug)]
pub struct PendingTable {
    max_total: usize,
    max_per_token: usize,
    by_token: HashMap<String, Vec<Entry>>,
    /// (expiry, sequence) → token: the order requests expire or are evicted in.
    order: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

impl Default for PendingTable {
    fn default() -> Self {
        Self::new(MAX_PENDING, MAX_PER_TOKEN)
    }
}

impl PendingTable {
    /// An empty table holding at most `max_total` requests, `max_per_token` per token
    /// (each at least 1).
    pub fn new(max_total: usize, max_per_token: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_token: max_per_token.max(1),
            by_token: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Requests held (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no request is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Remembers `w` until `now + wait`. Expired requests are purged first; then, if
    /// the token or the table is full, its oldest request is forgotten.
    pub fn remember(&mut self, w: Waiting, now: Instant, wait: Duration) -> Remembered {
        self.purge(now);
        let same = |e: &Entry| e.waiting == w;
        if self
            .by_token
            .get(&w.token_id)
            .is_some_and(|v| v.iter().any(same))
        {
            return Remembered::AlreadyWaiting;
        }
        let mut evicted = false;
        let oldest_of_token = self
            .by_token
            .get(&w.token_id)
            .filter(|v| v.len() >= self.max_per_token)
            .and_then(|v| v.iter().map(|e| e.key).min());
        if let Some(key) = oldest_of_token {
            self.forget(key);
            evicted = true;
        }
        while self.order.len() >= self.max_total {
            let Some((&key, _)) = self.order.first_key_value() else {
                break;
            };
            self.forget(key);
            evicted = true;
        }
        self.seq += 1;
        let key = (now + wait, self.seq);
        self.order.insert(key, w.token_id.clone());
        self.by_token
            .entry(w.token_id.clone())
            .or_default()
            .push(Entry { key, waiting: w });
        if evicted {
            Remembered::AddedEvictingOldest
        } else {
            Remembered::Added
        }
    }

    /// The requests still waiting for `token` at `now`, oldest first; all of the token's
    /// requests are forgotten, so a second call (or a second announcement) gets none.
    pub fn take(&mut self, token: &str, now: Instant) -> Vec<Waiting> {
        let Some(mut entries) = self.by_token.remove(token) else {
            return Vec::new();
        };
        entries.sort_by_key(|e| e.key.1);
        entries
            .into_iter()
            .filter_map(|e| {
                self.order.remove(&e.key);
                (e.key.0 > now).then_some(e.waiting)
            })
            .collect()
    }

    /// Forgets every request whose wait is over at `now`; returns how many.
    pub fn purge(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((&key, _)) = self.order.first_key_value() {
            if key.0 > now {
                break;
            }
            self.forget(key);
            n += 1;
        }
        n
    }

    fn forget(&mut self, key: (Instant, u64)) {
        let Some(token) = self.order.remove(&key) else {
            return;
        };
        if let Some(v) = self.by_token.get_mut(&token) {
            v.retain(|e| e.key != key);
            if v.is_empty() {
                self.by_token.remove(&token);
            }
        }
    }
}

/// The legacy `push_resp` answering `w` (spec §1.4 `push_resp`, §2.1 envelope):
/// `Token-ID` and the request's `Msg-ID`, with Kazoo's default headers. It goes to
/// exchange `targeted` with routing key `w.server_id`.
pub fn push_resp(w: &Waiting, node: &str, version: &str) -> Value {
    json!({
        "Event-Category": "notification",
        "Event-Name": "push_resp",
        "Token-ID": w.token_id,
        "Msg-ID": w.msg_id,
        "App-Name": "pusher",
        "App-Version": version,
        "Node": node,
    })
}

/// The body an instance publishes when a device with `token` registered through it.
pub fn announcement(token: &str, node: &str) -> Value {
    json!({
        "Event-Category": ANNOUNCE_CATEGORY,
        "Event-Name": ANNOUNCE_NAME,
        "Token-ID": token,
        "Node": node,
    })
}

/// The token of an [`announcement`] body; `None` for anything else.
pub fn announced_token(body: &Value) -> Option<&str> {
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    if field("Event-Category")? != ANNOUNCE_CATEGORY || field("Event-Name")? != ANNOUNCE_NAME {
        return None;
    }
    field("Token-ID").filter(|t| check_token_id(t).is_ok())
}

#[cfg(test)]
mod tests;

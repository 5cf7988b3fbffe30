//! The redelivery rule: which requests this process has seen, since when, and whether they
//! already got their verdict.
//!
//! A `push_req` that comes back (requeued at a shutdown, redelivered after a lost
//! connection or after another instance died) must not ring a phone after its call is
//! over, and must not ring it twice. Kamailio's messages carry no timestamp, so the
//! evidence is: this process's first sighting of the same request (keyed by `Msg-ID`,
//! else `Call-ID` + `Token-ID`), the requester's `Payload.utc_unix_timestamp_ms` where
//! present, and the `x-pusher-first-seen-ms` header. The push's deadline is counted from
//! the earliest of them. A request whose verdict this process already gave is not sent
//! again. Sightings are kept for [`KEEP`] (longer than any deadline), and at most
//! [`MAX_ENTRIES`] of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pusher_core::push_req::PushReq;

/// How long a sighting is remembered (the longest deadline is 60 s; the queue's TTL too).
pub const KEEP: Duration = Duration::from_secs(120);
/// Most sightings remembered (the oldest go first).
pub const MAX_ENTRIES: usize = 500_000;

/// Where the deadline of a delivery is counted from.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the delivery reached us.
    pub received: Instant,
    /// The broker's `redelivered` flag.
    pub redelivered: bool,
    /// The earliest wall-clock stamp the message carries (Unix ms), if any.
    pub stamped_ms: Option<u64>,
}

impl Arrival {
    /// A fresh delivery with no other evidence.
    pub fn new(received: Instant) -> Self {
        Arrival {
            received,
            redelivered: false,
            stamped_ms: None,
        }
    }
}

/// What the record says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Not handled to the end yet: count its deadline from `origin`.
    Pending {
        /// The earliest evidence of when the request was made.
        origin: Instant,
    },
    /// Already given its verdict here.
    Done,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (Instant, bool)>,
    order: VecDeque<(Instant, String)>,
}

/// The record of sightings.
#[derive(Debug, Default)]
pub struct Seen {
    inner: Mutex<Inner>,
}

/// The record's key of a request.
pub fn key(req: &PushReq) -> String {
    match &req.msg_id {
        Some(id) if !id.is_empty() => format!("m:{id}"),
        _ => format!(
            "c:{}:{}",
            req.call_id.as_deref().unwrap_or(""),
            req.token_id
        ),
    }
}

/// `stamped_ms` (Unix ms) as an instant of this process, given `now` in both clocks; a
/// stamp in the future or absurdly old (clock skew, garbage) is no evidence.
pub fn stamp_instant(stamped_ms: u64, now: Instant, now_ms: u64) -> Option<Instant> {
    let age = Duration::from_millis(now_ms.checked_sub(stamped_ms)?);
    if age > Duration::from_secs(3600) {
        return None;
    }
    now.checked_sub(age)
}

impl Seen {
    /// Records a sighting of `key` arriving as `arrival` (at `now`, `now_ms`) and says
    /// what to do with it.
    pub fn sight(&self, key: &str, arrival: &Arrival, now: Instant, now_ms: u64) -> Sighting {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(now);
        let stamped = arrival
            .stamped_ms
            .and_then(|ms| stamp_instant(ms, now, now_ms));
        let earliest = stamped.map_or(arrival.received, |s| s.min(arrival.received));
        if let Some((first, done)) = inner.entries.get_mut(key) {
            if *done {
                return Sighting::Done;
            }
            *first = (*first).min(earliest);
            return Sighting::Pending { origin: *first };
        }
        if inner.entries.len() >= MAX_ENTRIES
            && let Some((_, old)) = inner.order.pop_front()
        {
            inner.entries.remove(&old);
        }
        inner.entries.insert(key.to_string(), (earliest, false));
        inner.order.push_back((now, key.to_string()));
        Sighting::Pending { origin: earliest }
    }

    /// Marks `key` as given its verdict: a later copy is not sent.
    pub fn done(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, done)) = inner.entries.get_mut(key) {
            *done = true;
        }
    }

    /// Sightings remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < KEEP {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn arrival(received: Instant) -> Arrival {
        Arrival::new(received)
    }

    #[test]
    fn a_second_copy_keeps_the_first_sighting_and_a_done_one_is_not_sent() {
        let seen = Seen::default();
        let t0 = Instant::now();
        assert_eq!(
            seen.sight("m:1", &arrival(t0), t0, NOW_MS),
            Sighting::Pending { origin: t0 }
        );
        let later = t0 + Duration::from_secs(25);
        assert_eq!(
            seen.sight("m:1", &arrival(later), later, NOW_MS + 25_000),
            Sighting::Pending { origin: t0 },
            "the deadline counts from the first sighting"
        );
        seen.done("m:1");
        assert_eq!(
            seen.sight("m:1", &arrival(later), later, NOW_MS),
            Sighting::Done
        );
    }

    #[test]
    fn a_requester_stamp_moves_the_origin_back_but_not_forward() {
        let seen = Seen::default();
        let now = Instant::now() + Duration::from_secs(60);
        let mut a = arrival(now);
        a.stamped_ms = Some(NOW_MS - 30_000);
        let Sighting::Pending { origin } = seen.sight("m:2", &a, now, NOW_MS) else {
            panic!("pending");
        };
        assert_eq!(now.duration_since(origin), Duration::from_secs(30));
        a.stamped_ms = Some(NOW_MS + 5_000);
        assert_eq!(
            seen.sight("m:3", &a, now, NOW_MS),
            Sighting::Pending { origin: now },
            "a stamp from the future is no evidence"
        );
    }

    #[test]
    fn sightings_expire() {
        let seen = Seen::default();
        let t0 = Instant::now();
        seen.sight("m:1", &arrival(t0), t0, NOW_MS);
        seen.done("m:1");
        let much_later = t0 + KEEP + Duration::from_secs(1);
        assert_eq!(
            seen.sight("m:2", &arrival(much_later), much_later, NOW_MS),
            Sighting::Pending { origin: much_later }
        );
        assert_eq!(seen.len(), 1, "m:1 was forgotten");
    }

    #[test]
    fn the_key_is_the_msg_id_else_call_and_token() {
        let mut req = PushReq::from_json(
            &serde_json::json!({"Token-ID": "t", "Token-Type": "apple", "Token-App": "a",
                "Call-ID": "c"}),
            0,
        )
        .expect("valid");
        assert_eq!(key(&req), "c:c:t");
        req.msg_id = Some("m".into());
        assert_eq!(key(&req), "m:m");
    }
}

//! The redelivery rule: when a `push_req` that comes back may still ring a phone.
//!
//! Kamailio suspends the INVITE for about 20 s; a push that reaches the phone after the
//! call is over shows a ghost call. A `push_req` can come back to a pusher after it first
//! arrived: requeued at a shutdown, redelivered after a lost AMQP session, or redelivered
//! to a second instance after the first one died. Its deadline must count from when the
//! request was made, not from its latest arrival.
//!
//! Evidence of a request's age, earliest first:
//! - the requester's own stamp, `Payload.utc_unix_timestamp_ms` (Kazoo's requesters and
//!   `pusherctl` set it; Kamailio does not), and the `x-pusher-first-seen-ms` header a
//!   pusher stamps on a message it hands back;
//! - this process's first sighting of the same request ([`Seen`]), keyed by `Msg-ID`,
//!   `Call-ID` and `Token-ID` together;
//! - the arrival itself.
//!
//! The rule ([`Seen::sight`]):
//! - A delivery the broker did **not** flag `redelivered` is a new publication (the
//!   requester sent it again): it starts a new record and is always handled.
//! - A `redelivered` copy of a request this process already gave its verdict to is not
//!   sent again (`duplicate`). One still pending here counts its deadline from the first
//!   sighting. One never seen here (another instance died holding it) counts from the
//!   earliest stamp it carries, else from now (the broker held it at most one deadline
//!   in the dead instance's window, which bounds how late it can be).
//! - A request whose deadline, counted that way, is already over is not sent (`expired`).
//!
//! Stamps in the future or more than an hour old are no evidence (clock skew, garbage).
//! Records are kept for [`KEEP`] (longer than any deadline and the queue's TTL), at most
//! [`MAX_ENTRIES`] of them, oldest first out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a sighting is remembered (the longest deadline is 60 s; the queue's TTL too).
pub const KEEP: Duration = Duration::from_secs(120);
/// Most sightings remembered (the oldest go first).
pub const MAX_ENTRIES: usize = 200_000;
/// Header a pusher stamps on a message it hands back: when it first saw it (Unix ms).
pub const FIRST_SEEN_HEADER: &str = "x-pusher-first-seen-ms";
/// Header a pusher sets on a push it deferred because its app was at its in-flight limit
/// (value 1): such a push that comes back past its deadline was ours to deliver and is a
/// `timeout`, not `expired`.
pub const DEFERRED_HEADER: &str = "x-pusher-deferred";
/// Stamps older than this are no evidence.
const MAX_STAMP_AGE: Duration = Duration::from_secs(3600);

/// How one delivery of a request reached us.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the delivery reached us.
    pub received: Instant,
    /// The broker's `redelivered` flag.
    pub redelivered: bool,
    /// The earliest wall-clock stamp the message carries (Unix ms), if any.
    pub stamped_ms: Option<u64>,
    /// A pusher deferred it (its app was at its in-flight limit).
    pub deferred: bool,
}

impl Arrival {
    /// A first delivery with no other evidence.
    pub fn fresh(received: Instant) -> Self {
        Arrival {
            received,
            redelivered: false,
            stamped_ms: None,
            deferred: false,
        }
    }
}

/// What the record says of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Handle it, counting its deadline from `origin`.
    Pending {
        /// The earliest evidence of when the request was made.
        origin: Instant,
        /// A redelivered copy that carried no evidence and was never seen here.
        unknown_age: bool,
    },
    /// A redelivered copy of a request already given its verdict here.
    Done,
}

#[derive(Debug, Default)]
struct Inner {
    /// key → (origin, verdict given).
    entries: HashMap<String, (Instant, bool)>,
    /// Insertion order, for expiry.
    order: VecDeque<(Instant, String)>,
}

/// The record of sightings of this process.
#[derive(Debug, Default)]
pub struct Seen {
    inner: Mutex<Inner>,
}

/// The record's key of a request: `Msg-ID`, `Call-ID` and `Token-ID` together, so two
/// requests that share one id (a requester reusing a `Msg-ID`, one call ringing two
/// devices) are never taken for copies of each other.
pub fn key(msg_id: Option<&str>, call_id: Option<&str>, token_id: &str) -> String {
    format!(
        "{}\u{0}{}\u{0}{}",
        msg_id.unwrap_or(""),
        call_id.unwrap_or(""),
        token_id
    )
}

/// `stamped_ms` (Unix ms) as an instant of this process, given `now` in both clocks; a
/// stamp in the future or absurdly old is no evidence.
pub fn stamp_instant(stamped_ms: u64, now: Instant, now_ms: u64) -> Option<Instant> {
    let age = Duration::from_millis(now_ms.checked_sub(stamped_ms)?);
    if age > MAX_STAMP_AGE {
        return None;
    }
    now.checked_sub(age)
}

/// Whether a request made at `origin` is past its `deadline` at `now`.
pub fn expired(origin: Instant, deadline: Duration, now: Instant) -> bool {
    now.saturating_duration_since(origin) >= deadline
}

impl Seen {
    /// Records a delivery of `key` arriving as `arrival` (at `now`, `now_ms`) and says
    /// what to do with it (see the module's rule).
    pub fn sight(&self, key: &str, arrival: &Arrival, now: Instant, now_ms: u64) -> Sighting {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(now);
        let stamped = arrival
            .stamped_ms
            .and_then(|ms| stamp_instant(ms, now, now_ms));
        let evidence = stamped.map_or(arrival.received, |s| s.min(arrival.received));
        if arrival.redelivered
            && let Some((first, done)) = inner.entries.get_mut(key)
        {
            if *done {
                return Sighting::Done;
            }
            *first = (*first).min(evidence);
            return Sighting::Pending {
                origin: *first,
                unknown_age: false,
            };
        }
        if inner.entries.len() >= MAX_ENTRIES
            && let Some((_, old)) = inner.order.pop_front()
        {
            inner.entries.remove(&old);
        }
        if inner
            .entries
            .insert(key.to_string(), (evidence, false))
            .is_none()
        {
            inner.order.push_back((now, key.to_string()));
        }
        Sighting::Pending {
            origin: evidence,
            unknown_age: arrival.redelivered && stamped.is_none(),
        }
    }

    /// Marks `key` as given its verdict: a redelivered copy is not sent again.
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
            if now.saturating_duration_since(*at) < KEEP {
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

    fn redelivered(received: Instant) -> Arrival {
        Arrival {
            redelivered: true,
            ..Arrival::fresh(received)
        }
    }

    fn pending(origin: Instant) -> Sighting {
        Sighting::Pending {
            origin,
            unknown_age: false,
        }
    }

    #[test]
    fn a_redelivered_copy_keeps_the_first_sighting_and_a_done_one_is_not_sent() {
        let seen = Seen::default();
        let t0 = Instant::now();
        assert_eq!(
            seen.sight("k", &Arrival::fresh(t0), t0, NOW_MS),
            pending(t0)
        );
        let later = t0 + Duration::from_secs(25);
        assert_eq!(
            seen.sight("k", &redelivered(later), later, NOW_MS + 25_000),
            pending(t0),
            "the deadline counts from the first sighting"
        );
        assert!(expired(t0, Duration::from_secs(20), later));
        seen.done("k");
        assert_eq!(
            seen.sight("k", &redelivered(later), later, NOW_MS),
            Sighting::Done
        );
    }

    #[test]
    fn a_new_publication_with_the_same_ids_is_a_new_request() {
        let seen = Seen::default();
        let t0 = Instant::now();
        seen.sight("k", &Arrival::fresh(t0), t0, NOW_MS);
        seen.done("k");
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            seen.sight("k", &Arrival::fresh(later), later, NOW_MS + 30_000),
            pending(later),
            "not flagged redelivered: the requester sent it again"
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn a_redelivered_stranger_counts_from_its_stamp_or_is_of_unknown_age() {
        let seen = Seen::default();
        let now = Instant::now() + Duration::from_secs(120);
        assert_eq!(
            seen.sight("a", &redelivered(now), now, NOW_MS),
            Sighting::Pending {
                origin: now,
                unknown_age: true
            }
        );
        let mut stamped = redelivered(now);
        stamped.stamped_ms = Some(NOW_MS - 30_000);
        let Sighting::Pending {
            origin,
            unknown_age,
        } = seen.sight("b", &stamped, now, NOW_MS)
        else {
            panic!("pending");
        };
        assert!(!unknown_age);
        assert_eq!(now.duration_since(origin), Duration::from_secs(30));
        assert!(expired(origin, Duration::from_secs(20), now));
    }

    #[test]
    fn stamps_in_the_future_or_too_old_are_no_evidence() {
        let now = Instant::now() + Duration::from_secs(7200);
        assert_eq!(stamp_instant(NOW_MS + 5_000, now, NOW_MS), None);
        assert_eq!(stamp_instant(NOW_MS - 3_700_000, now, NOW_MS), None);
        assert_eq!(
            stamp_instant(NOW_MS - 1_000, now, NOW_MS),
            Some(now - Duration::from_secs(1))
        );
    }

    #[test]
    fn sightings_expire_and_are_bounded() {
        let seen = Seen::default();
        let t0 = Instant::now();
        seen.sight("k1", &Arrival::fresh(t0), t0, NOW_MS);
        seen.done("k1");
        let much_later = t0 + KEEP + Duration::from_secs(1);
        assert_eq!(
            seen.sight("k1", &redelivered(much_later), much_later, NOW_MS),
            Sighting::Pending {
                origin: much_later,
                unknown_age: true
            },
            "forgotten after KEEP"
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn the_key_takes_all_three_ids() {
        assert_ne!(
            key(Some("m"), Some("c"), "t1"),
            key(Some("m"), Some("c"), "t2")
        );
        assert_ne!(
            key(Some("m"), Some("c1"), "t"),
            key(Some("m"), Some("c2"), "t")
        );
        assert_ne!(key(Some("mc"), None, "t"), key(Some("m"), Some("c"), "t"));
    }
}

//! Retry timing: `Retry-After`, exponential back-off with jitter, and the deadline check.

use std::time::Duration;

/// `Retry-After` as a delay. Only the delay-seconds form is understood; an HTTP-date
/// (rare from APNs/FCM) or garbage gives `None`, and the normal back-off applies.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let value = value?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Saturate absurdly long values; `retry_delay` clamps to its maximum anyway.
    Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)))
}

/// Delay before retry number `attempt` (1-based; 0 counts as 1).
///
/// With `retry_after`, that delay exactly, clamped to `max`. Otherwise
/// `base * 2^(attempt-1)` capped at `max`, then ±20 % jitter from `jitter` (a random
/// number in `[0, 1)`: 0 → −20 %, 0.5 → none, →1 → +20 %; out-of-range values are
/// clamped), and never more than `max`.
pub fn retry_delay(
    attempt: u32,
    retry_after: Option<Duration>,
    base: Duration,
    max: Duration,
    jitter: f64,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(max);
    }
    // Integer nanoseconds throughout: exact, and no float-to-Duration panics.
    let exponent = attempt.saturating_sub(1);
    let nominal = 1u128
        .checked_shl(exponent)
        .and_then(|factor| base.as_nanos().checked_mul(factor));
    let capped = nominal.map_or(max.as_nanos(), |n| n.min(max.as_nanos()));
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.5
    };
    // 800_000..=1_200_000 parts per million: -20 % .. +20 %. The cast cannot overflow.
    let ppm = 800_000 + (400_000.0 * jitter) as u128;
    nanos_capped(capped.saturating_mul(ppm) / 1_000_000, max)
}

/// `nanos` as a duration, at most `max`.
fn nanos_capped(nanos: u128, max: Duration) -> Duration {
    if nanos >= max.as_nanos() {
        return max;
    }
    // Below `max`, so the seconds fit in a u64.
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

/// Whether a retry after `delay`, with `now_elapsed` of the push's time budget already
/// spent, would start before the `deadline` (a retry starting at the deadline is
/// useless: the call has stopped ringing).
pub fn fits_deadline(now_elapsed: Duration, delay: Duration, deadline: Duration) -> bool {
    now_elapsed.saturating_add(delay) < deadline
}

//! Send, classify, retry: the attempts of one push on one client, until the provider
//! gives a verdict or no retry fits the deadline.
//!
//! Classification and retry timing are pure (`pusher_core::outcome`); this module only
//! sends, records the provider latency and sleeps between attempts. The caller bounds the
//! whole loop with the push's hard deadline, so a slow attempt cannot outlive it either.

use std::time::{Duration, Instant, SystemTime};

use pusher_core::apns::ApnsRequest;
use pusher_core::outcome::{self, Outcome};
use pusher_io::{apns, fcm};
use rand::Rng as _;
use serde_json::Value;

use super::clients::Sender;
use crate::metrics::Metrics;

/// First retry delay; doubles per attempt up to [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest pause between attempts (also caps `Retry-After`).
const RETRY_CAP: Duration = Duration::from_secs(5);

/// A provider request built by the core, ready for its client.
#[derive(Debug, Clone)]
pub enum Request {
    /// `POST /3/device/<token>` with headers and payload.
    Apns(ApnsRequest),
    /// `POST <path>` with the FCM v1 message.
    Fcm {
        /// `/v1/projects/<project>/messages:send`.
        path: String,
        /// `{"message": …}`.
        message: Value,
    },
}

/// How the attempts ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Delivered,
    /// The token is dead (APNs 410 `timestamp` when given).
    DeadToken {
        /// Provider reason.
        reason: String,
        /// When the provider learnt it (ms since the epoch).
        timestamp_ms: Option<u64>,
    },
    /// Refused for good.
    Rejected(String),
    /// The next retry would start after the deadline.
    OutOfTime(String),
}

/// Tries `request` on `sender` until a verdict, pausing between attempts while the next
/// one can still start before `deadline` (measured from `received`).
pub async fn run(
    sender: &Sender,
    request: &Request,
    received: Instant,
    deadline: Duration,
    metrics: &Metrics,
    provider: &'static str,
) -> Verdict {
    let mut attempt = 0u32;
    let mut refreshed = false;
    let mut force = false;
    loop {
        attempt += 1;
        if attempt == 1 {
            metrics.dispatch.observe(received.elapsed());
        }
        let sent_at = Instant::now();
        let outcome = send(sender, request, std::mem::take(&mut force)).await;
        metrics
            .provider_request
            .observe(&[provider], sent_at.elapsed());
        let (reason, retry_after) = match outcome {
            Outcome::Delivered { .. } => return Verdict::Delivered,
            Outcome::DeadToken {
                reason,
                timestamp_ms,
            } => {
                return Verdict::DeadToken {
                    reason: reason.into_owned(),
                    timestamp_ms,
                };
            }
            Outcome::Drop { reason } => return Verdict::Rejected(reason.into_owned()),
            // The credential itself was refused: refresh it and retry once, at once.
            Outcome::Unauthorized { reason } if !refreshed && refresh(sender) => {
                tracing::info!(reason = %reason, "provider refused the credential; refreshing it and retrying once");
                refreshed = true;
                force = true;
                continue;
            }
            Outcome::Unauthorized { reason } => return Verdict::Rejected(reason.into_owned()),
            Outcome::Retry {
                reason,
                retry_after,
            } => (reason, retry_after),
        };
        if reason == "ExpiredProviderToken" {
            // APNs wants a new JWT: the next attempt signs one.
            refresh(sender);
        }
        let delay = outcome::retry_delay(
            attempt,
            retry_after,
            RETRY_BASE,
            RETRY_CAP,
            rand::rng().random(),
        );
        if !outcome::fits_deadline(received.elapsed(), delay, deadline) {
            return Verdict::OutOfTime(format!("{reason} (after {attempt} attempts)"));
        }
        tracing::warn!(attempt, reason = %reason, retry_in_ms = delay.as_millis() as u64,
            "push attempt failed; retrying");
        metrics.push_retries.inc(&[provider]);
        tokio::time::sleep(delay).await;
    }
}

/// One request, its answer classified (transport failures are transient).
async fn send(sender: &Sender, request: &Request, force_refresh: bool) -> Outcome {
    let transient = |reason: String| Outcome::Retry {
        reason: reason.into(),
        retry_after: None,
    };
    let permanent = |reason: String| Outcome::Drop {
        reason: reason.into(),
    };
    match (sender, request) {
        (Sender::Apns(client), Request::Apns(req)) => match client.send(req).await {
            Ok(r) => outcome::classify_apns(r.status, &r.body, r.retry_after.as_deref()),
            Err(apns::Error::Transport(e)) => transient(e),
            Err(e) => permanent(e.to_string()),
        },
        (Sender::Fcm(client), Request::Fcm { path, message }) => {
            match client.send(path, message, force_refresh).await {
                Ok(r) => outcome::classify_fcm(r.status, &r.body, r.retry_after.as_deref()),
                Err(fcm::Error::Transport(e) | fcm::Error::Token(e)) => transient(e),
                Err(e) => permanent(e.to_string()),
            }
        }
        _ => permanent("request built for another provider".into()),
    }
}

/// Makes the next attempt use a fresh credential: a new APNs JWT (token auth), or a
/// forced OAuth refresh for FCM (done by the next send). `false` when there is nothing
/// to refresh (an APNs certificate).
fn refresh(sender: &Sender) -> bool {
    match sender {
        Sender::Apns(client) => match client.signer() {
            Some(signer) => {
                signer.expire(SystemTime::now());
                true
            }
            None => false,
        },
        Sender::Fcm(_) => true,
    }
}

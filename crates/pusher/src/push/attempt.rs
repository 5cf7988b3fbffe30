//! Send, classify, retry: the attempts of one push on one client, until the provider
//! gives a verdict or no retry fits the deadline.
//!
//! Classification and retry timing are pure (`pusher_core::outcome`); this module only
//! sends, records the provider latency and sleeps between attempts. The caller bounds the
//! whole loop with the push's hard deadline, so a slow attempt cannot outlive it either.
//!
//! Credentials: a refused one (FCM 401, APNs `403 ExpiredProviderToken`) is renewed by
//! the [`CredentialTag`] its response carried, so the next attempt carries a new access
//! token or JWT, and a burst of pushes refused the same credential renews it once. An
//! OAuth token endpoint that refuses the service account (`oauth:<code>`, a revoked or
//! deleted key) settles the push at once; one that is unreachable, slow or failing is
//! retried like any transport error.

use std::time::{Duration, Instant};

use pusher_core::apns::ApnsRequest;
use pusher_core::outcome::{self, Outcome};
use pusher_io::provider::CredentialTag;
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
    loop {
        attempt += 1;
        if attempt == 1 {
            metrics.dispatch.observe(received.elapsed());
        }
        let sent_at = Instant::now();
        let (outcome, credential) = send(sender, request).await;
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
            // The credential itself was refused (FCM 401): renew it and retry once, at
            // once. Renewing by tag makes a burst of 401s for one token fetch one token.
            Outcome::Unauthorized { reason } if !refreshed && credential.is_some() => {
                tracing::info!(reason = %reason, "provider refused the credential; renewing it and retrying once");
                if let Some(tag) = credential {
                    renew(sender, tag);
                }
                refreshed = true;
                continue;
            }
            Outcome::Unauthorized { reason } => return Verdict::Rejected(reason.into_owned()),
            Outcome::Retry {
                reason,
                retry_after,
            } => (reason, retry_after),
        };
        if reason == "ExpiredProviderToken"
            && let Some(tag) = credential
        {
            // APNs wants a new JWT: the next attempt carries one, signed once for every
            // push that was refused the same token.
            renew(sender, tag);
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

/// One request, its answer classified, and the credential it carried (token auth).
///
/// Transport failures and an unreachable or failing OAuth token endpoint are transient;
/// a token endpoint that refuses the service account (revoked or deleted key) settles
/// the push at once, with the `oauth:<code>` reason.
async fn send(sender: &Sender, request: &Request) -> (Outcome, Option<CredentialTag>) {
    let transient = |reason: String| Outcome::Retry {
        reason: reason.into(),
        retry_after: None,
    };
    let permanent = |reason: String| Outcome::Drop {
        reason: reason.into(),
    };
    match (sender, request) {
        (Sender::Apns(client), Request::Apns(req)) => match client.send(req).await {
            Ok(r) => (
                outcome::classify_apns(r.status, &r.body, r.retry_after.as_deref()),
                r.credential,
            ),
            Err(apns::Error::Transport(e)) => (transient(e), None),
            Err(e) => (permanent(e.to_string()), None),
        },
        (Sender::Fcm(client), Request::Fcm { path, message }) => {
            match client.send(path, message).await {
                Ok(r) => (
                    outcome::classify_fcm(r.status, &r.body, r.retry_after.as_deref()),
                    Some(r.credential),
                ),
                Err(fcm::Error::TokenRefused(reason)) => (permanent(reason), None),
                Err(e @ (fcm::Error::Transport(_) | fcm::Error::Token(_))) => {
                    (transient(e.to_string()), None)
                }
                Err(e) => (permanent(e.to_string()), None),
            }
        }
        _ => (permanent("request built for another provider".into()), None),
    }
}

/// Makes the next attempt carry a fresh credential instead of the refused `tag`: a new
/// APNs JWT (token auth) or a new FCM access token.
fn renew(sender: &Sender, tag: CredentialTag) {
    let renewed = match sender {
        Sender::Apns(client) => client.renew(tag),
        Sender::Fcm(client) => client.renew(tag),
    };
    tracing::debug!(renewed, "credential renewal requested");
}

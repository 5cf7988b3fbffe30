//! Delivery outcomes: one classifier per provider maps an HTTP response to
//! *delivered / retry / refresh auth / dead token / drop*, and pure retry timing
//! (providers.md §1 "Status codes and reasons", §2 "Error codes").
//!
//! [`classify_apns`] and [`classify_fcm`] read the status and error body and keep the
//! provider's reason as a [`Cow`] (borrowed for known reasons) for logs and metric
//! labels. [`retry_delay`] computes exponential back-off with caller-supplied jitter, or
//! honours `Retry-After` ([`parse_retry_after`]); [`fits_deadline`] says whether a retry
//! still makes sense before the call stops ringing. Whether a dead token is actually
//! removed is the caller's decision (opt-in `remove_invalid_tokens`).
//!
//! Layout: this file holds [`Outcome`] and the reason helpers shared by the
//! classifiers; `apns` and `fcm` hold one classifier each, `retry` the timing.

use std::borrow::Cow;
use std::time::Duration;

mod apns;
mod fcm;
mod retry;

pub use apns::{BAD_DEVICE_TOKEN_REASON, classify_apns};
pub use fcm::{classify_fcm, fcm_error_message};
pub use retry::{fits_deadline, parse_retry_after, retry_delay};

/// What to do after a provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the provider.
    Delivered {
        /// FCM message id (last segment of `name`); APNs reports its id in the
        /// `apns-id` response header, which the caller reads.
        id: Option<String>,
    },
    /// Transient failure: try again, after `retry_after` if the provider said so.
    Retry {
        /// Provider reason, or `HTTP <status>`.
        reason: Cow<'static, str>,
        /// From the `Retry-After` header.
        retry_after: Option<Duration>,
    },
    /// FCM 401: the OAuth access token was rejected; refresh it and retry once.
    Unauthorized {
        /// Provider reason, or `HTTP 401`.
        reason: Cow<'static, str>,
    },
    /// The device token is no longer valid.
    DeadToken {
        /// Provider reason.
        reason: Cow<'static, str>,
        /// APNs 410 `timestamp` (ms since epoch): when APNs learnt the token was invalid.
        /// Only delete the token if it was not registered again since.
        timestamp_ms: Option<u64>,
    },
    /// Configuration or request error: log and drop, retrying would not help.
    Drop {
        /// Provider reason, or `HTTP <status>`.
        reason: Cow<'static, str>,
    },
}

impl Outcome {
    /// Metric label: `delivered`, `retry`, `unauthorized`, `dead_token` or `dropped`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Unauthorized { .. } => "unauthorized",
            Outcome::DeadToken { .. } => "dead_token",
            Outcome::Drop { .. } => "dropped",
        }
    }

    /// The reason, if the push was not delivered.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Retry { reason, .. }
            | Outcome::Unauthorized { reason }
            | Outcome::DeadToken { reason, .. }
            | Outcome::Drop { reason } => Some(reason),
        }
    }
}

/// Longest unknown reason kept, in characters.
const MAX_REASON_CHARS: usize = 128;

/// A known reason borrowed from `known`, else the text (bounded).
fn intern(reason: &str, known: &[&'static str]) -> Cow<'static, str> {
    match known.iter().find(|k| **k == reason) {
        Some(k) => Cow::Borrowed(*k),
        None => Cow::Owned(reason.chars().take(MAX_REASON_CHARS).collect()),
    }
}

fn http_reason(status: u16) -> Cow<'static, str> {
    Cow::Owned(format!("HTTP {status}"))
}

/// Whether a provider reason means the credentials were refused (APNs 403 reasons,
/// FCM auth codes, and the OAuth token endpoint's refusal of a service account, which
/// `pusher-io` reports as `oauth:<error>`): the operator must fix the app's certificate,
/// key or service account.
pub fn is_auth_reason(reason: &str) -> bool {
    reason.starts_with("oauth:")
        || matches!(
            reason,
            "BadCertificate"
                | "BadCertificateEnvironment"
                | "ExpiredProviderToken"
                | "Forbidden"
                | "InvalidProviderToken"
                | "MissingProviderToken"
                | "UnrelatedKeyIdInToken"
                | "BadEnvironmentKeyInToken"
                | "TopicDisallowed"
                | "SENDER_ID_MISMATCH"
                | "THIRD_PARTY_AUTH_ERROR"
                | "PERMISSION_DENIED"
                | "UNAUTHENTICATED"
                | "HTTP 401"
                | "HTTP 403"
        )
}

#[cfg(test)]
mod tests;

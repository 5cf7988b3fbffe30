//! APNs: status and `reason` → [`Outcome`] (providers.md §1).

use std::borrow::Cow;

use serde_json::Value;

use super::{Outcome, http_reason, intern, parse_retry_after};

/// APNs reasons known today (providers.md §1); others are kept as sent.
const APNS_REASONS: &[&str] = &[
    "BadCollapseId",
    "BadDeviceToken",
    "BadExpirationDate",
    "BadMessageId",
    "BadPriority",
    "BadTopic",
    "DeviceTokenNotForTopic",
    "DuplicateHeaders",
    "IdleTimeout",
    "InvalidPushType",
    "MissingDeviceToken",
    "MissingTopic",
    "PayloadEmpty",
    "TopicDisallowed",
    "BadCertificate",
    "BadCertificateEnvironment",
    "ExpiredProviderToken",
    "Forbidden",
    "InvalidProviderToken",
    "MissingProviderToken",
    "UnrelatedKeyIdInToken",
    "BadEnvironmentKeyIdInToken",
    "BadPath",
    "MethodNotAllowed",
    "Unregistered",
    "ExpiredToken",
    "PayloadTooLarge",
    "TooManyProviderTokenUpdates",
    "TooManyRequests",
    "InternalServerError",
    "ServiceUnavailable",
    "Shutdown",
];

/// The reason kept for a 400 `BadDeviceToken`: APNs gives it for a malformed token, but
/// also for a sandbox token sent to the production host (or the reverse), which is a
/// configuration error the operator must fix, not a dead token.
pub const BAD_DEVICE_TOKEN_REASON: &str = "BadDeviceToken: check apple.host (a sandbox token sent to production, or the reverse, gets this too)";

/// Classifies an APNs response.
///
/// | status / reason | outcome |
/// |---|---|
/// | 2xx | `Delivered` |
/// | 410 with a reason (`Unregistered`, `ExpiredToken`) | `DeadToken` with `timestamp` |
/// | 400 `BadDeviceToken` (also a sandbox token sent to production or the reverse, so the token is not proven dead) | `Drop` with [`BAD_DEVICE_TOKEN_REASON`] |
/// | 400 `IdleTimeout` (connection closed while idle), 403 `ExpiredProviderToken` (caller regenerates the JWT) | `Retry` |
/// | 429, 5xx | `Retry` with `Retry-After` |
/// | anything else, incl. 400 `DeviceTokenNotForTopic` (may be a wrong topic, so the token is not proven dead) | `Drop` |
///
/// A body without a string `reason` gives the reason `HTTP <status>`; a 410 without a
/// reason is not trusted to mean a dead token and is dropped.
pub fn classify_apns(status: u16, body: &[u8], retry_after: Option<&str>) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Delivered { id: None };
    }
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let sent = parsed
        .as_ref()
        .and_then(|v| v.get("reason"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    let reason = sent.map_or_else(|| http_reason(status), |r| intern(r, APNS_REASONS));
    let retry = |reason| Outcome::Retry {
        reason,
        retry_after: parse_retry_after(retry_after),
    };
    match (status, sent) {
        (410, Some(_)) => Outcome::DeadToken {
            reason,
            timestamp_ms: parsed
                .as_ref()
                .and_then(|v| v.get("timestamp"))
                .and_then(millis),
        },
        // Apple answers this for a host/token environment mismatch too: were it a dead
        // token, a wrong `apple.host` with `remove_invalid_tokens` would strip every device.
        (400, Some("BadDeviceToken")) => Outcome::Drop {
            reason: Cow::Borrowed(BAD_DEVICE_TOKEN_REASON),
        },
        (400, Some("IdleTimeout")) | (403, Some("ExpiredProviderToken")) => retry(reason),
        (429, _) | (500..=599, _) => retry(reason),
        _ => Outcome::Drop { reason },
    }
}

/// APNs `timestamp`: a JSON number (or digit string) of milliseconds.
fn millis(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

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

use std::borrow::Cow;
use std::time::Duration;

use serde_json::Value;

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

/// FCM error codes and canonical statuses known today (providers.md §2).
const FCM_CODES: &[&str] = &[
    "UNSPECIFIED_ERROR",
    "INVALID_ARGUMENT",
    "UNREGISTERED",
    "SENDER_ID_MISMATCH",
    "QUOTA_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
    "THIRD_PARTY_AUTH_ERROR",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAUTHENTICATED",
    "DEADLINE_EXCEEDED",
];

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

/// Classifies an APNs response.
///
/// | status / reason | outcome |
/// |---|---|
/// | 2xx | `Delivered` |
/// | 410 with a reason (`Unregistered`, `ExpiredToken`) | `DeadToken` with `timestamp` |
/// | 400 `BadDeviceToken` | `DeadToken` (no timestamp) |
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
        (400, Some("BadDeviceToken")) => Outcome::DeadToken {
            reason,
            timestamp_ms: None,
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

/// Classifies an FCM HTTP v1 response.
///
/// Both the canonical `error.status` and the FCM-specific `error.details[].errorCode`
/// are read; the latter decides first.
///
/// | code / status | outcome |
/// |---|---|
/// | 2xx | `Delivered` with the id from `name` |
/// | `UNREGISTERED` | `DeadToken` |
/// | `INVALID_ARGUMENT` whose message mentions "registration token" | `DeadToken` |
/// | `SENDER_ID_MISMATCH`, `THIRD_PARTY_AUTH_ERROR`, `PERMISSION_DENIED`, other `INVALID_ARGUMENT` | `Drop` |
/// | `UNAUTHENTICATED`, HTTP 401 | `Unauthorized` |
/// | `UNAVAILABLE`, `INTERNAL`, `QUOTA_EXCEEDED`, `RESOURCE_EXHAUSTED`, HTTP 429, 5xx | `Retry` with `Retry-After` |
/// | anything else | `Drop` with the code, or `HTTP <status>` |
pub fn classify_fcm(status: u16, body: &[u8], retry_after: Option<&str>) -> Outcome {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    if (200..300).contains(&status) {
        let id = parsed
            .as_ref()
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
            .and_then(|name| name.rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        return Outcome::Delivered { id };
    }
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let canonical = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let codes: Vec<&str> = error
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .map(|details| {
            details
                .iter()
                .filter_map(|d| d.get("errorCode").and_then(Value::as_str))
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let has = |code: &str| codes.contains(&code) || canonical == Some(code);
    let found = |code: &'static str| has(code).then_some(Cow::Borrowed(code));
    let retry = |reason| Outcome::Retry {
        reason,
        retry_after: parse_retry_after(retry_after),
    };

    if let Some(reason) = found("UNREGISTERED") {
        return Outcome::DeadToken {
            reason,
            timestamp_ms: None,
        };
    }
    for code in ["SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR"] {
        if let Some(reason) = found(code) {
            return Outcome::Drop { reason };
        }
    }
    if let Some(reason) = found("INVALID_ARGUMENT") {
        return if message.to_ascii_lowercase().contains("registration token") {
            Outcome::DeadToken {
                reason,
                timestamp_ms: None,
            }
        } else {
            Outcome::Drop { reason }
        };
    }
    if has("UNAUTHENTICATED") || status == 401 {
        return Outcome::Unauthorized {
            reason: found("UNAUTHENTICATED").unwrap_or_else(|| http_reason(status)),
        };
    }
    if let Some(reason) = found("PERMISSION_DENIED") {
        return Outcome::Drop { reason };
    }
    for code in [
        "QUOTA_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "INTERNAL",
    ] {
        if let Some(reason) = found(code) {
            return retry(reason);
        }
    }
    let reason = codes
        .first()
        .copied()
        .or(canonical)
        .map_or_else(|| http_reason(status), |c| intern(c, FCM_CODES));
    if status == 429 || (500..=599).contains(&status) {
        retry(reason)
    } else {
        Outcome::Drop { reason }
    }
}

/// `error.message` of an FCM error body, for logs (bounded to 300 characters).
pub fn fcm_error_message(body: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<Value>(body).ok()?;
    let message = v.get("error")?.get("message")?.as_str()?;
    Some(message.chars().take(300).collect())
}

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

/// Whether a provider reason means the credentials were refused (APNs 403 reasons,
/// FCM auth codes): the operator must fix the app's certificate, key or service account.
pub fn is_auth_reason(reason: &str) -> bool {
    matches!(
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
mod tests {
    use super::*;

    fn retry(reason: &str, after: Option<u64>) -> Outcome {
        Outcome::Retry {
            reason: Cow::Owned(reason.to_string()),
            retry_after: after.map(Duration::from_secs),
        }
    }

    fn drop(reason: &str) -> Outcome {
        Outcome::Drop {
            reason: Cow::Owned(reason.to_string()),
        }
    }

    fn dead(reason: &str, ts: Option<u64>) -> Outcome {
        Outcome::DeadToken {
            reason: Cow::Owned(reason.to_string()),
            timestamp_ms: ts,
        }
    }

    fn apns_body(reason: &str) -> Vec<u8> {
        format!(r#"{{"reason":"{reason}"}}"#).into_bytes()
    }

    #[test]
    fn apns_table() {
        let cases: Vec<(u16, Vec<u8>, Option<&str>, Outcome)> = vec![
            (200, vec![], None, Outcome::Delivered { id: None }),
            (
                410,
                br#"{"reason":"Unregistered","timestamp":1717000000000}"#.to_vec(),
                None,
                dead("Unregistered", Some(1_717_000_000_000)),
            ),
            (
                410,
                br#"{"reason":"ExpiredToken","timestamp":"1717000000001"}"#.to_vec(),
                None,
                dead("ExpiredToken", Some(1_717_000_000_001)),
            ),
            (
                410,
                apns_body("Unregistered"),
                None,
                dead("Unregistered", None),
            ),
            (410, b"oops".to_vec(), None, drop("HTTP 410")),
            (
                400,
                apns_body("BadDeviceToken"),
                None,
                dead("BadDeviceToken", None),
            ),
            (
                400,
                apns_body("DeviceTokenNotForTopic"),
                None,
                drop("DeviceTokenNotForTopic"),
            ),
            (
                429,
                apns_body("TooManyRequests"),
                Some("30"),
                retry("TooManyRequests", Some(30)),
            ),
            (
                429,
                apns_body("TooManyProviderTokenUpdates"),
                None,
                retry("TooManyProviderTokenUpdates", None),
            ),
            (
                500,
                apns_body("InternalServerError"),
                None,
                retry("InternalServerError", None),
            ),
            (
                503,
                apns_body("ServiceUnavailable"),
                Some(" 5 "),
                retry("ServiceUnavailable", Some(5)),
            ),
            (503, apns_body("Shutdown"), None, retry("Shutdown", None)),
            (
                502,
                b"<html>bad gateway</html>".to_vec(),
                None,
                retry("HTTP 502", None),
            ),
            (504, vec![], Some("soon"), retry("HTTP 504", None)),
            (
                403,
                apns_body("ExpiredProviderToken"),
                None,
                retry("ExpiredProviderToken", None),
            ),
            (
                400,
                apns_body("IdleTimeout"),
                None,
                retry("IdleTimeout", None),
            ),
            (400, apns_body("BadTopic"), None, drop("BadTopic")),
            (
                403,
                apns_body("BadCertificate"),
                None,
                drop("BadCertificate"),
            ),
            (
                403,
                apns_body("BadCertificateEnvironment"),
                None,
                drop("BadCertificateEnvironment"),
            ),
            (
                403,
                apns_body("InvalidProviderToken"),
                None,
                drop("InvalidProviderToken"),
            ),
            (400, apns_body("MissingTopic"), None, drop("MissingTopic")),
            (
                413,
                apns_body("PayloadTooLarge"),
                None,
                drop("PayloadTooLarge"),
            ),
            (
                400,
                apns_body("TopicDisallowed"),
                None,
                drop("TopicDisallowed"),
            ),
            (
                400,
                apns_body("InvalidPushType"),
                None,
                drop("InvalidPushType"),
            ),
            (400, apns_body("SomethingNew"), None, drop("SomethingNew")),
            (403, br#"{"reason":""}"#.to_vec(), None, drop("HTTP 403")),
            (404, br#"{"reason":5}"#.to_vec(), None, drop("HTTP 404")),
            (302, vec![], None, drop("HTTP 302")),
        ];
        for (status, body, after, want) in cases {
            assert_eq!(
                classify_apns(status, &body, after),
                want,
                "{status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn known_reasons_are_borrowed() {
        let Outcome::Drop { reason } = classify_apns(400, &apns_body("BadTopic"), None) else {
            panic!("expected drop")
        };
        assert!(matches!(reason, Cow::Borrowed("BadTopic")));
        let long = "R".repeat(1000);
        let Outcome::Drop { reason } = classify_apns(400, &apns_body(&long), None) else {
            panic!("expected drop")
        };
        assert_eq!(reason.len(), 128);
        let Outcome::Retry { reason, .. } =
            classify_fcm(503, br#"{"error":{"status":"UNAVAILABLE"}}"#, None)
        else {
            panic!("expected retry")
        };
        assert!(matches!(reason, Cow::Borrowed("UNAVAILABLE")));
    }

    fn fcm_body(code: u16, status: &str, message: &str, error_code: Option<&str>) -> Vec<u8> {
        let details = match error_code {
            Some(c) => serde_json::json!([
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}
            ]),
            None => serde_json::json!([]),
        };
        serde_json::json!({"error": {"code": code, "message": message, "status": status, "details": details}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn fcm_table() {
        let unauth = |r: &str| Outcome::Unauthorized {
            reason: Cow::Owned(r.to_string()),
        };
        let cases: Vec<(u16, Vec<u8>, Option<&str>, Outcome)> = vec![
            (
                200,
                br#"{"name":"projects/my-project/messages/0:1500415314455276%31bd1c9631bd1c96"}"#
                    .to_vec(),
                None,
                Outcome::Delivered {
                    id: Some("0:1500415314455276%31bd1c9631bd1c96".into()),
                },
            ),
            (200, b"{}".to_vec(), None, Outcome::Delivered { id: None }),
            (
                404,
                fcm_body(
                    404,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                    Some("UNREGISTERED"),
                ),
                None,
                dead("UNREGISTERED", None),
            ),
            (
                400,
                fcm_body(
                    400,
                    "INVALID_ARGUMENT",
                    "The registration token is not a valid FCM registration token",
                    Some("INVALID_ARGUMENT"),
                ),
                None,
                dead("INVALID_ARGUMENT", None),
            ),
            (
                400,
                fcm_body(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid value at 'message.data[0].value' (TYPE_STRING), 1",
                    None,
                ),
                None,
                drop("INVALID_ARGUMENT"),
            ),
            (
                401,
                fcm_body(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                    None,
                ),
                None,
                unauth("UNAUTHENTICATED"),
            ),
            (401, vec![], None, unauth("HTTP 401")),
            (
                401,
                fcm_body(
                    401,
                    "UNAUTHENTICATED",
                    "Auth error from APNS",
                    Some("THIRD_PARTY_AUTH_ERROR"),
                ),
                None,
                drop("THIRD_PARTY_AUTH_ERROR"),
            ),
            (
                403,
                fcm_body(
                    403,
                    "PERMISSION_DENIED",
                    "SenderId mismatch",
                    Some("SENDER_ID_MISMATCH"),
                ),
                None,
                drop("SENDER_ID_MISMATCH"),
            ),
            (
                403,
                fcm_body(403, "PERMISSION_DENIED", "Permission denied", None),
                None,
                drop("PERMISSION_DENIED"),
            ),
            (
                503,
                fcm_body(
                    503,
                    "UNAVAILABLE",
                    "The service is currently unavailable.",
                    Some("UNAVAILABLE"),
                ),
                Some("10"),
                retry("UNAVAILABLE", Some(10)),
            ),
            (
                500,
                fcm_body(500, "INTERNAL", "Internal error", Some("INTERNAL")),
                None,
                retry("INTERNAL", None),
            ),
            (
                429,
                fcm_body(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Quota exceeded",
                    Some("QUOTA_EXCEEDED"),
                ),
                None,
                retry("QUOTA_EXCEEDED", None),
            ),
            (
                429,
                fcm_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded", None),
                Some("60"),
                retry("RESOURCE_EXHAUSTED", Some(60)),
            ),
            (429, vec![], None, retry("HTTP 429", None)),
            (
                502,
                b"<html>".to_vec(),
                Some("3"),
                retry("HTTP 502", Some(3)),
            ),
            (
                504,
                fcm_body(504, "DEADLINE_EXCEEDED", "", None),
                None,
                retry("DEADLINE_EXCEEDED", None),
            ),
            (404, b"Not Found".to_vec(), None, drop("HTTP 404")),
            (
                400,
                fcm_body(400, "FAILED_PRECONDITION", "x", Some("UNSPECIFIED_ERROR")),
                None,
                drop("UNSPECIFIED_ERROR"),
            ),
            (
                418,
                br#"{"error":{"status":"TEAPOT"}}"#.to_vec(),
                None,
                drop("TEAPOT"),
            ),
        ];
        for (status, body, after, want) in cases {
            assert_eq!(
                classify_fcm(status, &body, after),
                want,
                "{status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn fcm_detail_code_anywhere_in_details() {
        // A BadRequest detail first, the FCM error second.
        let body = br#"{"error":{"code":404,"status":"NOT_FOUND","details":[
            {"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[]},
            {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert_eq!(classify_fcm(404, body, None), dead("UNREGISTERED", None));
        assert_eq!(
            fcm_error_message(&fcm_body(400, "INVALID_ARGUMENT", "bad thing", None)).as_deref(),
            Some("bad thing")
        );
        assert_eq!(fcm_error_message(b"nope"), None);
    }

    #[test]
    fn labels() {
        assert_eq!(Outcome::Delivered { id: None }.label(), "delivered");
        assert_eq!(retry("x", None).label(), "retry");
        assert_eq!(
            Outcome::Unauthorized {
                reason: Cow::Borrowed("x")
            }
            .label(),
            "unauthorized"
        );
        assert_eq!(dead("x", None).label(), "dead_token");
        assert_eq!(drop("x").label(), "dropped");
        assert_eq!(drop("BadTopic").reason(), Some("BadTopic"));
        assert_eq!(Outcome::Delivered { id: None }.reason(), None);
    }

    #[test]
    fn retry_after_header() {
        assert_eq!(
            parse_retry_after(Some("120")),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(Some(" 0 ")), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(Some("99999999999999999999999")),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "abc"] {
            assert_eq!(parse_retry_after(Some(bad)), None, "{bad}");
        }
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn exponential_backoff_with_jitter() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let ms = |attempt, jitter| retry_delay(attempt, None, base, max, jitter).as_millis();
        assert_eq!(ms(1, 0.5), 100);
        assert_eq!(ms(2, 0.5), 200);
        assert_eq!(ms(3, 0.5), 400);
        assert_eq!(ms(0, 0.5), 100);
        assert_eq!(ms(1, 0.0), 80);
        assert_eq!(ms(3, 0.0), 320);
        assert!((479..=480).contains(&ms(3, 0.999_999_9)));
        // Capped at max, and jitter never pushes past it.
        assert_eq!(ms(7, 0.5), 5000);
        assert_eq!(ms(7, 0.99), 5000);
        assert_eq!(ms(7, 0.0), 4000);
        assert_eq!(ms(40, 0.5), 5000);
        assert_eq!(ms(u32::MAX, 0.5), 5000);
        // Bad jitter values cannot panic.
        assert_eq!(ms(1, f64::NAN), 100);
        assert_eq!(ms(1, -3.0), 80);
        assert_eq!(ms(1, 7.0), 120);
        // Bounds for every attempt and jitter.
        for attempt in 1..70 {
            for j in [0.0, 0.25, 0.5, 0.75, 0.999] {
                let d = retry_delay(attempt, None, base, max, j);
                let nominal = base
                    .checked_mul(1 << (attempt - 1).min(31))
                    .unwrap_or(max)
                    .min(max);
                assert!(d <= max, "{attempt} {j}");
                assert!(
                    d >= nominal.mul_f64(0.8) - Duration::from_micros(1),
                    "{attempt} {j}"
                );
            }
        }
        // Extreme bases saturate instead of overflowing.
        assert_eq!(
            retry_delay(64, None, Duration::MAX, Duration::MAX, 0.5),
            Duration::MAX
        );
        assert_eq!(
            retry_delay(3, None, Duration::ZERO, max, 0.5),
            Duration::ZERO
        );
    }

    #[test]
    fn retry_after_wins() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(20);
        assert_eq!(
            retry_delay(5, Some(Duration::from_secs(3)), base, max, 0.9),
            Duration::from_secs(3)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::ZERO), base, max, 0.9),
            Duration::ZERO
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3600)), base, max, 0.1),
            max
        );
    }

    #[test]
    fn deadlines() {
        let s = Duration::from_secs;
        assert!(fits_deadline(s(1), s(2), s(5)));
        assert!(!fits_deadline(s(3), s(2), s(5)));
        assert!(!fits_deadline(s(4), s(2), s(5)));
        assert!(fits_deadline(Duration::ZERO, Duration::ZERO, s(1)));
        assert!(!fits_deadline(Duration::MAX, s(1), s(5)));
    }
    #[test]
    fn auth_reasons_are_recognised() {
        for r in [
            "InvalidProviderToken",
            "BadCertificate",
            "SENDER_ID_MISMATCH",
            "HTTP 403",
        ] {
            assert!(is_auth_reason(r), "{r}");
        }
        for r in ["BadTopic", "Unregistered", "UNAVAILABLE", "HTTP 500", ""] {
            assert!(!is_auth_reason(r), "{r}");
        }
    }
}

//! FCM HTTP v1: status, `error.status` and `error.details[].errorCode` → [`Outcome`]
//! (providers.md §2).

use std::borrow::Cow;

use serde_json::Value;

use super::{Outcome, http_reason, intern, parse_retry_after};

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

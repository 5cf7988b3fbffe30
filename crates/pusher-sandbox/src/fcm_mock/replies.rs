//! What the send endpoint answers: scripted [`FcmReply`]s, the default reply chosen by a
//! token's prefix, Google's error body, and the [`FcmReceived`] record of each request.

use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::FCM_ERROR_TYPE;
use crate::mock_util::{json_response, system_time_ms};

/// A scripted FCM send reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FcmReply {
    /// 200 `{"name": "projects/<p>/messages/<id>"}`.
    Ok,
    /// A Google error body.
    Error {
        /// HTTP status.
        http: u16,
        /// Canonical status (`error.status`), e.g. `NOT_FOUND`.
        status: String,
        /// FCM code (`error.details[].errorCode`), e.g. `UNREGISTERED`.
        error_code: Option<String>,
        /// `error.message`.
        message: String,
        /// `Retry-After` header, in seconds.
        retry_after: Option<u64>,
    },
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<FcmReply>),
}

impl FcmReply {
    /// An error reply without `Retry-After`.
    pub fn error(http: u16, status: &str, error_code: Option<&str>, message: &str) -> FcmReply {
        FcmReply::Error {
            http,
            status: status.to_string(),
            error_code: error_code.map(str::to_string),
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// 404 `NOT_FOUND` / `UNREGISTERED`.
    pub fn unregistered() -> FcmReply {
        FcmReply::error(
            404,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        )
    }

    /// 400 `INVALID_ARGUMENT`: the registration token is malformed.
    pub fn invalid_registration() -> FcmReply {
        FcmReply::error(
            400,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The registration token is not a valid FCM registration token",
        )
    }

    /// 403 `PERMISSION_DENIED` / `SENDER_ID_MISMATCH`.
    pub fn sender_id_mismatch() -> FcmReply {
        FcmReply::error(
            403,
            "PERMISSION_DENIED",
            Some("SENDER_ID_MISMATCH"),
            "SenderId mismatch",
        )
    }

    /// 503 `UNAVAILABLE`.
    pub fn unavailable() -> FcmReply {
        FcmReply::error(
            503,
            "UNAVAILABLE",
            Some("UNAVAILABLE"),
            "The service is currently unavailable.",
        )
    }

    /// 500 `INTERNAL`.
    pub fn internal() -> FcmReply {
        FcmReply::error(
            500,
            "INTERNAL",
            Some("INTERNAL"),
            "Internal error encountered.",
        )
    }

    /// 429 `RESOURCE_EXHAUSTED` / `QUOTA_EXCEEDED`.
    pub fn quota_exceeded() -> FcmReply {
        FcmReply::error(
            429,
            "RESOURCE_EXHAUSTED",
            Some("QUOTA_EXCEEDED"),
            "Quota exceeded for quota metric 'Messages' and limit 'Messages per minute'.",
        )
    }

    /// The same reply with a `Retry-After` (seconds); no effect on `Ok`.
    pub fn with_retry_after(self, secs: u64) -> FcmReply {
        match self {
            FcmReply::Error {
                http,
                status,
                error_code,
                message,
                ..
            } => FcmReply::Error {
                http,
                status,
                error_code,
                message,
                retry_after: Some(secs),
            },
            FcmReply::Delay(d, inner) => FcmReply::Delay(d, Box::new(inner.with_retry_after(secs))),
            FcmReply::Ok => FcmReply::Ok,
        }
    }

    /// This reply after `delay`.
    pub fn delayed(self, delay: Duration) -> FcmReply {
        FcmReply::Delay(delay, Box::new(self))
    }

    /// Total delay and the final (non-delay) reply.
    pub(super) fn flatten(&self) -> (Duration, &FcmReply) {
        match self {
            FcmReply::Delay(d, inner) => {
                let (more, last) = inner.flatten();
                (*d + more, last)
            }
            other => (Duration::ZERO, other),
        }
    }
}

/// One send request the mock received.
#[derive(Debug, Clone)]
pub struct FcmReceived {
    /// Project from the URL.
    pub project: String,
    /// `message.token` (empty when absent, e.g. topic messages or unparsable bodies).
    pub token: String,
    /// The whole `message` object (null when the body had none).
    pub message: Value,
    /// `validate_only` from the body.
    pub validate_only: bool,
    /// `client_email` of the account whose access token was used, if it was valid.
    pub client_email: Option<String>,
    /// HTTP status the mock answered.
    pub status: u16,
    /// Canonical error status (`error.status`) of an error reply.
    pub error_status: Option<String>,
    /// FCM error code (`details[].errorCode`) of an error reply.
    pub error_code: Option<String>,
    /// When it arrived.
    pub at: SystemTime,
}

impl FcmReceived {
    /// JSON form (used by `/_mock/received`).
    pub fn to_json(&self) -> Value {
        json!({
            "project": self.project,
            "token": self.token,
            "message": self.message,
            "validate_only": self.validate_only,
            "client_email": self.client_email,
            "status": self.status,
            "error_status": self.error_status,
            "error_code": self.error_code,
            "at_ms": system_time_ms(self.at),
        })
    }
}

/// Google's error body; `details` holds the FCM code (if any) and `extra` details.
pub(super) fn google_error(
    http: u16,
    status: &str,
    error_code: Option<&str>,
    message: &str,
    extra: Vec<Value>,
) -> Response<Full<Bytes>> {
    let mut details: Vec<Value> = error_code
        .map(|c| json!({ "@type": FCM_ERROR_TYPE, "errorCode": c }))
        .into_iter()
        .collect();
    details.extend(extra);
    let mut error = json!({ "code": http, "message": message, "status": status });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json_response(http, &json!({ "error": error }))
}

/// Replies chosen by the registration token's prefix when no script is set.
pub(super) fn default_reply(token: &str, slow_delay: Duration) -> FcmReply {
    if token.starts_with("dead") {
        FcmReply::unregistered()
    } else if token.starts_with("bad") {
        FcmReply::invalid_registration()
    } else if token.starts_with("unavailable") {
        FcmReply::unavailable()
    } else if token.starts_with("slow") {
        FcmReply::Ok.delayed(slow_delay)
    } else {
        FcmReply::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_pick_the_documented_replies() {
        let slow = Duration::from_millis(1);
        assert_eq!(default_reply("dead1", slow), FcmReply::unregistered());
        assert_eq!(
            default_reply("bad1", slow),
            FcmReply::invalid_registration()
        );
        assert_eq!(default_reply("unavailable", slow), FcmReply::unavailable());
        assert_eq!(default_reply("slow", slow), FcmReply::Ok.delayed(slow));
        assert_eq!(default_reply("ok", slow), FcmReply::Ok);
    }
}

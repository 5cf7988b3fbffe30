//! What the APNs mock answers and records: scripted [`Reply`]s, the default reply chosen
//! by a token's prefix, and the [`ApnsReceived`] record with its [`ApnsAuth`].

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::mock_util::{now_ms, system_time_ms};

/// A scripted APNs reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200 with an `apns-id`.
    Ok,
    /// An error status with `{"reason": …}` (plus `"timestamp"` when given).
    Status {
        /// HTTP status.
        status: u16,
        /// APNs `reason`.
        reason: String,
        /// `timestamp` (ms since the epoch) in the body, as on 410.
        timestamp_ms: Option<u64>,
        /// `Retry-After` header, in seconds.
        retry_after: Option<u64>,
    },
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// An error reply without timestamp or `Retry-After`.
    pub fn status(status: u16, reason: &str) -> Reply {
        Reply::Status {
            status,
            reason: reason.to_string(),
            timestamp_ms: None,
            retry_after: None,
        }
    }

    /// 410 `Unregistered` with `timestamp` = `timestamp_ms`.
    pub fn unregistered(timestamp_ms: u64) -> Reply {
        Reply::Status {
            status: 410,
            reason: "Unregistered".to_string(),
            timestamp_ms: Some(timestamp_ms),
            retry_after: None,
        }
    }

    /// 400 `BadDeviceToken`.
    pub fn bad_device_token() -> Reply {
        Reply::status(400, "BadDeviceToken")
    }

    /// 503 `ServiceUnavailable`.
    pub fn service_unavailable() -> Reply {
        Reply::status(503, "ServiceUnavailable")
    }

    /// 429 `TooManyRequests`.
    pub fn too_many_requests() -> Reply {
        Reply::status(429, "TooManyRequests")
    }

    /// This reply after `delay`.
    pub fn delayed(self, delay: Duration) -> Reply {
        Reply::Delay(delay, Box::new(self))
    }

    /// Total delay and the final (non-delay) reply.
    pub(super) fn flatten(&self) -> (Duration, &Reply) {
        match self {
            Reply::Delay(d, inner) => {
                let (more, last) = inner.flatten();
                (*d + more, last)
            }
            other => (Duration::ZERO, other),
        }
    }
}

/// How a recorded request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApnsAuth {
    /// A verified TLS client certificate.
    ClientCert {
        /// Subject CN of the certificate.
        subject_cn: String,
    },
    /// A valid ES256 provider token.
    Token {
        /// JWT `iss`.
        team_id: String,
        /// JWT `kid`.
        key_id: String,
    },
    /// Neither (the request was refused with 403, or failed before the auth check).
    None,
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct ApnsReceived {
    /// Device token from the path (empty on `BadPath`).
    pub token: String,
    /// Request headers, lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body as JSON (a JSON string holding the raw text if it was not JSON; null if empty).
    pub body: Value,
    /// How the request was authenticated.
    pub auth: ApnsAuth,
    /// HTTP status the mock answered.
    pub status: u16,
    /// APNs `reason` of an error reply.
    pub reason: Option<String>,
    /// `apns-id` of the response.
    pub apns_id: String,
    /// When it arrived.
    pub at: SystemTime,
}

impl ApnsReceived {
    /// First value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// JSON form (used by the demo's `/_mock/received`).
    pub fn to_json(&self) -> Value {
        let auth = match &self.auth {
            ApnsAuth::ClientCert { subject_cn } => json!({"client_cert": subject_cn}),
            ApnsAuth::Token { team_id, key_id } => {
                json!({"token": {"team_id": team_id, "key_id": key_id}})
            }
            ApnsAuth::None => Value::Null,
        };
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "token": self.token,
            "headers": headers,
            "body": self.body,
            "auth": auth,
            "status": self.status,
            "reason": self.reason,
            "apns_id": self.apns_id,
            "at_ms": system_time_ms(self.at),
        })
    }
}

/// Replies chosen by the token's prefix when no script is set.
pub(super) fn default_reply(token: &str, slow_delay: Duration) -> Reply {
    if token.starts_with("dead") {
        Reply::unregistered(now_ms())
    } else if token.starts_with("bad") {
        Reply::bad_device_token()
    } else if token.starts_with("unavailable") {
        Reply::service_unavailable()
    } else if token.starts_with("slow") {
        Reply::Ok.delayed(slow_delay)
    } else {
        Reply::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_adds_nested_delays() {
        let r = Reply::bad_device_token()
            .delayed(Duration::from_millis(5))
            .delayed(Duration::from_millis(7));
        let (d, last) = r.flatten();
        assert_eq!(d, Duration::from_millis(12));
        assert_eq!(last, &Reply::bad_device_token());
    }

    #[test]
    fn prefixes_pick_the_documented_replies() {
        let slow = Duration::from_millis(3);
        assert!(matches!(
            default_reply("dead01", slow),
            Reply::Status { status: 410, .. }
        ));
        assert_eq!(default_reply("bad01", slow), Reply::bad_device_token());
        assert_eq!(
            default_reply("unavailable", slow),
            Reply::service_unavailable()
        );
        assert_eq!(default_reply("slow1", slow), Reply::Ok.delayed(slow));
        assert_eq!(default_reply("abcdef", slow), Reply::Ok);
    }
}

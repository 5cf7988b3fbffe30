//! What a requester that asked for it gets back: the envelope echoed from the request
//! and the `push_resp` body.

use serde_json::Value;

use super::BodyFields;

/// Field a requester adds to a `push_req` to get the verdict back (`pusherctl … push`):
/// the name of its own reply queue. Kamailio never sends it, so Kamailio's queues never
/// receive unsolicited replies; Kamailio's own `Server-ID` is deliberately not used.
pub const REPLY_TO_FIELD: &str = "Pusher-Reply-To";

/// The envelope of a `push_req` that a `push_resp` needs, read once from the body even
/// when the request itself is unusable (so the requester still gets its answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Echo {
    /// `Msg-ID`, echoed.
    pub msg_id: Option<String>,
    /// `Call-ID`, echoed.
    pub call_id: Option<String>,
    /// `Token-App`, echoed.
    pub token_app: Option<String>,
    /// [`REPLY_TO_FIELD`], when it is a usable AMQP queue name (1–255 bytes, no control
    /// characters).
    pub reply_to: Option<String>,
}

impl Echo {
    /// Reads the envelope of a request body (non-string fields count as absent).
    pub fn of(body: &impl BodyFields) -> Echo {
        let string = |name: &str| body.field(name).and_then(Value::as_str).map(str::to_string);
        Echo {
            msg_id: string("Msg-ID"),
            call_id: string("Call-ID"),
            token_app: string("Token-App"),
            reply_to: string(REPLY_TO_FIELD)
                .filter(|q| !q.is_empty() && q.len() <= 255 && !q.chars().any(char::is_control)),
        }
    }
}

/// What became of one push, as reported to a requester that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushVerdict<'a> {
    /// `delivered`, `dead_token`, `auth_error`, `rejected`, `no_credentials`, `disabled`,
    /// `timeout` or `failed`.
    pub status: &'a str,
    /// Provider reason or local cause; may be empty.
    pub reason: &'a str,
    /// `apns`, `fcm`, or empty when no provider was involved.
    pub provider: &'a str,
    /// Time from delivery to verdict.
    pub elapsed_ms: u64,
}

/// The `push_resp` body answering a request (same `Msg-ID` and `Call-ID`).
pub fn push_resp(request: &Echo, verdict: &PushVerdict<'_>, node: &str, version: &str) -> Value {
    let echo = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    serde_json::json!({
        "Event-Category": "notification",
        "Event-Name": "push_resp",
        "Msg-ID": echo(&request.msg_id),
        "Call-ID": echo(&request.call_id),
        "Token-App": echo(&request.token_app),
        "Status": verdict.status,
        "Reason": verdict.reason,
        "Provider": verdict.provider,
        "Elapsed-Ms": verdict.elapsed_ms,
        "Node": node,
        "App-Name": "pusherd",
        "App-Version": version,
    })
}

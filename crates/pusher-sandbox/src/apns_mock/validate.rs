//! The request checks Apple applies before delivering, in Apple's order; each failure is
//! the error [`Reply`] APNs would give.

use hyper::Method;
use hyper::body::Bytes;
use serde_json::Value;

use super::auth::authenticate;
use super::{ApnsAuth, Reply, State};

/// Everything Apple checks before delivering; `Some(error reply)` when a check fails.
pub(super) fn check_request<'h>(
    state: &State,
    client_cn: Option<&str>,
    method: &Method,
    token: &str,
    header: &impl Fn(&str) -> Option<&'h str>,
    body: &Result<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    auth: &mut ApnsAuth,
) -> Option<Reply> {
    if token.is_empty() || token.contains('/') {
        return Some(Reply::status(404, "BadPath"));
    }
    if method != Method::POST {
        return Some(Reply::status(405, "MethodNotAllowed"));
    }
    match authenticate(state, client_cn, header("authorization")) {
        Ok(a) => *auth = a,
        Err(reason) => return Some(Reply::status(403, reason)),
    }
    let Some(topic) = header("apns-topic") else {
        return Some(Reply::status(400, "MissingTopic"));
    };
    if let Some(id) = header("apns-id")
        && uuid::Uuid::try_parse(id).is_err()
    {
        return Some(Reply::status(400, "BadMessageId"));
    }
    if let Some(p) = header("apns-priority")
        && !matches!(p, "1" | "5" | "10")
    {
        return Some(Reply::status(400, "BadPriority"));
    }
    if let Some(e) = header("apns-expiration")
        && e.parse::<u64>().is_err()
    {
        return Some(Reply::status(400, "BadExpirationDate"));
    }
    if header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Some(Reply::status(400, "BadCollapseId"));
    }
    let push_type = header("apns-push-type");
    if let Some(t) = push_type {
        const TYPES: [&str; 9] = [
            "alert",
            "background",
            "voip",
            "location",
            "complication",
            "fileprovider",
            "mdm",
            "liveactivity",
            "pushtotalk",
        ];
        if !TYPES.contains(&t) || (t == "voip" && !topic.ends_with(".voip")) {
            return Some(Reply::status(400, "InvalidPushType"));
        }
    }
    let limit = if push_type == Some("voip") {
        5120
    } else {
        4096
    };
    let Ok(body) = body else {
        return Some(Reply::status(413, "PayloadTooLarge"));
    };
    if body.is_empty() {
        return Some(Reply::status(400, "PayloadEmpty"));
    }
    if body.len() > limit {
        return Some(Reply::status(413, "PayloadTooLarge"));
    }
    if serde_json::from_slice::<Value>(body).is_err() {
        return Some(Reply::status(400, "BadPayload"));
    }
    None
}

//! One request, start to end: read headers and body, run the checks, pick the reply
//! (check failure, script, or token prefix), record it, wait any delay, answer.

use std::time::SystemTime;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::replies::default_reply;
use super::validate::check_request;
use super::{ApnsAuth, ApnsReceived, READ_LIMIT, Reply, State};
use crate::mock_util::json_response;

/// Answer one request (`client_cn`: the verified client certificate's subject CN).
pub(super) async fn handle(
    state: &State,
    client_cn: Option<&str>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let at = SystemTime::now();
    let (parts, body) = req.into_parts();
    let _unanswered = state.tally.arrive(parts.uri.path());
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let apns_id = match header("apns-id") {
        Some(id) => id.to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let body = Limited::new(body, READ_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let token = parts
        .uri
        .path()
        .strip_prefix("/3/device/")
        .unwrap_or_default()
        .to_string();

    let mut auth = ApnsAuth::None;
    let reply = check_request(
        state,
        client_cn,
        &parts.method,
        &token,
        &header,
        &body,
        &mut auth,
    );
    let reply = match reply {
        Some(reply) => reply,
        None => state
            .scripts
            .next(&token)
            .unwrap_or_else(|| default_reply(&token, state.slow_delay)),
    };
    let (delay, last) = reply.flatten();
    let (status, reason, timestamp, retry_after) = match last {
        Reply::Status {
            status,
            reason,
            timestamp_ms,
            retry_after,
        } => (*status, Some(reason.clone()), *timestamp_ms, *retry_after),
        _ => (200, None, None, None),
    };
    let body_json = match &body {
        Ok(b) if b.is_empty() => Value::Null,
        Ok(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
        Err(_) => Value::Null,
    };
    tracing::debug!(%token, status, ?reason, "mock APNs: request");
    state.received.push(ApnsReceived {
        token,
        headers: headers.clone(),
        body: body_json,
        auth,
        status,
        reason: reason.clone(),
        apns_id: apns_id.clone(),
        at,
    });

    let wait = delay + state.latency;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let mut resp = match reason {
        None => crate::mock_util::response(200, None, Bytes::new()),
        Some(reason) => {
            let mut body = json!({ "reason": reason });
            if let Some(ts) = timestamp {
                body["timestamp"] = json!(ts);
            }
            json_response(status, &body)
        }
    };
    if let Ok(value) = apns_id.parse() {
        resp.headers_mut().insert("apns-id", value);
    }
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, secs.into());
    }
    resp
}

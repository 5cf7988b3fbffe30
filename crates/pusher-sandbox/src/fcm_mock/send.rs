//! `POST /v1/projects/<p>/messages:send`: bearer check, message checks, then a script or
//! the token's prefix picks the reply; the request is recorded before any delay.

use std::time::{Instant, SystemTime};

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::BAD_REQUEST_TYPE;
use super::State;
use super::oauth::random_alnum;
use super::replies::{FcmReceived, FcmReply, default_reply, google_error};
use super::validate::check_message;
use crate::mock_util::{json_response, lock};

/// Answer one send request.
pub(super) async fn send(
    state: &State,
    project: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let at = SystemTime::now();
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|b| b.get("message"))
        .cloned()
        .unwrap_or(Value::Null);
    let token = message
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let validate_only = parsed
        .as_ref()
        .and_then(|b| b.get("validate_only"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let issued = authorization
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, t)| lock(&state.tokens).get(t.trim()).cloned())
        .filter(|i| i.expires_at > Instant::now());

    let mut extra_details = vec![];
    let reply = match &issued {
        None => Some(FcmReply::error(
            401,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
        )),
        Some(i) if i.project_id != project => Some(FcmReply::sender_id_mismatch()),
        Some(_) => match check_message(parsed.as_ref()) {
            Ok(()) => None,
            Err(problem) => {
                if let Some(field) = &problem.field {
                    extra_details.push(json!({
                        "@type": BAD_REQUEST_TYPE,
                        "fieldViolations": [{ "field": field, "description": problem.message }],
                    }));
                }
                Some(FcmReply::error(
                    400,
                    "INVALID_ARGUMENT",
                    problem.error_code,
                    &problem.message,
                ))
            }
        },
    };
    let reply = reply.unwrap_or_else(|| {
        state
            .scripts
            .next(&token)
            .unwrap_or_else(|| default_reply(&token, state.cfg.slow_delay))
    });
    let (delay, last) = reply.flatten();
    let (status, error_status, error_code) = match last {
        FcmReply::Error {
            http,
            status,
            error_code,
            ..
        } => (*http, Some(status.clone()), error_code.clone()),
        _ => (200, None, None),
    };
    tracing::debug!(project, %token, status, ?error_code, "mock FCM: send");
    state.received.push(FcmReceived {
        project: project.to_string(),
        token,
        message,
        validate_only,
        client_email: issued.map(|i| i.client_email),
        status,
        error_status,
        error_code,
        at,
    });
    let wait = delay + state.cfg.latency;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match last {
        FcmReply::Error {
            http,
            status,
            error_code,
            message,
            retry_after,
        } => {
            let mut resp =
                google_error(*http, status, error_code.as_deref(), message, extra_details);
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, (*secs).into());
            }
            resp
        }
        _ => {
            let id = if validate_only {
                "fake_message_id".to_string()
            } else {
                format!("0:{}%{}", crate::mock_util::now_ms(), random_alnum(16))
            };
            json_response(
                200,
                &json!({ "name": format!("projects/{project}/messages/{id}") }),
            )
        }
    }
}

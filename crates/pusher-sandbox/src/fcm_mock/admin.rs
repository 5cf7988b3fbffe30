//! The admin endpoints `make demo` uses: `GET /_mock/received` (both mocks' records when
//! they share a process), `POST /_mock/clear`, `POST /_mock/revoke`.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response};
use serde_json::{Value, json};

use super::{FcmReceived, State};
use crate::mock_util::{json_response, lock};

/// Answer an admin request; `None` for an unknown one.
pub(super) fn route(state: &State, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
    let resp = match (method, path) {
        (&Method::GET, "/_mock/received") => {
            let apns: Vec<Value> = match &state.cfg.apns {
                Some(rec) => rec.received().iter().map(|r| r.to_json()).collect(),
                None => vec![],
            };
            let fcm: Vec<Value> = state
                .received
                .snapshot()
                .iter()
                .map(FcmReceived::to_json)
                .collect();
            json_response(200, &json!({ "apns": apns, "fcm": fcm }))
        }
        (&Method::POST, "/_mock/clear") => {
            state.received.clear();
            if let Some(rec) = &state.cfg.apns {
                rec.clear();
            }
            json_response(200, &json!({}))
        }
        (&Method::POST, "/_mock/revoke") => {
            lock(&state.tokens).clear();
            json_response(200, &json!({}))
        }
        _ => return None,
    };
    Some(resp)
}

//! `push_req` decode + APNs request building + FCM v1 message building.
//!
//! Input is JSON: either a `push_req` body (mapped with a few fixed app configs), or an
//! array `[push_req, system_config/pusher doc, FCM envelope]` so the config side is
//! fuzzed too. Checks, beyond "never panics": an APNs request stays within its payload
//! limit, has the token in its path, a topic and printable header values; an FCM
//! message keeps the token, has only string `data` values, no `topic`/`condition`, and
//! fits `MAX_MESSAGE`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pusher_core::apns::{self, ApnsAppConfig, MAX_PAYLOAD, MAX_VOIP_PAYLOAD};
use pusher_core::fcm::{self, MAX_MESSAGE};
use pusher_core::kapps_config::ConfigDoc;
use pusher_core::push_req::PushReq;
use serde_json::{Value, json};

fn check_apns(req: &PushReq, cfg: &ApnsAppConfig) {
    let Ok(built) = apns::build_request(req, cfg) else {
        return;
    };
    let limit = if built.push_type.as_deref() == Some("voip") {
        MAX_VOIP_PAYLOAD
    } else {
        MAX_PAYLOAD
    };
    assert!(built.body.len() <= limit);
    assert_eq!(built.path, format!("/3/device/{}", req.token_id));
    assert!(!built.topic.is_empty());
    assert_eq!(built.header("apns-topic"), Some(built.topic.as_str()));
    for (name, value) in &built.headers {
        assert!(name.starts_with("apns-"));
        assert!(
            value.bytes().all(|b| b.is_ascii_graphic()),
            "{name}: {value:?}"
        );
    }
    let body: Value = serde_json::from_slice(&built.body).expect("APNs body is JSON");
    assert!(body.is_object());
}

fn check_fcm(req: &PushReq, envelope: &Value) {
    let Ok(msg) = fcm::build_message(req, envelope) else {
        return;
    };
    let inner = msg["message"].as_object().expect("message object");
    assert_eq!(inner["token"], Value::String(req.token_id.clone()));
    assert!(!inner.contains_key("topic") && !inner.contains_key("condition"));
    let data = inner["data"].as_object().expect("data object");
    assert!(data.values().all(Value::is_string), "non-string data value");
    assert!(
        data.keys().all(|k| !fcm::is_reserved_key(k)),
        "reserved data key"
    );
    assert!(msg["message"].to_string().len() <= MAX_MESSAGE);
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (body, docs, envelopes) = match input {
        Value::Array(mut parts) if parts.len() == 3 => {
            let envelope = parts.pop().unwrap_or_default();
            let doc = parts.pop().unwrap_or_default();
            (parts.pop().unwrap_or_default(), vec![doc], vec![envelope])
        }
        body => (
            body,
            vec![
                json!({}),
                json!({"default": {"apple": {"headers": {"apns_collapse_id": "c", "apns-priority": 5}}},
                       "org.example.app": {"apple": {"apns_topic": "org.example.app.voip"}}}),
            ],
            vec![
                Value::Null,
                json!({"priority": "normal", "time_to_live": 30, "data": {"x": 1}}),
                json!({"message": {"android": {"ttl": "5s"}, "topic": "t"}}),
            ],
        ),
    };
    let Ok(req) = PushReq::from_json(&body, 1_717_000_000_000) else {
        return;
    };
    for doc in docs {
        let doc = ConfigDoc::new(doc);
        let cfg = ApnsAppConfig::from_doc(&doc, &req.token_app, "local");
        check_apns(&req, &cfg);
    }
    for envelope in &envelopes {
        check_fcm(&req, envelope);
    }
});

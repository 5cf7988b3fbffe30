//! FCM HTTP v1 message mapping: a [`PushReq`] and the app's envelope become the JSON
//! body of one `POST /v1/projects/<project>/messages:send` (spec §6.4; providers.md §2).
//!
//! [`build_message`] follows K5's mapping of a Kamailio `push_req`: `data` holds the
//! `Payload`, `alert` (a JSON string of `loc-key`/`loc-args`), `sound`, `Push-Type`
//! (`incoming_call` for `IC_SIL`) and `Call-ID`; `android.priority` is `high` so the
//! device wakes for the call. v1 only takes strings in `data`, so every value is
//! stringified, and reserved keys are renamed rather than failing the push. The app's
//! envelope (`firebase_v1.headers` / `firebase.headers`) is deep-merged on top, except
//! that it can never change whom the message goes to. [`send_path`] builds the URL path.

use serde_json::{Map, Value, json};

use crate::apns::deep_merge;
use crate::push_req::{PushReq, check_token_id};

/// Largest serialised `message` object accepted, in bytes (FCM's payload limit).
pub const MAX_MESSAGE: usize = 4096;

/// Prefix given to reserved `data` keys (`from` → `kazoo_from`).
pub const RESERVED_PREFIX: &str = "kazoo_";

/// Why no FCM message (or path) can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FcmBuildError {
    /// The registration token is empty, too long or has unexpected characters.
    #[error("invalid FCM registration token")]
    BadToken,
    /// The envelope (or the named part of it) has an unusable shape or value.
    #[error("invalid FCM envelope: {0}")]
    InvalidEnvelope(&'static str),
    /// The serialised message exceeds [`MAX_MESSAGE`].
    #[error("FCM message is {size} bytes; the limit is {limit}")]
    PayloadTooLarge {
        /// Size of the serialised `message` object in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The project id is not `[a-z0-9-]{1,64}` (value bounded to 80 chars).
    #[error("invalid FCM project id {0:?}")]
    InvalidProjectId(String),
}

/// Builds `{"message": {...}}` for `req` (spec §6.4, "Kamailio push_req over v1").
///
/// `envelope` is the app's `firebase_v1.headers` (or `firebase.headers`), `null` when
/// unset. It is deep-merged into the message object and wins, including over
/// `android.priority`; an envelope with a top-level `message` object merges that object
/// instead. The legacy keys `priority`, `time_to_live`, `collapse_key` and
/// `restricted_package_name`, which v1 would reject at the top level, are moved into
/// `android` (unless the envelope sets those there). `token` cannot be overridden, and
/// `topic`/`condition` are removed.
pub fn build_message(req: &PushReq, envelope: &Value) -> Result<Value, FcmBuildError> {
    check_token_id(&req.token_id).map_err(|_| FcmBuildError::BadToken)?;
    let mut data = req.payload.clone();
    if req.alert_key.is_some() || req.alert_params.is_some() {
        let mut alert = Map::new();
        if let Some(key) = &req.alert_key {
            alert.insert("loc-key".into(), Value::String(key.clone()));
        }
        if let Some(params) = &req.alert_params {
            alert.insert("loc-args".into(), params.clone());
        }
        data.insert(
            "alert".into(),
            Value::String(Value::Object(alert).to_string()),
        );
    }
    if let Some(sound) = &req.sound {
        data.insert("sound".into(), sound.clone());
    }
    if req.alert_key.as_deref() == Some("IC_SIL") && !req.payload.contains_key("Push-Type") {
        data.insert("Push-Type".into(), Value::String("incoming_call".into()));
    }
    if let Some(call_id) = &req.call_id {
        data.insert("Call-ID".into(), Value::String(call_id.clone()));
    }
    let mut msg = Map::new();
    msg.insert("token".into(), Value::String(req.token_id.clone()));
    msg.insert("data".into(), Value::Object(data));
    msg.insert("android".into(), json!({"priority": "high"}));
    finish_message(msg, &req.token_id, envelope)
}

/// The common end of every v1 message: `envelope` deep-merged over `msg` (see
/// [`build_message`]), `token` forced, `topic`/`condition` removed, `data` stringified
/// ([`data_string`], reserved keys renamed), the size checked, and the whole wrapped as
/// `{"message": …}`. Also used by [`crate::endpoint_push`].
pub fn finish_message(
    mut msg: Map<String, Value>,
    token: &str,
    envelope: &Value,
) -> Result<Value, FcmBuildError> {
    if let Some(envelope) = envelope_object(envelope)? {
        for (key, value) in legacy_to_v1(envelope)? {
            match msg.get_mut(&key) {
                Some(existing) => deep_merge(existing, &value),
                None => {
                    msg.insert(key, value);
                }
            }
        }
    }
    msg.insert("token".into(), Value::String(token.to_string()));
    msg.shift_remove("topic");
    msg.shift_remove("condition");
    let data = match msg.get("data") {
        Some(Value::Object(data)) => string_data(data),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(FcmBuildError::InvalidEnvelope("data is not an object")),
    };
    msg.insert("data".into(), Value::Object(data));

    let message = Value::Object(msg);
    let size = message.to_string().len();
    if size > MAX_MESSAGE {
        return Err(FcmBuildError::PayloadTooLarge {
            size,
            limit: MAX_MESSAGE,
        });
    }
    Ok(json!({ "message": message }))
}

/// The part of the envelope to merge: `None` for `null`, the inner `message` object if
/// there is one, else the envelope itself.
fn envelope_object(envelope: &Value) -> Result<Option<&Map<String, Value>>, FcmBuildError> {
    match envelope {
        Value::Null => Ok(None),
        Value::Object(env) => match env.get("message") {
            Some(Value::Object(inner)) => Ok(Some(inner)),
            Some(_) => Err(FcmBuildError::InvalidEnvelope("message is not an object")),
            None => Ok(Some(env)),
        },
        _ => Err(FcmBuildError::InvalidEnvelope("not an object")),
    }
}

/// Moves legacy-API top-level keys into their v1 places under `android`
/// (providers.md Appendix B).
fn legacy_to_v1(envelope: &Map<String, Value>) -> Result<Map<String, Value>, FcmBuildError> {
    let mut env = envelope.clone();
    let mut moved = Map::new();
    if let Some(priority) = env.shift_remove("priority") {
        let v1 = match priority.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("high") => "high",
            Some("normal" | "low") => "normal",
            _ => return Err(FcmBuildError::InvalidEnvelope("priority")),
        };
        moved.insert("priority".into(), Value::String(v1.into()));
    }
    if let Some(ttl) = env.shift_remove("time_to_live") {
        let secs = match &ttl {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<u64>().ok()
            }
            _ => None,
        }
        .ok_or(FcmBuildError::InvalidEnvelope("time_to_live"))?;
        moved.insert("ttl".into(), Value::String(format!("{secs}s")));
    }
    for key in ["collapse_key", "restricted_package_name"] {
        if let Some(v) = env.shift_remove(key) {
            moved.insert(key.into(), v);
        }
    }
    if moved.is_empty() {
        return Ok(env);
    }
    let android = env
        .entry("android")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(android) = android else {
        return Err(FcmBuildError::InvalidEnvelope("android is not an object"));
    };
    for (key, value) in moved {
        // Explicit v1 settings win over translated legacy ones.
        android.entry(key).or_insert(value);
    }
    Ok(env)
}

/// `data` with every value a string and reserved keys renamed; nulls are dropped.
fn string_data(data: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in data {
        let Some(text) = data_string(value) else {
            continue;
        };
        if is_reserved_key(key) {
            let renamed = format!("{RESERVED_PREFIX}{key}");
            // A key already named like the renamed one wins.
            if !data.contains_key(&renamed) {
                out.insert(renamed, Value::String(text));
            }
        } else {
            out.insert(key.clone(), Value::String(text));
        }
    }
    out
}

/// A `data` value as FCM v1 wants it: strings as-is, other values as JSON text, `null`
/// dropped.
pub fn data_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Whether FCM reserves a `data` key: `from`, `notification`, `message_type`, or any key
/// starting with `google` or `gcm` (compared ignoring ASCII case, to be safe).
pub fn is_reserved_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(key.as_str(), "from" | "notification" | "message_type")
        || key.starts_with("google")
        || key.starts_with("gcm")
}

/// `/v1/projects/<project_id>/messages:send`; the id must be `[a-z0-9-]{1,64}`.
pub fn send_path(project_id: &str) -> Result<String, FcmBuildError> {
    let valid = !project_id.is_empty()
        && project_id.len() <= 64
        && project_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(FcmBuildError::InvalidProjectId(
            project_id.chars().take(80).collect(),
        ));
    }
    Ok(format!("/v1/projects/{project_id}/messages:send"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = include_str!("../../../tests/fixtures/kamailio-captured.jsonl");
    const NOW: u64 = 1_717_000_000_000;

    fn fixture_req() -> PushReq {
        let line = FIXTURES.lines().nth(2).unwrap();
        let mut body = serde_json::from_str::<Value>(line).unwrap()["body"].clone();
        body["Token-Type"] = json!("firebase");
        body["Token-App"] = json!("com.example.android");
        body["Token-ID"] = json!("fcm-tok_1:APA91bH");
        PushReq::from_json(&body, NOW).unwrap()
    }

    fn with_payload(payload: Value) -> PushReq {
        let mut req = fixture_req();
        req.payload = payload.as_object().unwrap().clone();
        req
    }

    #[test]
    fn fixture_message() {
        let m = build_message(&fixture_req(), &Value::Null).unwrap();
        assert_eq!(
            m,
            json!({"message": {
                "token": "fcm-tok_1:APA91bH",
                "data": {
                    "caller-id-number": "callerreply02",
                    "utc_unix_timestamp_ms": "1717000000000",
                    "alert": "{\"loc-key\":\"IC_SIL\",\"loc-args\":[\"callerreply02\"]}",
                    "sound": "ring.caf",
                    "Push-Type": "incoming_call",
                    "Call-ID": "1-31568@127.0.0.1"
                },
                "android": {"priority": "high"}
            }})
        );
        let data = m["message"]["data"].as_object().unwrap();
        assert!(data.values().all(Value::is_string));
        let alert: Value = serde_json::from_str(data["alert"].as_str().unwrap()).unwrap();
        assert_eq!(
            alert,
            json!({"loc-key": "IC_SIL", "loc-args": ["callerreply02"]})
        );
        // Key order follows the spec example: payload first, then the request fields.
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "caller-id-number",
                "utc_unix_timestamp_ms",
                "alert",
                "sound",
                "Push-Type",
                "Call-ID"
            ]
        );
    }

    #[test]
    fn stringifies_every_data_value() {
        let req = with_payload(json!({
            "nested": {"a": [1, 2], "b": "c"},
            "list": ["x", 1],
            "n": 42,
            "f": 1.5,
            "yes": true,
            "gone": null,
            "s": "plain"
        }));
        let m = build_message(&req, &Value::Null).unwrap();
        let data = &m["message"]["data"];
        assert_eq!(data["nested"], json!("{\"a\":[1,2],\"b\":\"c\"}"));
        assert_eq!(data["list"], json!("[\"x\",1]"));
        assert_eq!(data["n"], json!("42"));
        assert_eq!(data["f"], json!("1.5"));
        assert_eq!(data["yes"], json!("true"));
        assert_eq!(data["s"], json!("plain"));
        assert!(data.get("gone").is_none());
        assert!(data.as_object().unwrap().values().all(Value::is_string));
        // Sound given as an object is stringified too.
        let mut req = fixture_req();
        req.sound = Some(json!({"name": "ring.caf", "critical": 1}));
        let m = build_message(&req, &Value::Null).unwrap();
        assert_eq!(
            m["message"]["data"]["sound"],
            json!("{\"name\":\"ring.caf\",\"critical\":1}")
        );
    }

    #[test]
    fn push_type_and_request_fields() {
        // An explicit Push-Type in the payload is kept.
        let req = with_payload(json!({"Push-Type": "missed_call"}));
        let m = build_message(&req, &Value::Null).unwrap();
        assert_eq!(m["message"]["data"]["Push-Type"], json!("missed_call"));
        // Other alert keys get no Push-Type.
        let mut req = fixture_req();
        req.alert_key = Some("IC_MISSED".into());
        let m = build_message(&req, &Value::Null).unwrap();
        assert!(m["message"]["data"].get("Push-Type").is_none());
        // Without alert fields, sound or call id, only the payload remains.
        let mut req = fixture_req();
        req.alert_key = None;
        req.alert_params = None;
        req.sound = None;
        req.call_id = None;
        let m = build_message(&req, &Value::Null).unwrap();
        assert_eq!(
            m["message"]["data"],
            json!({"caller-id-number": "callerreply02", "utc_unix_timestamp_ms": "1717000000000"})
        );
        // Request fields win over same-named payload keys.
        let req = with_payload(json!({"Call-ID": "old", "sound": "x.caf"}));
        let m = build_message(&req, &Value::Null).unwrap();
        assert_eq!(m["message"]["data"]["Call-ID"], json!("1-31568@127.0.0.1"));
        assert_eq!(m["message"]["data"]["sound"], json!("ring.caf"));
    }

    #[test]
    fn reserved_keys_are_renamed() {
        let req = with_payload(json!({
            "from": "a", "notification": {"x": 1}, "message_type": "m",
            "google.c.a.e": "1", "gcm.n.e": "1", "GoogleX": 2, "fromage": "ok"
        }));
        let m = build_message(&req, &Value::Null).unwrap();
        let data = m["message"]["data"].as_object().unwrap();
        assert_eq!(data["kazoo_from"], json!("a"));
        assert_eq!(data["kazoo_notification"], json!("{\"x\":1}"));
        assert_eq!(data["kazoo_message_type"], json!("m"));
        assert_eq!(data["kazoo_google.c.a.e"], json!("1"));
        assert_eq!(data["kazoo_gcm.n.e"], json!("1"));
        assert_eq!(data["kazoo_GoogleX"], json!("2"));
        assert_eq!(data["fromage"], json!("ok"));
        assert!(data.keys().all(|k| !is_reserved_key(k)));
        // An existing key of the renamed name wins.
        let req = with_payload(json!({"from": "a", "kazoo_from": "b"}));
        let m = build_message(&req, &Value::Null).unwrap();
        assert_eq!(m["message"]["data"]["kazoo_from"], json!("b"));
        assert!(m["message"]["data"].get("from").is_none());
    }

    #[test]
    fn envelope_merge() {
        let env = json!({
            "android": {"ttl": "30s", "priority": "normal"},
            "data": {"extra": 7, "caller-id-number": "override"},
            "fcm_options": {"analytics_label": "calls"},
            "token": "hijack",
            "topic": "everyone",
            "condition": "'a' in topics"
        });
        let m = build_message(&fixture_req(), &env).unwrap();
        let msg = &m["message"];
        assert_eq!(msg["token"], json!("fcm-tok_1:APA91bH"));
        assert!(msg.get("topic").is_none());
        assert!(msg.get("condition").is_none());
        assert_eq!(msg["android"], json!({"priority": "normal", "ttl": "30s"}));
        assert_eq!(msg["fcm_options"], json!({"analytics_label": "calls"}));
        assert_eq!(msg["data"]["extra"], json!("7"));
        assert_eq!(msg["data"]["caller-id-number"], json!("override"));
        assert_eq!(msg["data"]["Call-ID"], json!("1-31568@127.0.0.1"));
        // Spec §1.5 sample envelope.
        let m = build_message(&fixture_req(), &json!({"android": {"priority": "high"}})).unwrap();
        assert_eq!(m["message"]["android"], json!({"priority": "high"}));
        // A top-level `message` object is what gets merged.
        let m = build_message(
            &fixture_req(),
            &json!({"message": {"android": {"ttl": "0s"}, "token": "x"}, "validate_only": true}),
        )
        .unwrap();
        assert_eq!(
            m["message"]["android"],
            json!({"priority": "high", "ttl": "0s"})
        );
        assert_eq!(m["message"]["token"], json!("fcm-tok_1:APA91bH"));
        assert!(m.get("validate_only").is_none());
        // An empty envelope changes nothing.
        assert_eq!(
            build_message(&fixture_req(), &json!({})),
            build_message(&fixture_req(), &Value::Null)
        );
    }

    #[test]
    fn legacy_envelope_keys() {
        let m = build_message(
            &fixture_req(),
            &json!({"priority": "normal", "time_to_live": 0, "collapse_key": "call"}),
        )
        .unwrap();
        let msg = m["message"].as_object().unwrap();
        assert_eq!(
            msg["android"],
            json!({"priority": "normal", "ttl": "0s", "collapse_key": "call"})
        );
        assert!(!msg.contains_key("priority") && !msg.contains_key("time_to_live"));
        // v1 settings in the same envelope win over legacy ones.
        let m = build_message(
            &fixture_req(),
            &json!({"priority": "normal", "time_to_live": "60", "android": {"priority": "high"}}),
        )
        .unwrap();
        assert_eq!(
            m["message"]["android"],
            json!({"priority": "high", "ttl": "60s"})
        );
        for (env, what) in [
            (json!({"priority": 10}), "priority"),
            (json!({"priority": "urgent"}), "priority"),
            (json!({"time_to_live": -1}), "time_to_live"),
            (json!({"time_to_live": "1m"}), "time_to_live"),
            (
                json!({"priority": "high", "android": "x"}),
                "android is not an object",
            ),
        ] {
            assert_eq!(
                build_message(&fixture_req(), &env),
                Err(FcmBuildError::InvalidEnvelope(what)),
                "{env}"
            );
        }
    }

    #[test]
    fn bad_envelopes() {
        for (env, what) in [
            (json!("x"), "not an object"),
            (json!([1]), "not an object"),
            (json!({"message": "x"}), "message is not an object"),
            (json!({"data": "x"}), "data is not an object"),
            (json!({"data": [1]}), "data is not an object"),
        ] {
            assert_eq!(
                build_message(&fixture_req(), &env),
                Err(FcmBuildError::InvalidEnvelope(what)),
                "{env}"
            );
        }
        // A null `data` leaves an empty map rather than failing.
        let m = build_message(&fixture_req(), &json!({"data": null})).unwrap();
        assert_eq!(m["message"]["data"], json!({}));
    }

    #[test]
    fn size_limit() {
        let req = with_payload(json!({"pad": "p".repeat(3800)}));
        let m = build_message(&req, &Value::Null).unwrap();
        assert!(m["message"].to_string().len() <= MAX_MESSAGE);
        let req = with_payload(json!({"pad": "p".repeat(4096)}));
        let Err(FcmBuildError::PayloadTooLarge { size, limit }) = build_message(&req, &Value::Null)
        else {
            panic!("expected PayloadTooLarge")
        };
        assert!(size > 4096);
        assert_eq!(limit, MAX_MESSAGE);
    }

    #[test]
    fn bad_token() {
        let mut req = fixture_req();
        req.token_id = "a/b".into();
        assert_eq!(
            build_message(&req, &Value::Null),
            Err(FcmBuildError::BadToken)
        );
    }

    #[test]
    fn send_paths() {
        assert_eq!(
            send_path("my-project").as_deref(),
            Ok("/v1/projects/my-project/messages:send")
        );
        assert_eq!(
            send_path("p1").as_deref(),
            Ok("/v1/projects/p1/messages:send")
        );
        assert!(send_path(&"a".repeat(64)).is_ok());
        for bad in ["", "My-Project", "a/b", "a b", "proj?x", "..", "p_1"] {
            assert_eq!(
                send_path(bad),
                Err(FcmBuildError::InvalidProjectId(bad.into())),
                "{bad}"
            );
        }
        assert!(send_path(&"a".repeat(65)).is_err());
    }

    #[test]
    fn reserved_key_rules() {
        for key in [
            "from",
            "FROM",
            "notification",
            "message_type",
            "google",
            "gcm.x",
        ] {
            assert!(is_reserved_key(key), "{key}");
        }
        for key in ["fromage", "my_google", "Call-ID", "alert", "message"] {
            assert!(!is_reserved_key(key), "{key}");
        }
        assert_eq!(data_string(&json!(null)), None);
        assert_eq!(data_string(&json!(0)).as_deref(), Some("0"));
    }
}

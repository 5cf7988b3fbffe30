use super::*;
use serde_json::json;

const FIXTURES: &str = include_str!("../../../../tests/fixtures/kamailio-captured.jsonl");

/// The captured Kamailio `push_req` body (third fixture line).
fn fixture_body() -> Value {
    let line = FIXTURES.lines().nth(2).unwrap();
    serde_json::from_str::<Value>(line).unwrap()["body"].clone()
}

fn minimal() -> Value {
    json!({"Token-ID": "abc123", "Token-Type": "apple", "Token-App": "org.example.app"})
}

#[test]
fn reads_the_captured_push_req() {
    let req = PushReq::from_json(&fixture_body(), 1_717_000_000_000).unwrap();
    assert_eq!(req.token_id, "tok-1");
    assert_eq!(req.token_type, TokenType::Apple);
    assert_eq!(req.provider(), Provider::Apple);
    assert_eq!(req.token_app, "org.myorg.myapp");
    assert_eq!(req.call_id.as_deref(), Some("1-31568@127.0.0.1"));
    assert_eq!(
        req.msg_id.as_deref(),
        Some("7def8ed9-ae44-416c-8c3f-58b8f73582a5")
    );
    assert_eq!(req.alert_key.as_deref(), Some("IC_SIL"));
    assert_eq!(req.alert_params, Some(json!(["callerreply02"])));
    assert_eq!(req.sound, Some(json!("ring.caf")));
    assert_eq!(req.account_id, None);
    assert_eq!(req.endpoint_id, None);
    assert_eq!(
        Value::Object(req.payload),
        json!({"caller-id-number": "callerreply02", "utc_unix_timestamp_ms": "1717000000000"})
    );
}

#[test]
fn token_types() {
    for (s, t) in [
        ("apple", TokenType::Apple),
        ("APPLE", TokenType::Apple),
        ("firebase", TokenType::Firebase),
        ("google", TokenType::Firebase),
        ("Android", TokenType::Firebase),
        ("firebase_v1", TokenType::FirebaseV1),
        ("FireBase_V1", TokenType::FirebaseV1),
    ] {
        assert_eq!(TokenType::parse(s), Ok(t), "{s}");
    }
    for bad in ["", "apns", "fcm", "webhook", "apple_dev", " apple"] {
        assert_eq!(
            TokenType::parse(bad),
            Err(PushReqError::UnknownTokenType(bad.to_string()))
        );
    }
    assert_eq!(TokenType::Apple.as_str(), "apple");
    assert_eq!(TokenType::Firebase.as_str(), "firebase");
    assert_eq!(TokenType::FirebaseV1.as_str(), "firebase_v1");
    assert_eq!(TokenType::FirebaseV1.provider(), Provider::Firebase);
    assert_eq!(TokenType::Firebase.provider().as_str(), "firebase");
    assert_eq!(Provider::Apple.as_str(), "apple");
    let PushReqError::UnknownTokenType(v) = TokenType::parse(&"x".repeat(500)).unwrap_err() else {
        panic!("wrong error")
    };
    assert_eq!(v.len(), 80);
}

#[test]
fn normalises_type_in_request() {
    let mut v = minimal();
    v["Token-Type"] = json!("google");
    let req = PushReq::from_json(&v, 0).unwrap();
    assert_eq!(req.token_type, TokenType::Firebase);
    assert_eq!(req.token_type.as_str(), "firebase");
}

#[test]
fn required_fields() {
    for name in ["Token-ID", "Token-Type", "Token-App"] {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove(name);
        assert_eq!(PushReq::from_json(&v, 0), Err(PushReqError::Missing(name)));
        v[name] = json!("");
        assert_eq!(PushReq::from_json(&v, 0), Err(PushReqError::Missing(name)));
        v[name] = Value::Null;
        assert_eq!(PushReq::from_json(&v, 0), Err(PushReqError::Missing(name)));
        v[name] = json!(42);
        assert_eq!(
            PushReq::from_json(&v, 0),
            Err(PushReqError::InvalidField(name))
        );
    }
    assert_eq!(
        PushReq::from_json(&json!([1]), 0),
        Err(PushReqError::NotAnObject)
    );
    assert_eq!(
        PushReq::from_json(&Value::Null, 0),
        Err(PushReqError::NotAnObject)
    );
    let mut v = minimal();
    v["Token-Type"] = json!("webhook");
    assert_eq!(
        PushReq::from_json(&v, 0),
        Err(PushReqError::UnknownTokenType("webhook".into()))
    );
}

#[test]
fn token_id_validation() {
    for good in [
        "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "cXk2Zm9vYmFy.token",
        "fcm-tok_1:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx~x.y",
    ] {
        let mut v = minimal();
        v["Token-ID"] = json!(good);
        assert_eq!(PushReq::from_json(&v, 0).unwrap().token_id, good);
    }
    // `../x`: dots are allowed, the slash is not.
    for bad in [
        "a/b", "a b", "tok%2F", "tok?x=1", "tok#", "é", "a\nb", "../x",
    ] {
        let mut v = minimal();
        v["Token-ID"] = json!(bad);
        assert_eq!(
            PushReq::from_json(&v, 0),
            Err(PushReqError::InvalidToken(
                "character outside [A-Za-z0-9_.:~-]"
            )),
            "{bad:?}"
        );
    }
    let mut v = minimal();
    v["Token-ID"] = json!("a".repeat(4096));
    assert!(PushReq::from_json(&v, 0).is_ok());
    v["Token-ID"] = json!("a".repeat(4097));
    assert_eq!(
        PushReq::from_json(&v, 0),
        Err(PushReqError::InvalidToken("longer than 4096 bytes"))
    );
    assert_eq!(check_token_id(""), Err(PushReqError::Missing("Token-ID")));
}

#[test]
fn token_app_validation() {
    for bad in ["a/b", "a b", "a\tb", "a\u{7}b", "org.app\u{a0}"] {
        let mut v = minimal();
        v["Token-App"] = json!(bad);
        assert_eq!(
            PushReq::from_json(&v, 0),
            Err(PushReqError::InvalidField("Token-App")),
            "{bad:?}"
        );
    }
    let mut v = minimal();
    v["Token-App"] = json!("a".repeat(255));
    assert!(PushReq::from_json(&v, 0).is_ok());
    v["Token-App"] = json!("a".repeat(256));
    assert_eq!(
        PushReq::from_json(&v, 0),
        Err(PushReqError::InvalidField("Token-App"))
    );
    assert!(valid_token_app("com.example.android"));
    assert!(valid_token_app("org.myorg.myapp.dev"));
    assert!(!valid_token_app(""));
}

#[test]
fn payload_and_timestamp() {
    // Absent and null payloads become an object with only the timestamp.
    let req = PushReq::from_json(&minimal(), 42).unwrap();
    assert_eq!(
        Value::Object(req.payload),
        json!({"utc_unix_timestamp_ms": "42"})
    );
    let mut v = minimal();
    v["Payload"] = Value::Null;
    assert_eq!(PushReq::from_json(&v, 7).unwrap().payload.len(), 1);
    // An existing timestamp is kept, whatever its type.
    v["Payload"] = json!({"utc_unix_timestamp_ms": 5, "x": {"y": 1}});
    let req = PushReq::from_json(&v, 7).unwrap();
    assert_eq!(
        Value::Object(req.payload),
        json!({"utc_unix_timestamp_ms": 5, "x": {"y": 1}})
    );
    for bad in [json!("{}"), json!([1]), json!(3)] {
        v["Payload"] = bad;
        assert_eq!(
            PushReq::from_json(&v, 7),
            Err(PushReqError::InvalidField("Payload"))
        );
    }
}

#[test]
fn optional_fields() {
    let mut v = minimal();
    v["Account-ID"] = json!("3c1e6a2f9b7d4e0a8c5b1d2e3f405162");
    v["Endpoint-ID"] = json!("");
    v["Call-ID"] = json!(5);
    v["Msg-ID"] = json!("m");
    v["Alert-Params"] = Value::Null;
    v["Sound"] = json!({"critical": 1, "name": "ring.caf"});
    let req = PushReq::from_json(&v, 0).unwrap();
    assert_eq!(
        req.account_id.as_deref(),
        Some("3c1e6a2f9b7d4e0a8c5b1d2e3f405162")
    );
    assert_eq!(req.endpoint_id, None);
    assert_eq!(req.call_id, None);
    assert_eq!(req.msg_id.as_deref(), Some("m"));
    assert_eq!(req.alert_params, None);
    assert_eq!(req.alert_key, None);
    assert_eq!(req.sound, Some(json!({"critical": 1, "name": "ring.caf"})));
}

#[test]
fn errors_display() {
    assert_eq!(
        PushReqError::Missing("Token-ID").to_string(),
        "push_req has no Token-ID"
    );
    assert_eq!(
        PushReqError::UnknownTokenType("x".into()).to_string(),
        "unknown Token-Type \"x\""
    );
}
#[test]
fn reply_to_is_opt_in_and_validated() {
    assert_eq!(
        Echo::of(&fixture_body()).reply_to,
        None,
        "Kamailio never asks for a reply"
    );
    assert_eq!(
        Echo::of(&json!({"Pusher-Reply-To": "amq.gen-x"})).reply_to,
        Some("amq.gen-x".to_string())
    );
    for bad in [json!(""), json!(7), json!("a\nb"), json!("q".repeat(256))] {
        assert_eq!(Echo::of(&json!({ "Pusher-Reply-To": bad })).reply_to, None);
    }
}

#[test]
fn requester_timestamp_is_read_before_one_is_added() {
    assert_eq!(
        requester_timestamp_ms(&fixture_body()),
        None,
        "Kamailio sends none"
    );
    let stamped = |ts: Value| json!({"Payload": {"utc_unix_timestamp_ms": ts}});
    assert_eq!(
        requester_timestamp_ms(&stamped(json!("1717000000000"))),
        Some(1_717_000_000_000)
    );
    assert_eq!(
        requester_timestamp_ms(&stamped(json!(1_717_000_000_000u64))),
        Some(1_717_000_000_000)
    );
    assert_eq!(requester_timestamp_ms(&stamped(json!("soon"))), None);
    assert_eq!(requester_timestamp_ms(&stamped(json!(-5))), None);
}

#[test]
fn push_resp_echoes_the_request_ids() {
    let verdict = PushVerdict {
        status: "delivered",
        reason: "",
        provider: "apns",
        elapsed_ms: 12,
    };
    let r = push_resp(&Echo::of(&fixture_body()), &verdict, "pusher@n1", "0.1.0");
    assert_eq!(r["Event-Name"], "push_resp");
    assert_eq!(r["Msg-ID"], "7def8ed9-ae44-416c-8c3f-58b8f73582a5");
    assert_eq!(r["Call-ID"], "1-31568@127.0.0.1");
    assert_eq!(r["Token-App"], "org.myorg.myapp");
    assert_eq!(r["Status"], "delivered");
    assert_eq!(r["Elapsed-Ms"], 12);
    assert_eq!(
        push_resp(&Echo::of(&json!({})), &verdict, "n", "v")["Msg-ID"],
        Value::Null
    );
}

#[test]
fn fields_read_from_bytes_are_those_of_the_value() {
    let body = fixture_body();
    let bytes = serde_json::to_vec(&body).unwrap();
    let fields = PushFields::parse_push_req(&bytes).expect("a push_req");
    assert_eq!(fields, PushFields::of(&body));
    assert_eq!(
        PushReq::from_fields(fields, 1).unwrap(),
        PushReq::from_json(&body, 1).unwrap()
    );
    // Last of a repeated key wins, as in a Value; null is kept as sent.
    let dup = br#"{"Event-Category":"notification","Event-Name":"push_req",
        "Token-ID":"a","Token-ID":"b","Sound":null}"#;
    let fields = PushFields::parse_push_req(dup).unwrap();
    assert_eq!(fields.token_id, Some(json!("b")));
    assert_eq!(fields.sound, Some(Value::Null));
    // Not a push_req, or not what a Value accepts: left to the Value path.
    for other in [
        &br#"{"Event-Category":"directory","Event-Name":"reg_success"}"#[..],
        br#"{"Event-Category":"notification","Event-Name":"push_req","X":1e400}"#,
        b"{\"Event-Category\":\"notification\",\"Event-Name\":\"push_req\",\"X\":\"\xff\"}",
        br#"[1]"#,
        br#"{"Event-Category":"notification","Event-Name":"push_req"} x"#,
    ] {
        assert_eq!(PushFields::parse_push_req(other), None);
    }
}

#[test]
fn only_bodies_naming_push_req_take_the_typed_read() {
    let reg =
        serde_json::from_str::<Value>(FIXTURES.lines().next().unwrap()).unwrap()["body"].clone();
    assert_eq!(reg["Event-Name"], "reg_success");
    let reg_bytes = serde_json::to_vec(&reg).unwrap();
    assert!(PushFields::parse_push_req(&reg_bytes).is_none());
    let push_bytes = serde_json::to_vec(&fixture_body()).unwrap();
    let fields = PushFields::parse_push_req(&push_bytes).expect("a push_req");
    assert_eq!(fields.event_name, Some(json!("push_req")));
    // Escaped, the name is not found by the pre-check: the caller's `Value` path reads it.
    let escaped = String::from_utf8(push_bytes)
        .unwrap()
        .replace("\"push_req\"", "\"push\\u005freq\"");
    assert!(PushFields::parse_push_req(escaped.as_bytes()).is_none());
    let v: Value = serde_json::from_str(&escaped).unwrap();
    assert_eq!(v["Event-Name"], "push_req");
}

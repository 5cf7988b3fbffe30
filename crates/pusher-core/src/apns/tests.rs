use super::*;
use crate::push_req::PushReq;
use serde_json::json;

const FIXTURES: &str = include_str!("../../../../tests/fixtures/kamailio-captured.jsonl");
const NOW: u64 = 1_717_000_000_000;

fn fixture_req() -> PushReq {
    let line = FIXTURES.lines().nth(2).unwrap();
    let body = serde_json::from_str::<Value>(line).unwrap()["body"].clone();
    PushReq::from_json(&body, NOW).unwrap()
}

fn cfg(topic: Option<&str>, headers: Value) -> ApnsAppConfig {
    ApnsAppConfig {
        apns_topic: topic.map(str::to_string),
        headers: headers.as_object().unwrap().clone(),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn fixture_request_matches_kazoo_shape() {
    let r = build_request(&fixture_req(), &ApnsAppConfig::default()).unwrap();
    assert_eq!(r.path, "/3/device/tok-1");
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        r#"{"aps":{"alert":{"loc-key":"IC_SIL","loc-args":["callerreply02"]},"sound":"ring.caf","call-id":"1-31568@127.0.0.1"},"caller-id-number":"callerreply02","utc_unix_timestamp_ms":"1717000000000"}"#
    );
    assert_eq!(
        r.headers,
        pairs(&[
            ("apns-topic", "org.myorg.myapp"),
            ("apns-id", "7def8ed9-ae44-416c-8c3f-58b8f73582a5"),
        ])
    );
    assert_eq!(r.topic, "org.myorg.myapp");
    assert_eq!(r.push_type, None);
    assert_eq!(r.header("apns-push-type"), None);
    assert!(r.ignored_headers.is_empty());
}

#[test]
fn voip_topic_gets_voip_defaults() {
    let r = build_request(
        &fixture_req(),
        &cfg(Some("org.myorg.myapp.voip"), json!({})),
    )
    .unwrap();
    assert_eq!(
        r.headers,
        pairs(&[
            ("apns-topic", "org.myorg.myapp.voip"),
            ("apns-push-type", "voip"),
            ("apns-priority", "10"),
            ("apns-expiration", "0"),
            ("apns-id", "7def8ed9-ae44-416c-8c3f-58b8f73582a5"),
        ])
    );
    assert_eq!(r.push_type.as_deref(), Some("voip"));
    assert_eq!(r.topic, "org.myorg.myapp.voip");
}

#[test]
fn config_headers_override_voip_defaults() {
    let r = build_request(
            &fixture_req(),
            &cfg(
                Some("org.myorg.myapp.voip"),
                json!({"apns_push_type": "alert", "apns_priority": 5, "apns_expiration": 1_800_000_000u64}),
            ),
        )
        .unwrap();
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.push_type.as_deref(), Some("alert"));
    assert_eq!(r.header("apns-priority"), Some("5"));
    assert_eq!(r.header("apns-expiration"), Some("1800000000"));
}

#[test]
fn kazoo_sample_config() {
    // The `org.myorg.myapp` app of spec §1.5.
    let doc = ConfigDoc::new(json!({
        "default": {"apple": {"headers": {}}},
        "org.myorg.myapp": {"apple": {
            "apns_topic": "org.myorg.myapp.voip",
            "headers": {"apns_push_type": "voip", "apns_priority": "10", "apns_expiration": "0"}
        }}
    }));
    let c = ApnsAppConfig::from_doc(&doc, "org.myorg.myapp", "local");
    assert_eq!(c.apns_topic.as_deref(), Some("org.myorg.myapp.voip"));
    assert_eq!(c.headers.len(), 3);
    let r = build_request(&fixture_req(), &c).unwrap();
    assert_eq!(r.topic, "org.myorg.myapp.voip");
    assert_eq!(r.header("apns-push-type"), Some("voip"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(r.header("apns-expiration"), Some("0"));
    // Another app falls back to `default`.
    let other = ApnsAppConfig::from_doc(&doc, "com.other", "local");
    assert_eq!(other, ApnsAppConfig::default());
    // Wrong types count as absent.
    let doc = ConfigDoc::new(json!({"a": {"apple": {"apns_topic": 5, "headers": "x"}}}));
    assert_eq!(
        ApnsAppConfig::from_doc(&doc, "a", "z"),
        ApnsAppConfig::default()
    );
}

#[test]
fn topic_rules() {
    let mut req = fixture_req();
    for (app, topic) in [
        ("org.myorg.myapp.dev", "org.myorg.myapp"),
        ("org.myorg.myapp.prod", "org.myorg.myapp"),
        ("org.myorg.myapp.dev.dev", "org.myorg.myapp.dev"),
        ("org.myorg.myapp.prod.dev", "org.myorg.myapp.prod"),
        ("org.myorg.devapp", "org.myorg.devapp"),
        ("org.myorg.myapp.voip", "org.myorg.myapp.voip"),
    ] {
        req.token_app = app.to_string();
        let r = build_request(&req, &ApnsAppConfig::default()).unwrap();
        assert_eq!(r.topic, topic, "{app}");
        assert_eq!(r.header("apns-topic"), Some(topic));
    }
    // A configured topic wins and is not stripped; a blank one is ignored.
    req.token_app = "org.myorg.myapp.dev".into();
    let r = build_request(&req, &cfg(Some("org.x.dev"), json!({}))).unwrap();
    assert_eq!(r.topic, "org.x.dev");
    let r = build_request(&req, &cfg(Some("  "), json!({}))).unwrap();
    assert_eq!(r.topic, "org.myorg.myapp");
    // A header `apns_topic` overrides both, and its `.voip` triggers the defaults.
    let r = build_request(
        &req,
        &cfg(Some("org.x"), json!({"apns_topic": "org.y.voip"})),
    )
    .unwrap();
    assert_eq!(r.topic, "org.y.voip");
    assert_eq!(r.push_type.as_deref(), Some("voip"));
    assert_eq!(
        r.headers.iter().filter(|(n, _)| n == "apns-topic").count(),
        1
    );
    // Nothing left of the app id.
    req.token_app = ".dev".into();
    assert_eq!(
        build_request(&req, &ApnsAppConfig::default()),
        Err(ApnsBuildError::MissingTopic)
    );
    assert_eq!(default_topic("a.prod"), "a");
}

#[test]
fn header_names() {
    let r = build_request(
        &fixture_req(),
        &cfg(
            None,
            json!({
                "apns_collapse_id": "call-1",
                "APNS-PRIORITY": "5",
                "authorization": "bearer evil",
                "content-type": "text/plain",
                "x-anything": {"nested": true},
                "Push-Timeout": "25000"
            }),
        ),
    )
    .unwrap();
    assert_eq!(
        r.headers,
        pairs(&[
            ("apns-topic", "org.myorg.myapp"),
            ("apns-priority", "5"),
            ("apns-collapse-id", "call-1"),
            ("apns-id", "7def8ed9-ae44-416c-8c3f-58b8f73582a5"),
        ])
    );
    assert_eq!(
        r.ignored_headers,
        [
            "authorization",
            "content-type",
            "x-anything",
            "Push-Timeout"
        ]
    );
    // apns4erl's typo and the hyphenated form are the same header; the last wins.
    let r = build_request(
        &fixture_req(),
        &cfg(
            None,
            json!({"apns-collapse_id": "a", "apns-collapse-id": "b"}),
        ),
    )
    .unwrap();
    assert_eq!(r.header("apns-collapse-id"), Some("b"));
    assert!(r.headers.iter().all(|(n, _)| !n.contains('_')));
}

#[test]
fn header_value_types() {
    for bad in [
        json!(true),
        json!(1.5),
        json!(null),
        json!(["10"]),
        json!({}),
    ] {
        assert_eq!(
            build_request(&fixture_req(), &cfg(None, json!({ "apns_priority": bad }))),
            Err(ApnsBuildError::HeaderType {
                name: "apns_priority".into()
            })
        );
    }
    // An empty string is "not set": the voip default applies.
    let r = build_request(
        &fixture_req(),
        &cfg(Some("a.voip"), json!({"apns_push_type": ""})),
    )
    .unwrap();
    assert_eq!(r.header("apns-push-type"), Some("voip"));
    assert_eq!(
        build_request(
            &fixture_req(),
            &cfg(None, json!({"apns_push_type": "voip\r\nx-evil: 1"}))
        ),
        Err(ApnsBuildError::InvalidHeaderValue {
            name: "apns-push-type"
        })
    );
}

#[test]
fn header_validation() {
    let ok = "c".repeat(64);
    let r = build_request(
        &fixture_req(),
        &cfg(None, json!({ "apns_collapse_id": ok })),
    )
    .unwrap();
    assert_eq!(r.header("apns-collapse-id").map(str::len), Some(64));
    assert_eq!(
        build_request(
            &fixture_req(),
            &cfg(None, json!({ "apns_collapse_id": "c".repeat(65) }))
        ),
        Err(ApnsBuildError::BadCollapseId { len: 65 })
    );
    for good in [json!(1), json!("5"), json!(10)] {
        assert!(
            build_request(&fixture_req(), &cfg(None, json!({ "apns_priority": good }))).is_ok()
        );
    }
    for (bad, text) in [
        (json!(3), "3"),
        (json!("high"), "high"),
        (json!(-10), "-10"),
    ] {
        assert_eq!(
            build_request(&fixture_req(), &cfg(None, json!({ "apns_priority": bad }))),
            Err(ApnsBuildError::BadPriority(text.into()))
        );
    }
    assert_eq!(
        build_request(
            &fixture_req(),
            &cfg(None, json!({"apns_expiration": "soon"}))
        ),
        Err(ApnsBuildError::BadExpiration("soon".into()))
    );
    assert_eq!(
        build_request(&fixture_req(), &cfg(None, json!({"apns_expiration": -1}))),
        Err(ApnsBuildError::BadExpiration("-1".into()))
    );
}

#[test]
fn apns_id() {
    let mut req = fixture_req();
    req.msg_id = Some("7DEF8ED9-AE44-416C-8C3F-58B8F73582A5".into());
    let r = build_request(&req, &ApnsAppConfig::default()).unwrap();
    assert_eq!(
        r.header("apns-id"),
        Some("7def8ed9-ae44-416c-8c3f-58b8f73582a5")
    );
    // Kazoo's own 32-hex Msg-IDs and anything else are not sent.
    for id in ["7def8ed9ae44416c8c3f58b8f73582a5", "x", ""] {
        req.msg_id = Some(id.into());
        let r = build_request(&req, &ApnsAppConfig::default()).unwrap();
        assert_eq!(r.header("apns-id"), None, "{id}");
    }
    req.msg_id = None;
    assert_eq!(
        build_request(&req, &ApnsAppConfig::default())
            .unwrap()
            .header("apns-id"),
        None
    );
    // Configured wins, must be a UUID, and is lowercased.
    let r = build_request(
        &fixture_req(),
        &cfg(
            None,
            json!({"apns_id": "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"}),
        ),
    )
    .unwrap();
    assert_eq!(
        r.header("apns-id"),
        Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    );
    assert_eq!(
        build_request(&fixture_req(), &cfg(None, json!({"apns_id": "nope"}))),
        Err(ApnsBuildError::BadMessageId("nope".into()))
    );
    assert!(is_canonical_uuid("7def8ed9-ae44-416c-8c3f-58b8f73582a5"));
    assert!(!is_canonical_uuid("7def8ed9-ae44-416c-8c3f-58b8f73582a"));
    assert!(!is_canonical_uuid("7def8ed9-ae44-416c-8c3f+58b8f73582a5"));
    assert!(!is_canonical_uuid("7def8ed9-ae44-416c-8c3f-58b8f73582g5"));
}

#[test]
fn payload_size_limits() {
    let mut req = fixture_req();
    req.payload
        .insert("pad".into(), Value::String("p".repeat(4800)));
    let size = payload(&req).to_string().len();
    assert!(size > 4096 && size <= 5120, "{size}");
    let voip = build_request(&req, &cfg(Some("org.myorg.myapp.voip"), json!({}))).unwrap();
    assert_eq!(voip.body.len(), size);
    assert_eq!(
        build_request(&req, &ApnsAppConfig::default()),
        Err(ApnsBuildError::PayloadTooLarge { size, limit: 4096 })
    );
    assert_eq!(
        build_request(
            &req,
            &cfg(
                Some("org.myorg.myapp.voip"),
                json!({"apns_push_type": "alert"})
            )
        ),
        Err(ApnsBuildError::PayloadTooLarge { size, limit: 4096 })
    );
    req.payload
        .insert("pad".into(), Value::String("p".repeat(5200)));
    let size = payload(&req).to_string().len();
    assert_eq!(
        build_request(&req, &cfg(Some("org.myorg.myapp.voip"), json!({}))),
        Err(ApnsBuildError::PayloadTooLarge { size, limit: 5120 })
    );
}

#[test]
fn payload_shapes() {
    let mut req = fixture_req();
    req.alert_key = None;
    req.sound = None;
    req.call_id = None;
    // Params alone still make an alert.
    assert_eq!(
        payload(&req),
        json!({"aps": {"alert": {"loc-args": ["callerreply02"]}},
                   "caller-id-number": "callerreply02", "utc_unix_timestamp_ms": "1717000000000"})
    );
    req.alert_params = None;
    req.payload.clear();
    assert_eq!(payload(&req), json!({}));
    // The payload is merged into `aps` and wins on conflicts.
    let mut req = fixture_req();
    req.payload = json!({"aps": {"sound": "other.caf", "badge": 1, "alert": {"title": "T"}}})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(
        payload(&req),
        json!({"aps": {"alert": {"loc-key": "IC_SIL", "loc-args": ["callerreply02"], "title": "T"},
                           "sound": "other.caf", "call-id": "1-31568@127.0.0.1", "badge": 1}})
    );
}

#[test]
fn rejects_unsafe_token() {
    let mut req = fixture_req();
    req.token_id = "../../x".into();
    assert_eq!(
        build_request(&req, &ApnsAppConfig::default()),
        Err(ApnsBuildError::BadDeviceToken)
    );
    req.token_id = String::new();
    assert_eq!(
        build_request(&req, &ApnsAppConfig::default()),
        Err(ApnsBuildError::BadDeviceToken)
    );
}

#[test]
fn deep_merge_semantics() {
    let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {"f": 1}});
    deep_merge(
        &mut base,
        &json!({"a": {"c": [3], "g": null}, "d": {"h": 1}, "e": 5, "i": true}),
    );
    assert_eq!(
        base,
        json!({"a": {"b": 1, "c": [3], "g": null}, "d": {"h": 1}, "e": 5, "i": true})
    );
    // Key order: existing keys stay in place, new keys are appended.
    let keys: Vec<&str> = base
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["a", "d", "e", "i"]);
    // A non-object on either side replaces.
    let mut base = json!([1]);
    deep_merge(&mut base, &json!({"a": 1}));
    assert_eq!(base, json!({"a": 1}));
    let mut base = json!({"a": 1});
    deep_merge(&mut base, &json!("s"));
    assert_eq!(base, json!("s"));
    let mut base = json!({"a": 1});
    deep_merge(&mut base, &json!({}));
    assert_eq!(base, json!({"a": 1}));
}

#[test]
fn base_urls() {
    for (input, want) in [
        (None, "https://api.push.apple.com:443"),
        (Some(""), "https://api.push.apple.com:443"),
        (Some("  "), "https://api.push.apple.com:443"),
        (Some("api.push.apple.com"), "https://api.push.apple.com:443"),
        (
            Some("api.sandbox.push.apple.com"),
            "https://api.sandbox.push.apple.com:443",
        ),
        (Some("API.Push.Apple.com"), "https://api.push.apple.com:443"),
        (
            Some("api.push.apple.com:2197"),
            "https://api.push.apple.com:2197",
        ),
        (Some("127.0.0.1:8443"), "https://127.0.0.1:8443"),
        (Some("https://localhost"), "https://localhost:443"),
        (Some("https://localhost/"), "https://localhost:443"),
        (Some("HTTPS://mock_apns:9443/"), "https://mock_apns:9443"),
        (Some("[::1]:8443"), "https://[::1]:8443"),
        (Some("[::1]"), "https://[::1]:443"),
        (Some("https://[FE80::1]:8443/"), "https://[fe80::1]:8443"),
    ] {
        assert_eq!(base_url(input).as_deref(), Ok(want), "{input:?}");
    }
    for bad in [
        "http://api.push.apple.com",
        "ftp://x",
        "https://",
        "https://x/3/device",
        "x/y",
        "user@host",
        "host:",
        "host:0",
        "host:65536",
        "host:443x",
        "host:+443",
        "::1",
        "[::1",
        "[::1]x",
        "[nope]:1",
        "-bad.example",
        "a..b",
        "a b",
        "host?x",
        "é.example",
    ] {
        assert!(
            matches!(base_url(Some(bad)), Err(ApnsBuildError::BadHost { .. })),
            "{bad}"
        );
    }
    let err = base_url(Some("http://x")).unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

//! Property tests for the pure core: the Contact parser, the `reg_success` decision and
//! push-object update, and the APNs / FCM payload mappers.
//!
//! Each property runs proptest's default 256 cases (fast: no I/O). Beyond "never
//! panics on arbitrary input", they check round trips (render → parse, encode →
//! decode), that tokens survive the whole registration path, that updates are
//! idempotent, and that provider payloads respect their limits and types.

use proptest::prelude::*;
use pusher_core::apns::{self, ApnsAppConfig, MAX_PAYLOAD, MAX_VOIP_PAYLOAD};
use pusher_core::contact::{self, Contact, MAX_CONTACTS, Param};
use pusher_core::fcm::{self, MAX_MESSAGE};
use pusher_core::push_req::PushReq;
use pusher_core::reg_success::{self, PUSH_KEY, PushUpdate, RegDecision, RegSuccess};
use pusher_core::ua_rules::UserAgentRules;
use serde_json::{Map, Value, json};

const ACCOUNT: &str = "3c1e6a2f9b7d4e0a8c5b1d2e3f405162";

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        // Quarters: exact in binary, so they print and parse back unchanged.
        any::<i32>().prop_map(|n| json!(f64::from(n) / 4.0)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z-]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Text that looks like SIP: the characters the parser cares about, plus a few others.
fn sipish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("<".to_string()),
            Just(">".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just(";".to_string()),
            Just(",".to_string()),
            Just("=".to_string()),
            Just(" ".to_string()),
            Just("sip:".to_string()),
            Just("@".to_string()),
            Just("?".to_string()),
            Just("*".to_string()),
            Just("pn-tok".to_string()),
            "[a-z0-9%é]{1,4}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// A device/push token as providers issue them (APNs hex, FCM with `:`, `-`, `_`).
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_:.~-]{1,64}"
}

/// One renderable contact: `sip:user@host`, params with token, empty, quoted or no value.
fn contact_model() -> impl Strategy<Value = Contact> {
    let value = prop_oneof![
        Just(None),
        "[A-Za-z0-9._~%+-]{0,10}".prop_map(Some),
        "[A-Za-z0-9 ;,<>=:@.]{0,10}".prop_map(Some),
    ];
    let params = prop::collection::vec(("[a-z][a-z0-9-]{0,8}", value), 0..6);
    ("[a-z0-9]{1,8}", "[a-z0-9.]{1,12}", params).prop_map(|(user, host, params)| Contact {
        uri: format!("sip:{user}@{host}"),
        params: params
            .into_iter()
            .map(|(name, value)| Param { name, value })
            .collect(),
    })
}

/// `<uri>;a=b;flag;q="x y"`: values with characters outside a SIP token are quoted.
fn render(c: &Contact) -> String {
    let mut out = format!("<{}>", c.uri);
    for p in &c.params {
        out.push(';');
        out.push_str(&p.name);
        if let Some(v) = &p.value {
            let token = v
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._~%+-".contains(ch));
            if token {
                out.push_str(&format!("={v}"));
            } else {
                out.push_str(&format!("=\"{v}\""));
            }
        }
    }
    out
}

/// Every byte outside `[A-Za-z0-9]` as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn rules() -> UserAgentRules {
    let (rules, errors) = UserAgentRules::compile(&json!({
        "App": {"regex": "^App/",
                "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}}
    }));
    assert!(errors.is_empty());
    rules
}

fn push_req(token: &str, token_type: &str, payload: Value, extra: Value) -> Value {
    let mut v = json!({
        "Token-ID": token, "Token-Type": token_type, "Token-App": "org.example.app",
        "Payload": payload, "Call-ID": "c1", "Alert-Key": "IC_SIL", "Alert-Params": ["x"]
    });
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    v
}

proptest! {
    // ---- Contact parser -------------------------------------------------------------

    #[test]
    fn contact_parser_never_panics(s in ".{0,200}") {
        let _ = contact::parse_contacts(&s);
        let _ = contact::url_decode(&s);
    }

    #[test]
    fn contact_parser_never_panics_on_sip_like_text(s in sipish()) {
        if let Ok(contacts) = contact::parse_contacts(&s) {
            prop_assert!(!contacts.is_empty() && contacts.len() <= MAX_CONTACTS);
            for c in &contacts {
                prop_assert!(!c.uri.is_empty());
                prop_assert!(c.params.iter().all(|p| !p.name.is_empty()));
            }
        }
    }

    #[test]
    fn rendered_contacts_parse_back(contacts in prop::collection::vec(contact_model(), 1..4)) {
        let header = contacts.iter().map(render).collect::<Vec<_>>().join(", ");
        let parsed = contact::parse_contacts(&header);
        prop_assert_eq!(parsed, Ok(contacts), "header: {}", header);
    }

    #[test]
    fn url_decode_inverts_percent_encoding(s in ".{0,40}") {
        prop_assert_eq!(contact::url_decode(&percent_encode(&s)), s);
    }

    #[test]
    fn url_decode_never_grows(s in ".{0,60}") {
        prop_assert!(contact::url_decode(&s).len() <= s.len());
    }

    // ---- reg_success decision and push-object update ------------------------------

    #[test]
    fn decide_never_panics_on_arbitrary_fields(
        fields in prop::collection::vec(
            (prop_oneof![
                Just("User-Agent".to_string()), Just("Contact".to_string()),
                Just("Custom-Channel-Vars".to_string()), Just("Account-ID".to_string()),
                Just("Authorizing-ID".to_string()), Just("Proxy-Path".to_string()),
                Just("Proxy-URI".to_string()), Just("app-id".to_string()),
            ], any_json()),
            0..8),
        contact in sipish(),
        rfc8599 in any::<bool>(),
    ) {
        let mut body: Map<String, Value> = fields.into_iter().collect();
        body.entry("Contact").or_insert(Value::String(contact));
        let reg = RegSuccess::from_json(Value::Object(body)).expect("object");
        let (first, _) = reg_success::decide(&reg, &rules(), rfc8599);
        let (second, _) = reg_success::decide(&reg, &rules(), rfc8599);
        prop_assert_eq!(first, second, "deterministic");
    }

    #[test]
    fn token_survives_the_registration_path(
        tok in token(),
        app in "[a-z]{1,8}(\\.[a-z]{1,8}){0,3}",
        encode in any::<bool>(),
        extra_contacts in 0usize..3,
    ) {
        let written = if encode { percent_encode(&tok) } else { tok.clone() };
        let mut header = format!(
            "\"Phone\" <sip:2001@10.0.0.1:5060;app-id={app};pn-tok={written};pn-type=apple>;expires=60"
        );
        for i in 0..extra_contacts {
            header.push_str(&format!(", <sip:other{i}@h;pn-tok=decoy{i}>"));
        }
        let reg = RegSuccess::from_json(json!({
            "User-Agent": "App/1.0", "Contact": header,
            "Custom-Channel-Vars": {"Account-ID": ACCOUNT, "Authorizing-ID": "dev1"}
        })).expect("object");
        let (decision, warnings) = reg_success::decide(&reg, &rules(), false);
        let RegDecision::Update { update: PushUpdate::Set(push), device_id, account_db, .. } = decision else {
            return Err(TestCaseError::fail(format!("no update: {decision:?}")));
        };
        prop_assert_eq!(push.get("Token-ID"), Some(&json!(tok)));
        prop_assert_eq!(push.get("Token-App"), Some(&json!(app)));
        prop_assert_eq!(push.get("Token-Type"), Some(&json!("apple")));
        prop_assert_eq!(device_id, "dev1");
        prop_assert_eq!(account_db, "account/3c/1e/6a2f9b7d4e0a8c5b1d2e3f405162");
        prop_assert_eq!(warnings.len(), usize::from(extra_contacts > 0));
    }

    #[test]
    fn applying_an_update_twice_is_applying_it_once(
        doc in any_json(),
        push in prop::collection::vec(("[A-Za-z-]{1,10}", ".{0,10}"), 0..5),
        remove in any::<bool>(),
    ) {
        let update = if remove {
            PushUpdate::Remove
        } else {
            PushUpdate::Set(push.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
        };
        let mut once = doc.clone();
        let changed = reg_success::apply_update(&mut once, &update);
        let mut twice = once.clone();
        prop_assert!(!reg_success::apply_update(&mut twice, &update), "second apply changed it");
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(changed, once != doc);
        // Only `push` is touched.
        if let (Value::Object(before), Value::Object(after)) = (&doc, &once) {
            for (k, v) in before {
                if k != PUSH_KEY {
                    prop_assert_eq!(after.get(k), Some(v));
                }
            }
        }
    }

    #[test]
    fn push_equality_ignores_key_order(
        entries in prop::collection::btree_map("[a-z]{1,6}", any_json(), 0..6),
    ) {
        let forward: Map<String, Value> = entries.clone().into_iter().collect();
        let backward: Map<String, Value> = entries.into_iter().rev().collect();
        prop_assert!(reg_success::push_equal(&Value::Object(forward), &Value::Object(backward)));
    }

    // ---- APNs request builder --------------------------------------------------------

    #[test]
    fn apns_request_respects_limits_and_header_rules(
        tok in token(),
        payload in prop::collection::vec(("[a-z]{1,8}", any_json()), 0..6),
        filler in 0usize..6000,
        voip in any::<bool>(),
        headers in prop::collection::vec((
            prop_oneof![
                Just("apns_priority".to_string()), Just("apns-expiration".to_string()),
                Just("apns_collapse_id".to_string()), Just("apns-id".to_string()),
                Just("apns-push-type".to_string()), Just("x-other".to_string())],
            any_json()), 0..4),
    ) {
        let mut p: Map<String, Value> = payload.into_iter().collect();
        p.insert("filler".into(), json!("f".repeat(filler)));
        let req = PushReq::from_json(&push_req(&tok, "apple", Value::Object(p), json!({})), 1)
            .expect("valid push_req");
        let cfg = ApnsAppConfig {
            apns_topic: voip.then(|| "org.example.app.voip".to_string()),
            headers: headers.into_iter().collect(),
        };
        let body_len = apns::payload(&req).to_string().len();
        match apns::build_request(&req, &cfg) {
            Ok(built) => {
                let limit = if built.push_type.as_deref() == Some("voip") { MAX_VOIP_PAYLOAD } else { MAX_PAYLOAD };
                prop_assert!(built.body.len() <= limit);
                prop_assert_eq!(built.body.len(), body_len);
                prop_assert_eq!(&built.path, &format!("/3/device/{tok}"));
                prop_assert!(built.headers.iter().all(|(_, v)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())));
                if voip {
                    prop_assert!(built.header("apns-push-type").is_some());
                }
            }
            Err(apns::ApnsBuildError::PayloadTooLarge { size, limit }) => {
                prop_assert_eq!(size, body_len);
                prop_assert!(size > limit);
            }
            Err(_) => {} // bad header values from config: refused, fine
        }
    }

    #[test]
    fn apns_payload_is_deep_merged_payload_wins(key in "[a-z]{1,8}", v in any_json()) {
        let req = PushReq::from_json(&push_req("abc", "apple", json!({ key.clone(): v.clone() }), json!({})), 1)
            .expect("valid");
        let body = apns::payload(&req);
        if key != "aps" {
            prop_assert_eq!(&body[&key], &v);
            prop_assert_eq!(&body["aps"]["call-id"], &json!("c1"));
        }
    }

    // ---- FCM message builder -----------------------------------------------------------

    #[test]
    fn fcm_message_data_is_all_strings_and_within_limits(
        tok in token(),
        payload in prop::collection::vec((".{1,10}", any_json()), 0..8),
        envelope in prop_oneof![Just(Value::Null), any_json(),
            any_json().prop_map(|d| json!({"data": d, "priority": "high", "time_to_live": 60})),
            any_json().prop_map(|d| json!({"message": {"data": {"x": d}, "topic": "t", "token": "evil"}}))],
    ) {
        let req = PushReq::from_json(
            &push_req(&tok, "firebase", Value::Object(payload.into_iter().collect()), json!({"Sound": {"a": 1}})),
            1,
        ).expect("valid");
        if let Ok(msg) = fcm::build_message(&req, &envelope) {
            let m = msg["message"].as_object().expect("message");
            prop_assert_eq!(&m["token"], &json!(tok));
            prop_assert!(!m.contains_key("topic") && !m.contains_key("condition"));
            let data = m["data"].as_object().expect("data");
            prop_assert!(data.values().all(Value::is_string));
            prop_assert!(data.keys().all(|k| !fcm::is_reserved_key(k)));
            prop_assert!(msg["message"].to_string().len() <= MAX_MESSAGE);
        }
    }

    #[test]
    fn fcm_data_strings_round_trip(v in any_json()) {
        match fcm::data_string(&v) {
            None => prop_assert!(v.is_null()),
            Some(s) => match &v {
                Value::String(orig) => prop_assert_eq!(&s, orig),
                other => prop_assert_eq!(&serde_json::from_str::<Value>(&s).expect("JSON text"), other),
            },
        }
    }
}

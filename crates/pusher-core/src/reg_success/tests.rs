use super::rfc8599::apple_bundle_id;
use super::*;
use serde_json::json;

const FIXTURES: &str = include_str!("../../../../tests/fixtures/kamailio-captured.jsonl");
const ACCOUNT: &str = "3c1e6a2f9b7d4e0a8c5b1d2e3f405162";
const DB: &str = "account/3c/1e/6a2f9b7d4e0a8c5b1d2e3f405162";

fn fixture_body(n: usize) -> Value {
    let line = FIXTURES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .nth(n)
        .unwrap();
    serde_json::from_str::<Value>(line).unwrap()["body"].clone()
}

/// Fixture `n` with the CCVs Kazoo's registrar would add.
fn fixture_with_ids(n: usize) -> Value {
    let mut body = fixture_body(n);
    body["Custom-Channel-Vars"] = json!({"Account-ID": ACCOUNT, "Authorizing-ID": "d3v1ce"});
    body
}

fn reg(v: Value) -> RegSuccess {
    RegSuccess::from_json(v).unwrap()
}

/// The documented rule's properties, with a regex matching the fixture's UA.
fn rules() -> UserAgentRules {
    let (rules, errors) = UserAgentRules::compile(&json!({
        "MyApp": {
            "regex": "^Linphone-Harness",
            "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}
        }
    }));
    assert!(errors.is_empty());
    rules
}

fn set_of(decision: &RegDecision) -> &Map<String, Value> {
    match decision {
        RegDecision::Update {
            update: PushUpdate::Set(push),
            ..
        } => push,
        other => panic!("expected Update/Set, got {other:?}"),
    }
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn from_json_reads_fields() {
    let r = reg(fixture_with_ids(0));
    assert_eq!(
        r.user_agent.as_deref(),
        Some("Linphone-Harness/5.2.0 (iPhone) iOS/17.2 PushKit \"quoted\"")
    );
    assert_eq!(r.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(r.authorizing_id.as_deref(), Some("d3v1ce"));
    assert_eq!(r.proxy_path.as_deref(), Some("sip:127.0.0.1:5060"));
    assert_eq!(r.proxy_uri, None);
    assert_eq!(r.call_id.as_deref(), Some("1-716@127.0.0.1"));
    assert_eq!(
        r.msg_id.as_deref(),
        Some("c4381169-a9e4-4ece-8992-f6eb26528bc1")
    );
    assert_eq!(r.top_level_str("Realm"), Some("acme.sip.example.com"));
    assert_eq!(r.top_level_str("Expires"), Some("3600"));
    assert_eq!(r.top_level_str("First-Registration"), Some("true"));
    assert_eq!(r.top_level_str("Custom-Channel-Vars"), None);
    assert_eq!(r.top_level_str("Nope"), None);
}

#[test]
fn from_json_id_sources_and_types() {
    // CCVs win over top level.
    let r = reg(json!({
        "Account-ID": "top", "Authorizing-ID": "top-dev",
        "Custom-Channel-Vars": {"Account-ID": "ccv"}
    }));
    assert_eq!(r.account_id.as_deref(), Some("ccv"));
    assert_eq!(r.authorizing_id.as_deref(), Some("top-dev"));
    // Wrong types and empty strings are absent, so the top level is used.
    let r = reg(json!({
        "Account-ID": "top", "Authorizing-ID": "",
        "Custom-Channel-Vars": {"Account-ID": 5, "Authorizing-ID": ""},
        "User-Agent": 7, "Contact": ["x"], "Proxy-Path": null
    }));
    assert_eq!(r.account_id.as_deref(), Some("top"));
    assert_eq!(r.authorizing_id, None);
    assert_eq!(r.user_agent, None);
    assert_eq!(r.contact, None);
    assert_eq!(r.proxy_path, None);
    // CCVs that are not an object are ignored.
    let r = reg(json!({"Account-ID": "top", "Custom-Channel-Vars": "x"}));
    assert_eq!(r.account_id.as_deref(), Some("top"));
}

#[test]
fn from_json_rejects_non_objects() {
    assert_eq!(
        RegSuccess::from_json(json!([1])),
        Err(WireError::NotAnObject("an array"))
    );
    assert_eq!(
        RegSuccess::from_json(Value::Null).unwrap_err().to_string(),
        "reg_success body is not a JSON object but null"
    );
}

#[test]
fn fixture_token_registration() {
    let (decision, warnings) = decide(&reg(fixture_with_ids(0)), &rules(), false);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        decision,
        RegDecision::Update {
            account_db: DB.to_string(),
            device_id: "d3v1ce".to_string(),
            update: PushUpdate::Set(obj(json!({
                "Token-App": "org.myorg.myapp",
                "Token-Type": "apple",
                "Token-ID": "abc",
                "Token-Proxy": "sip:127.0.0.1:5060"
            }))),
            rule: "MyApp".to_string(),
        }
    );
    // Keys in the rule's order, then the proxy.
    let keys: Vec<&String> = set_of(&decision).keys().collect();
    assert_eq!(keys, ["Token-App", "Token-Type", "Token-ID", "Token-Proxy"]);
    // rfc8599 does not matter when a rule matched.
    assert_eq!(
        decide(&reg(fixture_with_ids(0)), &rules(), true).0,
        decision
    );
}

#[test]
fn public_proxy_from_proxy_uri() {
    let mut body = fixture_with_ids(0);
    body["Proxy-URI"] = json!("sip:203.0.113.10:5060;transport=tls");
    let (decision, _) = decide(&reg(body), &rules(), false);
    assert_eq!(
        set_of(&decision),
        &obj(json!({
            "Token-App": "org.myorg.myapp",
            "Token-Type": "apple",
            "Token-ID": "abc",
            "Token-Proxy": "sip:127.0.0.1:5060",
            "Token-Public-Proxy": "sip:203.0.113.10:5060;transport=tls"
        }))
    );
}

#[test]
fn proxies_override_rule_properties() {
    let (rules, _) = UserAgentRules::compile(&json!({"R": {"regex": "", "properties": {
        "Token-ID": "pn-tok", "Token-Proxy": "pn-type", "Token-Public-Proxy": "app-id"
    }}}));
    let mut body = fixture_with_ids(0);
    body["Proxy-Path"] = json!("sip:10.0.0.1:7000");
    let (decision, _) = decide(&reg(body), &rules, false);
    // No Proxy-URI: the rule's Token-Public-Proxy is dropped too.
    assert_eq!(
        set_of(&decision),
        &obj(json!({"Token-ID": "abc", "Token-Proxy": "sip:10.0.0.1:7000"}))
    );
}

#[test]
fn non_matching_user_agent() {
    let mut body = fixture_with_ids(0);
    body["User-Agent"] = json!("Other/1.0");
    assert_eq!(
        decide(&reg(body.clone()), &rules(), false),
        (RegDecision::NoUserAgentRule, vec![])
    );
    // No pn-* params in that Contact, so RFC 8599 finds nothing either.
    assert_eq!(
        decide(&reg(body), &rules(), true).0,
        RegDecision::NoUserAgentRule
    );
    assert_eq!(
        decide(&reg(fixture_with_ids(0)), &UserAgentRules::default(), false).0,
        RegDecision::NoUserAgentRule
    );
}

#[test]
fn missing_user_agent_is_empty_string() {
    let (rules, _) =
        UserAgentRules::compile(&json!({"NoUA": {"properties": {"Token-ID": "pn-tok"}}}));
    let mut body = fixture_with_ids(0);
    body.as_object_mut().unwrap().remove("User-Agent");
    let (decision, _) = decide(&reg(body), &rules, false);
    assert_eq!(
        set_of(&decision),
        &obj(json!({"Token-ID": "abc", "Token-Proxy": "sip:127.0.0.1:5060"}))
    );
}

#[test]
fn top_level_fallback_and_url_decoding() {
    let (rules, _) = UserAgentRules::compile(&json!({"R": {"regex": "^App", "properties": {
        "Token-ID": "pn-tok", "Token-App": "Realm", "Token-Reg": "Expires",
        "Token-Type": "pn-type", "Token-Missing": "nowhere"
    }}}));
    let body = json!({
        "User-Agent": "App/1",
        "Contact": "<sip:u@h;pn-tok=a%2Fb+c%3D;pn-type=%zz>",
        "Realm": "org.example%2Eapp",
        "pn-type": "shadowed by the Contact param",
        "Expires": 300,
        "Proxy-Path": "sip:10.0.0.1:7000;transport=udp",
        "Account-ID": ACCOUNT,
        "Authorizing-ID": "dev"
    });
    let (decision, warnings) = decide(&reg(body), &rules, false);
    assert!(warnings.is_empty());
    assert_eq!(
        set_of(&decision),
        &obj(json!({
            "Token-ID": "a/b c=",
            "Token-App": "org.example.app",
            "Token-Reg": "300",
            "Token-Type": "%zz",
            "Token-Proxy": "sip:10.0.0.1:7000;transport=udp"
        }))
    );
}

#[test]
fn no_token() {
    let body = |contact: &str| {
        let mut b = fixture_with_ids(0);
        b["Contact"] = json!(contact);
        reg(b)
    };
    let no_token = RegDecision::NoToken {
        rule: "MyApp".into(),
    };
    assert_eq!(
        decide(&body("<sip:u@h;app-id=x>"), &rules(), false).0,
        no_token
    );
    // A flag is not a token.
    assert_eq!(
        decide(&body("<sip:u@h;pn-tok>"), &rules(), false).0,
        no_token
    );
    // Token-ID is not a top-level fallback: it must be a Contact param.
    let mut b = fixture_with_ids(0);
    b["Contact"] = json!("<sip:u@h>");
    b["pn-tok"] = json!("top");
    assert_eq!(decide(&reg(b), &rules(), false).0, no_token);
    // A rule without Token-ID never yields a token.
    let (rules, _) = UserAgentRules::compile(
        &json!({"R": {"regex": "", "properties": {"Token-App": "app-id"}}}),
    );
    assert_eq!(
        decide(&reg(fixture_with_ids(0)), &rules, false).0,
        RegDecision::NoToken { rule: "R".into() }
    );
}

#[test]
fn bad_or_missing_contact() {
    let mut b = fixture_with_ids(0);
    b["Contact"] = json!("<sip:a");
    assert_eq!(
        decide(&reg(b.clone()), &rules(), false).0,
        RegDecision::NoContact("unterminated '<'".into())
    );
    b.as_object_mut().unwrap().remove("Contact");
    assert_eq!(
        decide(&reg(b.clone()), &rules(), false).0,
        RegDecision::NoContact("no Contact".into())
    );
    b["Contact"] = json!("");
    assert_eq!(
        decide(&reg(b), &rules(), false).0,
        RegDecision::NoContact("empty Contact header".into())
    );
}

#[test]
fn several_contacts_use_the_first() {
    let mut b = fixture_with_ids(0);
    b["Contact"] = json!("<sip:u@h;pn-tok=first;pn-type=apple>, <sip:v@h;pn-tok=second>");
    let (decision, warnings) = decide(&reg(b), &rules(), false);
    assert_eq!(set_of(&decision)["Token-ID"], json!("first"));
    assert_eq!(warnings, ["Contact has 2 contacts; used the first"]);
}

#[test]
fn missing_or_invalid_ids() {
    let body = fixture_body(0); // no CCVs at all, like a token-reg registration
    assert_eq!(
        decide(&reg(body.clone()), &rules(), false),
        (RegDecision::MissingIds, vec![])
    );
    let mut only_account = body.clone();
    only_account["Custom-Channel-Vars"] = json!({"Account-ID": ACCOUNT});
    assert_eq!(
        decide(&reg(only_account), &rules(), false).0,
        RegDecision::MissingIds
    );
    let mut bad = body;
    bad["Custom-Channel-Vars"] = json!({"Account-ID": "not-an-id", "Authorizing-ID": "d"});
    let (decision, warnings) = decide(&reg(bad), &rules(), false);
    assert_eq!(decision, RegDecision::MissingIds);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("not-an-id"), "{warnings:?}");
}

/// Regression (hostile corpus, `reg-authorizing-id-all-docs` and
/// `reg-authorizing-id-design-doc`): a `_`-prefixed Authorizing-ID made the service
/// read `_all_docs` and try to write it back, and would have put a `push` key into
/// an account's `_design/…` doc.
#[test]
fn reserved_couchdb_ids_are_not_devices() {
    for id in ["_all_docs", "_design/devices", "_local/x", "_changes", "_"] {
        let (decision, warnings) = decide_with_ccv("Authorizing-ID", id);
        assert_eq!(decision, RegDecision::MissingIds, "{id}");
        assert!(
            warnings.iter().any(|w| w.contains("reserved CouchDB id")),
            "{id}: {warnings:?}"
        );
    }
    assert!(matches!(
        decide_with_ccv("Authorizing-ID", "dev_1").0,
        RegDecision::Update { .. }
    ));
}

/// `decide` (User-Agent rule path) on fixture 0 with its CCV `field` set to `value`.
fn decide_with_ccv(field: &str, value: &str) -> (RegDecision, Vec<String>) {
    let mut body = fixture_with_ids(0);
    body["Custom-Channel-Vars"][field] = json!(value);
    decide(&reg(body), &rules(), false)
}

/// Regression (issue #12): `..` as an Authorizing-ID reached CouchDB as a path segment
/// and read the server root; `.`/`..`/empty ids of either kind are no device, on both the
/// User-Agent rule path and the RFC 8599 fallback.
#[test]
fn dot_segment_and_empty_ids_are_missing_ids() {
    for id in [".", ".."] {
        let (decision, warnings) = decide_with_ccv("Authorizing-ID", id);
        assert_eq!(decision, RegDecision::MissingIds, "{id}");
        assert!(
            warnings.iter().any(|w| w.contains("URL path segment")),
            "{id}: {warnings:?}"
        );
        let (decision, _) = decide_with_ccv("Account-ID", id);
        assert_eq!(decision, RegDecision::MissingIds, "Account-ID {id}");

        let mut b = fixture_with_ids(1);
        b["Contact"] = json!("<sip:u@h;pn-provider=fcm;pn-param=my-project;pn-prid=tok>");
        b["Custom-Channel-Vars"]["Authorizing-ID"] = json!(id);
        assert_eq!(
            decide(&reg(b), &UserAgentRules::default(), true).0,
            RegDecision::MissingIds,
            "rfc8599 {id}"
        );
    }
    for field in ["Account-ID", "Authorizing-ID"] {
        let (decision, _) = decide_with_ccv(field, "");
        assert_eq!(decision, RegDecision::MissingIds, "empty {field}");
    }
    // Dots inside an id are ordinary.
    assert!(matches!(
        decide_with_ccv("Authorizing-ID", "...").0,
        RegDecision::Update { .. }
    ));
}

#[test]
fn rule_errors_become_warnings() {
    let (rules, _) = UserAgentRules::compile(&json!({
        "Evil": {"regex": "(a+(?!b))+$"},
        "Ok": {"regex": "", "properties": {"Token-ID": "pn-tok"}}
    }));
    let mut b = fixture_with_ids(0);
    b["User-Agent"] = json!("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!");
    let (decision, warnings) = decide(&reg(b), &rules, false);
    assert_eq!(set_of(&decision)["Token-ID"], json!("abc"));
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("User-Agents.Evil: "),
        "{warnings:?}"
    );
}

#[test]
fn rfc8599_fixture() {
    let r = reg(fixture_with_ids(1));
    let (decision, warnings) = decide(&r, &rules(), true);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        decision,
        RegDecision::Update {
            account_db: DB.to_string(),
            device_id: "d3v1ce".to_string(),
            update: PushUpdate::Set(obj(json!({
                "Token-App": "org.myorg.myapp",
                "Token-Type": "apple",
                "Token-ID": "00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0",
                "Token-Proxy": "sip:127.0.0.1:5060"
            }))),
            rule: RFC8599_RULE.to_string(),
        }
    );
    assert_eq!(
        decide(&r, &rules(), false),
        (RegDecision::NoUserAgentRule, vec![])
    );
}

fn rfc8599(contact: &str) -> (RegDecision, Vec<String>) {
    let mut b = fixture_with_ids(1);
    b["Contact"] = json!(contact);
    b["Proxy-URI"] = json!("sip:203.0.113.10:5061;transport=tls");
    decide(&reg(b), &UserAgentRules::default(), true)
}

#[test]
fn rfc8599_variants() {
    // FCM: project id as Token-App, token with `:` kept whole.
    let (d, w) = rfc8599("<sip:u@h;pn-provider=fcm;pn-param=my-project;pn-prid=dXy:APA91b-x_y>");
    assert!(w.is_empty());
    assert_eq!(
        set_of(&d),
        &obj(json!({
            "Token-App": "my-project",
            "Token-Type": "firebase",
            "Token-ID": "dXy:APA91b-x_y",
            "Token-Proxy": "sip:127.0.0.1:5060",
            "Token-Public-Proxy": "sip:203.0.113.10:5061;transport=tls"
        }))
    );
    // Multi-token prid: the voip one wins wherever it is.
    let (d, _) = rfc8599(
        "<sip:u@h;pn-provider=apns;pn-param=T.com.ex.app.remote&voip;pn-prid=r1:remote&v1:voip>",
    );
    assert_eq!(set_of(&d)["Token-ID"], json!("v1"));
    assert_eq!(set_of(&d)["Token-App"], json!("com.ex.app"));
    // Without voip: the first.
    let (d, _) =
        rfc8599("<sip:u@h;pn-provider=apns.dev;pn-param=T.com.ex.app;pn-prid=r1:remote&r2>");
    assert_eq!(set_of(&d)["Token-ID"], json!("r1"));
    assert_eq!(set_of(&d)["Token-App"], json!("com.ex.app"));
    assert_eq!(set_of(&d)["Token-Type"], json!("apple"));
    // URL-decoded token, header params count too.
    let (d, _) = rfc8599("<sip:u@h>;pn-provider=APNS;pn-param=T.app.voip;pn-prid=ab%2Bcd");
    assert_eq!(set_of(&d)["Token-ID"], json!("ab+cd"));
    assert_eq!(set_of(&d)["Token-App"], json!("app"));
}

#[test]
fn rfc8599_remove_and_refusals() {
    let remove = |contact: &str| match rfc8599(contact).0 {
        RegDecision::Update { update, rule, .. } => (update, rule),
        other => panic!("{other:?}"),
    };
    for prid in ["null", "NULL", ""] {
        assert_eq!(
            remove(&format!(
                "<sip:u@h;pn-provider=apns;pn-param=T.app;pn-prid={prid}>"
            )),
            (PushUpdate::Remove, RFC8599_RULE.to_string())
        );
    }
    // Remove needs no pn-param.
    assert_eq!(
        remove("<sip:u@h;pn-provider=fcm;pn-prid=null>").0,
        PushUpdate::Remove
    );

    let no_token = RegDecision::NoToken {
        rule: RFC8599_RULE.into(),
    };
    let (d, w) = rfc8599("<sip:u@h;pn-provider=webpush;pn-param=x;pn-prid=t>");
    assert_eq!(d, no_token);
    assert_eq!(w, ["rfc8599: unsupported pn-provider \"webpush\""]);
    for bad_param in [
        ";pn-param=nodot",
        ";pn-param=.app",
        ";pn-param=T.voip&remote",
        "",
    ] {
        let (d, w) = rfc8599(&format!("<sip:u@h;pn-provider=apns;pn-prid=t{bad_param}>"));
        assert_eq!(d, no_token, "{bad_param}");
        assert_eq!(w.len(), 1);
    }
    let (d, _) = rfc8599("<sip:u@h;pn-provider=fcm;pn-param=;pn-prid=t>");
    assert_eq!(d, no_token);
    let (d, _) = rfc8599("<sip:u@h;pn-provider=fcm;pn-param=p;pn-prid=:voip>");
    assert_eq!(d, no_token);

    // Not a push device at all.
    assert_eq!(
        rfc8599("<sip:u@h;pn-provider=apns>").0,
        RegDecision::NoUserAgentRule
    );
    assert_eq!(
        rfc8599("<sip:u@h;pn-prid=abc>").0,
        RegDecision::NoUserAgentRule
    );
    let mut b = fixture_with_ids(1);
    b.as_object_mut().unwrap().remove("Contact");
    assert_eq!(
        decide(&reg(b), &UserAgentRules::default(), true).0,
        RegDecision::NoUserAgentRule
    );
    assert!(matches!(rfc8599("<sip:u@h").0, RegDecision::NoContact(_)));
}

#[test]
fn apple_bundle_parsing() {
    assert_eq!(
        apple_bundle_id("ABCD1234.org.myorg.myapp.voip").as_deref(),
        Some("org.myorg.myapp")
    );
    assert_eq!(
        apple_bundle_id("ABCD1234.org.myorg.myapp.voip&remote").as_deref(),
        Some("org.myorg.myapp")
    );
    assert_eq!(
        apple_bundle_id("ABCD1234.org.myorg.myapp").as_deref(),
        Some("org.myorg.myapp")
    );
    assert_eq!(
        apple_bundle_id("ABCD1234.org.myorg.voiper").as_deref(),
        Some("org.myorg.voiper")
    );
    assert_eq!(apple_bundle_id("ABCD1234").as_deref(), None);
    assert_eq!(apple_bundle_id("ABCD1234.voip").as_deref(), None);
    assert_eq!(apple_bundle_id(".org.app").as_deref(), None);
}

#[test]
fn push_equality_ignores_key_order() {
    let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":[1,{"p":1,"q":2}],"y":2}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"b":{"y":2,"x":[1,{"q":2,"p":1}]},"a":1}"#).unwrap();
    assert!(push_equal(&a, &b));
    let c: Value = serde_json::from_str(r#"{"b":{"y":2,"x":[{"q":2,"p":1},1]},"a":1}"#).unwrap();
    assert!(!push_equal(&a, &c), "array order matters");
    assert!(!push_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    assert!(!push_equal(
        &json!({"a": 1, "b": 2}),
        &json!({"a": 1, "c": 2})
    ));
    assert!(!push_equal(&json!({"a": "1"}), &json!({"a": 1})));
    assert!(push_equal(&json!("x"), &json!("x")));
}

#[test]
fn apply_update_set() {
    let push = obj(json!({"Token-ID": "t", "Token-Type": "apple"}));
    let mut doc =
        json!({"_id": "d3v1ce", "_rev": "1-a", "name": "phone", "sip": {"username": "2001"}});
    assert!(apply_update(&mut doc, &PushUpdate::Set(push.clone())));
    assert_eq!(
        doc,
        json!({"_id": "d3v1ce", "_rev": "1-a", "name": "phone", "sip": {"username": "2001"},
                   "push": {"Token-ID": "t", "Token-Type": "apple"}})
    );
    // Same object, keys in another order: no change.
    let resend = obj(json!({"Token-Type": "apple", "Token-ID": "t"}));
    assert!(!apply_update(&mut doc, &PushUpdate::Set(resend)));
    // Whole replacement, other fields untouched, key position kept.
    let newer = obj(json!({"Token-ID": "u"}));
    assert!(apply_update(&mut doc, &PushUpdate::Set(newer)));
    assert_eq!(doc["push"], json!({"Token-ID": "u"}));
    assert_eq!(doc["name"], json!("phone"));
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["_id", "_rev", "name", "sip", "push"]);
}

#[test]
fn apply_update_remove_and_non_objects() {
    let mut doc = json!({"_id": "d", "push": {"Token-ID": "t"}, "z": 1});
    assert!(apply_update(&mut doc, &PushUpdate::Remove));
    assert_eq!(doc, json!({"_id": "d", "z": 1}));
    assert!(!apply_update(&mut doc, &PushUpdate::Remove));
    let mut not_obj = json!([1]);
    assert!(!apply_update(&mut not_obj, &PushUpdate::Remove));
    assert!(!apply_update(&mut not_obj, &PushUpdate::Set(Map::new())));
    assert_eq!(not_obj, json!([1]));
    // A non-object existing push is replaced.
    let mut doc = json!({"push": "junk"});
    assert!(apply_update(
        &mut doc,
        &PushUpdate::Set(obj(json!({"Token-ID": "t"})))
    ));
    assert_eq!(doc, json!({"push": {"Token-ID": "t"}}));
}

#[test]
fn overlong_device_ids_are_not_looked_up() {
    let mut body: serde_json::Value =
        serde_json::from_str(FIXTURES.lines().next().unwrap()).unwrap();
    body = body["body"].clone();
    body["Custom-Channel-Vars"] = serde_json::json!({
        "Account-ID": "3c1e6a2f9b7d4e0a8c5b1d2e3f405162",
        "Authorizing-ID": "d".repeat(MAX_DEVICE_ID_LEN + 1)
    });
    let reg = RegSuccess::from_json(body).unwrap();
    let rules = crate::ua_rules::UserAgentRules::compile(&serde_json::json!({
        "H": {"regex": "^Linphone-Harness",
              "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}}
    }))
    .0;
    let (decision, warnings) = decide(&reg, &rules, false);
    assert_eq!(decision, RegDecision::MissingIds);
    assert!(
        warnings.iter().any(|w| w.contains("bytes long")),
        "{warnings:?}"
    );
}

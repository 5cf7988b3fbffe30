//! One test (at least) per resolution rule of [`AppConfig::resolve`].

use super::*;
use serde_json::json;

const APP: &str = "org.example.app";
const ZONE: &str = "local";

fn sa() -> Value {
    json!({"type": "service_account", "project_id": "proj", "client_email": "a@b",
        "token_uri": "https://oauth2.googleapis.com/token",
        "private_key": include_str!("../../tests/data/service-account-key.pem")})
}

/// A doc with `app` as the app scope, `zone` as the zone scope and `default`.
fn doc(app: Value, zone: Value, default: Value) -> ConfigDoc {
    ConfigDoc::new(json!({"_id": "pusher", APP: app, ZONE: zone, "default": default}))
}

fn with_p8(mut d: Value) -> ConfigDoc {
    d["_attachments"] = json!({P8_ATTACHMENT: {"digest": "md5-abc", "stub": true}});
    ConfigDoc::new(d)
}

fn resolve(d: &ConfigDoc, t: TokenType) -> AppConfig {
    AppConfig::resolve(d, APP, ZONE, t)
}

fn apple(d: &ConfigDoc) -> Result<AppleCredentials, AppConfigError> {
    match resolve(d, TokenType::Apple).credentials? {
        Credentials::Apple(a) => Ok(a),
        other => panic!("not apple: {other:?}"),
    }
}

fn firebase(d: &ConfigDoc) -> Result<FirebaseCredentials, AppConfigError> {
    match resolve(d, TokenType::FirebaseV1).credentials? {
        Credentials::Firebase(f) => Ok(f),
        other => panic!("not firebase: {other:?}"),
    }
}

fn apple_err(apple: Value) -> String {
    let d = doc(json!({"apple": apple}), json!({}), json!({}));
    self::apple(&d).expect_err("refused").to_string()
}

#[test]
fn push_deadline_accepts_only_whole_ms_within_one_to_sixty_seconds() {
    let ms = |n: u64| Some(Duration::from_millis(n));
    for (v, want) in [
        (json!(999), None),
        (json!(1000), ms(1000)),
        (json!(60000), ms(60000)),
        (json!(60001), None),
        (json!("5000"), None),
        (json!(-5000), None),
        (json!(1500.5), None),
    ] {
        assert_eq!(push_deadline(Some(&v)), want, "{v}");
    }
    assert_eq!(push_deadline(None), None);
}

#[test]
fn deadline_resolves_app_then_zone_then_default_and_falls_back() {
    let fallback = Duration::from_secs(7);
    let d = doc(
        json!({"push_deadline_ms": 2000}),
        json!({"push_deadline_ms": 3000}),
        json!({"push_deadline_ms": 4000}),
    );
    assert_eq!(
        resolve(&d, TokenType::Apple).deadline_or(fallback),
        Duration::from_secs(2)
    );
    let d = doc(
        json!({}),
        json!({"push_deadline_ms": 3000}),
        json!({"push_deadline_ms": 4000}),
    );
    assert_eq!(
        resolve(&d, TokenType::Apple).deadline,
        Some(Duration::from_secs(3))
    );
    let d = doc(json!({}), json!({}), json!({"push_deadline_ms": 4000}));
    assert_eq!(
        resolve(&d, TokenType::Apple).deadline,
        Some(Duration::from_secs(4))
    );
    // Out of range at the app scope: no fallthrough to the zone, the caller's default.
    let d = doc(
        json!({"push_deadline_ms": 70000}),
        json!({"push_deadline_ms": 3000}),
        json!({}),
    );
    assert_eq!(
        resolve(&d, TokenType::Apple).deadline_or(fallback),
        fallback
    );
    let d = doc(json!({}), json!({}), json!({}));
    assert_eq!(
        resolve(&d, TokenType::Apple).deadline_or(fallback),
        fallback
    );
}

#[test]
fn enabled_reads_the_section_of_the_token_type() {
    let d = doc(
        json!({"apple": {"enabled": false}, "firebase": {"enabled": "false"}}),
        json!({"firebase_v1": {"enabled": "FALSE"}}),
        json!({}),
    );
    assert!(!resolve(&d, TokenType::Apple).enabled);
    assert!(!resolve(&d, TokenType::Firebase).enabled);
    assert!(!resolve(&d, TokenType::FirebaseV1).enabled);
    let d = doc(
        json!({"apple": {"enabled": true}}),
        json!({"apple": {"enabled": false}}),
        json!({"firebase": {"enabled": false}}),
    );
    assert!(resolve(&d, TokenType::Apple).enabled, "app beats zone");
    assert!(!resolve(&d, TokenType::Firebase).enabled, "default applies");
    assert!(
        resolve(&d, TokenType::FirebaseV1).enabled,
        "absent is enabled"
    );
    let d = doc(json!({"apple": {"enabled": "nope"}}), json!({}), json!({}));
    assert!(
        resolve(&d, TokenType::Apple).enabled,
        "not boolean-like: default true"
    );
}

#[test]
fn the_section_holding_the_credentials_can_disable_the_app() {
    // The service account sits under firebase_v1, which says enabled: false: a
    // `Token-Type: firebase` push is disabled too, though `firebase.enabled` is unset.
    let d = doc(
        json!({"firebase_v1": {"service_account": sa(), "enabled": false}}),
        json!({}),
        json!({}),
    );
    assert!(!resolve(&d, TokenType::Firebase).enabled);
    assert!(!resolve(&d, TokenType::FirebaseV1).enabled);
    // The same from the zone, as a string (Kazoo's to_boolean).
    let d = doc(
        json!({"firebase_v1": {"service_account": sa()}}),
        json!({"firebase_v1": {"enabled": "FALSE"}}),
        json!({}),
    );
    assert!(!resolve(&d, TokenType::Firebase).enabled);
    // The openkazoo fork's place: firebase.enabled false disables firebase_v1 pushes.
    let d = doc(
        json!({"firebase": {"service_account": sa(), "enabled": false}}),
        json!({}),
        json!({}),
    );
    assert!(!resolve(&d, TokenType::FirebaseV1).enabled);
    // Kazoo 5's rule is kept: both sections false disables, whatever holds the account.
    let d = doc(
        json!({"firebase_v1": {"service_account": sa()}, "firebase": {"enabled": false}}),
        json!({}),
        json!({"firebase_v1": {"enabled": false}}),
    );
    assert!(!resolve(&d, TokenType::Firebase).enabled);
    assert!(!resolve(&d, TokenType::FirebaseV1).enabled);
    // A section that holds no credentials in use does not disable the other type.
    let d = doc(
        json!({"firebase_v1": {"service_account": sa()}, "firebase": {"enabled": false}}),
        json!({}),
        json!({}),
    );
    assert!(resolve(&d, TokenType::FirebaseV1).enabled);
    assert!(
        !resolve(&d, TokenType::Firebase).enabled,
        "the token type's own section still applies"
    );
    // Enabled everywhere: sent; no credentials at all: the token type's section decides.
    let d = doc(
        json!({"firebase_v1": {"service_account": sa(), "enabled": true}}),
        json!({}),
        json!({}),
    );
    assert!(resolve(&d, TokenType::Firebase).enabled);
    let d = doc(
        json!({"firebase_v1": {"enabled": false}}),
        json!({}),
        json!({}),
    );
    assert!(resolve(&d, TokenType::Firebase).enabled);
    assert!(!resolve(&d, TokenType::FirebaseV1).enabled);
    // Apple credentials live in `apple`: only apple.enabled matters.
    let d = doc(
        json!({"apple": {"certificate": "PEM"}, "firebase_v1": {"enabled": false}}),
        json!({}),
        json!({}),
    );
    assert!(resolve(&d, TokenType::Apple).enabled);
}

#[test]
fn remove_invalid_tokens_defaults_to_false_and_is_scoped() {
    let d = doc(json!({}), json!({}), json!({}));
    assert!(!resolve(&d, TokenType::Apple).remove_invalid_tokens);
    let d = doc(
        json!({}),
        json!({"remove_invalid_tokens": "true"}),
        json!({}),
    );
    assert!(resolve(&d, TokenType::Apple).remove_invalid_tokens);
    let d = doc(
        json!({"remove_invalid_tokens": false}),
        json!({"remove_invalid_tokens": true}),
        json!({"remove_invalid_tokens": true}),
    );
    assert!(!resolve(&d, TokenType::FirebaseV1).remove_invalid_tokens);
}

#[test]
fn default_auth_type_depends_on_a_non_empty_certificate() {
    assert_eq!(default_auth_type(Some("PEM")), "certdata");
    assert_eq!(default_auth_type(Some("")), "token");
    assert_eq!(default_auth_type(None), "token");
}

#[test]
fn certificate_means_certdata_by_default() {
    let d = doc(
        json!({"apple": {"certificate": "PEM"}}),
        json!({}),
        json!({}),
    );
    let a = apple(&d).expect("certdata");
    assert_eq!(
        a.auth,
        AppleAuth::Certificate {
            pem: "PEM".to_string().into()
        }
    );
    assert_eq!(a.auth.auth_type(), "certdata");
    assert_eq!(a.base_url, "https://api.push.apple.com:443");
}

#[test]
fn no_certificate_means_token_by_default() {
    let d = with_p8(json!({APP: {"apple": {"team_id": "T", "key_id": "K"}}}));
    let a = apple(&d).expect("token");
    assert_eq!(
        a.auth,
        AppleAuth::Token {
            team_id: "T".into(),
            key_id: "K".into(),
            refresh_window_min: 55,
            p8_digest: "md5-abc".into(),
        }
    );
    assert_eq!(a.auth.auth_type(), "token");
}

#[test]
fn explicit_auth_type_wins_and_token_settings_are_read() {
    let d = with_p8(json!({
        APP: {"apple": {"certificate": "PEM", "auth_type": "token", "token_refresh_window": 20}},
        ZONE: {"apple": {"team_id": "ZT"}},
        "default": {"apple": {"key_id": "DK", "team_id": "DT"}}
    }));
    let a = apple(&d).expect("token");
    assert_eq!(
        a.auth,
        AppleAuth::Token {
            team_id: "ZT".into(),
            key_id: "DK".into(),
            refresh_window_min: 20,
            p8_digest: "md5-abc".into(),
        }
    );
    let d = doc(
        json!({"apple": {"auth_type": "certdata"}}),
        json!({}),
        json!({}),
    );
    assert_eq!(apple(&d), Err(AppConfigError::NoCertificate));
}

#[test]
fn apple_refusals_keep_their_wording() {
    let d = ConfigDoc::new(json!({APP: {"apple": "x"}}));
    assert_eq!(
        apple(&d).unwrap_err().to_string(),
        "apple is not an object in system_config/pusher"
    );
    assert_eq!(
        apple_err(json!({"certificate": 5})),
        "apple.certificate is not a string (a PEM with the certificate and its key)"
    );
    assert_eq!(
        apple_err(json!({"auth_type": "certdata", "certificate": ""})),
        "no apple.certificate configured for this app (add_apple_app)"
    );
    assert_eq!(
        apple_err(json!({"key_id": "K"})),
        "apple.auth_type is token but apple.team_id is missing"
    );
    assert_eq!(
        apple_err(json!({"team_id": "T"})),
        "apple.auth_type is token but apple.key_id is missing"
    );
    assert_eq!(
        apple_err(json!({"team_id": "T", "key_id": "K"})),
        "apple.auth_type is token but system_config/pusher has no private_key.p8 attachment (add_apple_pem_file)"
    );
    assert_eq!(
        apple_err(json!({"auth_type": "jwt"})),
        "apple.auth_type \"jwt\" is neither certdata nor token"
    );
    let host = apple_err(json!({"certificate": "PEM", "host": "http://x"}));
    assert!(host.starts_with("apple.host: "), "{host}");
}

#[test]
fn apple_settings_resolve_app_then_zone_then_default() {
    let d = doc(
        json!({"apple": {"certificate": "APP", "apns_topic": "t.app"}}),
        json!({"apple": {"certificate": "ZONE", "host": "zone.example.com"}}),
        json!({"apple": {"host": "default.example.com", "headers": {"apns-priority": 5}}}),
    );
    let a = apple(&d).expect("ok");
    assert_eq!(
        a.auth,
        AppleAuth::Certificate {
            pem: "APP".to_string().into()
        }
    );
    assert_eq!(a.base_url, "https://zone.example.com:443");
    assert_eq!(a.request.apns_topic.as_deref(), Some("t.app"));
    assert_eq!(a.request.headers.get("apns-priority"), Some(&json!(5)));
}

#[test]
fn apple_fingerprint_follows_auth_and_base_url() {
    let fp = |apple: Value| {
        self::apple(&with_p8(json!({APP: {"apple": apple}})))
            .expect("ok")
            .fingerprint()
    };
    let base = fp(json!({"certificate": "A"}));
    assert_eq!(base, fp(json!({"certificate": "A", "apns_topic": "other"})));
    assert_ne!(base, fp(json!({"certificate": "B"})));
    assert_ne!(
        base,
        fp(json!({"certificate": "A", "host": "h.example.com"}))
    );
    let token = fp(json!({"team_id": "T", "key_id": "K"}));
    assert_ne!(token, fp(json!({"team_id": "T", "key_id": "K2"})));
    assert_ne!(
        token,
        fp(json!({"team_id": "T", "key_id": "K", "token_refresh_window": 9}))
    );
    let mut other_key = json!({APP: {"apple": {"team_id": "T", "key_id": "K"}}});
    other_key["_attachments"] = json!({P8_ATTACHMENT: {"digest": "md5-new"}});
    assert_ne!(
        token,
        apple(&ConfigDoc::new(other_key)).expect("ok").fingerprint()
    );
}

#[test]
fn service_account_lookup_prefers_firebase_v1() {
    let mut legacy = sa();
    legacy["project_id"] = json!("legacy");
    let d = doc(
        json!({"firebase": {"service_account": legacy}}),
        json!({"firebase_v1": {"service_account": sa()}}),
        json!({}),
    );
    let f = firebase(&d).expect("ok");
    assert_eq!((f.section, f.project_id.as_str()), ("firebase_v1", "proj"));
    let d = doc(
        json!({"firebase": {"service_account": legacy}}),
        json!({}),
        json!({}),
    );
    let f = firebase(&d).expect("ok");
    assert_eq!((f.section, f.project_id.as_str()), ("firebase", "legacy"));
    assert_eq!(f.envelope, Value::Null);
}

#[test]
fn service_account_may_be_a_json_string() {
    let d = doc(
        json!({"firebase_v1": {"service_account": sa().to_string()}}),
        json!({}),
        json!({}),
    );
    let f = firebase(&d).expect("ok");
    assert_eq!(f.service_account.expose(), &sa());
    let d = doc(
        json!({"firebase_v1": {"service_account": "{oops"}}),
        json!({}),
        json!({}),
    );
    let e = firebase(&d).unwrap_err().to_string();
    assert!(
        e.starts_with("firebase service_account is a string but not JSON: "),
        "{e}"
    );
    let d = doc(
        json!({"firebase_v1": {"service_account": 42}}),
        json!({}),
        json!({}),
    );
    assert_eq!(firebase(&d), Err(AppConfigError::ServiceAccountNotObject));
}

#[test]
fn service_account_must_pass_the_checks() {
    let mut no_key = sa();
    no_key.as_object_mut().expect("obj").remove("private_key");
    let d = doc(
        json!({"firebase_v1": {"service_account": no_key}}),
        json!({}),
        json!({}),
    );
    let e = firebase(&d).unwrap_err();
    assert!(matches!(e, AppConfigError::ServiceAccount(_)), "{e:?}");
    assert!(e.to_string().contains("lacks `private_key`"), "{e}");
}

#[test]
fn legacy_api_key_alone_has_its_own_error() {
    let d = doc(
        json!({"firebase": {"api_key": "AAAA"}}),
        json!({}),
        json!({}),
    );
    assert_eq!(firebase(&d), Err(AppConfigError::LegacyApiKey));
    let d = doc(json!({}), json!({}), json!({}));
    assert_eq!(
        firebase(&d).unwrap_err().to_string(),
        "no firebase_v1.service_account configured for this app (add_firebase_v1_app)"
    );
}

#[test]
fn envelope_is_the_first_headers_found() {
    let d = doc(
        json!({"firebase_v1": {"service_account": sa()}, "firebase": {"headers": {"a": 1}}}),
        json!({"firebase_v1": {"headers": {"z": 1}}}),
        json!({}),
    );
    // firebase_v1.headers (zone) is looked up before firebase.headers (app).
    assert_eq!(firebase(&d).expect("ok").envelope, json!({"z": 1}));
}

#[test]
fn firebase_fingerprint_follows_the_service_account() {
    let fp = |sa: Value, headers: Value| {
        let d = doc(
            json!({"firebase_v1": {"service_account": sa, "headers": headers}}),
            json!({}),
            json!({}),
        );
        firebase(&d).expect("ok").fingerprint()
    };
    let base = fp(sa(), json!({}));
    assert_eq!(base, fp(sa(), json!({"android": {}})));
    let mut other = sa();
    other["client_email"] = json!("c@d");
    assert_ne!(base, fp(other, json!({})));
}

#[test]
fn debug_never_prints_secrets() {
    let d = doc(
        json!({"apple": {"certificate": "-----BEGIN CERT-----"},
               "firebase_v1": {"service_account": sa()}}),
        json!({}),
        json!({}),
    );
    for t in [TokenType::Apple, TokenType::FirebaseV1] {
        let shown = format!("{:?}", resolve(&d, t));
        assert!(!shown.contains("BEGIN"), "{shown}");
    }
}

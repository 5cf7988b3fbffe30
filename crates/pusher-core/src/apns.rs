//! APNs request building: a [`PushReq`] and the app's `apple` config become the path,
//! headers and JSON body of one `POST /3/device/<token>` (spec §6.1; providers.md §1).
//!
//! The body is Kazoo's classic shape ([`payload`]): `aps.alert.loc-key`/`loc-args`,
//! `aps.sound` and `aps.call-id` from the request, with `Payload` deep-merged at the
//! root ([`deep_merge`]). The headers are `apns-topic` plus the app's `apple.headers`,
//! whose Kazoo (apns4erl) names `apns_push_type`, `apns_collapse_id`, … are mapped to
//! the real header names — `apns-collapse-id` spelled correctly, unlike apns4erl. Only
//! the known `apns-*` headers are ever sent. Departing from Kazoo on purpose, a `.voip`
//! topic gets `apns-push-type: voip`, `apns-priority: 10` and `apns-expiration: 0`
//! unless the config says otherwise.
//!
//! [`base_url`] turns Kazoo's `apple.host` (a bare host name, port 443) into the base
//! URL the HTTP client uses. Sending is the I/O crate's job.

use serde_json::{Map, Value};

use crate::kapps_config::ConfigDoc;
use crate::push_req::{PushReq, check_token_id};

/// Production APNs host, Kazoo's default `apple.host`.
pub const DEFAULT_HOST: &str = "api.push.apple.com";

/// Largest body APNs accepts for a regular notification, in bytes.
pub const MAX_PAYLOAD: usize = 4096;

/// Largest body APNs accepts for a VoIP notification, in bytes.
pub const MAX_VOIP_PAYLOAD: usize = 5120;

/// Longest `apns-collapse-id` APNs accepts, in bytes.
pub const MAX_COLLAPSE_ID: usize = 64;

/// The only headers [`build_request`] ever emits, in emission order.
pub const KNOWN_HEADERS: [&str; 6] = [
    "apns-topic",
    "apns-push-type",
    "apns-priority",
    "apns-expiration",
    "apns-collapse-id",
    "apns-id",
];

const TOPIC: usize = 0;
const PUSH_TYPE: usize = 1;
const PRIORITY: usize = 2;
const EXPIRATION: usize = 3;
const COLLAPSE_ID: usize = 4;
const APNS_ID: usize = 5;

/// Why no APNs request (or base URL) can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApnsBuildError {
    /// The device token is empty, too long or not URL-path safe.
    #[error("invalid APNs device token")]
    BadDeviceToken,
    /// A known header in `apple.headers` is neither a string nor an integer.
    #[error("apple.headers.{name} must be a string or an integer")]
    HeaderType {
        /// The key as written in the config.
        name: String,
    },
    /// A header value has characters outside visible ASCII.
    #[error("{name} has characters that are not visible ASCII")]
    InvalidHeaderValue {
        /// The header name.
        name: &'static str,
    },
    /// The topic is empty (e.g. `Token-App` is just `.dev`).
    #[error("APNs topic is empty")]
    MissingTopic,
    /// `apns-collapse-id` is longer than 64 bytes.
    #[error("apns-collapse-id is {len} bytes; APNs allows at most 64")]
    BadCollapseId {
        /// Its length in bytes.
        len: usize,
    },
    /// `apns-priority` is not 1, 5 or 10.
    #[error("apns-priority must be 1, 5 or 10, not {0:?}")]
    BadPriority(String),
    /// `apns-expiration` is not a non-negative integer (UNIX seconds).
    #[error("apns-expiration must be UNIX seconds, not {0:?}")]
    BadExpiration(String),
    /// A configured `apns-id` is not a UUID.
    #[error("apns-id must be a UUID, not {0:?}")]
    BadMessageId(String),
    /// The JSON body exceeds APNs' limit (5120 bytes for VoIP, else 4096).
    #[error("APNs payload is {size} bytes; the limit is {limit}")]
    PayloadTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// `apple.host` is not a usable HTTPS host (value bounded to 80 chars).
    #[error("invalid APNs host {host:?}: {reason}")]
    BadHost {
        /// The configured value.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The per-app `apple` settings the request depends on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApnsAppConfig {
    /// `<app>.apple.apns_topic`: the topic; default `Token-App` minus `.dev`/`.prod`.
    pub apns_topic: Option<String>,
    /// `<app>.apple.headers`: header overrides, Kazoo names (`apns_push_type`) or real
    /// ones (`apns-push-type`).
    pub headers: Map<String, Value>,
}

impl ApnsAppConfig {
    /// Reads `apple.apns_topic` and `apple.headers` for `app`, each resolved app → zone →
    /// `default` like Kazoo. A non-string topic or non-object headers count as absent.
    pub fn from_doc(doc: &ConfigDoc, app: &str, zone: &str) -> Self {
        ApnsAppConfig {
            apns_topic: doc
                .app_value(app, zone, &["apple", "apns_topic"])
                .and_then(Value::as_str)
                .map(str::to_string),
            headers: doc
                .app_value(app, zone, &["apple", "headers"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// One APNs request, ready to send to [`base_url`] + `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApnsRequest {
    /// `/3/device/<token>`.
    pub path: String,
    /// Lowercase `apns-*` headers in [`KNOWN_HEADERS`] order. The sender adds
    /// `authorization` (token auth) itself.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The `apns-topic` sent.
    pub topic: String,
    /// The `apns-push-type` sent, if any.
    pub push_type: Option<String>,
    /// Keys of `apple.headers` that are not APNs headers and were not sent (worth a
    /// warning).
    pub ignored_headers: Vec<String>,
}

impl ApnsRequest {
    /// Value of header `name` (lowercase), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Builds the APNs request for `req` (spec §6.1, with the fixes listed in the module
/// docs).
pub fn build_request(req: &PushReq, cfg: &ApnsAppConfig) -> Result<ApnsRequest, ApnsBuildError> {
    check_token_id(&req.token_id).map_err(|_| ApnsBuildError::BadDeviceToken)?;
    let mut values: [Option<String>; KNOWN_HEADERS.len()] = Default::default();
    let topic = cfg
        .apns_topic
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| default_topic(&req.token_app));
    values[TOPIC] = Some(topic.to_string());

    // Config wins over the computed topic, as in Kazoo's merge; later keys win over
    // earlier ones that map to the same header.
    let mut ignored_headers = Vec::new();
    for (key, value) in &cfg.headers {
        let Some(index) = header_index(key) else {
            ignored_headers.push(key.clone());
            continue;
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return Err(ApnsBuildError::HeaderType { name: key.clone() }),
        };
        // An empty value means "not set" (apns4erl would send an empty header).
        if !text.is_empty() {
            values[index] = Some(text);
        }
    }

    match values[APNS_ID].as_mut() {
        Some(id) if is_canonical_uuid(id) => *id = id.to_ascii_lowercase(),
        Some(id) => return Err(ApnsBuildError::BadMessageId(bounded(id))),
        None => {
            values[APNS_ID] = req
                .msg_id
                .as_deref()
                .filter(|id| is_canonical_uuid(id))
                .map(str::to_ascii_lowercase);
        }
    }

    let topic = values[TOPIC].clone().unwrap_or_default();
    if topic.ends_with(".voip") {
        // PushKit needs these; inferring the push type breaks VoIP (providers.md §1).
        for (index, default) in [(PUSH_TYPE, "voip"), (PRIORITY, "10"), (EXPIRATION, "0")] {
            values[index].get_or_insert_with(|| default.to_string());
        }
    }
    validate(&values)?;

    let body = payload(req).to_string().into_bytes();
    let push_type = values[PUSH_TYPE].clone();
    let limit = if push_type.as_deref() == Some("voip") {
        MAX_VOIP_PAYLOAD
    } else {
        MAX_PAYLOAD
    };
    if body.len() > limit {
        return Err(ApnsBuildError::PayloadTooLarge {
            size: body.len(),
            limit,
        });
    }
    let headers = KNOWN_HEADERS
        .iter()
        .zip(values)
        .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
        .collect();
    Ok(ApnsRequest {
        path: format!("/3/device/{}", req.token_id),
        headers,
        body,
        topic,
        push_type,
        ignored_headers,
    })
}

/// Checks the final header values.
fn validate(values: &[Option<String>; KNOWN_HEADERS.len()]) -> Result<(), ApnsBuildError> {
    for (name, value) in KNOWN_HEADERS.iter().zip(values) {
        if let Some(v) = value
            && !v.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ApnsBuildError::InvalidHeaderValue { name });
        }
    }
    if values[TOPIC].as_deref().is_none_or(str::is_empty) {
        return Err(ApnsBuildError::MissingTopic);
    }
    if let Some(id) = &values[COLLAPSE_ID]
        && id.len() > MAX_COLLAPSE_ID
    {
        return Err(ApnsBuildError::BadCollapseId { len: id.len() });
    }
    if let Some(p) = &values[PRIORITY]
        && !matches!(p.as_str(), "1" | "5" | "10")
    {
        return Err(ApnsBuildError::BadPriority(bounded(p)));
    }
    if let Some(e) = &values[EXPIRATION]
        && e.parse::<u64>().is_err()
    {
        return Err(ApnsBuildError::BadExpiration(bounded(e)));
    }
    Ok(())
}

/// Index in [`KNOWN_HEADERS`] of a config header key: case-insensitive, `_` read as `-`
/// (so Kazoo's `apns_collapse_id` and apns4erl's `apns-collapse_id` both work).
fn header_index(key: &str) -> Option<usize> {
    let name = key.trim().to_ascii_lowercase().replace('_', "-");
    KNOWN_HEADERS.iter().position(|known| *known == name)
}

fn bounded(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Kazoo's default topic: the app id with one trailing `.dev` or `.prod` removed.
pub fn default_topic(token_app: &str) -> &str {
    token_app
        .strip_suffix(".dev")
        .or_else(|| token_app.strip_suffix(".prod"))
        .unwrap_or(token_app)
}

/// Whether `s` is a UUID in canonical 8-4-4-4-12 hex form (any case).
pub fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The APNs JSON body: `{"aps": {"alert": {"loc-key", "loc-args"}, "sound", "call-id"}}`
/// from `Alert-Key`, `Alert-Params`, `Sound` and `Call-ID` (only those present), then
/// `Payload` deep-merged at the root (the payload wins).
pub fn payload(req: &PushReq) -> Value {
    let mut aps = Map::new();
    let mut alert = Map::new();
    if let Some(key) = &req.alert_key {
        alert.insert("loc-key".into(), Value::String(key.clone()));
    }
    if let Some(params) = &req.alert_params {
        alert.insert("loc-args".into(), params.clone());
    }
    if !alert.is_empty() {
        aps.insert("alert".into(), Value::Object(alert));
    }
    if let Some(sound) = &req.sound {
        aps.insert("sound".into(), sound.clone());
    }
    if let Some(call_id) = &req.call_id {
        aps.insert("call-id".into(), Value::String(call_id.clone()));
    }
    let mut body = Map::new();
    if !aps.is_empty() {
        body.insert("aps".into(), Value::Object(aps));
    }
    let mut body = Value::Object(body);
    deep_merge(&mut body, &Value::Object(req.payload.clone()));
    body
}

/// Merges `over` into `base`, like `kz_json:merge`: when both are objects, each key of
/// `over` is merged recursively into `base`'s value (new keys are appended); otherwise
/// `over` replaces `base` (arrays and `null` included).
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// Base URL (`https://host:port`, no trailing slash) for `apple.host`.
///
/// Accepts nothing (→ `https://api.push.apple.com:443`), `host`, `host:port`,
/// `[v6]:port` and `https://host[:port][/]`. `http://`, other schemes, paths, user info
/// and malformed hosts or ports are errors: TLS is mandatory.
pub fn base_url(host: Option<&str>) -> Result<String, ApnsBuildError> {
    let raw = host.map(str::trim).unwrap_or("");
    if raw.is_empty() {
        return Ok(format!("https://{DEFAULT_HOST}:443"));
    }
    let bad = |reason| ApnsBuildError::BadHost {
        host: bounded(raw),
        reason,
    };
    let authority = match raw.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
            rest.strip_suffix('/').unwrap_or(rest)
        }
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => {
            return Err(bad("plain http is not allowed; APNs needs TLS"));
        }
        Some(_) => return Err(bad("the scheme must be https")),
        None => raw,
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains(['/', '?', '#', '@']) || authority.contains(char::is_whitespace) {
        return Err(bad("only a host and an optional port are allowed"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(bad("an IPv6 address must be written in brackets"));
        }
        if !valid_host_name(name) {
            return Err(bad("invalid host name"));
        }
        (name.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => 443,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(bad("invalid port")),
            }
        }
        Some(_) => return Err(bad("invalid port")),
    };
    Ok(format!("https://{host}:{port}"))
}

/// DNS name (or IPv4 address): dot-separated labels of `[A-Za-z0-9_-]`, 1–63 bytes each,
/// not starting or ending with `-`; at most 253 bytes.
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURES: &str = include_str!("../../../tests/fixtures/kamailio-captured.jsonl");
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
}

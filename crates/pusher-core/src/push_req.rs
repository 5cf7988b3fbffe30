//! `push_req` (Kamailio → `pushes`): the request to wake a device, read once at the
//! boundary (spec §1.4, §3.3, §5.2, §5.3).
//!
//! [`PushReq::from_json`] checks the three token fields, normalises `Token-Type`
//! ([`TokenType::parse`]: `google`/`android` → `firebase`, so the K5 crash of §5.3 step 4
//! cannot happen), validates the token and app id (they end up in URL paths, config keys
//! and logs), and adds `Payload.utc_unix_timestamp_ms` like Kazoo since 2019-09 (§5.2
//! step 3). The provider mappings live in [`crate::apns`] and [`crate::fcm`].

use serde_json::{Map, Value};

/// Longest accepted `Token-ID`, in bytes.
pub const MAX_TOKEN_ID_LEN: usize = 4096;

/// Longest accepted `Token-App`, in bytes.
pub const MAX_TOKEN_APP_LEN: usize = 255;

/// Payload key Kazoo adds with the current Unix time in milliseconds, as a string.
pub const TIMESTAMP_KEY: &str = "utc_unix_timestamp_ms";

/// Why a message body is not a usable `push_req`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushReqError {
    /// The body is not a JSON object.
    #[error("push_req body is not a JSON object")]
    NotAnObject,
    /// A required field is absent, null or an empty string.
    #[error("push_req has no {0}")]
    Missing(&'static str),
    /// A field has the wrong JSON type or an unusable value.
    #[error("push_req field {0} is invalid")]
    InvalidField(&'static str),
    /// `Token-Type` names no provider this service knows (value bounded to 80 chars).
    #[error("unknown Token-Type {0:?}")]
    UnknownTokenType(String),
    /// `Token-ID` is too long or has a character outside `[A-Za-z0-9_.:~-]`.
    #[error("invalid Token-ID: {0}")]
    InvalidToken(&'static str),
}

/// The push service a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Apple Push Notification service (HTTP/2 provider API).
    Apple,
    /// Firebase Cloud Messaging (HTTP v1).
    Firebase,
}

impl Provider {
    /// `"apple"` or `"firebase"`: the config section and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apple => "apple",
            Provider::Firebase => "firebase",
        }
    }
}

/// `Token-Type` after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// `apple`.
    Apple,
    /// `firebase`, and its Kazoo aliases `google` and `android`.
    Firebase,
    /// `firebase_v1` (K5): FCM HTTP v1 only.
    FirebaseV1,
}

impl TokenType {
    /// Parses a `Token-Type`, ignoring ASCII case.
    pub fn parse(s: &str) -> Result<TokenType, PushReqError> {
        match s.to_ascii_lowercase().as_str() {
            "apple" => Ok(TokenType::Apple),
            "firebase" | "google" | "android" => Ok(TokenType::Firebase),
            "firebase_v1" => Ok(TokenType::FirebaseV1),
            _ => Err(PushReqError::UnknownTokenType(s.chars().take(80).collect())),
        }
    }

    /// The provider that delivers this token type.
    pub fn provider(self) -> Provider {
        match self {
            TokenType::Apple => Provider::Apple,
            TokenType::Firebase | TokenType::FirebaseV1 => Provider::Firebase,
        }
    }

    /// Canonical name: `"apple"`, `"firebase"` or `"firebase_v1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Apple => "apple",
            TokenType::Firebase => "firebase",
            TokenType::FirebaseV1 => "firebase_v1",
        }
    }
}

/// A validated `push_req`: the fields the providers use.
///
/// Optional fields of the wrong JSON type are treated as absent, as in
/// [`crate::reg_success::RegSuccess`].
#[derive(Debug, Clone, PartialEq)]
pub struct PushReq {
    /// `Token-ID`: the device token (≤ 4096 bytes, `[A-Za-z0-9_.:~-]`).
    pub token_id: String,
    /// `Token-Type`, normalised.
    pub token_type: TokenType,
    /// `Token-App`: the app id, i.e. the `system_config/pusher` scope (≤ 255 bytes, no
    /// `/`, whitespace or control characters).
    pub token_app: String,
    /// `Call-ID`: the SIP Call-ID of the call being signalled.
    pub call_id: Option<String>,
    /// `Msg-ID`: Kamailio's lowercase UUID; becomes `apns-id`.
    pub msg_id: Option<String>,
    /// `Account-ID` (never sent by Kamailio; non-empty when present).
    pub account_id: Option<String>,
    /// `Endpoint-ID` (never sent by Kamailio; non-empty when present).
    pub endpoint_id: Option<String>,
    /// `Alert-Key`, e.g. `IC_SIL`.
    pub alert_key: Option<String>,
    /// `Alert-Params`: Kamailio sends an array of strings; kept as sent.
    pub alert_params: Option<Value>,
    /// `Sound`, e.g. `ring.caf`; kept as sent (APNs also accepts an object).
    pub sound: Option<Value>,
    /// `Payload`, with `utc_unix_timestamp_ms` added when absent.
    pub payload: Map<String, Value>,
}

impl PushReq {
    /// Reads a `push_req` body; `now_unix_ms` is the current Unix time in milliseconds,
    /// stored as `Payload.utc_unix_timestamp_ms` (a string) unless the payload has one.
    pub fn from_json(v: &Value, now_unix_ms: u64) -> Result<PushReq, PushReqError> {
        if !v.is_object() {
            return Err(PushReqError::NotAnObject);
        }
        PushReq::from_fields(PushFields::of(v), now_unix_ms)
    }

    /// [`PushReq::from_json`] on the fields already read from the body (moved, not
    /// copied): the same rules and errors.
    pub fn from_fields(f: PushFields, now_unix_ms: u64) -> Result<PushReq, PushReqError> {
        let token_id = required(&f.token_id, "Token-ID")?;
        let token_type = TokenType::parse(required(&f.token_type, "Token-Type")?)?;
        let token_app = required(&f.token_app, "Token-App")?;
        check_token_id(token_id)?;
        if !valid_token_app(token_app) {
            return Err(PushReqError::InvalidField("Token-App"));
        }
        let mut payload = match f.payload {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(PushReqError::InvalidField("Payload")),
        };
        if !payload.contains_key(TIMESTAMP_KEY) {
            payload.insert(
                TIMESTAMP_KEY.to_string(),
                Value::String(now_unix_ms.to_string()),
            );
        }
        let string = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let non_empty = |v: Option<Value>| string(v).filter(|s| !s.is_empty());
        let present = |v: Option<Value>| v.filter(|v| !v.is_null());
        let owned = |v: Option<Value>| string(v).unwrap_or_default();
        Ok(PushReq {
            token_id: owned(f.token_id),
            token_type,
            token_app: owned(f.token_app),
            call_id: string(f.call_id),
            msg_id: string(f.msg_id),
            account_id: non_empty(f.account_id),
            endpoint_id: non_empty(f.endpoint_id),
            alert_key: string(f.alert_key),
            alert_params: present(f.alert_params),
            sound: present(f.sound),
            payload,
        })
    }

    /// The provider this request goes to.
    pub fn provider(&self) -> Provider {
        self.token_type.provider()
    }
}

/// A required non-empty string field.
fn required<'a>(v: &'a Option<Value>, name: &'static str) -> Result<&'a str, PushReqError> {
    match v {
        None | Some(Value::Null) => Err(PushReqError::Missing(name)),
        Some(Value::String(s)) if s.is_empty() => Err(PushReqError::Missing(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(PushReqError::InvalidField(name)),
    }
}

/// Checks a device token: 1–4096 bytes of `[A-Za-z0-9_.:~-]`. This covers hex APNs
/// tokens and FCM tokens (`:`, `-`, `_`), and keeps the token safe to put in a URL path.
pub fn check_token_id(token: &str) -> Result<(), PushReqError> {
    if token.is_empty() {
        return Err(PushReqError::Missing("Token-ID"));
    }
    if token.len() > MAX_TOKEN_ID_LEN {
        return Err(PushReqError::InvalidToken("longer than 4096 bytes"));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'~' | b'-'))
    {
        return Err(PushReqError::InvalidToken(
            "character outside [A-Za-z0-9_.:~-]",
        ));
    }
    Ok(())
}

/// Whether an app id is usable: 1–255 bytes, no `/`, whitespace or control characters.
pub fn valid_token_app(app: &str) -> bool {
    !app.is_empty()
        && app.len() <= MAX_TOKEN_APP_LEN
        && !app
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

/// When the requester says it sent the request: `Payload.utc_unix_timestamp_ms` as it came
/// (a digit string, as Kazoo writes it, or a JSON integer), before [`PushReq::from_json`]
/// adds one of its own. Kamailio sends none.
pub fn requester_timestamp_ms(body: &impl BodyFields) -> Option<u64> {
    match body.field("Payload")?.get(TIMESTAMP_KEY)? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Field a requester adds to a `push_req` to get the verdict back (`pusherctl … push`):
/// the name of its own reply queue. Kamailio never sends it, so Kamailio's queues never
/// receive unsolicited replies; Kamailio's own `Server-ID` is deliberately not used.
pub const REPLY_TO_FIELD: &str = "Pusher-Reply-To";

/// The envelope of a `push_req` that a `push_resp` needs, read once from the body even
/// when the request itself is unusable (so the requester still gets its answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Echo {
    /// `Msg-ID`, echoed.
    pub msg_id: Option<String>,
    /// `Call-ID`, echoed.
    pub call_id: Option<String>,
    /// `Token-App`, echoed.
    pub token_app: Option<String>,
    /// [`REPLY_TO_FIELD`], when it is a usable AMQP queue name (1–255 bytes, no control
    /// characters).
    pub reply_to: Option<String>,
}

impl Echo {
    /// Reads the envelope of a request body (non-string fields count as absent).
    pub fn of(body: &impl BodyFields) -> Echo {
        let string = |name: &str| body.field(name).and_then(Value::as_str).map(str::to_string);
        Echo {
            msg_id: string("Msg-ID"),
            call_id: string("Call-ID"),
            token_app: string("Token-App"),
            reply_to: string(REPLY_TO_FIELD)
                .filter(|q| !q.is_empty() && q.len() <= 255 && !q.chars().any(char::is_control)),
        }
    }
}

/// What became of one push, as reported to a requester that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushVerdict<'a> {
    /// `delivered`, `dead_token`, `auth_error`, `rejected`, `no_credentials`, `disabled`,
    /// `timeout` or `failed`.
    pub status: &'a str,
    /// Provider reason or local cause; may be empty.
    pub reason: &'a str,
    /// `apns`, `fcm`, or empty when no provider was involved.
    pub provider: &'a str,
    /// Time from delivery to verdict.
    pub elapsed_ms: u64,
}

/// The `push_resp` body answering a request (same `Msg-ID` and `Call-ID`).
pub fn push_resp(request: &Echo, verdict: &PushVerdict<'_>, node: &str, version: &str) -> Value {
    let echo = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    serde_json::json!({
        "Event-Category": "notification",
        "Event-Name": "push_resp",
        "Msg-ID": echo(&request.msg_id),
        "Call-ID": echo(&request.call_id),
        "Token-App": echo(&request.token_app),
        "Status": verdict.status,
        "Reason": verdict.reason,
        "Provider": verdict.provider,
        "Elapsed-Ms": verdict.elapsed_ms,
        "Node": node,
        "App-Name": "pusherd",
        "App-Version": version,
    })
}

/// Read access to the top-level fields of a message body: the whole JSON [`Value`], or
/// the [`PushFields`] read straight from the bytes.
pub trait BodyFields {
    /// The field `name` as sent (`None` when absent or when the body is not an object).
    fn field(&self, name: &str) -> Option<&Value>;
}

impl BodyFields for Value {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// The top-level fields the `push_req` path reads (the envelope, [`PushReq`], [`Echo`],
/// the legacy answer's `Server-ID`), read from the body bytes in one pass without
/// building the whole document: other fields are parsed (so a body this accepts is one
/// `serde_json::Value` accepts too) and dropped. A repeated key keeps its last value, as
/// in a [`Value`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushFields {
    /// `Event-Category`.
    pub event_category: Option<Value>,
    /// `Event-Name`.
    pub event_name: Option<Value>,
    /// `Msg-ID`.
    pub msg_id: Option<Value>,
    /// `Call-ID`.
    pub call_id: Option<Value>,
    /// `Server-ID`.
    pub server_id: Option<Value>,
    /// `Token-ID`.
    pub token_id: Option<Value>,
    /// `Token-Type`.
    pub token_type: Option<Value>,
    /// `Token-App`.
    pub token_app: Option<Value>,
    /// `Account-ID`.
    pub account_id: Option<Value>,
    /// `Endpoint-ID`.
    pub endpoint_id: Option<Value>,
    /// `Alert-Key`.
    pub alert_key: Option<Value>,
    /// `Alert-Params`.
    pub alert_params: Option<Value>,
    /// `Sound`.
    pub sound: Option<Value>,
    /// `Payload`.
    pub payload: Option<Value>,
    /// [`REPLY_TO_FIELD`].
    pub reply_to: Option<Value>,
}

/// The names of [`PushFields`], in the order of [`PushFields::slot`].
const PUSH_FIELD_NAMES: [&str; 15] = [
    "Event-Category",
    "Event-Name",
    "Msg-ID",
    "Call-ID",
    "Server-ID",
    "Token-ID",
    "Token-Type",
    "Token-App",
    "Account-ID",
    "Endpoint-ID",
    "Alert-Key",
    "Alert-Params",
    "Sound",
    "Payload",
    REPLY_TO_FIELD,
];

impl PushFields {
    /// Reads a `notification`/`push_req` body from its (inflated) bytes; `None` when the
    /// bytes are not a JSON object or not a `push_req` (the caller then reads them as a
    /// [`Value`], which reports why).
    pub fn parse_push_req(bytes: &[u8]) -> Option<PushFields> {
        // Whole-body UTF-8 check first, as `serde_json::from_slice::<Value>` rejects
        // invalid UTF-8 even in fields this skips.
        let text = std::str::from_utf8(bytes).ok()?;
        let f: PushFields = serde_json::from_str(text).ok()?;
        let is = |v: &Option<Value>, want: &str| v.as_ref().and_then(Value::as_str) == Some(want);
        (is(&f.event_category, "notification") && is(&f.event_name, "push_req")).then_some(f)
    }

    /// Copies the fields out of a body (all absent when it is not an object).
    pub fn of(body: &Value) -> PushFields {
        let mut f = PushFields::default();
        for (i, name) in PUSH_FIELD_NAMES.iter().enumerate() {
            if let Some(slot) = f.slot(i) {
                *slot = body.get(*name).cloned();
            }
        }
        f
    }

    /// The field at index `i` of [`PUSH_FIELD_NAMES`].
    fn slot(&mut self, i: usize) -> Option<&mut Option<Value>> {
        Some(match i {
            0 => &mut self.event_category,
            1 => &mut self.event_name,
            2 => &mut self.msg_id,
            3 => &mut self.call_id,
            4 => &mut self.server_id,
            5 => &mut self.token_id,
            6 => &mut self.token_type,
            7 => &mut self.token_app,
            8 => &mut self.account_id,
            9 => &mut self.endpoint_id,
            10 => &mut self.alert_key,
            11 => &mut self.alert_params,
            12 => &mut self.sound,
            13 => &mut self.payload,
            14 => &mut self.reply_to,
            _ => return None,
        })
    }
}

impl BodyFields for PushFields {
    fn field(&self, name: &str) -> Option<&Value> {
        let i = PUSH_FIELD_NAMES.iter().position(|n| *n == name)?;
        // `slot` needs `&mut`; a clone-free read goes through the same table.
        let v = match i {
            0 => &self.event_category,
            1 => &self.event_name,
            2 => &self.msg_id,
            3 => &self.call_id,
            4 => &self.server_id,
            5 => &self.token_id,
            6 => &self.token_type,
            7 => &self.token_app,
            8 => &self.account_id,
            9 => &self.endpoint_id,
            10 => &self.alert_key,
            11 => &self.alert_params,
            12 => &self.sound,
            13 => &self.payload,
            _ => &self.reply_to,
        };
        v.as_ref()
    }
}

impl<'de> serde::Deserialize<'de> for PushFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

/// Visits the body object, keeping the [`PUSH_FIELD_NAMES`].
struct FieldsVisitor;

/// A key of the body: the index of a kept field, or another key.
struct Key(Option<usize>);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key(PUSH_FIELD_NAMES.iter().position(|n| *n == s)))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
    type Value = PushFields;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PushFields, A::Error> {
        let mut f = PushFields::default();
        while let Some(Key(i)) = map.next_key()? {
            let v: Value = map.next_value()?;
            if let Some(slot) = i.and_then(|i| f.slot(i)) {
                *slot = Some(v);
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURES: &str = include_str!("../../../tests/fixtures/kamailio-captured.jsonl");

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
        let PushReqError::UnknownTokenType(v) = TokenType::parse(&"x".repeat(500)).unwrap_err()
        else {
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
}

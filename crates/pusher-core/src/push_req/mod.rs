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

mod fields;
mod reply;

pub use fields::{BodyFields, PushFields};
pub use reply::{Echo, PushVerdict, REPLY_TO_FIELD, push_resp};

#[cfg(test)]
mod tests;

//! Kazoo 5's generic push API: `endpoint_push_req` → one push per device of an
//! endpoint → `endpoint_push_resp` (K5 spec `k5-endpoint-push.md` §1, §3, §5).
//!
//! The parts, all pure:
//! - [`EndpointPushReq::from_json`] reads the request once, with typed errors
//!   ([`DecodeError`]); [`ReplyTo`] reads what an answer needs even from a request that
//!   is unusable, so its requester still hears back;
//! - [`device::DeviceTarget::of`] reads a device document's `push` object (or says why
//!   the device gets no push: K5's 200 "Not push device", 400 "Missing mandatory push
//!   properties", 400 "Token type unknown");
//! - [`apns::build`] and [`fcm::build`] map the request to an APNs request (the core's
//!   [`crate::apns::ApnsRequest`], with the `apns` module's topic and header rules) and
//!   to an FCM **v1** message (through [`crate::fcm::finish_message`], so `data` values
//!   are strings: FCM v1 takes nothing else);
//! - [`status`]: the per-device result, the `Overall-Status` rule and the
//!   `endpoint_push_resp` body.
//!
//! Where K5 crashes (its open question 5), this module answers a per-device error:
//! `google`/`android` tokens are read as `firebase`, an unknown token type is a 400, a
//! request that cannot be built is a 400.

use serde_json::{Map, Value};

pub mod apns;
pub mod device;
pub mod fcm;
pub mod status;

/// `Event-Category` of the request and its response.
pub const CATEGORY: &str = "notification";
/// `Event-Name` of the request.
pub const REQ_NAME: &str = "endpoint_push_req";
/// `Event-Name` of the response (assumed, K5 open question 2).
pub const RESP_NAME: &str = "endpoint_push_resp";
/// `Data` key K5 sets to the device id on every push.
pub const DEVICE_ID_KEY: &str = "Kazoo-Device-Id";
/// Longest accepted id (`Endpoint.ID`, `Msg-ID`, `Server-ID`): an AMQP short string.
pub const MAX_ID_LEN: usize = 255;

/// Why a body is not a usable `endpoint_push_req`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a JSON object.
    #[error("endpoint_push_req body is not a JSON object")]
    NotAnObject,
    /// A required field is absent, null or empty.
    #[error("endpoint_push_req has no {0}")]
    Missing(&'static str),
    /// A field has the wrong JSON type or an unusable value.
    #[error("endpoint_push_req field {0} is invalid")]
    Invalid(&'static str),
    /// `Endpoint.Type` is neither `device` nor `user` (value bounded to 80 chars).
    #[error("endpoint_push_req Endpoint.Type {0:?} is neither device nor user")]
    EndpointType(String),
}

/// Whom the push is for: `Endpoint.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointType {
    /// One device document.
    Device,
    /// Every device the user owns (`attributes/owned`, key `[UserId, "device"]`).
    User,
}

impl EndpointType {
    /// `"device"` or `"user"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointType::Device => "device",
            EndpointType::User => "user",
        }
    }
}

/// `Priority`: `low`, `normal` or `high` (APNs 1/5/10; FCM `normal`/`high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// APNs 1, FCM `normal`.
    Low,
    /// APNs 5, FCM `normal`.
    Normal,
    /// APNs 10, FCM `high`.
    High,
}

/// `Alert` (and `APNs.Alert`'s subtitle keys): what the notification shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alert {
    /// `Alert.Title`.
    pub title: Option<String>,
    /// `Alert.Subtitle`.
    pub subtitle: Option<String>,
    /// `Alert.Body`.
    pub body: Option<String>,
    /// `Alert.Title-Key`.
    pub title_key: Option<String>,
    /// `Alert.Title-Params`, as strings.
    pub title_params: Option<Vec<String>>,
    /// `Alert.Body-Key`.
    pub body_key: Option<String>,
    /// `Alert.Body-Params`, as strings.
    pub body_params: Option<Vec<String>>,
}

/// `APNs`: options only APNs uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApnsOptions {
    /// `APNs.Alert.Subtitle-Key`.
    pub subtitle_key: Option<String>,
    /// `APNs.Alert.Subtitle-Params`, as strings.
    pub subtitle_params: Option<Vec<String>>,
    /// `APNs.Thread-ID` → `aps.thread-id`.
    pub thread_id: Option<String>,
    /// `APNs.Topic` → `apns-topic`.
    pub topic: Option<String>,
    /// `APNs.Push-Type` → `apns-push-type`.
    pub push_type: Option<String>,
}

/// `FCM.Android`: options only Android notifications use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AndroidOptions {
    /// `FCM.Android.Channel-ID`.
    pub channel_id: Option<String>,
    /// `FCM.Android.Icon`.
    pub icon: Option<String>,
    /// `FCM.Android.Tag`.
    pub tag: Option<String>,
    /// `FCM.Android.Color`.
    pub color: Option<String>,
}

/// A validated `endpoint_push_req`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointPushReq {
    /// `Account-ID` (32 hex digits, or an account database name).
    pub account_id: String,
    /// `Endpoint.ID`.
    pub endpoint_id: String,
    /// `Endpoint.Type`.
    pub endpoint_type: EndpointType,
    /// `Alert`.
    pub alert: Alert,
    /// `Badge`.
    pub badge: Option<u64>,
    /// `Sound` (a name; APNs also takes an object, kept as sent).
    pub sound: Option<Value>,
    /// `Category` → `aps.category` / `click_action`.
    pub category: Option<String>,
    /// `Collapse-ID` → `apns-collapse-id` / `collapse_key`.
    pub collapse_id: Option<String>,
    /// `Priority`.
    pub priority: Option<Priority>,
    /// `TTL` in seconds.
    pub ttl: Option<u64>,
    /// `Content-Available`.
    pub content_available: Option<bool>,
    /// `Content-Mutable`.
    pub content_mutable: Option<bool>,
    /// `APNs`.
    pub apns: ApnsOptions,
    /// `FCM.Android`.
    pub android: AndroidOptions,
    /// `Data`: custom keys, sent at the APNs root and in FCM `data`.
    pub data: Map<String, Value>,
    /// `Call-ID` → `aps.call-id` / `data.Call-ID`.
    pub call_id: Option<String>,
    /// `Msg-ID`: copied into the response; `apns-id` when a UUID.
    pub msg_id: Option<String>,
    /// `Server-ID`: where the response goes (none: fire-and-forget).
    pub server_id: Option<String>,
    /// When we read it (Unix ms): K5's `Timestamp-MS`, the base of `apns-expiration`.
    pub timestamp_ms: u64,
}

/// What an answer needs, read from any body (even one that fails
/// [`EndpointPushReq::from_json`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyTo {
    /// `Msg-ID`, echoed.
    pub msg_id: Option<String>,
    /// `Server-ID`, when usable as a routing key (1–255 bytes, no control characters).
    pub server_id: Option<String>,
}

impl ReplyTo {
    /// Reads `Msg-ID` and `Server-ID` of a body.
    pub fn of(body: &Value) -> ReplyTo {
        ReplyTo {
            msg_id: body.get("Msg-ID").and_then(id),
            server_id: body.get("Server-ID").and_then(id),
        }
    }
}

/// A usable id: a string of 1–255 bytes without control characters.
fn id(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN)
        .filter(|s| !s.chars().any(char::is_control))
        .map(str::to_string)
}

impl EndpointPushReq {
    /// Reads an `endpoint_push_req` body; `now_unix_ms` becomes `timestamp_ms`.
    pub fn from_json(v: &Value, now_unix_ms: u64) -> Result<EndpointPushReq, DecodeError> {
        let map = v.as_object().ok_or(DecodeError::NotAnObject)?;
        let account_id = map
            .get("Account-ID")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(DecodeError::Missing("Account-ID"))?;
        crate::account::account_db(account_id).map_err(|_| DecodeError::Invalid("Account-ID"))?;
        let endpoint = match map.get("Endpoint") {
            None | Some(Value::Null) => return Err(DecodeError::Missing("Endpoint")),
            Some(Value::Object(e)) => e,
            Some(_) => return Err(DecodeError::Invalid("Endpoint")),
        };
        let endpoint_id = match endpoint.get("ID") {
            None | Some(Value::Null) => return Err(DecodeError::Missing("Endpoint.ID")),
            Some(v) => id(v).ok_or(DecodeError::Invalid("Endpoint.ID"))?,
        };
        let endpoint_type = match endpoint.get("Type").and_then(Value::as_str) {
            None => return Err(DecodeError::Missing("Endpoint.Type")),
            Some("device") => EndpointType::Device,
            Some("user") => EndpointType::User,
            Some(other) => return Err(DecodeError::EndpointType(other.chars().take(80).collect())),
        };
        let alert = Fields::of(map, "Alert")?;
        let apns = Fields::of(map, "APNs")?;
        let apns_alert = apns.object("Alert", "APNs.Alert")?;
        let fcm = Fields::of(map, "FCM")?;
        let android = fcm.object("Android", "FCM.Android")?;
        let top = Fields(Some(map));
        let priority = match top.string("Priority", "Priority")?.as_deref() {
            None => None,
            Some("low") => Some(Priority::Low),
            Some("normal") => Some(Priority::Normal),
            Some("high") => Some(Priority::High),
            Some(_) => return Err(DecodeError::Invalid("Priority")),
        };
        let data = match map.get("Data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(d)) => d.clone(),
            Some(_) => return Err(DecodeError::Invalid("Data")),
        };
        Ok(EndpointPushReq {
            account_id: account_id.to_string(),
            endpoint_id,
            endpoint_type,
            alert: Alert {
                title: alert.string("Title", "Alert.Title")?,
                subtitle: alert.string("Subtitle", "Alert.Subtitle")?,
                body: alert.string("Body", "Alert.Body")?,
                title_key: alert.string("Title-Key", "Alert.Title-Key")?,
                title_params: alert.params("Title-Params", "Alert.Title-Params")?,
                body_key: alert.string("Body-Key", "Alert.Body-Key")?,
                body_params: alert.params("Body-Params", "Alert.Body-Params")?,
            },
            badge: top.uint("Badge", "Badge")?,
            sound: map.get("Sound").filter(|s| !s.is_null()).cloned(),
            category: top.string("Category", "Category")?,
            collapse_id: top.string("Collapse-ID", "Collapse-ID")?,
            priority,
            ttl: top.uint("TTL", "TTL")?,
            content_available: top.boolean("Content-Available", "Content-Available")?,
            content_mutable: top.boolean("Content-Mutable", "Content-Mutable")?,
            apns: ApnsOptions {
                subtitle_key: apns_alert.string("Subtitle-Key", "APNs.Alert.Subtitle-Key")?,
                subtitle_params: apns_alert
                    .params("Subtitle-Params", "APNs.Alert.Subtitle-Params")?,
                thread_id: apns.string("Thread-ID", "APNs.Thread-ID")?,
                topic: apns.string("Topic", "APNs.Topic")?,
                push_type: apns.string("Push-Type", "APNs.Push-Type")?,
            },
            android: AndroidOptions {
                channel_id: android.string("Channel-ID", "FCM.Android.Channel-ID")?,
                icon: android.string("Icon", "FCM.Android.Icon")?,
                tag: android.string("Tag", "FCM.Android.Tag")?,
                color: android.string("Color", "FCM.Android.Color")?,
            },
            data,
            call_id: top.string("Call-ID", "Call-ID")?,
            msg_id: map.get("Msg-ID").and_then(id),
            server_id: map.get("Server-ID").and_then(id),
            timestamp_ms: now_unix_ms,
        })
    }

    /// `Data` of the push to device `device_id`: the request's `Data` with
    /// [`DEVICE_ID_KEY`] set, as K5 does.
    pub fn data_for(&self, device_id: &str) -> Map<String, Value> {
        let mut data = self.data.clone();
        data.insert(DEVICE_ID_KEY.into(), Value::String(device_id.to_string()));
        data
    }
}

/// Optional fields of one (optional) object of the request; a wrong JSON type is an
/// error naming the field.
#[derive(Clone, Copy)]
struct Fields<'a>(Option<&'a Map<String, Value>>);

impl<'a> Fields<'a> {
    fn of(map: &'a Map<String, Value>, key: &'static str) -> Result<Fields<'a>, DecodeError> {
        Fields(Some(map)).object(key, key)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0?.get(key).filter(|v| !v.is_null())
    }

    fn object(&self, key: &str, name: &'static str) -> Result<Fields<'a>, DecodeError> {
        match self.get(key) {
            None => Ok(Fields(None)),
            Some(Value::Object(o)) => Ok(Fields(Some(o))),
            Some(_) => Err(DecodeError::Invalid(name)),
        }
    }

    /// A string; an empty one counts as absent.
    fn string(&self, key: &str, name: &'static str) -> Result<Option<String>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
            Some(_) => Err(DecodeError::Invalid(name)),
        }
    }

    fn uint(&self, key: &str, name: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(DecodeError::Invalid(name)),
        }
    }

    fn boolean(&self, key: &str, name: &'static str) -> Result<Option<bool>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or(DecodeError::Invalid(name)),
        }
    }

    /// Localisation arguments: an array whose strings are kept, numbers and booleans
    /// written as text, and `null`s sent as `""` so the positions of the format string
    /// stay aligned (K5 open question 6). Objects and arrays inside are an error.
    fn params(&self, key: &str, name: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v.as_array().ok_or(DecodeError::Invalid(name))?;
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Null => Ok(String::new()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(DecodeError::Invalid(name)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests;

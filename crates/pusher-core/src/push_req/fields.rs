//! Reading the fields of a `push_req` straight from the body bytes (one pass, no
//! document built), and read access to the fields of either form.

use serde_json::Value;

use super::REPLY_TO_FIELD;

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

/// The `Event-Name` the typed read is for.
const PUSH_REQ: &[u8] = b"push_req";

impl PushFields {
    /// Reads a `notification`/`push_req` body from its (inflated) bytes; `None` when the
    /// bytes are not a JSON object or not a `push_req` (the caller then reads them as a
    /// [`Value`], which reports why).
    pub fn parse_push_req(bytes: &[u8]) -> Option<PushFields> {
        // Most bodies are registrations: a body that does not even contain the name is
        // not parsed twice (here, then as a `Value`). One that spells it with escapes
        // still reaches the `Value` path, which classifies it all the same.
        if !bytes.windows(PUSH_REQ.len()).any(|w| w == PUSH_REQ) {
            return None;
        }
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

//! `reg_success` → device `push` object: the pure decision of spec §5.1.
//!
//! [`RegSuccess::from_json`] reads the fields the pusher needs from a Kamailio
//! `reg_success` body. [`decide`] picks the User-Agent rule, parses the Contact, and
//! says which device document to update and with what ([`RegDecision`]); optionally it
//! falls back to RFC 8599 `pn-*` Contact parameters. [`apply_update`] applies the
//! result to a device document, reporting whether it changed, so the caller only
//! saves (and retries on conflict) when needed.
//!
//! Layout: this file holds the types, [`decide`] and [`apply_update`]; `rule` follows a
//! matched User-Agent rule (and owns the steps both paths share), `rfc8599` the fallback.

use serde_json::{Map, Value};

use crate::kapps_config::json_kind;
use crate::ua_rules::UserAgentRules;

mod rfc8599;
mod rule;

use rfc8599::decide_rfc8599;
use rule::decide_by_rule;

/// Rule name reported in [`RegDecision`] for the RFC 8599 fallback.
pub const RFC8599_RULE: &str = "rfc8599";

/// Key of the push object in a device document (spec §1.6).
pub const PUSH_KEY: &str = "push";

/// A message body that cannot be read as a `reg_success`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not a JSON object.
    #[error("reg_success body is not a JSON object but {0}")]
    NotAnObject(&'static str),
}

/// The parts of a `reg_success` the pusher reads (spec §1.4, §3.5).
///
/// Fields of the wrong JSON type are treated as absent.
#[derive(Debug, Clone, PartialEq)]
pub struct RegSuccess {
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `Contact`: the raw Contact header.
    pub contact: Option<String>,
    /// `Custom-Channel-Vars.Account-ID`, else top-level `Account-ID` (non-empty).
    pub account_id: Option<String>,
    /// `Custom-Channel-Vars.Authorizing-ID`, else top-level `Authorizing-ID` (non-empty):
    /// the device id.
    pub authorizing_id: Option<String>,
    /// `Proxy-Path`: becomes `Token-Proxy`.
    pub proxy_path: Option<String>,
    /// `Proxy-URI`: becomes `Token-Public-Proxy`.
    pub proxy_uri: Option<String>,
    /// `Call-ID`, for logs.
    pub call_id: Option<String>,
    /// `Msg-ID`, for logs.
    pub msg_id: Option<String>,
    /// All top-level fields, numbers and booleans rendered as strings.
    fields: Map<String, Value>,
}

impl RegSuccess {
    /// Reads a `reg_success` body.
    pub fn from_json(v: Value) -> Result<RegSuccess, WireError> {
        let Value::Object(map) = v else {
            return Err(WireError::NotAnObject(json_kind(&v)));
        };
        let string = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_string);
        let ccvs = map.get("Custom-Channel-Vars").and_then(Value::as_object);
        let id = |name: &str| {
            ccvs.and_then(|c| non_empty_str(c.get(name)))
                .or_else(|| non_empty_str(map.get(name)))
                .map(str::to_string)
        };
        let reg = RegSuccess {
            user_agent: string("User-Agent"),
            contact: string("Contact"),
            account_id: id("Account-ID"),
            authorizing_id: id("Authorizing-ID"),
            proxy_path: string("Proxy-Path"),
            proxy_uri: string("Proxy-URI"),
            call_id: string("Call-ID"),
            msg_id: string("Msg-ID"),
            fields: Map::new(),
        };
        // Like Kazoo's `to_binary`, so a property may name e.g. `Expires`.
        let fields = map
            .into_iter()
            .map(|(k, v)| match v {
                Value::Number(n) => (k, Value::String(n.to_string())),
                Value::Bool(b) => (k, Value::String(b.to_string())),
                other => (k, other),
            })
            .collect();
        Ok(RegSuccess { fields, ..reg })
    }

    /// A top-level field as a string (numbers and booleans rendered); `None` when absent
    /// or an object, array or null.
    pub fn top_level_str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}

/// What to do with a device's `push` object.
#[derive(Debug, Clone, PartialEq)]
pub enum PushUpdate {
    /// Replace `push` with this object (if different).
    Set(Map<String, Value>),
    /// Remove `push` (RFC 8599 `pn-prid=null` only; Kazoo never removes it).
    Remove,
}

/// Outcome of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum RegDecision {
    /// No User-Agent rule matched (and no usable RFC 8599 params): not a push device.
    NoUserAgentRule,
    /// A rule matched but the Contact is missing or unparsable; the reason says why.
    NoContact(String),
    /// The Contact has no token where the rule looks for it.
    NoToken {
        /// Rule key, or [`RFC8599_RULE`].
        rule: String,
    },
    /// `Account-ID` or `Authorizing-ID` is missing, the account id is invalid, or the
    /// device id is a reserved CouchDB id (`_design/…`, `_all_docs`, …), a URL dot
    /// segment (`.`, `..`) or too long.
    MissingIds,
    /// Update device `device_id` in database `account_db`.
    Update {
        /// Raw account database name (`account/ab/cd/rest`).
        account_db: String,
        /// Device document id (`Authorizing-ID`).
        device_id: String,
        /// What to do with its `push` object.
        update: PushUpdate,
        /// Rule key, or [`RFC8599_RULE`].
        rule: String,
    },
}

/// Decides what a `reg_success` means for its device (spec §5.1).
///
/// The first rule matching the `User-Agent` (missing = `""`) picks the Contact
/// parameters; without a match and with `rfc8599` set, RFC 8599 `pn-*` parameters are
/// tried. Returns the decision and warnings worth logging (rule errors, several
/// contacts, invalid account id, unsupported provider).
pub fn decide(
    reg: &RegSuccess,
    rules: &UserAgentRules,
    rfc8599: bool,
) -> (RegDecision, Vec<String>) {
    let mut warnings = Vec::new();
    let found = rules.first_match(reg.user_agent.as_deref().unwrap_or(""));
    warnings.extend(found.errors.iter().map(ToString::to_string));
    let decision = match found.rule {
        Some(rule) => decide_by_rule(reg, rule, &mut warnings),
        None if rfc8599 => decide_rfc8599(reg, &mut warnings),
        None => RegDecision::NoUserAgentRule,
    };
    (decision, warnings)
}

/// Longest `Authorizing-ID` taken as a device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 255;

/// Deep equality where object key order does not matter (array order does).
pub fn push_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| push_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| push_equal(v, w))
        }
        _ => a == b,
    }
}

/// Applies `update` to a device document; returns whether it changed.
///
/// Only the `push` key is touched. A non-object document is left alone (`false`).
pub fn apply_update(doc: &mut Value, update: &PushUpdate) -> bool {
    let Value::Object(map) = doc else {
        return false;
    };
    match update {
        PushUpdate::Set(push) => {
            let new = Value::Object(push.clone());
            if map.get(PUSH_KEY).is_some_and(|old| push_equal(old, &new)) {
                false
            } else {
                map.insert(PUSH_KEY.to_string(), new);
                true
            }
        }
        PushUpdate::Remove => map.shift_remove(PUSH_KEY).is_some(),
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;

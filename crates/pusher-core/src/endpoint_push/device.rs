//! A device document's `push` object as an endpoint push needs it (K5 §3 step 4).

use serde_json::Value;

use super::status::DeviceStatus;
use crate::push_req::{TokenType, check_token_id, valid_token_app};

/// Where one device's push goes: its id and token triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTarget {
    /// The device document's `_id`.
    pub device_id: String,
    /// `push.Token-ID`.
    pub token_id: String,
    /// `push.Token-Type`, normalised (`google`/`android` → `firebase`).
    pub token_type: TokenType,
    /// `push.Token-App`: the `system_config/pusher` scope.
    pub token_app: String,
}

impl DeviceTarget {
    /// Reads a device document: its target, or the result the device gets without a
    /// push (`Err`): no `push` object → 200 "Not push device"; a missing token field →
    /// 400 "Missing mandatory push properties"; an unknown `Token-Type` → 400 "Token
    /// type unknown"; an unusable token or app id → 400.
    pub fn of(doc: &Value) -> Result<DeviceTarget, DeviceStatus> {
        let device_id = doc
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let push = match doc.get("push") {
            Some(Value::Object(p)) if !p.is_empty() => p,
            _ => return Err(DeviceStatus::NotPushDevice),
        };
        let field = |name: &str| {
            push.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let (Some(token_id), Some(token_type), Some(token_app)) =
            (field("Token-ID"), field("Token-Type"), field("Token-App"))
        else {
            return Err(DeviceStatus::MissingPushProperties);
        };
        let token_type =
            TokenType::parse(token_type).map_err(|_| DeviceStatus::UnknownTokenType)?;
        check_token_id(token_id).map_err(|e| DeviceStatus::Unbuildable(e.to_string()))?;
        if !valid_token_app(token_app) {
            return Err(DeviceStatus::Unbuildable("invalid Token-App".into()));
        }
        Ok(DeviceTarget {
            device_id,
            token_id: token_id.to_string(),
            token_type,
            token_app: token_app.to_string(),
        })
    }
}

//! The JSON body: Kazoo's classic `aps` shape with `Payload` deep-merged at the root.

use serde_json::{Map, Value};

use crate::push_req::PushReq;

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

//! `endpoint_push_req` → FCM **v1** message (K5's `fcm_api_v1.erl` mapping; not the
//! legacy API K5 still falls back to).
//!
//! - `notification`: title and body;
//! - `android`: `priority` (high → `high`, low/normal → `normal`), `ttl` (`"<n>s"`),
//!   `collapse_key`, and `notification` {`title_loc_key/args`, `body_loc_key/args`,
//!   `click_action` (from `Category`), `sound`, `channel_id`, `color`, `icon`, `tag`,
//!   `notification_count` (from `Badge`)};
//! - `apns`: `headers` {`apns-priority`, `apns-expiration`, `apns-push-type`,
//!   `apns-topic`, `apns-collapse-id`} and `payload.aps` (subtitle and loc keys, badge,
//!   category, sound, thread-id, content-available, mutable-content);
//! - `data`: `Data` with `Kazoo-Device-Id` and `Call-ID`. FCM v1 takes only strings
//!   there, so **every value is stringified** (K5 only stringified nested objects; its
//!   open question 7), and reserved keys are renamed, by [`crate::fcm::finish_message`],
//!   which also merges the app's envelope (`firebase_v1.headers`).

use serde_json::{Map, Value, json};

use super::apns::{alert, aps_extras, request_headers};
use super::device::DeviceTarget;
use super::{EndpointPushReq, Priority};
use crate::fcm::{FcmBuildError, finish_message};
use crate::push_req::check_token_id;

/// Builds `{"message": …}` of `req` for `target`; `envelope` is the app's
/// `firebase_v1.headers` (or `firebase.headers`), `null` when unset.
pub fn build(
    req: &EndpointPushReq,
    target: &DeviceTarget,
    envelope: &Value,
) -> Result<Value, FcmBuildError> {
    check_token_id(&target.token_id).map_err(|_| FcmBuildError::BadToken)?;
    let mut msg = Map::new();
    msg.insert("token".into(), json!(target.token_id));

    let mut notification = Map::new();
    for (key, v) in [("title", &req.alert.title), ("body", &req.alert.body)] {
        if let Some(v) = v {
            notification.insert(key.into(), json!(v));
        }
    }
    if !notification.is_empty() {
        msg.insert("notification".into(), Value::Object(notification));
    }
    let android = android(req);
    if !android.is_empty() {
        msg.insert("android".into(), Value::Object(android));
    }
    let apns = apns(req);
    if !apns.is_empty() {
        msg.insert("apns".into(), Value::Object(apns));
    }
    let mut data = req.data_for(&target.device_id);
    if let Some(call_id) = &req.call_id {
        data.insert("Call-ID".into(), json!(call_id));
    }
    msg.insert("data".into(), Value::Object(data));
    finish_message(msg, &target.token_id, envelope)
}

fn android(req: &EndpointPushReq) -> Map<String, Value> {
    let mut android = Map::new();
    if let Some(p) = req.priority {
        let v1 = if p == Priority::High {
            "high"
        } else {
            "normal"
        };
        android.insert("priority".into(), json!(v1));
    }
    if let Some(ttl) = req.ttl {
        android.insert("ttl".into(), json!(format!("{ttl}s")));
    }
    if let Some(c) = &req.collapse_id {
        android.insert("collapse_key".into(), json!(c));
    }
    let a = &req.alert;
    let o = &req.android;
    let mut n = Map::new();
    for (key, v) in [
        ("title_loc_key", &a.title_key),
        ("body_loc_key", &a.body_key),
        ("click_action", &req.category),
        ("channel_id", &o.channel_id),
        ("color", &o.color),
        ("icon", &o.icon),
        ("tag", &o.tag),
    ] {
        if let Some(v) = v {
            n.insert(key.into(), json!(v));
        }
    }
    for (key, v) in [
        ("title_loc_args", &a.title_params),
        ("body_loc_args", &a.body_params),
    ] {
        if let Some(v) = v {
            n.insert(key.into(), json!(v));
        }
    }
    // Android wants a sound name; an APNs sound dictionary is left out.
    if let Some(Value::String(sound)) = &req.sound {
        n.insert("sound".into(), json!(sound));
    }
    if let Some(badge) = req.badge {
        n.insert("notification_count".into(), json!(badge));
    }
    if !n.is_empty() {
        android.insert("notification".into(), Value::Object(n));
    }
    android
}

fn apns(req: &EndpointPushReq) -> Map<String, Value> {
    let headers: Map<String, Value> = request_headers(req)
        .into_iter()
        .map(|(name, v)| (name.to_string(), Value::String(v)))
        .collect();
    let mut aps = Map::new();
    // Title and body travel in `notification`; the rest of the alert only APNs knows.
    let alert = alert(req, false);
    if !alert.is_empty() {
        aps.insert("alert".into(), Value::Object(alert));
    }
    aps_extras(req, &mut aps);
    let mut apns = Map::new();
    if !headers.is_empty() {
        apns.insert("headers".into(), Value::Object(headers));
    }
    if !aps.is_empty() {
        apns.insert("payload".into(), json!({ "aps": aps }));
    }
    apns
}

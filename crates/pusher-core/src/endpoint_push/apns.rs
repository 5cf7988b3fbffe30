//! `endpoint_push_req` → APNs request (K5 `pm_apple.erl` `?HEADER_MAP`, `?PAYLOAD_MAP`).
//!
//! Headers: `APNs.Push-Type` → `apns-push-type`, `APNs.Topic` → `apns-topic`,
//! `Collapse-ID` → `apns-collapse-id`, `Priority` low/normal/high → `apns-priority`
//! 1/5/10, `TTL` → `apns-expiration` = request time (s) + TTL (0 when TTL is 0), and
//! `apns-id` = `Msg-ID` when it is a UUID. The app's `apple.headers` are merged last and
//! win; without a topic in the request, the `apns` module's rule applies
//! (`apple.apns_topic`, else `Token-App` minus `.dev`/`.prod`). All of it goes through
//! [`crate::apns::build_request`], so the same checks hold.
//!
//! Body: `aps.alert` {title, subtitle, body, `title-loc-key/args`, `loc-key/args`,
//! `subtitle-loc-key/args`}, `aps.badge`, `aps.category`, `aps.sound`, `aps.thread-id`,
//! `aps.content-available` / `aps.mutable-content` (0/1), `aps.call-id`; `Data` (with
//! `Kazoo-Device-Id`) at the root, the mapped keys winning on collision.

use serde_json::{Map, Value, json};

use super::device::DeviceTarget;
use super::{EndpointPushReq, Priority};
use crate::apns::{
    ApnsAppConfig, ApnsBuildError, ApnsRequest, MAX_PAYLOAD, MAX_VOIP_PAYLOAD, build_request,
    deep_merge,
};
use crate::push_req::PushReq;

/// Builds the APNs request of `req` for `target`, with the app's `apple` config `cfg`.
pub fn build(
    req: &EndpointPushReq,
    target: &DeviceTarget,
    cfg: &ApnsAppConfig,
) -> Result<ApnsRequest, ApnsBuildError> {
    // Request headers first, the app's `apple.headers` after them: later keys win.
    let mut headers: Map<String, Value> = request_headers(req)
        .into_iter()
        .map(|(name, v)| (name.to_string(), Value::String(v)))
        .collect();
    for (key, value) in &cfg.headers {
        headers.insert(key.clone(), value.clone());
    }
    let cfg = ApnsAppConfig {
        apns_topic: cfg.apns_topic.clone(),
        headers,
    };
    let stub = PushReq {
        token_id: target.token_id.clone(),
        token_type: target.token_type,
        token_app: target.token_app.clone(),
        call_id: None,
        msg_id: req.msg_id.clone(),
        account_id: None,
        endpoint_id: None,
        alert_key: None,
        alert_params: None,
        sound: None,
        payload: Map::new(),
    };
    let mut request = build_request(&stub, &cfg)?;
    request.body = payload(req, &target.device_id).to_string().into_bytes();
    let limit = if request.push_type.as_deref() == Some("voip") {
        MAX_VOIP_PAYLOAD
    } else {
        MAX_PAYLOAD
    };
    if request.body.len() > limit {
        return Err(ApnsBuildError::PayloadTooLarge {
            size: request.body.len(),
            limit,
        });
    }
    Ok(request)
}

/// The `apns-*` headers the request itself sets: `apns-topic`, `apns-push-type`,
/// `apns-priority`, `apns-expiration`, `apns-collapse-id` (those present).
pub(super) fn request_headers(req: &EndpointPushReq) -> Vec<(&'static str, String)> {
    [
        ("apns-topic", req.apns.topic.clone()),
        ("apns-push-type", req.apns.push_type.clone()),
        (
            "apns-priority",
            req.priority.map(|p| apns_priority(p).to_string()),
        ),
        (
            "apns-expiration",
            req.ttl.map(|t| expiration(req.timestamp_ms, t)),
        ),
        ("apns-collapse-id", req.collapse_id.clone()),
    ]
    .into_iter()
    .filter_map(|(name, v)| Some((name, v?)))
    .collect()
}

/// `apns-priority` of a `Priority`.
pub fn apns_priority(p: Priority) -> u8 {
    match p {
        Priority::Low => 1,
        Priority::Normal => 5,
        Priority::High => 10,
    }
}

/// `apns-expiration`: `0` for a TTL of 0 (deliver now or never), else the request
/// time in seconds plus the TTL.
pub fn expiration(timestamp_ms: u64, ttl: u64) -> String {
    if ttl == 0 {
        "0".into()
    } else {
        (timestamp_ms / 1000).saturating_add(ttl).to_string()
    }
}

/// The JSON body for the device `device_id`.
pub fn payload(req: &EndpointPushReq, device_id: &str) -> Value {
    let mut aps = Map::new();
    let alert = alert(req, true);
    if !alert.is_empty() {
        aps.insert("alert".into(), Value::Object(alert));
    }
    aps_extras(req, &mut aps);
    if let Some(call_id) = &req.call_id {
        aps.insert("call-id".into(), Value::String(call_id.clone()));
    }
    let mut body = Value::Object(req.data_for(device_id));
    deep_merge(&mut body, &json!({ "aps": aps }));
    body
}

/// `aps.alert`: the texts (when `texts`) and every localisation key and its args.
pub(super) fn alert(req: &EndpointPushReq, texts: bool) -> Map<String, Value> {
    let a = &req.alert;
    let mut alert = Map::new();
    let mut text = |key: &str, v: &Option<String>| {
        if let Some(v) = v {
            alert.insert(key.into(), Value::String(v.clone()));
        }
    };
    if texts {
        text("title", &a.title);
        text("body", &a.body);
    }
    text("subtitle", &a.subtitle);
    text("title-loc-key", &a.title_key);
    text("loc-key", &a.body_key);
    text("subtitle-loc-key", &req.apns.subtitle_key);
    for (key, params) in [
        ("title-loc-args", &a.title_params),
        ("loc-args", &a.body_params),
        ("subtitle-loc-args", &req.apns.subtitle_params),
    ] {
        if let Some(p) = params {
            alert.insert(key.into(), json!(p));
        }
    }
    alert
}

/// `badge`, `category`, `sound`, `thread-id`, `content-available`, `mutable-content`.
pub(super) fn aps_extras(req: &EndpointPushReq, aps: &mut Map<String, Value>) {
    if let Some(badge) = req.badge {
        aps.insert("badge".into(), json!(badge));
    }
    if let Some(category) = &req.category {
        aps.insert("category".into(), json!(category));
    }
    if let Some(sound) = &req.sound {
        aps.insert("sound".into(), sound.clone());
    }
    if let Some(thread) = &req.apns.thread_id {
        aps.insert("thread-id".into(), json!(thread));
    }
    if let Some(available) = req.content_available {
        aps.insert("content-available".into(), json!(u8::from(available)));
    }
    if let Some(mutable) = req.content_mutable {
        aps.insert("mutable-content".into(), json!(u8::from(mutable)));
    }
}

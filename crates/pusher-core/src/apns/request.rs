//! [`build_request`]: the path and `apns-*` headers of one push, with the config's
//! header overrides mapped and checked.

use serde_json::Value;

use super::{
    ApnsAppConfig, ApnsBuildError, ApnsRequest, KNOWN_HEADERS, MAX_COLLAPSE_ID, MAX_PAYLOAD,
    MAX_VOIP_PAYLOAD, bounded, payload,
};
use crate::push_req::{PushReq, check_token_id};

const TOPIC: usize = 0;
const PUSH_TYPE: usize = 1;
const PRIORITY: usize = 2;
const EXPIRATION: usize = 3;
const COLLAPSE_ID: usize = 4;
const APNS_ID: usize = 5;

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

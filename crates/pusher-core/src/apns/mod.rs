//! APNs request building: a [`PushReq`](crate::push_req::PushReq) and the app's `apple`
//! config become the path, headers and JSON body of one `POST /3/device/<token>` (spec
//! §6.1; providers.md §1).
//!
//! The body is Kazoo's classic shape ([`payload`]): `aps.alert.loc-key`/`loc-args`,
//! `aps.sound` and `aps.call-id` from the request, with `Payload` deep-merged at the
//! root ([`deep_merge`]). The headers are `apns-topic` plus the app's `apple.headers`,
//! whose Kazoo (apns4erl) names `apns_push_type`, `apns_collapse_id`, … are mapped to
//! the real header names — `apns-collapse-id` spelled correctly, unlike apns4erl. Only
//! the known `apns-*` headers are ever sent. Departing from Kazoo on purpose, a `.voip`
//! topic gets `apns-push-type: voip`, `apns-priority: 10` and `apns-expiration: 0`
//! unless the config says otherwise.
//!
//! [`base_url`] turns Kazoo's `apple.host` (a bare host name, port 443) into the base
//! URL the HTTP client uses. Sending is the I/O crate's job.
//!
//! Layout: this file holds the limits, the error, the config and the request types;
//! `request` builds the headers, `payload` the body, `host` the base URL.

use serde_json::{Map, Value};

use crate::kapps_config::ConfigDoc;

mod host;
mod payload;
mod request;

pub use host::base_url;
pub use payload::{deep_merge, payload};
pub use request::{build_request, default_topic, is_canonical_uuid};

/// Production APNs host, Kazoo's default `apple.host`.
pub const DEFAULT_HOST: &str = "api.push.apple.com";

/// Largest body APNs accepts for a regular notification, in bytes.
pub const MAX_PAYLOAD: usize = 4096;

/// Largest body APNs accepts for a VoIP notification, in bytes.
pub const MAX_VOIP_PAYLOAD: usize = 5120;

/// Longest `apns-collapse-id` APNs accepts, in bytes.
pub const MAX_COLLAPSE_ID: usize = 64;

/// The only headers [`build_request`] ever emits, in emission order.
pub const KNOWN_HEADERS: [&str; 6] = [
    "apns-topic",
    "apns-push-type",
    "apns-priority",
    "apns-expiration",
    "apns-collapse-id",
    "apns-id",
];

/// Why no APNs request (or base URL) can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApnsBuildError {
    /// The device token is empty, too long or not URL-path safe.
    #[error("invalid APNs device token")]
    BadDeviceToken,
    /// A known header in `apple.headers` is neither a string nor an integer.
    #[error("apple.headers.{name} must be a string or an integer")]
    HeaderType {
        /// The key as written in the config.
        name: String,
    },
    /// A header value has characters outside visible ASCII.
    #[error("{name} has characters that are not visible ASCII")]
    InvalidHeaderValue {
        /// The header name.
        name: &'static str,
    },
    /// The topic is empty (e.g. `Token-App` is just `.dev`).
    #[error("APNs topic is empty")]
    MissingTopic,
    /// `apns-collapse-id` is longer than 64 bytes.
    #[error("apns-collapse-id is {len} bytes; APNs allows at most 64")]
    BadCollapseId {
        /// Its length in bytes.
        len: usize,
    },
    /// `apns-priority` is not 1, 5 or 10.
    #[error("apns-priority must be 1, 5 or 10, not {0:?}")]
    BadPriority(String),
    /// `apns-expiration` is not a non-negative integer (UNIX seconds).
    #[error("apns-expiration must be UNIX seconds, not {0:?}")]
    BadExpiration(String),
    /// A configured `apns-id` is not a UUID.
    #[error("apns-id must be a UUID, not {0:?}")]
    BadMessageId(String),
    /// The JSON body exceeds APNs' limit (5120 bytes for VoIP, else 4096).
    #[error("APNs payload is {size} bytes; the limit is {limit}")]
    PayloadTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// `apple.host` is not a usable HTTPS host (value bounded to 80 chars).
    #[error("invalid APNs host {host:?}: {reason}")]
    BadHost {
        /// The configured value.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The per-app `apple` settings the request depends on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApnsAppConfig {
    /// `<app>.apple.apns_topic`: the topic; default `Token-App` minus `.dev`/`.prod`.
    pub apns_topic: Option<String>,
    /// `<app>.apple.headers`: header overrides, Kazoo names (`apns_push_type`) or real
    /// ones (`apns-push-type`).
    pub headers: Map<String, Value>,
}

impl ApnsAppConfig {
    /// Reads `apple.apns_topic` and `apple.headers` for `app`, each resolved app → zone →
    /// `default` like Kazoo. A non-string topic or non-object headers count as absent.
    pub fn from_doc(doc: &ConfigDoc, app: &str, zone: &str) -> Self {
        ApnsAppConfig {
            apns_topic: doc
                .app_value(app, zone, &["apple", "apns_topic"])
                .and_then(Value::as_str)
                .map(str::to_string),
            headers: doc
                .app_value(app, zone, &["apple", "headers"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// One APNs request, ready to send to [`base_url`] + `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApnsRequest {
    /// `/3/device/<token>`.
    pub path: String,
    /// Lowercase `apns-*` headers in [`KNOWN_HEADERS`] order. The sender adds
    /// `authorization` (token auth) itself.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The `apns-topic` sent.
    pub topic: String,
    /// The `apns-push-type` sent, if any.
    pub push_type: Option<String>,
    /// Keys of `apple.headers` that are not APNs headers and were not sent (worth a
    /// warning).
    pub ignored_headers: Vec<String>,
}

impl ApnsRequest {
    /// Value of header `name` (lowercase), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn bounded(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests;

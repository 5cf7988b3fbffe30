//! Results of an endpoint push: one [`DeviceStatus`] per device, its K5 result entry
//! (`Device-ID`, `Status`, `Message`, `Error` only when ≠ 200), the `Overall-Status`
//! rule ([`overall_status`], K5 §3 step 6) and the `endpoint_push_resp` body
//! ([`response`]).

use serde_json::{Value, json};

use super::{CATEGORY, RESP_NAME};

/// What became of the push to one device, with the code K5 would give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    /// The provider accepted it: 200.
    Sent,
    /// The device has no `push` object: 200 "Not push device" (K5).
    NotPushDevice,
    /// The app is disabled for the device's token type: 200 "App disabled" (K5).
    AppDisabled,
    /// This process already pushed this request to this device: 200.
    AlreadyPushed,
    /// `Token-ID`, `Token-App` or `Token-Type` is missing: 400 (K5).
    MissingPushProperties,
    /// `Token-Type` is not one we push to: 400 "Token type unknown" (K5).
    UnknownTokenType,
    /// No provider request can be built (bad token, payload too large, …): 400.
    Unbuildable(String),
    /// The provider refused it for good: 403 for refused credentials, else 400.
    Rejected {
        /// Provider reason.
        reason: String,
        /// Whether the reason means the credentials were refused.
        auth: bool,
    },
    /// The provider says the token is dead: 410.
    DeadToken(String),
    /// The device document could not be read: 500 (K5).
    FetchFailed(String),
    /// The app has no usable credentials: 500 (K5's "no connection").
    NoCredentials(String),
    /// Not attempted to the end (shutting down, config not loaded): 500.
    Failed(String),
    /// The app stayed at its in-flight limit: 503.
    Busy,
    /// Not delivered within the deadline: 504 (K5).
    Timeout(String),
}

impl DeviceStatus {
    /// The `Status` code.
    pub fn code(&self) -> u16 {
        match self {
            DeviceStatus::Sent
            | DeviceStatus::NotPushDevice
            | DeviceStatus::AppDisabled
            | DeviceStatus::AlreadyPushed => 200,
            DeviceStatus::MissingPushProperties
            | DeviceStatus::UnknownTokenType
            | DeviceStatus::Unbuildable(_) => 400,
            DeviceStatus::Rejected { auth: true, .. } => 403,
            DeviceStatus::Rejected { auth: false, .. } => 400,
            DeviceStatus::DeadToken(_) => 410,
            DeviceStatus::FetchFailed(_)
            | DeviceStatus::NoCredentials(_)
            | DeviceStatus::Failed(_) => 500,
            DeviceStatus::Busy => 503,
            DeviceStatus::Timeout(_) => 504,
        }
    }

    /// The `Message`: a fixed description (K5's wording where K5 has one).
    pub fn message(&self) -> &'static str {
        match self {
            DeviceStatus::Sent => "Push sent",
            DeviceStatus::NotPushDevice => "Not push device",
            DeviceStatus::AppDisabled => "App disabled",
            DeviceStatus::AlreadyPushed => "Push already sent for this request",
            DeviceStatus::MissingPushProperties => "Missing mandatory push properties",
            DeviceStatus::UnknownTokenType => "Token type unknown",
            DeviceStatus::Unbuildable(_) => "Push request cannot be built",
            DeviceStatus::Rejected { auth: true, .. } => "Push credentials refused",
            DeviceStatus::Rejected { auth: false, .. } => "Push refused by the provider",
            DeviceStatus::DeadToken(_) => "Device token is no longer valid",
            DeviceStatus::FetchFailed(_) => "Device could not be read",
            DeviceStatus::NoCredentials(_) => "No usable credentials for this app",
            DeviceStatus::Failed(_) => "Push not completed",
            DeviceStatus::Busy => "App busy: at its in-flight limit",
            DeviceStatus::Timeout(_) => "Push not delivered in time",
        }
    }

    /// The `Error`: the reason (or the message when there is none); `None` for 200s.
    pub fn error(&self) -> Option<String> {
        if self.code() == 200 {
            return None;
        }
        Some(match self {
            DeviceStatus::Unbuildable(r)
            | DeviceStatus::Rejected { reason: r, .. }
            | DeviceStatus::DeadToken(r)
            | DeviceStatus::FetchFailed(r)
            | DeviceStatus::NoCredentials(r)
            | DeviceStatus::Failed(r)
            | DeviceStatus::Timeout(r) => r.chars().take(200).collect(),
            other => other.message().to_string(),
        })
    }

    /// Stable label for metrics: `sent`, `not_push_device`, `disabled`, …
    pub fn label(&self) -> &'static str {
        match self {
            DeviceStatus::Sent => "sent",
            DeviceStatus::NotPushDevice => "not_push_device",
            DeviceStatus::AppDisabled => "disabled",
            DeviceStatus::AlreadyPushed => "duplicate",
            DeviceStatus::MissingPushProperties | DeviceStatus::UnknownTokenType => {
                "bad_push_object"
            }
            DeviceStatus::Unbuildable(_) => "unbuildable",
            DeviceStatus::Rejected { .. } => "rejected",
            DeviceStatus::DeadToken(_) => "dead_token",
            DeviceStatus::FetchFailed(_) => "fetch_failed",
            DeviceStatus::NoCredentials(_) => "no_credentials",
            DeviceStatus::Failed(_) => "failed",
            DeviceStatus::Busy => "busy",
            DeviceStatus::Timeout(_) => "timeout",
        }
    }
}

/// One entry of `Results`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceResult {
    /// `Device-ID`.
    pub device_id: String,
    /// What became of its push.
    pub status: DeviceStatus,
}

impl DeviceResult {
    /// `{Device-ID, Status, Message}` plus `Error` when the code is not 200.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Device-ID": self.device_id,
            "Status": self.status.code(),
            "Message": self.status.message(),
        });
        if let Some(error) = self.status.error() {
            v["Error"] = Value::String(error);
        }
        v
    }
}

/// K5's `Overall-Status`: 200 without results; else codes ≥ 400 rank first, then
/// 201–399, then ≤ 200, and the lowest code of the best rank wins (so any error wins,
/// and 400 beats 500).
pub fn overall_status(codes: impl IntoIterator<Item = u16>) -> u16 {
    let rank = |c: u16| match c {
        400.. => 0,
        201..=399 => 1,
        _ => 2,
    };
    codes
        .into_iter()
        .min_by_key(|c| (rank(*c), *c))
        .unwrap_or(200)
}

/// A request-level failure (the request itself is unusable): 400 with no results.
pub const BAD_REQUEST: u16 = 400;

/// The `endpoint_push_resp` body: `Overall-Status`, `Results`, `Msg-ID` copied, and the
/// default headers our other replies carry.
pub fn response(
    msg_id: Option<&str>,
    results: &[DeviceResult],
    node: &str,
    version: &str,
) -> Value {
    let overall = overall_status(results.iter().map(|r| r.status.code()));
    envelope(msg_id, overall, results, node, version)
}

/// The response to a request that cannot be used at all: `Overall-Status` 400, no
/// results, `Error` saying why.
pub fn bad_request(msg_id: Option<&str>, error: &str, node: &str, version: &str) -> Value {
    let mut v = envelope(msg_id, BAD_REQUEST, &[], node, version);
    v["Error"] = Value::String(error.chars().take(200).collect());
    v
}

fn envelope(
    msg_id: Option<&str>,
    overall: u16,
    results: &[DeviceResult],
    node: &str,
    version: &str,
) -> Value {
    json!({
        "Event-Category": CATEGORY,
        "Event-Name": RESP_NAME,
        "Msg-ID": msg_id,
        "Overall-Status": overall,
        "Results": results.iter().map(DeviceResult::to_json).collect::<Vec<_>>(),
        "App-Name": "pusher",
        "App-Version": version,
        "Node": node,
    })
}

//! The per-app configuration of one push, resolved once from `system_config/pusher`.
//!
//! The service and the CLI both need the same answers for an app: is this push type
//! enabled, how long may a push take, should dead tokens be removed, and which
//! credentials sign or authenticate the request. [`AppConfig::resolve`] reads them all
//! from a [`ConfigDoc`] snapshot in one pass (each key app → zone → `default`, as Kazoo
//! does), and turns every unusable credential into a typed [`AppConfigError`] whose
//! `Display` is the sentence logged with the `no_credentials` outcome.
//!
//! Nothing here does I/O: the `.p8` key is named by its attachment digest, and the
//! caller fetches the bytes (and caches them by that digest).

use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde_json::Value;

use crate::apns::{self, ApnsAppConfig};
use crate::credentials;
use crate::kapps_config::ConfigDoc;
use crate::push_req::{Provider, TokenType};
use crate::secret::Secret;

/// Name of the `.p8` attachment on `system_config/pusher` (Kazoo 5).
pub const P8_ATTACHMENT: &str = "private_key.p8";
/// Shortest accepted `push_deadline_ms`.
pub const MIN_PUSH_DEADLINE: Duration = Duration::from_secs(1);
/// Longest accepted `push_deadline_ms`.
pub const MAX_PUSH_DEADLINE: Duration = Duration::from_secs(60);
/// `apple.token_refresh_window` when absent (minutes).
pub const DEFAULT_TOKEN_REFRESH_MIN: u64 = 55;

/// `push_deadline_ms` rule: a JSON unsigned integer of ms within 1_000..=60_000, else
/// `None` (the caller's default applies).
pub fn push_deadline(v: Option<&Value>) -> Option<Duration> {
    v.and_then(Value::as_u64)
        .map(Duration::from_millis)
        .filter(|d| (MIN_PUSH_DEADLINE..=MAX_PUSH_DEADLINE).contains(d))
}

/// The `apple.auth_type` default: `"certdata"` if a non-empty certificate exists, else
/// `"token"`.
pub fn default_auth_type(certificate: Option<&str>) -> &'static str {
    if certificate.is_some_and(|c| !c.is_empty()) {
        "certdata"
    } else {
        "token"
    }
}

/// Why an app has no usable credentials for a push type.
///
/// The wording is what the service logs and what operators (and tests) grep for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppConfigError {
    /// `apple` resolves to something other than an object.
    #[error("apple is not an object in system_config/pusher")]
    AppleNotObject,
    /// `apple.certificate` is present but not a string.
    #[error("apple.certificate is not a string (a PEM with the certificate and its key)")]
    CertificateNotString,
    /// `auth_type` is `certdata` but there is no certificate.
    #[error("no apple.certificate configured for this app (add_apple_app)")]
    NoCertificate,
    /// `auth_type` is `token` but `team_id` is missing.
    #[error("apple.auth_type is token but apple.team_id is missing")]
    NoTeamId,
    /// `auth_type` is `token` but `key_id` is missing.
    #[error("apple.auth_type is token but apple.key_id is missing")]
    NoKeyId,
    /// `auth_type` is `token` but the doc has no `.p8` attachment.
    #[error(
        "apple.auth_type is token but system_config/pusher has no private_key.p8 attachment (add_apple_pem_file)"
    )]
    NoP8Attachment,
    /// `auth_type` is neither `certdata` nor `token`.
    #[error("apple.auth_type {0:?} is neither certdata nor token")]
    UnknownAuthType(String),
    /// `apple.host` cannot be turned into an APNs base URL.
    #[error("apple.host: {0}")]
    BadHost(#[from] apns::ApnsBuildError),
    /// The service account is a string that does not parse as JSON.
    #[error("firebase service_account is a string but not JSON: {0}")]
    ServiceAccountNotJson(String),
    /// The service account is neither an object nor a string.
    #[error("firebase service_account is neither an object nor a JSON string")]
    ServiceAccountNotObject,
    /// The service account fails [`credentials::check_service_account`].
    #[error("FCM service account unusable: {0}")]
    ServiceAccount(credentials::CredentialError),
    /// Only the legacy `firebase.api_key` is configured (that API is gone since 2024).
    #[error("legacy FCM API was shut down in 2024; add a service account with add_firebase_v1_app")]
    LegacyApiKey,
    /// No service account at all.
    #[error("no firebase_v1.service_account configured for this app (add_firebase_v1_app)")]
    NoServiceAccount,
}

/// Everything the pusher needs to know about one app for one push type.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    /// The app id (`Token-App`).
    pub app: String,
    /// The push type the config was resolved for.
    pub token_type: TokenType,
    /// `[<token_type>, "enabled"]` with Kazoo's `to_boolean`; default true.
    pub enabled: bool,
    /// `push_deadline_ms`, if set and within 1–60 s.
    pub deadline: Option<Duration>,
    /// `remove_invalid_tokens`; default false.
    pub remove_invalid_tokens: bool,
    /// The provider credentials, or why there are none.
    pub credentials: Result<Credentials, AppConfigError>,
}

impl AppConfig {
    /// Resolves the config of `app` for `token_type` (each key app → `zone` → default).
    pub fn resolve(doc: &ConfigDoc, app: &str, zone: &str, token_type: TokenType) -> AppConfig {
        let scoped = Scoped { doc, app, zone };
        let credentials = match token_type.provider() {
            Provider::Apple => AppleCredentials::resolve(&scoped).map(Credentials::Apple),
            Provider::Firebase => FirebaseCredentials::resolve(&scoped).map(Credentials::Firebase),
        };
        AppConfig {
            app: app.to_string(),
            token_type,
            enabled: enabled(doc, app, zone, token_type, credentials.as_ref().ok()),
            deadline: push_deadline(scoped.value(&["push_deadline_ms"])),
            remove_invalid_tokens: doc.app_bool(app, zone, &["remove_invalid_tokens"], false),
            credentials,
        }
    }

    /// The push deadline: the configured one, else `fallback`.
    pub fn deadline_or(&self, fallback: Duration) -> Duration {
        self.deadline.unwrap_or(fallback)
    }
}

/// Whether pushes of `token_type` may be sent for `app`.
///
/// Disabled when `<Token-Type>.enabled` is false (for a Firebase token this covers
/// Kazoo 5's rule, which disables an app whose `firebase.enabled` and
/// `firebase_v1.enabled` are both false), **or** when the section that holds the
/// credentials in use says `enabled: false`: a service account under `firebase_v1` with
/// `firebase_v1.enabled: false` disables `Token-Type: firebase` pushes too (and one under
/// `firebase` with `firebase.enabled: false` disables `firebase_v1` pushes). Each key is
/// read app → zone → `default` with Kazoo's `to_boolean`; absent or not boolean-like
/// means enabled.
pub fn enabled(
    doc: &ConfigDoc,
    app: &str,
    zone: &str,
    token_type: TokenType,
    credentials: Option<&Credentials>,
) -> bool {
    let section_says = |section: &str| doc.app_bool(app, zone, &[section, "enabled"], true);
    let credentials_section = match credentials {
        Some(Credentials::Firebase(f)) => Some(f.section),
        // Apple credentials always sit in `apple`, the token type's own section.
        Some(Credentials::Apple(_)) | None => None,
    };
    section_says(token_type.as_str()) && credentials_section.is_none_or(section_says)
}

/// Per-app reads of one doc.
struct Scoped<'a> {
    doc: &'a ConfigDoc,
    app: &'a str,
    zone: &'a str,
}

impl<'a> Scoped<'a> {
    fn value(&self, path: &[&str]) -> Option<&'a Value> {
        self.doc.app_value(self.app, self.zone, path)
    }

    /// A non-empty string at `path` (anything else counts as absent).
    fn str(&self, path: &[&str]) -> Option<&'a str> {
        self.value(path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Credentials of one provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// APNs.
    Apple(AppleCredentials),
    /// FCM HTTP v1.
    Firebase(FirebaseCredentials),
}

/// How and where to reach APNs for an app.
#[derive(Debug, Clone, PartialEq)]
pub struct AppleCredentials {
    /// Certificate or token authentication.
    pub auth: AppleAuth,
    /// `https://host:port` from `apple.host` (Apple's production host by default).
    pub base_url: String,
    /// `apple.apns_topic` and `apple.headers`, for building requests.
    pub request: ApnsAppConfig,
}

impl AppleCredentials {
    fn resolve(cfg: &Scoped<'_>) -> Result<Self, AppConfigError> {
        if cfg.value(&["apple"]).is_some_and(|a| !a.is_object()) {
            return Err(AppConfigError::AppleNotObject);
        }
        if cfg
            .value(&["apple", "certificate"])
            .is_some_and(|c| !c.is_string())
        {
            return Err(AppConfigError::CertificateNotString);
        }
        let certificate = cfg.str(&["apple", "certificate"]);
        let auth_type = cfg
            .str(&["apple", "auth_type"])
            .unwrap_or(default_auth_type(certificate));
        let base_url = apns::base_url(cfg.str(&["apple", "host"]))?;
        let auth = match auth_type {
            "certdata" => AppleAuth::Certificate {
                pem: certificate
                    .ok_or(AppConfigError::NoCertificate)?
                    .to_string()
                    .into(),
            },
            "token" => AppleAuth::Token {
                team_id: cfg
                    .str(&["apple", "team_id"])
                    .ok_or(AppConfigError::NoTeamId)?
                    .to_string(),
                key_id: cfg
                    .str(&["apple", "key_id"])
                    .ok_or(AppConfigError::NoKeyId)?
                    .to_string(),
                refresh_window_min: cfg
                    .value(&["apple", "token_refresh_window"])
                    .and_then(Value::as_u64)
                    .unwrap_or(DEFAULT_TOKEN_REFRESH_MIN),
                p8_digest: cfg
                    .doc
                    .raw()
                    .get("_attachments")
                    .and_then(|a| a.get(P8_ATTACHMENT))
                    .and_then(|a| a.get("digest"))
                    .and_then(Value::as_str)
                    .ok_or(AppConfigError::NoP8Attachment)?
                    .to_string(),
            },
            other => return Err(AppConfigError::UnknownAuthType(other.to_string())),
        };
        Ok(AppleCredentials {
            auth,
            base_url,
            request: ApnsAppConfig::from_doc(cfg.doc, cfg.app, cfg.zone),
        })
    }

    /// A hash of the authentication and the base URL: it changes iff a client built
    /// from these credentials must be rebuilt (not a digest for any security purpose).
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match &self.auth {
            AppleAuth::Certificate { pem } => ("cert", pem.expose()).hash(&mut h),
            AppleAuth::Token {
                team_id,
                key_id,
                refresh_window_min,
                p8_digest,
            } => ("token", team_id, key_id, refresh_window_min, p8_digest).hash(&mut h),
        }
        self.base_url.hash(&mut h);
        h.finish()
    }
}

/// APNs authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppleAuth {
    /// `certdata`: a client certificate with its key, in one PEM.
    Certificate {
        /// `apple.certificate`.
        pem: Secret<String>,
    },
    /// `token`: a JWT signed with the `.p8` key attached to `system_config/pusher`.
    Token {
        /// `apple.team_id`.
        team_id: String,
        /// `apple.key_id`.
        key_id: String,
        /// `apple.token_refresh_window` in minutes (default 55).
        refresh_window_min: u64,
        /// CouchDB digest of the `private_key.p8` attachment (changes with the key).
        p8_digest: String,
    },
}

impl AppleAuth {
    /// The `apple.auth_type` this is: `"certdata"` or `"token"`.
    pub fn auth_type(&self) -> &'static str {
        match self {
            AppleAuth::Certificate { .. } => "certdata",
            AppleAuth::Token { .. } => "token",
        }
    }
}

/// An app's FCM HTTP v1 service account.
#[derive(Debug, Clone, PartialEq)]
pub struct FirebaseCredentials {
    /// `"firebase_v1"` or `"firebase"`: the section the service account was found in.
    pub section: &'static str,
    /// The service account as a JSON object (a JSON string in the doc is parsed).
    pub service_account: Secret<Value>,
    /// Its `project_id`.
    pub project_id: String,
    /// `[firebase_v1|firebase].headers`, the first found, else `Null`.
    pub envelope: Value,
}

/// The sections a service account is looked up in, in order.
const FIREBASE_SECTIONS: [&str; 2] = ["firebase_v1", "firebase"];

impl FirebaseCredentials {
    fn resolve(cfg: &Scoped<'_>) -> Result<Self, AppConfigError> {
        let found = FIREBASE_SECTIONS
            .iter()
            .find_map(|s| Some((*s, cfg.value(&[s, "service_account"])?)));
        let (section, service_account) = match found {
            Some((section, Value::String(text))) => (
                section,
                serde_json::from_str::<Value>(text)
                    .map_err(|e| AppConfigError::ServiceAccountNotJson(e.to_string()))?,
            ),
            Some((section, v @ Value::Object(_))) => (section, v.clone()),
            Some(_) => return Err(AppConfigError::ServiceAccountNotObject),
            None if cfg.value(&["firebase", "api_key"]).is_some() => {
                return Err(AppConfigError::LegacyApiKey);
            }
            None => return Err(AppConfigError::NoServiceAccount),
        };
        let project_id = credentials::check_service_account(&service_account)
            .map_err(AppConfigError::ServiceAccount)?
            .project_id;
        let envelope = FIREBASE_SECTIONS
            .iter()
            .find_map(|s| cfg.value(&[s, "headers"]).cloned())
            .unwrap_or(Value::Null);
        Ok(FirebaseCredentials {
            section,
            service_account: service_account.into(),
            project_id,
            envelope,
        })
    }

    /// A hash of the service account: it changes iff a client built from it must be
    /// rebuilt (not a digest for any security purpose).
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.service_account.expose().to_string().hash(&mut h);
        h.finish()
    }
}

#[cfg(test)]
mod tests;

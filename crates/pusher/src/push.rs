//! `push_req` → APNs or FCM, with Kazoo's mapping and the fixes the Erlang app lacks.
//!
//! Per request: parse and normalise (core) → app enabled? → credentials → client from the
//! registry (one per app, credential and host; built lazily, rebuilt when the config
//! changes) → build the provider request (core) → send, classify (core), retry inside the
//! push deadline → on a dead token, optionally remove the device's `push` object.
//!
//! Pushes run concurrently: every delivery has its own task, HTTP/2 multiplexes them on
//! one connection per client, and semaphores bound the in-flight pushes per app and in
//! total, so one slow app cannot starve the others.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pusher_core::apns::{self as core_apns, ApnsAppConfig};
use pusher_core::fcm as core_fcm;
use pusher_core::kapps_config::ConfigDoc;
use pusher_core::outcome::{self, Outcome};
use pusher_core::push_req::{Provider, PushReq, TokenType};
use pusher_io::couch::CouchClient;
use pusher_io::{apns, fcm};
use rand::Rng;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{PUSHER_CATEGORY, PusherConfig, SYSTEM_CONFIG_DB};
use crate::state::State;
use crate::tokens::TokenIndex;

/// Name of the `.p8` attachment on `system_config/pusher` (Kazoo 5).
pub const P8_ATTACHMENT: &str = "private_key.p8";

/// Settings of push delivery.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// PEM roots added to the system roots for provider TLS (`PUSHER_EXTRA_CA_FILE`).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// FCM base URL (`PUSHER_FCM_URL`).
    pub fcm_base_url: String,
    /// Per-request provider timeout.
    pub request_timeout: Duration,
    /// Default push deadline (config `default.push_deadline_ms` overrides).
    pub deadline: Duration,
    /// In-flight pushes per app.
    pub per_app_in_flight: usize,
    /// In-flight pushes in total.
    pub total_in_flight: usize,
}

/// What became of one push request (for logs, metrics and the `push_resp` reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The provider accepted it.
    Delivered,
    /// The provider says the token is dead (the `push` object may have been removed).
    DeadToken {
        /// Provider reason.
        reason: String,
        /// Whether the device's `push` object was removed.
        removed: bool,
    },
    /// The request itself is unusable (missing token fields, bad token, payload too big).
    Dropped(String),
    /// The app has no usable credentials for this push type (none, unreadable, or only
    /// the legacy FCM key).
    NoCredentials(String),
    /// The provider refused the push for good (bad topic, refused credentials, …).
    Rejected(String),
    /// `<type>.enabled` is false for the app.
    Disabled,
    /// Retries did not succeed within the deadline.
    TimedOut(String),
    /// Not attempted to the end: shutting down, or the config could not be loaded.
    Failed(String),
}

impl PushOutcome {
    /// Stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PushOutcome::Delivered => "delivered",
            PushOutcome::DeadToken { .. } => "dead_token",
            PushOutcome::Dropped(_) => "dropped",
            PushOutcome::NoCredentials(_) => "no_credentials",
            PushOutcome::Rejected(_) => "rejected",
            PushOutcome::Disabled => "disabled",
            PushOutcome::TimedOut(_) => "timeout",
            PushOutcome::Failed(_) => "failed",
        }
    }

    /// The `Status` of a `push_resp`: the label, except that refused credentials are
    /// `auth_error` and an unusable request is `rejected`.
    pub fn status(&self) -> &'static str {
        match self {
            PushOutcome::Rejected(r) if outcome::is_auth_reason(r) => "auth_error",
            PushOutcome::Dropped(_) => "rejected",
            other => other.label(),
        }
    }

    /// The reason, or `""` (delivered, disabled).
    pub fn reason(&self) -> &str {
        match self {
            PushOutcome::Delivered | PushOutcome::Disabled => "",
            PushOutcome::DeadToken { reason, .. } => reason,
            PushOutcome::Dropped(r)
            | PushOutcome::NoCredentials(r)
            | PushOutcome::Rejected(r)
            | PushOutcome::TimedOut(r)
            | PushOutcome::Failed(r) => r,
        }
    }
}

enum Sender {
    Apns(Arc<apns::Client>),
    Fcm(Arc<fcm::Client>),
}

/// Push delivery: client registry, concurrency limits, retries.
pub struct Pusher {
    couch: CouchClient,
    zone: String,
    settings: PushSettings,
    tokens: Arc<TokenIndex>,
    state: Arc<State>,
    cancel: CancellationToken,
    apns_clients: Mutex<HashMap<String, (String, Arc<apns::Client>)>>,
    fcm_clients: tokio::sync::Mutex<HashMap<String, (String, Arc<fcm::Client>)>>,
    signers: Mutex<HashMap<String, Arc<apns::TokenSigner>>>,
    p8_cache: tokio::sync::Mutex<Option<(String, Arc<Vec<u8>>)>>,
    legacy_warned: Mutex<std::collections::HashSet<String>>,
    per_app: Mutex<HashMap<String, Arc<Semaphore>>>,
    total: Arc<Semaphore>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A short, log-safe form of a device token (first 8 characters).
pub fn short_token(t: &str) -> String {
    let head: String = t.chars().take(8).collect();
    if t.chars().count() > 8 {
        format!("{head}…")
    } else {
        head
    }
}

/// Stable fingerprint of a credential for the client registry (not a secret digest for
/// any security purpose: it only decides when to rebuild a client).
fn fingerprint(parts: &[&str]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Pusher {
    /// A pusher reading credentials from `system_config/pusher` through `couch`.
    pub fn new(
        couch: CouchClient,
        zone: String,
        settings: PushSettings,
        tokens: Arc<TokenIndex>,
        state: Arc<State>,
        cancel: CancellationToken,
    ) -> Self {
        let total = Arc::new(Semaphore::new(settings.total_in_flight.max(1)));
        Self {
            couch,
            zone,
            settings,
            tokens,
            state,
            cancel,
            apns_clients: Mutex::new(HashMap::new()),
            fcm_clients: tokio::sync::Mutex::new(HashMap::new()),
            signers: Mutex::new(HashMap::new()),
            p8_cache: tokio::sync::Mutex::new(None),
            legacy_warned: Mutex::new(Default::default()),
            per_app: Mutex::new(HashMap::new()),
            total,
        }
    }

    fn app_limit(&self, app: &str) -> Arc<Semaphore> {
        let mut map = self.per_app.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(app.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_app_in_flight.max(1))))
            .clone()
    }

    /// Handles one decoded `push_req`.
    pub async fn push(&self, cfg: &PusherConfig, body: &Value, received: Instant) -> PushOutcome {
        let req = match PushReq::from_json(body, now_ms()) {
            Ok(r) => r,
            Err(e) => {
                let msg_id = body.get("Msg-ID").and_then(|v| v.as_str()).unwrap_or("");
                tracing::warn!(msg_id,
                    error.message = %e, "push_req unusable; dropped");
                self.state
                    .metrics
                    .push_done("none", "other", "dropped", received.elapsed());
                return PushOutcome::Dropped(e.to_string());
            }
        };
        let app = req.token_app.clone();
        let call_id = req.call_id.clone().unwrap_or_default();
        let msg_id = req.msg_id.clone().unwrap_or_default();
        let token = short_token(&req.token_id);
        let kind = req.token_type.as_str();
        let span = tracing::info_span!("push", call_id = %call_id, msg_id = %msg_id, app = %app,
            token = %token, token_type = kind);
        let metrics = &self.state.metrics;
        let provider = provider_label(req.provider());
        let configured = cfg.doc.raw().get(&app).is_some();
        let work = async move {
            metrics.pushes_in_flight.fetch_add(1, Ordering::Relaxed);
            let outcome = self.push_inner(cfg, req, received).await;
            metrics.pushes_in_flight.fetch_sub(1, Ordering::Relaxed);
            let sent = !matches!(
                outcome,
                PushOutcome::Dropped(_) | PushOutcome::NoCredentials(_) | PushOutcome::Disabled
            );
            metrics.push_done(
                if sent { provider } else { "none" },
                crate::metrics::app_label(&app, configured),
                outcome.label(),
                received.elapsed(),
            );
            let elapsed_ms = received.elapsed().as_millis() as u64;
            match &outcome {
                PushOutcome::Delivered => tracing::info!(elapsed_ms, "push delivered"),
                PushOutcome::DeadToken { reason, removed } => {
                    tracing::warn!(elapsed_ms, reason = %reason, push_removed = removed, "device token is dead")
                }
                PushOutcome::Dropped(why) => {
                    tracing::error!(reason = %why, "push_req unusable; dropped")
                }
                PushOutcome::NoCredentials(why) => {
                    tracing::error!(reason = %why, "no usable credentials for this app; push not sent")
                }
                PushOutcome::Rejected(why) => {
                    tracing::error!(elapsed_ms, reason = %why, "provider rejected the push")
                }
                PushOutcome::TimedOut(why) => {
                    tracing::error!(elapsed_ms, reason = %why, "push not delivered within its deadline")
                }
                PushOutcome::Disabled => {
                    tracing::info!("app disabled for this push type; not sent")
                }
                PushOutcome::Failed(why) => {
                    tracing::error!(elapsed_ms, reason = %why, "push not completed")
                }
            }
            outcome
        };
        tracing::Instrument::instrument(work, span).await
    }

    async fn push_inner(&self, cfg: &PusherConfig, req: PushReq, received: Instant) -> PushOutcome {
        let doc = &cfg.doc;
        let app = req.token_app.as_str();
        let section = req.token_type.as_str();
        if !doc.app_bool(app, &self.zone, &[section, "enabled"], true) {
            return PushOutcome::Disabled;
        }
        let deadline = doc
            .app_value(app, &self.zone, &["push_deadline_ms"])
            .and_then(Value::as_u64)
            .filter(|ms| (1_000..=60_000).contains(ms))
            .map(Duration::from_millis)
            .unwrap_or(self.settings.deadline);
        let limit = self.app_limit(app);
        let Ok(_app_permit) = limit.acquire_owned().await else {
            return PushOutcome::Failed("shutting down".into());
        };
        let Ok(_total_permit) = self.total.clone().acquire_owned().await else {
            return PushOutcome::Failed("shutting down".into());
        };
        let sender = match self.sender(doc, &req).await {
            Ok(s) => s,
            Err(why) => return PushOutcome::NoCredentials(why),
        };
        match sender {
            Sender::Apns(client) => self.send_apns(doc, &req, &client, received, deadline).await,
            Sender::Fcm(client) => self.send_fcm(doc, &req, &client, received, deadline).await,
        }
    }

    async fn sender(&self, doc: &ConfigDoc, req: &PushReq) -> Result<Sender, String> {
        match req.token_type.provider() {
            Provider::Apple => self
                .apns_client(doc, &req.token_app)
                .await
                .map(Sender::Apns),
            Provider::Firebase => self.fcm_client(doc, req).await.map(Sender::Fcm),
        }
    }

    async fn apns_client(&self, doc: &ConfigDoc, app: &str) -> Result<Arc<apns::Client>, String> {
        let get = |k: &str| doc.app_value(app, &self.zone, &["apple", k]);
        let get_str = |k: &str| get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if doc
            .app_value(app, &self.zone, &["apple"])
            .is_some_and(|a| !a.is_object())
        {
            return Err("apple is not an object in system_config/pusher".into());
        }
        if get("certificate").is_some_and(|c| !c.is_string()) {
            return Err(
                "apple.certificate is not a string (a PEM with the certificate and its key)".into(),
            );
        }
        let certificate = get_str("certificate");
        let auth_type = get_str("auth_type").unwrap_or(if certificate.is_some() {
            "certdata"
        } else {
            "token"
        });
        let host = get_str("host");
        let base_url = core_apns::base_url(host).map_err(|e| format!("apple.host: {e}"))?;
        let (fp, auth) = match auth_type {
            "certdata" => {
                let pem = certificate
                    .ok_or("no apple.certificate configured for this app (add_apple_app)")?;
                (
                    fingerprint(&["cert", pem, &base_url]),
                    apns::Auth::Certificate {
                        pem: pem.to_string().into(),
                    },
                )
            }
            "token" => {
                let team = get_str("team_id")
                    .ok_or("apple.auth_type is token but apple.team_id is missing")?;
                let key = get_str("key_id")
                    .ok_or("apple.auth_type is token but apple.key_id is missing")?;
                let refresh = get("token_refresh_window")
                    .and_then(Value::as_u64)
                    .unwrap_or(55);
                let (digest, p8) = self.p8(doc).await?;
                let signer_key = fingerprint(&[team, key, &digest, &refresh.to_string()]);
                let signer = {
                    let mut signers = self.signers.lock().unwrap_or_else(|p| p.into_inner());
                    match signers.get(&signer_key) {
                        Some(s) => s.clone(),
                        None => {
                            let s = Arc::new(
                                apns::TokenSigner::new(team, key, &p8, refresh)
                                    .map_err(|e| e.to_string())?,
                            );
                            signers.insert(signer_key.clone(), s.clone());
                            s
                        }
                    }
                };
                (
                    fingerprint(&["token", &signer_key, &base_url]),
                    apns::Auth::Token(signer),
                )
            }
            other => {
                return Err(format!(
                    "apple.auth_type {other:?} is neither certdata nor token"
                ));
            }
        };
        let mut clients = self.apns_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((have, c)) = clients.get(app)
            && *have == fp
        {
            return Ok(c.clone());
        }
        let client = apns::Client::new(apns::ClientConfig {
            base_url: base_url.clone(),
            auth,
            extra_roots_pem: self.settings.extra_ca_pem.clone(),
            request_timeout: self.settings.request_timeout,
        })
        .map_err(|e| e.to_string())?;
        tracing::info!(app, host = %base_url, auth_type, "APNs client created");
        let client = Arc::new(client);
        clients.insert(app.to_string(), (fp, client.clone()));
        Ok(client)
    }

    /// The `.p8` attachment, cached by its digest. The digest comes from the config
    /// snapshot (CouchDB lists attachment stubs in the doc), so only a changed key costs
    /// a request.
    async fn p8(&self, doc: &ConfigDoc) -> Result<(String, Arc<Vec<u8>>), String> {
        let digest = doc
            .raw()
            .pointer(&format!("/_attachments/{P8_ATTACHMENT}/digest"))
            .and_then(Value::as_str)
            .ok_or("apple.auth_type is token but system_config/pusher has no private_key.p8 attachment (add_apple_pem_file)")?
            .to_string();
        let mut cache = self.p8_cache.lock().await;
        if let Some((d, bytes)) = cache.as_ref()
            && *d == digest
        {
            return Ok((digest, bytes.clone()));
        }
        let bytes = self
            .couch
            .get_attachment(SYSTEM_CONFIG_DB, PUSHER_CATEGORY, P8_ATTACHMENT)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("private_key.p8 attachment disappeared")?;
        let bytes = Arc::new(bytes);
        *cache = Some((digest.clone(), bytes.clone()));
        Ok((digest, bytes))
    }

    async fn fcm_client(&self, doc: &ConfigDoc, req: &PushReq) -> Result<Arc<fcm::Client>, String> {
        let app = req.token_app.as_str();
        let sa = [
            ["firebase_v1", "service_account"],
            ["firebase", "service_account"],
        ]
        .iter()
        .find_map(|p| doc.app_value(app, &self.zone, p).cloned());
        let sa = match sa {
            Some(Value::String(s)) => serde_json::from_str::<Value>(&s)
                .map_err(|e| format!("firebase service_account is a string but not JSON: {e}"))?,
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(
                    "firebase service_account is neither an object nor a JSON string".into(),
                );
            }
            None => {
                if doc
                    .app_value(app, &self.zone, &["firebase", "api_key"])
                    .is_some()
                {
                    let mut warned = self.legacy_warned.lock().unwrap_or_else(|p| p.into_inner());
                    if warned.insert(app.to_string()) {
                        tracing::error!(
                            app,
                            "legacy FCM API was shut down in 2024; add a service account with add_firebase_v1_app"
                        );
                    }
                    return Err("legacy FCM API was shut down in 2024; add a service account with add_firebase_v1_app".into());
                }
                return Err(
                    "no firebase_v1.service_account configured for this app (add_firebase_v1_app)"
                        .into(),
                );
            }
        };
        let sa_text = sa.to_string();
        let fp = fingerprint(&[&sa_text, &self.settings.fcm_base_url]);
        let mut clients = self.fcm_clients.lock().await;
        if let Some((have, c)) = clients.get(app)
            && *have == fp
        {
            return Ok(c.clone());
        }
        let client = fcm::Client::new(
            &sa,
            &self.settings.fcm_base_url,
            self.settings.request_timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!(app, project = client.project_id(), "FCM client created");
        let client = Arc::new(client);
        clients.insert(app.to_string(), (fp, client.clone()));
        Ok(client)
    }

    async fn send_apns(
        &self,
        doc: &ConfigDoc,
        req: &PushReq,
        client: &apns::Client,
        received: Instant,
        deadline: Duration,
    ) -> PushOutcome {
        let app = req.token_app.as_str();
        let cfg = ApnsAppConfig {
            apns_topic: doc
                .app_value(app, &self.zone, &["apple", "apns_topic"])
                .and_then(Value::as_str)
                .map(str::to_string),
            headers: doc
                .app_value(app, &self.zone, &["apple", "headers"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        };
        let request = match core_apns::build_request(req, &cfg) {
            Ok(r) => r,
            Err(e) => return PushOutcome::Dropped(e.to_string()),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.before_attempt(attempt, received);
            let sent_at = Instant::now();
            let result = client.send(&request).await;
            self.state
                .metrics
                .provider_request
                .observe(&["apns"], sent_at.elapsed());
            let outcome = match result {
                Ok(r) => outcome::classify_apns(r.status, &r.body, r.retry_after.as_deref()),
                Err(apns::Error::Transport(e)) => Outcome::Retry {
                    reason: e.into(),
                    retry_after: None,
                },
                Err(e) => Outcome::Drop {
                    reason: e.to_string().into(),
                },
            };
            if let Outcome::Retry { reason, .. } = &outcome
                && reason == "ExpiredProviderToken"
                && let Some(s) = client.signer()
            {
                s.expire(SystemTime::now());
            }
            match self
                .settle(doc, req, outcome, attempt, received, deadline)
                .await
            {
                Some(done) => return done,
                None => continue,
            }
        }
    }

    async fn send_fcm(
        &self,
        doc: &ConfigDoc,
        req: &PushReq,
        client: &fcm::Client,
        received: Instant,
        deadline: Duration,
    ) -> PushOutcome {
        let app = req.token_app.as_str();
        let envelope = [["firebase_v1", "headers"], ["firebase", "headers"]]
            .iter()
            .find_map(|p| doc.app_value(app, &self.zone, p).cloned())
            .unwrap_or(Value::Null);
        let message = match core_fcm::build_message(req, &envelope) {
            Ok(m) => m,
            Err(e) => return PushOutcome::Dropped(e.to_string()),
        };
        let path = match core_fcm::send_path(client.project_id()) {
            Ok(p) => p,
            Err(e) => return PushOutcome::NoCredentials(e.to_string()),
        };
        let mut attempt = 0u32;
        let mut refreshed = false;
        let mut force = false;
        loop {
            attempt += 1;
            self.before_attempt(attempt, received);
            let sent_at = Instant::now();
            let result = client.send(&path, &message, force).await;
            self.state
                .metrics
                .provider_request
                .observe(&["fcm"], sent_at.elapsed());
            let outcome = match result {
                Ok(r) => outcome::classify_fcm(r.status, &r.body, r.retry_after.as_deref()),
                Err(fcm::Error::Transport(e)) | Err(fcm::Error::Token(e)) => Outcome::Retry {
                    reason: e.into(),
                    retry_after: None,
                },
                Err(e) => Outcome::Drop {
                    reason: e.to_string().into(),
                },
            };
            force = false;
            let outcome = match outcome {
                Outcome::Unauthorized { reason } if !refreshed => {
                    tracing::info!(reason = %reason, "FCM said 401; refreshing the access token and retrying once");
                    refreshed = true;
                    force = true;
                    continue;
                }
                Outcome::Unauthorized { reason } => Outcome::Drop { reason },
                other => other,
            };
            match self
                .settle(doc, req, outcome, attempt, received, deadline)
                .await
            {
                Some(done) => return done,
                None => continue,
            }
        }
    }

    /// Records the dispatch latency (delivery → first request) before attempt 1.
    fn before_attempt(&self, attempt: u32, received: Instant) {
        if attempt == 1 {
            self.state.metrics.dispatch.observe(received.elapsed());
        }
    }

    /// Turns a classified attempt into a final outcome, or sleeps and returns `None` to
    /// retry (inside the deadline).
    async fn settle(
        &self,
        doc: &ConfigDoc,
        req: &PushReq,
        outcome: Outcome,
        attempt: u32,
        received: Instant,
        deadline: Duration,
    ) -> Option<PushOutcome> {
        match outcome {
            Outcome::Delivered { .. } => Some(PushOutcome::Delivered),
            Outcome::Drop { reason } | Outcome::Unauthorized { reason } => {
                Some(PushOutcome::Rejected(reason.into_owned()))
            }
            Outcome::DeadToken {
                reason,
                timestamp_ms,
            } => {
                let removed = if doc.app_bool(
                    &req.token_app,
                    &self.zone,
                    &["remove_invalid_tokens"],
                    false,
                ) {
                    self.tokens.remove_dead(req, timestamp_ms).await
                } else {
                    false
                };
                if removed {
                    let provider = provider_label(req.provider());
                    self.state.metrics.dead_tokens_removed.inc(&[provider]);
                }
                Some(PushOutcome::DeadToken {
                    reason: reason.into_owned(),
                    removed,
                })
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                let jitter: f64 = rand::rng().random();
                let delay = outcome::retry_delay(
                    attempt,
                    retry_after,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                    jitter,
                );
                if !outcome::fits_deadline(received.elapsed(), delay, deadline) {
                    return Some(PushOutcome::TimedOut(format!(
                        "{reason} (after {attempt} attempts)"
                    )));
                }
                tracing::warn!(attempt, reason = %reason, retry_in_ms = delay.as_millis() as u64, "push attempt failed; retrying");
                let provider = provider_label(req.provider());
                self.state.metrics.push_retries.inc(&[provider]);
                tokio::select! {
                    () = tokio::time::sleep(delay) => None,
                    () = self.cancel.cancelled() => Some(PushOutcome::Failed(format!("{reason} (shutting down)"))),
                }
            }
        }
    }
}

/// Metric label of a provider.
fn provider_label(p: Provider) -> &'static str {
    match p {
        Provider::Apple => "apns",
        Provider::Firebase => "fcm",
    }
}

/// The normalised token type of a request body, for metrics labels without a full parse.
pub fn token_type_label(body: &Value) -> &'static str {
    body.get("Token-Type")
        .and_then(Value::as_str)
        .and_then(|t| TokenType::parse(t).ok())
        .map_or("unknown", |t| t.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_token_keeps_eight_chars() {
        assert_eq!(short_token("0123456789abcdef"), "01234567…");
        assert_eq!(short_token("abc"), "abc");
    }

    #[test]
    fn fingerprint_changes_with_any_part() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["a", "c"]));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
    }
}

//! Mock APNs: HTTP/2 over TLS on 127.0.0.1, checking the client certificate or the
//! ES256 provider token the way Apple does.
//!
//! - **Transport:** tokio-rustls (ring) with ALPN `h2` only, hyper 1 `http2` server.
//!   [`WebPkiClientVerifier`] verifies any client certificate against the configured CA,
//!   so a certificate from another CA (or an expired one) fails the TLS handshake. The
//!   verifier allows clients without a certificate, because token-auth clients have none:
//!   for those, each request must carry `authorization: bearer <ES256 JWT>`.
//! - **Auth per request:** a verified client certificate wins (recorded as
//!   [`ApnsAuth::ClientCert`] with its subject CN); otherwise the JWT is checked against the
//!   configured [`TokenKey`] for its `kid` (signature, `iss` = team id, `iat` within the last
//!   hour and not more than 60 s ahead); otherwise 403 `MissingProviderToken`.
//! - **Request checks** (in this order): path `/3/device/<token>` (404 `BadPath`), method
//!   POST (405), auth (403), `apns-topic` (400 `MissingTopic`), header sanity (`apns-id`,
//!   `apns-priority`, `apns-push-type`, `.voip` topic for VoIP, `apns-expiration`,
//!   `apns-collapse-id`), body (400 `PayloadEmpty`, 413 `PayloadTooLarge` over 4096 bytes or
//!   5120 for VoIP, 400 `BadPayload` for non-JSON — that last reason is the mock's own).
//! - **Replies:** a per-token script ([`MockApns::script`]) or, without one, the token's
//!   prefix: `dead…` 410 `Unregistered` (timestamp = now), `bad…` 400 `BadDeviceToken`,
//!   `unavailable…` 503 `ServiceUnavailable`, `slow…` 200 after
//!   [`ApnsMockConfig::slow_delay`], anything else 200.
//! - **Recording:** every request that reached HTTP, failed ones included
//!   ([`MockApns::received`], [`MockApns::wait_for`]); TCP connections are counted so tests
//!   can assert HTTP/2 connection reuse.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::mock_util::{Recorder, Scripts, json_response, now_ms, now_secs, system_time_ms};
use crate::pki::{TestPki, subject_cn};

/// Largest body the mock reads at all; beyond the APNs limits it answers 413 anyway.
const READ_LIMIT: usize = 64 * 1024;

/// An APNs token-auth key the mock accepts.
#[derive(Debug, Clone)]
pub struct TokenKey {
    /// Team id: the JWT `iss` must equal it.
    pub team_id: String,
    /// Key id: the JWT header `kid`.
    pub key_id: String,
    /// EC P-256 key PEM: the `.p8` private key (PKCS#8) or its `PUBLIC KEY`.
    pub key_pem: String,
}

/// Settings of a [`MockApns`].
#[derive(Debug, Clone)]
pub struct ApnsMockConfig {
    /// Server certificate chain PEM (valid for `localhost` / `127.0.0.1`).
    pub server_cert_pem: String,
    /// Server private key PEM.
    pub server_key_pem: String,
    /// CA that client certificates must chain to.
    pub client_ca_pem: String,
    /// Token-auth keys accepted in `authorization: bearer <jwt>`.
    pub token_keys: Vec<TokenKey>,
    /// Added to every response.
    pub latency: Duration,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` (hyper's default when `None`).
    pub max_concurrent_streams: Option<u32>,
    /// Delay of the `slow…` token prefix (2 s by default).
    pub slow_delay: Duration,
}

impl ApnsMockConfig {
    /// Server cert, client CA and the `.p8` token key of a [`TestPki`]; no latency.
    pub fn from_pki(pki: &TestPki) -> ApnsMockConfig {
        ApnsMockConfig {
            server_cert_pem: pki.server_cert_pem.clone(),
            server_key_pem: pki.server_key_pem.clone(),
            client_ca_pem: pki.ca_pem.clone(),
            token_keys: vec![TokenKey {
                team_id: pki.team_id.clone(),
                key_id: pki.key_id.clone(),
                key_pem: pki.p8_pem.clone(),
            }],
            latency: Duration::ZERO,
            max_concurrent_streams: None,
            slow_delay: Duration::from_secs(2),
        }
    }
}

/// A scripted APNs reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200 with an `apns-id`.
    Ok,
    /// An error status with `{"reason": …}` (plus `"timestamp"` when given).
    Status {
        /// HTTP status.
        status: u16,
        /// APNs `reason`.
        reason: String,
        /// `timestamp` (ms since the epoch) in the body, as on 410.
        timestamp_ms: Option<u64>,
        /// `Retry-After` header, in seconds.
        retry_after: Option<u64>,
    },
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// An error reply without timestamp or `Retry-After`.
    pub fn status(status: u16, reason: &str) -> Reply {
        Reply::Status {
            status,
            reason: reason.to_string(),
            timestamp_ms: None,
            retry_after: None,
        }
    }

    /// 410 `Unregistered` with `timestamp` = `timestamp_ms`.
    pub fn unregistered(timestamp_ms: u64) -> Reply {
        Reply::Status {
            status: 410,
            reason: "Unregistered".to_string(),
            timestamp_ms: Some(timestamp_ms),
            retry_after: None,
        }
    }

    /// 400 `BadDeviceToken`.
    pub fn bad_device_token() -> Reply {
        Reply::status(400, "BadDeviceToken")
    }

    /// 503 `ServiceUnavailable`.
    pub fn service_unavailable() -> Reply {
        Reply::status(503, "ServiceUnavailable")
    }

    /// 429 `TooManyRequests`.
    pub fn too_many_requests() -> Reply {
        Reply::status(429, "TooManyRequests")
    }

    /// This reply after `delay`.
    pub fn delayed(self, delay: Duration) -> Reply {
        Reply::Delay(delay, Box::new(self))
    }

    /// Total delay and the final (non-delay) reply.
    fn flatten(&self) -> (Duration, &Reply) {
        match self {
            Reply::Delay(d, inner) => {
                let (more, last) = inner.flatten();
                (*d + more, last)
            }
            other => (Duration::ZERO, other),
        }
    }
}

/// How a recorded request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApnsAuth {
    /// A verified TLS client certificate.
    ClientCert {
        /// Subject CN of the certificate.
        subject_cn: String,
    },
    /// A valid ES256 provider token.
    Token {
        /// JWT `iss`.
        team_id: String,
        /// JWT `kid`.
        key_id: String,
    },
    /// Neither (the request was refused with 403, or failed before the auth check).
    None,
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct ApnsReceived {
    /// Device token from the path (empty on `BadPath`).
    pub token: String,
    /// Request headers, lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body as JSON (a JSON string holding the raw text if it was not JSON; null if empty).
    pub body: Value,
    /// How the request was authenticated.
    pub auth: ApnsAuth,
    /// HTTP status the mock answered.
    pub status: u16,
    /// APNs `reason` of an error reply.
    pub reason: Option<String>,
    /// `apns-id` of the response.
    pub apns_id: String,
    /// When it arrived.
    pub at: SystemTime,
}

impl ApnsReceived {
    /// First value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// JSON form (used by the demo's `/_mock/received`).
    pub fn to_json(&self) -> Value {
        let auth = match &self.auth {
            ApnsAuth::ClientCert { subject_cn } => json!({"client_cert": subject_cn}),
            ApnsAuth::Token { team_id, key_id } => {
                json!({"token": {"team_id": team_id, "key_id": key_id}})
            }
            ApnsAuth::None => Value::Null,
        };
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "token": self.token,
            "headers": headers,
            "body": self.body,
            "auth": auth,
            "status": self.status,
            "reason": self.reason,
            "apns_id": self.apns_id,
            "at_ms": system_time_ms(self.at),
        })
    }
}

/// Shared state of one mock (also what [`ApnsRecorder`] holds).
#[derive(Debug)]
struct State {
    received: Recorder<ApnsReceived>,
    scripts: Scripts<Reply>,
    keys: RwLock<HashMap<String, (String, DecodingKey)>>,
    connections: AtomicUsize,
    latency: Duration,
    slow_delay: Duration,
}

/// A cloneable handle on a [`MockApns`]'s recorded requests (for an admin endpoint).
#[derive(Debug, Clone)]
pub struct ApnsRecorder(Arc<State>);

impl ApnsRecorder {
    /// Requests received so far.
    pub fn received(&self) -> Vec<ApnsReceived> {
        self.0.received.snapshot()
    }

    /// Forget the recorded requests.
    pub fn clear(&self) {
        self.0.received.clear();
    }
}

/// A running mock APNs server; stops when dropped.
#[derive(Debug)]
pub struct MockApns {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for MockApns {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

impl MockApns {
    /// Bind 127.0.0.1:0 and start serving. Needs a tokio runtime.
    pub async fn start(cfg: ApnsMockConfig) -> Result<MockApns> {
        MockApns::start_on(cfg, 0).await
    }

    /// Like [`MockApns::start`] on a given port (0 = any).
    pub async fn start_on(cfg: ApnsMockConfig, port: u16) -> Result<MockApns> {
        let tls = Arc::new(server_tls_config(&cfg)?);
        let state = Arc::new(State {
            received: Recorder::new(),
            scripts: Scripts::new(),
            keys: RwLock::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            latency: cfg.latency,
            slow_delay: cfg.slow_delay,
        });
        for key in &cfg.token_keys {
            add_key(&state, key)?;
        }
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("Failed to bind the APNs mock to 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            state.clone(),
            cfg.max_concurrent_streams,
        ));
        tracing::debug!(%addr, "mock APNs listening");
        Ok(MockApns { addr, state, task })
    }

    /// Address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:<port>` (the server certificate is valid for `localhost`).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Script the replies for `token`: consumed in order, the last one repeats. An empty
    /// list removes the script (prefix defaults apply again).
    pub fn script(&self, token: &str, replies: Vec<Reply>) {
        self.state.scripts.set(token, replies);
    }

    /// Remove every script.
    pub fn clear_scripts(&self) {
        self.state.scripts.clear();
    }

    /// Accept one more token-auth key.
    pub fn add_token_key(&self, key: &TokenKey) -> Result<()> {
        add_key(&self.state, key)
    }

    /// Requests received so far (failed ones included).
    pub fn received(&self) -> Vec<ApnsReceived> {
        self.state.received.snapshot()
    }

    /// Forget the recorded requests.
    pub fn clear(&self) {
        self.state.received.clear();
    }

    /// Wait until at least `n` requests are recorded, or `timeout`; returns the records.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ApnsReceived> {
        self.state.received.wait_for(n, timeout).await
    }

    /// TCP connections accepted so far (handshake failures included).
    pub fn connections_accepted(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// A handle on the recorded requests that outlives borrows of `self`.
    pub fn recorder(&self) -> ApnsRecorder {
        ApnsRecorder(self.state.clone())
    }
}

fn add_key(state: &State, key: &TokenKey) -> Result<()> {
    let public_pem = if key.key_pem.contains("PRIVATE KEY") {
        rcgen::KeyPair::from_pem(&key.key_pem)
            .context("Failed to read the token key (expected a PKCS#8 EC P-256 .p8)")?
            .public_key_pem()
    } else {
        key.key_pem.clone()
    };
    let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes())
        .context("Failed to read the token key's public key")?;
    state
        .keys
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.key_id.clone(), (key.team_id.clone(), decoding));
    Ok(())
}

fn server_tls_config(cfg: &ApnsMockConfig) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cfg.client_ca_pem.as_bytes()) {
        roots.add(cert.context("Failed to parse the client CA PEM")?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| anyhow!("Failed to build the client verifier: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(cfg.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("Failed to parse the server certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(cfg.server_key_pem.as_bytes())
        .context("Failed to parse the server key PEM")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    // APNs speaks HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    max_streams: Option<u32>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    state.connections.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "mock APNs: connection accepted");
                    conns.spawn(serve_connection(tcp, acceptor.clone(), state.clone(), max_streams));
                }
                Err(error) => {
                    tracing::warn!(%error, "mock APNs: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    max_streams: Option<u32>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(error) => {
            tracing::debug!(%error, "mock APNs: TLS handshake failed");
            return;
        }
    };
    // The verifier already checked the chain; remember who the client is.
    let client_cn: Option<Arc<str>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| subject_cn(cert).unwrap_or_default().into());
    let service = service_fn(move |req| {
        let state = state.clone();
        let client_cn = client_cn.clone();
        async move { Ok::<_, Infallible>(handle(&state, client_cn.as_deref(), req).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(n) = max_streams {
        builder.max_concurrent_streams(n);
    }
    if let Err(error) = builder.serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!(%error, "mock APNs: connection ended with an error");
    }
}

async fn handle(
    state: &State,
    client_cn: Option<&str>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let at = SystemTime::now();
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let apns_id = match header("apns-id") {
        Some(id) => id.to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let body = Limited::new(body, READ_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let token = parts
        .uri
        .path()
        .strip_prefix("/3/device/")
        .unwrap_or_default()
        .to_string();

    let mut auth = ApnsAuth::None;
    let reply = check_request(
        state,
        client_cn,
        &parts.method,
        &token,
        &header,
        &body,
        &mut auth,
    );
    let reply = match reply {
        Some(reply) => reply,
        None => state
            .scripts
            .next(&token)
            .unwrap_or_else(|| default_reply(&token, state.slow_delay)),
    };
    let (delay, last) = reply.flatten();
    let (status, reason, timestamp, retry_after) = match last {
        Reply::Status {
            status,
            reason,
            timestamp_ms,
            retry_after,
        } => (*status, Some(reason.clone()), *timestamp_ms, *retry_after),
        _ => (200, None, None, None),
    };
    let body_json = match &body {
        Ok(b) if b.is_empty() => Value::Null,
        Ok(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
        Err(_) => Value::Null,
    };
    tracing::debug!(%token, status, ?reason, "mock APNs: request");
    state.received.push(ApnsReceived {
        token,
        headers: headers.clone(),
        body: body_json,
        auth,
        status,
        reason: reason.clone(),
        apns_id: apns_id.clone(),
        at,
    });

    let wait = delay + state.latency;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let mut resp = match reason {
        None => crate::mock_util::response(200, None, Bytes::new()),
        Some(reason) => {
            let mut body = json!({ "reason": reason });
            if let Some(ts) = timestamp {
                body["timestamp"] = json!(ts);
            }
            json_response(status, &body)
        }
    };
    if let Ok(value) = apns_id.parse() {
        resp.headers_mut().insert("apns-id", value);
    }
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, secs.into());
    }
    resp
}

/// Everything Apple checks before delivering; `Some(error reply)` when a check fails.
fn check_request<'h>(
    state: &State,
    client_cn: Option<&str>,
    method: &Method,
    token: &str,
    header: &impl Fn(&str) -> Option<&'h str>,
    body: &Result<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    auth: &mut ApnsAuth,
) -> Option<Reply> {
    if token.is_empty() || token.contains('/') {
        return Some(Reply::status(404, "BadPath"));
    }
    if method != Method::POST {
        return Some(Reply::status(405, "MethodNotAllowed"));
    }
    match authenticate(state, client_cn, header("authorization")) {
        Ok(a) => *auth = a,
        Err(reason) => return Some(Reply::status(403, reason)),
    }
    let Some(topic) = header("apns-topic") else {
        return Some(Reply::status(400, "MissingTopic"));
    };
    if let Some(id) = header("apns-id")
        && uuid::Uuid::try_parse(id).is_err()
    {
        return Some(Reply::status(400, "BadMessageId"));
    }
    if let Some(p) = header("apns-priority")
        && !matches!(p, "1" | "5" | "10")
    {
        return Some(Reply::status(400, "BadPriority"));
    }
    if let Some(e) = header("apns-expiration")
        && e.parse::<u64>().is_err()
    {
        return Some(Reply::status(400, "BadExpirationDate"));
    }
    if header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Some(Reply::status(400, "BadCollapseId"));
    }
    let push_type = header("apns-push-type");
    if let Some(t) = push_type {
        const TYPES: [&str; 9] = [
            "alert",
            "background",
            "voip",
            "location",
            "complication",
            "fileprovider",
            "mdm",
            "liveactivity",
            "pushtotalk",
        ];
        if !TYPES.contains(&t) || (t == "voip" && !topic.ends_with(".voip")) {
            return Some(Reply::status(400, "InvalidPushType"));
        }
    }
    let limit = if push_type == Some("voip") {
        5120
    } else {
        4096
    };
    let Ok(body) = body else {
        return Some(Reply::status(413, "PayloadTooLarge"));
    };
    if body.is_empty() {
        return Some(Reply::status(400, "PayloadEmpty"));
    }
    if body.len() > limit {
        return Some(Reply::status(413, "PayloadTooLarge"));
    }
    if serde_json::from_slice::<Value>(body).is_err() {
        return Some(Reply::status(400, "BadPayload"));
    }
    None
}

/// A verified client certificate wins; otherwise a valid provider token is required.
fn authenticate(
    state: &State,
    client_cn: Option<&str>,
    authorization: Option<&str>,
) -> Result<ApnsAuth, &'static str> {
    if let Some(cn) = client_cn {
        return Ok(ApnsAuth::ClientCert {
            subject_cn: cn.to_string(),
        });
    }
    let Some(value) = authorization else {
        return Err("MissingProviderToken");
    };
    let jwt = match value.split_once(' ') {
        Some((scheme, jwt)) if scheme.eq_ignore_ascii_case("bearer") => jwt.trim(),
        _ => return Err("MissingProviderToken"),
    };
    verify_provider_token(state, jwt, now_secs())
}

fn verify_provider_token(state: &State, jwt: &str, now: i64) -> Result<ApnsAuth, &'static str> {
    const INVALID: &str = "InvalidProviderToken";
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| INVALID)?;
    if header.alg != Algorithm::ES256 {
        return Err(INVALID);
    }
    let kid = header.kid.ok_or(INVALID)?;
    let keys = state.keys.read().unwrap_or_else(PoisonError::into_inner);
    let (team_id, key) = keys.get(&kid).ok_or(INVALID)?;
    let mut validation = Validation::new(Algorithm::ES256);
    // APNs tokens carry only iss and iat.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(jwt, key, &validation).map_err(|_| INVALID)?;
    if data.claims.get("iss").and_then(Value::as_str) != Some(team_id.as_str()) {
        return Err(INVALID);
    }
    let iat = data
        .claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(INVALID)?;
    if iat > now + 60 {
        return Err(INVALID);
    }
    if now - iat > 3600 {
        return Err("ExpiredProviderToken");
    }
    Ok(ApnsAuth::Token {
        team_id: team_id.clone(),
        key_id: kid,
    })
}

/// Replies chosen by the token's prefix when no script is set.
fn default_reply(token: &str, slow_delay: Duration) -> Reply {
    if token.starts_with("dead") {
        Reply::unregistered(now_ms())
    } else if token.starts_with("bad") {
        Reply::bad_device_token()
    } else if token.starts_with("unavailable") {
        Reply::service_unavailable()
    } else if token.starts_with("slow") {
        Reply::Ok.delayed(slow_delay)
    } else {
        Reply::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_adds_nested_delays() {
        let r = Reply::bad_device_token()
            .delayed(Duration::from_millis(5))
            .delayed(Duration::from_millis(7));
        let (d, last) = r.flatten();
        assert_eq!(d, Duration::from_millis(12));
        assert_eq!(last, &Reply::bad_device_token());
    }

    #[test]
    fn prefixes_pick_the_documented_replies() {
        let slow = Duration::from_millis(3);
        assert!(matches!(
            default_reply("dead01", slow),
            Reply::Status { status: 410, .. }
        ));
        assert_eq!(default_reply("bad01", slow), Reply::bad_device_token());
        assert_eq!(
            default_reply("unavailable", slow),
            Reply::service_unavailable()
        );
        assert_eq!(default_reply("slow1", slow), Reply::Ok.delayed(slow));
        assert_eq!(default_reply("abcdef", slow), Reply::Ok);
    }
}

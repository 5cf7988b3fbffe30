//! Mock FCM HTTP v1 plus the Google OAuth2 token endpoint at 127.0.0.1: plain HTTP
//! (HTTP/1.1 and h2c) by default, or HTTPS (HTTP/1.1 and h2 by ALPN) on the same port when
//! [`FcmMockConfig::tls`] holds a server identity.
//!
//! Parts: this module runs the server and routes; `oauth` is the token endpoint, `send`
//! the FCM endpoint, `validate` its message checks, `admin` the `/_mock` endpoints, `replies` what it answers.
//!
//! - **`POST /token`** (form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&
//!   assertion=<jwt>`): the assertion must be RS256, signed by a registered service
//!   account ([`MockFcm::add_service_account`]) with `kid` (when present) = its
//!   `private_key_id`,
//!   `iss` = its `client_email`, `aud` = [`MockFcm::token_uri`], a `scope` containing
//!   `…/auth/firebase.messaging` (or `…/auth/cloud-platform`), not expired and
//!   `exp - iat ≤ 3600`. Success gives a fresh random access token; failures give 400
//!   `invalid_grant` (`invalid_scope` for a scope problem, `unsupported_grant_type`,
//!   `invalid_request`) like Google.
//! - **`POST /v1/projects/<p>/messages:send`**: the bearer token must be one the mock issued,
//!   unrevoked ([`MockFcm::revoke_all_tokens`]) and unexpired, else 401 `UNAUTHENTICATED`;
//!   its account must belong to `<p>`, else 403 `PERMISSION_DENIED`/`SENDER_ID_MISMATCH`.
//!   The body must be `{"message": {...}}` with exactly one of `token`/`topic`/`condition`,
//!   and `data` / `android.data` maps of strings only (else 400 `INVALID_ARGUMENT`,
//!   `Invalid value at 'message.data[0].value' (TYPE_STRING)` with a `google.rpc.BadRequest`
//!   detail, as Google answers); reserved data keys, a bad `android.priority` or
//!   `android.ttl` and data over 4096 bytes are refused too. Then a per-token script
//!   ([`MockFcm::script`]) or the token prefix decides: `dead…` 404 `UNREGISTERED`,
//!   `bad…` 400 `INVALID_ARGUMENT` ("not a valid FCM registration token"), `unavailable…`
//!   503 `UNAVAILABLE`, `slow…` 200 after [`FcmMockConfig::slow_delay`], else 200
//!   `{"name": "projects/<p>/messages/<id>"}`.
//! - **Admin** (for `make demo`): `GET /_mock/received` → `{"apns": [...], "fcm": [...]}`
//!   (APNs part from [`FcmMockConfig::apns`] when the two mocks share a process),
//!   `POST /_mock/clear`, `POST /_mock/revoke`.
//! - **Hostile providers** (issue #12): `token_latency` of [`Duration::MAX`] makes the
//!   token endpoint accept and never answer; a script of `FcmReply::delayed` answers late.
//!   [`MockFcm::script_token_endpoint`] scripts the token endpoint itself ([`TokenReply`]:
//!   refuse with an OAuth error, fail with a 5xx, hang, then recover), and
//!   [`MockFcm::remove_service_account`] deletes an account (its key is then refused
//!   with `invalid_grant`, as Google refuses a revoked or deleted key).
//!   Either way only that request waits: each connection, and each h2 stream, is served
//!   by its own task. [`MockFcm::requests_by_path`] and [`MockFcm::unanswered`] count
//!   the requests still waiting.

mod admin;
mod oauth;
mod replies;
mod send;
mod validate;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Result;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

pub use oauth::TokenReply;
pub use replies::{FcmReceived, FcmReply};

use crate::apns_mock::ApnsRecorder;
use crate::mock_util::serve::{self, Listening};
use crate::mock_util::{Recorder, Scripts, Tally, lock};
use crate::pki::TestPki;
use oauth::{Account, Issued, scripted_token_endpoint, token_endpoint};
use replies::google_error;
use send::send;

/// Key of the token endpoint's script in [`Scripts`].
const TOKEN_SCRIPT: &str = "/token";
/// Largest request body the mock reads.
const READ_LIMIT: usize = 256 * 1024;
/// `@type` of the FCM error detail.
pub const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
/// `@type` of the field-violation detail.
pub const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
/// The OAuth scope FCM needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The broad scope that also allows FCM.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The JWT-bearer grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Settings of a [`MockFcm`].
#[derive(Debug, Clone)]
pub struct FcmMockConfig {
    /// Added to every send response.
    pub latency: Duration,
    /// Added to every token response (to make concurrent cold callers overlap).
    pub token_latency: Duration,
    /// Delay of the `slow…` token prefix (2 s by default).
    pub slow_delay: Duration,
    /// Lifetime of issued access tokens (`expires_in`); 3599 s by default.
    pub token_lifetime: Duration,
    /// The APNs mock's recorder, to include in `GET /_mock/received`.
    pub apns: Option<ApnsRecorder>,
    /// Serve HTTPS with this identity instead of plain HTTP (`None`, the default).
    pub tls: Option<ServerIdentity>,
}

/// A TLS server identity: certificate chain and private key, PEM.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// Leaf certificate first, then any intermediates.
    pub cert_chain_pem: String,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
}

impl ServerIdentity {
    /// The [`TestPki`] server certificate (`localhost`, `127.0.0.1`, `::1`): the one the
    /// APNs mock serves, chaining to [`TestPki::ca_pem`].
    pub fn from_pki(pki: &TestPki) -> ServerIdentity {
        ServerIdentity {
            cert_chain_pem: pki.server_cert_pem.clone(),
            key_pem: pki.server_key_pem.clone(),
        }
    }
}

impl Default for FcmMockConfig {
    fn default() -> Self {
        FcmMockConfig {
            latency: Duration::ZERO,
            token_latency: Duration::ZERO,
            slow_delay: Duration::from_secs(2),
            token_lifetime: Duration::from_secs(3599),
            apns: None,
            tls: None,
        }
    }
}

#[derive(Debug)]
struct State {
    base_url: String,
    cfg: FcmMockConfig,
    accounts: RwLock<HashMap<String, Account>>,
    tokens: Mutex<HashMap<String, Issued>>,
    token_requests: AtomicUsize,
    tally: Tally,
    received: Recorder<FcmReceived>,
    scripts: Scripts<FcmReply>,
    token_script: Scripts<TokenReply>,
}

impl State {
    fn token_uri(&self) -> String {
        format!("{}/token", self.base_url)
    }
}

/// A running mock FCM + OAuth server; stops when dropped.
#[derive(Debug)]
pub struct MockFcm {
    listening: Listening,
    state: Arc<State>,
}

impl MockFcm {
    /// Bind 127.0.0.1:0 and start serving. Needs a tokio runtime.
    pub async fn start(cfg: FcmMockConfig) -> Result<MockFcm> {
        MockFcm::start_on(cfg, 0).await
    }

    /// Like [`MockFcm::start`] on a given port (0 = any).
    pub async fn start_on(cfg: FcmMockConfig, port: u16) -> Result<MockFcm> {
        let acceptor = cfg.tls.as_ref().map(tls_acceptor).transpose()?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let bound = serve::bind("FCM", port).await?;
        let state = Arc::new(State {
            base_url: format!("{scheme}://127.0.0.1:{}", bound.addr().port()),
            cfg,
            accounts: RwLock::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_requests: AtomicUsize::new(0),
            tally: Tally::default(),
            received: Recorder::new(),
            scripts: Scripts::new(),
            token_script: Scripts::new(),
        });
        let served = state.clone();
        let listening =
            bound.serve(move |tcp| serve_connection(tcp, acceptor.clone(), served.clone()));
        Ok(MockFcm { listening, state })
    }

    /// Address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// `http://127.0.0.1:<port>` (`https://…` with [`FcmMockConfig::tls`]) — the FCM base
    /// URL (`/v1/projects/...` follows).
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    /// `<base>/token` — put this in the service account's `token_uri`.
    pub fn token_uri(&self) -> String {
        self.state.token_uri()
    }

    /// Register a service account (its JSON): its `client_email` may then get tokens for
    /// its `project_id`. The public key is derived from `private_key`.
    pub fn add_service_account(&self, sa: &Value) -> Result<()> {
        let (client_email, account) = Account::from_service_account(sa)?;
        self.state
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(client_email, account);
        Ok(())
    }

    /// Delete a registered account (by `client_email`): its assertions are refused from
    /// now on with 400 `invalid_grant`, and the tokens it holds stop working. Returns
    /// whether it was registered.
    pub fn remove_service_account(&self, client_email: &str) -> bool {
        let removed = self
            .state
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(client_email)
            .is_some();
        lock(&self.state.tokens).retain(|_, issued| issued.client_email != client_email);
        removed
    }

    /// Script the token endpoint: each `POST /token` takes the next reply, the last one
    /// repeats; an empty list restores the normal behaviour. Applies after
    /// [`FcmMockConfig::token_latency`].
    pub fn script_token_endpoint(&self, replies: Vec<TokenReply>) {
        self.state.token_script.set(TOKEN_SCRIPT, replies);
    }

    /// Requests so far per path (`/token`, `/v1/projects/<p>/messages:send`, …), counted
    /// on arrival: unanswered ones included.
    pub fn requests_by_path(&self) -> HashMap<String, usize> {
        self.state.tally.by_path()
    }

    /// Send requests so far for a registration token, those still waiting for a delayed
    /// reply included.
    pub fn requests_for_token(&self, token: &str) -> usize {
        self.state.received.count(|r| r.token == token)
    }

    /// Requests received and not answered yet (a hung token endpoint, a delayed reply).
    pub fn unanswered(&self) -> usize {
        self.state.tally.unanswered()
    }

    /// Number of `POST /token` requests so far (refused ones included).
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::Relaxed)
    }

    /// Number of access tokens currently valid.
    pub fn live_tokens(&self) -> usize {
        lock(&self.state.tokens).len()
    }

    /// The access tokens currently valid (so a test can prove they never reach a log).
    pub fn live_token_values(&self) -> Vec<String> {
        lock(&self.state.tokens).keys().cloned().collect()
    }

    /// Revoke every issued access token: later sends with them get 401 `UNAUTHENTICATED`.
    pub fn revoke_all_tokens(&self) {
        lock(&self.state.tokens).clear();
    }

    /// Script the replies for a registration token: consumed in order, the last repeats.
    /// An empty list removes the script.
    pub fn script(&self, token: &str, replies: Vec<FcmReply>) {
        self.state.scripts.set(token, replies);
    }

    /// Remove every script.
    pub fn clear_scripts(&self) {
        self.state.scripts.clear();
    }

    /// Send requests received so far (failed ones included).
    pub fn received(&self) -> Vec<FcmReceived> {
        self.state.received.snapshot()
    }

    /// Forget the recorded requests.
    pub fn clear(&self) {
        self.state.received.clear();
    }

    /// Wait until at least `n` sends are recorded, or `timeout`; returns the records.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<FcmReceived> {
        self.state.received.wait_for(n, timeout).await
    }
}

fn tls_acceptor(identity: &ServerIdentity) -> Result<TlsAcceptor> {
    let (certs, key) = serve::server_identity(&identity.cert_chain_pem, &identity.key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(serve::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // Google serves both; the hyper-util auto builder below then speaks whichever.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve_connection(tcp: TcpStream, acceptor: Option<TlsAcceptor>, state: Arc<State>) {
    match acceptor {
        None => serve_http(tcp, state).await,
        Some(acceptor) => {
            if let Some(tls) = serve::tls_handshake("FCM", &acceptor, tcp).await {
                serve_http(tls, state).await;
            }
        }
    }
}

/// HTTP/1.1 or HTTP/2 (by preface) on a plain or TLS stream.
async fn serve_http<IO>(io: IO, state: Arc<State>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(error) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(%error, "mock FCM: connection ended with an error");
    }
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let _unanswered = state.tally.arrive(&path);
    let body = match Limited::new(body, READ_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return google_error(
                413,
                "INVALID_ARGUMENT",
                None,
                "Request payload too large.",
                vec![],
            );
        }
    };
    let send_project = path
        .strip_prefix("/v1/projects/")
        .and_then(|rest| rest.strip_suffix("/messages:send"))
        .filter(|p| !p.is_empty() && !p.contains('/'));
    match (&parts.method, path.as_str(), send_project) {
        (&Method::POST, "/token", _) => {
            state.token_requests.fetch_add(1, Ordering::Relaxed);
            if !state.cfg.token_latency.is_zero() {
                tokio::time::sleep(state.cfg.token_latency).await;
            }
            match state.token_script.next(TOKEN_SCRIPT) {
                Some(reply) => scripted_token_endpoint(state, &body, reply).await,
                None => token_endpoint(state, &body),
            }
        }
        (&Method::POST, _, Some(project)) => {
            let authorization = parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            send(state, project, authorization, &body).await
        }
        (method, _, _) if path.starts_with("/_mock/") => {
            admin::route(state, method, &path).unwrap_or_else(|| not_found(method, &path))
        }
        _ => not_found(&parts.method, &path),
    }
}

fn not_found(method: &Method, path: &str) -> Response<Full<Bytes>> {
    google_error(
        404,
        "NOT_FOUND",
        None,
        &format!("No route for {method} {path}"),
        vec![],
    )
}

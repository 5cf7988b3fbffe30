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

//! - **Hostile provider** (issue #12): a script of `Reply::delayed` answers late; only
//!   that stream waits (hyper serves each HTTP/2 stream in its own task).
//!   [`MockApns::requests_by_path`] and [`MockApns::unanswered`] count the requests
//!   still waiting.
//!
//! Parts: this module runs the server and handles a request; `request` answers one request,
//! `auth` checks who sends, `validate` the request, `replies` holds what it answers and records.

mod auth;
mod replies;
mod request;
mod validate;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Result;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::DecodingKey;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

pub use replies::{ApnsAuth, ApnsReceived, Reply};

use crate::mock_util::serve::{self, Listening};
use crate::mock_util::{Recorder, Scripts, Tally};
use crate::pki::{TestPki, subject_cn};
use auth::{add_key, server_tls_config};
use request::handle;

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

/// Shared state of one mock (also what [`ApnsRecorder`] holds).
#[derive(Debug)]
struct State {
    received: Recorder<ApnsReceived>,
    scripts: Scripts<Reply>,
    keys: RwLock<HashMap<String, (String, DecodingKey)>>,
    connections: AtomicUsize,
    tally: Tally,
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
    listening: Listening,
    state: Arc<State>,
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
            tally: Tally::default(),
            latency: cfg.latency,
            slow_delay: cfg.slow_delay,
        });
        for key in &cfg.token_keys {
            add_key(&state, key)?;
        }
        let acceptor = TlsAcceptor::from(tls);
        let max_streams = cfg.max_concurrent_streams;
        let served = state.clone();
        let listening = serve::bind("APNs", port).await?.serve(move |tcp| {
            served.connections.fetch_add(1, Ordering::Relaxed);
            serve_connection(tcp, acceptor.clone(), served.clone(), max_streams)
        });
        Ok(MockApns { listening, state })
    }

    /// Address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// `https://localhost:<port>` (the server certificate is valid for `localhost`).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr().port())
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

    /// Requests so far per path (`/3/device/<token>`), counted on arrival: unanswered
    /// ones (a delayed reply) included.
    pub fn requests_by_path(&self) -> HashMap<String, usize> {
        self.state.tally.by_path()
    }

    /// Requests so far for a device token, those still waiting for a delayed reply
    /// included.
    pub fn requests_for_token(&self, token: &str) -> usize {
        self.state.received.count(|r| r.token == token)
    }

    /// Requests received and not answered yet.
    pub fn unanswered(&self) -> usize {
        self.state.tally.unanswered()
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

async fn serve_connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    max_streams: Option<u32>,
) {
    let Some(tls) = serve::tls_handshake("APNs", &acceptor, tcp).await else {
        return;
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

//! Mock FCM HTTP v1 plus the Google OAuth2 token endpoint, on plain HTTP (HTTP/1.1 and
//! h2c) at 127.0.0.1.
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

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use jsonwebtoken::{Algorithm, DecodingKey};
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::apns_mock::ApnsRecorder;
use crate::mock_util::{Recorder, Scripts, json_response, lock, now_secs, system_time_ms};

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
}

impl Default for FcmMockConfig {
    fn default() -> Self {
        FcmMockConfig {
            latency: Duration::ZERO,
            token_latency: Duration::ZERO,
            slow_delay: Duration::from_secs(2),
            token_lifetime: Duration::from_secs(3599),
            apns: None,
        }
    }
}

/// A scripted FCM send reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FcmReply {
    /// 200 `{"name": "projects/<p>/messages/<id>"}`.
    Ok,
    /// A Google error body.
    Error {
        /// HTTP status.
        http: u16,
        /// Canonical status (`error.status`), e.g. `NOT_FOUND`.
        status: String,
        /// FCM code (`error.details[].errorCode`), e.g. `UNREGISTERED`.
        error_code: Option<String>,
        /// `error.message`.
        message: String,
        /// `Retry-After` header, in seconds.
        retry_after: Option<u64>,
    },
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<FcmReply>),
}

impl FcmReply {
    /// An error reply without `Retry-After`.
    pub fn error(http: u16, status: &str, error_code: Option<&str>, message: &str) -> FcmReply {
        FcmReply::Error {
            http,
            status: status.to_string(),
            error_code: error_code.map(str::to_string),
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// 404 `NOT_FOUND` / `UNREGISTERED`.
    pub fn unregistered() -> FcmReply {
        FcmReply::error(
            404,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        )
    }

    /// 400 `INVALID_ARGUMENT`: the registration token is malformed.
    pub fn invalid_registration() -> FcmReply {
        FcmReply::error(
            400,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The registration token is not a valid FCM registration token",
        )
    }

    /// 403 `PERMISSION_DENIED` / `SENDER_ID_MISMATCH`.
    pub fn sender_id_mismatch() -> FcmReply {
        FcmReply::error(
            403,
            "PERMISSION_DENIED",
            Some("SENDER_ID_MISMATCH"),
            "SenderId mismatch",
        )
    }

    /// 503 `UNAVAILABLE`.
    pub fn unavailable() -> FcmReply {
        FcmReply::error(
            503,
            "UNAVAILABLE",
            Some("UNAVAILABLE"),
            "The service is currently unavailable.",
        )
    }

    /// 500 `INTERNAL`.
    pub fn internal() -> FcmReply {
        FcmReply::error(
            500,
            "INTERNAL",
            Some("INTERNAL"),
            "Internal error encountered.",
        )
    }

    /// 429 `RESOURCE_EXHAUSTED` / `QUOTA_EXCEEDED`.
    pub fn quota_exceeded() -> FcmReply {
        FcmReply::error(
            429,
            "RESOURCE_EXHAUSTED",
            Some("QUOTA_EXCEEDED"),
            "Quota exceeded for quota metric 'Messages' and limit 'Messages per minute'.",
        )
    }

    /// The same reply with a `Retry-After` (seconds); no effect on `Ok`.
    pub fn with_retry_after(self, secs: u64) -> FcmReply {
        match self {
            FcmReply::Error {
                http,
                status,
                error_code,
                message,
                ..
            } => FcmReply::Error {
                http,
                status,
                error_code,
                message,
                retry_after: Some(secs),
            },
            FcmReply::Delay(d, inner) => FcmReply::Delay(d, Box::new(inner.with_retry_after(secs))),
            FcmReply::Ok => FcmReply::Ok,
        }
    }

    /// This reply after `delay`.
    pub fn delayed(self, delay: Duration) -> FcmReply {
        FcmReply::Delay(delay, Box::new(self))
    }

    fn flatten(&self) -> (Duration, &FcmReply) {
        match self {
            FcmReply::Delay(d, inner) => {
                let (more, last) = inner.flatten();
                (*d + more, last)
            }
            other => (Duration::ZERO, other),
        }
    }
}

/// One send request the mock received.
#[derive(Debug, Clone)]
pub struct FcmReceived {
    /// Project from the URL.
    pub project: String,
    /// `message.token` (empty when absent, e.g. topic messages or unparsable bodies).
    pub token: String,
    /// The whole `message` object (null when the body had none).
    pub message: Value,
    /// `validate_only` from the body.
    pub validate_only: bool,
    /// `client_email` of the account whose access token was used, if it was valid.
    pub client_email: Option<String>,
    /// HTTP status the mock answered.
    pub status: u16,
    /// Canonical error status (`error.status`) of an error reply.
    pub error_status: Option<String>,
    /// FCM error code (`details[].errorCode`) of an error reply.
    pub error_code: Option<String>,
    /// When it arrived.
    pub at: SystemTime,
}

impl FcmReceived {
    /// JSON form (used by `/_mock/received`).
    pub fn to_json(&self) -> Value {
        json!({
            "project": self.project,
            "token": self.token,
            "message": self.message,
            "validate_only": self.validate_only,
            "client_email": self.client_email,
            "status": self.status,
            "error_status": self.error_status,
            "error_code": self.error_code,
            "at_ms": system_time_ms(self.at),
        })
    }
}

#[derive(Debug)]
struct Account {
    project_id: String,
    private_key_id: String,
    key: DecodingKey,
}

#[derive(Debug, Clone)]
struct Issued {
    client_email: String,
    project_id: String,
    expires_at: Instant,
}

#[derive(Debug)]
struct State {
    base_url: String,
    cfg: FcmMockConfig,
    accounts: RwLock<HashMap<String, Account>>,
    tokens: Mutex<HashMap<String, Issued>>,
    token_requests: AtomicUsize,
    received: Recorder<FcmReceived>,
    scripts: Scripts<FcmReply>,
}

impl State {
    fn token_uri(&self) -> String {
        format!("{}/token", self.base_url)
    }
}

/// A running mock FCM + OAuth server; stops when dropped.
#[derive(Debug)]
pub struct MockFcm {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for MockFcm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockFcm {
    /// Bind 127.0.0.1:0 and start serving. Needs a tokio runtime.
    pub async fn start(cfg: FcmMockConfig) -> Result<MockFcm> {
        MockFcm::start_on(cfg, 0).await
    }

    /// Like [`MockFcm::start`] on a given port (0 = any).
    pub async fn start_on(cfg: FcmMockConfig, port: u16) -> Result<MockFcm> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("Failed to bind the FCM mock to 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            base_url: format!("http://127.0.0.1:{}", addr.port()),
            cfg,
            accounts: RwLock::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_requests: AtomicUsize::new(0),
            received: Recorder::new(),
            scripts: Scripts::new(),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        tracing::debug!(%addr, "mock FCM listening");
        Ok(MockFcm { addr, state, task })
    }

    /// Address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` — the FCM base URL (`/v1/projects/...` follows).
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
        let field = |name: &str| -> Result<String> {
            match sa.get(name).and_then(Value::as_str) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => bail!("service account JSON has no {name}"),
            }
        };
        let private_pem = field("private_key")?;
        let public_pem = rcgen::KeyPair::from_pem(&private_pem)
            .context("Failed to read the service account's private_key (PKCS#8 RSA expected)")?
            .public_key_pem();
        let key = DecodingKey::from_rsa_pem(public_pem.as_bytes())
            .context("Failed to derive the service account's public key")?;
        let account = Account {
            project_id: field("project_id")?,
            private_key_id: field("private_key_id")?,
            key,
        };
        self.state
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(field("client_email")?, account);
        Ok(())
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

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    conns.spawn(serve_connection(tcp, state.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "mock FCM: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection(tcp: TcpStream, state: Arc<State>) {
    let _ = tcp.set_nodelay(true);
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(error) = builder.serve_connection(TokioIo::new(tcp), service).await {
        tracing::debug!(%error, "mock FCM: connection ended with an error");
    }
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
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
            token_endpoint(state, &body)
        }
        (&Method::POST, _, Some(project)) => {
            let authorization = parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            send(state, project, authorization, &body).await
        }
        (&Method::GET, "/_mock/received", _) => {
            let apns: Vec<Value> = match &state.cfg.apns {
                Some(rec) => rec.received().iter().map(|r| r.to_json()).collect(),
                None => vec![],
            };
            let fcm: Vec<Value> = state
                .received
                .snapshot()
                .iter()
                .map(FcmReceived::to_json)
                .collect();
            json_response(200, &json!({ "apns": apns, "fcm": fcm }))
        }
        (&Method::POST, "/_mock/clear", _) => {
            state.received.clear();
            if let Some(rec) = &state.cfg.apns {
                rec.clear();
            }
            json_response(200, &json!({}))
        }
        (&Method::POST, "/_mock/revoke", _) => {
            lock(&state.tokens).clear();
            json_response(200, &json!({}))
        }
        _ => google_error(
            404,
            "NOT_FOUND",
            None,
            &format!("No route for {} {path}", parts.method),
            vec![],
        ),
    }
}

// ---------------------------------------------------------------------------------------
// OAuth2 token endpoint

fn token_endpoint(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let form = parse_form(body);
    let oauth_error = |error: &str, description: &str| {
        tracing::debug!(error, description, "mock FCM: token request refused");
        json_response(
            400,
            &json!({ "error": error, "error_description": description }),
        )
    };
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER_GRANT) => {}
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            );
        }
        None => return oauth_error("invalid_request", "Missing required parameter: grant_type"),
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let client_email = match verify_assertion(state, assertion, now_secs()) {
        Ok(email) => email,
        Err((error, description)) => return oauth_error(error, description),
    };
    let project_id = state
        .accounts
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&client_email)
        .map(|a| a.project_id.clone())
        .unwrap_or_default();
    let access_token = format!("ya29.mock-{}", random_alnum(64));
    let lifetime = state.cfg.token_lifetime;
    lock(&state.tokens).insert(
        access_token.clone(),
        Issued {
            client_email,
            project_id,
            expires_at: Instant::now() + lifetime,
        },
    );
    json_response(
        200,
        &json!({
            "access_token": access_token,
            "expires_in": lifetime.as_secs(),
            "token_type": "Bearer",
        }),
    )
}

type OAuthError = (&'static str, &'static str);

const BAD_SIGNATURE: OAuthError = ("invalid_grant", "Invalid JWT Signature.");
const BAD_TIME: OAuthError = (
    "invalid_grant",
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
     Check your iat and exp values in the JWT claim.",
);

/// A JWS split into its parts, decoded leniently.
#[derive(Debug)]
struct Jws<'a> {
    header: Value,
    claims: Value,
    /// `base64(header) "." base64(claims)` exactly as received: the signing input.
    signing_input: &'a str,
    /// The signature part without `=` padding.
    signature: &'a str,
}

/// Split and decode a compact JWS. Base64url padding is tolerated, as Google does:
/// yup-oauth2 pads its segments (`URL_SAFE`), which a strict JWT decoder would refuse.
fn split_jws(jwt: &str) -> Option<Jws<'_>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let (signing_input, signature) = jwt.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    let part = |b64: &str| -> Option<Value> {
        let bytes = LENIENT.decode(b64).ok()?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
    };
    Some(Jws {
        header: part(header)?,
        claims: part(claims)?,
        signing_input,
        signature: signature.trim_end_matches('='),
    })
}

/// Checks a JWT-bearer assertion; returns the account's `client_email`.
///
/// Like Google: RS256 only; `kid`, when present, must be the account's `private_key_id`
/// (yup-oauth2 sends none, and Google then tries the account's keys); `iss` a registered
/// account; `aud` the token URI; `iat`/`exp` present, `exp - iat ≤ 3600`, not expired
/// (60 s leeway), `iat` not more than 60 s ahead; a `scope` allowing FCM.
fn verify_assertion(state: &State, jwt: &str, now: i64) -> Result<String, OAuthError> {
    const MALFORMED: OAuthError = ("invalid_grant", "Invalid JWT.");
    let jws = split_jws(jwt).ok_or(MALFORMED)?;
    if jws.header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err((
            "invalid_grant",
            "Invalid JWT: unsupported signing algorithm (RS256 expected).",
        ));
    }
    let Some(iss) = jws.claims.get("iss").and_then(Value::as_str) else {
        return Err(("invalid_grant", "Invalid JWT: No issuer."));
    };
    let accounts = state
        .accounts
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let account = accounts
        .get(iss)
        .ok_or(("invalid_grant", "Invalid grant: account not found"))?;
    if let Some(kid) = jws.header.get("kid")
        && kid.as_str() != Some(account.private_key_id.as_str())
    {
        return Err(BAD_SIGNATURE);
    }
    let valid = jsonwebtoken::crypto::verify(
        jws.signature,
        jws.signing_input.as_bytes(),
        &account.key,
        Algorithm::RS256,
    )
    .unwrap_or(false);
    if !valid {
        return Err(BAD_SIGNATURE);
    }
    let claims = &jws.claims;
    let token_uri = state.token_uri();
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == token_uri,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(token_uri.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(("invalid_grant", "Invalid JWT: Failed audience check."));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(BAD_TIME)?;
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or(BAD_TIME)?;
    if exp - iat > 3600 || exp < iat || iat > now + 60 || exp + 60 < now {
        return Err(BAD_TIME);
    }
    let scope = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !scope
        .split_whitespace()
        .any(|s| s == FCM_SCOPE || s == CLOUD_PLATFORM_SCOPE)
    {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ));
    }
    Ok(iss.to_string())
}

/// `application/x-www-form-urlencoded` → map (later duplicates win).
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// messages:send

async fn send(
    state: &State,
    project: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let at = SystemTime::now();
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|b| b.get("message"))
        .cloned()
        .unwrap_or(Value::Null);
    let token = message
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let validate_only = parsed
        .as_ref()
        .and_then(|b| b.get("validate_only"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let issued = authorization
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, t)| lock(&state.tokens).get(t.trim()).cloned())
        .filter(|i| i.expires_at > Instant::now());

    let mut extra_details = vec![];
    let reply = match &issued {
        None => Some(FcmReply::error(
            401,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
        )),
        Some(i) if i.project_id != project => Some(FcmReply::sender_id_mismatch()),
        Some(_) => match check_message(parsed.as_ref()) {
            Ok(()) => None,
            Err(problem) => {
                if let Some(field) = &problem.field {
                    extra_details.push(json!({
                        "@type": BAD_REQUEST_TYPE,
                        "fieldViolations": [{ "field": field, "description": problem.message }],
                    }));
                }
                Some(FcmReply::error(
                    400,
                    "INVALID_ARGUMENT",
                    problem.error_code,
                    &problem.message,
                ))
            }
        },
    };
    let reply = reply.unwrap_or_else(|| {
        state
            .scripts
            .next(&token)
            .unwrap_or_else(|| default_reply(&token, state.cfg.slow_delay))
    });
    let (delay, last) = reply.flatten();
    let (status, error_status, error_code) = match last {
        FcmReply::Error {
            http,
            status,
            error_code,
            ..
        } => (*http, Some(status.clone()), error_code.clone()),
        _ => (200, None, None),
    };
    tracing::debug!(project, %token, status, ?error_code, "mock FCM: send");
    state.received.push(FcmReceived {
        project: project.to_string(),
        token,
        message,
        validate_only,
        client_email: issued.map(|i| i.client_email),
        status,
        error_status,
        error_code,
        at,
    });
    let wait = delay + state.cfg.latency;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match last {
        FcmReply::Error {
            http,
            status,
            error_code,
            message,
            retry_after,
        } => {
            let mut resp =
                google_error(*http, status, error_code.as_deref(), message, extra_details);
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, (*secs).into());
            }
            resp
        }
        _ => {
            let id = if validate_only {
                "fake_message_id".to_string()
            } else {
                format!("0:{}%{}", crate::mock_util::now_ms(), random_alnum(16))
            };
            json_response(
                200,
                &json!({ "name": format!("projects/{project}/messages/{id}") }),
            )
        }
    }
}

/// Why a message was refused (400 `INVALID_ARGUMENT`).
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    message: String,
    /// Field for a `google.rpc.BadRequest` detail.
    field: Option<String>,
    /// `details[].errorCode`, when FCM adds one.
    error_code: Option<&'static str>,
}

impl Problem {
    fn plain(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            field: None,
            error_code: Some("INVALID_ARGUMENT"),
        }
    }
}

/// The message checks FCM applies before looking at the token.
fn check_message(body: Option<&Value>) -> Result<(), Problem> {
    let Some(body) = body.filter(|b| b.is_object()) else {
        return Err(Problem {
            error_code: None,
            ..Problem::plain("Invalid JSON payload received.")
        });
    };
    let Some(message) = body.get("message").filter(|m| m.is_object()) else {
        return Err(Problem::plain(
            "Invalid JSON payload received. 'message' must be an object.",
        ));
    };
    let targets = ["token", "topic", "condition"]
        .into_iter()
        .filter(|k| message.get(*k).is_some())
        .collect::<Vec<_>>();
    match targets.as_slice() {
        [] => return Err(Problem::plain("Recipient of the message is not set.")),
        [one] => {
            if !message[*one].is_string() {
                return Err(type_problem(
                    &format!("message.{one}"),
                    "TYPE_STRING",
                    &message[*one],
                ));
            }
        }
        _ => {
            return Err(Problem::plain(
                "Exactly one of token, topic or condition must be set.",
            ));
        }
    }
    if message.get("token").and_then(Value::as_str) == Some("") {
        return Err(Problem::plain(
            "The registration token is not a valid FCM registration token",
        ));
    }
    check_data(message.get("data"), "message.data")?;
    if let Some(android) = message.get("android") {
        check_data(android.get("data"), "message.android.data")?;
        if let Some(priority) = android.get("priority") {
            let ok = priority
                .as_str()
                .is_some_and(|p| matches!(p.to_ascii_uppercase().as_str(), "HIGH" | "NORMAL"));
            if !ok {
                return Err(type_problem(
                    "message.android.priority",
                    "type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority",
                    priority,
                ));
            }
        }
        if let Some(ttl) = android.get("ttl")
            && !ttl.as_str().is_some_and(valid_ttl)
        {
            return Err(type_problem(
                "message.android.ttl",
                "type.googleapis.com/google.protobuf.Duration",
                ttl,
            ));
        }
    }
    Ok(())
}

/// `data` must be an object of string values with no reserved keys and ≤ 4096 bytes.
fn check_data(data: Option<&Value>, field: &str) -> Result<(), Problem> {
    let Some(data) = data else { return Ok(()) };
    let Some(map) = data.as_object() else {
        return Err(type_problem(
            field,
            "type.googleapis.com/google.protobuf.Struct",
            data,
        ));
    };
    let mut size = 0;
    for (i, (key, value)) in map.iter().enumerate() {
        let Some(text) = value.as_str() else {
            return Err(type_problem(
                &format!("{field}[{i}].value"),
                "TYPE_STRING",
                value,
            ));
        };
        let lower = key.to_ascii_lowercase();
        if matches!(lower.as_str(), "from" | "notification" | "message_type")
            || lower.starts_with("google")
            || lower.starts_with("gcm")
        {
            return Err(Problem::plain(format!("Invalid data payload key: {key}")));
        }
        size += key.len() + text.len();
    }
    if size > 4096 {
        return Err(Problem {
            error_code: Some("INVALID_ARGUMENT"),
            ..Problem::plain("Android message is too big")
        });
    }
    Ok(())
}

/// Google's wording for a value of the wrong type.
fn type_problem(field: &str, expected: &str, got: &Value) -> Problem {
    Problem {
        message: format!("Invalid value at '{field}' ({expected}), {got}"),
        field: Some(field.to_string()),
        error_code: None,
    }
}

/// A protobuf Duration string (`"30s"`, `"1.5s"`) of at most 4 weeks.
fn valid_ttl(ttl: &str) -> bool {
    let Some(number) = ttl.strip_suffix('s') else {
        return false;
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
        && whole.parse::<u64>().is_ok_and(|secs| secs <= 2_419_200)
}

/// Google's error body; `details` holds the FCM code (if any) and `extra` details.
fn google_error(
    http: u16,
    status: &str,
    error_code: Option<&str>,
    message: &str,
    extra: Vec<Value>,
) -> Response<Full<Bytes>> {
    let mut details: Vec<Value> = error_code
        .map(|c| json!({ "@type": FCM_ERROR_TYPE, "errorCode": c }))
        .into_iter()
        .collect();
    details.extend(extra);
    let mut error = json!({ "code": http, "message": message, "status": status });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json_response(http, &json!({ "error": error }))
}

/// Replies chosen by the registration token's prefix when no script is set.
fn default_reply(token: &str, slow_delay: Duration) -> FcmReply {
    if token.starts_with("dead") {
        FcmReply::unregistered()
    } else if token.starts_with("bad") {
        FcmReply::invalid_registration()
    } else if token.starts_with("unavailable") {
        FcmReply::unavailable()
    } else if token.starts_with("slow") {
        FcmReply::Ok.delayed(slow_delay)
    } else {
        FcmReply::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(v: Value) -> Result<(), Problem> {
        check_message(Some(&v))
    }

    #[test]
    fn data_values_must_be_strings() {
        assert!(msg(json!({"message": {"token": "t", "data": {"a": "1"}}})).is_ok());
        let p = msg(json!({"message": {"token": "t", "data": {"a": "1", "b": 2}}})).unwrap_err();
        assert_eq!(
            p.message,
            "Invalid value at 'message.data[1].value' (TYPE_STRING), 2"
        );
        assert_eq!(p.field.as_deref(), Some("message.data[1].value"));
        let p =
            msg(json!({"message": {"token": "t", "android": {"data": {"x": true}}}})).unwrap_err();
        assert!(p.message.contains("message.android.data[0].value"), "{p:?}");
    }

    #[test]
    fn targets_reserved_keys_priority_and_ttl() {
        assert!(msg(json!({"message": {}})).is_err());
        assert!(msg(json!({"message": {"token": "t", "topic": "x"}})).is_err());
        assert!(msg(json!({"message": {"topic": "news"}})).is_ok());
        assert!(msg(json!({"message": {"token": "t", "data": {"from": "x"}}})).is_err());
        assert!(msg(json!({"message": {"token": "t", "data": {"google.x": "x"}}})).is_err());
        let ok = json!({"message": {"token": "t", "android": {"priority": "high", "ttl": "30s"}}});
        assert!(msg(ok).is_ok());
        assert!(
            msg(json!({"message": {"token": "t", "android": {"priority": "urgent"}}})).is_err()
        );
        assert!(msg(json!({"message": {"token": "t", "android": {"ttl": 30}}})).is_err());
        let big = "x".repeat(5000);
        assert!(msg(json!({"message": {"token": "t", "data": {"k": big}}})).is_err());
    }

    #[test]
    fn ttl_format() {
        for ok in ["0s", "30s", "1.5s", "2419200s"] {
            assert!(valid_ttl(ok), "{ok}");
        }
        for bad in ["30", "s", "-1s", "2419201s", "1.1234567890s", "1 s"] {
            assert!(!valid_ttl(bad), "{bad}");
        }
    }

    #[test]
    fn form_parsing_decodes() {
        let f = parse_form(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&x=1+2");
        assert_eq!(f["grant_type"], JWT_BEARER_GRANT);
        assert_eq!(f["assertion"], "a.b.c");
        assert_eq!(f["x"], "1 2");
    }

    #[test]
    fn prefixes_pick_the_documented_replies() {
        let slow = Duration::from_millis(1);
        assert_eq!(default_reply("dead1", slow), FcmReply::unregistered());
        assert_eq!(
            default_reply("bad1", slow),
            FcmReply::invalid_registration()
        );
        assert_eq!(default_reply("unavailable", slow), FcmReply::unavailable());
        assert_eq!(default_reply("slow", slow), FcmReply::Ok.delayed(slow));
        assert_eq!(default_reply("ok", slow), FcmReply::Ok);
    }
}

//! FCM HTTP v1 client: OAuth2 access tokens from a Google service account (the JWT-bearer
//! grant, done here on the same reqwest client as the sends) and the send call.
//!
//! Why not `yup-oauth2` any more: its hyper client had no connect or request timeout and
//! could not take the extra roots of `PUSHER_EXTRA_CA_FILE`, it reports a revoked key and
//! an unreachable endpoint through the same error, and it sends one token request per
//! concurrent caller. The grant itself is small (providers.md §2): sign an RS256 JWT with
//! the account's key (rustls' ring signer), POST it as a form to `token_uri`, cache the
//! access token until a minute before it expires.
//!
//! How a token is obtained, so that nothing waits beyond its own deadline:
//! - **Single flight.** At most one token request per client is in flight. It runs in a
//!   task of its own, bounded by the request timeout; every caller that needs a token
//!   meanwhile waits for that one result. A caller that gives up (its push's deadline
//!   fired) simply stops waiting: it holds no lock, and the request goes on for the
//!   others and still fills the cache.
//! - **No wait while a token is still valid.** Within [`EXPIRY_MARGIN`] of expiry the
//!   refresh starts in the background and callers keep using the current token.
//! - **Refusals are final.** A 4xx from the token endpoint (`invalid_grant`,
//!   `unauthorized_client`, …: a revoked or deleted key) is [`Error::TokenRefused`]: the
//!   push is settled at once, and for [`REFUSAL_HOLD`] further pushes are refused without
//!   asking again. No answer, a timeout, 408, 429 or 5xx is [`Error::Token`]: transient.
//! - **401 from FCM.** The caller passes the refused token's [`CredentialTag`] to
//!   [`Client::renew`] and retries once; many pushes refused with the same token cause one
//!   token request.
//!
//! The message body is built in `pusher_core::fcm`; this module only authenticates,
//! sends and reports what came back.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use pusher_core::credentials::check_service_account;
use pusher_core::secret::Secret;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::SigningKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use serde_json::{Value, json};
use tokio::sync::watch;

pub use crate::provider::CredentialTag;
use crate::provider::{client_builder, describe};

/// OAuth scope for FCM sends.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Google's FCM endpoint.
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
/// The OAuth grant type of a service account.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// An access token is renewed this long before it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// How long a refusal by the token endpoint is remembered: pushes in that time are
/// refused without another token request (a revoked key stays revoked; a new key is a
/// new credential and so a new client).
pub const REFUSAL_HOLD: Duration = Duration::from_secs(30);
/// Prefix of the reason of [`Error::TokenRefused`]: `oauth:<error code>` as the token
/// endpoint sent it (`oauth:invalid_grant`), or `oauth:HTTP <status>` without one.
pub const REFUSAL_PREFIX: &str = "oauth:";
/// Lifetime of the signed assertion (Google accepts at most one hour).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest error code or description kept from a token endpoint's answer.
const MAX_ERROR_CHARS: usize = 128;

/// Errors of the FCM adapter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The service account JSON cannot be used.
    #[error("FCM service account unusable: {0}")]
    ServiceAccount(String),
    /// The token endpoint refused the service account (revoked or deleted key, unknown
    /// account, …); asking again will not help. Holds the reason, `oauth:<code>`.
    #[error("FCM OAuth token endpoint refused the service account: {0}")]
    TokenRefused(String),
    /// The token endpoint could not be reached, timed out or failed (worth retrying).
    #[error("FCM OAuth token request failed: {0}")]
    Token(String),
    /// The HTTP client could not be built.
    #[error("cannot build the FCM client: {0}")]
    Client(String),
    /// Connection or timeout error of a send (worth retrying).
    #[error("FCM request failed: {0}")]
    Transport(String),
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Token(_) | Error::Transport(_))
    }
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What FCM answered.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body (JSON).
    pub body: Vec<u8>,
    /// `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The access token the request carried, for [`Client::renew`] after a 401.
    pub credential: CredentialTag,
}

/// Settings of one FCM client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// FCM base URL (`/v1/projects/...` follows).
    pub base_url: String,
    /// PEM roots added to the system roots, for FCM and the token endpoint alike.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Per-request timeout of sends and token requests.
    pub request_timeout: Duration,
}

/// A client for one app's service account.
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    project_id: String,
    tokens: Arc<TokenSource>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("project_id", &self.project_id)
            .field("client_email", &self.tokens.account.client_email)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client from the service account (object). No I/O: the first send asks
    /// for a token.
    pub fn new(service_account: &Value, cfg: ClientConfig) -> Result<Self> {
        let account = Account::from_json(service_account)?;
        // Sign once now so an unusable key fails at configuration time.
        account
            .assertion(SystemTime::now())
            .map_err(Error::ServiceAccount)?;
        let http = client_builder(cfg.extra_roots_pem.as_deref(), cfg.request_timeout)
            .map_err(Error::Client)?
            .pool_idle_timeout(None)
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let project_id = account.project_id.clone();
        Ok(Self {
            tokens: Arc::new(TokenSource {
                http: http.clone(),
                account,
                // Backstop only: reqwest's own timeout normally ends the request first.
                fetch_timeout: cfg.request_timeout + Duration::from_secs(1),
                state: Mutex::new(TokenState::default()),
            }),
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            project_id,
        })
    }

    /// The service account's project.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// FCM refused the access token `refused` carried (HTTP 401): the next send gets a
    /// new one. A token already replaced is left alone, so a burst of 401s for one token
    /// causes one token request. Returns whether the token was dropped.
    pub fn renew(&self, refused: CredentialTag) -> bool {
        self.tokens.renew(refused)
    }

    /// Number of token requests this client started (for tests and metrics).
    pub fn token_requests(&self) -> u64 {
        self.tokens.state().started
    }

    /// POSTs `message` (`{"message": …}`) to `path` with a current access token.
    pub async fn send(&self, path: &str, message: &Value) -> Result<Response> {
        let token = self.tokens.access_token().await?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.value.expose()))
            .map_err(|_| Error::Token("the access token is not a header value".into()))?;
        bearer.set_sensitive(true);
        let body = serde_json::to_vec(message).map_err(|e| Error::Transport(e.to_string()))?;
        let resp = self
            .http
            .post(format!("{}{}", self.base_url, path))
            .header(AUTHORIZATION, bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Transport(describe(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Transport(describe(&e)))?
            .to_vec();
        Ok(Response {
            status,
            body,
            retry_after,
            credential: token.tag,
        })
    }
}

/// What the token source needs of a service account.
struct Account {
    project_id: String,
    client_email: String,
    token_uri: String,
    private_key_id: Option<String>,
    key: Arc<dyn SigningKey>,
}

impl Account {
    fn from_json(sa: &Value) -> Result<Self> {
        // The same check the CLI runs before storing an account.
        let info = check_service_account(sa).map_err(|e| Error::ServiceAccount(e.to_string()))?;
        let pem = sa
            .get("private_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            Error::ServiceAccount("the service account's `private_key` is not a PEM key".into())
        })?;
        let key = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|_| {
            Error::ServiceAccount("the service account's `private_key` cannot be loaded".into())
        })?;
        if key.algorithm() != SignatureAlgorithm::RSA {
            return Err(Error::ServiceAccount(
                "the service account's `private_key` is not an RSA key".into(),
            ));
        }
        Ok(Self {
            project_id: info.project_id,
            client_email: info.client_email,
            token_uri: info.token_uri,
            private_key_id: sa
                .get("private_key_id")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .map(str::to_string),
            key,
        })
    }

    /// The signed JWT-bearer assertion at `now` (RS256).
    fn assertion(&self, now: SystemTime) -> Result<String, String> {
        let (header, claims) = assertion_parts(
            &self.client_email,
            &self.token_uri,
            self.private_key_id.as_deref(),
            now,
        );
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signer = self
            .key
            .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
            .ok_or("the service account's key cannot sign RS256")?;
        let signature = signer
            .sign(input.as_bytes())
            .map_err(|e| format!("cannot sign the OAuth assertion: {e}"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// Header and claims of the JWT-bearer assertion (providers.md §2): RS256, `kid` when
/// the account has one; `iss` the account, `aud` its token URI, the FCM scope, one hour.
fn assertion_parts(
    client_email: &str,
    token_uri: &str,
    private_key_id: Option<&str>,
    now: SystemTime,
) -> (Value, Value) {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = private_key_id {
        header["kid"] = json!(kid);
    }
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = json!({
        "iss": client_email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": iat,
        "exp": iat + ASSERTION_LIFETIME.as_secs(),
    });
    (header, claims)
}

/// `application/x-www-form-urlencoded` value encoding (RFC 3986 unreserved kept).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The token request body.
fn token_request_body(assertion: &str) -> String {
    format!(
        "grant_type={}&assertion={}",
        utf8_percent_encode(JWT_BEARER_GRANT, FORM),
        utf8_percent_encode(assertion, FORM)
    )
}

/// What a token endpoint's answer means.
#[derive(Debug, PartialEq, Eq)]
enum TokenAnswer {
    /// An access token valid for `expires_in`.
    Issued {
        access_token: String,
        expires_in: Duration,
    },
    /// The account is refused for good: `reason` is `oauth:<code>`.
    Refused { reason: String, description: String },
    /// Nothing usable this time; worth retrying.
    Failed(String),
}

/// Reads a token endpoint's answer (pure).
///
/// | status | meaning |
/// |---|---|
/// | 2xx with a non-empty `access_token` | issued; `expires_in` (seconds) defaults to one hour |
/// | 2xx without one | failed (transient) |
/// | 408, 429, 5xx, anything not 2xx/4xx | failed (transient) |
/// | any other 4xx (400 `invalid_grant`, 401 `unauthorized_client`, …) | refused |
fn read_token_answer(status: u16, body: &[u8]) -> TokenAnswer {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let text = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_ERROR_CHARS)
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
    };
    if (200..300).contains(&status) {
        let Some(access_token) = parsed
            .as_ref()
            .and_then(|v| v.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return TokenAnswer::Failed(format!(
                "the token endpoint answered HTTP {status} without an access_token"
            ));
        };
        let expires_in = parsed
            .as_ref()
            .and_then(|v| v.get("expires_in"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map_or(Duration::from_secs(3600), Duration::from_secs);
        return TokenAnswer::Issued {
            access_token: access_token.to_string(),
            expires_in,
        };
    }
    let error = text("error");
    let code = error
        .as_deref()
        .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let described = || {
        let mut s = format!("HTTP {status}");
        if let Some(e) = &error {
            s.push_str(&format!(" {e}"));
        }
        s
    };
    match status {
        408 | 429 => TokenAnswer::Failed(format!("the token endpoint answered {}", described())),
        400..=499 => TokenAnswer::Refused {
            reason: match code {
                Some(code) => format!("{REFUSAL_PREFIX}{code}"),
                None => format!("{REFUSAL_PREFIX}HTTP {status}"),
            },
            description: text("error_description").unwrap_or_default(),
        },
        _ => TokenAnswer::Failed(format!("the token endpoint answered {}", described())),
    }
}

/// An access token and what the cache needs to know about it.
#[derive(Clone)]
struct AccessToken {
    value: Secret<String>,
    /// From here on a refresh starts (in the background while it is still valid).
    renew_at: Instant,
    /// From here on it is not used.
    expires_at: Instant,
    tag: CredentialTag,
}

/// The result every waiting caller gets.
type Fetched = Result<AccessToken>;

#[derive(Default)]
struct TokenState {
    current: Option<AccessToken>,
    /// Reason and end of the hold of the last refusal.
    refused: Option<(String, Instant)>,
    /// The token request in flight: its result appears here.
    fetch: Option<watch::Receiver<Option<Fetched>>>,
    /// Token requests started (also the source of tags).
    started: u64,
}

/// Single-flight access tokens of one service account.
struct TokenSource {
    http: reqwest::Client,
    account: Account,
    fetch_timeout: Duration,
    state: Mutex<TokenState>,
}

impl TokenSource {
    fn state(&self) -> MutexGuard<'_, TokenState> {
        // Every critical section below is a few assignments; no await inside.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn renew(&self, refused: CredentialTag) -> bool {
        let mut st = self.state();
        match &st.current {
            Some(t) if t.tag == refused => {
                st.current = None;
                true
            }
            _ => false,
        }
    }

    /// A valid access token: the cached one, or the result of the one token request in
    /// flight (started here if there is none). Cancel-safe: dropping the future only
    /// stops this caller's wait.
    async fn access_token(self: &Arc<Self>) -> Result<AccessToken> {
        let mut done = {
            let mut st = self.state();
            let now = Instant::now();
            let current = st.current.clone().filter(|t| now < t.expires_at);
            if let Some(t) = &current
                && now < t.renew_at
            {
                return Ok(t.clone());
            }
            if current.is_none()
                && let Some((reason, until)) = &st.refused
                && now < *until
            {
                return Err(Error::TokenRefused(reason.clone()));
            }
            let rx = match &st.fetch {
                Some(rx) => rx.clone(),
                None => self.start_fetch(&mut st),
            };
            if let Some(t) = current {
                // Still valid: use it while the refresh runs.
                return Ok(t);
            }
            rx
        };
        let fetched = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Token("the token request was abandoned".into()))?
            .clone();
        fetched.unwrap_or_else(|| Err(Error::Token("the token request was abandoned".into())))
    }

    /// Starts the token request in a task of its own (so no caller's cancellation can
    /// stop it half-way) and records it as the one in flight.
    fn start_fetch(self: &Arc<Self>, st: &mut TokenState) -> watch::Receiver<Option<Fetched>> {
        let (tx, rx) = watch::channel(None);
        st.started += 1;
        let tag = CredentialTag(st.started);
        st.fetch = Some(rx.clone());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let result = tokio::time::timeout(this.fetch_timeout, this.fetch(tag))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Token(format!(
                        "timeout: no answer from the token endpoint within {} ms",
                        this.fetch_timeout.as_millis()
                    )))
                });
            {
                let mut st = this.state();
                st.fetch = None;
                match &result {
                    Ok(token) => {
                        st.current = Some(token.clone());
                        st.refused = None;
                    }
                    Err(Error::TokenRefused(reason)) => {
                        st.current = None;
                        st.refused = Some((reason.clone(), Instant::now() + REFUSAL_HOLD));
                    }
                    Err(_) => {}
                }
            }
            tx.send_replace(Some(result));
        });
        rx
    }

    /// One token request.
    async fn fetch(&self, tag: CredentialTag) -> Fetched {
        let assertion = self
            .account
            .assertion(SystemTime::now())
            .map_err(Error::ServiceAccount)?;
        let sent = Instant::now();
        let resp = self
            .http
            .post(&self.account.token_uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(token_request_body(&assertion))
            .send()
            .await
            .map_err(|e| Error::Token(describe(&e)))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| Error::Token(describe(&e)))?;
        match read_token_answer(status, &body) {
            TokenAnswer::Issued {
                access_token,
                expires_in,
            } => Ok(AccessToken {
                value: Secret::new(access_token),
                renew_at: sent + expires_in.saturating_sub(EXPIRY_MARGIN),
                expires_at: sent + expires_in,
                tag,
            }),
            TokenAnswer::Refused {
                reason,
                description,
            } => {
                tracing::warn!(client_email = %self.account.client_email, reason = %reason,
                    description = %description,
                    "the OAuth token endpoint refused the service account (revoked or deleted key?)");
                Err(Error::TokenRefused(reason))
            }
            TokenAnswer::Failed(why) => Err(Error::Token(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SA_KEY: &str = include_str!("../../pusher-core/tests/data/service-account-key.pem");

    fn sa(token_uri: &str) -> Value {
        json!({
            "type": "service_account",
            "project_id": "proj-1",
            "private_key_id": "kid-1",
            "private_key": SA_KEY,
            "client_email": "pusher@proj-1.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        })
    }

    fn config(timeout: Duration) -> ClientConfig {
        ClientConfig {
            base_url: "http://127.0.0.1:9".into(),
            extra_roots_pem: None,
            request_timeout: timeout,
        }
    }

    #[test]
    fn token_answers_are_read() {
        let issued = read_token_answer(
            200,
            br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
        );
        assert_eq!(
            issued,
            TokenAnswer::Issued {
                access_token: "ya29.x".into(),
                expires_in: Duration::from_secs(3599)
            }
        );
        assert_eq!(
            read_token_answer(200, br#"{"access_token":"t"}"#),
            TokenAnswer::Issued {
                access_token: "t".into(),
                expires_in: Duration::from_secs(3600)
            }
        );
        assert!(matches!(
            read_token_answer(200, br#"{"access_token":""}"#),
            TokenAnswer::Failed(_)
        ));
        assert!(matches!(
            read_token_answer(200, b"<html>"),
            TokenAnswer::Failed(_)
        ));
        let refused = |status, body: &[u8]| match read_token_answer(status, body) {
            TokenAnswer::Refused { reason, .. } => reason,
            other => panic!("{status}: {other:?}"),
        };
        assert_eq!(
            refused(
                400,
                br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
            ),
            "oauth:invalid_grant"
        );
        assert_eq!(
            refused(401, br#"{"error":"unauthorized_client"}"#),
            "oauth:unauthorized_client"
        );
        assert_eq!(refused(401, b""), "oauth:HTTP 401");
        assert_eq!(refused(403, b"Forbidden"), "oauth:HTTP 403");
        // A code that is not a code is not echoed into the reason.
        assert_eq!(
            refused(400, br#"{"error":"<script>alert(1)</script>"}"#),
            "oauth:HTTP 400"
        );
        for status in [408, 429, 500, 502, 503, 504, 302] {
            assert!(
                matches!(read_token_answer(status, b"{}"), TokenAnswer::Failed(_)),
                "{status}"
            );
        }
        let TokenAnswer::Failed(why) =
            read_token_answer(503, br#"{"error":"temporarily_unavailable"}"#)
        else {
            panic!("503 is transient")
        };
        assert!(why.contains("HTTP 503 temporarily_unavailable"), "{why}");
    }

    #[test]
    fn assertion_claims_follow_google() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (header, claims) =
            assertion_parts("a@b.iam", "https://oauth2.example/token", Some("k1"), now);
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}));
        assert_eq!(claims["iss"], "a@b.iam");
        assert_eq!(claims["aud"], "https://oauth2.example/token");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_003_600u64);
        let (header, _) = assertion_parts("a", "b", None, now);
        assert!(header.get("kid").is_none());
    }

    #[test]
    fn the_assertion_is_a_verifiable_rs256_jwt() {
        let account = Account::from_json(&sa("http://127.0.0.1:9/token")).expect("account");
        let jwt = account.assertion(SystemTime::now()).expect("signed");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!jwt.contains('='), "unpadded base64url");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["kid"], "kid-1");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["iss"], "pusher@proj-1.iam.gserviceaccount.com");
        // Checked against the public half with the same ring primitives a server uses.
        let der = PrivateKeyDer::from_pem_slice(SA_KEY.as_bytes()).expect("der");
        let key = rustls::crypto::ring::sign::any_supported_type(&der).expect("key");
        let signer = key
            .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
            .expect("RS256");
        let again = signer
            .sign(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .expect("sign");
        // PKCS#1 v1.5 is deterministic: same input, same signature.
        assert_eq!(URL_SAFE_NO_PAD.encode(again), parts[2]);
    }

    #[test]
    fn form_body_is_encoded() {
        assert_eq!(
            token_request_body("a.b-c_d"),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b-c_d"
        );
    }

    #[test]
    fn unusable_accounts_are_refused_at_build_time() {
        let mut bad = sa("http://127.0.0.1:9/token");
        bad["private_key"] =
            json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert!(matches!(
            Client::new(&bad, config(Duration::from_secs(1))),
            Err(Error::ServiceAccount(_))
        ));
        let mut ec = sa("http://127.0.0.1:9/token");
        ec["private_key"] = json!(include_str!("../../pusher-core/tests/data/token-key.p8"));
        assert!(Client::new(&ec, config(Duration::from_secs(1))).is_err());
        let client = Client::new(
            &sa("http://127.0.0.1:9/token"),
            config(Duration::from_secs(1)),
        )
        .expect("client");
        assert!(!format!("{client:?}").contains("PRIVATE"));
        assert_eq!(client.project_id(), "proj-1");
    }

    #[test]
    fn classification() {
        assert!(Error::Token("x".into()).is_transient());
        assert!(Error::Transport("x".into()).is_transient());
        assert!(!Error::TokenRefused("oauth:invalid_grant".into()).is_transient());
        assert!(!Error::ServiceAccount("x".into()).is_transient());
    }

    /// A listener that accepts connections and never answers, counting them.
    async fn silent_endpoint() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(conn);
            }
        });
        (format!("http://{addr}/token"), accepted)
    }

    #[tokio::test]
    async fn a_silent_token_endpoint_is_one_request_that_times_out() {
        let (uri, accepted) = silent_endpoint().await;
        let timeout = Duration::from_millis(1500);
        let client = Arc::new(Client::new(&sa(&uri), config(timeout)).expect("client"));
        let started = Instant::now();
        // Callers that give up early (their push deadline) hold nothing.
        for _ in 0..5 {
            let give_up = tokio::time::timeout(
                Duration::from_millis(20),
                client.send("/v1/projects/proj-1/messages:send", &json!({})),
            )
            .await;
            assert!(give_up.is_err(), "still waiting for the token");
        }
        // The ones that wait all get the one request's timeout.
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move {
                    c.send("/v1/projects/proj-1/messages:send", &json!({}))
                        .await
                })
            })
            .collect();
        for w in waiters {
            let err = w.await.expect("join").expect_err("no token");
            assert!(matches!(err, Error::Token(_)), "{err:?}");
            assert!(err.is_transient());
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed < timeout + Duration::from_secs(3),
            "bounded by the request timeout: {elapsed:?}"
        );
        assert_eq!(client.token_requests(), 1, "single flight while hung");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The next caller starts a new request.
        let err = client
            .send("/v1/projects/proj-1/messages:send", &json!({}))
            .await
            .expect_err("still silent");
        assert!(err.is_transient());
        assert_eq!(client.token_requests(), 2);
    }
}

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
//! The parts: this module (the [`Client`]: build, send, renew after a 401), `grant`
//! (the service account, its signed assertion, the token request and what the token
//! endpoint's answer means) and `token_source` (the single-flight token cache; how a
//! token is obtained without anyone waiting beyond their own deadline is told there).
//!
//! The message body is built in `pusher_core::fcm`; this module only authenticates,
//! sends and reports what came back.

mod grant;
mod token_source;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use self::grant::Account;
use self::token_source::{TokenSource, TokenState};
pub use crate::provider::CredentialTag;
use crate::provider::client_builder;

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

/// What FCM answered; the credential is the access token the request carried, for
/// [`Client::renew`] after a 401.
pub type Response = crate::provider::Response<CredentialTag>;

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
        let request = self
            .http
            .post(format!("{}{}", self.base_url, path))
            .header(AUTHORIZATION, bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        crate::provider::send(request, token.tag)
            .await
            .map_err(Error::Transport)
    }
}

#[cfg(test)]
mod tests;

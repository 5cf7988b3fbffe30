//! FCM HTTP v1 client: OAuth2 service-account tokens (`yup-oauth2`) and the send call
//! (`reqwest`, configurable base URL).
//!
//! Token fetching is single-flight per client: concurrent pushes on a cold cache wait for
//! one token request instead of each sending their own (yup-oauth2 alone sends one per
//! caller). On HTTP 401 the caller asks for a forced refresh and retries once.
//!
//! The message body is built in `pusher_core::fcm`; this module only authenticates,
//! sends and reports what came back.

use std::time::Duration;

use pusher_core::credentials::check_service_account;
use serde_json::Value;
use tokio::sync::Mutex;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::{DefaultHyperClientBuilder, HyperClientBuilder};

/// OAuth scope for FCM sends.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Google's FCM endpoint.
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";

type Auth = Authenticator<<DefaultHyperClientBuilder as HyperClientBuilder>::Connector>;

/// Errors of the FCM adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service account JSON cannot be used.
    #[error("FCM service account unusable: {0}")]
    ServiceAccount(String),
    /// The OAuth token endpoint refused or failed.
    #[error("FCM OAuth token request failed: {0}")]
    Token(String),
    /// The HTTP client could not be built.
    #[error("cannot build the FCM client: {0}")]
    Client(String),
    /// Connection or timeout error (worth retrying).
    #[error("FCM request failed: {0}")]
    Transport(String),
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
}

/// A client for one app's service account.
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    project_id: String,
    auth: Auth,
    /// Serialises token acquisition (single-flight).
    token_gate: Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client from the service account (object) for `base_url`.
    pub async fn new(
        service_account: &Value,
        base_url: &str,
        request_timeout: Duration,
    ) -> Result<Self> {
        crate::ensure_crypto_provider();
        // The same check the CLI runs before storing an account (it requires `token_uri`).
        let project_id = check_service_account(service_account)
            .map_err(|e| Error::ServiceAccount(e.to_string()))?
            .project_id;
        let key = yup_oauth2::parse_service_account_key(service_account.to_string())
            .map_err(|e| Error::ServiceAccount(e.to_string()))?;
        let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
            .build()
            .await
            .map_err(|e| Error::Client(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(None)
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            project_id,
            auth,
            token_gate: Mutex::new(()),
        })
    }

    /// The service account's project.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    async fn access_token(&self, force: bool) -> Result<String> {
        let _gate = self.token_gate.lock().await;
        let scopes = [SCOPE];
        let token = if force {
            self.auth.force_refreshed_token(&scopes).await
        } else {
            self.auth.token(&scopes).await
        }
        .map_err(|e| Error::Token(e.to_string()))?;
        token
            .token()
            .map(str::to_string)
            .ok_or_else(|| Error::Token("the token endpoint returned no access_token".into()))
    }

    /// POSTs `message` (`{"message": …}`) to `path`; `force_refresh` after a 401.
    pub async fn send(&self, path: &str, message: &Value, force_refresh: bool) -> Result<Response> {
        let token = self.access_token(force_refresh).await?;
        let resp = self
            .http
            .post(format!("{}{}", self.base_url, path))
            .bearer_auth(token)
            .json(message)
            .send()
            .await
            .map_err(|e| Error::Transport(crate::apns::describe(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Transport(crate::apns::describe(&e)))?
            .to_vec();
        Ok(Response {
            status,
            body,
            retry_after,
        })
    }
}

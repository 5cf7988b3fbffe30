//! The OAuth2 JWT-bearer grant of a Google service account (providers.md §2): the
//! account's key and ids, the signed RS256 assertion, the form-encoded token request,
//! and what the token endpoint's answer means. Pure but for the signature.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use pusher_core::credentials::check_service_account;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::SigningKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use serde_json::{Value, json};

use super::{Error, JWT_BEARER_GRANT, REFUSAL_PREFIX, Result, SCOPE};

/// Lifetime of the signed assertion (Google accepts at most one hour).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest error code or description kept from a token endpoint's answer.
const MAX_ERROR_CHARS: usize = 128;

/// What the token source needs of a service account.
pub(super) struct Account {
    pub(super) project_id: String,
    pub(super) client_email: String,
    pub(super) token_uri: String,
    private_key_id: Option<String>,
    key: Arc<dyn SigningKey>,
}

impl Account {
    pub(super) fn from_json(sa: &Value) -> Result<Self> {
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
    pub(super) fn assertion(&self, now: SystemTime) -> Result<String, String> {
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
pub(super) fn assertion_parts(
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
pub(super) fn token_request_body(assertion: &str) -> String {
    format!(
        "grant_type={}&assertion={}",
        utf8_percent_encode(JWT_BEARER_GRANT, FORM),
        utf8_percent_encode(assertion, FORM)
    )
}

/// What a token endpoint's answer means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TokenAnswer {
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
pub(super) fn read_token_answer(status: u16, body: &[u8]) -> TokenAnswer {
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

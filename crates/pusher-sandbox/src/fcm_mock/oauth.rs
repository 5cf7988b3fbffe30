//! The Google OAuth2 token endpoint: the JWT-bearer grant, the assertion checks Google
//! applies, and the access tokens the mock issues (checked again by the send endpoint).

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::Instant;

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey};
use rand::Rng;
use serde_json::{Value, json};

use super::{CLOUD_PLATFORM_SCOPE, FCM_SCOPE, JWT_BEARER_GRANT, State};
use crate::mock_util::{json_response, lock, now_secs};

#[derive(Debug)]
/// A registered service account.
pub(super) struct Account {
    pub(super) project_id: String,
    pub(super) private_key_id: String,
    pub(super) key: DecodingKey,
}

impl Account {
    /// From a service-account JSON: its `client_email` and the account (public key
    /// derived from `private_key`).
    pub(super) fn from_service_account(sa: &Value) -> anyhow::Result<(String, Account)> {
        use anyhow::{Context, bail};
        let field = |name: &str| -> anyhow::Result<String> {
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
        Ok((field("client_email")?, account))
    }
}

/// A scripted answer of the token endpoint ([`super::MockFcm::script_token_endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenReply {
    /// Check the assertion and issue a token, as without a script.
    Issue,
    /// Answer `status` with `{"error": error, "error_description": …}` without looking
    /// at the request: `Fail(400, "invalid_grant")` is a revoked key, `Fail(503, …)` an
    /// outage.
    Fail(u16, String),
    /// Wait, then answer with the inner reply; [`Duration::MAX`] never answers.
    Delay(std::time::Duration, Box<TokenReply>),
}

impl TokenReply {
    /// `status` with the OAuth `error` code.
    pub fn fail(status: u16, error: &str) -> TokenReply {
        TokenReply::Fail(status, error.to_string())
    }

    /// This reply after `delay`.
    pub fn delayed(self, delay: std::time::Duration) -> TokenReply {
        TokenReply::Delay(delay, Box::new(self))
    }
}

/// Answers a token request by `reply`.
pub(super) async fn scripted_token_endpoint(
    state: &State,
    body: &[u8],
    mut reply: TokenReply,
) -> Response<Full<Bytes>> {
    loop {
        match reply {
            TokenReply::Issue => return token_endpoint(state, body),
            TokenReply::Fail(status, error) => {
                return json_response(
                    status,
                    &json!({ "error": error, "error_description": "scripted by the test" }),
                );
            }
            TokenReply::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
        }
    }
}

#[derive(Debug, Clone)]
/// An access token the mock issued.
pub(super) struct Issued {
    pub(super) client_email: String,
    pub(super) project_id: String,
    pub(super) expires_at: Instant,
}

/// `POST /token`: a JWT-bearer grant in, a fresh access token (or Google's error) out.
pub(super) fn token_endpoint(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
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

/// `n` random ASCII letters and digits.
pub(super) fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing_decodes() {
        let f = parse_form(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&x=1+2");
        assert_eq!(f["grant_type"], JWT_BEARER_GRANT);
        assert_eq!(f["assertion"], "a.b.c");
        assert_eq!(f["x"], "1 2");
    }
}

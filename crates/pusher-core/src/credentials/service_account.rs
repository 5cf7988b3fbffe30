//! The Google service account of FCM HTTP v1: the one check used by the CLI before it
//! stores an account and by the service before it builds a client.

use serde_json::Value;

use super::CredentialError;
use super::pem::pem_parts;

/// Parses service-account JSON text, naming line and column when it is not JSON.
pub fn parse_json(text: &str) -> Result<Value, CredentialError> {
    serde_json::from_str(text).map_err(|e| {
        // serde_json's message describes the syntax problem, not the input text.
        CredentialError::ServiceAccount(format!(
            "JSON invalid at line {} column {} ({})",
            e.line(),
            e.column(),
            json_error_kind(&e)
        ))
    })
}

fn json_error_kind(e: &serde_json::Error) -> String {
    // Drop serde_json's own " at line X column Y" suffix; we already said where.
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// What a usable service account says about itself (no secret in here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountInfo {
    /// `project_id`.
    pub project_id: String,
    /// `client_email`.
    pub client_email: String,
    /// `token_uri`.
    pub token_uri: String,
}

/// Checks a Google service account for FCM HTTP v1: an object with `type`
/// `service_account`, `project_id`, `client_email`, `token_uri` (http/https) and a
/// `private_key` that is an RSA PEM key.
pub fn check_service_account(sa: &Value) -> Result<ServiceAccountInfo, CredentialError> {
    let bad = |m: String| CredentialError::ServiceAccount(m);
    if !sa.is_object() {
        return Err(bad(
            "the service account is not a JSON object (expected the key file downloaded from the Firebase console)".into(),
        ));
    }
    let field = |k: &str| -> Result<String, CredentialError> {
        match sa.get(k) {
            None | Some(Value::Null) => Err(bad(format!("the service account lacks `{k}`"))),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(bad(format!(
                "the service account's `{k}` is not a non-empty string"
            ))),
        }
    };
    let kind = field("type")?;
    if kind != "service_account" {
        return Err(bad(format!(
            "the service account's `type` is {kind:?}, expected \"service_account\""
        )));
    }
    let project_id = field("project_id")?;
    let client_email = field("client_email")?;
    let token_uri = field("token_uri")?;
    if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
        return Err(bad(
            "the service account's `token_uri` is not an http(s) URL".into(),
        ));
    }
    let key_pem = field("private_key")?;
    let parts = pem_parts(&key_pem).map_err(|e| match e {
        CredentialError::Pem(_) => {
            bad("the service account's `private_key` is not a readable PEM key".into())
        }
        CredentialError::EncryptedKey => {
            bad("the service account's `private_key` is encrypted".into())
        }
        other => other,
    })?;
    let [(key, _)] = parts.keys.as_slice() else {
        return Err(bad(format!(
            "the service account's `private_key` holds {} private keys, expected one RSA key",
            parts.keys.len()
        )));
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(key).map_err(|_| {
        bad("the service account's `private_key` cannot be loaded as an RSA key".into())
    })?;
    if signer.algorithm() != rustls::SignatureAlgorithm::RSA {
        return Err(bad(
            "the service account's `private_key` is not an RSA key (Google signs with RS256)"
                .into(),
        ));
    }
    Ok(ServiceAccountInfo {
        project_id,
        client_email,
        token_uri,
    })
}

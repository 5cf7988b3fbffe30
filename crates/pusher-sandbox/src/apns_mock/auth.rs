//! Who may send: the server TLS config (client certificates verified against the CA,
//! optional because token clients have none) and the ES256 provider-token check.

use std::sync::{Arc, PoisonError};

use anyhow::{Context, Result, anyhow};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use serde_json::Value;

use super::{ApnsAuth, ApnsMockConfig, State, TokenKey};
use crate::mock_util::now_secs;
use crate::mock_util::serve;

/// Accept `key`'s provider tokens from now on.
pub(super) fn add_key(state: &State, key: &TokenKey) -> Result<()> {
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

/// TLS 1.2/1.3, ALPN `h2`, optional client certificates chaining to the client CA.
pub(super) fn server_tls_config(cfg: &ApnsMockConfig) -> Result<rustls::ServerConfig> {
    let provider = serve::crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cfg.client_ca_pem.as_bytes()) {
        roots.add(cert.context("Failed to parse the client CA PEM")?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| anyhow!("Failed to build the client verifier: {e}"))?;
    let (certs, key) = serve::server_identity(&cfg.server_cert_pem, &cfg.server_key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    // APNs speaks HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A verified client certificate wins; otherwise a valid provider token is required.
pub(super) fn authenticate(
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

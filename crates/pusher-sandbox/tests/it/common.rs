//! Shared fixtures: one generated PKI per test binary, clients, JWT makers.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pusher_sandbox::pki::TestPki;
use serde_json::{Value, json};

/// A fresh directory under cargo's target tmp dir (unique per process and name).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pusher-sandbox-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The PKI shared by all tests of this binary (generated on first use).
pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        remove_stale_scratch_dirs();
        TestPki::generate(&scratch_dir("pki")).expect("PKI generation")
    })
}

/// Remove scratch dirs of earlier test processes that are gone (Linux: no `/proc/<pid>`).
fn remove_stale_scratch_dirs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("pusher-sandbox-it-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Install ring as the process-wide rustls provider (reqwest is built with no provider).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP/2 (prior knowledge) client trusting only the test CA, with an optional
/// Kazoo-style identity PEM.
pub fn apns_client(identity_pem: Option<&str>) -> reqwest::Client {
    install_provider();
    let ca = reqwest::Certificate::from_pem(pki().ca_pem.as_bytes()).expect("CA PEM");
    let mut builder = reqwest::Client::builder()
        .http2_prior_knowledge()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10));
    if let Some(pem) = identity_pem {
        builder =
            builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity PEM"));
    }
    builder.build().expect("client")
}

/// A plain-HTTP client (HTTP/1.1 unless `h2c`).
pub fn http_client(h2c: bool) -> reqwest::Client {
    install_provider();
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if h2c {
        builder = builder.http2_prior_knowledge();
    }
    builder.build().expect("client")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// An APNs provider token: ES256, header `kid`, claims `iss` and `iat`.
pub fn apns_jwt(p8_pem: &str, key_id: &str, team_id: &str, iat: i64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key_id.to_string());
    let key = EncodingKey::from_ec_pem(p8_pem.as_bytes()).expect("p8");
    jsonwebtoken::encode(&header, &json!({ "iss": team_id, "iat": iat }), &key).expect("jwt")
}

/// A Google JWT-bearer assertion for `sa`, RS256 with `kid` = `private_key_id`.
pub fn sa_assertion(sa: &Value, claims_patch: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = sa["private_key_id"].as_str().map(str::to_string);
    let iat = now();
    let mut claims = json!({
        "iss": sa["client_email"],
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": sa["token_uri"],
        "iat": iat,
        "exp": iat + 3600,
    });
    if let (Some(c), Some(p)) = (claims.as_object_mut(), claims_patch.as_object()) {
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
    let key =
        EncodingKey::from_rsa_pem(sa["private_key"].as_str().expect("private_key").as_bytes())
            .expect("RSA key");
    jsonwebtoken::encode(&header, &claims, &key).expect("assertion")
}

/// An assertion built the way yup-oauth2 builds it: header `{"alg":"RS256","typ":"JWT"}`
/// without `kid`, base64url segments WITH `=` padding.
pub fn padded_assertion_without_kid(sa: &Value) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
    let iat = now();
    let claims = json!({
        "iss": sa["client_email"], "aud": sa["token_uri"], "exp": iat + 3595, "iat": iat,
        "sub": null, "scope": "https://www.googleapis.com/auth/firebase.messaging",
    });
    let input = format!(
        "{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims.to_string())
    );
    let key = EncodingKey::from_rsa_pem(sa["private_key"].as_str().unwrap().as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{input}.{sig}")
}

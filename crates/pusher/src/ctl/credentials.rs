//! Checks of the credentials an operator hands to `pusher_maintenance`, before anything
//! is written: an APNs certificate PEM (one certificate, its matching unencrypted
//! private key, not expired), an APNs `.p8` token key (EC P-256) and a Google service
//! account. Pure: the caller reads the files and passes `now`.
//!
//! Every error is one sentence naming the cause and never contains key material: PEM
//! bodies are only decoded, never echoed, and library errors that could quote their
//! input are replaced by our own wording.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use serde_json::Value;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// Apple's certificate extension listing the topics a push certificate may use
/// (1.2.840.113635.100.6.3.6).
const APPLE_TOPICS_OID: &str = "1.2.840.113635.100.6.3.6";
/// LDAP `UID` attribute, where Apple puts the bundle id (0.9.2342.19200300.100.1.1).
const UID_OID: &str = "0.9.2342.19200300.100.1.1";

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The file is not a PEM or holds none of the blocks we need.
    #[error("{0}")]
    Pem(String),
    /// The private key is encrypted; APNs clients need it in clear.
    #[error("the private key is encrypted; export it without a passphrase (openssl pkcs12 -nodes)")]
    EncryptedKey,
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate (different public keys)")]
    KeyMismatch,
    /// The certificate's `notAfter` is in the past.
    #[error("the certificate expired on {0}; renew it in the Apple developer portal")]
    Expired(String),
    /// The certificate's `notBefore` is in the future.
    #[error("the certificate is not valid before {0}")]
    NotYetValid(String),
    /// A `.p8` key that is not EC P-256.
    #[error("{0}")]
    TokenKey(String),
    /// A service account that cannot be used.
    #[error("{0}")]
    ServiceAccount(String),
}

/// What an APNs certificate PEM holds (no secret in here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsIdentity {
    /// Subject distinguished name, e.g. `UID=org.example.app, CN=Apple VoIP Services: …`.
    pub subject: String,
    /// Bundle id from the subject's `UID`, if any.
    pub bundle_id: Option<String>,
    /// Topics from Apple's topics extension (empty when the certificate has none).
    pub topics: Vec<String>,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// `notAfter` as `YYYY-MM-DD`.
    pub not_after_date: String,
    /// Kind of private key found (`RSA (PKCS#1)`, `PKCS#8`, `EC (SEC1)`).
    pub key_format: &'static str,
}

impl ApnsIdentity {
    /// Whole days from `now` until `notAfter` (negative once expired).
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after - now_unix).div_euclid(86_400)
    }
}

/// PEM block labels in order of appearance, with whether the block carries RFC 1421
/// headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info`), which only old encrypted keys have.
fn pem_labels(pem: &str) -> Vec<(String, bool)> {
    let mut labels = Vec::new();
    let mut current: Option<(String, bool)> = None;
    for line in pem.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), false));
        } else if line.starts_with("-----END ") {
            if let Some(block) = current.take() {
                labels.push(block);
            }
        } else if let Some((_, headers)) = current.as_mut()
            && (line.starts_with("Proc-Type:") || line.starts_with("DEK-Info:"))
        {
            *headers = true;
        }
    }
    labels
}

/// The decoded certificate and private-key blocks of a PEM.
struct PemParts {
    certs: Vec<Vec<u8>>,
    keys: Vec<(PrivateKeyDer<'static>, &'static str)>,
}

fn pem_parts(pem: &str) -> Result<PemParts, CredentialError> {
    use rustls::pki_types::pem::SectionKind;
    for (label, encrypted_headers) in pem_labels(pem) {
        if label == "ENCRYPTED PRIVATE KEY" || (label.ends_with("PRIVATE KEY") && encrypted_headers)
        {
            return Err(CredentialError::EncryptedKey);
        }
    }
    let mut parts = PemParts {
        certs: Vec::new(),
        keys: Vec::new(),
    };
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
        // The library's error names a line of the file; ours names only the problem.
        let (kind, der) = section.map_err(|_| {
            CredentialError::Pem("the PEM is damaged (a block does not decode)".into())
        })?;
        match kind {
            SectionKind::Certificate => parts.certs.push(der),
            SectionKind::PrivateKey => parts
                .keys
                .push((PrivatePkcs8KeyDer::from(der).into(), "PKCS#8")),
            SectionKind::RsaPrivateKey => parts
                .keys
                .push((PrivatePkcs1KeyDer::from(der).into(), "RSA (PKCS#1)")),
            SectionKind::EcPrivateKey => parts
                .keys
                .push((PrivateSec1KeyDer::from(der).into(), "EC (SEC1)")),
            _ => {}
        }
    }
    Ok(parts)
}

/// The public key (SubjectPublicKeyInfo DER) of a private key, or why it cannot be loaded.
fn public_key_of(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, CredentialError> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key).map_err(|_| {
        CredentialError::Pem(
            "the private key cannot be loaded (not an RSA or EC key this build supports)".into(),
        )
    })?;
    signer
        .public_key()
        .map(|spki| spki.as_ref().to_vec())
        .ok_or_else(|| CredentialError::Pem("the private key has no usable public key".into()))
}

/// Whether two SubjectPublicKeyInfo DERs hold the same key (algorithm and key bits;
/// encodings of the algorithm parameters may differ between libraries).
fn same_public_key(a: &[u8], b: &[u8]) -> bool {
    match (
        SubjectPublicKeyInfo::from_der(a),
        SubjectPublicKeyInfo::from_der(b),
    ) {
        (Ok((_, a)), Ok((_, b))) => {
            a.algorithm.algorithm == b.algorithm.algorithm
                && a.subject_public_key.data == b.subject_public_key.data
        }
        _ => false,
    }
}

/// Checks an APNs certificate PEM as `add_apple_app` stores it: exactly one certificate,
/// exactly one unencrypted private key matching it (PKCS#1, PKCS#8 or SEC1; `Bag
/// Attributes` text around the blocks is fine), and valid at `now_unix`.
pub fn check_apns_certificate(pem: &str, now_unix: i64) -> Result<ApnsIdentity, CredentialError> {
    let parts = pem_parts(pem)?;
    let cert_der = match parts.certs.as_slice() {
        [] => {
            return Err(CredentialError::Pem(
                "the PEM has no certificate (no BEGIN CERTIFICATE block)".into(),
            ));
        }
        [one] => one,
        many => {
            return Err(CredentialError::Pem(format!(
                "the PEM has {} certificates; keep only the APNs certificate (openssl pkcs12 -clcerts)",
                many.len()
            )));
        }
    };
    let (key, key_format) = match parts.keys.as_slice() {
        [] => {
            return Err(CredentialError::Pem(
                "the PEM has no private key (export certificate and key: openssl pkcs12 -nodes)"
                    .into(),
            ));
        }
        [one] => one,
        many => {
            return Err(CredentialError::Pem(format!(
                "the PEM has {} private keys; keep only the one that matches the certificate",
                many.len()
            )));
        }
    };
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|_| {
        CredentialError::Pem("the certificate block is not a valid X.509 certificate".into())
    })?;
    let key_spki = public_key_of(key)?;
    if !same_public_key(cert.public_key().raw, &key_spki) {
        return Err(CredentialError::KeyMismatch);
    }
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if not_after < now_unix {
        return Err(CredentialError::Expired(date(not_after)));
    }
    if not_before > now_unix {
        return Err(CredentialError::NotYetValid(date(not_before)));
    }
    let bundle_id = cert
        .subject()
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == UID_OID)
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    let topics = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == APPLE_TOPICS_OID)
        .map(|e| apple_topics(e.value))
        .unwrap_or_default();
    Ok(ApnsIdentity {
        subject: cert.subject().to_string(),
        bundle_id,
        topics,
        not_after,
        not_after_date: date(not_after),
        key_format,
    })
}

/// `notAfter` of the first certificate in a stored PEM (for `list_apps`), without
/// looking at the key.
pub fn certificate_not_after(pem: &str) -> Option<i64> {
    let parts = pem_parts(pem).ok()?;
    let der = parts.certs.first()?;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Topics of Apple's extension: a SEQUENCE alternating a UTF8String topic and a
/// SEQUENCE of its kinds (`app`, `voip`, `complication`); the strings are the topics.
pub fn apple_topics(ext_value: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let Some((0x30, mut items, _)) = pusher_core::der::tlv(ext_value) else {
        return topics;
    };
    while let Some((tag, content, rest)) = pusher_core::der::tlv(items) {
        // UTF8String, PrintableString, IA5String.
        if matches!(tag, 0x0C | 0x13 | 0x16)
            && let Ok(s) = std::str::from_utf8(content)
        {
            topics.push(s.to_string());
        }
        items = rest;
    }
    topics
}

/// Checks an APNs token-auth key (`AuthKey_XXXXXXXXXX.p8`): one unencrypted EC P-256
/// private key.
pub fn check_p8_key(pem: &str) -> Result<(), CredentialError> {
    let parts = pem_parts(pem).map_err(|e| match e {
        CredentialError::Pem(m) => CredentialError::TokenKey(m),
        other => other,
    })?;
    let key = match parts.keys.as_slice() {
        [] => {
            return Err(CredentialError::TokenKey(
                "the file has no private key (expected an Apple AuthKey_XXXXXXXXXX.p8)".into(),
            ));
        }
        [(key, _)] => key,
        many => {
            return Err(CredentialError::TokenKey(format!(
                "the file has {} private keys; an APNs .p8 holds exactly one",
                many.len()
            )));
        }
    };
    let not_p256 = || {
        CredentialError::TokenKey(
            "the key is not an EC P-256 key (APNs token auth needs ES256)".into(),
        )
    };
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(key).map_err(|_| not_p256())?;
    let spki = signer.public_key().ok_or_else(not_p256)?;
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki.as_ref()).map_err(|_| not_p256())?;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if curve.as_ref() != Some(&x509_parser::oid_registry::OID_EC_P256) {
        return Err(not_p256());
    }
    Ok(())
}

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

/// `YYYY-MM-DD` (UTC) of a Unix timestamp.
pub fn date(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Howard Hinnant's days-to-civil conversion (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Test credentials shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use pusher_sandbox::pki::TestPki;
    use std::sync::OnceLock;

    /// One test PKI per user, reused across runs (generated on first use).
    pub fn pki() -> &'static TestPki {
        static PKI: OnceLock<TestPki> = OnceLock::new();
        PKI.get_or_init(|| {
            let dir = std::env::temp_dir().join("pusher-unit-pki");
            TestPki::load_or_generate(&dir).expect("test PKI")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pusher_sandbox::pki::{ClientVariant, TestPki};

    const NOW: i64 = 1_767_225_600; // 2026-01-01

    fn pki() -> &'static TestPki {
        tests_support::pki()
    }

    fn cert_only(pem: &str) -> String {
        let start = pem.find("-----BEGIN CERTIFICATE-----").unwrap();
        let end =
            pem.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
        pem[start..end].to_string()
    }

    #[test]
    fn accepts_every_export_format() {
        for (variant, format) in [
            (ClientVariant::Pkcs8, "PKCS#8"),
            (ClientVariant::Pkcs1, "RSA (PKCS#1)"),
            (ClientVariant::BagAttributes, "PKCS#8"),
        ] {
            let id = check_apns_certificate(&pki().client(variant).pem, NOW)
                .unwrap_or_else(|e| panic!("{variant:?}: {e}"));
            assert_eq!(id.key_format, format);
            assert_eq!(id.bundle_id.as_deref(), Some(variant.bundle_id()));
            assert!(id.subject.contains(&variant.subject_cn()), "{}", id.subject);
            assert_eq!(id.not_after_date, "2100-01-01");
            assert!(id.topics.is_empty());
            assert!(id.days_left(NOW) > 20_000);
        }
    }

    #[test]
    fn refuses_expired_with_the_date() {
        let err =
            check_apns_certificate(&pki().client(ClientVariant::Expired).pem, NOW).unwrap_err();
        assert_eq!(err, CredentialError::Expired("2020-01-01".into()));
        assert_eq!(
            err.to_string(),
            "the certificate expired on 2020-01-01; renew it in the Apple developer portal"
        );
        let early = check_apns_certificate(&pki().client(ClientVariant::Pkcs8).pem, 0).unwrap_err();
        assert_eq!(early, CredentialError::NotYetValid("2020-01-01".into()));
    }

    #[test]
    fn refuses_missing_extra_and_mismatched_keys() {
        let pem = &pki().client(ClientVariant::Pkcs8).pem;
        let cert = cert_only(pem);
        let err = check_apns_certificate(&cert, NOW).unwrap_err();
        assert!(err.to_string().contains("no private key"), "{err}");

        let key = &pem[pem.find("-----BEGIN PRIVATE KEY").unwrap()..];
        assert!(
            check_apns_certificate(key, NOW)
                .unwrap_err()
                .to_string()
                .contains("no certificate")
        );

        let two_keys = format!("{pem}{}", pki().sa_private_key_pem);
        assert!(
            check_apns_certificate(&two_keys, NOW)
                .unwrap_err()
                .to_string()
                .contains("2 private keys")
        );

        let two_certs = format!("{cert}{pem}");
        assert!(
            check_apns_certificate(&two_certs, NOW)
                .unwrap_err()
                .to_string()
                .contains("2 certificates")
        );

        let wrong_key = format!("{cert}{}", pki().sa_private_key_pem);
        assert_eq!(
            check_apns_certificate(&wrong_key, NOW).unwrap_err(),
            CredentialError::KeyMismatch
        );

        let encrypted = format!(
            "{cert}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        );
        assert_eq!(
            check_apns_certificate(&encrypted, NOW).unwrap_err(),
            CredentialError::EncryptedKey
        );
        let legacy = format!(
            "{cert}-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"
        );
        assert_eq!(
            check_apns_certificate(&legacy, NOW).unwrap_err(),
            CredentialError::EncryptedKey
        );
        assert!(check_apns_certificate("hello", NOW).is_err());
    }

    #[test]
    fn errors_never_quote_the_key() {
        let pem = &pki().client(ClientVariant::Pkcs8).pem;
        let damaged = pem.replace(
            "-----END PRIVATE KEY-----",
            "!!!!\n-----END PRIVATE KEY-----",
        );
        let err = check_apns_certificate(&damaged, NOW)
            .unwrap_err()
            .to_string();
        let key_line = pem
            .lines()
            .skip_while(|l| !l.contains("BEGIN PRIVATE KEY"))
            .nth(1)
            .unwrap();
        assert!(!err.contains(key_line), "{err}");
    }

    #[test]
    fn p8_must_be_p256() {
        check_p8_key(&pki().p8_pem).expect("test .p8");
        let rsa = check_p8_key(&pki().sa_private_key_pem).unwrap_err();
        assert!(rsa.to_string().contains("not an EC P-256 key"), "{rsa}");
        let none = check_p8_key("nothing").unwrap_err();
        assert!(none.to_string().contains("no private key"), "{none}");
        // A P-384 key (the mock CA key is P-256, so build one with the openssl CLI).
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ])
            .output()
            .expect("openssl");
        let p384 = String::from_utf8(out.stdout).unwrap();
        let err = check_p8_key(&p384).unwrap_err();
        assert!(err.to_string().contains("not an EC P-256 key"), "{err}");
    }

    #[test]
    fn service_account_checks() {
        let sa = pki().service_account_json("https://oauth2.googleapis.com/token");
        let info = check_service_account(&sa).expect("valid");
        assert_eq!(info.project_id, pki().project_id);
        assert_eq!(info.client_email, pki().client_email);

        for (field, expect) in [
            ("private_key", "lacks `private_key`"),
            ("project_id", "lacks `project_id`"),
            ("client_email", "lacks `client_email`"),
            ("token_uri", "lacks `token_uri`"),
            ("type", "lacks `type`"),
        ] {
            let mut v = sa.clone();
            v.as_object_mut().unwrap().remove(field);
            let err = check_service_account(&v).unwrap_err().to_string();
            assert!(err.contains(expect), "{field}: {err}");
        }
        let mut v = sa.clone();
        v["type"] = "authorized_user".into();
        assert!(
            check_service_account(&v)
                .unwrap_err()
                .to_string()
                .contains("\"authorized_user\"")
        );
        let mut v = sa.clone();
        v["private_key"] = pki().p8_pem.clone().into();
        assert!(
            check_service_account(&v)
                .unwrap_err()
                .to_string()
                .contains("not an RSA key")
        );
        let mut v = sa.clone();
        v["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        let err = check_service_account(&v).unwrap_err().to_string();
        assert!(err.contains("cannot be loaded"), "{err}");
        let mut v = sa.clone();
        v["token_uri"] = "ftp://x".into();
        assert!(check_service_account(&v).is_err());
        assert!(check_service_account(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn json_errors_name_line_and_column() {
        let err = parse_json("{\n  \"type\": \"service_account\",\n  oops\n}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "JSON invalid at line 3 column 3 (key must be a string)"
        );
    }

    #[test]
    fn topics_extension() {
        // SEQUENCE { UTF8 "org.a", SEQUENCE { UTF8 "app" }, UTF8 "org.a.voip", SEQUENCE { UTF8 "voip" } }
        let mut inner = Vec::new();
        for (topic, kind) in [("org.a", "app"), ("org.a.voip", "voip")] {
            inner.push(0x0C);
            inner.push(topic.len() as u8);
            inner.extend_from_slice(topic.as_bytes());
            inner.extend_from_slice(&[0x30, kind.len() as u8 + 2, 0x0C, kind.len() as u8]);
            inner.extend_from_slice(kind.as_bytes());
        }
        let mut der = vec![0x30, inner.len() as u8];
        der.extend_from_slice(&inner);
        assert_eq!(apple_topics(&der), vec!["org.a", "org.a.voip"]);
        assert!(apple_topics(&[0x04, 0x00]).is_empty());
        assert!(apple_topics(&[]).is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(NOW), "2026-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(4_102_444_800), "2100-01-01");
    }
}

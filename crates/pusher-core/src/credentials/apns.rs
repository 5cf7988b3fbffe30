//! The Apple credentials: a certificate PEM with its key (`certdata`) and a `.p8`
//! token-auth key (`token`).

use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::pem::{pem_parts, public_key_of, same_public_key};
use super::{CredentialError, date};

/// Apple's certificate extension listing the topics a push certificate may use
/// (1.2.840.113635.100.6.3.6).
const APPLE_TOPICS_OID: &str = "1.2.840.113635.100.6.3.6";
/// LDAP `UID` attribute, where Apple puts the bundle id (0.9.2342.19200300.100.1.1).
const UID_OID: &str = "0.9.2342.19200300.100.1.1";

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
    let Some((0x30, mut items, _)) = crate::der::tlv(ext_value) else {
        return topics;
    };
    while let Some((tag, content, rest)) = crate::der::tlv(items) {
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

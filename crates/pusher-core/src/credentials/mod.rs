//! Checks of the credentials an operator hands to `pusher_maintenance` (and that the
//! service loads): an APNs certificate PEM (one certificate, its matching unencrypted
//! private key, not expired), an APNs `.p8` token key (EC P-256) and a Google service
//! account. Pure: the caller reads the files and passes `now`.
//!
//! The parts: `pem` decodes blocks (private to this module), `apns` checks the Apple
//! credentials and `service_account` the Google one; their items are re-exported here.
//!
//! Every error is one sentence naming the cause and never contains key material: PEM
//! bodies are only decoded, never echoed, and library errors that could quote their
//! input are replaced by our own wording.

mod apns;
mod pem;
mod service_account;

pub use apns::{
    ApnsIdentity, apple_topics, certificate_not_after, check_apns_certificate, check_p8_key,
};
pub use service_account::{ServiceAccountInfo, check_service_account, parse_json};

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

#[cfg(test)]
mod tests;

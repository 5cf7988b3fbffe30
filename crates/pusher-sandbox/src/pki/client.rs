//! The APNs client identity files the PKI writes: one [`ClientVariant`] per format an
//! admin may hand Kazoo, and the [`ClientIdentity`] read back from disk.

use std::path::PathBuf;

use super::BUNDLE_ID;

/// The kinds of APNs client identity file the PKI holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientVariant {
    /// Certificate + RSA key as PKCS#8 (`BEGIN PRIVATE KEY`), as OpenSSL 3 writes it.
    Pkcs8,
    /// Certificate + RSA key as PKCS#1 (`BEGIN RSA PRIVATE KEY`), as `openssl rsa` writes it.
    Pkcs1,
    /// `openssl pkcs12 -nodes` output: `Bag Attributes`/`subject=`/`issuer=` text lines
    /// before the certificate and the PKCS#8 key.
    BagAttributes,
    /// Certificate signed by a CA the mock does not trust: the TLS handshake must fail.
    UntrustedCa,
    /// Certificate whose `notAfter` (2020-01-01) is in the past.
    Expired,
}

impl ClientVariant {
    /// Every variant, in a fixed order.
    pub const ALL: [ClientVariant; 5] = [
        ClientVariant::Pkcs8,
        ClientVariant::Pkcs1,
        ClientVariant::BagAttributes,
        ClientVariant::UntrustedCa,
        ClientVariant::Expired,
    ];

    /// File name of this identity inside [`TestPki::dir`].
    pub fn file_name(self) -> &'static str {
        match self {
            ClientVariant::Pkcs8 => "client-pkcs8.pem",
            ClientVariant::Pkcs1 => "client-pkcs1.pem",
            ClientVariant::BagAttributes => "client-bag-attributes.pem",
            ClientVariant::UntrustedCa => "client-untrusted-ca.pem",
            ClientVariant::Expired => "client-expired.pem",
        }
    }

    /// Bundle id in the certificate subject (`UID`); each variant has its own so that a
    /// recorded request tells which identity was used.
    pub fn bundle_id(self) -> &'static str {
        match self {
            ClientVariant::Pkcs8 => BUNDLE_ID,
            ClientVariant::Pkcs1 => "org.myorg.pkcs1",
            ClientVariant::BagAttributes => "org.myorg.bagapp",
            ClientVariant::UntrustedCa => "org.myorg.untrusted",
            ClientVariant::Expired => "org.myorg.expired",
        }
    }

    /// Subject common name, Apple style: `Apple VoIP Services: <bundle id>`.
    pub fn subject_cn(self) -> String {
        format!("Apple VoIP Services: {}", self.bundle_id())
    }

    /// Short name used in `mock.json` (`pkcs8`, `pkcs1`, `bag_attributes`, …).
    pub fn key(self) -> &'static str {
        match self {
            ClientVariant::Pkcs8 => "pkcs8",
            ClientVariant::Pkcs1 => "pkcs1",
            ClientVariant::BagAttributes => "bag_attributes",
            ClientVariant::UntrustedCa => "untrusted_ca",
            ClientVariant::Expired => "expired",
        }
    }
}

/// One APNs client identity file (certificate + unencrypted key in one PEM).
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Which variant this is.
    pub variant: ClientVariant,
    /// Where the file is.
    pub path: PathBuf,
    /// The file's content.
    pub pem: String,
    /// Subject CN of the certificate (what the APNs mock records).
    pub subject_cn: String,
    /// Bundle id (the certificate's `UID`; `apns-topic` is this, plus `.voip` for VoIP).
    pub bundle_id: String,
}

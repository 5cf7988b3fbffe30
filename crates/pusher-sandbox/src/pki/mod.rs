//! Test PKI for the mock providers, written to a directory.
//!
//! [`TestPki::generate`] creates, in about half a second:
//!
//! - a test CA (`ca.pem`, EC P-256) and a server certificate for `localhost`, `127.0.0.1`
//!   and `::1` signed by it (`server.pem` + `server-key.pem`) — what [`crate::apns_mock`]
//!   serves, and what clients must trust (`tls_certs_only`);
//! - APNs-style client identities, each a single Kazoo-style PEM file (certificate followed
//!   by its unencrypted private key), one per [`ClientVariant`]: RSA key as PKCS#8, as
//!   PKCS#1, an `openssl pkcs12 -nodes` export with `Bag Attributes` lines, a certificate
//!   from an untrusted CA and an expired certificate;
//! - an APNs token-auth key (`AuthKey_<KEYID>.p8`, PKCS#8 EC P-256) with its key and team id;
//! - a Google service-account key ([`TestPki::service_account_json`],
//!   [`TestPki::write_service_account`]) whose `token_uri` points wherever the caller says
//!   (normally [`crate::fcm_mock::MockFcm::token_uri`]).
//!
//! rcgen (on ring) cannot generate RSA keys, so the one RSA key of the client identities and
//! the service-account key come from the `openssl` CLI (`openssl genrsa -traditional` gives
//! PKCS#1, `openssl pkcs8 -topk8 -nocrypt` converts). rcgen loads the PKCS#8 form to sign
//! the certificates. Nothing here is secret: these keys exist for tests only.
//!
//! Parts: this module writes and loads the [`TestPki`]; `client` names the identity
//! variants, `certs` makes certificates and keys, `der` reads a subject CN back.

mod certs;
mod client;
mod der;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use serde_json::{Value, json};

use certs::{bag_attributes_pem, ca_params, client_params, openssl};
pub use client::{ClientIdentity, ClientVariant};
pub use der::subject_cn;

/// APNs team id of the generated token-auth key (10 characters, like Apple's).
pub const TEAM_ID: &str = "DEF123GHIJ";
/// APNs key id of the generated token-auth key (10 characters, like Apple's).
pub const KEY_ID: &str = "ABC123DEFG";
/// Bundle id of the main client identity ([`ClientVariant::Pkcs8`]).
pub const BUNDLE_ID: &str = "org.myorg.myapp";
/// Firebase project of the generated service account.
pub const PROJECT_ID: &str = "pusher-mock-project";
/// `client_email` of the generated service account.
pub const CLIENT_EMAIL: &str = "pusher-mock@pusher-mock-project.iam.gserviceaccount.com";
/// `private_key_id` of the generated service account (the JWT `kid`).
pub const PRIVATE_KEY_ID: &str = "5d0c0a6f4e2b1c3d9a8b7e6f5a4b3c2d1e0f9a8b";
/// `client_id` of the generated service account.
pub const CLIENT_ID: &str = "103456789012345678901";

/// File names inside [`TestPki::dir`].
pub mod files {
    /// Test CA certificate (trust this one).
    pub const CA: &str = "ca.pem";
    /// Test CA private key.
    pub const CA_KEY: &str = "ca-key.pem";
    /// A second CA nobody trusts; it signed [`super::ClientVariant::UntrustedCa`].
    pub const UNTRUSTED_CA: &str = "untrusted-ca.pem";
    /// Server certificate (localhost, 127.0.0.1, ::1).
    pub const SERVER_CERT: &str = "server.pem";
    /// Server private key (PKCS#8, EC P-256).
    pub const SERVER_KEY: &str = "server-key.pem";
    /// The RSA key shared by all client identities, PKCS#1.
    pub const CLIENT_KEY_PKCS1: &str = "client-key-pkcs1.pem";
    /// The RSA key shared by all client identities, PKCS#8.
    pub const CLIENT_KEY_PKCS8: &str = "client-key-pkcs8.pem";
    /// APNs token-auth key (`AuthKey_<KEY_ID>.p8`).
    pub const P8: &str = "AuthKey_ABC123DEFG.p8";
    /// Service-account RSA private key (PKCS#8).
    pub const SA_KEY: &str = "service-account-key.pem";
    /// Service-account JSON (written by [`super::TestPki::write_service_account`]).
    pub const SERVICE_ACCOUNT: &str = "service-account.json";
}

/// Same as [`TestPki::generate`].
pub fn generate(dir: &Path) -> Result<TestPki> {
    TestPki::generate(dir)
}

/// The generated test PKI. All PEM contents are also on disk under [`TestPki::dir`].
#[derive(Debug, Clone)]
pub struct TestPki {
    /// Directory holding every file.
    pub dir: PathBuf,
    /// Test CA certificate PEM.
    pub ca_pem: String,
    /// Certificate PEM of the second, untrusted CA.
    pub untrusted_ca_pem: String,
    /// Server certificate PEM (localhost, 127.0.0.1, ::1).
    pub server_cert_pem: String,
    /// Server private key PEM (PKCS#8).
    pub server_key_pem: String,
    /// Client identities, one per [`ClientVariant`] in [`ClientVariant::ALL`] order.
    pub clients: Vec<ClientIdentity>,
    /// APNs token-auth key: PKCS#8 EC P-256 PEM (`.p8` content).
    pub p8_pem: String,
    /// Key id of [`TestPki::p8_pem`].
    pub key_id: String,
    /// Team id of [`TestPki::p8_pem`].
    pub team_id: String,
    /// Service-account RSA private key, PKCS#8 PEM.
    pub sa_private_key_pem: String,
    /// Service-account `project_id`.
    pub project_id: String,
    /// Service-account `client_email`.
    pub client_email: String,
    /// Service-account `private_key_id`.
    pub private_key_id: String,
}

impl TestPki {
    /// Generate a fresh PKI into `dir` (created if missing; existing files are overwritten).
    pub fn generate(dir: &Path) -> Result<TestPki> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        let write = |name: &str, content: &str| -> Result<()> {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .with_context(|| format!("Failed to write {}", path.display()))
        };

        // CAs and server: EC P-256, generated by rcgen.
        let ca_key = KeyPair::generate()?;
        let ca = CertifiedIssuer::self_signed(ca_params("Pusher Sandbox Test CA")?, ca_key)?;
        let untrusted_key = KeyPair::generate()?;
        let untrusted_ca =
            CertifiedIssuer::self_signed(ca_params("Untrusted Test CA")?, untrusted_key)?;

        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        server_params.distinguished_name = DistinguishedName::new();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.not_before = date_time_ymd(2020, 1, 1);
        server_params.not_after = date_time_ymd(2100, 1, 1);
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        // One RSA key for every client identity; the openssl CLI makes it.
        let client_pkcs1 = openssl(&["genrsa", "-traditional", "2048"], None)?;
        let client_pkcs8 = openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&client_pkcs1))?;
        let client_key =
            KeyPair::from_pem(&client_pkcs8).context("Failed to load the client RSA key")?;

        let mut clients = Vec::new();
        for variant in ClientVariant::ALL {
            let params = client_params(variant)?;
            let cert = match variant {
                ClientVariant::UntrustedCa => params.signed_by(&client_key, &untrusted_ca)?,
                _ => params.signed_by(&client_key, &ca)?,
            };
            let cert_pem = cert.pem();
            let pem = match variant {
                ClientVariant::Pkcs1 => format!("{cert_pem}{client_pkcs1}"),
                ClientVariant::BagAttributes => {
                    bag_attributes_pem(variant, &cert_pem, &client_pkcs8)
                }
                _ => format!("{cert_pem}{client_pkcs8}"),
            };
            write(variant.file_name(), &pem)?;
            clients.push(ClientIdentity {
                variant,
                path: dir.join(variant.file_name()),
                pem,
                subject_cn: variant.subject_cn(),
                bundle_id: variant.bundle_id().to_string(),
            });
        }

        let p8 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let sa_pkcs1 = openssl(&["genrsa", "-traditional", "2048"], None)?;
        let sa_pkcs8 = openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&sa_pkcs1))?;

        let pki = TestPki {
            dir: dir.to_path_buf(),
            ca_pem: ca.pem(),
            untrusted_ca_pem: untrusted_ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            clients,
            p8_pem: p8.serialize_pem(),
            key_id: KEY_ID.to_string(),
            team_id: TEAM_ID.to_string(),
            sa_private_key_pem: sa_pkcs8,
            project_id: PROJECT_ID.to_string(),
            client_email: CLIENT_EMAIL.to_string(),
            private_key_id: PRIVATE_KEY_ID.to_string(),
        };
        write(files::CA, &pki.ca_pem)?;
        write(files::CA_KEY, &ca.key().serialize_pem())?;
        write(files::UNTRUSTED_CA, &pki.untrusted_ca_pem)?;
        write(files::SERVER_CERT, &pki.server_cert_pem)?;
        write(files::SERVER_KEY, &pki.server_key_pem)?;
        write(files::CLIENT_KEY_PKCS1, &client_pkcs1)?;
        write(files::CLIENT_KEY_PKCS8, &client_pkcs8)?;
        write(files::P8, &pki.p8_pem)?;
        write(files::SA_KEY, &pki.sa_private_key_pem)?;
        // A placeholder token_uri (discard port) until a mock's URI is known.
        pki.write_service_account("http://127.0.0.1:9/token")?;
        Ok(pki)
    }

    /// Load a PKI previously written by [`TestPki::generate`].
    pub fn load(dir: &Path) -> Result<TestPki> {
        let read = |name: &str| -> Result<String> {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .with_context(|| format!("Failed to read {}", path.display()))
        };
        let mut clients = Vec::new();
        for variant in ClientVariant::ALL {
            clients.push(ClientIdentity {
                variant,
                path: dir.join(variant.file_name()),
                pem: read(variant.file_name())?,
                subject_cn: variant.subject_cn(),
                bundle_id: variant.bundle_id().to_string(),
            });
        }
        Ok(TestPki {
            dir: dir.to_path_buf(),
            ca_pem: read(files::CA)?,
            untrusted_ca_pem: read(files::UNTRUSTED_CA)?,
            server_cert_pem: read(files::SERVER_CERT)?,
            server_key_pem: read(files::SERVER_KEY)?,
            clients,
            p8_pem: read(files::P8)?,
            key_id: KEY_ID.to_string(),
            team_id: TEAM_ID.to_string(),
            sa_private_key_pem: read(files::SA_KEY)?,
            project_id: PROJECT_ID.to_string(),
            client_email: CLIENT_EMAIL.to_string(),
            private_key_id: PRIVATE_KEY_ID.to_string(),
        })
    }

    /// [`TestPki::load`] if every file is present in `dir`, else [`TestPki::generate`].
    pub fn load_or_generate(dir: &Path) -> Result<TestPki> {
        let complete = [
            files::CA,
            files::UNTRUSTED_CA,
            files::SERVER_CERT,
            files::SERVER_KEY,
            files::P8,
            files::SA_KEY,
        ]
        .into_iter()
        .chain(ClientVariant::ALL.map(ClientVariant::file_name))
        .all(|name| dir.join(name).is_file());
        if complete {
            TestPki::load(dir)
        } else {
            TestPki::generate(dir)
        }
    }

    /// Path of a file of this PKI (see [`files`] and [`ClientVariant::file_name`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The client identity of a variant.
    pub fn client(&self, variant: ClientVariant) -> &ClientIdentity {
        // `clients` is built from ClientVariant::ALL, so the position is the index.
        let index = ClientVariant::ALL
            .iter()
            .position(|v| *v == variant)
            .unwrap_or(0);
        &self.clients[index]
    }

    /// Path of the `.p8` token-auth key.
    pub fn p8_path(&self) -> PathBuf {
        self.path(files::P8)
    }

    /// The Google service-account JSON, with `token_uri` set to `token_uri`.
    pub fn service_account_json(&self, token_uri: &str) -> Value {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.sa_private_key_pem,
            "client_email": self.client_email,
            "client_id": CLIENT_ID,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                self.client_email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        })
    }

    /// Write [`TestPki::service_account_json`] to `service-account.json`; returns its path.
    pub fn write_service_account(&self, token_uri: &str) -> Result<PathBuf> {
        let path = self.path(files::SERVICE_ACCOUNT);
        let text = serde_json::to_string_pretty(&self.service_account_json(token_uri))?;
        std::fs::write(&path, text)
            .with_context(|| format!("Failed to write {}", path.display()))?;
        Ok(path)
    }
}

//! TLS of `amqps://` brokers: the rustls client (ring) built from a URI's
//! [`TlsOptions`], and the handshake on a freshly opened TCP stream.
//!
//! The files named by the URI (`cacertfile`, `certfile`, `keyfile`) are read each time a
//! client is built, that is at every connect: a renewed certificate is picked up at the
//! next reconnect without a restart. Their contents are never logged; their paths are.

use std::io;
use std::sync::Arc;

use lapin::tcp::RustlsConnector;
use pusher_core::amqp_uri::{TlsOptions, Verify};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Error, Result};

/// A ready TLS client for one broker: the connector and the name to verify.
#[derive(Clone)]
pub(super) struct TlsClient {
    pub(super) connector: RustlsConnector,
    /// Name the certificate is checked against (and sent as SNI unless disabled).
    pub(super) server_name: String,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Reads the files of `opts` and builds the client for a broker at `host`.
    pub(super) fn load(opts: &TlsOptions, host: &str) -> Result<Self> {
        let config = client_config(opts)?;
        let (sni, name) = opts.names(host);
        let mut config = config;
        config.enable_sni = sni.is_some();
        // Validate the name now, so a bad `server_name_indication` is a settings error,
        // not a connect failure.
        ServerName::try_from(name).map_err(|e| Error::Tls(format!("server name {name:?}: {e}")))?;
        Ok(Self {
            connector: RustlsConnector::from(Arc::new(config)),
            server_name: name.to_string(),
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(opts: &TlsOptions) -> Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(format!("TLS versions: {e}")))?;
    let builder = match (opts.verify, &opts.cacertfile) {
        (Verify::None, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
        (Verify::Peer, Some(path)) => {
            let mut roots = RootCertStore::empty();
            let certs = read_certs("cacertfile", path)?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Tls(format!(
                    "cacertfile {path}: no usable CA certificate in it"
                )));
            }
            builder.with_root_certificates(roots)
        }
        (Verify::Peer, None) => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| Error::Tls(format!("system roots: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    match &opts.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some(c) => {
            let certs = read_certs("certfile", &c.certfile)?;
            let key = PrivateKeyDer::from_pem_file(&c.keyfile).map_err(|e| {
                Error::Tls(format!(
                    "keyfile {}: no unencrypted PEM private key could be read ({e})",
                    c.keyfile
                ))
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                Error::Tls(format!(
                    "certfile {} and keyfile {} do not make a client certificate: {e}",
                    c.certfile, c.keyfile
                ))
            })
        }
    }
}

fn read_certs(param: &str, path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("{param} {path}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{param} {path}: no PEM CERTIFICATE in the file"
        )));
    }
    Ok(certs)
}

/// Makes a failed handshake say what happened and what to check, in one sentence.
pub(super) fn handshake_error(err: io::Error, broker: &str, server_name: &str) -> io::Error {
    let hint = match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => format!(
                " (the broker's certificate is not for {server_name:?}: check the host or server_name_indication)"
            ),
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                " (the broker's certificate has expired)".to_string()
            }
            _ => " (the broker's certificate is not signed by a trusted CA: check cacertfile)"
                .to_string(),
        },
        Some(rustls::Error::AlertReceived(_)) => {
            " (the broker refused us: does it require a client certificate (certfile, keyfile) it trusts?)".to_string()
        }
        _ => String::new(),
    };
    io::Error::new(
        err.kind(),
        format!("TLS handshake with {broker} failed: {err}{hint}"),
    )
}

/// A TLS alert the broker sent once the handshake was over (TLS 1.3 checks the client
/// certificate then), turned into the same one sentence as [`handshake_error`].
pub(super) fn late_alert(err: lapin::Error, broker: &str) -> lapin::Error {
    if let lapin::ErrorKind::IOError(io) = err.kind()
        && let Some(rustls::Error::AlertReceived(alert)) =
            io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return io::Error::new(
            io.kind(),
            format!(
                "TLS with {broker} failed: the broker sent alert {alert:?} (does it require a \
                 client certificate (certfile, keyfile) signed by a CA it trusts?)"
            ),
        )
        .into();
    }
    err
}

/// `verify=verify_none`: accepts any certificate, but still checks that the broker holds
/// the key of the one it sent (the handshake signatures).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pusher_core::amqp_uri::{AmqpUri, ClientCert, ServerName as Sni};

    /// A CA and a client certificate it signed, written to a directory of their own.
    struct Files {
        dir: std::path::PathBuf,
    }

    impl Files {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("pusher-io-tls-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let ca_key = rcgen::KeyPair::generate().expect("key");
            let mut ca_params =
                rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
            let client_key = rcgen::KeyPair::generate().expect("key");
            let client = rcgen::CertificateParams::new(vec!["client".to_string()])
                .expect("params")
                .signed_by(&client_key, &ca)
                .expect("client certificate");
            let other_key = rcgen::KeyPair::generate().expect("key");
            for (name, text) in [
                ("ca.pem", ca.pem()),
                ("client.pem", client.pem()),
                ("client.key", client_key.serialize_pem()),
                ("other.key", other_key.serialize_pem()),
            ] {
                std::fs::write(dir.join(name), text).expect("write");
            }
            Self { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.join(name).display().to_string()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn options(uri: &str) -> (TlsOptions, String) {
        let u = AmqpUri::parse(uri).expect("uri");
        (u.tls().expect("amqps").clone(), u.host().to_string())
    }

    fn load_err(opts: &TlsOptions) -> String {
        match TlsClient::load(opts, "127.0.0.1") {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn clients_build_from_the_uri_options() {
        let f = Files::new("build");
        let (opts, host) = options(&format!(
            "amqps://h/?cacertfile={}&certfile={}&keyfile={}",
            f.path("ca.pem"),
            f.path("client.pem"),
            f.path("client.key")
        ));
        let c = TlsClient::load(&opts, &host).expect("mutual TLS client");
        assert_eq!(c.server_name, "h");

        let (opts, host) = options("amqps://10.0.0.1/?server_name_indication=rabbit.example");
        let c = TlsClient::load(&opts, &host).expect("system roots");
        assert_eq!(c.server_name, "rabbit.example");

        let (opts, host) =
            options("amqps://[::1]/?server_name_indication=disable&verify=verify_none");
        assert_eq!(opts.server_name, Sni::Disabled);
        let c = TlsClient::load(&opts, &host).expect("verify_none");
        assert_eq!(c.server_name, "::1");
    }

    #[test]
    fn unusable_files_are_named_without_their_contents() {
        let f = Files::new("errors");
        let mut opts = TlsOptions {
            cacertfile: Some(f.path("missing.pem")),
            client_cert: None,
            server_name: Sni::UriHost,
            verify: Verify::Peer,
        };
        let msg = load_err(&opts);
        assert!(
            msg.starts_with(&format!(
                "broker TLS: cacertfile {}: ",
                f.path("missing.pem")
            )),
            "{msg}"
        );

        // A key where the CA should be.
        opts.cacertfile = Some(f.path("client.key"));
        let msg = load_err(&opts);
        assert!(msg.ends_with("no PEM CERTIFICATE in the file"), "{msg}");
        assert!(!msg.contains("PRIVATE KEY"), "{msg}");

        // A certificate where the key should be, then a key of another certificate.
        opts.cacertfile = Some(f.path("ca.pem"));
        opts.client_cert = Some(ClientCert {
            certfile: f.path("client.pem"),
            keyfile: f.path("client.pem"),
        });
        let msg = load_err(&opts);
        assert!(
            msg.contains(&format!(
                "keyfile {}: no unencrypted PEM private key",
                f.path("client.pem")
            )),
            "{msg}"
        );
        opts.client_cert = Some(ClientCert {
            certfile: f.path("client.pem"),
            keyfile: f.path("other.key"),
        });
        let msg = load_err(&opts);
        assert!(msg.contains("do not make a client certificate"), "{msg}");
    }

    #[test]
    fn handshake_failures_say_what_to_check() {
        let err = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let msg = handshake_error(
            err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
            "10.0.0.1:5671",
            "10.0.0.1",
        )
        .to_string();
        assert_eq!(
            msg,
            "TLS handshake with 10.0.0.1:5671 failed: invalid peer certificate: UnknownIssuer \
             (the broker's certificate is not signed by a trusted CA: check cacertfile)"
        );
        let msg = handshake_error(
            err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
            "10.0.0.1:5671",
            "rabbit.example",
        )
        .to_string();
        assert!(msg.ends_with("(the broker's certificate is not for \"rabbit.example\": check the host or server_name_indication)"), "{msg}");
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            handshake_error(refused, "h:1", "h").to_string(),
            "TLS handshake with h:1 failed: refused"
        );

        let late = late_alert(
            err(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired,
            ))
            .into(),
            "h:5671",
        );
        assert!(late.to_string().contains("TLS with h:5671 failed: the broker sent alert CertificateRequired (does it require a client certificate"), "{late}");
    }
}

//! The generated PKI: files, formats, and an independent check with the openssl CLI.

use std::process::Command;
use std::time::Instant;

use pusher_sandbox::pki::{self, ClientVariant, TestPki, files};

use crate::common::{pki, scratch_dir};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn generate_is_fast_and_load_round_trips() {
    let dir = scratch_dir("pki-gen");
    let started = Instant::now();
    let generated = TestPki::generate(&dir).unwrap();
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
    let loaded = TestPki::load_or_generate(&dir).unwrap();
    assert_eq!(
        loaded.ca_pem, generated.ca_pem,
        "load_or_generate must reuse a complete dir"
    );
    assert_eq!(
        loaded.client(ClientVariant::Pkcs1).pem,
        generated.client(ClientVariant::Pkcs1).pem
    );
    assert_eq!(loaded.p8_pem, generated.p8_pem);
    assert_eq!(loaded.sa_private_key_pem, generated.sa_private_key_pem);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_files_have_the_promised_formats() {
    let pki = pki();
    let pem = |v| &pki.client(v).pem;
    assert!(pem(ClientVariant::Pkcs8).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(pem(ClientVariant::Pkcs8).contains("-----BEGIN PRIVATE KEY-----"));
    assert!(pem(ClientVariant::Pkcs1).contains("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(!pem(ClientVariant::Pkcs1).contains("-----BEGIN PRIVATE KEY-----"));
    let bag = pem(ClientVariant::BagAttributes);
    assert!(
        bag.starts_with(
            "Bag Attributes\n    friendlyName: Apple VoIP Services: org.myorg.bagapp\n"
        )
    );
    assert!(
        bag.contains("\nsubject=/UID=org.myorg.bagapp/CN=Apple VoIP Services: org.myorg.bagapp")
    );
    assert!(bag.contains("Key Attributes: <No Attributes>\n-----BEGIN PRIVATE KEY-----"));
    for v in ClientVariant::ALL {
        let c = pki.client(v);
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), c.pem);
        assert_eq!(c.path, pki.path(v.file_name()));
    }
    // Kazoo's PEMs hold exactly one key.
    for v in ClientVariant::ALL {
        let keys = pki
            .client(v)
            .pem
            .lines()
            .filter(|l| l.starts_with("-----BEGIN") && l.ends_with("PRIVATE KEY-----"));
        assert_eq!(keys.count(), 1, "{v:?}");
    }
}

#[test]
fn openssl_agrees_on_chain_expiry_and_subject() {
    let pki = pki();
    let ca = pki.path(files::CA);
    let ca = ca.to_str().unwrap();
    for v in ClientVariant::ALL {
        let path = pki.client(v).path.clone();
        let (ok, out) = openssl(&["verify", "-CAfile", ca, path.to_str().unwrap()]);
        match v {
            ClientVariant::UntrustedCa => assert!(!ok, "{v:?} must not verify: {out}"),
            ClientVariant::Expired => {
                assert!(
                    !ok && out.contains("expired"),
                    "{v:?} must be expired: {out}"
                )
            }
            _ => assert!(ok, "{v:?} must verify: {out}"),
        }
        let (_, subject) = openssl(&[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "multiline",
            "-in",
            path.to_str().unwrap(),
        ]);
        assert!(
            subject.contains(&format!("commonName                = {}", v.subject_cn())),
            "{subject}"
        );
        assert!(
            subject.contains(&format!("userId                    = {}", v.bundle_id())),
            "{subject}"
        );
        // The key in the file matches the certificate (compare public keys).
        let (_, cert_pub) = openssl(&["x509", "-noout", "-pubkey", "-in", path.to_str().unwrap()]);
        let (_, key_pub) = openssl(&["pkey", "-pubout", "-in", path.to_str().unwrap()]);
        assert_eq!(cert_pub, key_pub, "{v:?}");
        assert!(cert_pub.contains("BEGIN PUBLIC KEY"));
    }
    let server = pki.path(files::SERVER_CERT);
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        ca,
        "-purpose",
        "sslserver",
        server.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (_, text) = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        server.to_str().unwrap(),
    ]);
    assert!(
        text.contains("DNS:localhost")
            && text.contains("IP Address:127.0.0.1")
            && text.contains("IP Address:0:0:0:0:0:0:0:1"),
        "{text}"
    );
    // The RSA key really is 2048-bit RSA, and the .p8 an EC P-256 key.
    let (_, rsa) = openssl(&[
        "pkey",
        "-noout",
        "-text",
        "-in",
        pki.path(files::CLIENT_KEY_PKCS1).to_str().unwrap(),
    ]);
    assert!(rsa.contains("Private-Key: (2048 bit"), "{rsa}");
    let (_, ec) = openssl(&[
        "pkey",
        "-noout",
        "-text",
        "-in",
        pki.p8_path().to_str().unwrap(),
    ]);
    assert!(ec.contains("prime256v1") || ec.contains("P-256"), "{ec}");
}

#[test]
fn subject_cn_matches_the_certificates() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pki = pki();
    for v in ClientVariant::ALL {
        let der = CertificateDer::pem_slice_iter(pki.client(v).pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(pki::subject_cn(&der).unwrap(), v.subject_cn());
    }
}

#[test]
fn service_account_json_has_google_fields() {
    let pki = pki();
    let sa = pki.service_account_json("http://127.0.0.1:1/token");
    assert_eq!(sa["type"], "service_account");
    assert_eq!(sa["project_id"], pki::PROJECT_ID);
    assert_eq!(sa["private_key_id"], pki::PRIVATE_KEY_ID);
    assert_eq!(sa["client_email"], pki::CLIENT_EMAIL);
    assert_eq!(sa["token_uri"], "http://127.0.0.1:1/token");
    assert!(
        sa["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert!(sa["client_id"].is_string());
    assert_eq!(pki.key_id.len(), 10);
    assert_eq!(pki.team_id.len(), 10);
}

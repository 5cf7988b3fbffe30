//! Tests of the credential checks, on committed test-only credentials (see
//! `crates/pusher-core/tests/data/README.md` for how they were made).

use super::*;
use serde_json::{Value, json};

const NOW: i64 = 1_767_225_600; // 2026-01-01

/// The APNs client identities of the fixtures (as `pusher_sandbox::pki` makes them).
#[derive(Debug, Clone, Copy)]
enum ClientVariant {
    Pkcs8,
    Pkcs1,
    BagAttributes,
    Expired,
}

impl ClientVariant {
    fn pem(self) -> &'static str {
        match self {
            ClientVariant::Pkcs8 => include_str!("../../tests/data/client-pkcs8.pem"),
            ClientVariant::Pkcs1 => include_str!("../../tests/data/client-pkcs1.pem"),
            ClientVariant::BagAttributes => {
                include_str!("../../tests/data/client-bag-attributes.pem")
            }
            ClientVariant::Expired => include_str!("../../tests/data/client-expired.pem"),
        }
    }

    fn bundle_id(self) -> &'static str {
        match self {
            ClientVariant::Pkcs8 => "org.myorg.myapp",
            ClientVariant::Pkcs1 => "org.myorg.pkcs1",
            ClientVariant::BagAttributes => "org.myorg.bagapp",
            ClientVariant::Expired => "org.myorg.expired",
        }
    }

    fn subject_cn(self) -> String {
        format!("Apple VoIP Services: {}", self.bundle_id())
    }
}

/// The `.p8` token key (PKCS#8 EC P-256).
const P8_PEM: &str = include_str!("../../tests/data/token-key.p8");
/// The service account's RSA key (PKCS#8).
const SA_KEY_PEM: &str = include_str!("../../tests/data/service-account-key.pem");
/// An EC P-384 key (not usable for APNs tokens).
const P384_PEM: &str = include_str!("../../tests/data/ec-p384.pem");
const PROJECT_ID: &str = "pusher-mock-project";
const CLIENT_EMAIL: &str = "pusher-mock@pusher-mock-project.iam.gserviceaccount.com";

/// A Google-style service account around [`SA_KEY_PEM`].
fn service_account_json(token_uri: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": "5d0c0a6f4e2b1c3d9a8b7e6f5a4b3c2d1e0f9a8b",
        "private_key": SA_KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "token_uri": token_uri,
    })
}

fn cert_only(pem: &str) -> String {
    let start = pem.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = pem.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    pem[start..end].to_string()
}

#[test]
fn accepts_every_export_format() {
    for (variant, format) in [
        (ClientVariant::Pkcs8, "PKCS#8"),
        (ClientVariant::Pkcs1, "RSA (PKCS#1)"),
        (ClientVariant::BagAttributes, "PKCS#8"),
    ] {
        let id = check_apns_certificate(variant.pem(), NOW)
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
    let err = check_apns_certificate(ClientVariant::Expired.pem(), NOW).unwrap_err();
    assert_eq!(err, CredentialError::Expired("2020-01-01".into()));
    assert_eq!(
        err.to_string(),
        "the certificate expired on 2020-01-01; renew it in the Apple developer portal"
    );
    let early = check_apns_certificate(ClientVariant::Pkcs8.pem(), 0).unwrap_err();
    assert_eq!(early, CredentialError::NotYetValid("2020-01-01".into()));
}

#[test]
fn refuses_missing_extra_and_mismatched_keys() {
    let pem = ClientVariant::Pkcs8.pem();
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

    let two_keys = format!("{pem}{}", SA_KEY_PEM);
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

    let wrong_key = format!("{cert}{}", SA_KEY_PEM);
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
    let pem = ClientVariant::Pkcs8.pem();
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
    check_p8_key(P8_PEM).expect("test .p8");
    let rsa = check_p8_key(SA_KEY_PEM).unwrap_err();
    assert!(rsa.to_string().contains("not an EC P-256 key"), "{rsa}");
    let none = check_p8_key("nothing").unwrap_err();
    assert!(none.to_string().contains("no private key"), "{none}");
    // A P-384 key: EC, but not the curve ES256 needs.
    let err = check_p8_key(P384_PEM).unwrap_err();
    assert!(err.to_string().contains("not an EC P-256 key"), "{err}");
}

#[test]
fn service_account_checks() {
    let sa = service_account_json("https://oauth2.googleapis.com/token");
    let info = check_service_account(&sa).expect("valid");
    assert_eq!(info.project_id, PROJECT_ID);
    assert_eq!(info.client_email, CLIENT_EMAIL);

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
    v["private_key"] = P8_PEM.into();
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
    assert!(check_service_account(&json!([1])).is_err());
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

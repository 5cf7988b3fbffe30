use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::SignatureScheme;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::grant::{Account, TokenAnswer, assertion_parts, read_token_answer, token_request_body};
use super::*;

const SA_KEY: &str = include_str!("../../../pusher-core/tests/data/service-account-key.pem");

fn sa(token_uri: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": "proj-1",
        "private_key_id": "kid-1",
        "private_key": SA_KEY,
        "client_email": "pusher@proj-1.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    })
}

fn config(timeout: Duration) -> ClientConfig {
    ClientConfig {
        base_url: "http://127.0.0.1:9".into(),
        extra_roots_pem: None,
        request_timeout: timeout,
    }
}

#[test]
fn token_answers_are_read() {
    let issued = read_token_answer(
        200,
        br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
    );
    assert_eq!(
        issued,
        TokenAnswer::Issued {
            access_token: "ya29.x".into(),
            expires_in: Duration::from_secs(3599)
        }
    );
    assert_eq!(
        read_token_answer(200, br#"{"access_token":"t"}"#),
        TokenAnswer::Issued {
            access_token: "t".into(),
            expires_in: Duration::from_secs(3600)
        }
    );
    assert!(matches!(
        read_token_answer(200, br#"{"access_token":""}"#),
        TokenAnswer::Failed(_)
    ));
    assert!(matches!(
        read_token_answer(200, b"<html>"),
        TokenAnswer::Failed(_)
    ));
    let refused = |status, body: &[u8]| match read_token_answer(status, body) {
        TokenAnswer::Refused { reason, .. } => reason,
        other => panic!("{status}: {other:?}"),
    };
    assert_eq!(
        refused(
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
        ),
        "oauth:invalid_grant"
    );
    assert_eq!(
        refused(401, br#"{"error":"unauthorized_client"}"#),
        "oauth:unauthorized_client"
    );
    assert_eq!(refused(401, b""), "oauth:HTTP 401");
    assert_eq!(refused(403, b"Forbidden"), "oauth:HTTP 403");
    // A code that is not a code is not echoed into the reason.
    assert_eq!(
        refused(400, br#"{"error":"<script>alert(1)</script>"}"#),
        "oauth:HTTP 400"
    );
    for status in [408, 429, 500, 502, 503, 504, 302] {
        assert!(
            matches!(read_token_answer(status, b"{}"), TokenAnswer::Failed(_)),
            "{status}"
        );
    }
    let TokenAnswer::Failed(why) =
        read_token_answer(503, br#"{"error":"temporarily_unavailable"}"#)
    else {
        panic!("503 is transient")
    };
    assert!(why.contains("HTTP 503 temporarily_unavailable"), "{why}");
}

#[test]
fn assertion_claims_follow_google() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let (header, claims) =
        assertion_parts("a@b.iam", "https://oauth2.example/token", Some("k1"), now);
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}));
    assert_eq!(claims["iss"], "a@b.iam");
    assert_eq!(claims["aud"], "https://oauth2.example/token");
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(claims["iat"], 1_700_000_000u64);
    assert_eq!(claims["exp"], 1_700_003_600u64);
    let (header, _) = assertion_parts("a", "b", None, now);
    assert!(header.get("kid").is_none());
}

#[test]
fn the_assertion_is_a_verifiable_rs256_jwt() {
    let account = Account::from_json(&sa("http://127.0.0.1:9/token")).expect("account");
    let jwt = account.assertion(SystemTime::now()).expect("signed");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert!(!jwt.contains('='), "unpadded base64url");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(header["kid"], "kid-1");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    assert_eq!(claims["iss"], "pusher@proj-1.iam.gserviceaccount.com");
    // Checked against the public half with the same ring primitives a server uses.
    let der = PrivateKeyDer::from_pem_slice(SA_KEY.as_bytes()).expect("der");
    let key = rustls::crypto::ring::sign::any_supported_type(&der).expect("key");
    let signer = key
        .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
        .expect("RS256");
    let again = signer
        .sign(format!("{}.{}", parts[0], parts[1]).as_bytes())
        .expect("sign");
    // PKCS#1 v1.5 is deterministic: same input, same signature.
    assert_eq!(URL_SAFE_NO_PAD.encode(again), parts[2]);
}

#[test]
fn form_body_is_encoded() {
    assert_eq!(
        token_request_body("a.b-c_d"),
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b-c_d"
    );
}

#[test]
fn unusable_accounts_are_refused_at_build_time() {
    let mut bad = sa("http://127.0.0.1:9/token");
    bad["private_key"] = json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    assert!(matches!(
        Client::new(&bad, config(Duration::from_secs(1))),
        Err(Error::ServiceAccount(_))
    ));
    let mut ec = sa("http://127.0.0.1:9/token");
    ec["private_key"] = json!(include_str!("../../../pusher-core/tests/data/token-key.p8"));
    assert!(Client::new(&ec, config(Duration::from_secs(1))).is_err());
    let client = Client::new(
        &sa("http://127.0.0.1:9/token"),
        config(Duration::from_secs(1)),
    )
    .expect("client");
    assert!(!format!("{client:?}").contains("PRIVATE"));
    assert_eq!(client.project_id(), "proj-1");
}

#[test]
fn classification() {
    assert!(Error::Token("x".into()).is_transient());
    assert!(Error::Transport("x".into()).is_transient());
    assert!(!Error::TokenRefused("oauth:invalid_grant".into()).is_transient());
    assert!(!Error::ServiceAccount("x".into()).is_transient());
}

/// A listener that accepts connections and never answers, counting them.
async fn silent_endpoint() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    (format!("http://{addr}/token"), accepted)
}

#[tokio::test]
async fn a_silent_token_endpoint_is_one_request_that_times_out() {
    let (uri, accepted) = silent_endpoint().await;
    let timeout = Duration::from_millis(1500);
    let client = Arc::new(Client::new(&sa(&uri), config(timeout)).expect("client"));
    let started = Instant::now();
    // Callers that give up early (their push deadline) hold nothing.
    for _ in 0..5 {
        let give_up = tokio::time::timeout(
            Duration::from_millis(20),
            client.send("/v1/projects/proj-1/messages:send", &json!({})),
        )
        .await;
        assert!(give_up.is_err(), "still waiting for the token");
    }
    // The ones that wait all get the one request's timeout.
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                c.send("/v1/projects/proj-1/messages:send", &json!({}))
                    .await
            })
        })
        .collect();
    for w in waiters {
        let err = w.await.expect("join").expect_err("no token");
        assert!(matches!(err, Error::Token(_)), "{err:?}");
        assert!(err.is_transient());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "bounded by the request timeout: {elapsed:?}"
    );
    assert_eq!(client.token_requests(), 1, "single flight while hung");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The next caller starts a new request.
    let err = client
        .send("/v1/projects/proj-1/messages:send", &json!({}))
        .await
        .expect_err("still silent");
    assert!(err.is_transient());
    assert_eq!(client.token_requests(), 2);
}

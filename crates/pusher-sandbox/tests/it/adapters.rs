//! Our provider adapters (`pusher_io::fcm`, `pusher_io::apns`) against the mocks, at the
//! edges issue #12 names: a token endpoint that never answers, refuses the account or
//! fails for a while; FCM and OAuth over TLS with a private CA; a burst of refused
//! credentials. Each case asserts what the mock saw, not only what the adapter returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pusher_core::apns::ApnsRequest;
use pusher_io::apns::{self, TokenSigner};
use pusher_io::fcm;
use pusher_sandbox::apns_mock::{ApnsMockConfig, MockApns, Reply};
use pusher_sandbox::fcm_mock::{FcmMockConfig, MockFcm, ServerIdentity, TokenReply};
use pusher_sandbox::pki::PROJECT_ID;
use serde_json::{Value, json};

use crate::common::pki;

/// Hang guard for anything a test waits on.
const GUARD: Duration = Duration::from_secs(20);

async fn fcm_mock(cfg: FcmMockConfig) -> (MockFcm, Value) {
    let mock = MockFcm::start(cfg).await.expect("mock FCM");
    let sa = pki().service_account_json(&mock.token_uri());
    mock.add_service_account(&sa).expect("register account");
    (mock, sa)
}

fn fcm_client(mock: &MockFcm, sa: &Value, ca: Option<&str>, timeout: Duration) -> fcm::Client {
    fcm::Client::new(
        sa,
        fcm::ClientConfig {
            base_url: mock.base_url(),
            extra_roots_pem: ca.map(|pem| pem.as_bytes().to_vec()),
            request_timeout: timeout,
        },
    )
    .expect("FCM client")
}

fn send_path() -> String {
    format!("/v1/projects/{PROJECT_ID}/messages:send")
}

fn message(token: &str) -> Value {
    json!({"message": {"token": token, "data": {"k": "v"}}})
}

async fn send(client: &fcm::Client, token: &str) -> fcm::Result<fcm::Response> {
    tokio::time::timeout(GUARD, client.send(&send_path(), &message(token)))
        .await
        .expect("hang guard")
}

#[tokio::test]
async fn fcm_and_its_token_endpoint_over_tls_need_the_extra_ca() {
    let (mock, sa) = fcm_mock(FcmMockConfig {
        tls: Some(ServerIdentity::from_pki(pki())),
        ..Default::default()
    })
    .await;
    assert!(mock.token_uri().starts_with("https://"));

    let trusting = fcm_client(&mock, &sa, Some(&pki().ca_pem), Duration::from_secs(5));
    let resp = send(&trusting, "tls1").await.expect("sent over TLS");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(mock.requests_for_token("tls1"), 1);

    // Without the CA: the token request fails the handshake, clearly, and is transient
    // (a TLS-inspecting proxy being fixed is an outage, not a revoked key).
    let strict = fcm_client(&mock, &sa, None, Duration::from_secs(5));
    let err = send(&strict, "tls2").await.expect_err("untrusted server");
    assert!(matches!(err, fcm::Error::Token(_)), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "the TLS failure is named: {text}"
    );
    // The handshake failed before HTTP: the mock saw no further request.
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(mock.requests_for_token("tls2"), 0);

    // Trusting another CA is no better: TLS is always verified.
    let wrong = fcm_client(
        &mock,
        &sa,
        Some(&pki().untrusted_ca_pem),
        Duration::from_secs(5),
    );
    assert!(send(&wrong, "tls3").await.is_err());
    assert_eq!(mock.token_requests(), 1);
}

#[tokio::test]
async fn a_hung_token_endpoint_is_one_request_and_holds_no_caller() {
    let (mock, sa) = fcm_mock(FcmMockConfig::default()).await;
    // The first token request never gets an answer; later ones do.
    mock.script_token_endpoint(vec![
        TokenReply::Issue.delayed(Duration::MAX),
        TokenReply::Issue,
    ]);
    let timeout = Duration::from_secs(4);
    let client = Arc::new(fcm_client(&mock, &sa, None, timeout));
    let started = Instant::now();

    // Twenty pushes, each with its own short deadline, all give up on time.
    let pushes: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let res = tokio::time::timeout(
                    Duration::from_millis(300),
                    client.send(&send_path(), &message(&format!("hung{i}"))),
                )
                .await;
                (res.is_err(), began.elapsed())
            })
        })
        .collect();
    for p in pushes {
        let (timed_out, took) = p.await.expect("join");
        assert!(timed_out, "no token can arrive");
        assert!(
            took < Duration::from_secs(2),
            "returned at its deadline: {took:?}"
        );
    }
    assert_eq!(
        mock.token_requests(),
        1,
        "single flight while the endpoint hangs"
    );
    assert_eq!(mock.unanswered(), 1);

    // A caller that waits gets the request's own timeout, not a hang.
    let err = send(&client, "patient").await.expect_err("no token");
    assert!(matches!(err, fcm::Error::Token(_)), "{err:?}");
    assert!(
        started.elapsed() < timeout + Duration::from_secs(3),
        "ended by the request timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(mock.token_requests(), 1);

    // Nothing is left held: the next push asks again and goes through.
    let resp = send(&client, "after")
        .await
        .expect("token endpoint answers now");
    assert_eq!(resp.status, 200);
    assert_eq!(mock.token_requests(), 2);
    assert_eq!(mock.requests_for_token("after"), 1);
    assert_eq!(client.token_requests(), 2);
}

#[tokio::test]
async fn a_refused_account_is_final_and_not_asked_again_at_once() {
    let (mock, sa) = fcm_mock(FcmMockConfig::default()).await;
    let client = fcm_client(&mock, &sa, None, Duration::from_secs(5));
    assert_eq!(send(&client, "ok1").await.expect("sent").status, 200);

    // The key is deleted in the console: Google answers invalid_grant.
    let email = sa["client_email"].as_str().expect("client_email");
    assert!(mock.remove_service_account(email));
    let refused = send(&client, "rev1")
        .await
        .expect("sent with the old token");
    assert_eq!(refused.status, 401, "its token was revoked too");
    assert!(client.renew(refused.credential));
    let err = send(&client, "rev1").await.expect_err("refused");
    match &err {
        fcm::Error::TokenRefused(reason) => assert_eq!(reason, "oauth:invalid_grant"),
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(mock.token_requests(), 2);

    // Pushes right after are refused without another token request.
    for i in 0..5 {
        let again = send(&client, &format!("rev{i}")).await.expect_err("held");
        assert!(matches!(again, fcm::Error::TokenRefused(_)), "{again:?}");
    }
    assert_eq!(mock.token_requests(), 2);
    assert_eq!(
        mock.requests_for_token("rev1"),
        1,
        "never sent without a token"
    );

    // 401 unauthorized_client is a refusal too.
    let (other, sa2) = fcm_mock(FcmMockConfig::default()).await;
    other.script_token_endpoint(vec![TokenReply::fail(401, "unauthorized_client")]);
    let client2 = fcm_client(&other, &sa2, None, Duration::from_secs(5));
    match send(&client2, "x").await {
        Err(fcm::Error::TokenRefused(reason)) => assert_eq!(reason, "oauth:unauthorized_client"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failing_token_endpoint_is_transient() {
    let (mock, sa) = fcm_mock(FcmMockConfig::default()).await;
    mock.script_token_endpoint(vec![
        TokenReply::fail(503, "temporarily_unavailable"),
        TokenReply::fail(500, "internal_failure"),
        TokenReply::fail(429, "rate_limit_exceeded"),
        TokenReply::Issue,
    ]);
    let client = fcm_client(&mock, &sa, None, Duration::from_secs(5));
    for status in ["503", "500", "429"] {
        let err = send(&client, "t").await.expect_err("endpoint failing");
        assert!(matches!(err, fcm::Error::Token(_)), "{err:?}");
        assert!(err.to_string().contains(status), "{err}");
    }
    assert_eq!(send(&client, "t").await.expect("recovered").status, 200);
    assert_eq!(mock.token_requests(), 4);
}

#[tokio::test]
async fn a_burst_of_401_fetches_one_new_token() {
    let (mock, sa) = fcm_mock(FcmMockConfig {
        token_latency: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let client = Arc::new(fcm_client(&mock, &sa, None, Duration::from_secs(5)));
    let burst = |prefix: &'static str| {
        let client = client.clone();
        async move {
            let tasks: Vec<_> = (0..10)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move { send(&client, &format!("{prefix}{i}")).await })
                })
                .collect();
            let mut out = vec![];
            for t in tasks {
                out.push(t.await.expect("join").expect("sent"));
            }
            out
        }
    };
    // Ten cold pushes: one token request.
    assert!(burst("a").await.iter().all(|r| r.status == 200));
    assert_eq!(mock.token_requests(), 1);
    mock.revoke_all_tokens();
    let refused = burst("b").await;
    assert!(refused.iter().all(|r| r.status == 401));
    let renewed = refused
        .iter()
        .filter(|r| client.renew(r.credential))
        .count();
    assert_eq!(renewed, 1, "one renewal for one refused token");
    assert!(burst("c").await.iter().all(|r| r.status == 200));
    assert_eq!(
        mock.token_requests(),
        2,
        "one new token for the whole burst"
    );
}

fn apns_request(token: &str) -> ApnsRequest {
    let topic = pusher_sandbox::pki::BUNDLE_ID.to_string();
    ApnsRequest {
        path: format!("/3/device/{token}"),
        headers: vec![("apns-topic".into(), topic.clone())],
        body: br#"{"aps":{"alert":"hi"}}"#.to_vec(),
        topic,
        push_type: None,
        ignored_headers: vec![],
    }
}

#[tokio::test]
async fn expired_provider_token_is_renewed_once_for_a_burst() {
    let mock = MockApns::start(ApnsMockConfig::from_pki(pki()))
        .await
        .expect("mock APNs");
    let tokens: Vec<String> = (0..10).map(|i| format!("e{i:02}")).collect();
    for t in &tokens {
        mock.script(
            t,
            vec![Reply::status(403, "ExpiredProviderToken"), Reply::Ok],
        );
    }
    let signer = TokenSigner::new(&pki().team_id, &pki().key_id, pki().p8_pem.as_bytes(), 55)
        .expect("signer");
    let client = Arc::new(
        apns::Client::new(apns::ClientConfig {
            base_url: mock.base_url(),
            auth: apns::Auth::Token(Arc::new(signer)),
            extra_roots_pem: Some(pki().ca_pem.clone().into_bytes()),
            request_timeout: Duration::from_secs(5),
        })
        .expect("APNs client"),
    );
    let round = || {
        let client = client.clone();
        let tokens = tokens.clone();
        async move {
            let tasks: Vec<_> = tokens
                .into_iter()
                .map(|t| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        tokio::time::timeout(GUARD, client.send(&apns_request(&t)))
                            .await
                            .expect("hang guard")
                            .expect("sent")
                    })
                })
                .collect();
            let mut out = vec![];
            for t in tasks {
                out.push(t.await.expect("join"));
            }
            out
        }
    };
    let first = round().await;
    assert!(first.iter().all(|r| r.status == 403));
    let renewed = first
        .iter()
        .filter(|r| client.renew(r.credential.expect("token auth")))
        .count();
    assert_eq!(renewed, 1);
    let second = round().await;
    assert!(second.iter().all(|r| r.status == 200));

    let jwts = |status: u16| -> std::collections::HashSet<String> {
        mock.received()
            .iter()
            .filter(|r| r.status == status)
            .filter_map(|r| r.header("authorization").map(str::to_string))
            .collect()
    };
    let (refused, accepted) = (jwts(403), jwts(200));
    assert_eq!(refused.len(), 1, "one JWT before");
    assert_eq!(accepted.len(), 1, "one new JWT for all ten retries");
    assert!(
        refused.is_disjoint(&accepted),
        "the retries carry a new JWT"
    );
}

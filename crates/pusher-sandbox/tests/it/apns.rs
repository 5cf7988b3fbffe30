//! Mock APNs: mTLS, provider tokens, HTTP/2 reuse, request checks, scripts and prefixes.

use std::time::{Duration, Instant};

use pusher_sandbox::apns_mock::{ApnsAuth, ApnsMockConfig, MockApns, Reply};
use pusher_sandbox::pki::ClientVariant;
use serde_json::{Value, json};

use crate::common::{apns_client, apns_jwt, now, pki};

async fn start() -> MockApns {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut ApnsMockConfig)) -> MockApns {
    let mut cfg = ApnsMockConfig::from_pki(pki());
    cfg.slow_delay = Duration::from_millis(150);
    tweak(&mut cfg);
    MockApns::start(cfg).await.expect("mock APNs")
}

fn cert_client() -> reqwest::Client {
    apns_client(Some(&pki().client(ClientVariant::Pkcs8).pem))
}

/// POST a VoIP push; returns (status, apns-id header, JSON body or Null).
async fn push(
    client: &reqwest::Client,
    mock: &MockApns,
    token: &str,
    extra: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = client
        .post(format!("{}/3/device/{token}", mock.base_url()))
        .header("apns-topic", "org.myorg.myapp.voip")
        .header("apns-push-type", "voip")
        .header("apns-priority", "10")
        .body(r#"{"aps":{},"call-id":"c1"}"#);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("apns-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, id, body)
}

#[tokio::test]
async fn every_trusted_pem_variant_is_accepted_and_recorded() {
    let mock = start().await;
    for v in [
        ClientVariant::Pkcs8,
        ClientVariant::Pkcs1,
        ClientVariant::BagAttributes,
    ] {
        let client = apns_client(Some(&pki().client(v).pem));
        let (status, id, body) = push(&client, &mock, &format!("tok{v:?}"), &[]).await;
        assert_eq!(status, 200, "{v:?}: {body}");
        let id = id.expect("apns-id");
        assert!(
            uuid::Uuid::try_parse(&id).is_ok() && id == id.to_lowercase(),
            "{id}"
        );
        let last = mock.received().pop().unwrap();
        assert_eq!(
            last.auth,
            ApnsAuth::ClientCert {
                subject_cn: v.subject_cn()
            }
        );
        assert_eq!((last.status, last.apns_id.as_str()), (200, id.as_str()));
    }
    assert_eq!(mock.connections_accepted(), 3);
}

#[tokio::test]
async fn no_certificate_and_no_token_is_403_missing_provider_token() {
    let mock = start().await;
    let (status, _, body) = push(&apns_client(None), &mock, "abc", &[]).await;
    assert_eq!(
        (status, body),
        (403, json!({"reason": "MissingProviderToken"}))
    );
    let rec = mock.received();
    assert_eq!((rec[0].status, &rec[0].auth), (403, &ApnsAuth::None));
    assert_eq!(rec[0].reason.as_deref(), Some("MissingProviderToken"));
}

#[tokio::test]
async fn untrusted_or_expired_certificates_fail_the_handshake() {
    let mock = start().await;
    for (v, alert) in [
        (ClientVariant::UntrustedCa, "UnknownCA"),
        (ClientVariant::Expired, "CertificateExpired"),
    ] {
        let client = apns_client(Some(&pki().client(v).pem));
        let result = client
            .post(format!("{}/3/device/abc", mock.base_url()))
            .header("apns-topic", "org.myorg.myapp")
            .body("{}")
            .send()
            .await;
        let err = format!("{:?}", result.expect_err("must be refused"));
        assert!(
            err.contains(&format!("received fatal alert: {alert}")),
            "{v:?}: {err}"
        );
    }
    assert!(mock.received().is_empty(), "nothing may reach HTTP");
    assert_eq!(mock.connections_accepted(), 2);
}

#[tokio::test]
async fn valid_provider_token_is_accepted() {
    let mock = start().await;
    let pki = pki();
    let jwt = apns_jwt(&pki.p8_pem, &pki.key_id, &pki.team_id, now());
    let my_id = "8e1a9c8f-6d0e-4b8e-9e2a-1f3c5d7b9a01";
    let (status, id, _) = push(
        &apns_client(None),
        &mock,
        "abc",
        &[
            ("authorization", &format!("bearer {jwt}")),
            ("apns-id", my_id),
        ],
    )
    .await;
    assert_eq!((status, id.as_deref()), (200, Some(my_id)));
    let rec = mock.received();
    assert_eq!(
        rec[0].auth,
        ApnsAuth::Token {
            team_id: pki.team_id.clone(),
            key_id: pki.key_id.clone()
        }
    );
    assert!(
        rec[0]
            .header("authorization")
            .unwrap()
            .starts_with("bearer ey")
    );
}

#[tokio::test]
async fn bad_provider_tokens_get_the_right_reason() {
    let mock = start().await;
    let pki = pki();
    let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let cases = [
        (
            "wrong key",
            apns_jwt(&other_key, &pki.key_id, &pki.team_id, now()),
            "InvalidProviderToken",
        ),
        (
            "unknown kid",
            apns_jwt(&pki.p8_pem, "ZZZZZZZZZZ", &pki.team_id, now()),
            "InvalidProviderToken",
        ),
        (
            "wrong team",
            apns_jwt(&pki.p8_pem, &pki.key_id, "XXXXXXXXXX", now()),
            "InvalidProviderToken",
        ),
        (
            "iat in future",
            apns_jwt(&pki.p8_pem, &pki.key_id, &pki.team_id, now() + 600),
            "InvalidProviderToken",
        ),
        (
            "iat 2 h ago",
            apns_jwt(&pki.p8_pem, &pki.key_id, &pki.team_id, now() - 7200),
            "ExpiredProviderToken",
        ),
        ("garbage", "not.a.jwt".to_string(), "InvalidProviderToken"),
    ];
    let client = apns_client(None);
    for (what, jwt, reason) in cases {
        let (status, _, body) = push(
            &client,
            &mock,
            "abc",
            &[("authorization", &format!("bearer {jwt}"))],
        )
        .await;
        assert_eq!((status, body), (403, json!({ "reason": reason })), "{what}");
    }
    // 55 minutes old is still fine.
    let jwt = apns_jwt(&pki.p8_pem, &pki.key_id, &pki.team_id, now() - 55 * 60);
    let (status, _, _) = push(
        &client,
        &mock,
        "abc",
        &[("authorization", &format!("bearer {jwt}"))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mock.connections_accepted(), 1);
}

#[tokio::test]
async fn hundred_concurrent_pushes_share_one_connection() {
    for max_streams in [None, Some(8)] {
        let mock = start_with(|c| c.max_concurrent_streams = max_streams).await;
        let client = cert_client();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let client = client.clone();
                let url = format!("{}/3/device/tok{i}", mock.base_url());
                tokio::spawn(async move {
                    client
                        .post(url)
                        .header("apns-topic", "org.myorg.myapp")
                        .body(r#"{"aps":{}}"#)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 200);
        }
        assert_eq!(mock.received().len(), 100);
        assert_eq!(
            mock.connections_accepted(),
            1,
            "max_streams {max_streams:?}"
        );
    }
}

#[tokio::test]
async fn scripts_are_consumed_in_order_and_the_last_repeats() {
    let mock = start().await;
    let ts = 1_700_000_000_123;
    mock.script(
        "scripted",
        vec![
            Reply::Status {
                status: 503,
                reason: "ServiceUnavailable".into(),
                timestamp_ms: None,
                retry_after: Some(3),
            },
            Reply::too_many_requests(),
            Reply::Ok.delayed(Duration::from_millis(50)),
            Reply::unregistered(ts),
        ],
    );
    let client = cert_client();
    let url = format!("{}/3/device/scripted", mock.base_url());
    let resp = client
        .post(&url)
        .header("apns-topic", "t")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"reason": "ServiceUnavailable"})
    );
    let (status, _, body) = push(&client, &mock, "scripted", &[]).await;
    assert_eq!((status, body), (429, json!({"reason": "TooManyRequests"})));
    let started = Instant::now();
    assert_eq!(push(&client, &mock, "scripted", &[]).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
    for _ in 0..2 {
        let (status, _, body) = push(&client, &mock, "scripted", &[]).await;
        assert_eq!(
            (status, body),
            (410, json!({"reason": "Unregistered", "timestamp": ts}))
        );
    }
    mock.script("scripted", vec![]);
    assert_eq!(push(&client, &mock, "scripted", &[]).await.0, 200);
}

#[tokio::test]
async fn token_prefixes_pick_the_reply() {
    let mock = start().await;
    let client = cert_client();
    let before = pusher_now_ms();
    let (status, _, body) = push(&client, &mock, "dead0001", &[]).await;
    assert_eq!((status, &body["reason"]), (410, &json!("Unregistered")));
    let ts = body["timestamp"].as_u64().expect("timestamp");
    assert!(ts >= before && ts <= pusher_now_ms(), "{ts}");
    let (status, _, body) = push(&client, &mock, "bad0001", &[]).await;
    assert_eq!((status, body), (400, json!({"reason": "BadDeviceToken"})));
    let (status, _, body) = push(&client, &mock, "unavailable1", &[]).await;
    assert_eq!(
        (status, body),
        (503, json!({"reason": "ServiceUnavailable"}))
    );
    let started = Instant::now();
    assert_eq!(push(&client, &mock, "slow1", &[]).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(push(&client, &mock, "0123abcd", &[]).await.0, 200);
}

fn pusher_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn request_checks_follow_apple() {
    let mock = start().await;
    let client = cert_client();
    let base = mock.base_url();
    let status_reason = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        (
            status,
            body["reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    let r = client
        .get(format!("{base}/3/device/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(status_reason(r).await, (405, "MethodNotAllowed".into()));
    let r = client
        .post(format!("{base}/3/other/abc"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(status_reason(r).await, (404, "BadPath".into()));
    let r = client
        .post(format!("{base}/3/device/abc"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(status_reason(r).await, (400, "MissingTopic".into()));
    let r = client
        .post(format!("{base}/3/device/abc"))
        .header("apns-topic", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(status_reason(r).await, (400, "PayloadEmpty".into()));

    let long_collapse = "c".repeat(65);
    let sized = |n: usize| format!(r#"{{"aps":{{}},"x":"{}"}}"#, "a".repeat(n - 17));
    assert_eq!(sized(4096).len(), 4096);
    // (headers replacing the defaults, body, expected status and reason)
    type Case<'a> = (Vec<(&'static str, &'a str)>, String, (u16, &'static str));
    let cases: Vec<Case> = vec![
        (vec![("apns-push-type", "alert")], sized(4096), (200, "")),
        (
            vec![("apns-push-type", "alert")],
            sized(4097),
            (413, "PayloadTooLarge"),
        ),
        (vec![], sized(5120), (200, "")),
        (vec![], sized(5121), (413, "PayloadTooLarge")),
        (
            vec![("apns-topic", "org.myorg.myapp")],
            "{}".into(),
            (400, "InvalidPushType"),
        ),
        (
            vec![("apns-push-type", "bogus")],
            "{}".into(),
            (400, "InvalidPushType"),
        ),
        (
            vec![("apns-id", "not-a-uuid")],
            "{}".into(),
            (400, "BadMessageId"),
        ),
        (
            vec![("apns-priority", "7")],
            "{}".into(),
            (400, "BadPriority"),
        ),
        (
            vec![("apns-expiration", "soon")],
            "{}".into(),
            (400, "BadExpirationDate"),
        ),
        (
            vec![("apns-collapse-id", &long_collapse)],
            "{}".into(),
            (400, "BadCollapseId"),
        ),
        (vec![], "not json".into(), (400, "BadPayload")),
    ];
    for (headers, body, (want_status, want_reason)) in cases {
        let req = client
            .post(format!("{base}/3/device/abc"))
            .header("apns-push-type", "voip")
            .header("apns-topic", "org.myorg.myapp.voip");
        let mut req = req.body(body).build().unwrap();
        for (k, v) in &headers {
            // Replaces the defaults above.
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let resp = client.execute(req).await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let reason = serde_json::from_str::<Value>(&text)
            .map(|v| v["reason"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        assert_eq!(
            (status, reason.as_str()),
            (want_status, want_reason),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn recording_keeps_headers_and_body_and_can_be_awaited() {
    let mock = start().await;
    let client = cert_client();
    let url = format!("{}/3/device/rec1", mock.base_url());
    let waiter = mock.wait_for(2, Duration::from_secs(5));
    let sends = async {
        for _ in 0..2 {
            client
                .post(&url)
                .header("apns-topic", "org.myorg.myapp.voip")
                .header("apns-push-type", "voip")
                .header("apns-expiration", "0")
                .header("X-Custom", "Yes")
                .body(r#"{"aps":{"alert":"hi"},"n":1}"#)
                .send()
                .await
                .unwrap();
        }
    };
    let (got, ()) = tokio::join!(waiter, sends);
    assert_eq!(got.len(), 2);
    let r = &got[0];
    assert_eq!(r.token, "rec1");
    assert_eq!(r.body, json!({"aps": {"alert": "hi"}, "n": 1}));
    assert_eq!(r.header("apns-expiration"), Some("0"));
    assert_eq!(r.header("x-custom"), Some("Yes"));
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| k == &k.to_lowercase() && !k.starts_with(':'))
    );
    assert!(r.at <= std::time::SystemTime::now());
    mock.clear();
    assert!(mock.received().is_empty());
    assert_eq!(mock.wait_for(1, Duration::from_millis(20)).await.len(), 0);
}

#[tokio::test]
async fn latency_is_added_and_drop_stops_the_server() {
    let mock = start_with(|c| c.latency = Duration::from_millis(100)).await;
    let client = cert_client();
    let started = Instant::now();
    assert_eq!(push(&client, &mock, "abc", &[]).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    let addr = mock.addr();
    drop(mock);
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener must be closed"
    );
}

#[tokio::test]
async fn http1_clients_are_refused_by_alpn() {
    let mock = start().await;
    crate::common::install_provider();
    let ca = reqwest::Certificate::from_pem(pki().ca_pem.as_bytes()).unwrap();
    let identity =
        reqwest::Identity::from_pem(pki().client(ClientVariant::Pkcs8).pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .http1_only()
        .tls_certs_only([ca])
        .identity(identity)
        .build()
        .unwrap();
    let result = client
        .post(format!("{}/3/device/abc", mock.base_url()))
        .header("apns-topic", "t")
        .body("{}")
        .send()
        .await;
    let err = format!("{:?}", result.expect_err("HTTP/1.1 must be refused"));
    assert!(err.contains("NoApplicationProtocol"), "{err}");
    assert!(mock.received().is_empty());
}

#[tokio::test]
async fn a_reply_delayed_30_s_holds_only_its_own_stream() {
    let mock = start().await;
    mock.script("late", vec![Reply::Ok.delayed(Duration::from_secs(30))]);
    let client = cert_client();
    assert_eq!(push(&client, &mock, "warm", &[]).await.0, 200);
    let late = tokio::spawn({
        let client = client.clone();
        let url = format!("{}/3/device/late", mock.base_url());
        async move {
            client
                .post(url)
                .header("apns-topic", "org.myorg.myapp.voip")
                .header("apns-push-type", "voip")
                .body(r#"{"aps":{}}"#)
                .send()
                .await
        }
    });
    mock.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(mock.requests_for_token("late"), 1);
    assert_eq!(mock.unanswered(), 1);

    let started = Instant::now();
    assert_eq!(push(&client, &mock, "now", &[]).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!late.is_finished());
    // Same connection: the late stream did not hold up the next one.
    assert_eq!(mock.connections_accepted(), 1);
    assert_eq!(mock.unanswered(), 1);
    let by_path = mock.requests_by_path();
    assert_eq!(by_path.get("/3/device/late"), Some(&1));
    assert_eq!(by_path.get("/3/device/now"), Some(&1));
    late.abort();
}

//! Mock FCM: OAuth JWT-bearer grant, bearer checks, message checks, scripts and prefixes,
//! the opt-in TLS mode, and the hostile providers of issue #12 (hung token endpoint, late
//! reply).

use std::time::{Duration, Instant};

use pusher_sandbox::apns_mock::{ApnsMockConfig, MockApns};
use pusher_sandbox::fcm_mock::{FcmMockConfig, FcmReply, MockFcm, ServerIdentity};
use pusher_sandbox::pki::PROJECT_ID;
use serde_json::{Value, json};

use crate::common::{http_client, now, padded_assertion_without_kid, pki, sa_assertion};

async fn start() -> (MockFcm, Value) {
    start_with(FcmMockConfig {
        slow_delay: Duration::from_millis(150),
        ..Default::default()
    })
    .await
}

async fn start_with(cfg: FcmMockConfig) -> (MockFcm, Value) {
    let mock = MockFcm::start(cfg).await.expect("mock FCM");
    let sa = pki().service_account_json(&mock.token_uri());
    mock.add_service_account(&sa).unwrap();
    (mock, sa)
}

/// POST the JWT-bearer grant; returns (status, JSON body).
async fn token_request(client: &reqwest::Client, mock: &MockFcm, assertion: &str) -> (u16, Value) {
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    let resp = client
        .post(mock.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn access_token(client: &reqwest::Client, mock: &MockFcm, sa: &Value) -> String {
    let (status, body) = token_request(client, mock, &sa_assertion(sa, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// POST messages:send; returns (status, Retry-After, JSON body).
async fn send(
    client: &reqwest::Client,
    mock: &MockFcm,
    project: &str,
    bearer: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut req = client
        .post(format!(
            "{}/v1/projects/{project}/messages:send",
            mock.base_url()
        ))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap())
}

fn to(token: &str) -> Value {
    json!({"message": {"token": token, "data": {"call-id": "c1", "caller-id-number": "1001"},
        "android": {"priority": "HIGH", "ttl": "30s"}}})
}

#[tokio::test]
async fn assertion_gets_a_token_and_the_token_sends() {
    let (mock, sa) = start().await;
    let client = http_client(false);
    let (status, body) = token_request(&client, &mock, &sa_assertion(&sa, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(mock.token_requests(), 1);

    let (status, _, body) = send(&client, &mock, PROJECT_ID, Some(token), to("device-1")).await;
    assert_eq!(status, 200, "{body}");
    let name = body["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("projects/{PROJECT_ID}/messages/")),
        "{name}"
    );
    let rec = mock.received();
    assert_eq!((rec[0].token.as_str(), rec[0].status), ("device-1", 200));
    assert_eq!(rec[0].message["data"]["call-id"], "c1");
    assert_eq!(
        rec[0].client_email.as_deref(),
        Some(pusher_sandbox::pki::CLIENT_EMAIL)
    );
    assert_eq!(rec[0].project, PROJECT_ID);
    // The cloud-platform scope is accepted too.
    let scope = json!({"scope": "https://www.googleapis.com/auth/cloud-platform"});
    assert_eq!(
        token_request(&client, &mock, &sa_assertion(&sa, scope))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn padded_assertion_without_kid_is_accepted_like_google_does() {
    let (mock, sa) = start().await;
    let client = http_client(false);
    let assertion = padded_assertion_without_kid(&sa);
    assert!(
        assertion.split('.').take(2).any(|p| p.ends_with('=')),
        "test needs padding: {assertion}"
    );
    // Form-encode it as yup-oauth2 does ('=' becomes %3D).
    let (status, body) = token_request(&client, &mock, &assertion.replace('=', "%3D")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn yup_oauth2_gets_a_token_that_sends() {
    crate::common::install_provider();
    let (mock, sa) = start().await;
    let key = yup_oauth2::parse_service_account_key(sa.to_string()).unwrap();
    let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
        .build()
        .await
        .unwrap();
    let token = auth
        .token(&["https://www.googleapis.com/auth/firebase.messaging"])
        .await
        .expect("yup-oauth2 token from the mock");
    let token = token.token().unwrap().to_string();
    assert_eq!(mock.token_requests(), 1);
    let client = http_client(false);
    let (status, _, body) = send(&client, &mock, PROJECT_ID, Some(&token), to("d")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn bad_assertions_are_refused() {
    let (mock, sa) = start().await;
    let client = http_client(false);
    let good = sa_assertion(&sa, json!({}));
    // Flip one character of the signature.
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut wrong_kid_sa = sa.clone();
    wrong_kid_sa["private_key_id"] = json!("0000");
    let mut stranger = sa.clone();
    stranger["client_email"] = json!("someone@else.iam.gserviceaccount.com");
    let iat = now();
    let cases = [
        ("tampered", tampered, "invalid_grant"),
        (
            "wrong kid",
            sa_assertion(&wrong_kid_sa, json!({})),
            "invalid_grant",
        ),
        (
            "unknown account",
            sa_assertion(&stranger, json!({})),
            "invalid_grant",
        ),
        (
            "wrong aud",
            sa_assertion(&sa, json!({"aud": "https://oauth2.googleapis.com/token"})),
            "invalid_grant",
        ),
        (
            "expired",
            sa_assertion(&sa, json!({"iat": iat - 7200, "exp": iat - 3600})),
            "invalid_grant",
        ),
        (
            "too long",
            sa_assertion(&sa, json!({"exp": iat + 7200})),
            "invalid_grant",
        ),
        (
            "no exp",
            sa_assertion(&sa, json!({"exp": null})),
            "invalid_grant",
        ),
        (
            "wrong scope",
            sa_assertion(
                &sa,
                json!({"scope": "https://www.googleapis.com/auth/userinfo.email"}),
            ),
            "invalid_scope",
        ),
        ("garbage", "x.y.z".to_string(), "invalid_grant"),
    ];
    for (what, assertion, error) in &cases {
        let (status, body) = token_request(&client, &mock, assertion).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(*error)),
            "{what}: {body}"
        );
        assert!(body["error_description"].is_string(), "{what}");
    }
    let resp = client
        .post(mock.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&assertion={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    assert_eq!(mock.token_requests(), cases.len() + 1);
    assert_eq!(mock.live_tokens(), 0);
}

#[tokio::test]
async fn bearer_checks_and_revocation() {
    let (mock, sa) = start().await;
    let client = http_client(false);
    let unauthenticated = |body: &Value| {
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Request had invalid authentication credentials.")
        );
    };
    let (status, _, body) = send(&client, &mock, PROJECT_ID, None, to("d")).await;
    assert_eq!(status, 401);
    unauthenticated(&body);
    let (status, _, body) = send(&client, &mock, PROJECT_ID, Some("ya29.made-up"), to("d")).await;
    assert_eq!(status, 401);
    unauthenticated(&body);

    let token = access_token(&client, &mock, &sa).await;
    let (status, _, body) = send(&client, &mock, "other-project", Some(&token), to("d")).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        body["error"]["details"][0]["errorCode"],
        "SENDER_ID_MISMATCH"
    );

    assert_eq!(
        send(&client, &mock, PROJECT_ID, Some(&token), to("d"))
            .await
            .0,
        200
    );
    mock.revoke_all_tokens();
    let (status, _, body) = send(&client, &mock, PROJECT_ID, Some(&token), to("d")).await;
    assert_eq!(status, 401);
    unauthenticated(&body);
    // Refresh and retry works.
    let fresh = access_token(&client, &mock, &sa).await;
    assert_ne!(fresh, token);
    assert_eq!(
        send(&client, &mock, PROJECT_ID, Some(&fresh), to("d"))
            .await
            .0,
        200
    );
    assert_eq!(mock.token_requests(), 2);
    let statuses: Vec<u16> = mock.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 403, 200, 401, 200]);
}

#[tokio::test]
async fn expired_access_tokens_are_refused() {
    let cfg = FcmMockConfig {
        token_lifetime: Duration::from_millis(50),
        ..Default::default()
    };
    let (mock, sa) = start_with(cfg).await;
    let client = http_client(false);
    let token = access_token(&client, &mock, &sa).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        send(&client, &mock, PROJECT_ID, Some(&token), to("d"))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn message_checks_follow_fcm() {
    let (mock, sa) = start().await;
    let client = http_client(false);
    let token = access_token(&client, &mock, &sa).await;
    let (status, _, body) = send(
        &client,
        &mock,
        PROJECT_ID,
        Some(&token),
        json!({"message": {"token": "d", "data": {"call-id": "c1", "n": 1}}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid value at 'message.data[1].value' (TYPE_STRING)"),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(
        body["error"]["details"][0]["fieldViolations"][0]["field"],
        "message.data[1].value"
    );
    let bad = [
        json!({"message": {"data": {"a": "b"}}}),
        json!({"notmessage": {}}),
        json!({"message": {"token": "d", "android": {"ttl": 30}}}),
        json!({"message": {"token": "d", "data": {"from": "x"}}}),
    ];
    for body in bad {
        let (status, _, reply) = send(&client, &mock, PROJECT_ID, Some(&token), body.clone()).await;
        assert_eq!(
            (status, &reply["error"]["status"]),
            (400, &json!("INVALID_ARGUMENT")),
            "{body}"
        );
    }
    let resp = client
        .post(format!(
            "{}/v1/projects/{PROJECT_ID}/messages:send",
            mock.base_url()
        ))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let topic = json!({"message": {"topic": "news", "data": {"a": "b"}}});
    assert_eq!(
        send(&client, &mock, PROJECT_ID, Some(&token), topic)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn prefixes_and_scripts_pick_the_reply() {
    let (mock, sa) = start().await;
    let client = http_client(true); // h2c this time
    let token = access_token(&client, &mock, &sa).await;
    let send_to = |t: &'static str| {
        let client = client.clone();
        let token = token.clone();
        let mock = &mock;
        async move { send(&client, mock, PROJECT_ID, Some(&token), to(t)).await }
    };
    let (status, _, body) = send_to("dead-1").await;
    assert_eq!(
        (status, &body["error"]["status"]),
        (404, &json!("NOT_FOUND"))
    );
    assert_eq!(
        body["error"]["details"][0]["@type"],
        "type.googleapis.com/google.firebase.fcm.v1.FcmError"
    );
    assert_eq!(body["error"]["details"][0]["errorCode"], "UNREGISTERED");
    let (status, _, body) = send_to("bad-1").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "The registration token is not a valid FCM registration token"
    );
    assert_eq!(body["error"]["details"][0]["errorCode"], "INVALID_ARGUMENT");
    let (status, _, body) = send_to("unavailable-1").await;
    assert_eq!(
        (status, &body["error"]["details"][0]["errorCode"]),
        (503, &json!("UNAVAILABLE"))
    );
    let started = Instant::now();
    assert_eq!(send_to("slow-1").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    mock.script(
        "scripted",
        vec![
            FcmReply::unavailable().with_retry_after(7),
            FcmReply::quota_exceeded(),
            FcmReply::Ok.delayed(Duration::from_millis(30)),
            FcmReply::unregistered(),
        ],
    );
    let (status, retry, _) = send_to("scripted").await;
    assert_eq!((status, retry.as_deref()), (503, Some("7")));
    let (status, _, body) = send_to("scripted").await;
    assert_eq!(
        (status, &body["error"]["details"][0]["errorCode"]),
        (429, &json!("QUOTA_EXCEEDED"))
    );
    assert_eq!(send_to("scripted").await.0, 200);
    assert_eq!(send_to("scripted").await.0, 404);
    assert_eq!(send_to("scripted").await.0, 404);
    let rec = mock.wait_for(9, Duration::from_secs(1)).await;
    assert_eq!(rec.len(), 9);
    assert_eq!(rec[4].error_code.as_deref(), Some("UNAVAILABLE"));
}

#[tokio::test]
async fn admin_endpoint_shows_both_mocks() {
    let apns = MockApns::start(ApnsMockConfig::from_pki(pki()))
        .await
        .unwrap();
    let (mock, sa) = start_with(FcmMockConfig {
        apns: Some(apns.recorder()),
        ..Default::default()
    })
    .await;
    let client = http_client(false);
    let token = access_token(&client, &mock, &sa).await;
    send(&client, &mock, PROJECT_ID, Some(&token), to("d1")).await;
    let apns_client = crate::common::apns_client(None);
    apns_client
        .post(format!("{}/3/device/abc", apns.base_url()))
        .header("apns-topic", "t")
        .body("{}")
        .send()
        .await
        .unwrap();
    let url = format!("{}/_mock/received", mock.base_url());
    let got: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["fcm"][0]["token"], "d1");
    assert_eq!(got["fcm"][0]["status"], 200);
    assert_eq!(got["apns"][0]["token"], "abc");
    assert_eq!(got["apns"][0]["status"], 403);
    client
        .post(format!("{}/_mock/clear", mock.base_url()))
        .send()
        .await
        .unwrap();
    let got: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, json!({"apns": [], "fcm": []}));
    let resp = client
        .get(format!("{}/nope", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// A client trusting only `ca_pem` (HTTP/1.1 only when `http1`, else h2 by ALPN).
fn https_client(ca_pem: &str, http1: bool) -> reqwest::Client {
    crate::common::install_provider();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10));
    if http1 {
        builder = builder.http1_only();
    }
    builder.build().expect("client")
}

async fn start_tls() -> (MockFcm, Value) {
    start_with(FcmMockConfig {
        tls: Some(ServerIdentity::from_pki(pki())),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn tls_mode_serves_token_and_send_over_h1_and_h2() {
    let (mock, sa) = start_tls().await;
    let port = mock.addr().port();
    assert_eq!(mock.base_url(), format!("https://127.0.0.1:{port}"));
    assert_eq!(mock.token_uri(), format!("https://127.0.0.1:{port}/token"));
    for (http1, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let client = https_client(&pki().ca_pem, http1);
        let token = access_token(&client, &mock, &sa).await;
        let (status, _, body) = send(&client, &mock, PROJECT_ID, Some(&token), to("d")).await;
        assert_eq!(status, 200, "{body}");
        let resp = client
            .get(format!("{}/_mock/received", mock.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
    }
    assert_eq!(mock.token_requests(), 2);
    assert_eq!(mock.requests_for_token("d"), 2);
}

#[tokio::test]
async fn tls_mode_fails_the_handshake_of_a_client_not_trusting_the_ca() {
    let (mock, _) = start_tls().await;
    let client = https_client(&pki().untrusted_ca_pem, false);
    let err = client
        .post(mock.token_uri())
        .body("grant_type=x")
        .send()
        .await
        .expect_err("untrusted server certificate");
    assert!(err.is_connect(), "{err:?}");
    // A plain-http client gets no answer from a TLS port either.
    let plain = http_client(false).get(mock.base_url()).send().await;
    assert!(plain.is_err(), "{plain:?}");
    assert_eq!(mock.token_requests(), 0);
    assert!(mock.requests_by_path().is_empty());
}

#[tokio::test]
async fn hung_token_endpoint_keeps_the_connection_open_and_serves_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mock, _) = start_with(FcmMockConfig {
        token_latency: Duration::MAX,
        ..Default::default()
    })
    .await;
    let mut raw = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    raw.write_all(b"POST /token HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.token_requests() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(mock.unanswered(), 1);

    // Other requests, on other connections, are answered meanwhile.
    let started = Instant::now();
    let client = http_client(false);
    let resp = client
        .post(format!(
            "{}/v1/projects/{PROJECT_ID}/messages:send",
            mock.base_url()
        ))
        .body(to("d").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(started.elapsed() < Duration::from_secs(2));

    // The hung request gets neither bytes nor EOF: the connection stays open.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(500), raw.read(&mut buf)).await;
    assert!(read.is_err(), "expected no answer, got {read:?}");
    assert_eq!(mock.unanswered(), 1);
    let by_path = mock.requests_by_path();
    assert_eq!(by_path.get("/token"), Some(&1));
    let send_path = format!("/v1/projects/{PROJECT_ID}/messages:send");
    assert_eq!(by_path.get(&send_path), Some(&1));
}

#[tokio::test]
async fn a_reply_delayed_30_s_holds_only_its_own_stream() {
    let (mock, sa) = start().await;
    mock.script("late", vec![FcmReply::Ok.delayed(Duration::from_secs(30))]);
    // h2c: both requests share one connection, as streams.
    let client = http_client(true);
    let token = access_token(&client, &mock, &sa).await;
    let url = format!("{}/v1/projects/{PROJECT_ID}/messages:send", mock.base_url());
    let late = tokio::spawn({
        let (client, token, url) = (client.clone(), token.clone(), url.clone());
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .body(to("late").to_string())
                .send()
                .await
        }
    });
    mock.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(mock.requests_for_token("late"), 1);
    assert_eq!(mock.unanswered(), 1);

    let started = Instant::now();
    let (status, _, body) = send(&client, &mock, PROJECT_ID, Some(&token), to("now")).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!late.is_finished());
    assert_eq!(mock.requests_for_token("late"), 1);
    assert_eq!(mock.requests_for_token("now"), 1);
    assert_eq!(mock.unanswered(), 1);
    assert_eq!(
        mock.requests_by_path()
            .get(url.trim_start_matches(&mock.base_url())),
        Some(&2)
    );
    late.abort();
}

//! `push_req` → mock APNs (HTTP/2 + TLS + client-certificate check) and mock FCM v1 +
//! OAuth, through the real service, RabbitMQ and pouchdb-server.

use std::time::{Duration, Instant};

use pusher_sandbox::apns_mock::{ApnsAuth, MockApns, Reply};
use pusher_sandbox::fcm_mock::{FcmMockConfig, MockFcm};
use pusher_sandbox::pki::ClientVariant;
use serde_json::{Value, json};

use crate::helpers::{World, fixture_bodies, rand_hex, set_config};
use crate::helpers::{apns_mock, pki};

/// A world whose service trusts the mock CA and sends FCM to `fcm_url`.
pub(crate) async fn world(fcm_url: Option<String>) -> World {
    let mut w = World::new().await;
    w.trust_mock_ca();
    if let Some(url) = fcm_url {
        w.env.push(("PUSHER_FCM_URL".into(), url));
    }
    w
}

pub(crate) fn app_id(tag: &str) -> String {
    format!("org.it{}.{tag}", rand_hex(6))
}

/// Kamailio's push_req (the captured one) for `app`/`token`.
pub(crate) fn push_req(app: &str, token_type: &str, token: &str) -> Value {
    let mut body = fixture_bodies("push_req")[0].clone();
    body["Token-App"] = json!(app);
    body["Token-Type"] = json!(token_type);
    body["Token-ID"] = json!(token);
    body["Msg-ID"] = json!(uuid::Uuid::new_v4().to_string());
    body
}

async fn publish_push(w: &World, body: &Value) {
    let key = format!(
        "notification.push.{}.{}",
        body["Token-Type"].as_str().unwrap_or("x"),
        body["Token-ID"].as_str().unwrap_or("x")
    );
    w.publish("pushes", &key, body.to_string().as_bytes()).await;
}

pub(crate) async fn set_apple_cert(
    w: &World,
    app: &str,
    variant: ClientVariant,
    mock: &MockApns,
    extra: Value,
) {
    let mut apple = json!({
        "certificate": pki().client(variant).pem,
        "host": mock.base_url(),
    });
    if let (Some(a), Some(e)) = (apple.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    set_config(&w.couch, &[app, "apple"], apple).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_auth_with_each_pem_variant_and_kazoo_mapping() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let variants = [
        ClientVariant::Pkcs8,
        ClientVariant::Pkcs1,
        ClientVariant::BagAttributes,
    ];
    let apps: Vec<String> = variants.iter().map(|v| app_id(v.key())).collect();
    for (app, v) in apps.iter().zip(variants) {
        set_apple_cert(&w, app, v, &mock, json!({})).await;
    }
    w.start().await;
    for app in &apps {
        publish_push(&w, &push_req(app, "apple", "0a1b2c3d4e5f")).await;
    }
    let got = mock.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for (app, v) in apps.iter().zip(variants) {
        let r = got
            .iter()
            .find(|r| r.header("apns-topic") == Some(app.as_str()))
            .unwrap_or_else(|| panic!("push for {app}: {got:?}"));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.auth,
            ApnsAuth::ClientCert {
                subject_cn: v.subject_cn()
            }
        );
        assert_eq!(r.token, "0a1b2c3d4e5f");
        // Kazoo's classic mapping: aps.alert.loc-key/loc-args, sound, call-id, Payload at the root.
        assert_eq!(r.body["aps"]["alert"]["loc-key"], "IC_SIL");
        assert_eq!(r.body["aps"]["alert"]["loc-args"], json!(["callerreply02"]));
        assert_eq!(r.body["aps"]["sound"], "ring.caf");
        assert_eq!(r.body["aps"]["call-id"], "1-31568@127.0.0.1");
        assert_eq!(r.body["caller-id-number"], "callerreply02");
        assert!(
            r.body["utc_unix_timestamp_ms"]
                .as_str()
                .is_some_and(|s| s.parse::<u64>().is_ok())
        );
        // Not a .voip topic: no push type invented.
        assert_eq!(r.header("apns-push-type"), None);
        assert!(r.header("apns-id").is_some_and(|id| id.len() == 36));
    }
    assert_eq!(
        mock.connections_accepted(),
        3,
        "one connection per app client"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voip_topic_defaults_and_configured_headers() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let voip = app_id("voip");
    let custom = app_id("custom");
    set_apple_cert(
        &w,
        &voip,
        ClientVariant::Pkcs8,
        &mock,
        json!({"apns_topic": format!("{voip}.voip")}),
    )
    .await;
    set_apple_cert(&w, &custom, ClientVariant::Pkcs8, &mock, json!({
        "apns_topic": format!("{custom}.voip"),
        "headers": {"apns_push_type": "voip", "apns_priority": 5, "apns_collapse_id": "call-1", "x-evil": "1"}
    })).await;
    w.start().await;
    publish_push(&w, &push_req(&voip, "apple", "aa11")).await;
    publish_push(&w, &push_req(&custom, "apple", "bb22")).await;
    let got = mock.wait_for(2, Duration::from_secs(10)).await;
    let v = got.iter().find(|r| r.token == "aa11").expect("voip push");
    assert_eq!(
        v.header("apns-topic"),
        Some(format!("{voip}.voip").as_str())
    );
    assert_eq!(v.header("apns-push-type"), Some("voip"));
    assert_eq!(v.header("apns-priority"), Some("10"));
    assert_eq!(v.header("apns-expiration"), Some("0"));
    let c = got.iter().find(|r| r.token == "bb22").expect("custom push");
    assert_eq!(c.header("apns-priority"), Some("5"));
    assert_eq!(c.header("apns-collapse-id"), Some("call-1"));
    assert_eq!(
        c.header("x-evil"),
        None,
        "only known apns-* headers are sent"
    );
    w.stop().await;
}

/// Stores the test `.p8` as the `private_key.p8` attachment of `system_config/pusher`
/// (one key for all token apps, like Kazoo 5's add_apple_pem_file); 409-safe.
async fn put_p8(w: &World) {
    w.couch.create_db("system_config").await.expect("db");
    for _ in 0..20 {
        let rev = w
            .couch
            .get_doc("system_config", "pusher")
            .await
            .expect("get")
            .and_then(|d| d["_rev"].as_str().map(str::to_string));
        let put = w
            .couch
            .put_attachment(
                "system_config",
                "pusher",
                rev.as_deref(),
                "private_key.p8",
                "application/x-pem-file",
                pki().p8_pem.clone().into_bytes(),
            )
            .await;
        if put.is_ok() {
            return;
        }
        // Lost a race with another test writing the doc: retry with the fresh rev.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not store the .p8 attachment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_jwt_is_verified_by_the_mock() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    put_p8(&w).await;
    let app = app_id("token");
    set_config(&w.couch, &[&app, "apple"], json!({
        "auth_type": "token", "team_id": pki().team_id, "key_id": pki().key_id, "host": mock.base_url()
    })).await;
    w.start().await;
    for i in 0..3 {
        publish_push(&w, &push_req(&app, "apple", &format!("cc{i}"))).await;
    }
    let got = mock.wait_for(3, Duration::from_secs(10)).await;
    for r in &got {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.auth,
            ApnsAuth::Token {
                team_id: pki().team_id.clone(),
                key_id: pki().key_id.clone()
            }
        );
    }
    let jwts: std::collections::HashSet<_> = got
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(jwts.len(), 1, "one cached provider token reused");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_503_then_success_and_disabled_app_sends_nothing() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let app = app_id("retry");
    let off = app_id("off");
    set_apple_cert(&w, &app, ClientVariant::Pkcs8, &mock, json!({})).await;
    set_apple_cert(
        &w,
        &off,
        ClientVariant::Pkcs8,
        &mock,
        json!({"enabled": false}),
    )
    .await;
    mock.script(
        "dd01",
        vec![
            Reply::service_unavailable(),
            Reply::service_unavailable(),
            Reply::Ok,
        ],
    );
    w.start().await;
    publish_push(&w, &push_req(&off, "apple", "ee01")).await;
    publish_push(&w, &push_req(&app, "apple", "dd01")).await;
    let got = mock.wait_for(3, Duration::from_secs(10)).await;
    let statuses: Vec<u16> = got
        .iter()
        .filter(|r| r.token == "dd01")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    w.wait_queue_drained().await;
    assert!(
        mock.received().iter().all(|r| r.token != "ee01"),
        "disabled app: nothing sent"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_token_clean_up_on_and_off() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let keep = app_id("keep");
    let clean = app_id("clean");
    set_apple_cert(&w, &keep, ClientVariant::Pkcs8, &mock, json!({})).await;
    set_apple_cert(&w, &clean, ClientVariant::Pkcs8, &mock, json!({})).await;
    set_config(&w.couch, &[&clean, "remove_invalid_tokens"], json!(true)).await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("keepdev", json!({})).await;
    w.put_device("cleandev", json!({})).await;
    w.start().await;
    // Register both devices (reg_success writes push + the token index).
    for (dev, app, tok) in [("keepdev", &keep, "dead01"), ("cleandev", &clean, "dead02")] {
        let mut reg = w.reg_success(0, dev);
        reg["Contact"] = json!(format!(
            "<sip:2001@127.0.0.1:5074;app-id={app};pn-tok={tok};pn-type=apple>"
        ));
        w.publish_reg(&reg).await;
        w.wait_device(dev, 10, |d| d["push"]["Token-ID"] == tok)
            .await;
    }
    w.wait_queue_drained().await;
    // "dead…" tokens get 410 Unregistered from the mock.
    publish_push(&w, &push_req(&keep, "apple", "dead01")).await;
    publish_push(&w, &push_req(&clean, "apple", "dead02")).await;
    mock.wait_for(2, Duration::from_secs(10)).await;
    w.wait_device("cleandev", 10, |d| d.get("push").is_none())
        .await;
    w.wait_queue_drained().await;
    assert_eq!(
        w.device("keepdev").await["push"]["Token-ID"],
        "dead01",
        "clean-up off: kept"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_v1_one_oauth_request_string_data_and_401_refresh() {
    let fcm = MockFcm::start(FcmMockConfig {
        token_latency: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .expect("mock FCM");
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");
    let mut w = world(Some(fcm.base_url())).await;
    let app = app_id("android");
    set_config(
        &w.couch,
        &[&app, "firebase_v1"],
        json!({"service_account": sa}),
    )
    .await;
    w.start().await;
    let mut body = push_req(&app, "firebase", "fcmtok0");
    body["Payload"]["nested"] = json!({"a": 1});
    body["Payload"]["n"] = json!(7);
    // 20 is under the queue's `x-max-length` (100): no pacing needed.
    for i in 0..20 {
        body["Token-ID"] = json!(format!("fcmtok{i}"));
        publish_push(&w, &body).await;
    }
    let got = fcm.wait_for(20, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 20);
    assert_eq!(
        fcm.token_requests(),
        1,
        "single-flight: one OAuth request for 20 cold pushes"
    );
    for r in &got {
        assert_eq!(r.status, 200, "{r:?}");
        let data = r.message["data"].as_object().expect("data");
        assert!(
            data.values().all(Value::is_string),
            "all data values are strings: {data:?}"
        );
        assert_eq!(data["nested"], r#"{"a":1}"#);
        assert_eq!(data["n"], "7");
        assert_eq!(data["Push-Type"], "incoming_call");
        assert_eq!(r.message["android"]["priority"], "high");
    }
    // Revoked tokens: 401 → forced refresh → the same push succeeds.
    fcm.revoke_all_tokens();
    body["Token-ID"] = json!("fcmafter");
    publish_push(&w, &body).await;
    let started = Instant::now();
    loop {
        let ok = fcm
            .received()
            .iter()
            .any(|r| r.token == "fcmafter" && r.status == 200);
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no successful retry after 401"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fcm.token_requests(), 2);
    w.stop().await;
}

/// Throughput sanity (not a timed assertion): 1,000 pushes to one app through the mock
/// with 20 ms added latency all arrive; the time is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_pushes_with_20ms_latency_all_arrive() {
    let mock = apns_mock(Duration::from_millis(20)).await;
    let mut w = world(None).await;
    let app = app_id("bulk");
    set_apple_cert(&w, &app, ClientVariant::Pkcs8, &mock, json!({})).await;
    w.start().await;
    let started = Instant::now();
    let body = push_req(&app, "apple", "x");
    // Paced on the queue depth, under the queue's 100-message cap (Kazoo's x-max-length):
    // published unpaced, a slow consumer would make the broker drop the oldest.
    w.publish_paced(0..1000, |i| {
        let mut body = body.clone();
        body["Token-ID"] = json!(format!("f{i:04}"));
        let w = &w;
        async move { publish_push(w, &body).await }
    })
    .await;
    let got = mock.wait_for(1000, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let tokens: std::collections::HashSet<_> = got.iter().map(|r| r.token.clone()).collect();
    assert_eq!(tokens.len(), 1000, "every push arrived once");
    eprintln!(
        "1000 pushes with 20 ms provider latency: {elapsed:?} ({:.0}/s), {} connection(s)",
        1000.0 / elapsed.as_secs_f64(),
        mock.connections_accepted()
    );
    w.stop().await;
}

/// A server-named, exclusive reply queue on the world's publisher connection.
pub(crate) async fn reply_queue(w: &World) -> (String, lapin::Consumer) {
    use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
    let ch = w.publisher.as_ref().expect("started").channel();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("reply queue");
    let name = q.name().to_string();
    let consumer = ch
        .basic_consume(
            name.as_str().into(),
            "it-reply".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("consume replies");
    (name, consumer)
}

/// The next `push_resp` on `consumer`.
pub(crate) async fn next_reply(consumer: &mut lapin::Consumer) -> Value {
    use futures_util::StreamExt;
    let d = tokio::time::timeout(Duration::from_secs(15), consumer.next())
        .await
        .expect("a push_resp within 15 s")
        .expect("consumer open")
        .expect("delivery");
    serde_json::from_slice(&d.data).expect("push_resp is JSON")
}

/// Number of messages in `queue` of the world's vhost.
fn queue_depth(w: &World, queue: &str) -> Option<u64> {
    let out = crate::helpers::rabbitmqctl(&[
        "-q",
        "list_queues",
        "-p",
        &w.vhost.name,
        "name",
        "messages",
        "--no-table-headers",
    ]);
    out.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(queue)).then(|| it.next()?.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_reply_only_for_requesters_that_ask() {
    use lapin::options::QueueDeclareOptions;
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let app = app_id("reply");
    let off = app_id("replyoff");
    set_apple_cert(&w, &app, ClientVariant::Pkcs8, &mock, json!({})).await;
    set_apple_cert(&w, &off, ClientVariant::Pkcs8, &mock, json!({})).await;
    set_config(&w.couch, &[&off, "apple", "enabled"], json!(false)).await;
    w.start().await;
    // Kamailio's own targeted queue (the fixture's Server-ID) must never get a reply.
    let fixture = push_req(&app, "apple", "ab01");
    let kamailio_q = fixture["Server-ID"]
        .as_str()
        .expect("Server-ID")
        .to_string();
    w.publisher
        .as_ref()
        .expect("started")
        .channel()
        .queue_declare(
            kamailio_q.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("kamailio's queue");
    let (reply_to, mut replies) = reply_queue(&w).await;

    publish_push(&w, &fixture).await;
    let cases = [
        (app.clone(), "ab02", "delivered", "apns"),
        (app.clone(), "dead77", "dead_token", "apns"),
        // 400 BadDeviceToken may be a sandbox/production mismatch: not proof of a dead token.
        (app.clone(), "bad77", "rejected", "apns"),
        (off.clone(), "ab03", "disabled", "apns"),
    ];
    for (a, token, status, provider) in &cases {
        let mut body = push_req(a, "apple", token);
        body["Pusher-Reply-To"] = json!(reply_to);
        publish_push(&w, &body).await;
        let r = next_reply(&mut replies).await;
        assert_eq!(r["Event-Category"], "notification");
        assert_eq!(r["Event-Name"], "push_resp");
        assert_eq!(r["Msg-ID"], body["Msg-ID"], "{r}");
        assert_eq!(r["Call-ID"], body["Call-ID"]);
        assert_eq!(r["Status"], *status, "{token}: {r}");
        assert_eq!(r["Provider"], *provider);
        assert!(r["Elapsed-Ms"].is_u64());
    }
    // The unrequested push was delivered, and Kamailio's queue stayed empty. It runs
    // beside the others, so its answer may come after theirs: wait for all four that
    // reach the mock (ab01, ab02, dead77, bad77; the disabled app's never does).
    let got = mock.wait_for(4, Duration::from_secs(20)).await;
    assert!(got.iter().any(|r| r.token == "ab01"), "{got:?}");
    w.wait_queue_drained().await;
    assert_eq!(
        queue_depth(&w, &kamailio_q),
        Some(0),
        "no unsolicited reply"
    );
    w.stop().await;
}

/// APNs answers 400 `BadDeviceToken` for a token of the other environment too (a wrong
/// `apple.host`), so even with `remove_invalid_tokens` the device keeps its `push` object,
/// and the reply tells the operator to check `apple.host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_device_token_is_rejected_and_keeps_the_push_object() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let app = app_id("badtok");
    set_apple_cert(&w, &app, ClientVariant::Pkcs8, &mock, json!({})).await;
    set_config(&w.couch, &[&app, "remove_invalid_tokens"], json!(true)).await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("baddev", json!({})).await;
    w.start().await;
    let mut reg = w.reg_success(0, "baddev");
    reg["Contact"] = json!(format!(
        "<sip:2001@127.0.0.1:5074;app-id={app};pn-tok=bad77;pn-type=apple>"
    ));
    w.publish_reg(&reg).await;
    w.wait_device("baddev", 10, |d| d["push"]["Token-ID"] == "bad77")
        .await;
    w.wait_queue_drained().await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    let mut body = push_req(&app, "apple", "bad77");
    body["Pusher-Reply-To"] = json!(reply_to);
    publish_push(&w, &body).await;
    let r = next_reply(&mut replies).await;
    assert_eq!(r["Status"], "rejected", "{r}");
    let reason = r["Reason"].as_str().expect("a Reason");
    assert!(reason.starts_with("BadDeviceToken"), "{r}");
    assert!(reason.contains("apple.host"), "{r}");
    assert!(mock.received().iter().any(|m| m.token == "bad77"));
    // The verdict is sent after the clean-up decision, so the doc is final now.
    assert_eq!(w.device("baddev").await["push"]["Token-ID"], "bad77");
    w.stop().await;
}

/// APNs's 410 `timestamp` says since when the token is invalid: a device that registered
/// the token again after that keeps its `push` object; one that did not loses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_token_clean_up_honours_the_410_timestamp() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let app = app_id("ts");
    set_apple_cert(&w, &app, ClientVariant::Pkcs8, &mock, json!({})).await;
    set_config(&w.couch, &[&app, "remove_invalid_tokens"], json!(true)).await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.start().await;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let before_registration = now_ms() - 60_000;
    for (dev, tok) in [("reregistered", "ts01"), ("stale", "ts02")] {
        w.put_device(dev, json!({})).await;
        let mut reg = w.reg_success(0, dev);
        reg["Contact"] = json!(format!(
            "<sip:2001@127.0.0.1:5074;app-id={app};pn-tok={tok};pn-type=apple>"
        ));
        w.publish_reg(&reg).await;
        w.wait_device(dev, 10, |d| d["push"]["Token-ID"] == tok)
            .await;
    }
    w.wait_queue_drained().await;
    // ts01 became invalid a minute before it was registered; ts02 a minute from now.
    mock.script("ts01", vec![Reply::unregistered(before_registration)]);
    mock.script("ts02", vec![Reply::unregistered(now_ms() + 60_000)]);
    let (reply_to, mut replies) = reply_queue(&w).await;
    for tok in ["ts01", "ts02"] {
        let mut body = push_req(&app, "apple", tok);
        body["Pusher-Reply-To"] = json!(reply_to);
        publish_push(&w, &body).await;
        let r = next_reply(&mut replies).await;
        assert_eq!(r["Status"], "dead_token", "{r}");
        assert_eq!(r["Reason"], "Unregistered");
    }
    // The verdict is sent after the clean-up decision, so the docs are final now.
    assert_eq!(w.device("reregistered").await["push"]["Token-ID"], "ts01");
    assert!(w.device("stale").await.get("push").is_none());
    w.stop().await;
}

/// The long base64 lines of every PEM block in `pem`: any of them in a log is a leak.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| l.len() >= 40 && !l.starts_with("-----") && !l.contains(':'))
        .map(str::to_string)
        .collect()
}

/// The real `pusherd` at trace level (all crates) through certificate, token and FCM
/// pushes: no certificate or key body, service-account key, JWT or access token appears
/// in its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_at_trace_level() {
    let apns = apns_mock(Duration::ZERO).await;
    let fcm = MockFcm::start(FcmMockConfig::default())
        .await
        .expect("mock FCM");
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");
    let mut w = world(Some(fcm.base_url())).await;
    let cert_apps = [
        (app_id("s1"), ClientVariant::Pkcs8),
        (app_id("s2"), ClientVariant::Pkcs1),
        (app_id("s3"), ClientVariant::BagAttributes),
    ];
    for (app, v) in &cert_apps {
        set_apple_cert(&w, app, *v, &apns, json!({})).await;
    }
    put_p8(&w).await;
    let token_app = app_id("stoken");
    set_config(
        &w.couch,
        &[&token_app, "apple"],
        json!({
            "auth_type": "token", "team_id": pki().team_id, "key_id": pki().key_id,
            "host": apns.base_url()
        }),
    )
    .await;
    let fcm_app = app_id("sfcm");
    set_config(
        &w.couch,
        &[&fcm_app, "firebase_v1"],
        json!({"service_account": sa}),
    )
    .await;
    // A broken certificate too: its error path must not echo the PEM either.
    let broken_app = app_id("sbroken");
    let broken = format!(
        "{}\n-----BEGIN PRIVATE KEY-----\nnot base64 at all\n",
        pki().client(ClientVariant::Pkcs8).pem
    );
    set_config(
        &w.couch,
        &[&broken_app, "apple"],
        json!({"certificate": broken, "host": apns.base_url()}),
    )
    .await;

    let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("secrets-{}.log", rand_hex(6)));
    let child = w.start_binary(&log, "trace").await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    let mut requests = vec![];
    for (app, _) in &cert_apps {
        requests.push(push_req(app, "apple", "5ec0"));
    }
    requests.push(push_req(&token_app, "apple", "5ec1"));
    requests.push(push_req(&token_app, "apple", "5ec2"));
    requests.push(push_req(&fcm_app, "firebase", "5ec3"));
    requests.push(push_req(&fcm_app, "firebase", "5ec4"));
    requests.push(push_req(&broken_app, "apple", "5ec5"));
    let mut statuses = vec![];
    for mut body in requests {
        body["Pusher-Reply-To"] = json!(reply_to);
        publish_push(&w, &body).await;
        statuses.push(next_reply(&mut replies).await["Status"].clone());
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "delivered").count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&json!("no_credentials")));

    // Everything that must never be logged.
    let mut secrets: Vec<String> = vec![];
    for (_, v) in &cert_apps {
        secrets.extend(pem_body_lines(&pki().client(*v).pem));
    }
    secrets.extend(pem_body_lines(&pki().p8_pem));
    secrets.extend(pem_body_lines(&pki().sa_private_key_pem));
    let bearers: Vec<String> = apns
        .received()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert!(!bearers.is_empty(), "token auth was used");
    for b in &bearers {
        let jwt = b
            .trim_start_matches("bearer ")
            .trim_start_matches("Bearer ");
        secrets.push(jwt.to_string());
        secrets.extend(jwt.rsplit('.').next().map(str::to_string));
    }
    let access = fcm.live_token_values();
    assert!(!access.is_empty(), "an OAuth token was issued");
    secrets.extend(access);
    let status = w.stop_binary(child).await;
    assert!(status.success(), "{status}");

    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(
        text.lines().count() > 100,
        "trace logging was on: {} lines",
        text.lines().count()
    );
    assert!(text.contains("push delivered"), "the pushes are in the log");
    let leaks: Vec<&String> = secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} secret(s) in {}",
        leaks.len(),
        log.display()
    );
    for marker in ["PRIVATE KEY", "BEGIN CERTIFICATE", "private_key\"", "eyJ"] {
        assert!(!text.contains(marker), "{marker:?} in {}", log.display());
    }
    let _ = std::fs::remove_file(&log);
}

/// The value of the first `/metrics` sample whose line starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_ready_reflect_what_happened() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let app = app_id("metrics");
    set_apple_cert(&w, &app, ClientVariant::Pkcs8, &mock, json!({})).await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("mdev", json!({})).await;
    w.start().await;
    let reg = w.reg_success(0, "mdev");
    w.publish_reg(&reg).await;
    w.wait_device("mdev", 10, |d| d.get("push").is_some()).await;
    // The doc is written before its registration is done (the device stays claimed until
    // then): a second registration of the device now would be parked, not answered from
    // the cache. Wait for the first to be counted.
    let addr = w.http_addr.expect("http");
    let hang_guard = Instant::now() + Duration::from_secs(15);
    loop {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        if metric(&text, "pusher_reg_success_total{outcome=\"updated\"}") == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < hang_guard,
            "first registration never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.publish_reg(&reg).await; // unchanged
    let mut other_ua = reg.clone();
    other_ua["User-Agent"] = json!("Desk Phone 1.0");
    w.publish_reg(&other_ua).await; // no rule
    w.publish("registrar", "registration.success.x.y", b"{not json")
        .await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    for token in ["ab10", "dead10"] {
        let mut body = push_req(&app, "apple", token);
        body["Pusher-Reply-To"] = json!(reply_to);
        publish_push(&w, &body).await;
        next_reply(&mut replies).await;
    }
    w.wait_queue_drained().await;

    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.expect("body");
    let get = |p: &str| metric(&text, p).unwrap_or_else(|| panic!("{p} missing:\n{text}"));
    assert_eq!(get("pusher_amqp_connected "), 1.0);
    assert_eq!(get("pusher_couch_reachable "), 1.0);
    assert_eq!(get("pusher_config_loaded "), 1.0);
    assert_eq!(
        get("pusher_messages_consumed_total{event=\"reg_success\"}"),
        3.0
    );
    assert_eq!(
        get("pusher_messages_consumed_total{event=\"push_req\"}"),
        2.0
    );
    assert_eq!(
        get("pusher_messages_consumed_total{event=\"undecodable\"}"),
        1.0
    );
    assert_eq!(
        get("pusher_messages_settled_total{disposition=\"ack\"}"),
        6.0
    );
    assert_eq!(get("pusher_messages_in_flight "), 0.0);
    for outcome in ["updated", "unchanged", "no_rule"] {
        assert_eq!(
            get(&format!(
                "pusher_reg_success_total{{outcome=\"{outcome}\"}}"
            )),
            1.0
        );
    }
    for outcome in ["delivered", "dead_token"] {
        let p =
            format!("pusher_pushes_total{{provider=\"apns\",app=\"{app}\",outcome=\"{outcome}\"}}");
        assert_eq!(get(&p), 1.0);
    }
    assert_eq!(get("pusher_pushes_in_flight "), 0.0);
    assert_eq!(get("pusher_push_dispatch_seconds_count "), 2.0);
    assert_eq!(
        get("pusher_provider_request_seconds_count{provider=\"apns\"}"),
        2.0
    );
    assert_eq!(
        get("pusher_push_duration_seconds_count{provider=\"apns\"}"),
        2.0
    );
    let expiry = get(&format!(
        "pusher_apns_certificate_expiry_seconds{{app=\"{app}\"}}"
    ));
    assert!(
        expiry > 86_400.0 * 365.0,
        "the test certificate is long-lived: {expiry}"
    );

    let ready: Value = reqwest::get(format!("http://{addr}/ready"))
        .await
        .expect("ready")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["amqp"], "consuming");
    assert_eq!(ready["couchdb"], "reachable");
    w.stop().await;
}

// ---- Provider adapters at their edges (issue #12: timeouts, extra CA, refusals) ----

/// A mock FCM (plain or TLS) with the test service account registered, and an app of
/// `w` that uses it with `deadline_ms` as its push deadline.
async fn fcm_app(w: &World, fcm: &MockFcm, tag: &str, deadline_ms: u64) -> String {
    let sa = pki().service_account_json(&fcm.token_uri());
    let app = app_id(tag);
    set_config(
        &w.couch,
        &[&app],
        json!({"firebase_v1": {"service_account": sa}, "push_deadline_ms": deadline_ms}),
    )
    .await;
    app
}

/// Publishes `body` asking for a verdict on `reply_to`, returns the `push_resp`.
async fn push_and_wait(
    w: &World,
    reply_to: &str,
    replies: &mut lapin::Consumer,
    mut body: Value,
) -> Value {
    body["Pusher-Reply-To"] = json!(reply_to);
    publish_push(w, &body).await;
    let r = next_reply(replies).await;
    assert_eq!(r["Msg-ID"], body["Msg-ID"], "{r}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_and_its_oauth_endpoint_over_tls_use_the_extra_ca() {
    use pusher_sandbox::fcm_mock::ServerIdentity;
    let fcm = MockFcm::start(FcmMockConfig {
        tls: Some(ServerIdentity::from_pki(pki())),
        ..Default::default()
    })
    .await
    .expect("mock FCM over TLS");
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");
    assert!(fcm.token_uri().starts_with("https://"));

    // PUSHER_EXTRA_CA_FILE names the mock's CA: token request and send both succeed.
    let mut trusting = world(Some(fcm.base_url())).await;
    let app = fcm_app(&trusting, &fcm, "fcmtls", 3000).await;
    trusting.start().await;
    let (reply_to, mut replies) = reply_queue(&trusting).await;
    let r = push_and_wait(
        &trusting,
        &reply_to,
        &mut replies,
        push_req(&app, "firebase", "tlsok"),
    )
    .await;
    assert_eq!(r["Status"], "delivered", "{r}");
    assert_eq!(fcm.token_requests(), 1);
    assert_eq!(fcm.requests_for_token("tlsok"), 1);
    trusting.stop().await;

    // Without it the TLS handshake with the token endpoint fails, and says so: the real
    // binary's log names the certificate problem on every failed attempt.
    let mut strict = World::new().await;
    strict.env.push(("PUSHER_FCM_URL".into(), fcm.base_url()));
    let app = fcm_app(&strict, &fcm, "fcmnotls", 2000).await;
    let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fcm-tls-{}.log", rand_hex(6)));
    let child = strict.start_binary(&log, "info").await;
    let (reply_to, mut replies) = reply_queue(&strict).await;
    let r = push_and_wait(
        &strict,
        &reply_to,
        &mut replies,
        push_req(&app, "firebase", "tlsno"),
    )
    .await;
    assert_eq!(r["Status"], "timeout", "{r}");
    assert_eq!(fcm.token_requests(), 1, "no HTTP request got through");
    assert_eq!(fcm.requests_for_token("tlsno"), 0);
    let status = strict.stop_binary(child).await;
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).expect("read log");
    let tls_errors = text
        .lines()
        .filter(|l| l.contains("push attempt failed") || l.contains("within its deadline"))
        .filter(|l| l.contains("invalid peer certificate") && l.contains("UnknownIssuer"))
        .count();
    assert!(tls_errors > 0, "a clear TLS error in {}", log.display());
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_service_account_is_settled_at_once() {
    let fcm = MockFcm::start(FcmMockConfig::default())
        .await
        .expect("mock FCM");
    // The account is not (or no longer) known to the token endpoint: 400 invalid_grant.
    let mut w = world(Some(fcm.base_url())).await;
    let app = fcm_app(&w, &fcm, "revoked", 20_000).await;
    w.start().await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    for (i, token) in ["rv01", "rv02"].into_iter().enumerate() {
        let r = push_and_wait(
            &w,
            &reply_to,
            &mut replies,
            push_req(&app, "firebase", token),
        )
        .await;
        assert_eq!(
            r["Status"], "auth_error",
            "settled as refused credentials, not retried: {r}"
        );
        assert_eq!(r["Reason"], "oauth:invalid_grant", "{r}");
        let elapsed = r["Elapsed-Ms"].as_u64().expect("Elapsed-Ms");
        assert!(elapsed < 5_000, "not retried to the 20 s deadline: {r}");
        // The second push is refused from the remembered answer.
        assert_eq!(fcm.token_requests(), 1, "push {i}");
    }
    assert!(fcm.received().is_empty(), "nothing sent without a token");

    // The push outcome is counted as rejected.
    let addr = w.http_addr.expect("http");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    let p = format!("pusher_pushes_total{{provider=\"fcm\",app=\"{app}\",outcome=\"rejected\"}}");
    assert_eq!(metric(&text, &p), Some(2.0), "{text}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_outage_is_retried_until_it_recovers() {
    use pusher_sandbox::fcm_mock::TokenReply;
    let fcm = MockFcm::start(FcmMockConfig::default())
        .await
        .expect("mock FCM");
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");
    fcm.script_token_endpoint(vec![
        TokenReply::fail(503, "temporarily_unavailable"),
        TokenReply::fail(500, "internal_failure"),
        TokenReply::Issue,
    ]);
    let mut w = world(Some(fcm.base_url())).await;
    let app = fcm_app(&w, &fcm, "outage", 20_000).await;
    w.start().await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    let r = push_and_wait(
        &w,
        &reply_to,
        &mut replies,
        push_req(&app, "firebase", "ou01"),
    )
    .await;
    assert_eq!(r["Status"], "delivered", "{r}");
    assert_eq!(fcm.token_requests(), 3);
    assert_eq!(fcm.requests_for_token("ou01"), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_provider_token_is_retried_with_a_new_jwt() {
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    put_p8(&w).await;
    let app = app_id("expired");
    set_config(&w.couch, &[&app, "apple"], json!({
        "auth_type": "token", "team_id": pki().team_id, "key_id": pki().key_id, "host": mock.base_url()
    })).await;
    let tokens = ["ex01", "ex02", "ex03"];
    for t in tokens {
        mock.script(
            t,
            vec![Reply::status(403, "ExpiredProviderToken"), Reply::Ok],
        );
    }
    w.start().await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    for t in tokens {
        let r = push_and_wait(&w, &reply_to, &mut replies, push_req(&app, "apple", t)).await;
        assert_eq!(r["Status"], "delivered", "{r}");
    }
    let got = mock.received();
    for t in tokens {
        let auth: Vec<(u16, &str)> = got
            .iter()
            .filter(|r| r.token == t)
            .map(|r| (r.status, r.header("authorization").unwrap_or("")))
            .collect();
        assert_eq!(auth.len(), 2, "{t}: {auth:?}");
        assert_eq!((auth[0].0, auth[1].0), (403, 200));
        assert_ne!(auth[0].1, auth[1].1, "{t}: the retry carries a new JWT");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_token_endpoint_times_out_fcm_at_the_deadline_only() {
    let fcm = MockFcm::start(FcmMockConfig {
        token_latency: Duration::MAX,
        ..Default::default()
    })
    .await
    .expect("mock FCM");
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");
    let apns = apns_mock(Duration::ZERO).await;
    let mut w = world(Some(fcm.base_url())).await;
    let app = fcm_app(&w, &fcm, "hung", 2000).await;
    let apple = app_id("beside");
    set_apple_cert(&w, &apple, ClientVariant::Pkcs8, &apns, json!({})).await;
    w.start().await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    let mut waiting = std::collections::HashMap::new();
    for i in 0..5 {
        let mut body = push_req(&app, "firebase", &format!("hg{i}"));
        body["Pusher-Reply-To"] = json!(reply_to);
        publish_push(&w, &body).await;
        waiting.insert(
            body["Msg-ID"].as_str().unwrap_or_default().to_string(),
            "fcm",
        );
    }
    let mut body = push_req(&apple, "apple", "ap01");
    body["Pusher-Reply-To"] = json!(reply_to);
    publish_push(&w, &body).await;
    waiting.insert(
        body["Msg-ID"].as_str().unwrap_or_default().to_string(),
        "apns",
    );
    while !waiting.is_empty() {
        let r = next_reply(&mut replies).await;
        let provider = waiting
            .remove(r["Msg-ID"].as_str().unwrap_or_default())
            .unwrap_or_else(|| panic!("unexpected reply {r}"));
        let elapsed = r["Elapsed-Ms"].as_u64().expect("Elapsed-Ms");
        match provider {
            "apns" => assert_eq!(r["Status"], "delivered", "{r}"),
            _ => {
                assert_eq!(r["Status"], "timeout", "{r}");
                assert!(
                    (1_900..=3_000).contains(&elapsed),
                    "settled at its 2 s deadline: {r}"
                );
            }
        }
    }
    assert_eq!(
        fcm.token_requests(),
        1,
        "one token request for all the pushes waiting on it"
    );
    assert!(fcm.received().is_empty());
    w.stop().await;
}

/// Issue #14 part 4: a service account under `firebase_v1` with `firebase_v1.enabled:
/// false` disables the app for `Token-Type: firebase` pushes too (not only
/// `firebase_v1`), while the same account enabled is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firebase_v1_enabled_false_disables_firebase_token_pushes() {
    let fcm = MockFcm::start(FcmMockConfig::default())
        .await
        .expect("mock FCM");
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");
    let mut w = world(Some(fcm.base_url())).await;
    let on = app_id("fcmon");
    let off = app_id("fcmoff");
    set_config(
        &w.couch,
        &[&on, "firebase_v1"],
        json!({"service_account": sa}),
    )
    .await;
    set_config(
        &w.couch,
        &[&off, "firebase_v1"],
        json!({"service_account": sa, "enabled": false}),
    )
    .await;
    w.start().await;
    let (reply_to, mut replies) = reply_queue(&w).await;
    for (app, token_type, token, status) in [
        (&off, "firebase", "fcmoff1", "disabled"),
        (&off, "firebase_v1", "fcmoff2", "disabled"),
        (&on, "firebase", "fcmon1", "delivered"),
    ] {
        let mut body = push_req(app, token_type, token);
        body["Pusher-Reply-To"] = json!(reply_to);
        publish_push(&w, &body).await;
        let r = next_reply(&mut replies).await;
        assert_eq!(r["Msg-ID"], body["Msg-ID"], "{r}");
        assert_eq!(r["Status"], status, "{app} {token_type}: {r}");
    }
    let sent: Vec<String> = fcm.received().iter().map(|r| r.token.clone()).collect();
    assert_eq!(
        sent,
        vec!["fcmon1".to_string()],
        "disabled app: nothing sent"
    );
    w.stop().await;
}

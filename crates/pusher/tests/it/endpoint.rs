//! Kazoo 5 `endpoint_push_req` (issue #14 part 2) through the real service, RabbitMQ
//! and pouchdb-server: fan-out to a device or a user's devices, the APNs and FCM v1
//! mapping as the mocks receive it, and the `endpoint_push_resp` on `targeted` to the
//! request's `Server-ID`.

use std::time::Duration;

use pusher_sandbox::fcm_mock::{FcmMockConfig, MockFcm};
use pusher_sandbox::pki::ClientVariant;
use serde_json::{Value, json};

use crate::helpers::{World, apns_mock, couch_url, pki, rand_hex, set_config};
use crate::legacy::{next_within, requester};
use crate::push::{app_id, set_apple_cert, world};

/// The extra binding the tests publish through (Kazoo 5's own key is not public).
const EXCHANGE: &str = "pushes";
const KEY: &str = "k5.endpoint_push";
/// How long a test waits for an answer that must come.
const MUST_COME: Duration = Duration::from_secs(30);

/// Kazoo's `attributes` design document, with the view `owned` that
/// `kz_attributes:owned_by_docs` reads (key `[OwnerId, pvt_type]`).
async fn put_owned_view(w: &World) {
    let design = json!({
        "_id": "_design/attributes",
        "language": "javascript",
        "views": {"owned": {"map":
            "function(doc) { if (doc.pvt_deleted || !doc.owner_id) return; emit([doc.owner_id, doc.pvt_type], null); }"
        }}
    });
    w.couch
        .put_doc(&w.account_db, &design)
        .await
        .expect("design doc");
}

/// A request as crossbar's `PUT /v2/accounts/{A}/{users|devices}/{ID}/pushes` makes it.
fn request(w: &World, kind: &str, id: &str, server_id: &str, msg_id: &str) -> Value {
    json!({
        "Event-Category": "notification", "Event-Name": "endpoint_push_req",
        "Account-ID": w.account_id,
        "Endpoint": {"ID": id, "Type": kind},
        "Alert": {"Title": "Missed call", "Body": "From 2001",
            "Title-Key": "IC_MISSED_CALL_TITLE",
            "Body-Key": "IC_MISSED_CALL_BODY", "Body-Params": ["Alice", "2001"]},
        "Badge": 2, "Sound": "ring.caf", "Category": "missed_call",
        "Collapse-ID": "mc-1", "Priority": "high", "TTL": 60,
        "APNs": {"Thread-ID": "calls", "Push-Type": "alert"},
        "FCM": {"Android": {"Channel-ID": "calls", "Color": "#00ff00"}},
        "Data": {"Push-Type": "custom_push", "count": 3},
        "Call-ID": "call-42",
        "Msg-ID": msg_id, "Server-ID": server_id,
    })
}

/// One Apple app (mock APNs, certificate auth) and one Firebase v1 app (mock FCM).
struct Apps {
    apns: pusher_sandbox::apns_mock::MockApns,
    fcm: MockFcm,
    apple: String,
    android: String,
}

async fn apps() -> (World, Apps) {
    let apns = apns_mock(Duration::ZERO).await;
    let fcm = MockFcm::start(FcmMockConfig::default())
        .await
        .expect("mock FCM");
    let mut w = world(Some(fcm.base_url())).await;
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");
    w.env
        .push(("PUSHER_EXTRA_BINDINGS".into(), format!("{EXCHANGE}:{KEY}")));
    let apple = app_id("ios");
    let android = app_id("android");
    set_apple_cert(&w, &apple, ClientVariant::Pkcs8, &apns, json!({})).await;
    set_config(
        &w.couch,
        &[&android, "firebase_v1"],
        json!({"service_account": sa}),
    )
    .await;
    (
        w,
        Apps {
            apns,
            fcm,
            apple,
            android,
        },
    )
}

/// Creates devices owned by `owner`: (id, `push` object if any).
async fn put_owned_devices(w: &World, owner: &str, devices: &[(&str, Option<Value>)]) {
    for (id, push) in devices {
        let mut extra = json!({"owner_id": owner});
        if let Some(push) = push {
            extra["push"] = push.clone();
        }
        w.put_device(id, extra).await;
    }
}

/// A `push` object.
fn push(app: &str, token_type: &str, token: &str) -> Option<Value> {
    Some(json!({"Token-App": app, "Token-Type": token_type, "Token-ID": token}))
}

/// Starts the service; a requester queue bound to `targeted` and its `Server-ID`.
async fn start(w: &mut World) -> (String, lapin::Consumer) {
    w.start().await;
    let server_id = format!("it-k5-{}", rand_hex(8));
    let replies = requester(w, &server_id).await;
    (server_id, replies)
}

/// Publishes `body` through the extra binding and returns the answer.
async fn ask(w: &World, replies: &mut lapin::Consumer, body: &Value) -> Value {
    w.publish(EXCHANGE, KEY, body.to_string().as_bytes()).await;
    next_within(replies, MUST_COME)
        .await
        .expect("endpoint_push_resp")
}

fn results_by_device(resp: &Value) -> std::collections::BTreeMap<String, Value> {
    resp["Results"]
        .as_array()
        .expect("Results")
        .iter()
        .map(|r| (r["Device-ID"].as_str().unwrap_or("").to_string(), r.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_and_user_with_two_push_devices_and_one_without() {
    let (mut w, apps) = apps().await;
    put_owned_view(&w).await;
    let user = format!("user-{}", rand_hex(8));
    put_owned_devices(
        &w,
        &user,
        &[
            ("dev-ios", push(&apps.apple, "apple", "0a1b2c3d")),
            (
                "dev-android",
                push(&apps.android, "firebase_v1", "fcm-tok-1"),
            ),
            ("dev-desk", None),
        ],
    )
    .await;
    // Another user's device, which must not be pushed.
    put_owned_devices(
        &w,
        "someone-else",
        &[("dev-other", push(&apps.apple, "apple", "ffff0000"))],
    )
    .await;
    let (server_id, mut replies) = start(&mut w).await;

    // One device.
    let msg_id = uuid::Uuid::new_v4().to_string();
    let body = request(&w, "device", "dev-ios", &server_id, &msg_id);
    let resp = ask(&w, &mut replies, &body).await;
    assert_eq!(resp["Event-Name"], "endpoint_push_resp", "{resp}");
    assert_eq!(resp["Event-Category"], "notification");
    assert_eq!(resp["Msg-ID"], json!(msg_id));
    assert_eq!(resp["Overall-Status"], 200, "{resp}");
    assert_eq!(
        resp["Results"],
        json!([{"Device-ID": "dev-ios", "Status": 200, "Message": "Push sent"}])
    );
    let got = apps.apns.wait_for(1, MUST_COME).await;
    let r = &got[0];
    assert_eq!(r.token, "0a1b2c3d");
    assert_eq!(r.header("apns-topic"), Some(apps.apple.as_str()));
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(r.header("apns-collapse-id"), Some("mc-1"));
    assert_eq!(r.header("apns-id"), Some(msg_id.as_str()));
    let expiration: u64 = r.header("apns-expiration").unwrap().parse().unwrap();
    assert!(expiration > 1_700_000_000, "{expiration}");
    let aps = &r.body["aps"];
    assert_eq!(aps["alert"]["title"], "Missed call");
    assert_eq!(aps["alert"]["body"], "From 2001");
    assert_eq!(aps["alert"]["title-loc-key"], "IC_MISSED_CALL_TITLE");
    assert_eq!(aps["alert"]["loc-key"], "IC_MISSED_CALL_BODY");
    assert_eq!(aps["alert"]["loc-args"], json!(["Alice", "2001"]));
    assert_eq!(aps["badge"], 2);
    assert_eq!(aps["sound"], "ring.caf");
    assert_eq!(aps["category"], "missed_call");
    assert_eq!(aps["thread-id"], "calls");
    assert_eq!(aps["call-id"], "call-42");
    assert_eq!(r.body["Push-Type"], "custom_push");
    assert_eq!(r.body["count"], 3);
    assert_eq!(r.body["Kazoo-Device-Id"], "dev-ios");

    // The user: two push devices (Apple, Firebase) and one without `push`.
    let msg_id = uuid::Uuid::new_v4().to_string();
    let body = request(&w, "user", &user, &server_id, &msg_id);
    let resp = ask(&w, &mut replies, &body).await;
    assert_eq!(resp["Msg-ID"], json!(msg_id));
    assert_eq!(resp["Overall-Status"], 200, "{resp}");
    let results = results_by_device(&resp);
    assert_eq!(
        results.keys().map(String::as_str).collect::<Vec<_>>(),
        ["dev-android", "dev-desk", "dev-ios"],
        "{resp}"
    );
    assert_eq!(results["dev-ios"]["Status"], 200);
    assert_eq!(results["dev-android"]["Status"], 200);
    assert_eq!(
        results["dev-desk"],
        json!({"Device-ID": "dev-desk", "Status": 200, "Message": "Not push device"})
    );
    assert_eq!(apps.apns.wait_for(2, MUST_COME).await.len(), 2);
    let got = apps.fcm.wait_for(1, MUST_COME).await;
    let m = &got[0].message;
    assert_eq!(got[0].token, "fcm-tok-1");
    assert_eq!(got[0].status, 200, "{:?}", got[0]);
    assert_eq!(
        m["notification"],
        json!({"title": "Missed call", "body": "From 2001"})
    );
    assert_eq!(m["android"]["priority"], "high");
    assert_eq!(m["android"]["ttl"], "60s");
    assert_eq!(m["android"]["collapse_key"], "mc-1");
    let n = &m["android"]["notification"];
    assert_eq!(n["title_loc_key"], "IC_MISSED_CALL_TITLE");
    assert_eq!(n["body_loc_key"], "IC_MISSED_CALL_BODY");
    assert_eq!(n["body_loc_args"], json!(["Alice", "2001"]));
    assert_eq!(n["click_action"], "missed_call");
    assert_eq!(n["channel_id"], "calls");
    assert_eq!(n["color"], "#00ff00");
    assert_eq!(n["sound"], "ring.caf");
    assert_eq!(n["notification_count"], 2);
    assert_eq!(m["apns"]["headers"]["apns-collapse-id"], "mc-1");
    assert_eq!(m["apns"]["payload"]["aps"]["thread-id"], "calls");
    // FCM v1 data: strings only.
    assert_eq!(m["data"]["count"], "3");
    assert_eq!(m["data"]["Push-Type"], "custom_push");
    assert_eq!(m["data"]["Call-ID"], "call-42");
    assert_eq!(m["data"]["Kazoo-Device-Id"], "dev-android");
    assert!(
        apps.apns.received().iter().all(|r| r.token != "ffff0000"),
        "another user's device was pushed"
    );

    // pusherctl: the same user, through the binary.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pusherctl"))
        .args([
            "pusher_maintenance",
            "push_endpoint",
            &w.account_id,
            "user",
            &user,
            "Hello from pusherctl",
        ])
        .env("PUSHER_AMQP_URI", w.vhost.uri())
        .env("PUSHER_COUCH_URL", couch_url())
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("pusherctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {:?}", out.stderr);
    assert!(stdout.contains("dev-ios: 200 Push sent"), "{stdout}");
    assert!(stdout.contains("dev-android: 200 Push sent"), "{stdout}");
    assert!(stdout.contains("dev-desk: 200 Not push device"), "{stdout}");
    assert!(stdout.ends_with("Overall-Status: 200\n"), "{stdout}");
    let got = apps.fcm.wait_for(2, MUST_COME).await;
    assert_eq!(
        got[1].message["notification"]["body"], "Hello from pusherctl",
        "{:?}",
        got[1]
    );
    let metrics = w.metrics().await;
    assert!(
        metrics.contains("pusher_endpoint_pushes_total{outcome=\"sent\"} 5"),
        "{metrics}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_devices_without_the_view_and_errors_per_device() {
    let (mut w, apps) = apps().await;
    // No `_design/attributes`: the service scans the account's documents instead.
    let user = format!("user-{}", rand_hex(8));
    let half = json!({"Token-App": apps.apple, "Token-Type": "apple"});
    let devices = [
        ("dev-ios", push(&apps.apple, "apple", "0b1c2d3e")),
        ("dev-half", Some(half)),
        ("dev-pager", push(&apps.apple, "pager", "p1")),
    ];
    put_owned_devices(&w, &user, &devices).await;
    let (server_id, mut replies) = start(&mut w).await;
    let msg_id = uuid::Uuid::new_v4().to_string();
    let resp = ask(
        &w,
        &mut replies,
        &request(&w, "user", &user, &server_id, &msg_id),
    )
    .await;
    let results = results_by_device(&resp);
    assert_eq!(results["dev-ios"]["Status"], 200, "{resp}");
    assert_eq!(
        results["dev-half"],
        json!({"Device-ID": "dev-half", "Status": 400,
            "Message": "Missing mandatory push properties",
            "Error": "Missing mandatory push properties"})
    );
    assert_eq!(results["dev-pager"]["Status"], 400);
    assert_eq!(results["dev-pager"]["Message"], "Token type unknown");
    // Any error wins the overall status.
    assert_eq!(resp["Overall-Status"], 400);
    let got = apps.apns.wait_for(1, MUST_COME).await;
    assert_eq!(got[0].token, "0b1c2d3e");

    // An unusable request still gets its answer: 400, no results.
    let bad = json!({"Event-Category": "notification", "Event-Name": "endpoint_push_req",
        "Endpoint": {"ID": "x", "Type": "group"}, "Account-ID": w.account_id,
        "Msg-ID": "bad-1", "Server-ID": server_id});
    let resp = ask(&w, &mut replies, &bad).await;
    assert_eq!(resp["Msg-ID"], "bad-1");
    assert_eq!(resp["Overall-Status"], 400);
    assert_eq!(resp["Results"], json!([]));
    assert!(
        resp["Error"]
            .as_str()
            .unwrap_or("")
            .contains("Endpoint.Type"),
        "{resp}"
    );
    // A request without Server-ID is fire-and-forget (K5's missed-call pushes), and
    // what is published next still gets its answer in order.
    let mut quiet = request(&w, "device", "dev-ios", &server_id, "quiet");
    quiet.as_object_mut().unwrap().remove("Server-ID");
    w.publish(EXCHANGE, KEY, quiet.to_string().as_bytes()).await;
    apps.apns.wait_for(2, MUST_COME).await;
    let body = request(&w, "device", "no-such-device", &server_id, "missing-1");
    let resp = ask(&w, &mut replies, &body).await;
    // As K5: a device that does not exist gives no result, and no error.
    assert_eq!(resp["Msg-ID"], "missing-1", "{resp}");
    assert_eq!(resp["Overall-Status"], 200);
    assert_eq!(resp["Results"], json!([]));
    w.stop().await;
}

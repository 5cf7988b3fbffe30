//! The opt-in legacy `push_resp` for Kamailio's 2015 `kazoo_query` (issue #14 part 3):
//! two `pusherd` instances (in-process, different node names) on one vhost; a requester
//! queue bound to `targeted` with the request's `Server-ID`, as Kamailio's per-channel
//! targeted queue is.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{World, rand_hex, set_config};

/// How long a test waits for a `push_resp` that must come.
const MUST_COME: Duration = Duration::from_secs(40);
/// How long a test waits, once everything was handled, for a `push_resp` that must not
/// come (announcements cross the broker in milliseconds).
const MUST_NOT_COME: Duration = Duration::from_secs(2);

/// A second `pusherd` in `w`'s vhost, under node `node`.
struct Second {
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Second {
    async fn start(w: &World, node: &str) -> Self {
        let mut settings = w.settings();
        settings.node = node.to_string();
        let shutdown = CancellationToken::new();
        let running = pusher::start(settings, shutdown.clone())
            .await
            .expect("second instance starts");
        let addr = running.http_addr.expect("http enabled");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = reqwest::get(format!("http://{addr}/ready"))
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "second instance not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            shutdown,
            handle: Some(running.handle),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("second instance stops within 10 s")
                .expect("joins");
        }
    }
}

impl Drop for Second {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Kamailio's targeted queue for `server_id`: bound to `targeted` with that key.
pub(crate) async fn requester(w: &World, server_id: &str) -> lapin::Consumer {
    let ch = w.publisher.as_ref().expect("started").channel();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("requester queue");
    ch.queue_bind(
        q.name().as_str().into(),
        "targeted".into(),
        server_id.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind to targeted");
    ch.basic_consume(
        q.name().as_str().into(),
        "it-kamailio".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("consume")
}

/// The next message on `consumer` within `within`, as JSON.
pub(crate) async fn next_within(consumer: &mut lapin::Consumer, within: Duration) -> Option<Value> {
    let d = tokio::time::timeout(within, consumer.next()).await.ok()?;
    let d = d.expect("consumer open").expect("delivery");
    Some(serde_json::from_slice(&d.data).expect("push_resp is JSON"))
}

/// The 2015 Kamailio `kazoo_query` request (KC `0b8388f`): no `Payload`, an
/// `Alert-Body`, Kamailio's envelope with its `Server-ID`.
fn kazoo_query_push_req(token: &str, server_id: &str) -> Value {
    json!({
        "Event-Category": "notification",
        "Event-Name": "push_req",
        "Token-ID": token,
        "Token-Type": "apple",
        "Token-App": format!("org.it{}.legacy", rand_hex(6)),
        "Alert-Body": "2001 - Alice",
        "Msg-ID": uuid::Uuid::new_v4().to_string(),
        "App-Name": "kamailio",
        "App-Version": "4.3.0",
        "Node": "kamailio@kamailio.harness.local",
        "Server-ID": server_id,
    })
}

async fn publish_push(w: &World, body: &Value) {
    let key = format!(
        "notification.push.apple.{}",
        body["Token-ID"].as_str().unwrap()
    );
    w.publish("pushes", &key, body.to_string().as_bytes()).await;
}

/// The woken device's `reg_success`: the captured one, its Contact token = `token`.
fn reg_success(w: &World, token: &str) -> Value {
    let mut reg = w.reg_success(0, "legacydev");
    let contact = reg["Contact"].as_str().expect("Contact").to_string();
    assert!(
        contact.contains("pn-tok=abc;"),
        "fixture Contact: {contact}"
    );
    reg["Contact"] = json!(contact.replace("pn-tok=abc;", &format!("pn-tok={token};")));
    reg
}

/// Node-scoped config of the test's instances: the option, its wait, and a rule that
/// matches the fixture's User-Agent only when `matching`.
async fn configure(w: &World, node: &str, on: bool, wait_ms: Option<u64>, matching: bool) {
    let mut scope = json!({
        "User-Agents": {"Harness": {
            "regex": if matching { "^Linphone-Harness" } else { "^never-matches$" },
            "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}
        }},
    });
    if on {
        scope["legacy_push_resp"] = json!(true);
    }
    if let Some(ms) = wait_ms {
        scope["legacy_push_resp_wait_ms"] = json!(ms);
    }
    set_config(&w.couch, &[node], scope).await;
}

fn other_node() -> String {
    format!("pusher@it-{}", rand_hex(8))
}

fn server_id() -> String {
    format!("kamailio@it-{}-<1>-targeted-0", rand_hex(8))
}

/// The `reg_success` reaches the instance that does *not* hold the `push_req` (the first
/// instance has no matching rule, so only the second one handles registrations): the
/// first one answers, exactly once, through the announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_push_resp_when_the_device_registers_through_another_instance() {
    let mut w = World::new().await;
    let node_b = other_node();
    // The longest wait, so a slow start of the second instance on a busy machine cannot
    // let the request expire before the registration arrives (expiry has its own test).
    configure(&w, &w.node, true, Some(60_000), false).await;
    configure(&w, &node_b, true, Some(60_000), true).await;
    w.put_device("legacydev", json!({})).await;
    w.start().await;
    let sid = server_id();
    let mut kamailio = requester(&w, &sid).await;
    let token = format!("legacy{}", rand_hex(12));
    let mut req = kazoo_query_push_req(&token, &sid);
    // Our verdict reply says when the request was handled (so remembered).
    let (reply_to, mut verdicts) = crate::push::reply_queue(&w).await;
    req["Pusher-Reply-To"] = json!(reply_to);
    // Only the first instance runs: it takes (and remembers) the request.
    publish_push(&w, &req).await;
    crate::push::next_reply(&mut verdicts).await;
    let b = Second::start(&w, &node_b).await;

    // The phone registers; RabbitMQ hands registrations to both instances in turn, and
    // only the second one's rule matches, so register again until it saw one.
    let started = Instant::now();
    let resp = loop {
        w.publish_reg(&reg_success(&w, &token)).await;
        if let Some(r) = next_within(&mut kamailio, Duration::from_millis(500)).await {
            break r;
        }
        assert!(
            started.elapsed() < MUST_COME,
            "no push_resp within {MUST_COME:?}"
        );
    };
    assert_eq!(resp["Event-Category"], "notification", "{resp}");
    assert_eq!(resp["Event-Name"], "push_resp");
    assert_eq!(resp["Token-ID"], token.as_str());
    assert_eq!(resp["Msg-ID"], req["Msg-ID"], "Kamailio matches by Msg-ID");
    assert_eq!(resp["App-Name"], "pusher");
    assert!(resp["App-Version"].is_string());
    assert_eq!(
        resp["Node"],
        w.node.as_str(),
        "answered by the instance holding the request"
    );
    // More registrations of the same phone, through both instances: no second answer.
    for _ in 0..4 {
        w.publish_reg(&reg_success(&w, &token)).await;
    }
    w.wait_queue_drained().await;
    let device = w.device("legacydev").await;
    assert_eq!(
        device["push"]["Token-ID"],
        token.as_str(),
        "device updated too"
    );
    let second = next_within(&mut kamailio, MUST_NOT_COME).await;
    assert_eq!(second, None, "a second push_resp");
    b.stop().await;
    w.stop().await;
}

/// A registration after the wait (4 s here, `legacy_push_resp_wait_ms`) is not answered;
/// a request made afterwards still is, so the silence is not a broken link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_push_resp_once_the_wait_is_over() {
    const WAIT_MS: u64 = 4000;
    let mut w = World::new().await;
    let node_b = other_node();
    configure(&w, &w.node, true, Some(WAIT_MS), true).await;
    configure(&w, &node_b, true, Some(WAIT_MS), true).await;
    w.put_device("legacydev", json!({})).await;
    w.start().await;
    let b = Second::start(&w, &node_b).await;
    let sid = server_id();
    let mut kamailio = requester(&w, &sid).await;
    // The requests also ask for our verdict reply: it comes once the request was
    // handled, so after it was remembered (a quicker signal than the queue depth).
    let (reply_to, mut verdicts) = crate::push::reply_queue(&w).await;
    let token = format!("legacy{}", rand_hex(12));
    let mut late = kazoo_query_push_req(&token, &sid);
    late["Pusher-Reply-To"] = json!(reply_to);
    publish_push(&w, &late).await;
    crate::push::next_reply(&mut verdicts).await;
    // The behaviour under test is the passing of time: let the wait run out (+ margin).
    tokio::time::sleep(Duration::from_millis(WAIT_MS + 500)).await;
    for _ in 0..2 {
        w.publish_reg(&reg_success(&w, &token)).await;
    }
    w.wait_queue_drained().await;
    assert_eq!(
        next_within(&mut kamailio, MUST_NOT_COME).await,
        None,
        "answered after the wait"
    );
    // A fresh request is answered: the link works, and only the fresh Msg-ID comes.
    let mut fresh = kazoo_query_push_req(&token, &sid);
    fresh["Pusher-Reply-To"] = json!(reply_to);
    publish_push(&w, &fresh).await;
    crate::push::next_reply(&mut verdicts).await;
    w.publish_reg(&reg_success(&w, &token)).await;
    let resp = next_within(&mut kamailio, MUST_COME)
        .await
        .expect("push_resp for the fresh request");
    assert_eq!(resp["Msg-ID"], fresh["Msg-ID"], "{resp}");
    b.stop().await;
    w.stop().await;
}

/// With the option off (the default), a `kazoo_query`-shaped request is pushed as any
/// other, and its device's registration is handled, but no `push_resp` is ever sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_off_never_answers() {
    let mut w = World::new().await;
    let node_b = other_node();
    configure(&w, &w.node, false, None, true).await;
    configure(&w, &node_b, false, None, true).await;
    w.put_device("legacydev", json!({})).await;
    w.start().await;
    let b = Second::start(&w, &node_b).await;
    let sid = server_id();
    let mut kamailio = requester(&w, &sid).await;
    let token = format!("legacy{}", rand_hex(12));
    publish_push(&w, &kazoo_query_push_req(&token, &sid)).await;
    w.wait_queue_drained().await;
    for _ in 0..4 {
        w.publish_reg(&reg_success(&w, &token)).await;
    }
    w.wait_device("legacydev", 15, |d| d["push"]["Token-ID"] == token.as_str())
        .await;
    w.wait_queue_drained().await;
    assert_eq!(next_within(&mut kamailio, MUST_NOT_COME).await, None);
    b.stop().await;
    w.stop().await;
}

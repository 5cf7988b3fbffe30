//! The redelivery rule through the real service and RabbitMQ: a `push_req` that comes
//! back (the broker's `redelivered` flag) after its call is over is not sent; one still
//! inside its window is sent once. See `pusher_core::redelivery` for the rule.
//!
//! The redelivered copies are made the way the broker makes them: the test takes each
//! message with `basic.get` (manual ack) on its own channel and closes the channel
//! unacked, so RabbitMQ puts it back flagged `redelivered`; only then does the service
//! start and consume it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use pusher_io::amqp;
use pusher_sandbox::pki::ClientVariant;
use serde_json::{Value, json};

use crate::helpers::apns_mock;
use crate::push::{app_id, next_reply, push_req, reply_queue, set_apple_cert, world};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Publishes `body` to the `pushes` exchange, with `x-pusher-first-seen-ms` when given.
async fn publish(ch: &lapin::Channel, body: &Value, first_seen_ms: Option<u64>) {
    let mut props =
        BasicProperties::default().with_content_type(ShortString::from("application/json"));
    if let Some(ms) = first_seen_ms {
        let mut headers = FieldTable::default();
        headers.insert(
            pusher_core::redelivery::FIRST_SEEN_HEADER.into(),
            AMQPValue::LongLongInt(ms as i64),
        );
        props = props.with_headers(headers);
    }
    let key = format!(
        "notification.push.apple.{}",
        body["Token-ID"].as_str().unwrap_or("x")
    );
    ch.basic_publish(
        amqp::EXCHANGE_PUSHES.into(),
        key.as_str().into(),
        BasicPublishOptions::default(),
        body.to_string().as_bytes(),
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("broker confirms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_req_that_comes_back_after_its_call_is_not_sent_one_inside_its_window_is_sent_once()
{
    let mock = apns_mock(Duration::ZERO).await;
    let mut w = world(None).await;
    let app = app_id("redeliver");
    set_apple_cert(&w, &app, ClientVariant::Pkcs8, &mock, json!({})).await;
    w.connect_publisher().await;
    let (reply_to, mut replies) = reply_queue(&w).await;

    // The shared queue and its bindings exist before the service does (as when another
    // pusher instance declared them and died).
    let conn = amqp::connect(&w.vhost.uri(), "it-redelivery")
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    amqp::declare_topology(&ch).await.expect("topology");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");

    let now = now_ms();
    // (token, first-seen header, requester stamp, expected verdict)
    let cases: [(&str, Option<u64>, Option<u64>, &str); 4] = [
        ("late01", Some(now - 60_000), None, "expired"),
        ("fresh01", Some(now - 2_000), None, "delivered"),
        ("late02", None, Some(now - 45_000), "expired"),
        ("noevid01", None, None, "delivered"),
    ];
    let mut bodies = Vec::new();
    for (token, seen, stamp, _) in &cases {
        let mut body = push_req(&app, "apple", token);
        body["Pusher-Reply-To"] = json!(reply_to);
        if let Some(ms) = stamp {
            body["Payload"]["utc_unix_timestamp_ms"] = json!(ms.to_string());
        }
        publish(&ch, &body, *seen).await;
        bodies.push(body);
    }
    // Take every message unacked on a channel of our own, then close it: the broker puts
    // them back flagged `redelivered`.
    let taker = conn.create_channel().await.expect("taker channel");
    for _ in &cases {
        let got = taker
            .basic_get(amqp::QUEUE.into(), BasicGetOptions { no_ack: false })
            .await
            .expect("basic.get")
            .expect("a message");
        assert!(!got.delivery.redelivered, "first delivery");
    }
    taker
        .close(200, "give them back".into())
        .await
        .expect("close");

    w.start().await;
    let mut verdicts = std::collections::HashMap::new();
    for _ in &cases {
        let r = next_reply(&mut replies).await;
        verdicts.insert(r["Msg-ID"].as_str().unwrap_or("").to_string(), r);
    }
    for ((token, _, _, status), body) in cases.iter().zip(&bodies) {
        let r = &verdicts[body["Msg-ID"].as_str().expect("Msg-ID")];
        assert_eq!(r["Status"], *status, "{token}: {r}");
        let sent = mock.received().iter().filter(|q| q.token == *token).count();
        let want = usize::from(*status == "delivered");
        assert_eq!(sent, want, "{token} reached APNs {sent} times");
    }
    w.wait_queue_drained().await;
    w.stop().await;
    let _ = conn.close(200, "done".into()).await;
}

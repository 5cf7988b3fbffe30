//! The AMQP topology is Kazoo's, byte for byte, and an Erlang pusher could share it.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

use crate::helpers::{World, rabbitmqctl};

fn json_lines(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("rabbitmqctl JSON: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_arguments_bindings_and_manual_ack_consumer() {
    let mut w = World::new().await;
    w.start().await;
    let v = &w.vhost.name;

    let queues = json_lines(&rabbitmqctl(&[
        "-q",
        "list_queues",
        "-p",
        v,
        "name",
        "durable",
        "auto_delete",
        "exclusive",
        "arguments",
        "--formatter",
        "json",
    ]));
    let q = queues
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == "pusher_shared_listener"))
        .unwrap_or_else(|| panic!("queue declared: {queues}"));
    assert_eq!(q["durable"], false);
    assert_eq!(q["auto_delete"], true);
    assert_eq!(q["exclusive"], false);
    let args = q["arguments"].to_string();
    assert!(
        args.contains("x-max-length") && args.contains("100"),
        "{args}"
    );
    assert!(
        args.contains("x-message-ttl") && args.contains("60000"),
        "{args}"
    );

    let bindings = json_lines(&rabbitmqctl(&[
        "-q",
        "list_bindings",
        "-p",
        v,
        "source_name",
        "destination_name",
        "routing_key",
        "--formatter",
        "json",
    ]));
    let has = |src: &str, key: &str| {
        bindings.as_array().is_some_and(|bs| {
            bs.iter().any(|b| {
                b["source_name"] == src
                    && b["destination_name"] == "pusher_shared_listener"
                    && b["routing_key"] == key
            })
        })
    };
    assert!(has("pushes", "notification.push.*.*"), "{bindings}");
    assert!(has("registrar", "registration.success.*.*"), "{bindings}");
    assert!(has("targeted", "pusher_shared_listener"), "{bindings}");

    let exchanges = json_lines(&rabbitmqctl(&[
        "-q",
        "list_exchanges",
        "-p",
        v,
        "name",
        "type",
        "durable",
        "auto_delete",
        "--formatter",
        "json",
    ]));
    for (name, kind) in [
        ("pushes", "topic"),
        ("registrar", "topic"),
        ("targeted", "direct"),
    ] {
        let e = exchanges
            .as_array()
            .and_then(|es| es.iter().find(|e| e["name"] == name))
            .unwrap_or_else(|| panic!("exchange {name}: {exchanges}"));
        assert_eq!(e["type"], kind);
        assert_eq!(e["durable"], false);
        assert_eq!(e["auto_delete"], false);
    }

    let consumers = json_lines(&rabbitmqctl(&[
        "-q",
        "list_consumers",
        "-p",
        v,
        "queue_name",
        "ack_required",
        "active",
        "prefetch_count",
        "--formatter",
        "json",
    ]));
    let c = consumers
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["queue_name"] == "pusher_shared_listener")
        })
        .unwrap_or_else(|| panic!("consumer: {consumers}"));
    assert_eq!(c["ack_required"], true, "manual ack");
    assert_eq!(c["active"], true);
    assert_eq!(c["prefetch_count"], pusher::settings::DEFAULT_PREFETCH);

    w.stop().await;
}

/// An Erlang pusher declaring the queue with Kazoo's exact arguments (short 100,
/// signedint 60000) while ours consumes is accepted; a different value is refused, which
/// proves the broker really compares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_pusher_can_declare_the_same_queue() {
    let mut w = World::new().await;
    w.start().await;
    let conn = pusher_io::amqp::connect(&w.vhost.uri(), "erlang-like")
        .await
        .expect("connect");
    let opts = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let kazoo = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::ShortInt(100));
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
    let q = kazoo
        .queue_declare("pusher_shared_listener".into(), opts, args)
        .await
        .expect("Kazoo's declaration is accepted");
    assert_eq!(q.consumer_count(), 1, "ours is consuming");

    let other = conn.create_channel().await.expect("channel");
    let mut bad = FieldTable::default();
    bad.insert("x-max-length".into(), AMQPValue::ShortInt(200));
    bad.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
    let err = other
        .queue_declare("pusher_shared_listener".into(), opts, bad)
        .await
        .expect_err("different arguments are refused");
    assert!(err.to_string().contains("PRECONDITION_FAILED"), "{err}");
    w.stop().await;
}

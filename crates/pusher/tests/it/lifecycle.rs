//! Connection loss and shutdown.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{World, rabbitmqctl};

/// The broker drops our connection: `/ready` goes to 503, the supervisor reconnects with
/// backoff, redeclares the topology (the auto-delete queue was gone with our consumer),
/// and messages published afterwards are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_redeclares_after_the_broker_closes_the_connection() {
    let mut w = World::new().await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("dev1", json!({})).await;
    w.start().await;

    let conns = rabbitmqctl(&[
        "-q",
        "list_connections",
        "pid",
        "vhost",
        "client_properties",
        "--no-table-headers",
    ]);
    let ours: Vec<&str> = conns
        .lines()
        .filter(|l| l.contains(&w.vhost.name) && l.contains("pusher pusher@it-"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one service connection in our vhost: {conns}"
    );
    let closed_at = Instant::now();
    rabbitmqctl(&["-q", "close_connection", ours[0], "test: broker-side close"]);

    // It must notice, then come back.
    let mut saw_down = false;
    loop {
        let status = w.ready_status().await;
        if status != 200 {
            saw_down = true;
        } else if saw_down {
            break;
        }
        assert!(
            closed_at.elapsed() < Duration::from_secs(15),
            "no reconnect within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "consuming again {:?} after the broker closed the connection",
        closed_at.elapsed()
    );

    w.publish_reg(&w.reg_success(0, "dev1")).await;
    let doc = w.wait_device("dev1", 10, |d| d.get("push").is_some()).await;
    assert_eq!(doc["push"]["Token-ID"], "abc");
    w.stop().await;
}

/// A Kazoo cluster lists several brokers (`[amqp] uri` lines): when the first one is
/// down, the consumer moves on to the next and becomes ready there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_broker_of_the_cluster() {
    let mut w = World::new().await;
    let mut settings = w.settings();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port(); // closed again when the listener drops: connections are refused
    settings.amqp_fallback_uris = vec![settings.amqp_uri.clone()];
    settings.amqp_uri = format!("amqp://guest:guest@127.0.0.1:{dead}/%2f");
    let started = Instant::now();
    let running = pusher::start(settings, w.shutdown.clone())
        .await
        .expect("starts");
    w.http_addr = running.http_addr;
    w.handle = Some(running.handle);
    w.wait_ready().await;
    eprintln!("ready on the second broker after {:?}", started.elapsed());
    w.stop().await;
}

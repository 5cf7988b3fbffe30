//! Rule changes in `system_config/pusher` apply without a restart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_added_while_running_applies_within_two_seconds() {
    let mut w = World::new().await;
    w.set_rule("Nothing", "^NoSuchAgent$").await;
    w.put_device("dev1", json!({})).await;
    w.start().await;
    let reg = w.reg_success(0, "dev1");
    w.publish_reg(&reg).await;
    w.wait_queue_drained().await;
    assert!(w.device("dev1").await.get("push").is_none());

    w.set_rule("Harness", "^Linphone-Harness").await;
    let changed = Instant::now();
    let rev = w
        .couch
        .get_doc("system_config", "pusher")
        .await
        .expect("get config")
        .and_then(|d| d["_rev"].as_str().map(str::to_string))
        .expect("config rev");
    // The service reports the revision it runs on /ready; other tests write the same
    // doc concurrently, so any revision at or after ours counts.
    let our_gen: u64 = rev
        .split('-')
        .next()
        .and_then(|g| g.parse().ok())
        .expect("rev generation");
    loop {
        let body: serde_json::Value =
            reqwest::get(format!("http://{}/ready", w.http_addr.expect("http")))
                .await
                .expect("ready")
                .json()
                .await
                .expect("json");
        let running: u64 = body["config_rev"]
            .as_str()
            .and_then(|r| r.split('-').next())
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        if running >= our_gen {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "rule change not applied within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w.publish_reg(&reg).await;
    w.wait_device("dev1", 10, |d| d.get("push").is_some()).await;
    eprintln!("rule change applied after {:?}", changed.elapsed());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rule_is_skipped_and_the_others_still_work() {
    let mut w = World::new().await;
    w.set_node_config(
        &["User-Agents"],
        json!({
            "Broken": {"regex": "(unclosed", "properties": {"Token-ID": "pn-tok"}},
            "Catastrophic": {"regex": "^(a+)+$", "properties": {"Token-ID": "pn-tok"}},
            "Harness": {"regex": "^Linphone", "properties":
                {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}}
        }),
    )
    .await;
    w.put_device("dev2", json!({})).await;
    w.start().await;
    w.publish_reg(&w.reg_success(0, "dev2")).await;
    let doc = w.wait_device("dev2", 10, |d| d.get("push").is_some()).await;
    assert_eq!(doc["push"]["Token-App"], "org.myorg.myapp");
    w.stop().await;
}

//! Rule changes in `system_config/pusher` apply without a restart.

use std::time::Instant;

use serde_json::json;

use crate::helpers::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_added_while_running_applies_without_a_restart() {
    let mut w = World::new().await;
    w.set_rule("Nothing", "^NoSuchAgent$").await;
    w.put_device("dev1", json!({})).await;
    w.start().await;
    let reg = w.reg_success(0, "dev1");
    w.publish_reg(&reg).await;
    w.wait_queue_drained().await;
    assert!(w.device("dev1").await.get("push").is_none());

    // Waits on the revision the service reports, not on the clock: how fast the change
    // applied is a figure (printed), and the bound only guards against a hang.
    let rev = w.set_rule("Harness", "^Linphone-Harness").await;
    let changed = Instant::now();
    w.wait_config_applied(&rev).await;
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

//! `reg_success` → device `push` object, end to end through RabbitMQ and CouchDB.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::World;

fn push_of(doc: &Value) -> Value {
    doc.get("push").cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_contact_params_give_exact_push_and_resend_is_a_no_op() {
    let mut w = World::new().await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device(
        "dev1",
        json!({"sip": {"username": "2001"}, "owner_id": "u1"}),
    )
    .await;
    w.start().await;

    let reg = w.reg_success(0, "dev1");
    w.publish_reg(&reg).await;
    let doc = w.wait_device("dev1", 10, |d| d.get("push").is_some()).await;
    assert_eq!(
        push_of(&doc),
        json!({
            "Token-App": "org.myorg.myapp",
            "Token-Type": "apple",
            "Token-ID": "abc",
            "Token-Proxy": "sip:127.0.0.1:5060"
        })
    );
    assert_eq!(
        doc["sip"],
        json!({"username": "2001"}),
        "unrelated fields survive"
    );
    assert_eq!(doc["owner_id"], "u1");
    assert_eq!(doc["pvt_type"], "device");

    let rev = doc["_rev"].clone();
    w.publish_reg(&reg).await;
    w.wait_queue_drained().await;
    assert_eq!(
        w.device("dev1").await["_rev"],
        rev,
        "a resend writes nothing"
    );

    // Same values, keys in another order already stored: still no write.
    let mut d = w.device("dev1").await;
    d["push"] = json!({"Token-Proxy": "sip:127.0.0.1:5060", "Token-ID": "abc",
        "Token-Type": "apple", "Token-App": "org.myorg.myapp"});
    w.couch.put_doc(&w.account_db, &d).await.expect("reorder");
    let rev = w.device("dev1").await["_rev"].clone();
    w.publish_reg(&reg).await;
    w.wait_queue_drained().await;
    assert_eq!(
        w.device("dev1").await["_rev"],
        rev,
        "order-insensitive comparison"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_uri_becomes_token_public_proxy_and_values_are_url_decoded() {
    let mut w = World::new().await;
    w.set_rule("Harness", "Linphone").await;
    w.put_device("dev2", json!({})).await;
    w.start().await;

    let mut reg = w.reg_success(0, "dev2");
    reg["Proxy-URI"] = json!("sip:203.0.113.10:5061;transport=tls");
    reg["Contact"] = json!(
        "\"Bob\" <sip:2001@10.0.0.7:5074;transport=tcp;app-id=org.myorg.myapp%2Evoip;pn-tok=a%2Bb%3Dc;pn-type=apple>;+sip.instance=\"<urn:uuid:1;x=2>\";reg-id=1"
    );
    w.publish_reg(&reg).await;
    let doc = w.wait_device("dev2", 10, |d| d.get("push").is_some()).await;
    assert_eq!(
        push_of(&doc),
        json!({
            "Token-App": "org.myorg.myapp.voip",
            "Token-Type": "apple",
            "Token-ID": "a+b=c",
            "Token-Proxy": "sip:127.0.0.1:5060",
            "Token-Public-Proxy": "sip:203.0.113.10:5061;transport=tls"
        })
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_matching_user_agent_and_missing_device_write_nothing() {
    let mut w = World::new().await;
    w.set_rule("Other", "^SomeOtherApp").await;
    let rev = w.put_device("dev3", json!({})).await;
    w.start().await;

    w.publish_reg(&w.reg_success(0, "dev3")).await;
    // A device that does not exist: settled, and no doc is created.
    w.publish_reg(&w.reg_success(0, "ghost")).await;
    // No CCVs at all (as after a token-reg REGISTER): settled.
    let mut no_ccv = w.reg_success(0, "dev3");
    no_ccv["Custom-Channel-Vars"] = json!({});
    w.publish_reg(&no_ccv).await;
    w.wait_queue_drained().await;

    let doc = w.device("dev3").await;
    assert_eq!(doc["_rev"], rev);
    assert!(doc.get("push").is_none());
    assert!(
        w.couch
            .get_doc(&w.account_db, "ghost")
            .await
            .expect("get")
            .is_none()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8599_params_are_opt_in() {
    let mut w = World::new().await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("dev4", json!({})).await;
    w.start().await;

    // Off (the default): the RFC 8599 device has no matching rule, nothing is written.
    let reg = w.reg_success(1, "dev4");
    w.publish_reg(&reg).await;
    w.wait_queue_drained().await;
    assert!(w.device("dev4").await.get("push").is_none());

    // On: pn-provider/pn-param/pn-prid become the push object.
    // Once the service runs on the revision that turned it on (state, not a sleep).
    let rev = w.set_node_config(&["rfc8599"], json!(true)).await;
    w.wait_config_applied(&rev).await;
    w.publish_reg(&reg).await;
    let doc = w.wait_device("dev4", 10, |d| d.get("push").is_some()).await;
    assert_eq!(
        push_of(&doc),
        json!({
            "Token-App": "org.myorg.myapp",
            "Token-Type": "apple",
            "Token-ID": "00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0",
            "Token-Proxy": "sip:127.0.0.1:5060"
        })
    );

    // pn-prid=null removes the push object.
    let mut gone = reg.clone();
    gone["Contact"] = json!(
        "<sip:3001@127.0.0.1:5075;pn-provider=apns;pn-param=ABCD1234.org.myorg.myapp.voip;pn-prid=null>;expires=600"
    );
    w.publish_reg(&gone).await;
    w.wait_device("dev4", 10, |d| d.get("push").is_none()).await;
    w.stop().await;
}

/// A concurrent writer (another Kazoo app editing the device) keeps every change it made,
/// and the pusher keeps its own: both sides re-read on 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writer_changes_survive() {
    let mut w = World::new().await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("dev5", json!({"counter": 0})).await;
    w.start().await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let couch = w.couch.clone();
        let db = w.account_db.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                couch
                    .update_doc(&db, "dev5", 1000, |d| {
                        let n = d["counter"].as_u64().unwrap_or(0);
                        d["counter"] = json!(n + 1);
                        true
                    })
                    .await
                    .expect("writer update");
                done += 1;
                // An eager but not pathological writer (a busy crossbar, say).
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            done
        })
    };

    let mut reg = w.reg_success(0, "dev5");
    for i in 0..15 {
        let tok = format!("tok{i}");
        reg["Contact"] = json!(format!(
            "<sip:2001@127.0.0.1:5074;app-id=org.myorg.myapp;pn-tok={tok};pn-type=apple>"
        ));
        w.publish_reg(&reg).await;
        w.wait_device("dev5", 10, |d| d["push"]["Token-ID"] == tok.as_str())
            .await;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer joins");
    let doc = w.device("dev5").await;
    assert_eq!(
        doc["counter"].as_u64(),
        Some(writes),
        "no write of the other writer lost"
    );
    assert_eq!(doc["push"]["Token-ID"], "tok14");
    w.stop().await;
}

/// The read-modify-write itself: a write that lands between our read and our write makes
/// the first PUT fail with 409; we re-read, re-apply, and both changes are in the doc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_doc_reapplies_after_a_conflict() {
    let w = World::new().await;
    w.put_device("dev6", json!({})).await;
    let rt = tokio::runtime::Handle::current();
    let mut calls = 0;
    let outcome = w
        .couch
        .update_doc(&w.account_db, "dev6", 3, |doc| {
            calls += 1;
            if calls == 1 {
                let mut theirs = doc.clone();
                theirs["name"] = json!("renamed elsewhere");
                tokio::task::block_in_place(|| {
                    rt.block_on(w.couch.put_doc(&w.account_db, &theirs))
                })
                .expect("their write");
            }
            doc["push"] = json!({"Token-ID": "x"});
            true
        })
        .await
        .expect("update");
    assert!(
        matches!(
            outcome,
            pusher_io::couch::UpdateOutcome::Updated { conflicts: 1, .. }
        ),
        "{outcome:?}"
    );
    let doc = w.device("dev6").await;
    assert_eq!(doc["name"], "renamed elsewhere");
    assert_eq!(doc["push"]["Token-ID"], "x");
}

/// Bad input is settled (not redelivered forever) and the next good message is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_settled_and_service_keeps_going() {
    let mut w = World::new().await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("dev7", json!({})).await;
    w.start().await;

    let key = "registration.success.x.y";
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&w.reg_success(0, "dev7").to_string().into_bytes())
            .expect("gz");
        e.finish().expect("gz")
    };
    let bad: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"[1,2,3]".to_vec(),
        br#"{"Event-Category":"directory","Event-Name":"reg_success","Contact":42,"User-Agent":["x"]}"#.to_vec(),
        br#"{"Event-Category":"directory","Event-Name":"reg_success","User-Agent":"Linphone-Harness","Contact":"<sip:a","Custom-Channel-Vars":{"Account-ID":"x","Authorizing-ID":"dev7"}}"#.to_vec(),
        br#"{"Event-Category":"call_event","Event-Name":"CHANNEL_CREATE"}"#.to_vec(),
        vec![b' '; 2 * 1024 * 1024],
    ];
    for body in &bad {
        w.publish("registrar", key, body).await;
    }
    // gzip with the right header is accepted.
    let props = lapin::BasicProperties::default().with_content_encoding("gzip".into());
    w.publisher
        .as_ref()
        .expect("publisher")
        .publish_json("registrar", key, &gz, props)
        .await
        .expect("publish gz");
    let doc = w.wait_device("dev7", 10, |d| d.get("push").is_some()).await;
    assert_eq!(doc["push"]["Token-ID"], "abc");
    w.wait_queue_drained().await;
    assert_eq!(w.ready_status().await, 200);
    w.stop().await;
}

/// `pusher_device_cache_total{result}` from `/metrics`.
async fn cache_count(w: &World, result: &str) -> f64 {
    let addr = w.http_addr.expect("http");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let prefix = format!("pusher_device_cache_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Refreshes that change nothing are answered from the device cache — and a change made
/// to the device elsewhere evicts it, so the next refresh writes the push object again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_cache_answers_refreshes_and_follows_changes_made_elsewhere() {
    let mut w = World::new().await;
    w.set_rule("Harness", "^Linphone-Harness").await;
    w.put_device("cached", json!({})).await;
    w.start().await;
    let reg = w.reg_success(0, "cached");
    w.publish_reg(&reg).await;
    let doc = w
        .wait_device("cached", 10, |d| d.get("push").is_some())
        .await;
    let expected = push_of(&doc);
    // The database's feed watcher starts on first use; refresh until the cache answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while cache_count(&w, "hit").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no cache hit");
        w.publish_reg(&reg).await;
        w.wait_queue_drained().await;
    }
    let rev = w.device("cached").await["_rev"].clone();
    for _ in 0..5 {
        w.publish_reg(&reg).await;
    }
    w.wait_queue_drained().await;
    assert_eq!(
        w.device("cached").await["_rev"],
        rev,
        "refreshes wrote nothing"
    );

    // Someone removes the push object behind our back (crossbar, curl, …).
    let mut edited = w.device("cached").await;
    edited.as_object_mut().expect("object").remove("push");
    w.couch
        .put_doc(&w.account_db, &edited)
        .await
        .expect("edit elsewhere");
    // The feed evicts the entry, so the next refresh restores it (retry: eviction is async).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        w.publish_reg(&reg).await;
        w.wait_queue_drained().await;
        let d = w.device("cached").await;
        if d.get("push").is_some() {
            assert_eq!(push_of(&d), expected);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "push never restored: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.stop().await;
}

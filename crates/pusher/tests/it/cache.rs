//! Caches and per-app state that must not go stale or grow (issue #12 points 5, 7, 8),
//! against pouchdb-server, RabbitMQ, the mock providers and the real binaries:
//!
//! - the device cache across a real watcher failure and restart;
//! - the token index's `registered_at_ms` after repeated registrations;
//! - `pusherctl kapps_config get` / `list_apps` with a service account stored as a JSON
//!   string;
//! - 10,000 made-up `Token-App` values through `pusherd`: one client per credential,
//!   no per-app metric series, flat memory.

use std::future::Future;
use std::time::{Duration, Instant};

use pusher::register::device_cache::{DeviceCache, RETRY_AFTER};
use pusher::tokens::{TOKENS_DB, TokenIndex};
use pusher_core::push_req::PushReq;
use pusher_io::couch::CouchClient;
use pusher_sandbox::fcm_mock::{FcmMockConfig, MockFcm};
use pusher_sandbox::pki::ClientVariant;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    World, amqp_base, apns_mock, couch_url, fixture_bodies, init_tracing, pki, rand_hex, set_config,
};

/// Polls `probe` until it gives a value, failing the test after `limit`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn couch() -> CouchClient {
    init_tracing();
    let c = CouchClient::new(&couch_url(), Duration::from_secs(5)).expect("couch client");
    c.ping()
        .await
        .expect("CouchDB-API server reachable (scripts/services.sh up)");
    c
}

/// A fresh account database of our own.
async fn account_db(c: &CouchClient) -> String {
    let db = pusher_core::account::account_db(&rand_hex(32)).expect("account db");
    c.create_db(&db).await.expect("create account db");
    db
}

fn apple_push(app: &str, token: &str) -> Map<String, Value> {
    json!({"Token-App": app, "Token-Type": "apple", "Token-ID": token})
        .as_object()
        .cloned()
        .expect("object")
}

async fn put_device(c: &CouchClient, db: &str, id: &str, push: &Map<String, Value>) -> String {
    let existing = c.get_doc(db, id).await.expect("get device");
    let mut doc = existing.unwrap_or_else(|| json!({"_id": id, "pvt_type": "device"}));
    doc["push"] = Value::Object(push.clone());
    c.put_doc(db, &doc).await.expect("put device")
}

// --- A. device cache across a watcher restart --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_from_before_a_feed_failure_is_not_cached_by_the_next_watcher() {
    let c = couch().await;
    let db = account_db(&c).await;
    let old = apple_push("org.cache.a", "aaaa01");
    let new = apple_push("org.cache.a", "bbbb02");
    put_device(&c, &db, "dev", &old).await;
    let stop = CancellationToken::new();
    // A short long-poll, so the deleted database is noticed within a second
    // (pouchdb-server does not end a pending long-poll when the database goes).
    let cache = DeviceCache::with_longpoll(c.clone(), stop.clone(), Duration::from_millis(500));
    let wanted_old = Some(Value::Object(old.clone()));
    let wanted_new = Some(Value::Object(new.clone()));

    // A registration looks the device up and takes a ticket (the first lookup starts
    // the watcher), then reads the device: push `old`.
    let stale = wait_for("first watcher up", Duration::from_secs(15), || async {
        cache.lookup(&db, "dev", &wanted_old).1
    })
    .await;
    // Before it stores what it read, the feed fails: the database is deleted ...
    assert!(c.delete_db(&db).await.expect("delete db"));
    wait_for(
        "watcher failure noticed",
        Duration::from_secs(15),
        || async { (!cache.is_watching(&db)).then_some(()) },
    )
    .await;
    // ... and comes back with the device holding another token. Nothing the old
    // watcher saw tells of this change.
    c.create_db(&db).await.expect("recreate db");
    put_device(&c, &db, "dev", &new).await;
    let fresh = wait_for(
        "replacement watcher up",
        RETRY_AFTER + Duration::from_secs(15),
        || async { cache.lookup(&db, "dev", &wanted_new).1 },
    )
    .await;
    assert!(cache.is_watching(&db));

    // The slow registration now stores its read with the old ticket: refused, whatever
    // the new watcher's generation is.
    cache.store(&db, "dev", wanted_old.clone(), None, stale);
    assert!(cache.is_empty(), "stale push object cached");
    assert!(!cache.lookup(&db, "dev", &wanted_old).0);
    // A read under the new watcher is cached, and answers the next refresh.
    cache.store(&db, "dev", wanted_new.clone(), None, fresh);
    assert!(cache.lookup(&db, "dev", &wanted_new).0);

    // The new watcher follows the feed: a change made elsewhere evicts the entry.
    put_device(&c, &db, "dev", &old).await;
    wait_for(
        "eviction by the new feed",
        Duration::from_secs(15),
        || async { (!cache.lookup(&db, "dev", &wanted_new).0).then_some(()) },
    )
    .await;
    stop.cancel();
    let _ = c.delete_db(&db).await;
}

// --- B. registered_at_ms follows every registration --------------------------------

fn dead_token_req(app: &str, token: &str) -> PushReq {
    let mut body = fixture_bodies("push_req")[0].clone();
    body["Token-App"] = json!(app);
    body["Token-Type"] = json!("apple");
    body["Token-ID"] = json!(token);
    PushReq::from_json(&body, pusher::clock::unix_ms()).expect("push_req parses")
}

async fn registered_at(c: &CouchClient, app: &str, token: &str) -> (u64, String) {
    let id = pusher::tokens::doc_id("apple", app, token).expect("doc id");
    let doc = c
        .get_doc(TOKENS_DB, &id)
        .await
        .expect("read index")
        .expect("index entry exists");
    (
        doc["registered_at_ms"].as_u64().expect("registered_at_ms"),
        doc["_rev"].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits until the wall clock (ms) is past `t`, so two registrations differ in time.
async fn clock_past(t: u64) {
    wait_for("clock moves on", Duration::from_secs(5), || async {
        (pusher::clock::unix_ms() > t).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_at_ms_follows_the_latest_registration() {
    let c = couch().await;
    c.create_db(TOKENS_DB).await.expect("tokens db");
    let db = account_db(&c).await;
    let app = format!("org.cache{}.reg", rand_hex(8));
    let token = format!("cafe{}", rand_hex(12));
    let push = apple_push(&app, &token);
    put_device(&c, &db, "dev", &push).await;

    // An instance that writes every refresh (interval 0): the stored time moves.
    let eager = TokenIndex::with_refresh_every(c.clone(), Duration::ZERO);
    eager.record(&push, &db, "dev").await;
    let (first, _) = registered_at(&c, &app, &token).await;
    clock_past(first).await;
    eager.record(&push, &db, "dev").await;
    let (second, _) = registered_at(&c, &app, &token).await;
    assert!(
        second > first,
        "registered_at_ms not refreshed: {first} → {second}"
    );

    // Apple says the token went invalid between the two registrations; another
    // instance (no memory of them) judges from the stored time: the device is kept.
    let other = TokenIndex::new(c.clone());
    assert!(
        !other
            .remove_dead(&dead_token_req(&app, &token), Some(first))
            .await
    );
    let doc = c.get_doc(&db, "dev").await.unwrap().unwrap();
    assert_eq!(doc["push"]["Token-ID"], json!(token), "device stripped");

    // The default instance: a refresh within the interval writes nothing, but its own
    // dead-token check uses the registration it saw.
    let lazy = TokenIndex::new(c.clone());
    lazy.record(&push, &db, "dev").await; // first sight in this process: written
    let (stored, rev) = registered_at(&c, &app, &token).await;
    clock_past(stored).await;
    lazy.record(&push, &db, "dev").await;
    let (stored_again, rev_again) = registered_at(&c, &app, &token).await;
    assert_eq!(
        (stored_again, &rev_again),
        (stored, &rev),
        "no write within the refresh interval"
    );
    assert!(
        !lazy
            .remove_dead(&dead_token_req(&app, &token), Some(stored))
            .await,
        "re-registered after the 410 timestamp: kept"
    );
    let doc = c.get_doc(&db, "dev").await.unwrap().unwrap();
    assert_eq!(doc["push"]["Token-ID"], json!(token));

    // Invalid after the latest registration: removed.
    let later = pusher::clock::unix_ms() + 1_000;
    assert!(
        lazy.remove_dead(&dead_token_req(&app, &token), Some(later))
            .await
    );
    let doc = c.get_doc(&db, "dev").await.unwrap().unwrap();
    assert!(doc.get("push").is_none(), "{doc}");
    let _ = c.delete_db(&db).await;
}

/// A restarted instance (no memory of the index) re-indexes tokens whose entries exist
/// already: the 409s of its batch are read together and written together, two requests
/// for the whole batch instead of a GET and a PUT per token (P10 found thousands of
/// entries left unwritten at exit after a restart). One runtime thread: every token is
/// noted before the batcher first runs, so they go in one batch.
#[tokio::test(flavor = "current_thread")]
async fn a_restarted_instance_rewrites_existing_index_entries_in_bulk() {
    use pusher_io::couch::Op;
    let c = couch().await;
    c.create_db(TOKENS_DB).await.expect("tokens db");
    let db = account_db(&c).await;
    let app = format!("org.cache{}.bulk", rand_hex(8));
    let tokens: Vec<String> = (0..50)
        .map(|i| format!("beef{}{i:04}", rand_hex(8)))
        .collect();
    let before = TokenIndex::new(c.clone());
    for t in &tokens {
        before.note(&apple_push(&app, t), &db, "dev");
    }
    assert_eq!(before.flush(Duration::from_secs(30)).await, 0);
    let (first, _) = registered_at(&c, &app, &tokens[0]).await;
    clock_past(first).await;

    // After the restart the tokens registered on another device.
    let counted = CouchClient::new(&couch_url(), Duration::from_secs(10)).expect("client");
    let counts = counted.request_counts();
    let after = TokenIndex::new(counted);
    for t in &tokens {
        after.note(&apple_push(&app, t), &db, "dev2");
    }
    assert_eq!(after.flush(Duration::from_secs(30)).await, 0);
    for t in &tokens {
        let id = pusher::tokens::doc_id("apple", &app, t).expect("doc id");
        let entry = c
            .get_doc(TOKENS_DB, &id)
            .await
            .expect("read index")
            .expect("entry exists");
        assert_eq!(entry["device_id"], "dev2", "{entry}");
        assert!(entry["registered_at_ms"].as_u64() > Some(first), "{entry}");
    }
    // The batch (50 conflicts), one read of the 50, one write of the 50.
    assert_eq!(counts.total(Op::BulkDocs), 2);
    assert_eq!(counts.total(Op::GetDocs), 1);
    assert_eq!(counts.total(Op::GetDoc) + counts.total(Op::PutDoc), 0);
    let _ = c.delete_db(&db).await;
}

// --- D. no private key from pusherctl, service account stored as a string -----------

struct CtlOut {
    code: i32,
    all: String,
}

async fn pusherctl(env: &[(&str, String)], args: &[&str]) -> CtlOut {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pusherctl"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("pusherctl runs");
    CtlOut {
        code: out.status.code().unwrap_or(-1),
        all: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// No line of the PEM key (beyond its short header/footer words) in `out`.
fn assert_no_key(out: &CtlOut, key_pem: &str) {
    for line in key_pem.lines().filter(|l| l.len() > 20) {
        assert!(!out.all.contains(line), "private key printed:\n{}", out.all);
    }
    assert!(
        !out.all.contains("PRIVATE KEY"),
        "key marker printed:\n{}",
        out.all
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusherctl_never_prints_a_key_from_a_service_account_stored_as_a_string() {
    let c = couch().await;
    c.create_db("system_config").await.expect("system_config");
    let prefix = format!("org.itcache{}", rand_hex(8));
    let app = format!("{prefix}.fcm");
    let sa = pki().service_account_json("https://oauth2.googleapis.com/token");
    let key = pki().sa_private_key_pem.clone();
    // The schema allows the service account as a JSON *string*; pusherd reads it so.
    set_config(
        &c,
        &[&app, "firebase_v1"],
        json!({"service_account": sa.to_string()}),
    )
    .await;
    // And a key pasted under a key name nobody lists as secret.
    let stray = format!("{prefix}.stray");
    set_config(&c, &[&stray, "apple", "notes"], json!(key)).await;
    let env = [
        ("PUSHER_COUCH_URL", couch_url()),
        ("PUSHER_AMQP_URI", amqp_base()),
        ("PUSHER_NODE", format!("pusher@itcache-{}", rand_hex(8))),
        ("PUSHER_ZONE", format!("zone-{}", rand_hex(6))),
    ];

    for key_path in ["firebase_v1", "firebase_v1.service_account"] {
        let out = pusherctl(&env, &["kapps_config", "get", "pusher", key_path, &app]).await;
        assert_eq!(out.code, 0, "get {key_path}: {}", out.all);
        assert_no_key(&out, &key);
        assert!(out.all.contains("not shown"), "get {key_path}: {}", out.all);
        // Shown with its secrets hidden, not dropped: the project is still there.
        assert!(
            out.all.contains("pusher-mock-project"),
            "get {key_path}: {}",
            out.all
        );
    }
    let out = pusherctl(&env, &["kapps_config", "get", "pusher", "apple", &stray]).await;
    assert_eq!(out.code, 0, "{}", out.all);
    assert_no_key(&out, &key);

    let out = pusherctl(&env, &["pusher_maintenance", "list_apps", &prefix]).await;
    assert_eq!(out.code, 0, "{}", out.all);
    assert_no_key(&out, &key);
    assert!(out.all.contains(&app), "{}", out.all);
    assert!(
        out.all.contains("project pusher-mock-project"),
        "{}",
        out.all
    );
}

// --- E. made-up Token-App values keep the clients and metrics flat -------------------

/// Resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

async fn metrics_text(w: &World) -> String {
    let addr = w.http_addr.expect("http");
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// Sum of the `pusher_pushes_total` samples whose labels contain all of `labels`.
fn pushes_total(text: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("pusher_pushes_total{") && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_token_apps_leave_clients_series_and_memory_flat() {
    const APPS: usize = 10_000;
    const WARM_UP: usize = 1_000;
    let apns = apns_mock(Duration::ZERO).await;
    let fcm = MockFcm::start(FcmMockConfig::default())
        .await
        .expect("mock FCM");
    let sa = pki().service_account_json(&fcm.token_uri());
    fcm.add_service_account(&sa).expect("register account");

    let mut w = World::new().await;
    w.trust_mock_ca();
    // Credentials scoped to a zone of our own: every made-up app resolves to them
    // (app → zone → default), as an attacker's `pn-param` values would.
    let zone = format!("zone-cache{}", rand_hex(6));
    w.env.push(("PUSHER_ZONE".into(), zone.clone()));
    w.env.push(("PUSHER_FCM_URL".into(), fcm.base_url()));
    set_config(
        &w.couch,
        &[&zone, "apple"],
        json!({"certificate": pki().client(ClientVariant::Pkcs8).pem, "host": apns.base_url()}),
    )
    .await;
    set_config(
        &w.couch,
        &[&zone, "firebase_v1"],
        json!({"service_account": sa}),
    )
    .await;
    let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cache-madeup-{}.log", rand_hex(6)));
    let child = w.start_binary(&log, "warn").await;
    let pid = child.id();

    let run = rand_hex(8);
    let base = fixture_bodies("push_req")[0].clone();
    let body = |i: usize| {
        let mut b = base.clone();
        b["Token-App"] = json!(format!("org.madeup{run}.app{i}"));
        let (kind, token) = if i.is_multiple_of(2) {
            ("apple", format!("{i:08x}"))
        } else {
            ("firebase_v1", format!("fcm{i}"))
        };
        b["Token-Type"] = json!(kind);
        b["Token-ID"] = json!(token);
        b["Msg-ID"] = json!(uuid::Uuid::new_v4().to_string());
        b
    };
    let publish = |b: Value| {
        let w = &w;
        async move {
            let key = format!(
                "notification.push.{}.{}",
                b["Token-Type"].as_str().unwrap_or("x"),
                b["Token-ID"].as_str().unwrap_or("x")
            );
            w.publish("pushes", &key, b.to_string().as_bytes()).await;
        }
    };
    let delivered = |n: usize| {
        let (apns, fcm) = (&apns, &fcm);
        async move {
            let limit = Duration::from_secs(120);
            let a = apns.wait_for(n.div_ceil(2), limit).await.len();
            let f = fcm.wait_for(n / 2, limit).await.len();
            assert_eq!((a, f), (n.div_ceil(2), n / 2), "pushes delivered");
        }
    };
    let started = Instant::now();

    w.publish_paced((0..WARM_UP).map(body), publish).await;
    delivered(WARM_UP).await;
    let rss_warm = rss_kib(pid);

    w.publish_paced((WARM_UP..APPS).map(body), publish).await;
    delivered(APPS).await;
    w.wait_queue_drained().await;
    let rss_end = rss_kib(pid);
    let text = metrics_text(&w).await;

    // One client per credential: one APNs connection, one OAuth token, for 10,000 apps.
    assert_eq!(
        apns.connections_accepted(),
        1,
        "APNs clients per made-up app"
    );
    assert_eq!(
        fcm.token_requests(),
        1,
        "OAuth token sources per made-up app"
    );
    // Every push counted, under `other`: no metric series per made-up app.
    assert_eq!(
        pushes_total(&text, &["app=\"other\"", "outcome=\"delivered\""]),
        APPS as f64,
        "{text}"
    );
    assert!(
        !text.contains(&format!("org.madeup{run}")),
        "series per made-up app"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("pusher_pushes_total{"))
        .count();
    assert!(series <= 8, "{series} pushes_total series:\n{text}");
    // Memory: 9,000 more made-up apps after the warm-up add no per-app state. A client
    // (TLS + HTTP/2) or an authenticator per app would be hundreds of MB here; the bound
    // leaves room for allocator noise.
    let growth_mib = rss_end.saturating_sub(rss_warm) / 1024;
    eprintln!(
        "made-up Token-App: {APPS} pushes in {:?}; RSS {} → {} MiB",
        started.elapsed(),
        rss_warm / 1024,
        rss_end / 1024
    );
    assert!(
        growth_mib < 24,
        "pusherd RSS grew by {growth_mib} MiB over 9,000 made-up apps"
    );

    let status = w.stop_binary(child).await;
    assert!(status.success(), "pusherd exit: {status:?}");
    let _ = std::fs::remove_file(&log);
}

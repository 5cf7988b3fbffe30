//! One CouchDB request per changed registration (issue #13, P3), and what a cached
//! revision that went stale costs, on pouchdb-server, counted with the CouchDB client's
//! own request counters (the ones `/metrics` exposes as `pusher_couch_requests_total`).
//!
//! The registrar reads and writes through a client of its own (counted) behind a
//! [`HoldProxy`], so a test can hold its answers while registrations queue their reads;
//! the device cache follows the account database's feed through another, so the test
//! can keep the feed's news from the cache while another writer changes the device doc
//! directly in CouchDB: exactly the window in which a cached `_rev` is stale.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pusher::config::PusherConfig;
use pusher::register::device_cache::DeviceCache;
use pusher::register::{RegOutcome, Registrar, RegistrarParts};
use pusher::state::State;
use pusher::tokens::{TOKENS_DB, TokenIndex};
use pusher_core::reg_success::RegSuccess;
use pusher_io::couch::{Answer, CouchClient, Op, RequestCounts};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};
use tokio_util::sync::CancellationToken;

use crate::helpers::{couch_url, fixture_bodies, init_tracing, rand_hex};

/// A TCP proxy on 127.0.0.1 in front of `upstream` that can hold back everything the
/// server sends: after [`HoldProxy::hold`] returns, no byte reaches a client until
/// [`HoldProxy::release`] (requests still go through).
struct HoldProxy {
    addr: SocketAddr,
    gate: Arc<RwLock<()>>,
    held: Option<OwnedRwLockWriteGuard<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let gate = Arc::new(RwLock::new(()));
        let task = tokio::spawn(accept_loop(listener, upstream, gate.clone()));
        Self {
            addr,
            gate,
            held: None,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Returns once no server byte is being forwarded, and none will be until released.
    async fn hold(&mut self) {
        self.held = Some(self.gate.clone().write_owned().await);
    }

    fn release(&mut self) {
        self.held = None;
    }
}

impl Drop for HoldProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, gate: Arc<RwLock<()>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let gate = gate.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut client_rd, mut client_wr) = client.into_split();
            let (mut server_rd, mut server_wr) = server.into_split();
            let requests = tokio::io::copy(&mut client_rd, &mut server_wr);
            let answers = async {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match server_rd.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let _open = gate.read().await;
                    if client_wr.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = requests => {}
                () = answers => {}
            }
        });
    }
}

/// `host:port` of the CouchDB-API server under test.
fn upstream() -> SocketAddr {
    let url = reqwest::Url::parse(&couch_url()).expect("couch url");
    let host = url.host_str().expect("host");
    let port = url.port_or_known_default().expect("port");
    (host, port)
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address")
}

/// Requests of `op` answered `answer` since `before`.
fn since(counts: &RequestCounts, before: &[(Op, Answer, u64)], op: Op, answer: Answer) -> u64 {
    let then = before
        .iter()
        .find(|(o, a, _)| *o == op && *a == answer)
        .map_or(0, |(_, _, n)| *n);
    counts.get(op, answer) - then
}

struct Rig {
    couch: CouchClient,
    counts: Arc<RequestCounts>,
    registrar: Arc<Registrar>,
    devices: Arc<DeviceCache>,
    tokens: Arc<TokenIndex>,
    proxy: HoldProxy,
    writes: HoldProxy,
    account_id: String,
    db: String,
    stop: CancellationToken,
    _config: tokio::sync::watch::Sender<Option<Arc<PusherConfig>>>,
}

impl Rig {
    async fn new() -> Self {
        Self::with_slots(4).await
    }

    /// A rig whose registrar writes `slots` devices at once.
    async fn with_slots(slots: usize) -> Self {
        init_tracing();
        let couch = CouchClient::new(&couch_url(), Duration::from_secs(10)).expect("couch client");
        couch
            .ping()
            .await
            .expect("CouchDB-API server reachable (scripts/services.sh up)");
        couch.create_db(TOKENS_DB).await.expect("tokens db");
        let account_id = rand_hex(32);
        let db = pusher_core::account::account_db(&account_id).expect("account db");
        couch.create_db(&db).await.expect("account db");

        let proxy = HoldProxy::start(upstream()).await;
        let feed = CouchClient::new(&proxy.url(), Duration::from_secs(10)).expect("feed client");
        let stop = CancellationToken::new();
        let devices = Arc::new(DeviceCache::with_longpoll(
            feed,
            stop.clone(),
            Duration::from_secs(60),
        ));
        let rules = json!({"Harness": {"regex": "^Linphone-Harness", "properties":
            {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}}});
        let config = PusherConfig::compile(
            json!({"_id": "pusher", "_rev": "1-a", "default": {"User-Agents": rules}}),
            "pusher@perf-rev",
            "zone-perf-rev",
        );
        let (config_tx, config_rx) = tokio::sync::watch::channel(Some(Arc::new(config)));
        let writes = HoldProxy::start(upstream()).await;
        let counted =
            CouchClient::new(&writes.url(), Duration::from_secs(10)).expect("registrar client");
        let tokens = Arc::new(TokenIndex::new(counted.clone()));
        let legacy = Arc::new(pusher::legacy::LegacyPushResp::new(
            config_rx.clone(),
            "pusher@perf-rev",
        ));
        let registrar = Arc::new(Registrar::new(RegistrarParts {
            couch: counted.clone(),
            legacy,
            config: config_rx,
            retry_budget: Duration::from_secs(20),
            slots,
            tokens: tokens.clone(),
            devices: devices.clone(),
            state: Arc::new(State::default()),
        }));
        Self {
            counts: counted.request_counts(),
            couch,
            registrar,
            devices,
            tokens,
            proxy,
            writes,
            account_id,
            db,
            stop,
            _config: config_tx,
        }
    }

    /// A `reg_success` of `device` with the push token `token`.
    fn reg(&self, device: &str, token: &str) -> RegSuccess {
        let mut body = fixture_bodies("reg_success")[0].clone();
        body["Custom-Channel-Vars"] =
            json!({"Account-ID": self.account_id, "Authorizing-ID": device});
        body["Contact"] = json!(format!(
            "<sip:2001@127.0.0.1:5074;app-id=org.perf.rev;pn-tok={token};pn-type=apple>"
        ));
        RegSuccess::from_json(body).expect("reg_success parses")
    }

    async fn register(&self, device: &str, token: &str) -> RegOutcome {
        let cancel = CancellationToken::new();
        let (outcome, _) = self
            .registrar
            .register(&self.reg(device, token), &cancel)
            .await;
        outcome
    }

    async fn device(&self, id: &str) -> Value {
        self.couch
            .get_doc(&self.db, id)
            .await
            .expect("read device")
            .expect("device exists")
    }

    /// Starts the cache's watcher of the account database and waits until it follows
    /// the feed (from then on what a write establishes is cached).
    async fn watch(&self) {
        self.devices.lookup(&self.db, "nobody", &None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.devices.is_watching(&self.db) {
            assert!(
                Instant::now() < deadline,
                "device cache never watched the db"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Acceptance 3 of issue #13: in the steady state a changed registration is one `PUT`
/// (no `GET`); a cached `_rev` made stale by another writer costs one 409 and one
/// re-read, and that writer's fields survive; token-index writes go in `_bulk_docs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_rev_costs_one_conflict_and_one_reread_and_keeps_the_other_writers_fields() {
    let mut rig = Rig::new().await;
    let dev = "dev-perf";
    // Tokens of this run only (the token index database outlives the test).
    let run = rand_hex(12);
    let tok: Vec<String> = (1..=4).map(|i| format!("{run}{i:04}")).collect();
    rig.couch
        .put_doc(
            &rig.db,
            &json!({"_id": dev, "pvt_type": "device", "name": "phone",
                "sip": {"username": "2001"}}),
        )
        .await
        .expect("create device");
    rig.watch().await;

    // Cold: the device doc is read once (a shared read, `_all_docs` with its id), then
    // written.
    let before = rig.counts.snapshot();
    assert_eq!(rig.register(dev, &tok[0]).await, RegOutcome::Updated);
    assert_eq!(since(&rig.counts, &before, Op::GetDocs, Answer::Ok), 1);
    assert_eq!(rig.counts.total(Op::GetDoc) - total(&before, Op::GetDoc), 0);
    assert_eq!(since(&rig.counts, &before, Op::PutDoc, Answer::Ok), 1);

    // Steady state: a changed registration is one PUT of the cached copy, no GET.
    let before = rig.counts.snapshot();
    assert_eq!(rig.register(dev, &tok[1]).await, RegOutcome::Updated);
    assert_eq!(rig.counts.total(Op::GetDoc) - total(&before, Op::GetDoc), 0);
    assert_eq!(rig.counts.total(Op::PutDoc) - total(&before, Op::PutDoc), 1);
    assert_eq!(since(&rig.counts, &before, Op::PutDoc, Answer::Ok), 1);
    assert_eq!(rig.device(dev).await["push"]["Token-ID"], tok[1].as_str());

    // Another writer changes the device in CouchDB; the cache does not hear of it yet.
    rig.proxy.hold().await;
    let mut other = rig.device(dev).await;
    other["name"] = json!("renamed by crossbar");
    other["call_forward"] = json!({"enabled": true, "number": "+15550100"});
    rig.couch
        .put_doc(&rig.db, &other)
        .await
        .expect("the other writer's PUT");

    // The cached _rev is stale: one 409, one re-read, one PUT.
    let before = rig.counts.snapshot();
    assert_eq!(rig.register(dev, &tok[2]).await, RegOutcome::Updated);
    assert_eq!(since(&rig.counts, &before, Op::PutDoc, Answer::Conflict), 1);
    assert_eq!(since(&rig.counts, &before, Op::GetDoc, Answer::Ok), 1);
    assert_eq!(since(&rig.counts, &before, Op::PutDoc, Answer::Ok), 1);
    assert_eq!(
        rig.counts.total(Op::GetDoc) + rig.counts.total(Op::PutDoc)
            - total(&before, Op::GetDoc)
            - total(&before, Op::PutDoc),
        3,
        "no other device request"
    );
    let doc = rig.device(dev).await;
    assert_eq!(doc["push"]["Token-ID"], tok[2].as_str(), "{doc}");
    assert_eq!(doc["name"], "renamed by crossbar", "{doc}");
    assert_eq!(doc["call_forward"]["number"], "+15550100", "{doc}");
    assert_eq!(doc["sip"]["username"], "2001", "{doc}");

    // What the re-read established is cached: the next change is one PUT again.
    let before = rig.counts.snapshot();
    assert_eq!(rig.register(dev, &tok[3]).await, RegOutcome::Updated);
    assert_eq!(rig.counts.total(Op::GetDoc) - total(&before, Op::GetDoc), 0);
    assert_eq!(since(&rig.counts, &before, Op::PutDoc, Answer::Ok), 1);
    let doc = rig.device(dev).await;
    assert_eq!(doc["push"]["Token-ID"], tok[3].as_str());
    assert_eq!(doc["call_forward"]["enabled"], true, "{doc}");
    rig.proxy.release();

    // The token index got every token, in bulk writes, none through PUT.
    assert_eq!(rig.tokens.flush(Duration::from_secs(30)).await, 0);
    assert!(rig.counts.get(Op::BulkDocs, Answer::Ok) >= 1);
    for tok in &tok {
        let id = pusher::tokens::doc_id("apple", "org.perf.rev", tok).expect("doc id");
        let entry = rig
            .couch
            .get_doc(TOKENS_DB, &id)
            .await
            .expect("read index")
            .unwrap_or_else(|| panic!("{tok} not indexed"));
        assert_eq!(entry["device_id"], dev);
        assert_eq!(entry["account_db"], rig.db.as_str());
    }
    let _ = rig.couch.delete_db(&rig.db).await;
}

/// Cold registrations of many devices of one database share their reads: while one read
/// is in flight, the devices asked for meanwhile queue and go together in the next
/// request (`_all_docs` with their ids). What a registration storm on a cold cache costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_registrations_of_one_database_share_their_reads() {
    const DEVICES: usize = 20;
    let mut rig = Rig::with_slots(DEVICES + 1).await;
    let run = rand_hex(12);
    let docs: Vec<Value> = (0..DEVICES)
        .map(|i| json!({"_id": format!("dev-{i:02}"), "pvt_type": "device", "name": format!("phone {i}")}))
        .collect();
    rig.couch
        .bulk_docs(&rig.db, &docs)
        .await
        .expect("create devices");

    // Every answer to the registrar is held: the first read goes out and waits; the
    // others queue behind it (one of them for a device that does not exist).
    rig.writes.hold().await;
    let before = rig.counts.snapshot();
    let mut regs = tokio::task::JoinSet::new();
    for i in 0..=DEVICES {
        let (registrar, reg) = (
            rig.registrar.clone(),
            rig.reg(&format!("dev-{i:02}"), &format!("{run}{i:04}")),
        );
        regs.spawn(async move {
            let (outcome, _) = registrar.register(&reg, &CancellationToken::new()).await;
            (i, outcome)
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while rig.registrar.reads_waiting() < DEVICES {
        assert!(
            Instant::now() < deadline,
            "reads never queued: {} waiting",
            rig.registrar.reads_waiting()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.writes.release();
    while let Some(done) = regs.join_next().await {
        let (i, outcome) = done.expect("registration task");
        let want = if i < DEVICES {
            RegOutcome::Updated
        } else {
            RegOutcome::DeviceNotFound
        };
        assert_eq!(outcome, want, "device {i}");
    }

    // Two reads for 21 devices: the first alone, then the 20 that queued behind it.
    assert_eq!(since(&rig.counts, &before, Op::GetDocs, Answer::Ok), 2);
    assert_eq!(rig.counts.total(Op::GetDoc) - total(&before, Op::GetDoc), 0);
    assert_eq!(
        since(&rig.counts, &before, Op::PutDoc, Answer::Ok),
        DEVICES as u64
    );
    for i in 0..DEVICES {
        let doc = rig.device(&format!("dev-{i:02}")).await;
        assert_eq!(doc["push"]["Token-ID"], format!("{run}{i:04}"), "{doc}");
        assert_eq!(doc["name"], format!("phone {i}"), "{doc}");
    }
    assert_eq!(rig.registrar.reads_waiting(), 0);
    let _ = rig.couch.delete_db(&rig.db).await;
}

/// Requests of `op` in a snapshot, whatever the answer.
fn total(snapshot: &[(Op, Answer, u64)], op: Op) -> u64 {
    snapshot
        .iter()
        .filter(|(o, _, _)| *o == op)
        .map(|(_, _, n)| n)
        .sum()
}

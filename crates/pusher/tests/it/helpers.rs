//! Test harness: real RabbitMQ and a real CouchDB-API server, isolated per test.
//!
//! Isolation: every test gets its own RabbitMQ vhost (created with `rabbitmqctl`, deleted
//! on drop), its own random account database, and its own node name, under which it
//! writes its `User-Agents` rules into the shared `system_config/pusher` doc — the
//! service resolves node-scoped keys node → zone → default, so tests never see each
//! other's rules. Services come from `scripts/services.sh up` (run by `make test`);
//! the URLs are read from `PUSHER_TEST_AMQP_URI` / `PUSHER_TEST_COUCH_URL`.
//!
//! Pacing: Kazoo declares the shared queue with `x-max-length` 100 and RabbitMQ drops the
//! oldest ready message beyond it, so a test that publishes more than that in one go
//! must not outrun the consumer. [`World::publish_paced`] publishes a batch while the
//! queue holds at most [`PACE_MAX_READY`] ready messages, waiting on the queue depth
//! (never on a fixed sleep) before each message.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use pusher::settings::Settings;
use pusher_io::amqp::Publisher;
use pusher_io::couch::CouchClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Kazoo's shared queue (`pusher_listener` declares it under this name: wire contract).
pub const SHARED_QUEUE: &str = "pusher_shared_listener";

/// Most ready messages [`World::publish_paced`] lets the shared queue hold: half of
/// Kazoo's `x-max-length` (100), so a consumer that falls behind never makes the broker
/// drop a message from the head.
pub const PACE_MAX_READY: u32 = 50;

/// How long pacing waits for the consumer to take one message before it fails the test.
const PACE_STALL: Duration = Duration::from_secs(30);

pub const FIXTURES: &str = include_str!("../../../../tests/fixtures/kamailio-captured.jsonl");

static TRACING: Once = Once::new();

/// `TEST_LOG=1` shows the service's logs in test output.
pub fn init_tracing() {
    TRACING.call_once(|| {
        pusher_io::ensure_crypto_provider();
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "debug,lapin=info,h2=info,hyper=info".into()),
                )
                .with_test_writer()
                .try_init();
        }
    });
}

pub fn amqp_base() -> String {
    std::env::var("PUSHER_TEST_AMQP_URI")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn couch_url() -> String {
    std::env::var("PUSHER_TEST_COUCH_URL").unwrap_or_else(|_| "http://127.0.0.1:15984".into())
}

pub fn rand_hex(n: usize) -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rabbitmqctl runs (scripts/services.sh installs RabbitMQ)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A RabbitMQ vhost of our own, deleted on drop.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn new() -> Self {
        let name = format!("pusher-it-{}", rand_hex(10));
        rabbitmqctl(&["-q", "add_vhost", &name]);
        rabbitmqctl(&[
            "-q",
            "set_permissions",
            "-p",
            &name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
        Self { name }
    }

    /// The broker URI for this vhost.
    pub fn uri(&self) -> String {
        let base = amqp_base();
        let root = base.rsplit_once('/').map(|(r, _)| r).unwrap_or(&base);
        format!("{root}/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.name])
            .stdin(std::process::Stdio::null())
            .output();
    }
}

/// One isolated test world: vhost, account, node name, a running pusher.
pub struct World {
    pub vhost: Vhost,
    pub couch: CouchClient,
    pub node: String,
    pub account_id: String,
    pub account_db: String,
    pub shutdown: CancellationToken,
    pub http_addr: Option<std::net::SocketAddr>,
    pub handle: Option<tokio::task::JoinHandle<()>>,
    pub publisher: Option<Publisher>,
    /// Extra settings (e.g. `PUSHER_EXTRA_CA_FILE`, `PUSHER_FCM_URL`).
    pub env: Vec<(String, String)>,
    _publisher_conn: Option<lapin::Connection>,
    /// A connection of its own for passive `queue.declare` (opened on first use): a 404
    /// there closes the channel, which must not take the publisher down.
    depth: tokio::sync::OnceCell<(lapin::Connection, lapin::Channel)>,
}

impl World {
    /// Vhost + account DB + node name, service not started yet.
    pub async fn new() -> Self {
        init_tracing();
        let couch = CouchClient::new(&couch_url(), Duration::from_secs(5)).expect("couch client");
        couch.ping().await.expect(
            "CouchDB-API server reachable (run `make test`, which starts it via scripts/services.sh)",
        );
        couch
            .create_db("system_config")
            .await
            .expect("system_config db");
        let account_id = rand_hex(32);
        let account_db = pusher_core::account::account_db(&account_id).expect("account db");
        couch
            .create_db(&account_db)
            .await
            .expect("create account db");
        Self {
            vhost: Vhost::new(),
            couch,
            node: format!("pusher@it-{}", rand_hex(8)),
            account_id,
            account_db,
            shutdown: CancellationToken::new(),
            http_addr: None,
            handle: None,
            publisher: None,
            env: Vec::new(),
            _publisher_conn: None,
            depth: tokio::sync::OnceCell::new(),
        }
    }

    pub fn settings(&self) -> Settings {
        let vars = [
            ("PUSHER_AMQP_URI", self.vhost.uri()),
            ("PUSHER_COUCH_URL", couch_url()),
            ("PUSHER_NODE", self.node.clone()),
            ("PUSHER_ZONE", format!("zone-{}", rand_hex(6))),
            ("PUSHER_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("PUSHER_RETRY_BUDGET_MS", "20000".to_string()),
        ];
        let mut map: std::collections::HashMap<String, String> =
            vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        map.extend(self.env.iter().cloned());
        Settings::from_map(&map).expect("settings")
    }

    /// Starts the service in-process and waits for `/ready`.
    pub async fn start(&mut self) {
        let running = pusher::start(self.settings(), self.shutdown.clone())
            .await
            .expect("service starts");
        self.http_addr = running.http_addr;
        self.handle = Some(running.handle);
        self.wait_ready().await;
        self.connect_publisher().await;
    }

    /// Starts the real `pusherd` binary with this world's settings (plus `RUST_LOG`),
    /// its stderr going to `log`, and waits for `/ready`. Kill it with `stop_binary`.
    pub async fn start_binary(&mut self, log: &std::path::Path, rust_log: &str) -> Child {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pusherd"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PUSHER_AMQP_URI", self.vhost.uri())
            .env("PUSHER_COUCH_URL", couch_url())
            .env("PUSHER_NODE", &self.node)
            .env("PUSHER_HTTP_ADDR", addr.to_string())
            .env("RUST_LOG", rust_log)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"));
        let child = cmd.spawn().expect("spawn pusherd");
        self.http_addr = Some(addr);
        self.wait_ready().await;
        self.connect_publisher().await;
        child
    }

    /// SIGTERM to a binary from `start_binary`; returns its exit status (≤ 10 s).
    pub async fn stop_binary(&mut self, mut child: Child) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pusherd did not stop within 10 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Makes the service trust the test PKI's CA (the mock providers' server certificate).
    pub fn trust_mock_ca(&mut self) {
        let ca = pki().path(pusher_sandbox::pki::files::CA);
        self.env
            .push(("PUSHER_EXTRA_CA_FILE".into(), ca.display().to_string()));
    }

    /// Opens the confirm-mode publisher `publish` uses.
    pub async fn connect_publisher(&mut self) {
        let conn = pusher_io::amqp::connect(&self.vhost.uri(), "it-publisher")
            .await
            .expect("publisher connects");
        self.publisher = Some(Publisher::new(&conn).await.expect("publisher"));
        self._publisher_conn = Some(conn);
    }

    pub async fn ready_status(&self) -> u16 {
        let addr = self.http_addr.expect("http enabled");
        match reqwest::get(format!("http://{addr}/ready")).await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.ready_status().await != 200 {
            assert!(Instant::now() < deadline, "service not ready within 15 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the service and waits for the drain.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("service stops within 10 s")
                .expect("service task joins");
        }
    }

    /// Writes `value` at `<node>.<path>` in `system_config/pusher` (read-modify-write);
    /// returns the doc's new `_rev`.
    pub async fn set_node_config(&self, path: &[&str], value: Value) -> String {
        let mut full = vec![self.node.as_str()];
        full.extend_from_slice(path);
        set_config(&self.couch, &full, value).await
    }

    /// Waits until the running service reports (as `config_rev` on `/ready`) a revision
    /// of `system_config/pusher` at or after `rev`: from then on it applies that write.
    /// Other tests write the same doc concurrently, so a later generation counts too.
    pub async fn wait_config_applied(&self, rev: &str) {
        let generation = |r: &str| r.split('-').next().and_then(|g| g.parse::<u64>().ok());
        let ours = generation(rev).expect("rev generation");
        let addr = self.http_addr.expect("http enabled");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let running = match reqwest::get(format!("http://{addr}/ready")).await {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            }
            .and_then(|body| body["config_rev"].as_str().and_then(generation))
            .unwrap_or(0);
            if running >= ours {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "config revision {rev} not applied within 15 s (running generation {running})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sets this node's only `User-Agents` rule, `key` → `regex` with the legacy Contact
    /// parameters (`app-id`, `pn-type`, `pn-tok`); returns the config doc's new `_rev`.
    pub async fn set_rule(&self, key: &str, regex: &str) -> String {
        self.set_node_config(
            &["User-Agents"],
            json!({ key: {
                "regex": regex,
                "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}
            }}),
        )
        .await
    }

    /// Creates a device doc in this world's account.
    pub async fn put_device(&self, device_id: &str, extra: Value) -> String {
        let mut doc = json!({"_id": device_id, "pvt_type": "device", "name": "phone"});
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                d.insert(k.clone(), v.clone());
            }
        }
        self.couch
            .put_doc(&self.account_db, &doc)
            .await
            .expect("put device")
    }

    pub async fn device(&self, device_id: &str) -> Value {
        self.couch
            .get_doc(&self.account_db, device_id)
            .await
            .expect("get device")
            .expect("device exists")
    }

    /// A fixture reg_success (by index among reg_success lines) with CCVs for this world.
    pub fn reg_success(&self, index: usize, device_id: &str) -> Value {
        let mut body = fixture_bodies("reg_success")[index].clone();
        body["Custom-Channel-Vars"] =
            json!({"Account-ID": self.account_id, "Authorizing-ID": device_id});
        body
    }

    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) {
        self.publisher
            .as_ref()
            .expect("started")
            .publish_json(
                exchange,
                routing_key,
                body,
                lapin::BasicProperties::default(),
            )
            .await
            .expect("publish confirmed");
    }

    pub async fn publish_reg(&self, body: &Value) {
        self.publish(
            "registrar",
            "registration.success.acme%2Esip%2Eexample%2Ecom.2001",
            body.to_string().as_bytes(),
        )
        .await;
    }

    /// Waits until `check(device)` holds (or fails after `secs`).
    pub async fn wait_device<F: Fn(&Value) -> bool>(
        &self,
        device_id: &str,
        secs: u64,
        check: F,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let doc = self.device(device_id).await;
            if check(&doc) {
                return doc;
            }
            assert!(
                Instant::now() < deadline,
                "device {device_id} never reached the expected state: {doc}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Ready messages (not counting unacked ones) in this vhost's shared queue: the
    /// `message-count` of a passive `queue.declare`, one AMQP round trip. Panics if the
    /// queue does not exist (nothing consumes it yet).
    pub async fn ready_messages(&self) -> u32 {
        let (_, channel) = self
            .depth
            .get_or_init(|| async {
                let conn = pusher_io::amqp::connect(&self.vhost.uri(), "it-queue-depth")
                    .await
                    .expect("queue-depth connection");
                let channel = conn.create_channel().await.expect("queue-depth channel");
                (conn, channel)
            })
            .await;
        let queue = channel
            .queue_declare(
                SHARED_QUEUE.into(),
                QueueDeclareOptions {
                    // Only look: never create it, or change nothing if it exists.
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "passive declare of {SHARED_QUEUE} in vhost {}: {e} (is a service consuming?)",
                    self.vhost.name
                )
            });
        queue.message_count()
    }

    /// Waits until the shared queue holds at most [`PACE_MAX_READY`] ready messages,
    /// polling its depth; fails the test if the consumer takes none for [`PACE_STALL`].
    pub async fn wait_for_room(&self) {
        let mut ready = self.ready_messages().await;
        let mut progress = (ready, Instant::now());
        while ready > PACE_MAX_READY {
            if ready < progress.0 {
                progress = (ready, Instant::now());
            }
            assert!(
                progress.1.elapsed() < PACE_STALL,
                "pacing: {ready} messages ready in {SHARED_QUEUE} and none taken for \
                 {PACE_STALL:?}: the consumer is stuck (vhost {})",
                self.vhost.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            ready = self.ready_messages().await;
        }
    }

    /// Publishes every item of `batch` with `publish`, waiting before each one until the
    /// shared queue has room ([`World::wait_for_room`]): the broker never holds more than
    /// `PACE_MAX_READY + 1` ready messages of ours, far from the 100 where it drops some.
    pub async fn publish_paced<T, F, Fut>(&self, batch: impl IntoIterator<Item = T>, mut publish: F)
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = ()>,
    {
        for item in batch {
            self.wait_for_room().await;
            publish(item).await;
        }
    }

    /// Waits until the shared queue in our vhost has no messages ready or unacked.
    pub async fn wait_queue_drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = rabbitmqctl(&[
                "-q",
                "list_queues",
                "-p",
                &self.vhost.name,
                "name",
                "messages",
                "--no-table-headers",
            ]);
            let drained = out
                .lines()
                .filter(|l| l.starts_with("pusher_shared_listener"))
                .all(|l| l.split_whitespace().nth(1) == Some("0"));
            if drained {
                return;
            }
            assert!(Instant::now() < deadline, "queue not drained: {out}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Sets `path` in `system_config/pusher`, creating the doc if needed (409-safe); returns
/// the doc's new `_rev`.
pub async fn set_config(couch: &CouchClient, path: &[&str], value: Value) -> String {
    for _ in 0..20 {
        let mut doc = couch
            .get_doc("system_config", "pusher")
            .await
            .expect("get config")
            .unwrap_or_else(|| json!({"_id": "pusher", "pvt_type": "config"}));
        pusher_core::kapps_config::set_at(&mut doc, path, value.clone());
        match couch.put_doc("system_config", &doc).await {
            Ok(rev) => return rev,
            Err(pusher_io::couch::Error::Conflict) => continue,
            Err(e) => panic!("cannot write config: {e}"),
        }
    }
    panic!("config write kept conflicting");
}

/// The `body` of every fixture line with this Event-Name, in file order.
pub fn fixture_bodies(event_name: &str) -> Vec<Value> {
    FIXTURES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("fixture line is JSON"))
        .filter(|v| v["body"]["Event-Name"] == event_name)
        .map(|v| v["body"].clone())
        .collect()
}

/// The test PKI (CA, client certificates, `.p8`, service account), generated once per
/// target dir and shared by every test of the binary (one generator: no race).
pub fn pki() -> &'static pusher_sandbox::pki::TestPki {
    static PKI: std::sync::OnceLock<pusher_sandbox::pki::TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pusher-it-pki");
        pusher_sandbox::pki::TestPki::load_or_generate(&dir).expect("test PKI")
    })
}

/// A mock APNs (HTTP/2, mTLS) with the test PKI and `latency` added to each reply.
pub async fn apns_mock(latency: Duration) -> pusher_sandbox::apns_mock::MockApns {
    let mut cfg = pusher_sandbox::apns_mock::ApnsMockConfig::from_pki(pki());
    cfg.latency = latency;
    pusher_sandbox::apns_mock::MockApns::start(cfg)
        .await
        .expect("mock APNs")
}

// ---------------------------------------------------------------------------------------
// Counting what the broker drops, and reading the service's metrics.

/// Exchange (fanout) and queue that [`World::count_drops`] dead-letters into.
pub const DROPPED: &str = "it.dropped";

/// Name of the vhost policy that dead-letters into [`DROPPED`].
const POLICY: &str = "it-count-drops";

/// Counts the messages the shared queue of one vhost drops (overflow past Kazoo's
/// `x-max-length` 100, or TTL): a vhost policy dead-letters them into [`DROPPED`], as the
/// bench does. Kazoo's own declaration has no dead-letter exchange, so the policy changes
/// nothing but where a dropped message goes.
pub struct DropCounter {
    vhost: String,
    _conn: lapin::Connection,
    channel: lapin::Channel,
}

impl DropCounter {
    /// Messages dead-lettered so far.
    pub async fn dropped(&self) -> u32 {
        self.channel
            .queue_declare(
                DROPPED.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare of the drop counter")
            .message_count()
    }

    /// Fails the test unless the broker applies the counting policy to the shared queue
    /// (call once the service has declared it).
    pub async fn assert_applied(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = rabbitmqctl(&[
                "-q",
                "list_queues",
                "-p",
                &self.vhost,
                "name",
                "policy",
                "--no-table-headers",
            ]);
            if out
                .lines()
                .any(|l| l.starts_with(SHARED_QUEUE) && l.contains(POLICY))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the drop-counting policy is not applied to {SHARED_QUEUE}: {out}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl World {
    /// Starts counting what the shared queue drops (see [`DropCounter`]); call before the
    /// service declares the queue or after, the policy applies either way.
    pub async fn count_drops(&self) -> DropCounter {
        use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
        let conn = pusher_io::amqp::connect(&self.vhost.uri(), "it-drop-counter")
            .await
            .expect("drop-counter connection");
        let channel = conn.create_channel().await.expect("drop-counter channel");
        channel
            .exchange_declare(
                DROPPED.into(),
                lapin::ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare the dead-letter exchange");
        channel
            .queue_declare(
                DROPPED.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare the drop counter");
        channel
            .queue_bind(
                DROPPED.into(),
                DROPPED.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind the drop counter");
        let policy = json!({ "dead-letter-exchange": DROPPED }).to_string();
        rabbitmqctl(&[
            "-q",
            "set_policy",
            "-p",
            &self.vhost.name,
            "--apply-to",
            "queues",
            POLICY,
            &format!("^{SHARED_QUEUE}$"),
            &policy,
        ]);
        DropCounter {
            vhost: self.vhost.name.clone(),
            _conn: conn,
            channel,
        }
    }

    /// `GET /metrics` of the running service (text format).
    pub async fn metrics(&self) -> String {
        let addr = self.http_addr.expect("http enabled");
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// `GET /ready`: status code and JSON body (`0` and `null` if it does not answer).
    pub async fn ready_body(&self) -> (u16, Value) {
        let addr = self.http_addr.expect("http enabled");
        match reqwest::get(format!("http://{addr}/ready")).await {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }
}

/// The sum of every `/metrics` sample whose line starts with `prefix` (a series and all
/// its label sets, e.g. `pusher_reg_success_total{`).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Every `/metrics` sample whose line starts with `prefix`, as `labels value` lines.
pub fn metric_lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l[prefix.len()..].to_string())
        .collect()
}

/// Closes, from the broker's side (`rabbitmqctl close_connection`), every connection in
/// `vhost` whose client properties contain `name` (e.g. `pusher <node>`, the service's
/// connection name); returns how many it closed.
pub fn close_connections(vhost: &str, name: &str, reason: &str) -> usize {
    let conns = rabbitmqctl(&[
        "-q",
        "list_connections",
        "-p",
        vhost,
        "pid",
        "client_properties",
        "--no-table-headers",
    ]);
    let pids: Vec<&str> = conns
        .lines()
        .filter(|l| l.contains(name))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for pid in &pids {
        rabbitmqctl(&["-q", "close_connection", pid, reason]);
    }
    pids.len()
}

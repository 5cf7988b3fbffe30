//! The bench's world: its own RabbitMQ vhost (with a dead-letter policy that counts what
//! the shared queue drops), its own account database and config keys in CouchDB, the mock
//! APNs, and `pusherd` child processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};
use pusher_io::couch::CouchClient;
use serde_json::{Value, json};

/// Where the shared queue dead-letters what it drops (bench vhost only, via a policy).
pub const DROPPED_EXCHANGE: &str = "bench.dropped";
/// Queue counting the dropped messages.
pub const DROPPED_QUEUE: &str = "bench.dropped";

/// Random lowercase hex.
pub fn rand_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

/// Runs `rabbitmqctl` (stdin closed) and returns its stdout.
pub fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("Failed to run rabbitmqctl (scripts/services.sh installs RabbitMQ)")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A vhost of our own with a policy that dead-letters everything the shared queue drops
/// (x-max-length overflow or TTL) into [`DROPPED_QUEUE`]; deleted on drop.
#[derive(Debug)]
pub struct Vhost {
    /// Name.
    pub name: String,
    base_uri: String,
}

impl Vhost {
    /// Creates it (three `rabbitmqctl` calls, ~1 s each).
    pub fn create(base_uri: &str) -> Result<Self> {
        let name = format!("pusher-bench-{}", rand_hex(8));
        rabbitmqctl(&["-q", "add_vhost", &name])?;
        let vhost = Self {
            name,
            base_uri: base_uri.to_string(),
        };
        rabbitmqctl(&[
            "-q",
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])?;
        let policy = json!({ "dead-letter-exchange": DROPPED_EXCHANGE }).to_string();
        rabbitmqctl(&[
            "-q",
            "set_policy",
            "-p",
            &vhost.name,
            "--apply-to",
            "queues",
            "bench-count-drops",
            &format!("^{}$", pusher_io::amqp::QUEUE),
            &policy,
        ])?;
        Ok(vhost)
    }

    /// Broker URI of this vhost.
    pub fn uri(&self) -> String {
        let root = self
            .base_uri
            .rsplit_once('/')
            .map(|(r, _)| r)
            .unwrap_or(&self.base_uri);
        format!("{root}/{}", self.name)
    }

    /// Bytes the broker sent to each connection, with the connection's client properties
    /// (they hold its name) (for per-instance
    /// shares: every delivery of the same message costs the same bytes).
    pub fn send_octets(&self) -> Result<Vec<(String, u64)>> {
        let out = rabbitmqctl(&[
            "-q",
            "list_connections",
            "-p",
            &self.name,
            "client_properties",
            "send_oct",
            "--no-table-headers",
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (name, oct) = l.trim().rsplit_once(char::is_whitespace)?;
                Some((name.trim().to_string(), oct.trim().parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

/// The bench's control connection: publishing, queue depth, drop counting.
#[derive(Debug)]
pub struct Broker {
    /// Connection (kept open).
    pub conn: Connection,
    /// Confirm-mode publishing channel.
    pub publish: Channel,
    /// Channel for passive declares (queue depth) and the drop counter.
    pub control: Channel,
}

impl Broker {
    /// Connects and declares the exchanges and the drop counter.
    pub async fn connect(uri: &str) -> Result<Self> {
        let conn = pusher_io::amqp::connect(uri, "pusher-bench").await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        let control = conn.create_channel().await?;
        pusher_io::amqp::declare_exchanges(&control).await?;
        control
            .exchange_declare(
                DROPPED_EXCHANGE.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        control
            .queue_declare(
                DROPPED_QUEUE.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        control
            .queue_bind(
                DROPPED_QUEUE.into(),
                DROPPED_EXCHANGE.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            conn,
            publish,
            control,
        })
    }

    /// Ready messages in the shared queue (passive declare), `None` if it does not exist.
    pub async fn ready(&self) -> Result<u32> {
        let q = self
            .control
            .queue_declare(
                pusher_io::amqp::QUEUE.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context("the shared queue does not exist (no consumer?)")?;
        Ok(q.message_count())
    }

    /// Waits until the shared queue exists and has `consumers` consumers.
    pub async fn wait_consumers(&self, consumers: u32, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            // A failed passive declare closes the channel: probe on a throwaway one.
            let ch = self.conn.create_channel().await?;
            let got = ch
                .queue_declare(
                    pusher_io::amqp::QUEUE.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|q| q.consumer_count())
                .unwrap_or(0);
            let _ = ch.close(200, "probe".into()).await;
            if got >= consumers {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the shared queue has {got} consumers, wanted {consumers}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Messages dead-lettered by the shared queue since the last [`Broker::reset_dropped`].
    pub async fn dropped(&self) -> Result<u32> {
        let q = self
            .control
            .queue_declare(
                DROPPED_QUEUE.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    /// Empties the drop counter.
    pub async fn reset_dropped(&self) -> Result<()> {
        self.control
            .queue_purge(DROPPED_QUEUE.into(), QueuePurgeOptions::default())
            .await?;
        Ok(())
    }
}

/// CouchDB side: an account database, our node's rule and our app's credentials.
#[derive(Debug)]
pub struct Couch {
    /// Client.
    pub client: CouchClient,
    /// Base URL.
    pub url: String,
    /// Raw HTTP client for bulk calls.
    pub http: reqwest::Client,
    /// Account id (32 hex).
    pub account_id: String,
    /// `account%2F..` database name.
    pub account_db: String,
}

impl Couch {
    /// Creates a fresh account database.
    pub async fn create(url: &str) -> Result<Self> {
        let client = CouchClient::new(url, Duration::from_secs(30))?;
        client
            .ping()
            .await
            .with_context(|| format!("CouchDB-API server not reachable at {url}"))?;
        client.create_db("system_config").await?;
        let account_id = rand_hex(32);
        let account_db = pusher_core::account::account_db(&account_id)?;
        client.create_db(&account_db).await?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            account_id,
            account_db,
        })
    }

    /// URL of a doc or database path in the account database.
    pub fn db_url(&self) -> String {
        format!(
            "{}/{}",
            self.url,
            pusher_io::couch::encode_segment(&self.account_db)
        )
    }

    /// Edits `system_config/pusher` (read-modify-write, 409-safe).
    pub async fn edit_config(&self, mut edit: impl FnMut(&mut Value)) -> Result<()> {
        for _ in 0..50 {
            let mut doc = self
                .client
                .get_doc("system_config", "pusher")
                .await?
                .unwrap_or_else(|| json!({"_id": "pusher", "pvt_type": "config"}));
            edit(&mut doc);
            match self.client.put_doc("system_config", &doc).await {
                Ok(_) => return Ok(()),
                Err(pusher_io::couch::Error::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("system_config/pusher kept conflicting")
    }

    /// Creates `n` device docs `dev-<i>` (optionally with a `push` object) in one bulk call;
    /// replaces nothing (fresh ids).
    pub async fn bulk_put(&self, docs: &[Value]) -> Result<()> {
        for chunk in docs.chunks(500) {
            let resp = self
                .http
                .post(format!("{}/_bulk_docs", self.db_url()))
                .json(&json!({ "docs": chunk }))
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("_bulk_docs: {}", resp.status());
            }
        }
        Ok(())
    }

    /// Every doc of the account database.
    pub async fn all_docs(&self) -> Result<Vec<Value>> {
        let v: Value = self
            .http
            .get(format!("{}/_all_docs?include_docs=true", self.db_url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v["rows"]
            .as_array()
            .map(|rows| rows.iter().map(|r| r["doc"].clone()).collect())
            .unwrap_or_default())
    }

    /// Removes the account database.
    pub async fn cleanup(&self, config_keys: &[String]) {
        let _ = self.client.delete_db(&self.account_db).await;
        let _ = self
            .edit_config(|doc| {
                if let Some(m) = doc.as_object_mut() {
                    for k in config_keys {
                        m.remove(k);
                    }
                }
            })
            .await;
    }
}

/// Revision generation (`"12-abc"` → 12).
pub fn rev_gen(doc: &Value) -> u64 {
    doc["_rev"]
        .as_str()
        .and_then(|r| r.split('-').next())
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// How a `pusherd` child is started.
#[derive(Debug, Clone)]
pub struct PusherdConfig {
    /// Binary.
    pub bin: PathBuf,
    /// Environment (on top of PATH).
    pub env: Vec<(String, String)>,
    /// Log directory.
    pub log_dir: PathBuf,
}

/// A running `pusherd` child process.
#[derive(Debug)]
pub struct Pusherd {
    child: Child,
    /// `perf record` attached to it (`BENCH_PERF=1`).
    perf: Option<Child>,
    /// `/health` + `/ready` address.
    pub http: std::net::SocketAddr,
    /// Its node name (= AMQP connection name suffix).
    pub node: String,
    /// Start → `/ready` 200.
    pub ready_after: Duration,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Pusherd {
    /// Spawns it and waits for `/ready` 200 (polled every 2 ms).
    pub async fn start(cfg: &PusherdConfig, node: &str, label: &str) -> Result<Self> {
        let port = free_port()?;
        let http: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let log = cfg.log_dir.join(format!("pusherd-{label}.log"));
        let mut cmd = Command::new(&cfg.bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PUSHER_NODE", node)
            .env("PUSHER_HTTP_ADDR", http.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("Failed to start {}", cfg.bin.display()))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()?;
        let url = format!("http://{http}/ready");
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().as_u16() == 200
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "pusherd exited ({status}) before /ready; see {}",
                    log.display()
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                bail!("pusherd not ready within 20 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let ready_after = started.elapsed();
        // BENCH_PERF=1: sample the service's stacks for the whole scenario (software
        // clock: no hardware counters needed); `perf report -i <file>` afterwards.
        let perf = match std::env::var("BENCH_PERF") {
            Ok(v) if !v.is_empty() && v != "0" => Command::new("perf")
                .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-p"])
                .arg(child.id().to_string())
                .arg("-o")
                .arg(cfg.log_dir.join(format!("perf-{label}.data")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok(),
            _ => None,
        };
        Ok(Self {
            child,
            perf,
            http,
            node: node.to_string(),
            ready_after,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/ready` JSON.
    pub async fn ready_json(&self) -> Result<Value> {
        Ok(reqwest::get(format!("http://{}/ready", self.http))
            .await?
            .json()
            .await?)
    }

    /// Waits until the config is loaded (`/ready` names a revision).
    pub async fn wait_config(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ready_json().await?["config_rev"].is_string() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pusherd did not load system_config/pusher within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `/metrics` body if the service has the endpoint.
    pub async fn metrics(&self) -> Option<String> {
        let r = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    }

    /// `VmRSS` and `VmHWM` in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        memory_kib(self.pid())
    }

    /// SIGTERM, then waits (≤ 10 s, then SIGKILL).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(mut perf) = self.perf.take() {
            let _ = Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status();
            let _ = perf.wait();
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("pusherd did not stop within 10 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Pusherd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmRSS` and `VmHWM` (KiB) of a process.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU time of a process, in microseconds (from `/proc/<pid>/stat`, whose
/// unit is the 100 Hz clock tick).
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// `path` relative to the repository root when it is relative.
pub fn repo_path(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

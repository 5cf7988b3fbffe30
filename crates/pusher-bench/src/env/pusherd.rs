//! `pusherd` child processes: start and wait for `/ready`, read `/ready` and `/metrics`,
//! optional `perf record`, SIGTERM stop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::memory_kib;

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
            // Experiments: BENCH_PUSHERD_ENV_<NAME>=v gives pusherd <NAME>=v (e.g.
            // TOKIO_WORKER_THREADS, MIMALLOC_* options).
            .envs(
                std::env::vars().filter_map(|(k, v)| {
                    Some((k.strip_prefix("BENCH_PUSHERD_ENV_")?.to_string(), v))
                }),
            )
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
        // BENCH_PERF=dwarf unwinds with DWARF (release builds keep no frame pointers,
        // so `-g` stops at the first frame of most allocator and runtime stacks).
        let perf = match std::env::var("BENCH_PERF") {
            Ok(v) if !v.is_empty() && v != "0" => Command::new("perf")
                .args(["record", "-e", "cpu-clock", "-F", "499"])
                .args(if v == "dwarf" {
                    ["--call-graph", "dwarf,16384"].as_slice()
                } else {
                    ["-g"].as_slice()
                })
                .arg("-p")
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

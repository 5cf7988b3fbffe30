//! The raw baselines, measured in the same run on the same services:
//! - a bare lapin consume-and-ack loop (a child process, like `pusherd`), same prefetch,
//!   same queue declaration (`pusher_io::amqp::declare_topology`);
//! - a bare CouchDB PUT loop at the service's concurrency;
//! - a bare reqwest HTTP/2 loop against the same mock APNs, same latency, same requests.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use lapin::options::BasicAckOptions;
use lapin::types::AMQPValue;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::load::{TS_HEADER, now_us, percentile};

/// What the baseline consumer reports when told to stop.
#[derive(Debug, Clone, Default)]
pub struct ConsumerReport {
    /// Deliveries acked.
    pub count: u64,
    /// Publish → delivery latency, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
}

/// Where the bare pipeline sends each `push_req` (P4's lower bound for any
/// implementation): the mock APNs and the TLS files to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Base URL of the mock APNs; without it the consumer only acks.
    #[arg(long)]
    pub apns_url: Option<String>,
    /// Client certificate and key (PEM).
    #[arg(long)]
    pub client_pem: Option<std::path::PathBuf>,
    /// CA that signed the mock's certificate (PEM).
    #[arg(long)]
    pub ca_pem: Option<std::path::PathBuf>,
}

/// The bare consumer (child-process side): declare, consume with `prefetch`, ack each
/// delivery; print `ready` once consuming; on stdin EOF print a JSON report and exit.
/// With `pipeline.apns_url`, the bare pipeline: each delivery is read as a `push_req`
/// (core's typed read), sent to the mock APNs over HTTP/2, and acked once answered —
/// what any implementation must do per push, and nothing else.
pub async fn consumer_main(uri: &str, prefetch: u16, pipeline: &PipelineArgs) -> Result<()> {
    let apns = match pipeline {
        PipelineArgs {
            apns_url: Some(url),
            client_pem: Some(client),
            ca_pem: Some(ca),
        } => Some((
            h2_client(
                &std::fs::read_to_string(client)?,
                &std::fs::read_to_string(ca)?,
            )?,
            Arc::new(url.trim_end_matches('/').to_string()),
        )),
        PipelineArgs { apns_url: None, .. } => None,
        _ => bail!("--apns-url needs --client-pem and --ca-pem"),
    };
    let conn = pusher_io::amqp::connect(uri, "bench baseline consumer").await?;
    let channel = conn.create_channel().await?;
    pusher_io::amqp::declare_topology(&channel).await?;
    let mut consumer = pusher_io::amqp::consume(&channel, prefetch, "").await?;
    println!("ready");
    std::io::stdout().flush()?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        let _ = stop_tx.send(());
    });
    let mut lat = Vec::with_capacity(1 << 16);
    loop {
        tokio::select! {
            _ = &mut stop_rx => break,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let now = now_us();
                    if let Some(AMQPValue::LongLongInt(ts)) = delivery
                        .properties
                        .headers()
                        .as_ref()
                        .and_then(|h| h.inner().get(TS_HEADER))
                    {
                        lat.push(now.saturating_sub(*ts as u64));
                    }
                    // Acks go out concurrently (as the service's per-delivery tasks do),
                    // so the loop never waits for lapin's I/O thread per message.
                    let acker = delivery.acker;
                    let apns = apns.clone();
                    let data = delivery.data;
                    tokio::spawn(async move {
                        if let Some((client, base)) = apns {
                            let req = pusher_core::push_req::PushFields::parse_push_req(&data)
                                .and_then(|f| {
                                    pusher_core::push_req::PushReq::from_fields(f, now_us() / 1000).ok()
                                });
                            if let Some(req) = req {
                                let _ = apns_post(&client, &base, &req).await;
                            }
                        }
                        let _ = acker.ack(BasicAckOptions::default()).await;
                    });
                }
                Some(Err(e)) => bail!("consumer failed: {e}"),
                None => break,
            }
        }
    }
    lat.sort_unstable();
    println!(
        "{}",
        json!({"count": lat.len(), "p50_us": percentile(&lat, 50.0), "p99_us": percentile(&lat, 99.0)})
    );
    std::io::stdout().flush()?;
    let _ = channel.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// Parent side of the bare consumer.
#[derive(Debug)]
pub struct BaselineConsumer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl BaselineConsumer {
    /// Starts `<this exe> amqp-consumer` and waits until it consumes.
    pub fn start(uri: &str, prefetch: u16) -> Result<Self> {
        Self::start_with(uri, prefetch, &[])
    }

    /// The bare pipeline: `<this exe> amqp-consumer` sending each `push_req` to the mock
    /// APNs at `apns_url` before acking it.
    pub fn start_pipeline(
        uri: &str,
        prefetch: u16,
        apns_url: &str,
        client_pem: &std::path::Path,
        ca_pem: &std::path::Path,
    ) -> Result<Self> {
        let args = [
            "--apns-url".as_ref(),
            apns_url.as_ref(),
            "--client-pem".as_ref(),
            client_pem.as_os_str(),
            "--ca-pem".as_ref(),
            ca_pem.as_os_str(),
        ];
        Self::start_with(uri, prefetch, &args)
    }

    fn start_with(uri: &str, prefetch: u16, extra: &[&std::ffi::OsStr]) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["amqp-consumer", "--uri", uri, "--prefetch"])
            .arg(prefetch.to_string())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("Failed to start the baseline consumer")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("baseline consumer did not start: {line:?}");
        }
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it and returns its report.
    pub fn finish(mut self) -> Result<ConsumerReport> {
        drop(self.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let _ = self.child.wait();
        let v: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("baseline consumer report: {line:?}"))?;
        Ok(ConsumerReport {
            count: v["count"].as_u64().unwrap_or(0),
            p50_us: v["p50_us"].as_u64().unwrap_or(0),
            p99_us: v["p99_us"].as_u64().unwrap_or(0),
        })
    }
}

impl Drop for BaselineConsumer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A device doc as the bench creates it.
pub fn device_doc(id: &str) -> Value {
    json!({
        "_id": id, "pvt_type": "device", "name": format!("bench {id}"),
        "device_type": "softphone", "enabled": true,
        "sip": {"username": "2001", "password": "not-a-secret", "invite_format": "contact"},
        "caller_id": {"internal": {"number": "2001", "name": "Bench"}},
        "media": {"audio": {"codecs": ["PCMU", "PCMA"]}},
    })
}

/// Bare CouchDB PUT loop (the P3 and P9 baselines): `concurrency` workers write `n`
/// push updates over `devices` round robin, each worker owning its devices so no PUT
/// conflicts. The revisions are read first, untimed. With an `outage`, the loop runs
/// through its proxy, which is cut once `after` PUTs have landed and restored `lasts`
/// later; a failed PUT is then tried again every 50 ms (a 409 of a PUT that landed
/// unanswered re-reads the revision), the least any writer could lose to the outage.
/// Returns (elapsed, failed PUTs).
pub async fn couch_put_loop(
    http: &reqwest::Client,
    db_url: &str,
    devices: &[String],
    n: u64,
    concurrency: usize,
    outage: Option<Outage<'_>>,
) -> Result<(Duration, u64)> {
    // Untimed: read each device's current revision.
    let mut docs = Vec::with_capacity(devices.len());
    for id in devices {
        let d: Value = http
            .get(format!("{db_url}/{id}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        docs.push(d);
    }
    let mut owned: Vec<Vec<Value>> = vec![Vec::new(); concurrency];
    for (i, d) in docs.into_iter().enumerate() {
        owned[i % concurrency].push(d);
    }
    let jobs = Jobs::new(n);
    let landed = Arc::new(AtomicU64::new(0));
    let retry = outage.is_some();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut mine in owned.into_iter().filter(|m| !m.is_empty()) {
        let (http, jobs, landed) = (http.clone(), jobs.clone(), landed.clone());
        let db_url = db_url.to_string();
        tasks.spawn(async move {
            let mut k = 0usize;
            while let Some(i) = jobs.take() {
                let len = mine.len();
                let doc = &mut mine[k % len];
                k += 1;
                doc["push"] = json!({"Token-App": "org.myorg.myapp", "Token-Type": "apple",
                    "Token-ID": format!("base{i}"), "Token-Proxy": "sip:127.0.0.1:5060"});
                let id = doc["_id"].as_str().unwrap_or_default().to_string();
                loop {
                    let r = http.put(format!("{db_url}/{id}")).json(&*doc).send().await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let v: Value = r.json().await.unwrap_or_default();
                            doc["_rev"] = v["rev"].clone();
                            landed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        _ if !retry => {
                            jobs.record(false);
                            break;
                        }
                        Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                            let now = http.get(format!("{db_url}/{id}")).send().await;
                            if let Ok(now) = now
                                && let Ok(now) = now.json::<Value>().await
                            {
                                doc["_rev"] = now["_rev"].clone();
                            }
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        });
    }
    if let Some(outage) = outage {
        while landed.load(Ordering::Relaxed) < outage.after && !tasks.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        outage.proxy.set_cut(true);
        tokio::time::sleep(outage.lasts).await;
        outage.proxy.set_cut(false);
    }
    while tasks.join_next().await.is_some() {}
    Ok((started.elapsed(), jobs.failed()))
}

/// A CouchDB outage in a bare PUT loop: through `proxy`, cut once `after` PUTs landed,
/// for `lasts`.
#[derive(Debug, Clone, Copy)]
pub struct Outage<'a> {
    /// The proxy the loop's URL points at.
    pub proxy: &'a crate::env::CutProxy,
    /// PUTs landed before the cut.
    pub after: u64,
    /// How long CouchDB stays unreachable.
    pub lasts: Duration,
}

/// Bare CouchDB GET loop (what P2 costs per message without a cache): `concurrency`
/// workers reading device docs round robin, `n` GETs in all. Returns (elapsed, errors).
pub async fn couch_get_loop(
    http: &reqwest::Client,
    db_url: &str,
    devices: &[String],
    n: u64,
    concurrency: usize,
) -> Result<(Duration, u64)> {
    let jobs = Jobs::new(n);
    let devices = Arc::new(devices.to_vec());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, jobs, devices) = (http.clone(), jobs.clone(), devices.clone());
        let db_url = db_url.to_string();
        tasks.spawn(async move {
            while let Some(i) = jobs.take() {
                let id = &devices[i as usize % devices.len()];
                let ok = match http.get(format!("{db_url}/{id}")).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                jobs.record(ok);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok((started.elapsed(), jobs.failed()))
}

/// Bare HTTP/2 loop: one reqwest client (one HTTP/2 connection, client certificate, the
/// mock CA), `concurrency` requests in flight, `n` pushes built exactly as the service
/// builds them. Returns (elapsed, non-200 answers).
pub async fn h2_loop(
    base_url: &str,
    client_pem: &str,
    ca_pem: &str,
    app: &str,
    n: u64,
    concurrency: usize,
) -> Result<(Duration, u64)> {
    let client = h2_client(client_pem, ca_pem)?;
    let (base_url, app) = (base_url.to_string(), app.to_string());
    let send = move |client: reqwest::Client, token: String| {
        let base = base_url.clone();
        let app = app.clone();
        async move {
            let body = crate::load::push_req_body(&app, &token);
            let req = pusher_core::push_req::PushReq::from_json(&body, now_us() / 1000)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            apns_post(&client, &base, &req).await
        }
    };
    // Warm the connection (TLS handshake) outside the timing.
    send(client.clone(), "warmup0".into()).await?;
    let jobs = Jobs::new(n);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, jobs, send) = (client.clone(), jobs.clone(), send.clone());
        tasks.spawn(async move {
            while let Some(i) = jobs.take() {
                let ok = send(client.clone(), format!("h2base{i:08x}")).await;
                jobs.record(matches!(ok, Ok(true)));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok((started.elapsed(), jobs.failed()))
}

/// `n` numbered jobs shared by the workers of a bare loop: each worker takes the next
/// number until all are taken; failures are counted.
#[derive(Debug, Clone)]
struct Jobs {
    n: u64,
    next: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Jobs {
    fn new(n: u64) -> Self {
        Jobs {
            n,
            next: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The next job number, `None` once all `n` are taken.
    fn take(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.n).then_some(i)
    }

    /// Count a failure when `ok` is false.
    fn record(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// The HTTP/2 client of the bare loops: TLS with `client_pem` as identity, trusting
/// `ca_pem`, prior knowledge, one pooled connection kept.
fn h2_client(client_pem: &str, ca_pem: &str) -> Result<reqwest::Client> {
    pusher_io::ensure_crypto_provider();
    Ok(reqwest::Client::builder()
        .http2_prior_knowledge()
        .https_only(true)
        .timeout(Duration::from_secs(10))
        .identity(reqwest::Identity::from_pem(client_pem.as_bytes())?)
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())?)
        .pool_idle_timeout(None)
        .build()?)
}

/// One APNs request for `req` (core's mapping, default app settings) to `base`:
/// whether it was answered 200.
async fn apns_post(
    client: &reqwest::Client,
    base: &str,
    req: &pusher_core::push_req::PushReq,
) -> Result<bool> {
    let apns = pusher_core::apns::build_request(req, &pusher_core::apns::ApnsAppConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rb = client
        .post(format!("{base}{}", apns.path))
        .header("content-type", "application/json")
        .body(apns.body);
    for (k, v) in &apns.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = rb.send().await?;
    let ok = resp.status().as_u16() == 200;
    let _ = resp.bytes().await?;
    Ok(ok)
}

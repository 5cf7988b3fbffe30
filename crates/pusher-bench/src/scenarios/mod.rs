//! Scenarios P1–P8 of issue #6, each against the real `pusherd` binary and against its
//! raw baseline, in the same run on the same services.

//!
//! This module holds the shared [`Bench`] world and its helpers; `registration` (P1–P3),
//! `push` (P4–P6), `multi` (P8), `storm` (P9) and `accounts` (P10) each add their scenarios to it;
//! P7 is measured here from every start.

mod accounts;
mod multi;
mod push;
mod registration;
mod storm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use pusher_sandbox::apns_mock::{ApnsMockConfig, ApnsReceived, MockApns};
use pusher_sandbox::pki::{ClientVariant, TestPki};
use serde_json::{Value, json};

use crate::baseline::{self, BaselineConsumer, ConsumerReport};
use crate::env::{Broker, Couch, Pusherd, PusherdConfig, Vhost, rand_hex, rev_gen};
use crate::load::{self, Msg, Published};
use crate::report::Row;

/// How many messages each scenario uses (scaled by `--scale`).
#[derive(Debug, Clone)]
pub struct Counts {
    /// P1 and the broker ceiling.
    pub p1: u64,
    /// P2.
    pub p2: u64,
    /// P3 and the bare PUT loop.
    pub p3: u64,
    /// P4, the HTTP/2 loop and the push broker ceiling.
    pub p4: u64,
    /// P5 seconds at 1,000 push/s.
    pub p5_secs: u64,
    /// P8 (each of P1 and P4).
    pub p8: u64,
    /// Devices in the account.
    pub devices: u64,
    /// P9: devices in the storm.
    pub p9: u64,
    /// P9: how long CouchDB is unreachable.
    pub p9_outage: Duration,
    /// P10: account databases.
    pub p10_dbs: u64,
}

impl Counts {
    /// The defaults times `scale`.
    pub fn scaled(scale: f64) -> Self {
        let s = |n: f64| ((n * scale).round() as u64).max(200);
        Counts {
            p1: s(30_000.0),
            p2: s(8_000.0),
            p3: s(3_000.0),
            p4: s(30_000.0),
            p5_secs: ((5.0 * scale).round() as u64).clamp(2, 30),
            p8: s(30_000.0),
            devices: 1_000,
            p9: s(10_000.0),
            p9_outage: Duration::from_secs((30.0 * scale).round().clamp(5.0, 30.0) as u64),
            // 10,000 (the size) overwhelms pouchdb-server in memory: at 10,000
            // databases it served 13 registrations/s, failed one request in five and
            // grew to 2.8 GB (BENCHMARKS.md, P10). `--p10-dbs 10000` runs it anyway.
            p10_dbs: s(2_000.0),
        }
    }
}

/// Which scenario groups run.
#[derive(Debug, Clone, Copy)]
pub struct Select {
    /// P1 (+ broker ceiling).
    pub p1: bool,
    /// P2 and P3.
    pub p23: bool,
    /// P4, P5, P6.
    pub p456: bool,
    /// P8.
    pub p8: bool,
    /// P9.
    pub p9: bool,
    /// P10.
    pub p10: bool,
}

/// Everything a run needs.
#[derive(Debug)]
pub struct Bench {
    vhost: Vhost,
    broker: Broker,
    couch: Couch,
    pusherd: PusherdConfig,
    node: String,
    app: String,
    mock: MockApns,
    pki: TestPki,
    prefetch: u16,
    counts: Counts,
    /// Table rows.
    pub rows: Vec<Row>,
    /// Notes under the table.
    pub notes: Vec<String>,
    starts: Vec<Duration>,
    config_keys: Vec<String>,
    p1_ceiling: Option<f64>,
    p1_ours: Option<f64>,
    p4_ours: Option<f64>,
    p4_ceiling: Option<f64>,
}

/// What a [`Bench::push_run`] measured.
#[derive(Debug)]
struct PushRun {
    /// The mock's records of the run.
    got: Vec<ApnsReceived>,
    /// Messages the shared queue dropped.
    dropped: u32,
    /// First publish → last arrival at the mock.
    elapsed: Duration,
}

/// Closed-loop queue bound: ready messages never exceed this (the queue drops beyond 100).
const MAX_READY: u32 = 50;

fn device_id(i: u64) -> String {
    format!("benchdev{i:06}")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

impl Bench {
    /// Sets up the vhost, the account and its devices, the mock APNs and the config keys.
    pub async fn setup(
        amqp_base: &str,
        couch_url: &str,
        pusherd_bin: PathBuf,
        run_dir: PathBuf,
        prefetch: u16,
        counts: Counts,
    ) -> Result<Self> {
        std::fs::create_dir_all(&run_dir)?;
        let vhost = Vhost::create(amqp_base)?;
        let broker = Broker::connect(&vhost.uri()).await?;
        let couch = Couch::create(couch_url).await?;
        let pki = TestPki::load_or_generate(&run_dir.join("pki"))?;
        let mut mock_cfg = ApnsMockConfig::from_pki(&pki);
        mock_cfg.latency = Duration::from_millis(20);
        let mock = MockApns::start(mock_cfg).await?;

        let tag = rand_hex(8);
        let node = format!("pusher@bench-{tag}");
        let app = format!("org.bench{tag}.app");
        let rule = json!({"Bench": {"regex": "^BenchPhone",
            "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}}});
        let mut config_keys = vec![node.clone(), app.clone()];
        for k in 1..=3 {
            config_keys.push(format!("{node}-{k}"));
        }
        let apple = json!({"apple": {
            "certificate": pki.client(ClientVariant::Pkcs8).pem,
            "host": mock.base_url(),
        }});
        {
            let keys = config_keys.clone();
            let app = app.clone();
            couch
                .edit_config(|doc| {
                    for k in keys.iter().filter(|k| **k != app) {
                        doc[k.as_str()] = json!({"User-Agents": rule.clone()});
                    }
                    doc[app.as_str()] = apple.clone();
                })
                .await?;
        }
        let docs: Vec<Value> = (0..counts.devices)
            .map(|i| baseline::device_doc(&device_id(i)))
            .collect();
        couch.bulk_put(&docs).await?;

        let env = vec![
            ("PUSHER_AMQP_URI".to_string(), vhost.uri()),
            ("PUSHER_COUCH_URL".to_string(), couch_url.to_string()),
            ("PUSHER_ZONE".to_string(), format!("bench-zone-{tag}")),
            (
                "PUSHER_EXTRA_CA_FILE".to_string(),
                pki.path(pusher_sandbox::pki::files::CA)
                    .display()
                    .to_string(),
            ),
            ("PUSHER_PREFETCH".to_string(), prefetch.to_string()),
            (
                "RUST_LOG".to_string(),
                std::env::var("BENCH_PUSHERD_LOG").unwrap_or_else(|_| "info".into()),
            ),
        ];
        Ok(Self {
            vhost,
            broker,
            couch,
            pusherd: PusherdConfig {
                bin: pusherd_bin,
                env,
                log_dir: run_dir,
            },
            node,
            app,
            mock,
            pki,
            prefetch,
            counts,
            rows: Vec::new(),
            notes: Vec::new(),
            starts: Vec::new(),
            config_keys,
            p1_ceiling: None,
            p1_ours: None,
            p4_ours: None,
            p4_ceiling: None,
        })
    }

    /// Removes what setup created in CouchDB (the vhost goes when `self` drops).
    pub async fn cleanup(self) {
        self.couch.cleanup(&self.config_keys).await;
        let _ = self.broker.conn.close(200, "bench done".into()).await;
        drop(self.vhost);
    }

    async fn start(&mut self, node: &str, label: &str) -> Result<Pusherd> {
        let p = Pusherd::start(&self.pusherd, node, label).await?;
        self.starts.push(p.ready_after);
        p.wait_config().await?;
        Ok(p)
    }

    /// Starts the single-instance `pusherd` (our node) and waits until it consumes.
    async fn start_single(&mut self, label: &str) -> Result<Pusherd> {
        let node = self.node.clone();
        let pd = self.start(&node, label).await?;
        self.broker
            .wait_consumers(1, Duration::from_secs(10))
            .await?;
        Ok(pd)
    }

    /// The ids of every bench device.
    fn device_ids(&self) -> Vec<String> {
        (0..self.counts.devices).map(device_id).collect()
    }

    /// Warm-up pushes (APNs client, TLS handshakes, the allocator), then a clean record.
    async fn warm_pushes(&self, n: u64) -> Result<()> {
        self.mock.clear();
        let app = &self.app;
        load::closed_loop(&self.broker, n, MAX_READY, |i| {
            load::push_req(app, &load::push_token("warm", i))
        })
        .await?;
        self.wait_mock("warm", n, Duration::from_secs(30)).await;
        self.mock.clear();
        Ok(())
    }

    /// Closed-loop `push_req`s to the bench app with tokens `<run>…`, until the queue is
    /// drained and the mock has seen every one not dropped (or 60 s).
    async fn push_run(&self, run: &str, n: u64) -> Result<PushRun> {
        self.broker.reset_dropped().await?;
        let app = &self.app;
        let p = load::closed_loop(&self.broker, n, MAX_READY, |i| {
            load::push_req(app, &load::push_token(run, i))
        })
        .await?;
        load::wait_no_ready(&self.broker, Duration::from_secs(60)).await?;
        let dropped = self.broker.dropped().await?;
        let got = self
            .wait_mock(run, n - u64::from(dropped), Duration::from_secs(60))
            .await;
        let done = Instant::now();
        // Completion = the last arrival at the mock (the wait above may return late).
        let last_at = got.iter().map(|r| r.at).max().unwrap_or(p.started_wall);
        let elapsed = last_at
            .duration_since(p.started_wall)
            .unwrap_or_else(|_| done - p.started);
        Ok(PushRun {
            got,
            dropped,
            elapsed,
        })
    }

    fn reg(&self, ua: &str, dev: u64, token: &str) -> Msg {
        load::reg_success(ua, &self.couch.account_id, &device_id(dev), token)
    }

    /// Closed-loop run on whatever consumes the queue: (rate, dropped, publish stats).
    /// "Processed" = the queue has no ready message left after the last confirm.
    async fn closed_acks(
        &self,
        n: u64,
        make: impl FnMut(u64) -> Msg,
    ) -> Result<(f64, u32, Published)> {
        self.broker.reset_dropped().await?;
        let p = load::closed_loop(&self.broker, n, MAX_READY, make).await?;
        let done = load::wait_no_ready(&self.broker, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dropped = self.broker.dropped().await?;
        Ok((n as f64 / secs(done - p.started), dropped, p))
    }

    /// Broker ceiling: the bare consumer on the same queue, same prefetch, same messages.
    async fn ceiling(
        &self,
        n: u64,
        make: impl FnMut(u64) -> Msg,
    ) -> Result<(f64, u32, ConsumerReport, u64)> {
        let c = BaselineConsumer::start(&self.vhost.uri(), self.prefetch)?;
        self.broker
            .wait_consumers(1, Duration::from_secs(10))
            .await?;
        let cpu0 = crate::env::cpu_us(c.pid()).unwrap_or(0);
        let (r, dropped, _) = self.closed_acks(n, make).await?;
        let cpu = crate::env::cpu_us(c.pid()).unwrap_or(0) - cpu0;
        let report = tokio::task::block_in_place(|| c.finish())?;
        Ok((r, dropped, report, cpu))
    }

    /// Waits until the devices' revision generations sum to `want`; returns when seen.
    async fn wait_revs(&self, want: u64, within: Duration) -> Result<(Instant, u64)> {
        let deadline = Instant::now() + within;
        loop {
            let sum: u64 = self.couch.all_docs().await?.iter().map(rev_gen).sum();
            if sum >= want {
                return Ok((Instant::now(), sum));
            }
            if Instant::now() > deadline {
                return Ok((Instant::now(), sum));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn rev_sum(&self) -> Result<u64> {
        Ok(self.couch.all_docs().await?.iter().map(rev_gen).sum())
    }

    /// Waits until the mock has recorded at least `want` requests whose token starts with
    /// `run`; returns the records of that run.
    async fn wait_mock(&self, run: &str, want: u64, within: Duration) -> Vec<ApnsReceived> {
        let all = self.mock.wait_for(want as usize, within).await;
        all.into_iter()
            .filter(|r| r.token.starts_with(run))
            .collect()
    }

    /// P7 from every start of the run.
    pub fn p7(&mut self) {
        let mut ms_: Vec<u64> = self.starts.iter().map(|d| d.as_millis() as u64).collect();
        ms_.sort_unstable();
        if ms_.is_empty() {
            return;
        }
        let median = load::percentile(&ms_, 50.0);
        let max = *ms_.last().unwrap_or(&0);
        self.rows.push(Row {
            id: "P7".into(),
            scenario: "process start → consuming (`/ready` 200)".into(),
            ours: format!("median {median} ms, max {max} ms ({} starts)", ms_.len()),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "≤ 300 ms".into(),
            met: Some(max <= 300),
            dropped: "—".into(),
        });
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Sum of `pusher_messages_consumed_total` samples, if pusherd serves `/metrics`.
async fn metric_consumed(pd: &Pusherd) -> Option<f64> {
    let body = pd.metrics().await?;
    let vals: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("pusher_messages_consumed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum())
}

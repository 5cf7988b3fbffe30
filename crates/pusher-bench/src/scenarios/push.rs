//! P4–P6: pushes to the mock APNs (20 ms latency). P4 throughput vs the bare HTTP/2 loop
//! and the broker ceiling, P5 added latency at a paced 1,000 push/s, P6 memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use pusher_sandbox::pki::ClientVariant;

use super::{Bench, PushRun, ms, secs};
use crate::baseline::{self, BaselineConsumer};
use crate::load;
use crate::report::{Row, pct, rate, thousands};

impl Bench {
    /// P4 (push throughput, one app, 20 ms provider latency), P5 (added latency at 1,000
    /// push/s), P6 (memory idle / under P4).
    pub async fn p456(&mut self) -> Result<()> {
        let n = self.counts.p4;
        let app = self.app.clone();
        let pd = self.start_single("p4").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = pd.memory_kib().context("VmRSS of pusherd")?;
        self.warm_pushes(500).await?;

        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop, pid) = (peak.clone(), stop.clone(), pd.pid());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some((rss, _)) = crate::env::memory_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let cpu0 = crate::env::cpu_us(pd.pid()).unwrap_or(0);
        let PushRun {
            got,
            dropped,
            elapsed,
        } = self.push_run("p4x", n).await?;
        let cpu4 = crate::env::cpu_us(pd.pid()).unwrap_or(0) - cpu0;
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        let hwm = pd.memory_kib().map(|m| m.1).unwrap_or(0);
        let delivered = got.iter().filter(|r| r.status == 200).count() as u64;
        let ours = got.len() as f64 / secs(elapsed);
        self.p4_ours = Some(ours);

        // P5 on the same, warm instance: paced 1,000 push/s.
        let rate5 = 1_000;
        let n5 = self.counts.p5_secs * rate5;
        self.mock.clear();
        self.broker.reset_dropped().await?;
        let p5 = load::paced(&self.broker, n5, rate5, |i| {
            load::push_req(&app, &load::push_token("p5x", i))
        })
        .await?;
        let got5 = self.wait_mock("p5x", n5, Duration::from_secs(30)).await;
        let drop5 = self.broker.dropped().await?;
        let mut lat5: Vec<u64> = got5
            .iter()
            .filter_map(|r| {
                let i = load::push_index("p5x", &r.token)? as usize;
                let at = r.at.duration_since(UNIX_EPOCH).ok()?.as_micros() as u64;
                Some(at.saturating_sub(*p5.sent_us.get(i)?))
            })
            .collect();
        lat5.sort_unstable();
        pd.stop().await?;

        // Baselines: broker ceiling with the same push_req messages; publish → bare
        // consumer latency at the same pace; the bare HTTP/2 loop.
        let (ceiling, cdrop, _, cpu4c) = self
            .ceiling(n, |i| load::push_req(&app, &load::push_token("p4c", i)))
            .await?;
        self.p4_ceiling = Some(ceiling);
        let c = BaselineConsumer::start(&self.vhost.uri(), self.prefetch)?;
        self.broker
            .wait_consumers(1, Duration::from_secs(10))
            .await?;
        load::paced(&self.broker, n5, rate5, |i| {
            load::push_req(&app, &load::push_token("p5c", i))
        })
        .await?;
        load::wait_no_ready(&self.broker, Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let base5 = tokio::task::block_in_place(|| c.finish())?;
        let per_app = (usize::from(self.prefetch) * 3 / 4).max(1);
        self.mock.clear();
        let bench_cpu0 = crate::env::cpu_us(std::process::id()).unwrap_or(0);
        let (h2_elapsed, h2_bad) = baseline::h2_loop(
            &self.mock.base_url(),
            &self.pki.client(ClientVariant::Pkcs8).pem,
            &self.pki.ca_pem,
            &app,
            n,
            per_app,
        )
        .await?;
        let bench_cpu = crate::env::cpu_us(std::process::id()).unwrap_or(0) - bench_cpu0;
        self.mock.clear();
        let h2 = (n - h2_bad) as f64 / secs(h2_elapsed);
        // The bare pipeline: consume, read the push_req, one HTTP/2 request, ack; no
        // logic of ours. What any implementation could reach here.
        let pipe = BaselineConsumer::start_pipeline(
            &self.vhost.uri(),
            self.prefetch,
            &self.mock.base_url(),
            &self.pki.client(ClientVariant::Pkcs8).path,
            &self.pki.path(pusher_sandbox::pki::files::CA),
        )?;
        self.broker
            .wait_consumers(1, Duration::from_secs(10))
            .await?;
        let pipe_cpu0 = crate::env::cpu_us(pipe.pid()).unwrap_or(0);
        let piped = self.push_run("p4p", n).await?;
        let pipe_cpu = crate::env::cpu_us(pipe.pid()).unwrap_or(0) - pipe_cpu0;
        tokio::task::block_in_place(|| pipe.finish())?;
        self.mock.clear();
        let pipeline = piped.got.len() as f64 / secs(piped.elapsed);
        self.notes.push(format!(
            "P4 CPU per push: pusherd {:.1} µs; bare pipeline {:.1} µs; bare consumer {:.1} µs per push_req acked; bench process during the bare HTTP/2 loop (client + mock APNs) {:.1} µs.",
            cpu4 as f64 / n as f64,
            pipe_cpu as f64 / n as f64,
            cpu4c as f64 / n as f64,
            bench_cpu as f64 / n as f64
        ));
        self.notes.push(format!(
            "P4 bare pipeline (a child process: lapin consume at prefetch {}, core's typed push_req read and APNs request, reqwest HTTP/2 to the same mock, ack when answered; none of pusherd's logic): {} push/s, {} of {n} recorded; ours = {} of it.",
            self.prefetch,
            thousands(pipeline),
            piped.got.len(),
            pct(ours / pipeline)
        ));
        let lower = h2.min(ceiling);
        // Issue #13: ≥ 5,000/s and ≥ 90 % (CPU per push ≤ 100 µs is in the notes below).
        let ok4 = ours >= 5_000.0 && ours / lower >= 0.9;
        self.rows.push(Row {
            id: "P4".into(),
            scenario: "`push_req` → mock APNs (20 ms), one app".into(),
            ours: rate(ours, "push"),
            baseline: format!(
                "{} (bare HTTP/2, {per_app} in flight); broker ceiling {}; bare pipeline {}",
                rate(h2, "push"),
                rate(ceiling, "msg"),
                rate(pipeline, "push")
            ),
            ratio: pct(ours / lower),
            target: "≥ 5,000/s and ≥ 90 % of the lower".into(),
            met: Some(ok4),
            dropped: format!(
                "{} / {cdrop}",
                u64::from(dropped) + (n - u64::from(dropped)).saturating_sub(got.len() as u64)
            ),
        });
        self.notes.push(format!(
            "P4: {n} pushes, {} answered 200 by the mock, {} recorded; broker ceiling measured with the same push_req bodies; pusherd per-app limit {per_app} (¾ of prefetch {}), bare HTTP/2 loop at the same {per_app} in flight ({h2_bad} non-200).",
            delivered,
            got.len(),
            self.prefetch
        ));

        let p50 = load::percentile(&lat5, 50.0);
        let p99 = load::percentile(&lat5, 99.0);
        let add50 = p50.saturating_sub(base5.p50_us);
        let add99 = p99.saturating_sub(base5.p99_us);
        self.rows.push(Row {
            id: "P5".into(),
            scenario: "added latency, AMQP delivery → provider request, 1,000 push/s".into(),
            ours: format!("publish→APNs p50 {} / p99 {}", ms(p50), ms(p99)),
            baseline: format!(
                "publish→bare consume p50 {} / p99 {}",
                ms(base5.p50_us),
                ms(base5.p99_us)
            ),
            ratio: format!("added p50 {} / p99 {}", ms(add50), ms(add99)),
            target: "p99 ≤ 5 ms".into(),
            met: Some(add99 <= 5_000),
            dropped: format!(
                "{} / {}",
                u64::from(drop5) + n5.saturating_sub(got5.len() as u64),
                n5.saturating_sub(base5.count)
            ),
        });
        self.notes.push(format!(
            "P5: {n5} pushes paced at {rate5}/s ({} s); latency = mock arrival − publish time for ours, delivery − publish time for the bare consumer (same clock); added = difference of the percentiles. Ours: p90 {}, p95 {}, p99.9 {}, max {}; {} of {n5} above 5 ms.",
            self.counts.p5_secs,
            ms(load::percentile(&lat5, 90.0)),
            ms(load::percentile(&lat5, 95.0)),
            ms(load::percentile(&lat5, 99.9)),
            ms(lat5.last().copied().unwrap_or(0)),
            lat5.iter().filter(|l| **l > 5_000).count()
        ));

        let mib = |kib: u64| kib as f64 / 1024.0;
        let peak = peak.load(Ordering::Relaxed).max(hwm.min(1 << 40));
        self.rows.push(Row {
            id: "P6".into(),
            scenario: "resident memory idle / during P4".into(),
            ours: format!("{:.1} MiB / {:.1} MiB", mib(idle.0), mib(peak)),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "≤ 25 MB / ≤ 64 MB".into(),
            met: Some(mib(idle.0) <= 25.0 && mib(peak) <= 64.0),
            dropped: "—".into(),
        });
        self.notes.push(format!(
            "P6: VmRSS of the pusherd process (/proc/<pid>/status) 300 ms after /ready; during P4 the maximum of VmRSS sampled every 20 ms and VmHWM ({:.1} MiB).",
            mib(hwm)
        ));
        Ok(())
    }
}

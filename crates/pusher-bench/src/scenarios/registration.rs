//! P1–P3: registrations. P1 a User-Agent no rule matches (vs the bare consumer), P2 a
//! matching one whose `push` object is unchanged, P3 one that changes it every time (vs
//! bare CouchDB GET and PUT loops).

use std::time::Duration;

use anyhow::{Result, bail};

use super::{Bench, MAX_READY, metric_consumed, secs};
use crate::baseline;
use crate::load;
use crate::report::{Row, pct, rate, thousands};

impl Bench {
    /// P1: reg_success whose User-Agent matches no rule, vs the broker ceiling.
    pub async fn p1(&mut self) -> Result<()> {
        let n = self.counts.p1;
        let pd = self.start_single("p1").await?;
        let make = |s: &Self, i: u64| s.reg(load::NO_RULE_UA, i % s.counts.devices, "norule");
        self.closed_acks(1_000, |i| make(self, i)).await?;
        let before = metric_consumed(&pd).await;
        let cpu0 = crate::env::cpu_us(pd.pid()).unwrap_or(0);
        let (ours, dropped, p) = self.closed_acks(n, |i| make(self, i)).await?;
        let cpu_ours = crate::env::cpu_us(pd.pid()).unwrap_or(0) - cpu0;
        let after = metric_consumed(&pd).await;
        pd.stop().await?;
        let (ceiling, cdrop, rep, cpu_base) = self.ceiling(n, |i| make(self, i)).await?;
        self.notes.push(format!(
            "P1 CPU per message: pusherd {:.1} µs, bare consumer {:.1} µs (user+system, /proc/<pid>/stat).",
            cpu_ours as f64 / n as f64,
            cpu_base as f64 / n as f64
        ));
        self.p1_ceiling = Some(ceiling);
        self.p1_ours = Some(ours);
        if let (Some(a), Some(b)) = (before, after) {
            self.notes.push(format!(
                "P1: pusherd /metrics counted {} consumed messages for {n} published.",
                thousands(b - a)
            ));
        }
        self.notes.push(format!(
            "P1: {n} messages; closed loop kept ≤ {} ready (max seen {}); bare consumer acked {} (incl. warm-up 0).",
            MAX_READY, p.max_ready_seen, rep.count
        ));
        self.rows.push(Row {
            id: "P1".into(),
            scenario: "`reg_success`, User-Agent matches no rule".into(),
            ours: rate(ours, "msg"),
            baseline: format!("{} (bare lapin consume+ack)", rate(ceiling, "msg")),
            ratio: pct(ours / ceiling),
            target: "≥ 90 % of broker ceiling".into(),
            met: Some(ours / ceiling >= 0.9),
            dropped: format!("{dropped} / {cdrop}"),
        });
        Ok(())
    }

    /// P2 (matching, `push` unchanged) and P3 (matching, `push` changed every time).
    pub async fn p23(&mut self) -> Result<()> {
        let d = self.counts.devices;
        let pd = self.start_single("p2").await?;
        // Warm-up: give every device its P2 push object (writes), and wait for them.
        let base = self.rev_sum().await?;
        let tok = |dev: u64| format!("p2tok{dev:06}");
        self.closed_acks(d, |i| self.reg(load::MATCHING_UA, i, &tok(i)))
            .await?;
        let (_, got) = self.wait_revs(base + d, Duration::from_secs(60)).await?;
        if got < base + d {
            bail!(
                "P2 warm-up: only {} of {d} devices were written",
                got - base
            );
        }
        // Timed: the same registrations again: nothing to write.
        let n = self.counts.p2;
        let before = self.rev_sum().await?;
        let (ours2, drop2, _) = self
            .closed_acks(n, |i| self.reg(load::MATCHING_UA, i % d, &tok(i % d)))
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let writes = self.rev_sum().await? - before;
        pd.stop().await?;
        let ceiling = self.p1_ceiling.unwrap_or(f64::NAN);
        let devices = self.device_ids();
        let (get_elapsed, get_errors) = baseline::couch_get_loop(
            &self.couch.http,
            &self.couch.db_url(),
            &devices,
            n,
            usize::from(self.prefetch),
        )
        .await?;
        let bare_get = (n - get_errors) as f64 / secs(get_elapsed);
        self.notes.push(format!(
            "P2: {n} unchanged registrations over {d} devices (after a warm-up writing each once); device writes during the run: {writes}. What bounds it: a bare CouchDB GET loop at concurrency {} does {} ({get_errors} errors), so one GET per message caps P2 there; ours = {} of that GET rate.",
            self.prefetch,
            rate(bare_get, "GET"),
            pct(ours2 / bare_get)
        ));
        self.rows.push(Row {
            id: "P2".into(),
            scenario: "matching, `push` unchanged".into(),
            ours: rate(ours2, "msg"),
            baseline: format!("{} (P1's broker ceiling)", rate(ceiling, "msg")),
            ratio: pct(ours2 / ceiling),
            target: "≥ 90 % of broker ceiling".into(),
            met: Some(ours2 / ceiling >= 0.9),
            dropped: drop2.to_string(),
        });

        // P3: every registration carries a new token: one device write each. Measured in
        // the steady state: a fresh pusherd first sees each device once with the token it
        // already has (nothing to write: this fills its device cache with each doc and
        // its `_rev`), so the timed writes need no GET.
        let n = self.counts.p3;
        let pd = self.start_single("p3").await?;
        self.closed_acks(d, |i| self.reg(load::MATCHING_UA, i, &tok(i)))
            .await?;
        // Acked is not ended: a parked registration is acked first, handled after.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let warm = loop {
            let text = pd.metrics().await.unwrap_or_default();
            if ended_registrations(&text) >= d {
                break text;
            }
            if std::time::Instant::now() > deadline {
                bail!("P3 warm-up: not every registration ended within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let warm_ended = ended_registrations(&warm);
        let reads = |text: &str| {
            metric_sum(text, "pusher_couch_requests_total{", "op=\"get_doc\"")
                + metric_sum(text, "pusher_couch_requests_total{", "op=\"get_docs\"")
        };
        let warm_gets = reads(&warm);
        let before = self.rev_sum().await?;
        self.broker.reset_dropped().await?;
        let p = load::closed_loop(&self.broker, n, MAX_READY, |i| {
            self.reg(load::MATCHING_UA, i % d, &format!("p3tok{i:08}"))
        })
        .await?;
        load::wait_no_ready(&self.broker, Duration::from_secs(60)).await?;
        let dropped = self.broker.dropped().await?;
        // Processed = registrations that ended, per pusherd's /metrics: since the
        // isolation rule, a parked registration is acked before it is written and a
        // newer one of the device supersedes it (never written), so device revisions
        // undercount them.
        let want = n - u64::from(dropped);
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let (done, processed, metrics) = loop {
            let text = pd.metrics().await.unwrap_or_default();
            let ended = ended_registrations(&text) - warm_ended;
            if ended >= want || std::time::Instant::now() > deadline {
                break (std::time::Instant::now(), ended, text);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let writes = self.rev_sum().await? - before;
        let conflicts = metric_sum(
            &metrics,
            "pusher_couch_requests_total{",
            "answer=\"conflict\"",
        );
        let ours3 = processed as f64 / secs(done - p.started);
        let couch = |op: &str| {
            metric_sum(
                &metrics,
                "pusher_couch_requests_total{",
                &format!("op=\"{op}\""),
            )
        };
        let superseded = metric_sum(
            &metrics,
            "pusher_parked_registrations_total{",
            "outcome=\"superseded\"",
        );
        self.notes.push(format!(
            "P3 CouchDB requests (pusherd /metrics) after a warm-up of {d} unchanged registrations ({warm_gets} reads): reads (get_doc + get_docs) {}, put_doc {}, bulk_docs {}; {conflicts} answered 409; {writes} device writes, {superseded} parked registrations superseded; ({:.2} device+index requests per changed registration).",
            reads(&metrics) - warm_gets,
            couch("put_doc"),
            couch("bulk_docs"),
            (reads(&metrics) - warm_gets + couch("put_doc") + couch("bulk_docs")) as f64 / n as f64
        ));
        pd.stop().await?;
        let devices = self.device_ids();
        // Equal concurrency: pusherd writes registrations in at most half of its
        // prefetch window (the isolation rule keeps the other half for pushes).
        let writers = usize::from(self.prefetch / 2).max(1);
        let (elapsed, errors) = baseline::couch_put_loop(
            &self.couch.http,
            &self.couch.db_url(),
            &devices,
            n,
            writers,
            None,
        )
        .await?;
        let bare = (n - errors) as f64 / secs(elapsed);
        self.notes.push(format!(
            "P3: {n} registrations, each a new token, over {d} devices; registrations ended (written, unchanged or superseded): {processed}; bare PUT loop: {n} PUTs at concurrency {writers}, pusherd's registration slots ({errors} errors).",
        ));
        self.rows.push(Row {
            id: "P3".into(),
            scenario: "matching, `push` changed each time".into(),
            ours: rate(ours3, "msg"),
            baseline: format!("{} (bare CouchDB PUT loop)", rate(bare, "PUT")),
            ratio: pct(ours3 / bare),
            target: "≥ 80 % of bare PUT rate".into(),
            met: Some(ours3 / bare >= 0.8),
            dropped: (n - processed.min(n)).to_string(),
        });
        Ok(())
    }
}

/// Registrations that ended, from a `/metrics` body: every `pusher_reg_success_total`
/// outcome but `parked`, plus every `pusher_parked_registrations_total` outcome.
pub(super) fn ended_registrations(metrics: &str) -> u64 {
    let direct = metric_sum(metrics, "pusher_reg_success_total{", "")
        - metric_sum(metrics, "pusher_reg_success_total{", "outcome=\"parked\"");
    direct + metric_sum(metrics, "pusher_parked_registrations_total{", "")
}

/// Sum of the samples whose line starts with `prefix` and contains `label`.
pub(super) fn metric_sum(metrics: &str, prefix: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

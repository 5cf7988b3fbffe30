//! P9: a registration storm on a cold cache with a CouchDB outage in the middle; and the
//! helpers P9 and P10 share (extra account databases, a `pusherd` on another CouchDB
//! URL).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use serde_json::Value;

use super::registration::{ended_registrations, metric_sum};
use super::{Bench, MAX_READY, device_id, secs};
use crate::baseline;
use crate::env::{CutProxy, Pusherd, rand_hex};
use crate::load;
use crate::report::Row;

/// Kamailio's push timer: a push that reaches the provider later than this after it
/// was published missed the call.
const PUSH_DEADLINE: Duration = Duration::from_secs(20);
/// One `push_req` every this long while the storm runs.
const PUSH_EVERY: Duration = Duration::from_millis(50);

impl Bench {
    /// A fresh account database with `devices` bench devices; returns (account id, db).
    pub(super) async fn extra_account(&self, devices: u64) -> Result<(String, String)> {
        let account_id = rand_hex(32);
        let db = pusher_core::account::account_db(&account_id)?;
        self.couch.client.create_db(&db).await?;
        let docs: Vec<Value> = (0..devices)
            .map(|i| baseline::device_doc(&device_id(i)))
            .collect();
        self.couch
            .bulk_put_in(&self.couch.url_of(&db), &docs)
            .await?;
        Ok((account_id, db))
    }

    /// Starts a single `pusherd` whose CouchDB URL is `couch_url`.
    pub(super) async fn start_with_couch(
        &mut self,
        couch_url: &str,
        label: &str,
    ) -> Result<Pusherd> {
        let mut cfg = self.pusherd.clone();
        for (k, v) in &mut cfg.env {
            if k == "PUSHER_COUCH_URL" {
                *v = couch_url.to_string();
            }
        }
        let pd = Pusherd::start(&cfg, &self.node, label).await?;
        self.starts.push(pd.ready_after);
        pd.wait_config().await?;
        self.broker
            .wait_consumers(1, Duration::from_secs(10))
            .await?;
        Ok(pd)
    }

    /// P9: `p9` devices re-register at once on a cold cache; when a quarter of them
    /// ended, CouchDB becomes unreachable for the outage, then comes back. `push_req`s
    /// run all along. Compared with the bare PUT loop's time for the same writes.
    pub async fn p9(&mut self) -> Result<()> {
        let n = self.counts.p9;
        let outage = self.counts.p9_outage;
        let (account_id, db) = self.extra_account(n).await?;
        let proxy = CutProxy::start(&self.couch.url).await?;
        let pd = self
            .start_with_couch(&proxy.url(&self.couch.url), "p9")
            .await?;
        self.mock.clear();
        self.broker.reset_dropped().await?;
        let storm_done = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        // The storm: as fast as the service takes it (the queue holds 100 at most).
        let storm = load::closed_loop(&self.broker, n, MAX_READY, |i| {
            load::reg_success(
                load::MATCHING_UA,
                &account_id,
                &device_id(i),
                &format!("p9tok{i:06}"),
            )
        });
        // Pushes all along, each stamped with its publish time.
        let pushes = async {
            let mut sent: HashMap<String, SystemTime> = HashMap::new();
            let mut i = 0u64;
            while !storm_done.load(Ordering::Relaxed) {
                let token = load::push_token("p9push", i);
                load::publish_confirmed(&self.broker, &load::push_req(&self.app, &token)).await?;
                sent.insert(token, SystemTime::now());
                i += 1;
                tokio::time::sleep(PUSH_EVERY).await;
            }
            anyhow::Ok(sent)
        };
        // The outage, once a quarter of the storm ended; then every registration ends.
        let watch = async {
            let mut cut: Option<Instant> = None;
            let mut restored: Option<Instant> = None;
            let deadline = Instant::now() + outage + Duration::from_secs(300);
            let ended = loop {
                let text = pd.metrics().await.unwrap_or_default();
                let ended = ended_registrations(&text);
                let now = Instant::now();
                match (cut, restored) {
                    (None, _) if ended >= n / 4 => {
                        proxy.set_cut(true);
                        cut = Some(now);
                    }
                    (Some(at), None) if now >= at + outage => {
                        proxy.set_cut(false);
                        restored = Some(now);
                    }
                    _ => {}
                }
                if (ended >= n && restored.is_some()) || now > deadline {
                    break ended;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            storm_done.store(true, Ordering::Relaxed);
            proxy.set_cut(false);
            anyhow::Ok((ended, Instant::now(), cut.is_some()))
        };
        let (published, sent, watched) = tokio::join!(storm, pushes, watch);
        published?;
        let sent = sent?;
        let (ended, landed_at, had_outage) = watched?;
        let landed = landed_at - started;
        // Every push should have reached the mock by now; give stragglers their deadline.
        let got = self
            .mock
            .wait_for(sent.len(), PUSH_DEADLINE + Duration::from_secs(5))
            .await;
        let arrived: HashMap<&str, SystemTime> =
            got.iter().map(|r| (r.token.as_str(), r.at)).collect();
        let mut worst = Duration::ZERO;
        let missed = sent
            .iter()
            .filter(|(token, at)| match arrived.get(token.as_str()) {
                Some(got) => {
                    let took = got.duration_since(**at).unwrap_or_default();
                    worst = worst.max(took);
                    took > PUSH_DEADLINE
                }
                None => true,
            })
            .count();
        let metrics = pd.metrics().await.unwrap_or_default();
        let errors = metric_sum(&metrics, "pusher_reg_success_total{", "outcome=\"error\"")
            + metric_sum(
                &metrics,
                "pusher_parked_registrations_total{",
                "outcome=\"error\"",
            );
        let dropped = self.broker.dropped().await?;
        pd.stop().await?;
        drop(proxy);
        // The same writes, bare: one PUT per device, at the service's concurrency;
        // once as they are, once through the same outage at the same point.
        let devices: Vec<String> = (0..n).map(device_id).collect();
        let db_url = self.couch.url_of(&db);
        let concurrency = usize::from(self.prefetch);
        let (bare, bare_errors) =
            baseline::couch_put_loop(&self.couch.http, &db_url, &devices, n, concurrency, None)
                .await?;
        let cut = CutProxy::start(&self.couch.url).await?;
        let through = self.couch.url_of_at(&cut.url(&self.couch.url), &db);
        let (bare_cut, bare_cut_errors) = baseline::couch_put_loop(
            &self.couch.http,
            &through,
            &devices,
            n,
            concurrency,
            Some(baseline::Outage {
                proxy: &cut,
                after: n / 4,
                lasts: outage,
            }),
        )
        .await?;
        drop(cut);
        let _ = self.couch.client.delete_db(&db).await;
        let without_outage = landed.saturating_sub(outage);
        self.notes.push(format!(
            "P9: {n} registrations of {n} devices on a fresh pusherd (cold cache); CouchDB cut {} for {:.0} s once {} had ended; {ended} ended in {:.1} s ({:.1} s without the outage), {errors} of them settled without update (retry budget); bare PUT loop {:.1} s at concurrency {} ({bare_errors} errors), {:.1} s through the same outage after {} PUTs ({bare_cut_errors} errors; failed PUTs tried again every 50 ms). {} push_req published meanwhile, {missed} past the {} s deadline or lost, slowest {:.2} s; {dropped} messages dropped by the queue.",
            if had_outage { "off" } else { "(never: the storm ended first)" },
            outage.as_secs_f64(),
            n / 4,
            secs(landed),
            secs(without_outage),
            secs(bare),
            self.prefetch,
            secs(bare_cut),
            n / 4,
            sent.len(),
            PUSH_DEADLINE.as_secs(),
            worst.as_secs_f64(),
        ));
        let ratio = secs(landed) / secs(bare_cut);
        self.rows.push(Row {
            id: "P9".into(),
            scenario: format!(
                "registration storm ({n}, cold cache), CouchDB unreachable {:.0} s",
                outage.as_secs_f64()
            ),
            ours: format!(
                "{:.1} s to land all ({:.1} s without the outage); {missed} of {} push_req late",
                secs(landed),
                secs(without_outage),
                sent.len()
            ),
            baseline: format!(
                "{:.1} s (bare PUT loop, same writes, same outage); {:.1} s without it",
                secs(bare_cut),
                secs(bare)
            ),
            ratio: format!(
                "{:.2}× ({:.2}× without the outage)",
                ratio,
                secs(without_outage) / secs(bare)
            ),
            target: "≤ 2× bare PUT loop; 0 push_req late".into(),
            met: Some(ended >= n && ratio <= 2.0 && missed == 0),
            dropped: format!("{dropped} (queue), {} (not ended)", n - ended.min(n)),
        });
        Ok(())
    }
}

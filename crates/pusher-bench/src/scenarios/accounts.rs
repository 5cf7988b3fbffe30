//! P10: many account databases, in each feed mode of the device cache: its hit rate,
//! the CouchDB connections `pusherd` holds, its memory. Per-database feeds run against
//! pouchdb-server itself; `_db_updates` against a [`CouchFront`] of it (pouchdb-server
//! has no `_db_updates`; the front adds it, fed by the writes passing through).

use std::time::{Duration, Instant};

use anyhow::Result;
use pusher_sandbox::couch_front::CouchFront;

use super::registration::{ended_registrations, metric_sum};
use super::{Bench, MAX_READY, device_id, secs};
use crate::load;
use crate::report::{Row, pct, thousands};

/// Devices in each account database.
const PER_DB: u64 = 2;

impl Bench {
    /// P10: `p10_dbs` account databases, [`PER_DB`] devices each, once per feed mode.
    pub async fn p10(&mut self) -> Result<()> {
        let dbs = self.counts.p10_dbs;
        eprintln!("    creating {dbs} account databases");
        let accounts = self.many_accounts(dbs, PER_DB).await?;
        let url = self.couch.url.clone();
        let port = reqwest::Url::parse(&url)?
            .port_or_known_default()
            .unwrap_or(5984);
        let direct = self.p10_run(&accounts, &url, port, "p10-per-db").await;
        let front = CouchFront::start(&url).await?;
        let fronted = self
            .p10_run(
                &accounts,
                &front.url(),
                front.addr().port(),
                "p10-db-updates",
            )
            .await;
        drop(front);
        self.drop_accounts(&accounts).await;
        direct.and(fronted)
    }

    /// One `pusherd` on `couch_url` (whose port is `port`); rounds of the same
    /// registrations (the first writes, the others refresh) until the hit rate stops
    /// rising: the cache's hit rate in the last round, the CouchDB connections it holds, its RSS.
    async fn p10_run(
        &mut self,
        accounts: &[(String, String)],
        couch_url: &str,
        port: u16,
        label: &str,
    ) -> Result<()> {
        let dbs = accounts.len() as u64;
        let pd = self.start_with_couch(couch_url, label).await?;
        let couch_port = port;
        let regs = dbs * PER_DB;
        let make = |i: u64| {
            let (account, _) = &accounts[(i / PER_DB) as usize];
            load::reg_success(
                load::MATCHING_UA,
                account,
                &device_id(i % PER_DB),
                &format!("p10tok{i:08}"),
            )
        };
        let mut peak = 0usize;
        let mut last = (0u64, 0u64, Duration::ZERO);
        // Rounds until the hit rate stops rising or is whole (the cache is filled as
        // databases join their feed), at least three, at most eight.
        let mut rounds = 0;
        for round in 0..8 {
            let text = pd.metrics().await.unwrap_or_default();
            let hits0 = metric_sum(&text, "pusher_device_cache_total{", "result=\"hit\"");
            let miss0 = metric_sum(&text, "pusher_device_cache_total{", "result=\"miss\"");
            let ended0 = ended_registrations(&text);
            let t0 = Instant::now();
            let sampler = async {
                let mut most = 0;
                loop {
                    most = most.max(couch_sockets(pd.pid(), couch_port));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let ended = ended_registrations(&pd.metrics().await.unwrap_or_default());
                    if ended >= ended0 + regs || t0.elapsed() > Duration::from_secs(600) {
                        return most;
                    }
                }
            };
            let (published, most) = tokio::join!(
                load::closed_loop(&self.broker, regs, MAX_READY, make),
                sampler
            );
            published?;
            peak = peak.max(most);
            let text = pd.metrics().await.unwrap_or_default();
            let hits = metric_sum(&text, "pusher_device_cache_total{", "result=\"hit\"") - hits0;
            let misses = metric_sum(&text, "pusher_device_cache_total{", "result=\"miss\"") - miss0;
            let rising = hits > last.0;
            last = (hits, misses, t0.elapsed());
            rounds = round + 1;
            eprintln!(
                "    {label} round {}: {hits} hits, {misses} misses",
                round + 1
            );
            if round >= 2 && (!rising || misses == 0) {
                break;
            }
        }
        // Connections the cache keeps once the load is over: past the client's 4 s idle
        // timeout, pooled connections of the registrations are gone.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let held = couch_sockets(pd.pid(), couch_port);
        let (rss, hwm) = pd.memory_kib().unwrap_or((0, 0));
        let text = pd.metrics().await.unwrap_or_default();
        let mode = ["db_updates", "per_db"]
            .into_iter()
            .find(|m| {
                text.lines().any(|l| {
                    l.starts_with(&format!("pusher_device_cache_feed{{mode=\"{m}\"}}"))
                        && l.ends_with(" 1")
                })
            })
            .unwrap_or("unknown");
        pd.stop().await?;
        let (hits, misses, took) = last;
        let hit_rate = hits as f64 / (hits + misses).max(1) as f64;
        self.notes.push(format!(
            "P10 ({mode} feed): {dbs} account databases × {PER_DB} devices; round {rounds} of the same {regs} registrations (the hit rate stopped rising, or every lookup hit): {hits} hits, {misses} misses in {:.1} s; CouchDB sockets of pusherd: peak {peak}, {held} held 6 s after the load (idle pooled connections close after 4 s); RSS {} MiB (peak {} MiB).",
            secs(took),
            rss / 1024,
            hwm / 1024
        ));
        self.rows.push(Row {
            id: "P10".into(),
            scenario: format!(
                "{} account databases, {PER_DB} devices each ({mode} feed)",
                thousands(dbs as f64)
            ),
            ours: format!(
                "hit rate {}; CouchDB connections peak {peak}, held {held}; RSS {} MiB",
                pct(hit_rate),
                rss / 1024
            ),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "connections bounded by a constant".into(),
            met: None,
            dropped: "—".into(),
        });
        Ok(())
    }

    /// `dbs` fresh account databases with `per_db` devices each (16 created at a time).
    async fn many_accounts(&self, dbs: u64, per_db: u64) -> Result<Vec<(String, String)>> {
        use futures_util::StreamExt;
        let made: Vec<Result<(String, String)>> = futures_util::stream::iter(0..dbs)
            .map(|_| self.extra_account(per_db))
            .buffer_unordered(16)
            .collect()
            .await;
        made.into_iter().collect()
    }

    async fn drop_accounts(&self, accounts: &[(String, String)]) {
        use futures_util::StreamExt;
        futures_util::stream::iter(accounts)
            .for_each_concurrent(16, |(_, db)| async move {
                let _ = self.couch.client.delete_db(db).await;
            })
            .await;
    }
}

/// Established TCP connections of process `pid` to port `port` (its socket inodes in
/// `/proc/<pid>/fd`, matched against `/proc/<pid>/net/tcp{,6}`).
fn couch_sockets(pid: u32, port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let want = format!("{port:04X}");
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 9
                        && f[3] == "01"
                        && f[2].rsplit(':').next() == Some(want.as_str())
                        && inodes.contains(f[9])
                })
                .count()
        })
        .sum()
}

//! P8: three `pusherd` instances on the shared queue, P1 and P4 again; per-instance
//! shares from the bytes RabbitMQ sent each connection.

use std::time::Duration;

use anyhow::Result;

use super::{Bench, PushRun, secs};
use crate::load;
use crate::report::{Row, pct, rate};

impl Bench {
    /// P8: three instances on the shared queue, P1 and P4.
    pub async fn p8(&mut self) -> Result<()> {
        let n = self.counts.p8;
        let mut pds = Vec::new();
        for k in 1..=3 {
            let node = format!("{}-{k}", self.node);
            pds.push(self.start(&node, &format!("p8-{k}")).await?);
        }
        self.broker
            .wait_consumers(3, Duration::from_secs(10))
            .await?;
        // Warm every instance (APNs client + TLS) first.
        self.warm_pushes(600).await?;

        let names: Vec<String> = pds.iter().map(|p| format!("pusher {}\"", p.node)).collect();
        let shares = |before: &[(String, u64)], after: &[(String, u64)]| -> Vec<f64> {
            let delta: Vec<u64> = names
                .iter()
                .map(|n| {
                    let get = |v: &[(String, u64)]| {
                        v.iter()
                            .find(|(k, _)| k.contains(n.as_str()))
                            .map(|(_, o)| *o)
                            .unwrap_or(0)
                    };
                    get(after).saturating_sub(get(before))
                })
                .collect();
            let total: u64 = delta.iter().sum::<u64>().max(1);
            delta.iter().map(|d| *d as f64 / total as f64).collect()
        };
        let fmt_shares = |s: &[f64]| {
            s.iter()
                .map(|v| format!("{:.0}", v * 100.0))
                .collect::<Vec<_>>()
                .join("/")
        };

        let o0 = tokio::task::block_in_place(|| self.vhost.send_octets())?;
        let (agg1, drop1, _) = self
            .closed_acks(n, |i| {
                self.reg(load::NO_RULE_UA, i % self.counts.devices, "norule")
            })
            .await?;
        let o1 = tokio::task::block_in_place(|| self.vhost.send_octets())?;
        let s1 = shares(&o0, &o1);

        let PushRun {
            got,
            dropped: drop4,
            elapsed,
        } = self.push_run("p8x", n).await?;
        let agg4 = got.len() as f64 / secs(elapsed);
        let o2 = tokio::task::block_in_place(|| self.vhost.send_octets())?;
        let s4 = shares(&o1, &o2);
        let conns = self.mock.connections_accepted();
        self.mock.clear();
        for pd in pds {
            pd.stop().await?;
        }
        let c1 = self.p1_ceiling.unwrap_or(f64::NAN);
        let single1 = self.p1_ours.unwrap_or(f64::NAN);
        self.rows.push(Row {
            id: "P8".into(),
            scenario: "3 instances, P1 (shares by broker bytes sent)".into(),
            ours: format!("{} (shares {} %)", rate(agg1, "msg"), fmt_shares(&s1)),
            baseline: format!(
                "{} (1 bare consumer); 1 pusherd {}",
                rate(c1, "msg"),
                rate(single1, "msg")
            ),
            ratio: pct(agg1 / c1),
            target: "reported".into(),
            met: None,
            dropped: drop1.to_string(),
        });
        let single4 = self.p4_ours.unwrap_or(f64::NAN);
        let c4 = self.p4_ceiling.unwrap_or(f64::NAN);
        self.rows.push(Row {
            id: "P8".into(),
            scenario: "3 instances, P4".into(),
            ours: format!("{} (shares {} %)", rate(agg4, "push"), fmt_shares(&s4)),
            baseline: format!(
                "broker ceiling {}; 1 pusherd {}",
                rate(c4, "msg"),
                rate(single4, "push")
            ),
            ratio: pct(agg4 / c4),
            target: "reported".into(),
            met: None,
            dropped: (u64::from(drop4) + (n - u64::from(drop4)).saturating_sub(got.len() as u64))
                .to_string(),
        });
        self.notes.push(format!(
            "P8: {n} messages per sub-run on 3 pusherd processes; per-instance share = bytes RabbitMQ sent to each instance's connection (rabbitmqctl list_connections send_oct); the mock accepted {conns} TLS connections in all."
        ));
        Ok(())
    }
}

//! Prometheus metrics: a small registry of counters, gauges and histograms, rendered in
//! the text exposition format (version 0.0.4) by `GET /metrics`.
//!
//! Hand-written rather than a metrics crate: the families are few and fixed, the hot
//! path is one atomic add (plus a read-locked map lookup for labelled series), and the
//! output is easy to test. Label values come from bounded sets (events, outcomes,
//! providers) except `app`, which is bounded by the apps configured in
//! `system_config/pusher` — unknown apps are not labelled by name (see [`Metrics::push_done`]).
//!
//! The parts: [`series`] holds the primitives (labelled counters and histograms behind
//! a read-mostly lock), `text` writes the exposition format, and this module names
//! every family of the service ([`Metrics`]) and renders them in a fixed order.

pub mod series;
mod text;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pusher_io::couch::RequestCounts;

use crate::register::device_cache::{FeedCell, FeedMode};

pub use series::{BUCKETS, CounterVec, Histogram, HistogramVec};
use text::{counters, family, histograms, sample, scalar};

/// Every metric of the service.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `pusher_messages_consumed_total{event}`.
    pub consumed: CounterVec,
    /// `pusher_messages_settled_total{disposition}`.
    pub settled: CounterVec,
    /// `pusher_messages_in_flight`.
    pub messages_in_flight: AtomicI64,
    /// `pusher_reg_success_total{outcome}`.
    pub reg_success: CounterVec,
    /// `pusher_parked_registrations_total{outcome}`: how each registration that was
    /// parked (acked before it was written) ended: its write's outcome, `superseded` by
    /// a newer registration of the device, or `lost_at_exit`.
    pub parked_registrations: CounterVec,
    /// `pusher_device_cache_total{result}`: `reg_success` answered from the device cache
    /// (`hit`) or from CouchDB (`miss`).
    pub device_cache: CounterVec,
    /// `pusher_pushes_total{provider,app,outcome}`.
    pub pushes: CounterVec,
    /// `pusher_pushes_in_flight`.
    pub pushes_in_flight: AtomicI64,
    /// `pusher_endpoint_pushes_total{outcome}`: the device results of Kazoo 5
    /// `endpoint_push_req`s (`sent`, `not_push_device`, `timeout`, …; `bad_request` for a
    /// request that could not be used at all).
    pub endpoint_pushes: CounterVec,
    /// `pusher_pushes_deferred_total{provider}`: pushes handed to the deferral queue
    /// because their app was at its in-flight limit (each deferral counts).
    pub push_deferred: CounterVec,
    /// `pusher_push_retries_total{provider}`.
    pub push_retries: CounterVec,
    /// `pusher_dead_tokens_removed_total{provider}`.
    pub dead_tokens_removed: CounterVec,
    /// `pusher_push_dispatch_seconds`: delivery → first provider request sent.
    pub dispatch: Histogram,
    /// `pusher_provider_request_seconds{provider}`: one provider round trip.
    pub provider_request: HistogramVec,
    /// `pusher_push_duration_seconds{provider}`: delivery → final verdict.
    pub push_duration: HistogramVec,
    /// `pusher_config_reloads_total`.
    pub config_reloads: AtomicU64,
    /// `pusher_couch_requests_total{op,answer}`: the counters of the service's CouchDB
    /// client, set once at start ([`Metrics::count_couch_requests`]).
    pub couch_requests: OnceLock<Arc<RequestCounts>>,
    /// `pusher_device_cache_feed{mode}`: which feed keeps the device cache right, set
    /// once at start ([`Metrics::show_device_cache_feed`]).
    pub device_cache_feed: OnceLock<Arc<FeedCell>>,
}

/// Values read at scrape time from elsewhere (state flags, the config snapshot).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Consuming the shared queue.
    pub amqp_connected: bool,
    /// Last CouchDB check succeeded.
    pub couch_reachable: bool,
    /// A config revision is loaded.
    pub config_loaded: bool,
    /// `(app, seconds until the APNs certificate expires)`.
    pub cert_expiry: Vec<(String, i64)>,
}

/// Label for an app id in `pusher_pushes_total`: the app when it is configured,
/// else `other` — so a flood of made-up `Token-App` values cannot grow the series.
pub fn app_label(app: &str, configured: bool) -> &str {
    if configured { app } else { "other" }
}

impl Metrics {
    /// Records a finished push.
    pub fn push_done(&self, provider: &str, app: &str, outcome: &str, took: Duration) {
        self.pushes.inc(&[provider, app, outcome]);
        if provider != "none" {
            self.push_duration.observe(&[provider], took);
        }
    }

    /// Exposes `counts` (the service's CouchDB client's) as
    /// `pusher_couch_requests_total`; only the first call counts.
    pub fn count_couch_requests(&self, counts: Arc<RequestCounts>) {
        let _ = self.couch_requests.set(counts);
    }

    /// Exposes the device cache's feed mode as `pusher_device_cache_feed`; only the
    /// first call counts.
    pub fn show_device_cache_feed(&self, cell: Arc<FeedCell>) {
        let _ = self.device_cache_feed.set(cell);
    }

    /// The text exposition of every family.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        family(
            &mut out,
            "pusher_build_info",
            "gauge",
            "Always 1; the version as a label.",
        );
        sample(&mut out, "pusher_build_info", &version, 1.0);
        let flags = [
            (
                "pusher_amqp_connected",
                "Consuming the shared queue (1) or not (0).",
                snap.amqp_connected,
            ),
            (
                "pusher_couch_reachable",
                "The last CouchDB check succeeded.",
                snap.couch_reachable,
            ),
            (
                "pusher_config_loaded",
                "A revision of system_config/pusher is loaded.",
                snap.config_loaded,
            ),
        ];
        for (name, help, on) in flags {
            family(&mut out, name, "gauge", help);
            sample(&mut out, name, &[], if on { 1.0 } else { 0.0 });
        }
        scalar(
            &mut out,
            "pusher_config_reloads_total",
            "counter",
            "Revisions of system_config/pusher loaded.",
            self.config_reloads.load(Ordering::Relaxed) as f64,
        );
        counters(
            &mut out,
            "pusher_messages_consumed_total",
            "Deliveries taken from the shared queue, by event.",
            &["event"],
            &self.consumed,
        );
        counters(
            &mut out,
            "pusher_messages_settled_total",
            "Deliveries settled, by disposition (ack or requeue).",
            &["disposition"],
            &self.settled,
        );
        scalar(
            &mut out,
            "pusher_messages_in_flight",
            "gauge",
            "Deliveries being handled now.",
            self.messages_in_flight.load(Ordering::Relaxed) as f64,
        );
        counters(
            &mut out,
            "pusher_reg_success_total",
            "reg_success messages, by outcome.",
            &["outcome"],
            &self.reg_success,
        );
        counters(
            &mut out,
            "pusher_parked_registrations_total",
            "Parked reg_success (acked, written later), by how they ended.",
            &["outcome"],
            &self.parked_registrations,
        );
        counters(
            &mut out,
            "pusher_device_cache_total",
            "reg_success with a matching rule answered from the device cache (hit) or CouchDB (miss).",
            &["result"],
            &self.device_cache,
        );
        family(
            &mut out,
            "pusher_device_cache_feed",
            "gauge",
            "The feed that keeps the device cache right: the server's _db_updates (1) or one _changes feed per cached database (1); both 0 until the server answered.",
        );
        if let Some(cell) = self.device_cache_feed.get() {
            let now = cell.get();
            for mode in FeedMode::ALL {
                let on = if now == Some(mode) { 1.0 } else { 0.0 };
                sample(
                    &mut out,
                    "pusher_device_cache_feed",
                    &[("mode", mode.as_str())],
                    on,
                );
            }
        }
        counters(
            &mut out,
            "pusher_pushes_total",
            "push_req messages, by provider, app and outcome.",
            &["provider", "app", "outcome"],
            &self.pushes,
        );
        scalar(
            &mut out,
            "pusher_pushes_in_flight",
            "gauge",
            "Pushes being sent now.",
            self.pushes_in_flight.load(Ordering::Relaxed) as f64,
        );
        counters(
            &mut out,
            "pusher_endpoint_pushes_total",
            "Kazoo 5 endpoint_push_req device results, by outcome.",
            &["outcome"],
            &self.endpoint_pushes,
        );
        counters(
            &mut out,
            "pusher_pushes_deferred_total",
            "Pushes deferred (app at its in-flight limit), each deferral counted.",
            &["provider"],
            &self.push_deferred,
        );
        counters(
            &mut out,
            "pusher_push_retries_total",
            "Provider attempts that were retried.",
            &["provider"],
            &self.push_retries,
        );
        counters(
            &mut out,
            "pusher_dead_tokens_removed_total",
            "push objects removed from devices after a dead-token verdict.",
            &["provider"],
            &self.dead_tokens_removed,
        );
        family(
            &mut out,
            "pusher_couch_requests_total",
            "counter",
            "CouchDB requests, by what they were for (get_doc, put_doc, bulk_docs, changes, db, attachment) and the answer (ok, not_found, conflict, error, unreachable).",
        );
        if let Some(counts) = self.couch_requests.get() {
            for (op, answer, n) in counts.snapshot() {
                sample(
                    &mut out,
                    "pusher_couch_requests_total",
                    &[("op", op.as_str()), ("answer", answer.as_str())],
                    n as f64,
                );
            }
        }
        family(
            &mut out,
            "pusher_push_dispatch_seconds",
            "histogram",
            "From AMQP delivery to the first provider request sent.",
        );
        self.dispatch
            .render(&mut out, "pusher_push_dispatch_seconds", &[]);
        histograms(
            &mut out,
            "pusher_provider_request_seconds",
            "Provider round trip, per attempt.",
            "provider",
            &self.provider_request,
        );
        histograms(
            &mut out,
            "pusher_push_duration_seconds",
            "From AMQP delivery to the final verdict of a push.",
            "provider",
            &self.push_duration,
        );
        family(
            &mut out,
            "pusher_apns_certificate_expiry_seconds",
            "gauge",
            "Seconds until the APNs certificate configured for an app expires (negative: expired).",
        );
        for (app, secs) in &snap.cert_expiry {
            sample(
                &mut out,
                "pusher_apns_certificate_expiry_seconds",
                &[("app", app)],
                *secs as f64,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_labels_and_help() {
        let m = Metrics::default();
        m.consumed.inc(&["push_req"]);
        m.consumed.add(&["push_req"], 2);
        m.consumed.inc(&["reg_success"]);
        assert_eq!(m.consumed.get(&["push_req"]), 3);
        let text = m.render(&Snapshot::default());
        assert!(text.contains("# TYPE pusher_messages_consumed_total counter\n"));
        assert!(text.contains("pusher_messages_consumed_total{event=\"push_req\"} 3\n"));
        assert!(text.contains("pusher_messages_consumed_total{event=\"reg_success\"} 1\n"));
        assert!(text.contains("pusher_amqp_connected 0\n"));
        assert!(text.contains(&format!(
            "pusher_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.dispatch.observe(Duration::from_micros(300));
        m.dispatch.observe(Duration::from_millis(3));
        m.dispatch.observe(Duration::from_secs(120));
        let text = m.render(&Snapshot::default());
        assert!(text.contains("pusher_push_dispatch_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("pusher_push_dispatch_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("pusher_push_dispatch_seconds_bucket{le=\"60\"} 2\n"));
        assert!(text.contains("pusher_push_dispatch_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("pusher_push_dispatch_seconds_count 3\n"));
        assert!(text.contains("pusher_push_dispatch_seconds_sum 120.0033\n"));
    }

    #[test]
    fn label_values_are_escaped_and_apps_bounded() {
        let m = Metrics::default();
        m.push_done("apns", app_label("a\"b", true), "delivered", Duration::ZERO);
        m.push_done(
            "none",
            app_label("made-up", false),
            "no_credentials",
            Duration::ZERO,
        );
        let text = m.render(&Snapshot {
            cert_expiry: vec![("org.x".into(), -5)],
            ..Default::default()
        });
        assert!(text.contains(
            "pusher_pushes_total{provider=\"apns\",app=\"a\\\"b\",outcome=\"delivered\"} 1\n"
        ));
        assert!(text.contains("app=\"other\",outcome=\"no_credentials\"} 1\n"));
        assert!(text.contains("pusher_apns_certificate_expiry_seconds{app=\"org.x\"} -5\n"));
        assert!(text.contains("pusher_push_duration_seconds_count{provider=\"apns\"} 1\n"));
        assert!(
            !text.contains("provider=\"none\"}"),
            "no duration for pushes never sent"
        );
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let m = Metrics::default();
        m.provider_request
            .observe(&["fcm"], Duration::from_millis(20));
        for line in m.render(&Snapshot::default()).lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line
                        .rsplit_once(' ')
                        .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
    }
}

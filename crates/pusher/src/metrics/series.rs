//! Metric primitives: counters and histograms keyed by label values, created on first
//! use; the hot path is one atomic add after a read-locked map lookup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::text::sample;

/// Series of one family: key → (label values, series), ordered for stable output.
type SeriesMap<T> = BTreeMap<String, (Vec<String>, Arc<T>)>;

/// Upper bounds (seconds) of the latency histograms: from half a millisecond (time spent
/// inside the service) to a minute (the queue TTL).
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    60.0,
];

/// A family of counters keyed by label values.
#[derive(Debug, Default)]
pub struct CounterVec {
    series: RwLock<SeriesMap<AtomicU64>>,
}

impl CounterVec {
    /// Adds one to the series with these label values.
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    /// Adds `n` to the series with these label values.
    pub fn add(&self, labels: &[&str], n: u64) {
        series(&self.series, labels, AtomicU64::default).fetch_add(n, Ordering::Relaxed);
    }

    /// Current value (0 for a series never touched).
    pub fn get(&self, labels: &[&str]) -> u64 {
        read(&self.series)
            .get(&key(labels))
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    pub(super) fn snapshot(&self) -> Vec<(Vec<String>, f64)> {
        read(&self.series)
            .values()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed) as f64))
            .collect()
    }
}

/// A histogram with the fixed [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(super) fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = bound.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            sample(out, &format!("{name}_bucket"), &l, cumulative as f64);
        }
        let count = self.count() as f64;
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        sample(out, &format!("{name}_bucket"), &l, count);
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        sample(out, &format!("{name}_sum"), labels, sum);
        sample(out, &format!("{name}_count"), labels, count);
    }
}

/// A family of histograms keyed by one label value.
#[derive(Debug, Default)]
pub struct HistogramVec {
    series: RwLock<SeriesMap<Histogram>>,
}

impl HistogramVec {
    /// Every series: its label values and histogram, in label order.
    pub(super) fn snapshot(&self) -> Vec<(Vec<String>, Arc<Histogram>)> {
        read(&self.series)
            .values()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect()
    }

    /// Records one observation in the series with these label values.
    pub fn observe(&self, labels: &[&str], d: Duration) {
        series(&self.series, labels, Histogram::default).observe(d);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Map key of a label-value list (values cannot contain U+0001 in practice; if one
/// does, it only merges two series).
fn key(labels: &[&str]) -> String {
    labels.join("\u{1}")
}

/// The series for `labels`, created on first use (read lock on the hot path).
fn series<T>(map: &RwLock<SeriesMap<T>>, labels: &[&str], new: impl FnOnce() -> T) -> Arc<T> {
    let k = key(labels);
    if let Some((_, s)) = read(map).get(&k) {
        return s.clone();
    }
    let mut m = map
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    m.entry(k)
        .or_insert_with(|| {
            let values = labels.iter().map(|s| s.to_string()).collect();
            (values, Arc::new(new()))
        })
        .1
        .clone()
}

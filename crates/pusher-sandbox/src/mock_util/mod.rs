//! Pieces shared by the two mocks: a request recorder that tests can wait on, per-token
//! reply scripts, per-path request counters, small HTTP helpers, and ([`serve`]) the
//! listener both run on.

pub(crate) mod serve;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use tokio::sync::watch;

/// Lock a mutex, ignoring poisoning (a panicking test must not wedge the mock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Recorded requests plus a counter tests can await.
#[derive(Debug)]
pub(crate) struct Recorder<T> {
    items: Mutex<Vec<T>>,
    count: watch::Sender<usize>,
}

impl<T: Clone> Recorder<T> {
    pub(crate) fn new() -> Self {
        Recorder {
            items: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        }
    }

    pub(crate) fn push(&self, item: T) {
        let mut items = lock(&self.items);
        items.push(item);
        self.count.send_replace(items.len());
    }

    pub(crate) fn snapshot(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// How many recorded items match `pred`.
    pub(crate) fn count(&self, pred: impl Fn(&T) -> bool) -> usize {
        lock(&self.items).iter().filter(|i| pred(i)).count()
    }

    pub(crate) fn clear(&self) {
        let mut items = lock(&self.items);
        items.clear();
        self.count.send_replace(0);
    }

    /// Wait until at least `n` items are recorded or `timeout` passes; returns what is there.
    pub(crate) async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<T> {
        let mut rx = self.count.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        self.snapshot()
    }
}

/// Per-token reply scripts: consumed in order, the last one repeats.
#[derive(Debug)]
pub(crate) struct Scripts<R> {
    map: Mutex<HashMap<String, VecDeque<R>>>,
}

impl<R: Clone> Scripts<R> {
    pub(crate) fn new() -> Self {
        Scripts {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Set (or, with an empty list, remove) the script of `token`.
    pub(crate) fn set(&self, token: &str, replies: Vec<R>) {
        let mut map = lock(&self.map);
        if replies.is_empty() {
            map.remove(token);
        } else {
            map.insert(token.to_string(), replies.into());
        }
    }

    pub(crate) fn clear(&self) {
        lock(&self.map).clear();
    }

    /// The next scripted reply for `token`, if it has a script.
    pub(crate) fn next(&self, token: &str) -> Option<R> {
        let mut map = lock(&self.map);
        let queue = map.get_mut(token)?;
        if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        }
    }
}

/// Requests counted per path as they arrive (before their body is read or their reply
/// chosen), and how many are still unanswered — so a test can see a request that a
/// scripted delay or a hung endpoint keeps waiting.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    by_path: Mutex<HashMap<String, usize>>,
    unanswered: AtomicUsize,
}

impl Tally {
    /// Count a request to `path`; it stays unanswered until the guard drops (its reply
    /// was handed to hyper, or the client went away and hyper dropped the handler).
    pub(crate) fn arrive(&self, path: &str) -> Unanswered<'_> {
        *lock(&self.by_path).entry(path.to_string()).or_default() += 1;
        self.unanswered.fetch_add(1, Ordering::Relaxed);
        Unanswered(self)
    }

    /// Requests so far, per path.
    pub(crate) fn by_path(&self) -> HashMap<String, usize> {
        lock(&self.by_path).clone()
    }

    /// Requests received and not answered yet.
    pub(crate) fn unanswered(&self) -> usize {
        self.unanswered.load(Ordering::Relaxed)
    }
}

/// Marks one request of a [`Tally`] as unanswered while alive.
#[derive(Debug)]
pub(crate) struct Unanswered<'a>(&'a Tally);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.0.unanswered.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Milliseconds since the UNIX epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the UNIX epoch.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the UNIX epoch of a recorded time (for JSON output).
pub(crate) fn system_time_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A response with a body and optional content type.
pub(crate) fn response(
    status: u16,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ct) = content_type
        && let Ok(value) = ct.parse()
    {
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    resp
}

/// A JSON response.
pub(crate) fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    response(status, Some("application/json"), body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_consume_in_order_and_repeat_the_last() {
        let s = Scripts::new();
        s.set("t", vec![1, 2, 3]);
        let got: Vec<_> = (0..5).map(|_| s.next("t")).collect();
        assert_eq!(got, [Some(1), Some(2), Some(3), Some(3), Some(3)]);
        assert_eq!(s.next("other"), None);
        s.set("t", vec![]);
        assert_eq!(s.next("t"), None);
    }

    #[tokio::test]
    async fn recorder_wait_for_returns_on_count_or_timeout() {
        let r = std::sync::Arc::new(Recorder::new());
        let r2 = r.clone();
        tokio::spawn(async move {
            r2.push(1);
            r2.push(2);
        });
        assert_eq!(r.wait_for(2, Duration::from_secs(5)).await, [1, 2]);
        assert_eq!(r.wait_for(3, Duration::from_millis(10)).await.len(), 2);
        r.clear();
        assert!(r.snapshot().is_empty());
    }

    #[test]
    fn tally_counts_paths_and_unanswered_requests() {
        let t = Tally::default();
        let a = t.arrive("/a");
        let b = t.arrive("/a");
        let _c = t.arrive("/b");
        assert_eq!(t.unanswered(), 3);
        drop((a, b));
        assert_eq!(t.unanswered(), 1);
        assert_eq!(
            t.by_path(),
            HashMap::from([("/a".into(), 2), ("/b".into(), 1)])
        );
    }
}

//! Which feed keeps the device cache right (issue #13, P10), over real HTTP:
//!
//! - against pouchdb-server, which has no `_db_updates`, the cache settles on one
//!   `_changes` feed per database;
//! - against [`Front`], an HTTP front of the same pouchdb-server that adds the one
//!   thing it lacks — `GET /_db_updates`, fed by the writes that pass through it, the
//!   way CouchDB's global changes are fed by its databases' writes — the cache follows
//!   that one feed: an `updated` event evicts through a normal `_changes` read of the
//!   real database, `deleted` drops the database, and a break of the feed voids every
//!   earlier ticket. Every other request is passed to pouchdb-server unchanged, so the
//!   documents, revisions and sequences the cache sees are the real server's. Only
//!   writes through the front make events: every writer in these tests goes through it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use pusher::register::device_cache::{DeviceCache, FeedMode, RETRY_AFTER};
use pusher_io::couch::CouchClient;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cache::wait_for;
use crate::helpers::{couch_url, init_tracing, rand_hex};

/// What the front has seen and serves.
#[derive(Default)]
struct Log {
    /// `(database, event type)` of every write that passed, in order; seq = index + 1.
    events: Vec<(String, &'static str)>,
    /// Every request passed on to pouchdb-server: `(method, path?query)`.
    passed: Vec<(Method, String)>,
    /// `_db_updates` long-polls pending now, and the most at once.
    polls: usize,
    most_polls: usize,
    /// The next `_db_updates` long-polls answer 500 (a gap in the feed) while set.
    broken: bool,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    log: Mutex<Log>,
    /// Woken on every event and on a break.
    news: Notify,
}

/// An HTTP front of pouchdb-server that serves `_db_updates`.
struct Front {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    async fn start() -> Self {
        let shared = Arc::new(Shared {
            upstream: couch_url().trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            log: Mutex::default(),
            news: Notify::new(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("front bind");
        let addr = listener.local_addr().expect("front addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn log<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        f(&mut self.shared.log.lock().expect("log"))
    }

    /// Breaks the feed: pending and next `_db_updates` long-polls answer 500.
    fn set_broken(&self, broken: bool) {
        self.log(|l| l.broken = broken);
        self.shared.news.notify_waiters();
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Percent-decodes a path segment or query value.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts a pending long-poll for as long as it lives (also when the client leaves).
struct Polling<'a>(&'a Shared);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.log.lock().expect("log").polls -= 1;
    }
}

/// Our sequences are `N-front`, strings like CouchDB's.
fn seq(n: usize) -> String {
    format!("{n}-front")
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/_db_updates" {
        return db_updates(&s, uri.query().unwrap_or("")).await;
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    s.log
        .lock()
        .expect("log")
        .passed
        .push((method.clone(), target.clone()));
    let mut rb = s
        .http
        .request(method.clone(), format!("{}{target}", s.upstream))
        .body(body);
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        rb = rb.header(header::CONTENT_TYPE, ct.as_bytes());
    }
    let Ok(answer) = rb.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = answer.bytes().await.unwrap_or_default();
    // A successful write is an event of its database (the first path segment).
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let write = matches!(method, Method::PUT | Method::POST | Method::DELETE);
    if write && status.is_success() && !segments[0].starts_with('_') {
        let db = decode(segments[0]);
        let kind = match (&method, segments.len()) {
            (&Method::PUT, 1) => "created",
            (&Method::DELETE, 1) => "deleted",
            _ => "updated",
        };
        s.log.lock().expect("log").events.push((db, kind));
        s.news.notify_waiters();
    }
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// `GET /_db_updates`: `since` (`now` or a sequence), `feed=longpoll` with `timeout`.
async fn db_updates(s: &Shared, query: &str) -> Response {
    let longpoll = query_param(query, "feed") == Some("longpoll");
    let timeout = query_param(query, "timeout")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_millis);
    let since = match query_param(query, "since") {
        Some("now") => s.log.lock().expect("log").events.len(),
        Some(v) => decode(v)
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        None => 0,
    };
    // Answers a little before the client gives up, as a server honouring `timeout` does.
    let deadline = tokio::time::Instant::now() + timeout * 4 / 5;
    let mut counted = None;
    loop {
        let news = s.news.notified();
        {
            let mut log = s.log.lock().expect("log");
            if log.broken && longpoll {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            let events = &log.events;
            if !longpoll || events.len() > since || tokio::time::Instant::now() >= deadline {
                let results: Vec<Value> = events
                    .iter()
                    .enumerate()
                    .skip(since)
                    .map(|(i, (db, kind))| json!({"db_name": db, "type": kind, "seq": seq(i + 1)}))
                    .collect();
                let last = events.len().max(since);
                return axum::Json(json!({"results": results, "last_seq": seq(last)}))
                    .into_response();
            }
            if counted.is_none() {
                log.polls += 1;
                log.most_polls = log.most_polls.max(log.polls);
            }
        }
        if counted.is_none() {
            counted = Some(Polling(s));
        }
        let _ = tokio::time::timeout_at(deadline, news).await;
    }
}

async fn account_db(c: &CouchClient) -> String {
    let db = pusher_core::account::account_db(&rand_hex(32)).expect("account db");
    c.create_db(&db).await.expect("create account db");
    db
}

fn push(token: &str) -> Option<Value> {
    Some(json!({"Token-App": "org.feed", "Token-Type": "apple", "Token-ID": token}))
}

/// Writes `dev` in `db` with `token`; returns the new revision.
async fn put_device(c: &CouchClient, db: &str, token: &str) -> String {
    let existing = c.get_doc(db, "dev").await.expect("get device");
    let mut doc = existing.unwrap_or_else(|| json!({"_id": "dev", "pvt_type": "device"}));
    doc["push"] = push(token).expect("push");
    c.put_doc(db, &doc).await.expect("put device")
}

fn client(url: &str) -> CouchClient {
    init_tracing();
    CouchClient::new(url, Duration::from_secs(5)).expect("couch client")
}

/// A front, a client through it, two fresh account databases, and a cache on that
/// client (short long-polls) with its stop token.
async fn through_front() -> (
    Front,
    CouchClient,
    [String; 2],
    CancellationToken,
    DeviceCache,
) {
    let front = Front::start().await;
    let c = client(&front.url());
    c.ping().await.expect("pouchdb-server up through the front");
    let dbs = [account_db(&c).await, account_db(&c).await];
    let stop = CancellationToken::new();
    let cache = DeviceCache::with_longpoll(c.clone(), stop.clone(), Duration::from_millis(500));
    (front, c, dbs, stop, cache)
}

/// Looks `dev` up until its database is watched; returns the ticket.
async fn watched(cache: &DeviceCache, db: &str) -> pusher::register::device_cache::Ticket {
    wait_for("database watched", RETRY_AFTER * 4, || async {
        cache.lookup(db, "dev", &None).1
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pouchdb_server_has_no_db_updates_so_each_database_gets_its_own_feed() {
    let c = client(&couch_url());
    c.ping()
        .await
        .expect("pouchdb-server up (scripts/services.sh up)");
    let db = account_db(&c).await;
    let stop = CancellationToken::new();
    let cache = DeviceCache::with_longpoll(c.clone(), stop.clone(), Duration::from_millis(500));
    let mode = wait_for("feed mode decided", Duration::from_secs(15), || async {
        cache.feed_mode()
    })
    .await;
    assert_eq!(mode, FeedMode::PerDb);
    let t = watched(&cache, &db).await;
    cache.store(&db, "dev", push("a1"), None, t);
    assert!(cache.lookup(&db, "dev", &push("a1")).0);
    // The database's own feed evicts a change made elsewhere.
    put_device(&c, &db, "b2").await;
    wait_for("eviction", Duration::from_secs(15), || async {
        (!cache.lookup(&db, "dev", &push("a1")).0).then_some(())
    })
    .await;
    stop.cancel();
    let _ = c.delete_db(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_db_updates_one_feed_evicts_an_updated_database_and_drops_a_deleted_one() {
    let (front, c, [one, two], stop, cache) = through_front().await;
    let rev_one = put_device(&c, &one, "a1").await;
    put_device(&c, &two, "a2").await;
    let mode = wait_for("feed mode decided", Duration::from_secs(15), || async {
        cache.feed_mode()
    })
    .await;
    assert_eq!(mode, FeedMode::DbUpdates);

    // Both databases join the one feed; what a read saw is cached.
    let t1 = watched(&cache, &one).await;
    let t2 = watched(&cache, &two).await;
    cache.store(&one, "dev", push("a1"), Some(rev_one), t1);
    cache.store(&two, "dev", push("a2"), None, t2);
    assert!(cache.lookup(&one, "dev", &push("a1")).0);

    // Another writer changes `one`: the `updated` event makes the cache read `one`'s
    // changes and evict the device; `two` keeps its entry.
    put_device(&c, &one, "b1").await;
    wait_for("eviction on updated", Duration::from_secs(15), || async {
        (!cache.lookup(&one, "dev", &push("a1")).0).then_some(())
    })
    .await;
    assert!(cache.lookup(&two, "dev", &push("a2")).0);
    assert!(
        cache.is_watching(&one),
        "an update does not end the database"
    );
    // A read that began before the change is not stored.
    cache.store(&one, "dev", push("a1"), None, t1);
    assert!(!cache.lookup(&one, "dev", &push("a1")).0);

    // Deleting `two` drops it.
    assert!(c.delete_db(&two).await.expect("delete"));
    wait_for(
        "deleted database dropped",
        Duration::from_secs(15),
        || async { (!cache.is_watching(&two)).then_some(()) },
    )
    .await;
    assert!(!cache.lookup(&two, "dev", &push("a2")).0);

    // One long-poll held at most, and no database has a feed of its own: the cache's
    // `_changes` reads were normal requests.
    let (most, longpolls, changes) = front.log(|l| {
        let changes = l
            .passed
            .iter()
            .filter(|(_, p)| p.contains("/_changes"))
            .count();
        let longpolls = l
            .passed
            .iter()
            .filter(|(_, p)| p.contains("/_changes") && p.contains("feed=longpoll"))
            .count();
        (l.most_polls, longpolls, changes)
    });
    assert_eq!(most, 1, "one _db_updates long-poll at a time");
    assert_eq!(longpolls, 0, "no per-database long-poll");
    assert!(
        changes >= 1,
        "the update was read from the database's _changes"
    );
    stop.cancel();
    let _ = c.delete_db(&one).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_in_db_updates_voids_the_tickets_of_every_database() {
    let (front, c, [one, two], stop, cache) = through_front().await;
    let stale1 = watched(&cache, &one).await;
    let stale2 = watched(&cache, &two).await;
    assert_eq!(cache.feed_mode(), Some(FeedMode::DbUpdates));

    // The feed breaks: every database is dropped, not only one that changed.
    front.set_broken(true);
    wait_for(
        "every database dropped",
        Duration::from_secs(15),
        || async { (!cache.is_watching(&one) && !cache.is_watching(&two)).then_some(()) },
    )
    .await;
    // Changes during the gap are never reported to anyone.
    put_device(&c, &one, "during-gap").await;
    front.set_broken(false);
    let fresh1 = watched(&cache, &one).await;
    watched(&cache, &two).await;
    assert_eq!(cache.feed_mode(), Some(FeedMode::DbUpdates));
    // Reads from before the break store nothing; a read under the new run does.
    cache.store(&one, "dev", push("before"), None, stale1);
    cache.store(&two, "dev", push("before"), None, stale2);
    assert!(
        cache.is_empty(),
        "a ticket from before the gap was accepted"
    );
    cache.store(&one, "dev", push("during-gap"), None, fresh1);
    assert!(cache.lookup(&one, "dev", &push("during-gap")).0);
    stop.cancel();
    let _ = c.delete_db(&one).await;
    let _ = c.delete_db(&two).await;
}

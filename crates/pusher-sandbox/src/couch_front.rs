//! An HTTP front of a CouchDB-API server (pouchdb-server) that adds the one thing
//! pouchdb-server lacks: `GET /_db_updates`, the server-wide feed of which databases
//! changed (CouchDB 2/3). The feed is made from the writes that pass through the front,
//! the way CouchDB's global changes are made from its databases' writes: a successful
//! `PUT /db` is `created`, `DELETE /db` is `deleted`, any other successful write under a
//! database is `updated`. Every other request goes to the real server unchanged, so
//! documents, revisions and `_changes` sequences are the real server's. Writes made
//! around the front make no event: point every writer at [`CouchFront::url`].
//!
//! `_db_updates` answers `since=now` or a sequence (`N-front`), normally or with
//! `feed=longpoll` (held until an event or 4/5 of `timeout`, so the front answers before
//! a client that uses the same timeout gives up). [`CouchFront::set_broken`] makes the
//! long-polls answer 500: a gap in the feed. For tests (the device cache's `_db_updates`
//! mode) and the bench (P10 in both feed modes).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::mock_util::lock;
use crate::mock_util::serve::{self, Listening};

/// What passed through the front, for assertions.
#[derive(Debug, Clone, Default)]
pub struct FrontStats {
    /// `_db_updates` long-polls held at once, at most.
    pub most_polls: usize,
    /// Requests on a database's `_changes`.
    pub changes: usize,
    /// Of those, long-polls (`feed=longpoll`).
    pub changes_longpolls: usize,
    /// Events in the feed so far.
    pub events: usize,
}

#[derive(Debug, Default)]
struct Log {
    /// `(database, event type)` of every write that passed; seq = index + 1.
    events: Vec<(String, &'static str)>,
    polls: usize,
    stats: FrontStats,
    broken: bool,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    log: Mutex<Log>,
    /// Woken on every event and on a break.
    news: Notify,
}

/// The front; dropping it stops it.
#[derive(Debug)]
pub struct CouchFront {
    listening: Listening,
    shared: Arc<Shared>,
}

impl CouchFront {
    /// Listens on 127.0.0.1 (any port) in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Result<Self> {
        pusher_io::ensure_crypto_provider();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(4))
                .build()?,
            log: Mutex::default(),
            news: Notify::new(),
        });
        let bound = serve::bind("CouchDB front", 0).await?;
        let state = shared.clone();
        let listening = bound.serve(move |stream| {
            let state = state.clone();
            async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
        Ok(Self { listening, shared })
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// Address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// Breaks the feed (`true`: pending and next long-polls answer 500) or mends it.
    pub fn set_broken(&self, broken: bool) {
        lock(&self.shared.log).broken = broken;
        self.shared.news.notify_waiters();
    }

    /// What passed so far.
    pub fn stats(&self) -> FrontStats {
        let log = lock(&self.shared.log);
        FrontStats {
            events: log.events.len(),
            ..log.stats.clone()
        }
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn handle(s: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    if path == "/_db_updates" {
        return db_updates(s, &query).await;
    }
    if path.contains("/_changes") {
        let mut log = lock(&s.log);
        log.stats.changes += 1;
        if query_param(&query, "feed") == Some("longpoll") {
            log.stats.changes_longpolls += 1;
        }
    }
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, Bytes::new());
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
        return reply(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
    };
    let mut rb = s
        .http
        .request(method, format!("{}{target}", s.upstream))
        .body(body);
    for name in ["content-type", "authorization", "accept"] {
        if let Some(v) = parts.headers.get(name) {
            rb = rb.header(name, v.as_bytes());
        }
    }
    let Ok(answer) = rb.send().await else {
        return reply(StatusCode::BAD_GATEWAY, Bytes::new());
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = answer.bytes().await.unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let write = matches!(parts.method, Method::PUT | Method::POST | Method::DELETE);
    if write && status.is_success() && !segments[0].is_empty() && !segments[0].starts_with('_') {
        let kind = match (&parts.method, segments.len()) {
            (&Method::PUT, 1) => "created",
            (&Method::DELETE, 1) => "deleted",
            _ => "updated",
        };
        lock(&s.log).events.push((decode(segments[0]), kind));
        s.news.notify_waiters();
    }
    reply(status, bytes)
}

/// Counts a pending long-poll for as long as it lives (also when the client leaves).
struct Polling<'a>(&'a Shared);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        lock(&self.0.log).polls -= 1;
    }
}

/// Our sequences are `N-front`, strings like CouchDB's.
fn seq(n: usize) -> String {
    format!("{n}-front")
}

async fn db_updates(s: &Shared, query: &str) -> Response<Full<Bytes>> {
    let longpoll = query_param(query, "feed") == Some("longpoll");
    let timeout = query_param(query, "timeout")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_millis);
    let since = match query_param(query, "since") {
        Some("now") => lock(&s.log).events.len(),
        Some(v) => decode(v)
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        None => 0,
    };
    let deadline = tokio::time::Instant::now() + timeout * 4 / 5;
    let mut polling = None;
    loop {
        let news = s.news.notified();
        {
            let mut log = lock(&s.log);
            if log.broken && longpoll {
                return reply(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new());
            }
            let n = log.events.len();
            if !longpoll || n > since || tokio::time::Instant::now() >= deadline {
                let results: Vec<Value> = log
                    .events
                    .iter()
                    .enumerate()
                    .skip(since)
                    .map(|(i, (db, kind))| json!({"db_name": db, "type": kind, "seq": seq(i + 1)}))
                    .collect();
                let body = json!({"results": results, "last_seq": seq(n.max(since))});
                return reply(StatusCode::OK, Bytes::from(body.to_string()));
            }
            if polling.is_none() {
                log.polls += 1;
                log.stats.most_polls = log.stats.most_polls.max(log.polls);
            }
        }
        if polling.is_none() {
            polling = Some(Polling(s));
        }
        let _ = tokio::time::timeout_at(deadline, news).await;
    }
}

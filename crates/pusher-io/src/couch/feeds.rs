//! The change feeds: a database's `_changes` (long-poll, or one normal read since a
//! sequence) and the server-wide `_db_updates` (CouchDB 2/3 only: which databases
//! changed; pouchdb-server answers 400).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{Changes, CouchClient, Op, Result, encode_segment};

/// What happened to a database, as `_db_updates` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbEvent {
    /// Created (possibly again, after a deletion).
    Created,
    /// Documents changed.
    Updated,
    /// Deleted.
    Deleted,
    /// Any other type the server sends (`ddoc_updated`, …).
    Other,
}

/// One batch of the `_db_updates` feed.
#[derive(Debug, Clone, PartialEq)]
pub struct DbUpdates {
    /// `(database name, event)`, in feed order.
    pub events: Vec<(String, DbEvent)>,
    /// Sequence to pass as `since` next time.
    pub last_seq: Value,
}

/// A sequence as a query value (CouchDB 2/3 sequences are strings, pouchdb's numbers).
fn seq_query(since: &Value) -> String {
    let s = match since {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    encode_segment(&s)
}

/// The `(id, winning revision)` of each row of a `_changes` body.
fn change_rows(body: &Value) -> (Vec<String>, Vec<String>) {
    body.get("results")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let id = r.get("id").and_then(Value::as_str)?;
                    let rev = r
                        .pointer("/changes/0/rev")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Some((id.to_string(), rev.to_string()))
                })
                .unzip()
        })
        .unwrap_or_default()
}

impl CouchClient {
    /// One long-poll on `_changes` since `since`, bounded by `wait` on the client side
    /// (pouchdb-server ignores the server-side `timeout`). `Ok(None)` when the database
    /// does not exist; an empty batch when nothing changed within `wait`.
    pub async fn changes_longpoll(
        &self,
        db: &str,
        since: &Value,
        wait: Duration,
    ) -> Result<Option<Changes>> {
        let query = format!(
            "feed=longpoll&since={}&timeout={}",
            seq_query(since),
            wait.as_millis()
        );
        let rb = self
            .request(Method::GET, self.url(&[db, "_changes"], &query)?)
            .timeout(wait + Duration::from_secs(5));
        // The whole exchange is bounded, not only the headers: pouchdb-server sends them
        // at once and then holds the body past `timeout`.
        let answer = async {
            self.changes_answer(self.send(Op::Changes, rb).await?, since)
                .await
        };
        match tokio::time::timeout(wait, answer).await {
            Ok(r) => r,
            Err(_) => Ok(Some(Changes {
                ids: Vec::new(),
                revs: Vec::new(),
                last_seq: since.clone(),
            })),
        }
    }

    /// Every change of `db` since `since`, in one normal (not long-poll) read.
    /// `Ok(None)` when the database does not exist.
    pub async fn changes_since(&self, db: &str, since: &Value) -> Result<Option<Changes>> {
        let query = format!("since={}", seq_query(since));
        let rb = self.request(Method::GET, self.url(&[db, "_changes"], &query)?);
        let resp = self.send(Op::Changes, rb).await?;
        self.changes_answer(resp, since).await
    }

    async fn changes_answer(
        &self,
        resp: reqwest::Response,
        since: &Value,
    ) -> Result<Option<Changes>> {
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let body = self.body_json(resp, "GET _changes").await?;
                let (ids, revs) = change_rows(&body);
                let last_seq = body.get("last_seq").cloned().unwrap_or(since.clone());
                Ok(Some(Changes {
                    ids,
                    revs,
                    last_seq,
                }))
            }
            _ => Err(self.status_error(resp, "GET _changes").await),
        }
    }

    /// `GET /_db_updates` since `since` (a sequence, or `"now"`): a normal read when
    /// `wait` is `None` (it answers at once: the probe, and the feed's starting point),
    /// else a long-poll bounded by `wait` on the client side (an empty batch when
    /// nothing changed). Any status but 2xx is an error: a server without the feed
    /// (pouchdb-server: 400; CouchDB without admin rights: 401) fails here.
    pub async fn db_updates(&self, since: &Value, wait: Option<Duration>) -> Result<DbUpdates> {
        let mut query = format!("since={}", seq_query(since));
        if let Some(wait) = wait {
            query.push_str(&format!("&feed=longpoll&timeout={}", wait.as_millis()));
        }
        let mut rb = self.request(Method::GET, self.url(&["_db_updates"], &query)?);
        let body = match wait {
            Some(wait) => {
                rb = rb.timeout(wait + Duration::from_secs(5));
                // Headers and body both within `wait` (see `changes_longpoll`).
                match tokio::time::timeout(wait, self.db_updates_body(rb)).await {
                    Ok(body) => body?,
                    Err(_) => {
                        return Ok(DbUpdates {
                            events: Vec::new(),
                            last_seq: since.clone(),
                        });
                    }
                }
            }
            None => self.db_updates_body(rb).await?,
        };
        let Some(rows) = body.get("results").and_then(Value::as_array) else {
            return Err(super::Error::Decode {
                what: "GET _db_updates".into(),
                detail: "no results array".into(),
            });
        };
        let events = rows
            .iter()
            .filter_map(|r| {
                let db = r.get("db_name").and_then(Value::as_str)?;
                let event = match r.get("type").and_then(Value::as_str) {
                    Some("created") => DbEvent::Created,
                    Some("updated") => DbEvent::Updated,
                    Some("deleted") => DbEvent::Deleted,
                    _ => DbEvent::Other,
                };
                Some((db.to_string(), event))
            })
            .collect();
        let last_seq = body.get("last_seq").cloned().unwrap_or(since.clone());
        Ok(DbUpdates { events, last_seq })
    }

    /// Sends a `_db_updates` request; its body, when the answer is 2xx.
    async fn db_updates_body(&self, rb: reqwest::RequestBuilder) -> Result<Value> {
        let resp = self.send(Op::Changes, rb).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, "GET _db_updates").await);
        }
        self.body_json(resp, "GET _db_updates").await
    }
}

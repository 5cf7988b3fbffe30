//! Server and database calls: ping, create, delete, info, and the `_changes` long-poll.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{Changes, CouchClient, Op, Result, encode_segment};

impl CouchClient {
    /// `GET /` — succeeds when the server answers (health check on CouchDB and pouchdb).
    pub async fn ping(&self) -> Result<()> {
        let resp = self
            .send(Op::Db, self.request(Method::GET, self.base.clone()))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(resp, "GET /").await)
        }
    }

    /// Creates a database; `Ok(false)` when it already existed.
    pub async fn create_db(&self, db: &str) -> Result<bool> {
        let resp = self
            .send(Op::Db, self.request(Method::PUT, self.url(&[db], "")?))
            .await?;
        match resp.status() {
            StatusCode::PRECONDITION_FAILED => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self.status_error(resp, "PUT db").await),
        }
    }

    /// Deletes a database; `Ok(false)` when it did not exist.
    pub async fn delete_db(&self, db: &str) -> Result<bool> {
        let resp = self
            .send(Op::Db, self.request(Method::DELETE, self.url(&[db], "")?))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self.status_error(resp, "DELETE db").await),
        }
    }

    /// Database info (`GET /db`); `Ok(None)` when it does not exist.
    pub async fn db_info(&self, db: &str) -> Result<Option<Value>> {
        let resp = self
            .send(Op::Db, self.request(Method::GET, self.url(&[db], "")?))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => self.body_json(resp, "GET db").await.map(Some),
            _ => Err(self.status_error(resp, "GET db").await),
        }
    }

    /// One long-poll on `_changes` since `since`, bounded by `wait` on the client side
    /// (pouchdb-server ignores the server-side `timeout`). `Ok(None)` when the database
    /// does not exist; an empty batch when nothing changed within `wait`.
    pub async fn changes_longpoll(
        &self,
        db: &str,
        since: &Value,
        wait: Duration,
    ) -> Result<Option<Changes>> {
        let since_s = match since {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let query = format!(
            "feed=longpoll&since={}&timeout={}",
            encode_segment(&since_s),
            wait.as_millis()
        );
        let rb = self
            .request(Method::GET, self.url(&[db, "_changes"], &query)?)
            .timeout(wait + Duration::from_secs(5));
        let fut = self.send(Op::Changes, rb);
        let resp = match tokio::time::timeout(wait, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Ok(Some(Changes {
                    ids: Vec::new(),
                    revs: Vec::new(),
                    last_seq: since.clone(),
                }));
            }
        };
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let body = self.body_json(resp, "GET _changes").await?;
                let (ids, revs) = body
                    .get("results")
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
                    .unwrap_or_default();
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
}

//! The request plumbing every call shares: URL building (one encoded segment per name),
//! basic auth, sending with a short retry of failed sends, and reading bodies and errors.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;

use super::{Answer, CouchClient, Error, Op, Result, encode_segment};

impl CouchClient {
    /// The URL of `segments` (each one encoded) under the base URL. An empty, `.` or
    /// `..` segment is refused ([`Error::InvalidName`]): it would name another path.
    pub(super) fn url(&self, segments: &[&str], query: &str) -> Result<Url> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(Error::InvalidName((*bad).to_string()));
        }
        let path: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
        let mut s = format!("{}{}", self.base, path.join("/"));
        if !query.is_empty() {
            s.push('?');
            s.push_str(query);
        }
        // Every piece is percent-encoded, so this cannot fail for a valid base URL.
        Ok(Url::parse(&s).unwrap_or_else(|_| self.base.clone()))
    }

    pub(super) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.user {
            Some(u) => rb.basic_auth(u, self.password.as_deref()),
            None => rb,
        }
    }

    /// Sends a request. A request that failed in sending (no connection, or a pooled
    /// connection the server had just closed) is tried again, 50 ms, 250 ms and 1 s later.
    /// Repeating a write is safe here: every write carries the `_rev` it was based on,
    /// so one that did reach CouchDB makes the repeat a 409, which the update loops
    /// resolve by re-reading. Counted once, by its last answer, under `op`.
    pub(super) async fn send(&self, op: Op, rb: RequestBuilder) -> Result<reqwest::Response> {
        let mut delays = [50, 250, 1000].map(Duration::from_millis).into_iter();
        let mut rb = rb;
        loop {
            let retry = rb.try_clone();
            match rb.send().await {
                Ok(resp) => {
                    self.counts.add(op, Answer::of(resp.status()));
                    return Ok(resp);
                }
                Err(e) => {
                    let in_sending = (e.is_connect() || e.is_request()) && !e.is_timeout();
                    match (retry, delays.next()) {
                        (Some(next), Some(delay)) if in_sending => {
                            tracing::debug!(error.message = %e.without_url(), retry_in_ms = delay.as_millis() as u64,
                                "CouchDB request failed in sending; retrying");
                            tokio::time::sleep(delay).await;
                            rb = next;
                        }
                        _ => {
                            self.counts.add(op, Answer::Unreachable);
                            return Err(self.unreachable(e));
                        }
                    }
                }
            }
        }
    }

    /// [`Error::Unreachable`] for a failed exchange, without the request URL.
    pub(super) fn unreachable(&self, e: reqwest::Error) -> Error {
        Error::Unreachable {
            url: self.redacted_url(),
            source: e.without_url(),
        }
    }

    /// The new `rev` of a successful write (`""` if CouchDB gave none), else the error.
    pub(super) async fn written_rev(&self, resp: reqwest::Response, what: &str) -> Result<String> {
        if !resp.status().is_success() {
            return Err(self.status_error(resp, what).await);
        }
        let body = self.body_json(resp, what).await?;
        Ok(body
            .get("rev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    pub(super) async fn body_json(&self, resp: reqwest::Response, what: &str) -> Result<Value> {
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        })
    }

    pub(super) async fn status_error(&self, resp: reqwest::Response, what: &str) -> Error {
        let status = resp.status();
        if status == StatusCode::CONFLICT {
            return Error::Conflict;
        }
        let body = self.body_json(resp, what).await.unwrap_or(Value::Null);
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Error::Status {
            status,
            what: what.to_string(),
            error: field("error"),
            reason: field("reason"),
        }
    }
}

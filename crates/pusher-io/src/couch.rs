//! A thin CouchDB client on `reqwest` that behaves the same against Apache CouchDB 2/3
//! and pouchdb-server.
//!
//! It owns three things the rest of the service must not get wrong:
//! - **path encoding**: database names (`account/ab/cd/…`) and doc ids are percent-encoded
//!   here, once, with a set that covers `/`, `+`, space and `%` (CouchDB reads a bare `+`
//!   as a space);
//! - **credentials**: user/password in the configured URL are moved into a basic-auth
//!   header and never appear in errors or logs ([`CouchClient::redacted_url`]);
//! - **read-modify-write**: [`CouchClient::update_doc`] re-reads and re-applies on 409 so a
//!   concurrent writer's change is never overwritten.
//!
//! Documents are schemaless `serde_json::Value`s: Kazoo docs carry many fields we keep as-is.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;

/// Everything that is not unreserved in RFC 3986 is encoded, including `/` and `+`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Errors of the CouchDB adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured URL cannot be used.
    #[error("invalid CouchDB URL: {0}")]
    InvalidUrl(String),
    /// The server could not be reached or the connection broke (transient).
    #[error("CouchDB unreachable at {url}: {source}")]
    Unreachable {
        /// Redacted base URL.
        url: String,
        /// Cause, with the request URL stripped.
        #[source]
        source: reqwest::Error,
    },
    /// A write lost against a concurrent writer (HTTP 409).
    #[error("document update conflict")]
    Conflict,
    /// Any other unexpected HTTP status.
    #[error("CouchDB answered {status} for {what}: {error} ({reason})")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// What was asked (e.g. `GET doc`), without secrets.
        what: String,
        /// CouchDB `error` field.
        error: String,
        /// CouchDB `reason` field.
        reason: String,
    },
    /// The body was not the JSON we expected.
    #[error("CouchDB answered an unreadable body for {what}: {detail}")]
    Decode {
        /// What was asked.
        what: String,
        /// Parse error.
        detail: String,
    },
    /// `update_doc` gave up after repeated conflicts.
    #[error("document update still conflicting after {0} attempts")]
    TooManyConflicts(u32),
}

impl Error {
    /// Whether retrying later may succeed (server down, overloaded, or flapping).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::TooManyConflicts(_) => true,
            Error::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Error::InvalidUrl(_) | Error::Conflict | Error::Decode { .. } => false,
        }
    }
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Outcome of [`CouchClient::update_doc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The closure reported no change; nothing was written.
    Unchanged,
    /// The doc was written; the new revision.
    Updated {
        /// New `_rev`.
        rev: String,
        /// How many 409s were absorbed on the way.
        conflicts: u32,
    },
    /// The doc (or its database) does not exist.
    NotFound,
}

/// One batch of a `_changes` feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// Ids of the changed documents, in feed order.
    pub ids: Vec<String>,
    /// The winning revision of each, aligned with `ids` (empty when the feed gave none).
    pub revs: Vec<String>,
    /// Sequence to pass as `since` next time.
    pub last_seq: Value,
}

/// CouchDB client; cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct CouchClient {
    http: reqwest::Client,
    base: Url,
    user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for CouchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchClient")
            .field("url", &self.redacted_url())
            .finish_non_exhaustive()
    }
}

/// Percent-encodes one path segment (database name, doc id or attachment name).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// Removes the password from a URL for display: `http://admin:***@host:5984/`.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}

impl CouchClient {
    /// Builds a client for `url` (`http://[user:pass@]host:port[/prefix]`), with a
    /// per-request `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        crate::ensure_crypto_provider();
        let mut base =
            Url::parse(url).map_err(|e| Error::InvalidUrl(format!("{}: {e}", redact_url(url))))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::InvalidUrl(format!(
                "{}: scheme must be http or https",
                redact_url(url)
            )));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = (!base.username().is_empty()).then(|| decode(base.username()));
        let password = base.password().map(decode);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            // Below the 5 s keep-alive timeout of Node servers (pouchdb-server) and common
            // proxies, so an idle connection is not reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| Error::InvalidUrl(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            user,
            password,
        })
    }

    /// The base URL with credentials removed, safe for logs.
    pub fn redacted_url(&self) -> String {
        let mut u = self.base.clone();
        if self.user.is_some() {
            let _ = u.set_username("***");
        }
        u.to_string()
    }

    fn url(&self, segments: &[&str], query: &str) -> Url {
        let path: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
        let mut s = format!("{}{}", self.base, path.join("/"));
        if !query.is_empty() {
            s.push('?');
            s.push_str(query);
        }
        // Every piece is percent-encoded, so this cannot fail for a valid base URL.
        Url::parse(&s).unwrap_or_else(|_| self.base.clone())
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
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
    /// resolve by re-reading.
    async fn send(&self, rb: RequestBuilder) -> Result<reqwest::Response> {
        let mut delays = [50, 250, 1000].map(Duration::from_millis).into_iter();
        let mut rb = rb;
        loop {
            let retry = rb.try_clone();
            match rb.send().await {
                Ok(resp) => return Ok(resp),
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
                            return Err(Error::Unreachable {
                                url: self.redacted_url(),
                                source: e.without_url(),
                            });
                        }
                    }
                }
            }
        }
    }

    async fn body_json(&self, resp: reqwest::Response, what: &str) -> Result<Value> {
        let bytes = resp.bytes().await.map_err(|e| Error::Unreachable {
            url: self.redacted_url(),
            source: e.without_url(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        })
    }

    async fn status_error(&self, resp: reqwest::Response, what: &str) -> Error {
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

    /// `GET /` — succeeds when the server answers (health check on CouchDB and pouchdb).
    pub async fn ping(&self) -> Result<()> {
        let resp = self
            .send(self.request(Method::GET, self.base.clone()))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(resp, "GET /").await)
        }
    }

    /// Reads a document; `Ok(None)` when it or its database does not exist.
    pub async fn get_doc(&self, db: &str, id: &str) -> Result<Option<Value>> {
        let resp = self
            .send(self.request(Method::GET, self.url(&[db, id], "")))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => self.body_json(resp, "GET doc").await.map(Some),
            _ => Err(self.status_error(resp, "GET doc").await),
        }
    }

    /// Writes a document (its `_id` and, for an update, `_rev` must be set); returns
    /// the new revision, or [`Error::Conflict`].
    pub async fn put_doc(&self, db: &str, doc: &Value) -> Result<String> {
        let id = doc
            .get("_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Decode {
                what: "PUT doc".into(),
                detail: "document has no _id".into(),
            })?;
        let resp = self
            .send(self.request(Method::PUT, self.url(&[db, id], "")).json(doc))
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, "PUT doc").await);
        }
        let body = self.body_json(resp, "PUT doc").await?;
        Ok(body
            .get("rev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// Read-modify-write of one document. `apply` mutates the doc and returns whether it
    /// changed; on 409 the doc is re-read and `apply` runs again, up to `max_attempts`.
    pub async fn update_doc<F>(
        &self,
        db: &str,
        id: &str,
        max_attempts: u32,
        mut apply: F,
    ) -> Result<UpdateOutcome>
    where
        F: FnMut(&mut Value) -> bool,
    {
        let mut conflicts = 0;
        loop {
            let Some(mut doc) = self.get_doc(db, id).await? else {
                return Ok(UpdateOutcome::NotFound);
            };
            if !apply(&mut doc) {
                return Ok(UpdateOutcome::Unchanged);
            }
            match self.put_doc(db, &doc).await {
                Ok(rev) => return Ok(UpdateOutcome::Updated { rev, conflicts }),
                Err(Error::Conflict) => {
                    conflicts += 1;
                    if conflicts >= max_attempts {
                        return Err(Error::TooManyConflicts(conflicts));
                    }
                    tracing::debug!(db, doc_id = id, conflicts, "conflict, re-reading");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a database; `Ok(false)` when it already existed.
    pub async fn create_db(&self, db: &str) -> Result<bool> {
        let resp = self
            .send(self.request(Method::PUT, self.url(&[db], "")))
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
            .send(self.request(Method::DELETE, self.url(&[db], "")))
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
            .send(self.request(Method::GET, self.url(&[db], "")))
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
            .request(Method::GET, self.url(&[db, "_changes"], &query))
            .timeout(wait + Duration::from_secs(5));
        let fut = self.send(rb);
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

    /// Reads an attachment's bytes; `Ok(None)` when the doc or attachment is missing.
    pub async fn get_attachment(&self, db: &str, id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let resp = self
            .send(self.request(Method::GET, self.url(&[db, id, name], "")))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                resp.bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(|e| Error::Unreachable {
                        url: self.redacted_url(),
                        source: e.without_url(),
                    })
            }
            _ => Err(self.status_error(resp, "GET attachment").await),
        }
    }

    /// Writes an attachment on the doc at revision `rev` (None creates the doc);
    /// returns the new revision.
    pub async fn put_attachment(
        &self,
        db: &str,
        id: &str,
        rev: Option<&str>,
        name: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<String> {
        let query = rev
            .map(|r| format!("rev={}", encode_segment(r)))
            .unwrap_or_default();
        let resp = self
            .send(
                self.request(Method::PUT, self.url(&[db, id, name], &query))
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, "PUT attachment").await);
        }
        let body = self.body_json(resp, "PUT attachment").await?;
        Ok(body
            .get("rev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_account_db_and_plus() {
        assert_eq!(
            encode_segment("account/3c/1e/6a2f"),
            "account%2F3c%2F1e%2F6a2f"
        );
        assert_eq!(encode_segment("doc id+1%"), "doc%20id%2B1%25");
    }

    #[test]
    fn credentials_never_in_display() {
        let c = CouchClient::new(
            "http://admin:s3cr%40t@127.0.0.1:5984",
            Duration::from_secs(1),
        )
        .expect("client");
        let shown = format!("{c:?} {}", c.redacted_url());
        assert!(!shown.contains("s3cr"), "{shown}");
        assert_eq!(c.password.as_deref(), Some("s3cr@t"));
        assert_eq!(c.user.as_deref(), Some("admin"));
        assert!(!redact_url("http://a:pw@h/").contains("pw"));
    }

    #[test]
    fn url_building_keeps_prefix() {
        let c = CouchClient::new("http://127.0.0.1:5984/couch", Duration::from_secs(1))
            .expect("client");
        assert_eq!(
            c.url(&["account/ab/cd/ef", "dev+1"], "").as_str(),
            "http://127.0.0.1:5984/couch/account%2Fab%2Fcd%2Fef/dev%2B1"
        );
    }

    #[test]
    fn rejects_non_http() {
        assert!(CouchClient::new("ftp://x", Duration::from_secs(1)).is_err());
        assert!(CouchClient::new("not a url", Duration::from_secs(1)).is_err());
    }
}

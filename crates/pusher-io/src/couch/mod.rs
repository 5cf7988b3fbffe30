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
//!
//! Layout: this file holds the error, the result types and the client's construction;
//! `http` the request plumbing every call shares, `db` the server and database calls,
//! `feeds` the change feeds (`_changes`, `_db_updates`), `docs` the document and
//! attachment calls, `view` view and `_all_docs` reads, `counts` the request counters
//! ([`CouchClient::request_counts`]).

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{StatusCode, Url};
use serde_json::Value;

mod counts;
mod db;
mod docs;
mod feeds;
mod http;
mod view;

pub use counts::{Answer, Op, RequestCounts};
pub use docs::{BulkItem, Known, Written};
pub use feeds::{DbEvent, DbUpdates};

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
    /// A database name, document id or attachment name that is empty, `.` or `..`:
    /// percent-encoding keeps dots, so such a segment would climb the URL path (`..` as a
    /// doc id reads the database, as a database name the server root). Never sent.
    #[error("refusing CouchDB name {0:?}: empty, `.` and `..` name no database or document")]
    InvalidName(String),
    /// One failure of a request made for several callers (a read serving many), as each
    /// of them sees it.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// Whether retrying later may succeed (server down, overloaded, or flapping).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::TooManyConflicts(_) => true,
            Error::Shared(e) => e.is_transient(),
            Error::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Error::InvalidUrl(_)
            | Error::Conflict
            | Error::Decode { .. }
            | Error::InvalidName(_) => false,
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
    counts: Arc<RequestCounts>,
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
            counts: Arc::default(),
        })
    }

    /// The request counters of this client and its clones.
    pub fn request_counts(&self) -> Arc<RequestCounts> {
        self.counts.clone()
    }

    /// The base URL with credentials removed, safe for logs.
    pub fn redacted_url(&self) -> String {
        let mut u = self.base.clone();
        if self.user.is_some() {
            let _ = u.set_username("***");
        }
        u.to_string()
    }
}

#[cfg(test)]
mod tests;

//! Document and attachment calls, and the read-modify-write loop of
//! [`CouchClient::update_doc`].

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{CouchClient, Error, Result, UpdateOutcome, encode_segment};

impl CouchClient {
    /// Reads a document; `Ok(None)` when it or its database does not exist.
    pub async fn get_doc(&self, db: &str, id: &str) -> Result<Option<Value>> {
        let resp = self
            .send(self.request(Method::GET, self.url(&[db, id], "")?))
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
            .send(
                self.request(Method::PUT, self.url(&[db, id], "")?)
                    .json(doc),
            )
            .await?;
        self.written_rev(resp, "PUT doc").await
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

    /// Reads an attachment's bytes; `Ok(None)` when the doc or attachment is missing.
    pub async fn get_attachment(&self, db: &str, id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let resp = self
            .send(self.request(Method::GET, self.url(&[db, id, name], "")?))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => resp
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| self.unreachable(e)),
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
                self.request(Method::PUT, self.url(&[db, id, name], &query)?)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body),
            )
            .await?;
        self.written_rev(resp, "PUT attachment").await
    }
}

//! Document and attachment calls, `_bulk_docs`, and the read-modify-write loop of
//! [`CouchClient::update_doc`] (from a read, or from a copy the caller kept:
//! [`CouchClient::update_doc_from`]).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{CouchClient, Error, Op, Result, UpdateOutcome, encode_segment};

/// What [`CouchClient::update_doc_from`] did, and the document as it is now stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Unchanged, updated (new revision, 409s absorbed) or not found.
    pub outcome: UpdateOutcome,
    /// The document as stored now, its `_rev` set (the one read when unchanged, the new
    /// one when written); `None` when not found.
    pub doc: Option<Value>,
}

/// One document's result in a `_bulk_docs` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkItem {
    /// Written at this revision.
    Written {
        /// Doc id.
        id: String,
        /// New `_rev`.
        rev: String,
    },
    /// Refused: its `_rev` (or its absence) is not the current revision.
    Conflict {
        /// Doc id.
        id: String,
    },
    /// Refused for another reason.
    Failed {
        /// Doc id (empty if CouchDB named none).
        id: String,
        /// CouchDB `error` and `reason`.
        error: String,
    },
}

/// What the caller of [`CouchClient::update_doc_from`] knows of the document already.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// Nothing: the document is read first.
    Nothing,
    /// A copy the caller kept (with its `_id` and `_rev`); it may be stale, so when
    /// `apply` leaves it unchanged that proves nothing and the document is read.
    Kept(Value),
    /// The document as the caller just read it: when `apply` leaves it unchanged,
    /// nothing is written and nothing is read again.
    Read(Value),
}

impl CouchClient {
    /// Reads a document; `Ok(None)` when it or its database does not exist.
    pub async fn get_doc(&self, db: &str, id: &str) -> Result<Option<Value>> {
        let resp = self
            .send(
                Op::GetDoc,
                self.request(Method::GET, self.url(&[db, id], "")?),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => self.body_json(resp, "GET doc").await.map(Some),
            _ => Err(self.status_error(resp, "GET doc").await),
        }
    }

    /// Reads the documents `ids` of `db` in one request (`POST _all_docs` with `keys`
    /// and `include_docs=true`): one entry per id, in order, `None` for a document that
    /// does not exist or was deleted, and all `None` when the database does not exist.
    pub async fn get_docs(&self, db: &str, ids: &[String]) -> Result<Vec<Option<Value>>> {
        let resp = self
            .send(
                Op::GetDocs,
                self.request(
                    Method::POST,
                    self.url(&[db, "_all_docs"], "include_docs=true")?,
                )
                .json(&json!({ "keys": ids })),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Ok(vec![None; ids.len()]),
            s if s.is_success() => {}
            _ => return Err(self.status_error(resp, "POST _all_docs").await),
        }
        let mut body = self.body_json(resp, "POST _all_docs").await?;
        let Some(rows) = body.get_mut("rows").and_then(Value::as_array_mut) else {
            return Err(Error::Decode {
                what: "POST _all_docs".into(),
                detail: "answer has no rows".into(),
            });
        };
        // Rows come in the order of `keys`; each is matched by its key all the same.
        let mut docs: Vec<Option<Value>> = vec![None; ids.len()];
        for (i, row) in rows.iter_mut().enumerate() {
            let doc = row.get_mut("doc").map(Value::take).filter(Value::is_object);
            let Some(doc) = doc else { continue };
            let at = match row.get("key").and_then(Value::as_str) {
                Some(key) if ids.get(i).map(String::as_str) == Some(key) => Some(i),
                Some(key) => ids.iter().position(|id| id == key),
                None => None,
            };
            if let Some(at) = at {
                docs[at] = Some(doc);
            }
        }
        Ok(docs)
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
                Op::PutDoc,
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
        apply: F,
    ) -> Result<UpdateOutcome>
    where
        F: FnMut(&mut Value) -> bool,
    {
        Ok(self
            .update_doc_from(db, id, Known::Nothing, max_attempts, apply)
            .await?
            .outcome)
    }

    /// [`CouchClient::update_doc`] starting from what the caller `known`s instead of a
    /// read. From a [`Known::Kept`] copy that `apply` changes, the write is one request.
    /// If that copy is stale (another writer changed the doc since), CouchDB answers
    /// 409, and the doc is re-read and `apply` runs again on what is stored, so the
    /// other writer's change survives. A kept copy that `apply` leaves unchanged proves
    /// nothing about what is stored: the doc is read. Returns the doc as now stored, for
    /// the caller to keep.
    pub async fn update_doc_from<F>(
        &self,
        db: &str,
        id: &str,
        known: Known,
        max_attempts: u32,
        mut apply: F,
    ) -> Result<Written>
    where
        F: FnMut(&mut Value) -> bool,
    {
        let of_this = |d: &Value| d.get("_id").and_then(Value::as_str) == Some(id);
        let mut known = match known {
            Known::Kept(d) | Known::Read(d) if !of_this(&d) => Known::Nothing,
            k => k,
        };
        let mut conflicts = 0;
        loop {
            // A kept copy that `apply` changes is written as it is; anything else is
            // (or was just) read from CouchDB.
            let read = match std::mem::replace(&mut known, Known::Nothing) {
                Known::Kept(mut d) => {
                    if apply(&mut d) {
                        Ok(d)
                    } else {
                        Err(None)
                    }
                }
                Known::Read(d) => Err(Some(d)),
                Known::Nothing => Err(None),
            };
            let mut doc = match read {
                Ok(d) => d,
                Err(just_read) => {
                    let stored = match just_read {
                        Some(d) => Some(d),
                        None => self.get_doc(db, id).await?,
                    };
                    let Some(mut doc) = stored else {
                        return Ok(Written {
                            outcome: UpdateOutcome::NotFound,
                            doc: None,
                        });
                    };
                    if !apply(&mut doc) {
                        return Ok(Written {
                            outcome: UpdateOutcome::Unchanged,
                            doc: Some(doc),
                        });
                    }
                    doc
                }
            };
            match self.put_doc(db, &doc).await {
                Ok(rev) => {
                    doc["_rev"] = json!(rev);
                    return Ok(Written {
                        outcome: UpdateOutcome::Updated { rev, conflicts },
                        doc: Some(doc),
                    });
                }
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

    /// Writes `docs` in one `POST /db/_bulk_docs` (each with its `_id`, and its `_rev`
    /// for an update); one [`BulkItem`] per doc, in order. Each doc succeeds or fails
    /// on its own.
    pub async fn bulk_docs(&self, db: &str, docs: &[Value]) -> Result<Vec<BulkItem>> {
        let resp = self
            .send(
                Op::BulkDocs,
                self.request(Method::POST, self.url(&[db, "_bulk_docs"], "")?)
                    .json(&json!({ "docs": docs })),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, "POST _bulk_docs").await);
        }
        let body = self.body_json(resp, "POST _bulk_docs").await?;
        let Some(items) = body.as_array() else {
            return Err(Error::Decode {
                what: "POST _bulk_docs".into(),
                detail: "answer is not an array".into(),
            });
        };
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(items
            .iter()
            .map(|item| {
                let (id, error) = (s(item, "id"), s(item, "error"));
                match (error.as_str(), item.get("rev").and_then(Value::as_str)) {
                    ("", Some(rev)) => BulkItem::Written {
                        id,
                        rev: rev.to_string(),
                    },
                    ("conflict", _) => BulkItem::Conflict { id },
                    _ => BulkItem::Failed {
                        id,
                        error: format!("{error} ({})", s(item, "reason")),
                    },
                }
            })
            .collect())
    }

    /// Reads an attachment's bytes; `Ok(None)` when the doc or attachment is missing.
    pub async fn get_attachment(&self, db: &str, id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let resp = self
            .send(
                Op::Attachment,
                self.request(Method::GET, self.url(&[db, id, name], "")?),
            )
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
                Op::Attachment,
                self.request(Method::PUT, self.url(&[db, id, name], &query)?)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body),
            )
            .await?;
        self.written_rev(resp, "PUT attachment").await
    }
}

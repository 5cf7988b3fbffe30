//! Reading documents through views: a view's rows with their documents
//! ([`CouchClient::view_docs`]), and every document of a database
//! ([`CouchClient::all_docs`], the fallback when a view is missing).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{CouchClient, Op, Result, encode_segment};

impl CouchClient {
    /// The documents of the rows of `_design/<design>/_view/<view>` with `key`
    /// (`include_docs=true`); `Ok(None)` when the database, the design document or the
    /// view does not exist (404). Rows without a document are skipped.
    pub async fn view_docs(
        &self,
        db: &str,
        design: &str,
        view: &str,
        key: &Value,
    ) -> Result<Option<Vec<Value>>> {
        let query = format!("key={}&include_docs=true", encode_segment(&key.to_string()));
        let url = self.url(&[db, "_design", design, "_view", view], &query)?;
        self.rows_docs(url, "GET view").await
    }

    /// Every document of `db` (`_all_docs?include_docs=true`, design documents
    /// included); `Ok(None)` when the database does not exist.
    pub async fn all_docs(&self, db: &str) -> Result<Option<Vec<Value>>> {
        let url = self.url(&[db, "_all_docs"], "include_docs=true")?;
        self.rows_docs(url, "GET _all_docs").await
    }

    async fn rows_docs(&self, url: reqwest::Url, what: &str) -> Result<Option<Vec<Value>>> {
        let resp = self.send(Op::View, self.request(Method::GET, url)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let body = self.body_json(resp, what).await?;
                let docs = body
                    .get("rows")
                    .and_then(Value::as_array)
                    .map(|rows| {
                        rows.iter()
                            .filter_map(|r| r.get("doc").filter(|d| d.is_object()).cloned())
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Some(docs))
            }
            _ => Err(self.status_error(resp, what).await),
        }
    }
}

//! Server and database calls: ping, create, delete, info (the feeds are in `feeds`).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{CouchClient, Op, Result};

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
}

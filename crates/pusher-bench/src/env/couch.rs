//! The CouchDB side: a fresh account database, `system_config/pusher` edits, bulk
//! device writes and reads.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use pusher_io::couch::CouchClient;
use serde_json::{Value, json};

use super::rand_hex;

/// CouchDB side: an account database, our node's rule and our app's credentials.
#[derive(Debug)]
pub struct Couch {
    /// Client.
    pub client: CouchClient,
    /// Base URL.
    pub url: String,
    /// Raw HTTP client for bulk calls.
    pub http: reqwest::Client,
    /// Account id (32 hex).
    pub account_id: String,
    /// `account%2F..` database name.
    pub account_db: String,
}

impl Couch {
    /// Creates a fresh account database.
    pub async fn create(url: &str) -> Result<Self> {
        let client = CouchClient::new(url, Duration::from_secs(30))?;
        client
            .ping()
            .await
            .with_context(|| format!("CouchDB-API server not reachable at {url}"))?;
        client.create_db("system_config").await?;
        let account_id = rand_hex(32);
        let account_db = pusher_core::account::account_db(&account_id)?;
        client.create_db(&account_db).await?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            account_id,
            account_db,
        })
    }

    /// URL of a doc or database path in the account database.
    pub fn db_url(&self) -> String {
        format!(
            "{}/{}",
            self.url,
            pusher_io::couch::encode_segment(&self.account_db)
        )
    }

    /// Edits `system_config/pusher` (read-modify-write, 409-safe).
    pub async fn edit_config(&self, mut edit: impl FnMut(&mut Value)) -> Result<()> {
        for _ in 0..50 {
            let mut doc = self
                .client
                .get_doc("system_config", "pusher")
                .await?
                .unwrap_or_else(|| json!({"_id": "pusher", "pvt_type": "config"}));
            edit(&mut doc);
            match self.client.put_doc("system_config", &doc).await {
                Ok(_) => return Ok(()),
                Err(pusher_io::couch::Error::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("system_config/pusher kept conflicting")
    }

    /// Creates `n` device docs `dev-<i>` (optionally with a `push` object) in one bulk call;
    /// replaces nothing (fresh ids).
    pub async fn bulk_put(&self, docs: &[Value]) -> Result<()> {
        self.bulk_put_in(&self.db_url(), docs).await
    }

    /// [`Couch::bulk_put`] into the database at `db_url`.
    pub async fn bulk_put_in(&self, db_url: &str, docs: &[Value]) -> Result<()> {
        for chunk in docs.chunks(500) {
            let resp = self
                .http
                .post(format!("{db_url}/_bulk_docs"))
                .json(&json!({ "docs": chunk }))
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("_bulk_docs: {}", resp.status());
            }
        }
        Ok(())
    }

    /// URL of another database.
    pub fn url_of(&self, db: &str) -> String {
        self.url_of_at(&self.url, db)
    }

    /// The URL of database `db` on the server at `base` (this one, or a proxy of it).
    pub fn url_of_at(&self, base: &str, db: &str) -> String {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            pusher_io::couch::encode_segment(db)
        )
    }

    /// Every doc of the account database.
    pub async fn all_docs(&self) -> Result<Vec<Value>> {
        let v: Value = self
            .http
            .get(format!("{}/_all_docs?include_docs=true", self.db_url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v["rows"]
            .as_array()
            .map(|rows| rows.iter().map(|r| r["doc"].clone()).collect())
            .unwrap_or_default())
    }

    /// Removes the account database.
    pub async fn cleanup(&self, config_keys: &[String]) {
        let _ = self.client.delete_db(&self.account_db).await;
        let _ = self
            .edit_config(|doc| {
                if let Some(m) = doc.as_object_mut() {
                    for k in config_keys {
                        m.remove(k);
                    }
                }
            })
            .await;
    }
}

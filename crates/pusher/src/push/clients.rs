//! The provider clients, fed a resolved [`Credentials`]: one APNs client (one HTTP/2
//! connection) or FCM client (one OAuth token source) per distinct credential, built on
//! first use and rebuilt when the credential changes.
//!
//! Clients are keyed by the credential's fingerprint, not by `Token-App`: apps that
//! resolve to the same credentials (default- or zone-scoped ones) share one client, so
//! made-up `Token-App` values cannot grow the registry. The registry keeps at most
//! [`MAX_CLIENTS`] idle clients; beyond that, clients nobody is using are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::PushSettings;
use super::limit::Limit;
use pusher_core::app_config::{
    AppleAuth, AppleCredentials, Credentials, FirebaseCredentials, P8_ATTACHMENT,
};
use pusher_core::kapps_config::{PUSHER_CATEGORY, SYSTEM_CONFIG_DB};
use pusher_io::couch::CouchClient;
use pusher_io::{apns, fcm};

/// Registry size above which unused clients are dropped.
pub const MAX_CLIENTS: usize = 64;

/// A client ready to send, with the concurrency limit of its credential.
#[derive(Debug, Clone)]
pub enum Sender {
    /// APNs.
    Apns(Arc<apns::Client>),
    /// FCM HTTP v1.
    Fcm(Arc<fcm::Client>),
}

/// A client and the in-flight limit of the pushes that use it.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Where to send.
    pub sender: Sender,
    /// Bounds the concurrent pushes on this credential.
    pub limit: Arc<Limit>,
}

/// Clients of one provider by credential fingerprint, each with its in-flight limit.
type Registry<C> = HashMap<u64, (Arc<C>, Arc<Limit>)>;

/// Client registry.
#[derive(Debug)]
pub struct Clients {
    couch: CouchClient,
    settings: PushSettings,
    apns: Mutex<Registry<apns::Client>>,
    fcm: Mutex<Registry<fcm::Client>>,
    /// `.p8` bytes by attachment digest (one key per `system_config/pusher`).
    p8: tokio::sync::Mutex<Option<(String, Arc<Vec<u8>>)>>,
}

impl Clients {
    /// An empty registry; the `.p8` key is read from CouchDB when first needed.
    pub fn new(couch: CouchClient, settings: PushSettings) -> Self {
        Self {
            couch,
            settings,
            apns: Mutex::new(HashMap::new()),
            fcm: Mutex::new(HashMap::new()),
            p8: tokio::sync::Mutex::new(None),
        }
    }

    /// Number of clients held (for tests and metrics).
    pub async fn len(&self) -> usize {
        let apns = self.apns.lock().unwrap_or_else(|p| p.into_inner()).len();
        apns + self.fcm.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the registry holds no client.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// The client for `credentials` (building it if needed) and its in-flight limit.
    /// The error is the reason the push cannot be sent (`no_credentials`).
    pub async fn lease(&self, app: &str, credentials: &Credentials) -> Result<Lease, String> {
        match credentials {
            Credentials::Apple(c) => self.apns(app, c).await,
            Credentials::Firebase(c) => self.fcm(app, c),
        }
    }

    async fn apns(&self, app: &str, creds: &AppleCredentials) -> Result<Lease, String> {
        let key = creds.fingerprint();
        if let Some(lease) = self.cached_apns(key) {
            return Ok(lease);
        }
        let auth = match &creds.auth {
            AppleAuth::Certificate { pem } => apns::Auth::Certificate { pem: pem.clone() },
            AppleAuth::Token {
                team_id,
                key_id,
                refresh_window_min,
                p8_digest,
            } => {
                let p8 = self.p8(p8_digest).await?;
                let signer = apns::TokenSigner::new(team_id, key_id, &p8, *refresh_window_min)
                    .map_err(|e| e.to_string())?;
                apns::Auth::Token(Arc::new(signer))
            }
        };
        let client = apns::Client::new(apns::ClientConfig {
            base_url: creds.base_url.clone(),
            auth,
            extra_roots_pem: self.settings.extra_ca_pem.clone(),
            request_timeout: self.settings.request_timeout,
        })
        .map_err(|e| e.to_string())?;
        tracing::info!(app, host = %creds.base_url, auth_type = creds.auth.auth_type(),
            "APNs client created");
        let entry = (Arc::new(client), self.new_limit());
        let mut map = self.apns.lock().unwrap_or_else(|p| p.into_inner());
        // Another push may have built the same client meanwhile: keep the first.
        let (client, limit) = map.entry(key).or_insert(entry).clone();
        prune(&mut map);
        Ok(Lease {
            sender: Sender::Apns(client),
            limit,
        })
    }

    fn cached_apns(&self, key: u64) -> Option<Lease> {
        let map = self.apns.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key).map(|(c, l)| Lease {
            sender: Sender::Apns(c.clone()),
            limit: l.clone(),
        })
    }

    fn fcm(&self, app: &str, creds: &FirebaseCredentials) -> Result<Lease, String> {
        let key = creds.fingerprint();
        // Held while building (no I/O: the first send asks for a token): concurrent cold
        // pushes share one client and so one OAuth token source.
        let mut map = self.fcm.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((c, l)) = map.get(&key) {
            return Ok(Lease {
                sender: Sender::Fcm(c.clone()),
                limit: l.clone(),
            });
        }
        let client = fcm::Client::new(
            creds.service_account.expose(),
            fcm::ClientConfig {
                base_url: self.settings.fcm_base_url.clone(),
                extra_roots_pem: self.settings.extra_ca_pem.clone(),
                request_timeout: self.settings.request_timeout,
            },
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(app, project = client.project_id(), "FCM client created");
        let (client, limit) = (Arc::new(client), self.new_limit());
        map.insert(key, (client.clone(), limit.clone()));
        prune(&mut map);
        Ok(Lease {
            sender: Sender::Fcm(client),
            limit,
        })
    }

    fn new_limit(&self) -> Arc<Limit> {
        Arc::new(Limit::new(self.settings.per_app_in_flight))
    }

    /// The `.p8` attachment, cached by its digest (taken from the config snapshot, so
    /// only a changed key costs a request).
    async fn p8(&self, digest: &str) -> Result<Arc<Vec<u8>>, String> {
        let mut cache = self.p8.lock().await;
        if let Some((d, bytes)) = cache.as_ref()
            && d == digest
        {
            return Ok(bytes.clone());
        }
        let bytes = self
            .couch
            .get_attachment(SYSTEM_CONFIG_DB, PUSHER_CATEGORY, P8_ATTACHMENT)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("private_key.p8 attachment disappeared")?;
        let bytes = Arc::new(bytes);
        *cache = Some((digest.to_string(), bytes.clone()));
        Ok(bytes)
    }
}

/// Above [`MAX_CLIENTS`], drops the clients no push holds (their `Arc`s are ours alone).
fn prune<C>(map: &mut Registry<C>) {
    if map.len() > MAX_CLIENTS {
        map.retain(|_, (c, l)| Arc::strong_count(c) > 1 || Arc::strong_count(l) > 1);
    }
}

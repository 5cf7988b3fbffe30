//! The opt-in legacy `push_resp` for Kamailio's 2015 `kazoo_query` (spec §3.6, §5.5;
//! README "Legacy push_resp (kazoo_query)").
//!
//! With `legacy_push_resp` on, a `push_req` carrying a `Server-ID` is remembered by
//! `Token-ID` for `legacy_push_resp_wait_ms` (20 s) in a bounded table
//! ([`pusher_core::legacy_resp::PendingTable`]). The woken device's `reg_success` may
//! reach any instance, so the instance that sees it announces "this token registered" to
//! every instance through a fanout exchange of ours; each instance looks the token up in
//! its own table, and only the one holding the request answers `push_resp` on `targeted`
//! to the `Server-ID`, forgetting the request as it does (so it answers once).
//!
//! [`LegacyPushResp::remember`] (dispatch, before the push is sent) and
//! [`LegacyPushResp::registered`] (the registrar, once the token is known) never block:
//! announcements go through a bounded channel to [`LegacyPushResp::run`], which each
//! AMQP session runs on a channel of its own ([`pusher_io::amqp::LegacyLink`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pusher_core::legacy_resp::{self, PendingTable, Remembered, Waiting};
use pusher_io::amqp::LegacyLink;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigReceiver, PusherConfig};
use crate::dispatch::short;

/// Announcements waiting to be published (a burst of registrations beyond it is not
/// announced: memory stays bounded while the broker is slow or gone).
const ANNOUNCE_BUFFER: usize = 1024;
/// How often expired requests are forgotten when nothing else happens.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// The legacy `push_resp` of one instance.
#[derive(Debug)]
pub struct LegacyPushResp {
    config: ConfigReceiver,
    node: String,
    pending: Mutex<PendingTable>,
    announce_tx: mpsc::Sender<String>,
    announce_rx: tokio::sync::Mutex<mpsc::Receiver<String>>,
}

impl LegacyPushResp {
    /// The legacy `push_resp` of instance `node`, on or off by the live `config`.
    pub fn new(config: ConfigReceiver, node: &str) -> Self {
        let (announce_tx, announce_rx) = mpsc::channel(ANNOUNCE_BUFFER);
        Self {
            config,
            node: node.to_string(),
            pending: Mutex::new(PendingTable::default()),
            announce_tx,
            announce_rx: tokio::sync::Mutex::new(announce_rx),
        }
    }

    /// The wait when the option is on in the current config; `None` when it is off (or
    /// no config is loaded yet).
    fn wait(&self) -> Option<Duration> {
        let cfg = self.config.borrow();
        let cfg = cfg.as_ref()?;
        cfg.legacy_push_resp.then_some(cfg.legacy_push_resp_wait)
    }

    /// A `push_req` arrived: remember it if the option is on and it can be answered
    /// (`Token-ID`, `Msg-ID`, `Server-ID`). Call before the push is sent, so the
    /// device's registration cannot come first. A `push_req` that arrives before the
    /// first config load waits for it (as the push itself does), at most 15 s.
    pub async fn remember(&self, waiting: Waiting) {
        let mut rx = self.config.clone();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            rx.wait_for(Option::is_some),
        )
        .await;
        let Some(wait) = self.wait() else { return };
        let (token, msg_id) = (short(&waiting.token_id, 8), waiting.msg_id.clone());
        let done = self.table().remember(waiting, Instant::now(), wait);
        match done {
            Remembered::Added | Remembered::AlreadyWaiting => {
                tracing::debug!(token, msg_id, wait_ms = wait.as_millis() as u64,
                    outcome = ?done, "legacy push_resp: push_req waits for its device")
            }
            Remembered::AddedEvictingOldest => tracing::debug!(
                token,
                msg_id,
                "legacy push_resp: table full; the oldest waiting push_req was forgotten"
            ),
        }
    }

    /// A registration of `push` (its `Token-ID`) was handled here with `cfg`: when the
    /// option is on, announce it to every instance. Never blocks.
    pub fn registered(&self, cfg: &PusherConfig, push: &Map<String, Value>) {
        if !cfg.legacy_push_resp {
            return;
        }
        let Some(token) = push.get("Token-ID").and_then(Value::as_str) else {
            return;
        };
        if let Err(e) = self.announce_tx.try_send(token.to_string()) {
            tracing::debug!(token = short(token, 8), error.message = %e,
                "legacy push_resp: registration not announced (buffer full)");
        }
    }

    /// Runs the legacy side of one AMQP session until `stop`, or until `link` fails:
    /// publishes our announcements, answers the ones (ours or another instance's) whose
    /// token has requests waiting here, and forgets expired requests.
    pub async fn run(&self, mut link: LegacyLink, stop: CancellationToken) {
        let mut outgoing = self.announce_rx.lock().await;
        let mut purge = tokio::time::interval(PURGE_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                token = outgoing.recv() => {
                    let Some(token) = token else { break };
                    let body = legacy_resp::announcement(&token, &self.node).to_string();
                    if let Err(e) = link.announce(body.as_bytes()).await {
                        tracing::warn!(error.message = %e,
                            "legacy push_resp: cannot announce a registration");
                        break;
                    }
                }
                next = link.next() => match next {
                    Some(Ok(body)) => self.on_announcement(&link, &body).await,
                    Some(Err(e)) => {
                        tracing::warn!(error.message = %e,
                            "legacy push_resp: announcement link lost until the next session");
                        break;
                    }
                    None => break,
                },
                _ = purge.tick() => {
                    self.table().purge(Instant::now());
                }
            }
        }
        link.close().await;
    }

    /// An announcement: answer every request waiting here for its token, once.
    async fn on_announcement(&self, link: &LegacyLink, body: &[u8]) {
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let Some(token) = legacy_resp::announced_token(&body) else {
            return;
        };
        let answers = self.table().take(token, Instant::now());
        for w in answers {
            let resp = legacy_resp::push_resp(&w, &self.node, env!("CARGO_PKG_VERSION"));
            let sent = link.answer(&w.server_id, resp.to_string().as_bytes()).await;
            let (token, msg_id) = (short(&w.token_id, 8), w.msg_id.as_str());
            let server_id = w.server_id.as_str();
            match sent {
                Ok(()) => tracing::info!(
                    token,
                    msg_id,
                    server_id,
                    "legacy push_resp sent: the device registered"
                ),
                Err(e) => tracing::warn!(token, msg_id, server_id, error.message = %e,
                    "legacy push_resp could not be published"),
            }
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, PendingTable> {
        // A panic while holding the lock cannot leave the table inconsistent in a way
        // that matters (worst case: a request answered or forgotten early).
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

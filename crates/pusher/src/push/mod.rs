//! The push workflow: `push_req` → APNs or FCM, with Kazoo's mapping and one hard
//! deadline.
//!
//! Each push reads as the data flows, each step once:
//! 1. **resolve** (core): the config snapshot's per-app settings and credentials,
//!    [`AppConfig::resolve`];
//! 2. **client** ([`clients`]): the provider client for those credentials, built once;
//! 3. **build** (core): the APNs request or FCM message;
//! 4. **send, classify, retry** ([`attempt`]);
//! 5. **act**: on a dead token, optionally remove the device's `push` object.
//!
//! Everything from the wait for the first config load to the last retry runs inside
//! one `timeout` measured from AMQP delivery: the verdict is `timeout` at the deadline,
//! never later, whatever step was waiting. The deadline counts from the request's
//! origin: its arrival, or earlier evidence ([`pusher_core::redelivery`]: a first
//! sighting here, a stamp it carries). A copy that comes back after its deadline is not
//! sent (`expired`), nor a redelivered copy of one already answered (`duplicate`).
//! Semaphores bound the in-flight pushes per credential and in total, so one slow app
//! cannot take every slot.

pub mod attempt;
pub mod clients;
pub mod limit;
mod verdict;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pusher_core::app_config::{AppConfig, Credentials};
use pusher_core::push_req::PushReq;
use pusher_core::redelivery::{self, Arrival, Seen, Sighting};
use pusher_core::{apns as core_apns, fcm as core_fcm};
use pusher_io::couch::CouchClient;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::attempt::{Request, Verdict};
use self::clients::Clients;
pub use self::verdict::{PushOutcome, provider_label, short_token};
use crate::config::{ConfigReceiver, PusherConfig};
use crate::state::State;
use crate::tokens::TokenIndex;

/// Longest wait for the first load of `system_config/pusher` (within the deadline).
const CONFIG_WAIT: Duration = Duration::from_secs(15);

/// Settings of push delivery.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// PEM roots added to the system roots for provider TLS (`PUSHER_EXTRA_CA_FILE`).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// FCM base URL (`PUSHER_FCM_URL`).
    pub fcm_base_url: String,
    /// Per-request provider timeout.
    pub request_timeout: Duration,
    /// Default push deadline (config `push_deadline_ms` overrides).
    pub deadline: Duration,
    /// In-flight pushes per credential (app).
    pub per_app_in_flight: usize,
    /// In-flight pushes in total.
    pub total_in_flight: usize,
}

/// What a [`Pusher`] works with.
#[derive(Debug)]
pub struct PusherParts {
    /// For the `.p8` attachment and dead-token clean-up.
    pub couch: CouchClient,
    /// The live `system_config/pusher`.
    pub config: ConfigReceiver,
    /// Our zone (scoped lookups).
    pub zone: String,
    /// Delivery settings.
    pub settings: PushSettings,
    /// Token → device index.
    pub tokens: Arc<TokenIndex>,
    /// Metrics.
    pub state: Arc<State>,
}

/// Push delivery.
#[derive(Debug)]
pub struct Pusher {
    config: ConfigReceiver,
    zone: String,
    settings: PushSettings,
    clients: Clients,
    tokens: Arc<TokenIndex>,
    state: Arc<State>,
    total: Arc<Semaphore>,
    seen: Seen,
}

impl Pusher {
    /// A pusher reading credentials from the live config.
    pub fn new(parts: PusherParts) -> Self {
        let PusherParts {
            couch,
            config,
            zone,
            settings,
            tokens,
            state,
        } = parts;
        Self {
            config,
            zone,
            total: Arc::new(Semaphore::new(settings.total_in_flight.max(1))),
            clients: Clients::new(couch, settings.clone()),
            settings,
            tokens,
            state,
            seen: Seen::default(),
        }
    }

    /// The client registry (tests check that it stays bounded).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Handles one parsed `push_req` that reached us as `arrival`. `cancel` ends it
    /// early (shutdown, or the AMQP session it came from ended): outcome `failed`.
    pub async fn push(
        &self,
        req: &PushReq,
        arrival: Arrival,
        cancel: &CancellationToken,
    ) -> PushOutcome {
        self.send(req, &|c: &Credentials| build(req, c), arrival, cancel)
            .await
    }

    /// The push workflow for any request: `req` says whom to push (its token triple)
    /// and names the push (span, redelivery key, dead-token removal); `build` makes the
    /// provider request from the app's credentials. `push_req` builds with Kazoo's
    /// classic mapping ([`Pusher::push`]), Kazoo 5's `endpoint_push_req` with its own
    /// ([`crate::endpoint`]); everything else — config, deadline, limits, clients,
    /// attempts, metrics, the log line — is this one path.
    pub async fn send(
        &self,
        req: &PushReq,
        build: BuildFn<'_>,
        arrival: Arrival,
        cancel: &CancellationToken,
    ) -> PushOutcome {
        let received = arrival.received;
        let key = redelivery::key(req.msg_id.as_deref(), req.call_id.as_deref(), &req.token_id);
        let span = tracing::info_span!("push",
            call_id = %req.call_id.as_deref().unwrap_or(""),
            msg_id = %req.msg_id.as_deref().unwrap_or(""),
            app = %req.token_app, token = %short_token(&req.token_id),
            token_type = req.token_type.as_str());
        let metrics = &self.state.metrics;
        let work = async move {
            metrics.pushes_in_flight.fetch_add(1, Ordering::Relaxed);
            let (outcome, configured) = tokio::select! {
                done = self.run(req, build, &key, arrival) => done,
                () = cancel.cancelled() => (PushOutcome::Failed("shutting down".into()), true),
            };
            if outcome.is_final() {
                self.seen.done(&key);
            }
            metrics.pushes_in_flight.fetch_sub(1, Ordering::Relaxed);
            if outcome == PushOutcome::Deferred {
                // Not a verdict: the push comes back through the deferral queue.
                metrics.push_deferred.inc(&[provider_label(req.provider())]);
                outcome.log(received.elapsed().as_millis() as u64);
                return outcome;
            }
            let provider = if outcome.reached_provider() {
                provider_label(req.provider())
            } else {
                "none"
            };
            metrics.push_done(
                provider,
                crate::metrics::app_label(&req.token_app, configured),
                outcome.label(),
                received.elapsed(),
            );
            outcome.log(received.elapsed().as_millis() as u64);
            outcome
        };
        tracing::Instrument::instrument(work, span).await
    }

    /// The whole push under its deadline, counted from the request's origin (see
    /// [`pusher_core::redelivery`]); also says whether the app has its own scope in the
    /// config (metric label).
    async fn run(
        &self,
        req: &PushReq,
        build: BuildFn<'_>,
        key: &str,
        arrival: Arrival,
    ) -> (PushOutcome, bool) {
        let origin = match self
            .seen
            .sight(key, &arrival, Instant::now(), crate::clock::unix_ms())
        {
            Sighting::Done => return (PushOutcome::Duplicate, true),
            Sighting::Pending {
                origin,
                unknown_age,
            } => {
                if unknown_age {
                    tracing::info!(
                        "redelivered push_req never seen here and without a timestamp; its deadline counts from now"
                    );
                }
                origin
            }
        };
        // The wait for the first load is local: it counts from the arrival.
        let Some(cfg) = self
            .config_by(arrival.received + CONFIG_WAIT.min(self.settings.deadline))
            .await
        else {
            tracing::error!("system_config/pusher could not be loaded; push_req dropped");
            return (PushOutcome::Failed("config not loaded".into()), false);
        };
        let configured = cfg.doc.raw().get(&req.token_app).is_some();
        let app = AppConfig::resolve(&cfg.doc, &req.token_app, &self.zone, req.token_type);
        if !app.enabled {
            return (PushOutcome::Disabled, configured);
        }
        let deadline = app.deadline_or(self.settings.deadline);
        if redelivery::expired(origin, deadline, arrival.received) && arrival.deferred {
            // Ours to deliver, and its app stayed at its in-flight limit until the end.
            let why = format!(
                "deadline of {} ms reached while the app was at its in-flight limit",
                deadline.as_millis()
            );
            return (PushOutcome::TimedOut(why), configured);
        }
        if redelivery::expired(origin, deadline, arrival.received) {
            let why = format!(
                "made {} ms before it reached us, past its {} ms deadline",
                arrival
                    .received
                    .saturating_duration_since(origin)
                    .as_millis(),
                deadline.as_millis()
            );
            return (PushOutcome::Expired(why), configured);
        }
        if redelivery::expired(origin, deadline, Instant::now()) {
            // Never poll the send once past the deadline: it could reach the provider.
            let why = format!(
                "deadline of {} ms reached before sending",
                deadline.as_millis()
            );
            return (PushOutcome::TimedOut(why), configured);
        }
        let at = tokio::time::Instant::from_std(origin + deadline);
        let outcome = tokio::time::timeout_at(at, self.deliver(&app, req, build, origin, deadline))
            .await
            .unwrap_or_else(|_| {
                PushOutcome::TimedOut(format!("deadline of {} ms reached", deadline.as_millis()))
            });
        (outcome, configured)
    }

    /// The current config, waiting until `by` for the first load.
    async fn config_by(&self, by: Instant) -> Option<Arc<PusherConfig>> {
        let mut rx = self.config.clone();
        let loaded = async { rx.wait_for(Option::is_some).await.ok()?.clone() };
        tokio::time::timeout_at(tokio::time::Instant::from_std(by), loaded)
            .await
            .ok()
            .flatten()
    }

    async fn deliver(
        &self,
        app: &AppConfig,
        req: &PushReq,
        build: BuildFn<'_>,
        received: Instant,
        deadline: Duration,
    ) -> PushOutcome {
        let credentials = match &app.credentials {
            Ok(c) => c,
            Err(e) => return PushOutcome::NoCredentials(e.to_string()),
        };
        let lease = match self.clients.lease(&app.app, credentials).await {
            Ok(l) => l,
            Err(why) => return PushOutcome::NoCredentials(why),
        };
        let request = match build(credentials) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        // A push waits only briefly for its app's in-flight limit, and only while few
        // others wait ([`limit`]); else it is deferred (handed to the deferral queue and
        // acked), so the pushes of one stuck app cannot fill the prefetch window.
        let app_permit = match lease.limit.enter(limit::PATIENCE, limit::MAX_WAITING).await {
            limit::Entry::Go(permit) => permit,
            limit::Entry::Closed => return PushOutcome::Failed("shutting down".into()),
            limit::Entry::Defer => return PushOutcome::Deferred,
        };
        let Ok(_total_permit) = self.total.clone().acquire_owned().await else {
            return PushOutcome::Failed("shutting down".into());
        };
        let metrics = &self.state.metrics;
        let provider = provider_label(req.provider());
        let verdict = attempt::run(
            &lease.sender,
            &request,
            received,
            deadline,
            metrics,
            provider,
        )
        .await;
        if !matches!(verdict, Verdict::OutOfTime(_)) {
            app_permit.progressed();
        }
        match verdict {
            Verdict::Delivered => PushOutcome::Delivered,
            Verdict::Rejected(reason) => PushOutcome::Rejected(reason),
            Verdict::OutOfTime(reason) => PushOutcome::TimedOut(reason),
            Verdict::DeadToken {
                reason,
                timestamp_ms,
            } => {
                let removed =
                    app.remove_invalid_tokens && self.tokens.remove_dead(req, timestamp_ms).await;
                if removed {
                    metrics.dead_tokens_removed.inc(&[provider]);
                }
                PushOutcome::DeadToken { reason, removed }
            }
        }
    }
}

/// Builds the provider request of a push from the app's credentials; an outcome when
/// it cannot be built.
pub type BuildFn<'a> = &'a (dyn Fn(&Credentials) -> Result<Request, PushOutcome> + Sync);

/// The provider request for `req` (core); an outcome when it cannot be built.
fn build(req: &PushReq, credentials: &Credentials) -> Result<Request, PushOutcome> {
    match credentials {
        Credentials::Apple(c) => core_apns::build_request(req, &c.request)
            .map(Request::Apns)
            .map_err(|e| PushOutcome::Dropped(e.to_string())),
        Credentials::Firebase(c) => {
            let message = core_fcm::build_message(req, &c.envelope)
                .map_err(|e| PushOutcome::Dropped(e.to_string()))?;
            let path = core_fcm::send_path(&c.project_id)
                .map_err(|e| PushOutcome::NoCredentials(e.to_string()))?;
            Ok(Request::Fcm { path, message })
        }
    }
}

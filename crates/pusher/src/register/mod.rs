//! The registration workflow: a `reg_success` → the device's `push` object.
//!
//! decide (core: User-Agent rules, Contact params, RFC 8599) → the device cache answers
//! refreshes that change nothing → the [`lot`] decides: write at once, park, or settle
//! without update → read-modify-write of the device doc, starting from the copy the
//! device cache keeps when it has one (then the write is one `PUT`; a 409 re-reads and
//! re-applies) → the token index learns the token (written in batches, off this path). Transient failures (CouchDB down) are retried with
//! capped, jittered backoff for at most the retry budget; then the registration is
//! settled without update (the phone registers again within minutes).
//!
//! Registrations never take more than their slots of the AMQP prefetch window: a write
//! at once holds its delivery (acked when written), a parked one was acked when parked.
//! So a CouchDB outage fills the registration slots, never the pushes' share.

pub mod device_cache;
pub mod lot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pusher_core::outcome::retry_delay;
use pusher_core::reg_success::{self, PushUpdate, RegDecision, RegSuccess};
use pusher_io::couch::{self, CouchClient, UpdateOutcome};
use rand::Rng as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::device_cache::{CachedPush, DeviceCache};
use self::lot::{Lot, Offer};
use crate::config::{ConfigReceiver, PusherConfig};
use crate::dispatch::{Disposition, short};
use crate::legacy::LegacyPushResp;
use crate::state::State;
use crate::tokens::TokenIndex;

/// How many 409s a device update absorbs before it counts as a transient failure.
const MAX_CONFLICTS: u32 = 10;
/// First pause between attempts; doubles up to [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_millis(200);
/// Longest pause between attempts.
const RETRY_CAP: Duration = Duration::from_secs(5);

/// Result of a `reg_success`, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegOutcome {
    /// No `User-Agents` rule matched (and no RFC 8599 params when enabled).
    NoRule,
    /// A rule matched but the Contact had no token, or could not be parsed.
    NoToken,
    /// No Account-ID / Authorizing-ID to find the device by.
    MissingIds,
    /// The device already had this `push` object: nothing written.
    Unchanged,
    /// The `push` object was written.
    Updated,
    /// The `push` object was removed (RFC 8599 `pn-prid=null`).
    Removed,
    /// The device doc or account database does not exist.
    DeviceNotFound,
    /// Registration slots busy (or the device being written): acked and parked, to be
    /// written by the drainer.
    Parked,
    /// The parking lot is full: settled without update.
    Shed,
    /// Gave up (permanent error, or transient errors beyond the retry budget).
    Error,
}

impl RegOutcome {
    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RegOutcome::NoRule => "no_rule",
            RegOutcome::NoToken => "no_token",
            RegOutcome::MissingIds => "missing_ids",
            RegOutcome::Unchanged => "unchanged",
            RegOutcome::Updated => "updated",
            RegOutcome::Removed => "removed",
            RegOutcome::DeviceNotFound => "device_not_found",
            RegOutcome::Parked => "parked",
            RegOutcome::Shed => "shed",
            RegOutcome::Error => "error",
        }
    }
}

/// Who a registration is, for its log lines (wherever it ends: at once or drained).
#[derive(Debug, Clone)]
struct Who {
    msg_id: String,
    call_id: String,
    account_id: String,
    device_id: String,
    user_agent: String,
}

impl Who {
    fn of(reg: &RegSuccess) -> Self {
        let s = |v: &Option<String>, max| short(v.as_deref().unwrap_or(""), max);
        Who {
            msg_id: s(&reg.msg_id, 64),
            call_id: s(&reg.call_id, 128),
            account_id: s(&reg.account_id, 64),
            device_id: s(&reg.authorizing_id, 64),
            user_agent: s(&reg.user_agent, 80),
        }
    }
}

/// A decided registration that must write its device document.
#[derive(Debug)]
pub struct Job {
    who: Who,
    account_db: String,
    device_id: String,
    update: PushUpdate,
    wanted: CachedPush,
}

/// A write stopped by its cancellation token before it was done.
#[derive(Debug)]
struct Interrupted;

/// What a [`Registrar`] works with.
#[derive(Debug)]
pub struct RegistrarParts {
    /// Device documents.
    pub couch: CouchClient,
    /// The live `system_config/pusher`.
    pub config: ConfigReceiver,
    /// How long transient failures are retried.
    pub retry_budget: Duration,
    /// Writes at once (the registrations' share of the prefetch window).
    pub slots: usize,
    /// Token → device index.
    pub tokens: Arc<TokenIndex>,
    /// Cache of device `push` objects.
    pub devices: Arc<DeviceCache>,
    /// Metrics.
    pub state: Arc<State>,
    /// Told each registered token (the opt-in legacy `push_resp`).
    pub legacy: Arc<LegacyPushResp>,
}

/// Writes registrations to device documents.
#[derive(Debug)]
pub struct Registrar {
    couch: CouchClient,
    config: ConfigReceiver,
    retry_budget: Duration,
    tokens: Arc<TokenIndex>,
    devices: Arc<DeviceCache>,
    state: Arc<State>,
    legacy: Arc<LegacyPushResp>,
    lot: Lot<Job>,
}

impl Registrar {
    /// A registrar; call [`Registrar::drain`] in a task to write parked registrations.
    pub fn new(parts: RegistrarParts) -> Self {
        Self {
            couch: parts.couch,
            config: parts.config,
            retry_budget: parts.retry_budget,
            tokens: parts.tokens,
            devices: parts.devices,
            state: parts.state,
            legacy: parts.legacy,
            lot: Lot::new(parts.slots),
        }
    }

    /// Devices whose registration waits in the parking lot.
    pub fn parked(&self) -> usize {
        self.lot.parked()
    }

    /// Handles one parsed `reg_success`: decide, then write at once, park, or settle
    /// without update (see [`lot`]). Transient failures of a write at once are retried
    /// until the retry budget is spent or `cancel` fires (then the delivery goes back to
    /// the queue).
    pub async fn register(
        &self,
        reg: &RegSuccess,
        cancel: &CancellationToken,
    ) -> (RegOutcome, Disposition) {
        let who = Who::of(reg);
        let Some(cfg) = self.config_within(cancel).await else {
            if cancel.is_cancelled() {
                tracing::info!(
                    msg_id = who.msg_id,
                    call_id = who.call_id,
                    "interrupted; reg_success returned to the queue"
                );
                return (RegOutcome::Error, Disposition::Requeue);
            }
            tracing::error!(
                msg_id = who.msg_id,
                call_id = who.call_id,
                "system_config/pusher not loaded within the retry budget; reg_success settled without update"
            );
            return (RegOutcome::Error, Disposition::Ack);
        };
        let job = match self.plan(reg, &cfg, who).await {
            Ok(job) => job,
            Err((who, outcome)) => {
                log_outcome(&who, outcome);
                return (outcome, Disposition::Ack);
            }
        };
        let key = (job.account_db.clone(), job.device_id.clone());
        let who = job.who.clone();
        let (offer, superseded) = self.lot.offer(key, job);
        if let Some(old) = superseded {
            self.parked_done(&old.who, "superseded");
        }
        match offer {
            Offer::Now(claim, job) => {
                let written = self.write(&job, cancel).await;
                drop(claim);
                match written {
                    Ok(outcome) => {
                        log_outcome(&job.who, outcome);
                        (outcome, Disposition::Ack)
                    }
                    Err(Interrupted) => {
                        tracing::info!(
                            msg_id = job.who.msg_id,
                            call_id = job.who.call_id,
                            "interrupted; reg_success returned to the queue"
                        );
                        (RegOutcome::Error, Disposition::Requeue)
                    }
                }
            }
            Offer::Parked => {
                tracing::debug!(
                    msg_id = who.msg_id,
                    call_id = who.call_id,
                    device_id = who.device_id,
                    parked = self.lot.parked(),
                    "registration slots busy or device being written; reg_success acked and parked"
                );
                (RegOutcome::Parked, Disposition::Ack)
            }
            Offer::Full(job) => {
                tracing::warn!(
                    msg_id = job.who.msg_id,
                    call_id = job.who.call_id,
                    device_id = job.who.device_id,
                    parked = lot::MAX_PARKED,
                    "registration lot full; reg_success settled without update"
                );
                (RegOutcome::Shed, Disposition::Ack)
            }
        }
    }

    /// Writes parked registrations as slots and devices become free, until `stop`.
    /// Parked registrations were acked when parked: each ends in exactly one
    /// `pusher_parked_registrations_total{outcome}`.
    pub async fn drain(self: Arc<Self>, stop: CancellationToken) {
        let mut wake = self.lot.watch();
        loop {
            wake.borrow_and_update();
            while let Some((claim, job)) = self.lot.next_ready() {
                let me = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let written = me.write(&job, &stop).await;
                    drop(claim);
                    match written {
                        Ok(outcome) => {
                            log_outcome(&job.who, outcome);
                            me.parked_done(&job.who, outcome.as_str());
                        }
                        Err(Interrupted) => me.parked_done(&job.who, "lost_at_exit"),
                    }
                });
            }
            tokio::select! {
                _ = wake.changed() => {}
                () = stop.cancelled() => break,
            }
        }
        for job in self.lot.take_all() {
            self.parked_done(&job.who, "lost_at_exit");
        }
    }

    /// Waits (at most `grace`) until no registration is parked or being written, so a
    /// shutdown writes what it acked; returns how many are still parked.
    pub async fn flush(&self, grace: Duration) -> usize {
        let mut wake = self.lot.watch();
        let _ = tokio::time::timeout(grace, async {
            loop {
                wake.borrow_and_update();
                if self.lot.is_idle() || wake.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.lot.parked()
    }

    /// The end of a parked registration: counted, and logged when it was not written.
    fn parked_done(&self, who: &Who, outcome: &str) {
        self.state.metrics.parked_registrations.inc(&[outcome]);
        match outcome {
            "superseded" => tracing::debug!(
                msg_id = who.msg_id,
                device_id = who.device_id,
                "parked reg_success superseded by a newer registration of the device"
            ),
            "lost_at_exit" => tracing::warn!(
                msg_id = who.msg_id,
                call_id = who.call_id,
                device_id = who.device_id,
                "parked reg_success not written before exit; the device updates on its next registration"
            ),
            _ => {}
        }
    }

    /// The config snapshot, waiting (within the retry budget) for the first load.
    async fn config_within(&self, cancel: &CancellationToken) -> Option<Arc<PusherConfig>> {
        let mut rx = self.config.clone();
        let loaded = async { rx.wait_for(Option::is_some).await.ok()?.clone() };
        tokio::select! {
            c = tokio::time::timeout(self.retry_budget, loaded) => c.ok().flatten(),
            () = cancel.cancelled() => None,
        }
    }

    /// Decides (core) and answers from the device cache what needs no write.
    async fn plan(
        &self,
        reg: &RegSuccess,
        cfg: &PusherConfig,
        who: Who,
    ) -> Result<Job, (Who, RegOutcome)> {
        let (decision, warnings) = reg_success::decide(reg, &cfg.rules, cfg.rfc8599);
        let (msg_id, call_id) = (who.msg_id.as_str(), who.call_id.as_str());
        for w in &warnings {
            tracing::warn!(msg_id, call_id, "reg_success: {w}");
        }
        let (account_db, device_id, update) = match decision {
            RegDecision::NoUserAgentRule => return Err((who, RegOutcome::NoRule)),
            RegDecision::NoContact(reason) => {
                // A rule matched, so this device should be pushable: say why it is not.
                tracing::warn!(msg_id, call_id, reason = %short(&reason, 200),
                    "reg_success: Contact unusable; push object not updated");
                return Err((who, RegOutcome::NoToken));
            }
            RegDecision::NoToken { .. } => return Err((who, RegOutcome::NoToken)),
            RegDecision::MissingIds => {
                tracing::warn!(
                    msg_id,
                    call_id,
                    "reg_success: a rule matched but Account-ID/Authorizing-ID are missing or unusable; settled"
                );
                return Err((who, RegOutcome::MissingIds));
            }
            RegDecision::Update {
                account_db,
                device_id,
                update,
                ..
            } => (account_db, device_id, update),
        };
        // The device is awake: a kazoo_query waiting on its token may be answered.
        if let PushUpdate::Set(push) = &update {
            self.legacy.registered(cfg, push);
        }
        // A refresh that changes nothing is answered from the cache (kept correct by the
        // database's change feed, see device_cache).
        let wanted: CachedPush = match &update {
            PushUpdate::Set(push) => Some(Value::Object(push.clone())),
            PushUpdate::Remove => None,
        };
        let (hit, _) = self.devices.lookup(&account_db, &device_id, &wanted);
        let metrics = &self.state.metrics;
        metrics
            .device_cache
            .inc(&[if hit { "hit" } else { "miss" }]);
        if hit {
            if let PushUpdate::Set(push) = &update {
                self.tokens.note(push, &account_db, &device_id);
            }
            return Err((who, RegOutcome::Unchanged));
        }
        Ok(Job {
            who,
            account_db,
            device_id,
            update,
            wanted,
        })
    }

    /// Writes one device, retrying transient failures with capped, jittered backoff
    /// for at most the retry budget (then `Error`: settled without update); `cancel`
    /// interrupts it.
    async fn write(
        &self,
        job: &Job,
        cancel: &CancellationToken,
    ) -> Result<RegOutcome, Interrupted> {
        let (msg_id, call_id) = (job.who.msg_id.as_str(), job.who.call_id.as_str());
        let started = Instant::now();
        let mut attempt = 1u32;
        loop {
            let result = tokio::select! {
                r = self.write_once(job) => r,
                () = cancel.cancelled() => return Err(Interrupted),
            };
            let e = match result {
                Ok(outcome) => return Ok(outcome),
                Err(e) if e.is_transient() => e,
                Err(e) => {
                    tracing::error!(msg_id, call_id, error.message = %e, "reg_success failed; settled");
                    return Ok(RegOutcome::Error);
                }
            };
            let delay = retry_delay(attempt, None, RETRY_BASE, RETRY_CAP, rand::rng().random());
            let elapsed = started.elapsed();
            if elapsed + delay > self.retry_budget {
                tracing::error!(msg_id, call_id, attempt, error.message = %e,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "reg_success failed for longer than the retry budget; settled without update");
                return Ok(RegOutcome::Error);
            }
            tracing::warn!(msg_id, call_id, attempt, error.message = %e,
                retry_in_ms = delay.as_millis() as u64, "reg_success failed; will retry");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Err(Interrupted),
            }
            attempt += 1;
        }
    }

    /// One attempt. The cache is asked again here, not when the job was planned: a
    /// parked job is written later, after other writes of the device updated the
    /// cached copy. Its ticket is taken before the write, as a store requires.
    async fn write_once(&self, job: &Job) -> Result<RegOutcome, couch::Error> {
        let Job {
            account_db,
            device_id,
            update,
            wanted,
            ..
        } = job;
        let found = self.devices.lookup_doc(account_db, device_id, wanted);
        if found.hit {
            // An earlier write of the device (or a read) established this push object.
            if let PushUpdate::Set(push) = update {
                self.tokens.note(push, account_db, device_id);
            }
            return Ok(RegOutcome::Unchanged);
        }
        let written = self
            .couch
            .update_doc_from(account_db, device_id, found.doc, MAX_CONFLICTS, |doc| {
                reg_success::apply_update(doc, update)
            })
            .await?;
        if let (Some(ticket), Some(doc)) = (found.ticket, &written.doc) {
            let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_string);
            self.devices.store_doc(
                account_db,
                device_id,
                wanted.clone(),
                rev,
                Some(doc),
                ticket,
            );
        }
        let outcome = written.outcome;
        if let (PushUpdate::Set(push), UpdateOutcome::Updated { .. } | UpdateOutcome::Unchanged) =
            (update, &outcome)
        {
            self.tokens.note(push, account_db, device_id);
        }
        Ok(match (outcome, update) {
            (UpdateOutcome::NotFound, _) => RegOutcome::DeviceNotFound,
            (UpdateOutcome::Unchanged, _) => RegOutcome::Unchanged,
            (UpdateOutcome::Updated { .. }, PushUpdate::Set(_)) => RegOutcome::Updated,
            (UpdateOutcome::Updated { .. }, PushUpdate::Remove) => RegOutcome::Removed,
        })
    }
}

fn log_outcome(who: &Who, outcome: RegOutcome) {
    let Who {
        msg_id,
        call_id,
        account_id,
        device_id,
        user_agent,
    } = who;
    match outcome {
        RegOutcome::Updated | RegOutcome::Removed => {
            tracing::info!(
                msg_id,
                call_id,
                device_id,
                user_agent,
                outcome = outcome.as_str(),
                "device push object written"
            )
        }
        RegOutcome::DeviceNotFound => {
            tracing::warn!(
                msg_id,
                call_id,
                device_id,
                account_id,
                "device document or account database not found; settled"
            )
        }
        _ => tracing::debug!(
            msg_id,
            call_id,
            device_id,
            user_agent,
            outcome = outcome.as_str(),
            "reg_success handled"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_stable() {
        assert_eq!(RegOutcome::NoRule.as_str(), "no_rule");
        assert_eq!(RegOutcome::Updated.as_str(), "updated");
    }
}

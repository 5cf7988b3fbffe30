//! The registration workflow: a `reg_success` → the device's `push` object.
//!
//! decide (core: User-Agent rules, Contact params, RFC 8599) → the device cache answers
//! refreshes that change nothing → the [`lot`] decides: write at once, park, or settle
//! without update → read-modify-write of the device doc, starting from the copy the
//! device cache keeps when it has one (then the write is one `PUT`; a 409 re-reads and
//! re-applies), or else from a read shared with the other devices of its database read
//! meanwhile → the token index learns the token (written in batches, off this path).
//! Transient failures (CouchDB down) are retried with capped, jittered backoff for at
//! most the retry budget; then the registration is settled without update (the phone
//! registers again within minutes).
//!
//! Registrations never take more than their slots of the AMQP prefetch window: a write
//! at once holds its delivery (acked when written), a parked one was acked when parked.
//! So a CouchDB outage fills the registration slots, never the pushes' share.
//!
//! The parts, in the order a registration meets them: this module ([`Registrar`]: take
//! a registration, write it at once or park it, drain the parked ones), `plan` (decide
//! and ask the device cache: a [`Job`] or an end), [`lot`] (slots and the parking lot),
//! `write` (one device, with retries), `reads` (device reads that share requests),
//! [`device_cache`], and `outcome` ([`RegOutcome`] and the log line of each end).

pub mod device_cache;
pub mod lot;
mod outcome;
mod plan;
mod reads;
mod write;

use std::sync::Arc;
use std::time::Duration;

use pusher_core::reg_success::RegSuccess;
use pusher_io::couch::CouchClient;
use tokio_util::sync::CancellationToken;

use self::device_cache::DeviceCache;
use self::lot::{Lot, Offer};
pub use self::outcome::RegOutcome;
use self::outcome::{Who, log_outcome};
pub use self::plan::Job;
use self::reads::DocReads;
use self::write::Interrupted;
use crate::config::ConfigReceiver;
use crate::dispatch::Disposition;
use crate::legacy::LegacyPushResp;
use crate::state::State;
use crate::tokens::TokenIndex;

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
    reads: DocReads,
}

impl Registrar {
    /// A registrar; call [`Registrar::drain`] in a task to write parked registrations.
    pub fn new(parts: RegistrarParts) -> Self {
        Self {
            reads: DocReads::new(parts.couch.clone()),
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

    /// Device reads queued behind a read of the same database in flight (they go out
    /// together when it is answered).
    pub fn reads_waiting(&self) -> usize {
        self.reads.waiting()
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
}

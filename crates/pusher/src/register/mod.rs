//! The registration workflow: a `reg_success` → the device's `push` object.
//!
//! decide (core: User-Agent rules, Contact params, RFC 8599) → the device cache answers
//! refreshes that change nothing → read-modify-write of the device doc (409s re-read and
//! re-applied) → the token index learns the token. Transient failures (CouchDB down, the
//! config not loaded yet) are retried with capped, jittered backoff while the delivery
//! stays unacked, for at most the retry budget; then the registration is settled without
//! update (the phone registers again within minutes).

pub mod device_cache;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pusher_core::outcome::retry_delay;
use pusher_core::reg_success::{self, PushUpdate, RegDecision, RegSuccess};
use pusher_io::couch::{self, CouchClient, UpdateOutcome};
use rand::Rng as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::device_cache::{CachedPush, DeviceCache};
use crate::config::ConfigReceiver;
use crate::dispatch::{Disposition, short};
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
            RegOutcome::Error => "error",
        }
    }
}

/// Failures of one attempt at a registration.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("system_config/pusher has not been loaded yet")]
    ConfigNotLoaded,
    #[error(transparent)]
    Couch(#[from] couch::Error),
}

impl AttemptError {
    fn is_transient(&self) -> bool {
        match self {
            AttemptError::ConfigNotLoaded => true,
            AttemptError::Couch(e) => e.is_transient(),
        }
    }
}

/// Writes registrations to device documents.
#[derive(Debug)]
pub struct Registrar {
    /// Device documents.
    pub couch: CouchClient,
    /// The live `system_config/pusher`.
    pub config: ConfigReceiver,
    /// How long transient failures are retried while the delivery stays unacked.
    pub retry_budget: Duration,
    /// Token → device index.
    pub tokens: Arc<TokenIndex>,
    /// Cache of device `push` objects.
    pub devices: Arc<DeviceCache>,
    /// Metrics.
    pub state: Arc<State>,
}

impl Registrar {
    /// Handles one parsed `reg_success`, retrying transient failures until the retry
    /// budget is spent or `cancel` fires (then the delivery goes back to the queue).
    pub async fn register(
        &self,
        reg: &RegSuccess,
        cancel: &CancellationToken,
    ) -> (RegOutcome, Disposition) {
        let msg_id = reg.msg_id.as_deref().unwrap_or("");
        let call_id = reg.call_id.as_deref().unwrap_or("");
        let started = Instant::now();
        let mut attempt = 1u32;
        loop {
            let attempt_result = tokio::select! {
                r = self.once(reg) => r,
                () = cancel.cancelled() => {
                    tracing::info!(msg_id, call_id, "interrupted; reg_success returned to the queue");
                    return (RegOutcome::Error, Disposition::Requeue);
                }
            };
            let e = match attempt_result {
                Ok(outcome) => {
                    log_outcome(reg, outcome);
                    return (outcome, Disposition::Ack);
                }
                Err(e) if e.is_transient() => e,
                Err(e) => {
                    tracing::error!(msg_id, call_id, error.message = %e, "reg_success failed; settled");
                    return (RegOutcome::Error, Disposition::Ack);
                }
            };
            let delay = retry_delay(attempt, None, RETRY_BASE, RETRY_CAP, rand::rng().random());
            let elapsed = started.elapsed();
            if elapsed + delay > self.retry_budget {
                tracing::error!(msg_id, call_id, attempt, error.message = %e,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "reg_success failed for longer than the retry budget; settled without update");
                return (RegOutcome::Error, Disposition::Ack);
            }
            tracing::warn!(msg_id, call_id, attempt, error.message = %e,
                retry_in_ms = delay.as_millis() as u64, "reg_success failed; will retry");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => {
                    tracing::info!(msg_id, call_id, "shutting down; reg_success returned to the queue");
                    return (RegOutcome::Error, Disposition::Requeue);
                }
            }
            attempt += 1;
        }
    }

    async fn once(&self, reg: &RegSuccess) -> Result<RegOutcome, AttemptError> {
        let cfg = self
            .config
            .borrow()
            .clone()
            .ok_or(AttemptError::ConfigNotLoaded)?;
        let (decision, warnings) = reg_success::decide(reg, &cfg.rules, cfg.rfc8599);
        let msg_id = reg.msg_id.as_deref().unwrap_or("");
        let call_id = reg.call_id.as_deref().unwrap_or("");
        for w in &warnings {
            tracing::warn!(msg_id, call_id, "reg_success: {w}");
        }
        let (account_db, device_id, update) = match decision {
            RegDecision::NoUserAgentRule => return Ok(RegOutcome::NoRule),
            RegDecision::NoContact(reason) => {
                // A rule matched, so this device should be pushable: say why it is not.
                tracing::warn!(msg_id, call_id, reason = %short(&reason, 200),
                    "reg_success: Contact unusable; push object not updated");
                return Ok(RegOutcome::NoToken);
            }
            RegDecision::NoToken { .. } => return Ok(RegOutcome::NoToken),
            RegDecision::MissingIds => {
                tracing::warn!(
                    msg_id,
                    call_id,
                    "reg_success: a rule matched but Account-ID/Authorizing-ID are missing or unusable; settled"
                );
                return Ok(RegOutcome::MissingIds);
            }
            RegDecision::Update {
                account_db,
                device_id,
                update,
                ..
            } => (account_db, device_id, update),
        };
        // A refresh that changes nothing is answered from the cache (kept correct by the
        // database's change feed, see device_cache).
        let wanted: CachedPush = match &update {
            PushUpdate::Set(push) => Some(Value::Object(push.clone())),
            PushUpdate::Remove => None,
        };
        let (hit, ticket) = self.devices.lookup(&account_db, &device_id, &wanted);
        let metrics = &self.state.metrics;
        metrics
            .device_cache
            .inc(&[if hit { "hit" } else { "miss" }]);
        if hit {
            if let PushUpdate::Set(push) = &update {
                self.tokens.record(push, &account_db, &device_id).await;
            }
            return Ok(RegOutcome::Unchanged);
        }
        let outcome = self
            .couch
            .update_doc(&account_db, &device_id, MAX_CONFLICTS, |doc| {
                reg_success::apply_update(doc, &update)
            })
            .await?;
        let stored_rev = match &outcome {
            UpdateOutcome::Updated { rev, .. } => Some(Some(rev.clone())),
            UpdateOutcome::Unchanged => Some(None),
            UpdateOutcome::NotFound => None,
        };
        if let (Some(ticket), Some(rev)) = (ticket, stored_rev) {
            self.devices
                .store(&account_db, &device_id, wanted, rev, ticket);
        }
        if let (PushUpdate::Set(push), UpdateOutcome::Updated { .. } | UpdateOutcome::Unchanged) =
            (&update, &outcome)
        {
            self.tokens.record(push, &account_db, &device_id).await;
        }
        Ok(match (outcome, &update) {
            (UpdateOutcome::NotFound, _) => RegOutcome::DeviceNotFound,
            (UpdateOutcome::Unchanged, _) => RegOutcome::Unchanged,
            (UpdateOutcome::Updated { .. }, PushUpdate::Set(_)) => RegOutcome::Updated,
            (UpdateOutcome::Updated { .. }, PushUpdate::Remove) => RegOutcome::Removed,
        })
    }
}

fn log_outcome(reg: &RegSuccess, outcome: RegOutcome) {
    let msg_id = reg.msg_id.as_deref().unwrap_or("");
    let call_id = reg.call_id.as_deref().unwrap_or("");
    let device_id = reg.authorizing_id.as_deref().unwrap_or("");
    let ua = short(reg.user_agent.as_deref().unwrap_or(""), 80);
    match outcome {
        RegOutcome::Updated | RegOutcome::Removed => {
            tracing::info!(msg_id, call_id, device_id, user_agent = %ua, outcome = outcome.as_str(),
                "device push object written")
        }
        RegOutcome::DeviceNotFound => {
            tracing::warn!(
                msg_id,
                call_id,
                device_id,
                account_id = reg.account_id.as_deref().unwrap_or(""),
                "device document or account database not found; settled"
            )
        }
        _ => tracing::debug!(msg_id, call_id, device_id, user_agent = %ua,
            outcome = outcome.as_str(), "reg_success handled"),
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

//! Planning a registration: decide (core: User-Agent rules, Contact params, RFC 8599),
//! tell the legacy `push_resp` the device is awake, and answer from the device cache a
//! refresh that changes nothing. What is left is a [`Job`]: one device to write.

use std::sync::Arc;

use pusher_core::reg_success::{self, PushUpdate, RegDecision, RegSuccess};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Registrar;
use super::device_cache::CachedPush;
use super::outcome::{RegOutcome, Who};
use crate::config::PusherConfig;
use crate::dispatch::short;

/// A decided registration that must write its device document.
#[derive(Debug)]
pub struct Job {
    pub(super) who: Who,
    pub(super) account_db: String,
    pub(super) device_id: String,
    pub(super) update: PushUpdate,
    pub(super) wanted: CachedPush,
}

impl Registrar {
    /// The config snapshot, waiting (within the retry budget) for the first load.
    pub(super) async fn config_within(
        &self,
        cancel: &CancellationToken,
    ) -> Option<Arc<PusherConfig>> {
        let mut rx = self.config.clone();
        let loaded = async { rx.wait_for(Option::is_some).await.ok()?.clone() };
        tokio::select! {
            c = tokio::time::timeout(self.retry_budget, loaded) => c.ok().flatten(),
            () = cancel.cancelled() => None,
        }
    }

    /// Decides (core) and answers from the device cache what needs no write.
    pub(super) async fn plan(
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
}

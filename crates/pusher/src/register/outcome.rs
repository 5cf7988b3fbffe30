//! How a registration ended ([`RegOutcome`], for logs and metrics), who it was
//! ([`Who`], the ids its log lines carry), and the one log line of each end.

use pusher_core::reg_success::RegSuccess;

use crate::dispatch::short;

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
pub(super) struct Who {
    pub(super) msg_id: String,
    pub(super) call_id: String,
    pub(super) account_id: String,
    pub(super) device_id: String,
    pub(super) user_agent: String,
}

impl Who {
    pub(super) fn of(reg: &RegSuccess) -> Self {
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

/// Logs how a registration ended: written or not found at `info`/`warn`, the rest at
/// `debug`.
pub(super) fn log_outcome(who: &Who, outcome: RegOutcome) {
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

//! What happens to one message: decode → classify → decide (pure, in `pusher-core`) →
//! act (CouchDB) → a [`Disposition`] for the consumer to settle the delivery with.
//!
//! [`Dispatcher::process`] is the single-step function of the consume loop: tests drive it
//! directly, and the AMQP consumer calls it once per delivery. Every path ends in exactly
//! one disposition:
//! - handled, or permanently unusable (bad JSON, unknown event, no rule …) → `Ack`;
//! - transient failure (CouchDB down, config not loaded yet) → retried here with capped
//!   exponential backoff while the delivery stays unacked, up to the retry budget, then
//!   `Ack` with an error log (never an endless redelivery loop);
//! - shutdown during such retries → `Requeue`, so another instance takes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pusher_core::envelope::{self, Event};
use pusher_core::push_req::{self, Provider, PushVerdict, TokenType};
use pusher_core::reg_success::{self, PushUpdate, RegDecision, RegSuccess};
use pusher_io::amqp::{self, DecodeError};
use pusher_io::couch::{self, CouchClient, UpdateOutcome};
use rand::Rng;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigReceiver, PusherConfig};
use crate::device_cache::{CachedPush, DeviceCache};
use crate::push::{PushOutcome, Pusher};
use crate::state::State;
use crate::tokens::TokenIndex;

/// How many 409s a device update absorbs before it counts as a transient failure.
const MAX_CONFLICTS: u32 = 10;

/// How the consumer must settle a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Acknowledge: handled, or settled for good.
    Ack,
    /// Reject with requeue: not handled, let the broker redeliver it.
    Requeue,
}

/// A message to publish on the default exchange before the delivery is settled: the
/// `push_resp` a requester asked for with `Pusher-Reply-To`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The requester's queue.
    pub routing_key: String,
    /// JSON body.
    pub body: Vec<u8>,
}

/// The result of handling one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// How to settle the delivery.
    pub disposition: Disposition,
    /// What to publish first, if anything.
    pub reply: Option<Reply>,
}

impl From<Disposition> for Handled {
    fn from(disposition: Disposition) -> Self {
        Handled {
            disposition,
            reply: None,
        }
    }
}

/// A delivery as the handler needs it (decoupled from lapin for tests).
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// AMQP `content_type`.
    pub content_type: Option<String>,
    /// AMQP `content_encoding`.
    pub content_encoding: Option<String>,
    /// Routing key (for logs).
    pub routing_key: String,
    /// Raw body.
    pub data: Vec<u8>,
}

/// Result of a `reg_success`, for logs and (later) metrics.
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

/// Failures of one attempt at handling a message.
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

/// What a [`Dispatcher`] works with.
#[derive(Debug, Clone)]
pub struct DispatcherParts {
    /// Device documents.
    pub couch: CouchClient,
    /// The live `system_config/pusher`.
    pub config: ConfigReceiver,
    /// How long transient failures are retried while the delivery stays unacked.
    pub retry_budget: Duration,
    /// Fires on shutdown: retries stop and the delivery is requeued.
    pub cancel: CancellationToken,
    /// Push delivery.
    pub pusher: Arc<Pusher>,
    /// Token → device index (dead-token clean-up).
    pub tokens: Arc<TokenIndex>,
    /// Cache of device `push` objects.
    pub devices: Arc<DeviceCache>,
    /// Flags and metrics.
    pub state: Arc<State>,
    /// Our node name (in `push_resp`).
    pub node: String,
}

/// Handles messages; cheap to clone into each delivery task.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    couch: CouchClient,
    config: ConfigReceiver,
    retry_budget: Duration,
    cancel: CancellationToken,
    pusher: Arc<Pusher>,
    tokens: Arc<TokenIndex>,
    devices: Arc<DeviceCache>,
    state: Arc<State>,
    node: Arc<str>,
}

impl Dispatcher {
    /// A dispatcher writing to CouchDB, reading rules from the live config, retrying
    /// transient failures within the retry budget, and giving up early on shutdown.
    pub fn new(parts: DispatcherParts) -> Self {
        let DispatcherParts {
            couch,
            config,
            retry_budget,
            cancel,
            pusher,
            tokens,
            devices,
            state,
            node,
        } = parts;
        Self {
            couch,
            config,
            retry_budget,
            cancel,
            pusher,
            tokens,
            devices,
            state,
            node: node.into(),
        }
    }

    /// Handles one delivery and says how to settle it (and what to reply, if asked).
    pub async fn process(&self, msg: &Incoming) -> Handled {
        let received = Instant::now();
        let body = match amqp::decode_body(
            msg.content_type.as_deref(),
            msg.content_encoding.as_deref(),
            &msg.data,
        ) {
            Ok(v) => v,
            Err(e) => {
                self.state.metrics.consumed.inc(&["undecodable"]);
                log_undecodable(msg, &e);
                return Disposition::Ack.into();
            }
        };
        let m = &self.state.metrics;
        match envelope::classify(&body) {
            Event::RegSuccess => {
                m.consumed.inc(&["reg_success"]);
                let (outcome, disposition) = self.reg_success(body).await;
                m.reg_success.inc(&[outcome.as_str()]);
                disposition.into()
            }
            Event::PushReq => {
                m.consumed.inc(&["push_req"]);
                let reply_to = push_req::reply_to(&body).map(str::to_string);
                let (outcome, disposition) = self.push_req(&body, received).await;
                let reply =
                    reply_to
                        .filter(|_| disposition == Disposition::Ack)
                        .map(|routing_key| Reply {
                            body: self.push_resp(&body, &outcome, received),
                            routing_key,
                        });
                Handled { disposition, reply }
            }
            Event::Other { category, name } => {
                m.consumed.inc(&["other"]);
                tracing::info!(
                    messaging.routing_key = %short(&msg.routing_key, 200),
                    msg_id = %short(envelope::msg_id(&body).unwrap_or(""), 64),
                    event.category = %short(&category, 64),
                    event.name = %short(&name, 64),
                    "event not handled by the pusher; settled"
                );
                Disposition::Ack.into()
            }
        }
    }

    /// The `push_resp` body for a requester that asked for the verdict.
    fn push_resp(&self, request: &Value, outcome: &PushOutcome, received: Instant) -> Vec<u8> {
        let provider = match outcome {
            PushOutcome::Dropped(_) | PushOutcome::Failed(_) => "",
            _ => match push_token_provider(request) {
                Some(Provider::Apple) => "apns",
                Some(Provider::Firebase) => "fcm",
                None => "",
            },
        };
        let verdict = PushVerdict {
            status: outcome.status(),
            reason: outcome.reason(),
            provider,
            elapsed_ms: received.elapsed().as_millis() as u64,
        };
        let resp = push_req::push_resp(request, &verdict, &self.node, env!("CARGO_PKG_VERSION"));
        serde_json::to_vec(&resp).unwrap_or_default()
    }

    /// Waits (bounded) for the first config load.
    async fn config_snapshot(&self, wait: Duration) -> Option<Arc<PusherConfig>> {
        let mut rx = self.config.clone();
        let ready = async {
            rx.wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|c| c.clone())
        };
        tokio::select! {
            c = tokio::time::timeout(wait, ready) => c.ok().flatten(),
            () = self.cancel.cancelled() => None,
        }
    }

    /// Handles a decoded `push_req`: one push, with retries inside its deadline.
    pub async fn push_req(&self, body: &Value, received: Instant) -> (PushOutcome, Disposition) {
        let Some(cfg) = self.config_snapshot(Duration::from_secs(15)).await else {
            if self.cancel.is_cancelled() {
                return (
                    PushOutcome::Failed("shutting down".into()),
                    Disposition::Requeue,
                );
            }
            tracing::error!(
                msg_id = envelope::msg_id(body).unwrap_or(""),
                "system_config/pusher could not be loaded; push_req dropped"
            );
            return (
                PushOutcome::Failed("config not loaded".into()),
                Disposition::Ack,
            );
        };
        let outcome = self.pusher.push(&cfg, body, received).await;
        let disposition = match &outcome {
            // Interrupted by shutdown before it got through: let another instance try.
            PushOutcome::Failed(_) if self.cancel.is_cancelled() => Disposition::Requeue,
            _ => Disposition::Ack,
        };
        (outcome, disposition)
    }

    /// Handles a decoded `reg_success`, retrying transient failures.
    pub async fn reg_success(&self, body: Value) -> (RegOutcome, Disposition) {
        let msg_id = envelope::msg_id(&body).unwrap_or("").to_string();
        let call_id = envelope::call_id(&body).unwrap_or("").to_string();
        let reg = match RegSuccess::from_json(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(msg_id, call_id, error.message = %e, "reg_success unusable; settled");
                return (RegOutcome::Error, Disposition::Ack);
            }
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1u32;
        loop {
            match self.reg_success_once(&reg).await {
                Ok(outcome) => {
                    log_reg_outcome(&reg, outcome);
                    return (outcome, Disposition::Ack);
                }
                Err(e) if e.is_transient() => {
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
                        () = tokio::time::sleep(jitter(delay)) => {}
                        () = self.cancel.cancelled() => {
                            tracing::info!(msg_id, call_id, "shutting down; reg_success returned to the queue");
                            return (RegOutcome::Error, Disposition::Requeue);
                        }
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => {
                    tracing::error!(msg_id, call_id, error.message = %e, "reg_success failed; settled");
                    return (RegOutcome::Error, Disposition::Ack);
                }
            }
        }
    }

    async fn reg_success_once(&self, reg: &RegSuccess) -> Result<RegOutcome, AttemptError> {
        let cfg = self
            .config
            .borrow()
            .clone()
            .ok_or(AttemptError::ConfigNotLoaded)?;
        let (decision, warnings) = reg_success::decide(reg, &cfg.rules, cfg.rfc8599);
        for w in &warnings {
            tracing::warn!(
                msg_id = reg.msg_id.as_deref().unwrap_or(""),
                call_id = reg.call_id.as_deref().unwrap_or(""),
                "reg_success: {w}"
            );
        }
        let (account_db, device_id, update) = match decision {
            RegDecision::NoUserAgentRule => return Ok(RegOutcome::NoRule),
            RegDecision::NoContact(reason) => {
                // A rule matched, so this device should be pushable: say why it is not.
                tracing::warn!(
                    msg_id = reg.msg_id.as_deref().unwrap_or(""),
                    call_id = reg.call_id.as_deref().unwrap_or(""),
                    reason = %short(&reason, 200),
                    "reg_success: Contact unusable; push object not updated"
                );
                return Ok(RegOutcome::NoToken);
            }
            RegDecision::NoToken { .. } => return Ok(RegOutcome::NoToken),
            RegDecision::MissingIds => {
                tracing::warn!(
                    msg_id = reg.msg_id.as_deref().unwrap_or(""),
                    call_id = reg.call_id.as_deref().unwrap_or(""),
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
        if hit {
            metrics.device_cache.inc(&["hit"]);
            if let PushUpdate::Set(push) = &update {
                self.tokens.record(push, &account_db, &device_id).await;
            }
            return Ok(RegOutcome::Unchanged);
        }
        metrics.device_cache.inc(&["miss"]);
        let outcome = self
            .couch
            .update_doc(&account_db, &device_id, MAX_CONFLICTS, |doc| {
                reg_success::apply_update(doc, &update)
            })
            .await?;
        if let Some(ticket) = ticket {
            match &outcome {
                UpdateOutcome::Updated { rev, .. } => {
                    let rev = Some(rev.clone());
                    self.devices
                        .store(&account_db, &device_id, wanted, rev, ticket);
                }
                UpdateOutcome::Unchanged => {
                    self.devices
                        .store(&account_db, &device_id, wanted, None, ticket);
                }
                UpdateOutcome::NotFound => {}
            }
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

/// The provider a request's `Token-Type` names, without a full parse.
fn push_token_provider(body: &Value) -> Option<Provider> {
    let t = body.get("Token-Type").and_then(Value::as_str)?;
    TokenType::parse(t).ok().map(TokenType::provider)
}

fn log_undecodable(msg: &Incoming, e: &DecodeError) {
    tracing::warn!(
        messaging.routing_key = %short(&msg.routing_key, 255),
        body_bytes = msg.data.len(),
        error.message = %e,
        "message cannot be decoded; settled"
    );
}

fn log_reg_outcome(reg: &RegSuccess, outcome: RegOutcome) {
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

/// ±20 % jitter so a fleet of instances does not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let f = rand::rng().random_range(0.8..1.2);
    d.mul_f64(f)
}

/// Truncates hostile-length strings for log lines (on a char boundary).
pub(crate) fn short(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cuts_on_char_boundary() {
        assert_eq!(short("abc", 5), "abc");
        assert_eq!(short("ééé", 3), "é…");
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(800) && j <= Duration::from_millis(1200));
        }
    }

    #[test]
    fn outcome_labels_are_stable() {
        assert_eq!(RegOutcome::NoRule.as_str(), "no_rule");
        assert_eq!(RegOutcome::Updated.as_str(), "updated");
    }
}

//! One delivery, decoded once: body → [`Message`] (`reg_success` | `push_req` |
//! `endpoint_push_req` | other) → the workflow of its class ([`crate::register`],
//! [`crate::push`], [`crate::endpoint`]) → a [`Handled`] for the consumer to settle the
//! delivery with.
//!
//! [`Dispatcher::process`] is the single-step function of the consume loop: tests drive
//! it directly, and the consumer calls it once per delivery. Every path ends in exactly
//! one disposition:
//! - handled, or permanently unusable (bad JSON, unknown event, no rule …) → `Ack`;
//! - interrupted (shutdown, or the AMQP session ended) before it was handled →
//!   `Requeue`, so another instance (or the next session) takes it.

use std::sync::Arc;
use std::time::Instant;

use pusher_core::endpoint_push::{self, EndpointPushReq, ReplyTo};
use pusher_core::envelope::{self, Event};
use pusher_core::legacy_resp::Waiting;
use pusher_core::push_req::{self, Echo, PushFields, PushReq, PushVerdict};
use pusher_core::redelivery::Arrival;
use pusher_core::reg_success::RegSuccess;
use pusher_io::amqp::{self, DecodeError};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::endpoint::Endpoints;
use crate::legacy::LegacyPushResp;
use crate::push::{PushOutcome, Pusher, provider_label};
use crate::register::{RegOutcome, Registrar};
use crate::state::State;

/// How the consumer must settle a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Acknowledge: handled, or settled for good.
    Ack,
    /// Reject with requeue: not handled, let the broker redeliver it.
    Requeue,
    /// Not handled yet: its app is at its in-flight limit. Republished to the deferral
    /// queue (back in the shared queue a moment later), then acked, so it holds no slot
    /// of the prefetch window while it waits.
    Defer,
}

/// A message to publish before the delivery is settled: the `push_resp` a requester
/// asked for with `Pusher-Reply-To` (default exchange), or an `endpoint_push_resp`
/// (`targeted`, to the request's `Server-ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The exchange: `""` (the default one) or `targeted`.
    pub exchange: &'static str,
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
    /// With `Requeue` or `Defer`: hand the message back stamped with this first-seen
    /// time (Unix ms), so the next pusher counts the push's deadline from it.
    pub first_seen_ms: Option<u64>,
}

impl From<Disposition> for Handled {
    fn from(disposition: Disposition) -> Self {
        Handled {
            disposition,
            reply: None,
            first_seen_ms: None,
        }
    }
}

/// A delivery as the dispatcher needs it (plain data, so tests can build one).
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// AMQP `content_type`.
    pub content_type: Option<String>,
    /// AMQP `content_encoding`.
    pub content_encoding: Option<String>,
    /// Routing key (for logs).
    pub routing_key: String,
    /// The broker's `redelivered` flag.
    pub redelivered: bool,
    /// Header `x-pusher-first-seen-ms`: when a pusher first saw this message (Unix ms).
    pub first_seen_ms: Option<u64>,
    /// Header `x-pusher-deferred`: a pusher deferred it (its app was at its limit).
    pub deferred: bool,
    /// Raw body.
    pub data: Vec<u8>,
}

/// Why a `reg_success` cannot be used, with its ids for the log line.
#[derive(Debug)]
pub struct Unusable {
    /// `Msg-ID`.
    pub msg_id: String,
    /// `Call-ID`.
    pub call_id: String,
    /// The parse error.
    pub error: String,
}

/// A decoded message body, by class of work.
#[derive(Debug)]
pub enum Message {
    /// `directory` / `reg_success`, parsed (or why it is unusable).
    RegSuccess(Result<RegSuccess, Unusable>),
    /// `notification` / `push_req`: its envelope, the requester's own timestamp (Unix
    /// ms), the request (or why unusable), and what a legacy `push_resp` would need.
    PushReq(
        Echo,
        Option<u64>,
        Result<Box<PushReq>, String>,
        Option<Waiting>,
    ),
    /// `notification` / `endpoint_push_req` (Kazoo 5): where to answer, and the request
    /// (or why it is unusable).
    EndpointPush(ReplyTo, Result<Box<EndpointPushReq>, String>),
    /// Another event (logged and settled).
    Other {
        /// `Event-Category`.
        category: String,
        /// `Event-Name`.
        name: String,
        /// `Msg-ID`, for the log line.
        msg_id: String,
    },
}

impl Message {
    /// Reads a delivery's body: a `push_req` straight from the bytes into the fields it
    /// uses ([`PushFields`]), anything else (or what that cannot read) as a whole
    /// [`Value`], which also says why a body is undecodable.
    pub fn read(msg: &Incoming) -> Result<Message, DecodeError> {
        let bytes = amqp::body_bytes(
            msg.content_type.as_deref(),
            msg.content_encoding.as_deref(),
            &msg.data,
        )?;
        match PushFields::parse_push_req(&bytes) {
            Some(fields) => Ok(Message::push_req(fields)),
            None => Ok(Message::decode(amqp::json_object(&bytes)?)),
        }
    }

    /// A `push_req` from its fields.
    fn push_req(fields: PushFields) -> Message {
        let echo = Echo::of(&fields);
        let stamped = push_req::requester_timestamp_ms(&fields);
        let waiting = Waiting::of(&fields);
        let req = PushReq::from_fields(fields, crate::clock::unix_ms())
            .map(Box::new)
            .map_err(|e| e.to_string());
        Message::PushReq(echo, stamped, req, waiting)
    }

    /// Classifies and parses a body, once.
    pub fn decode(body: Value) -> Message {
        match envelope::classify(&body) {
            Event::RegSuccess => {
                let msg_id = envelope::msg_id(&body).unwrap_or("").to_string();
                let call_id = envelope::call_id(&body).unwrap_or("").to_string();
                Message::RegSuccess(RegSuccess::from_json(body).map_err(|e| Unusable {
                    msg_id,
                    call_id,
                    error: e.to_string(),
                }))
            }
            Event::PushReq => Message::push_req(PushFields::of(&body)),
            Event::Other { category, name }
                if category == endpoint_push::CATEGORY && name == endpoint_push::REQ_NAME =>
            {
                Message::EndpointPush(
                    ReplyTo::of(&body),
                    EndpointPushReq::from_json(&body, crate::clock::unix_ms())
                        .map(Box::new)
                        .map_err(|e| e.to_string()),
                )
            }
            Event::Other { category, name } => Message::Other {
                msg_id: envelope::msg_id(&body).unwrap_or("").to_string(),
                category,
                name,
            },
        }
    }
}

/// Handles messages; cheap to clone into each delivery task.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    registrar: Arc<Registrar>,
    pusher: Arc<Pusher>,
    legacy: Arc<LegacyPushResp>,
    endpoints: Arc<Endpoints>,
    state: Arc<State>,
    node: Arc<str>,
}

impl Dispatcher {
    /// A dispatcher handing registrations to `registrar` and pushes to `pusher` (and to
    /// `legacy` the requests a `kazoo_query` waits on, and Kazoo 5's endpoint pushes to
    /// `endpoints`); `node` is our name in `push_resp`.
    pub fn new(
        registrar: Arc<Registrar>,
        pusher: Arc<Pusher>,
        legacy: Arc<LegacyPushResp>,
        endpoints: Arc<Endpoints>,
        state: Arc<State>,
        node: &str,
    ) -> Self {
        Self {
            registrar,
            pusher,
            legacy,
            endpoints,
            state,
            node: node.into(),
        }
    }

    /// The legacy `push_resp`, whose link each AMQP session runs.
    pub fn legacy(&self) -> &Arc<LegacyPushResp> {
        &self.legacy
    }

    /// Handles one delivery and says how to settle it (and what to reply, if asked).
    /// `cancel` interrupts the work (shutdown, or the delivery's session ended).
    pub async fn process(&self, msg: &Incoming, cancel: &CancellationToken) -> Handled {
        let received = Instant::now();
        let m = &self.state.metrics;
        let message = match Message::read(msg) {
            Ok(message) => message,
            Err(e) => {
                m.consumed.inc(&["undecodable"]);
                log_undecodable(msg, &e);
                return Disposition::Ack.into();
            }
        };
        match message {
            Message::RegSuccess(reg) => {
                m.consumed.inc(&["reg_success"]);
                let (outcome, disposition) = match reg {
                    Ok(reg) => self.registrar.register(&reg, cancel).await,
                    Err(u) => {
                        tracing::warn!(msg_id = u.msg_id, call_id = u.call_id,
                            error.message = %u.error, "reg_success unusable; settled");
                        (RegOutcome::Error, Disposition::Ack)
                    }
                };
                m.reg_success.inc(&[outcome.as_str()]);
                disposition.into()
            }
            Message::PushReq(echo, stamped, req, waiting) => {
                m.consumed.inc(&["push_req"]);
                // Before the push is sent, so the woken device cannot register first.
                if let (Ok(_), Some(waiting)) = (&req, waiting) {
                    self.legacy.remember(waiting).await;
                }
                let arrival = Arrival {
                    received,
                    redelivered: msg.redelivered,
                    stamped_ms: [stamped, msg.first_seen_ms].into_iter().flatten().min(),
                    deferred: msg.deferred,
                };
                let (outcome, provider) = match req {
                    Ok(req) => (
                        self.pusher.push(&req, arrival, cancel).await,
                        provider_label(req.provider()),
                    ),
                    Err(e) => (self.unusable_push(&echo, e, received), ""),
                };
                let disposition = match &outcome {
                    // Interrupted before it got through: let another instance try.
                    PushOutcome::Failed(_) if cancel.is_cancelled() => Disposition::Requeue,
                    PushOutcome::Deferred => Disposition::Defer,
                    _ => Disposition::Ack,
                };
                let reply = echo
                    .reply_to
                    .clone()
                    .filter(|_| disposition == Disposition::Ack)
                    .map(|routing_key| Reply {
                        exchange: "",
                        body: self.push_resp(&echo, &outcome, provider, received),
                        routing_key,
                    });
                // A push handed back carries when it was first seen, so its deadline
                // keeps counting from there (the redelivery rule).
                let first_seen_ms = (disposition != Disposition::Ack).then(|| {
                    let here = crate::clock::unix_ms()
                        .saturating_sub(received.elapsed().as_millis() as u64);
                    msg.first_seen_ms.map_or(here, |ms| ms.min(here))
                });
                Handled {
                    disposition,
                    reply,
                    first_seen_ms,
                }
            }
            Message::EndpointPush(reply_to, req) => {
                m.consumed.inc(&["endpoint_push_req"]);
                let arrival = Arrival {
                    received,
                    redelivered: msg.redelivered,
                    stamped_ms: msg.first_seen_ms,
                    deferred: false,
                };
                self.endpoints.process(reply_to, req, arrival, cancel).await
            }
            Message::Other {
                category,
                name,
                msg_id,
            } => {
                m.consumed.inc(&["other"]);
                tracing::info!(
                    messaging.routing_key = %short(&msg.routing_key, 200),
                    msg_id = %short(&msg_id, 64),
                    event.category = %short(&category, 64),
                    event.name = %short(&name, 64),
                    "event not handled by the pusher; settled"
                );
                Disposition::Ack.into()
            }
        }
    }

    /// A `push_req` whose fields cannot make a push: one log line, counted, settled.
    fn unusable_push(&self, echo: &Echo, error: String, received: Instant) -> PushOutcome {
        tracing::warn!(msg_id = echo.msg_id.as_deref().unwrap_or(""),
            error.message = %error, "push_req unusable; dropped");
        self.state
            .metrics
            .push_done("none", "other", "dropped", received.elapsed());
        PushOutcome::Dropped(error)
    }

    /// The `push_resp` body for a requester that asked for the verdict.
    fn push_resp(
        &self,
        echo: &Echo,
        outcome: &PushOutcome,
        provider: &'static str,
        received: Instant,
    ) -> Vec<u8> {
        let provider = match outcome {
            PushOutcome::Dropped(_) | PushOutcome::Failed(_) => "",
            _ => provider,
        };
        let verdict = PushVerdict {
            status: outcome.status(),
            reason: outcome.reason(),
            provider,
            elapsed_ms: received.elapsed().as_millis() as u64,
        };
        let resp = push_req::push_resp(echo, &verdict, &self.node, env!("CARGO_PKG_VERSION"));
        serde_json::to_vec(&resp).unwrap_or_default()
    }
}

fn log_undecodable(msg: &Incoming, e: &DecodeError) {
    tracing::warn!(
        messaging.routing_key = %short(&msg.routing_key, 255),
        body_bytes = msg.data.len(),
        error.message = %e,
        "message cannot be decoded; settled"
    );
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
    use serde_json::json;

    #[test]
    fn short_cuts_on_char_boundary() {
        assert_eq!(short("abc", 5), "abc");
        assert_eq!(short("ééé", 3), "é…");
    }

    #[test]
    fn decode_classifies_once_and_keeps_the_envelope_of_unusable_pushes() {
        let body = json!({"Event-Category": "notification", "Event-Name": "push_req",
            "Msg-ID": "m1", "Pusher-Reply-To": "q1"});
        let Message::PushReq(echo, _, req, _) = Message::decode(body) else {
            panic!("a push_req");
        };
        assert_eq!(echo.msg_id.as_deref(), Some("m1"));
        assert_eq!(echo.reply_to.as_deref(), Some("q1"));
        assert!(req.is_err(), "no token fields");
        let other = Message::decode(json!({"Event-Category": "x", "Event-Name": "y"}));
        assert!(matches!(other, Message::Other { .. }));
        let reg =
            Message::decode(json!({"Event-Category": "directory", "Event-Name": "reg_success"}));
        assert!(matches!(reg, Message::RegSuccess(_)));
    }
}

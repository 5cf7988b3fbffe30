//! AMQP adapter: the only code that speaks lapin. Kazoo's pusher topology, the shared
//! queue's manual-ack consumer, body decoding, a confirming publisher and reply queues.
//!
//! - [`topology`]: exchanges, queue and bindings, byte-compatible with the Erlang pusher
//!   (spec §1.1–1.3): the same arguments *and argument types*, so an Erlang pusher and
//!   this one can declare and consume the queue at the same time (RabbitMQ refuses a
//!   re-declare whose arguments differ).
//! - [`session`]: [`Broker`] (one connection), its [`Consumer`] of the shared queue and
//!   the [`Delivery`] it yields, which is settled exactly once ([`Settle`]).
//! - [`publish`]: [`Publisher`] with broker confirms; [`ReplyQueue`] for a requester
//!   that waits for an answer (`pusherctl push`).
//! - [`decode`]: a body per its content type/encoding into a JSON object.
//! - the opt-in legacy `push_resp` adds one fanout exchange of ours,
//!   [`EXCHANGE_LEGACY`], and a private queue per instance bound to it
//!   ([`declare_legacy_link`], [`LegacyLink`]); Kazoo's queue and bindings are untouched.
//!
//! The service never sees a lapin type: it gets plain data and settle-once handles.
//! [`connect`] still hands out a raw `lapin::Connection` for independent clients (tests,
//! the benchmark, the sandbox's replay tool) that play Kamailio or an Erlang pusher.

mod decode;
mod publish;
mod session;
mod tls;
mod topology;

pub use decode::{DecodeError, MAX_BODY_BYTES, body_bytes, decode_body, json_object};
pub use publish::{Publisher, ReplyQueue};
pub use session::{Broker, Consumer, Delivery, LegacyLink, QueueState, Replier, Settle};
pub use topology::{
    check_uri, connect, connect_uri, consume, declare_deferral, declare_exchanges,
    declare_extra_bindings, declare_legacy_link, declare_topology, deferral_arguments,
    queue_arguments,
};

/// Shared queue name, identical on every pusher node (Erlang or Rust).
pub const QUEUE: &str = "pusher_shared_listener";
/// Exchange Kamailio publishes `push_req` to.
pub const EXCHANGE_PUSHES: &str = "pushes";
/// Exchange Kamailio publishes `reg_success` to.
pub const EXCHANGE_REGISTRAR: &str = "registrar";
/// Direct exchange for replies addressed by `Server-ID`.
pub const EXCHANGE_TARGETED: &str = "targeted";
/// Fanout exchange of this project (not Kazoo's) through which pusher instances tell
/// each other that a token registered, for the opt-in legacy `push_resp`: each
/// instance binds a queue of its own to it ([`Broker::legacy_link`]).
pub const EXCHANGE_LEGACY: &str = "pusher.legacy_push_resp";
/// Binding key for `push_req` (`notification.push.<type>.<token>`).
pub const KEY_PUSH: &str = "notification.push.*.*";
/// Binding key for `reg_success` (`registration.success.<realm>.<user>`).
pub const KEY_REG_SUCCESS: &str = "registration.success.*.*";
/// Queue of this project (not Kazoo's) where a push waits a moment when its app is at its
/// in-flight limit, instead of holding a slot of the prefetch window: its messages expire
/// after [`DEFER_TTL_MS`] and are dead-lettered back to [`QUEUE`].
pub const QUEUE_DEFERRED: &str = "pusher_deferred";
/// How long a deferred push waits in [`QUEUE_DEFERRED`] (ms).
pub const DEFER_TTL_MS: i32 = 500;
/// Most messages [`QUEUE_DEFERRED`] holds (the oldest go back to [`QUEUE`] early).
pub const DEFER_MAX_LENGTH: i32 = 10_000;
/// Kazoo's default `x-max-length` for every queue.
pub const QUEUE_MAX_LENGTH: i16 = 100;
/// Kazoo's default `x-message-ttl` (ms) for every queue.
pub const QUEUE_MESSAGE_TTL_MS: i32 = 60_000;
/// Errors of the AMQP adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Broker or protocol error (connection, channel, declare, consume, publish).
    #[error("AMQP {op} failed: {source}")]
    Broker {
        /// What we were doing.
        op: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// A broker URI that cannot be used (it is never quoted: it may hold a password).
    #[error("broker URI {0}")]
    Uri(#[source] pusher_core::amqp_uri::Error),
    /// The TLS options of an `amqps://` URI cannot be used (a file that cannot be read,
    /// a key that does not match its certificate, …).
    #[error("broker TLS: {0}")]
    Tls(String),
    /// The broker did not confirm a publish.
    #[error("publish of {routing_key} to {exchange} was not confirmed by the broker")]
    NotConfirmed {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn broker(op: &'static str) -> impl FnOnce(lapin::Error) -> Error {
    move |source| Error::Broker { op, source }
}

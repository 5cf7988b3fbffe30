//! AMQP adapter: Kazoo's pusher topology, consuming with manual ack, body decoding, and
//! a small publisher (used by the CLI, the demo and tests).
//!
//! The topology is byte-compatible with the Erlang pusher (spec §1.1–1.3): the same
//! exchanges, the same shared queue with the same arguments *and argument types*, and the
//! same bindings, so an Erlang pusher and this one can declare and consume the queue at
//! the same time (RabbitMQ refuses a re-declare whose arguments differ).

use std::io::Read;

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde_json::Value;

/// Shared queue name, identical on every pusher node (Erlang or Rust).
pub const QUEUE: &str = "pusher_shared_listener";
/// Exchange Kamailio publishes `push_req` to.
pub const EXCHANGE_PUSHES: &str = "pushes";
/// Exchange Kamailio publishes `reg_success` to.
pub const EXCHANGE_REGISTRAR: &str = "registrar";
/// Direct exchange for replies addressed by `Server-ID`.
pub const EXCHANGE_TARGETED: &str = "targeted";
/// Binding key for `push_req` (`notification.push.<type>.<token>`).
pub const KEY_PUSH: &str = "notification.push.*.*";
/// Binding key for `reg_success` (`registration.success.<realm>.<user>`).
pub const KEY_REG_SUCCESS: &str = "registration.success.*.*";
/// Kazoo's default `x-max-length` for every queue.
pub const QUEUE_MAX_LENGTH: i16 = 100;
/// Kazoo's default `x-message-ttl` (ms) for every queue.
pub const QUEUE_MESSAGE_TTL_MS: i32 = 60_000;
/// Largest body accepted, compressed or not (Kamailio messages are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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

/// Why a delivery's body could not be turned into a JSON object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Content type other than `application/json` (Kazoo also allows
    /// `application/erlang`, which no Kamailio sends).
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    /// Content encoding other than none/identity/gzip.
    #[error("unsupported content encoding {0:?}")]
    ContentEncoding(String),
    /// Body larger than [`MAX_BODY_BYTES`] (before or after gunzip).
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// gzip stream invalid.
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    /// Not JSON, or JSON but not an object.
    #[error("invalid JSON body: {0}")]
    Json(String),
}

/// Decodes a delivery body per its AMQP properties: `application/json` (or no content
/// type), optionally `content_encoding: gzip`, at most [`MAX_BODY_BYTES`], a JSON object.
pub fn decode_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    data: &[u8],
) -> Result<Value, DecodeError> {
    // An empty content type is the same as none (some publishers set "").
    if let Some(ct) = content_type.filter(|ct| !ct.trim().is_empty()) {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(DecodeError::ContentType(ct.to_string()));
        }
    }
    if data.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let inflated;
    let bytes = match content_encoding.map(str::trim) {
        None | Some("") => data,
        Some(e) if e.eq_ignore_ascii_case("identity") => data,
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(data)
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| DecodeError::Gzip(e.to_string()))?;
            if out.len() > MAX_BODY_BYTES {
                return Err(DecodeError::TooLarge);
            }
            inflated = out;
            &inflated
        }
        Some(other) => return Err(DecodeError::ContentEncoding(other.to_string())),
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(DecodeError::Json("not a JSON object".into())),
        Err(e) => Err(DecodeError::Json(e.to_string())),
    }
}

/// The queue arguments Kazoo adds to every queue, with Kazoo's AMQP field types
/// (`short` for `x-max-length`, `signedint` for `x-message-ttl`).
pub fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::ShortInt(QUEUE_MAX_LENGTH));
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongInt(QUEUE_MESSAGE_TTL_MS),
    );
    args
}

/// Connects to the broker. `name` is shown in the management UI as the connection name.
pub async fn connect(uri: &str, name: &str) -> Result<Connection> {
    // One attempt per call: the service's own supervisor owns backoff and readiness,
    // so lapin must not sit in a retry loop of its own on the initial connect.
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .configure_backoff(|b| b.with_max_times(0));
    Connection::connect(uri, props)
        .await
        .map_err(broker("connect"))
}

/// Declares the exchanges Kamailio publishes to (Kamailio never declares them itself)
/// and `targeted`. All non-durable, as Kazoo declares them.
pub async fn declare_exchanges(channel: &Channel) -> Result<()> {
    // durable=false, auto_delete=false, internal=false, passive=false: Kazoo's
    // kz_amqp_util:new_exchange/3 defaults. A mismatch would make the broker refuse
    // the declare of whichever side comes second.
    let opts = ExchangeDeclareOptions::default();
    for (name, kind) in [
        (EXCHANGE_PUSHES, ExchangeKind::Topic),
        (EXCHANGE_REGISTRAR, ExchangeKind::Topic),
        (EXCHANGE_TARGETED, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(name.into(), kind, opts, FieldTable::default())
            .await
            .map_err(broker("exchange.declare"))?;
    }
    Ok(())
}

/// Declares the exchanges, the shared queue and its three bindings (spec §1.1–1.3).
pub async fn declare_topology(channel: &Channel) -> Result<()> {
    declare_exchanges(channel).await?;
    let opts = QueueDeclareOptions {
        passive: false,
        durable: false,
        exclusive: false,
        // auto_delete=true: Kazoo's default; the queue goes when the last pusher leaves.
        auto_delete: true,
        nowait: false,
    };
    channel
        .queue_declare(QUEUE.into(), opts, queue_arguments())
        .await
        .map_err(broker("queue.declare"))?;
    for (exchange, key) in [
        (EXCHANGE_TARGETED, QUEUE),
        (EXCHANGE_PUSHES, KEY_PUSH),
        (EXCHANGE_REGISTRAR, KEY_REG_SUCCESS),
    ] {
        channel
            .queue_bind(
                QUEUE.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker("queue.bind"))?;
    }
    Ok(())
}

/// Sets the prefetch and starts a non-exclusive, manual-ack consumer on the shared queue.
pub async fn consume(channel: &Channel, prefetch: u16, tag: &str) -> Result<Consumer> {
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(broker("basic.qos"))?;
    // no_ack=false: unlike the Erlang app (auto-ack), a message is acked only after it
    // was handled. exclusive=false: every pusher node consumes the same queue.
    let opts = BasicConsumeOptions {
        no_local: false,
        no_ack: false,
        exclusive: false,
        nowait: false,
    };
    channel
        .basic_consume(QUEUE.into(), tag.into(), opts, FieldTable::default())
        .await
        .map_err(broker("basic.consume"))
}

/// A publisher with broker confirms, for the CLI, the demo and tests.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a confirm-mode channel on `conn`.
    pub async fn new(conn: &Connection) -> Result<Self> {
        let channel = conn
            .create_channel()
            .await
            .map_err(broker("channel.open"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(broker("confirm.select"))?;
        Ok(Self { channel })
    }

    /// The underlying channel (e.g. to declare a reply queue).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `body` as `application/json` and waits for the broker's confirm.
    pub async fn publish_json(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        let props = properties.with_content_type(ShortString::from("application/json"));
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .map_err(broker("basic.publish"))?
            .await
            .map_err(broker("basic.publish confirm"))?;
        if confirm.is_ack() {
            Ok(())
        } else {
            Err(Error::NotConfirmed {
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn decodes_plain_and_gzip_json() {
        let body = br#"{"Event-Name":"reg_success"}"#;
        let v = decode_body(Some("application/json"), None, body).expect("plain");
        assert_eq!(v["Event-Name"], "reg_success");
        let v = decode_body(Some("application/json"), Some("gzip"), &gzip(body)).expect("gzip");
        assert_eq!(v["Event-Name"], "reg_success");
        assert!(decode_body(None, None, body).is_ok());
        assert!(decode_body(Some("application/json; charset=utf-8"), None, body).is_ok());
        assert!(
            decode_body(Some(""), None, body).is_ok(),
            "empty = no content type"
        );
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(
            decode_body(Some("application/erlang"), None, b"x"),
            Err(DecodeError::ContentType("application/erlang".into()))
        );
        assert!(matches!(
            decode_body(None, Some("br"), b"{}"),
            Err(DecodeError::ContentEncoding(_))
        ));
        assert!(matches!(
            decode_body(None, Some("gzip"), b"not gzip"),
            Err(DecodeError::Gzip(_))
        ));
        assert!(matches!(
            decode_body(None, None, b"[1,2]"),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            decode_body(None, None, &[0xff, 0xfe, b'{']),
            Err(DecodeError::Json(_))
        ));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(decode_body(None, None, &big), Err(DecodeError::TooLarge));
    }

    #[test]
    fn gzip_bomb_is_bounded() {
        let zeros = vec![b' '; MAX_BODY_BYTES * 4];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < MAX_BODY_BYTES);
        assert_eq!(
            decode_body(None, Some("gzip"), &bomb),
            Err(DecodeError::TooLarge)
        );
    }

    #[test]
    fn queue_arguments_have_kazoo_types() {
        let args = queue_arguments();
        let inner = args.inner();
        assert_eq!(inner.get("x-max-length"), Some(&AMQPValue::ShortInt(100)));
        assert_eq!(
            inner.get("x-message-ttl"),
            Some(&AMQPValue::LongInt(60_000))
        );
    }
}

//! One broker connection as the service uses it: consume the shared queue, publish
//! replies, and settle each delivery exactly once.

use futures_util::StreamExt as _;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};

use super::publish::publish_on;
use super::{EXCHANGE_LEGACY, EXCHANGE_TARGETED, Publisher, ReplyQueue, Result, broker, topology};

/// One connection to a broker.
#[derive(Debug)]
pub struct Broker {
    conn: Connection,
}

/// What a passive declare says of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Messages ready for delivery (not counting unacked ones).
    pub ready: u32,
    /// Consumers attached.
    pub consumers: u32,
}

impl Broker {
    /// Connects once (no retry loop of lapin's own: callers own backoff) to an `amqp://`
    /// or `amqps://` URI (TLS options: [`pusher_core::amqp_uri`]). `name` is the
    /// connection name the broker shows.
    pub async fn connect(uri: &str, name: &str) -> Result<Self> {
        Ok(Self {
            conn: topology::connect(uri, name).await?,
        })
    }

    /// Declares Kazoo's topology (and the `extra` bindings, exchange + routing key) on a
    /// new channel and starts a manual-ack consumer of the shared queue with `prefetch`
    /// unacked deliveries at most.
    pub async fn consume_shared(
        &self,
        prefetch: u16,
        extra: &[(String, String)],
    ) -> Result<Consumer> {
        let channel = self.channel().await?;
        topology::declare_topology(&channel).await?;
        topology::declare_extra_bindings(&channel, extra).await?;
        let inner = topology::consume(&channel, prefetch, "").await?;
        Ok(Consumer {
            tag: inner.tag().to_string(),
            channel,
            inner,
        })
    }

    /// A confirm-mode publisher on a channel of its own.
    pub async fn publisher(&self) -> Result<Publisher> {
        Publisher::new(&self.conn).await
    }

    /// A private, server-named reply queue (exclusive, auto-delete) and its consumer.
    pub async fn reply_queue(&self) -> Result<ReplyQueue> {
        ReplyQueue::declare(self.channel().await?).await
    }

    /// The link of the opt-in legacy `push_resp`, on a channel of its own: the
    /// instances' fanout exchange, a private queue of ours bound to it and consumed.
    pub async fn legacy_link(&self) -> Result<LegacyLink> {
        let channel = self.channel().await?;
        let queue = topology::declare_legacy_link(&channel).await?;
        // no_ack: an announcement is a hint worth seconds; one lost with a connection
        // only means an unanswered kazoo_query (Kamailio's own timeout handles that).
        let inner = consume_private(&channel, &queue, "basic.consume").await?;
        Ok(LegacyLink { channel, inner })
    }

    /// Ready messages and consumers of `queue`, or `None` when it does not exist. Uses a
    /// throw-away channel, since a passive declare of a missing queue closes its channel.
    pub async fn queue_state(&self, queue: &str) -> Result<Option<QueueState>> {
        let probe = self.channel().await?;
        let declared = probe
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let state = declared.ok().map(|q| QueueState {
            ready: q.message_count(),
            consumers: q.consumer_count(),
        });
        if state.is_some() {
            let _ = probe.close(200, "probe done".into()).await;
        }
        Ok(state)
    }

    /// Closes the connection; whatever is still unacked returns to its queue.
    pub async fn close(&self, reason: &str) {
        let _ = self.conn.close(200, reason.into()).await;
    }

    async fn channel(&self) -> Result<Channel> {
        self.conn
            .create_channel()
            .await
            .map_err(broker("channel.open"))
    }
}

/// The manual-ack consumer of the shared queue.
#[derive(Debug)]
pub struct Consumer {
    channel: Channel,
    inner: lapin::Consumer,
    tag: String,
}

impl Consumer {
    /// The consumer tag the broker assigned.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The next delivery; `None` when the broker cancelled the consumer, `Err` when the
    /// channel or connection failed.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        let next = self.inner.next().await?;
        Some(
            next.map(Delivery::from_lapin)
                .map_err(broker("basic.consume stream")),
        )
    }

    /// Stops deliveries (the first step of a drain).
    pub async fn cancel(&self) -> Result<()> {
        self.channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await
            .map_err(broker("basic.cancel"))
    }

    /// Closes the channel: unacked deliveries return to the queue.
    pub async fn close(&self, reason: &str) {
        let _ = self.channel.close(200, reason.into()).await;
    }

    /// A handle that publishes replies on this consumer's channel, for handler tasks.
    pub fn replier(&self) -> Replier {
        Replier {
            channel: self.channel.clone(),
        }
    }
}

/// Publishes the replies requesters asked for, on the consumer's channel.
#[derive(Debug, Clone)]
pub struct Replier {
    channel: Channel,
}

impl Replier {
    /// Publishes `body` as `application/json`, transient, on the default exchange to
    /// queue `routing_key` (a `push_resp` a requester asked for). No confirm: a
    /// requester that went away must not hold up the ack.
    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<()> {
        self.publish_to("", routing_key, body).await
    }

    /// Like [`Replier::publish`], on `exchange` (`targeted` for a Kazoo reply to a
    /// `Server-ID`).
    pub async fn publish_to(&self, exchange: &str, routing_key: &str, body: &[u8]) -> Result<()> {
        publish_on(&self.channel, exchange, routing_key, body, json_props())
            .await
            .map(drop)
    }

    /// Hands a message back to `queue` as a new copy on the default exchange, with the
    /// integer `headers` (the time a pusher first saw it, the deferral mark): a plain
    /// requeue cannot carry them, and the next pusher needs them to count the deadline
    /// from the first sighting. Publish first, then ack the original: a crash in between
    /// duplicates the message, never loses it.
    pub async fn republish_stamped(
        &self,
        queue: &str,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: &[u8],
        headers: &[(&str, i64)],
    ) -> Result<()> {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), AMQPValue::LongLongInt(*value));
        }
        let mut props = BasicProperties::default().with_headers(table);
        if let Some(t) = content_type {
            props = props.with_content_type(ShortString::from(t));
        }
        if let Some(e) = content_encoding {
            props = props.with_content_encoding(ShortString::from(e));
        }
        publish_on(&self.channel, "", queue, body, props)
            .await
            .map(drop)
    }
}

/// `application/json`, transient.
fn json_props() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(1)
}

/// Consumes `queue` of our own (exclusive, no ack): replies and announcements, which are
/// worth nothing once their consumer is gone.
pub(super) async fn consume_private(
    channel: &Channel,
    queue: &str,
    op: &'static str,
) -> Result<lapin::Consumer> {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(broker(op))
}

/// The opt-in legacy `push_resp`'s own channel: announcements in and out through the
/// instances' fanout exchange, and answers to `targeted`.
#[derive(Debug)]
pub struct LegacyLink {
    channel: Channel,
    inner: lapin::Consumer,
}

impl LegacyLink {
    /// The body of the next announcement (ours included); `None` when the broker
    /// cancelled the consumer, `Err` when the channel or connection failed.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>>> {
        let next = self.inner.next().await?;
        Some(next.map(|d| d.data).map_err(broker("basic.consume stream")))
    }

    /// Tells every instance (this one too): publishes `body` to [`EXCHANGE_LEGACY`].
    pub async fn announce(&self, body: &[u8]) -> Result<()> {
        self.publish(EXCHANGE_LEGACY, "", body).await
    }

    /// Answers a `kazoo_query`: publishes `body` to exchange `targeted` with routing key
    /// `server_id`, as Kazoo's `targeted_publish` does (spec §2.2, §4).
    pub async fn answer(&self, server_id: &str, body: &[u8]) -> Result<()> {
        self.publish(EXCHANGE_TARGETED, server_id, body).await
    }

    /// Closes the channel (its queue goes with it).
    pub async fn close(&self) {
        let _ = self.channel.close(200, "legacy link done".into()).await;
    }

    async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) -> Result<()> {
        publish_on(&self.channel, exchange, routing_key, body, json_props())
            .await
            .map(drop)
    }
}

/// One message from the shared queue: its data, and the handle that settles it.
#[derive(Debug)]
pub struct Delivery {
    /// Routing key it was published with.
    pub routing_key: String,
    /// AMQP `content_type`.
    pub content_type: Option<String>,
    /// AMQP `content_encoding`.
    pub content_encoding: Option<String>,
    /// Whether the broker delivered it before (to us or to another consumer).
    pub redelivered: bool,
    /// Integer headers of the message (`x-…` stamps), by name.
    pub int_headers: Vec<(String, i64)>,
    /// The raw body.
    pub data: Vec<u8>,
    /// Settles the delivery, once.
    pub settle: Settle,
}

impl Delivery {
    fn from_lapin(d: lapin::message::Delivery) -> Self {
        let props = &d.properties;
        let int_headers = props
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .filter_map(|(k, v)| int_value(v).map(|n| (k.to_string(), n)))
                    .collect()
            })
            .unwrap_or_default();
        Delivery {
            routing_key: d.routing_key.to_string(),
            content_type: props.content_type().as_ref().map(|s| s.to_string()),
            content_encoding: props.content_encoding().as_ref().map(|s| s.to_string()),
            redelivered: d.redelivered,
            int_headers,
            data: d.data,
            settle: Settle { acker: d.acker },
        }
    }

    /// The integer header `name`, if the message has one.
    pub fn int_header(&self, name: &str) -> Option<i64> {
        self.int_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

fn int_value(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// Settles one delivery. Each method consumes it, so a delivery is settled at most once;
/// one dropped unsettled goes back to the queue when its channel closes.
#[derive(Debug)]
pub struct Settle {
    acker: Acker,
}

impl Settle {
    /// Acknowledges: handled, or settled for good.
    pub async fn ack(self) -> Result<()> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(broker("basic.ack"))
    }

    /// Rejects with requeue: the broker delivers it again (here or elsewhere).
    pub async fn requeue(self) -> Result<()> {
        self.acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .map(drop)
            .map_err(broker("basic.nack"))
    }
}

//! A publisher with broker confirms (the CLI, the demo, tests) and the reply queue of a
//! requester that waits for an answer.

use futures_util::StreamExt as _;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use super::{Error, Result, broker};

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

    /// Publishes `body` as `application/json` with no other property and waits for the
    /// broker's confirm.
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) -> Result<()> {
        self.publish_json(exchange, routing_key, body, BasicProperties::default())
            .await
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
        if publish_on(&self.channel, exchange, routing_key, body, props)
            .await?
            .is_ack()
        {
            Ok(())
        } else {
            Err(Error::NotConfirmed {
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
            })
        }
    }
}

/// `basic.publish`, then the broker's confirm. On a channel in confirm mode ([`Publisher`])
/// that waits for the broker's ack or nack; on any other (the [`super::Replier`]'s) the
/// answer is `NotRequested` at once, so a requester that went away holds nothing up.
pub(super) async fn publish_on(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<Confirmation> {
    channel
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
        .map_err(broker("basic.publish confirm"))
}

/// A private reply queue: server-named, exclusive to this connection and auto-delete, so
/// nothing outlives the requester. Consumed without acks (a reply matters once, to us).
#[derive(Debug)]
pub struct ReplyQueue {
    channel: Channel,
    name: String,
    consumer: lapin::Consumer,
}

impl ReplyQueue {
    pub(super) async fn declare(channel: Channel) -> Result<Self> {
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(broker("queue.declare (reply queue)"))?;
        let name = queue.name().to_string();
        let consumer =
            super::session::consume_private(&channel, &name, "basic.consume (reply queue)").await?;
        Ok(Self {
            channel,
            name,
            consumer,
        })
    }

    /// The queue's name: what a request carries so that the answer finds us.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Also routes `routing_key` of `exchange` here (e.g. `targeted` + our `Server-ID`).
    pub async fn bind(&self, exchange: &str, routing_key: &str) -> Result<()> {
        self.channel
            .queue_bind(
                self.name.as_str().into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker("queue.bind (reply queue)"))
    }

    /// The next reply's body; `None` when the broker closed the queue or channel.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        match self.consumer.next().await? {
            Ok(d) => Some(d.data),
            Err(_) => None,
        }
    }
}

//! Kazoo's pusher topology (spec §1.1–1.3): exchanges, the shared queue with Kazoo's
//! arguments *and argument types*, its bindings, and the manual-ack consumer on it.

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use super::{
    EXCHANGE_LEGACY, EXCHANGE_PUSHES, EXCHANGE_REGISTRAR, EXCHANGE_TARGETED, KEY_PUSH,
    KEY_REG_SUCCESS, QUEUE, QUEUE_MAX_LENGTH, QUEUE_MESSAGE_TTL_MS, Result, broker,
};

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

/// Declares the instances' fanout exchange [`EXCHANGE_LEGACY`] and a private queue of
/// this instance bound to it; returns the queue's (server-generated) name.
///
/// Kazoo's shared queue cannot carry this: each of its messages reaches one instance,
/// and an announcement must reach all. Nothing of Kazoo's topology changes.
pub async fn declare_legacy_link(channel: &Channel) -> Result<String> {
    // Fanout: every bound queue gets every announcement. durable=false like Kazoo's
    // exchanges; auto_delete=false, so the exchange never vanishes between one
    // instance's unbind and another's publish (a publish to a missing exchange closes
    // the channel).
    channel
        .exchange_declare(
            EXCHANGE_LEGACY.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker("exchange.declare"))?;
    // Server-named, exclusive (only this connection uses it, and it goes with the
    // connection), auto_delete (gone when our consumer goes); a short TTL and length
    // cap because an announcement is only worth anything for seconds.
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
    args.insert("x-max-length".into(), AMQPValue::LongInt(10_000));
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                passive: false,
                durable: false,
                exclusive: true,
                auto_delete: true,
                nowait: false,
            },
            args,
        )
        .await
        .map_err(broker("queue.declare"))?;
    let name = queue.name().to_string();
    channel
        .queue_bind(
            name.as_str().into(),
            EXCHANGE_LEGACY.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker("queue.bind"))?;
    Ok(name)
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

#[cfg(test)]
mod tests {
    use super::*;

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

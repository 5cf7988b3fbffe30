//! Kazoo's pusher topology (spec §1.1–1.3): exchanges, the shared queue with Kazoo's
//! arguments *and argument types*, its bindings, and the manual-ack consumer on it; and
//! the connection itself, plain or TLS ([`connect`]).

use std::io;
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::tcp::AsyncTcpStream;
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use pusher_core::amqp_uri::{AmqpUri, Verify};

use super::tls::{self, TlsClient};
use super::{
    DEFER_MAX_LENGTH, DEFER_TTL_MS, EXCHANGE_LEGACY, EXCHANGE_PUSHES, EXCHANGE_REGISTRAR,
    EXCHANGE_TARGETED, Error, KEY_PUSH, KEY_REG_SUCCESS, QUEUE, QUEUE_DEFERRED, QUEUE_MAX_LENGTH,
    QUEUE_MESSAGE_TTL_MS, Result, broker,
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

/// Connects to the broker at `uri` (`amqp://` or `amqps://` with Erlang `amqp_uri`'s TLS
/// options, see [`pusher_core::amqp_uri`]). `name` is shown in the management UI as the
/// connection name.
pub async fn connect(uri: &str, name: &str) -> Result<Connection> {
    connect_uri(&AmqpUri::parse(uri).map_err(Error::Uri)?, name).await
}

/// Checks a broker URI as [`connect`] would use it, without connecting: the URI and its
/// options, and for `amqps://` the files it names (read and parsed now).
pub fn check_uri(uri: &str) -> Result<AmqpUri> {
    let parsed = AmqpUri::parse(uri).map_err(Error::Uri)?;
    parse_client_uri(&parsed)?;
    if let Some(opts) = parsed.tls() {
        TlsClient::load(opts, parsed.host())?;
    }
    Ok(parsed)
}

/// [`connect`] with a parsed URI.
pub async fn connect_uri(uri: &AmqpUri, name: &str) -> Result<Connection> {
    // One attempt per call: the service's own supervisor owns backoff and readiness,
    // so lapin must not sit in a retry loop of its own on the initial connect.
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .configure_backoff(|b| b.with_max_times(0));
    let client_uri = parse_client_uri(uri)?;
    let Some(opts) = uri.tls() else {
        return Connection::connect_uri(client_uri, props)
            .await
            .map_err(broker("connect"));
    };
    if opts.verify == Verify::None {
        // At every connect, not once: an operator must not forget it is on.
        tracing::warn!(broker = %uri.redacted(),
            "TLS certificate verification is OFF for this broker (verify=verify_none): \
             anyone on the path can read and change the traffic");
    }
    // The files are read at every connect, so a renewed certificate is used at the next
    // reconnect without a restart.
    let tls = TlsClient::load(opts, uri.host())?;
    let (host, port) = (uri.host().to_string(), uri.port());
    let shown = format!("{host}:{port}");
    let runtime = lapin::runtime::default_runtime().map_err(broker("connect"))?;
    // lapin's own TLS path sends the URI's host as SNI and cannot take a rustls config
    // of ours (verify, client certificate): open the TCP stream and run the handshake
    // here, and hand lapin the TLS stream.
    Connection::connector(
        client_uri,
        runtime,
        async move |uri, runtime| {
            let open = async {
                let addrs: Vec<std::net::SocketAddr> =
                    tokio::net::lookup_host((host.as_str(), port))
                        .await?
                        .collect();
                let tcp = AsyncTcpStream::connect(&runtime, addrs).await?;
                tcp.into_rustls(&tls.connector, &tls.server_name)
                    .await
                    .map_err(|e| tls::handshake_error(e, &shown, &tls.server_name))
            };
            // `connection_timeout` (ms) covers TCP and TLS, as lapin's own path does TCP.
            let stream = match uri.query.connection_timeout {
                None => open.await,
                Some(ms) => tokio::time::timeout(Duration::from_millis(ms), open)
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("TLS connect to {shown} took more than {ms} ms"),
                        ))
                    }),
            };
            stream.map_err(lapin::Error::from)
        },
        props,
    )
    .await
    // With TLS 1.3 the broker checks our certificate after the handshake returned: its
    // refusal arrives as an alert on the first read, inside lapin.
    .map_err(|e| tls::late_alert(e, &format!("{}:{}", uri.host(), uri.port())))
    .map_err(broker("connect"))
}

fn parse_client_uri(uri: &AmqpUri) -> Result<AMQPUri> {
    uri.client_uri()
        .expose()
        .parse::<AMQPUri>()
        // lapin's message may quote the URI: keep only our redacted form.
        .map_err(|_| {
            Error::Uri(pusher_core::amqp_uri::Error::Malformed(format!(
                "the AMQP client cannot read {}",
                uri.redacted()
            )))
        })
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
    declare_deferral(channel).await
}

/// Binds the shared queue with the operator's `extra` bindings (exchange, routing key)
/// for keys outside Kazoo's three (e.g. Kazoo 5's `endpoint_push_req`, whose key is not
/// public). An exchange that is not one of Kazoo's three is declared first the way Kazoo
/// declares its own (topic, non-durable), so the bind cannot fail on a missing exchange.
pub async fn declare_extra_bindings(channel: &Channel, extra: &[(String, String)]) -> Result<()> {
    for (exchange, key) in extra {
        if ![EXCHANGE_PUSHES, EXCHANGE_REGISTRAR, EXCHANGE_TARGETED].contains(&exchange.as_str()) {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker("exchange.declare"))?;
        }
        channel
            .queue_bind(
                QUEUE.into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker("queue.bind"))?;
    }
    Ok(())
}

/// The arguments of [`QUEUE_DEFERRED`]: messages wait [`DEFER_TTL_MS`], then go back to
/// the shared queue through the default exchange (dead-lettering).
pub fn deferral_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(DEFER_TTL_MS));
    args.insert("x-max-length".into(), AMQPValue::LongInt(DEFER_MAX_LENGTH));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(QUEUE.into()),
    );
    args
}

/// Declares [`QUEUE_DEFERRED`] (shared by every instance; nobody consumes it).
pub async fn declare_deferral(channel: &Channel) -> Result<()> {
    let opts = QueueDeclareOptions {
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
    };
    channel
        .queue_declare(QUEUE_DEFERRED.into(), opts, deferral_arguments())
        .await
        .map_err(broker("queue.declare"))?;
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

    /// A TLS broker that accepts the TCP connection and never answers: the handshake is
    /// bounded by the URI's `connection_timeout`.
    #[tokio::test]
    async fn connection_timeout_bounds_the_tls_handshake() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let uri =
            format!("amqps://guest:pw@127.0.0.1:{port}/?verify=verify_none&connection_timeout=300");
        let err = tokio::time::timeout(Duration::from_secs(30), connect(&uri, "t"))
            .await
            .expect("connect returns within the hang guard")
            .map(drop)
            .expect_err("nothing answers");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "TLS connect to 127.0.0.1:{port} took more than 300 ms"
            )),
            "{msg}"
        );
        hold.abort();
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

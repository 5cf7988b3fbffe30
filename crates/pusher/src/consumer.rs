//! The AMQP side of the service: a supervisor that connects, declares Kazoo's topology,
//! consumes the shared queue with manual ack, and reconnects with capped backoff when the
//! broker goes away.
//!
//! Each delivery runs in its own task (bounded by a semaphore sized like the prefetch),
//! so a slow CouchDB write never blocks the consumer; the task settles the delivery with
//! exactly one ack or nack. On shutdown the consumer is cancelled first (no new
//! deliveries), in-flight tasks get a grace period to finish, then the channel and the
//! connection are closed, which returns anything still unacked to the queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};
use pusher_io::amqp;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::{Dispatcher, Disposition, Incoming, Reply};
use crate::state::State;

/// What the supervisor needs.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Broker URIs, tried in turn on reconnect: the primary first, then the other
    /// brokers of the cluster (secret: never logged).
    pub amqp_uris: Vec<String>,
    /// Connection name shown by the broker.
    pub connection_name: String,
    /// Prefetch = max concurrent handlers.
    pub prefetch: u16,
    /// Drain time after shutdown was requested.
    pub shutdown_grace: Duration,
}

/// Runs until `shutdown` fires, reconnecting as needed; returns after the drain.
pub async fn supervise(
    settings: ConsumerSettings,
    dispatcher: Dispatcher,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut backoff = MIN_BACKOFF;
    let mut broker = 0usize;
    loop {
        let started = Instant::now();
        let uri = &settings.amqp_uris[broker % settings.amqp_uris.len().max(1)];
        let result = session(&settings, uri, &dispatcher, &state, &shutdown).await;
        state.set_consuming(false);
        match result {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = MIN_BACKOFF;
                }
                // Next attempt goes to the next broker of the cluster, if there are several.
                broker = broker.wrapping_add(1);
                tracing::error!(error.message = %e, retry_in_ms = backoff.as_millis() as u64,
                    broker = broker % settings.amqp_uris.len().max(1),
                    "AMQP session ended; reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Amqp(#[from] amqp::Error),
    #[error("consumer stream failed: {0}")]
    Stream(lapin::Error),
    #[error("the broker cancelled our consumer")]
    Cancelled,
}

async fn session(
    settings: &ConsumerSettings,
    amqp_uri: &str,
    dispatcher: &Dispatcher,
    state: &Arc<State>,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let conn = amqp::connect(amqp_uri, &settings.connection_name).await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|source| amqp::Error::Broker {
            op: "channel.open",
            source,
        })?;
    amqp::declare_topology(&channel).await?;
    let mut consumer = amqp::consume(&channel, settings.prefetch, "").await?;
    let tag = consumer.tag();
    state.set_consuming(true);
    tracing::info!(queue = amqp::QUEUE, consumer_tag = %tag, prefetch = settings.prefetch,
        "consuming");

    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(usize::from(settings.prefetch)));
    let result = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    // Never blocks while the broker honours the prefetch; guards if not.
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break Ok(());
                    };
                    let dispatcher = dispatcher.clone();
                    let channel = channel.clone();
                    let state = state.clone();
                    tracker.spawn(async move {
                        handle_delivery(delivery, &dispatcher, &channel, &state).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => break Err(SessionError::Stream(e)),
                None => break Err(SessionError::Cancelled),
            }
        }
    };
    state.set_consuming(false);
    tracker.close();
    if result.is_ok() {
        // Shutdown: stop deliveries first, then drain, then close.
        if let Err(e) = channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
        {
            tracing::warn!(error.message = %e, "basic.cancel failed during shutdown");
        }
        let in_flight = tracker.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "waiting for in-flight messages");
        }
        if tokio::time::timeout(settings.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tracker.len(),
                "grace period over; unfinished messages go back to the queue"
            );
        }
        let _ = channel.close(200, "pusher shutting down".into()).await;
        let _ = conn.close(200, "pusher shutting down".into()).await;
    }
    // On a broken session the tasks finish on their own; their acks fail and the broker
    // redelivers those messages (at-least-once; device writes are idempotent).
    result
}

async fn handle_delivery(
    delivery: Delivery,
    dispatcher: &Dispatcher,
    channel: &Channel,
    state: &State,
) {
    let m = &state.metrics;
    m.messages_in_flight.fetch_add(1, Ordering::Relaxed);
    let Delivery {
        routing_key,
        properties,
        data,
        acker,
        ..
    } = delivery;
    let msg = Incoming {
        content_type: properties.content_type().as_ref().map(|s| s.to_string()),
        content_encoding: properties
            .content_encoding()
            .as_ref()
            .map(|s| s.to_string()),
        routing_key: routing_key.to_string(),
        data,
    };
    let handled = dispatcher.process(&msg).await;
    if let Some(reply) = &handled.reply {
        publish_reply(channel, reply).await;
    }
    m.settled.inc(&[match handled.disposition {
        Disposition::Ack => "ack",
        Disposition::Requeue => "requeue",
    }]);
    m.messages_in_flight.fetch_sub(1, Ordering::Relaxed);
    let settled = match handled.disposition {
        Disposition::Ack => acker.ack(BasicAckOptions::default()).await,
        Disposition::Requeue => {
            acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(error.message = %e, messaging.routing_key = %msg.routing_key,
            "could not settle delivery (channel gone?); the broker will redeliver it");
    }
}

/// Publishes a requested `push_resp` on the default exchange. Best effort: the verdict is
/// already logged, and a requester that went away must not hold up the ack.
async fn publish_reply(channel: &Channel, reply: &Reply) {
    let props = BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(1);
    let published = channel
        .basic_publish(
            "".into(),
            reply.routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &reply.body,
            props,
        )
        .await;
    if let Err(e) = published {
        tracing::warn!(error.message = %e, reply_to = %reply.routing_key,
            "could not publish the requested push_resp");
    }
}

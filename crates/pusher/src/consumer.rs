//! The AMQP side of the service: a supervisor that connects, declares Kazoo's topology,
//! consumes the shared queue with manual ack, and reconnects with capped, jittered
//! backoff when the broker goes away.
//!
//! Each delivery runs in its own task (bounded by a semaphore sized like the prefetch),
//! so a slow CouchDB write never blocks the consumer; the task settles the delivery with
//! exactly one ack or requeue.
//!
//! **No work survives its session.** The handlers of a session share one cancellation
//! token. When the session breaks (channel or connection lost), it is cancelled at once
//! and the handlers are awaited before a new session starts: their deliveries cannot be
//! settled any more and the broker redelivers them, so nothing of the old session may
//! act (write a device, send a push) beside the redelivered copy. On shutdown the
//! consumer is cancelled first (no new deliveries), in-flight handlers get the grace
//! period to finish, then the rest are cancelled (and requeue their deliveries), and the
//! channel and connection are closed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pusher_core::outcome::retry_delay;
use pusher_core::redelivery::{DEFERRED_HEADER, FIRST_SEEN_HEADER};
use pusher_io::amqp::{self, Broker, Delivery, Replier};
use rand::Rng as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{Dispatcher, Disposition, Incoming};
use crate::state::State;

/// First reconnect delay; doubles (±20 % jitter) up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay, so a long outage resumes soon after the broker is back.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// How long the handlers of a broken session get to notice their cancellation.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

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
    /// Bindings (exchange, routing key) of the shared queue beside Kazoo's three.
    pub extra_bindings: Vec<(String, String)>,
}

/// Runs until `shutdown` fires, reconnecting as needed; returns after the drain.
pub async fn supervise(
    settings: ConsumerSettings,
    dispatcher: Dispatcher,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut broker = 0usize;
    let brokers = settings.amqp_uris.len().max(1);
    loop {
        let started = Instant::now();
        let uri = &settings.amqp_uris[broker % brokers];
        let result = session(&settings, uri, &dispatcher, &state, &shutdown).await;
        state.set_consuming(false);
        let Err(e) = result else { return };
        if started.elapsed() > STABLE_SESSION {
            failures = 0;
        }
        failures += 1;
        // Jittered, so a cluster of instances does not reconnect in lockstep.
        let backoff = retry_delay(
            failures,
            None,
            MIN_BACKOFF,
            MAX_BACKOFF,
            rand::rng().random(),
        );
        // Next attempt goes to the next broker of the cluster, if there are several.
        broker = broker.wrapping_add(1);
        tracing::error!(error.message = %e, retry_in_ms = backoff.as_millis() as u64,
            broker = broker % brokers, "AMQP session ended; reconnecting");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Amqp(#[from] amqp::Error),
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
    let conn = Broker::connect(amqp_uri, &settings.connection_name).await?;
    let mut consumer = conn
        .consume_shared(settings.prefetch, &settings.extra_bindings)
        .await?;
    let replier = consumer.replier();
    let mut legacy = legacy_link(&conn, dispatcher).await;
    state.set_consuming(true);
    tracing::info!(queue = amqp::QUEUE, consumer_tag = %consumer.tag(),
        prefetch = settings.prefetch, "consuming");

    // The handlers of this session, and what stops them.
    let work = CancellationToken::new();
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
                    let replier = replier.clone();
                    let state = state.clone();
                    let work = work.clone();
                    tracker.spawn(async move {
                        handle(delivery, &dispatcher, &replier, &state, &work).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => break Err(SessionError::Amqp(e)),
                None => break Err(SessionError::Cancelled),
            }
        }
    };
    state.set_consuming(false);
    tracker.close();
    match result {
        Ok(()) => {
            // Shutdown: stop deliveries first, then drain, then close.
            if let Err(e) = consumer.cancel().await {
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
                work.cancel();
                let _ = tokio::time::timeout(CANCEL_WAIT, tracker.wait()).await;
            }
            // Before the connection goes, so the link ends quietly.
            stop_legacy(legacy.take()).await;
            consumer.close("pusher shutting down").await;
            conn.close("pusher shutting down").await;
        }
        Err(_) => {
            // The deliveries of this session can no longer be settled: the broker
            // redelivers them. Stop their handlers before anything else happens.
            work.cancel();
            if tokio::time::timeout(CANCEL_WAIT, tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    left = tracker.len(),
                    "handlers of the ended AMQP session still running"
                );
            }
        }
    }
    stop_legacy(legacy.take()).await;
    result
}

/// A session's legacy link task, and what stops it.
type LegacyTask = (CancellationToken, tokio::task::JoinHandle<()>);

async fn stop_legacy(legacy: Option<LegacyTask>) {
    if let Some((stop, task)) = legacy {
        stop.cancel();
        let _ = task.await;
    }
}

/// Starts the legacy `push_resp` link of this session (on or off by the live config, so
/// an edit needs no reconnect). It has a channel of its own: its failure is logged and
/// never ends the session.
async fn legacy_link(conn: &Broker, dispatcher: &Dispatcher) -> Option<LegacyTask> {
    match conn.legacy_link().await {
        Ok(link) => {
            let stop = CancellationToken::new();
            let legacy = dispatcher.legacy().clone();
            let until = stop.clone();
            Some((
                stop,
                tokio::spawn(async move { legacy.run(link, until).await }),
            ))
        }
        Err(e) => {
            tracing::warn!(error.message = %e,
                "legacy push_resp link not set up; kazoo_query requests are not answered in this session");
            None
        }
    }
}

async fn handle(
    delivery: Delivery,
    dispatcher: &Dispatcher,
    replier: &Replier,
    state: &State,
    work: &CancellationToken,
) {
    let m = &state.metrics;
    m.messages_in_flight.fetch_add(1, Ordering::Relaxed);
    let first_seen_ms = delivery
        .int_header(FIRST_SEEN_HEADER)
        .and_then(|ms| u64::try_from(ms).ok());
    let deferred = delivery.int_header(DEFERRED_HEADER).is_some();
    let Delivery {
        routing_key,
        content_type,
        content_encoding,
        redelivered,
        data,
        settle,
        ..
    } = delivery;
    let msg = Incoming {
        content_type,
        content_encoding,
        routing_key,
        redelivered,
        first_seen_ms,
        deferred,
        data,
    };
    let handled = dispatcher.process(&msg, work).await;
    if let Some(reply) = &handled.reply
        && let Err(e) = replier
            .publish_to(reply.exchange, &reply.routing_key, &reply.body)
            .await
    {
        // Best effort: the verdict is already logged.
        tracing::warn!(error.message = %e, reply_to = %reply.routing_key,
            "could not publish the requested reply");
    }
    m.settled.inc(&[match handled.disposition {
        Disposition::Ack => "ack",
        Disposition::Requeue => "requeue",
        Disposition::Defer => "defer",
    }]);
    m.messages_in_flight.fetch_sub(1, Ordering::Relaxed);
    let settled = match (handled.disposition, handled.first_seen_ms) {
        (Disposition::Ack, _) => settle.ack().await,
        (Disposition::Requeue | Disposition::Defer, None) => settle.requeue().await,
        (disposition, Some(ms)) => {
            let first_seen = i64::try_from(ms).unwrap_or(i64::MAX);
            let (queue, headers): (&str, &[(&str, i64)]) = match disposition {
                Disposition::Defer => (
                    amqp::QUEUE_DEFERRED,
                    &[(FIRST_SEEN_HEADER, first_seen), (DEFERRED_HEADER, 1)],
                ),
                _ => (amqp::QUEUE, &[(FIRST_SEEN_HEADER, first_seen)]),
            };
            let stamped = replier
                .republish_stamped(
                    queue,
                    msg.content_type.as_deref(),
                    msg.content_encoding.as_deref(),
                    &msg.data,
                    headers,
                )
                .await;
            match stamped {
                Ok(()) => settle.ack().await,
                Err(e) => {
                    tracing::warn!(error.message = %e,
                        "could not hand the push_req back stamped; requeued as it came");
                    settle.requeue().await
                }
            }
        }
    };
    if let Err(e) = settled {
        tracing::warn!(error.message = %e, messaging.routing_key = %msg.routing_key,
            "could not settle delivery (channel gone?); the broker will redeliver it");
    }
}

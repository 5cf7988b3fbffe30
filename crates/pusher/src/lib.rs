//! The pusher service: joins the pure core (`pusher-core`) and the adapters
//! (`pusher-io`) into `pusherd` and `pusherctl`.
//!
//! Data flows one way: AMQP delivery ([`consumer`]) → [`dispatch`] (decode once into a
//! `reg_success` or a `push_req`) → the workflow of its class: [`register`] (decide in
//! the core, write the device doc) or [`push`] (resolve, build, send, classify, act) →
//! one ack or requeue back in [`consumer`]. [`config`] keeps a compiled snapshot of
//! `system_config/pusher` current; [`legacy`] answers Kamailio's 2015 `kazoo_query`
//! (opt-in); [`http`] serves `/health`, `/ready` and `/metrics`;
//! [`settings`] reads the configuration once; [`ctl`] is `pusherctl`, which no module of
//! the running service imports.
//!
//! [`run`] is the whole service with an injected shutdown token, so tests start it
//! in-process exactly as `pusherd` does.

pub mod clock;
pub mod config;
pub mod consumer;
pub mod ctl;
pub mod dispatch;
pub mod endpoint;
pub mod http;
pub mod legacy;
pub mod metrics;
pub mod push;
pub mod register;
pub mod settings;
pub mod state;
pub mod telemetry;
pub mod tokens;

use std::sync::Arc;

use anyhow::Context as _;
use pusher_io::couch::CouchClient;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::state::State;

/// A started service: where it listens, and its join handle.
#[derive(Debug)]
pub struct Running {
    /// Bound address of `/health` and `/ready` (resolves port 0).
    pub http_addr: Option<std::net::SocketAddr>,
    /// Completes after a shutdown has drained everything.
    pub handle: tokio::task::JoinHandle<()>,
}

/// Starts the service in the background; fails only on start-up errors (bad settings,
/// HTTP address in use). Cancel `shutdown` to stop it, then await `handle`.
pub async fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let couch = CouchClient::new(&settings.couch_url, settings.couch_timeout)
        .context("Failed to set up the CouchDB client")?;
    // The watcher must outlive the drain (in-flight handlers read the config), so it has
    // its own token, cancelled last.
    let background = CancellationToken::new();
    let state = Arc::new(State::default());
    state.metrics.count_couch_requests(couch.request_counts());
    let config = config::spawn_watcher(
        couch.clone(),
        settings.node.clone(),
        settings.zone.clone(),
        state.clone(),
        background.clone(),
    );
    tokio::spawn(check_couch(
        couch.clone(),
        state.clone(),
        background.clone(),
    ));

    let mut http_addr = None;
    let mut http_task = None;
    if let Some(addr) = settings.http_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("Failed to listen on {addr} (PUSHER_HTTP_ADDR)"))?;
        http_addr = Some(listener.local_addr()?);
        let app = http::router(state.clone(), config.clone());
        let stop = background.clone();
        http_task = Some(tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error.message = %e, "HTTP server failed");
            }
        }));
    }

    let tokens = Arc::new(tokens::TokenIndex::new(couch.clone()));
    {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.ensure_db().await });
    }
    let pusher = Arc::new(push::Pusher::new(push::PusherParts {
        couch: couch.clone(),
        config: config.clone(),
        zone: settings.zone.clone(),
        settings: settings.push.clone(),
        tokens: tokens.clone(),
        state: state.clone(),
    }));
    let endpoint_couch = couch.clone();
    let legacy = Arc::new(legacy::LegacyPushResp::new(config.clone(), &settings.node));
    let devices = Arc::new(register::device_cache::DeviceCache::new(
        couch.clone(),
        background.clone(),
    ));
    state.metrics.show_device_cache_feed(devices.feed_cell());
    let registrar = Arc::new(register::Registrar::new(register::RegistrarParts {
        devices,
        couch,
        config,
        retry_budget: settings.retry_budget,
        // Registrations get half of the prefetch window; pushes always find room.
        slots: usize::from(settings.prefetch / 2).max(1),
        tokens: tokens.clone(),
        state: state.clone(),
        legacy: legacy.clone(),
    }));
    tokio::spawn(registrar.clone().drain(background.clone()));
    let endpoints = Arc::new(endpoint::Endpoints::new(
        endpoint_couch,
        pusher.clone(),
        state.clone(),
        &settings.node,
    ));
    let dispatcher = dispatch::Dispatcher::new(
        registrar.clone(),
        pusher,
        legacy,
        endpoints,
        state.clone(),
        &settings.node,
    );
    let consumer_settings = consumer::ConsumerSettings {
        amqp_uris: std::iter::once(settings.amqp_uri.clone())
            .chain(settings.amqp_fallback_uris.iter().cloned())
            .collect(),
        connection_name: format!("pusher {}", settings.node),
        prefetch: settings.prefetch,
        shutdown_grace: settings.shutdown_grace,
        extra_bindings: settings.extra_bindings.clone(),
    };
    tracing::info!(settings = ?settings, http = ?http_addr, "pusherd starting");
    let parked = registrar.clone();
    let index = tokens.clone();
    let grace = settings.shutdown_grace;
    let handle = tokio::spawn(async move {
        consumer::supervise(consumer_settings, dispatcher, state, shutdown).await;
        // Parked registrations were acked: give them the grace period to be written.
        let left = parked.flush(grace).await;
        if left > 0 {
            tracing::warn!(
                left,
                "parked registrations not written before exit; those phones update on their next registration"
            );
        }
        // And the token index entries they noted (logged when some are left); briefly,
        // so a CouchDB outage does not stretch the shutdown much past the grace period.
        index
            .flush(grace.min(std::time::Duration::from_secs(1)))
            .await;
        background.cancel();
        if let Some(t) = http_task {
            let _ = t.await;
        }
        tracing::info!("pusherd stopped");
    });
    Ok(Running { http_addr, handle })
}

/// Keeps `State::couch_reachable` current: a cheap request every 5 s (1 s while down).
async fn check_couch(couch: CouchClient, state: Arc<State>, stop: CancellationToken) {
    loop {
        let ok = matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), couch.ping()).await,
            Ok(Ok(_))
        );
        if ok != state.couch_reachable() {
            if ok {
                tracing::info!("CouchDB reachable");
            } else {
                tracing::warn!("CouchDB unreachable");
            }
        }
        state.set_couch_reachable(ok);
        let wait = std::time::Duration::from_secs(if ok { 5 } else { 1 });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Runs the service until `shutdown` fires and everything has drained.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = start(settings, shutdown).await?;
    running.handle.await.context("service task failed")?;
    Ok(())
}

/// Resolves when SIGTERM or SIGINT (ctrl-c) arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error.message = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error.message = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

//! `/health` (liveness: the process answers), `/ready` (200 while this instance can ring
//! phones: consuming the shared queue, with a config snapshot in memory or CouchDB
//! reachable to load one; the JSON body says the state of each dependency) and
//! `/metrics` (Prometheus text format).
//!
//! A CouchDB outage alone does not make the instance unready: pushes need no CouchDB once
//! the config is loaded, and registrations wait or park (see `register`). The body and
//! `pusher_couch_reachable` still show it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::config::ConfigReceiver;
use crate::metrics::Snapshot;
use crate::state::State;

#[derive(Clone)]
struct Ctx {
    state: Arc<State>,
    config: ConfigReceiver,
}

/// The HTTP routes.
pub fn router(state: Arc<State>, config: ConfigReceiver) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Ctx { state, config })
}

async fn health() -> (StatusCode, axum::Json<serde_json::Value>) {
    (StatusCode::OK, axum::Json(json!({"status": "ok"})))
}

async fn ready(AxState(ctx): AxState<Ctx>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let consuming = ctx.state.consuming();
    let couch = ctx.state.couch_reachable();
    let config = ctx.config.borrow().as_ref().map(|c| c.rev.clone());
    let ready = consuming && (couch || config.is_some());
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "amqp": if consuming { "consuming" } else { "not consuming" },
        "couchdb": if couch { "reachable" } else { "unreachable" },
        "config": match &config { Some(_) => "loaded", None => "not loaded yet" },
        "config_rev": config,
    });
    (code, axum::Json(body))
}

async fn metrics(AxState(ctx): AxState<Ctx>) -> impl IntoResponse {
    let config = ctx.config.borrow().clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let snap = Snapshot {
        amqp_connected: ctx.state.consuming(),
        couch_reachable: ctx.state.couch_reachable(),
        config_loaded: config.is_some(),
        cert_expiry: config
            .map(|c| {
                c.apns_cert_not_after
                    .iter()
                    .map(|(app, not_after)| (app.clone(), not_after - now))
                    .collect()
            })
            .unwrap_or_default(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.state.metrics.render(&snap),
    )
}

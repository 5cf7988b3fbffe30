//! `/health` (liveness: the process answers) and `/ready` (200 only while consuming).

use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::config::ConfigReceiver;
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
        .with_state(Ctx { state, config })
}

async fn health() -> (StatusCode, axum::Json<serde_json::Value>) {
    (StatusCode::OK, axum::Json(json!({"status": "ok"})))
}

async fn ready(AxState(ctx): AxState<Ctx>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let consuming = ctx.state.consuming();
    let config = ctx.config.borrow().as_ref().map(|c| c.rev.clone());
    let code = if consuming {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": consuming,
        "amqp": if consuming { "consuming" } else { "not consuming" },
        "config": match &config { Some(_) => "loaded", None => "not loaded yet" },
        "config_rev": config,
    });
    (code, axum::Json(body))
}

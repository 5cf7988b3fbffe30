//! Kazoo 5's `endpoint_push_req`: find the endpoint's devices, push each one through
//! the same path as a `push_req` ([`Pusher::send`]), and collect the per-device results
//! of the `endpoint_push_resp` (README "Kazoo 5 endpoint pushes").
//!
//! The flow, per request:
//! 1. **fan out** (CouchDB, the account database): `Type: device` reads that device
//!    document; `Type: user` reads the user's devices through Kazoo's view
//!    `attributes/owned` (key `[UserId, "device"]`, documents included), or, when the
//!    view is missing, by scanning `_all_docs` for `pvt_type: device` owned by the user
//!    (one log line says so);
//! 2. **per device** (core, [`DeviceTarget::of`]): no `push` object → 200 "Not push
//!    device", a missing token field or unknown token type → 400; else
//! 3. **push**: [`Pusher::send`] with the endpoint mapping of the core
//!    ([`pusher_core::endpoint_push::apns`], [`pusher_core::endpoint_push::fcm`]). The
//!    per-app limit, the client registry, the retries, the metrics and the one deadline
//!    counted from the request's arrival are those of `push_req`. The devices are
//!    pushed concurrently, so the whole request ends within that deadline.

use std::sync::Arc;

use futures_util::future::join_all;
use pusher_core::app_config::Credentials;
use pusher_core::endpoint_push::device::DeviceTarget;
use pusher_core::endpoint_push::status::{self, DeviceResult, DeviceStatus, overall_status};
use pusher_core::endpoint_push::{self as core_endpoint, EndpointPushReq, EndpointType, ReplyTo};
use pusher_core::outcome::is_auth_reason;
use pusher_core::push_req::PushReq;
use pusher_core::redelivery::Arrival;
use pusher_core::{account, fcm as core_fcm};
use pusher_io::couch::CouchClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Disposition, Handled, Reply};
use crate::push::attempt::Request;
use crate::push::{PushOutcome, Pusher};
use crate::state::State;

/// Design document and view of Kazoo's `kz_attributes:owned_by_docs`.
const OWNED_DESIGN: &str = "attributes";
/// See [`OWNED_DESIGN`].
const OWNED_VIEW: &str = "owned";

/// The endpoint pushes of one instance.
#[derive(Debug)]
pub struct Endpoints {
    couch: CouchClient,
    pusher: Arc<Pusher>,
    state: Arc<State>,
    node: String,
}

impl Endpoints {
    /// Reads devices with `couch` and pushes them with `pusher`; `node` is our name in
    /// the responses.
    pub fn new(couch: CouchClient, pusher: Arc<Pusher>, state: Arc<State>, node: &str) -> Self {
        Self {
            couch,
            pusher,
            state,
            node: node.to_string(),
        }
    }

    /// Handles one request that reached us as `arrival`: the result of each device.
    /// `cancel` ends it early (results `failed`).
    pub async fn handle(
        &self,
        req: &EndpointPushReq,
        arrival: Arrival,
        cancel: &CancellationToken,
    ) -> Vec<DeviceResult> {
        let devices = match self.devices(req).await {
            Ok(devices) => devices,
            Err(error) => {
                tracing::error!(account_id = %req.account_id, endpoint_id = %req.endpoint_id,
                    error.message = %error, "endpoint_push_req: devices could not be read");
                vec![Err(DeviceResult {
                    device_id: req.endpoint_id.clone(),
                    status: DeviceStatus::FetchFailed(error),
                })]
            }
        };
        let pushes = devices.into_iter().map(|doc| async move {
            let doc = match doc {
                Ok(doc) => doc,
                Err(result) => return result,
            };
            let device_id = doc
                .get("_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let status = match DeviceTarget::of(&doc) {
                Ok(target) => self.push(req, &target, arrival, cancel).await,
                Err(status) => status,
            };
            DeviceResult { device_id, status }
        });
        let results = join_all(pushes).await;
        let m = &self.state.metrics;
        for r in &results {
            m.endpoint_pushes.inc(&[r.status.label()]);
        }
        tracing::info!(
            account_id = %req.account_id,
            endpoint_id = %req.endpoint_id,
            endpoint_type = req.endpoint_type.as_str(),
            msg_id = req.msg_id.as_deref().unwrap_or(""),
            devices = results.len(),
            overall_status = overall_status(results.iter().map(|r| r.status.code())),
            elapsed_ms = arrival.received.elapsed().as_millis() as u64,
            "endpoint_push_req handled"
        );
        results
    }

    /// The device documents of the endpoint (an `Err` entry is a device whose result
    /// is already known); `Err` when they cannot be read at all.
    async fn devices(
        &self,
        req: &EndpointPushReq,
    ) -> Result<Vec<Result<Value, DeviceResult>>, String> {
        let db = account::account_db(&req.account_id).map_err(|e| e.to_string())?;
        let id = &req.endpoint_id;
        match req.endpoint_type {
            EndpointType::Device => match self.couch.get_doc(&db, id).await {
                // As K5: a device that does not exist gets no result at all.
                Ok(Some(doc)) if is_device(&doc) => Ok(vec![Ok(doc)]),
                Ok(_) => {
                    tracing::info!(account_id = %req.account_id, device_id = %id,
                        "endpoint_push_req: no such device; no result");
                    Ok(Vec::new())
                }
                Err(e) => Ok(vec![Err(DeviceResult {
                    device_id: id.clone(),
                    status: DeviceStatus::FetchFailed(e.to_string()),
                })]),
            },
            EndpointType::User => {
                let key = json!([id, "device"]);
                let docs = match self
                    .couch
                    .view_docs(&db, OWNED_DESIGN, OWNED_VIEW, &key)
                    .await
                {
                    Ok(Some(docs)) => docs,
                    Ok(None) => {
                        tracing::warn!(account_id = %req.account_id, user_id = %id,
                            "endpoint_push_req: view attributes/owned missing in the account db; scanning its documents for the user's devices");
                        self.couch
                            .all_docs(&db)
                            .await
                            .map_err(|e| e.to_string())?
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|d| d.get("owner_id").and_then(Value::as_str) == Some(id))
                            .collect()
                    }
                    Err(e) => return Err(e.to_string()),
                };
                Ok(docs.into_iter().filter(is_device).map(Ok).collect())
            }
        }
    }

    /// Pushes one device through the push_req path.
    async fn push(
        &self,
        req: &EndpointPushReq,
        target: &DeviceTarget,
        arrival: Arrival,
        cancel: &CancellationToken,
    ) -> DeviceStatus {
        // Whom to push, and the ids of the push for its span, redelivery key and
        // dead-token removal; the content comes from `build`.
        let who = PushReq {
            token_id: target.token_id.clone(),
            token_type: target.token_type,
            token_app: target.token_app.clone(),
            call_id: req.call_id.clone(),
            msg_id: req.msg_id.clone(),
            account_id: Some(req.account_id.clone()),
            endpoint_id: Some(target.device_id.clone()),
            alert_key: None,
            alert_params: None,
            sound: None,
            payload: serde_json::Map::new(),
        };
        let build = |credentials: &Credentials| build(req, target, credentials);
        let outcome = self.pusher.send(&who, &build, arrival, cancel).await;
        status_of(outcome)
    }
}

/// Whether a document is a device (Kazoo's `pvt_type`; a doc without one is taken as
/// one, as a device read by id is).
fn is_device(doc: &Value) -> bool {
    doc.get("pvt_type")
        .and_then(Value::as_str)
        .is_none_or(|t| t == "device")
}

/// The provider request of the endpoint push for `target`.
fn build(
    req: &EndpointPushReq,
    target: &DeviceTarget,
    credentials: &Credentials,
) -> Result<Request, PushOutcome> {
    let unusable = |e: &dyn std::fmt::Display| PushOutcome::Dropped(e.to_string());
    match credentials {
        Credentials::Apple(c) => core_endpoint::apns::build(req, target, &c.request)
            .map(Request::Apns)
            .map_err(|e| unusable(&e)),
        Credentials::Firebase(c) => {
            let message =
                core_endpoint::fcm::build(req, target, &c.envelope).map_err(|e| unusable(&e))?;
            let path = core_fcm::send_path(&c.project_id)
                .map_err(|e| PushOutcome::NoCredentials(e.to_string()))?;
            Ok(Request::Fcm { path, message })
        }
    }
}

/// The result of a device from the outcome of its push.
fn status_of(outcome: PushOutcome) -> DeviceStatus {
    match outcome {
        PushOutcome::Delivered => DeviceStatus::Sent,
        PushOutcome::DeadToken { reason, .. } => DeviceStatus::DeadToken(reason),
        PushOutcome::Dropped(r) => DeviceStatus::Unbuildable(r),
        PushOutcome::NoCredentials(r) => DeviceStatus::NoCredentials(r),
        PushOutcome::Rejected(reason) => DeviceStatus::Rejected {
            auth: is_auth_reason(&reason),
            reason,
        },
        PushOutcome::Disabled => DeviceStatus::AppDisabled,
        PushOutcome::TimedOut(r) | PushOutcome::Expired(r) => DeviceStatus::Timeout(r),
        PushOutcome::Duplicate => DeviceStatus::AlreadyPushed,
        PushOutcome::Failed(r) => DeviceStatus::Failed(r),
        // A device of a fan-out cannot be handed to the deferral queue alone.
        PushOutcome::Deferred => DeviceStatus::Busy,
    }
}

impl Endpoints {
    /// Handles a decoded request (or says why it is unusable: one log line, counted) and
    /// returns how to settle it, with the `endpoint_push_resp` to publish on `targeted`
    /// to its `Server-ID` when it has one. A request interrupted by a shutdown goes back
    /// to the queue unanswered.
    pub async fn process(
        &self,
        reply_to: ReplyTo,
        req: Result<Box<EndpointPushReq>, String>,
        arrival: Arrival,
        cancel: &CancellationToken,
    ) -> Handled {
        let version = env!("CARGO_PKG_VERSION");
        let body = match req {
            Ok(req) => {
                let results = self.handle(&req, arrival, cancel).await;
                let interrupted = results
                    .iter()
                    .any(|r| matches!(r.status, DeviceStatus::Failed(_)));
                if interrupted && cancel.is_cancelled() {
                    return Disposition::Requeue.into();
                }
                status::response(reply_to.msg_id.as_deref(), &results, &self.node, version)
            }
            Err(error) => {
                tracing::warn!(msg_id = reply_to.msg_id.as_deref().unwrap_or(""),
                    error.message = %error, "endpoint_push_req unusable; settled");
                self.state.metrics.endpoint_pushes.inc(&["bad_request"]);
                status::bad_request(reply_to.msg_id.as_deref(), &error, &self.node, version)
            }
        };
        let reply = reply_to.server_id.map(|server_id| Reply {
            exchange: pusher_io::amqp::EXCHANGE_TARGETED,
            routing_key: server_id,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        });
        Handled {
            disposition: Disposition::Ack,
            reply,
            first_seen_ms: None,
        }
    }
}

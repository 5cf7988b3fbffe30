//! `pusher_maintenance push AccountId DeviceId`: a test push through the real path.
//!
//! The device's `push` object (what a registration stored) becomes a `push_req` shaped
//! like Kamailio's (spec §3.3), published to exchange `pushes` with routing key
//! `notification.push.<Token-Type>.<Token-ID>`, so it travels exactly as a call's push
//! would: broker → `pusher_shared_listener` → any running `pusherd` → APNs/FCM.
//!
//! Reply contract: Kamailio never expects an answer to `push_req`, so `pusherd` only
//! answers a request that asks for one. We declare a private queue (server-named,
//! exclusive, auto-delete), consume it, and put its name in `"Pusher-Reply-To"`.
//! `pusherd` publishes the verdict to the default exchange with that queue name as
//! routing key: a `push_resp` with our `Msg-ID`, `Status` (`delivered`, `dead_token`,
//! `auth_error`, `rejected`, `disabled`, `no_credentials`, `timeout`, `failed`),
//! `Reason`, `Provider` (`apns`/`fcm`), `Token-App` and `Elapsed-Ms`. We wait for it for
//! the push deadline + 5 s.

use std::time::{Duration, Instant};

use pusher_core::app_config::AppConfig;
use pusher_core::kapps_config::ConfigDoc;
use pusher_core::push_req::TokenType;
use pusher_io::amqp::{self, Broker, ReplyQueue};
use rand::Rng as _;
use serde_json::{Value, json};

use super::{Ctx, Report, Result, failed};
use crate::config::{PUSHER_CATEGORY, SYSTEM_CONFIG_DB};

/// Field of the `push_req` naming our reply queue (the service's side of the contract
/// reads the same name).
pub const REPLY_TO_FIELD: &str = "Pusher-Reply-To";
/// Caller id number shown by the test push.
pub const TEST_CALLER_NUMBER: &str = "0000";
/// Caller id name shown by the test push.
pub const TEST_CALLER_NAME: &str = "pusherctl test";
/// How long we wait beyond the push deadline for the reply.
pub const REPLY_GRACE: Duration = Duration::from_secs(5);

/// A lowercase RFC 4122 version-4 UUID, as Kamailio's `Msg-ID` and `Call-ID` look.
pub(super) fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The fields of a device `push` object we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePush {
    /// `Token-App`.
    pub app: String,
    /// `Token-Type`.
    pub token_type: String,
    /// `Token-ID` (a secret-ish identifier: printed shortened only).
    pub token: String,
    /// `Token-Public-Proxy` or empty (Kamailio's `Payload.proxy`).
    pub proxy: String,
}

/// Reads the `push` object of a device document.
pub fn device_push(device: &Value, device_id: &str) -> Result<DevicePush> {
    let Some(push) = device.get("push").filter(|p| p.is_object()) else {
        return Err(failed(format!(
            "device {device_id} has no push object: it has not registered with a push-capable app (or its token was removed)"
        )));
    };
    let field = |k: &str| {
        push.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| failed(format!("device {device_id}'s push object lacks {k}")))
    };
    let out = DevicePush {
        app: field("Token-App")?,
        token_type: field("Token-Type")?,
        token: field("Token-ID")?,
        proxy: push
            .get("Token-Public-Proxy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    // Kamailio does not encode the routing key; a dot would make it miss the
    // `notification.push.*.*` binding and the push would vanish.
    for (name, v) in [("Token-Type", &out.token_type), ("Token-ID", &out.token)] {
        if v.contains(['.', '*', '#']) || v.chars().any(char::is_whitespace) {
            return Err(failed(format!(
                "device {device_id}'s {name} contains '.', '*', '#' or a space, so no pusher binding would match its routing key"
            )));
        }
    }
    Ok(out)
}

/// The `push_req` Kamailio would publish for this device (spec §3.3), plus the reply
/// queue and our envelope.
pub fn push_req(
    dev: &DevicePush,
    msg_id: &str,
    call_id: &str,
    reply_to: &str,
    node: &str,
) -> Value {
    json!({
        "Event-Category": "notification",
        "Event-Name": "push_req",
        "Call-ID": call_id,
        "Token-ID": dev.token,
        "Token-Type": dev.token_type,
        "Token-App": dev.app,
        "Alert-Key": "IC_SIL",
        "Alert-Params": [format!("{TEST_CALLER_NUMBER} - {TEST_CALLER_NAME}")],
        "Sound": "ring.caf",
        "Payload": {
            "call-id": call_id,
            "proxy": dev.proxy,
            "caller-id-number": TEST_CALLER_NUMBER,
            "caller-id-name": TEST_CALLER_NAME,
            "registration-token": uuid_v4(),
        },
        "App-Name": "pusherctl",
        "App-Version": env!("CARGO_PKG_VERSION"),
        "Node": node,
        "Msg-ID": msg_id,
        REPLY_TO_FIELD: reply_to,
    })
}

/// Routing key of a push_req, as Kamailio builds it (not encoded).
pub fn routing_key(dev: &DevicePush) -> String {
    format!("notification.push.{}.{}", dev.token_type, dev.token)
}

/// The line printed for a reply, and whether it counts as success.
pub fn verdict_line(reply: &Value, elapsed: Duration, app: &str) -> (String, bool) {
    let s = |k: &str| reply.get(k).and_then(Value::as_str).unwrap_or("");
    let status = match s("Status") {
        "" => "failed",
        other => other,
    };
    let provider = match s("Provider") {
        "" => "no provider",
        p => p,
    };
    let ms = elapsed.as_millis();
    let reason = s("Reason");
    let head = if status == "delivered" {
        format!("delivered in {ms} ms ({provider}, {app})")
    } else {
        format!(
            "{} after {ms} ms ({provider}, {app})",
            status.replace('_', " ")
        )
    };
    let line = if reason.is_empty() {
        head
    } else {
        format!("{head}: {reason}")
    };
    (line, status == "delivered")
}

/// Push deadline of the device's app: `AppConfig::resolve`'s (config `push_deadline_ms`
/// app → zone → default, 1–60 s), else `PUSHER_PUSH_DEADLINE_MS` — what `pusherd` uses.
/// An unknown `Token-Type` has no app config; `pusherd` refuses it at once anyway.
fn deadline(cfg: &ConfigDoc, dev: &DevicePush, zone: &str, fallback: Duration) -> Duration {
    TokenType::parse(&dev.token_type).map_or(fallback, |t| {
        AppConfig::resolve(cfg, &dev.app, zone, t).deadline_or(fallback)
    })
}

/// `push AccountId DeviceId`.
pub async fn push(ctx: &Ctx<'_>, account_id: &str, device_id: &str) -> Result<Report> {
    let db = pusher_core::account::account_db(account_id)
        .map_err(|e| failed(format!("AccountId {account_id:?}: {e}")))?;
    let device = ctx
        .couch
        .get_doc(&db, device_id)
        .await
        .map_err(failed)?
        .ok_or_else(|| failed(format!("no device {device_id} in account {account_id}")))?;
    let dev = device_push(&device, device_id)?;
    let cfg = ConfigDoc::new(
        ctx.couch
            .get_doc(SYSTEM_CONFIG_DB, PUSHER_CATEGORY)
            .await
            .map_err(failed)?
            .unwrap_or(Value::Null),
    );
    let wait = deadline(&cfg, &dev, &ctx.settings.zone, ctx.settings.push.deadline) + REPLY_GRACE;

    let uri = &ctx.settings.amqp_uri;
    let redacted = pusher_io::couch::redact_url(uri);
    let broker = Broker::connect(uri, "pusherctl push").await.map_err(|e| {
        failed(format!(
            "RabbitMQ unreachable at {redacted}: {}",
            root_cause(&e)
        ))
    })?;
    let result = push_on(&broker, &dev, wait).await;
    broker.close("pusherctl done").await;
    result
}

pub(super) fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn push_on(broker: &Broker, dev: &DevicePush, wait: Duration) -> Result<Report> {
    let amqp_err = |e: amqp::Error| failed(format!("RabbitMQ: {e}"));
    check_consumed(broker).await?;
    let publisher = broker.publisher().await.map_err(amqp_err)?;
    // Server-named, exclusive and auto-delete: nothing outlives the command.
    let mut replies = broker.reply_queue().await.map_err(amqp_err)?;

    let msg_id = uuid_v4();
    let call_id = format!("pusherctl-{}", uuid_v4());
    let node = format!("pusherctl@{}", gethostname::gethostname().to_string_lossy());
    let body = push_req(dev, &msg_id, &call_id, replies.name(), &node);
    let started = Instant::now();
    publisher
        .publish(
            amqp::EXCHANGE_PUSHES,
            &routing_key(dev),
            body.to_string().as_bytes(),
        )
        .await
        .map_err(amqp_err)?;

    let Some(reply) = reply_of(&mut replies, &msg_id, started + wait).await? else {
        return Ok(Report::failed(
            "",
            format!(
                "timeout: no reply from pusherd within {} s (is it running and consuming `pushes`?)",
                wait.as_secs()
            ),
        ));
    };
    let (line, delivered) = verdict_line(&reply, started.elapsed(), &dev.app);
    Ok(if delivered {
        Report::ok(line)
    } else {
        let failure = format!("push not delivered: {line}");
        Report::failed(line, failure)
    })
}

/// The reply with `msg_id` on `replies` (others are skipped), or `None` when none came
/// by `deadline`.
pub(super) async fn reply_of(
    replies: &mut ReplyQueue,
    msg_id: &str,
    deadline: Instant,
) -> Result<Option<Value>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let body = match tokio::time::timeout(left, replies.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(failed("RabbitMQ closed the reply queue")),
            Ok(Some(body)) => body,
        };
        let Ok(reply) = serde_json::from_slice::<Value>(&body) else {
            continue;
        };
        if reply.get("Msg-ID").and_then(Value::as_str) == Some(msg_id) {
            return Ok(Some(reply));
        }
    }
}

/// Whether a `pusherd` consumes the shared queue on this broker (else a clear error).
pub(super) async fn check_consumed(broker: &Broker) -> Result<()> {
    let amqp_err = |e: amqp::Error| failed(format!("RabbitMQ: {e}"));
    match broker.queue_state(amqp::QUEUE).await.map_err(amqp_err)? {
        None => Err(failed(format!(
            "no pusherd is running on this broker: queue {} does not exist",
            amqp::QUEUE
        ))),
        Some(q) if q.consumers == 0 => Err(failed(format!(
            "no pusherd is consuming queue {} on this broker",
            amqp::QUEUE
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DevicePush {
        device_push(
            &json!({"push": {"Token-App": "org.example.app", "Token-Type": "apple",
                             "Token-ID": "0a1b2c", "Token-Proxy": "sip:10.0.0.1",
                             "Token-Public-Proxy": "sip:203.0.113.1:5060"}}),
            "dev1",
        )
        .unwrap()
    }

    #[test]
    fn push_req_is_kamailio_shaped_with_reply_to() {
        let d = dev();
        let body = push_req(&d, "m-1", "c-1", "amq.gen-xyz", "pusherctl@h");
        assert_eq!(routing_key(&d), "notification.push.apple.0a1b2c");
        assert_eq!(body["Pusher-Reply-To"], "amq.gen-xyz");
        assert_eq!(body["Payload"]["proxy"], "sip:203.0.113.1:5060");
        assert_eq!(body["Alert-Params"], json!(["0000 - pusherctl test"]));
        let req = pusher_core::push_req::PushReq::from_json(&body, 0).expect("pusherd reads it");
        assert_eq!(req.token_id, "0a1b2c");
        assert!(pusher_core::apns::is_canonical_uuid(&uuid_v4()));
    }

    #[test]
    fn device_push_errors() {
        let e = device_push(&json!({"name": "x"}), "d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no push object"), "{e}");
        let e = device_push(
            &json!({"push": {"Token-App": "a", "Token-Type": "apple"}}),
            "d",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("lacks Token-ID"), "{e}");
        let e = device_push(
            &json!({"push": {"Token-App": "a", "Token-Type": "apple", "Token-ID": "a.b"}}),
            "d",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("routing key"), "{e}");
    }

    #[test]
    fn deadline_is_pusherds() {
        let fallback = Duration::from_secs(20);
        let cfg = |ms: u64| {
            ConfigDoc::new(json!({"default": {"push_deadline_ms": 30_000},
                                  "org.example.app": {"push_deadline_ms": ms}}))
        };
        assert_eq!(
            deadline(&cfg(5_000), &dev(), "z", fallback),
            Duration::from_secs(5)
        );
        // Out of 1–60 s: not used, and the app's value hides the default's.
        assert_eq!(deadline(&cfg(500), &dev(), "z", fallback), fallback);
        let mut other = dev();
        other.token_type = "pager".into();
        assert_eq!(deadline(&cfg(5_000), &other, "z", fallback), fallback);
    }

    #[test]
    fn verdicts() {
        let ms = Duration::from_millis(23);
        let (l, ok) = verdict_line(
            &json!({"Status": "delivered", "Provider": "apns"}),
            ms,
            "org.a",
        );
        assert_eq!(l, "delivered in 23 ms (apns, org.a)");
        assert!(ok);
        let (l, ok) = verdict_line(
            &json!({"Status": "dead_token", "Provider": "apns", "Reason": "Unregistered"}),
            ms,
            "org.a",
        );
        assert_eq!(l, "dead token after 23 ms (apns, org.a): Unregistered");
        assert!(!ok);
        let (l, ok) = verdict_line(
            &json!({"Status": "no_credentials", "Provider": ""}),
            ms,
            "org.a",
        );
        assert_eq!(l, "no credentials after 23 ms (no provider, org.a)");
        assert!(!ok);
    }
}

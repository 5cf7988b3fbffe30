//! `pusher_maintenance push_endpoint AccountId device|user Id [AlertBody]`: a Kazoo 5
//! `endpoint_push_req` through the real path, and its per-device results.
//!
//! We declare a private reply queue (server-named, exclusive, auto-delete), bind it to
//! exchange `targeted` with its own name as routing key, and send that name as the
//! request's `Server-ID`, as Kazoo's `kz_amqp_worker` does. The request goes to
//! `targeted` / `pusher_shared_listener` (the shared queue's own binding: Kazoo 5's
//! routing key for it is not public, and this one always reaches a `pusherd`). The
//! answer is the `endpoint_push_resp` with our `Msg-ID`; we wait for it for the push
//! deadline + 5 s and print one line per device and the `Overall-Status`.

use std::time::Instant;

use pusher_io::amqp::{self, Broker};
use serde_json::{Value, json};

use super::commands::Args;
use super::push::{REPLY_GRACE, check_consumed, reply_of, root_cause, uuid_v4};
use super::{Ctx, Report, Result, failed};

/// The request body (as crossbar's `PUT …/pushes` would send it).
pub fn request(
    account_id: &str,
    endpoint_type: &str,
    endpoint_id: &str,
    alert_body: Option<&str>,
    msg_id: &str,
    server_id: &str,
) -> Value {
    let mut body = json!({
        "Event-Category": "notification",
        "Event-Name": "endpoint_push_req",
        "Account-ID": account_id,
        "Endpoint": {"ID": endpoint_id, "Type": endpoint_type},
        "Priority": "high",
        "Data": {"Push-Type": "custom_push"},
        "App-Name": "pusherctl",
        "App-Version": env!("CARGO_PKG_VERSION"),
        "Msg-ID": msg_id,
        "Server-ID": server_id,
    });
    if let Some(text) = alert_body {
        body["Alert"] = json!({"Body": text});
    }
    body
}

/// The lines printed for a response, and its `Overall-Status` (0 if absent).
pub fn result_lines(resp: &Value) -> (String, u64) {
    let mut out = String::new();
    for r in resp["Results"].as_array().into_iter().flatten() {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!(
            "{}: {} {}",
            s("Device-ID"),
            r["Status"].as_u64().unwrap_or(0),
            s("Message")
        ));
        if !s("Error").is_empty() {
            out.push_str(&format!(" ({})", s("Error")));
        }
        out.push('\n');
    }
    if let Some(e) = resp.get("Error").and_then(Value::as_str) {
        out.push_str(&format!("request refused: {e}\n"));
    }
    let overall = resp["Overall-Status"].as_u64().unwrap_or(0);
    out.push_str(&format!("Overall-Status: {overall}"));
    (out, overall)
}

/// `push_endpoint AccountId device|user Id [AlertBody]`.
pub async fn push_endpoint(ctx: &Ctx<'_>, args: Args<'_>) -> Result<Report> {
    let (account_id, endpoint_type) = (args.req(0)?, args.req(1)?);
    let (endpoint_id, alert_body) = (args.req(2)?, args.opt(3));
    if !matches!(endpoint_type, "device" | "user") {
        return Err(failed(format!(
            "endpoint type {endpoint_type:?}: expected device or user"
        )));
    }
    pusher_core::account::account_db(account_id)
        .map_err(|e| failed(format!("AccountId {account_id:?}: {e}")))?;
    let uri = &ctx.settings.amqp_uri;
    let broker = Broker::connect(uri, "pusherctl push_endpoint")
        .await
        .map_err(|e| {
            failed(format!(
                "RabbitMQ unreachable at {}: {}",
                pusher_io::couch::redact_url(uri),
                root_cause(&e)
            ))
        })?;
    let wait = ctx.settings.push.deadline + REPLY_GRACE;
    let sent = async {
        check_consumed(&broker).await?;
        let amqp_err = |e: amqp::Error| failed(format!("RabbitMQ: {e}"));
        let publisher = broker.publisher().await.map_err(amqp_err)?;
        let mut replies = broker.reply_queue().await.map_err(amqp_err)?;
        let server_id = replies.name().to_string();
        replies
            .bind(amqp::EXCHANGE_TARGETED, &server_id)
            .await
            .map_err(amqp_err)?;
        let msg_id = uuid_v4();
        let body = request(
            account_id,
            endpoint_type,
            endpoint_id,
            alert_body,
            &msg_id,
            &server_id,
        );
        let started = Instant::now();
        publisher
            .publish(
                amqp::EXCHANGE_TARGETED,
                amqp::QUEUE,
                body.to_string().as_bytes(),
            )
            .await
            .map_err(amqp_err)?;
        let Some(reply) = reply_of(&mut replies, &msg_id, started + wait).await? else {
            let why = "timeout: no endpoint_push_resp from pusherd within";
            return Ok(Report::failed("", format!("{why} {} s", wait.as_secs())));
        };
        let (lines, overall) = result_lines(&reply);
        Ok(if (200..400).contains(&overall) {
            Report::ok(lines)
        } else {
            Report::failed(
                lines,
                format!("endpoint push failed: Overall-Status {overall}"),
            )
        })
    }
    .await;
    broker.close("pusherctl done").await;
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_reads_as_an_endpoint_push_req() {
        let body = request(
            "3c1e6a2f9b7d4e0a8c5b1d2e3f405162",
            "user",
            "u1",
            Some("hello"),
            "m1",
            "amq.gen-x",
        );
        let req = pusher_core::endpoint_push::EndpointPushReq::from_json(&body, 0).unwrap();
        assert_eq!(req.alert.body.as_deref(), Some("hello"));
        assert_eq!(req.server_id.as_deref(), Some("amq.gen-x"));
    }

    #[test]
    fn lines_and_overall_status() {
        let resp = json!({"Overall-Status": 400, "Results": [
            {"Device-ID": "d1", "Status": 200, "Message": "Push sent"},
            {"Device-ID": "d2", "Status": 400, "Message": "Token type unknown",
             "Error": "Token type unknown"}]});
        let (lines, overall) = result_lines(&resp);
        assert_eq!(overall, 400);
        assert_eq!(
            lines,
            "d1: 200 Push sent\nd2: 400 Token type unknown (Token type unknown)\nOverall-Status: 400"
        );
    }
}

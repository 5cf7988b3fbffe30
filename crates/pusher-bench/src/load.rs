//! Load generation on the shared queue: Kamailio-shaped messages, a closed-loop publisher
//! that never lets the queue reach its 100-message limit, and a paced publisher.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::{Value, json};

use crate::env::Broker;

/// AMQP header with the publish time (µs since the epoch), read by the baseline consumer.
pub const TS_HEADER: &str = "x-bench-ts-us";
/// User-Agent prefix our rule matches.
pub const MATCHING_UA: &str = "BenchPhone/5.2.0 (iPhone) iOS/17.2 PushKit";
/// A User-Agent no rule matches.
pub const NO_RULE_UA: &str = "BenchNoRule/1.0 (Desk) Linux";
/// Bundle id in the Contact (`app-id`).
pub const CONTACT_APP: &str = "org.myorg.myapp";
/// Routing key of a reg_success (Kamailio's, from the captured fixture).
pub const REG_KEY: &str = "registration.success.acme%2Esip%2Eexample%2Ecom.2001";

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Exchange.
    pub exchange: &'static str,
    /// Routing key.
    pub key: String,
    /// JSON body.
    pub body: Vec<u8>,
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// A `reg_success` as Kamailio publishes it (fields of the captured fixture), for a device
/// of `account_id`, with `pn-tok=token` in the Contact.
pub fn reg_success(user_agent: &str, account_id: &str, device_id: &str, token: &str) -> Msg {
    let body = json!({
        "Event-Category": "directory", "Event-Name": "reg_success",
        "App-Name": "kamailio", "App-Version": "5.6.3",
        "Node": "kamailio@kamailio.harness.local", "Status": "Registered",
        "Event-Timestamp": 1795382450u64, "Expires": 3600, "First-Registration": false,
        "Contact": format!("<sip:2001@127.0.0.1:5074;transport=udp;app-id={CONTACT_APP};pn-tok={token};pn-type=apple>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""),
        "Call-ID": format!("1-{}@127.0.0.1", uuid::Uuid::new_v4().simple()),
        "Realm": "acme.sip.example.com", "Username": "2001",
        "From-User": "2001", "From-Host": "acme.sip.example.com",
        "To-User": "2001", "To-Host": "acme.sip.example.com",
        "User-Agent": user_agent,
        "Network-Source-IP": "127.0.0.1", "Network-Source-Port": "5074",
        "Proxy-Path": "sip:127.0.0.1:5060",
        "Msg-ID": uuid::Uuid::new_v4().to_string(),
        "Server-ID": "kamailio@kamailio.harness.local-<1>-targeted-3",
        "Custom-Channel-Vars": {"Account-ID": account_id, "Authorizing-ID": device_id},
    });
    Msg {
        exchange: pusher_io::amqp::EXCHANGE_REGISTRAR,
        key: REG_KEY.to_string(),
        body: body.to_string().into_bytes(),
    }
}

/// A `push_req` as Kamailio publishes it (fields of the captured fixture).
pub fn push_req_body(app: &str, token: &str) -> Value {
    json!({
        "Event-Category": "notification", "Event-Name": "push_req",
        "Call-ID": format!("1-{}@127.0.0.1", uuid::Uuid::new_v4().simple()),
        "Token-ID": token, "Token-Type": "apple", "Token-App": app,
        "Alert-Key": "IC_SIL", "Alert-Params": ["callerreply02"], "Sound": "ring.caf",
        "Payload": {"caller-id-number": "callerreply02"},
        "App-Name": "kamailio", "App-Version": "5.6.3",
        "Node": "kamailio@kamailio.harness.local",
        "Msg-ID": uuid::Uuid::new_v4().to_string(),
        "Server-ID": "kamailio@kamailio.harness.local-<1>-targeted-1",
    })
}

/// [`push_req_body`] as a message on `pushes`.
pub fn push_req(app: &str, token: &str) -> Msg {
    Msg {
        exchange: pusher_io::amqp::EXCHANGE_PUSHES,
        key: format!("notification.push.apple.{token}"),
        body: push_req_body(app, token).to_string().into_bytes(),
    }
}

/// The device token of push number `i` (the mock records it, so arrivals map back to
/// publish times).
pub fn push_token(run: &str, i: u64) -> String {
    format!("{run}{i:08x}")
}

/// The index back from a token made by [`push_token`].
pub fn push_index(run: &str, token: &str) -> Option<u64> {
    u64::from_str_radix(token.strip_prefix(run)?, 16).ok()
}

fn props() -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(TS_HEADER.into(), AMQPValue::LongLongInt(now_us() as i64));
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_headers(headers)
}

/// What a publisher did.
#[derive(Debug, Clone)]
pub struct Published {
    /// First publish.
    pub started: Instant,
    /// First publish, wall clock (to compare with the mock's arrival times).
    pub started_wall: SystemTime,
    /// Highest ready count seen by the closed loop.
    pub max_ready_seen: u32,
    /// Publish time (µs since the epoch) of message `i` (paced runs only).
    pub sent_us: Vec<u64>,
}

/// Closed loop: check the ready count, publish at most `max_ready − ready` more (in
/// batches ≤ `max_ready`), wait for their confirms, repeat. The queue never holds more
/// than `max_ready` (< 100) ready messages, so nothing is dropped by construction, and the
/// rate is whatever the consumer sustains.
pub async fn closed_loop(
    broker: &Broker,
    n: u64,
    max_ready: u32,
    mut make: impl FnMut(u64) -> Msg,
) -> Result<Published> {
    if max_ready >= u32::from(pusher_io::amqp::QUEUE_MAX_LENGTH.unsigned_abs()) {
        bail!("max_ready must stay below the queue's x-max-length");
    }
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut sent = 0u64;
    let mut max_seen = 0u32;
    while sent < n {
        let ready = broker.ready().await?;
        max_seen = max_seen.max(ready);
        let room = u64::from(max_ready.saturating_sub(ready));
        if room == 0 {
            tokio::time::sleep(Duration::from_micros(500)).await;
            continue;
        }
        let batch = room.min(n - sent);
        let mut confirms = Vec::with_capacity(batch as usize);
        for i in sent..sent + batch {
            confirms.push(publish(broker, &make(i)).await?);
        }
        all_acked(confirms).await?;
        sent += batch;
    }
    Ok(Published {
        started,
        started_wall,
        max_ready_seen: max_seen,
        sent_us: Vec::new(),
    })
}

/// Paced: message `i` is published at `start + i / rate`, confirms awaited at the end.
pub async fn paced(
    broker: &Broker,
    n: u64,
    rate_per_s: u64,
    mut make: impl FnMut(u64) -> Msg,
) -> Result<Published> {
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let start = tokio::time::Instant::now();
    let mut confirms = Vec::with_capacity(n as usize);
    let mut sent_us = Vec::with_capacity(n as usize);
    let mut max_seen = 0;
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate_per_s)).await;
        let m = make(i);
        sent_us.push(now_us());
        confirms.push(publish(broker, &m).await?);
        if i % 500 == 0 {
            max_seen = max_seen.max(broker.ready().await?);
        }
    }
    all_acked(confirms).await?;
    Ok(Published {
        started,
        started_wall,
        max_ready_seen: max_seen,
        sent_us,
    })
}

/// Publishes one message and waits for the broker's confirm.
pub async fn publish_confirmed(broker: &Broker, m: &Msg) -> Result<()> {
    all_acked(vec![publish(broker, m).await?]).await
}

/// Publishes one message on the confirm-mode channel; the confirm is awaited later.
async fn publish(broker: &Broker, m: &Msg) -> Result<lapin::PublisherConfirm> {
    Ok(broker
        .publish
        .basic_publish(
            m.exchange.into(),
            m.key.as_str().into(),
            BasicPublishOptions::default(),
            &m.body,
            props(),
        )
        .await?)
}

/// Awaits publisher confirms; a nack is an error.
async fn all_acked(confirms: Vec<lapin::PublisherConfirm>) -> Result<()> {
    for c in confirms {
        if !c.await?.is_ack() {
            bail!("the broker refused a publish");
        }
    }
    Ok(())
}

/// Waits until the shared queue has no ready message; returns when that was seen.
pub async fn wait_no_ready(broker: &Broker, within: Duration) -> Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        if broker.ready().await? == 0 {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("the shared queue still holds ready messages after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// p-th percentile (0–100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

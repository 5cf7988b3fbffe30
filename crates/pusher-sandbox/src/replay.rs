//! Picking and editing Kamailio-captured messages for replay.

use anyhow::{Context as _, bail};
use serde_json::Value;

/// One captured message: where Kamailio published it and what.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Exchange.
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// Parsed body.
    pub body: Value,
}

/// Reads a capture file (JSON lines with `exchange`, `routing_key`, `body`) and returns
/// the `index`-th message whose `Event-Name` is `event`.
pub fn pick(jsonl: &str, event: &str, index: usize) -> anyhow::Result<Captured> {
    let mut seen = 0;
    for (n, line) in jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
        if v["body"]["Event-Name"] != event {
            continue;
        }
        if seen == index {
            return Ok(Captured {
                exchange: v["exchange"].as_str().unwrap_or_default().to_string(),
                routing_key: v["routing_key"].as_str().unwrap_or_default().to_string(),
                body: v["body"].clone(),
            });
        }
        seen += 1;
    }
    bail!("no {event} number {index} in the capture file ({seen} found)")
}

/// Applies `KEY=JSON` overrides (a value that is not JSON is taken as a string).
pub fn apply_overrides(body: &mut Value, overrides: &[String]) -> anyhow::Result<()> {
    for o in overrides {
        let Some((k, v)) = o.split_once('=') else {
            bail!("override {o:?} is not KEY=VALUE");
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        body[k] = value;
    }
    Ok(())
}

/// The routing key Kamailio would use for `body`: `push_req` keys carry the token
/// (`notification.push.<Token-Type>.<Token-ID>`, not encoded, spec §3.3), so they follow
/// overridden token fields; other events keep the captured key.
pub fn routing_key_for(captured: &Captured) -> String {
    let b = &captured.body;
    match (
        b["Event-Name"].as_str(),
        b["Token-Type"].as_str(),
        b["Token-ID"].as_str(),
    ) {
        (Some("push_req"), Some(t), Some(id)) => format!("notification.push.{t}.{id}"),
        _ => captured.routing_key.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_req_routing_key_follows_the_token() {
        let mut c = pick(LINES, "push_req", 0).unwrap();
        apply_overrides(
            &mut c.body,
            &["Token-Type=firebase".into(), "Token-ID=t1".into()],
        )
        .unwrap();
        assert_eq!(routing_key_for(&c), "notification.push.firebase.t1");
        let r = pick(LINES, "reg_success", 0).unwrap();
        assert_eq!(routing_key_for(&r), "r.1");
    }

    const LINES: &str = r#"{"exchange":"registrar","routing_key":"r.1","body":{"Event-Name":"reg_success","n":1}}
{"exchange":"pushes","routing_key":"p.1","body":{"Event-Name":"push_req"}}
{"exchange":"registrar","routing_key":"r.2","body":{"Event-Name":"reg_success","n":2}}"#;

    #[test]
    fn picks_by_event_and_index() {
        let c = pick(LINES, "reg_success", 1).expect("second");
        assert_eq!(
            (c.exchange.as_str(), c.routing_key.as_str()),
            ("registrar", "r.2")
        );
        assert_eq!(c.body["n"], 2);
        assert!(pick(LINES, "reg_success", 2).is_err());
    }

    #[test]
    fn overrides_take_json_or_strings() {
        let mut b = serde_json::json!({});
        apply_overrides(
            &mut b,
            &[
                r#"Custom-Channel-Vars={"Account-ID":"a"}"#.into(),
                "User-Agent=x y".into(),
            ],
        )
        .expect("apply");
        assert_eq!(b["Custom-Channel-Vars"]["Account-ID"], "a");
        assert_eq!(b["User-Agent"], "x y");
        assert!(apply_overrides(&mut b, &["novalue".into()]).is_err());
    }
}

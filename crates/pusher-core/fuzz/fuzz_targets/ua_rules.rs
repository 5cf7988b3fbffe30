//! `system_config/pusher` → `User-Agents` rule compilation and matching.
//!
//! Valid JSON is read as a whole `system_config/pusher` doc (node → zone → default
//! lookup, as the service does) and also as a `User-Agents` value; other UTF-8 text is
//! used as one rule's `regex` (the catastrophic-pattern case). Each compiled rule set is
//! matched against hostile User-Agents. Checks: never panics, matching is bounded (the
//! backtrack limit turns blow-ups into `MatchFailed`), a rule set never yields more
//! rules than the config has keys, and a match names a compiled rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pusher_core::kapps_config::{ConfigDoc, to_boolean};
use pusher_core::ua_rules::UserAgentRules;
use serde_json::{Value, json};

fn exercise(user_agents: &Value, input: &str) {
    let (rules, errors) = UserAgentRules::compile(user_agents);
    let keys = user_agents.as_object().map_or(0, |m| m.len());
    assert!(rules.len() <= keys);
    let _ = errors.iter().map(ToString::to_string).count();
    let long_a = "a".repeat(2000);
    // Far beyond MAX_USER_AGENT_BYTES: matching must stay as cheap as for the prefix
    // (a quadratic look-around rule used to take minutes here).
    let huge = input.repeat(100_000 / input.len().max(1) + 1);
    for ua in [
        "",
        "Linphone/5.2 (iPhone) LinphoneSDK/5.2",
        &long_a,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
        "\u{0}\u{1f600}\u{202e}",
        input,
        &huge,
    ] {
        let found = rules.first_match(ua);
        if let Some(rule) = found.rule {
            assert!(rules.rules().iter().any(|r| r.key == rule.key));
        }
        let _ = found.errors.iter().map(ToString::to_string).count();
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match serde_json::from_str::<Value>(text) {
        Ok(doc) => {
            let config = ConfigDoc::new(doc.clone());
            if let Some(ua) = config.node_value("pusher@n1", "local", &["User-Agents"]) {
                exercise(ua, text);
            }
            let _ = config
                .node_value("pusher@n1", "local", &["rfc8599"])
                .and_then(to_boolean);
            exercise(&doc, text);
        }
        Err(_) => {
            exercise(
                &json!({"fuzz": {"regex": text, "properties": {"Token-ID": "pn-tok"}}}),
                text,
            );
        }
    }
});

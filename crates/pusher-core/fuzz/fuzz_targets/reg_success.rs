//! `reg_success` decode + decide + apply on arbitrary JSON bodies.
//!
//! The body is decoded as Kamailio's JSON; the decision runs against a fixed set of
//! `User-Agents` rules (plain, catch-all, RFC 8599 fallback on and off). Checks: never
//! panics; an `Update` names a valid `account/ab/cd/…` database; applying the same update
//! twice changes the device doc at most once (idempotent), and only its `push` key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pusher_core::reg_success::{PUSH_KEY, RegDecision, RegSuccess, apply_update, decide};
use pusher_core::ua_rules::UserAgentRules;
use serde_json::{Value, json};

fn rules() -> &'static [UserAgentRules] {
    static RULES: OnceLock<Vec<UserAgentRules>> = OnceLock::new();
    RULES.get_or_init(|| {
        let props = json!({"Token-App": "app-id", "Token-Type": "pn-type",
            "Token-ID": "pn-tok", "Token-Extra": "Expires"});
        [
            json!(null),
            json!({"Linphone": {"regex": "^Linphone", "properties": props},
                   "Any": {"regex": ".", "properties": {"Token-ID": "pn-prid",
                       "Token-App": "pn-param", "Token-Type": "pn-provider"}}}),
            json!({"Catch": {"regex": "", "properties": props}}),
        ]
        .iter()
        .map(|v| UserAgentRules::compile(v).0)
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(reg) = RegSuccess::from_json(body) else {
        return;
    };
    for rules in rules() {
        for rfc8599 in [false, true] {
            let (decision, _warnings) = decide(&reg, rules, rfc8599);
            if let RegDecision::Update {
                account_db,
                device_id,
                update,
                ..
            } = decision
            {
                assert!(account_db.starts_with("account/") && account_db.len() == 42);
                assert!(!device_id.is_empty());
                let original = json!({"_id": device_id, "name": "phone", "push": {"old": "x"}});
                let mut once = original.clone();
                apply_update(&mut once, &update);
                let mut twice = once.clone();
                assert!(
                    !apply_update(&mut twice, &update),
                    "second apply changed the doc"
                );
                assert_eq!(once, twice);
                for key in ["_id", "name"] {
                    assert_eq!(once[key], original[key], "apply_update touched {key}");
                }
                if let Some(push) = once.get(PUSH_KEY) {
                    assert!(
                        push.as_object()
                            .is_some_and(|p| p.values().all(Value::is_string))
                    );
                }
            }
        }
    }
});

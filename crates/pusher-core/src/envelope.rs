//! Kazoo envelope: which event a message body is, and its correlation ids.
//!
//! Every Kazoo message carries `Event-Category` and `Event-Name` (spec §2.1); the
//! pusher acts on `directory`/`reg_success` and `notification`/`push_req` and ignores
//! the rest (spec §11.2).

use serde_json::Value;

/// What a message body is, from its `Event-Category` and `Event-Name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `directory` / `reg_success`: a device registered (spec §1.4, §3.5).
    RegSuccess,
    /// `notification` / `push_req`: Kamailio asks for a push (spec §1.4).
    PushReq,
    /// Anything else; missing or non-string fields are empty strings.
    Other {
        /// `Event-Category`.
        category: String,
        /// `Event-Name`.
        name: String,
    },
}

/// Classifies a message body. Names are compared exactly, as Kazoo does.
pub fn classify(v: &Value) -> Event {
    let field = |name| v.get(name).and_then(Value::as_str).unwrap_or("");
    match (field("Event-Category"), field("Event-Name")) {
        ("directory", "reg_success") => Event::RegSuccess,
        ("notification", "push_req") => Event::PushReq,
        (category, name) => Event::Other {
            category: category.to_string(),
            name: name.to_string(),
        },
    }
}

/// `Msg-ID` of a message body, if it is a string.
pub fn msg_id(v: &Value) -> Option<&str> {
    v.get("Msg-ID").and_then(Value::as_str)
}

/// `Call-ID` of a message body, if it is a string.
pub fn call_id(v: &Value) -> Option<&str> {
    v.get("Call-ID").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURES: &str = include_str!("../../../tests/fixtures/kamailio-captured.jsonl");

    #[test]
    fn classifies_captured_messages() {
        let bodies: Vec<Value> = FIXTURES
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["body"].clone())
            .collect();
        assert_eq!(bodies.len(), 3);
        assert_eq!(classify(&bodies[0]), Event::RegSuccess);
        assert_eq!(classify(&bodies[1]), Event::RegSuccess);
        assert_eq!(classify(&bodies[2]), Event::PushReq);
        assert_eq!(
            msg_id(&bodies[2]),
            Some("7def8ed9-ae44-416c-8c3f-58b8f73582a5")
        );
        assert_eq!(call_id(&bodies[2]), Some("1-31568@127.0.0.1"));
        assert_eq!(call_id(&bodies[0]), Some("1-716@127.0.0.1"));
    }

    #[test]
    fn other_events() {
        assert_eq!(
            classify(&json!({"Event-Category": "notification", "Event-Name": "push_resp"})),
            Event::Other {
                category: "notification".into(),
                name: "push_resp".into()
            }
        );
        assert_eq!(
            classify(&json!({"Event-Category": "Directory", "Event-Name": "reg_success"})),
            Event::Other {
                category: "Directory".into(),
                name: "reg_success".into()
            }
        );
        let empty = Event::Other {
            category: String::new(),
            name: String::new(),
        };
        assert_eq!(classify(&json!({})), empty);
        assert_eq!(classify(&json!(null)), empty);
        assert_eq!(classify(&json!([1])), empty);
        assert_eq!(
            classify(&json!({"Event-Category": 1, "Event-Name": "push_req"})),
            Event::Other {
                category: String::new(),
                name: "push_req".into()
            }
        );
    }

    #[test]
    fn ids_must_be_strings() {
        assert_eq!(msg_id(&json!({"Msg-ID": 5})), None);
        assert_eq!(call_id(&json!({})), None);
        assert_eq!(msg_id(&json!("x")), None);
    }
}

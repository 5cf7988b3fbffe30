//! The message checks FCM applies to a `messages:send` body before it looks at the
//! registration token, with Google's wording for each refusal (400 `INVALID_ARGUMENT`).

use serde_json::Value;

/// Why a message was refused (400 `INVALID_ARGUMENT`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub(super) message: String,
    /// Field for a `google.rpc.BadRequest` detail.
    pub(super) field: Option<String>,
    /// `details[].errorCode`, when FCM adds one.
    pub(super) error_code: Option<&'static str>,
}

impl Problem {
    fn plain(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            field: None,
            error_code: Some("INVALID_ARGUMENT"),
        }
    }
}

/// The message checks FCM applies before looking at the token.
pub(super) fn check_message(body: Option<&Value>) -> Result<(), Problem> {
    let Some(body) = body.filter(|b| b.is_object()) else {
        return Err(Problem {
            error_code: None,
            ..Problem::plain("Invalid JSON payload received.")
        });
    };
    let Some(message) = body.get("message").filter(|m| m.is_object()) else {
        return Err(Problem::plain(
            "Invalid JSON payload received. 'message' must be an object.",
        ));
    };
    let targets = ["token", "topic", "condition"]
        .into_iter()
        .filter(|k| message.get(*k).is_some())
        .collect::<Vec<_>>();
    match targets.as_slice() {
        [] => return Err(Problem::plain("Recipient of the message is not set.")),
        [one] => {
            if !message[*one].is_string() {
                return Err(type_problem(
                    &format!("message.{one}"),
                    "TYPE_STRING",
                    &message[*one],
                ));
            }
        }
        _ => {
            return Err(Problem::plain(
                "Exactly one of token, topic or condition must be set.",
            ));
        }
    }
    if message.get("token").and_then(Value::as_str) == Some("") {
        return Err(Problem::plain(
            "The registration token is not a valid FCM registration token",
        ));
    }
    check_data(message.get("data"), "message.data")?;
    if let Some(android) = message.get("android") {
        check_data(android.get("data"), "message.android.data")?;
        if let Some(priority) = android.get("priority") {
            let ok = priority
                .as_str()
                .is_some_and(|p| matches!(p.to_ascii_uppercase().as_str(), "HIGH" | "NORMAL"));
            if !ok {
                return Err(type_problem(
                    "message.android.priority",
                    "type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority",
                    priority,
                ));
            }
        }
        if let Some(ttl) = android.get("ttl")
            && !ttl.as_str().is_some_and(valid_ttl)
        {
            return Err(type_problem(
                "message.android.ttl",
                "type.googleapis.com/google.protobuf.Duration",
                ttl,
            ));
        }
    }
    Ok(())
}

/// `data` must be an object of string values with no reserved keys and ≤ 4096 bytes.
fn check_data(data: Option<&Value>, field: &str) -> Result<(), Problem> {
    let Some(data) = data else { return Ok(()) };
    let Some(map) = data.as_object() else {
        return Err(type_problem(
            field,
            "type.googleapis.com/google.protobuf.Struct",
            data,
        ));
    };
    let mut size = 0;
    for (i, (key, value)) in map.iter().enumerate() {
        let Some(text) = value.as_str() else {
            return Err(type_problem(
                &format!("{field}[{i}].value"),
                "TYPE_STRING",
                value,
            ));
        };
        let lower = key.to_ascii_lowercase();
        if matches!(lower.as_str(), "from" | "notification" | "message_type")
            || lower.starts_with("google")
            || lower.starts_with("gcm")
        {
            return Err(Problem::plain(format!("Invalid data payload key: {key}")));
        }
        size += key.len() + text.len();
    }
    if size > 4096 {
        return Err(Problem {
            error_code: Some("INVALID_ARGUMENT"),
            ..Problem::plain("Android message is too big")
        });
    }
    Ok(())
}

/// Google's wording for a value of the wrong type.
fn type_problem(field: &str, expected: &str, got: &Value) -> Problem {
    Problem {
        message: format!("Invalid value at '{field}' ({expected}), {got}"),
        field: Some(field.to_string()),
        error_code: None,
    }
}

/// A protobuf Duration string (`"30s"`, `"1.5s"`) of at most 4 weeks.
fn valid_ttl(ttl: &str) -> bool {
    let Some(number) = ttl.strip_suffix('s') else {
        return false;
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
        && whole.parse::<u64>().is_ok_and(|secs| secs <= 2_419_200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(v: Value) -> Result<(), Problem> {
        check_message(Some(&v))
    }

    #[test]
    fn data_values_must_be_strings() {
        assert!(msg(json!({"message": {"token": "t", "data": {"a": "1"}}})).is_ok());
        let p = msg(json!({"message": {"token": "t", "data": {"a": "1", "b": 2}}})).unwrap_err();
        assert_eq!(
            p.message,
            "Invalid value at 'message.data[1].value' (TYPE_STRING), 2"
        );
        assert_eq!(p.field.as_deref(), Some("message.data[1].value"));
        let p =
            msg(json!({"message": {"token": "t", "android": {"data": {"x": true}}}})).unwrap_err();
        assert!(p.message.contains("message.android.data[0].value"), "{p:?}");
    }

    #[test]
    fn targets_reserved_keys_priority_and_ttl() {
        assert!(msg(json!({"message": {}})).is_err());
        assert!(msg(json!({"message": {"token": "t", "topic": "x"}})).is_err());
        assert!(msg(json!({"message": {"topic": "news"}})).is_ok());
        assert!(msg(json!({"message": {"token": "t", "data": {"from": "x"}}})).is_err());
        assert!(msg(json!({"message": {"token": "t", "data": {"google.x": "x"}}})).is_err());
        let ok = json!({"message": {"token": "t", "android": {"priority": "high", "ttl": "30s"}}});
        assert!(msg(ok).is_ok());
        assert!(
            msg(json!({"message": {"token": "t", "android": {"priority": "urgent"}}})).is_err()
        );
        assert!(msg(json!({"message": {"token": "t", "android": {"ttl": 30}}})).is_err());
        let big = "x".repeat(5000);
        assert!(msg(json!({"message": {"token": "t", "data": {"k": big}}})).is_err());
    }

    #[test]
    fn ttl_format() {
        for ok in ["0s", "30s", "1.5s", "2419200s"] {
            assert!(valid_ttl(ok), "{ok}");
        }
        for bad in ["30", "s", "-1s", "2419201s", "1.1234567890s", "1 s"] {
            assert!(!valid_ttl(bad), "{bad}");
        }
    }
}

use super::*;

fn retry(reason: &str, after: Option<u64>) -> Outcome {
    Outcome::Retry {
        reason: Cow::Owned(reason.to_string()),
        retry_after: after.map(Duration::from_secs),
    }
}

fn drop(reason: &str) -> Outcome {
    Outcome::Drop {
        reason: Cow::Owned(reason.to_string()),
    }
}

fn dead(reason: &str, ts: Option<u64>) -> Outcome {
    Outcome::DeadToken {
        reason: Cow::Owned(reason.to_string()),
        timestamp_ms: ts,
    }
}

fn apns_body(reason: &str) -> Vec<u8> {
    format!(r#"{{"reason":"{reason}"}}"#).into_bytes()
}

/// A 400 `BadDeviceToken` is also Apple's answer to a sandbox/production mismatch, so it
/// must never count as a dead token (which may remove the device's `push` object), and
/// its reason must point the operator at `apple.host`.
#[test]
fn apns_bad_device_token_is_a_rejection_naming_the_host() {
    let outcome = classify_apns(400, &apns_body("BadDeviceToken"), None);
    assert_eq!(outcome.label(), "dropped");
    assert!(!matches!(outcome, Outcome::DeadToken { .. }));
    let reason = outcome.reason().expect("a reason");
    assert!(reason.starts_with("BadDeviceToken"), "{reason}");
    assert!(reason.contains("apple.host"), "{reason}");
    assert!(reason.contains("sandbox"), "{reason}");
    // Not a credentials problem: the push_resp status stays `rejected`.
    assert!(!is_auth_reason(reason));
    // 410 `Unregistered` is still a dead token.
    assert!(matches!(
        classify_apns(410, &apns_body("Unregistered"), None),
        Outcome::DeadToken { .. }
    ));
}

#[test]
fn apns_table() {
    let cases: Vec<(u16, Vec<u8>, Option<&str>, Outcome)> = vec![
        (200, vec![], None, Outcome::Delivered { id: None }),
        (
            410,
            br#"{"reason":"Unregistered","timestamp":1717000000000}"#.to_vec(),
            None,
            dead("Unregistered", Some(1_717_000_000_000)),
        ),
        (
            410,
            br#"{"reason":"ExpiredToken","timestamp":"1717000000001"}"#.to_vec(),
            None,
            dead("ExpiredToken", Some(1_717_000_000_001)),
        ),
        (
            410,
            apns_body("Unregistered"),
            None,
            dead("Unregistered", None),
        ),
        (410, b"oops".to_vec(), None, drop("HTTP 410")),
        (
            400,
            apns_body("BadDeviceToken"),
            None,
            drop(BAD_DEVICE_TOKEN_REASON),
        ),
        (
            400,
            apns_body("DeviceTokenNotForTopic"),
            None,
            drop("DeviceTokenNotForTopic"),
        ),
        (
            429,
            apns_body("TooManyRequests"),
            Some("30"),
            retry("TooManyRequests", Some(30)),
        ),
        (
            429,
            apns_body("TooManyProviderTokenUpdates"),
            None,
            retry("TooManyProviderTokenUpdates", None),
        ),
        (
            500,
            apns_body("InternalServerError"),
            None,
            retry("InternalServerError", None),
        ),
        (
            503,
            apns_body("ServiceUnavailable"),
            Some(" 5 "),
            retry("ServiceUnavailable", Some(5)),
        ),
        (503, apns_body("Shutdown"), None, retry("Shutdown", None)),
        (
            502,
            b"<html>bad gateway</html>".to_vec(),
            None,
            retry("HTTP 502", None),
        ),
        (504, vec![], Some("soon"), retry("HTTP 504", None)),
        (
            403,
            apns_body("ExpiredProviderToken"),
            None,
            retry("ExpiredProviderToken", None),
        ),
        (
            400,
            apns_body("IdleTimeout"),
            None,
            retry("IdleTimeout", None),
        ),
        (400, apns_body("BadTopic"), None, drop("BadTopic")),
        (
            403,
            apns_body("BadCertificate"),
            None,
            drop("BadCertificate"),
        ),
        (
            403,
            apns_body("BadCertificateEnvironment"),
            None,
            drop("BadCertificateEnvironment"),
        ),
        (
            403,
            apns_body("InvalidProviderToken"),
            None,
            drop("InvalidProviderToken"),
        ),
        (400, apns_body("MissingTopic"), None, drop("MissingTopic")),
        (
            413,
            apns_body("PayloadTooLarge"),
            None,
            drop("PayloadTooLarge"),
        ),
        (
            400,
            apns_body("TopicDisallowed"),
            None,
            drop("TopicDisallowed"),
        ),
        (
            400,
            apns_body("InvalidPushType"),
            None,
            drop("InvalidPushType"),
        ),
        (400, apns_body("SomethingNew"), None, drop("SomethingNew")),
        (403, br#"{"reason":""}"#.to_vec(), None, drop("HTTP 403")),
        (404, br#"{"reason":5}"#.to_vec(), None, drop("HTTP 404")),
        (302, vec![], None, drop("HTTP 302")),
    ];
    for (status, body, after, want) in cases {
        assert_eq!(
            classify_apns(status, &body, after),
            want,
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn known_reasons_are_borrowed() {
    let Outcome::Drop { reason } = classify_apns(400, &apns_body("BadTopic"), None) else {
        panic!("expected drop")
    };
    assert!(matches!(reason, Cow::Borrowed("BadTopic")));
    let long = "R".repeat(1000);
    let Outcome::Drop { reason } = classify_apns(400, &apns_body(&long), None) else {
        panic!("expected drop")
    };
    assert_eq!(reason.len(), 128);
    let Outcome::Retry { reason, .. } =
        classify_fcm(503, br#"{"error":{"status":"UNAVAILABLE"}}"#, None)
    else {
        panic!("expected retry")
    };
    assert!(matches!(reason, Cow::Borrowed("UNAVAILABLE")));
}

fn fcm_body(code: u16, status: &str, message: &str, error_code: Option<&str>) -> Vec<u8> {
    let details = match error_code {
        Some(c) => serde_json::json!([
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}
        ]),
        None => serde_json::json!([]),
    };
    serde_json::json!({"error": {"code": code, "message": message, "status": status, "details": details}})
            .to_string()
            .into_bytes()
}

#[test]
fn fcm_table() {
    let unauth = |r: &str| Outcome::Unauthorized {
        reason: Cow::Owned(r.to_string()),
    };
    let cases: Vec<(u16, Vec<u8>, Option<&str>, Outcome)> = vec![
        (
            200,
            br#"{"name":"projects/my-project/messages/0:1500415314455276%31bd1c9631bd1c96"}"#
                .to_vec(),
            None,
            Outcome::Delivered {
                id: Some("0:1500415314455276%31bd1c9631bd1c96".into()),
            },
        ),
        (200, b"{}".to_vec(), None, Outcome::Delivered { id: None }),
        (
            404,
            fcm_body(
                404,
                "NOT_FOUND",
                "Requested entity was not found.",
                Some("UNREGISTERED"),
            ),
            None,
            dead("UNREGISTERED", None),
        ),
        (
            400,
            fcm_body(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                Some("INVALID_ARGUMENT"),
            ),
            None,
            dead("INVALID_ARGUMENT", None),
        ),
        (
            400,
            fcm_body(
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'message.data[0].value' (TYPE_STRING), 1",
                None,
            ),
            None,
            drop("INVALID_ARGUMENT"),
        ),
        (
            401,
            fcm_body(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
                None,
            ),
            None,
            unauth("UNAUTHENTICATED"),
        ),
        (401, vec![], None, unauth("HTTP 401")),
        (
            401,
            fcm_body(
                401,
                "UNAUTHENTICATED",
                "Auth error from APNS",
                Some("THIRD_PARTY_AUTH_ERROR"),
            ),
            None,
            drop("THIRD_PARTY_AUTH_ERROR"),
        ),
        (
            403,
            fcm_body(
                403,
                "PERMISSION_DENIED",
                "SenderId mismatch",
                Some("SENDER_ID_MISMATCH"),
            ),
            None,
            drop("SENDER_ID_MISMATCH"),
        ),
        (
            403,
            fcm_body(403, "PERMISSION_DENIED", "Permission denied", None),
            None,
            drop("PERMISSION_DENIED"),
        ),
        (
            503,
            fcm_body(
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                Some("UNAVAILABLE"),
            ),
            Some("10"),
            retry("UNAVAILABLE", Some(10)),
        ),
        (
            500,
            fcm_body(500, "INTERNAL", "Internal error", Some("INTERNAL")),
            None,
            retry("INTERNAL", None),
        ),
        (
            429,
            fcm_body(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded",
                Some("QUOTA_EXCEEDED"),
            ),
            None,
            retry("QUOTA_EXCEEDED", None),
        ),
        (
            429,
            fcm_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded", None),
            Some("60"),
            retry("RESOURCE_EXHAUSTED", Some(60)),
        ),
        (429, vec![], None, retry("HTTP 429", None)),
        (
            502,
            b"<html>".to_vec(),
            Some("3"),
            retry("HTTP 502", Some(3)),
        ),
        (
            504,
            fcm_body(504, "DEADLINE_EXCEEDED", "", None),
            None,
            retry("DEADLINE_EXCEEDED", None),
        ),
        (404, b"Not Found".to_vec(), None, drop("HTTP 404")),
        (
            400,
            fcm_body(400, "FAILED_PRECONDITION", "x", Some("UNSPECIFIED_ERROR")),
            None,
            drop("UNSPECIFIED_ERROR"),
        ),
        (
            418,
            br#"{"error":{"status":"TEAPOT"}}"#.to_vec(),
            None,
            drop("TEAPOT"),
        ),
    ];
    for (status, body, after, want) in cases {
        assert_eq!(
            classify_fcm(status, &body, after),
            want,
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn fcm_detail_code_anywhere_in_details() {
    // A BadRequest detail first, the FCM error second.
    let body = br#"{"error":{"code":404,"status":"NOT_FOUND","details":[
            {"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[]},
            {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
    assert_eq!(classify_fcm(404, body, None), dead("UNREGISTERED", None));
    assert_eq!(
        fcm_error_message(&fcm_body(400, "INVALID_ARGUMENT", "bad thing", None)).as_deref(),
        Some("bad thing")
    );
    assert_eq!(fcm_error_message(b"nope"), None);
}

#[test]
fn labels() {
    assert_eq!(Outcome::Delivered { id: None }.label(), "delivered");
    assert_eq!(retry("x", None).label(), "retry");
    assert_eq!(
        Outcome::Unauthorized {
            reason: Cow::Borrowed("x")
        }
        .label(),
        "unauthorized"
    );
    assert_eq!(dead("x", None).label(), "dead_token");
    assert_eq!(drop("x").label(), "dropped");
    assert_eq!(drop("BadTopic").reason(), Some("BadTopic"));
    assert_eq!(Outcome::Delivered { id: None }.reason(), None);
}

#[test]
fn retry_after_header() {
    assert_eq!(
        parse_retry_after(Some("120")),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(Some(" 0 ")), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after(Some("99999999999999999999999")),
        Some(Duration::from_secs(u64::MAX))
    );
    for bad in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "abc"] {
        assert_eq!(parse_retry_after(Some(bad)), None, "{bad}");
    }
    assert_eq!(parse_retry_after(None), None);
}

#[test]
fn exponential_backoff_with_jitter() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(5);
    let ms = |attempt, jitter| retry_delay(attempt, None, base, max, jitter).as_millis();
    assert_eq!(ms(1, 0.5), 100);
    assert_eq!(ms(2, 0.5), 200);
    assert_eq!(ms(3, 0.5), 400);
    assert_eq!(ms(0, 0.5), 100);
    assert_eq!(ms(1, 0.0), 80);
    assert_eq!(ms(3, 0.0), 320);
    assert!((479..=480).contains(&ms(3, 0.999_999_9)));
    // Capped at max, and jitter never pushes past it.
    assert_eq!(ms(7, 0.5), 5000);
    assert_eq!(ms(7, 0.99), 5000);
    assert_eq!(ms(7, 0.0), 4000);
    assert_eq!(ms(40, 0.5), 5000);
    assert_eq!(ms(u32::MAX, 0.5), 5000);
    // Bad jitter values cannot panic.
    assert_eq!(ms(1, f64::NAN), 100);
    assert_eq!(ms(1, -3.0), 80);
    assert_eq!(ms(1, 7.0), 120);
    // Bounds for every attempt and jitter.
    for attempt in 1..70 {
        for j in [0.0, 0.25, 0.5, 0.75, 0.999] {
            let d = retry_delay(attempt, None, base, max, j);
            let nominal = base
                .checked_mul(1 << (attempt - 1).min(31))
                .unwrap_or(max)
                .min(max);
            assert!(d <= max, "{attempt} {j}");
            assert!(
                d >= nominal.mul_f64(0.8) - Duration::from_micros(1),
                "{attempt} {j}"
            );
        }
    }
    // Extreme bases saturate instead of overflowing.
    assert_eq!(
        retry_delay(64, None, Duration::MAX, Duration::MAX, 0.5),
        Duration::MAX
    );
    assert_eq!(
        retry_delay(3, None, Duration::ZERO, max, 0.5),
        Duration::ZERO
    );
}

#[test]
fn retry_after_wins() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(20);
    assert_eq!(
        retry_delay(5, Some(Duration::from_secs(3)), base, max, 0.9),
        Duration::from_secs(3)
    );
    assert_eq!(
        retry_delay(1, Some(Duration::ZERO), base, max, 0.9),
        Duration::ZERO
    );
    assert_eq!(
        retry_delay(1, Some(Duration::from_secs(3600)), base, max, 0.1),
        max
    );
}

#[test]
fn deadlines() {
    let s = Duration::from_secs;
    assert!(fits_deadline(s(1), s(2), s(5)));
    assert!(!fits_deadline(s(3), s(2), s(5)));
    assert!(!fits_deadline(s(4), s(2), s(5)));
    assert!(fits_deadline(Duration::ZERO, Duration::ZERO, s(1)));
    assert!(!fits_deadline(Duration::MAX, s(1), s(5)));
}
#[test]
fn auth_reasons_are_recognised() {
    for r in [
        "InvalidProviderToken",
        "BadCertificate",
        "SENDER_ID_MISMATCH",
        "HTTP 403",
        "oauth:invalid_grant",
        "oauth:HTTP 401",
    ] {
        assert!(is_auth_reason(r), "{r}");
    }
    for r in [
        "BadTopic",
        "Unregistered",
        "UNAVAILABLE",
        "HTTP 500",
        "",
        "xoauth:x",
    ] {
        assert!(!is_auth_reason(r), "{r}");
    }
}

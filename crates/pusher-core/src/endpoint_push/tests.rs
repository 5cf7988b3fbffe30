use serde_json::{Value, json};

use super::device::DeviceTarget;
use super::status::{DeviceResult, DeviceStatus, overall_status, response};
use super::*;
use crate::apns::ApnsAppConfig;
use crate::push_req::TokenType;

const ACCOUNT: &str = "3c1e6a2f9b7d4e0a8c5b1d2e3f405162";
const NOW_MS: u64 = 1_717_000_000_123;
const UUID: &str = "7DEF8ED9-AE44-416C-8C3F-58B8F73582A5";

fn full() -> Value {
    json!({
        "Event-Category": "notification", "Event-Name": "endpoint_push_req",
        "Account-ID": ACCOUNT,
        "Endpoint": {"ID": "user1", "Type": "user"},
        "Alert": {"Title": "T", "Subtitle": "S", "Body": "B",
            "Title-Key": "TK", "Title-Params": ["a", 1],
            "Body-Key": "BK", "Body-Params": ["x", null, true]},
        "Badge": 3, "Sound": "ring.caf", "Category": "missed_call",
        "Collapse-ID": "c1", "Priority": "high", "TTL": 60,
        "Content-Available": true, "Content-Mutable": false,
        "APNs": {"Alert": {"Subtitle-Key": "SK", "Subtitle-Params": ["s"]},
            "Thread-ID": "th", "Topic": "com.example.app", "Push-Type": "alert"},
        "FCM": {"Android": {"Channel-ID": "ch", "Icon": "ic", "Tag": "tg", "Color": "#ff0000"}},
        "Data": {"Push-Type": "custom_push", "n": 5, "aps": {"x": 1}},
        "Call-ID": "call-1", "Msg-ID": UUID, "Server-ID": "targeted.reply.q1"
    })
}

fn req() -> EndpointPushReq {
    EndpointPushReq::from_json(&full(), NOW_MS).unwrap()
}

fn target(token_type: TokenType) -> DeviceTarget {
    DeviceTarget {
        device_id: "dev1".into(),
        token_id: "tok1".into(),
        token_type,
        token_app: "com.example.app.prod".into(),
    }
}

#[test]
fn endpoint_decodes_every_field() {
    let r = req();
    assert_eq!(r.account_id, ACCOUNT);
    assert_eq!(r.endpoint_id, "user1");
    assert_eq!(r.endpoint_type, EndpointType::User);
    assert_eq!(r.alert.title.as_deref(), Some("T"));
    assert_eq!(r.alert.title_params, Some(vec!["a".into(), "1".into()]));
    assert_eq!(
        r.alert.body_params,
        Some(vec!["x".into(), String::new(), "true".into()])
    );
    assert_eq!(r.badge, Some(3));
    assert_eq!(r.priority, Some(Priority::High));
    assert_eq!(r.ttl, Some(60));
    assert_eq!(r.content_available, Some(true));
    assert_eq!(r.content_mutable, Some(false));
    assert_eq!(r.apns.subtitle_key.as_deref(), Some("SK"));
    assert_eq!(r.apns.thread_id.as_deref(), Some("th"));
    assert_eq!(r.android.color.as_deref(), Some("#ff0000"));
    assert_eq!(r.msg_id.as_deref(), Some(UUID));
    assert_eq!(r.server_id.as_deref(), Some("targeted.reply.q1"));
    assert_eq!(r.timestamp_ms, NOW_MS);
}

#[test]
fn endpoint_decode_errors_are_typed() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = full();
        f(&mut v);
        EndpointPushReq::from_json(&v, NOW_MS).unwrap_err()
    };
    assert_eq!(
        EndpointPushReq::from_json(&json!([1]), 0).unwrap_err(),
        DecodeError::NotAnObject
    );
    assert_eq!(
        with(&|v| {
            v.as_object_mut().unwrap().remove("Account-ID");
        }),
        DecodeError::Missing("Account-ID")
    );
    assert_eq!(
        with(&|v| v["Account-ID"] = json!("nope")),
        DecodeError::Invalid("Account-ID")
    );
    assert_eq!(
        with(&|v| v["Endpoint"] = json!(null)),
        DecodeError::Missing("Endpoint")
    );
    assert_eq!(
        with(&|v| v["Endpoint"]["ID"] = json!(5)),
        DecodeError::Invalid("Endpoint.ID")
    );
    assert_eq!(
        with(&|v| v["Endpoint"]["Type"] = json!("group")),
        DecodeError::EndpointType("group".into())
    );
    assert_eq!(
        with(&|v| v["Priority"] = json!("urgent")),
        DecodeError::Invalid("Priority")
    );
    assert_eq!(
        with(&|v| v["Badge"] = json!(-1)),
        DecodeError::Invalid("Badge")
    );
    assert_eq!(
        with(&|v| v["Alert"]["Body-Params"] = json!([{"a": 1}])),
        DecodeError::Invalid("Alert.Body-Params")
    );
    assert_eq!(
        with(&|v| v["FCM"]["Android"] = json!("x")),
        DecodeError::Invalid("FCM.Android")
    );
    assert_eq!(
        with(&|v| v["Data"] = json!([1])),
        DecodeError::Invalid("Data")
    );
    // A minimal request is enough.
    let min = json!({"Account-ID": ACCOUNT, "Endpoint": {"ID": "d", "Type": "device"}});
    let r = EndpointPushReq::from_json(&min, 0).unwrap();
    assert_eq!(r.endpoint_type, EndpointType::Device);
    assert_eq!(r.alert, Alert::default());
    // The reply address is read even from an unusable body.
    let bad = json!({"Msg-ID": "m", "Server-ID": "q", "Endpoint": 1});
    assert!(EndpointPushReq::from_json(&bad, 0).is_err());
    assert_eq!(
        ReplyTo::of(&bad),
        ReplyTo {
            msg_id: Some("m".into()),
            server_id: Some("q".into())
        }
    );
    assert_eq!(ReplyTo::of(&json!({"Server-ID": ""})), ReplyTo::default());
}

#[test]
fn endpoint_device_push_objects() {
    let doc = |push: Value| json!({"_id": "d1", "pvt_type": "device", "push": push});
    let ok = DeviceTarget::of(&doc(json!({"Token-ID": "t1", "Token-Type": "android",
        "Token-App": "com.x"})))
    .unwrap();
    assert_eq!(ok.device_id, "d1");
    // K5 crashes on google/android tokens; here they are Firebase.
    assert_eq!(ok.token_type, TokenType::Firebase);
    assert_eq!(
        DeviceTarget::of(&json!({"_id": "d1"})),
        Err(DeviceStatus::NotPushDevice)
    );
    assert_eq!(
        DeviceTarget::of(&doc(json!({"Token-ID": "t1", "Token-Type": "apple"}))),
        Err(DeviceStatus::MissingPushProperties)
    );
    assert_eq!(
        DeviceTarget::of(&doc(
            json!({"Token-ID": "t1", "Token-Type": "pigeon", "Token-App": "a"})
        )),
        Err(DeviceStatus::UnknownTokenType)
    );
    let bad_token = DeviceTarget::of(&doc(
        json!({"Token-ID": "t 1", "Token-Type": "apple", "Token-App": "a"}),
    ))
    .unwrap_err();
    assert_eq!(bad_token.code(), 400);
}

#[test]
fn endpoint_apns_mapping() {
    let r = req();
    let cfg = ApnsAppConfig::default();
    let a = apns::build(&r, &target(TokenType::Apple), &cfg).unwrap();
    assert_eq!(a.path, "/3/device/tok1");
    assert_eq!(a.header("apns-topic"), Some("com.example.app"));
    assert_eq!(a.header("apns-push-type"), Some("alert"));
    assert_eq!(a.header("apns-priority"), Some("10"));
    assert_eq!(a.header("apns-expiration"), Some("1717000060"));
    assert_eq!(a.header("apns-collapse-id"), Some("c1"));
    assert_eq!(
        a.header("apns-id"),
        Some(UUID.to_ascii_lowercase().as_str())
    );
    let body: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        body["aps"]["alert"],
        json!({"title": "T", "body": "B", "subtitle": "S",
            "title-loc-key": "TK", "loc-key": "BK", "subtitle-loc-key": "SK",
            "title-loc-args": ["a", "1"], "loc-args": ["x", "", "true"],
            "subtitle-loc-args": ["s"]})
    );
    assert_eq!(body["aps"]["badge"], json!(3));
    assert_eq!(body["aps"]["sound"], json!("ring.caf"));
    assert_eq!(body["aps"]["category"], json!("missed_call"));
    assert_eq!(body["aps"]["thread-id"], json!("th"));
    assert_eq!(body["aps"]["content-available"], json!(1));
    assert_eq!(body["aps"]["mutable-content"], json!(0));
    assert_eq!(body["aps"]["call-id"], json!("call-1"));
    // Data at the root, the mapped keys winning inside `aps`.
    assert_eq!(body["aps"]["x"], json!(1));
    assert_eq!(body["n"], json!(5));
    assert_eq!(body["Push-Type"], json!("custom_push"));
    assert_eq!(body[DEVICE_ID_KEY], json!("dev1"));
}

#[test]
fn endpoint_apns_topic_and_config_headers() {
    let mut r = req();
    r.apns.topic = None;
    r.ttl = Some(0);
    r.priority = Some(Priority::Low);
    // No topic in the request: the app id minus .prod, or apple.apns_topic.
    let a = apns::build(&r, &target(TokenType::Apple), &ApnsAppConfig::default()).unwrap();
    assert_eq!(a.header("apns-topic"), Some("com.example.app"));
    assert_eq!(a.header("apns-expiration"), Some("0"));
    assert_eq!(a.header("apns-priority"), Some("1"));
    let cfg = ApnsAppConfig {
        apns_topic: Some("org.cfg".into()),
        headers: json!({"apns_priority": 5, "apns-push-type": "background"})
            .as_object()
            .unwrap()
            .clone(),
    };
    let a = apns::build(&r, &target(TokenType::Apple), &cfg).unwrap();
    assert_eq!(a.header("apns-topic"), Some("org.cfg"));
    // apple.headers are merged last and win.
    assert_eq!(a.header("apns-priority"), Some("5"));
    assert_eq!(a.header("apns-push-type"), Some("background"));
    // A request that cannot be built is an error, never a panic.
    r.collapse_id = Some("x".repeat(65));
    assert!(apns::build(&r, &target(TokenType::Apple), &ApnsAppConfig::default()).is_err());
    r.collapse_id = None;
    r.data.insert("big".into(), json!("y".repeat(5000)));
    assert!(matches!(
        apns::build(&r, &target(TokenType::Apple), &ApnsAppConfig::default()),
        Err(crate::apns::ApnsBuildError::PayloadTooLarge { .. })
    ));
}

#[test]
fn endpoint_fcm_v1_mapping() {
    let r = req();
    let m = fcm::build(&r, &target(TokenType::Firebase), &Value::Null).unwrap();
    let msg = &m["message"];
    assert_eq!(msg["token"], json!("tok1"));
    assert_eq!(msg["notification"], json!({"title": "T", "body": "B"}));
    assert_eq!(msg["android"]["priority"], json!("high"));
    assert_eq!(msg["android"]["ttl"], json!("60s"));
    assert_eq!(msg["android"]["collapse_key"], json!("c1"));
    assert_eq!(
        msg["android"]["notification"],
        json!({"title_loc_key": "TK", "body_loc_key": "BK", "click_action": "missed_call",
            "channel_id": "ch", "color": "#ff0000", "icon": "ic", "tag": "tg",
            "title_loc_args": ["a", "1"], "body_loc_args": ["x", "", "true"],
            "sound": "ring.caf", "notification_count": 3})
    );
    assert_eq!(
        msg["apns"]["headers"],
        json!({"apns-priority": "10", "apns-expiration": "1717000060",
            "apns-push-type": "alert", "apns-topic": "com.example.app",
            "apns-collapse-id": "c1"})
    );
    let aps = &msg["apns"]["payload"]["aps"];
    assert_eq!(aps["alert"]["subtitle"], json!("S"));
    assert_eq!(aps["alert"]["subtitle-loc-key"], json!("SK"));
    assert!(aps["alert"].get("title").is_none());
    assert_eq!(aps["thread-id"], json!("th"));
    assert_eq!(aps["badge"], json!(3));
    // Every data value is a string (FCM v1 takes nothing else).
    let data = msg["data"].as_object().unwrap();
    assert!(data.values().all(Value::is_string));
    assert_eq!(data["n"], json!("5"));
    assert_eq!(data["aps"], json!("{\"x\":1}"));
    assert_eq!(data["Call-ID"], json!("call-1"));
    assert_eq!(data[DEVICE_ID_KEY], json!("dev1"));
    // The envelope is merged, but never redirects the message.
    let env = json!({"android": {"priority": "normal"}, "token": "other", "topic": "t"});
    let m = fcm::build(&r, &target(TokenType::FirebaseV1), &env).unwrap();
    assert_eq!(m["message"]["android"]["priority"], json!("normal"));
    assert_eq!(m["message"]["token"], json!("tok1"));
    assert!(m["message"].get("topic").is_none());
    // A minimal request gives a data-only message.
    let min = json!({"Account-ID": ACCOUNT, "Endpoint": {"ID": "d", "Type": "device"}});
    let r = EndpointPushReq::from_json(&min, 0).unwrap();
    let m = fcm::build(&r, &target(TokenType::Firebase), &Value::Null).unwrap();
    assert_eq!(
        m,
        json!({"message": {"token": "tok1", "data": {DEVICE_ID_KEY: "dev1"}}})
    );
}

#[test]
fn endpoint_overall_status_rule() {
    assert_eq!(overall_status([]), 200);
    assert_eq!(overall_status([200, 200]), 200);
    assert_eq!(overall_status([200, 202]), 202);
    assert_eq!(overall_status([200, 500, 202]), 500);
    // Any error wins, and 400 beats 500.
    assert_eq!(overall_status([500, 400, 504]), 400);
    assert_eq!(overall_status([410, 200]), 410);
    assert_eq!(overall_status([100, 200]), 100);
}

#[test]
fn endpoint_response_body() {
    let results = [
        DeviceResult {
            device_id: "d1".into(),
            status: DeviceStatus::Sent,
        },
        DeviceResult {
            device_id: "d2".into(),
            status: DeviceStatus::NotPushDevice,
        },
        DeviceResult {
            device_id: "d3".into(),
            status: DeviceStatus::Timeout("deadline of 20000 ms reached".into()),
        },
    ];
    let v = response(Some("m1"), &results, "pusher@n1", "1.2.3");
    assert_eq!(
        v,
        json!({
            "Event-Category": "notification", "Event-Name": "endpoint_push_resp",
            "Msg-ID": "m1", "Overall-Status": 504,
            "Results": [
                {"Device-ID": "d1", "Status": 200, "Message": "Push sent"},
                {"Device-ID": "d2", "Status": 200, "Message": "Not push device"},
                {"Device-ID": "d3", "Status": 504, "Message": "Push not delivered in time",
                    "Error": "deadline of 20000 ms reached"}
            ],
            "App-Name": "pusher", "App-Version": "1.2.3", "Node": "pusher@n1"
        })
    );
    let bad = status::bad_request(None, "no Endpoint", "n", "v");
    assert_eq!(bad["Overall-Status"], json!(400));
    assert_eq!(bad["Results"], json!([]));
    assert_eq!(bad["Error"], json!("no Endpoint"));
    assert_eq!(bad["Msg-ID"], json!(null));
    assert_eq!(
        DeviceStatus::MissingPushProperties.error().as_deref(),
        Some("Missing mandatory push properties")
    );
    assert_eq!(
        DeviceStatus::Rejected {
            reason: "BadCertificate".into(),
            auth: true
        }
        .code(),
        403
    );
}

//! The committed JSON Schemas describe what really flows: the Kamailio captures and the
//! default config doc validate; known mistakes do not.

use serde_json::{Value, json};

use crate::helpers::fixture_bodies;

fn schema(name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&schema_doc(name)).expect("schema compiles")
}

/// The schema file `name` as JSON.
fn schema_doc(name: &str) -> Value {
    let path = format!("{}/../../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("schema is JSON")
}

#[test]
fn kamailio_reg_success_captures_validate() {
    let s = schema("kapi.registration.reg_success.json");
    let bodies = fixture_bodies("reg_success");
    assert_eq!(bodies.len(), 2);
    for b in &bodies {
        let errors: Vec<String> = s.iter_errors(b).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let mut bad = bodies[0].clone();
    bad["Expires"] = json!("3600");
    assert!(!s.is_valid(&bad));
}

#[test]
fn default_config_doc_validates_and_mistakes_do_not() {
    let s = schema("system_config.pusher.json");
    let path = format!(
        "{}/../../system_config/pusher.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read"))
        .expect("default doc is JSON");
    assert!(s.is_valid(&doc));
    let mut no_regex = doc.clone();
    no_regex["default"]["User-Agents"] = json!({"MyApp": {"properties":
        {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}}});
    assert!(!s.is_valid(&no_regex));
    let mut wrong_type = doc;
    wrong_type["default"]["apple"]["enabled"] = json!("yes");
    assert!(!s.is_valid(&wrong_type));
}

#[test]
fn kamailio_push_req_capture_validates_and_the_stale_kazoo_shape_does_not() {
    let s = schema("kapi.pusher.push_req.json");
    let bodies = fixture_bodies("push_req");
    assert!(!bodies.is_empty());
    for b in &bodies {
        let errors: Vec<String> = s.iter_errors(b).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        // What the service reads from it agrees with the schema.
        assert!(pusher_core::push_req::PushReq::from_json(b, 0).is_ok());
    }
    // Kazoo's crossbar schema types Payload and Alert-Params as strings: not what flows.
    let mut stale = bodies[0].clone();
    stale["Payload"] = json!("{}");
    assert!(!s.is_valid(&stale));
    let mut stale = bodies[0].clone();
    stale["Alert-Params"] = json!("callerreply02");
    assert!(!s.is_valid(&stale));
    let mut bad_token = bodies[0].clone();
    bad_token["Token-ID"] = json!("tok/../x");
    assert!(!s.is_valid(&bad_token));
}

#[test]
fn push_resp_built_by_the_service_validates() {
    use pusher_core::push_req::{Echo, PushVerdict, push_resp};
    let s = schema("kapi.pusher.push_resp.json");
    let request = &Echo::of(&fixture_bodies("push_req")[0]);
    for status in ["delivered", "dead_token", "auth_error", "timeout"] {
        let verdict = PushVerdict {
            status,
            reason: "",
            provider: "apns",
            elapsed_ms: 3,
        };
        let resp = push_resp(request, &verdict, "pusher@n", env!("CARGO_PKG_VERSION"));
        let errors: Vec<String> = s.iter_errors(&resp).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{status}: {errors:?}");
    }
    let mut unknown = push_resp(
        request,
        &PushVerdict {
            status: "maybe",
            reason: "",
            provider: "",
            elapsed_ms: 0,
        },
        "n",
        "v",
    );
    assert!(!s.is_valid(&unknown));
    unknown["Status"] = json!("delivered");
    assert!(s.is_valid(&unknown));
}

#[test]
fn legacy_push_resp_built_by_the_service_validates_and_differs_from_the_verdict_reply() {
    use pusher_core::legacy_resp::{Waiting, push_resp};
    use pusher_core::push_req::{Echo, PushVerdict};
    let s = schema("kapi.pusher.push_resp.legacy.json");
    // What a 2015 kazoo_query push_req carries (the capture has the same envelope).
    let request = fixture_bodies("push_req")[0].clone();
    let waiting = Waiting::of(&request).expect("the capture has Token-ID, Msg-ID, Server-ID");
    let resp = push_resp(&waiting, "pusher@n", env!("CARGO_PKG_VERSION"));
    let errors: Vec<String> = s.iter_errors(&resp).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(resp["Msg-ID"], request["Msg-ID"]);
    let mut no_token = resp.clone();
    no_token.as_object_mut().unwrap().remove("Token-ID");
    assert!(
        !s.is_valid(&no_token),
        "Kazoo's push_resp requires Token-ID"
    );
    // The two replies are told apart by their schemas.
    let verdict = pusher_core::push_req::push_resp(
        &Echo::of(&request),
        &PushVerdict {
            status: "delivered",
            reason: "",
            provider: "apns",
            elapsed_ms: 1,
        },
        "pusher@n",
        "v",
    );
    assert!(!s.is_valid(&verdict));
    assert!(!schema("kapi.pusher.push_resp.json").is_valid(&resp));
}

#[test]
fn legacy_push_resp_config_keys_are_described() {
    let s = schema("system_config.pusher.json");
    let mut doc = json!({"_id": "pusher", "default": {"legacy_push_resp": true,
        "legacy_push_resp_wait_ms": 20000}});
    assert!(s.is_valid(&doc));
    doc["default"]["legacy_push_resp_wait_ms"] = json!(500);
    assert!(!s.is_valid(&doc));
    doc["default"]["legacy_push_resp_wait_ms"] = json!(2000);
    doc["default"]["legacy_push_resp"] = json!("maybe");
    assert!(!s.is_valid(&doc));
}

#[test]
fn endpoint_push_req_example_and_the_pusherctl_request_validate() {
    let s = schema("kapi.pusher.endpoint_push_req.json");
    let doc = schema_doc("kapi.pusher.endpoint_push_req.json");
    let example = &doc["examples"][0];
    assert!(s.is_valid(example));
    // What the schema accepts, the service reads.
    assert!(pusher_core::endpoint_push::EndpointPushReq::from_json(example, 0).is_ok());
    let ctl = pusher::ctl::endpoint::request(
        "3c1e6a2f9b7d4e0a8c5b1d2e3f405162",
        "device",
        "d1",
        Some("hi"),
        "m1",
        "q1",
    );
    let errors: Vec<String> = s.iter_errors(&ctl).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = example.clone();
    bad["Endpoint"]["Type"] = json!("group");
    assert!(!s.is_valid(&bad));
    assert!(pusher_core::endpoint_push::EndpointPushReq::from_json(&bad, 0).is_err());
    let mut bad = example.clone();
    bad["Priority"] = json!("urgent");
    assert!(!s.is_valid(&bad));
}

#[test]
fn endpoint_push_resp_built_by_the_service_validates() {
    use pusher_core::endpoint_push::status::{DeviceResult, DeviceStatus, bad_request, response};
    let s = schema("kapi.pusher.endpoint_push_resp.json");
    let results: Vec<DeviceResult> = [
        ("d1", DeviceStatus::Sent),
        ("d2", DeviceStatus::DeadToken("Unregistered".into())),
    ]
    .into_iter()
    .map(|(id, status)| DeviceResult {
        device_id: id.into(),
        status,
    })
    .collect();
    let resp = response(Some("m1"), &results, "pusher@n", env!("CARGO_PKG_VERSION"));
    let errors: Vec<String> = s.iter_errors(&resp).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let none = response(None, &[], "pusher@n", "v");
    assert!(s.is_valid(&none));
    let bad = bad_request(Some("m"), "endpoint_push_req has no Endpoint", "n", "v");
    assert!(s.is_valid(&bad));
    // Not the other replies.
    let mut other = resp.clone();
    other["Event-Name"] = json!("push_resp");
    assert!(!s.is_valid(&other));
}

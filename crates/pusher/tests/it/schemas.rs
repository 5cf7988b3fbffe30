//! The committed JSON Schemas describe what really flows: the Kamailio captures and the
//! default config doc validate; known mistakes do not.

use serde_json::{Value, json};

use crate::helpers::fixture_bodies;

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/../../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&v).expect("schema compiles")
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

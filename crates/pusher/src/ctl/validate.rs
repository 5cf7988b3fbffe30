//! Validation of `system_config/pusher` edits before they are written, and redaction of
//! secrets in what the CLI prints.
//!
//! A write is judged by what it *adds*: the document after the edit is checked against
//! `schemas/system_config.pusher.json` and the semantic rules (a `User-Agents` rule's
//! `regex` must compile, its `properties` must name `Token-App`, `Token-Type` and
//! `Token-ID`), and only problems that were not already in the document before the edit
//! refuse it — so an old Kazoo write-back elsewhere in the doc never blocks an operator.
//!
//! sup's one-key-at-a-time way of building a rule (`…MyApp.regex`, then
//! `…MyApp.properties.Token-App`, …) passes through incomplete states, so a *missing*
//! property is only a warning when the edit is below a rule; replacing a whole rule with
//! an incomplete one is refused.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use pusher_core::ua_rules::UserAgentRules;
use serde_json::Value;

static SCHEMA_TEXT: &str = include_str!("../../../../schemas/system_config.pusher.json");

/// The properties every `User-Agents` rule needs for a usable `push` object.
pub const REQUIRED_PROPERTIES: [&str; 3] = ["Token-App", "Token-Type", "Token-ID"];

/// Keys whose values are secrets and are never printed.
pub const SECRET_KEYS: [&str; 3] = ["certificate", "private_key", "api_key"];

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(SCHEMA_TEXT)
                .map_err(|e| format!("embedded schema is not JSON: {e}"))?;
            jsonschema::validator_for(&schema)
                .map_err(|e| format!("embedded schema does not compile: {}", e.masked()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Outcome of checking an edit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Problems that refuse the edit.
    pub errors: Vec<String>,
    /// Problems worth telling the operator, that do not refuse it.
    pub warnings: Vec<String>,
}

/// One problem: where (JSON pointer), and what (never quoting the value).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Problem {
    at: String,
    what: String,
    /// A required rule property is missing (a warning for edits below the rule).
    missing_property: bool,
}

fn problems(doc: &Value) -> Result<BTreeSet<Problem>, String> {
    let mut out = BTreeSet::new();
    for e in validator()?.iter_errors(doc) {
        let at = e.instance_path().to_string();
        // A rule's missing `regex`/properties are reported (once, more clearly) by the
        // semantic checks below.
        if matches!(
            e.kind(),
            jsonschema::error::ValidationErrorKind::Required { .. }
        ) && at.contains("/User-Agents/")
        {
            continue;
        }
        out.insert(Problem {
            at,
            // `masked` leaves the instance out of the message, so a certificate or key
            // stored at the wrong place is never echoed.
            what: e.masked_with("the value").to_string(),
            missing_property: false,
        });
    }
    out.extend(semantic_problems(doc));
    Ok(out)
}

/// Semantic checks the schema cannot express.
fn semantic_problems(doc: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(scopes) = doc.as_object() else {
        return out;
    };
    for (scope, body) in scopes {
        let Some(rules) = body.get("User-Agents").and_then(Value::as_object) else {
            continue;
        };
        for (key, rule) in rules {
            let at = format!(
                "/{}/User-Agents/{}",
                pointer_escape(scope),
                pointer_escape(key)
            );
            let one = serde_json::json!({ key: rule });
            let (_, errors) = UserAgentRules::compile(&one);
            let prefix = format!("User-Agents.{key}: ");
            for e in errors {
                let text = e.to_string();
                out.push(Problem {
                    at: at.clone(),
                    what: text.strip_prefix(&prefix).unwrap_or(&text).to_string(),
                    missing_property: false,
                });
            }
            if rule.is_object() && rule.get("regex").is_none_or(Value::is_null) {
                out.push(Problem {
                    at: at.clone(),
                    what: "the rule has no regex".into(),
                    missing_property: true,
                });
            }
            let props = rule.get("properties").and_then(Value::as_object);
            let missing: Vec<&str> = REQUIRED_PROPERTIES
                .into_iter()
                .filter(|p| {
                    props
                        .and_then(|m| m.get(*p))
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                })
                .collect();
            if rule.is_object() && !missing.is_empty() {
                out.push(Problem {
                    at: at.clone(),
                    what: format!(
                        "the rule's properties lack {} (no push object can be built without them)",
                        missing.join(", ")
                    ),
                    missing_property: true,
                });
            }
        }
    }
    out
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Checks the edit `before` → `after` of `system_config/pusher`; `written` is the full
/// path written (scope first), used to tell a partial rule edit from a whole one.
pub fn check_pusher_edit(before: &Value, after: &Value, written: &[&str]) -> Verdict {
    let (old, new) = match (problems(before), problems(after)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => {
            return Verdict {
                errors: vec![e],
                warnings: Vec::new(),
            };
        }
    };
    // Below a rule = `<scope>.User-Agents.<rule>.<something>`.
    let below_rule = written.len() > 3 && written[1] == "User-Agents";
    let mut verdict = Verdict::default();
    for p in new.difference(&old) {
        let text = if p.at.is_empty() {
            p.what.clone()
        } else {
            format!("{}: {}", pointer_to_key(&p.at), p.what)
        };
        if p.missing_property && below_rule {
            verdict.warnings.push(text);
        } else {
            verdict.errors.push(text);
        }
    }
    verdict
}

/// `/default/User-Agents/MyApp` → `default.User-Agents.MyApp` (sup's key notation).
fn pointer_to_key(p: &str) -> String {
    p.trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether `text` holds a PEM private key (`-----BEGIN … PRIVATE KEY-----`), wherever it
/// is stored: such a value is never printed, whatever its key is called.
pub fn looks_like_private_key(text: &str) -> bool {
    text.contains("PRIVATE KEY-----")
}

/// What is printed instead of a secret: only its size.
fn hidden(v: &Value) -> Value {
    let len = match v {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    };
    Value::String(format!("<secret, {len} bytes, not shown>"))
}

/// A copy of `v` with every secret value replaced by a note of its size: values stored
/// under [`SECRET_KEYS`], strings that [look like a private key](looks_like_private_key),
/// and secrets inside strings that hold JSON (the schema lets a service account be
/// stored as a JSON *string*; it is shown as a string, with its secrets hidden). `key`
/// is the name `v` itself is stored under, if any.
pub fn redact(v: &Value, key: Option<&str>) -> Value {
    if key.is_some_and(|k| SECRET_KEYS.contains(&k)) {
        return hidden(v);
    }
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact(v, Some(k))))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| redact(i, None)).collect()),
        Value::String(s) => {
            let json = serde_json::from_str::<Value>(s)
                .ok()
                .filter(|inner| inner.is_object() || inner.is_array());
            // Secrets inside JSON text: shown re-encoded, with them hidden.
            let shown = match json {
                Some(inner) => match redact(&inner, None) {
                    same if same == inner => s.clone(),
                    redacted => redacted.to_string(),
                },
                None => s.clone(),
            };
            // Whatever is left (a key outside any JSON value, twice-encoded JSON, …) is
            // hidden whole.
            if looks_like_private_key(&shown) {
                hidden(v)
            } else {
                Value::String(shown)
            }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(regex: &str) -> Value {
        json!({"regex": regex, "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}})
    }

    fn with(doc: &Value, path: &[&str], v: Value) -> Value {
        let mut d = doc.clone();
        pusher_core::kapps_config::set_at(&mut d, path, v);
        d
    }

    fn base() -> Value {
        json!({"_id": "pusher", "pvt_type": "config", "default": {"User-Agents": {}}})
    }

    #[test]
    fn good_rule_passes() {
        let path = ["default", "User-Agents", "MyApp"];
        let after = with(&base(), &path, rule("^MyApp"));
        assert_eq!(
            check_pusher_edit(&base(), &after, &path),
            Verdict::default()
        );
    }

    #[test]
    fn bad_regex_is_refused() {
        let path = ["default", "User-Agents", "MyApp"];
        let after = with(&base(), &path, rule("^(MyApp"));
        let v = check_pusher_edit(&base(), &after, &path);
        assert_eq!(v.errors.len(), 1, "{v:?}");
        assert!(
            v.errors[0].contains("User-Agents.MyApp: invalid regex"),
            "{v:?}"
        );
    }

    #[test]
    fn whole_rule_without_properties_is_refused() {
        let path = ["default", "User-Agents", "MyApp"];
        let after = with(
            &base(),
            &path,
            json!({"regex": "^MyApp", "properties": {"Token-App": "a"}}),
        );
        let v = check_pusher_edit(&base(), &after, &path);
        assert!(!v.errors.is_empty());
        assert!(
            v.errors.iter().any(|e| e.contains("Token-Type, Token-ID")),
            "{v:?}"
        );
    }

    #[test]
    fn sup_one_key_at_a_time_warns_then_passes() {
        let steps: [(&[&str], &str); 4] = [
            (
                &["default", "User-Agents", "CallThru", "regex"],
                "^CallThru",
            ),
            (
                &[
                    "default",
                    "User-Agents",
                    "CallThru",
                    "properties",
                    "Token-App",
                ],
                "app-id",
            ),
            (
                &[
                    "default",
                    "User-Agents",
                    "CallThru",
                    "properties",
                    "Token-Type",
                ],
                "pn-type",
            ),
            (
                &[
                    "default",
                    "User-Agents",
                    "CallThru",
                    "properties",
                    "Token-ID",
                ],
                "foo-bar",
            ),
        ];
        let mut doc = base();
        for (i, (path, value)) in steps.iter().enumerate() {
            let after = with(&doc, path, json!(value));
            let v = check_pusher_edit(&doc, &after, path);
            assert!(v.errors.is_empty(), "step {i}: {v:?}");
            assert_eq!(v.warnings.is_empty(), i == 3, "step {i}: {v:?}");
            doc = after;
        }
    }

    #[test]
    fn bad_types_are_refused_without_quoting_values() {
        let path = ["org.example.app", "apple", "enabled"];
        let after = with(&base(), &path, json!("-----BEGIN SECRET-----"));
        let v = check_pusher_edit(&base(), &after, &path);
        assert_eq!(v.errors.len(), 1, "{v:?}");
        assert!(
            v.errors[0].starts_with("org.example.app.apple.enabled:"),
            "{v:?}"
        );
        assert!(!v.errors[0].contains("SECRET"), "{v:?}");
        let path = ["default", "push_deadline_ms"];
        let after = with(&base(), &path, json!(5));
        assert_eq!(check_pusher_edit(&base(), &after, &path).errors.len(), 1);
    }

    #[test]
    fn old_problems_do_not_block_new_edits() {
        let broken = with(&base(), &["default", "User-Agents", "Old"], rule("(("));
        let path = ["default", "User-Agents", "New"];
        let after = with(&broken, &path, rule("^New"));
        assert_eq!(
            check_pusher_edit(&broken, &after, &path),
            Verdict::default()
        );
    }

    #[test]
    fn redaction() {
        let v = json!({"apple": {"certificate": "PEM", "host": "h"},
                       "firebase_v1": {"service_account": {"private_key": "K", "project_id": "p"}},
                       "firebase": {"api_key": "AAAA"}});
        let r = redact(&v, None);
        assert_eq!(r["apple"]["host"], "h");
        assert_eq!(r["apple"]["certificate"], "<secret, 3 bytes, not shown>");
        assert_eq!(r["firebase_v1"]["service_account"]["project_id"], "p");
        assert!(!r.to_string().contains("\"K\""));
        assert!(!r.to_string().contains("AAAA"));
        assert_eq!(
            redact(&json!("PEM"), Some("certificate")),
            json!("<secret, 3 bytes, not shown>")
        );
    }

    #[test]
    fn redaction_inside_json_strings_and_of_any_private_key() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\n-----END PRIVATE KEY-----\n";
        let sa = json!({"type": "service_account", "project_id": "p", "private_key": key});
        // A service account stored as a JSON string (the schema allows it).
        let v = json!({"firebase_v1": {"service_account": sa.to_string()}});
        for shown in [
            redact(&v, None),
            redact(
                &v["firebase_v1"]["service_account"],
                Some("service_account"),
            ),
        ] {
            let text = shown.to_string();
            assert!(!text.contains("MIIEvQIBADAN"), "{text}");
            assert!(text.contains("not shown"), "{text}");
            assert!(text.contains("project_id"), "{text}");
        }
        let inner = redact(&v, None)["firebase_v1"]["service_account"]
            .as_str()
            .map(|s| serde_json::from_str::<Value>(s).expect("still JSON"))
            .expect("still a string");
        assert_eq!(inner["project_id"], "p");
        // Twice encoded.
        let twice = json!(json!(sa.to_string()).to_string());
        assert!(!redact(&twice, None).to_string().contains("MIIEvQIBADAN"));
        // A private key under a key nobody listed, alone or in an array.
        let stray = json!({"apple": {"notes": key}, "list": [key]});
        let text = redact(&stray, None).to_string();
        assert!(!text.contains("MIIEvQIBADAN"), "{text}");
        // Strings without secrets, JSON or not, are shown as they are.
        let plain = json!({"a": "{\"regex\": \"^x\"}", "b": "42", "c": "text"});
        assert_eq!(redact(&plain, None), plain);
    }
}

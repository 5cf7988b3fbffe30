//! `system_config` category documents, resolved the way `kapps_config` does (spec §8).
//!
//! A category doc (e.g. `system_config/pusher`) has top-level scopes: `"default"`,
//! Erlang node names, zone names and, for the pusher, app ids used as pseudo-nodes.
//! A read tries `[scope | path]` for each scope in turn ([`ConfigDoc::get_scoped`]):
//! node-scoped keys such as `User-Agents` use node → zone → `default`
//! ([`ConfigDoc::node_value`]), per-app keys use app → zone → `default`
//! ([`ConfigDoc::app_value`]).
//!
//! Unlike Kazoo, reads never write defaults back. The pure writers [`set_at`],
//! [`delete_at`] and [`split_key`] serve the maintenance CLI.

use serde_json::{Map, Value};

/// The database of Kazoo's system config documents.
pub const SYSTEM_CONFIG_DB: &str = "system_config";
/// The pusher's category (the `_id` of its doc in [`SYSTEM_CONFIG_DB`]).
pub const PUSHER_CATEGORY: &str = "pusher";

/// The scope every lookup falls back to last.
pub const DEFAULT_SCOPE: &str = "default";

/// A `system_config` category document.
///
/// Its `Debug` shows the revision and the top-level scopes only: the doc holds APNs
/// certificates with their keys and FCM service accounts.
#[derive(Clone, PartialEq, Default)]
pub struct ConfigDoc(Value);

impl std::fmt::Debug for ConfigDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scopes: Vec<&str> = self
            .0
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("ConfigDoc")
            .field("_rev", &self.0.get("_rev").and_then(Value::as_str))
            .field("scopes", &scopes)
            .finish_non_exhaustive()
    }
}

impl ConfigDoc {
    /// Wraps a document as read from CouchDB.
    pub fn new(v: Value) -> Self {
        Self(v)
    }

    /// The document as stored.
    pub fn raw(&self) -> &Value {
        &self.0
    }

    /// Value at `[scope, path...]` for the first of `scopes` that has one.
    ///
    /// A JSON `null` counts as absent, as in `kz_json`.
    pub fn get_scoped<'a>(&'a self, scopes: &[&str], path: &[&str]) -> Option<&'a Value> {
        scopes.iter().find_map(|scope| {
            let scoped = self.0.get(*scope)?;
            get_path(scoped, path)
        })
    }

    /// Node-scoped read (e.g. `User-Agents`): `node` → `zone` → `"default"`.
    pub fn node_value(&self, node: &str, zone: &str, path: &[&str]) -> Option<&Value> {
        self.get_scoped(&[node, zone, DEFAULT_SCOPE], path)
    }

    /// Per-app read (e.g. `apple.host`): `app` → `zone` → `"default"`.
    pub fn app_value(&self, app: &str, zone: &str, path: &[&str]) -> Option<&Value> {
        self.get_scoped(&[app, zone, DEFAULT_SCOPE], path)
    }

    /// Per-app boolean with Kazoo's `to_boolean`: JSON booleans and the strings
    /// `"true"`/`"false"` (any case); anything else, or nothing, gives `default`.
    pub fn app_bool(&self, app: &str, zone: &str, path: &[&str], default: bool) -> bool {
        self.app_value(app, zone, path)
            .and_then(to_boolean)
            .unwrap_or(default)
    }
}

/// Kazoo's `to_boolean` for JSON values; `None` for anything not boolean-like.
pub fn to_boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The kind of a JSON value, for error messages (`"a string"`, `"an object"`, …).
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Value at `path` under `v` (`v` itself for an empty path); `null` counts as absent.
pub fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.get(*key))
        .filter(|found| !found.is_null())
}

/// Sets `value` at `path` in `doc`, creating intermediate objects and replacing any
/// non-object found on the way. An empty path replaces the whole document.
pub fn set_at(doc: &mut Value, path: &[&str], value: Value) {
    if path.is_empty() {
        *doc = value;
        return;
    }
    if let Value::Object(map) = doc {
        set_in(map, path, value);
    } else {
        let mut map = Map::new();
        set_in(&mut map, path, value);
        *doc = Value::Object(map);
    }
}

fn set_in(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let child = map.entry(*first).or_insert(Value::Null);
            if let Value::Object(inner) = child {
                set_in(inner, rest, value);
            } else {
                let mut inner = Map::new();
                set_in(&mut inner, rest, value);
                *child = Value::Object(inner);
            }
        }
    }
}

/// Removes the key at `path`; returns whether something was removed. Parents left
/// empty are kept (like `kz_json:delete_key/2`).
pub fn delete_at(doc: &mut Value, path: &[&str]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = doc;
    for key in parents {
        match cur.get_mut(*key) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    cur.as_object_mut()
        .is_some_and(|map| map.shift_remove(*last).is_some())
}

/// Splits a `sup`-style dotted key (`User-Agents.MyApp.regex`) into its segments.
pub fn split_key(key: &str) -> Vec<&str> {
    key.split('.').collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> ConfigDoc {
        ConfigDoc::new(json!({
            "_id": "pusher",
            "default": {
                "User-Agents": {"Default": {"regex": "^D"}},
                "apple": {"host": "api.push.apple.com", "enabled": true, "headers": {}},
                "firebase": {"enabled": "TRUE"}
            },
            "local": {
                "apple": {"host": "zone.example.com"},
                "User-Agents": {"Zone": {"regex": "^Z"}}
            },
            "kazoo_apps@host": {"User-Agents": {"Node": {"regex": "^N"}}},
            "org.myorg.myapp": {
                "apple": {"host": "app.example.com", "enabled": "False", "nulled": null},
                "firebase": {"enabled": "yes"}
            }
        }))
    }

    #[test]
    fn app_zone_default_order() {
        let d = doc();
        assert_eq!(
            d.app_value("org.myorg.myapp", "local", &["apple", "host"]),
            Some(&json!("app.example.com"))
        );
        assert_eq!(
            d.app_value("other.app", "local", &["apple", "host"]),
            Some(&json!("zone.example.com"))
        );
        assert_eq!(
            d.app_value("other.app", "elsewhere", &["apple", "host"]),
            Some(&json!("api.push.apple.com"))
        );
        assert_eq!(
            d.app_value("other.app", "local", &["apple", "headers"]),
            Some(&json!({}))
        );
        assert_eq!(d.app_value("other.app", "local", &["apple", "nope"]), None);
    }

    #[test]
    fn null_falls_through() {
        let d = doc();
        assert_eq!(
            d.app_value("org.myorg.myapp", "local", &["apple", "nulled"]),
            None
        );
    }

    #[test]
    fn node_zone_default_order() {
        let d = doc();
        let ua = |node, zone| {
            d.node_value(node, zone, &["User-Agents"])
                .and_then(|v| v.as_object())
                .and_then(|o| o.keys().next().cloned())
        };
        assert_eq!(ua("kazoo_apps@host", "local").as_deref(), Some("Node"));
        assert_eq!(ua("other@host", "local").as_deref(), Some("Zone"));
        assert_eq!(ua("other@host", "z2").as_deref(), Some("Default"));
    }

    #[test]
    fn get_scoped_generic() {
        let d = doc();
        assert_eq!(
            d.get_scoped(&["missing", "default"], &["apple", "enabled"]),
            Some(&json!(true))
        );
        assert_eq!(d.get_scoped(&[], &["apple"]), None);
        assert_eq!(d.get_scoped(&["_id"], &[]), Some(&json!("pusher")));
        // A path through a non-object is absent, not an error.
        assert_eq!(d.get_scoped(&["_id"], &["x"]), None);
    }

    #[test]
    fn bool_coercion() {
        let d = doc();
        // App says "False" (string, any case).
        assert!(!d.app_bool("org.myorg.myapp", "local", &["apple", "enabled"], true));
        // Default says JSON true.
        assert!(d.app_bool("other.app", "local", &["apple", "enabled"], false));
        // Default says "TRUE".
        assert!(d.app_bool("other.app", "local", &["firebase", "enabled"], false));
        // App says "yes": not boolean-like, so the default argument wins (no fallthrough).
        assert!(!d.app_bool("org.myorg.myapp", "local", &["firebase", "enabled"], false));
        assert!(d.app_bool("org.myorg.myapp", "local", &["firebase", "enabled"], true));
        // Absent.
        assert!(d.app_bool("x", "y", &["nothing"], true));
        assert_eq!(to_boolean(&json!(1)), None);
    }

    #[test]
    fn set_at_creates_and_replaces() {
        let mut v = json!({"default": {"apple": "not an object"}, "keep": 1});
        set_at(&mut v, &["default", "apple", "host"], json!("h"));
        set_at(&mut v, &["org.app", "firebase", "enabled"], json!(true));
        set_at(&mut v, &["keep"], json!(2));
        assert_eq!(
            v,
            json!({
                "default": {"apple": {"host": "h"}},
                "keep": 2,
                "org.app": {"firebase": {"enabled": true}}
            })
        );
        let mut not_obj = json!([1, 2]);
        set_at(&mut not_obj, &["a"], json!(1));
        assert_eq!(not_obj, json!({"a": 1}));
        let mut whole = json!({"a": 1});
        set_at(&mut whole, &[], json!("x"));
        assert_eq!(whole, json!("x"));
    }

    #[test]
    fn delete_at_removes_only_the_leaf() {
        let mut v = json!({"default": {"apple": {"host": "h", "enabled": true}}, "b": 1});
        assert!(delete_at(&mut v, &["default", "apple", "host"]));
        assert_eq!(v, json!({"default": {"apple": {"enabled": true}}, "b": 1}));
        assert!(!delete_at(&mut v, &["default", "apple", "host"]));
        assert!(!delete_at(&mut v, &["nope", "x"]));
        assert!(!delete_at(&mut v, &["b", "x"]));
        assert!(!delete_at(&mut v, &[]));
        assert!(delete_at(&mut v, &["default", "apple", "enabled"]));
        assert_eq!(v, json!({"default": {"apple": {}}, "b": 1}));
    }

    #[test]
    fn delete_keeps_order_of_the_rest() {
        let mut v = json!({"c": 1, "a": 2, "b": 3});
        assert!(delete_at(&mut v, &["c"]));
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn split_key_on_dots() {
        assert_eq!(
            split_key("User-Agents.MyApp.properties.Token-App"),
            ["User-Agents", "MyApp", "properties", "Token-App"]
        );
        assert_eq!(split_key("enabled"), ["enabled"]);
    }

    #[test]
    fn raw_is_the_stored_doc() {
        let d = doc();
        assert_eq!(d.raw()["_id"], json!("pusher"));
        assert_eq!(ConfigDoc::default().raw(), &Value::Null);
    }

    #[test]
    fn debug_shows_scopes_not_secrets() {
        let doc = ConfigDoc::new(serde_json::json!({
            "_rev": "2-x",
            "org.a": {"apple": {"certificate": "-----BEGIN PRIVATE KEY-----"}}
        }));
        let shown = format!("{doc:?}");
        assert!(shown.contains("org.a") && shown.contains("2-x"), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}

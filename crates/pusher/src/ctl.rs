//! `pusherctl`: the sup-style maintenance CLI (`pusherctl MODULE FUNCTION [ARGS…]`).
//!
//! This build carries the `kapps_config` functions the demo and operators need to manage
//! User-Agent rules (`get`, `set`, `set_json`, `set_default`); the `pusher_maintenance`
//! functions come with their own issue. Exit codes follow sup: 0 success, 2 a command
//! failed, 1 bad usage.

use std::time::Duration;

use pusher_core::kapps_config::{self, ConfigDoc};
use pusher_io::couch::{self, CouchClient};
use serde_json::{Value, json};

use crate::config::SYSTEM_CONFIG_DB;
use crate::settings::Settings;

/// What went wrong, mapped to sup's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Unknown command or wrong arguments (exit 1).
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed (exit 2).
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    /// sup-compatible exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 1,
            CtlError::Failed(_) => 2,
        }
    }
}

/// Top-level usage text.
pub const USAGE: &str = "\
pusherctl — Kazoo pusher maintenance (replace `sup` with `pusherctl`)

Usage: pusherctl MODULE FUNCTION [ARGS…]
       pusherctl MODULE FUNCTION --help

kapps_config:
  get Category Key [Node]            print the value (node → zone → default)
  set Category Key Value [Node]      write at Node if that path exists, else at default
  set_json Category Key JSON         like set, with the value parsed as JSON
  set_default Category Key Value     write at default
Keys are dotted paths: User-Agents.MyApp.regex

Settings: PUSHER_COUCH_URL, PUSHER_NODE, PUSHER_ZONE (as for pusherd).
";

fn failed(e: impl std::fmt::Display) -> CtlError {
    CtlError::Failed(e.to_string())
}

/// Runs one command; returns what to print on stdout.
pub async fn run(settings: &Settings, args: &[String]) -> Result<String, CtlError> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["-h" | "--help" | "help"] => Ok(USAGE.to_string()),
        ["kapps_config", _, .., "--help" | "-h"] => Ok(USAGE.to_string()),
        ["kapps_config", f, rest @ ..] => kapps_config_cmd(settings, f, rest).await,
        [m, ..] => Err(CtlError::Usage(format!(
            "unknown module {m:?}; this build knows kapps_config (see pusherctl --help)"
        ))),
    }
}

async fn kapps_config_cmd(settings: &Settings, f: &str, args: &[&str]) -> Result<String, CtlError> {
    let couch = CouchClient::new(&settings.couch_url, Duration::from_secs(10)).map_err(failed)?;
    match (f, args) {
        ("get", [cat, key]) | ("get", [cat, key, _]) => {
            let node = args.get(2).copied().unwrap_or(&settings.node);
            let doc = read_category(&couch, cat).await?;
            let path = kapps_config::split_key(key);
            let v = ConfigDoc::new(doc)
                .node_value(node, &settings.zone, &path)
                .cloned()
                .unwrap_or(Value::Null);
            serde_json::to_string_pretty(&v).map_err(failed)
        }
        ("set", [cat, key, value]) => {
            set(
                &couch,
                cat,
                key,
                Value::String((*value).into()),
                Scope::NodeIfExists(&settings.node),
            )
            .await
        }
        ("set", [cat, key, value, node]) => {
            set(
                &couch,
                cat,
                key,
                Value::String((*value).into()),
                Scope::NodeIfExists(node),
            )
            .await
        }
        ("set_json", [cat, key, value]) => {
            let v: Value = serde_json::from_str(value).map_err(|e| {
                failed(format!(
                    "JSON invalid at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ))
            })?;
            set(&couch, cat, key, v, Scope::NodeIfExists(&settings.node)).await
        }
        ("set_default", [cat, key, value]) => {
            set(
                &couch,
                cat,
                key,
                Value::String((*value).into()),
                Scope::Default,
            )
            .await
        }
        ("get" | "set" | "set_json" | "set_default", _) => Err(CtlError::Usage(format!(
            "kapps_config {f}: wrong number of arguments (see pusherctl --help)"
        ))),
        _ => Err(CtlError::Usage(format!(
            "kapps_config has no function {f:?} in this build (see pusherctl --help)"
        ))),
    }
}

enum Scope<'a> {
    Default,
    NodeIfExists(&'a str),
}

async fn read_category(couch: &CouchClient, cat: &str) -> Result<Value, CtlError> {
    Ok(couch
        .get_doc(SYSTEM_CONFIG_DB, cat)
        .await
        .map_err(failed)?
        .unwrap_or_else(|| json!({})))
}

async fn set(
    couch: &CouchClient,
    cat: &str,
    key: &str,
    value: Value,
    scope: Scope<'_>,
) -> Result<String, CtlError> {
    let path = kapps_config::split_key(key);
    if path.iter().any(|p| p.is_empty()) {
        return Err(CtlError::Usage(format!("key {key:?} has an empty segment")));
    }
    couch.create_db(SYSTEM_CONFIG_DB).await.map_err(failed)?;
    for _ in 0..10 {
        let mut doc = couch
            .get_doc(SYSTEM_CONFIG_DB, cat)
            .await
            .map_err(failed)?
            .unwrap_or_else(|| json!({"_id": cat}));
        doc["pvt_type"] = json!("config");
        let scope_key = match scope {
            Scope::Default => "default",
            Scope::NodeIfExists(node) => {
                let mut at_node = vec![node];
                at_node.extend_from_slice(&path);
                if kapps_config::get_path(&doc, &at_node).is_some() {
                    node
                } else {
                    "default"
                }
            }
        };
        let mut full = vec![scope_key];
        full.extend_from_slice(&path);
        kapps_config::set_at(&mut doc, &full, value.clone());
        match couch.put_doc(SYSTEM_CONFIG_DB, &doc).await {
            Ok(_) => return serde_json::to_string_pretty(&value).map_err(failed),
            Err(couch::Error::Conflict) => continue,
            Err(e) => return Err(failed(e)),
        }
    }
    Err(failed(format!(
        "{SYSTEM_CONFIG_DB}/{cat} kept changing under us; try again"
    )))
}

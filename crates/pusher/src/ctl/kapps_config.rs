//! `kapps_config` functions on any `system_config` category, with sup's semantics (spec §8).
//!
//! Keys are dotted paths (sup splits them; a Node argument is never split, so an app id
//! works as a node). Every write is a read-modify-write that re-reads on a 409, creates
//! the database and the doc (`pvt_type` `config`) when missing, and — for `pusher` — is
//! validated before anything is sent ([`super::validate`]): a refused edit leaves the
//! document exactly as it was.

use pusher_core::kapps_config::{self, ConfigDoc, DEFAULT_SCOPE};
use pusher_io::couch::{self, CouchClient};
use serde_json::{Value, json};

use super::{CtlError, Ctx, Report, Result, failed, validate};
use crate::config::{PUSHER_CATEGORY, SYSTEM_CONFIG_DB};

/// Start of the message of an edit refused by validation.
const REFUSED: &str = "refused, nothing written";

/// How many 409s a write absorbs before giving up. `system_config/pusher` is one doc for
/// every app and node, so a busy cluster (or test suite) can write it often; each retry
/// re-reads, re-applies and re-validates after a short random pause.
const MAX_CONFLICTS: u32 = 50;

/// Where a write goes.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// `default` (set_default).
    Default,
    /// This node, always (set_node).
    Node(&'a str),
    /// This node if the key already exists there, else `default` (set, set_json).
    NodeIfExists(&'a str),
}

/// Splits a sup key, refusing empty segments (`a..b`, a trailing dot).
pub fn key_path(key: &str) -> Result<Vec<&str>> {
    let path = kapps_config::split_key(key);
    if path.iter().any(|p| p.is_empty()) {
        return Err(failed(format!(
            "key {key:?} has an empty segment (keys are dotted paths like User-Agents.MyApp.regex)"
        )));
    }
    Ok(path)
}

fn check_category(cat: &str) -> Result<()> {
    if cat.is_empty() || cat.starts_with('_') {
        return Err(failed(format!(
            "{cat:?} is not a config category (e.g. pusher)"
        )));
    }
    Ok(())
}

/// `get Category Key [Node]`.
pub async fn get(ctx: &Ctx<'_>, cat: &str, key: &str, node: Option<&str>) -> Result<Report> {
    check_category(cat)?;
    let path = key_path(key)?;
    let node = node.unwrap_or(&ctx.settings.node);
    let doc = ctx
        .couch
        .get_doc(SYSTEM_CONFIG_DB, cat)
        .await
        .map_err(failed)?
        .unwrap_or_else(|| json!({}));
    let doc = ConfigDoc::new(doc);
    match doc.node_value(node, &ctx.settings.zone, &path) {
        None => Ok(Report::ok("undefined")),
        Some(v) => {
            let shown = validate::redact(v, path.last().copied());
            serde_json::to_string_pretty(&shown)
                .map(Report::ok)
                .map_err(failed)
        }
    }
}

/// `set`, `set_default`, `set_json`, `set_node`.
pub async fn set(
    ctx: &Ctx<'_>,
    cat: &str,
    key: &str,
    value: Value,
    scope: Scope<'_>,
) -> Result<Report> {
    check_category(cat)?;
    let path = key_path(key)?;
    // sup passes every value as a string; Kazoo's typed getters convert on read. Where
    // the `pusher` schema wants a boolean or a number, store the typed value instead, so
    // pusherd reads what the operator meant.
    let typed = match &value {
        Value::String(s) if cat == PUSHER_CATEGORY => serde_json::from_str::<Value>(s)
            .ok()
            .filter(|v| v.is_boolean() || v.is_number()),
        _ => None,
    };
    match write_value(ctx, cat, &path, value, scope).await {
        Err(CtlError::Failed(msg)) if msg.starts_with(REFUSED) && typed.is_some() => {
            let typed = typed.unwrap_or_default();
            let shown = typed.to_string();
            let mut report = write_value(ctx, cat, &path, typed, scope).await?;
            report.warnings.push(format!(
                "stored {shown} as a JSON {} (the schema does not accept a string there)",
                if shown == "true" || shown == "false" {
                    "boolean"
                } else {
                    "number"
                }
            ));
            Ok(report)
        }
        other => other,
    }
}

async fn write_value(
    ctx: &Ctx<'_>,
    cat: &str,
    path: &[&str],
    value: Value,
    scope: Scope<'_>,
) -> Result<Report> {
    let mut written = String::new();
    let warnings = update_category(&ctx.couch, cat, |doc| {
        let scope_key = match scope {
            Scope::Default => DEFAULT_SCOPE,
            Scope::Node(node) => node,
            Scope::NodeIfExists(node) => {
                let at_node: Vec<&str> =
                    std::iter::once(node).chain(path.iter().copied()).collect();
                if kapps_config::get_path(doc, &at_node).is_some() {
                    node
                } else {
                    DEFAULT_SCOPE
                }
            }
        };
        let full: Vec<&str> = std::iter::once(scope_key)
            .chain(path.iter().copied())
            .collect();
        kapps_config::set_at(doc, &full, value.clone());
        written = format_path(&full);
        Ok(full.iter().map(|s| s.to_string()).collect())
    })
    .await?;
    Ok(Report {
        stdout: format!("{cat}: set {written}"),
        warnings,
        failure: None,
    })
}

/// `delete Category Key [Node]` (Node defaults to `default`).
pub async fn delete(ctx: &Ctx<'_>, cat: &str, key: &str, node: Option<&str>) -> Result<Report> {
    check_category(cat)?;
    let path = key_path(key)?;
    let scope = node.unwrap_or(DEFAULT_SCOPE);
    let full: Vec<&str> = std::iter::once(scope).chain(path.iter().copied()).collect();
    let shown = format_path(&full);
    let warnings = update_category(&ctx.couch, cat, |doc| {
        if kapps_config::delete_at(doc, &full) {
            Ok(full.iter().map(|s| s.to_string()).collect())
        } else {
            Err(failed(format!("{cat} has no key {shown}; nothing deleted")))
        }
    })
    .await?;
    Ok(Report {
        stdout: format!("{cat}: deleted {shown}"),
        warnings,
        failure: None,
    })
}

/// A path as the operator would type it: `org.my.app` `apple` `host` → `org.my.app.apple.host`.
fn format_path(full: &[&str]) -> String {
    full.join(".")
}

/// Read-modify-write of `system_config/<cat>`: `apply` edits the doc (created with
/// `pvt_type` `config` when missing) and returns the path it wrote (scope first). Edits
/// of `pusher` are validated before the write; a refused edit writes nothing. Returns
/// the validation warnings.
pub(crate) async fn update_category<F>(
    couch: &CouchClient,
    cat: &str,
    mut apply: F,
) -> Result<Vec<String>>
where
    F: FnMut(&mut Value) -> Result<Vec<String>>,
{
    let mut conflicts = 0;
    loop {
        let existing = couch.get_doc(SYSTEM_CONFIG_DB, cat).await.map_err(failed)?;
        let exists = existing.is_some();
        let before = existing.unwrap_or_else(|| json!({"_id": cat, "pvt_type": "config"}));
        let mut doc = before.clone();
        let written = apply(&mut doc)?;
        doc["pvt_type"] = json!("config");
        let mut warnings = Vec::new();
        if cat == PUSHER_CATEGORY {
            let written: Vec<&str> = written.iter().map(String::as_str).collect();
            let verdict = validate::check_pusher_edit(&before, &doc, &written);
            if !verdict.errors.is_empty() {
                return Err(failed(format!("{REFUSED}: {}", verdict.errors.join("; "))));
            }
            warnings = verdict.warnings;
        }
        if !exists {
            couch.create_db(SYSTEM_CONFIG_DB).await.map_err(failed)?;
        }
        match couch.put_doc(SYSTEM_CONFIG_DB, &doc).await {
            Ok(_) => return Ok(warnings),
            Err(couch::Error::Conflict) if conflicts + 1 < MAX_CONFLICTS => {
                conflicts += 1;
                // Spread competing writers apart: 5–50 ms, growing with the conflicts.
                let step = rand::random_range(5..50u64) * u64::from(conflicts.min(10));
                tokio::time::sleep(std::time::Duration::from_millis(step)).await;
            }
            Err(couch::Error::Conflict) => {
                return Err(CtlError::Failed(format!(
                    "{SYSTEM_CONFIG_DB}/{cat} kept changing under us ({MAX_CONFLICTS} conflicts); try again"
                )));
            }
            Err(e) => return Err(failed(e)),
        }
    }
}

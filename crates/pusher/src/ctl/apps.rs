//! `list_apps`: one row per configured app and provider, resolved app → zone → `default`
//! as `pusherd` resolves it, with the days until an APNs certificate expires (exit 2
//! when one is expired, unreadable or expires within [`EXPIRY_WARNING_DAYS`]).

use pusher_core::app_config::default_auth_type;
use pusher_core::credentials;
use pusher_core::kapps_config::ConfigDoc;
use serde_json::{Value, json};

use super::maintenance::{DEFAULT_APNS_HOST, now_unix};
use super::{Ctx, EXPIRY_WARNING_DAYS, Report, Result, failed, validate};
use crate::config::{PUSHER_CATEGORY, SYSTEM_CONFIG_DB};

/// One row of `list_apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    /// App id.
    pub app: String,
    /// `apple`, `firebase_v1` or `firebase`.
    pub provider: &'static str,
    /// `certdata`, `token`, `service_account`, `api_key (legacy)`.
    pub auth: String,
    /// APNs host, FCM project, or `-`.
    pub host: String,
    /// Resolved `<provider>.enabled`.
    pub enabled: bool,
    /// Days until the certificate expires (`None`: no certificate).
    pub days_left: Option<Result<i64, String>>,
}

/// Scopes that are not apps: `default`, the zone, metadata, and scopes with no provider.
fn app_rows(doc: &Value, zone: &str, now: i64) -> Vec<AppRow> {
    let cfg = ConfigDoc::new(doc.clone());
    let mut rows = Vec::new();
    let Some(scopes) = doc.as_object() else {
        return rows;
    };
    for (app, scope) in scopes {
        if app == "default" || app == zone || app.starts_with('_') || app.starts_with("pvt_") {
            continue;
        }
        let enabled = |section: &str| cfg.app_bool(app, zone, &[section, "enabled"], true);
        let get_str = |path: &[&str]| {
            cfg.app_value(app, zone, path)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if scope.get("apple").is_some_and(Value::is_object) {
            let cert = get_str(&["apple", "certificate"]);
            let auth = get_str(&["apple", "auth_type"])
                .unwrap_or_else(|| default_auth_type(cert.as_deref()).to_string());
            let days_left = if auth == "certdata" {
                Some(match &cert {
                    None => Err("no certificate".to_string()),
                    Some(pem) => credentials::certificate_not_after(pem)
                        .map(|t| (t - now).div_euclid(86_400))
                        .ok_or_else(|| "unreadable".to_string()),
                })
            } else {
                None
            };
            rows.push(AppRow {
                app: app.clone(),
                provider: "apple",
                auth,
                host: get_str(&["apple", "host"]).unwrap_or_else(|| DEFAULT_APNS_HOST.into()),
                enabled: enabled("apple"),
                days_left,
            });
        }
        for section in ["firebase_v1", "firebase"] {
            let Some(body) = scope.get(section).filter(|v| v.is_object()) else {
                continue;
            };
            let sa = body.get("service_account");
            let project = sa
                .and_then(|s| match s {
                    Value::String(t) => serde_json::from_str::<Value>(t).ok(),
                    other => Some(other.clone()),
                })
                .and_then(|s| {
                    s.get("project_id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            let auth = if sa.is_some() {
                "service_account".to_string()
            } else if body.get("api_key").is_some() {
                "api_key (legacy, dead)".to_string()
            } else {
                "-".to_string()
            };
            rows.push(AppRow {
                app: app.clone(),
                provider: if section == "firebase" {
                    "firebase"
                } else {
                    "firebase_v1"
                },
                auth,
                host: project.map_or("-".into(), |p| format!("project {p}")),
                enabled: enabled(section),
                days_left: None,
            });
        }
    }
    rows.sort_by(|a, b| (&a.app, a.provider).cmp(&(&b.app, b.provider)));
    rows
}

fn render(rows: &[AppRow]) -> String {
    let header = [
        "APP",
        "PROVIDER",
        "AUTH",
        "HOST",
        "ENABLED",
        "CERT DAYS LEFT",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.app.clone(),
                r.provider.to_string(),
                r.auth.clone(),
                r.host.clone(),
                r.enabled.to_string(),
                match &r.days_left {
                    None => "-".into(),
                    Some(Ok(d)) if *d < 0 => format!("expired ({d})"),
                    Some(Ok(d)) => d.to_string(),
                    Some(Err(e)) => e.clone(),
                },
            ]
        })
        .collect();
    // Cells come from the doc as written; one holding a key (a paste into the wrong
    // field) is never printed.
    let cells: Vec<[String; 6]> = cells
        .into_iter()
        .map(|row| {
            row.map(|c| {
                if validate::looks_like_private_key(&c) {
                    "<secret, not shown>".to_string()
                } else {
                    c
                }
            })
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        cols.iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(&header.map(String::from))];
    out.extend(cells.iter().map(|r| line(r)));
    out.join("\n")
}

/// `list_apps [AppIdPrefix]`.
pub async fn list_apps(ctx: &Ctx<'_>, prefix: Option<&str>) -> Result<Report> {
    let doc = ctx
        .couch
        .get_doc(SYSTEM_CONFIG_DB, PUSHER_CATEGORY)
        .await
        .map_err(failed)?
        .unwrap_or_else(|| json!({}));
    let rows: Vec<AppRow> = app_rows(&doc, &ctx.settings.zone, now_unix())
        .into_iter()
        .filter(|r| prefix.is_none_or(|p| r.app.starts_with(p)))
        .collect();
    if rows.is_empty() {
        return Ok(Report::ok("no apps configured"));
    }
    let bad: Vec<String> = rows
        .iter()
        .filter_map(|r| match &r.days_left {
            Some(Ok(d)) if *d < 0 => Some(format!("{} (expired)", r.app)),
            Some(Ok(d)) if *d < EXPIRY_WARNING_DAYS => Some(format!("{} ({d} days)", r.app)),
            Some(Err(e)) => Some(format!("{} ({e})", r.app)),
            _ => None,
        })
        .collect();
    Ok(Report {
        stdout: render(&rows),
        warnings: Vec::new(),
        failure: (!bad.is_empty()).then(|| {
            format!(
                "{} APNs certificate{} expired, unreadable or expiring within {EXPIRY_WARNING_DAYS} days: {}",
                bad.len(),
                if bad.len() == 1 { " is" } else { "s are" },
                bad.join(", ")
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_resolve_like_pusherd() {
        let doc = json!({
            "_id": "pusher", "pvt_type": "config",
            "_attachments": {},
            "default": {"apple": {"host": "api.push.apple.com", "enabled": true}},
            "local": {"apple": {"host": "zone.example.com"}},
            "pusher@node": {"User-Agents": {}},
            "org.tok": {"apple": {"auth_type": "token", "team_id": "T", "key_id": "K"}},
            "org.bad": {"apple": {"certificate": "garbage", "enabled": "false"}},
            "org.fcm": {"firebase_v1": {"service_account": {"project_id": "p1"}},
                        "firebase": {"api_key": "AAAA"}}
        });
        let rows = app_rows(&doc, "local", 0);
        let summary: Vec<(&str, &str, &str, &str, bool)> = rows
            .iter()
            .map(|r| {
                (
                    r.app.as_str(),
                    r.provider,
                    r.auth.as_str(),
                    r.host.as_str(),
                    r.enabled,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("org.bad", "apple", "certdata", "zone.example.com", false),
                ("org.fcm", "firebase", "api_key (legacy, dead)", "-", true),
                (
                    "org.fcm",
                    "firebase_v1",
                    "service_account",
                    "project p1",
                    true
                ),
                ("org.tok", "apple", "token", "zone.example.com", true),
            ]
        );
        assert_eq!(rows[0].days_left, Some(Err("unreadable".into())));
        assert_eq!(rows[3].days_left, None);
        let table = render(&rows);
        assert!(table.starts_with("APP      PROVIDER"), "{table}");
        assert!(!table.contains("AAAA"));
    }

    #[test]
    fn a_key_pasted_into_any_field_is_not_printed() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\n-----END PRIVATE KEY-----";
        let doc = json!({"org.x": {"apple": {"auth_type": key, "host": key}}});
        let table = render(&app_rows(&doc, "local", 0));
        assert!(!table.contains("MIIEvQIBADAN"), "{table}");
        assert!(table.contains("<secret, not shown>"), "{table}");
    }
}

//! `pusher_maintenance`: credentials written exactly where `pusherd` reads them.
//!
//! Per-app settings live under a top-level key equal to the app id (`Token-App`), as
//! Kazoo's `kapps_config:set_node(…, AppId)` writes them (spec §1.5, §1.8); `pusherd`
//! resolves them app → zone → `default` (see `crate::push`). The `.p8` key is one
//! attachment of `system_config/pusher` for every token app. Each command checks its
//! input ([`pusher_core::credentials`]) before writing, so a bad certificate is caught when it
//! is added, not when a call arrives; secrets are never printed. `list_apps` is in
//! [`super::apps`].

use std::time::{SystemTime, UNIX_EPOCH};

use pusher_core::app_config::P8_ATTACHMENT;
use pusher_core::credentials::{self, CredentialError};
use pusher_io::couch;
use serde_json::{Value, json};

use super::kapps_config::update_category;
use super::{CtlError, Ctx, EXPIRY_WARNING_DAYS, Report, Result, failed};
use crate::config::{PUSHER_CATEGORY, SYSTEM_CONFIG_DB};

/// APNs production host, Kazoo's default for `apple.host`.
pub const DEFAULT_APNS_HOST: &str = "api.push.apple.com";
/// Content type of the `.p8` attachment (Kazoo 5).
pub const P8_CONTENT_TYPE: &str = "application/x-pem-file";

pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn refused(what: &str, e: CredentialError) -> CtlError {
    CtlError::Failed(format!("{what}: {e}; nothing written"))
}

/// An app id usable as a scope of `system_config/pusher`.
fn check_app_id(app: &str) -> Result<()> {
    let reserved = app == "default" || app.starts_with('_') || app.starts_with("pvt_");
    if reserved || !pusher_core::push_req::valid_token_app(app) {
        return Err(failed(format!(
            "{app:?} is not a usable app id (1-255 characters, no spaces or '/', not `default`, `_…` or `pvt_…`)"
        )));
    }
    Ok(())
}

fn check_apns_host(host: &str) -> Result<()> {
    pusher_core::apns::base_url(Some(host))
        .map(|_| ())
        .map_err(|e| failed(format!("host {host:?} cannot be used: {e}")))
}

fn read_file(what: &str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        failed(format!("cannot read {what} {path}: {why}"))
    })
}

fn read_text(what: &str, path: &str) -> Result<String> {
    String::from_utf8(read_file(what, path)?)
        .map_err(|_| failed(format!("{what} {path} is not a text (PEM/JSON) file")))
}

/// Merges `fields` into `<app>.<section>` of the pusher doc (other keys there are kept).
async fn write_app_section(
    ctx: &Ctx<'_>,
    app: &str,
    section: &str,
    fields: Value,
) -> Result<Vec<String>> {
    update_category(&ctx.couch, PUSHER_CATEGORY, |doc| {
        if let Some(map) = fields.as_object() {
            for (k, v) in map {
                pusher_core::kapps_config::set_at(doc, &[app, section, k], v.clone());
            }
        }
        Ok(vec![app.to_string(), section.to_string()])
    })
    .await
}

/// `add_apple_app AppId CertFile [Host]`.
pub async fn add_apple_app(
    ctx: &Ctx<'_>,
    app: &str,
    file: &str,
    host: Option<&str>,
) -> Result<Report> {
    check_app_id(app)?;
    let host = host.unwrap_or(DEFAULT_APNS_HOST);
    check_apns_host(host)?;
    let pem = read_text("CertFile", file)?;
    let id = credentials::check_apns_certificate(&pem, now_unix())
        .map_err(|e| refused(&format!("CertFile {file}"), e))?;
    let mut warnings = write_app_section(
        ctx,
        app,
        "apple",
        json!({"certificate": pem, "host": host, "auth_type": "certdata"}),
    )
    .await?;
    let days = id.days_left(now_unix());
    if days < EXPIRY_WARNING_DAYS {
        warnings.push(format!(
            "the certificate expires in {days} days ({}); renew it soon",
            id.not_after_date
        ));
    }
    let base = app
        .trim_end_matches(".voip")
        .trim_end_matches(".dev")
        .trim_end_matches(".prod");
    let names: Vec<&str> = id
        .bundle_id
        .iter()
        .map(String::as_str)
        .chain(id.topics.iter().map(String::as_str))
        .collect();
    if !names.is_empty() && !names.iter().any(|n| n.trim_end_matches(".voip") == base) {
        warnings.push(format!(
            "the certificate is for {} but the app id is {app}; pushes will use topic {base} unless apple.apns_topic is set",
            names.join(", ")
        ));
    }
    let topics = if id.topics.is_empty() {
        "none listed".to_string()
    } else {
        id.topics.join(", ")
    };
    Ok(Report {
        stdout: format!(
            "added apple app {app} (certdata, host {host})\n  subject: {}\n  topics:  {topics}\n  expires: {} ({days} days)\n  key:     {}",
            id.subject, id.not_after_date, id.key_format
        ),
        warnings,
        failure: None,
    })
}

/// `add_apple_pem_file PemKeyFile`.
pub async fn add_apple_pem_file(ctx: &Ctx<'_>, file: &str) -> Result<Report> {
    let pem = read_text("PemKeyFile", file)?;
    credentials::check_p8_key(&pem).map_err(|e| refused(&format!("PemKeyFile {file}"), e))?;
    let body = pem.into_bytes();
    let mut conflicts = 0;
    loop {
        let doc = ctx
            .couch
            .get_doc(SYSTEM_CONFIG_DB, PUSHER_CATEGORY)
            .await
            .map_err(failed)?;
        let rev = match doc
            .as_ref()
            .and_then(|d| d.get("_rev"))
            .and_then(Value::as_str)
        {
            Some(rev) => rev.to_string(),
            None => {
                // Create the doc as kapps_config would, then attach to it.
                ctx.couch
                    .create_db(SYSTEM_CONFIG_DB)
                    .await
                    .map_err(failed)?;
                let new = json!({"_id": PUSHER_CATEGORY, "pvt_type": "config"});
                match ctx.couch.put_doc(SYSTEM_CONFIG_DB, &new).await {
                    Ok(rev) => rev,
                    Err(couch::Error::Conflict) => continue,
                    Err(e) => return Err(failed(e)),
                }
            }
        };
        match ctx
            .couch
            .put_attachment(
                SYSTEM_CONFIG_DB,
                PUSHER_CATEGORY,
                Some(&rev),
                P8_ATTACHMENT,
                P8_CONTENT_TYPE,
                body.clone(),
            )
            .await
        {
            Ok(_) => break,
            Err(couch::Error::Conflict) if conflicts < 10 => conflicts += 1,
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(Report::ok(format!(
        "stored the APNs token key (EC P-256) as {SYSTEM_CONFIG_DB}/{PUSHER_CATEGORY}/{P8_ATTACHMENT}; \
         apps with auth_type token sign with it"
    )))
}

/// `add_apple_token_app AppId TeamId KeyId [Host]`.
pub async fn add_apple_token_app(
    ctx: &Ctx<'_>,
    app: &str,
    team_id: &str,
    key_id: &str,
    host: Option<&str>,
) -> Result<Report> {
    check_app_id(app)?;
    let valid_id = |s: &str| s.len() == 10 && s.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid_id(team_id) {
        return Err(failed(format!(
            "TeamId {team_id:?} is not a 10-character Apple team id"
        )));
    }
    if !valid_id(key_id) {
        return Err(failed(format!(
            "KeyId {key_id:?} is not a 10-character Apple key id"
        )));
    }
    let host = host.unwrap_or(DEFAULT_APNS_HOST);
    check_apns_host(host)?;
    let mut warnings = write_app_section(
        ctx,
        app,
        "apple",
        json!({"auth_type": "token", "team_id": team_id, "key_id": key_id, "host": host}),
    )
    .await?;
    let has_p8 = ctx
        .couch
        .get_doc(SYSTEM_CONFIG_DB, PUSHER_CATEGORY)
        .await
        .map_err(failed)?
        .and_then(|d| {
            d.pointer(&format!("/_attachments/{P8_ATTACHMENT}"))
                .cloned()
        })
        .is_some();
    if !has_p8 {
        warnings.push(format!(
            "no {P8_ATTACHMENT} uploaded yet; run pusher_maintenance add_apple_pem_file AuthKey_{key_id}.p8"
        ));
    }
    Ok(Report {
        stdout: format!("added apple app {app} (token, team {team_id}, key {key_id}, host {host})"),
        warnings,
        failure: None,
    })
}

/// `add_firebase_v1_app AppId ServiceAccountJSON`.
pub async fn add_firebase_v1_app(ctx: &Ctx<'_>, app: &str, text: &str) -> Result<Report> {
    add_service_account(ctx, app, text, "ServiceAccountJSON").await
}

/// `add_firebase_v1_app_from_service_account_file AppId File`.
pub async fn add_firebase_v1_app_from_file(ctx: &Ctx<'_>, app: &str, file: &str) -> Result<Report> {
    check_app_id(app)?;
    let text = read_text("service-account file", file)?;
    add_service_account(ctx, app, &text, &format!("service-account file {file}")).await
}

async fn add_service_account(ctx: &Ctx<'_>, app: &str, text: &str, what: &str) -> Result<Report> {
    check_app_id(app)?;
    let sa = credentials::parse_json(text).map_err(|e| refused(what, e))?;
    let info = credentials::check_service_account(&sa).map_err(|e| refused(what, e))?;
    let warnings =
        write_app_section(ctx, app, "firebase_v1", json!({"service_account": sa})).await?;
    Ok(Report {
        stdout: format!(
            "added firebase_v1 app {app} (project {}, {})",
            info.project_id, info.client_email
        ),
        warnings,
        failure: None,
    })
}

/// `add_firebase_app AppId Secret` (deprecated).
pub async fn add_firebase_app(ctx: &Ctx<'_>, app: &str, secret: &str) -> Result<Report> {
    check_app_id(app)?;
    if secret.trim().is_empty() {
        return Err(failed("Secret is empty"));
    }
    let mut warnings = write_app_section(ctx, app, "firebase", json!({"api_key": secret})).await?;
    warnings.push(
        "add_firebase_app is deprecated: Google shut the legacy FCM API down in 2024, so pusherd \
         cannot send with an api_key; use add_firebase_v1_app with a service account"
            .into(),
    );
    Ok(Report {
        stdout: format!("stored firebase.api_key for {app} (legacy, not used for sending)"),
        warnings,
        failure: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids() {
        assert!(check_app_id("org.example.app").is_ok());
        for bad in ["", "default", "_design", "pvt_x", "a b", "a/b"] {
            assert!(check_app_id(bad).is_err(), "{bad}");
        }
    }
}

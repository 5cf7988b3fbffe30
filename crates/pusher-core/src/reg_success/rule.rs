//! Spec §5.1 steps 2–7 for a matched User-Agent rule, and the steps the RFC 8599
//! fallback shares: first contact, proxies, the device ids.

use serde_json::{Map, Value};

use super::{MAX_DEVICE_ID_LEN, PushUpdate, RegDecision, RegSuccess};
use crate::account::account_db;
use crate::contact::{Contact, parse_contacts, url_decode};
use crate::ua_rules::Rule;

/// Spec §5.1 steps 2–7.
pub(super) fn decide_by_rule(
    reg: &RegSuccess,
    rule: &Rule,
    warnings: &mut Vec<String>,
) -> RegDecision {
    let Some(header) = reg.contact.as_deref() else {
        return RegDecision::NoContact("no Contact".to_string());
    };
    let contact = match first_contact(header, warnings) {
        Ok(contact) => contact,
        Err(reason) => return RegDecision::NoContact(reason),
    };
    let has_token = rule
        .property("Token-ID")
        .is_some_and(|param| contact.param(param).is_some());
    if !has_token {
        return RegDecision::NoToken {
            rule: rule.key.clone(),
        };
    }
    let mut push = Map::new();
    for (key, source) in &rule.properties {
        if let Some(value) = contact.param(source).or_else(|| reg.top_level_str(source)) {
            push.insert(key.clone(), Value::String(url_decode(value)));
        }
    }
    add_proxies(reg, &mut push);
    update_device(reg, PushUpdate::Set(push), &rule.key, warnings)
}

/// First contact of the header; warns when there are several.
pub(super) fn first_contact(header: &str, warnings: &mut Vec<String>) -> Result<Contact, String> {
    let contacts = parse_contacts(header).map_err(|e| e.to_string())?;
    if contacts.len() > 1 {
        warnings.push(format!(
            "Contact has {} contacts; used the first",
            contacts.len()
        ));
    }
    contacts
        .into_iter()
        .next()
        .ok_or_else(|| "no contact in Contact".to_string())
}

/// `Token-Proxy` ← `Proxy-Path`, `Token-Public-Proxy` ← `Proxy-URI`. They override
/// same-named rule properties, and are left out when the field is absent.
pub(super) fn add_proxies(reg: &RegSuccess, push: &mut Map<String, Value>) {
    for (key, source) in [
        ("Token-Proxy", &reg.proxy_path),
        ("Token-Public-Proxy", &reg.proxy_uri),
    ] {
        push.shift_remove(key);
        if let Some(value) = source {
            push.insert(key.to_string(), Value::String(url_decode(value)));
        }
    }
}

/// Spec §5.1 step 5: both ids are needed, and the account id must be valid.
pub(super) fn update_device(
    reg: &RegSuccess,
    update: PushUpdate,
    rule: &str,
    warnings: &mut Vec<String>,
) -> RegDecision {
    let (Some(account_id), Some(device_id)) = (&reg.account_id, &reg.authorizing_id) else {
        return RegDecision::MissingIds;
    };
    // `_`-prefixed ids are CouchDB's own (`_design/…`, `_local/…`, `_all_docs`,
    // `_changes`): never a device, and a design doc must not get a `push` key.
    if device_id.starts_with('_') {
        warnings.push(format!(
            "Authorizing-ID {:?} is a reserved CouchDB id, not a device",
            device_id.chars().take(80).collect::<String>()
        ));
        return RegDecision::MissingIds;
    }
    // `.` and `..` survive percent-encoding and would climb the CouchDB URL path (`..`
    // reads the account database itself, or the server root as a database name).
    if matches!(device_id.as_str(), "." | "..") {
        warnings.push(format!(
            "Authorizing-ID {device_id:?} is a URL path segment, not a device"
        ));
        return RegDecision::MissingIds;
    }
    // Kazoo ids are 32 hex characters; anything far longer is not a device id, and CouchDB
    // would refuse the URL anyway (431).
    if device_id.len() > MAX_DEVICE_ID_LEN {
        warnings.push(format!(
            "Authorizing-ID is {} bytes long (at most {MAX_DEVICE_ID_LEN}), not a device id",
            device_id.len()
        ));
        return RegDecision::MissingIds;
    }
    match account_db(account_id) {
        Ok(account_db) => RegDecision::Update {
            account_db,
            device_id: device_id.clone(),
            update,
            rule: rule.to_string(),
        },
        Err(e) => {
            warnings.push(e.to_string());
            RegDecision::MissingIds
        }
    }
}

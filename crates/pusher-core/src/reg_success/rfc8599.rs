//! RFC 8599 fallback: a push device named by `pn-provider`, `pn-param` and `pn-prid`
//! Contact parameters when no User-Agent rule matched.

use serde_json::{Map, Value};

use super::rule::{add_proxies, first_contact, update_device};
use super::{PushUpdate, RFC8599_RULE, RegDecision, RegSuccess};
use crate::contact::url_decode;

/// RFC 8599 fallback: `pn-provider`, `pn-param`, `pn-prid` Contact parameters.
pub(super) fn decide_rfc8599(reg: &RegSuccess, warnings: &mut Vec<String>) -> RegDecision {
    let Some(header) = reg.contact.as_deref() else {
        return RegDecision::NoUserAgentRule;
    };
    let contact = match first_contact(header, warnings) {
        Ok(contact) => contact,
        Err(reason) => return RegDecision::NoContact(reason),
    };
    let (Some(provider), Some(prid)) = (contact.param("pn-provider"), contact.param("pn-prid"))
    else {
        return RegDecision::NoUserAgentRule;
    };
    let no_token = || RegDecision::NoToken {
        rule: RFC8599_RULE.to_string(),
    };
    let token_type = match provider.to_ascii_lowercase().as_str() {
        "apns" | "apns.dev" => "apple",
        "fcm" => "firebase",
        _ => {
            warnings.push(format!("rfc8599: unsupported pn-provider {provider:?}"));
            return no_token();
        }
    };
    let whole = url_decode(prid);
    let whole = whole.trim();
    if whole.is_empty() || whole.eq_ignore_ascii_case("null") {
        return update_device(reg, PushUpdate::Remove, RFC8599_RULE, warnings);
    }
    let token = select_prid(prid);
    if token.is_empty() {
        warnings.push(format!("rfc8599: no token in pn-prid {prid:?}"));
        return no_token();
    }
    let pn_param = contact.param("pn-param");
    let app = match token_type {
        "apple" => pn_param.and_then(apple_bundle_id),
        _ => pn_param.filter(|p| !p.is_empty()).map(str::to_string),
    };
    let Some(app) = app else {
        warnings.push(format!(
            "rfc8599: missing or invalid pn-param {pn_param:?} for pn-provider {provider:?}"
        ));
        return no_token();
    };
    let mut push = Map::new();
    push.insert("Token-App".into(), Value::String(url_decode(&app)));
    push.insert("Token-Type".into(), Value::String(token_type.into()));
    push.insert("Token-ID".into(), Value::String(token));
    add_proxies(reg, &mut push);
    update_device(reg, PushUpdate::Set(push), RFC8599_RULE, warnings)
}

/// Bundle id out of an APNs `pn-param`: `TEAMID.bundle.id[.services]`, where services
/// is `voip`, `remote` or both joined by `&`.
pub(super) fn apple_bundle_id(pn_param: &str) -> Option<String> {
    let (team, rest) = pn_param.split_once('.')?;
    let bundle = match rest.rsplit_once('.') {
        Some((bundle, services)) if is_services(services) => bundle,
        _ if is_services(rest) => "",
        _ => rest,
    };
    (!team.is_empty() && !bundle.is_empty()).then(|| bundle.to_string())
}

fn is_services(s: &str) -> bool {
    s.split('&').all(|part| part == "voip" || part == "remote")
}

/// Token out of `pn-prid`, URL-decoded: the `voip` one of a multi-token
/// `tok1:voip&tok2:remote`, else the first. A plain token is kept whole (FCM tokens
/// contain `:` too).
fn select_prid(prid: &str) -> String {
    let tokens: Vec<(&str, Option<&str>)> = prid
        .split('&')
        .map(|part| match part.rsplit_once(':') {
            Some((token, service)) if service == "voip" || service == "remote" => {
                (token, Some(service))
            }
            _ => (part, None),
        })
        .collect();
    tokens
        .iter()
        .find(|(_, service)| *service == Some("voip"))
        .or(tokens.first())
        .map(|(token, _)| url_decode(token))
        .unwrap_or_default()
}

//! The one place a setting's value is validated and turned into [`Settings`]; each
//! shown value and its origin is recorded for `--print-config`.

use std::time::Duration;

use pusher_io::couch::redact_url;

use super::print::shown_url;
use super::sources::Raw;
use super::{
    DEFAULT_AMQP_URI, DEFAULT_COUCH_URL, DEFAULT_HTTP_ADDR, DEFAULT_PREFETCH, Error, Origin,
    Settings, hostname,
};

/// Checks every value and builds the settings; records each shown value and origin.
pub(super) fn check<'a>(
    get: &dyn Fn(&'static str) -> Option<&'a Raw>,
    ini_fallbacks: &[Raw],
    shown: &mut Vec<(&'static str, String, Origin)>,
) -> Result<Settings, Error> {
    // The value of `key` (trimmed; empty counts as unset) or its default, with its origin.
    let value = |key: &'static str, default: &str| -> (String, Origin) {
        match get(key) {
            Some(r) if !r.value.trim().is_empty() => (r.value.trim().to_string(), r.origin.clone()),
            _ => (default.to_string(), Origin::Default),
        }
    };
    let invalid = |key: &'static str, origin: &Origin, value: String, why: String| Error::Invalid {
        key,
        origin: Box::new(origin.clone()),
        value,
        why,
    };
    let mut record = |key: &'static str, v: String, o: &Origin| shown.push((key, v, o.clone()));

    let (amqp_uri, o) = value("amqp_uri", DEFAULT_AMQP_URI);
    // amqp:// or amqps:// with Erlang amqp_uri's TLS options; for amqps:// the files it
    // names are read now, so a missing CA or key stops the start, not the first connect.
    let check_uri = |uri: &str, origin: &Origin| {
        pusher_io::amqp::check_uri(uri)
            .map(drop)
            .map_err(|e| invalid("amqp_uri", origin, redact_url(uri), amqp_why(e)))
    };
    check_uri(&amqp_uri, &o)?;
    // Fallbacks belong to the ini's cluster: dropped when amqp_uri comes from elsewhere.
    // They may mix amqp:// and amqps:// brokers, each with its own TLS options.
    let amqp_fallback_uris = if matches!(o, Origin::KazooIni { .. }) {
        for f in ini_fallbacks {
            check_uri(&f.value, &f.origin)?;
        }
        ini_fallbacks.iter().map(|f| f.value.clone()).collect()
    } else {
        Vec::new()
    };
    record("amqp_uri", shown_url(&amqp_uri), &o);

    let (couch_url, o) = value("couch_url", DEFAULT_COUCH_URL);
    pusher_io::couch::CouchClient::new(&couch_url, Duration::from_secs(1))
        .map_err(|e| invalid("couch_url", &o, redact_url(&couch_url), e.to_string()))?;
    record("couch_url", shown_url(&couch_url), &o);

    let (zone, o) = value("zone", "local");
    record("zone", zone.clone(), &o);
    let (node, o) = value("node", &format!("pusher@{}", hostname()));
    record("node", node.clone(), &o);

    let (addr, o) = value("http_addr", DEFAULT_HTTP_ADDR);
    let http_addr = match addr.as_str() {
        "off" => None,
        a => Some(a.parse().map_err(|e| {
            invalid(
                "http_addr",
                &o,
                a.to_string(),
                format!("{e} (expected host:port, e.g. 127.0.0.1:8099, or off)"),
            )
        })?),
    };
    record("http_addr", addr, &o);

    let mut num = |key: &'static str, default: u64, min: u64, max: u64| {
        let (raw, o) = value(key, &default.to_string());
        let n = match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                return Err(invalid(
                    key,
                    &o,
                    raw,
                    format!("expected a whole number from {min} to {max}"),
                ));
            }
        };
        record(key, n.to_string(), &o);
        Ok(n)
    };
    let prefetch = u16::try_from(num("prefetch", DEFAULT_PREFETCH.into(), 1, 10_000)?)
        .unwrap_or(DEFAULT_PREFETCH);
    let ms = Duration::from_millis;
    let retry_budget = ms(num("retry_budget_ms", 45_000, 0, 55_000)?);
    let shutdown_grace = ms(num("shutdown_grace_ms", 4_000, 0, 60_000)?);
    let couch_timeout = ms(num("couch_timeout_ms", 5_000, 100, 60_000)?);
    let per_app_default = (u64::from(prefetch) * 3 / 4).max(1);
    let push_deadline = ms(num("push_deadline_ms", 20_000, 1_000, 60_000)?);
    let provider_timeout = ms(num("provider_timeout_ms", 10_000, 100, 60_000)?);
    let per_app_in_flight = num("max_in_flight_per_app", per_app_default, 1, 100_000)?;

    let (format, o) = value("log_format", "text");
    let log_json = match format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            return Err(invalid(
                "log_format",
                &o,
                other.to_string(),
                "expected text or json".into(),
            ));
        }
    };
    record("log_format", format, &o);

    let (ca_path, o) = value("extra_ca_file", "");
    let extra_ca_pem = if ca_path.is_empty() {
        None
    } else {
        let pem = std::fs::read(&ca_path).map_err(|e| {
            invalid(
                "extra_ca_file",
                &o,
                ca_path.clone(),
                format!("cannot read it: {e}"),
            )
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid(
                "extra_ca_file",
                &o,
                ca_path,
                "no PEM CERTIFICATE in the file".into(),
            ));
        }
        Some(pem)
    };
    record("extra_ca_file", ca_path, &o);

    let (fcm, o) = value("fcm_url", pusher_io::fcm::DEFAULT_BASE_URL);
    let fcm_base_url = fcm.trim_end_matches('/').to_string();
    if !(fcm_base_url.starts_with("https://") || fcm_base_url.starts_with("http://")) {
        return Err(invalid(
            "fcm_url",
            &o,
            redact_url(&fcm_base_url),
            "expected an http(s):// URL".into(),
        ));
    }
    record("fcm_url", shown_url(&fcm_base_url), &o);

    let (bindings, o) = value("extra_bindings", "");
    let extra_bindings = extra_bindings(&bindings)
        .map_err(|why| invalid("extra_bindings", &o, bindings.clone(), why))?;
    record("extra_bindings", bindings, &o);

    let push = crate::push::PushSettings {
        extra_ca_pem,
        fcm_base_url,
        request_timeout: provider_timeout,
        deadline: push_deadline,
        per_app_in_flight: usize::try_from(per_app_in_flight).unwrap_or(usize::MAX),
        total_in_flight: usize::from(prefetch),
    };
    Ok(Settings {
        push,
        amqp_uri,
        amqp_fallback_uris,
        couch_url,
        zone,
        node,
        http_addr,
        prefetch,
        couch_timeout,
        retry_budget,
        shutdown_grace,
        log_json,
        extra_bindings,
    })
}

/// Reads `exchange:routing_key` pairs separated by commas (the key may contain `:`);
/// the error names every unusable pair.
pub(super) fn extra_bindings(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut bad = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let usable = item.split_once(':').filter(|(exchange, key)| {
            // Exchange names as RabbitMQ allows them, none of its reserved `amq.*` ones
            // and not the default exchange; keys are AMQP short strings without spaces.
            !exchange.is_empty()
                && exchange.len() <= 255
                && !exchange.starts_with("amq.")
                && exchange
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && !key.is_empty()
                && key.len() <= 255
                && !key.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        match usable {
            Some((exchange, key)) => pairs.push((exchange.to_string(), key.to_string())),
            None => bad.push(format!("{item:?}")),
        }
    }
    if bad.is_empty() {
        Ok(pairs)
    } else {
        Err(format!(
            "unusable binding(s) {}: expected exchange:routing_key, comma-separated (e.g. pushes:notification.endpoint_push.#)",
            bad.join(", ")
        ))
    }
}

/// The reason a broker URI is refused, without the adapter's prefix.
fn amqp_why(e: pusher_io::amqp::Error) -> String {
    match e {
        pusher_io::amqp::Error::Uri(e) => e.to_string(),
        other => other.to_string(),
    }
}

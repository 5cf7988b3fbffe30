//! Process settings of `pusherd` and `pusherctl`, read once at start from the environment.
//!
//! These are the bootstrap settings only (where the broker and CouchDB are, who we are);
//! everything about apps and User-Agent rules lives in CouchDB `system_config/pusher` and
//! is watched at run time (see [`crate::config`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Default broker URI (Kazoo's default `amqp_uri`).
pub const DEFAULT_AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default CouchDB URL.
pub const DEFAULT_COUCH_URL: &str = "http://127.0.0.1:5984";
/// Default listen address of `/health` and `/ready`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8099";

/// Errors in the settings: one clear sentence each.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A variable holds a value that cannot be used.
    #[error("{name}={value:?} is invalid: {why}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// Offending value (never a secret: URLs are redacted).
        value: String,
        /// Why.
        why: String,
    },
}

/// Effective settings.
#[derive(Clone)]
pub struct Settings {
    /// `PUSHER_AMQP_URI`.
    pub amqp_uri: String,
    /// `PUSHER_COUCH_URL` (may carry credentials; never logged unredacted).
    pub couch_url: String,
    /// `PUSHER_ZONE`: scope between node/app and `default` in config lookups.
    pub zone: String,
    /// `PUSHER_NODE`: node scope for node-scoped keys such as `User-Agents`.
    pub node: String,
    /// `PUSHER_HTTP_ADDR`: `/health`, `/ready`; `None` when set to `off`.
    pub http_addr: Option<SocketAddr>,
    /// `PUSHER_PREFETCH`: unacked deliveries (and concurrent handlers) per instance.
    pub prefetch: u16,
    /// `PUSHER_COUCH_TIMEOUT_MS`: per-request CouchDB timeout.
    pub couch_timeout: Duration,
    /// `PUSHER_RETRY_BUDGET_MS`: how long a message may be retried on transient
    /// failures before it is settled with an error (must fit the queue's 60 s TTL).
    pub retry_budget: Duration,
    /// `PUSHER_SHUTDOWN_GRACE_MS`: how long in-flight work may take after SIGTERM.
    pub shutdown_grace: Duration,
    /// `PUSHER_LOG_FORMAT`: `text` or `json`.
    pub log_json: bool,
    /// Push delivery: `PUSHER_EXTRA_CA_FILE`, `PUSHER_FCM_URL`, `PUSHER_PUSH_DEADLINE_MS`,
    /// `PUSHER_PROVIDER_TIMEOUT_MS`, `PUSHER_MAX_IN_FLIGHT_PER_APP`.
    pub push: crate::push::PushSettings,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("amqp_uri", &pusher_io::couch::redact_url(&self.amqp_uri))
            .field("couch_url", &pusher_io::couch::redact_url(&self.couch_url))
            .field("zone", &self.zone)
            .field("node", &self.node)
            .field("http_addr", &self.http_addr)
            .field("prefetch", &self.prefetch)
            .field("couch_timeout", &self.couch_timeout)
            .field("retry_budget", &self.retry_budget)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("log_json", &self.log_json)
            .field("extra_ca", &self.push.extra_ca_pem.is_some())
            .field("fcm_url", &self.push.fcm_base_url)
            .field("push_deadline", &self.push.deadline)
            .finish()
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, Error> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_map(&vars)
    }

    /// Reads the settings from a map of variables (testable without touching the env).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, Error> {
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let amqp_uri = get("PUSHER_AMQP_URI")
            .unwrap_or(DEFAULT_AMQP_URI)
            .to_string();
        if !(amqp_uri.starts_with("amqp://") || amqp_uri.starts_with("amqps://")) {
            return Err(Error::Invalid {
                name: "PUSHER_AMQP_URI",
                value: pusher_io::couch::redact_url(&amqp_uri),
                why: "must start with amqp:// (amqps:// is not built in)".into(),
            });
        }
        let couch_url = get("PUSHER_COUCH_URL")
            .unwrap_or(DEFAULT_COUCH_URL)
            .to_string();
        pusher_io::couch::CouchClient::new(&couch_url, Duration::from_secs(1)).map_err(|e| {
            Error::Invalid {
                name: "PUSHER_COUCH_URL",
                value: pusher_io::couch::redact_url(&couch_url),
                why: e.to_string(),
            }
        })?;
        let zone = get("PUSHER_ZONE").unwrap_or("local").to_string();
        let node = match get("PUSHER_NODE") {
            Some(n) => n.to_string(),
            None => format!("pusher@{}", gethostname::gethostname().to_string_lossy()),
        };
        let http_addr = match get("PUSHER_HTTP_ADDR").unwrap_or(DEFAULT_HTTP_ADDR) {
            "off" => None,
            a => Some(a.parse().map_err(|e| Error::Invalid {
                name: "PUSHER_HTTP_ADDR",
                value: a.to_string(),
                why: format!("{e} (expected host:port, e.g. 127.0.0.1:8099, or off)"),
            })?),
        };
        let prefetch = parse_num(get("PUSHER_PREFETCH"), "PUSHER_PREFETCH", 200u16, 1, 10_000)?;
        let ms = |name: &'static str, default: u64, min: u64, max: u64| {
            parse_num(get(name), name, default, min, max).map(Duration::from_millis)
        };
        let log_json = match get("PUSHER_LOG_FORMAT").unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => {
                return Err(Error::Invalid {
                    name: "PUSHER_LOG_FORMAT",
                    value: other.to_string(),
                    why: "expected text or json".into(),
                });
            }
        };
        let extra_ca_pem = match get("PUSHER_EXTRA_CA_FILE") {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| Error::Invalid {
                name: "PUSHER_EXTRA_CA_FILE",
                value: path.to_string(),
                why: format!("cannot read it: {e}"),
            })?),
        };
        if let Some(pem) = &extra_ca_pem
            && !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(Error::Invalid {
                name: "PUSHER_EXTRA_CA_FILE",
                value: get("PUSHER_EXTRA_CA_FILE").unwrap_or_default().to_string(),
                why: "no PEM CERTIFICATE in the file".into(),
            });
        }
        let fcm_base_url = get("PUSHER_FCM_URL")
            .unwrap_or(pusher_io::fcm::DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_string();
        if !(fcm_base_url.starts_with("https://") || fcm_base_url.starts_with("http://")) {
            return Err(Error::Invalid {
                name: "PUSHER_FCM_URL",
                value: fcm_base_url,
                why: "expected an http(s):// URL".into(),
            });
        }
        let per_app_default = (usize::from(prefetch) * 3 / 4).max(1);
        let per_app_in_flight = parse_num(
            get("PUSHER_MAX_IN_FLIGHT_PER_APP"),
            "PUSHER_MAX_IN_FLIGHT_PER_APP",
            per_app_default,
            1,
            100_000,
        )?;
        let push = crate::push::PushSettings {
            extra_ca_pem,
            fcm_base_url,
            request_timeout: ms("PUSHER_PROVIDER_TIMEOUT_MS", 10_000, 100, 60_000)?,
            deadline: ms("PUSHER_PUSH_DEADLINE_MS", 20_000, 1_000, 60_000)?,
            per_app_in_flight,
            total_in_flight: usize::from(prefetch),
        };
        Ok(Self {
            push,
            amqp_uri,
            couch_url,
            zone,
            node,
            http_addr,
            prefetch,
            couch_timeout: ms("PUSHER_COUCH_TIMEOUT_MS", 5_000, 100, 60_000)?,
            retry_budget: ms("PUSHER_RETRY_BUDGET_MS", 45_000, 0, 55_000)?,
            shutdown_grace: ms("PUSHER_SHUTDOWN_GRACE_MS", 4_000, 0, 60_000)?,
            log_json,
        })
    }
}

fn parse_num<T>(
    raw: Option<&str>,
    name: &'static str,
    default: T,
    min: T,
    max: T,
) -> Result<T, Error>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(Error::Invalid {
            name,
            value: raw.to_string(),
            why: format!("expected a whole number from {min} to {max}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_map(&HashMap::new()).expect("defaults");
        assert_eq!(s.amqp_uri, DEFAULT_AMQP_URI);
        assert_eq!(s.couch_url, DEFAULT_COUCH_URL);
        assert_eq!(s.zone, "local");
        assert!(s.node.starts_with("pusher@"));
        assert_eq!(s.http_addr, Some("127.0.0.1:8099".parse().expect("addr")));
        assert_eq!(s.prefetch, 200);
        assert!(!s.log_json);
    }

    #[test]
    fn explicit_values_and_errors() {
        let s = Settings::from_map(&map(&[
            ("PUSHER_ZONE", "east"),
            ("PUSHER_NODE", "pusher@a"),
            ("PUSHER_HTTP_ADDR", "off"),
            ("PUSHER_PREFETCH", "7"),
            ("PUSHER_LOG_FORMAT", "json"),
        ]))
        .expect("settings");
        assert_eq!((s.zone.as_str(), s.node.as_str()), ("east", "pusher@a"));
        assert_eq!((s.http_addr, s.prefetch, s.log_json), (None, 7, true));

        for (k, v) in [
            ("PUSHER_PREFETCH", "0"),
            ("PUSHER_PREFETCH", "many"),
            ("PUSHER_HTTP_ADDR", "localhost"),
            ("PUSHER_AMQP_URI", "http://x"),
            ("PUSHER_COUCH_URL", "ftp://x"),
            ("PUSHER_LOG_FORMAT", "xml"),
            ("PUSHER_RETRY_BUDGET_MS", "90000"),
        ] {
            let err = Settings::from_map(&map(&[(k, v)])).expect_err(k);
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Settings::from_map(&map(&[
            ("PUSHER_AMQP_URI", "amqp://u:amqpsecret@h:5672/%2f"),
            ("PUSHER_COUCH_URL", "http://admin:couchsecret@h:5984"),
        ]))
        .expect("settings");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("amqpsecret") && !shown.contains("couchsecret"),
            "{shown}"
        );
    }
}

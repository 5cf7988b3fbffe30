//! Process settings of `pusherd` and `pusherctl`, read once at start.
//!
//! These are the bootstrap settings only (where the broker and CouchDB are, who we are);
//! everything about apps and User-Agent rules lives in CouchDB `system_config/pusher` and
//! is watched at run time (see [`crate::config`]).
//!
//! # Sources, lowest precedence first
//!
//! 1. **Built-in defaults** ([`KEYS`] lists every key with its default).
//! 2. **Kazoo's `config.ini`**: the file named by `KAZOO_CONFIG`, else the first of
//!    [`DEFAULT_KAZOO_CONFIG_PATHS`] that exists (Kazoo's own search order). A missing
//!    default file is fine; a missing or unreadable `KAZOO_CONFIG` is an error;
//!    `KAZOO_CONFIG=off` skips it. It gives `amqp_uri` (the first `[amqp] uri`, the other
//!    `uri` lines become [`Settings::amqp_fallback_uris`], tried in turn on reconnect; without an `[amqp]` section, the
//!    `amqp_uri` of this zone's `[zone]` section), `couch_url` (built from `[bigcouch]` `ip`,
//!    `port`, `username`, `password`) and `zone` (`KAZOO_ZONE`, else the `zone` of the
//!    `[kazoo_apps]` section for this host). Sections are chosen as Kazoo does: the one for
//!    this host, else those for this zone, else the generic ones
//!    ([`pusher_core::kazoo_ini`]).
//! 3. **The TOML file named by `PUSHER_CONFIG`** (optional; when set, it must exist). Its
//!    keys are the variable names below without `PUSHER_`, in lower case (`amqp_uri`,
//!    `prefetch`, `push_deadline_ms`, …), strings or whole numbers; an unknown key is an
//!    error naming the key, file and line.
//! 4. **Environment variables** `PUSHER_*` ([`KEYS`]).
//!
//! A value is checked once, whatever its source; a bad one stops the start with one
//! sentence naming where it came from (variable, `file:line`, or `[section] key` of the
//! ini). [`Loaded`] keeps the origin of every value for `pusherd --print-config`
//! ([`Loaded::render`]), which redacts passwords in URLs.
//!
//! [`Settings::from_env`] applies all four sources to the process environment;
//! [`Settings::from_map`] treats a map as the environment and reads only the files the map
//! names (`PUSHER_CONFIG`, `KAZOO_CONFIG`), so tests never pick up `/etc/kazoo`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use pusher_core::kazoo_ini::{self, KazooIni, Located};
use pusher_io::couch::redact_url;

/// Default broker URI (Kazoo's default `amqp_uri`).
pub const DEFAULT_AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default CouchDB URL.
pub const DEFAULT_COUCH_URL: &str = "http://127.0.0.1:5984";
/// Default listen address of `/health` and `/ready`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8099";
/// Where Kazoo looks for its `config.ini` when `KAZOO_CONFIG` is unset, in its order
/// (`kazoo_config_init`): the Kazoo 3 path, then the Kazoo 4 one.
pub const DEFAULT_KAZOO_CONFIG_PATHS: &[&str] =
    &["/etc/kazoo/config.ini", "/etc/kazoo/core/config.ini"];

/// One setting: its TOML key, its environment variable, its default (as text) and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Key in the `PUSHER_CONFIG` TOML file.
    pub key: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Default, as text (`None`: computed, see `help`).
    pub default: Option<&'static str>,
    /// One line for `--help`.
    pub help: &'static str,
}

/// Every setting, in the order `--print-config` shows them.
pub const KEYS: &[Key] = &[
    Key {
        key: "amqp_uri",
        env: "PUSHER_AMQP_URI",
        default: Some(DEFAULT_AMQP_URI),
        help: "RabbitMQ broker",
    },
    Key {
        key: "couch_url",
        env: "PUSHER_COUCH_URL",
        default: Some(DEFAULT_COUCH_URL),
        help: "CouchDB, credentials allowed (http://user:pass@host:5984)",
    },
    Key {
        key: "zone",
        env: "PUSHER_ZONE",
        default: Some("local"),
        help: "zone scope in system_config lookups",
    },
    Key {
        key: "node",
        env: "PUSHER_NODE",
        default: None,
        help: "node scope in system_config lookups (default pusher@<hostname>)",
    },
    Key {
        key: "http_addr",
        env: "PUSHER_HTTP_ADDR",
        default: Some(DEFAULT_HTTP_ADDR),
        help: "/health, /ready and /metrics listen address, or off",
    },
    Key {
        key: "prefetch",
        env: "PUSHER_PREFETCH",
        default: Some("200"),
        help: "unacked deliveries = concurrent handlers",
    },
    Key {
        key: "retry_budget_ms",
        env: "PUSHER_RETRY_BUDGET_MS",
        default: Some("45000"),
        help: "transient-failure retry time per message",
    },
    Key {
        key: "shutdown_grace_ms",
        env: "PUSHER_SHUTDOWN_GRACE_MS",
        default: Some("4000"),
        help: "drain time after SIGTERM",
    },
    Key {
        key: "couch_timeout_ms",
        env: "PUSHER_COUCH_TIMEOUT_MS",
        default: Some("5000"),
        help: "per-request CouchDB timeout",
    },
    Key {
        key: "log_format",
        env: "PUSHER_LOG_FORMAT",
        default: Some("text"),
        help: "text or json; RUST_LOG sets levels",
    },
    Key {
        key: "extra_ca_file",
        env: "PUSHER_EXTRA_CA_FILE",
        default: None,
        help: "PEM roots added to the system roots for provider TLS (default none)",
    },
    Key {
        key: "fcm_url",
        env: "PUSHER_FCM_URL",
        default: Some(pusher_io::fcm::DEFAULT_BASE_URL),
        help: "FCM base URL",
    },
    Key {
        key: "push_deadline_ms",
        env: "PUSHER_PUSH_DEADLINE_MS",
        default: Some("20000"),
        help: "time a push may take, retries included",
    },
    Key {
        key: "provider_timeout_ms",
        env: "PUSHER_PROVIDER_TIMEOUT_MS",
        default: Some("10000"),
        help: "per-request APNs/FCM timeout",
    },
    Key {
        key: "max_in_flight_per_app",
        env: "PUSHER_MAX_IN_FLIGHT_PER_APP",
        default: None,
        help: "in-flight pushes per app (default 3/4 of prefetch)",
    },
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built in.
    Default,
    /// An environment variable (`PUSHER_*`, or `KAZOO_ZONE` for the zone).
    Env(String),
    /// A line of the `PUSHER_CONFIG` TOML file.
    Toml {
        /// File path.
        path: String,
        /// 1-based line.
        line: usize,
    },
    /// A `[section] key` line of Kazoo's `config.ini`.
    KazooIni {
        /// File path.
        path: String,
        /// Section name.
        section: String,
        /// Key.
        key: String,
        /// 1-based line.
        line: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Env(name) => write!(f, "env {name}"),
            Self::Toml { path, line } => write!(f, "{path}:{line}"),
            Self::KazooIni {
                path,
                section,
                key,
                line,
            } => write!(f, "{path}:{line} [{section}] {key}"),
        }
    }
}

/// Errors in the settings: one clear sentence each, never with a secret in it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value that cannot be used.
    #[error("{} is invalid: {why}", describe(.key, .origin, .value))]
    Invalid {
        /// Setting key (TOML name, e.g. `prefetch`).
        key: &'static str,
        /// Where the value came from (boxed: keeps `Result`s small).
        origin: Box<Origin>,
        /// Offending value (URLs redacted).
        value: String,
        /// Why.
        why: String,
    },
    /// A configuration file that cannot be read.
    #[error("cannot read {what} {path}: {why}")]
    File {
        /// Which file (`KAZOO_CONFIG file`, `PUSHER_CONFIG file`, …).
        what: &'static str,
        /// Path.
        path: String,
        /// Why.
        why: String,
    },
    /// A TOML file that is not valid TOML, or a value of the wrong type.
    #[error("{path} line {line}: {why}")]
    Toml {
        /// Path.
        path: String,
        /// 1-based line.
        line: usize,
        /// Why.
        why: String,
    },
    /// A key the TOML file must not have.
    #[error("{path} line {line}: unknown key `{key}` (known keys: {known})")]
    UnknownKey {
        /// The key.
        key: String,
        /// Path.
        path: String,
        /// 1-based line.
        line: usize,
        /// The keys we know, comma-separated.
        known: String,
    },
    /// Kazoo's `config.ini` is malformed or holds an unusable value.
    #[error("Kazoo config {path} {source}")]
    KazooIni {
        /// Path.
        path: String,
        /// What is wrong (names the line, never its content).
        source: kazoo_ini::Error,
    },
}

fn describe(key: &str, origin: &Origin, value: &str) -> String {
    match origin {
        Origin::Env(name) => format!("{name}={value:?}"),
        Origin::Toml { path, line } => format!("{key} = {value:?} ({path} line {line})"),
        Origin::KazooIni {
            path,
            section,
            key: k,
            line,
        } => format!("{key} {value:?} from [{section}] {k} ({path} line {line})"),
        Origin::Default => format!("default {key} {value:?}"),
    }
}

/// Effective settings.
#[derive(Clone)]
pub struct Settings {
    /// `PUSHER_AMQP_URI`.
    pub amqp_uri: String,
    /// The other brokers of the cluster when `amqp_uri` came from several `[amqp] uri`
    /// lines of Kazoo's `config.ini`, in file order; empty otherwise.
    pub amqp_fallback_uris: Vec<String>,
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

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("amqp_uri", &redact_url(&self.amqp_uri))
            .field(
                "amqp_fallback_uris",
                &self
                    .amqp_fallback_uris
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("couch_url", &redact_url(&self.couch_url))
            .field("zone", &self.zone)
            .field("node", &self.node)
            .field("http_addr", &self.http_addr)
            .field("prefetch", &self.prefetch)
            .field("couch_timeout", &self.couch_timeout)
            .field("retry_budget", &self.retry_budget)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("log_json", &self.log_json)
            .field("extra_ca", &self.push.extra_ca_pem.is_some())
            .field("fcm_url", &redact_url(&self.push.fcm_base_url))
            .field("push_deadline", &self.push.deadline)
            .finish()
    }
}

/// Settings plus where each value came from (for `pusherd --print-config`).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings.
    pub settings: Settings,
    /// For each of [`KEYS`], in that order: the value as shown (secrets redacted) and its
    /// origin.
    pub values: Vec<(&'static str, String, Origin)>,
    /// The files that were read or skipped, one line each.
    pub files: Vec<String>,
}

impl Loaded {
    /// The effective settings as TOML (usable as a `PUSHER_CONFIG` file once the redacted
    /// passwords are put back), each line commented with where its value came from.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# pusherd effective settings (passwords redacted)\n\
             # precedence: default < Kazoo config.ini < PUSHER_CONFIG file < PUSHER_* env\n",
        );
        for f in &self.files {
            out.push_str(&format!("# {f}\n"));
        }
        for (key, shown, origin) in &self.values {
            let value = if shown.parse::<u64>().is_ok() {
                shown.clone()
            } else {
                format!("{shown:?}")
            };
            out.push_str(&format!("{key} = {value}  # {origin}\n"));
        }
        if !self.settings.amqp_fallback_uris.is_empty() {
            let others: Vec<String> = self
                .settings
                .amqp_fallback_uris
                .iter()
                .map(|u| format!("{:?}", shown_url(u)))
                .collect();
            out.push_str(&format!(
                "# other [amqp] uri lines (tried in turn when the connection is lost): {}\n",
                others.join(", ")
            ));
        }
        out
    }
}

impl Settings {
    /// Reads the settings from the process environment, `PUSHER_CONFIG` and Kazoo's
    /// `config.ini` (module docs: precedence).
    pub fn from_env() -> Result<Self, Error> {
        Self::load_env().map(|l| l.settings)
    }

    /// As [`Settings::from_env`], keeping where each value came from.
    pub fn load_env() -> Result<Loaded, Error> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        load(&vars, DEFAULT_KAZOO_CONFIG_PATHS, &hostname())
    }

    /// Reads the settings from a map of variables used as the environment (testable
    /// without touching the env). Files are read only when the map names them
    /// (`PUSHER_CONFIG`, `KAZOO_CONFIG`); Kazoo's default paths are not searched.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, Error> {
        load(vars, &[], &hostname()).map(|l| l.settings)
    }
}

/// A URL as `--print-config` shows it: as written, unless it carries a password, which is
/// replaced by `***`.
fn shown_url(url: &str) -> String {
    let redacted = redact_url(url);
    // `redact_url` also normalises (adds a trailing `/`); keep the original when there is
    // nothing to hide. An unparsable URL is never shown: it could hide a password anywhere.
    if redacted.contains(":***@") || redacted.starts_with('<') {
        redacted
    } else {
        url.to_string()
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A value and its origin, before checking.
#[derive(Debug, Clone)]
struct Raw {
    value: String,
    origin: Origin,
}

/// Applies the four sources (module docs) to `vars` (the environment); `kazoo_defaults`
/// are searched when `KAZOO_CONFIG` is unset; `hostname` chooses the ini's host sections.
fn load(
    vars: &HashMap<String, String>,
    kazoo_defaults: &[&str],
    hostname: &str,
) -> Result<Loaded, Error> {
    let var = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut files = Vec::new();

    let env_layer: HashMap<&'static str, Raw> = KEYS
        .iter()
        .filter_map(|k| {
            var(k.env).map(|v| {
                (
                    k.key,
                    Raw {
                        value: v.to_string(),
                        origin: Origin::Env(k.env.to_string()),
                    },
                )
            })
        })
        .collect();

    let toml_layer = match var("PUSHER_CONFIG") {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::File {
                what: "PUSHER_CONFIG file",
                path: path.to_string(),
                why: e.to_string(),
            })?;
            files.push(format!("PUSHER_CONFIG file: {path}"));
            parse_toml(path, &text)?
        }
        None => {
            files.push("PUSHER_CONFIG file: none".to_string());
            HashMap::new()
        }
    };

    let ini = read_kazoo_ini(var("KAZOO_CONFIG"), kazoo_defaults, &mut files)?;

    // The zone decides which ini sections apply, so it is settled first.
    let zone = env_layer
        .get("zone")
        .or_else(|| toml_layer.get("zone"))
        .cloned()
        .or_else(|| {
            var("KAZOO_ZONE").map(|z| Raw {
                value: z.to_string(),
                origin: Origin::Env("KAZOO_ZONE".into()),
            })
        })
        .or_else(|| {
            let (path, ini) = ini.as_ref()?;
            ini.node_zone(hostname).map(|z| ini_raw(path, z))
        });

    let mut ini_layer: HashMap<&'static str, Raw> = HashMap::new();
    let mut ini_fallbacks = Vec::new();
    if let Some((path, ini)) = &ini {
        let zone_name = zone.as_ref().map_or("local", |z| z.value.as_str());
        let view = ini
            .pusher_view(hostname, Some(zone_name))
            .map_err(|source| Error::KazooIni {
                path: path.clone(),
                source,
            })?;
        let mut uris = view.amqp_uris.into_iter();
        if let Some(first) = uris.next() {
            ini_layer.insert("amqp_uri", ini_raw(path, first));
            ini_fallbacks = uris.map(|u| ini_raw(path, u)).collect();
        }
        if let Some(couch) = view.couch_url {
            ini_layer.insert("couch_url", ini_raw(path, couch));
        }
    }
    if let Some(z) = zone {
        ini_layer.insert("zone", z);
    }

    let layers = [&env_layer, &toml_layer, &ini_layer];
    let get = |key: &'static str| -> Option<&Raw> { layers.iter().find_map(|l| l.get(key)) };
    let mut values: Vec<(&'static str, String, Origin)> = Vec::new();
    let settings = check(&get, &ini_fallbacks, &mut values)?;
    // Show the values in KEYS order.
    values.sort_by_key(|(k, _, _)| KEYS.iter().position(|d| d.key == *k));
    Ok(Loaded {
        settings,
        values,
        files,
    })
}

fn ini_raw(path: &str, l: Located<String>) -> Raw {
    Raw {
        origin: Origin::KazooIni {
            path: path.to_string(),
            section: l.section,
            key: l.key,
            line: l.line,
        },
        value: l.value,
    }
}

/// Reads and parses Kazoo's `config.ini`: `KAZOO_CONFIG` (`off` skips it) or the first
/// default path that exists.
fn read_kazoo_ini(
    explicit: Option<&str>,
    defaults: &[&str],
    files: &mut Vec<String>,
) -> Result<Option<(String, KazooIni)>, Error> {
    let (path, text) = match explicit {
        Some("off") => {
            files.push("Kazoo config.ini: off (KAZOO_CONFIG=off)".into());
            return Ok(None);
        }
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (path.to_string(), text),
            Err(e) => {
                return Err(Error::File {
                    what: "KAZOO_CONFIG file",
                    path: path.to_string(),
                    why: e.to_string(),
                });
            }
        },
        None => {
            let mut found = None;
            for path in defaults {
                match std::fs::read_to_string(path) {
                    Ok(text) => {
                        found = Some((path.to_string(), text));
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::File {
                            what: "Kazoo config",
                            path: path.to_string(),
                            why: format!("{e} (set KAZOO_CONFIG=off to skip it)"),
                        });
                    }
                }
            }
            match found {
                Some(f) => f,
                None => {
                    files.push(if defaults.is_empty() {
                        "Kazoo config.ini: none (KAZOO_CONFIG unset)".to_string()
                    } else {
                        format!("Kazoo config.ini: none found at {}", defaults.join(", "))
                    });
                    return Ok(None);
                }
            }
        }
    };
    let ini = KazooIni::parse(&text).map_err(|source| Error::KazooIni {
        path: path.clone(),
        source,
    })?;
    files.push(format!("Kazoo config.ini: {path}"));
    Ok(Some((path, ini)))
}

/// Reads a `PUSHER_CONFIG` file into raw values: top-level keys of [`KEYS`] only, strings
/// or whole numbers.
fn parse_toml(path: &str, text: &str) -> Result<HashMap<&'static str, Raw>, Error> {
    use toml::de::{DeTable, DeValue};
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table = DeTable::parse(text).map_err(|e| Error::Toml {
        path: path.to_string(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        // Only the message: the error's Display quotes the line, which may hold a password.
        why: e.message().trim().to_string(),
    })?;
    let mut out = HashMap::new();
    for (key, value) in table.get_ref() {
        let line = line_of(key.span().start);
        let Some(def) = KEYS.iter().find(|d| d.key == key.get_ref().as_ref()) else {
            return Err(Error::UnknownKey {
                key: key.get_ref().to_string(),
                path: path.to_string(),
                line,
                known: KEYS.iter().map(|d| d.key).collect::<Vec<_>>().join(", "),
            });
        };
        let value = match value.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                i64::from_str_radix(&digits, i.radix())
                    .map(|n| n.to_string())
                    .map_err(|e| Error::Toml {
                        path: path.to_string(),
                        line,
                        why: format!("{}: {e}", def.key),
                    })?
            }
            other => {
                return Err(Error::Toml {
                    path: path.to_string(),
                    line,
                    why: format!(
                        "{} must be a string or a whole number, not {}",
                        def.key,
                        other.type_str()
                    ),
                });
            }
        };
        out.insert(
            def.key,
            Raw {
                value,
                origin: Origin::Toml {
                    path: path.to_string(),
                    line,
                },
            },
        );
    }
    Ok(out)
}

/// Checks every value and builds the settings; records each shown value and origin.
fn check<'a>(
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
    if !(amqp_uri.starts_with("amqp://") || amqp_uri.starts_with("amqps://")) {
        return Err(invalid(
            "amqp_uri",
            &o,
            redact_url(&amqp_uri),
            "must start with amqp:// (amqps:// is not built in)".into(),
        ));
    }
    // Fallbacks belong to the ini's cluster: dropped when amqp_uri comes from elsewhere.
    let amqp_fallback_uris = if matches!(o, Origin::KazooIni { .. }) {
        for f in ini_fallbacks {
            if !f.value.starts_with("amqp://") && !f.value.starts_with("amqps://") {
                return Err(invalid(
                    "amqp_uri",
                    &f.origin,
                    redact_url(&f.value),
                    "must start with amqp://".into(),
                ));
            }
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
    let prefetch = u16::try_from(num("prefetch", 200, 1, 10_000)?).unwrap_or(200);
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample Kazoo config.ini shipped with the tests.
    const SAMPLE_INI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kazoo-config.ini");
    /// The host of the sample's `[kazoo_apps]` section for zone `z200`.
    const Z200_HOST: &str = "kazoo2.z200.example.net";

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn temp_file(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!(
            "pusher-settings-{}-{}",
            std::process::id(),
            name.replace('.', "-")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path.to_string_lossy().into_owned()
    }

    fn origin_of<'a>(l: &'a Loaded, key: &str) -> &'a Origin {
        &l.values.iter().find(|(k, _, _)| *k == key).expect(key).2
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
        assert_eq!(s.push.per_app_in_flight, 150);
        assert!(s.amqp_fallback_uris.is_empty());
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
        assert_eq!(s.push.per_app_in_flight, 5);

        for (k, v) in [
            ("PUSHER_PREFETCH", "0"),
            ("PUSHER_PREFETCH", "many"),
            ("PUSHER_HTTP_ADDR", "localhost"),
            ("PUSHER_AMQP_URI", "http://x"),
            ("PUSHER_COUCH_URL", "ftp://x"),
            ("PUSHER_LOG_FORMAT", "xml"),
            ("PUSHER_RETRY_BUDGET_MS", "90000"),
            ("PUSHER_EXTRA_CA_FILE", "/nonexistent/ca.pem"),
            ("PUSHER_FCM_URL", "fcm.example"),
            ("PUSHER_MAX_IN_FLIGHT_PER_APP", "0"),
        ] {
            let err = Settings::from_map(&map(&[(k, v)])).expect_err(k);
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_errors_and_print_config() {
        let vars = map(&[
            ("PUSHER_AMQP_URI", "amqp://u:amqpsecret@h:5672/%2f"),
            ("PUSHER_COUCH_URL", "http://admin:couchsecret@h:5984"),
        ]);
        let s = Settings::from_map(&vars).expect("settings");
        let loaded = load(&vars, &[], "h").expect("loaded");
        for shown in [format!("{s:?}"), loaded.render()] {
            assert!(
                !shown.contains("amqpsecret") && !shown.contains("couchsecret"),
                "{shown}"
            );
            assert!(
                shown.contains("u:***@h") && shown.contains("admin:***@h"),
                "{shown}"
            );
        }
        let err = Settings::from_map(&map(&[("PUSHER_COUCH_URL", "ftp://a:couchsecret@h")]))
            .expect_err("scheme");
        assert!(!err.to_string().contains("couchsecret"), "{err}");
    }

    #[test]
    fn sample_kazoo_ini_is_read_for_a_host_in_zone_z200() {
        let vars = map(&[("KAZOO_CONFIG", SAMPLE_INI)]);
        let l = load(&vars, &[], Z200_HOST).expect("loaded");
        let s = &l.settings;
        // The host's [kazoo_apps] puts it in z200, whose [amqp] section beats the generic one.
        assert_eq!(s.amqp_uri, "amqp://kazoo:amqp-z200-secret@10.20.0.11:5672");
        assert_eq!(
            s.amqp_fallback_uris,
            ["amqp://kazoo:amqp-z200-secret@10.20.0.12:5672"]
        );
        assert_eq!(
            s.couch_url,
            "http://kazoo:couch%3Bsecret%23z@10.20.0.21:15984"
        );
        assert_eq!(s.zone, "z200");
        // Everything else is still the default.
        assert_eq!(s.prefetch, 200);
        assert!(matches!(
            origin_of(&l, "zone"),
            Origin::KazooIni { section, key, .. } if section == "kazoo_apps" && key == "zone"
        ));
        assert!(matches!(
            origin_of(&l, "amqp_uri"),
            Origin::KazooIni { section, key, .. } if section == "amqp" && key == "uri"
        ));
        assert_eq!(origin_of(&l, "prefetch"), &Origin::Default);
        // The CouchDB client accepts the built URL and gets the decoded credentials.
        pusher_io::couch::CouchClient::new(&s.couch_url, Duration::from_secs(1)).expect("url");
    }

    #[test]
    fn sample_kazoo_ini_for_an_unknown_host_uses_the_generic_sections() {
        let l = load(&map(&[("KAZOO_CONFIG", SAMPLE_INI)]), &[], "somewhere.else").expect("loaded");
        let s = &l.settings;
        // No [kazoo_apps] section for this host: the default zone and the generic sections.
        assert_eq!(s.zone, "local");
        assert_eq!(s.amqp_uri, "amqp://guest:guest@10.10.0.11:5672");
        assert_eq!(s.amqp_fallback_uris, ["amqp://guest:guest@10.10.0.12:5672"]);
        assert_eq!(
            s.couch_url,
            "http://kazoo:couch%3Bsecret%23z@10.10.0.21:15984"
        );
        // KAZOO_ZONE picks the zone, and with it the zone's sections.
        let l = load(
            &map(&[("KAZOO_CONFIG", SAMPLE_INI), ("KAZOO_ZONE", "z200")]),
            &[],
            "somewhere.else",
        )
        .expect("loaded");
        assert_eq!(l.settings.zone, "z200");
        assert_eq!(origin_of(&l, "zone"), &Origin::Env("KAZOO_ZONE".into()));
        assert_eq!(
            l.settings.couch_url,
            "http://kazoo:couch%3Bsecret%23z@10.20.0.21:15984"
        );
    }

    #[test]
    fn precedence_default_ini_toml_env() {
        let toml = temp_file(
            "pusher.toml",
            "# pusher settings\namqp_uri = \"amqp://t:t@toml:5672\"\nprefetch = 50\n\
             push_deadline_ms = 15_000\nzone = \"z100\"\n",
        );
        let base = [
            ("KAZOO_CONFIG", SAMPLE_INI),
            ("PUSHER_CONFIG", toml.as_str()),
        ];
        let l = load(&map(&base), &[], Z200_HOST).expect("loaded");
        // TOML beats the ini; the ini's other brokers are dropped with its amqp_uri.
        assert_eq!(l.settings.amqp_uri, "amqp://t:t@toml:5672");
        assert!(l.settings.amqp_fallback_uris.is_empty());
        assert_eq!(
            origin_of(&l, "amqp_uri"),
            &Origin::Toml {
                path: toml.clone(),
                line: 2
            }
        );
        assert_eq!(l.settings.prefetch, 50);
        assert_eq!(l.settings.push.deadline, Duration::from_millis(15_000));
        // The TOML zone overrides the ini's and selects the z100 sections of the ini.
        assert_eq!(l.settings.zone, "z100");
        assert_eq!(
            l.settings.couch_url,
            "http://kazoo:couch%3Bsecret%23z@10.10.0.21:15984"
        );

        // The environment beats both.
        let mut vars = map(&base);
        vars.extend(map(&[
            ("PUSHER_AMQP_URI", "amqp://e:e@env:5672"),
            ("PUSHER_PREFETCH", "9"),
            ("PUSHER_COUCH_URL", "http://env:5984"),
        ]));
        let l = load(&vars, &[], Z200_HOST).expect("loaded");
        assert_eq!(l.settings.amqp_uri, "amqp://e:e@env:5672");
        assert_eq!(l.settings.prefetch, 9);
        assert_eq!(l.settings.couch_url, "http://env:5984");
        assert_eq!(
            origin_of(&l, "prefetch"),
            &Origin::Env("PUSHER_PREFETCH".into())
        );
        assert_eq!(l.settings.zone, "z100");
    }

    #[test]
    fn toml_errors_name_key_file_and_line() {
        let unknown = temp_file("unknown.toml", "prefetch = 5\n\namqp_url = \"amqp://x\"\n");
        let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &unknown)])).expect_err("key");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{unknown} line 3: unknown key `amqp_url`")),
            "{msg}"
        );

        let bad = temp_file("bad.toml", "zone = \"a\"\nprefetch = 0\n");
        let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &bad)])).expect_err("range");
        assert_eq!(
            err.to_string(),
            format!(
                "prefetch = \"0\" ({bad} line 2) is invalid: expected a whole number from 1 to 10000"
            )
        );

        let typed = temp_file("typed.toml", "prefetch = 1.5\n");
        let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &typed)])).expect_err("type");
        assert!(
            err.to_string()
                .contains("line 1: prefetch must be a string or a whole number")
        );

        let table = temp_file("table.toml", "[amqp]\nuri = \"x\"\n");
        let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &table)])).expect_err("table");
        assert!(err.to_string().contains("unknown key `amqp`"), "{err}");

        let syntax = temp_file(
            "syntax.toml",
            "zone = \"a\"\ncouch_url = \"http://a:hunter2@h\n",
        );
        let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &syntax)])).expect_err("syntax");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{syntax} line 2: ")), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");

        let err = Settings::from_map(&map(&[("PUSHER_CONFIG", "/nonexistent/p.toml")]))
            .expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read PUSHER_CONFIG file /nonexistent/p.toml: "),
            "{err}"
        );
    }

    #[test]
    fn kazoo_config_missing_explicit_is_an_error_missing_default_is_fine() {
        let err = Settings::from_map(&map(&[("KAZOO_CONFIG", "/nonexistent/config.ini")]))
            .expect_err("explicit");
        assert!(
            err.to_string()
                .starts_with("cannot read KAZOO_CONFIG file /nonexistent/config.ini"),
            "{err}"
        );
        let l = load(
            &HashMap::new(),
            &["/nonexistent/a.ini", "/nonexistent/b.ini"],
            "h",
        )
        .expect("defaults absent");
        assert_eq!(l.settings.amqp_uri, DEFAULT_AMQP_URI);
        assert!(
            l.files.iter().any(|f| f.contains("none found")),
            "{:?}",
            l.files
        );
        // The first default path that exists is used; `off` skips even that.
        let l = load(&HashMap::new(), &["/nonexistent/a.ini", SAMPLE_INI], "h").expect("found");
        assert_eq!(l.settings.amqp_uri, "amqp://guest:guest@10.10.0.11:5672");
        let l = load(&map(&[("KAZOO_CONFIG", "off")]), &[SAMPLE_INI], "h").expect("off");
        assert_eq!(l.settings.amqp_uri, DEFAULT_AMQP_URI);
    }

    #[test]
    fn kazoo_ini_errors_name_file_section_key_and_line() {
        let ini = temp_file(
            "config.ini",
            "[bigcouch]\nip = \"db\"\nport = 15984\npassword = \"s3cret\"\n\
             [amqp]\nuri = \"http://guest:s3cret@rabbit\"\n",
        );
        let err = Settings::from_map(&map(&[("KAZOO_CONFIG", &ini)])).expect_err("uri");
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "amqp_uri \"http://guest:***@rabbit/\" from [amqp] uri ({ini} line 6) is invalid: \
                 must start with amqp:// (amqps:// is not built in)"
            )
        );
        let broken = temp_file("broken.ini", "[bigcouch]\nport = 5984x\n");
        let err = Settings::from_map(&map(&[("KAZOO_CONFIG", &broken)])).expect_err("port");
        assert_eq!(
            err.to_string(),
            format!(
                "Kazoo config {broken} line 2: [bigcouch] port is invalid: expected a port number from 1 to 65535"
            )
        );
        let syntax = temp_file("syntax.ini", "[amqp]\nuri\n");
        let err = Settings::from_map(&map(&[("KAZOO_CONFIG", &syntax)])).expect_err("syntax");
        assert!(err.to_string().contains("line 2: expected"), "{err}");
    }

    #[test]
    fn print_config_shows_every_key_with_its_origin() {
        let toml = temp_file("print.toml", "prefetch = 64\n");
        let vars = map(&[
            ("KAZOO_CONFIG", SAMPLE_INI),
            ("PUSHER_CONFIG", &toml),
            ("PUSHER_LOG_FORMAT", "json"),
        ]);
        let text = load(&vars, &[], Z200_HOST).expect("loaded").render();
        for k in KEYS {
            assert!(
                text.contains(&format!("\n{} = ", k.key)),
                "{} missing:\n{text}",
                k.key
            );
        }
        assert!(text.contains("prefetch = 64  # "), "{text}");
        assert!(text.contains(&format!("# {toml}:1\n")), "{text}");
        assert!(
            text.contains("log_format = \"json\"  # env PUSHER_LOG_FORMAT\n"),
            "{text}"
        );
        assert!(
            text.contains("amqp_uri = \"amqp://kazoo:***@10.20.0.11:5672\"  # "),
            "{text}"
        );
        assert!(text.contains("[amqp] uri\n"), "{text}");
        assert!(text.contains("zone = \"z200\"  # "), "{text}");
        assert!(
            text.contains("shutdown_grace_ms = 4000  # default\n"),
            "{text}"
        );
        assert!(
            text.contains("connection is lost): \"amqp://kazoo:***@10.20.0.12:5672\""),
            "{text}"
        );
        assert!(
            text.contains("fcm_url = \"https://fcm.googleapis.com\"  # default\n"),
            "{text}"
        );
        assert!(
            !text.contains("secret"),
            "a password leaked into print-config:\n{text}"
        );
        // What was printed (minus comments and redaction) is a valid PUSHER_CONFIG file.
        let again = temp_file("again.toml", &text);
        Settings::from_map(&map(&[("PUSHER_CONFIG", &again)])).expect("round trip");
    }
}

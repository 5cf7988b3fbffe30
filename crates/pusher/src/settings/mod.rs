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
//!
//! # Layout
//!
//! - [`keys`]: every setting with its default ([`KEYS`]);
//! - `sources`: the raw values of each source (environment, `PUSHER_CONFIG` TOML,
//!   Kazoo's `config.ini`), each with its [`Origin`];
//! - `load`: the layering of the sources (env > TOML > ini > default);
//! - `check`: the one place a value is validated and turned into [`Settings`];
//! - [`error`]: [`Error`] and [`Origin`];
//! - [`print`]: [`Loaded`] and `--print-config` rendering (passwords redacted).

mod check;
pub mod error;
pub mod keys;
mod load;
pub mod print;
mod sources;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use pusher_io::couch::redact_url;

pub use error::{Error, Origin};
pub use keys::{
    DEFAULT_AMQP_URI, DEFAULT_COUCH_URL, DEFAULT_HTTP_ADDR, DEFAULT_KAZOO_CONFIG_PATHS,
    DEFAULT_PREFETCH, KEYS, Key,
};
use load::load;
pub use print::Loaded;

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
    /// `PUSHER_EXTRA_BINDINGS`: bindings (exchange, routing key) of the shared queue
    /// beside Kazoo's three, e.g. for Kazoo 5's `endpoint_push_req`.
    pub extra_bindings: Vec<(String, String)>,
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
            .field("extra_bindings", &self.extra_bindings)
            .finish()
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

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

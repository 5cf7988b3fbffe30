//! Where a setting came from ([`Origin`]) and why it cannot be used ([`Error`]): one
//! sentence each, naming the source, never quoting a secret.

use std::fmt;

use pusher_core::kazoo_ini;

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

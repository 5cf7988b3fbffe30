//! Kazoo's own `config.ini` (`/etc/kazoo/core/config.ini`, or `KAZOO_CONFIG`): parsing and
//! the few facts the pusher takes from it.
//!
//! The format is the one Kazoo 4.x reads with `zucchini` and interprets in
//! `kazoo_config`'s `kz_config`:
//!
//! ```ini
//! ; a comment          # also a comment
//! [amqp]
//! uri = "amqp://guest:guest@10.0.0.1:5672"
//! uri = "amqp://guest:guest@10.0.0.2:5672"   ; repeated key: a broker cluster
//!
//! [bigcouch]
//! ip = "10.0.0.5"
//! port = 15984
//! username = "kazoo"
//! password = "secret"
//!
//! [kazoo_apps]
//! host = "kazoo1.example.com"
//! zone = "z100"
//! cookie = change_me
//! ```
//!
//! Sections may repeat. A section with a `host` key applies only to the machine of that
//! name; one with a `zone` key (for `[zone]` sections: `name`) only to that zone; one with
//! neither to everybody. As in `kz_config`, the section for this host wins, else the
//! sections for this zone, else the generic ones ([`KazooIni::local_sections`]).
//!
//! [`KazooIni::parse`] reads the text ([`KazooIni`]); [`KazooIni::pusher_view`] picks out
//! what the pusher needs ([`PusherView`]: the zone, the AMQP URIs, the CouchDB URL).
//! Nothing here does I/O; errors name a line number and never echo the line (it may hold
//! a password).
//!
//! Layout: this file holds the types; `parse` reads the text, `view` picks the local
//! sections and builds the [`PusherView`].

use std::fmt;

mod parse;
mod view;

/// Errors while parsing a `config.ini` or turning it into pusher settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A line that is neither a comment, a `[section]` nor `key = value`.
    #[error("line {line}: expected `[section]`, `key = value` or a `;` comment")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// A `key = value` before the first `[section]`.
    #[error("line {line}: key `{key}` comes before any [section]")]
    KeyOutsideSection {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value that opens a `"` and does not close it, or has text after the closing one.
    #[error("line {line}: the quoted value of `{key}` is not closed properly")]
    BadQuote {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value the pusher cannot use (e.g. `[bigcouch] port = abc`).
    #[error("line {line}: [{section}] {key} is invalid: {why}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// Section name.
        section: String,
        /// Key.
        key: String,
        /// Why (never the value itself when it could be a secret).
        why: String,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One `key = value` line, value unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key as written (trimmed).
    pub key: String,
    /// Value with surrounding quotes and trailing comment removed.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// One `[section]` and its entries, in file order (keys may repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Section name as written between the brackets (trimmed).
    pub name: String,
    /// 1-based line number of the `[section]` header.
    pub line: usize,
    /// Entries in file order.
    pub entries: Vec<Entry>,
}

impl Section {
    /// The first entry for `key` (keys compare ASCII-case-insensitively).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// Every entry for `key`, in file order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.eq_ignore_ascii_case(key))
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(|e| e.value.as_str())
    }
}

/// A parsed `config.ini`: every section in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KazooIni {
    /// Sections in file order; a name may occur several times.
    pub sections: Vec<Section>,
}

/// A value taken from the ini, with where it was found (for messages and `--print-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Section name, e.g. `amqp`.
    pub section: String,
    /// Key, e.g. `uri`.
    pub key: String,
    /// 1-based line number.
    pub line: usize,
}

impl<T> Located<T> {
    fn from_entry(section: &Section, entry: &Entry, value: T) -> Self {
        Self {
            value,
            section: section.name.clone(),
            key: entry.key.clone(),
            line: entry.line,
        }
    }

    /// `[section] key` (no value: it may be secret).
    pub fn place(&self) -> String {
        format!("[{}] {}", self.section, self.key)
    }
}

/// What the pusher takes from a Kazoo `config.ini`.
#[derive(Clone, PartialEq, Eq)]
pub struct PusherView {
    /// Zone of this node: the `zone` of the local `[kazoo_apps]` section (pusher runs in
    /// the `kazoo_apps` node in Kazoo).
    pub zone: Option<Located<String>>,
    /// AMQP URIs in order: the local `[amqp]` sections' `uri` lines, else the `amqp_uri`
    /// lines of this zone's `[zone]` section. The first is the broker; the rest are the
    /// other members of the cluster.
    pub amqp_uris: Vec<Located<String>>,
    /// CouchDB URL built from the local `[bigcouch]` section (`http://user:pass@ip:port`,
    /// credentials percent-encoded); located at its `ip` line (or the section header).
    pub couch_url: Option<Located<String>>,
}

impl fmt::Debug for PusherView {
    // The URLs carry passwords: show where they came from, not what they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PusherView")
            .field("zone", &self.zone.as_ref().map(|z| &z.value))
            .field(
                "amqp_uris",
                &self
                    .amqp_uris
                    .iter()
                    .map(Located::place)
                    .collect::<Vec<_>>(),
            )
            .field("couch_url", &self.couch_url.as_ref().map(Located::place))
            .finish()
    }
}

/// The node section the pusher reads its zone from (`kazoo_apps@host` runs the Erlang pusher).
pub const NODE_SECTION: &str = "kazoo_apps";

#[cfg(test)]
mod tests;

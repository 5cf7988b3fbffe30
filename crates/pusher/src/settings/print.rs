//! `pusherd --print-config`: the effective settings as TOML, each value commented with
//! its origin, passwords in URLs replaced by `***`.

use super::{Origin, Settings};
use pusher_io::couch::redact_url;

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

/// A URL as `--print-config` shows it: as written, unless it carries a password, which is
/// replaced by `***`.
pub(super) fn shown_url(url: &str) -> String {
    let redacted = redact_url(url);
    // `redact_url` also normalises (adds a trailing `/`); keep the original when there is
    // nothing to hide. An unparsable URL is never shown: it could hide a password anywhere.
    if redacted.contains(":***@") || redacted.starts_with('<') {
        redacted
    } else {
        url.to_string()
    }
}

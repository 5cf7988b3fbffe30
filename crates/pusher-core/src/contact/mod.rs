//! SIP `Contact` header parsing and Kazoo's URL decoding.
//!
//! Kamailio forwards the raw `Contact` header of a REGISTER in `reg_success.Contact`
//! (spec §3.5). The pusher reads push-token parameters out of it (spec §5.1 step 2), so
//! this module turns the header into a list of [`Contact`]s, each with its URI and its
//! parameters: the URI's own `;params` first, then the header `;params` after `>`.
//!
//! The parser is lenient where real phones are sloppy (whitespace around `;` and `=`,
//! empty `;;`), strict where guessing would be dangerous (unterminated quotes or `<`),
//! bounded ([`MAX_HEADER_LEN`], [`MAX_CONTACTS`]) and never panics.
//!
//! [`url_decode`] mirrors `kz_http_util:urldecode`, which Kazoo applies to every value
//! it copies into a device's `push` object.
//!
//! Layout: this file holds the types and the entry points; `scan` finds the commas and
//! semicolons that count (outside quotes and `<>`), `parse` reads one contact.

use percent_encoding::percent_decode_str;

mod parse;
mod scan;

use parse::parse_contact;
use scan::split_contacts;

/// Longest `Contact` header [`parse_contacts`] accepts, in bytes.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Most contacts [`parse_contacts`] accepts in one header.
pub const MAX_CONTACTS: usize = 32;

/// How much of the offending input an error message quotes.
const SNIPPET_CHARS: usize = 64;

/// Why a `Contact` header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// The header is empty or only whitespace.
    #[error("empty Contact header")]
    Empty,
    /// The header is longer than [`MAX_HEADER_LEN`] bytes.
    #[error("Contact header is {len} bytes long (limit {MAX_HEADER_LEN})")]
    TooLong {
        /// Length of the header in bytes.
        len: usize,
    },
    /// The header holds more than [`MAX_CONTACTS`] contacts.
    #[error("Contact header has {count} contacts (limit {MAX_CONTACTS})")]
    TooManyContacts {
        /// Number of comma-separated contacts found.
        count: usize,
    },
    /// A `"` is never closed.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A `<` is never closed by `>`.
    #[error("unterminated '<'")]
    UnterminatedAngle,
    /// A character that cannot appear where it does (stray `>`, nested `<`, text after `>`).
    #[error("unexpected {ch:?} at byte {pos}")]
    Unexpected {
        /// The character.
        ch: char,
        /// Its byte offset in the header.
        pos: usize,
    },
    /// Two commas with nothing between them, or a leading/trailing comma.
    #[error("empty contact at byte {pos}")]
    EmptyContact {
        /// Byte offset in the header where the empty contact starts.
        pos: usize,
    },
    /// The display name before `<` is malformed.
    #[error("invalid display name {0:?}")]
    InvalidDisplayName(String),
    /// The URI is empty, has no valid scheme, or contains whitespace.
    #[error("invalid URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI (possibly shortened).
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A parameter is malformed (empty name, text after a quoted value, ...).
    #[error("invalid parameter {param:?}: {reason}")]
    InvalidParam {
        /// The parameter as written (possibly shortened).
        param: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One contact of a `Contact` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The URI as written: for a name-addr (`<...>`) everything between the brackets
    /// (including the URI's own `;params` and `?headers`); for a bare URI the text up to
    /// the first `;`. `*` for the wildcard contact.
    pub uri: String,
    /// URI parameters followed by header parameters, in the order sent.
    pub params: Vec<Param>,
}

/// One `;name[=value]` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter name, case as sent.
    pub name: String,
    /// Parameter value (unquoted if it was a quoted-string); `None` for a flag such as `;ob`.
    pub value: Option<String>,
}

impl Contact {
    /// Value of the first parameter called `name` (case-sensitive) that has a value.
    ///
    /// Flag parameters (no `=`) are skipped, so `;ob` gives `None`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .filter(|p| p.name == name)
            .find_map(|p| p.value.as_deref())
    }

    /// Whether a parameter called `name` is present, with or without a value.
    pub fn has_param(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.name == name)
    }
}

/// Parses a `Contact` header value into its contacts.
///
/// Contacts are separated by commas outside quotes and `<>`. Each one is `*`, a
/// name-addr (`["Display"|Display] <uri>;params`) or a bare URI (`sip:u@h;params`).
pub fn parse_contacts(header: &str) -> Result<Vec<Contact>, ContactError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(ContactError::TooLong { len: header.len() });
    }
    if trim(header).is_empty() {
        return Err(ContactError::Empty);
    }
    let segments = split_contacts(header)?;
    if segments.len() > MAX_CONTACTS {
        return Err(ContactError::TooManyContacts {
            count: segments.len(),
        });
    }
    segments
        .into_iter()
        .map(|(offset, seg)| parse_contact(seg, offset))
        .collect()
}

/// Kazoo's `kz_http_util:urldecode`: `+` becomes a space and `%HH` the byte `HH`.
///
/// An invalid or incomplete `%` sequence is kept as is (Erlang crashes there). If the
/// decoded bytes are not valid UTF-8, the input is returned unchanged.
pub fn url_decode(s: &str) -> String {
    // `+` first: a `%2B` must still decode to a literal `+`.
    let plus_decoded = s.replace('+', " ");
    match percent_decode_str(&plus_decoded).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => s.to_string(),
    }
}

/// SIP linear whitespace (CRLF folding included).
fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_lws)
}

/// Shortens user input quoted in error messages.
fn snippet(s: &str) -> String {
    match s.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;

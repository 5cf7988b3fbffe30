//! [`KazooIni::parse`]: the text of a `config.ini` → sections and entries.

use super::{Entry, Error, KazooIni, Result, Section};

impl KazooIni {
    /// Parses the text of a `config.ini`.
    ///
    /// - `[name]` opens a section; names and keys are trimmed.
    /// - `key = value`; the value is trimmed; a value in `"…"` is taken verbatim between the
    ///   quotes (no escapes, as Kazoo only strips the quotes), and may be followed only by
    ///   a comment; an unquoted value ends at ` ;` or ` #` (a comment after whitespace).
    /// - Lines starting with `;` or `#` and blank lines are ignored.
    pub fn parse(text: &str) -> Result<Self> {
        let mut sections: Vec<Section> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            // A UTF-8 byte-order mark on the first line is not part of the text.
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let Some(end) = rest.find(']') else {
                    return Err(Error::Syntax { line });
                };
                let name = rest[..end].trim();
                let after = rest[end + 1..].trim();
                if name.is_empty() || !(after.is_empty() || is_comment(after)) {
                    return Err(Error::Syntax { line });
                }
                sections.push(Section {
                    name: name.to_string(),
                    line,
                    entries: Vec::new(),
                });
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                return Err(Error::Syntax { line });
            };
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(Error::Syntax { line });
            }
            let value = parse_value(value.trim()).ok_or_else(|| Error::BadQuote {
                line,
                key: key.to_string(),
            })?;
            let Some(section) = sections.last_mut() else {
                return Err(Error::KeyOutsideSection {
                    line,
                    key: key.to_string(),
                });
            };
            section.entries.push(Entry {
                key: key.to_string(),
                value,
                line,
            });
        }
        Ok(Self { sections })
    }
}
fn is_comment(s: &str) -> bool {
    s.starts_with(';') || s.starts_with('#')
}

/// The value part after `=`, already trimmed; `None` for a broken quote.
fn parse_value(v: &str) -> Option<String> {
    if let Some(rest) = v.strip_prefix('"') {
        let end = rest.find('"')?;
        let after = rest[end + 1..].trim();
        return (after.is_empty() || is_comment(after)).then(|| rest[..end].to_string());
    }
    // Unquoted: a comment starts at `;` or `#` after whitespace (a `#` inside a URL stays).
    let mut cut = v.len();
    let bytes = v.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if (*b == b';' || *b == b'#') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            cut = i;
            break;
        }
    }
    Some(v[..cut].trim_end().to_string())
}

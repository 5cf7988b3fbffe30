//! Quote- and bracket-aware scanning: where a header splits into contacts and a contact
//! into parameters.

use super::{ContactError, is_lws, trim};

/// Where a left-to-right scan stands relative to quoted-strings (with `\` escapes).
#[derive(Default)]
struct Quotes {
    open: bool,
    escaped: bool,
}

impl Quotes {
    /// Feeds the next character; whether it stands outside every quoted-string (the
    /// quotes themselves count as inside).
    fn outside(&mut self, c: char) -> bool {
        if self.open {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.open = false;
            }
            false
        } else if c == '"' {
            self.open = true;
            false
        } else {
            true
        }
    }
}

/// Byte offset of the first `target` in `s` outside quoted strings.
pub(super) fn find_unquoted(s: &str, target: impl Fn(char) -> bool) -> Option<usize> {
    let mut quotes = Quotes::default();
    s.char_indices()
        .find(|&(_, c)| quotes.outside(c) && target(c))
        .map(|(i, _)| i)
}

/// Splits `s` on `sep` outside quoted strings.
pub(super) fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = find_unquoted(rest, |c| c == sep) {
        parts.push(&rest[..i]);
        rest = &rest[i + sep.len_utf8()..];
    }
    parts.push(rest);
    parts
}

/// Splits the header at commas outside quotes and `<>`, checking that quotes and
/// brackets balance. Returns each trimmed, non-empty contact with its byte offset.
pub(super) fn split_contacts(header: &str) -> Result<Vec<(usize, &str)>, ContactError> {
    let mut segments = Vec::new();
    let mut quotes = Quotes::default();
    let mut in_angle = false;
    let mut start = 0;
    for (i, c) in header.char_indices() {
        if !quotes.outside(c) {
            continue;
        }
        match c {
            '<' if in_angle => return Err(ContactError::Unexpected { ch: c, pos: i }),
            '<' => in_angle = true,
            '>' if in_angle => in_angle = false,
            '>' => return Err(ContactError::Unexpected { ch: c, pos: i }),
            ',' if !in_angle => {
                segments.push(trimmed_segment(header, start, i)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quotes.open {
        return Err(ContactError::UnterminatedQuote);
    }
    if in_angle {
        return Err(ContactError::UnterminatedAngle);
    }
    segments.push(trimmed_segment(header, start, header.len())?);
    Ok(segments)
}

fn trimmed_segment(header: &str, start: usize, end: usize) -> Result<(usize, &str), ContactError> {
    let raw = &header[start..end];
    let seg = trim(raw);
    if seg.is_empty() {
        return Err(ContactError::EmptyContact { pos: start });
    }
    let leading = raw.len() - raw.trim_start_matches(is_lws).len();
    Ok((start + leading, seg))
}

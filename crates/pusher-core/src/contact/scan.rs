//! Quote- and bracket-aware scanning: where a header splits into contacts and a contact
//! into parameters.

use super::{ContactError, is_lws, trim};

/// Byte offset of the first `target` in `s` outside quoted strings.
pub(super) fn find_unquoted(s: &str, target: impl Fn(char) -> bool) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if target(c) {
            return Some(i);
        }
    }
    None
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
    let mut in_quote = false;
    let mut escaped = false;
    let mut in_angle = false;
    let mut start = 0;
    for (i, c) in header.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
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
    if in_quote {
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

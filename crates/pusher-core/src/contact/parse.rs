//! One contact: `*`, a name-addr (`["Display"] <uri>;params`) or a bare URI, with its
//! parameters.

use super::scan::{find_unquoted, split_unquoted};
use super::{Contact, ContactError, Param, is_lws, snippet, trim};

/// Parses one trimmed contact starting at byte `offset` of the header.
pub(super) fn parse_contact(seg: &str, offset: usize) -> Result<Contact, ContactError> {
    if seg == "*" {
        return Ok(Contact {
            uri: "*".to_string(),
            params: Vec::new(),
        });
    }
    match find_unquoted(seg, |c| c == '<') {
        Some(lt) => {
            check_display_name(trim(&seg[..lt]))?;
            let after_lt = &seg[lt + 1..];
            let gt =
                find_unquoted(after_lt, |c| c == '>').ok_or(ContactError::UnterminatedAngle)?;
            let (uri, mut params) = parse_bracketed_uri(&after_lt[..gt])?;
            let tail_start = lt + 1 + gt + 1;
            let tail = &seg[tail_start..];
            let header_params = trim(tail);
            if !header_params.is_empty() {
                let Some(list) = header_params.strip_prefix(';') else {
                    let skipped = tail.len() - tail.trim_start_matches(is_lws).len();
                    let ch = header_params.chars().next().unwrap_or(' ');
                    return Err(ContactError::Unexpected {
                        ch,
                        pos: offset + tail_start + skipped,
                    });
                };
                params.extend(parse_params(list)?);
            }
            Ok(Contact { uri, params })
        }
        None => {
            // A bare addr-spec: RFC 3261 §20.10 says its `;params` are header params
            // (a URI with `;` must be bracketed); we simply list them all.
            let (uri, list) = match find_unquoted(seg, |c| c == ';') {
                Some(semi) => (trim(&seg[..semi]), Some(&seg[semi + 1..])),
                None => (seg, None),
            };
            check_uri_base(uri)?;
            let params = match list {
                Some(list) => parse_params(list)?,
                None => Vec::new(),
            };
            Ok(Contact {
                uri: uri.to_string(),
                params,
            })
        }
    }
}

/// Accepts an empty display name, one quoted-string, or unquoted words.
fn check_display_name(display: &str) -> Result<(), ContactError> {
    let invalid = || ContactError::InvalidDisplayName(snippet(display));
    if display.starts_with('"') {
        let (_, rest) = parse_quoted(display)?;
        if !trim(rest).is_empty() {
            return Err(invalid());
        }
    } else if display.contains(['"', ';', '\\']) {
        return Err(invalid());
    }
    Ok(())
}

/// Parses the text between `<` and `>`: returns the URI and its `;params`, ignoring
/// any `?headers`.
fn parse_bracketed_uri(inner: &str) -> Result<(String, Vec<Param>), ContactError> {
    let inner = trim(inner);
    let scheme_end = scheme_end(inner)?;
    // The user part may itself contain `;` (`sip:alice;day=tue@host`); the URI's
    // params only start after the host, which follows the first `@` when there is one.
    let host_start = find_unquoted(inner, |c| c == '@').map_or(scheme_end + 1, |at| at + 1);
    let after_host = &inner[host_start..];
    let base_end =
        find_unquoted(after_host, |c| c == ';' || c == '?').map_or(inner.len(), |i| host_start + i);
    check_uri_base(trim(&inner[..base_end]))?;
    let tail = &inner[base_end..];
    let params = match tail.strip_prefix(';') {
        Some(list) => {
            let list_end = find_unquoted(list, |c| c == '?').unwrap_or(list.len());
            parse_params(&list[..list_end])?
        }
        None => Vec::new(),
    };
    Ok((inner.to_string(), params))
}

/// Byte offset of the `:` ending a valid scheme (`ALPHA *(ALPHA / DIGIT / + / - / .)`).
fn scheme_end(uri: &str) -> Result<usize, ContactError> {
    let invalid = |reason| ContactError::InvalidUri {
        uri: snippet(uri),
        reason,
    };
    if uri.is_empty() {
        return Err(invalid("empty"));
    }
    let colon = uri.find(':').ok_or_else(|| invalid("no scheme"))?;
    let scheme = &uri[..colon];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return Err(invalid("invalid scheme"));
    }
    Ok(colon)
}

/// Checks the URI without its params: a valid scheme, something after it, no blanks.
fn check_uri_base(base: &str) -> Result<(), ContactError> {
    let colon = scheme_end(base)?;
    let invalid = |reason| ContactError::InvalidUri {
        uri: snippet(base),
        reason,
    };
    if base.len() == colon + 1 {
        return Err(invalid("nothing after the scheme"));
    }
    if base.contains(is_lws) {
        return Err(invalid("contains whitespace"));
    }
    Ok(())
}

/// Parses `a=1;b;c="x;y"` (the text after the first `;`). Empty entries are skipped.
fn parse_params(list: &str) -> Result<Vec<Param>, ContactError> {
    split_unquoted(list, ';')
        .into_iter()
        .map(trim)
        .filter(|p| !p.is_empty())
        .map(parse_param)
        .collect()
}

fn parse_param(param: &str) -> Result<Param, ContactError> {
    let invalid = |reason| ContactError::InvalidParam {
        param: snippet(param),
        reason,
    };
    let (name, value) = match find_unquoted(param, |c| c == '=') {
        Some(eq) => (trim(&param[..eq]), Some(trim(&param[eq + 1..]))),
        None => (param, None),
    };
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if name.contains(|c: char| is_lws(c) || c == '"') {
        return Err(invalid("invalid name"));
    }
    let value = match value {
        Some(v) if v.starts_with('"') => {
            let (unquoted, rest) = parse_quoted(v)?;
            if !trim(rest).is_empty() {
                return Err(invalid("text after the quoted value"));
            }
            Some(unquoted)
        }
        Some(v) => Some(v.to_string()),
        None => None,
    };
    Ok(Param {
        name: name.to_string(),
        value,
    })
}

/// Parses a quoted-string at the start of `s` (which starts with `"`), resolving `\`
/// escapes. Returns the content and the text after the closing quote.
fn parse_quoted(s: &str) -> Result<(String, &str), ContactError> {
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Ok((out, &s[i + 1..]));
        } else {
            out.push(c);
        }
    }
    Err(ContactError::UnterminatedQuote)
}

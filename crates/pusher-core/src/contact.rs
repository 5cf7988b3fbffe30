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

use percent_encoding::percent_decode_str;

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

/// Byte offset of the first `target` in `s` outside quoted strings.
fn find_unquoted(s: &str, target: impl Fn(char) -> bool) -> Option<usize> {
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
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
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
fn split_contacts(header: &str) -> Result<Vec<(usize, &str)>, ContactError> {
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

/// Parses one trimmed contact starting at byte `offset` of the header.
fn parse_contact(seg: &str, offset: usize) -> Result<Contact, ContactError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = include_str!("../../../tests/fixtures/kamailio-captured.jsonl");

    fn fixture_contacts() -> Vec<String> {
        FIXTURES
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["body"]["Contact"].as_str().map(str::to_string)
            })
            .collect()
    }

    fn one(header: &str) -> Contact {
        let mut contacts = parse_contacts(header).unwrap();
        assert_eq!(contacts.len(), 1, "{header}");
        contacts.remove(0)
    }

    fn p(name: &str, value: Option<&str>) -> Param {
        Param {
            name: name.to_string(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn fixture_token_contact() {
        let contacts = fixture_contacts();
        assert_eq!(contacts.len(), 2);
        let c = one(&contacts[0]);
        assert_eq!(
            c.uri,
            "sip:2001@127.0.0.1:5074;transport=udp;app-id=org.myorg.myapp;pn-tok=abc;pn-type=apple"
        );
        assert_eq!(
            c.params,
            vec![
                p("transport", Some("udp")),
                p("app-id", Some("org.myorg.myapp")),
                p("pn-tok", Some("abc")),
                p("pn-type", Some("apple")),
                p(
                    "+sip.instance",
                    Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
                ),
            ]
        );
        assert_eq!(c.param("pn-tok"), Some("abc"));
    }

    #[test]
    fn fixture_rfc8599_contact() {
        let c = one(&fixture_contacts()[1]);
        assert_eq!(c.param("pn-provider"), Some("apns"));
        assert_eq!(c.param("pn-param"), Some("ABCD1234.org.myorg.myapp.voip"));
        assert_eq!(
            c.param("pn-prid"),
            Some("00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0")
        );
        assert_eq!(c.param("expires"), Some("600"));
        assert_eq!(c.params.last(), Some(&p("expires", Some("600"))));
    }

    #[test]
    fn quoted_display_name_with_uri_and_header_params() {
        let c = one(r#""Alice Smith" <sip:a@b;x=1>;y=2"#);
        assert_eq!(c.uri, "sip:a@b;x=1");
        assert_eq!(c.params, vec![p("x", Some("1")), p("y", Some("2"))]);
    }

    #[test]
    fn unquoted_display_name() {
        let c = one("Bob Jones <sip:bob@example.com>;expires=60");
        assert_eq!(c.uri, "sip:bob@example.com");
        assert_eq!(c.param("expires"), Some("60"));
    }

    #[test]
    fn display_name_with_escaped_quote() {
        let c = one(r#""Bob \"the\" <Builder>" <sip:bob@h>"#);
        assert_eq!(c.uri, "sip:bob@h");
        assert!(c.params.is_empty());
    }

    #[test]
    fn no_space_between_display_name_and_uri() {
        assert_eq!(one(r#""Bob"<sip:bob@h>"#).uri, "sip:bob@h");
    }

    #[test]
    fn bare_uri_params_all_listed() {
        let c = one("sip:u@h;transport=tcp;ob");
        assert_eq!(c.uri, "sip:u@h");
        assert_eq!(c.params, vec![p("transport", Some("tcp")), p("ob", None)]);
    }

    #[test]
    fn bare_uri_without_params() {
        let c = one("sips:u@example.com:5061");
        assert_eq!(c.uri, "sips:u@example.com:5061");
        assert!(c.params.is_empty());
    }

    #[test]
    fn ipv6_hosts() {
        let c = one("<sip:u@[2001:db8::1]:5060;transport=tcp>;reg-id=1");
        assert_eq!(c.uri, "sip:u@[2001:db8::1]:5060;transport=tcp");
        assert_eq!(c.param("transport"), Some("tcp"));
        assert_eq!(c.param("reg-id"), Some("1"));

        let c = one("sip:[::1]:5060;lr");
        assert_eq!(c.uri, "sip:[::1]:5060");
        assert_eq!(c.params, vec![p("lr", None)]);

        let c = one("<sip:[::1]>");
        assert_eq!(c.uri, "sip:[::1]");
    }

    #[test]
    fn several_contacts_comma_in_quoted_display_name() {
        let contacts =
            parse_contacts(r#""Smith, John" <sip:j@h;a=1>, <sip:k@h>;b=2 , sip:l@h;c"#).unwrap();
        assert_eq!(contacts.len(), 3);
        assert_eq!(contacts[0].uri, "sip:j@h;a=1");
        assert_eq!(contacts[0].param("a"), Some("1"));
        assert_eq!(contacts[1].uri, "sip:k@h");
        assert_eq!(contacts[1].param("b"), Some("2"));
        assert_eq!(contacts[2].uri, "sip:l@h");
        assert!(contacts[2].has_param("c"));
    }

    #[test]
    fn quoted_values_with_separators() {
        let c = one(r#"<sip:u@h>;note="a;b,c<d>e=f";x=1"#);
        assert_eq!(c.param("note"), Some("a;b,c<d>e=f"));
        assert_eq!(c.param("x"), Some("1"));

        let c = one(r#"<sip:u@h>;q="say \"hi\"""#);
        assert_eq!(c.param("q"), Some(r#"say "hi""#));

        // Quoted values inside the URI are unquoted too, and may hide `;` and `>`.
        let c = one(r#"<sip:u@h;k="1;2>3";z>"#);
        assert_eq!(c.params, vec![p("k", Some("1;2>3")), p("z", None)]);
    }

    #[test]
    fn flag_params() {
        let c = one("<sip:u@h;ob;lr>;+sip.ice;x=");
        assert_eq!(
            c.params,
            vec![
                p("ob", None),
                p("lr", None),
                p("+sip.ice", None),
                p("x", Some(""))
            ]
        );
        assert_eq!(c.param("ob"), None);
        assert!(c.has_param("ob"));
        assert_eq!(c.param("x"), Some(""));
        assert!(!c.has_param("missing"));
    }

    #[test]
    fn param_returns_first_valued_occurrence_case_sensitively() {
        let c = one("<sip:u@h;tok;tok=1>;tok=2;TOK=3");
        assert_eq!(c.param("tok"), Some("1"));
        assert_eq!(c.param("TOK"), Some("3"));
        assert_eq!(c.param("Tok"), None);
    }

    #[test]
    fn whitespace_around_separators() {
        let c = one(" <sip:u@h ; transport = tcp> ;  expires = 60 ; ob ");
        assert_eq!(c.uri, "sip:u@h ; transport = tcp");
        assert_eq!(
            c.params,
            vec![
                p("transport", Some("tcp")),
                p("expires", Some("60")),
                p("ob", None)
            ]
        );
        // CRLF folding and empty entries are tolerated.
        let c = one("<sip:u@h>;a=1;;\r\n\t;b=2;");
        assert_eq!(c.params, vec![p("a", Some("1")), p("b", Some("2"))]);
    }

    #[test]
    fn uri_headers_are_not_params() {
        let c = one("<sip:u@h;transport=tcp?subject=hi;x=y&a=b>;expires=5");
        assert_eq!(c.uri, "sip:u@h;transport=tcp?subject=hi;x=y&a=b");
        assert_eq!(
            c.params,
            vec![p("transport", Some("tcp")), p("expires", Some("5"))]
        );
        let c = one("<sip:u@h?a=b>");
        assert!(c.params.is_empty());
    }

    #[test]
    fn user_part_with_semicolon_is_part_of_the_uri() {
        let c = one("<sip:+1555;phone-context=example.com@h;user=phone>");
        assert_eq!(c.params, vec![p("user", Some("phone"))]);
    }

    #[test]
    fn star_contact() {
        let c = one("*");
        assert_eq!(c.uri, "*");
        assert!(c.params.is_empty());
        assert_eq!(one("  *  ").uri, "*");
    }

    #[test]
    fn garbage_is_an_error() {
        use ContactError as E;
        assert_eq!(parse_contacts("<sip:a"), Err(E::UnterminatedAngle));
        assert_eq!(
            parse_contacts("\"unterminated <sip:a@b>"),
            Err(E::UnterminatedQuote)
        );
        assert_eq!(parse_contacts(""), Err(E::Empty));
        assert_eq!(parse_contacts(" \t\r\n "), Err(E::Empty));
        assert_eq!(
            parse_contacts("sip:a@b>"),
            Err(E::Unexpected { ch: '>', pos: 7 })
        );
        assert_eq!(
            parse_contacts("<sip:a<b>>"),
            Err(E::Unexpected { ch: '<', pos: 6 })
        );
        assert_eq!(
            parse_contacts("<sip:a@b> junk"),
            Err(E::Unexpected { ch: 'j', pos: 10 })
        );
        assert_eq!(
            parse_contacts("<sip:a@b>, , <sip:c@d>"),
            Err(E::EmptyContact { pos: 10 })
        );
        assert!(matches!(
            parse_contacts("<sip:a@b>,"),
            Err(E::EmptyContact { .. })
        ));
        assert!(matches!(
            parse_contacts("<>"),
            Err(E::InvalidUri {
                reason: "empty",
                ..
            })
        ));
        assert!(matches!(parse_contacts("hello"), Err(E::InvalidUri { .. })));
        assert!(matches!(
            parse_contacts("Bob sip:a@b"),
            Err(E::InvalidUri { .. })
        ));
        assert!(matches!(
            parse_contacts("<sip:>"),
            Err(E::InvalidUri { .. })
        ));
        assert!(matches!(
            parse_contacts("<1sip:a@b>"),
            Err(E::InvalidUri { .. })
        ));
        assert!(matches!(
            parse_contacts("<sip:a@b>;=x"),
            Err(E::InvalidParam { .. })
        ));
        assert!(matches!(
            parse_contacts(r#"<sip:a@b>;x="q"junk"#),
            Err(E::InvalidParam { .. })
        ));
        assert!(matches!(
            parse_contacts(r#""Bob" Jr <sip:a@b>"#),
            Err(E::InvalidDisplayName(_))
        ));
        assert!(matches!(
            parse_contacts(r#"<sip:a@b>;x="\"#),
            Err(E::UnterminatedQuote)
        ));
    }

    #[test]
    fn size_limits() {
        let long = format!("<sip:u@h>;x={}", "a".repeat(10 * 1024));
        assert_eq!(
            parse_contacts(&long),
            Err(ContactError::TooLong { len: long.len() })
        );
        let at_limit = format!("<sip:u@h>;x={}", "a".repeat(MAX_HEADER_LEN - 12));
        assert_eq!(at_limit.len(), MAX_HEADER_LEN);
        assert_eq!(
            parse_contacts(&at_limit).unwrap()[0]
                .param("x")
                .map(str::len),
            Some(MAX_HEADER_LEN - 12)
        );

        let many = vec!["<sip:u@h>"; MAX_CONTACTS + 1].join(",");
        assert_eq!(
            parse_contacts(&many),
            Err(ContactError::TooManyContacts {
                count: MAX_CONTACTS + 1
            })
        );
        let max = vec!["<sip:u@h>"; MAX_CONTACTS].join(",");
        assert_eq!(parse_contacts(&max).unwrap().len(), MAX_CONTACTS);
    }

    #[test]
    fn error_messages_are_short() {
        let err = parse_contacts(&format!("<{}>", "x".repeat(1000))).unwrap_err();
        assert!(err.to_string().len() < 150, "{err}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        let inputs = [
            "\"",
            "<",
            ">",
            ",",
            ";",
            "=",
            "\\",
            "<\"",
            "\"<",
            "<sip:a@b>;",
            "<sip:a@b>;;",
            "sip:a@b;\"",
            "sip:é@ü;ä=ö",
            "<sip:a@b>;x=\"é\\",
            "\u{0}",
            "<sip:a@b>\u{0}",
            "<sip:@>",
            "sip:a@b,,",
            "*,*",
            "<*>",
        ];
        for input in inputs {
            let _ = parse_contacts(input);
        }
        let c = one("sip:é@ü;ä=ö");
        assert_eq!(c.param("ä"), Some("ö"));
    }

    /// Cheap deterministic fuzzing: random strings over the characters that matter.
    #[test]
    fn random_input_never_panics() {
        const ALPHABET: [char; 22] = [
            '<', '>', '"', '\\', ';', ',', '=', '@', ':', '?', ' ', 's', 'i', 'p', 'é', '€', '*',
            '\t', '[', ']', '%', '+',
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = next() % 40;
            let mut s: String = (0..len)
                .map(|_| ALPHABET[next() % ALPHABET.len()])
                .collect();
            if next() % 2 == 0 {
                s = format!("<sip:{s}");
            }
            if let Ok(contacts) = parse_contacts(&s) {
                parsed += 1;
                assert!(!contacts.is_empty() && contacts.len() <= MAX_CONTACTS);
                for c in &contacts {
                    assert!(!c.uri.is_empty());
                    assert!(c.params.iter().all(|p| !p.name.is_empty()));
                }
            }
            let _ = url_decode(&s);
        }
        assert!(parsed > 0, "the generator should hit some valid headers");
    }

    #[test]
    fn url_decode_cases() {
        assert_eq!(url_decode("a%2Fb"), "a/b");
        assert_eq!(url_decode("a%2fb"), "a/b");
        assert_eq!(url_decode("a+b"), "a b");
        assert_eq!(url_decode("a%2Bb"), "a+b");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("abc%"), "abc%");
        assert_eq!(url_decode("abc%4"), "abc%4");
        assert_eq!(url_decode("caf%C3%A9"), "café");
        assert_eq!(url_decode("%FF+x"), "%FF+x");
        assert_eq!(url_decode(""), "");
        assert_eq!(url_decode("org.myorg.myapp"), "org.myorg.myapp");
        assert_eq!(url_decode("sip:127.0.0.1:5060"), "sip:127.0.0.1:5060");
    }
}

//! `apple.host` → the base URL the HTTP client uses (TLS only).

use super::{ApnsBuildError, DEFAULT_HOST, bounded};

/// Base URL (`https://host:port`, no trailing slash) for `apple.host`.
///
/// Accepts nothing (→ `https://api.push.apple.com:443`), `host`, `host:port`,
/// `[v6]:port` and `https://host[:port][/]`. `http://`, other schemes, paths, user info
/// and malformed hosts or ports are errors: TLS is mandatory.
pub fn base_url(host: Option<&str>) -> Result<String, ApnsBuildError> {
    let raw = host.map(str::trim).unwrap_or("");
    if raw.is_empty() {
        return Ok(format!("https://{DEFAULT_HOST}:443"));
    }
    let bad = |reason| ApnsBuildError::BadHost {
        host: bounded(raw),
        reason,
    };
    let authority = match raw.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
            rest.strip_suffix('/').unwrap_or(rest)
        }
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => {
            return Err(bad("plain http is not allowed; APNs needs TLS"));
        }
        Some(_) => return Err(bad("the scheme must be https")),
        None => raw,
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains(['/', '?', '#', '@']) || authority.contains(char::is_whitespace) {
        return Err(bad("only a host and an optional port are allowed"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(bad("an IPv6 address must be written in brackets"));
        }
        if !valid_host_name(name) {
            return Err(bad("invalid host name"));
        }
        (name.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => 443,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(bad("invalid port")),
            }
        }
        Some(_) => return Err(bad("invalid port")),
    };
    Ok(format!("https://{host}:{port}"))
}

/// DNS name (or IPv4 address): dot-separated labels of `[A-Za-z0-9_-]`, 1–63 bytes each,
/// not starting or ending with `-`; at most 253 bytes.
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

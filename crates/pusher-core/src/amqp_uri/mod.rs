//! Broker URIs as Kazoo writes them (`amqp://` and `amqps://`), with the TLS options of
//! Erlang's `amqp_uri` as query parameters.
//!
//! Kazoo's `config.ini` `[amqp] uri`, `PUSHER_AMQP_URI` and the TOML `amqp_uri` all hold
//! one URI in the form RabbitMQ's Erlang client reads:
//!
//! ```text
//! amqps://user:pass@rabbit.example:5671/%2f?cacertfile=/etc/kazoo/ca.pem
//!     &certfile=/etc/kazoo/client.pem&keyfile=/etc/kazoo/client.key
//!     &server_name_indication=rabbit.example&verify=verify_peer&heartbeat=10
//! ```
//!
//! [`AmqpUri::parse`] splits such a URI into what the AMQP client takes (scheme,
//! credentials, host, port, vhost and the connection parameters `heartbeat`,
//! `connection_timeout`, `channel_max`, `frame_max`, `auth_mechanism`) and the
//! [`TlsOptions`] (`cacertfile`, `certfile` + `keyfile`, `server_name_indication`,
//! `verify`). It checks the options without touching the files: reading them and building
//! the TLS client is the adapter's job (`pusher_io::amqp`).
//!
//! Rules, where ours are stricter than Erlang's:
//! - certificate verification stays on unless the operator writes `verify=verify_none`
//!   ([`Verify`]); without `cacertfile` the system roots are used;
//! - an unknown parameter, a parameter given twice, a TLS parameter on an `amqp://` URI,
//!   or `certfile` without `keyfile` (or the reverse) is an error naming it, so a typo can
//!   never silently turn verification or the client certificate off;
//! - `fail_if_no_peer_cert` (a server option that Kazoo examples copy into URIs) is
//!   accepted and has no effect, as in the Erlang client.
//!
//! The password never leaves this module in readable form except through
//! [`AmqpUri::client_uri`]: `Debug` and `Display` show the [redacted](AmqpUri::redacted)
//! URI.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::secret::Secret;

#[cfg(test)]
mod tests;

/// Default port of `amqp://`.
pub const AMQP_PORT: u16 = 5672;
/// Default port of `amqps://`.
pub const AMQPS_PORT: u16 = 5671;

/// Connection parameters passed to the AMQP client as they are (Erlang `amqp_uri` names).
pub const CONNECTION_PARAMS: &[&str] = &[
    "heartbeat",
    "connection_timeout",
    "channel_max",
    "frame_max",
    "auth_mechanism",
];

/// TLS parameters read from the query of an `amqps://` URI.
pub const TLS_PARAMS: &[&str] = &[
    "cacertfile",
    "certfile",
    "keyfile",
    "server_name_indication",
    "verify",
    "fail_if_no_peer_cert",
];

/// Why a broker URI cannot be used. The messages never quote the URI (it may hold a
/// password); they name the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither `amqp://` nor `amqps://`.
    #[error("must start with amqp:// or amqps://")]
    Scheme,
    /// A URI that cannot be split into its parts.
    #[error("malformed URI: {0}")]
    Malformed(String),
    /// Query parameters we do not know.
    #[error(
        "unknown parameter{} {} (known: {}, and for amqps:// {})",
        plural(.0.len()),
        list(.0),
        CONNECTION_PARAMS.join(", "),
        TLS_PARAMS.join(", ")
    )]
    UnknownParameters(Vec<String>),
    /// A parameter given twice.
    #[error("parameter `{0}` is given more than once")]
    Repeated(String),
    /// TLS parameters on a plain `amqp://` URI.
    #[error(
        "TLS parameter{} {} need{} an amqps:// URI",
        plural(.0.len()),
        list(.0),
        if .0.len() == 1 { "s" } else { "" }
    )]
    TlsOnPlain(Vec<String>),
    /// `certfile` without `keyfile`, or the reverse.
    #[error("`certfile` and `keyfile` go together (mutual TLS needs both)")]
    HalfClientCert,
    /// A parameter with a value we cannot use.
    #[error("parameter `{param}`: {why}")]
    BadValue {
        /// Parameter name.
        param: String,
        /// What is wrong with it (never the value of a secret).
        why: String,
    },
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `amqp` or `amqps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP.
    Amqp,
    /// TLS.
    Amqps,
}

impl Scheme {
    /// `amqp` or `amqps`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amqp => "amqp",
            Self::Amqps => "amqps",
        }
    }
}

/// Whether the broker's certificate is checked (`verify=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// `verify_peer` (the default here): chain to a trusted root, and the name.
    Peer,
    /// `verify_none`: anything is accepted; the adapter warns at every connect.
    None,
}

/// The name sent as SNI and checked against the broker's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// The host of the URI (no `server_name_indication`).
    UriHost,
    /// `server_name_indication=<name>`: sent as SNI and checked instead of the host.
    Name(String),
    /// `server_name_indication=disable`: no SNI; the certificate is checked against the
    /// host of the URI.
    Disabled,
}

/// A client certificate for mutual TLS (`certfile` + `keyfile`, PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// `certfile`: PEM certificate chain, leaf first.
    pub certfile: String,
    /// `keyfile`: PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub keyfile: String,
}

/// The TLS options of an `amqps://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// `cacertfile`: PEM roots that replace the system roots.
    pub cacertfile: Option<String>,
    /// `certfile` + `keyfile`.
    pub client_cert: Option<ClientCert>,
    /// `server_name_indication`.
    pub server_name: ServerName,
    /// `verify`.
    pub verify: Verify,
}

impl TlsOptions {
    /// The name to send as SNI (`None`: no SNI) and to check the certificate against,
    /// for a broker at `host`.
    pub fn names<'a>(&'a self, host: &'a str) -> (Option<&'a str>, &'a str) {
        match &self.server_name {
            ServerName::UriHost => (Some(host), host),
            ServerName::Name(n) => (Some(n), n),
            ServerName::Disabled => (None, host),
        }
    }
}

/// A checked broker URI.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUri {
    scheme: Scheme,
    host: String,
    port: u16,
    tls: Option<TlsOptions>,
    client_uri: Secret<String>,
    redacted: String,
}

impl AmqpUri {
    /// Parses and checks `uri` (module docs: the rules).
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let uri = uri.trim();
        let (scheme, rest) = split_scheme(uri).ok_or(Error::Scheme)?;
        if rest.contains('#') {
            return Err(Error::Malformed("a fragment (`#…`) is not allowed".into()));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        let port = port.unwrap_or(match scheme {
            Scheme::Amqp => AMQP_PORT,
            Scheme::Amqps => AMQPS_PORT,
        });
        if path.len() > 1 && path[1..].contains('/') {
            return Err(Error::Malformed(
                "the vhost must be one path segment (write `/` as %2f)".into(),
            ));
        }

        let params = parse_query(query.unwrap_or(""))?;
        let unknown: Vec<String> = params
            .iter()
            .map(|(k, _)| k)
            .filter(|k| {
                !CONNECTION_PARAMS.contains(&k.as_str()) && !TLS_PARAMS.contains(&k.as_str())
            })
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(Error::UnknownParameters(unknown));
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        for name in ["heartbeat", "channel_max"] {
            check_number(name, get(name), u64::from(u16::MAX))?;
        }
        check_number("frame_max", get("frame_max"), u64::from(u32::MAX))?;
        check_number("connection_timeout", get("connection_timeout"), u64::MAX)?;

        let tls_given: Vec<String> = params
            .iter()
            .map(|(k, _)| k)
            .filter(|k| TLS_PARAMS.contains(&k.as_str()))
            .cloned()
            .collect();
        let tls = match scheme {
            Scheme::Amqp if !tls_given.is_empty() => return Err(Error::TlsOnPlain(tls_given)),
            Scheme::Amqp => None,
            Scheme::Amqps => Some(tls_options(&get)?),
        };

        // What the AMQP client gets: the URI without the TLS parameters (the client
        // library reads only the connection parameters, in their raw form).
        let kept: Vec<&str> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split_once('=').map_or(*p, |(k, _)| k);
                !TLS_PARAMS.contains(&decode(name).as_str())
            })
            .collect();
        let query_part = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let client_uri = format!("{}://{authority}{path}{query_part}", scheme.as_str());
        let shown_user = userinfo.map(|u| match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{u}@"),
        });
        let redacted = format!(
            "{}://{}{hostport}{path}{}",
            scheme.as_str(),
            shown_user.unwrap_or_default(),
            query.map(|q| format!("?{q}")).unwrap_or_default()
        );
        Ok(Self {
            scheme,
            host,
            port,
            tls,
            client_uri: Secret::new(client_uri),
            redacted,
        })
    }

    /// `amqp` or `amqps`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (the scheme's default when the URI has none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS options; `Some` exactly for `amqps://`.
    pub fn tls(&self) -> Option<&TlsOptions> {
        self.tls.as_ref()
    }

    /// The URI for the AMQP client: credentials, host, port, vhost and connection
    /// parameters, without the TLS parameters. Holds the password.
    pub fn client_uri(&self) -> &Secret<String> {
        &self.client_uri
    }

    /// The URI with the password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Display for AmqpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for AmqpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpUri")
            .field("uri", &self.redacted)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The URI with its password replaced by `***`; a URI that does not parse is shown
/// without anything after the scheme, so a secret is never echoed.
pub fn redact(uri: &str) -> String {
    match AmqpUri::parse(uri) {
        Ok(u) => u.redacted,
        Err(_) => match split_scheme(uri.trim()) {
            Some((s, _)) => format!("{}://<unparsable>", s.as_str()),
            None => "<unparsable URI>".to_string(),
        },
    }
}

fn split_scheme(uri: &str) -> Option<(Scheme, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    match scheme.to_ascii_lowercase().as_str() {
        "amqp" => Some((Scheme::Amqp, rest)),
        "amqps" => Some((Scheme::Amqps, rest)),
        _ => None,
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; an empty host is `localhost`, as in the
/// Erlang client and lapin.
fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), Error> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| {
            Error::Malformed("an IPv6 address opens `[` and never closes it".into())
        })?;
        match after {
            "" => (h.to_string(), None),
            p => match p.strip_prefix(':') {
                Some(p) => (h.to_string(), Some(p)),
                None => return Err(Error::Malformed("text after the IPv6 address".into())),
            },
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (decode(h), Some(p)),
            None => (decode(hostport), None),
        }
    };
    let port =
        match port {
            None | Some("") => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::Malformed("the port is not a number from 1 to 65535".into())
            })?),
        };
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    Ok((host, port))
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `k=v&k2=v2` into decoded pairs, in order; a name given twice is an error.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (decode(k), decode(v));
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(Error::Repeated(k));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn check_number(name: &str, value: Option<&str>, max: u64) -> Result<(), Error> {
    match value {
        None => Ok(()),
        Some(v) if v.parse::<u64>().is_ok_and(|n| n <= max) => Ok(()),
        Some(_) => Err(Error::BadValue {
            param: name.to_string(),
            why: format!("expected a whole number from 0 to {max}"),
        }),
    }
}

fn tls_options<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<TlsOptions, Error> {
    let path = |name: &str| -> Result<Option<String>, Error> {
        match get(name) {
            None => Ok(None),
            Some("") => Err(Error::BadValue {
                param: name.to_string(),
                why: "empty path".into(),
            }),
            Some(p) => Ok(Some(p.to_string())),
        }
    };
    let cacertfile = path("cacertfile")?;
    let client_cert = match (path("certfile")?, path("keyfile")?) {
        (Some(certfile), Some(keyfile)) => Some(ClientCert { certfile, keyfile }),
        (None, None) => None,
        _ => return Err(Error::HalfClientCert),
    };
    let server_name = match get("server_name_indication") {
        None => ServerName::UriHost,
        Some("disable") => ServerName::Disabled,
        Some("") => {
            return Err(Error::BadValue {
                param: "server_name_indication".into(),
                why: "empty (write a host name, or `disable`)".into(),
            });
        }
        Some(name) => ServerName::Name(name.to_string()),
    };
    let verify = match get("verify") {
        None | Some("verify_peer") => Verify::Peer,
        Some("verify_none") => Verify::None,
        Some(other) => {
            return Err(Error::BadValue {
                param: "verify".into(),
                why: format!("{other:?} is neither verify_peer nor verify_none"),
            });
        }
    };
    match get("fail_if_no_peer_cert") {
        None | Some("true" | "false") => {}
        Some(other) => {
            return Err(Error::BadValue {
                param: "fail_if_no_peer_cert".into(),
                why: format!("{other:?} is neither true nor false"),
            });
        }
    }
    Ok(TlsOptions {
        cacertfile,
        client_cert,
        server_name,
        verify,
    })
}

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

use std::fmt;

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

    /// Every section called `name` (ASCII-case-insensitive), in file order.
    pub fn sections<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections
            .iter()
            .filter(move |s| s.name.eq_ignore_ascii_case(name))
    }

    /// The `name` sections that apply to this machine, as `kz_config` chooses them: the
    /// first one whose `host` is `hostname` (case-insensitive); else those whose
    /// `zone_key` (`zone`, or `name` for `[zone]` sections) is `zone`; else those with
    /// neither `host` nor `zone_key`. Sections for other hosts or zones never apply.
    pub fn local_sections<'a>(
        &'a self,
        name: &'a str,
        hostname: &str,
        zone: Option<&str>,
    ) -> Vec<&'a Section> {
        let zone_key = if name.eq_ignore_ascii_case("zone") {
            "name"
        } else {
            "zone"
        };
        let mut zoned = Vec::new();
        let mut generic = Vec::new();
        for s in self.sections(name) {
            match (s.value("host"), s.value(zone_key)) {
                (Some(h), _) if h.eq_ignore_ascii_case(hostname) => return vec![s],
                (Some(_), _) => {}
                (None, Some(z)) => {
                    if zone.is_some_and(|ours| ours == z) {
                        zoned.push(s);
                    }
                }
                (None, None) => generic.push(s),
            }
        }
        if zoned.is_empty() { generic } else { zoned }
    }

    /// The zone this node is in according to the ini: the `zone` of the `[kazoo_apps]`
    /// section for `hostname`, else the `zone` the host-less `[kazoo_apps]` sections agree
    /// on (none if they disagree: we cannot tell which one is ours).
    pub fn node_zone(&self, hostname: &str) -> Option<Located<String>> {
        let mut hostless: Option<Located<String>> = None;
        let mut disagree = false;
        for s in self.sections(NODE_SECTION) {
            let zone = s.get("zone").filter(|e| !e.value.is_empty());
            match s.value("host") {
                Some(h) if h.eq_ignore_ascii_case(hostname) => {
                    return zone.map(|e| Located::from_entry(s, e, e.value.clone()));
                }
                Some(_) => {}
                None => {
                    if let Some(e) = zone {
                        match &hostless {
                            Some(prev) if prev.value != e.value => disagree = true,
                            Some(_) => {}
                            None => hostless = Some(Located::from_entry(s, e, e.value.clone())),
                        }
                    }
                }
            }
        }
        if disagree { None } else { hostless }
    }

    /// What the pusher takes from this ini, for a machine called `hostname` in `zone`
    /// (the effective zone: decide it first, e.g. with [`KazooIni::node_zone`]).
    pub fn pusher_view(&self, hostname: &str, zone: Option<&str>) -> Result<PusherView> {
        let mut amqp_uris: Vec<Located<String>> = self
            .local_sections("amqp", hostname, zone)
            .into_iter()
            .flat_map(|s| {
                s.get_all("uri")
                    .filter(|e| !e.value.is_empty())
                    .map(move |e| Located::from_entry(s, e, e.value.clone()))
            })
            .collect();
        if amqp_uris.is_empty() {
            amqp_uris = self
                .local_sections("zone", hostname, zone)
                .into_iter()
                // A generic [zone] (no name) describes no zone in particular.
                .filter(|s| s.value("name").is_some())
                .flat_map(|s| {
                    s.get_all("amqp_uri")
                        .filter(|e| !e.value.is_empty())
                        .map(move |e| Located::from_entry(s, e, e.value.clone()))
                })
                .collect();
        }
        let couch_url = self
            .local_sections("bigcouch", hostname, zone)
            .first()
            .map(|s| couch_url_of(s))
            .transpose()?;
        Ok(PusherView {
            zone: self.node_zone(hostname),
            amqp_uris,
            couch_url,
        })
    }
}

/// `http://[user[:password]@]ip:port` from a `[bigcouch]` section; Kazoo's defaults are
/// `localhost` and 5984.
fn couch_url_of(s: &Section) -> Result<Located<String>> {
    let invalid = |e: &Entry, why: &str| Error::Invalid {
        line: e.line,
        section: s.name.clone(),
        key: e.key.clone(),
        why: why.to_string(),
    };
    let ip = match s.get("ip") {
        Some(e) if e.value.is_empty() => return Err(invalid(e, "it is empty")),
        Some(e) if e.value.contains(['/', '@', '?', '#', ' ']) => {
            return Err(invalid(e, "expected a host name or IP address"));
        }
        Some(e) => e.value.as_str(),
        None => "localhost",
    };
    let port = match s.get("port") {
        Some(e) => match e.value.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(invalid(e, "expected a port number from 1 to 65535")),
        },
        None => 5984,
    };
    let host = if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]") // IPv6 literal
    } else {
        ip.to_string()
    };
    let user = s.value("username").unwrap_or_default();
    let pass = s.value("password").unwrap_or_default();
    let userinfo = match (user.is_empty(), pass.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{}@", encode(user)),
        (_, false) => format!("{}:{}@", encode(user), encode(pass)),
    };
    let at = s.get("ip").or_else(|| s.get("port"));
    Ok(Located {
        value: format!("http://{userinfo}{host}:{port}"),
        section: s.name.clone(),
        key: at.map_or_else(|| "ip".to_string(), |e| e.key.clone()),
        line: at.map_or(s.line, |e| e.line),
    })
}

/// Percent-encodes a URL userinfo part (RFC 3986: everything but unreserved characters).
fn encode(s: &str) -> String {
    const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, USERINFO).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
; section are between [] = [section]
# hash comments too
[amqp]
uri = "amqp://guest:guest@10.1.0.1:5672"
uri = amqp://guest:guest@10.1.0.2:5672 ; second broker

[zone]
name = "z100"
amqp_uri = "amqp://guest:guest@10.1.0.1:5672"

[zone]
name = "z200"
amqp_uri = "amqp://guest:guest@10.2.0.1:5672"

[bigcouch]
compact_automatically = true
cookie = change_me
ip = "10.1.0.5"
port = 15984
username = "kazoo"
password = "p@ss:w/rd"
admin_port = 15986

[kazoo_apps]
host = "kazoo1.z100.example.com"
zone = "z100"
cookie = change_me

[kazoo_apps]
host = "kazoo1.z200.example.com"
zone = "z200"
cookie = change_me

[log]
syslog = info
console = notice
file = error
"#;

    #[test]
    fn parses_sections_entries_quotes_and_comments() {
        let ini = KazooIni::parse(SAMPLE).expect("parse");
        let names: Vec<&str> = ini.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "amqp",
                "zone",
                "zone",
                "bigcouch",
                "kazoo_apps",
                "kazoo_apps",
                "log"
            ]
        );
        let amqp = &ini.sections[0];
        let uris: Vec<&str> = amqp.get_all("uri").map(|e| e.value.as_str()).collect();
        assert_eq!(
            uris,
            [
                "amqp://guest:guest@10.1.0.1:5672",
                "amqp://guest:guest@10.1.0.2:5672"
            ]
        );
        assert_eq!(amqp.get("uri").map(|e| e.line), Some(5));
        let couch = ini.sections("bigcouch").next().expect("bigcouch");
        assert_eq!(couch.value("cookie"), Some("change_me"));
        assert_eq!(couch.value("password"), Some("p@ss:w/rd"));
        assert_eq!(couch.value("compact_automatically"), Some("true"));
    }

    #[test]
    fn view_for_a_host_in_zone_z200() {
        let ini = KazooIni::parse(SAMPLE).expect("parse");
        let host = "kazoo1.z200.example.com";
        let zone = ini.node_zone(host).expect("zone");
        assert_eq!((zone.value.as_str(), zone.line), ("z200", 32));
        let view = ini.pusher_view(host, Some("z200")).expect("view");
        // The generic [amqp] applies to every zone; both of its URIs, in order.
        let uris: Vec<&str> = view.amqp_uris.iter().map(|u| u.value.as_str()).collect();
        assert_eq!(
            uris,
            [
                "amqp://guest:guest@10.1.0.1:5672",
                "amqp://guest:guest@10.1.0.2:5672"
            ]
        );
        let couch = view.couch_url.expect("couch");
        assert_eq!(couch.value, "http://kazoo:p%40ss%3Aw%2Frd@10.1.0.5:15984");
        assert_eq!(
            (couch.place(), couch.line),
            ("[bigcouch] ip".to_string(), 19)
        );
    }

    #[test]
    fn zone_amqp_uri_is_used_when_there_is_no_amqp_section() {
        let text = "[zone]\nname = \"z1\"\namqp_uri = \"amqp://a:b@z1:5672\"\n\
                    [zone]\nname = \"z2\"\namqp_uri = \"amqp://a:b@z2:5672\"\n";
        let ini = KazooIni::parse(text).expect("parse");
        let view = ini.pusher_view("h", Some("z2")).expect("view");
        assert_eq!(view.amqp_uris.len(), 1);
        assert_eq!(view.amqp_uris[0].value, "amqp://a:b@z2:5672");
        assert_eq!(view.amqp_uris[0].place(), "[zone] amqp_uri");
        // An unknown zone gets nothing from the named [zone] sections.
        let none = ini.pusher_view("h", Some("z9")).expect("view");
        assert!(none.amqp_uris.is_empty());
        assert!(none.couch_url.is_none());
    }

    #[test]
    fn host_section_beats_zone_section_beats_generic() {
        let text = "\
[amqp]\nuri = amqp://generic\n\
[amqp]\nzone = z1\nuri = amqp://zone1\n\
[amqp]\nhost = me.example\nuri = amqp://mine\n\
[amqp]\nhost = other.example\nuri = amqp://theirs\n";
        let ini = KazooIni::parse(text).expect("parse");
        let first = |host: &str, zone: Option<&str>| {
            ini.pusher_view(host, zone).expect("view").amqp_uris[0]
                .value
                .clone()
        };
        assert_eq!(first("ME.example", Some("z1")), "amqp://mine");
        assert_eq!(first("x", Some("z1")), "amqp://zone1");
        assert_eq!(first("x", Some("z2")), "amqp://generic");
        assert_eq!(first("x", None), "amqp://generic");
    }

    #[test]
    fn node_zone_from_a_single_hostless_section_or_none_when_ambiguous() {
        let one = KazooIni::parse("[kazoo_apps]\nzone = \"east\"\ncookie = c\n").expect("ok");
        assert_eq!(one.node_zone("any").map(|z| z.value), Some("east".into()));
        let two = KazooIni::parse("[kazoo_apps]\nzone = a\n[kazoo_apps]\nzone = b\n").expect("ok");
        assert_eq!(two.node_zone("any"), None);
        let other_host = KazooIni::parse("[kazoo_apps]\nhost = elsewhere\nzone = a\n").expect("ok");
        assert_eq!(other_host.node_zone("here"), None);
        let no_zone = KazooIni::parse("[kazoo_apps]\ncookie = c\n").expect("ok");
        assert_eq!(no_zone.node_zone("here"), None);
    }

    #[test]
    fn bigcouch_defaults_credentials_and_ipv6() {
        let url = |text: &str| {
            KazooIni::parse(text)
                .expect("parse")
                .pusher_view("h", None)
                .expect("view")
                .couch_url
                .map(|u| u.value)
        };
        assert_eq!(
            url("[bigcouch]\ncookie = x\n").as_deref(),
            Some("http://localhost:5984")
        );
        assert_eq!(
            url("[bigcouch]\nip = ::1\nport = 5984\nusername = \"\"\npassword = \"\"\n").as_deref(),
            Some("http://[::1]:5984")
        );
        assert_eq!(
            url("[bigcouch]\nip = db\nusername = admin\n").as_deref(),
            Some("http://admin@db:5984")
        );
        assert_eq!(url("[amqp]\nuri = amqp://x\n"), None);
    }

    #[test]
    fn bad_bigcouch_values_name_section_key_and_line_not_the_value() {
        let ini = KazooIni::parse("[bigcouch]\nip = db\nport = lots\n").expect("parse");
        let err = ini.pusher_view("h", None).expect_err("bad port");
        assert_eq!(
            err.to_string(),
            "line 3: [bigcouch] port is invalid: expected a port number from 1 to 65535"
        );
        let ini = KazooIni::parse("[bigcouch]\nip = \"a/b\"\n").expect("parse");
        assert!(matches!(
            ini.pusher_view("h", None),
            Err(Error::Invalid { line: 2, .. })
        ));
    }

    #[test]
    fn syntax_errors_name_the_line_and_never_the_content() {
        let cases = [
            (
                "[amqp]\nthis is not ini hunter2\n",
                Error::Syntax { line: 2 },
            ),
            (
                "uri = amqp://x\n",
                Error::KeyOutsideSection {
                    line: 1,
                    key: "uri".into(),
                },
            ),
            (
                "[bigcouch]\npassword = \"hunter2\n",
                Error::BadQuote {
                    line: 2,
                    key: "password".into(),
                },
            ),
            (
                "[bigcouch]\npassword = \"hunter2\" trailing\n",
                Error::BadQuote {
                    line: 2,
                    key: "password".into(),
                },
            ),
            ("[amqp\nuri = x\n", Error::Syntax { line: 1 }),
            ("[]\n", Error::Syntax { line: 1 }),
        ];
        for (text, want) in cases {
            let err = KazooIni::parse(text).expect_err(text);
            assert_eq!(err, want, "{text}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn values_keep_hashes_inside_and_quoted_comment_chars() {
        let ini = KazooIni::parse(
            "\u{feff}[a]\nk1 = x#y\nk2 = \"v ; not a comment\" ; comment\nk3 =\nk4 = v # c\n",
        )
        .expect("parse");
        let s = &ini.sections[0];
        assert_eq!(s.value("k1"), Some("x#y"));
        assert_eq!(s.value("k2"), Some("v ; not a comment"));
        assert_eq!(s.value("k3"), Some(""));
        assert_eq!(s.value("k4"), Some("v"));
    }

    #[test]
    fn debug_of_the_view_shows_no_credentials() {
        let ini = KazooIni::parse(SAMPLE).expect("parse");
        let view = ini.pusher_view("x", None).expect("view");
        let shown = format!("{view:?}");
        assert!(
            !shown.contains("guest") && !shown.contains("p@ss"),
            "{shown}"
        );
    }
}

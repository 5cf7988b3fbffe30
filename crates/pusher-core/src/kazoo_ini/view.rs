//! Which sections apply to this machine ([`KazooIni::local_sections`]) and what the
//! pusher takes from them ([`KazooIni::pusher_view`]).

use super::{Entry, Error, KazooIni, Located, NODE_SECTION, PusherView, Result, Section};

impl KazooIni {
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

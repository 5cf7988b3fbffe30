//! The raw values of each source, before any check: the `PUSHER_*` environment, the
//! `PUSHER_CONFIG` TOML file and Kazoo's `config.ini`, each value with its [`Origin`].

use std::collections::HashMap;

use pusher_core::kazoo_ini::{KazooIni, Located};

use super::{Error, KEYS, Origin};

/// A value and its origin, before checking.
#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub(super) value: String,
    pub(super) origin: Origin,
}

/// The `PUSHER_*` variables of [`KEYS`] that are set; `var` reads one (trimmed, empty
/// counts as unset).
pub(super) fn env_layer<'v>(var: &dyn Fn(&str) -> Option<&'v str>) -> HashMap<&'static str, Raw> {
    KEYS.iter()
        .filter_map(|k| {
            let raw = Raw {
                value: var(k.env)?.to_string(),
                origin: Origin::Env(k.env.to_string()),
            };
            Some((k.key, raw))
        })
        .collect()
}

pub(super) fn ini_raw(path: &str, l: Located<String>) -> Raw {
    Raw {
        origin: Origin::KazooIni {
            path: path.to_string(),
            section: l.section,
            key: l.key,
            line: l.line,
        },
        value: l.value,
    }
}

/// Reads and parses Kazoo's `config.ini`: `KAZOO_CONFIG` (`off` skips it) or the first
/// default path that exists.
pub(super) fn read_kazoo_ini(
    explicit: Option<&str>,
    defaults: &[&str],
    files: &mut Vec<String>,
) -> Result<Option<(String, KazooIni)>, Error> {
    let (path, text) = match explicit {
        Some("off") => {
            files.push("Kazoo config.ini: off (KAZOO_CONFIG=off)".into());
            return Ok(None);
        }
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (path.to_string(), text),
            Err(e) => {
                return Err(Error::File {
                    what: "KAZOO_CONFIG file",
                    path: path.to_string(),
                    why: e.to_string(),
                });
            }
        },
        None => {
            let mut found = None;
            for path in defaults {
                match std::fs::read_to_string(path) {
                    Ok(text) => {
                        found = Some((path.to_string(), text));
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::File {
                            what: "Kazoo config",
                            path: path.to_string(),
                            why: format!("{e} (set KAZOO_CONFIG=off to skip it)"),
                        });
                    }
                }
            }
            match found {
                Some(f) => f,
                None => {
                    files.push(if defaults.is_empty() {
                        "Kazoo config.ini: none (KAZOO_CONFIG unset)".to_string()
                    } else {
                        format!("Kazoo config.ini: none found at {}", defaults.join(", "))
                    });
                    return Ok(None);
                }
            }
        }
    };
    let ini = KazooIni::parse(&text).map_err(|source| Error::KazooIni {
        path: path.clone(),
        source,
    })?;
    files.push(format!("Kazoo config.ini: {path}"));
    Ok(Some((path, ini)))
}

/// Reads a `PUSHER_CONFIG` file into raw values: top-level keys of [`KEYS`] only, strings
/// or whole numbers.
pub(super) fn parse_toml(path: &str, text: &str) -> Result<HashMap<&'static str, Raw>, Error> {
    use toml::de::{DeTable, DeValue};
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table = DeTable::parse(text).map_err(|e| Error::Toml {
        path: path.to_string(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        // Only the message: the error's Display quotes the line, which may hold a password.
        why: e.message().trim().to_string(),
    })?;
    let mut out = HashMap::new();
    for (key, value) in table.get_ref() {
        let line = line_of(key.span().start);
        let Some(def) = KEYS.iter().find(|d| d.key == key.get_ref().as_ref()) else {
            return Err(Error::UnknownKey {
                key: key.get_ref().to_string(),
                path: path.to_string(),
                line,
                known: KEYS.iter().map(|d| d.key).collect::<Vec<_>>().join(", "),
            });
        };
        let value = match value.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                i64::from_str_radix(&digits, i.radix())
                    .map(|n| n.to_string())
                    .map_err(|e| Error::Toml {
                        path: path.to_string(),
                        line,
                        why: format!("{}: {e}", def.key),
                    })?
            }
            other => {
                return Err(Error::Toml {
                    path: path.to_string(),
                    line,
                    why: format!(
                        "{} must be a string or a whole number, not {}",
                        def.key,
                        other.type_str()
                    ),
                });
            }
        };
        out.insert(
            def.key,
            Raw {
                value,
                origin: Origin::Toml {
                    path: path.to_string(),
                    line,
                },
            },
        );
    }
    Ok(out)
}

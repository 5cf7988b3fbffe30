//! Layering of the sources (environment > TOML > `config.ini` > default): the zone is
//! settled first, because it chooses the ini sections that apply.

use std::collections::HashMap;

use super::check::check;
use super::sources::{Raw, env_layer, ini_raw, parse_toml, read_kazoo_ini};
use super::{Error, KEYS, Loaded, Origin};

/// Applies the four sources (module docs) to `vars` (the environment); `kazoo_defaults`
/// are searched when `KAZOO_CONFIG` is unset; `hostname` chooses the ini's host sections.
pub(super) fn load(
    vars: &HashMap<String, String>,
    kazoo_defaults: &[&str],
    hostname: &str,
) -> Result<Loaded, Error> {
    let var = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut files = Vec::new();

    let env_layer = env_layer(&var);

    let toml_layer = match var("PUSHER_CONFIG") {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::File {
                what: "PUSHER_CONFIG file",
                path: path.to_string(),
                why: e.to_string(),
            })?;
            files.push(format!("PUSHER_CONFIG file: {path}"));
            parse_toml(path, &text)?
        }
        None => {
            files.push("PUSHER_CONFIG file: none".to_string());
            HashMap::new()
        }
    };

    let ini = read_kazoo_ini(var("KAZOO_CONFIG"), kazoo_defaults, &mut files)?;

    // The zone decides which ini sections apply, so it is settled first.
    let zone = env_layer
        .get("zone")
        .or_else(|| toml_layer.get("zone"))
        .cloned()
        .or_else(|| {
            var("KAZOO_ZONE").map(|z| Raw {
                value: z.to_string(),
                origin: Origin::Env("KAZOO_ZONE".into()),
            })
        })
        .or_else(|| {
            let (path, ini) = ini.as_ref()?;
            ini.node_zone(hostname).map(|z| ini_raw(path, z))
        });

    let mut ini_layer: HashMap<&'static str, Raw> = HashMap::new();
    let mut ini_fallbacks = Vec::new();
    if let Some((path, ini)) = &ini {
        let zone_name = zone.as_ref().map_or("local", |z| z.value.as_str());
        let view = ini
            .pusher_view(hostname, Some(zone_name))
            .map_err(|source| Error::KazooIni {
                path: path.clone(),
                source,
            })?;
        let mut uris = view.amqp_uris.into_iter();
        if let Some(first) = uris.next() {
            ini_layer.insert("amqp_uri", ini_raw(path, first));
            ini_fallbacks = uris.map(|u| ini_raw(path, u)).collect();
        }
        if let Some(couch) = view.couch_url {
            ini_layer.insert("couch_url", ini_raw(path, couch));
        }
    }
    if let Some(z) = zone {
        ini_layer.insert("zone", z);
    }

    let layers = [&env_layer, &toml_layer, &ini_layer];
    let get = |key: &'static str| -> Option<&Raw> { layers.iter().find_map(|l| l.get(key)) };
    let mut values: Vec<(&'static str, String, Origin)> = Vec::new();
    let settings = check(&get, &ini_fallbacks, &mut values)?;
    // Show the values in KEYS order.
    values.sort_by_key(|(k, _, _)| KEYS.iter().position(|d| d.key == *k));
    Ok(Loaded {
        settings,
        values,
        files,
    })
}

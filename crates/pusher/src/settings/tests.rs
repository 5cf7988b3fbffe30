//! Unit tests of the settings: defaults, each source, precedence, errors, print-config.

use super::*;

/// The sample Kazoo config.ini shipped with the tests.
const SAMPLE_INI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kazoo-config.ini");
/// The host of the sample's `[kazoo_apps]` section for zone `z200`.
const Z200_HOST: &str = "kazoo2.z200.example.net";

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "pusher-settings-{}-{}",
        std::process::id(),
        name.replace('.', "-")
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path.to_string_lossy().into_owned()
}

fn origin_of<'a>(l: &'a Loaded, key: &str) -> &'a Origin {
    &l.values.iter().find(|(k, _, _)| *k == key).expect(key).2
}

#[test]
fn defaults() {
    let s = Settings::from_map(&HashMap::new()).expect("defaults");
    assert_eq!(s.amqp_uri, DEFAULT_AMQP_URI);
    assert_eq!(s.couch_url, DEFAULT_COUCH_URL);
    assert_eq!(s.zone, "local");
    assert!(s.node.starts_with("pusher@"));
    assert_eq!(s.http_addr, Some("127.0.0.1:8099".parse().expect("addr")));
    assert_eq!(s.prefetch, 64);
    assert!(!s.log_json);
    assert_eq!(s.push.per_app_in_flight, 48);
    assert!(s.amqp_fallback_uris.is_empty());
}

#[test]
fn explicit_values_and_errors() {
    let s = Settings::from_map(&map(&[
        ("PUSHER_ZONE", "east"),
        ("PUSHER_NODE", "pusher@a"),
        ("PUSHER_HTTP_ADDR", "off"),
        ("PUSHER_PREFETCH", "7"),
        ("PUSHER_LOG_FORMAT", "json"),
    ]))
    .expect("settings");
    assert_eq!((s.zone.as_str(), s.node.as_str()), ("east", "pusher@a"));
    assert_eq!((s.http_addr, s.prefetch, s.log_json), (None, 7, true));
    assert_eq!(s.push.per_app_in_flight, 5);

    for (k, v) in [
        ("PUSHER_PREFETCH", "0"),
        ("PUSHER_PREFETCH", "many"),
        ("PUSHER_HTTP_ADDR", "localhost"),
        ("PUSHER_AMQP_URI", "http://x"),
        ("PUSHER_COUCH_URL", "ftp://x"),
        ("PUSHER_LOG_FORMAT", "xml"),
        ("PUSHER_RETRY_BUDGET_MS", "90000"),
        ("PUSHER_EXTRA_CA_FILE", "/nonexistent/ca.pem"),
        ("PUSHER_FCM_URL", "fcm.example"),
        ("PUSHER_MAX_IN_FLIGHT_PER_APP", "0"),
    ] {
        let err = Settings::from_map(&map(&[(k, v)])).expect_err(k);
        assert!(err.to_string().contains(k), "{err}");
    }
}

#[test]
fn secrets_are_redacted_in_debug_errors_and_print_config() {
    let vars = map(&[
        ("PUSHER_AMQP_URI", "amqp://u:amqpsecret@h:5672/%2f"),
        ("PUSHER_COUCH_URL", "http://admin:couchsecret@h:5984"),
    ]);
    let s = Settings::from_map(&vars).expect("settings");
    let loaded = load(&vars, &[], "h").expect("loaded");
    for shown in [format!("{s:?}"), loaded.render()] {
        assert!(
            !shown.contains("amqpsecret") && !shown.contains("couchsecret"),
            "{shown}"
        );
        assert!(
            shown.contains("u:***@h") && shown.contains("admin:***@h"),
            "{shown}"
        );
    }
    let err = Settings::from_map(&map(&[("PUSHER_COUCH_URL", "ftp://a:couchsecret@h")]))
        .expect_err("scheme");
    assert!(!err.to_string().contains("couchsecret"), "{err}");
}

#[test]
fn sample_kazoo_ini_is_read_for_a_host_in_zone_z200() {
    let vars = map(&[("KAZOO_CONFIG", SAMPLE_INI)]);
    let l = load(&vars, &[], Z200_HOST).expect("loaded");
    let s = &l.settings;
    // The host's [kazoo_apps] puts it in z200, whose [amqp] section beats the generic one.
    assert_eq!(s.amqp_uri, "amqp://kazoo:amqp-z200-secret@10.20.0.11:5672");
    assert_eq!(
        s.amqp_fallback_uris,
        ["amqp://kazoo:amqp-z200-secret@10.20.0.12:5672"]
    );
    assert_eq!(
        s.couch_url,
        "http://kazoo:couch%3Bsecret%23z@10.20.0.21:15984"
    );
    assert_eq!(s.zone, "z200");
    // Everything else is still the default.
    assert_eq!(s.prefetch, 64);
    assert!(matches!(
        origin_of(&l, "zone"),
        Origin::KazooIni { section, key, .. } if section == "kazoo_apps" && key == "zone"
    ));
    assert!(matches!(
        origin_of(&l, "amqp_uri"),
        Origin::KazooIni { section, key, .. } if section == "amqp" && key == "uri"
    ));
    assert_eq!(origin_of(&l, "prefetch"), &Origin::Default);
    // The CouchDB client accepts the built URL and gets the decoded credentials.
    pusher_io::couch::CouchClient::new(&s.couch_url, Duration::from_secs(1)).expect("url");
}

#[test]
fn sample_kazoo_ini_for_an_unknown_host_uses_the_generic_sections() {
    let l = load(&map(&[("KAZOO_CONFIG", SAMPLE_INI)]), &[], "somewhere.else").expect("loaded");
    let s = &l.settings;
    // No [kazoo_apps] section for this host: the default zone and the generic sections.
    assert_eq!(s.zone, "local");
    assert_eq!(s.amqp_uri, "amqp://guest:guest@10.10.0.11:5672");
    assert_eq!(s.amqp_fallback_uris, ["amqp://guest:guest@10.10.0.12:5672"]);
    assert_eq!(
        s.couch_url,
        "http://kazoo:couch%3Bsecret%23z@10.10.0.21:15984"
    );
    // KAZOO_ZONE picks the zone, and with it the zone's sections.
    let l = load(
        &map(&[("KAZOO_CONFIG", SAMPLE_INI), ("KAZOO_ZONE", "z200")]),
        &[],
        "somewhere.else",
    )
    .expect("loaded");
    assert_eq!(l.settings.zone, "z200");
    assert_eq!(origin_of(&l, "zone"), &Origin::Env("KAZOO_ZONE".into()));
    assert_eq!(
        l.settings.couch_url,
        "http://kazoo:couch%3Bsecret%23z@10.20.0.21:15984"
    );
}

#[test]
fn precedence_default_ini_toml_env() {
    let toml = temp_file(
        "pusher.toml",
        "# pusher settings\namqp_uri = \"amqp://t:t@toml:5672\"\nprefetch = 50\n\
         push_deadline_ms = 15_000\nzone = \"z100\"\n",
    );
    let base = [
        ("KAZOO_CONFIG", SAMPLE_INI),
        ("PUSHER_CONFIG", toml.as_str()),
    ];
    let l = load(&map(&base), &[], Z200_HOST).expect("loaded");
    // TOML beats the ini; the ini's other brokers are dropped with its amqp_uri.
    assert_eq!(l.settings.amqp_uri, "amqp://t:t@toml:5672");
    assert!(l.settings.amqp_fallback_uris.is_empty());
    assert_eq!(
        origin_of(&l, "amqp_uri"),
        &Origin::Toml {
            path: toml.clone(),
            line: 2
        }
    );
    assert_eq!(l.settings.prefetch, 50);
    assert_eq!(l.settings.push.deadline, Duration::from_millis(15_000));
    // The TOML zone overrides the ini's and selects the z100 sections of the ini.
    assert_eq!(l.settings.zone, "z100");
    assert_eq!(
        l.settings.couch_url,
        "http://kazoo:couch%3Bsecret%23z@10.10.0.21:15984"
    );

    // The environment beats both.
    let mut vars = map(&base);
    vars.extend(map(&[
        ("PUSHER_AMQP_URI", "amqp://e:e@env:5672"),
        ("PUSHER_PREFETCH", "9"),
        ("PUSHER_COUCH_URL", "http://env:5984"),
    ]));
    let l = load(&vars, &[], Z200_HOST).expect("loaded");
    assert_eq!(l.settings.amqp_uri, "amqp://e:e@env:5672");
    assert_eq!(l.settings.prefetch, 9);
    assert_eq!(l.settings.couch_url, "http://env:5984");
    assert_eq!(
        origin_of(&l, "prefetch"),
        &Origin::Env("PUSHER_PREFETCH".into())
    );
    assert_eq!(l.settings.zone, "z100");
}

#[test]
fn toml_errors_name_key_file_and_line() {
    let unknown = temp_file("unknown.toml", "prefetch = 5\n\namqp_url = \"amqp://x\"\n");
    let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &unknown)])).expect_err("key");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{unknown} line 3: unknown key `amqp_url`")),
        "{msg}"
    );

    let bad = temp_file("bad.toml", "zone = \"a\"\nprefetch = 0\n");
    let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &bad)])).expect_err("range");
    assert_eq!(
        err.to_string(),
        format!(
            "prefetch = \"0\" ({bad} line 2) is invalid: expected a whole number from 1 to 10000"
        )
    );

    let typed = temp_file("typed.toml", "prefetch = 1.5\n");
    let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &typed)])).expect_err("type");
    assert!(
        err.to_string()
            .contains("line 1: prefetch must be a string or a whole number")
    );

    let table = temp_file("table.toml", "[amqp]\nuri = \"x\"\n");
    let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &table)])).expect_err("table");
    assert!(err.to_string().contains("unknown key `amqp`"), "{err}");

    let syntax = temp_file(
        "syntax.toml",
        "zone = \"a\"\ncouch_url = \"http://a:hunter2@h\n",
    );
    let err = Settings::from_map(&map(&[("PUSHER_CONFIG", &syntax)])).expect_err("syntax");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{syntax} line 2: ")), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    let err =
        Settings::from_map(&map(&[("PUSHER_CONFIG", "/nonexistent/p.toml")])).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("cannot read PUSHER_CONFIG file /nonexistent/p.toml: "),
        "{err}"
    );
}

#[test]
fn kazoo_config_missing_explicit_is_an_error_missing_default_is_fine() {
    let err = Settings::from_map(&map(&[("KAZOO_CONFIG", "/nonexistent/config.ini")]))
        .expect_err("explicit");
    assert!(
        err.to_string()
            .starts_with("cannot read KAZOO_CONFIG file /nonexistent/config.ini"),
        "{err}"
    );
    let l = load(
        &HashMap::new(),
        &["/nonexistent/a.ini", "/nonexistent/b.ini"],
        "h",
    )
    .expect("defaults absent");
    assert_eq!(l.settings.amqp_uri, DEFAULT_AMQP_URI);
    assert!(
        l.files.iter().any(|f| f.contains("none found")),
        "{:?}",
        l.files
    );
    // The first default path that exists is used; `off` skips even that.
    let l = load(&HashMap::new(), &["/nonexistent/a.ini", SAMPLE_INI], "h").expect("found");
    assert_eq!(l.settings.amqp_uri, "amqp://guest:guest@10.10.0.11:5672");
    let l = load(&map(&[("KAZOO_CONFIG", "off")]), &[SAMPLE_INI], "h").expect("off");
    assert_eq!(l.settings.amqp_uri, DEFAULT_AMQP_URI);
}

#[test]
fn kazoo_ini_errors_name_file_section_key_and_line() {
    let ini = temp_file(
        "config.ini",
        "[bigcouch]\nip = \"db\"\nport = 15984\npassword = \"s3cret\"\n\
         [amqp]\nuri = \"http://guest:s3cret@rabbit\"\n",
    );
    let err = Settings::from_map(&map(&[("KAZOO_CONFIG", &ini)])).expect_err("uri");
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "amqp_uri \"http://guest:***@rabbit/\" from [amqp] uri ({ini} line 6) is invalid: \
             must start with amqp:// or amqps://"
        )
    );
    let broken = temp_file("broken.ini", "[bigcouch]\nport = 5984x\n");
    let err = Settings::from_map(&map(&[("KAZOO_CONFIG", &broken)])).expect_err("port");
    assert_eq!(
        err.to_string(),
        format!(
            "Kazoo config {broken} line 2: [bigcouch] port is invalid: expected a port number from 1 to 65535"
        )
    );
    let syntax = temp_file("syntax.ini", "[amqp]\nuri\n");
    let err = Settings::from_map(&map(&[("KAZOO_CONFIG", &syntax)])).expect_err("syntax");
    assert!(err.to_string().contains("line 2: expected"), "{err}");
}

#[test]
fn print_config_shows_every_key_with_its_origin() {
    let toml = temp_file("print.toml", "prefetch = 64\n");
    let vars = map(&[
        ("KAZOO_CONFIG", SAMPLE_INI),
        ("PUSHER_CONFIG", &toml),
        ("PUSHER_LOG_FORMAT", "json"),
    ]);
    let text = load(&vars, &[], Z200_HOST).expect("loaded").render();
    for k in KEYS {
        assert!(
            text.contains(&format!("\n{} = ", k.key)),
            "{} missing:\n{text}",
            k.key
        );
    }
    assert!(text.contains("prefetch = 64  # "), "{text}");
    assert!(text.contains(&format!("# {toml}:1\n")), "{text}");
    assert!(
        text.contains("log_format = \"json\"  # env PUSHER_LOG_FORMAT\n"),
        "{text}"
    );
    assert!(
        text.contains("amqp_uri = \"amqp://kazoo:***@10.20.0.11:5672\"  # "),
        "{text}"
    );
    assert!(text.contains("[amqp] uri\n"), "{text}");
    assert!(text.contains("zone = \"z200\"  # "), "{text}");
    assert!(
        text.contains("shutdown_grace_ms = 4000  # default\n"),
        "{text}"
    );
    assert!(
        text.contains("connection is lost): \"amqp://kazoo:***@10.20.0.12:5672\""),
        "{text}"
    );
    assert!(
        text.contains("fcm_url = \"https://fcm.googleapis.com\"  # default\n"),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "a password leaked into print-config:\n{text}"
    );
    // What was printed (minus comments and redaction) is a valid PUSHER_CONFIG file.
    let again = temp_file("again.toml", &text);
    Settings::from_map(&map(&[("PUSHER_CONFIG", &again)])).expect("round trip");
}

#[test]
fn amqps_brokers_from_env_toml_and_kazoo_ini_are_checked_at_start() {
    // A CA file as the operator would point at (any PEM certificate will do).
    let pki_dir = std::env::temp_dir().join(format!("pusher-settings-{}-pki", std::process::id()));
    let pki = pusher_sandbox::pki::TestPki::load_or_generate(&pki_dir).expect("test PKI");
    let ca = pki
        .path(pusher_sandbox::pki::files::CA)
        .display()
        .to_string();
    let client = pki
        .client(pusher_sandbox::pki::ClientVariant::Pkcs8)
        .path
        .display()
        .to_string();

    // Env: server-verified and mutual TLS, the TLS options as query parameters.
    let uri = format!(
        "amqps://kazoo:tls-secret@rabbit.example:5671/%2f?cacertfile={ca}\
         &certfile={client}&keyfile={client}&server_name_indication=rabbit.example\
         &verify=verify_peer&heartbeat=10"
    );
    let s = Settings::from_map(&map(&[("PUSHER_AMQP_URI", &uri)])).expect("amqps accepted");
    assert_eq!(s.amqp_uri, uri);
    assert!(!format!("{s:?}").contains("tls-secret"));

    // config.ini: a cluster mixing amqp:// and amqps:// brokers, rotated in file order.
    let ini = temp_file(
        "tls.ini",
        &format!(
            "[amqp]\nuri = \"amqp://guest:guest@10.0.0.1:5672\"\n\
             uri = \"amqps://guest:guest@10.0.0.2:5671/?cacertfile={ca}\"\n\
             uri = \"amqps://guest:guest@10.0.0.3/?verify=verify_none\"\n"
        ),
    );
    let s = Settings::from_map(&map(&[("KAZOO_CONFIG", &ini)])).expect("ini accepted");
    assert_eq!(s.amqp_uri, "amqp://guest:guest@10.0.0.1:5672");
    assert_eq!(
        s.amqp_fallback_uris,
        [
            format!("amqps://guest:guest@10.0.0.2:5671/?cacertfile={ca}"),
            "amqps://guest:guest@10.0.0.3/?verify=verify_none".to_string()
        ]
    );

    // TOML: an unknown parameter is named, with the file and line; no password shown.
    let toml = temp_file(
        "tls.toml",
        "prefetch = 5\namqp_uri = \"amqps://u:toml-secret@h/?verfy=verify_none\"\n",
    );
    let msg = Settings::from_map(&map(&[("PUSHER_CONFIG", &toml)]))
        .expect_err("unknown parameter")
        .to_string();
    assert!(
        msg.starts_with(&format!(
            "amqp_uri = \"amqps://u:***@h/?verfy=verify_none\" ({toml} line 2) is invalid: \
             unknown parameter `verfy` (known: heartbeat"
        )),
        "{msg}"
    );

    // A file that cannot be read, in a fallback of the ini: named with its line.
    let ini = temp_file(
        "tls-missing.ini",
        "[amqp]\nuri = \"amqp://guest:guest@10.0.0.1:5672\"\n\
         uri = \"amqps://guest:ini-secret@10.0.0.2/?cacertfile=/nonexistent/ca.pem\"\n",
    );
    let msg = Settings::from_map(&map(&[("KAZOO_CONFIG", &ini)]))
        .expect_err("missing CA")
        .to_string();
    assert!(
        msg.contains(&format!("from [amqp] uri ({ini} line 3) is invalid: ")),
        "{msg}"
    );
    assert!(msg.contains("cacertfile /nonexistent/ca.pem: "), "{msg}");
    assert!(!msg.contains("ini-secret"), "{msg}");

    // TLS options on a plain URI, and half a client certificate.
    for (uri, why) in [
        (
            format!("amqp://h/?cacertfile={ca}"),
            "TLS parameter `cacertfile` needs an amqps:// URI",
        ),
        (
            format!("amqps://h/?certfile={client}"),
            "`certfile` and `keyfile` go together (mutual TLS needs both)",
        ),
    ] {
        let msg = Settings::from_map(&map(&[("PUSHER_AMQP_URI", &uri)]))
            .expect_err("refused")
            .to_string();
        assert!(msg.ends_with(&format!("is invalid: {why}")), "{msg}");
    }
    let _ = std::fs::remove_dir_all(&pki_dir);
}

#[test]
fn the_shown_prefetch_default_is_the_one_applied() {
    let key = super::KEYS
        .iter()
        .find(|k| k.key == "prefetch")
        .expect("prefetch key");
    assert_eq!(
        key.default,
        Some(super::DEFAULT_PREFETCH.to_string().as_str())
    );
}

#[test]
fn extra_bindings_are_pairs_and_bad_ones_are_named() {
    let s = Settings::from_map(&map(&[])).expect("settings");
    assert!(s.extra_bindings.is_empty(), "default none");
    let s = Settings::from_map(&map(&[(
        "PUSHER_EXTRA_BINDINGS",
        "pushes:notification.endpoint_push.#, notifications:a:b",
    )]))
    .expect("settings");
    assert_eq!(
        s.extra_bindings,
        [
            (
                "pushes".to_string(),
                "notification.endpoint_push.#".to_string()
            ),
            ("notifications".to_string(), "a:b".to_string())
        ]
    );
    let err = Settings::from_map(&map(&[(
        "PUSHER_EXTRA_BINDINGS",
        "pushes:ok, nocolon, amq.topic:x, :key, pushes:two words",
    )]))
    .expect_err("bad pairs");
    let text = err.to_string();
    assert!(text.contains("PUSHER_EXTRA_BINDINGS"), "{text}");
    for bad in [
        "\"nocolon\"",
        "\"amq.topic:x\"",
        "\":key\"",
        "\"pushes:two words\"",
    ] {
        assert!(text.contains(bad), "{bad} not named: {text}");
    }
    assert!(!text.contains("\"pushes:ok\""), "{text}");
}

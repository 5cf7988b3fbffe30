//! `pusherctl`, the real binary, against pouchdb-server (and RabbitMQ + an in-process
//! pusherd + the mock APNs for `push`): every command's document effect, exit codes and
//! messages, and "nothing changed" after a refused command.
//!
//! Isolation: `system_config/pusher` is shared by every test of the binary, so these
//! tests write only under their own app ids (`org.itctl<random>.…`) and their own node
//! (`PUSHER_NODE`), never under `default`; generic `kapps_config` semantics (including
//! `default` writes) are tested on a category of their own (`itctl_<random>`). The one
//! shared key, the `private_key.p8` attachment, is re-uploaded with the bytes it already
//! holds, so token-auth tests running alongside keep working.

use std::time::Duration;

use pusher_io::couch::CouchClient;
use pusher_sandbox::apns_mock::{ApnsMockConfig, MockApns};
use pusher_sandbox::pki::ClientVariant;
use serde_json::{Value, json};

use crate::helpers::pki;
use crate::helpers::{World, amqp_base, couch_url, rand_hex, set_config};

/// What one run of the binary did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Per-test settings of the binary.
struct Ctl {
    env: Vec<(String, String)>,
}

impl Ctl {
    fn new() -> Self {
        Self {
            env: vec![
                ("PUSHER_COUCH_URL".into(), couch_url()),
                ("PUSHER_AMQP_URI".into(), amqp_base()),
                (
                    "PUSHER_NODE".into(),
                    format!("pusher@itctl-{}", rand_hex(8)),
                ),
                ("PUSHER_ZONE".into(), format!("zone-{}", rand_hex(6))),
            ],
        }
    }

    fn with(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.retain(|(name, _)| name != k);
        self.env.push((k.into(), v.into()));
        self
    }

    fn node(&self) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == "PUSHER_NODE")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pusherctl"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("pusherctl runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

async fn couch() -> CouchClient {
    let c = CouchClient::new(&couch_url(), Duration::from_secs(5)).expect("couch client");
    c.ping()
        .await
        .expect("CouchDB-API server reachable (scripts/services.sh up)");
    c.create_db("system_config").await.expect("system_config");
    c
}

async fn config_doc(c: &CouchClient, cat: &str) -> Option<Value> {
    c.get_doc("system_config", cat).await.expect("get config")
}

async fn pusher_scope(c: &CouchClient, scope: &str) -> Value {
    config_doc(c, "pusher")
        .await
        .and_then(|d| d.get(scope).cloned())
        .unwrap_or(Value::Null)
}

fn app_id(tag: &str) -> String {
    format!("org.itctl{}.{tag}", rand_hex(8))
}

fn write_tmp(name: &str, content: &str) -> String {
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ctl-{}", rand_hex(8)));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write tmp");
    path.display().to_string()
}

fn assert_no_secret(out: &Out, secret: &str) {
    for line in secret.lines().filter(|l| l.len() > 20) {
        assert!(
            !out.all().contains(line),
            "secret material printed: {out:?}"
        );
    }
}

#[tokio::test]
async fn usage_help_and_exit_codes() {
    let ctl = Ctl::new();
    let out = ctl.run(&["--help"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("pusher_maintenance:"), "{out:?}");
    for (args, expect) in [
        (vec![], "no command given"),
        (vec!["nope", "get"], "unknown module \"nope\""),
        (
            vec!["kapps_config", "frob"],
            "kapps_config has no function \"frob\"",
        ),
        (
            vec!["kapps_config", "get", "pusher"],
            "takes 2 to 3 arguments, got 1",
        ),
        (
            vec!["pusher_maintenance", "push", "a"],
            "takes 2 arguments, got 1",
        ),
        (
            vec!["pusher_maintenance", "list_apps", "a", "b"],
            "takes 0 to 1 argument, got 2",
        ),
    ] {
        let out = ctl.run(&args).await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(out.stderr.contains(expect), "{args:?}: {out:?}");
    }
    for c in pusher::ctl::COMMANDS {
        let out = ctl.run(&[c.module, c.function, "--help"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.starts_with(&format!("Usage: {}", c.usage())),
            "{out:?}"
        );
    }
}

#[tokio::test]
async fn kapps_config_semantics_on_a_category_of_our_own() {
    let c = couch().await;
    let ctl = Ctl::new();
    let node = ctl.node().to_string();
    let cat = format!("itctl_{}", rand_hex(8));

    let out = ctl.run(&["kapps_config", "get", &cat, "a.b"]).await;
    assert_eq!((out.code, out.stdout.trim()), (0, "undefined"), "{out:?}");

    // set_default creates the doc, splits the dotted key, writes under default.
    let out = ctl
        .run(&["kapps_config", "set_default", &cat, "a.b.c", "v1"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let doc = config_doc(&c, &cat).await.expect("doc created");
    assert_eq!(doc["pvt_type"], "config");
    assert_eq!(doc["default"], json!({"a": {"b": {"c": "v1"}}}));

    // set: the node lacks the key, so default gets it.
    let out = ctl.run(&["kapps_config", "set", &cat, "x.y", "v2"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        config_doc(&c, &cat).await.unwrap()["default"]["x"]["y"],
        "v2"
    );
    // set_node always writes the node.
    let out = ctl
        .run(&["kapps_config", "set_node", &cat, "x.y", "v3", &node])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    // set again: now the node has the key, so the node gets it; default keeps v2.
    let out = ctl.run(&["kapps_config", "set", &cat, "x.y", "v4"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let doc = config_doc(&c, &cat).await.unwrap();
    assert_eq!(doc[&node]["x"]["y"], "v4");
    assert_eq!(doc["default"]["x"]["y"], "v2");
    // set with an explicit Node that lacks the key: default.
    let out = ctl
        .run(&["kapps_config", "set", &cat, "x.y", "v5", "other@node"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let doc = config_doc(&c, &cat).await.unwrap();
    assert_eq!(doc["default"]["x"]["y"], "v5");
    assert!(doc.get("other@node").is_none());

    // set_json: parsed value, default (the node has no `obj`).
    let out = ctl
        .run(&[
            "kapps_config",
            "set_json",
            &cat,
            "obj",
            r#"{"n": 1, "l": [true]}"#,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        config_doc(&c, &cat).await.unwrap()["default"]["obj"],
        json!({"n": 1, "l": [true]})
    );

    // get: node → zone → default, or an explicit node.
    let out = ctl.run(&["kapps_config", "get", &cat, "x.y"]).await;
    assert_eq!(out.stdout.trim(), "\"v4\"", "{out:?}");
    let out = ctl
        .run(&["kapps_config", "get", &cat, "x.y", "other@node"])
        .await;
    assert_eq!(out.stdout.trim(), "\"v5\"", "{out:?}");
    let out = ctl.run(&["kapps_config", "get", &cat, "obj.n"]).await;
    assert_eq!(out.stdout.trim(), "1", "{out:?}");

    // delete from a node, then from default.
    let out = ctl
        .run(&["kapps_config", "delete", &cat, "x.y", &node])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = ctl.run(&["kapps_config", "delete", &cat, "a.b.c"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let doc = config_doc(&c, &cat).await.unwrap();
    assert_eq!(doc[&node]["x"], json!({}));
    assert_eq!(doc["default"]["a"]["b"], json!({}));

    // Failures: exit 2, one sentence, the doc untouched (same revision).
    let before = config_doc(&c, &cat).await.unwrap();
    let out = ctl
        .run(&["kapps_config", "delete", &cat, "no.such.key"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("has no key default.no.such.key; nothing deleted"),
        "{out:?}"
    );
    let out = ctl
        .run(&["kapps_config", "set_json", &cat, "k", "{\"a\":\n  tru}"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("JSON invalid at line 2 column"),
        "{out:?}"
    );
    let out = ctl.run(&["kapps_config", "set", &cat, "a..b", "v"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("empty segment"), "{out:?}");
    assert_eq!(config_doc(&c, &cat).await.unwrap(), before);
}

#[tokio::test]
async fn pusher_edits_are_validated_and_refusals_change_nothing() {
    let c = couch().await;
    let ctl = Ctl::new();
    let node = ctl.node().to_string();

    // Kazoo's one-key-at-a-time rule building (on our node): warnings until complete.
    let steps = [
        ("User-Agents.CallThru.regex", "^CallThru"),
        ("User-Agents.CallThru.properties.Token-App", "app-id"),
        ("User-Agents.CallThru.properties.Token-Type", "pn-type"),
        ("User-Agents.CallThru.properties.Token-ID", "foo-bar"),
    ];
    for (i, (key, value)) in steps.iter().enumerate() {
        let out = ctl
            .run(&["kapps_config", "set_node", "pusher", key, value, &node])
            .await;
        assert_eq!(out.code, 0, "{key}: {out:?}");
        assert_eq!(out.stderr.contains("warning:"), i < 3, "{key}: {out:?}");
    }
    assert_eq!(
        pusher_scope(&c, &node).await["User-Agents"]["CallThru"],
        json!({"regex": "^CallThru", "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "foo-bar"}})
    );

    // set_json replaces the rule at our node (the key exists there).
    let rule = r#"{"regex":"^MyApp","properties":{"Token-App":"app-id","Token-Type":"pn-type","Token-ID":"pn-tok"}}"#;
    let out = ctl
        .run(&[
            "kapps_config",
            "set_json",
            "pusher",
            "User-Agents.CallThru",
            rule,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        pusher_scope(&c, &node).await["User-Agents"]["CallThru"]["regex"],
        "^MyApp"
    );

    // Refusals: a bad regex, an incomplete rule, a wrong type; nothing written.
    let before = pusher_scope(&c, &node).await;
    let bad_regex =
        r#"{"regex":"^(MyApp","properties":{"Token-App":"a","Token-Type":"b","Token-ID":"c"}}"#;
    let incomplete = r#"{"regex":"^MyApp","properties":{"Token-App":"app-id"}}"#;
    for (args, expect) in [
        (
            vec![
                "kapps_config",
                "set_json",
                "pusher",
                "User-Agents.CallThru",
                bad_regex,
            ],
            "invalid regex",
        ),
        (
            vec![
                "kapps_config",
                "set_json",
                "pusher",
                "User-Agents.CallThru",
                incomplete,
            ],
            "lack Token-Type, Token-ID",
        ),
        (
            vec![
                "kapps_config",
                "set_node",
                "pusher",
                "User-Agents.CallThru.regex",
                "(?<",
                &node,
            ],
            "invalid regex",
        ),
        (
            vec![
                "kapps_config",
                "set_json",
                "pusher",
                "User-Agents.CallThru.properties",
                "[1]",
            ],
            "User-Agents.CallThru.properties",
        ),
        (
            vec![
                "kapps_config",
                "set_node",
                "pusher",
                "push_deadline_ms",
                "5",
                &node,
            ],
            "push_deadline_ms",
        ),
    ] {
        let out = ctl.run(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("refused, nothing written"),
            "{args:?}: {out:?}"
        );
        assert!(out.stderr.contains(expect), "{args:?}: {out:?}");
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "one sentence: {out:?}"
        );
    }
    assert_eq!(pusher_scope(&c, &node).await, before);

    // sup passes strings: a boolean or number the schema types is stored typed.
    let out = ctl
        .run(&[
            "kapps_config",
            "set_node",
            "pusher",
            "push_deadline_ms",
            "15000",
            &node,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = ctl
        .run(&[
            "kapps_config",
            "set_node",
            "pusher",
            "rfc8599",
            "true",
            &node,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let scope = pusher_scope(&c, &node).await;
    assert_eq!(scope["push_deadline_ms"], json!(15000));
    assert_eq!(scope["rfc8599"], json!(true));

    // A secret read back is not printed.
    let app = app_id("secret");
    set_config(
        &c,
        &[&app, "firebase", "api_key"],
        json!("AAAA-very-secret-legacy-key"),
    )
    .await;
    let out = ctl
        .run(&["kapps_config", "get", "pusher", "firebase", &app])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("not shown"), "{out:?}");
    assert!(!out.all().contains("very-secret"), "{out:?}");
}

#[tokio::test]
async fn add_apple_app_stores_the_file_verbatim() {
    let c = couch().await;
    let ctl = Ctl::new();
    for (variant, host) in [
        (ClientVariant::Pkcs8, None),
        (ClientVariant::Pkcs1, Some("api.development.push.apple.com")),
        (ClientVariant::BagAttributes, None),
    ] {
        let app = app_id(variant.key());
        let id = pki().client(variant);
        let path = id.path.display().to_string();
        let mut args = vec!["pusher_maintenance", "add_apple_app", &app, &path];
        if let Some(h) = host {
            args.push(h);
        }
        let out = ctl.run(&args).await;
        assert_eq!(out.code, 0, "{variant:?}: {out:?}");
        assert!(out.stdout.contains(&id.subject_cn), "{out:?}");
        assert!(out.stdout.contains("expires: 2100-01-01"), "{out:?}");
        assert_no_secret(&out, &id.pem);
        let apple = &pusher_scope(&c, &app).await["apple"];
        let file = std::fs::read_to_string(&id.path).unwrap();
        assert_eq!(
            apple["certificate"].as_str(),
            Some(file.as_str()),
            "byte for byte"
        );
        assert_eq!(apple["host"], host.unwrap_or("api.push.apple.com"));
        assert_eq!(apple["auth_type"], "certdata");
    }
}

#[tokio::test]
async fn add_apple_app_refuses_bad_certificates() {
    let c = couch().await;
    let ctl = Ctl::new();
    let good = &pki().client(ClientVariant::Pkcs8).pem;
    let cert_end = good.find("-----END CERTIFICATE-----").unwrap() + 26;
    let cert_only = &good[..cert_end];
    let missing = format!("{}/nope.pem", env!("CARGO_TARGET_TMPDIR"));
    let cases = [
        (missing.clone(), "no such file"),
        (
            pki()
                .client(ClientVariant::Expired)
                .path
                .display()
                .to_string(),
            "the certificate expired on 2020-01-01",
        ),
        (write_tmp("cert-only.pem", cert_only), "has no private key"),
        (
            write_tmp(
                "mismatch.pem",
                &format!("{cert_only}{}", pki().sa_private_key_pem),
            ),
            "does not match the certificate",
        ),
        (
            write_tmp(
                "two-keys.pem",
                &format!("{good}{}", pki().sa_private_key_pem),
            ),
            "2 private keys",
        ),
        (write_tmp("junk.pem", "hello\n"), "no certificate"),
    ];
    let app = app_id("refused");
    for (path, expect) in &cases {
        let out = ctl
            .run(&["pusher_maintenance", "add_apple_app", &app, path])
            .await;
        assert_eq!(out.code, 2, "{path}: {out:?}");
        assert!(out.stderr.contains(expect), "{path}: {out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
        assert_no_secret(&out, good);
    }
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_apple_app",
            &app,
            &pki()
                .client(ClientVariant::Pkcs8)
                .path
                .display()
                .to_string(),
            "not a host!",
        ])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(pusher_scope(&c, &app).await, Value::Null, "nothing written");
}

#[tokio::test]
async fn add_apple_pem_file_and_token_app() {
    let c = couch().await;
    let ctl = Ctl::new();
    // The attachment is shared by every test: upload the bytes it already holds (or,
    // on a fresh database, the test key), so token-auth tests alongside keep working.
    let current = c
        .get_attachment("system_config", "pusher", "private_key.p8")
        .await
        .expect("get attachment")
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|pem| pem.contains("PRIVATE KEY"));
    let p8 = current.unwrap_or_else(|| pki().p8_pem.clone());
    let path = write_tmp("AuthKey_ABC123DEFG.p8", &p8);
    let out = ctl
        .run(&["pusher_maintenance", "add_apple_pem_file", &path])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_no_secret(&out, &p8);
    let doc = config_doc(&c, "pusher").await.unwrap();
    assert_eq!(
        doc["_attachments"]["private_key.p8"]["content_type"],
        "application/x-pem-file"
    );
    let stored = c
        .get_attachment("system_config", "pusher", "private_key.p8")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, p8.as_bytes());

    // Not an EC P-256 key: refused, attachment untouched.
    let rsa = write_tmp("rsa.p8", &pki().sa_private_key_pem);
    let out = ctl
        .run(&["pusher_maintenance", "add_apple_pem_file", &rsa])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("not an EC P-256 key"), "{out:?}");
    assert_no_secret(&out, &pki().sa_private_key_pem);

    let app = app_id("token");
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_apple_token_app",
            &app,
            "DEF123GHIJ",
            "ABC123DEFG",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        pusher_scope(&c, &app).await["apple"],
        json!({"auth_type": "token", "team_id": "DEF123GHIJ", "key_id": "ABC123DEFG", "host": "api.push.apple.com"})
    );
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_apple_token_app",
            &app,
            "short",
            "ABC123DEFG",
            "h",
        ])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("not a 10-character Apple team id"),
        "{out:?}"
    );
}

#[tokio::test]
async fn firebase_service_accounts_are_checked_and_stored_as_objects() {
    let c = couch().await;
    let ctl = Ctl::new();
    let sa = pki().service_account_json("https://oauth2.googleapis.com/token");
    let file = write_tmp("sa.json", &serde_json::to_string_pretty(&sa).unwrap());

    let app = app_id("fcmfile");
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_firebase_v1_app_from_service_account_file",
            &app,
            &file,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("project pusher-mock-project"),
        "{out:?}"
    );
    assert_no_secret(&out, &pki().sa_private_key_pem);
    assert_eq!(
        pusher_scope(&c, &app).await["firebase_v1"]["service_account"],
        sa
    );

    let app2 = app_id("fcmjson");
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_firebase_v1_app",
            &app2,
            &sa.to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        pusher_scope(&c, &app2).await["firebase_v1"]["service_account"],
        sa
    );

    // Refusals.
    let app3 = app_id("fcmbad");
    let mut no_key = sa.clone();
    no_key.as_object_mut().unwrap().remove("private_key");
    let mut not_rsa = sa.clone();
    not_rsa["private_key"] = json!(pki().p8_pem);
    let cases = [
        (
            "{\n \"type\": \"service_account\",\n oops }".to_string(),
            "JSON invalid at line 3 column 2",
        ),
        (no_key.to_string(), "lacks `private_key`"),
        (not_rsa.to_string(), "not an RSA key"),
    ];
    for (text, expect) in &cases {
        let out = ctl
            .run(&["pusher_maintenance", "add_firebase_v1_app", &app3, text])
            .await;
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains(expect), "{expect}: {out:?}");
        assert_no_secret(&out, &pki().sa_private_key_pem);
        assert_no_secret(&out, &pki().p8_pem);
    }
    let missing = format!("{}/nope.json", env!("CARGO_TARGET_TMPDIR"));
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_firebase_v1_app_from_service_account_file",
            &app3,
            &missing,
        ])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no such file"), "{out:?}");
    assert_eq!(pusher_scope(&c, &app3).await, Value::Null);

    // Legacy key: stored as Kazoo did, with the shutdown warning.
    let app4 = app_id("legacy");
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_firebase_app",
            &app4,
            "AAAA-legacy",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("shut the legacy FCM API down in 2024"),
        "{out:?}"
    );
    assert!(out.stderr.contains("add_firebase_v1_app"), "{out:?}");
    assert!(!out.all().contains("AAAA-legacy"), "{out:?}");
    assert_eq!(
        pusher_scope(&c, &app4).await["firebase"]["api_key"],
        "AAAA-legacy"
    );
}

#[tokio::test]
async fn list_apps_shows_the_table_and_fails_on_expiry() {
    let c = couch().await;
    let ctl = Ctl::new();
    let prefix = format!("org.itctl{}", rand_hex(8));
    let good = format!("{prefix}.good");
    let path = pki()
        .client(ClientVariant::Pkcs8)
        .path
        .display()
        .to_string();
    let out = ctl
        .run(&["pusher_maintenance", "add_apple_app", &good, &path])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let sa = pki().service_account_json("https://oauth2.googleapis.com/token");
    let out = ctl
        .run(&[
            "pusher_maintenance",
            "add_firebase_v1_app",
            &format!("{prefix}.fcm"),
            &sa.to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    let out = ctl.run(&["pusher_maintenance", "list_apps", &prefix]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(lines[0].starts_with("APP"), "{out:?}");
    assert!(lines[1].starts_with(&format!("{prefix}.fcm")) && lines[1].contains("firebase_v1"));
    assert!(lines[1].contains("project pusher-mock-project"), "{out:?}");
    let cols: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        [
            good.as_str(),
            "apple",
            "certdata",
            "api.push.apple.com",
            "true"
        ]
    );
    assert!(cols[5].parse::<i64>().unwrap() > 20_000, "{out:?}");
    assert_no_secret(&out, &pki().sa_private_key_pem);

    // An expired certificate (written behind pusherctl's back): listed, exit 2.
    let expired = format!("{prefix}.old");
    set_config(
        &c,
        &[&expired, "apple", "certificate"],
        json!(pki().client(ClientVariant::Expired).pem),
    )
    .await;
    let out = ctl.run(&["pusher_maintenance", "list_apps", &prefix]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.contains(&expired), "{out:?}");
    assert!(
        out.stderr.contains(&format!("{expired} (expired)")),
        "{out:?}"
    );
}

#[tokio::test]
async fn couch_unreachable_is_named_without_credentials() {
    let ctl = Ctl::new().with("PUSHER_COUCH_URL", "http://admin:s3cr3tpass@127.0.0.1:9/");
    let out = ctl
        .run(&["kapps_config", "get", "pusher", "User-Agents"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("CouchDB unreachable at http://"),
        "{out:?}"
    );
    assert!(out.stderr.contains("127.0.0.1:9"), "{out:?}");
    assert!(!out.all().contains("s3cr3tpass"), "{out:?}");
}

async fn push_world(mock: &MockApns) -> (World, String) {
    let mut w = World::new().await;
    w.trust_mock_ca();
    w.env
        .push(("PUSHER_PUSH_DEADLINE_MS".into(), "5000".into()));
    let app = app_id("push");
    set_config(
        &w.couch,
        &[&app, "apple"],
        json!({"certificate": pki().client(ClientVariant::Pkcs8).pem, "host": mock.base_url()}),
    )
    .await;
    (w, app)
}

async fn put_push_device(w: &World, device: &str, app: &str, token: &str) {
    w.put_device(
        device,
        json!({"push": {"Token-App": app, "Token-Type": "apple", "Token-ID": token,
                        "Token-Proxy": "sip:10.0.0.1:5060"}}),
    )
    .await;
}

/// Needs the service side of the reply contract (`Pusher-Reply-To`, see
/// `ctl::push`): a running pusherd answers with the provider's verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_through_pusherd_reports_delivered_and_dead_token() {
    let mock = MockApns::start(ApnsMockConfig::from_pki(pki()))
        .await
        .expect("mock APNs");
    let (mut w, app) = push_world(&mock).await;
    put_push_device(&w, "dev-ok", &app, "0a1b2c3d4e5f").await;
    put_push_device(&w, "dev-dead", &app, "dead0a1b2c").await;
    w.start().await;
    let ctl = Ctl::new().with("PUSHER_AMQP_URI", w.vhost.uri());

    let out = ctl
        .run(&["pusher_maintenance", "push", &w.account_id, "dev-ok"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("delivered in "), "{out:?}");
    assert!(out.stdout.contains(&format!("(apns, {app})")), "{out:?}");
    let got = mock.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].token, "0a1b2c3d4e5f");
    assert_eq!(got[0].body["caller-id-number"], "0000");

    let out = ctl
        .run(&["pusher_maintenance", "push", &w.account_id, "dev-dead"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.starts_with("dead token after "), "{out:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_fails_clearly_without_pusherd_or_push_object() {
    let mock = MockApns::start(ApnsMockConfig::from_pki(pki()))
        .await
        .expect("mock APNs");
    let (w, app) = push_world(&mock).await;
    put_push_device(&w, "dev-ok", &app, "0a1b2c3d4e5f").await;
    w.put_device("dev-none", json!({})).await;
    // pusherd is not started in this vhost.
    let ctl = Ctl::new().with("PUSHER_AMQP_URI", w.vhost.uri());
    let out = ctl
        .run(&["pusher_maintenance", "push", &w.account_id, "dev-ok"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no pusherd is running on this broker"),
        "{out:?}"
    );
    let out = ctl
        .run(&["pusher_maintenance", "push", &w.account_id, "dev-none"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("has no push object"), "{out:?}");
    let out = ctl
        .run(&["pusher_maintenance", "push", &w.account_id, "dev-missing"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no device dev-missing"), "{out:?}");
    assert!(mock.received().is_empty());
}

/// A consumer of the shared queue that never answers (an Erlang pusher, or a pusherd
/// without reply support): `push` gives up after the deadline + 5 s with a clear verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_times_out_when_the_consumer_never_replies() {
    use futures_util::StreamExt as _;

    let mock = MockApns::start(ApnsMockConfig::from_pki(pki()))
        .await
        .expect("mock APNs");
    let (w, app) = push_world(&mock).await;
    put_push_device(&w, "dev-ok", &app, "0a1b2c3d4e5f").await;
    let conn = pusher_io::amqp::connect(&w.vhost.uri(), "it-silent-pusher")
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    pusher_io::amqp::declare_topology(&channel)
        .await
        .expect("topology");
    let mut consumer = pusher_io::amqp::consume(&channel, 10, "silent")
        .await
        .expect("consume");
    let silent = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(Ok(d)) = consumer.next().await {
            seen.push(serde_json::from_slice::<Value>(&d.data).unwrap_or(Value::Null));
            let _ = d
                .acker
                .ack(lapin::options::BasicAckOptions::default())
                .await;
        }
        seen
    });

    let ctl = Ctl::new()
        .with("PUSHER_AMQP_URI", w.vhost.uri())
        .with("PUSHER_PUSH_DEADLINE_MS", "1000");
    let started = std::time::Instant::now();
    let out = ctl
        .run(&["pusher_maintenance", "push", &w.account_id, "dev-ok"])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("timeout: no reply from pusherd"),
        "{out:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_secs(15),
        "{waited:?}"
    );

    let _ = conn.close(200, "done".into()).await;
    let seen = silent.await.expect("consumer task");
    assert_eq!(seen.len(), 1, "{seen:?}");
    // What went over the wire: Kamailio's push_req plus the reply queue.
    let req = &seen[0];
    assert_eq!(req["Event-Name"], "push_req");
    assert_eq!(req["Token-App"], json!(app));
    assert_eq!(req["Token-ID"], "0a1b2c3d4e5f");
    assert!(
        req["Pusher-Reply-To"]
            .as_str()
            .is_some_and(|q| q.starts_with("amq.gen-")),
        "{req}"
    );
    assert!(mock.received().is_empty());
}

//! `amqps://` brokers end to end: `pusherd` and `pusherctl` against real RabbitMQ TLS
//! listeners on loopback, with the test PKI (`helpers::pki`, pusher-sandbox's TestPki).
//!
//! `scripts/rabbitmq-tls.sh up <pki dir>` starts (once per run; idempotent) two TLS-only
//! RabbitMQ nodes beside the main one: `tls` (server certificate only) and `mtls` (client
//! certificate required). `make test` stops them at the end (`scripts/rabbitmq-tls.sh
//! down`). When they cannot start, a test fails with the reason in CI (`CI` set) and is
//! skipped with a loud message otherwise, like the Kamailio tests.
//!
//! Isolation: every test gets a vhost of its own on the node it uses. The one test that
//! restarts the `tls` node holds [`RESTART`] for writing; the others hold it for reading,
//! so no test sees that restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pusher_io::amqp::Publisher;
use pusher_sandbox::apns_mock::{ApnsMockConfig, MockApns};
use pusher_sandbox::pki::{ClientVariant, files};
use serde_json::json;
use tokio::sync::RwLock;

use crate::helpers::{World, couch_url, pki, rand_hex, set_config};

/// Held for writing by the test that restarts the `tls` node, for reading by the others.
static RESTART: RwLock<()> = RwLock::const_new(());

/// The two TLS nodes, as `scripts/rabbitmq-tls.sh up` reports them.
#[derive(Debug, Clone)]
struct Nodes {
    tls: Node,
    mtls: Node,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    port: u16,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this run is CI's (`CI` set to anything but empty/`false`/`0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn start_nodes() -> Result<Nodes, String> {
    let script = repo_root().join("scripts/rabbitmq-tls.sh");
    // The script has its own start timeout (90 s); this one only guards a hang.
    let out = Command::new("timeout")
        .arg("300")
        .arg(&script)
        .arg("up")
        .arg(&pki().dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`scripts/rabbitmq-tls.sh up` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .ok_or_else(|| format!("`scripts/rabbitmq-tls.sh up` printed no {name}: {stdout}"))
    };
    let port = |name: &str| -> Result<u16, String> {
        var(name)?
            .parse()
            .map_err(|e| format!("{name} is not a port: {e}"))
    };
    Ok(Nodes {
        tls: Node {
            name: var("PUSHER_TEST_AMQPS_NODE")?,
            port: port("PUSHER_TEST_AMQPS_PORT")?,
        },
        mtls: Node {
            name: var("PUSHER_TEST_AMQPS_MTLS_NODE")?,
            port: port("PUSHER_TEST_AMQPS_MTLS_PORT")?,
        },
    })
}

/// The TLS nodes (started on first use), or `None` after a loud message when the test may
/// be skipped; panics with the same message in CI, where a skip would hide a broken setup.
fn nodes_or_skip(test: &str) -> Option<Nodes> {
    static NODES: OnceLock<Result<Nodes, String>> = OnceLock::new();
    match NODES.get_or_init(start_nodes) {
        Ok(n) => Some(n.clone()),
        Err(why) => {
            let msg = format!(
                "amqps test `{test}` cannot run: the RabbitMQ TLS nodes did not start: {why}"
            );
            if in_ci() {
                panic!("{msg}");
            }
            eprintln!("\n!!!!!!!!!! SKIPPED (CI is not set): {msg}\n");
            None
        }
    }
}

fn rabbitmqctl(node: &Node, args: &[&str]) -> Result<String, String> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", &node.name])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl -n {} {args:?} failed: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A vhost of our own on a TLS node, deleted on drop.
struct TlsVhost {
    node: Node,
    name: String,
}

impl TlsVhost {
    fn new(node: &Node) -> Self {
        let name = format!("pusher-amqps-{}", rand_hex(10));
        rabbitmqctl(node, &["add_vhost", &name]).expect("add_vhost");
        rabbitmqctl(
            node,
            &["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"],
        )
        .expect("set_permissions");
        Self {
            node: node.clone(),
            name,
        }
    }

    /// `amqps://guest:guest@127.0.0.1:<port>/<vhost>?<query>`.
    fn uri(&self, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "?" };
        format!(
            "amqps://guest:guest@127.0.0.1:{}/{}{sep}{query}",
            self.node.port, self.name
        )
    }
}

impl Drop for TlsVhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&self.node, &["delete_vhost", &self.name]);
    }
}

fn pki_path(name: &str) -> String {
    pki().path(name).display().to_string()
}

/// `cacertfile=<test CA>`: server-verified TLS.
fn trust_test_ca() -> String {
    format!("cacertfile={}", pki_path(files::CA))
}

/// The test CA plus a client certificate it signed (certificate and key in one file).
fn mutual_tls() -> String {
    let client = pki()
        .client(ClientVariant::Pkcs8)
        .path
        .display()
        .to_string();
    format!("{}&certfile={client}&keyfile={client}", trust_test_ca())
}

/// Starts the service in-process with `w`'s settings (which name the broker), waits for
/// `/ready`, and points `w`'s publisher at `publish_uri`. Returns the publisher's
/// connection (keep it alive).
async fn start_service(w: &mut World, publish_uri: &str) -> lapin::Connection {
    let running = pusher::start(w.settings(), w.shutdown.clone())
        .await
        .expect("service starts");
    w.http_addr = running.http_addr;
    w.handle = Some(running.handle);
    w.wait_ready().await;
    connect_publisher(w, publish_uri).await
}

async fn connect_publisher(w: &mut World, uri: &str) -> lapin::Connection {
    let conn = pusher_io::amqp::connect(uri, "it-amqps-publisher")
        .await
        .expect("publisher connects over TLS");
    w.publisher = Some(Publisher::new(&conn).await.expect("publisher"));
    conn
}

/// A `reg_success` through the broker gives the device its `push` object.
async fn reg_success_reaches_the_device(w: &World, device: &str) {
    w.put_device(device, json!({"sip": {"username": "2001"}}))
        .await;
    w.publish_reg(&w.reg_success(0, device)).await;
    let doc = w.wait_device(device, 20, |d| d.get("push").is_some()).await;
    assert_eq!(doc["push"]["Token-ID"], "abc", "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusherd_over_server_verified_tls_from_the_environment() {
    let Some(nodes) = nodes_or_skip("pusherd_over_server_verified_tls_from_the_environment") else {
        return;
    };
    let _shared = RESTART.read().await;
    let vhost = TlsVhost::new(&nodes.tls);
    // The certificate names 127.0.0.1 and localhost: check it against the name given as
    // server_name_indication, as Erlang's amqp_uri does.
    let uri = vhost.uri(&format!(
        "{}&server_name_indication=localhost&heartbeat=30",
        trust_test_ca()
    ));
    let mut w = World::new().await;
    w.env.push(("PUSHER_AMQP_URI".into(), uri.clone()));
    w.set_rule("Harness", "^Linphone-Harness").await;
    let _conn = start_service(&mut w, &uri).await;

    reg_success_reaches_the_device(&w, "dev-tls").await;
    // The broker sees our connection as TLS.
    let conns = rabbitmqctl(&nodes.tls, &["list_connections", "vhost", "ssl", "name"])
        .expect("list_connections");
    let ours: Vec<&str> = conns.lines().filter(|l| l.contains(&vhost.name)).collect();
    assert!(!ours.is_empty(), "{conns}");
    assert!(ours.iter().all(|l| l.contains("true")), "{conns}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusherd_over_mutual_tls_from_a_kazoo_config_ini_after_a_plain_broker() {
    let Some(nodes) =
        nodes_or_skip("pusherd_over_mutual_tls_from_a_kazoo_config_ini_after_a_plain_broker")
    else {
        return;
    };
    let vhost = TlsVhost::new(&nodes.mtls);
    let uri = vhost.uri(&mutual_tls());

    // Without a client certificate the listener refuses us.
    let refused = pusher_io::amqp::connect(&vhost.uri(&trust_test_ca()), "it-no-client-cert")
        .await
        .map(drop)
        .expect_err("a client-certificate-required listener refuses a client without one");
    let msg = refused.to_string();
    assert!(msg.starts_with("AMQP connect failed: "), "{msg}");
    // The broker's alert, explained (or, if it closed first, the reset).
    assert!(
        msg.contains(
            "the broker sent alert CertificateRequired (does it require a client certificate"
        ) || msg.contains("Connection reset"),
        "{msg}"
    );
    assert!(!msg.contains("guest:guest"), "{msg}");

    // Kazoo's config.ini names the brokers (its [amqp] uri lines); the environment does
    // not. The first one is a plain amqp:// broker that is down: the rotation moves on
    // to the amqps:// one.
    let ini = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("amqps-config-{}.ini", rand_hex(8)));
    std::fs::write(
        &ini,
        format!("[amqp]\nuri = \"amqp://guest:guest@127.0.0.1:9/%2f\"\nuri = \"{uri}\"\n"),
    )
    .expect("write config.ini");
    let mut w = World::new().await;
    let vars: std::collections::HashMap<String, String> = [
        ("KAZOO_CONFIG", ini.display().to_string()),
        ("PUSHER_COUCH_URL", couch_url()),
        ("PUSHER_NODE", w.node.clone()),
        ("PUSHER_ZONE", format!("zone-{}", rand_hex(6))),
        ("PUSHER_HTTP_ADDR", "127.0.0.1:0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let settings = pusher::settings::Settings::from_map(&vars).expect("settings from config.ini");
    assert_eq!(settings.amqp_uri, "amqp://guest:guest@127.0.0.1:9/%2f");
    assert_eq!(settings.amqp_fallback_uris, std::slice::from_ref(&uri));

    w.set_rule("Harness", "^Linphone-Harness").await;
    let running = pusher::start(settings, w.shutdown.clone())
        .await
        .expect("service starts");
    w.http_addr = running.http_addr;
    w.handle = Some(running.handle);
    w.wait_ready().await;
    let _conn = connect_publisher(&mut w, &uri).await;
    reg_success_reaches_the_device(&w, "dev-mtls").await;
    w.stop().await;
    let _ = std::fs::remove_file(&ini);
}

/// Runs the real `pusherd` with `uri` until `done(log so far)` holds (or 60 s pass),
/// then stops it; returns its log.
async fn pusherd_log_until(uri: &str, done: impl Fn(&str) -> bool) -> String {
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("amqps-pusherd-{}.log", rand_hex(8)));
    let mut child = Command::new(env!("CARGO_BIN_EXE_pusherd"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PUSHER_AMQP_URI", uri)
        .env("PUSHER_COUCH_URL", couch_url())
        .env("PUSHER_NODE", format!("pusher@it-amqps-{}", rand_hex(6)))
        .env("PUSHER_HTTP_ADDR", "off")
        .env("KAZOO_CONFIG", "off")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn pusherd");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if done(&text) {
            break text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pusherd log never reached the expected state within 60 s:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let _ = std::fs::remove_file(&log);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_with_one_clear_line_and_verify_none_warns() {
    let Some(nodes) =
        nodes_or_skip("a_wrong_ca_is_refused_with_one_clear_line_and_verify_none_warns")
    else {
        return;
    };
    let _shared = RESTART.read().await;
    let vhost = TlsVhost::new(&nodes.tls);

    // The broker's certificate is signed by the test CA; we trust another one.
    let wrong = vhost.uri(&format!("cacertfile={}", pki_path(files::UNTRUSTED_CA)));
    let attempt = "AMQP session ended; reconnecting";
    let text = pusherd_log_until(&wrong, |t| t.matches(attempt).count() >= 2).await;
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(attempt)).collect();
    // One line per attempt, which says what failed and what to check.
    for line in &lines {
        assert!(
            line.contains(&format!(
                "TLS handshake with 127.0.0.1:{} failed: invalid peer certificate",
                nodes.tls.port
            )),
            "{line}"
        );
        assert!(line.contains("check cacertfile"), "{line}");
    }
    // Nothing else is logged about those failures above info, and no password anywhere.
    let noisy: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .filter(|l| !l.contains(attempt))
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("amqp") || l.contains("tls") || l.contains("certificate")
        })
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    assert!(!text.contains("guest:guest"), "{text}");

    // verify=verify_none connects (no CA at all) and says at every connect that it is off.
    let open = vhost.uri("verify=verify_none");
    let text = pusherd_log_until(&open, |t| t.contains("consuming")).await;
    let warning = text
        .lines()
        .find(|l| l.contains("TLS certificate verification is OFF"))
        .unwrap_or_else(|| panic!("no verify_none warning:\n{text}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("guest:***@127.0.0.1"), "{warning}");
    assert!(!text.contains("guest:guest"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusherd_reconnects_after_the_tls_broker_restarts() {
    let Some(nodes) = nodes_or_skip("pusherd_reconnects_after_the_tls_broker_restarts") else {
        return;
    };
    let _exclusive = RESTART.write().await;
    let vhost = TlsVhost::new(&nodes.tls);
    let uri = vhost.uri(&trust_test_ca());
    let mut w = World::new().await;
    w.env.push(("PUSHER_AMQP_URI".into(), uri.clone()));
    w.set_rule("Harness", "^Linphone-Harness").await;
    let conn = start_service(&mut w, &uri).await;
    reg_success_reaches_the_device(&w, "dev-before").await;

    // Restart the broker's app (its listeners go, connections are closed), wait until
    // the service notices, then bring it back.
    rabbitmqctl(&nodes.tls, &["stop_app"]).expect("stop_app");
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.ready_status().await == 200 {
        assert!(
            Instant::now() < deadline,
            "still ready 30 s after the broker stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rabbitmqctl(&nodes.tls, &["start_app"]).expect("start_app");
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.ready_status().await != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again within 60 s of the broker's restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);
    let _conn = connect_publisher(&mut w, &uri).await;
    reg_success_reaches_the_device(&w, "dev-after").await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusherctl_push_over_mutual_tls_from_config_ini_is_delivered_through_pusherd() {
    let Some(nodes) = nodes_or_skip(
        "pusherctl_push_over_mutual_tls_from_config_ini_is_delivered_through_pusherd",
    ) else {
        return;
    };
    let _shared = RESTART.read().await;
    let vhost = TlsVhost::new(&nodes.mtls);
    let uri = vhost.uri(&mutual_tls());
    let mock = MockApns::start(ApnsMockConfig::from_pki(pki()))
        .await
        .expect("mock APNs");

    let mut w = World::new().await;
    w.trust_mock_ca();
    w.env.push(("PUSHER_AMQP_URI".into(), uri.clone()));
    w.env
        .push(("PUSHER_PUSH_DEADLINE_MS".into(), "5000".into()));
    let app = format!("org.itamqps{}.push", rand_hex(8));
    set_config(
        &w.couch,
        &[&app, "apple"],
        json!({"certificate": pki().client(ClientVariant::Pkcs8).pem, "host": mock.base_url()}),
    )
    .await;
    w.put_device(
        "dev-push",
        json!({"push": {"Token-App": app, "Token-Type": "apple", "Token-ID": "0a1b2c3d4e5f",
                        "Token-Proxy": "sip:10.0.0.1:5060"}}),
    )
    .await;
    let _conn = start_service(&mut w, &uri).await;

    // pusherctl finds the broker in Kazoo's config.ini, as on a Kazoo node.
    let ini =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("amqps-ctl-{}.ini", rand_hex(8)));
    std::fs::write(&ini, format!("[amqp]\nuri = \"{uri}\"\n")).expect("write config.ini");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pusherctl"))
        .args(["pusher_maintenance", "push", &w.account_id, "dev-push"])
        .env("PUSHER_COUCH_URL", couch_url())
        .env_remove("PUSHER_AMQP_URI")
        .env("PUSHER_NODE", &w.node)
        .env("KAZOO_CONFIG", &ini)
        .env_remove("PUSHER_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("pusherctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("delivered in "), "{stdout}{stderr}");
    let got = mock.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].token, "0a1b2c3d4e5f");
    w.stop().await;
    let _ = std::fs::remove_file(&ini);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusherctl_names_a_refused_tls_broker_without_its_password() {
    let Some(nodes) = nodes_or_skip("pusherctl_names_a_refused_tls_broker_without_its_password")
    else {
        return;
    };
    let vhost = TlsVhost::new(&nodes.mtls);
    // No client certificate for a listener that requires one.
    let uri = vhost
        .uri(&trust_test_ca())
        .replace("guest:guest", "guest:ctl-s3cret");
    let couch = pusher_io::couch::CouchClient::new(&couch_url(), Duration::from_secs(5))
        .expect("couch client");
    let account = rand_hex(32);
    let db = pusher_core::account::account_db(&account).expect("account db");
    couch.create_db(&db).await.expect("account db");
    couch
        .put_doc(
            &db,
            &json!({"_id": "dev", "pvt_type": "device", "push": {"Token-App": "a",
                "Token-Type": "apple", "Token-ID": "t", "Token-Proxy": "sip:10.0.0.1"}}),
        )
        .await
        .expect("device");
    let out = Command::new(env!("CARGO_BIN_EXE_pusherctl"))
        .args(["pusher_maintenance", "push", &account, "dev"])
        .env("PUSHER_COUCH_URL", couch_url())
        .env("PUSHER_AMQP_URI", &uri)
        .env("KAZOO_CONFIG", "off")
        .env_remove("PUSHER_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("pusherctl runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!(
            "RabbitMQ unreachable at amqps://guest:***@127.0.0.1:{}/",
            nodes.mtls.port
        )),
        "{all}"
    );
    assert!(!all.contains("ctl-s3cret"), "{all}");
}

//! End to end with the real neighbour: Debian's Kamailio 5.6 with Kazoo's `kazoo` AMQP
//! module publishes `reg_success` for real SIP REGISTERs sent by sipp, over RabbitMQ, into
//! the service, into pouchdb-server; then Kamailio turns an INVITE carrying the
//! `X-KAZOO-PUSHER-*` headers (what Kazoo's kz_endpoint builds from the device's `push`
//! object) into the `push_req` that PUSHER-ROLE publishes, and the mock APNs receives it.
//!
//! The Kamailio config is `tests/kamailio/kamailio.cfg` at the repository root (see its
//! header); the sipp scenarios sit beside it. Each test starts its own Kamailio, pointed
//! at the test's vhost and listening on a free UDP port of 127.0.0.1, from a scratch
//! directory under `.run/kamailio-it/` (removed when the test passes, kept with
//! Kamailio's and sipp's logs when it fails). `scripts/kamailio.sh install` (run by
//! `make test`) installs Kamailio and sipp; without them a test fails when `CI` is set
//! and is skipped with a loud message otherwise.
//!
//! `mod cluster` checks the mixed-cluster promise: an Erlang pusher's declaration and
//! bindings are accepted while two of our `pusherd` binaries consume, and the two share
//! the work without duplicates.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use pusher_sandbox::apns_mock::{ApnsAuth, ApnsMockConfig, MockApns};
use pusher_sandbox::pki::ClientVariant;
use serde_json::{Value, json};

use crate::helpers::pki;
use crate::helpers::{World, rand_hex, set_config};

/// The test users of `tests/kamailio/kamailio.cfg` and their device ids (its htable
/// `devices`): the config and these constants must agree.
const LEGACY_USER: (&str, &str) = ("2001", "a2001000000000000000000000000000");
const RFC8599_USER: (&str, &str) = ("3001", "a3001000000000000000000000000000");
const PLAIN_USER: (&str, &str) = ("4001", "a4001000000000000000000000000000");
/// SIP domain the scenarios register in, and its `kz.encode`d form.
const REALM: &str = "acme.sip.example.com";
const REALM_ENCODED: &str = "acme%2Esip%2Eexample%2Ecom";
/// The User-Agent of `register-legacy.xml`, and a rule that matches it.
const LEGACY_UA: &str = "Linphone-E2E/5.2.0 (iPhone) iOS/17.2 PushKit \"quoted\"";
const LEGACY_RULE: &str = "^Linphone-E2E/";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scenario_dir() -> PathBuf {
    repo_root().join("tests/kamailio")
}

/// Whether this run is CI's (`CI` set to anything but empty/`false`/`0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Where Kamailio, its kazoo module and sipp are.
struct Tools {
    kamailio: PathBuf,
    sipp: PathBuf,
    module_dir: PathBuf,
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

fn find_tools() -> Result<Tools, String> {
    let kamailio = which("kamailio").ok_or("`kamailio` not found")?;
    let sipp = which("sipp").ok_or("`sipp` (Debian package sip-tester) not found")?;
    let module_dir = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join("kamailio/modules"))
    .find(|d| d.join("kazoo.so").is_file())
    .ok_or("kazoo.so not found (Debian package kamailio-kazoo-modules)")?;
    Ok(Tools {
        kamailio,
        sipp,
        module_dir,
    })
}

/// The tools, or `None` after a loud message when the test may be skipped; panics with
/// the same message in CI, where a skip would hide a missing install.
fn tools_or_skip(test: &str) -> Option<Tools> {
    match find_tools() {
        Ok(t) => Some(t),
        Err(why) => {
            let msg = format!(
                "Kamailio end-to-end test `{test}` cannot run: {why}. Install with \
                 `scripts/kamailio.sh install` (as root; `make test` runs it), which needs \
                 apt-get access to Debian's kamailio, kamailio-kazoo-modules and sip-tester."
            );
            if in_ci() {
                panic!("{msg}");
            }
            eprintln!("\n!!!!!!!!!! SKIPPED (CI is not set): {msg}\n");
            None
        }
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

/// A scratch directory under `.run/kamailio-it/`, removed on drop unless the test failed.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = repo_root()
            .join(".run/kamailio-it")
            .join(format!("{tag}-{}", rand_hex(8)));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Kamailio/sipp logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One Kamailio process (and its children, in their own process group), stopped on drop.
struct Kamailio {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio on a free UDP port, publishing to `amqp_uri` (the test's vhost),
    /// with `account_id` as the test users' account, and waits until its AMQP
    /// connection is open.
    async fn start(tools: &Tools, dir: &Path, amqp_uri: &str, account_id: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let port = free_udp_port();
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log).expect("kamailio log file");
        let err = out.try_clone().expect("log fd");
        let child = Command::new(&tools.kamailio)
            .current_dir(dir)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
            .arg(scenario_dir().join("kamailio.cfg"))
            .arg("-L")
            .arg(&tools.module_dir)
            .args(["-l", &format!("udp:127.0.0.1:{port}")])
            .arg("-Y")
            .arg(dir)
            .args(["-A", &format!("AMQP_URI=\"{amqp_uri}\"")])
            .args(["-A", &format!("ACCOUNT_ID=\"{account_id}\"")])
            .args(["-A", "NODE_NAME=\"pusher-e2e.local\""])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("spawn kamailio");
        let mut k = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = k.log_text();
            // The config logs the kazoo module's connection events.
            if text.contains("\"Event-Name\" : \"open\"") {
                break;
            }
            if let Some(status) = k.child.try_wait().expect("try_wait") {
                panic!("kamailio exited ({status}) during start-up:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not connect to RabbitMQ within 15 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        k
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sip_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the config publishes as `Proxy-Path` and `Proxy-URI` for UDP.
    fn proxy_uri(&self) -> String {
        format!("sip:127.0.0.1:{};transport=udp", self.port)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Runs one sipp scenario (one call) as `user` against Kamailio; panics with sipp's
/// output unless every call succeeded. Returns the Call-ID sipp used.
async fn sipp(
    tools: &Tools,
    dir: &Path,
    kamailio: &Kamailio,
    scenario: &str,
    user: &str,
    keys: &[(&str, &str)],
) -> String {
    let port = free_udp_port();
    let mut cmd = Command::new(&tools.sipp);
    cmd.current_dir(dir)
        .arg("-sf")
        .arg(scenario_dir().join(scenario))
        .args(["-s", user]);
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    let call_log = dir.join(format!("{scenario}.{user}.messages.log"));
    cmd.args(["-m", "1", "-i", "127.0.0.1", "-p", &port.to_string()])
        .arg(kamailio.sip_addr())
        .args(["-nostdin", "-timeout", "10s", "-trace_msg", "-message_file"])
        .arg(&call_log)
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("sipp task")
        .expect("run sipp");
    let messages = std::fs::read_to_string(&call_log).unwrap_or_default();
    assert!(
        out.status.success(),
        "sipp {scenario} for {user} failed ({}):\n{}\n{}\n--- messages ---\n{messages}\n--- kamailio ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        kamailio.log_text()
    );
    // The first Call-ID header sipp sent.
    messages
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Call-ID:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Call-ID in sipp's message log:\n{messages}"))
}

/// A queue of our own in the test's vhost that sees everything Kamailio publishes on
/// `registrar` and `pushes` (the service declares those exchanges; Kamailio does not).
struct Capture {
    channel: lapin::Channel,
    queue: String,
    _conn: lapin::Connection,
}

/// One captured message.
#[derive(Debug)]
struct Captured {
    exchange: String,
    routing_key: String,
    content_type: Option<String>,
    body: Value,
}

impl Capture {
    async fn new(w: &World) -> Self {
        let conn = pusher_io::amqp::connect(&w.vhost.uri(), "it-capture")
            .await
            .expect("capture connects");
        let channel = conn.create_channel().await.expect("channel");
        let queue = format!("it-capture-{}", rand_hex(6));
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare capture queue");
        for (exchange, key) in [
            ("registrar", "registration.success.#"),
            ("pushes", "notification.push.#"),
        ] {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind capture queue");
        }
        Self {
            channel,
            queue,
            _conn: conn,
        }
    }

    /// The next `n` messages, in order (fails after 10 s).
    async fn take(&self, n: usize) -> Vec<Captured> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            let msg = self
                .channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get");
            match msg {
                Some(m) => {
                    let d = m.delivery;
                    let body = serde_json::from_slice(&d.data).unwrap_or_else(|e| {
                        panic!(
                            "Kamailio published invalid JSON ({e}): {}",
                            String::from_utf8_lossy(&d.data)
                        )
                    });
                    got.push(Captured {
                        exchange: d.exchange.to_string(),
                        routing_key: d.routing_key.to_string(),
                        content_type: d.properties.content_type().as_ref().map(|c| c.to_string()),
                        body,
                    });
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "only {} of {n} messages from Kamailio within 10 s: {got:#?}",
                        got.len()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        got
    }
}

/// A world whose service trusts the mock APNs' CA.
async fn world() -> World {
    let mut w = World::new().await;
    w.trust_mock_ca();
    w
}

/// Asserts a `reg_success` as Kamailio published it, for `user` registered through
/// `kamailio` with `user_agent`.
fn assert_reg_success(
    m: &Captured,
    w: &World,
    kamailio: &Kamailio,
    (user, device): (&str, &str),
    user_agent: &str,
) {
    assert_eq!(m.exchange, "registrar");
    assert_eq!(
        m.routing_key,
        format!("registration.success.{REALM_ENCODED}.{user}")
    );
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    let b = &m.body;
    for (field, value) in [
        ("Event-Category", "directory"),
        ("Event-Name", "reg_success"),
        ("Status", "Registered"),
        ("Realm", REALM),
        ("Username", user),
        ("From-User", user),
        ("From-Host", REALM),
        ("To-User", user),
        ("To-Host", REALM),
        ("User-Agent", user_agent),
        ("Proxy-Protocol", "udp"),
        ("Proxy-IP", "127.0.0.1"),
        ("Source-IP", "127.0.0.1"),
        ("App-Name", "kamailio"),
        ("Node", "kamailio@pusher-e2e.local"),
    ] {
        assert_eq!(b[field], json!(value), "{field} in {b:#}");
    }
    assert_eq!(b["Proxy-Path"], json!(kamailio.proxy_uri()), "{b:#}");
    assert_eq!(b["Proxy-URI"], json!(kamailio.proxy_uri()), "{b:#}");
    assert_eq!(b["Proxy-Port"], json!(kamailio.port.to_string()), "{b:#}");
    assert_eq!(b["First-Registration"], json!(true), "{b:#}");
    assert!(b["Expires"].as_u64().is_some_and(|e| e > 0), "{b:#}");
    assert!(b["Event-Timestamp"].is_u64(), "{b:#}");
    assert!(
        b["Call-ID"].as_str().is_some_and(|c| !c.is_empty()),
        "{b:#}"
    );
    assert!(
        b["Contact"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("<sip:{user}@127.0.0.1:"))),
        "{b:#}"
    );
    assert!(
        b["Msg-ID"]
            .as_str()
            .is_some_and(pusher_core::apns::is_canonical_uuid),
        "{b:#}"
    );
    assert!(b["Server-ID"].is_string(), "{b:#}");
    assert_eq!(
        b["Custom-Channel-Vars"],
        json!({
            "Account-ID": w.account_id,
            "Authorizing-ID": device,
            "Authorizing-Type": "device",
            "Username": user,
            "Realm": REALM,
            "Account-Realm": REALM,
        })
    );
}

/// Device docs for the three test users, each with a field the service must keep.
async fn put_devices(w: &World) {
    for (user, device) in [LEGACY_USER, RFC8599_USER, PLAIN_USER] {
        w.put_device(
            device,
            json!({"sip": {"username": user, "realm": REALM}, "name": format!("phone {user}")}),
        )
        .await;
    }
}

/// The device doc minus CouchDB's `_rev` (to compare "untouched").
fn without_rev(mut doc: Value) -> Value {
    if let Some(o) = doc.as_object_mut() {
        o.remove("_rev");
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_through_kamailio_then_a_push_reaches_mock_apns() {
    let Some(tools) =
        tools_or_skip("sipp_registers_through_kamailio_then_a_push_reaches_mock_apns")
    else {
        return;
    };
    let scratch = Scratch::new("e2e");
    let mock = MockApns::start(ApnsMockConfig::from_pki(pki()))
        .await
        .expect("mock APNs");
    let mut w = world().await;
    let legacy_app = format!("org.e2e{}.legacy", rand_hex(6));
    let rfc_app = format!("org.e2e{}.rfc", rand_hex(6));
    let legacy_token = format!("0a1b2c3d{}", rand_hex(24));
    let rfc_token = rand_hex(64);
    w.set_rule("E2E", LEGACY_RULE).await;
    w.set_node_config(&["rfc8599"], json!(true)).await;
    set_config(
        &w.couch,
        &[&legacy_app, "apple"],
        json!({"certificate": pki().client(ClientVariant::Pkcs8).pem, "host": mock.base_url()}),
    )
    .await;
    put_devices(&w).await;
    let plain_before = without_rev(w.device(PLAIN_USER.1).await);
    w.start().await;
    let capture = Capture::new(&w).await;
    let kamailio = Kamailio::start(&tools, &scratch.0, &w.vhost.uri(), &w.account_id).await;

    // The desk phone first: when the two push devices are done and the queue is
    // drained, its reg_success has certainly been handled too.
    sipp(
        &tools,
        &scratch.0,
        &kamailio,
        "register-plain.xml",
        PLAIN_USER.0,
        &[],
    )
    .await;
    sipp(
        &tools,
        &scratch.0,
        &kamailio,
        "register-legacy.xml",
        LEGACY_USER.0,
        &[("app_id", &legacy_app), ("token", &legacy_token)],
    )
    .await;
    sipp(
        &tools,
        &scratch.0,
        &kamailio,
        "register-rfc8599.xml",
        RFC8599_USER.0,
        &[("app_id", &rfc_app), ("token", &rfc_token)],
    )
    .await;

    // What Kamailio published: Kazoo's reg_success, one per REGISTER, in order.
    let regs = capture.take(3).await;
    assert_reg_success(
        &regs[0],
        &w,
        &kamailio,
        PLAIN_USER,
        "Yealink SIP-T46S 66.86.0.15",
    );
    assert_eq!(regs[0].body["Expires"], json!(1800), "{:#}", regs[0].body);
    assert_reg_success(&regs[1], &w, &kamailio, LEGACY_USER, LEGACY_UA);
    assert!(
        regs[1].body["Contact"]
            .as_str()
            .is_some_and(|c| c
                .ends_with(";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"")),
        "{:#}",
        regs[1].body
    );
    assert_reg_success(&regs[2], &w, &kamailio, RFC8599_USER, "RFC8599-Client/0.1");
    assert_eq!(regs[2].body["Expires"], json!(600), "{:#}", regs[2].body);

    // What the service wrote.
    let proxy = kamailio.proxy_uri();
    let legacy = w
        .wait_device(LEGACY_USER.1, 10, |d| d.get("push").is_some())
        .await;
    assert_eq!(
        legacy["push"],
        json!({
            "Token-App": legacy_app,
            "Token-Type": "apple",
            "Token-ID": legacy_token,
            "Token-Proxy": proxy,
            "Token-Public-Proxy": proxy,
        })
    );
    assert_eq!(legacy["name"], "phone 2001", "other fields are kept");
    let rfc = w
        .wait_device(RFC8599_USER.1, 10, |d| d.get("push").is_some())
        .await;
    assert_eq!(
        rfc["push"],
        json!({
            "Token-App": rfc_app,
            "Token-Type": "apple",
            "Token-ID": rfc_token,
            "Token-Proxy": proxy,
            "Token-Public-Proxy": proxy,
        })
    );
    w.wait_queue_drained().await;
    assert_eq!(
        without_rev(w.device(PLAIN_USER.1).await),
        plain_before,
        "the desk phone's doc is untouched (no push object)"
    );

    // A call to the legacy device: Kazoo's kz_endpoint turns its push object into
    // X-KAZOO-PUSHER-* headers on the INVITE to Kamailio, whose pusher role publishes
    // the push_req.
    let p = &legacy["push"];
    let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    let call_id = sipp(
        &tools,
        &scratch.0,
        &kamailio,
        "invite-push.xml",
        LEGACY_USER.0,
        &[
            ("token_id", &text("Token-ID")),
            ("token_type", &text("Token-Type")),
            ("token_app", &text("Token-App")),
            ("public_proxy", &text("Token-Public-Proxy")),
        ],
    )
    .await;
    let push = capture.take(1).await.remove(0);
    assert_eq!(push.exchange, "pushes");
    assert_eq!(
        push.routing_key,
        format!("notification.push.apple.{legacy_token}")
    );
    let req = &push.body;
    assert_eq!(req["Event-Category"], "notification");
    assert_eq!(req["Event-Name"], "push_req");
    assert_eq!(req["Call-ID"], json!(call_id));
    assert_eq!(req["Payload"]["proxy"], json!(proxy));

    let got = mock.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "exactly one push: {got:?}");
    let r = &got[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.token, legacy_token);
    assert_eq!(r.header("apns-topic"), Some(legacy_app.as_str()));
    assert_eq!(
        r.header("apns-id"),
        req["Msg-ID"].as_str(),
        "Kamailio's Msg-ID becomes the apns-id"
    );
    assert_eq!(
        r.auth,
        ApnsAuth::ClientCert {
            subject_cn: ClientVariant::Pkcs8.subject_cn()
        }
    );
    assert_eq!(r.body["aps"]["alert"]["loc-key"], "IC_SIL");
    assert_eq!(
        r.body["aps"]["alert"]["loc-args"],
        json!(["5551234 - Alice Caller"])
    );
    assert_eq!(r.body["aps"]["sound"], "ring.caf");
    assert_eq!(r.body["aps"]["call-id"], json!(call_id));
    assert_eq!(r.body["call-id"], json!(call_id));
    assert_eq!(r.body["proxy"], json!(proxy));
    assert_eq!(r.body["caller-id-number"], "5551234");
    assert_eq!(r.body["caller-id-name"], "Alice Caller");
    assert_eq!(
        r.body["registration-token"], req["Payload"]["registration-token"],
        "{:#}",
        r.body
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rfc8599_off_pn_params_are_ignored() {
    let Some(tools) = tools_or_skip("with_rfc8599_off_pn_params_are_ignored") else {
        return;
    };
    let scratch = Scratch::new("rfc8599-off");
    let mut w = World::new().await;
    w.set_rule("E2E", LEGACY_RULE).await;
    w.set_node_config(&["rfc8599"], json!(false)).await;
    put_devices(&w).await;
    let rfc_before = without_rev(w.device(RFC8599_USER.1).await);
    w.start().await;
    let capture = Capture::new(&w).await;
    let kamailio = Kamailio::start(&tools, &scratch.0, &w.vhost.uri(), &w.account_id).await;
    let app = format!("org.e2e{}.rfc", rand_hex(6));
    sipp(
        &tools,
        &scratch.0,
        &kamailio,
        "register-rfc8599.xml",
        RFC8599_USER.0,
        &[("app_id", &app), ("token", &rand_hex(64))],
    )
    .await;
    // A rule-matched device after it, as a marker that the service is working.
    let token = rand_hex(32);
    sipp(
        &tools,
        &scratch.0,
        &kamailio,
        "register-legacy.xml",
        LEGACY_USER.0,
        &[("app_id", &app), ("token", &token)],
    )
    .await;
    let regs = capture.take(2).await;
    assert_reg_success(&regs[0], &w, &kamailio, RFC8599_USER, "RFC8599-Client/0.1");
    assert_reg_success(&regs[1], &w, &kamailio, LEGACY_USER, LEGACY_UA);
    let legacy = w
        .wait_device(LEGACY_USER.1, 10, |d| d.get("push").is_some())
        .await;
    assert_eq!(legacy["push"]["Token-ID"], json!(token));
    w.wait_queue_drained().await;
    assert_eq!(
        without_rev(w.device(RFC8599_USER.1).await),
        rfc_before,
        "rfc8599 off: pn-provider/pn-param/pn-prid do not make a push object"
    );
    w.stop().await;
}

/// Mixed cluster: the shared queue as Kazoo's Erlang pusher declares and binds it, and
/// several of our instances on it. (`topology::erlang_pusher_can_declare_the_same_queue`
/// covers the declaration against one in-process instance; this adds the bindings, two
/// real `pusherd` processes and the division of work between them.)
mod cluster {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, ExchangeKind};
    use pusher_sandbox::apns_mock::{ApnsMockConfig, MockApns};
    use pusher_sandbox::pki::ClientVariant;
    use serde_json::{Value, json};

    use super::Scratch;
    use crate::helpers::pki;
    use crate::helpers::{World, couch_url, fixture_bodies, rand_hex, set_config};

    /// How many pushes the two instances share.
    const PUSHES: usize = 40;

    /// A `pusherd` binary writing JSON logs to a file; SIGTERM on drop.
    struct Pusherd {
        child: Child,
        http: String,
        log: std::path::PathBuf,
    }

    impl Pusherd {
        fn spawn(w: &World, dir: &Path, name: &str) -> Self {
            let http = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.to_string())
                .expect("free port");
            let log = dir.join(format!("{name}.log"));
            let file = std::fs::File::create(&log).expect("log file");
            let child = Command::new(env!("CARGO_BIN_EXE_pusherd"))
                .env("PUSHER_AMQP_URI", w.vhost.uri())
                .env("PUSHER_COUCH_URL", couch_url())
                // The same node name: both see the same node-scoped config, like two
                // instances of one deployment.
                .env("PUSHER_NODE", &w.node)
                .env("PUSHER_HTTP_ADDR", &http)
                .env(
                    "PUSHER_EXTRA_CA_FILE",
                    pki().path(pusher_sandbox::pki::files::CA),
                )
                .env("PUSHER_LOG_FORMAT", "json")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .expect("spawn pusherd");
            Self { child, http, log }
        }

        async fn wait_ready(&mut self) {
            let url = format!("http://{}/ready", self.http);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(r) = reqwest::get(&url).await
                    && r.status() == 200
                {
                    return;
                }
                assert!(
                    self.child.try_wait().expect("try_wait").is_none(),
                    "pusherd exited early: {}",
                    self.log_text()
                );
                assert!(Instant::now() < deadline, "pusherd not ready within 15 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        fn log_text(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }

        /// Msg-IDs of the pushes this instance logged as delivered.
        fn delivered(&self) -> Vec<String> {
            self.log_text()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["message"] == "push delivered")
                .map(|v| {
                    v["span"]["msg_id"]
                        .as_str()
                        .unwrap_or_else(|| panic!("push span without msg_id: {v}"))
                        .to_string()
                })
                .collect()
        }

        /// SIGTERM; waits for a clean exit.
        async fn stop(&mut self) {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            let status = loop {
                if let Some(s) = self.child.try_wait().expect("try_wait") {
                    break s;
                }
                assert!(Instant::now() < deadline, "pusherd did not stop");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(status.success(), "pusherd exit status {status}");
        }
    }

    impl Drop for Pusherd {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    /// Declares the queue and binds it exactly as Kazoo's Erlang pusher does
    /// (`pusher_listener`: `x-max-length` short 100, `x-message-ttl` signed int 60000,
    /// auto-delete, the three bindings); every call must be accepted.
    async fn declare_like_erlang(w: &World) -> u32 {
        let conn = pusher_io::amqp::connect(&w.vhost.uri(), "erlang-pusher-like")
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        for (name, kind) in [
            ("pushes", ExchangeKind::Topic),
            ("registrar", ExchangeKind::Topic),
            ("targeted", ExchangeKind::Direct),
        ] {
            ch.exchange_declare(
                name.into(),
                kind,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("Kazoo's declaration of exchange {name} refused: {e}"));
        }
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::ShortInt(100));
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
        let q = ch
            .queue_declare(
                "pusher_shared_listener".into(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await
            .expect("Kazoo's queue declaration is accepted");
        for (exchange, key) in [
            ("pushes", "notification.push.*.*"),
            ("registrar", "registration.success.*.*"),
            ("targeted", "pusher_shared_listener"),
        ] {
            ch.queue_bind(
                "pusher_shared_listener".into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("Kazoo's binding {exchange}/{key} refused: {e}"));
        }
        let consumers = q.consumer_count();
        let _ = conn.close(200, "bye".into()).await;
        consumers
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_share_the_queue_without_duplicates_beside_an_erlang_declaration() {
        let scratch = Scratch::new("cluster");
        let mock = MockApns::start(ApnsMockConfig::from_pki(pki()))
            .await
            .expect("mock APNs");
        let w = World::new().await;
        let app = format!("org.cluster{}.app", rand_hex(6));
        set_config(
            &w.couch,
            &[&app, "apple"],
            json!({"certificate": pki().client(ClientVariant::Pkcs8).pem, "host": mock.base_url()}),
        )
        .await;
        let mut a = Pusherd::spawn(&w, &scratch.0, "pusherd-a");
        let mut b = Pusherd::spawn(&w, &scratch.0, "pusherd-b");
        a.wait_ready().await;
        b.wait_ready().await;

        assert_eq!(
            declare_like_erlang(&w).await,
            2,
            "both of our instances consume the queue the Erlang declaration names"
        );

        let conn = pusher_io::amqp::connect(&w.vhost.uri(), "it-publisher")
            .await
            .expect("publisher connects");
        let publisher = pusher_io::amqp::Publisher::new(&conn)
            .await
            .expect("publisher");
        let mut sent = BTreeSet::new();
        // Unpaced on purpose: PUSHES (40) is under the queue's `x-max-length` (100), so
        // even with no consumer at all nothing could be dropped.
        for i in 0..PUSHES {
            let mut body = fixture_bodies("push_req")[0].clone();
            let msg_id = uuid::Uuid::new_v4().to_string();
            let token = format!("{i:04x}{}", rand_hex(28));
            body["Token-App"] = json!(app);
            body["Token-ID"] = json!(token);
            body["Msg-ID"] = json!(msg_id);
            publisher
                .publish_json(
                    "pushes",
                    &format!("notification.push.apple.{token}"),
                    body.to_string().as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish confirmed");
            sent.insert(msg_id);
        }

        let got = mock.wait_for(PUSHES, Duration::from_secs(20)).await;
        assert_eq!(got.len(), PUSHES, "every push reached the provider");
        w.wait_queue_drained().await;
        // Both instances stopped (SIGTERM, clean exit): nothing more can reach the mock,
        // so what it recorded is final — a push handled twice is in it.
        a.stop().await;
        b.stop().await;
        let at_provider: Vec<String> = mock
            .received()
            .iter()
            .map(|r| r.header("apns-id").unwrap_or_default().to_string())
            .collect();
        assert_eq!(at_provider.len(), PUSHES, "no push was sent twice");
        assert_eq!(
            at_provider.iter().cloned().collect::<BTreeSet<_>>(),
            sent,
            "one request per published push_req"
        );

        let (by_a, by_b) = (a.delivered(), b.delivered());
        eprintln!(
            "deliveries: pusherd-a {}, pusherd-b {}",
            by_a.len(),
            by_b.len()
        );
        assert!(
            !by_a.is_empty() && !by_b.is_empty(),
            "both instances get work: a {}, b {}",
            by_a.len(),
            by_b.len()
        );
        let (set_a, set_b): (BTreeSet<_>, BTreeSet<_>) = (
            by_a.iter().cloned().collect(),
            by_b.iter().cloned().collect(),
        );
        assert_eq!(set_a.len(), by_a.len(), "pusherd-a handled a push twice");
        assert_eq!(set_b.len(), by_b.len(), "pusherd-b handled a push twice");
        assert!(
            set_a.is_disjoint(&set_b),
            "a push handled by both: {:?}",
            set_a.intersection(&set_b).collect::<Vec<_>>()
        );
        assert_eq!(
            set_a.union(&set_b).cloned().collect::<BTreeSet<_>>(),
            sent,
            "the two logs account for every push"
        );
        assert_eq!(
            mock.connections_accepted(),
            2,
            "one APNs client per instance"
        );
    }
}

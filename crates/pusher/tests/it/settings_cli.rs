//! The real `pusherd` binary and its settings sources: a Kazoo `config.ini` alone is enough
//! to run it, `--print-config` shows where each value came from, `--check` probes it, and
//! bad settings stop it with one line naming their source.
//!
//! Every child runs with a cleared environment, so neither the developer's `PUSHER_*`
//! variables nor a real `/etc/kazoo` leak in (`KAZOO_CONFIG` is always set).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Vhost, couch_url, rand_hex};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A file in a fresh temporary directory.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pusher-settings-cli-{}", rand_hex(10)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// `pusherd` with exactly these environment variables.
fn pusherd(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pusherd"));
    cmd.env_clear().stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(env: &[(&str, &str)], arg: &str) -> Output {
    pusherd(env).arg(arg).output().expect("run pusherd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A Kazoo `config.ini` pointing at the test broker (`amqp_uri`) and CouchDB.
fn kazoo_ini_for(amqp_uri: &str) -> String {
    let couch = reqwest::Url::parse(&couch_url()).expect("couch url");
    let mut bigcouch = format!(
        "ip = \"{}\"\nport = {}\n",
        couch.host_str().expect("couch host"),
        couch.port_or_known_default().expect("couch port")
    );
    if !couch.username().is_empty() {
        bigcouch.push_str(&format!("username = \"{}\"\n", couch.username()));
    }
    if let Some(p) = couch.password() {
        bigcouch.push_str(&format!("password = \"{p}\"\n"));
    }
    format!(
        "; written by settings_cli.rs\n[amqp]\nuri = \"{amqp_uri}\"\n\n\
         [bigcouch]\ncompact_automatically = true\ncookie = change_me\n{bigcouch}\
         admin_port = 15986\n\n[kazoo_apps]\ncookie = change_me\n\n\
         [log]\nsyslog = info\nconsole = notice\nfile = error\n"
    )
}

/// A running `pusherd`, killed if a test fails before stopping it.
struct Running(Child);

impl Running {
    fn spawn(env: &[(&str, &str)]) -> Self {
        let child = pusherd(env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn pusherd");
        Self(child)
    }

    fn exited(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_some()
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                assert!(status.success(), "pusherd exited with {status}");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "pusherd did not stop within 5 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A URL as `--print-config` shows it (password replaced by `***`).
fn redacted(url: &str) -> String {
    let mut u = reqwest::Url::parse(url).expect("url");
    if u.password().is_some() {
        u.set_password(Some("***")).expect("password");
    }
    u.to_string()
}

#[test]
fn kazoo_ini_alone_runs_the_service_and_check_and_print_config_use_the_same_sources() {
    let vhost = Vhost::new();
    let ini = temp_file("config.ini", &kazoo_ini_for(&vhost.uri()));
    let addr = format!("127.0.0.1:{}", free_port());
    let node = format!("pusher@cli-{}", rand_hex(6));
    // The HTTP address comes only from the TOML file: --check must read it too.
    let toml = temp_file(
        "pusher.toml",
        &format!("# pusherd\nhttp_addr = \"{addr}\"\nnode = \"{node}\"\nprefetch = 20\n"),
    );
    let (ini, toml) = (ini.to_string_lossy(), toml.to_string_lossy());
    let env = [
        ("KAZOO_CONFIG", ini.as_ref()),
        ("PUSHER_CONFIG", toml.as_ref()),
        ("RUST_LOG", "warn"),
    ];

    let printed = run(&env, "--print-config");
    assert_eq!(printed.status.code(), Some(0), "{}", text(&printed.stderr));
    let shown = text(&printed.stdout);
    assert!(
        shown.contains(&format!(
            "amqp_uri = \"{}\"  # {ini}:3 [amqp] uri\n",
            redacted(&vhost.uri())
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("http_addr = \"{addr}\"  # {toml}:2\n")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("prefetch = 20  # {toml}:4\n")),
        "{shown}"
    );
    assert!(shown.contains("couch_url = \"http://"), "{shown}");
    assert!(shown.contains("[bigcouch] ip\n"), "{shown}");

    let mut child = Running::spawn(&env);
    let started = Instant::now();
    loop {
        let probe = run(&env, "--check");
        if probe.status.success() {
            let line = text(&probe.stdout);
            assert_eq!(
                line,
                format!("pusherd --check: healthy: http://{addr}/ready answered 200\n")
            );
            break;
        }
        assert_eq!(probe.status.code(), Some(1), "{}", text(&probe.stderr));
        assert!(!child.exited(), "pusherd exited early");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "pusherd never became ready: {}",
            text(&probe.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("ready (by --check) after {:?}", started.elapsed());
    let live = run(&env, "--check=live");
    assert_eq!(live.status.code(), Some(0), "{}", text(&live.stderr));
    assert!(text(&live.stdout).contains("/health answered 200"));
    child.stop();

    // Nothing listens any more: unhealthy, exit 1, one line.
    let after = run(&env, "--check");
    assert_eq!(after.status.code(), Some(1));
    let err = text(&after.stderr);
    assert!(
        err.starts_with(&format!(
            "pusherd --check: unhealthy: http://{addr}/ready: cannot connect"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn check_reports_not_ready_while_the_broker_is_unreachable_but_live() {
    let addr = format!("127.0.0.1:{}", free_port());
    let dead_broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let couch = couch_url();
    let env = [
        ("KAZOO_CONFIG", "off"),
        ("PUSHER_AMQP_URI", dead_broker.as_str()),
        ("PUSHER_COUCH_URL", couch.as_str()),
        ("PUSHER_HTTP_ADDR", addr.as_str()),
        ("PUSHER_NODE", "pusher@cli-dead-broker"),
        // The reconnect errors are expected here.
        ("RUST_LOG", "off"),
    ];
    let child = Running::spawn(&env);
    let started = Instant::now();
    while !run(&env, "--check=live").status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/health never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = run(&env, "--check");
    assert_eq!(ready.status.code(), Some(1));
    let err = text(&ready.stderr);
    assert_eq!(
        err,
        format!("pusherd --check: unhealthy: http://{addr}/ready answered 503\n")
    );
    child.stop();
}

#[test]
fn check_gives_up_after_two_seconds_on_a_silent_server() {
    // Accepted by the kernel (backlog), never answered.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let env = [("KAZOO_CONFIG", "off"), ("PUSHER_HTTP_ADDR", addr.as_str())];
    let started = Instant::now();
    let out = run(&env, "--check");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no answer within 2000 ms"),
        "{}",
        text(&out.stderr)
    );
    // The floor proves it waited its 2 s; the ceiling only guards against a hang (process
    // start-up on a loaded machine is not what this measures).
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    drop(silent);
}

#[test]
fn check_with_http_off_or_bad_settings_is_unhealthy_not_a_crash() {
    let off = run(
        &[("KAZOO_CONFIG", "off"), ("PUSHER_HTTP_ADDR", "off")],
        "--check",
    );
    assert_eq!(off.status.code(), Some(1));
    assert!(text(&off.stderr).contains("PUSHER_HTTP_ADDR is off"));
    let bad = run(
        &[("KAZOO_CONFIG", "off"), ("PUSHER_PREFETCH", "-1")],
        "--check",
    );
    // Docker reserves exit 2: the probe says 1 whatever went wrong.
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("PUSHER_PREFETCH=\"-1\" is invalid"));
}

#[test]
fn bad_settings_stop_pusherd_with_one_line_naming_the_source() {
    let toml = temp_file(
        "pusher.toml",
        "zone = \"east\"\n\nshutdown_grace_ms = 99999999\n",
    );
    let toml = toml.to_string_lossy();
    let unknown = temp_file("unknown.toml", "prefetch = 3\namqp_url = \"amqp://x\"\n");
    let unknown = unknown.to_string_lossy();
    let ini = temp_file(
        "config.ini",
        "[bigcouch]\nip = \"db\"\nport = 99999\npassword = \"hunter2\"\n",
    );
    let ini = ini.to_string_lossy();
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (
            vec![("KAZOO_CONFIG", "off"), ("PUSHER_CONFIG", toml.as_ref())],
            format!("shutdown_grace_ms = \"99999999\" ({toml} line 3) is invalid"),
        ),
        (
            vec![("KAZOO_CONFIG", "off"), ("PUSHER_CONFIG", unknown.as_ref())],
            format!("{unknown} line 2: unknown key `amqp_url`"),
        ),
        (
            vec![("KAZOO_CONFIG", ini.as_ref())],
            format!("Kazoo config {ini} line 3: [bigcouch] port is invalid"),
        ),
        (
            vec![("KAZOO_CONFIG", "/nonexistent/kazoo/config.ini")],
            "cannot read KAZOO_CONFIG file /nonexistent/kazoo/config.ini".to_string(),
        ),
        (
            vec![
                ("KAZOO_CONFIG", "off"),
                ("PUSHER_CONFIG", "/nonexistent/pusher.toml"),
            ],
            "cannot read PUSHER_CONFIG file /nonexistent/pusher.toml".to_string(),
        ),
    ];
    for (env, want) in cases {
        for arg in [None, Some("--print-config")] {
            let mut cmd = pusherd(&env);
            if let Some(a) = arg {
                cmd.arg(a);
            }
            let out = cmd.output().expect("run pusherd");
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{arg:?} {env:?}: {err}");
            assert!(err.starts_with(&format!("pusherd: {want}")), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert!(out.stdout.is_empty());
        }
    }
}

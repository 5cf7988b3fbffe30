//! The real `pusherd` binary: ready quickly, stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Vhost, couch_url, rand_hex};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusherd_gets_ready_and_exits_zero_on_sigterm() {
    crate::helpers::init_tracing();
    let vhost = Vhost::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pusherd"))
        .env("PUSHER_AMQP_URI", vhost.uri())
        .env("PUSHER_COUCH_URL", couch_url())
        .env("PUSHER_HTTP_ADDR", &addr)
        .env("PUSHER_NODE", format!("pusher@bin-{}", rand_hex(6)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn pusherd");
    let url = format!("http://{addr}/ready");
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "pusherd never became ready"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "pusherd exited early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("pusherd ready after {:?}", started.elapsed());
    let health = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);

    let pid = child.id().to_string();
    let stop = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(5),
            "pusherd did not exit within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("pusherd exited {status} after {:?}", stop.elapsed());
    assert!(status.success(), "exit status {status}");
}

#[test]
fn pusherd_refuses_bad_settings_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_pusherd"))
        .env("PUSHER_HTTP_ADDR", "nonsense")
        .output()
        .expect("run pusherd");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PUSHER_HTTP_ADDR"), "{err}");
}

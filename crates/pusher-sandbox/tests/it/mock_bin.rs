//! The `pusher-mock` binary: generates the PKI, writes mock.json, serves, stops on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{http_client, scratch_dir};

#[tokio::test]
async fn pusher_mock_writes_mock_json_and_stops_on_sigterm() {
    let dir = scratch_dir("bin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pusher-mock"))
        .args(["--dir", dir.to_str().unwrap(), "--latency-ms", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mock_json = dir.join("mock.json");
    let started = Instant::now();
    while !mock_json.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mock.json never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info: Value = serde_json::from_str(&std::fs::read_to_string(&mock_json).unwrap()).unwrap();
    for key in [
        "apns_url",
        "fcm_url",
        "token_uri",
        "ca_file",
        "p8_file",
        "service_account_file",
    ] {
        assert!(info[key].is_string(), "{key}: {info}");
    }
    assert!(info["client_pem"]["pkcs1"].is_string());
    let sa: Value = serde_json::from_str(
        &std::fs::read_to_string(info["service_account_file"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(sa["token_uri"], info["token_uri"]);
    let client = http_client(false);
    let got: Value = client
        .get(info["admin_received_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, serde_json::json!({"apns": [], "fcm": []}));

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!mock_json.exists(), "mock.json must be removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

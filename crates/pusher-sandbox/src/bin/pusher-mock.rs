//! `pusher-mock`: mock APNs and mock FCM (+ OAuth) in one process, for `make demo` and
//! manual runs.
//!
//! Generates (or reuses) the test PKI in `--dir`, starts both mocks, registers the
//! service account with the FCM mock, and once both listen writes `DIR/mock.json` with
//! everything a pusher config needs (URLs, CA, client PEMs, `.p8`, team/key ids,
//! service-account file). Serves until SIGTERM or ctrl-c, then removes `mock.json`.
//! `GET <fcm_url>/_mock/received` shows what both mocks received.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pusher_sandbox::apns_mock::{ApnsMockConfig, MockApns};
use pusher_sandbox::fcm_mock::{FcmMockConfig, MockFcm};
use pusher_sandbox::pki::{BUNDLE_ID, ClientVariant, TestPki, files};
use serde_json::{Map, Value, json};

/// Run mock APNs and FCM providers with a generated test PKI.
#[derive(Debug, Parser)]
struct Args {
    /// Directory for the PKI and mock.json (PKI generated when missing).
    #[arg(long, default_value = "target/pusher-mock")]
    dir: PathBuf,
    /// APNs mock port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    apns_port: u16,
    /// FCM mock port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    fcm_port: u16,
    /// Latency added to every APNs and FCM send response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Regenerate the PKI even if the directory already holds one.
    #[arg(long)]
    regenerate: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pusher_sandbox=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mock_json = args.dir.join("mock.json");
    let _ = std::fs::remove_file(&mock_json);

    let pki = if args.regenerate {
        TestPki::generate(&args.dir)
    } else {
        TestPki::load_or_generate(&args.dir)
    }
    .context("Failed to prepare the test PKI")?;
    let latency = Duration::from_millis(args.latency_ms);

    let apns = MockApns::start_on(
        ApnsMockConfig {
            latency,
            ..ApnsMockConfig::from_pki(&pki)
        },
        args.apns_port,
    )
    .await?;
    let fcm = MockFcm::start_on(
        FcmMockConfig {
            latency,
            apns: Some(apns.recorder()),
            ..FcmMockConfig::default()
        },
        args.fcm_port,
    )
    .await?;
    let token_uri = fcm.token_uri();
    fcm.add_service_account(&pki.service_account_json(&token_uri))?;
    let sa_file = pki.write_service_account(&token_uri)?;

    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p).display().to_string();
    let client_pem: Map<String, Value> = ClientVariant::ALL
        .iter()
        .map(|v| {
            (
                v.key().to_string(),
                Value::String(abs(pki.client(*v).path.clone())),
            )
        })
        .collect();
    let info = json!({
        "apns_url": apns.base_url(),
        "fcm_url": fcm.base_url(),
        "token_uri": token_uri,
        "admin_received_url": format!("{}/_mock/received", fcm.base_url()),
        "ca_file": abs(pki.path(files::CA)),
        "client_pem": client_pem,
        "bundle_id": BUNDLE_ID,
        "apns_topic": format!("{BUNDLE_ID}.voip"),
        "p8_file": abs(pki.p8_path()),
        "team_id": pki.team_id,
        "key_id": pki.key_id,
        "service_account_file": abs(sa_file),
        "project_id": pki.project_id,
        "pid": std::process::id(),
    });
    let text = serde_json::to_string_pretty(&info)?;
    // Write then rename, so a script polling for mock.json never reads half a file.
    let tmp = args.dir.join("mock.json.tmp");
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, &mock_json)?;
    println!("{text}");
    tracing::info!(apns = %apns.base_url(), fcm = %fcm.base_url(), "pusher-mock ready");

    wait_for_shutdown().await;
    let _ = std::fs::remove_file(&mock_json);
    tracing::info!("pusher-mock stopped");
    Ok(())
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! `pusherd`: the pusher service. Settings come from the environment (see README);
//! SIGTERM/SIGINT stop it gracefully.

use std::process::ExitCode;

use pusher::settings::Settings;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
pusherd — Kazoo pusher service (drop-in replacement for the Erlang pusher app)

Usage: pusherd [--help] [--version]

Settings (environment):
  PUSHER_AMQP_URI          broker (default amqp://guest:guest@127.0.0.1:5672/%2f)
  PUSHER_COUCH_URL         CouchDB, credentials allowed (default http://127.0.0.1:5984)
  PUSHER_ZONE              config zone scope (default local)
  PUSHER_NODE              config node scope (default pusher@<hostname>)
  PUSHER_HTTP_ADDR         /health and /ready listen address, or off (default 127.0.0.1:8099)
  PUSHER_PREFETCH          unacked deliveries / concurrent handlers (default 200)
  PUSHER_RETRY_BUDGET_MS   transient-failure retry time per message (default 45000)
  PUSHER_SHUTDOWN_GRACE_MS drain time after SIGTERM (default 4000)
  PUSHER_LOG_FORMAT        text or json (default text); RUST_LOG overrides the level
";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("pusherd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("pusherd: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(1);
        }
        None => {}
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pusherd: {e}");
            return ExitCode::from(2);
        }
    };
    pusher::telemetry::init(settings.log_json);
    pusher_io::ensure_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pusherd: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let grace = settings.shutdown_grace;
        let mut handle = pusher::start(settings, shutdown.clone()).await?.handle;
        tokio::select! {
            () = pusher::shutdown_signal() => {
                shutdown.cancel();
                // The drain is bounded by the grace period; this is a last-resort bound.
                let hard = grace + std::time::Duration::from_millis(800);
                if tokio::time::timeout(hard, &mut handle).await.is_err() {
                    tracing::error!("drain did not finish in time; exiting anyway");
                }
            }
            joined = &mut handle => joined?,
        }
        Ok::<_, anyhow::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error.message = %e, error.cause_chain = ?e, "pusherd failed to start");
            eprintln!("pusherd: {e:#}");
            ExitCode::from(2)
        }
    }
}

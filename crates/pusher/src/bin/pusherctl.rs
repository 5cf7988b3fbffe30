//! `pusherctl`: sup-compatible maintenance CLI (see `pusherctl --help`).
//!
//! Exit codes as sup: 0 success, 2 the command failed, 1 bad usage.

use std::process::ExitCode;

use pusher::settings::Settings;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pusherctl: {e}");
            return ExitCode::from(2);
        }
    };
    pusher_io::ensure_crypto_provider();
    // A short-lived CLI: one thread is plenty.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pusherctl: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(pusher::ctl::run(&settings, &args)) {
        Ok(report) => {
            if !report.stdout.is_empty() {
                println!("{}", report.stdout.trim_end());
            }
            for w in &report.warnings {
                eprintln!("pusherctl: warning: {w}");
            }
            if let Some(f) = &report.failure {
                eprintln!("pusherctl: {f}");
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("pusherctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

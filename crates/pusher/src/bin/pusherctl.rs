//! `pusherctl`: sup-compatible maintenance CLI (see `pusherctl --help`).

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
        Ok(out) => {
            println!("{}", out.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pusherctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

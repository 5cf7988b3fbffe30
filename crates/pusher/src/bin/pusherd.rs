//! `pusherd`: the pusher service. SIGTERM/SIGINT stop it gracefully.
//!
//! Settings come from built-in defaults < Kazoo's `config.ini` < the `PUSHER_CONFIG` TOML
//! file < `PUSHER_*` variables (see [`pusher::settings`]). Besides running the service:
//! `--print-config` shows the effective settings and their sources, and `--check` is a
//! container health probe (GET `/ready`, or `/health` with `--check=live`).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pusher::settings::{KEYS, Settings};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: with glibc's malloc, malloc/free/memmove
/// were 22 % of pusherd's CPU under push load (BENCHMARKS.md, P4). Only the service
/// binary sets it; the library and `pusherctl` keep the default.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Total time a `--check` probe may take (connect, request, status line).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

fn usage() -> String {
    let mut out = String::from(
        "\
pusherd — Kazoo pusher service (drop-in replacement for the Erlang pusher app)

Usage: pusherd [--help | --version | --print-config | --check[=ready|live]]

  (no argument)        run the service until SIGTERM/SIGINT
  --print-config       print the effective settings (passwords redacted) and where each
                       came from, as TOML; exit 0, or 2 if a setting is invalid
  --check              container health probe: GET http://<PUSHER_HTTP_ADDR>/ready; exit 0
                       on 200, else 1 (timeout 2 s). --check=live probes /health instead
  --version            print the version

Configuration sources, lowest precedence first:
  1. built-in defaults (below)
  2. Kazoo's config.ini: $KAZOO_CONFIG, else /etc/kazoo/config.ini or
     /etc/kazoo/core/config.ini if present (KAZOO_CONFIG=off skips it). Gives amqp_uri
     (the first [amqp] uri — other uri lines are tried in turn on reconnect — else
     [zone] amqp_uri),
     couch_url ([bigcouch] ip, port, username, password) and zone (KAZOO_ZONE, else the
     zone of this host's [kazoo_apps] section)
  3. the TOML file $PUSHER_CONFIG (optional): the keys below, lower case, without
     PUSHER_ (e.g. prefetch = 100); unknown keys are an error
  4. environment variables PUSHER_*
Invalid values stop pusherd with one line naming their source (exit 2).

Settings (environment variable / TOML key, default):
",
    );
    for k in KEYS {
        let default = k
            .default
            .map(|d| format!(" (default {d})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<29} {}{default}\n  {:<29} TOML: {}\n",
            k.env, k.help, "", k.key
        ));
    }
    out.push_str("RUST_LOG sets log levels (default info).\n");
    out
}

/// Which endpoint `--check` probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `/ready`: consuming and CouchDB reachable.
    Ready,
    /// `/health`: the process answers.
    Live,
}

impl Probe {
    fn path(self) -> &'static str {
        match self {
            Self::Ready => "/ready",
            Self::Live => "/health",
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 1 {
        eprintln!("pusherd: expected at most one argument\n\n{}", usage());
        return ExitCode::from(1);
    }
    match args.first().map(String::as_str) {
        None => run(),
        Some("-h" | "--help") => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("pusherd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--print-config") => print_config(),
        Some("--check" | "--check=ready") => check(Probe::Ready),
        Some("--check=live") => check(Probe::Live),
        Some(other) => {
            eprintln!("pusherd: unknown argument {other:?}\n\n{}", usage());
            ExitCode::from(1)
        }
    }
}

fn print_config() -> ExitCode {
    match Settings::load_env() {
        Ok(loaded) => {
            print!("{}", loaded.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pusherd: {e}");
            ExitCode::from(2)
        }
    }
}

/// The health probe. Every failure exits 1 (Docker reserves 2), with one line on stderr.
fn check(probe: Probe) -> ExitCode {
    let addr = match Settings::from_env() {
        Ok(s) => s.http_addr,
        Err(e) => {
            eprintln!("pusherd --check: unhealthy: bad settings: {e}");
            return ExitCode::from(1);
        }
    };
    let Some(addr) = addr else {
        eprintln!("pusherd --check: unhealthy: PUSHER_HTTP_ADDR is off, nothing to probe");
        return ExitCode::from(1);
    };
    let target = probe_target(addr);
    let url = format!("http://{target}{}", probe.path());
    match http_status(target, probe.path(), CHECK_TIMEOUT) {
        Ok(200) => {
            println!("pusherd --check: healthy: {url} answered 200");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("pusherd --check: unhealthy: {url} answered {status}");
            ExitCode::from(1)
        }
        Err(why) => {
            eprintln!("pusherd --check: unhealthy: {url}: {why}");
            ExitCode::from(1)
        }
    }
}

/// Where to connect for a listen address: a wildcard (`0.0.0.0`, `[::]`) is reached on
/// the loopback of its family.
fn probe_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET path` over plain HTTP/1.1, returning the status code; the whole exchange is
/// bounded by `timeout`. Only the status line is read.
fn http_status(target: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {} ms", timeout.as_millis()))
    };
    let mut stream =
        TcpStream::connect_timeout(&target, left()?).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: pusherd-check\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no answer within {} ms", timeout.as_millis()));
            }
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
    parse_status_line(&head).ok_or_else(|| "the answer is not HTTP".to_string())
}

/// The status code of an `HTTP/1.x NNN …` status line.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let version = parts.next()?;
    let code = parts.next()?;
    (version.starts_with("HTTP/") && code.len() == 3)
        .then(|| code.parse().ok())
        .flatten()
}

fn run() -> ExitCode {
    let loaded = match Settings::load_env() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pusherd: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = loaded.settings;
    let _logs = pusher::telemetry::init(settings.log_json);
    for f in &loaded.files {
        tracing::info!(source = %f, "settings source");
    }
    pusher_io::ensure_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            pusher::telemetry::flush();
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
            pusher::telemetry::flush();
            eprintln!("pusherd: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot HTTP server that answers `reply` (or nothing at all when `None`).
    fn serve_once(reply: Option<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut req = [0u8; 1024];
            let n = conn.read(&mut req).unwrap_or(0);
            // A malformed request gets a 400, so the callers' expected codes check it too.
            let head = String::from_utf8_lossy(&req[..n]).to_string();
            let well_formed = head.starts_with("GET /ready HTTP/1.1\r\n")
                && head.contains(&format!("\r\nHost: {addr}\r\n"))
                && head.ends_with("\r\n\r\n");
            match reply {
                Some(_) if !well_formed => {
                    let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                }
                Some(r) => {
                    let _ = conn.write_all(r.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        });
        addr
    }

    #[test]
    fn status_of_a_200_a_503_and_garbage() {
        let ok = serve_once(Some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"));
        assert_eq!(http_status(ok, "/ready", CHECK_TIMEOUT), Ok(200));
        let down = serve_once(Some("HTTP/1.1 503 Service Unavailable\r\n\r\n"));
        assert_eq!(http_status(down, "/ready", CHECK_TIMEOUT), Ok(503));
        let junk = serve_once(Some("SSH-2.0-OpenSSH\r\n"));
        assert!(http_status(junk, "/ready", CHECK_TIMEOUT).is_err());
    }

    #[test]
    fn a_silent_server_times_out_within_the_bound() {
        let silent = serve_once(None);
        let started = Instant::now();
        let err = http_status(silent, "/ready", Duration::from_millis(300)).expect_err("timeout");
        assert!(err.contains("no answer within 300 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn nothing_listening_is_an_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let err = http_status(port, "/ready", CHECK_TIMEOUT).expect_err("refused");
        assert!(err.starts_with("cannot connect"), "{err}");
    }

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8099".parse().expect("v4");
        let v6: SocketAddr = "[::]:8099".parse().expect("v6");
        let fixed: SocketAddr = "10.0.0.1:8099".parse().expect("fixed");
        assert_eq!(probe_target(v4), "127.0.0.1:8099".parse().expect("lo"));
        assert_eq!(probe_target(v6), "[::1]:8099".parse().expect("lo6"));
        assert_eq!(probe_target(fixed), fixed);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.0 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 200\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 x\r\n"), None);
        assert_eq!(parse_status_line(b"200 OK\r\n"), None);
    }

    #[test]
    fn usage_lists_every_setting_and_the_precedence() {
        let text = usage();
        for k in KEYS {
            assert!(text.contains(k.env) && text.contains(k.key), "{}", k.key);
        }
        assert!(text.contains("lowest precedence first"));
        assert!(text.contains("--check=live"));
    }
}

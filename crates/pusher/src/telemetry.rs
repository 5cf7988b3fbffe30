//! Log set-up: one function that chooses text or JSON and lets `RUST_LOG` override the
//! default filter (`info`).
//!
//! Whatever `RUST_LOG` says, dependencies known to log secrets at debug level are capped
//! at `info` ([`SECRET_LOGGING_TARGETS`]); the test
//! `push::no_secret_reaches_the_logs_at_trace_level` runs the binary at trace level and
//! greps its output for keys, certificates, JWTs and access tokens.
//!
//! Lines are not written one syscall each (a push logs a line, and that write was ~4 % of
//! pusherd's CPU under push load): they collect in one buffer that a thread writes to
//! stderr every [`FLUSH_EVERY`], or at once when it holds [`FLUSH_AT_BYTES`]. The
//! [`LogGuard`] that [`init`] returns writes the rest when dropped, at exit; a process
//! killed outright (SIGKILL) loses at most the lines of its last [`FLUSH_EVERY`].

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// Targets that log credentials at debug/trace, capped at `info`: yup-oauth2 prints the
/// signed JWT assertion and access tokens. The service no longer uses it (its own token
/// source logs no secret); the cap stays so that adding it back cannot leak.
pub const SECRET_LOGGING_TARGETS: &[&str] = &["yup_oauth2"];

/// Whether an event may be logged at all (see [`SECRET_LOGGING_TARGETS`]).
pub fn allowed(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO
        || !SECRET_LOGGING_TARGETS.iter().any(|t| {
            meta.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Longest a log line waits in the buffer before it reaches stderr.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Buffered bytes that make the writer flush at once.
pub const FLUSH_AT_BYTES: usize = 64 * 1024;

/// Log lines not yet written to stderr.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Writes the buffered lines to stderr (holding the buffer, so lines keep their order).
pub fn flush() {
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    write_out(&mut pending);
}

fn write_out(pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        // Nowhere to report a failed write to stderr; the lines are dropped.
        let _ = std::io::stderr().lock().write_all(pending);
        pending.clear();
    }
}

/// The fmt layer's writer: appends each formatted line to [`PENDING`].
struct BufferedStderr;

impl Write for BufferedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(buf);
        if pending.len() >= FLUSH_AT_BYTES {
            write_out(&mut pending);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Flushes the buffered log lines when dropped: keep it until the process exits.
#[must_use = "dropping the guard at once leaves the last log lines unwritten at exit"]
#[derive(Debug)]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        flush();
    }
}

/// Installs the global subscriber, writing to stderr through the buffer. Safe to call
/// more than once (later calls are ignored).
pub fn init(json: bool) -> LogGuard {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = env.and(filter_fn(allowed));
    // Colours only on a terminal, so log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = fmt::layer().with_ansi(ansi).with_writer(|| BufferedStderr);
    let layer = if json {
        layer.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        layer.with_filter(filter).boxed()
    };
    if tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_ok()
    {
        let flusher = std::thread::Builder::new().name("log-flush".into());
        let spawned = flusher.spawn(|| {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            }
        });
        if spawned.is_err() {
            eprintln!("pusherd: no log flusher thread; log lines reach stderr only at exit");
        }
        // A panic prints to stderr at once: write the lines logged before it first, so
        // they come out in order and survive even if the panic ends the process.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
    }
    LogGuard(())
}

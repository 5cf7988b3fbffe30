//! Log set-up: one function that chooses text or JSON and lets `RUST_LOG` override the
//! default filter (`info`).
//!
//! Whatever `RUST_LOG` says, dependencies known to log secrets at debug level are capped
//! at `info` ([`SECRET_LOGGING_TARGETS`]); the test
//! `push::no_secret_reaches_the_logs_at_trace_level` runs the binary at trace level and
//! greps its output for keys, certificates, JWTs and access tokens.

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

/// Installs the global subscriber, writing to stderr. Safe to call more than once
/// (later calls are ignored).
pub fn init(json: bool) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = env.and(filter_fn(allowed));
    // Colours only on a terminal, so log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let layer = if json {
        layer.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        layer.with_filter(filter).boxed()
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

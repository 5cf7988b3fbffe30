//! `pusherctl`: the sup-style maintenance CLI (`pusherctl MODULE FUNCTION [ARGS…]`).
//!
//! An operator replaces `sup` with `pusherctl` and nothing else. The parts:
//! - this module: [`run`] (resolve, then call the command's handler), the [`Report`] a
//!   command returns and sup's exit codes (0 ok, 2 the command failed, 1 bad usage);
//! - [`commands`]: the command table ([`COMMANDS`]): arity, `--help` text and handler of
//!   every function — the single source of dispatch and help; `parse` reads a command
//!   line against it;
//! - [`kapps_config`]: `get`/`set`/`set_default`/`set_json`/`set_node`/`delete` on any
//!   `system_config` category, with sup's semantics (spec §8), validated for `pusher`;
//! - [`maintenance`]: `pusher_maintenance` — credentials written where `pusherd` reads
//!   them (spec §1.5, §1.8), after [`pusher_core::credentials`] checked them;
//! - [`apps`]: `list_apps`, the table of configured apps and certificate expiry;
//! - [`push`]: a test push through RabbitMQ and the running `pusherd`, with its verdict;
//! - [`validate`]: schema and semantic checks of `system_config/pusher` edits, and
//!   redaction of secrets in anything printed.
//!
//! The settings are `pusherd`'s ([`Settings::from_env`]): `PUSHER_COUCH_URL`,
//! `PUSHER_AMQP_URI`, `PUSHER_NODE`, `PUSHER_ZONE`, `PUSHER_PUSH_DEADLINE_MS`, …

pub mod apps;
pub mod commands;
pub mod endpoint;
pub mod kapps_config;
pub mod maintenance;
mod parse;
pub mod push;
pub mod validate;

use pusher_io::couch::CouchClient;

use crate::settings::Settings;

pub use commands::{COMMANDS, Command};
pub use parse::usage;
use parse::{Resolved, resolve};

/// Why a command did not run, mapped to sup's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Unknown command or wrong number of arguments (exit 1).
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed (exit 2).
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    /// sup-compatible exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 1,
            CtlError::Failed(_) => 2,
        }
    }
}

/// `Result` of this module.
pub type Result<T, E = CtlError> = std::result::Result<T, E>;

pub(crate) fn failed(e: impl std::fmt::Display) -> CtlError {
    CtlError::Failed(e.to_string())
}

/// What a command that ran has to say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Printed on stdout.
    pub stdout: String,
    /// Printed on stderr, one `warning:` line each; the exit code is unaffected.
    pub warnings: Vec<String>,
    /// Set when the command ran but its verdict is a failure (exit 2), e.g. a push that
    /// was not delivered or a certificate about to expire: stdout still holds the result.
    pub failure: Option<String>,
}

impl Report {
    /// A successful report printing `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            ..Self::default()
        }
    }

    /// A report of a command that ran and failed: `stdout` printed, then `failure`.
    pub fn failed(stdout: impl Into<String>, failure: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            warnings: Vec::new(),
            failure: Some(failure.into()),
        }
    }

    /// Exit code of this report (0, or 2 when [`Report::failure`] is set).
    pub fn exit_code(&self) -> u8 {
        if self.failure.is_some() { 2 } else { 0 }
    }
}

/// Days of certificate life below which `list_apps` fails.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Runs one command line (`args` without the program name).
pub async fn run(settings: &Settings, args: &[String]) -> Result<Report> {
    let (cmd, values) = match resolve(args)? {
        Resolved::Help(text) => return Ok(Report::ok(text)),
        Resolved::Run(cmd, values) => (cmd, values),
    };
    let couch = CouchClient::new(&settings.couch_url, settings.couch_timeout).map_err(failed)?;
    let ctx = Ctx { settings, couch };
    (cmd.run)(&ctx, commands::Args::new(cmd, values)).await
}

/// What every command gets.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Process settings (as pusherd's).
    pub settings: &'a Settings,
    /// CouchDB client on `PUSHER_COUCH_URL`.
    pub couch: CouchClient,
}

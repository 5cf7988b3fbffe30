//! `pusherctl`: the sup-style maintenance CLI (`pusherctl MODULE FUNCTION [ARGS…]`).
//!
//! An operator replaces `sup` with `pusherctl` and nothing else. The parts:
//! - this module: the command table ([`COMMANDS`]: arity and `--help` text of every
//!   function), dispatch, and sup's exit codes (0 ok, 2 the command failed, 1 bad usage);
//! - [`kapps_config`]: `get`/`set`/`set_default`/`set_json`/`set_node`/`delete` on any
//!   `system_config` category, with sup's semantics (spec §8), validated for `pusher`;
//! - [`maintenance`]: `pusher_maintenance` — credentials written where `pusherd` reads
//!   them (spec §1.5, §1.8), after [`credentials`] checked them, and `list_apps`;
//! - [`push`]: a test push through RabbitMQ and the running `pusherd`, with its verdict;
//! - [`validate`]: schema and semantic checks of `system_config/pusher` edits, and
//!   redaction of secrets in anything printed.
//!
//! The settings are `pusherd`'s ([`Settings::from_env`]): `PUSHER_COUCH_URL`,
//! `PUSHER_AMQP_URI`, `PUSHER_NODE`, `PUSHER_ZONE`, `PUSHER_PUSH_DEADLINE_MS`, …

pub mod kapps_config;
pub mod maintenance;
pub mod push;
pub mod validate;

use pusher_core::credentials;
use pusher_io::couch::CouchClient;

use crate::settings::Settings;

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

    /// Exit code of this report (0, or 2 when [`Report::failure`] is set).
    pub fn exit_code(&self) -> u8 {
        if self.failure.is_some() { 2 } else { 0 }
    }
}

/// One function of one module: its arguments and help.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// `kapps_config` or `pusher_maintenance`.
    pub module: &'static str,
    /// Function name, as in sup.
    pub function: &'static str,
    /// Required argument names.
    pub required: &'static [&'static str],
    /// Optional trailing argument names.
    pub optional: &'static [&'static str],
    /// One line for the overview.
    pub summary: &'static str,
    /// The `--help` text after the usage line.
    pub help: &'static str,
}

impl Command {
    /// `pusherctl MODULE FUNCTION ARG… [OPT]`.
    pub fn usage(&self) -> String {
        let mut s = format!("pusherctl {} {}", self.module, self.function);
        for a in self.required {
            s.push(' ');
            s.push_str(a);
        }
        for a in self.optional {
            s.push_str(&format!(" [{a}]"));
        }
        s
    }

    fn accepts(&self, n: usize) -> bool {
        (self.required.len()..=self.required.len() + self.optional.len()).contains(&n)
    }

    fn full_help(&self) -> String {
        format!("Usage: {}\n\n{}\n", self.usage(), self.help.trim_end())
    }
}

/// Every command `pusherctl` knows.
pub const COMMANDS: &[Command] = &[
    Command {
        module: "kapps_config",
        function: "get",
        required: &["Category", "Key"],
        optional: &["Node"],
        summary: "print a value (Node → zone → default)",
        help: "Prints the value of Key in system_config/<Category>, looked up under Node (default
PUSHER_NODE), then PUSHER_ZONE, then \"default\" — the order pusherd reads it in.
Key is a dotted path (User-Agents.MyApp.regex). Prints `undefined` when nothing is set.
Secrets (certificate, private_key, api_key) are shown only as their size.",
    },
    Command {
        module: "kapps_config",
        function: "set",
        required: &["Category", "Key", "Value"],
        optional: &["Node"],
        summary: "write a string at Node if that key exists there, else at default",
        help: "Writes Value (a string) at Node.Key when Node (default PUSHER_NODE) already has Key,
otherwise at default.Key — sup's kapps_config:set. The document is created (pvt_type
config) if missing; concurrent edits are re-read and re-applied. Edits of `pusher` are
validated first and refused, with nothing written, if they would break the config.",
    },
    Command {
        module: "kapps_config",
        function: "set_default",
        required: &["Category", "Key", "Value"],
        optional: &[],
        summary: "write a string at default",
        help: "Writes Value (a string) at default.Key. Building a User-Agents rule one key at a time
(regex, then properties.Token-App, …) is allowed: until the rule is complete a warning
says what it still lacks.",
    },
    Command {
        module: "kapps_config",
        function: "set_json",
        required: &["Category", "Key", "JSON"],
        optional: &[],
        summary: "like set, with the value parsed as JSON",
        help: "Parses JSON (an error names its line and column) and writes it like `set` with the
default node: at PUSHER_NODE.Key if that exists, else at default.Key. Example:
  pusherctl kapps_config set_json pusher User-Agents.MyApp \\
    '{\"regex\":\"^MyApp\",\"properties\":{\"Token-App\":\"app-id\",\"Token-Type\":\"pn-type\",\"Token-ID\":\"pn-tok\"}}'",
    },
    Command {
        module: "kapps_config",
        function: "set_node",
        required: &["Category", "Key", "Value", "Node"],
        optional: &[],
        summary: "write a string at Node, always",
        help: "Writes Value (a string) at Node.Key whether or not it exists there (kapps_config:set_node).
Node is never split on dots, so an app id works: set_node pusher apple.host h org.my.app.",
    },
    Command {
        module: "kapps_config",
        function: "delete",
        required: &["Category", "Key"],
        optional: &["Node"],
        summary: "remove a key (from default, or from Node)",
        help: "Removes Key from Node (default: \"default\"). Fails, writing nothing, when the key is not
set there.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_apple_app",
        required: &["AppId", "CertFile"],
        optional: &["Host"],
        summary: "store an APNs certificate + key PEM for AppId",
        help: "Checks CertFile first: exactly one certificate and its matching, unencrypted private key
(PKCS#1, PKCS#8, `openssl pkcs12 -nodes` output with Bag Attributes are fine), not
expired. Then writes <AppId>.apple.certificate (the file, byte for byte),
<AppId>.apple.host (default api.push.apple.com; api.development.push.apple.com for the
sandbox) and <AppId>.apple.auth_type = certdata. Prints subject, topics and expiry.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_apple_pem_file",
        required: &["PemKeyFile"],
        optional: &[],
        summary: "upload the APNs token-auth key (.p8) used by every token app",
        help: "Checks that PemKeyFile is one unencrypted EC P-256 private key (Apple's AuthKey_XXXXXXXXXX.p8)
and stores it as attachment private_key.p8 (application/x-pem-file) of
system_config/pusher. Apps with auth_type token (add_apple_token_app) sign with it.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_apple_token_app",
        required: &["AppId", "TeamId", "KeyId"],
        optional: &["Host"],
        summary: "configure APNs token auth (.p8) for AppId",
        help: "Writes <AppId>.apple.auth_type = token, .team_id, .key_id (10 characters each, from the
Apple developer portal) and .host (default api.push.apple.com). The key itself is
uploaded once with add_apple_pem_file.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_firebase_v1_app",
        required: &["AppId", "ServiceAccountJSON"],
        optional: &[],
        summary: "store a Google service account (JSON text) for FCM HTTP v1",
        help: "Checks the service account (type service_account, project_id, client_email, token_uri,
an RSA private_key) and writes it as an object at <AppId>.firebase_v1.service_account.
Prefer add_firebase_v1_app_from_service_account_file: a key on the command line ends up
in the shell history.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_firebase_v1_app_from_service_account_file",
        required: &["AppId", "File"],
        optional: &[],
        summary: "same, reading the service-account file",
        help: "Reads File (the JSON key downloaded from the Firebase console), checks it like
add_firebase_v1_app and writes <AppId>.firebase_v1.service_account.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_firebase_app",
        required: &["AppId", "Secret"],
        optional: &[],
        summary: "deprecated: store a legacy FCM server key",
        help: "Writes <AppId>.firebase.api_key, as Kazoo did. Google shut the legacy FCM API down in
2024, so pusherd cannot send with it: use add_firebase_v1_app.",
    },
    Command {
        module: "pusher_maintenance",
        function: "push",
        required: &["AccountId", "DeviceId"],
        optional: &[],
        summary: "send a test push to a device through pusherd, print the verdict",
        help: "Reads the device's push object and publishes a push_req to exchange `pushes` exactly as
Kamailio does (caller id \"pusherctl test\"), plus \"Pusher-Reply-To\": the name of a private,
exclusive reply queue. pusherd answers there with the provider's verdict. Prints e.g.
`delivered in 23 ms (apns, org.example.app)`; exit 0 only when delivered, 2 for a dead
token, an auth error, no reply within the push deadline + 5 s, …",
    },
    Command {
        module: "pusher_maintenance",
        function: "list_apps",
        required: &[],
        optional: &["AppIdPrefix"],
        summary: "table of configured apps; exit 2 if a certificate expires within 30 days",
        help: "Lists every app of system_config/pusher (or those whose id starts with AppIdPrefix):
provider, auth type, host, enabled, and days until the certificate expires. Exits 2
when a certificate is expired, unreadable, or expires within 30 days.",
    },
];

/// Days of certificate life below which `list_apps` fails.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Top-level usage text.
pub fn usage() -> String {
    let mut s = String::from(
        "pusherctl — Kazoo pusher maintenance (replace `sup` with `pusherctl`)\n\n\
         Usage: pusherctl MODULE FUNCTION [ARGS…]\n       pusherctl MODULE FUNCTION --help\n",
    );
    let mut module = "";
    for c in COMMANDS {
        if c.module != module {
            module = c.module;
            s.push_str(&format!("\n{module}:\n"));
        }
        let args = c.usage();
        let args = args
            .strip_prefix(&format!("pusherctl {module} "))
            .unwrap_or(&args);
        s.push_str(&format!("  {args:<52} {}\n", c.summary));
    }
    s.push_str(
        "\nKeys are dotted paths: User-Agents.MyApp.regex. Exit codes as sup: 0 ok, 2 the command\n\
         failed, 1 bad usage. Settings as pusherd: PUSHER_COUCH_URL, PUSHER_AMQP_URI,\n\
         PUSHER_NODE, PUSHER_ZONE, PUSHER_PUSH_DEADLINE_MS.\n",
    );
    s
}

fn module_usage(module: &str) -> String {
    let mut s = format!("Functions of {module}:\n");
    for c in COMMANDS.iter().filter(|c| c.module == module) {
        s.push_str(&format!("  {}\n", c.usage()));
    }
    s
}

/// Finds the command for `args` and checks its arity; `Ok(None)` means help was asked.
fn resolve<'a>(args: &'a [String]) -> Result<Resolved<'a>> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let is_help = |w: &str| matches!(w, "-h" | "--help");
    match words.as_slice() {
        [] => Err(CtlError::Usage(format!("no command given\n\n{}", usage()))),
        [w] if is_help(w) || *w == "help" => Ok(Resolved::Help(usage())),
        [module, rest @ ..] => {
            if !COMMANDS.iter().any(|c| c.module == *module) {
                return Err(CtlError::Usage(format!(
                    "unknown module {module:?}; pusherctl knows kapps_config and pusher_maintenance (see pusherctl --help)"
                )));
            }
            let Some((function, fargs)) = rest.split_first() else {
                return Err(CtlError::Usage(format!(
                    "no function given for {module}\n{}",
                    module_usage(module)
                )));
            };
            if is_help(function) {
                return Ok(Resolved::Help(module_usage(module)));
            }
            let Some(cmd) = COMMANDS
                .iter()
                .find(|c| c.module == *module && c.function == *function)
            else {
                return Err(CtlError::Usage(format!(
                    "{module} has no function {function:?}\n{}",
                    module_usage(module)
                )));
            };
            if fargs.iter().any(|a| is_help(a)) {
                return Ok(Resolved::Help(cmd.full_help()));
            }
            if !cmd.accepts(fargs.len()) {
                return Err(CtlError::Usage(format!(
                    "{module} {function} takes {} argument{}, got {}\nUsage: {}",
                    arity_text(cmd),
                    if cmd.required.len() + cmd.optional.len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                    fargs.len(),
                    cmd.usage()
                )));
            }
            Ok(Resolved::Run(cmd, &args[2..]))
        }
    }
}

fn arity_text(cmd: &Command) -> String {
    let (min, max) = (cmd.required.len(), cmd.required.len() + cmd.optional.len());
    if min == max {
        min.to_string()
    } else {
        format!("{min} to {max}")
    }
}

enum Resolved<'a> {
    Help(String),
    Run(&'static Command, &'a [String]),
}

/// Runs one command line (`args` without the program name).
pub async fn run(settings: &Settings, args: &[String]) -> Result<Report> {
    let (cmd, a) = match resolve(args)? {
        Resolved::Help(text) => return Ok(Report::ok(text)),
        Resolved::Run(cmd, a) => (cmd, a),
    };
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let couch = CouchClient::new(&settings.couch_url, settings.couch_timeout).map_err(failed)?;
    let ctx = Ctx { settings, couch };
    let opt = |i: usize| a.get(i).copied();
    match (cmd.module, cmd.function) {
        ("kapps_config", "get") => kapps_config::get(&ctx, a[0], a[1], opt(2)).await,
        ("kapps_config", "set") => {
            let node = opt(3).unwrap_or(&settings.node);
            let scope = kapps_config::Scope::NodeIfExists(node);
            kapps_config::set(&ctx, a[0], a[1], a[2].into(), scope).await
        }
        ("kapps_config", "set_default") => {
            kapps_config::set(&ctx, a[0], a[1], a[2].into(), kapps_config::Scope::Default).await
        }
        ("kapps_config", "set_json") => {
            let value = credentials::parse_json(a[2]).map_err(|e| {
                // Same wording as for service accounts, without their context.
                failed(e.to_string())
            })?;
            let scope = kapps_config::Scope::NodeIfExists(&settings.node);
            kapps_config::set(&ctx, a[0], a[1], value, scope).await
        }
        ("kapps_config", "set_node") => {
            kapps_config::set(
                &ctx,
                a[0],
                a[1],
                a[2].into(),
                kapps_config::Scope::Node(a[3]),
            )
            .await
        }
        ("kapps_config", "delete") => kapps_config::delete(&ctx, a[0], a[1], opt(2)).await,
        ("pusher_maintenance", "add_apple_app") => {
            maintenance::add_apple_app(&ctx, a[0], a[1], opt(2)).await
        }
        ("pusher_maintenance", "add_apple_pem_file") => {
            maintenance::add_apple_pem_file(&ctx, a[0]).await
        }
        ("pusher_maintenance", "add_apple_token_app") => {
            maintenance::add_apple_token_app(&ctx, a[0], a[1], a[2], opt(3)).await
        }
        ("pusher_maintenance", "add_firebase_v1_app") => {
            maintenance::add_firebase_v1_app(&ctx, a[0], a[1]).await
        }
        ("pusher_maintenance", "add_firebase_v1_app_from_service_account_file") => {
            maintenance::add_firebase_v1_app_from_file(&ctx, a[0], a[1]).await
        }
        ("pusher_maintenance", "add_firebase_app") => {
            maintenance::add_firebase_app(&ctx, a[0], a[1]).await
        }
        ("pusher_maintenance", "push") => push::push(&ctx, a[0], a[1]).await,
        ("pusher_maintenance", "list_apps") => maintenance::list_apps(&ctx, opt(0)).await,
        (m, f) => Err(CtlError::Usage(format!("{m} {f} is not implemented"))),
    }
}

/// What every command gets.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Process settings (as pusherd's).
    pub settings: &'a Settings,
    /// CouchDB client on `PUSHER_COUCH_URL`.
    pub couch: CouchClient,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn arity_and_help() {
        assert!(matches!(resolve(&args("--help")), Ok(Resolved::Help(_))));
        assert!(matches!(resolve(&args("")), Err(CtlError::Usage(_))));
        assert!(matches!(
            resolve(&args("nope get")),
            Err(CtlError::Usage(_))
        ));
        assert!(matches!(
            resolve(&args("kapps_config")),
            Err(CtlError::Usage(_))
        ));
        assert!(matches!(
            resolve(&args("kapps_config frob a b")),
            Err(CtlError::Usage(_))
        ));
        match resolve(&args("kapps_config get pusher")) {
            Err(CtlError::Usage(m)) => {
                assert!(
                    m.starts_with("kapps_config get takes 2 to 3 arguments, got 1"),
                    "{m}"
                )
            }
            _ => panic!("arity not checked"),
        }
        match resolve(&args("pusher_maintenance add_apple_app --help")) {
            Ok(Resolved::Help(h)) => {
                assert!(h.starts_with(
                    "Usage: pusherctl pusher_maintenance add_apple_app AppId CertFile [Host]"
                ))
            }
            _ => panic!("no help"),
        }
        assert!(matches!(
            resolve(&args("pusher_maintenance list_apps")),
            Ok(Resolved::Run(c, [])) if c.function == "list_apps"
        ));
    }

    #[test]
    fn every_command_has_help_and_is_listed() {
        let u = usage();
        for c in COMMANDS {
            assert!(!c.help.trim().is_empty(), "{}", c.function);
            assert!(u.contains(c.function), "{}", c.function);
        }
    }
}

//! The command table: every function of `pusherctl`, with its arguments, its help and
//! its handler. Dispatch, `pusherctl --help`, `MODULE --help` and `FUNCTION --help` all
//! come from [`COMMANDS`], so a command cannot be listed without running, or run
//! without being listed.

use futures_util::future::LocalBoxFuture;

use super::kapps_config::{self, Scope};
use pusher_core::credentials;

use super::{CtlError, Ctx, Report, Result, apps, endpoint, failed, maintenance, push};

/// What runs a command: its context and its (arity-checked) arguments.
pub type Handler = for<'a> fn(&'a Ctx<'a>, Args<'a>) -> LocalBoxFuture<'a, Result<Report>>;

/// One function of one module: its arguments, help and handler.
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
    /// Runs the command.
    pub run: Handler,
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

    pub(super) fn accepts(&self, n: usize) -> bool {
        (self.required.len()..=self.required.len() + self.optional.len()).contains(&n)
    }

    pub(super) fn full_help(&self) -> String {
        format!("Usage: {}\n\n{}\n", self.usage(), self.help.trim_end())
    }
}

/// The arguments of one command line, after `MODULE FUNCTION`.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    cmd: &'static Command,
    values: &'a [String],
}

impl<'a> Args<'a> {
    /// Arguments `values` of `cmd` (their count is checked by the caller).
    pub fn new(cmd: &'static Command, values: &'a [String]) -> Self {
        Self { cmd, values }
    }

    /// Required argument `i`; a usage error if it is missing.
    pub fn req(&self, i: usize) -> Result<&'a str> {
        self.opt(i).ok_or_else(|| {
            CtlError::Usage(format!("missing argument\nUsage: {}", self.cmd.usage()))
        })
    }

    /// Optional argument `i`.
    pub fn opt(&self, i: usize) -> Option<&'a str> {
        self.values.get(i).map(String::as_str)
    }
}

/// Every command `pusherctl` knows.
pub const COMMANDS: &[Command] = &[
    Command {
        module: "kapps_config",
        function: "get",
        required: &["Category", "Key"],
        optional: &["Node"],
        run: |ctx, a| {
            Box::pin(async move {
            kapps_config::get(ctx, a.req(0)?, a.req(1)?, a.opt(2)).await
            })
        },
        summary: "print a value (Node → zone → default)",
        help: "Prints the value of Key in system_config/<Category>, looked up under Node (default
PUSHER_NODE), then PUSHER_ZONE, then \"default\" — the order pusherd reads it in.
Key is a dotted path (User-Agents.MyApp.regex). Prints `undefined` when nothing is set.
Secrets (certificate, private_key, api_key, any PEM private key, also inside a value
stored as a JSON string) are shown only as their size.",
    },
    Command {
        module: "kapps_config",
        function: "set",
        required: &["Category", "Key", "Value"],
        optional: &["Node"],
        run: |ctx, a| {
            Box::pin(async move {
            let node = a.opt(3).unwrap_or(&ctx.settings.node);
            let (cat, key, value) = (a.req(0)?, a.req(1)?, a.req(2)?);
            kapps_config::set(ctx, cat, key, value.into(), Scope::NodeIfExists(node)).await
            })
        },
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
        run: |ctx, a| {
            Box::pin(async move {
            let (cat, key, value) = (a.req(0)?, a.req(1)?, a.req(2)?);
            kapps_config::set(ctx, cat, key, value.into(), Scope::Default).await
            })
        },
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
        run: |ctx, a| {
            Box::pin(async move {
            // Same wording as for service accounts, without their context.
            let value = credentials::parse_json(a.req(2)?).map_err(failed)?;
            let scope = Scope::NodeIfExists(&ctx.settings.node);
            kapps_config::set(ctx, a.req(0)?, a.req(1)?, value, scope).await
            })
        },
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
        run: |ctx, a| {
            Box::pin(async move {
            let (cat, key, value) = (a.req(0)?, a.req(1)?, a.req(2)?);
            kapps_config::set(ctx, cat, key, value.into(), Scope::Node(a.req(3)?)).await
            })
        },
        summary: "write a string at Node, always",
        help: "Writes Value (a string) at Node.Key whether or not it exists there (kapps_config:set_node).
Node is never split on dots, so an app id works: set_node pusher apple.host h org.my.app.",
    },
    Command {
        module: "kapps_config",
        function: "delete",
        required: &["Category", "Key"],
        optional: &["Node"],
        run: |ctx, a| {
            Box::pin(async move {
            kapps_config::delete(ctx, a.req(0)?, a.req(1)?, a.opt(2)).await
            })
        },
        summary: "remove a key (from default, or from Node)",
        help: "Removes Key from Node (default: \"default\"). Fails, writing nothing, when the key is not
set there.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_apple_app",
        required: &["AppId", "CertFile"],
        optional: &["Host"],
        run: |ctx, a| {
            Box::pin(async move {
            maintenance::add_apple_app(ctx, a.req(0)?, a.req(1)?, a.opt(2)).await
            })
        },
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
        run: |ctx, a| {
            Box::pin(async move {
            maintenance::add_apple_pem_file(ctx, a.req(0)?).await
            })
        },
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
        run: |ctx, a| {
            Box::pin(async move {
            let (app, team, key) = (a.req(0)?, a.req(1)?, a.req(2)?);
            maintenance::add_apple_token_app(ctx, app, team, key, a.opt(3)).await
            })
        },
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
        run: |ctx, a| {
            Box::pin(async move {
            maintenance::add_firebase_v1_app(ctx, a.req(0)?, a.req(1)?).await
            })
        },
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
        run: |ctx, a| {
            Box::pin(async move {
            maintenance::add_firebase_v1_app_from_file(ctx, a.req(0)?, a.req(1)?).await
            })
        },
        summary: "same, reading the service-account file",
        help: "Reads File (the JSON key downloaded from the Firebase console), checks it like
add_firebase_v1_app and writes <AppId>.firebase_v1.service_account.",
    },
    Command {
        module: "pusher_maintenance",
        function: "add_firebase_app",
        required: &["AppId", "Secret"],
        optional: &[],
        run: |ctx, a| {
            Box::pin(async move {
            maintenance::add_firebase_app(ctx, a.req(0)?, a.req(1)?).await
            })
        },
        summary: "deprecated: store a legacy FCM server key",
        help: "Writes <AppId>.firebase.api_key, as Kazoo did. Google shut the legacy FCM API down in
2024, so pusherd cannot send with it: use add_firebase_v1_app.",
    },
    Command {
        module: "pusher_maintenance",
        function: "push",
        required: &["AccountId", "DeviceId"],
        optional: &[],
        run: |ctx, a| {
            Box::pin(async move {
            push::push(ctx, a.req(0)?, a.req(1)?).await
            })
        },
        summary: "send a test push to a device through pusherd, print the verdict",
        help: "Reads the device's push object and publishes a push_req to exchange `pushes` exactly as
Kamailio does (caller id \"pusherctl test\"), plus \"Pusher-Reply-To\": the name of a private,
exclusive reply queue. pusherd answers there with the provider's verdict. Prints e.g.
`delivered in 23 ms (apns, org.example.app)`; exit 0 only when delivered, 2 for a dead
token, an auth error, no reply within the push deadline + 5 s, …",
    },
    Command {
        module: "pusher_maintenance",
        function: "push_endpoint",
        required: &["AccountId", "device|user", "Id"],
        optional: &["AlertBody"],
        run: |ctx, a| {
            Box::pin(async move {
            endpoint::push_endpoint(ctx, a).await
            })
        },
        summary: "send a Kazoo 5 endpoint push to a device or a user's devices, print the results",
        help: "Publishes an endpoint_push_req (Kazoo 5's push API: Account-ID, Endpoint {ID, Type},
Alert.Body = AlertBody, Priority high) to exchange `targeted` / pusher_shared_listener, with
a Server-ID naming a private reply queue bound to `targeted`. pusherd pushes the device, or
every device the user owns, and answers endpoint_push_resp there. Prints one line per
device (`<Device-ID>: <Status> <Message> (<Error>)`) and `Overall-Status: N`; exit 0 only
when Overall-Status is below 400, 2 when it is 400 or more or no answer came within the
push deadline + 5 s.",
    },
    Command {
        module: "pusher_maintenance",
        function: "list_apps",
        required: &[],
        optional: &["AppIdPrefix"],
        run: |ctx, a| {
            Box::pin(async move {
            apps::list_apps(ctx, a.opt(0)).await
            })
        },
        summary: "table of configured apps; exit 2 if a certificate expires within 30 days",
        help: "Lists every app of system_config/pusher (or those whose id starts with AppIdPrefix):
provider, auth type, host, enabled, and days until the certificate expires. Exits 2
when a certificate is expired, unreadable, or expires within 30 days.",
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The README, whose section "Operating pusherctl" documents every command.
    const README: &str = include_str!("../../../../README.md");

    /// `(module, function)` of every `pusherctl MODULE FUNCTION …` written as code in
    /// `markdown` (inline code spans and fenced blocks); prose is ignored.
    fn commands_in(markdown: &str) -> BTreeSet<(String, String)> {
        let ident = |w: &&str| {
            w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let mut code = Vec::new();
        let mut fenced = false;
        for line in markdown.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            } else if fenced {
                code.push(line);
            } else {
                code.extend(line.split('`').skip(1).step_by(2));
            }
        }
        let mut out = BTreeSet::new();
        for text in code {
            for (i, _) in text.match_indices("pusherctl ") {
                let words: Vec<&str> = text[i..].split_whitespace().skip(1).take(2).collect();
                if let [module, function] = words[..]
                    && ident(&module)
                    && ident(&function)
                {
                    out.insert((module.to_string(), function.to_string()));
                }
            }
        }
        out
    }

    fn table() -> BTreeSet<(String, String)> {
        COMMANDS
            .iter()
            .map(|c| (c.module.to_string(), c.function.to_string()))
            .collect()
    }

    #[test]
    fn every_command_is_unique_and_has_help() {
        assert_eq!(table().len(), COMMANDS.len(), "a command is listed twice");
        for c in COMMANDS {
            assert!(!c.summary.trim().is_empty(), "{}", c.function);
            assert!(!c.help.trim().is_empty(), "{}", c.function);
        }
    }

    #[test]
    fn readme_documents_exactly_the_commands_of_the_table() {
        let section = README
            .split_once("### Operating pusherctl")
            .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
            .expect("README has a section \"Operating pusherctl\"");
        assert_eq!(
            commands_in(section),
            table(),
            "the README section \"Operating pusherctl\" must list every command of COMMANDS, and only those"
        );
        let unknown: Vec<_> = commands_in(README).difference(&table()).cloned().collect();
        assert!(
            unknown.is_empty(),
            "README names unknown commands: {unknown:?}"
        );
    }

    #[test]
    fn the_readme_scanner_reads_code_only() {
        let md = "pusherctl reads the env.\n`pusherctl kapps_config get a b` and `pusherctl test`\n\
                  ```sh\n$ pusherctl pusher_maintenance push A D\n```\n`pusherctl … push`";
        let found: Vec<_> = commands_in(md).into_iter().collect();
        assert_eq!(
            found,
            [
                ("kapps_config".to_string(), "get".to_string()),
                ("pusher_maintenance".to_string(), "push".to_string())
            ]
        );
    }
}

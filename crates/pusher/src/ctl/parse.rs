//! Reading a command line against [`COMMANDS`]: which command, whether its arity fits,
//! or which help text was asked for (`--help`, `MODULE --help`, `FUNCTION --help`).

use super::commands::{COMMANDS, Command};
use super::{CtlError, Result};

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

/// Finds the command for `args` and checks its arity, or the help that was asked for.
pub(super) fn resolve<'a>(args: &'a [String]) -> Result<Resolved<'a>> {
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

/// What a command line asks for.
pub(super) enum Resolved<'a> {
    /// A help text to print.
    Help(String),
    /// A command, with its arguments (after `MODULE FUNCTION`).
    Run(&'static Command, &'a [String]),
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

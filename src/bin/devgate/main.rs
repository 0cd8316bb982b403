//! `devgate`: the native command line. Generates keys, mints and verifies tokens, mints API
//! keys, writes htpasswd lines for the login form, checks a configuration with the filter's own
//! parser, and prints the configuration's JSON Schema or reference. Run `devgate --help`.
//!
//! Exit codes: 0 ok, 1 verification or validation failure, 2 usage error, 3 I/O error.
//! Secrets are read from files and never printed (except by `keygen`, whose output is the new
//! secret when no `--out` is given).
//!
//! One module per command, each declaring a [`cli::Command`]; [`COMMANDS`] lists them once and
//! both the dispatch and `devgate --help` come from that list.

mod args;
mod check_config;
mod cli;
mod envoy_yaml;
mod hash_password;
mod keygen;
mod keys;
mod mint;
mod mint_key;
mod reference;
mod schema;
mod verify;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use args::Parsed;
use cli::{Command, Failure, Io};

/// Every command, in the order `devgate --help` lists them.
const COMMANDS: [&Command; 7] = [
    &keygen::COMMAND,
    &mint::COMMAND,
    &mint_key::COMMAND,
    &verify::COMMAND,
    &hash_password::COMMAND,
    &check_config::COMMAND,
    &schema::COMMAND,
];

/// `devgate --help`.
fn usage() -> String {
    let mut text = String::from("usage: devgate <command> [options]\n\ncommands:\n");
    for c in COMMANDS {
        text.push_str(&format!("  {:<13} {}\n", c.name, c.summary));
    }
    text.push_str(
        "\n`devgate <command> --help` describes a command.\n\
         exit codes: 0 ok, 1 invalid (token, key or configuration), 2 usage error, 3 I/O error\n",
    );
    text
}

fn main() -> ExitCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = match args
        .into_iter()
        .map(OsString::into_string)
        .collect::<Result<Vec<String>, _>>()
    {
        Ok(args) => run(
            &args,
            &mut Io {
                now,
                out: &mut out,
                stdin: &mut io::stdin(),
            },
        ),
        Err(_) => Err(Failure::Usage("arguments must be UTF-8".to_owned())),
    };
    let code = match result {
        Ok(()) => 0,
        Err(Failure::Invalid(msg)) => {
            let _ = writeln!(out, "{msg}");
            1
        }
        Err(Failure::Refused(msg)) => {
            eprintln!("devgate: {msg}");
            1
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("devgate: {msg}\n(run `devgate --help` for usage)");
            2
        }
        Err(Failure::Io(msg)) => {
            eprintln!("devgate: {msg}");
            3
        }
    };
    if out.flush().is_err() && code == 0 {
        return ExitCode::from(3);
    }
    ExitCode::from(code)
}

/// Runs the command line `args` (without the program name).
fn run(args: &[String], io: &mut Io<'_>) -> Result<(), Failure> {
    let Some((name, rest)) = args.split_first() else {
        return Err(Failure::Usage("missing command".to_owned()));
    };
    if matches!(name.as_str(), "-h" | "--help" | "help") {
        return cli::print(io.out, &usage());
    }
    let Some(command) = COMMANDS.iter().find(|c| c.name == name) else {
        return Err(Failure::Usage(format!("unknown command {name:?}")));
    };
    match args::parse(rest, command.options, command.flags)? {
        Parsed::Help => cli::print(io.out, command.help),
        Parsed::Args(parsed) => (command.run)(&parsed, io),
    }
}

/// Helpers for the commands' unit tests.
#[cfg(test)]
mod test_support {
    use super::*;

    /// Runs `list` at a fixed time with `stdin`; the result and what went to stdout.
    pub fn run_capture(list: &[&str], stdin: &str) -> (Result<(), Failure>, String) {
        let args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let result = run(
            &args,
            &mut Io {
                now: 1_700_000_000,
                out: &mut out,
                stdin: &mut stdin.as_bytes(),
            },
        );
        (result, String::from_utf8(out).unwrap())
    }

    /// A file holding `contents` in this test process's temporary directory; its path.
    pub fn temp_file(name: &str, contents: &str) -> String {
        let dir = std::env::temp_dir().join(format!("devgate-bin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// A base64url key for the tests.
    pub const KEY: &str = "aCbzv71ILHbh5l-sR_bVTq7lQgh2lvnPBfA4qPbBvxs";
}

#[cfg(test)]
mod tests {
    use super::test_support::run_capture;
    use super::*;

    #[test]
    fn help_and_usage() {
        let (r, out) = run_capture(&["--help"], "");
        assert_eq!(r, Ok(()));
        assert!(out.contains("check-config"));
        for (cmd, marker) in [
            ("keygen", "--out"),
            ("mint", "--ttl"),
            ("verify", "invalid: <code>"),
            ("check-config", "FILE"),
        ] {
            let (r, out) = run_capture(&[cmd, "--help"], "");
            assert_eq!(r, Ok(()), "{cmd}");
            assert!(out.contains(marker), "{cmd}: {out}");
        }
        assert!(matches!(run_capture(&[], "").0, Err(Failure::Usage(_))));
        assert!(matches!(
            run_capture(&["frobnicate"], "").0,
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            run_capture(&["mint", "--sub", "a"], "").0,
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn usage_lists_every_command_with_its_summary() {
        let text = usage();
        for c in COMMANDS {
            assert!(
                text.contains(&format!("  {:<13} {}\n", c.name, c.summary)),
                "{}",
                c.name
            );
            assert!(c.help.starts_with(&format!("usage: devgate {}", c.name)));
        }
        assert!(
            text.contains("  hash-password write an htpasswd line"),
            "{text}"
        );
    }
}

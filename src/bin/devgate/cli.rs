//! What every command shares: how it is declared, what it is given, how it fails.

use std::io::{self, Read, Write};

use crate::args::Args;

/// One subcommand. Each command module declares its own `COMMAND`; `main` lists them.
pub struct Command {
    /// `devgate NAME ...`
    pub name: &'static str,
    /// Its line in `devgate --help`.
    pub summary: &'static str,
    /// `devgate NAME --help`: starts with `usage: devgate NAME`.
    pub help: &'static str,
    /// Options that take a value (`--kid ID`, `--kid=ID`), each given at most once.
    pub options: &'static [&'static str],
    /// Options that take none (`--write`).
    pub flags: &'static [&'static str],
    /// Runs the command with its parsed options (`--help` never reaches it).
    pub run: fn(&Args, &mut Io<'_>) -> Result<(), Failure>,
}

/// The outside world as a command sees it: the clock and the standard streams.
pub struct Io<'a> {
    /// Seconds since the Unix epoch (`--now` overrides it where a command has it).
    pub now: u64,
    /// Standard output: results, and `invalid: <code>` lines.
    pub out: &'a mut dyn Write,
    /// Standard input: secrets and passwords that must not be arguments.
    pub stdin: &'a mut dyn Read,
}

/// How a command failed; each maps to an exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Exit 1; the message goes to stdout as is (`invalid: <code>`).
    Invalid(String),
    /// Exit 1; the message goes to stderr.
    Refused(String),
    /// Exit 2.
    Usage(String),
    /// Exit 3.
    Io(String),
}

impl Failure {
    /// An I/O failure on `what` (a path, `stdout`).
    pub fn io(what: &str, err: &io::Error) -> Failure {
        Failure::Io(format!("{what}: {err}"))
    }
}

/// Writes `text` to stdout.
pub fn print(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::io("stdout", &e))
}

/// Writes `text` and a newline to stdout.
pub fn print_line(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    writeln!(out, "{text}").map_err(|e| Failure::io("stdout", &e))
}

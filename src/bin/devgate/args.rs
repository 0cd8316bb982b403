//! Command-line options: lexopt splits the command line, this module checks it against the
//! command's declared options, and parses the values several commands share.

use std::net::IpAddr;

use devgate::core::cookie::is_valid_cookie_name;
use devgate::core::token::{is_valid_kid, Purpose};
use lexopt::Arg;

use crate::cli::Failure;

/// Key id used by `mint`, `mint-key` and `verify` when `--kid` is not given.
pub const DEFAULT_KID: &str = "k1";
/// Longest `--ttl` accepted.
pub const MAX_TTL_SECONDS: u64 = 366 * 86_400;

/// What a command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// `--help` or `-h`: the command's help, exit 0.
    Help,
    Args(Args),
}

/// Options of one command: `--name VALUE` or `--name=VALUE`, each at most once; flags (no
/// value); `--help`; `--` ends options; everything else is positional (`-` included).
#[derive(Debug)]
pub struct Args {
    options: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
    positional: Vec<String>,
}

/// Parses `args` against the `options` (with a value) and `flags` (without) a command knows,
/// both spelled with their dashes (`--kid`).
pub fn parse(
    args: &[String],
    options: &[&'static str],
    flags: &[&'static str],
) -> Result<Parsed, Failure> {
    let mut parsed = Args {
        options: Vec::new(),
        flags: Vec::new(),
        positional: Vec::new(),
    };
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(lexopt::Error::UnexpectedValue { option, .. }) => {
                return Err(Failure::Usage(format!("{option} takes no value")))
            }
            Err(e) => return Err(Failure::Usage(e.to_string())),
        };
        let name = match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Parsed::Help),
            Arg::Value(value) => {
                // The arguments came in as Strings, so every value is one.
                let value = value
                    .into_string()
                    .map_err(|_| Failure::Usage("arguments must be UTF-8".to_owned()))?;
                parsed.positional.push(value);
                continue;
            }
            Arg::Short(c) => format!("-{c}"),
            Arg::Long(name) => format!("--{name}"),
        };
        if let Some(&flag) = flags.iter().find(|f| **f == name) {
            if !parsed.flags.contains(&flag) {
                parsed.flags.push(flag);
            }
            continue;
        }
        let Some(&name) = options.iter().find(|o| **o == name) else {
            return Err(Failure::Usage(format!("unknown option {name:?}")));
        };
        let value = parser
            .value()
            .ok()
            .and_then(|v| v.into_string().ok())
            .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))?;
        if parsed.options.iter().any(|(n, _)| *n == name) {
            return Err(Failure::Usage(format!("{name} given twice")));
        }
        parsed.options.push((name, value));
    }
    Ok(Parsed::Args(parsed))
}

impl Args {
    /// The value of option `name` (`--kid`), if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether flag `name` (`--write`) was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    /// The value of option `name`; a usage error when it is missing.
    pub fn required(&self, name: &str) -> Result<&str, Failure> {
        self.get(name)
            .ok_or_else(|| Failure::Usage(format!("{name} is required")))
    }

    /// Exactly `want` positional arguments (`what` names them for the message).
    pub fn positionals(&self, want: usize, what: &str) -> Result<&[String], Failure> {
        if self.positional.len() == want {
            Ok(&self.positional)
        } else {
            Err(Failure::Usage(format!(
                "expected {what}, got {} argument(s)",
                self.positional.len()
            )))
        }
    }

    /// No positional arguments.
    pub fn no_positionals(&self) -> Result<(), Failure> {
        self.positionals(0, "no arguments").map(|_| ())
    }

    /// The one positional argument (`what` names it for the message).
    pub fn one_positional(&self, what: &str) -> Result<&str, Failure> {
        self.positionals(1, what)?
            .first()
            .map(String::as_str)
            .ok_or_else(|| Failure::Usage(format!("expected {what}")))
    }

    /// `--kid` (or its alias `--kid-name`), [`DEFAULT_KID`] when neither is given.
    pub fn kid(&self) -> Result<String, Failure> {
        let kid = match (self.get("--kid"), self.get("--kid-name")) {
            (Some(_), Some(_)) => {
                return Err(Failure::Usage(
                    "give --kid or --kid-name, not both".to_owned(),
                ))
            }
            (Some(k), None) | (None, Some(k)) => k,
            (None, None) => DEFAULT_KID,
        };
        if !is_valid_kid(kid) {
            return Err(Failure::Usage(
                "--kid: must be 1..=64 characters of [A-Za-z0-9._-]".to_owned(),
            ));
        }
        Ok(kid.to_owned())
    }

    /// `--purpose` and `--cookie`: a session token needs a valid cookie name, a developer
    /// token takes none.
    pub fn purpose(&self) -> Result<(Purpose, Option<String>), Failure> {
        let purpose = match self.get("--purpose") {
            None => Purpose::Developer,
            Some(p) => Purpose::parse(p)
                .ok_or_else(|| Failure::Usage("--purpose: developer or session".to_owned()))?,
        };
        let cookie = self.get("--cookie");
        match (purpose, cookie) {
            (Purpose::Session, None) => Err(Failure::Usage(
                "--cookie NAME is required with --purpose session".to_owned(),
            )),
            (Purpose::Session, Some(c)) if !is_valid_cookie_name(c) => Err(Failure::Usage(
                "--cookie: not a valid cookie name".to_owned(),
            )),
            (Purpose::Developer, Some(_)) => Err(Failure::Usage(
                "--cookie only applies to --purpose session".to_owned(),
            )),
            (_, c) => Ok((purpose, c.map(str::to_owned))),
        }
    }

    /// A number of seconds.
    pub fn seconds(&self, name: &str) -> Result<Option<u64>, Failure> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| Failure::Usage(format!("{name}: expected a number of seconds")))
            })
            .transpose()
    }

    /// `--now`, else the clock.
    pub fn now(&self, clock: u64) -> Result<u64, Failure> {
        Ok(self.seconds("--now")?.unwrap_or(clock))
    }

    /// Option `name` as an IP address, if given; a usage error when it is not one.
    pub fn ip(&self, name: &str) -> Result<Option<IpAddr>, Failure> {
        self.get(name)
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| Failure::Usage(format!("{name}: not an IP address")))
            })
            .transpose()
    }

    /// A comma-separated list; blanks around items and empty items are dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `8h`, `30m`, `7d`, `90s` or plain seconds; 1 second to [`MAX_TTL_SECONDS`].
pub fn parse_ttl(text: &str) -> Option<u64> {
    let (digits, unit) = match text.as_bytes().last()? {
        b's' => (text.strip_suffix('s')?, 1),
        b'm' => (text.strip_suffix('m')?, 60),
        b'h' => (text.strip_suffix('h')?, 3600),
        b'd' => (text.strip_suffix('d')?, 86_400),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (1..=MAX_TTL_SECONDS).contains(&seconds).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn parsed(list: &[&str], options: &[&'static str]) -> Result<Args, Failure> {
        match parse(&args(list), options, &["--write"])? {
            Parsed::Args(a) => Ok(a),
            Parsed::Help => Err(Failure::Usage("help".to_owned())),
        }
    }

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("8h"), Some(28_800));
        assert_eq!(parse_ttl("30m"), Some(1_800));
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("7d"), Some(604_800));
        assert_eq!(parse_ttl("120"), Some(120));
        assert_eq!(parse_ttl("366d"), Some(MAX_TTL_SECONDS));
        for bad in [
            "",
            "h",
            "0",
            "0h",
            "367d",
            "-1h",
            "+1h",
            "1.5h",
            "1 h",
            "1H",
            "8hh",
            "1w",
            "99999999999999999999d",
            "١h",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn arg_parsing() {
        let a = parsed(
            &["-", "--kid=x", "--key-file", "f", "--", "--y"],
            &["--kid", "--key-file"],
        )
        .unwrap();
        assert_eq!(a.get("--kid"), Some("x"));
        assert_eq!(a.get("--key-file"), Some("f"));
        assert_eq!(a.positional, ["-", "--y"]);
        assert!(matches!(
            parsed(&["--kid"], &["--kid"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            parsed(&["--kid", "a", "--kid", "b"], &["--kid"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            parsed(&["--nope"], &["--kid"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            parse(&args(&["x", "--help"]), &[], &[]),
            Ok(Parsed::Help)
        ));
    }

    #[test]
    fn arg_parsing_edges() {
        // A value may start with a dash: it is the option's value, not an option.
        let a = parsed(
            &["--leeway", "-1", "--kid", "--help"],
            &["--leeway", "--kid"],
        )
        .unwrap();
        assert_eq!(a.get("--leeway"), Some("-1"));
        assert_eq!(a.get("--kid"), Some("--help"));
        // An empty inline value is a value.
        assert_eq!(
            parsed(&["--kid="], &["--kid"]).unwrap().get("--kid"),
            Some("")
        );
        // Flags: anywhere, repeatable, never with a value.
        let a = parsed(&["--write", "p", "--write"], &[]).unwrap();
        assert!(a.flag("--write"));
        assert_eq!(a.positional, ["p"]);
        assert!(!parsed(&[], &[]).unwrap().flag("--write"));
        assert_eq!(
            parsed(&["--write=yes"], &[]).err(),
            Some(Failure::Usage("--write takes no value".to_owned()))
        );
        // Short options other than -h are unknown; -h is help wherever it is.
        assert_eq!(
            parsed(&["-x"], &["--kid"]).err(),
            Some(Failure::Usage("unknown option \"-x\"".to_owned()))
        );
        assert!(matches!(
            parse(&args(&["a", "-h"]), &[], &[]),
            Ok(Parsed::Help)
        ));
        // After `--`, --help is a positional.
        assert_eq!(
            parsed(&["--", "--help"], &[]).unwrap().positional,
            ["--help"]
        );
        // An unknown option before --help is reported.
        assert!(matches!(
            parse(&args(&["--nope", "--help"]), &[], &[]),
            Err(Failure::Usage(_))
        ));
    }
}

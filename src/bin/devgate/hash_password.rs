//! `devgate hash-password`: an htpasswd line for the login form's users.

use std::io::Read;

use devgate::core::token::is_valid_subject;
use zeroize::Zeroizing;

use crate::args::Args;
use crate::cli::{print, Command, Failure, Io};
use crate::keys::random;

/// Longest stdin read: the password is its first line.
const MAX_STDIN: u64 = 4096;

/// `devgate hash-password`.
pub const COMMAND: Command = Command {
    name: "hash-password",
    summary: "write an htpasswd line (bcrypt) for the login form's users",
    help: HELP,
    options: &["--user", "--cost"],
    flags: &[],
    run,
};

const HELP: &str = "\
usage: devgate hash-password --user NAME [--cost N] < password

Reads the password from stdin (the first line, without its line ending) and prints an
htpasswd line `NAME:$2y$NN$...`, the same format as `htpasswd -nB -C N`, for login.users.
  --user NAME   the developer name (1..=256 printable ASCII, no leading/trailing space)
  --cost N      bcrypt cost, 4 to 12 (default 10; login.max_cost refuses higher costs
                than it allows, 10 by default: about 0.1 s of an Envoy worker per login)
";

fn run(args: &Args, io: &mut Io<'_>) -> Result<(), Failure> {
    args.no_positionals()?;
    let user = args.required("--user")?;
    if !is_valid_subject(user) {
        return Err(Failure::Usage(
            "--user: 1..=256 printable ASCII characters, no leading/trailing space".to_owned(),
        ));
    }
    let cost = match args.get("--cost") {
        None => devgate::core::htpasswd::DEFAULT_MAX_COST,
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|c| (4..=devgate::config::MAX_LOGIN_COST).contains(c))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--cost: a number from 4 to {}",
                    devgate::config::MAX_LOGIN_COST
                ))
            })?,
    };
    // Both copies of the password are wiped when they go out of scope, on every return.
    // Room for the whole read, so the buffer never moves (leaving a copy behind).
    let mut input = Zeroizing::new(Vec::with_capacity(MAX_STDIN as usize));
    (&mut *io.stdin)
        .take(MAX_STDIN)
        .read_to_end(&mut input)
        .map_err(|e| Failure::io("stdin", &e))?;
    let line = input.split(|&b| b == b'\n').next().unwrap_or_default();
    let password = Zeroizing::new(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
    if password.is_empty() {
        return Err(Failure::Usage("empty password on stdin".to_owned()));
    }
    let mut salt = [0u8; 16];
    random(&mut salt)?;
    let hashed = bcrypt::hash_with_salt(password.as_slice(), cost, salt)
        .map_err(|e| Failure::Refused(format!("bcrypt: {e}")))?;
    print(
        io.out,
        &format!(
            "{user}:{}\n",
            hashed.format_for_version(bcrypt::Version::TwoY)
        ),
    )
}

#[cfg(test)]
mod tests {
    use crate::cli::Failure;
    use crate::test_support::run_capture;

    #[test]
    fn hash_password_writes_a_line_the_filter_verifies() {
        let (result, out) = run_capture(
            &["hash-password", "--user", "dev", "--cost", "4"],
            "pw 1\r\n",
        );
        assert_eq!(result, Ok(()));
        assert!(out.starts_with("dev:$2y$04$"), "{out}");
        let users = devgate::core::htpasswd::Users::parse(&out, 10).unwrap();
        assert!(users.verify("dev", b"pw 1"));
        assert!(!users.verify("dev", b"pw 1\r"));
        for bad in [
            &["hash-password", "--user", "dev", "--cost", "13"][..],
            &["hash-password", "--cost", "4"],
            &["hash-password", "--user", " dev"],
        ] {
            assert!(
                matches!(run_capture(bad, "pw").0, Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            run_capture(&["hash-password", "--user", "dev"], "\n").0,
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn hash_password_reads_only_the_first_line() {
        let (r, out) = run_capture(
            &["hash-password", "--user", "dev", "--cost", "4"],
            "first\nsecond\n",
        );
        assert_eq!(r, Ok(()));
        let users = devgate::core::htpasswd::Users::parse(&out, 10).unwrap();
        assert!(users.verify("dev", b"first"));
        // No line ending at all: the whole input.
        let (_, out) = run_capture(&["hash-password", "--user", "dev", "--cost", "4"], "pw");
        let users = devgate::core::htpasswd::Users::parse(&out, 10).unwrap();
        assert!(users.verify("dev", b"pw"));
    }
}

//! `devgate mint`: a signed developer or session token.

use devgate::core::token::{self, check_claims, is_valid_subject, Claims};

use crate::args::{parse_ttl, Args};
use crate::cli::{print_line, Command, Failure, Io};
use crate::keys::read_key;

/// `devgate mint`.
pub const COMMAND: Command = Command {
    name: "mint",
    summary: "mint a signed token",
    help: HELP,
    options: &[
        "--sub",
        "--ttl",
        "--kid",
        "--key-file",
        "--purpose",
        "--cookie",
        "--bind-ip",
        "--jti",
        "--now",
    ],
    flags: &[],
    run,
};

const HELP: &str = "\
usage: devgate mint --sub NAME --ttl DURATION --key-file FILE [options]

Prints a signed HS256 token (iat = now, exp = now + DURATION).
  --sub NAME        developer name (1..=256 printable ASCII, no leading/trailing space)
  --ttl DURATION    lifetime: a number with unit s, m, h or d (8h, 30m, 7d); at most 366d
  --key-file FILE   file holding the base64url secret (surrounding whitespace ignored)
  --kid ID          id of that key in the filter configuration (default: k1)
  --purpose P       developer (default) or session
  --cookie NAME     session tokens: the cookie the token will be sent in (required)
  --bind-ip IP      bind the token to this peer address (claim cip)
  --jti ID          token id (claim jti, at most 128 bytes)
  --now SECONDS     use this time instead of the clock (for tests)
";

fn run(args: &Args, io: &mut Io<'_>) -> Result<(), Failure> {
    args.no_positionals()?;
    let sub = args.required("--sub")?;
    if !is_valid_subject(sub) {
        return Err(Failure::Usage(
            "--sub: 1..=256 printable ASCII characters, no leading or trailing space".to_owned(),
        ));
    }
    let ttl = parse_ttl(args.required("--ttl")?).ok_or_else(|| {
        Failure::Usage("--ttl: a number with unit s, m, h or d, at most 366d".to_owned())
    })?;
    let kid = args.kid()?;
    let key_file = args.required("--key-file")?;
    let (purpose, cookie) = args.purpose()?;
    let cip = args.ip("--bind-ip")?;
    let now = args.now(io.now)?;
    let claims = Claims {
        sub: sub.to_owned(),
        purpose,
        cookie,
        cip,
        jti: args.get("--jti").map(str::to_owned),
        iat: Some(now),
        nbf: None,
        exp: now
            .checked_add(ttl)
            .ok_or_else(|| Failure::Usage("--now: too large".to_owned()))?,
    };
    check_claims(&claims).map_err(|e| Failure::Usage(format!("claims: {e}")))?;
    let keys = read_key(key_file, &kid)?;
    print_line(io.out, &token::mint(&claims, keys.signing_key()))
}

#[cfg(test)]
mod tests {
    use crate::cli::Failure;
    use crate::test_support::{run_capture, temp_file, KEY};

    #[test]
    fn mint_then_verify_in_process() {
        let key = temp_file("k.b64", &format!("  {KEY}\n"));
        let (r, token) = run_capture(
            &["mint", "--sub", "alice", "--ttl", "1h", "--key-file", &key],
            "",
        );
        assert_eq!(r, Ok(()));
        // Same bytes as the "no-iat"-less PyJWT vector family: header k1, claims in order.
        assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0."));
        let (r, out) = run_capture(&["verify", "-", "--key-file", &key], &token);
        assert_eq!(r, Ok(()));
        assert_eq!(
            out,
            "{\"sub\":\"alice\",\"dgp\":\"developer\",\"iat\":1700000000,\"exp\":1700003600}\n"
        );
        let (r, _) = run_capture(
            &["verify", token.trim(), "--key-file", &key, "--kid", "k2"],
            "",
        );
        assert_eq!(r, Err(Failure::Invalid("invalid: unknown_kid".to_owned())));
        let (r, _) = run_capture(
            &[
                "verify",
                token.trim(),
                "--key-file",
                &key,
                "--now",
                "1700003600",
            ],
            "",
        );
        assert_eq!(r, Ok(()));
        let (r, _) = run_capture(
            &[
                "verify",
                token.trim(),
                "--key-file",
                &key,
                "--now",
                "1700003630",
            ],
            "",
        );
        assert_eq!(r, Err(Failure::Invalid("invalid: expired".to_owned())));
    }

    #[test]
    fn mint_option_errors() {
        let key = temp_file("k2.b64", KEY);
        let base = ["mint", "--ttl", "1h", "--key-file", &key];
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = base.to_vec();
            v.extend_from_slice(extra);
            run_capture(&v, "").0
        };
        assert!(matches!(with(&["--sub", " alice"]), Err(Failure::Usage(_))));
        assert!(matches!(
            with(&["--sub", "a", "--purpose", "session"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "--cookie", "c"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "--purpose", "apikey"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "--purpose", "session", "--cookie", "a b"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "--bind-ip", "localhost"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "--kid", "a/b"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "--jti", &"j".repeat(129)]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "--now", "18446744073709551615"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            with(&["--sub", "a", "extra"]),
            Err(Failure::Usage(_))
        ));
        assert_eq!(
            with(&[
                "--sub",
                "a",
                "--purpose",
                "session",
                "--cookie",
                "devgate_token"
            ])
            .map(|_| ()),
            Ok(())
        );
    }
}

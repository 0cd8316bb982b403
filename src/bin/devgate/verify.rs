//! `devgate verify`: checks a token as the filter does.

use std::io::Read;

use devgate::core::token::{self, Expect};

use crate::args::Args;
use crate::cli::{print_line, Command, Failure, Io};
use crate::keys::read_key;

/// Default `--leeway`: the filter's default `tokens.leeway_seconds` (a test holds them equal).
const DEFAULT_LEEWAY: u64 = 30;
/// Largest token read from stdin.
const MAX_STDIN: u64 = 64 * 1024;

/// `devgate verify`.
pub const COMMAND: Command = Command {
    name: "verify",
    summary: "verify a token and print its claims",
    help: HELP,
    options: &[
        "--key-file",
        "--kid",
        "--kid-name",
        "--purpose",
        "--cookie",
        "--peer",
        "--leeway",
        "--now",
    ],
    flags: &[],
    run,
};

const HELP: &str = "\
usage: devgate verify TOKEN --key-file FILE [options]

Verifies TOKEN (`-`: read it from stdin) like the filter does and prints its claims as
JSON (exit 0), or `invalid: <code>` (exit 1).
  --key-file FILE   file holding the base64url secret
  --kid ID          id of that key (alias --kid-name; default: k1); the token's kid must match
  --purpose P       developer (default) or session
  --cookie NAME     session tokens: the cookie name the token must be bound to (required)
  --peer IP         the client address, for tokens bound with cip
  --leeway SECONDS  clock skew tolerated (default: 30)
  --now SECONDS     use this time instead of the clock (for tests)
";

fn run(args: &Args, io: &mut Io<'_>) -> Result<(), Failure> {
    let token_arg = args.one_positional("one TOKEN (or - for stdin)")?;
    let kid = args.kid()?;
    let key_file = args.required("--key-file")?;
    let (purpose, cookie) = args.purpose()?;
    let peer = args.ip("--peer")?;
    let leeway = args.seconds("--leeway")?.unwrap_or(DEFAULT_LEEWAY);
    let now = args.now(io.now)?;
    let keys = read_key(key_file, &kid)?;
    let token = if token_arg == "-" {
        let mut buf = Vec::new();
        (&mut *io.stdin)
            .take(MAX_STDIN)
            .read_to_end(&mut buf)
            .map_err(|e| Failure::io("stdin", &e))?;
        buf
    } else {
        token_arg.as_bytes().to_vec()
    };
    let expect = Expect {
        purpose,
        leeway,
        cookie: cookie.as_deref(),
        peer,
    };
    match token::verify(token.trim_ascii(), &keys, &expect, now) {
        Ok(claims) => {
            let json =
                serde_json::to_string(&claims).map_err(|e| Failure::Io(format!("claims: {e}")))?;
            print_line(io.out, &json)
        }
        Err(e) => Err(Failure::Invalid(format!("invalid: {}", e.code()))),
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Failure;
    use crate::test_support::{run_capture, temp_file, KEY};

    #[test]
    fn default_leeway_is_the_filters() {
        let schema = devgate::config::json_schema();
        assert_eq!(
            schema.pointer("/$defs/Tokens/properties/leeway_seconds/default"),
            Some(&serde_json::json!(super::DEFAULT_LEEWAY))
        );
    }

    #[test]
    fn verify_output_never_contains_the_secret() {
        let key = temp_file("k3.b64", KEY);
        for token in ["garbage", "a.b.c", "-"] {
            let (r, out) = run_capture(&["verify", token, "--key-file", &key], "x.y.z");
            let Err(Failure::Invalid(msg)) = r else {
                panic!("{token}: {r:?}")
            };
            assert!(msg.starts_with("invalid: "));
            assert!(!msg.contains(KEY) && !out.contains(KEY));
        }
    }
}

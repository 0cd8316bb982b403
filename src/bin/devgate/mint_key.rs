//! `devgate mint-key`: a signed API key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use devgate::core::apikey::{self, KeyKind, NewKey};

use crate::args::{parse_ttl, Args};
use crate::cli::{print_line, Command, Failure, Io};
use crate::keys::{random, read_key};

/// `devgate mint-key`.
pub const COMMAND: Command = Command {
    name: "mint-key",
    summary: "mint a signed API key (public or private)",
    help: HELP,
    options: &[
        "--kind",
        "--org",
        "--project",
        "--product",
        "--referer",
        "--ip",
        "--id",
        "--ttl",
        "--key-file",
        "--kid",
        "--now",
    ],
    flags: &["--write"],
    run,
};

const HELP: &str = "\
usage: devgate mint-key --kind public|private --org ORG --project PROJECT --product P[,P...]
                        --key-file FILE [options]

Prints a signed API key: dgpk_... (public: the `key` query parameter, read-only, restricted by
page) or dgsk_... (private: `private_key` or X-Api-Key, optionally restricted by peer IP).
  --kind K          public or private
  --org ORG         organization id (1-64 of [A-Za-z0-9._:-]); sent upstream on API routes
  --project P       project id (same characters)
  --product LIST    products the key may use, comma-separated
  --referer LIST    public keys: allowed page hosts, comma-separated (*.example.com = subdomains)
  --ip LIST         private keys: allowed peer IPs/CIDRs, comma-separated
  --write           private keys: allow POST, PUT, PATCH and DELETE
  --id ID           key id, listed in api.revoked to revoke it (default: random)
  --ttl DURATION    expire after DURATION (s, m, h, d); default: no expiry
  --key-file FILE   file holding the base64url secret
  --kid ID          id of that key in the filter configuration (default: k1)
  --now SECONDS     use this time instead of the clock (for tests)
";

/// A random key id: 9 bytes, 12 base64url characters.
fn random_id() -> Result<String, Failure> {
    let mut bytes = [0u8; 9];
    random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn run(args: &Args, io: &mut Io<'_>) -> Result<(), Failure> {
    args.no_positionals()?;
    let kind = match args.required("--kind")? {
        "public" => KeyKind::Public,
        "private" => KeyKind::Private,
        _ => return Err(Failure::Usage("--kind: public or private".to_owned())),
    };
    let id = match args.get("--id") {
        Some(id) => id.to_owned(),
        None => random_id()?,
    };
    let now = args.now(io.now)?;
    let exp = match args.get("--ttl") {
        Some(t) => Some(
            parse_ttl(t)
                .and_then(|ttl| now.checked_add(ttl))
                .ok_or_else(|| {
                    Failure::Usage("--ttl: a number with unit s, m, h or d".to_owned())
                })?,
        ),
        None => None,
    };
    let products = args.list("--product");
    let referers = args.list("--referer");
    let ips = args.list("--ip");
    let new = NewKey {
        kind,
        id: &id,
        org: args.required("--org")?,
        project: args.required("--project")?,
        products: &products,
        write: args.flag("--write"),
        referers: &referers,
        ips: &ips,
        iat: now,
        exp,
    };
    let kid = args.kid()?;
    let keys = read_key(args.required("--key-file")?, &kid)?;
    let text =
        apikey::mint(&new, keys.signing_key()).map_err(|e| Failure::Usage(e.0.to_owned()))?;
    print_line(io.out, &text)
}

#[cfg(test)]
mod tests {
    use crate::cli::Failure;
    use crate::test_support::{run_capture, temp_file, KEY};

    #[test]
    fn mint_key_reads_write_anywhere_and_draws_random_ids() {
        let key = temp_file("mk.b64", KEY);
        let mint = |extra: &[&str]| {
            let mut v = vec![
                "mint-key",
                "--kind",
                "private",
                "--org",
                "acme",
                "--project",
                "web",
                "--product",
                "maps",
                "--key-file",
                &key,
            ];
            v.extend_from_slice(extra);
            run_capture(&v, "")
        };
        let (r, a) = mint(&[]);
        assert_eq!(r, Ok(()));
        let (_, b) = mint(&[]);
        assert!(a.starts_with("dgsk_") && b.starts_with("dgsk_"));
        assert_ne!(a, b, "random ids");
        let (_, fixed1) = mint(&["--id", "etl-1"]);
        let (_, fixed2) = mint(&["--id", "etl-1"]);
        assert_eq!(fixed1, fixed2, "same claims, same key, same text");
        let (_, write) = mint(&["--id", "etl-1", "--write"]);
        let (_, write_first) = mint(&["--write", "--id", "etl-1"]);
        assert_ne!(write, fixed1);
        assert_eq!(write, write_first);
        assert!(matches!(
            mint(&["--write=yes"]).0,
            Err(Failure::Usage(m)) if m == "--write takes no value"
        ));
    }
}

//! `devgate`: the native command line. Generates keys, mints and verifies tokens, checks a
//! configuration. Run `devgate --help`.
//!
//! Exit codes: 0 ok, 1 verification or validation failure, 2 usage error, 3 I/O error.
//! Secrets are read from files and never printed (except by `keygen`, whose output is the new
//! secret when no `--out` is given).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use devgate::core::apikey::{self, KeyKind, NewKey};
use devgate::core::cookie::is_valid_cookie_name;
use devgate::core::token::{
    self, check_claims, is_valid_kid, is_valid_subject, Claims, Expect, Key, KeySet, Purpose,
    Secret,
};

/// Key id used by `mint` and `verify` when `--kid` is not given.
const DEFAULT_KID: &str = "k1";
/// Longest `--ttl` accepted by `mint`.
const MAX_TTL_SECONDS: u64 = 366 * 86_400;
/// Default `--leeway` of `verify`: the filter's default `tokens.leeway_seconds`.
const DEFAULT_LEEWAY: u64 = 30;
/// Largest key file read.
const MAX_KEY_FILE: u64 = 4096;
/// Largest token read from stdin.
const MAX_STDIN: u64 = 64 * 1024;

const USAGE: &str = "\
usage: devgate <command> [options]

commands:
  keygen        generate a new 32-byte secret (base64url)
  mint          mint a signed token
  mint-key      mint a signed API key (public or private)
  verify        verify a token and print its claims
  hash-password write an htpasswd line (bcrypt) for the login form's users
  check-config  validate a filter configuration file
  schema        print the configuration's JSON Schema (docs/config.schema.json)

`devgate <command> --help` describes a command.
exit codes: 0 ok, 1 invalid (token, key or configuration), 2 usage error, 3 I/O error
";

const KEYGEN_HELP: &str = "\
usage: devgate keygen [--out FILE]

Prints 32 random bytes from /dev/urandom as unpadded base64url.
  --out FILE   write the secret to FILE instead, created with mode 0600; refuses to
               overwrite an existing file
";

const MINT_HELP: &str = "\
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

const MINT_KEY_HELP: &str = "\
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

const VERIFY_HELP: &str = "\
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

const HASH_PASSWORD_HELP: &str = "\
usage: devgate hash-password --user NAME [--cost N] < password

Reads the password from stdin (the first line, without its line ending) and prints an
htpasswd line `NAME:$2y$NN$...`, the same format as `htpasswd -nB -C N`, for login.users.
  --user NAME   the developer name (1..=256 printable ASCII, no leading/trailing space)
  --cost N      bcrypt cost, 4 to 12 (default 10; login.max_cost refuses higher costs
                than it allows, 10 by default: about 0.1 s of an Envoy worker per login)
";

const CHECK_CONFIG_HELP: &str = "\
usage: devgate check-config FILE

Validates the filter's plugin configuration: first its structure against the JSON Schema
(`devgate schema`; errors name the field, never a value), then with the code the filter runs
in on_configure.
FILE is the configuration JSON, or YAML holding it: an Envoy bootstrap (every
envoy.filters.http.wasm `configuration` value next to a `vm_config`, with the VM's
environment_variables.key_values as the environment for `secret_env`) or an Istio
WasmPlugin (`spec.pluginConfig`, with `spec.vmConfig.env`). Other `secret_env` variables
are read from this process's environment.
Prints `ok` per configuration (exit 0) or each error, naming the field (exit 1).
";

const SCHEMA_HELP: &str = "\
usage: devgate schema

Prints the JSON Schema (draft 2020-12) of the plugin configuration, generated from the types
the filter parses: every field, its type, default and description; unknown fields are errors.
The repository ships it as docs/config.schema.json for editors and CI. Values (CIDRs, paths,
ranges) are checked by `devgate check-config`, which validates against this schema first.
";

/// How a command failed; each maps to an exit code.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
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
    fn io(what: &str, err: &io::Error) -> Failure {
        Failure::Io(format!("{what}: {err}"))
    }
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
        Ok(args) => run(&args, now, &mut out, &mut io::stdin()),
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

fn run(
    args: &[String],
    now: u64,
    out: &mut dyn Write,
    stdin: &mut dyn Read,
) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("missing command".to_owned()));
    };
    let (help, result) = match command.as_str() {
        "-h" | "--help" | "help" => (USAGE, Ok(())),
        "keygen" => (KEYGEN_HELP, keygen(rest, out)),
        "mint" => (MINT_HELP, mint(rest, now, out)),
        "mint-key" => (MINT_KEY_HELP, mint_key(rest, now, out)),
        "verify" => (VERIFY_HELP, verify(rest, now, out, stdin)),
        "hash-password" => (HASH_PASSWORD_HELP, hash_password(rest, out, stdin)),
        "check-config" => (CHECK_CONFIG_HELP, check_config(rest, out)),
        "schema" => (SCHEMA_HELP, schema(rest, out)),
        other => return Err(Failure::Usage(format!("unknown command {other:?}"))),
    };
    match result {
        Err(Failure::Usage(msg)) if msg == HELP => print(out, help),
        Ok(()) if help == USAGE => print(out, USAGE),
        other => other,
    }
}

fn print(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::io("stdout", &e))
}

/// Marker "error" for `--help`: the caller prints the command's help and exits 0.
const HELP: &str = "\0help";

/// Options of one command: `--name VALUE` or `--name=VALUE`, each at most once; `--help`;
/// `--` ends options; everything else is positional (`-` included).
struct Args {
    options: Vec<(&'static str, String)>,
    positional: Vec<String>,
}

impl Args {
    fn parse(args: &[String], known: &[&'static str]) -> Result<Args, Failure> {
        let mut parsed = Args {
            options: Vec::new(),
            positional: Vec::new(),
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if arg == "--" {
                parsed.positional.extend(iter.by_ref().cloned());
                break;
            }
            if arg == "--help" || arg == "-h" {
                return Err(Failure::Usage(HELP.to_owned()));
            }
            if !arg.starts_with('-') || arg == "-" {
                parsed.positional.push(arg.clone());
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let Some(&name) = known.iter().find(|k| **k == name) else {
                return Err(Failure::Usage(format!("unknown option {name:?}")));
            };
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))?,
            };
            if parsed.options.iter().any(|(n, _)| *n == name) {
                return Err(Failure::Usage(format!("{name} given twice")));
            }
            parsed.options.push((name, value));
        }
        Ok(parsed)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, Failure> {
        self.get(name)
            .ok_or_else(|| Failure::Usage(format!("{name} is required")))
    }

    fn positionals(&self, want: usize, what: &str) -> Result<&[String], Failure> {
        if self.positional.len() == want {
            Ok(&self.positional)
        } else {
            Err(Failure::Usage(format!(
                "expected {what}, got {} argument(s)",
                self.positional.len()
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn hash_password(
    args: &[String],
    out: &mut dyn Write,
    stdin: &mut dyn Read,
) -> Result<(), Failure> {
    let args = Args::parse(args, &["--user", "--cost"])?;
    args.positionals(0, "no arguments")?;
    let user = args
        .get("--user")
        .ok_or_else(|| Failure::Usage("--user is required".to_owned()))?;
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
            .ok_or_else(|| Failure::Usage("--cost: a number from 4 to 12".to_owned()))?,
    };
    let mut input = Vec::new();
    stdin
        .take(4096)
        .read_to_end(&mut input)
        .map_err(|e| Failure::io("stdin", &e))?;
    let end = input
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(input.len());
    let mut password = input.get(..end).unwrap_or_default().to_vec();
    if password.last() == Some(&b'\r') {
        password.pop();
    }
    input.fill(0);
    if password.is_empty() {
        return Err(Failure::Usage("empty password on stdin".to_owned()));
    }
    let mut salt = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| Failure::io("/dev/urandom", &e))?;
    let hashed = bcrypt::hash_with_salt(&password, cost, salt)
        .map_err(|e| Failure::Refused(format!("bcrypt: {e}")))?;
    password.fill(0);
    let line = format!(
        "{user}:{}\n",
        hashed.format_for_version(bcrypt::Version::TwoY)
    );
    out.write_all(line.as_bytes())
        .map_err(|e| Failure::io("stdout", &e))
}

fn keygen(args: &[String], out: &mut dyn Write) -> Result<(), Failure> {
    let args = Args::parse(args, &["--out"])?;
    args.positionals(0, "no arguments")?;
    // Create the output file (0600, never overwriting) before touching any secret.
    let file = match args.get("--out") {
        Some(path) => Some((
            path,
            create_private(Path::new(path)).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Failure::Io(format!("{path}: already exists; refusing to overwrite it"))
                } else {
                    Failure::io(path, &e)
                }
            })?,
        )),
        None => None,
    };
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::io("/dev/urandom", &e))?;
    // 32 bytes are 43 base64url characters; one more for the newline.
    let mut encoded = [0u8; 44];
    let len = URL_SAFE_NO_PAD
        .encode_slice(bytes, &mut encoded)
        .map_err(|_| Failure::Io("encoding the secret".to_owned()))?;
    bytes.fill(0);
    let line = encoded
        .get_mut(..=len)
        .ok_or_else(|| Failure::Io("encoding the secret".to_owned()))?;
    if let Some(last) = line.last_mut() {
        *last = b'\n';
    }
    let written = match file {
        Some((path, mut f)) => f
            .write_all(line)
            .and_then(|()| f.sync_all())
            .map_err(|e| Failure::io(path, &e)),
        None => out.write_all(line).map_err(|e| Failure::io("stdout", &e)),
    };
    // Best-effort wipe of our copies of the secret.
    encoded.fill(0);
    std::hint::black_box(&mut encoded);
    std::hint::black_box(&mut bytes);
    written
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> io::Result<File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "--out needs a Unix system (file mode 0600)",
    ))
}

/// Warns when a key file is readable by group or others.
#[cfg(unix)]
fn warn_if_shared(path: &str, file: &File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "devgate: warning: {path} is accessible by group or others (chmod 600 {path})"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &str, _file: &File) {}

fn read_key(path: &str, kid: &str) -> Result<KeySet, Failure> {
    let mut file = File::open(path).map_err(|e| Failure::io(path, &e))?;
    warn_if_shared(path, &file);
    let mut text = Vec::new();
    (&mut file)
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| Failure::io(path, &e))?;
    let result = if text.len() as u64 > MAX_KEY_FILE {
        Err(Failure::Refused(format!(
            "{path}: too large for a key file"
        )))
    } else {
        match std::str::from_utf8(&text) {
            Ok(s) => {
                Secret::from_b64url(s.trim()).map_err(|e| Failure::Refused(format!("{path}: {e}")))
            }
            Err(_) => Err(Failure::Refused(format!(
                "{path}: secret is not valid base64url"
            ))),
        }
    };
    text.fill(0);
    std::hint::black_box(&text);
    let secret = result?;
    KeySet::new(vec![Key {
        id: kid.to_owned(),
        secret,
    }])
    .map_err(|e| Failure::Refused(e.to_string()))
}

fn parse_kid(args: &Args) -> Result<String, Failure> {
    let kid = match (args.get("--kid"), args.get("--kid-name")) {
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

fn parse_purpose(args: &Args) -> Result<(Purpose, Option<String>), Failure> {
    let purpose = match args.get("--purpose") {
        None => Purpose::Developer,
        Some(p) => Purpose::parse(p)
            .ok_or_else(|| Failure::Usage("--purpose: developer or session".to_owned()))?,
    };
    let cookie = args.get("--cookie");
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

fn parse_u64(args: &Args, name: &str) -> Result<Option<u64>, Failure> {
    args.get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Failure::Usage(format!("{name}: expected a number of seconds")))
        })
        .transpose()
}

fn parse_ip(args: &Args, name: &str) -> Result<Option<IpAddr>, Failure> {
    args.get(name)
        .map(|v| {
            v.parse::<IpAddr>()
                .map_err(|_| Failure::Usage(format!("{name}: not an IP address")))
        })
        .transpose()
}

/// `8h`, `30m`, `7d`, `90s` or plain seconds; 1 second to [`MAX_TTL_SECONDS`].
fn parse_ttl(text: &str) -> Option<u64> {
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

fn mint(args: &[String], now: u64, out: &mut dyn Write) -> Result<(), Failure> {
    let args = Args::parse(
        args,
        &[
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
    )?;
    args.positionals(0, "no arguments")?;
    let sub = args.required("--sub")?;
    if !is_valid_subject(sub) {
        return Err(Failure::Usage(
            "--sub: 1..=256 printable ASCII characters, no leading or trailing space".to_owned(),
        ));
    }
    let ttl_text = args.required("--ttl")?;
    let ttl = parse_ttl(ttl_text).ok_or_else(|| {
        Failure::Usage("--ttl: a number with unit s, m, h or d, at most 366d".to_owned())
    })?;
    let kid = parse_kid(&args)?;
    let key_file = args.required("--key-file")?;
    let (purpose, cookie) = parse_purpose(&args)?;
    let cip = parse_ip(&args, "--bind-ip")?;
    let now = parse_u64(&args, "--now")?.unwrap_or(now);
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
    let token = token::mint(&claims, keys.signing_key());
    writeln!(out, "{token}").map_err(|e| Failure::io("stdout", &e))
}

fn list(args: &Args, name: &str) -> Vec<String> {
    args.get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn random_id() -> Result<String, Failure> {
    let mut bytes = [0u8; 9];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::io("/dev/urandom", &e))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn mint_key(args: &[String], now: u64, out: &mut dyn Write) -> Result<(), Failure> {
    let write = args.iter().any(|a| a == "--write");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--write").cloned().collect();
    let args = Args::parse(
        &rest,
        &[
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
    )?;
    args.positionals(0, "no arguments")?;
    let kind = match args.required("--kind")? {
        "public" => KeyKind::Public,
        "private" => KeyKind::Private,
        _ => return Err(Failure::Usage("--kind: public or private".to_owned())),
    };
    let id = match args.get("--id") {
        Some(id) => id.to_owned(),
        None => random_id()?,
    };
    let now = parse_u64(&args, "--now")?.unwrap_or(now);
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
    let products = list(&args, "--product");
    let referers = list(&args, "--referer");
    let ips = list(&args, "--ip");
    let new = NewKey {
        kind,
        id: &id,
        org: args.required("--org")?,
        project: args.required("--project")?,
        products: &products,
        write,
        referers: &referers,
        ips: &ips,
        iat: now,
        exp,
    };
    let kid = parse_kid(&args)?;
    let keys = read_key(args.required("--key-file")?, &kid)?;
    let text =
        apikey::mint(&new, keys.signing_key()).map_err(|e| Failure::Usage(e.0.to_owned()))?;
    writeln!(out, "{text}").map_err(|e| Failure::io("stdout", &e))
}

fn verify(
    args: &[String],
    now: u64,
    out: &mut dyn Write,
    stdin: &mut dyn Read,
) -> Result<(), Failure> {
    let args = Args::parse(
        args,
        &[
            "--key-file",
            "--kid",
            "--kid-name",
            "--purpose",
            "--cookie",
            "--peer",
            "--leeway",
            "--now",
        ],
    )?;
    let token_arg = args
        .positionals(1, "one TOKEN (or - for stdin)")?
        .first()
        .cloned()
        .unwrap_or_default();
    let kid = parse_kid(&args)?;
    let key_file = args.required("--key-file")?;
    let (purpose, cookie) = parse_purpose(&args)?;
    let peer = parse_ip(&args, "--peer")?;
    let leeway = parse_u64(&args, "--leeway")?.unwrap_or(DEFAULT_LEEWAY);
    let now = parse_u64(&args, "--now")?.unwrap_or(now);
    let keys = read_key(key_file, &kid)?;
    let token = if token_arg == "-" {
        let mut buf = Vec::new();
        stdin
            .take(MAX_STDIN)
            .read_to_end(&mut buf)
            .map_err(|e| Failure::io("stdin", &e))?;
        buf
    } else {
        token_arg.into_bytes()
    };
    let token = token.trim_ascii();
    let expect = Expect {
        purpose,
        leeway,
        cookie: cookie.as_deref(),
        peer,
    };
    match token::verify(token, &keys, &expect, now) {
        Ok(claims) => {
            let json =
                serde_json::to_string(&claims).map_err(|e| Failure::Io(format!("claims: {e}")))?;
            writeln!(out, "{json}").map_err(|e| Failure::io("stdout", &e))
        }
        Err(e) => Err(Failure::Invalid(format!("invalid: {}", e.code()))),
    }
}

fn check_config(args: &[String], out: &mut dyn Write) -> Result<(), Failure> {
    let args = Args::parse(args, &[])?;
    let path = args
        .positionals(1, "one FILE")?
        .first()
        .cloned()
        .unwrap_or_default();
    let bytes = std::fs::read(&path).map_err(|e| Failure::io(&path, &e))?;
    let text = String::from_utf8_lossy(&bytes);
    let first = text.trim_start().chars().next();
    if matches!(first, None | Some('{')) {
        return match check_one(&bytes, &|var| std::env::var(var).ok())? {
            Ok(()) => writeln!(out, "ok").map_err(|e| Failure::io("stdout", &e)),
            Err(errors) => Err(Failure::Refused(
                errors
                    .iter()
                    .map(|e| format!("{path}: {e}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )),
        };
    }
    let found =
        envoy_yaml::plugin_configs(&text).map_err(|e| Failure::Refused(format!("{path}: {e}")))?;
    if found.is_empty() {
        return Err(Failure::Refused(format!(
            "{path}: no devgate configuration found (neither JSON nor an Envoy/Istio YAML with a Wasm plugin configuration)"
        )));
    }
    let mut failed = Vec::new();
    for plugin in &found {
        let lookup = |var: &str| {
            plugin
                .env
                .get(var)
                .cloned()
                .or_else(|| std::env::var(var).ok())
        };
        match check_one(plugin.json.as_bytes(), &lookup)? {
            Ok(()) => {
                writeln!(out, "ok: {}", plugin.location).map_err(|e| Failure::io("stdout", &e))?
            }
            Err(errors) => failed.extend(
                errors
                    .iter()
                    .map(|e| format!("{path}: {}: {e}", plugin.location)),
            ),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Refused(failed.join("\n")))
    }
}

/// One configuration: its structure against the schema, then the filter's own parser (skipped
/// when the structure is wrong: it would only repeat the first error). The outer error is an
/// internal one (a schema the validator cannot read); the inner list holds the configuration's
/// errors, each naming a field and never a value.
fn check_one(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Result<(), Vec<String>>, Failure> {
    let problems = structure_problems(json)?;
    if !problems.is_empty() {
        return Ok(Err(problems
            .iter()
            .map(|p| format!("schema: {p}"))
            .collect()));
    }
    Ok(devgate::config::parse_policy_with_env(json, env)
        .map(|_| ())
        .map_err(|e| vec![e.to_string()]))
}

/// Structural problems of a configuration against [`devgate::config::json_schema`]. Text that is
/// not JSON, or too large, has none here: the parser reports it with a line and column.
fn structure_problems(json: &[u8]) -> Result<Vec<schema_check::Problem>, Failure> {
    if json.len() > devgate::config::MAX_CONFIG_LEN {
        return Ok(Vec::new());
    }
    let value = if json.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_slice(json) {
            Ok(v) => v,
            Err(_) => return Ok(Vec::new()),
        }
    };
    schema_check::validate(&devgate::config::json_schema(), &value)
        .map_err(|e| Failure::Refused(format!("internal error: the configuration schema: {e}")))
}

/// The schema as shipped in docs/config.schema.json: pretty JSON and a final newline.
fn schema_text() -> Result<String, Failure> {
    serde_json::to_string_pretty(&devgate::config::json_schema())
        .map(|text| text + "\n")
        .map_err(|e| Failure::Io(format!("schema: {e}")))
}

fn schema(args: &[String], out: &mut dyn Write) -> Result<(), Failure> {
    let args = Args::parse(args, &[])?;
    args.positionals(0, "no arguments")?;
    print(out, &schema_text()?)
}

/// A JSON Schema validator for the subset `devgate schema` emits, written here rather than
/// taken from crates.io: `jsonschema` 0.61 with default features off still brings ~58 crates
/// (regex, fancy-regex, num-bigint/rational, ahash, parking_lot, uuid-simd, ...) and, measured on
/// this 2-core machine, +64 s CPU for a debug build and +141 s for the LTO release CLI, to check
/// a dozen keywords. [`supported`] refuses any other keyword, so a schemars upgrade that emits
/// one fails the tests instead of being silently ignored.
///
/// Messages name the field (`network.allow[0]`, `(root)`, as the parser does) and what the
/// schema expects; they never contain a value from the configuration.
mod schema_check {
    use serde_json::{Map, Value};

    /// Keywords checked here.
    const ASSERTIONS: &[&str] = &[
        "$ref",
        "type",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minimum",
        "maximum",
    ];
    /// Keywords that only describe: `format` is an annotation in draft 2020-12 (schemars emits
    /// `uint64` next to `minimum: 0`, which is checked).
    const ANNOTATIONS: &[&str] = &[
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "format",
        "deprecated",
        "readOnly",
        "writeOnly",
    ];
    /// Nesting of schemas (`$ref`s included) followed for one value; the schema is not
    /// recursive, so this only stops a broken one.
    const MAX_DEPTH: usize = 64;
    /// Problems reported for one configuration.
    const MAX_PROBLEMS: usize = 20;

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Problem {
        /// The JSON path, in the parser's notation: `keys[0].secret_env`, `(root)`.
        pub field: String,
        /// What is wrong, in the schema's words only.
        pub message: String,
        /// The value is not of the kind the schema wants here (type, `const`, `enum`): for
        /// `anyOf`/`oneOf`, that alternative is not the one the author meant.
        shape: bool,
    }

    impl std::fmt::Display for Problem {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "field `{}`: {}", self.field, self.message)
        }
    }

    /// Every keyword of `schema` (and its subschemas) is one this module knows, and every
    /// `$ref` resolves.
    pub fn supported(schema: &Value) -> Result<(), String> {
        supported_at(schema, schema, "#", 0)
    }

    fn supported_at(root: &Value, s: &Value, at: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{at}: nested too deeply"));
        }
        let obj = match s {
            Value::Bool(_) => return Ok(()),
            Value::Object(o) => o,
            _ => return Err(format!("{at}: not a schema")),
        };
        for (k, v) in obj {
            let at = format!("{at}/{k}");
            match k.as_str() {
                "$ref" => {
                    resolve(root, v)?;
                }
                "$defs" | "definitions" | "properties" => {
                    let map = v.as_object().ok_or(format!("{at}: not an object"))?;
                    for (name, sub) in map {
                        supported_at(root, sub, &format!("{at}/{name}"), depth + 1)?;
                    }
                }
                "anyOf" | "oneOf" | "allOf" => {
                    let list = v.as_array().filter(|l| !l.is_empty());
                    for (i, sub) in list.ok_or(format!("{at}: not a list"))?.iter().enumerate() {
                        supported_at(root, sub, &format!("{at}/{i}"), depth + 1)?;
                    }
                }
                "items" | "additionalProperties" => supported_at(root, v, &at, depth + 1)?,
                "type" => {
                    let names: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for n in names {
                        let known = [
                            "null", "boolean", "object", "array", "string", "number", "integer",
                        ];
                        if !n.as_str().is_some_and(|n| known.contains(&n)) {
                            return Err(format!("{at}: unknown type"));
                        }
                    }
                }
                "required" | "enum" => {
                    v.as_array().ok_or(format!("{at}: not a list"))?;
                }
                "minimum" | "maximum" => {
                    v.as_f64().ok_or(format!("{at}: not a number"))?;
                }
                k if ASSERTIONS.contains(&k) || ANNOTATIONS.contains(&k) => {}
                _ => {
                    return Err(format!(
                        "{at}: keyword not supported by devgate's validator"
                    ))
                }
            }
        }
        Ok(())
    }

    fn resolve<'a>(root: &'a Value, reference: &Value) -> Result<&'a Value, String> {
        let r = reference.as_str().unwrap_or_default();
        let pointer = r
            .strip_prefix('#')
            .filter(|p| p.starts_with("/$defs/") || p.starts_with("/definitions/"))
            .ok_or(format!(
                "$ref {r}: only #/$defs/... and #/definitions/... are supported"
            ))?;
        root.pointer(pointer)
            .ok_or(format!("$ref {r}: no such definition"))
    }

    /// The problems of `instance` against `schema` (empty: it matches). Err: the schema uses
    /// something [`supported`] refuses.
    pub fn validate(schema: &Value, instance: &Value) -> Result<Vec<Problem>, String> {
        supported(schema)?;
        let mut problems = Vec::new();
        check(schema, schema, instance, &mut Vec::new(), 0, &mut problems)?;
        problems.truncate(MAX_PROBLEMS);
        Ok(problems)
    }

    #[derive(Clone)]
    enum Seg {
        Key(String),
        Index(usize),
    }

    fn field(path: &[Seg]) -> String {
        if path.is_empty() {
            return "(root)".to_owned();
        }
        let mut out = String::new();
        for seg in path {
            match seg {
                Seg::Key(k) if out.is_empty() => out.push_str(k),
                Seg::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn type_of(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    fn has_type(v: &Value, name: &str) -> bool {
        match (name, v) {
            ("integer", Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            ("number", Value::Number(_)) => true,
            _ => type_of(v) == name,
        }
    }

    fn article(name: &str) -> String {
        match name {
            "null" => "null".to_owned(),
            "integer" | "object" | "array" => format!("an {name}"),
            _ => format!("a {name}"),
        }
    }

    /// A schema value for a message: devgate's own words (enum names), never the operator's.
    fn show(v: &Value) -> String {
        match v {
            Value::String(s) => format!("`{s}`"),
            other => format!("`{other}`"),
        }
    }

    /// What a schema accepts, in a few words, for "expected ..." messages.
    fn describe(root: &Value, s: &Value, depth: usize) -> Vec<String> {
        if depth > MAX_DEPTH {
            return Vec::new();
        }
        let Some(obj) = s.as_object() else {
            return Vec::new();
        };
        if let Some(r) = obj.get("$ref") {
            return resolve(root, r)
                .map(|t| describe(root, t, depth + 1))
                .unwrap_or_default();
        }
        if let Some(c) = obj.get("const") {
            return vec![show(c)];
        }
        if let Some(Value::Array(values)) = obj.get("enum") {
            return values.iter().map(show).collect();
        }
        if let Some(Value::Array(branches)) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
            return branches
                .iter()
                .flat_map(|b| describe(root, b, depth + 1))
                .collect();
        }
        match obj.get("type") {
            Some(Value::String(t)) => vec![article(t)],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(article).collect(),
            _ => Vec::new(),
        }
    }

    fn one_of(mut words: Vec<String>) -> String {
        words.dedup();
        match words.len() {
            0 => "something else".to_owned(),
            1 => words.concat(),
            _ => {
                let last = words.pop().unwrap_or_default();
                format!("{} or {last}", words.join(", "))
            }
        }
    }

    fn check(
        root: &Value,
        schema: &Value,
        inst: &Value,
        path: &mut Vec<Seg>,
        depth: usize,
        out: &mut Vec<Problem>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".to_owned());
        }
        let at = field(path);
        let here = |message: String| Problem {
            field: at.clone(),
            message,
            shape: false,
        };
        let shape = |message: String| Problem {
            field: at.clone(),
            message,
            shape: true,
        };
        let obj = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => {
                out.push(shape("not allowed here".to_owned()));
                return Ok(());
            }
            Value::Object(o) => o,
            _ => return Err("not a schema".to_owned()),
        };
        if let Some(r) = obj.get("$ref") {
            check(root, resolve(root, r)?, inst, path, depth + 1, out)?;
        }
        if let Some(t) = obj.get("type") {
            let names: Vec<&str> = match t {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                other => other.as_str().into_iter().collect(),
            };
            if !names.iter().any(|n| has_type(inst, n)) {
                let expected = one_of(describe(root, &Value::Object(type_only(obj)), depth));
                out.push(shape(format!(
                    "expected {expected}, found {}",
                    article(type_of(inst))
                )));
                // Nothing below applies to a value of the wrong type.
                return Ok(());
            }
        }
        if let Some(c) = obj.get("const") {
            if inst != c {
                out.push(shape(format!("must be {}", show(c))));
            }
        }
        if let Some(Value::Array(values)) = obj.get("enum") {
            if !values.contains(inst) {
                let names = values.iter().map(show).collect();
                out.push(shape(format!("must be {}", one_of(names))));
            }
        }
        if let Some(n) = inst.as_f64() {
            if let Some(min) = obj.get("minimum") {
                if min.as_f64().is_some_and(|m| n < m) {
                    out.push(here(format!("must be at least {min}")));
                }
            }
            if let Some(max) = obj.get("maximum") {
                if max.as_f64().is_some_and(|m| n > m) {
                    out.push(here(format!("must be at most {max}")));
                }
            }
        }
        if let Some(Value::Array(all)) = obj.get("allOf") {
            for s in all {
                check(root, s, inst, path, depth + 1, out)?;
            }
        }
        for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            if let Some(Value::Array(branches)) = obj.get(keyword) {
                alternatives(root, obj, branches, exactly_one, inst, path, depth, out)?;
            }
        }
        if let Value::Object(map) = inst {
            object(root, obj, map, path, depth, out)?;
        }
        if let (Value::Array(items), Some(item_schema)) = (inst, obj.get("items")) {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                let r = check(root, item_schema, item, path, depth + 1, out);
                path.pop();
                r?;
            }
        }
        Ok(())
    }

    /// `obj` reduced to its `type`, for describing what a failed type check wanted.
    fn type_only(obj: &Map<String, Value>) -> Map<String, Value> {
        obj.iter()
            .filter(|(k, _)| k.as_str() == "type")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn alternatives(
        root: &Value,
        obj: &Map<String, Value>,
        branches: &[Value],
        exactly_one: bool,
        inst: &Value,
        path: &mut Vec<Seg>,
        depth: usize,
        out: &mut Vec<Problem>,
    ) -> Result<(), String> {
        let here = field(path);
        let mut results = Vec::with_capacity(branches.len());
        for b in branches {
            let mut found = Vec::new();
            check(root, b, inst, path, depth + 1, &mut found)?;
            results.push(found);
        }
        let matching = results.iter().filter(|r| r.is_empty()).count();
        if matching == 1 || (matching > 1 && !exactly_one) {
            return Ok(());
        }
        if matching > 1 {
            out.push(Problem {
                field: here,
                message: "matches more than one alternative of the schema".to_owned(),
                shape: true,
            });
            return Ok(());
        }
        // None matched. If exactly one alternative has the right shape (a value of its type,
        // wrong inside), report its problems: they name the field that is wrong. Otherwise say
        // what the alternatives are.
        let mut shaped = results
            .into_iter()
            .filter(|r| !r.iter().any(|p| p.shape && p.field == here));
        if let (Some(only), None) = (shaped.next(), shaped.next()) {
            out.extend(only);
            return Ok(());
        }
        let words = describe(root, &Value::Object(obj.clone()), depth);
        let message = if words.iter().all(|w| w.starts_with('`')) {
            format!("must be {}", one_of(words))
        } else {
            format!("expected {}", one_of(words))
        };
        out.push(Problem {
            field: here,
            message,
            shape: true,
        });
        Ok(())
    }

    fn object(
        root: &Value,
        obj: &Map<String, Value>,
        map: &Map<String, Value>,
        path: &mut Vec<Seg>,
        depth: usize,
        out: &mut Vec<Problem>,
    ) -> Result<(), String> {
        let empty = Map::new();
        let properties = obj
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if let Some(Value::Array(required)) = obj.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    out.push(Problem {
                        field: field(path),
                        message: format!("missing field `{name}`"),
                        shape: false,
                    });
                }
            }
        }
        for (key, value) in map {
            path.push(Seg::Key(key.clone()));
            let result = match (properties.get(key), obj.get("additionalProperties")) {
                (Some(s), _) => check(root, s, value, path, depth + 1, out),
                (None, Some(Value::Bool(false))) => {
                    let names: Vec<String> = properties.keys().map(|k| format!("`{k}`")).collect();
                    out.push(Problem {
                        field: field(path),
                        message: format!(
                            "unknown field `{key}`, expected one of {}",
                            names.join(", ")
                        ),
                        shape: false,
                    });
                    Ok(())
                }
                (None, Some(s)) => check(root, s, value, path, depth + 1, out),
                (None, None) => Ok(()),
            };
            path.pop();
            result?;
        }
        Ok(())
    }
}

/// Finds Wasm plugin configurations in Envoy bootstrap YAML (`config.configuration` as a
/// `StringValue` next to a `vm_config`) and Istio `WasmPlugin` resources (`pluginConfig`).
mod envoy_yaml {
    use std::collections::HashMap;

    use yaml_rust2::{Yaml, YamlLoader};

    pub struct PluginConfig {
        /// Where it was found, for messages (`envoy config "devgate"`, `WasmPlugin devgate`).
        pub location: String,
        /// The plugin configuration JSON.
        pub json: String,
        /// Environment the VM is given (`vm_config.environment_variables.key_values`, `vmConfig.env`).
        pub env: HashMap<String, String>,
    }

    fn get<'a>(y: &'a Yaml, key: &str) -> Option<&'a Yaml> {
        y.as_hash()?.get(&Yaml::String(key.to_string()))
    }

    fn to_json(y: &Yaml) -> serde_json::Value {
        use serde_json::Value;
        match y {
            Yaml::Real(r) => r
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::String(s) => Value::from(s.clone()),
            Yaml::Boolean(b) => Value::from(*b),
            Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), to_json(v))))
                    .collect(),
            ),
            Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
        }
    }

    fn walk(y: &Yaml, out: &mut Vec<PluginConfig>) {
        match y {
            Yaml::Hash(h) => {
                if let (Some(cfg), Some(vm)) = (get(y, "configuration"), get(y, "vm_config")) {
                    if let Some(json) = get(cfg, "value").and_then(Yaml::as_str) {
                        let env = get(vm, "environment_variables")
                            .and_then(|e| get(e, "key_values"))
                            .and_then(Yaml::as_hash)
                            .map(|kv| {
                                kv.iter()
                                    .filter_map(|(k, v)| {
                                        Some((k.as_str()?.to_string(), v.as_str()?.to_string()))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let name = get(y, "name").and_then(Yaml::as_str).unwrap_or("(unnamed)");
                        out.push(PluginConfig {
                            location: format!("Envoy Wasm plugin {name:?}"),
                            json: json.to_string(),
                            env,
                        });
                    }
                }
                if get(y, "kind").and_then(Yaml::as_str) == Some("WasmPlugin") {
                    let spec = get(y, "spec");
                    let config = spec.and_then(|s| get(s, "pluginConfig"));
                    let env = spec
                        .and_then(|s| get(s, "vmConfig"))
                        .and_then(|v| get(v, "env"))
                        .and_then(Yaml::as_vec)
                        .map(|list| {
                            list.iter()
                                .filter_map(|e| {
                                    let name = get(e, "name")?.as_str()?.to_string();
                                    // valueFrom: HOST reads the proxy's environment: take ours.
                                    let value = get(e, "value")?.as_str()?.to_string();
                                    Some((name, value))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let name = get(y, "metadata")
                        .and_then(|m| get(m, "name"))
                        .and_then(Yaml::as_str)
                        .unwrap_or("(unnamed)");
                    out.push(PluginConfig {
                        location: format!("WasmPlugin {name:?}"),
                        json: config.map_or_else(|| "{}".to_string(), |c| to_json(c).to_string()),
                        env,
                    });
                    return;
                }
                for v in h.values() {
                    walk(v, out);
                }
            }
            Yaml::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }

    /// Every plugin configuration in every document of `text`.
    pub fn plugin_configs(text: &str) -> Result<Vec<PluginConfig>, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let mut out = Vec::new();
        for d in &docs {
            walk(d, &mut out);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run_capture(list: &[&str], stdin: &str) -> (Result<(), Failure>, String) {
        let mut out = Vec::new();
        let result = run(&args(list), 1_700_000_000, &mut out, &mut stdin.as_bytes());
        (result, String::from_utf8(out).unwrap())
    }

    fn temp_key(name: &str, contents: &str) -> String {
        let dir = std::env::temp_dir().join(format!("devgate-bin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    const KEY: &str = "aCbzv71ILHbh5l-sR_bVTq7lQgh2lvnPBfA4qPbBvxs";

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
        let a = Args::parse(
            &args(&["-", "--kid=x", "--key-file", "f", "--", "--y"]),
            &["--kid", "--key-file"],
        )
        .unwrap();
        assert_eq!(a.get("--kid"), Some("x"));
        assert_eq!(a.get("--key-file"), Some("f"));
        assert_eq!(a.positional, ["-", "--y"]);
        assert!(matches!(
            Args::parse(&args(&["--kid"]), &["--kid"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            Args::parse(&args(&["--kid", "a", "--kid", "b"]), &["--kid"]),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            Args::parse(&args(&["--nope"]), &["--kid"]),
            Err(Failure::Usage(_))
        ));
        assert_eq!(
            Args::parse(&args(&["x", "--help"]), &[]).err(),
            Some(Failure::Usage(HELP.to_owned()))
        );
    }

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
    fn mint_then_verify_in_process() {
        let key = temp_key("k.b64", &format!("  {KEY}\n"));
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
        let key = temp_key("k2.b64", KEY);
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

    #[test]
    fn key_file_errors() {
        let mint = |path: &str| {
            run_capture(
                &["mint", "--sub", "a", "--ttl", "1h", "--key-file", path],
                "",
            )
            .0
        };
        assert!(matches!(
            mint("/nonexistent/devgate/key"),
            Err(Failure::Io(_))
        ));
        let short = temp_key("short", "AAAA");
        assert!(matches!(mint(&short), Err(Failure::Refused(m)) if m.contains("at least 32")));
        let std_alpha = temp_key("std", "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/");
        assert!(
            matches!(mint(&std_alpha), Err(Failure::Refused(m)) if m.contains("base64url") && !m.contains("+/+/"))
        );
        let binary = temp_key("bin", "\u{1}\u{2}");
        assert!(matches!(mint(&binary), Err(Failure::Refused(_))));
    }

    #[test]
    fn verify_output_never_contains_the_secret() {
        let key = temp_key("k3.b64", KEY);
        for token in ["garbage", "a.b.c", "-"] {
            let (r, out) = run_capture(&["verify", token, "--key-file", &key], "x.y.z");
            let Err(Failure::Invalid(msg)) = r else {
                panic!("{token}: {r:?}")
            };
            assert!(msg.starts_with("invalid: "));
            assert!(!msg.contains(KEY) && !out.contains(KEY));
        }
    }

    const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.schema.json");

    #[test]
    fn schema_file_is_current() {
        let shipped = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
        assert!(
            shipped == schema_text().unwrap(),
            "docs/config.schema.json differs from the schema the code generates: \
             run `target/release/devgate schema > docs/config.schema.json` (after `make cli`), \
             or `make schema`"
        );
        let (r, out) = run_capture(&["schema"], "");
        assert_eq!(r, Ok(()));
        assert_eq!(out, shipped);
        assert!(matches!(
            run_capture(&["schema", "extra"], "").0,
            Err(Failure::Usage(_))
        ));
        let (r, out) = run_capture(&["schema", "--help"], "");
        assert_eq!(r, Ok(()));
        assert!(out.starts_with("usage: devgate schema"));
    }

    /// Every object schema reachable from `s`, with its JSON pointer.
    fn objects<'a>(
        s: &'a serde_json::Value,
        at: String,
        out: &mut Vec<(String, &'a serde_json::Value)>,
    ) {
        match s {
            serde_json::Value::Object(o) => {
                if o.contains_key("properties") {
                    out.push((at.clone(), s));
                }
                for (k, v) in o {
                    objects(v, format!("{at}/{k}"), out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    objects(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn schema_is_strict_documented_and_supported() {
        let schema = devgate::config::json_schema();
        schema_check::supported(&schema).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let mut found = Vec::new();
        objects(&schema, "#".to_owned(), &mut found);
        assert!(found.len() >= 10, "{}", found.len());
        for (at, o) in found {
            // deny_unknown_fields on every Raw* struct.
            assert_eq!(o["additionalProperties"], false, "{at}");
            assert!(o["description"].is_string(), "{at}");
            for (name, p) in o["properties"].as_object().unwrap() {
                let d = p["description"].as_str().unwrap_or_default();
                assert!(d.len() > 10, "{at}/properties/{name} has no description");
            }
        }
        let top = schema["properties"].as_object().unwrap();
        for name in [
            "header",
            "network",
            "protect",
            "public",
            "unauthenticated",
            "keys",
            "tokens",
            "api",
            "login",
            "upstream_challenge",
            "revocation",
        ] {
            assert!(top.contains_key(name), "{name}");
        }
        assert_eq!(top.len(), 11, "a new top-level field: add it above");
        // Defaults from `default = "fn"`, Default impls and the ones validation applies.
        for (pointer, default) in [
            (
                "/properties/header/default",
                serde_json::json!("x-wsgiorg-developer-user"),
            ),
            ("/properties/protect/default", serde_json::json!(["/"])),
            (
                "/properties/unauthenticated/default",
                serde_json::json!("challenge"),
            ),
            (
                "/properties/upstream_challenge/default",
                serde_json::json!("forbid"),
            ),
            (
                "/$defs/Network/properties/allow/default",
                serde_json::json!(["127.0.0.0/8", "::1"]),
            ),
            (
                "/$defs/Tokens/properties/cookie/default",
                serde_json::json!("devgate_token"),
            ),
            (
                "/$defs/Tokens/properties/leeway_seconds/default",
                serde_json::json!(30),
            ),
            (
                "/$defs/Login/properties/mount/default",
                serde_json::json!("/.devgate"),
            ),
            (
                "/$defs/Login/properties/session_seconds/default",
                serde_json::json!(28800),
            ),
            (
                "/$defs/Login/properties/max_cost/default",
                serde_json::json!(10),
            ),
            (
                "/$defs/ApiRoute/properties/mode/default",
                serde_json::json!("read_write"),
            ),
            (
                "/$defs/Revocation/properties/when_stale/default",
                serde_json::json!("refuse"),
            ),
        ] {
            assert_eq!(schema.pointer(pointer), Some(&default), "{pointer}");
        }
        assert_eq!(
            schema["$defs"]["Revocation"]["required"],
            serde_json::json!(["cluster"])
        );
        // The hand-written RawRule schema: a string or the object.
        let rule = &schema["$defs"]["Rule"]["anyOf"];
        assert_eq!(rule[0]["type"], "string");
        assert_eq!(rule[1]["$ref"], "#/$defs/RuleObject");
        // Secrets are marked as such.
        let secret = schema["$defs"]["Key"]["properties"]["secret"]["description"].as_str();
        assert!(secret.unwrap().starts_with("Secret:"));
    }

    /// The plugin configurations shipped in the repository: every envoy/*.yaml,
    /// envoy/bench/*.yaml and envoy/istio/wasmplugin.yaml (as check-config finds them), and the
    /// JSON example of docs/config.md. envoy/bench/reference.yaml is left out: it loads the
    /// benchmark's reference filter (bench/reference-filter), whose configuration is not devgate's.
    fn shipped_configs() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["envoy", "envoy/bench"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml")
                    && !path.ends_with("envoy/bench/reference.yaml")
                {
                    files.push(path);
                }
            }
        }
        files.push(root.join("envoy/istio/wasmplugin.yaml"));
        files.sort();
        let mut configs = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for plugin in envoy_yaml::plugin_configs(&text).unwrap() {
                configs.push((
                    format!("{}: {}", file.display(), plugin.location),
                    plugin.json,
                ));
            }
        }
        let doc = std::fs::read_to_string(root.join("docs/config.md")).unwrap();
        for (i, block) in doc.split("```json\n").skip(1).enumerate() {
            let json = block.split("```").next().unwrap();
            configs.push((format!("docs/config.md example {i}"), json.to_owned()));
        }
        configs
    }

    #[test]
    fn every_example_config_matches_the_schema() {
        let schema = devgate::config::json_schema();
        let configs = shipped_configs();
        let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
        for must in [
            "envoy/envoy.yaml",
            "envoy/envoy-tls.yaml",
            "envoy/bench/devgate_network.yaml",
            "envoy/bench/devgate_tokens.yaml",
            "envoy/bench/devgate_api.yaml",
            "envoy/istio/wasmplugin.yaml",
            "docs/config.md example 0",
        ] {
            assert!(
                names.iter().any(|n| n.contains(must)),
                "{must} not found in {names:?}"
            );
        }
        let mut sections = std::collections::BTreeSet::new();
        for (name, json) in &configs {
            let value: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            let problems = schema_check::validate(&schema, &value).unwrap();
            assert!(problems.is_empty(), "{name}: {problems:?}");
            assert!(
                structure_problems(json.as_bytes()).unwrap().is_empty(),
                "{name}"
            );
            sections.extend(value.as_object().unwrap().keys().cloned());
        }
        // The examples exercise the newer sections too.
        for s in [
            "login",
            "upstream_challenge",
            "revocation",
            "tokens",
            "keys",
        ] {
            assert!(sections.contains(s), "no example has {s}");
        }
    }

    /// Structural mistakes: the schema names the same field the parser does.
    #[test]
    fn schema_and_parser_agree_on_structural_errors() {
        let schema = devgate::config::json_schema();
        for (json, field) in [
            (r#"{"nope": 1}"#, "nope"),
            (r#"{"network": {"alow": []}}"#, "network.alow"),
            (
                r#"{"network": {"trust_forwarded": "yes"}}"#,
                "network.trust_forwarded",
            ),
            (r#"{"network": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}"#, "network"),
            (r#"{"network": {"deny": "topsecretvalue"}}"#, "network.deny"),
            (r#"{"unauthenticated": "maybe"}"#, "unauthenticated"),
            (r#"{"protect": [{"prefix": "/a", "x": 1}]}"#, "protect[0].x"),
            (r#"{"protect": [7]}"#, "protect[0]"),
            (r#"{"protect": [{"methods": ["GET"]}]}"#, "protect[0]"),
            (r#"{"protect": "/"}"#, "protect"),
            (r#"{"keys": [{"id": "k1", "secret": 5}]}"#, "keys[0].secret"),
            (r#"{"keys": [{"secret_env": "X"}]}"#, "keys[0]"),
            (r#"{"tokens": {"cokie": "x"}}"#, "tokens.cokie"),
            (
                r#"{"tokens": {"leeway_seconds": -1}}"#,
                "tokens.leeway_seconds",
            ),
            (
                r#"{"tokens": {"leeway_seconds": 1.5}}"#,
                "tokens.leeway_seconds",
            ),
            (r#"{"login": {"colour": 1}}"#, "login.colour"),
            (r#"{"login": {"max_cost": "10"}}"#, "login.max_cost"),
            (
                r#"{"upstream_challenge": "redirect"}"#,
                "upstream_challenge",
            ),
            (r#"{"api": {}}"#, "api"),
            (
                r#"{"api": {"routes": [{"prefix": "/a", "product": "p", "mode": "rw"}]}}"#,
                "api.routes[0].mode",
            ),
            (
                r#"{"api": {"routes": [], "headers": {"org": "x"}}}"#,
                "api.headers.org",
            ),
            (r#"{"revocation": {"path": "/r"}}"#, "revocation"),
            (
                r#"{"revocation": {"cluster": "c", "when_stale": "ignore"}}"#,
                "revocation.when_stale",
            ),
            (
                r#"{"revocation": {"cluster": "c", "timeout": 5}}"#,
                "revocation.timeout",
            ),
            ("[]", "(root)"),
        ] {
            let parser = devgate::config::parse_policy_with_env(json.as_bytes(), &|_| None)
                .err()
                .unwrap_or_else(|| panic!("{json}: the parser accepts it"));
            assert_eq!(parser.field, field, "{json}: parser");
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let problems = schema_check::validate(&schema, &value).unwrap();
            assert_eq!(
                problems.first().map(|p| p.field.as_str()),
                Some(field),
                "{json}: {problems:?}"
            );
        }
        // Structurally fine but refused by the parser's value checks: the schema lets them
        // through (it must never refuse what the filter accepts) and the parser decides.
        for json in [
            "{}",
            r#"{"header": null, "protect": [], "public": []}"#,
            r#"{"network": {"allow": ["10.0.0.1/8"]}}"#,
            r#"{"protect": ["debug", {"prefix": "/a", "methods": []}]}"#,
            r#"{"keys": [{"id": "bad id", "secret": "x", "secret_env": "Y"}], "tokens": {"bearer": false, "cookie": null}}"#,
            r#"{"login": {}, "upstream_challenge": "login"}"#,
            r#"{"login": {"users": "x", "max_cost": 13, "session_seconds": 10, "cookie": "__Host-s"}}"#,
            r#"{"revocation": {"cluster": "bad cluster", "timeout_ms": 1, "max_stale_seconds": 0}}"#,
            r#"{"api": {"routes": [], "revoked": ["not an id!"], "headers": {"count": "bad header"}}}"#,
            r#"{"tokens": null, "api": null, "login": null, "revocation": null}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let problems = schema_check::validate(&schema, &value).unwrap();
            assert!(problems.is_empty(), "{json}: {problems:?}");
        }
    }

    #[test]
    fn schema_problems_never_echo_values() {
        let schema = devgate::config::json_schema();
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";
        for json in [
            format!(r#"{{"network": "{secret}"}}"#),
            format!(r#"{{"unauthenticated": "{secret}"}}"#),
            format!(r#"{{"keys": [{{"id": ["{secret}"]}}]}}"#),
            format!(r#"{{"protect": [{{"prefix": 1, "methods": "{secret}"}}]}}"#),
            format!(r#"{{"login": {{"users": ["{secret}"], "mount": 12345678901}}}}"#),
            format!(r#"{{"revocation": {{"cluster": "c", "when_stale": "{secret}"}}}}"#),
        ] {
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            let problems = schema_check::validate(&schema, &value).unwrap();
            assert!(!problems.is_empty(), "{json}");
            for p in problems {
                let text = p.to_string();
                assert!(
                    !text.contains(secret) && !text.contains("12345678901"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn validator_refuses_keywords_it_does_not_know() {
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"pattern": "x"}}});
        assert!(schema_check::validate(&schema, &serde_json::json!({})).is_err());
        let schema = serde_json::json!({"$ref": "https://example.com/s.json"});
        assert!(schema_check::supported(&schema).is_err());
        let schema = serde_json::json!({"$ref": "#/$defs/Missing"});
        assert!(schema_check::supported(&schema).is_err());
        let schema = serde_json::json!({"type": "integer", "minimum": 4, "maximum": 12});
        let problems = |v| schema_check::validate(&schema, &v).unwrap();
        assert!(problems(serde_json::json!(4)).is_empty());
        assert!(problems(serde_json::json!(12.0)).is_empty());
        assert_eq!(
            problems(serde_json::json!(3))[0].message,
            "must be at least 4"
        );
        assert_eq!(
            problems(serde_json::json!(13))[0].message,
            "must be at most 12"
        );
        assert_eq!(
            problems(serde_json::json!(4.5))[0].message,
            "expected an integer, found a number"
        );
    }

    #[test]
    fn check_config_reports_schema_errors_by_field() {
        let bad = temp_key(
            "schema-bad.json",
            r#"{"network": {"allow": "10.0.0.0/8"}, "login": {"users": "x", "colour": 1}}"#,
        );
        let (r, out) = run_capture(&["check-config", &bad], "");
        assert!(out.is_empty());
        let Err(Failure::Refused(msg)) = r else {
            panic!("{r:?}")
        };
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), 2, "{msg}");
        assert!(lines[0].ends_with(
            "schema: field `login.colour`: unknown field `colour`, expected one of `allow_from`, \
             `bind_peer`, `cookie`, `failure_window_seconds`, `leeway_seconds`, `max_cost`, \
             `max_failures`, `mount`, `secure_cookie`, `session_seconds`, `users`, `users_env`, \
             `verifies_per_minute`, `verify_burst`"
        ), "{msg}");
        assert!(
            lines[1].ends_with(
                "schema: field `network.allow`: expected an array or null, found a string"
            ),
            "{msg}"
        );
        assert!(!msg.contains("10.0.0.0"), "{msg}");
        // Structure fine, values not: the parser's message, as before.
        let bad = temp_key(
            "value-bad.json",
            r#"{"network": {"allow": ["10.0.0.1/8"]}}"#,
        );
        let Err(Failure::Refused(msg)) = run_capture(&["check-config", &bad], "").0 else {
            panic!()
        };
        assert!(msg.ends_with("field `network.allow[0]`: host bits set after the prefix; did you mean 10.0.0.0/8?"), "{msg}");
    }

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
}

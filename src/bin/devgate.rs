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

Validates the filter's plugin configuration with the code the filter runs in on_configure.
FILE is the configuration JSON, or YAML holding it: an Envoy bootstrap (every
envoy.filters.http.wasm `configuration` value next to a `vm_config`, with the VM's
environment_variables.key_values as the environment for `secret_env`) or an Istio
WasmPlugin (`spec.pluginConfig`, with `spec.vmConfig.env`). Other `secret_env` variables
are read from this process's environment.
Prints `ok` per configuration (exit 0) or each error, naming the field (exit 1).
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
        return match devgate::config::parse_policy(&bytes) {
            Ok(_) => writeln!(out, "ok").map_err(|e| Failure::io("stdout", &e)),
            Err(e) => Err(Failure::Refused(format!("{path}: {e}"))),
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
        match devgate::config::parse_policy_with_env(plugin.json.as_bytes(), &lookup) {
            Ok(_) => {
                writeln!(out, "ok: {}", plugin.location).map_err(|e| Failure::io("stdout", &e))?
            }
            Err(e) => failed.push(format!("{path}: {}: {e}", plugin.location)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Refused(failed.join("\n")))
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

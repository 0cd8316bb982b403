//! The hidden login form and the signed session cookie: the pure half.
//!
//! DevAuth let developers log in through a form nobody links to; devgate serves the same form
//! from Envoy, under a configured mount (`<mount>/login`). Everything here is a pure function:
//! the glue reads the request, calls these, and applies what they return.
//!
//! # The flow the glue runs
//!
//! * `GET <mount>/login?back=<path>`: [`login_page`]`(mount, back, false)`.
//! * `POST <mount>/login`:
//!   1. CSRF: [`same_origin`]`(origin.or(referer), authority, https)`, or 403, with `https`
//!      from the connection (TLS, or `login.secure_cookie`). Use `Origin` whenever it is
//!      present, even when it is `null` (then refuse): never fall back to `Referer` past an
//!      `Origin` header.
//!   2. [`is_form_content_type`] on `Content-Type`, or 415.
//!   3. Rate limit: [`check`] the [`Attempts`] stored under [`rate_key`]`(peer)` in shared data;
//!      [`Verdict::Limited`] → [`too_many_attempts`] (429, `Retry-After`), without verifying.
//!   4. The body, buffered up to [`MAX_BODY`] bytes (a larger one is a failure, and is not
//!      read further), through [`parse_form`].
//!   5. [`Users::verify`](crate::core::htpasswd::Users::verify). On a [`FormError`] or a wrong
//!      password: store [`record_failure`], answer [`login_page`]`(mount, back, true)`, which
//!      says only "Login failed.". On success: store [`Attempts::CLEARED`], mint a session
//!      token from [`session_claims`] (purpose `session`, `dgc` = the cookie name), and answer
//!      [`redirect`]`(back)` with a `Set-Cookie` from [`session_cookie`].
//! * `POST <mount>/logout`: the same CSRF check, then [`redirect`]`("/")` with
//!   [`clear_session_cookie`].
//!
//! # Choices
//!
//! * **CSRF.** The Fetch standard ("append a request `Origin` header") has browsers send
//!   `Origin` with every request whose method is not GET or HEAD, so a form POST always
//!   carries one; a POST with neither `Origin` nor `Referer` does not come from a current
//!   browser's form, and [`same_origin`] refuses it. Scripts posting with curl must send
//!   `Origin: https://<host>` (`http://` on a plain listener). The scheme is compared too: an
//!   origin is scheme, host and port, and `http://h` and `https://h` are different sites. (A login CSRF would log the victim in as the attacker's
//!   developer; refusing is cheap.)
//! * **`Referrer-Policy: same-origin`, not `no-referrer`,** on the pages: under `no-referrer`
//!   the same algorithm replaces the form POST's `Origin` with `null`, which the CSRF check
//!   would refuse. `same-origin` keeps `Origin` for our own POST and still sends nothing to
//!   other sites.
//! * **The redirect target** (`back`) is only ever a same-origin path ([`safe_back`]); anything
//!   else becomes `/`. Both [`login_page`] and [`redirect`] apply it themselves.
//! * **Rate limit per address, not per user**: per-user counters let anyone lock a developer
//!   out. IPv6 peers are counted per /64, the block one subscriber usually gets, or a single
//!   host could cycle through 2^64 addresses.
//! * **`SameSite=Strict`** on the session cookie: no other site can make the browser send it,
//!   not even with a top-level link, so a developer who follows a link from elsewhere (chat,
//!   a ticket) lands as anonymous and must navigate once within the site to be recognised.
//! * **Status codes**: the form is 200; a failed login answers the form again with 401 and
//!   devgate's `WWW-Authenticate: x-wsgiorg.developer_user` challenge (a 401 must carry one),
//!   so scripts see the failure; success is 303 See Other (the browser follows with a GET).
//!
//! Nothing here logs, and no error or `Debug` output carries a password.

use std::fmt;
use std::net::IpAddr;

use crate::core::cookie::{self, CookieAttrs, CookieError, SameSite};
use crate::core::net::normalize_ip;
use crate::core::query::{self, hex_digit, split_pair};
use crate::core::token::{Claims, Purpose};

/// Largest login form body, in bytes.
pub const MAX_BODY: usize = 4 * 1024;
/// Largest decoded value of one form field, in bytes.
pub const MAX_FIELD: usize = 1024;
/// Longest `back` path kept, in bytes.
pub const MAX_BACK: usize = 2 * 1024;
/// Prefix of the shared-data key that counts one peer's failed logins.
pub const RATE_KEY_PREFIX: &str = "devgate.login.";
/// The one message a failed login shows, whatever failed.
pub const LOGIN_FAILED: &str = "Login failed.";

/// A response devgate writes itself, with an owned body (HTML pages are built per request).
/// Header names are lower-case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Page {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// The form body

/// A field of the login form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Username,
    Password,
    Back,
}

impl Field {
    /// The form field name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Username => "username",
            Field::Password => "password",
            Field::Back => "back",
        }
    }

    fn from_name(name: &[u8]) -> Option<Field> {
        match name {
            b"username" => Some(Field::Username),
            b"password" => Some(Field::Password),
            b"back" => Some(Field::Back),
            _ => None,
        }
    }
}

/// Why a login form body was refused. Never carries field values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormError {
    /// More than [`MAX_BODY`] bytes.
    TooLarge,
    /// A field longer than [`MAX_FIELD`] bytes once decoded.
    FieldTooLong(Field),
    /// A field sent more than once: which one counts would be a guess.
    Duplicate(Field),
    /// `username` or `password` absent.
    Missing(Field),
    /// A `%` not followed by two hex digits.
    BadEncoding,
    /// The user name is not UTF-8.
    BadUsername,
}

impl FormError {
    /// Stable snake_case code for logs.
    pub fn code(self) -> &'static str {
        match self {
            FormError::TooLarge => "form_too_large",
            FormError::FieldTooLong(_) => "form_field_too_long",
            FormError::Duplicate(_) => "form_duplicate_field",
            FormError::Missing(_) => "form_missing_field",
            FormError::BadEncoding => "form_bad_encoding",
            FormError::BadUsername => "form_bad_username",
        }
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::TooLarge => write!(f, "login form larger than {MAX_BODY} bytes"),
            FormError::FieldTooLong(field) => write!(
                f,
                "login form field `{}` longer than {MAX_FIELD} bytes",
                field.name()
            ),
            FormError::Duplicate(field) => {
                write!(f, "login form field `{}` sent twice", field.name())
            }
            FormError::Missing(field) => {
                write!(f, "login form field `{}` missing", field.name())
            }
            FormError::BadEncoding => f.write_str("login form has a malformed %-escape"),
            FormError::BadUsername => f.write_str("login form user name is not UTF-8"),
        }
    }
}

impl std::error::Error for FormError {}

/// A parsed login form. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginForm {
    pub username: String,
    /// Bytes as sent (bcrypt hashes bytes; browsers send UTF-8).
    pub password: Vec<u8>,
    /// The `back` field, when present and UTF-8 (a non-UTF-8 one is dropped: it would become
    /// `/` anyway). Not checked here: pass it through [`safe_back`] (or [`redirect`]).
    pub back: Option<String>,
}

impl fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("back", &self.back)
            .finish()
    }
}

impl Drop for LoginForm {
    /// Wipes the password from memory, spare capacity included, as
    /// [`token::Secret`](crate::core::token::Secret) does.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX`
/// a byte; a malformed escape is an error (browsers never send one).
fn form_decode(raw: &[u8]) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().copied().and_then(hex_digit);
                let lo = bytes.next().copied().and_then(hex_digit);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h << 4) | l),
                    _ => return Err(FormError::BadEncoding),
                }
            }
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// Parses an `application/x-www-form-urlencoded` login form: fields `username`, `password` and
/// optionally `back`; other fields are ignored (but must be well-encoded). Names are compared
/// after decoding. Never panics.
pub fn parse_form(body: &[u8]) -> Result<LoginForm, FormError> {
    if body.len() > MAX_BODY {
        return Err(FormError::TooLarge);
    }
    let (mut username, mut password, mut back) = (None, None, None);
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = split_pair(pair);
        let name = form_decode(name)?;
        let value = form_decode(value)?;
        let Some(field) = Field::from_name(&name) else {
            continue;
        };
        if value.len() > MAX_FIELD {
            return Err(FormError::FieldTooLong(field));
        }
        let slot: &mut Option<Vec<u8>> = match field {
            Field::Username => &mut username,
            Field::Password => &mut password,
            Field::Back => &mut back,
        };
        if slot.is_some() {
            return Err(FormError::Duplicate(field));
        }
        *slot = Some(value);
    }
    let username = username.ok_or(FormError::Missing(Field::Username))?;
    let password = password.ok_or(FormError::Missing(Field::Password))?;
    let username = String::from_utf8(username).map_err(|_| FormError::BadUsername)?;
    let back = back.and_then(|b| String::from_utf8(b).ok());
    Ok(LoginForm {
        username,
        password,
        back,
    })
}

/// True if a `Content-Type` value is `application/x-www-form-urlencoded` (any letter case,
/// parameters such as `; charset=UTF-8` allowed).
pub fn is_form_content_type(value: &[u8]) -> bool {
    let media = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

// ---------------------------------------------------------------------------------------------
// The redirect target

/// The path part (before `?` or `#`) is normalised: no empty segment but a trailing one, no
/// `.` or `..` segment. Expects a leading `/`.
fn is_normal_path(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/") else {
        return false;
    };
    let segments: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let last = segments.len().saturating_sub(1);
    segments.iter().enumerate().all(|(i, s)| {
        let empty_inside = s.is_empty() && i != last;
        !empty_inside && *s != b"." && *s != b".."
    })
}

fn split_path(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(b.len());
    b.get(..end).unwrap_or_default()
}

/// The checks on `back` as written.
fn is_safe_raw(b: &[u8]) -> bool {
    (1..=MAX_BACK).contains(&b.len())
        && b.iter().all(|c| (0x21..=0x7e).contains(c))
        && !b.contains(&b'\\')
        && b.starts_with(b"/")
        && !b.starts_with(b"//")
        && is_normal_path(split_path(b))
}

/// The checks on `back` percent-decoded once: what a server that decodes before redirecting
/// again would see.
fn is_safe_decoded(raw: &[u8]) -> bool {
    let all = query::decode(raw);
    let path = query::decode(split_path(raw));
    !all.iter().any(|&c| c < 0x20 || c == 0x7f || c == b'\\')
        && !path.starts_with(b"//")
        && is_normal_path(&path)
}

/// `back` if it is a same-origin path to send the browser to after the login, else `/`.
///
/// Accepted: 1 to [`MAX_BACK`] bytes of visible ASCII (no space, no control character, no
/// non-ASCII: the value a browser was at is percent-encoded), starting with exactly one `/`
/// (so no scheme, no `//host`), no `\` anywhere (browsers read `\` as `/`), and a normalised
/// path part (no `//` and no `.`/`..` segments before any `?` or `#`). The same holds after
/// percent-decoding once, so `/%2F%2Fevil.com`, `/%5Cevil`, `/%2e%2e/` and `/%09/evil` are
/// refused too. The query and fragment may hold anything else.
pub fn safe_back(back: &str) -> String {
    let b = back.as_bytes();
    if is_safe_raw(b) && is_safe_decoded(b) {
        back.to_string()
    } else {
        "/".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

/// The page's only style sheet, inline; the CSP allows exactly this text by hash.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f4f5;\
color:#18181b}main{max-width:22rem;margin:4rem auto;padding:2rem;background:#fff;\
border-radius:.5rem;box-shadow:0 1px 3px #0003}h1{font-size:1.25rem;margin:0 0 1rem}\
label{display:block;margin:.75rem 0 .25rem;font-weight:600}input{box-sizing:border-box;\
width:100%;padding:.5rem;font:inherit;border:1px solid #71717a;border-radius:.25rem}\
button{margin-top:1.25rem;width:100%;padding:.6rem;font:inherit;font-weight:600;color:#fff;\
background:#1d4ed8;border:0;border-radius:.25rem;cursor:pointer}\
input:focus-visible,button:focus-visible{outline:3px solid #93c5fd;outline-offset:1px}\
.error{color:#b91c1c;font-weight:600}";

/// `Content-Security-Policy` of the login page: nothing loads, nothing runs, the style sheet
/// is allowed by its SHA-256 (checked by a test), the form posts only to this origin, and no
/// one may frame it.
pub const LOGIN_CSP: &str = "default-src 'none'; \
style-src 'sha256-EwtRBMYcqXZsRWkawgOLTfd03hgbadrV/W2xEKi4fjY='; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for an HTML attribute value or element content.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The headers every devgate page carries.
fn page_headers(content_type: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(8);
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.to_string()));
    }
    headers.push(("cache-control", "no-store".to_string()));
    headers.push(("referrer-policy", "same-origin".to_string()));
    headers.push(("x-content-type-options", "nosniff".to_string()));
    headers
}

/// The login form. It posts `username`, `password` and `back` (= [`safe_back`]`(back)`, escaped
/// into a hidden field) to `<mount>/login` (`mount` without its trailing `/`). With `error`,
/// the page says [`LOGIN_FAILED`] and nothing else about why, and answers 401 with devgate's
/// challenge; without, 200. Self-contained: no script, no external asset, one inline style
/// sheet allowed by hash ([`LOGIN_CSP`]).
pub fn login_page(mount: &str, back: &str, error: bool) -> Page {
    let action = format!("{}/login", mount.trim_end_matches('/'));
    let message = if error {
        format!("<p class=\"error\" role=\"alert\">{LOGIN_FAILED}</p>\n")
    } else {
        String::new()
    };
    let body = format!(
        "<!DOCTYPE html>\n\
<html lang=\"en\">\n\
<head>\n\
<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"robots\" content=\"noindex, nofollow\">\n\
<title>Developer login</title>\n\
<style>{STYLE}</style>\n\
</head>\n\
<body>\n\
<main>\n\
<h1>Developer login</h1>\n\
{message}\
<form method=\"post\" action=\"{action}\" accept-charset=\"utf-8\">\n\
<input type=\"hidden\" name=\"back\" value=\"{back}\">\n\
<label for=\"username\">User name</label>\n\
<input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
autocapitalize=\"none\" spellcheck=\"false\" maxlength=\"256\" required autofocus>\n\
<label for=\"password\">Password</label>\n\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" \
maxlength=\"{MAX_FIELD}\" required>\n\
<button type=\"submit\">Log in</button>\n\
</form>\n\
</main>\n\
</body>\n\
</html>\n",
        action = html_escape(&action),
        back = html_escape(&safe_back(back)),
    );
    let mut headers = page_headers(Some("text/html; charset=utf-8"));
    headers.push(("content-security-policy", LOGIN_CSP.to_string()));
    headers.push(("x-frame-options", "DENY".to_string()));
    let status = if error {
        headers.push(("www-authenticate", "x-wsgiorg.developer_user".to_string()));
        401
    } else {
        200
    };
    Page {
        status,
        headers,
        body,
    }
}

/// `303 See Other` to [`safe_back`]`(location)`, not cached. The glue adds `set-cookie`.
pub fn redirect(location: &str) -> Page {
    let mut headers = vec![("location", safe_back(location))];
    headers.extend(page_headers(None));
    Page {
        status: 303,
        headers,
        body: String::new(),
    }
}

/// A plain-text page with devgate's headers (`no-store`, `nosniff`, ...): 403, 404, 405, 413,
/// 415, 500 under the mount.
pub fn text_page(status: u16, body: &str) -> Page {
    Page {
        status,
        headers: page_headers(Some("text/plain; charset=utf-8")),
        body: body.to_string(),
    }
}

/// `429 Too Many Requests` with `Retry-After`, for [`Verdict::Limited`].
pub fn too_many_attempts(retry_after: u64) -> Page {
    let mut headers = page_headers(Some("text/plain; charset=utf-8"));
    headers.push(("retry-after", retry_after.to_string()));
    Page {
        status: 429,
        headers,
        body: "Too Many Requests\n".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// CSRF

/// `(host, port)` of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`); `None` when it
/// is not one (empty, empty or non-numeric port, bare IPv6, userinfo).
fn split_authority(authority: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if authority.starts_with(b"[") {
        let close = authority.iter().position(|&b| b == b']')?;
        let host = authority.get(..=close)?;
        match authority.get(close + 1..)? {
            [] => (host, None),
            [b':', port @ ..] => (host, Some(port)),
            _ => return None,
        }
    } else {
        match authority.iter().filter(|&&b| b == b':').count() {
            0 => (authority, None),
            1 => {
                let colon = authority.iter().position(|&b| b == b':')?;
                (authority.get(..colon)?, Some(authority.get(colon + 1..)?))
            }
            _ => return None,
        }
    };
    let valid_host = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'@' | b'/' | b'\\' | b'?' | b'#'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit) => {
            Some(std::str::from_utf8(p).ok()?.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// True if `origin_or_referer` (the request's `Origin`, or when it has none its `Referer`)
/// names this site's origin: scheme, host and port (RFC 6454), where the scheme is `https`
/// when `https` is true and `http` otherwise, and host and port are the request's
/// `:authority` (`host`).
///
/// `https` is a fact of the connection, never of the request: the listener's TLS state (or
/// `login.secure_cookie`, the operator saying a TLS-terminating proxy is in front), not
/// `:scheme` or `X-Forwarded-Proto`, which a client writes. A port left out on either side is
/// that scheme's default (80 or 443), so on a plain listener `Host: h` is `http://h:80` and on
/// TLS `https://h:443`.
///
/// Refused: no header at all (see "Choices" in the module documentation), `Origin: null`, the
/// other scheme or any scheme but `http`/`https`, userinfo, anything unparseable. Host names
/// compare case-insensitively. Never panics.
pub fn same_origin(origin_or_referer: Option<&[u8]>, host: &[u8], https: bool) -> bool {
    let Some(url) = origin_or_referer.map(<[u8]>::trim_ascii) else {
        return false;
    };
    let Some(sep) = url.windows(3).position(|w| w == b"://") else {
        return false;
    };
    let scheme = url.get(..sep).unwrap_or_default();
    let (expected, default_port): (&[u8], u16) = if https {
        (b"https", 443)
    } else {
        (b"http", 80)
    };
    if !scheme.eq_ignore_ascii_case(expected) {
        return false;
    }
    let rest = url.get(sep + 3..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    let (Some((url_host, url_port)), Some((req_host, req_port))) = (
        split_authority(authority),
        split_authority(host.trim_ascii()),
    ) else {
        return false;
    };
    url_host.eq_ignore_ascii_case(req_host)
        && url_port.unwrap_or(default_port) == req_port.unwrap_or(default_port)
}

// ---------------------------------------------------------------------------------------------
// Rate limiting

/// Failed logins of one peer in the current window, as kept in proxy-wasm shared data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// Failures since `window_start`.
    pub count: u32,
    /// Seconds since the epoch at the first failure of the window.
    pub window_start: u64,
}

/// Whether a login attempt may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Too many failures: try again in `retry_after` seconds (at least 1).
    Limited {
        retry_after: u64,
    },
}

/// Format version of [`Attempts::to_bytes`].
const ATTEMPTS_VERSION: u8 = 1;

impl Attempts {
    /// Size of [`Attempts::to_bytes`].
    pub const LEN: usize = 13;

    /// What to store after a successful login: [`Attempts::from_bytes`] reads it as no
    /// failures. (Shared data cannot be deleted, only overwritten.)
    pub const CLEARED: &'static [u8] = &[];

    /// A version byte, then `count` and `window_start`, big-endian.
    pub fn to_bytes(&self) -> [u8; Attempts::LEN] {
        let mut out = [0u8; Attempts::LEN];
        let (version, rest) = out.split_at_mut(1);
        let (count, start) = rest.split_at_mut(4);
        version.copy_from_slice(&[ATTEMPTS_VERSION]);
        count.copy_from_slice(&self.count.to_be_bytes());
        start.copy_from_slice(&self.window_start.to_be_bytes());
        out
    }

    /// Reads [`Attempts::to_bytes`]; `None` for anything else ([`Attempts::CLEARED`], absent,
    /// another version, garbage), which counts as no failures.
    pub fn from_bytes(bytes: &[u8]) -> Option<Attempts> {
        let [version, rest @ ..] = bytes else {
            return None;
        };
        if *version != ATTEMPTS_VERSION || rest.len() != Attempts::LEN - 1 {
            return None;
        }
        let (count, start) = rest.split_at(4);
        Some(Attempts {
            count: u32::from_be_bytes(count.try_into().ok()?),
            window_start: u64::from_be_bytes(start.try_into().ok()?),
        })
    }
}

/// Whether `prev` is over: older than `window` seconds, or (clock stepped back, corrupt
/// data) starting in the future. A record that cannot be trusted never locks anyone out.
fn expired(prev: &Attempts, now: u64, window: u64) -> bool {
    prev.window_start > now || now.saturating_sub(prev.window_start) >= window
}

/// A fixed window: after `limit` failures within `window` seconds of the first one, further
/// attempts are refused until the window ends. `limit` 0 refuses from the first failure on;
/// `window` 0 never limits.
pub fn check(prev: Option<Attempts>, now: u64, limit: u32, window: u64) -> Verdict {
    match prev {
        Some(p) if !expired(&p, now, window) && p.count >= limit => Verdict::Limited {
            retry_after: p
                .window_start
                .saturating_add(window)
                .saturating_sub(now)
                .max(1),
        },
        _ => Verdict::Allow,
    }
}

/// The record after one more failure at `now`: a new window if `prev` is absent or over.
pub fn record_failure(prev: Option<Attempts>, now: u64, window: u64) -> Attempts {
    match prev {
        Some(p) if !expired(&p, now, window) => Attempts {
            count: p.count.saturating_add(1),
            window_start: p.window_start,
        },
        _ => Attempts {
            count: 1,
            window_start: now,
        },
    }
}

/// The shared-data key counting `peer`'s failures: `devgate.login.<ip>`, IPv4-mapped IPv6
/// folded to IPv4, IPv6 reduced to its /64 (`devgate.login.2001:db8:1:2::/64`).
pub fn rate_key(peer: IpAddr) -> String {
    match normalize_ip(peer) {
        IpAddr::V4(v4) => format!("{RATE_KEY_PREFIX}{v4}"),
        IpAddr::V6(v6) => {
            let net = std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1));
            format!("{RATE_KEY_PREFIX}{net}/64")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The session cookie

fn session_attrs(max_age: Option<u64>, secure: bool) -> CookieAttrs<'static> {
    CookieAttrs {
        path: "/",
        max_age,
        secure,
        http_only: true,
        same_site: SameSite::Strict,
    }
}

/// `Set-Cookie` for a session token: `Path=/`, `Max-Age`, `HttpOnly`, `SameSite=Strict`, and
/// `Secure` when asked (always, unless the listener is plain HTTP).
pub fn session_cookie(
    name: &str,
    token: &str,
    max_age: u64,
    secure: bool,
) -> Result<String, CookieError> {
    cookie::set_cookie(name, token, &session_attrs(Some(max_age), secure))
}

/// `Set-Cookie` that deletes the session cookie (same attributes, `Max-Age=0`).
pub fn clear_session_cookie(name: &str, secure: bool) -> Result<String, CookieError> {
    cookie::clear_cookie(name, &session_attrs(None, secure))
}

/// The claims of a session token for `user`, valid `ttl` seconds from `now`, bound to cookie
/// `cookie` (`dgc`) and, when given, to the peer address (`cip`). Mint with
/// [`token::mint`](crate::core::token::mint) and the signing key.
pub fn session_claims(
    user: &str,
    cookie: &str,
    now: u64,
    ttl: u64,
    peer: Option<IpAddr>,
) -> Claims {
    Claims {
        sub: user.to_string(),
        purpose: Purpose::Session,
        cookie: Some(cookie.to_string()),
        cip: peer.map(normalize_ip),
        jti: None,
        iat: Some(now),
        nbf: None,
        exp: now.saturating_add(ttl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::token::{self, Expect, Key, KeySet, Secret, TokenError};
    use std::net::{Ipv4Addr, Ipv6Addr};

    // -----------------------------------------------------------------------------------------
    // parse_form

    fn form(body: &str) -> Result<LoginForm, FormError> {
        parse_form(body.as_bytes())
    }

    #[test]
    fn form_basic() {
        let f = form("username=alice&password=s3cret&back=%2F_debug%2F").unwrap();
        assert_eq!(f.username, "alice");
        assert_eq!(f.password, b"s3cret");
        assert_eq!(f.back.as_deref(), Some("/_debug/"));
        // Any order, unknown fields ignored, no back.
        let f = form("csrf=x&password=pw&remember=on&username=bob").unwrap();
        assert_eq!(f.username, "bob");
        assert_eq!(f.password, b"pw");
        assert_eq!(f.back, None);
        // Empty values are values.
        let f = form("username=&password=").unwrap();
        assert_eq!(f.username, "");
        assert_eq!(f.password, b"");
        let f = form("username&password").unwrap();
        assert_eq!((f.username.as_str(), f.password.as_slice()), ("", &b""[..]));
        // Empty pairs are skipped.
        let f = form("&&username=a&&password=b&").unwrap();
        assert_eq!(
            (f.username.as_str(), f.password.as_slice()),
            ("a", &b"b"[..])
        );
    }

    #[test]
    fn form_decoding() {
        // What browsers send for `Jane Doe` / `p+ss wörd%&=` / `/a b?c=d&e`.
        let f =
            form("username=Jane+Doe&password=p%2Bss+w%C3%B6rd%25%26%3D&back=%2Fa+b%3Fc%3Dd%26e")
                .unwrap();
        assert_eq!(f.username, "Jane Doe");
        assert_eq!(f.password, "p+ss wörd%&=".as_bytes());
        assert_eq!(f.back.as_deref(), Some("/a b?c=d&e"));
        // Names are decoded before comparison; a value may contain `=`.
        let f = form("user%6Eame=a&pass%77ord=x=y").unwrap();
        assert_eq!(f.username, "a");
        assert_eq!(f.password, b"x=y");
        // Lower- and upper-case hex.
        assert_eq!(
            form("username=%c3%a9&password=%C3%A9").unwrap().username,
            "é"
        );
        // Names are case-sensitive: `Username` is an unknown field.
        assert_eq!(
            form("Username=a&password=b"),
            Err(FormError::Missing(Field::Username))
        );
        // The password stays bytes, even when not UTF-8.
        let f = form("username=a&password=%FF%00%FE").unwrap();
        assert_eq!(f.password, [0xff, 0x00, 0xfe]);
        // A non-UTF-8 back is dropped, not an error.
        let f = form("username=a&password=b&back=%FF").unwrap();
        assert_eq!(f.back, None);
    }

    #[test]
    fn form_errors() {
        assert_eq!(form("password=b"), Err(FormError::Missing(Field::Username)));
        assert_eq!(form("username=a"), Err(FormError::Missing(Field::Password)));
        assert_eq!(form(""), Err(FormError::Missing(Field::Username)));
        assert_eq!(
            form("username=a&password=b&username=c"),
            Err(FormError::Duplicate(Field::Username))
        );
        assert_eq!(
            form("username=a&password=b&pass%77ord=c"),
            Err(FormError::Duplicate(Field::Password))
        );
        assert_eq!(
            form("back=/&username=a&password=b&back=/x"),
            Err(FormError::Duplicate(Field::Back))
        );
        // Duplicates of unknown fields are fine.
        assert!(form("x=1&x=2&username=a&password=b").is_ok());
        for bad in [
            "username=%&password=b",
            "username=%4&password=b",
            "username=%zz&password=b",
            "username=a&password=%G0",
            "username=a&password=b&x=%",
            "username=a&password=b&%=1",
            "username=a&password=b&back=%2",
        ] {
            assert_eq!(form(bad), Err(FormError::BadEncoding), "{bad}");
        }
        assert_eq!(form("username=%FF&password=b"), Err(FormError::BadUsername));
        assert_eq!(form("username=%C3&password=b"), Err(FormError::BadUsername));
    }

    #[test]
    fn form_caps() {
        let field = |name: &str, n: usize| format!("{name}={}", "x".repeat(n));
        let ok = format!(
            "{}&{}",
            field("username", MAX_FIELD),
            field("password", MAX_FIELD)
        );
        assert!(form(&ok).is_ok());
        let long = format!("{}&password=b", field("username", MAX_FIELD + 1));
        assert_eq!(form(&long), Err(FormError::FieldTooLong(Field::Username)));
        let long = format!("username=a&{}", field("password", MAX_FIELD + 1));
        assert_eq!(form(&long), Err(FormError::FieldTooLong(Field::Password)));
        let long = format!("username=a&password=b&{}", field("back", MAX_FIELD + 1));
        assert_eq!(form(&long), Err(FormError::FieldTooLong(Field::Back)));
        // The cap is on decoded bytes: 1024 escapes are 3072 bytes on the wire, and fine.
        let escaped = format!("username=a&password={}", "%41".repeat(MAX_FIELD));
        assert_eq!(form(&escaped).unwrap().password.len(), MAX_FIELD);
        // Unknown fields may be long, within the body cap.
        let unknown = format!("username=a&password=b&{}", field("pad", 3000));
        assert!(form(&unknown).is_ok());
        // The body cap.
        let body = format!("username=a&password=b&pad={}", "x".repeat(MAX_BODY));
        assert_eq!(form(&body[..MAX_BODY + 1]), Err(FormError::TooLarge));
        let exact = "username=a&password=b&pad=".to_string();
        let exact = format!("{exact}{}", "x".repeat(MAX_BODY - exact.len()));
        assert_eq!(exact.len(), MAX_BODY);
        assert!(form(&exact).is_ok());
    }

    #[test]
    fn form_debug_redacts_the_password() {
        let f = form("username=alice&password=hunter2&back=/x").unwrap();
        let debug = format!("{f:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("104, 117"), "{debug}"); // the bytes, as a Vec would print
        assert!(
            debug.contains("<redacted>") && debug.contains("alice"),
            "{debug}"
        );
        for e in [
            FormError::TooLarge,
            FormError::FieldTooLong(Field::Password),
            FormError::Duplicate(Field::Back),
            FormError::Missing(Field::Username),
            FormError::BadEncoding,
            FormError::BadUsername,
        ] {
            assert!(e.code().starts_with("form_"));
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            FormError::FieldTooLong(Field::Password).to_string(),
            "login form field `password` longer than 1024 bytes"
        );
    }

    #[test]
    fn form_never_panics() {
        let alphabet = [b'u', b'=', b'&', b'%', b'+', b'2', b'F', 0xff, 0x00];
        let mut buf = Vec::new();
        let n = alphabet.len() as u32;
        for i in 0..n.pow(6) {
            buf.clear();
            let mut k = i;
            for _ in 0..6 {
                buf.push(alphabet[(k % n) as usize]);
                k /= n;
            }
            let _ = parse_form(&buf);
            let mut with_fields = b"username=a&password=".to_vec();
            with_fields.extend_from_slice(&buf);
            let _ = parse_form(&with_fields);
        }
        let _ = parse_form(&[0xff; MAX_BODY + 10]);
        let _ = parse_form(&[b'%'; MAX_BODY]);
    }

    #[test]
    fn content_type() {
        for ok in [
            &b"application/x-www-form-urlencoded"[..],
            b"Application/X-WWW-Form-URLEncoded",
            b"application/x-www-form-urlencoded; charset=UTF-8",
            b" application/x-www-form-urlencoded ;charset=utf-8",
        ] {
            assert!(is_form_content_type(ok));
        }
        for bad in [
            &b""[..],
            b"multipart/form-data; boundary=x",
            b"text/plain",
            b"application/json",
            b"application/x-www-form-urlencodedx",
            b"application/x-www-form-urlencoded, text/plain",
            b"\xff",
        ] {
            assert!(!is_form_content_type(bad));
        }
    }

    // -----------------------------------------------------------------------------------------
    // safe_back

    #[test]
    fn back_accepts_same_origin_paths() {
        for ok in [
            "/",
            "/_debug/",
            "/_debug/profile?id=42&sort=desc",
            "/a/b/c",
            "/a/b/",
            "/a#section",
            "/a?next=//evil.com",
            "/a?next=http://evil.com/x",
            "/?q=%2F%2Fevil",
            "/#//evil.com",
            "/search?q=a%20b&r=%E2%82%AC",
            "/a%2Fb",
            "/%C3%A9t%C3%A9",
            "/...",
            "/.well-known/x",
            "/a..b/c.",
            "/@evil.com",
            "/javascript:alert(1)",
            "/a;b=c",
        ] {
            assert_eq!(safe_back(ok), ok, "{ok}");
        }
        let long = format!("/{}", "a".repeat(MAX_BACK - 1));
        assert_eq!(safe_back(&long), long);
    }

    #[test]
    fn back_refuses_everything_else() {
        let too_long = format!("/{}", "a".repeat(MAX_BACK));
        let cases: Vec<&str> = vec![
            // Empty and relative.
            "",
            "a",
            "a/b",
            ".",
            "./a",
            "../a",
            "?x=1",
            "#x",
            // Absolute URLs and other schemes.
            "http://evil.com",
            "https://evil.com/",
            "HTTPS://evil.com",
            "ftp://evil.com",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "mailto:a@b.c",
            "//evil.com",
            "//evil.com/",
            "///evil.com",
            "////evil.com",
            // Backslashes, which browsers read as `/`.
            "/\\evil.com",
            "\\/evil.com",
            "\\\\evil.com",
            "\\evil.com",
            "/a\\b",
            "/a?b=\\",
            // Encoded variants, caught after decoding once.
            "/%2F%2Fevil.com",
            "/%2fevil.com",
            "/%2F/evil.com",
            "%2F%2Fevil.com",
            "/%5Cevil",
            "/%5cevil",
            "/%5C%5Cevil",
            "/a?x=%5C",
            "/%2e%2e/evil",
            "/%2E/evil",
            "/a/%2E%2E",
            "/a%2F%2Fb",
            // Controls, spaces and non-ASCII, raw and encoded.
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            "/a\tb",
            "/a b",
            " /a",
            "/a ",
            "/\u{0}",
            "/\u{7f}",
            "/é",
            "/\u{ff0f}evil.com",
            "/%09/evil.com",
            "/%0d%0aSet-Cookie:x=1",
            "/a?x=%0A",
            "/%00",
            "/%7F",
            // Not normalised.
            "/a//b",
            "/./a",
            "/../a",
            "/a/../b",
            "/a/./b",
            "/a/..",
            "/a/.",
            "/.",
            "/..",
            "/..?x",
            too_long.as_str(),
        ];
        for bad in cases {
            assert_eq!(safe_back(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn back_decodes_only_once() {
        // Double-encoded slashes survive one decoding as `%2F`: a path, not an authority.
        assert_eq!(safe_back("/%252F%252Fevil.com"), "/%252F%252Fevil.com");
        // Malformed escapes stay as written (and are harmless).
        assert_eq!(safe_back("/%zz"), "/%zz");
        assert_eq!(safe_back("/%"), "/%");
    }

    #[test]
    fn back_never_panics() {
        let alphabet = ["/", "\\", "%", "2", "F", "5", "C", ".", "?", "é", "\t", "a"];
        let n = alphabet.len();
        let mut s = String::new();
        for i in 0..n.pow(5) {
            s.clear();
            let mut k = i;
            for _ in 0..5 {
                s.push_str(alphabet[k % n]);
                k /= n;
            }
            let out = safe_back(&s);
            // Whatever comes out is itself safe, and stable.
            assert!(out.starts_with('/') && !out.starts_with("//"), "{s:?}");
            assert!(!out.contains('\\'), "{s:?}");
            assert_eq!(safe_back(&out), out);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Pages

    fn csp_hash(style: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(style.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(digest)
    }

    #[test]
    fn login_page_headers() {
        let page = login_page("/_devgate", "/_debug/", false);
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("www-authenticate"), None);
        let csp = page.header("content-security-policy").unwrap();
        assert_eq!(csp, LOGIN_CSP);
        for directive in [
            "default-src 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{directive}");
        }
        assert!(!csp.contains("unsafe"));
        // The hash in the CSP is the hash of the style sheet the page carries.
        assert!(csp.contains(&format!("style-src 'sha256-{}'", csp_hash(STYLE))));
        assert!(page.body.contains(&format!("<style>{STYLE}</style>")));
        // Header names are lower-case and values have no line breaks.
        for (name, value) in &page.headers {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(!value.contains(['\r', '\n']));
        }
    }

    #[test]
    fn login_page_body() {
        let page = login_page("/_devgate", "/_debug/?a=1&b=2", false);
        let body = &page.body;
        assert!(body.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(body.contains("<meta charset=\"utf-8\">"));
        assert!(body.contains("<main>") && body.contains("</main>"));
        assert!(body.contains("<form method=\"post\" action=\"/_devgate/login\""));
        assert!(
            body.contains("<input type=\"hidden\" name=\"back\" value=\"/_debug/?a=1&amp;b=2\">")
        );
        assert!(body.contains("<label for=\"username\">"));
        assert!(body.contains("<label for=\"password\">"));
        assert!(body.contains("id=\"username\" name=\"username\""));
        assert!(body.contains("id=\"password\" name=\"password\" type=\"password\""));
        assert!(body.contains("autocomplete=\"username\""));
        assert!(body.contains("autocomplete=\"current-password\""));
        assert!(!body.contains(LOGIN_FAILED));
        assert!(!body.contains("role=\"alert\""));
        // Self-contained: no script, no external asset, no inline handler.
        let lower = body.to_ascii_lowercase();
        for banned in [
            "<script", "src=", "href=", "<link", "@import", "url(", "onload", "onclick", "http:",
            "https:",
        ] {
            assert!(!lower.contains(banned), "{banned}");
        }
        // A trailing slash on the mount is not doubled.
        assert!(login_page("/_devgate/", "/", false)
            .body
            .contains("action=\"/_devgate/login\""));
        assert!(login_page("", "/", false)
            .body
            .contains("action=\"/login\""));
    }

    #[test]
    fn login_page_error() {
        let page = login_page("/_devgate", "/x", true);
        assert_eq!(page.status, 401);
        assert_eq!(
            page.header("www-authenticate"),
            Some("x-wsgiorg.developer_user")
        );
        assert!(page
            .body
            .contains("<p class=\"error\" role=\"alert\">Login failed.</p>"));
        assert_eq!(page.body.matches(LOGIN_FAILED).count(), 1);
        assert!(page.header("content-security-policy").is_some());
    }

    #[test]
    fn login_page_escapes_and_sanitises() {
        // An unsafe back becomes `/`; a safe one with HTML-special characters is escaped.
        let page = login_page("/m", "https://evil.com/\"><script>", false);
        assert!(page.body.contains("name=\"back\" value=\"/\""));
        assert!(!page.body.contains("evil"));
        let page = login_page("/m", "/a?x=\"'<>&", false);
        assert!(page
            .body
            .contains("name=\"back\" value=\"/a?x=&quot;&#39;&lt;&gt;&amp;\""));
        assert!(!page.body.contains("<>"));
        // The mount is escaped too (configuration, but still).
        let page = login_page("/m\"><b>", "/", false);
        assert!(page.body.contains("action=\"/m&quot;&gt;&lt;b&gt;/login\""));
        assert_eq!(
            html_escape("a&b<c>d\"e'f é"),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f é"
        );
    }

    #[test]
    fn redirect_and_limit_pages() {
        let page = redirect("/_debug/?x=1");
        assert_eq!(page.status, 303);
        assert_eq!(page.header("location"), Some("/_debug/?x=1"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
        assert!(page.body.is_empty());
        assert_eq!(redirect("//evil.com").header("location"), Some("/"));
        assert_eq!(redirect("https://evil.com").header("location"), Some("/"));
        assert_eq!(
            redirect("/\r\nset-cookie: x=1").header("location"),
            Some("/")
        );

        let page = too_many_attempts(42);
        assert_eq!(page.status, 429);
        assert_eq!(page.header("retry-after"), Some("42"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
    }

    // -----------------------------------------------------------------------------------------
    // same_origin

    fn so(origin: &str, host: &str, https: bool) -> bool {
        same_origin(Some(origin.as_bytes()), host.as_bytes(), https)
    }

    #[test]
    fn origin_matches() {
        // (origin or referer, :authority, listener is https)
        for (origin, host, https) in [
            ("https://dev.example.com", "dev.example.com", true),
            ("http://dev.example.com", "dev.example.com", false),
            ("https://DEV.Example.COM", "dev.example.com", true),
            ("HTTPS://dev.example.com", "Dev.Example.Com", true),
            ("HtTp://dev.example.com", "dev.example.com", false),
            ("https://dev.example.com:443", "dev.example.com", true),
            ("https://dev.example.com", "dev.example.com:443", true),
            ("http://dev.example.com", "dev.example.com:80", false),
            ("http://dev.example.com:80", "dev.example.com", false),
            ("http://localhost:10000", "localhost:10000", false),
            ("https://localhost:10443", "localhost:10443", true),
            ("http://127.0.0.1:10000", "127.0.0.1:10000", false),
            ("http://[::1]:10000", "[::1]:10000", false),
            ("https://[2001:db8::1]", "[2001:db8::1]", true),
            (" https://dev.example.com ", " dev.example.com ", true),
            // A Referer: path, query and fragment are ignored.
            (
                "https://dev.example.com/_devgate/login?back=/x#y",
                "dev.example.com",
                true,
            ),
            ("https://dev.example.com?x", "dev.example.com", true),
            ("http://localhost:10000/", "localhost:10000", false),
        ] {
            assert!(so(origin, host, https), "{origin:?} vs {host:?} ({https})");
            // The same URL on the other kind of listener is another origin.
            assert!(
                !so(origin, host, !https),
                "{origin:?} vs {host:?} ({https})"
            );
        }
    }

    #[test]
    fn login_refuses_https_origin_on_plain_listener() {
        // Regression (#14): the scheme only chose a default port, so on a plain-HTTP listener
        // `Origin: https://<host>:<port>` (or such a Referer) passed for `Host: <host>:<port>`.
        for (origin, host) in [
            ("https://dev.example.com:10000", "dev.example.com:10000"),
            ("https://dev.example.com", "dev.example.com"),
            ("https://dev.example.com", "dev.example.com:443"),
            ("https://dev.example.com:443", "dev.example.com:443"),
            ("https://dev.example.com:80", "dev.example.com"),
            (
                "https://dev.example.com:10000/.devgate/login",
                "dev.example.com:10000",
            ),
        ] {
            assert!(!so(origin, host, false), "{origin:?} vs {host:?}");
        }
        assert!(so(
            "http://dev.example.com:10000",
            "dev.example.com:10000",
            false
        ));
    }

    #[test]
    fn login_refuses_http_origin_on_tls_listener() {
        for (origin, host) in [
            ("http://dev.example.com:10443", "dev.example.com:10443"),
            ("http://dev.example.com", "dev.example.com"),
            ("http://dev.example.com", "dev.example.com:80"),
            ("http://dev.example.com:443", "dev.example.com"),
            (
                "http://dev.example.com:10443/.devgate/login",
                "dev.example.com:10443",
            ),
        ] {
            assert!(!so(origin, host, true), "{origin:?} vs {host:?}");
        }
        assert!(so(
            "https://dev.example.com:10443",
            "dev.example.com:10443",
            true
        ));
    }

    #[test]
    fn default_ports_follow_the_listener_scheme() {
        // Plain: `Host: h` is http://h:80.
        assert!(so("http://h:80", "h", false));
        assert!(so("http://h", "h:80", false));
        assert!(!so("http://h", "h:443", false));
        assert!(!so("http://h:443", "h", false));
        // TLS: `Host: h` is https://h:443.
        assert!(so("https://h:443", "h", true));
        assert!(so("https://h", "h:443", true));
        assert!(!so("https://h", "h:80", true));
        assert!(!so("https://h:80", "h", true));
        // A non-default port written on both sides is just a port.
        assert!(so("https://h:80", "h:80", true));
        assert!(so("http://h:443", "h:443", false));
    }

    #[test]
    fn origin_refusals() {
        // Both headers absent.
        assert!(!same_origin(None, b"dev.example.com", true));
        assert!(!same_origin(None, b"dev.example.com", false));
        for (origin, host) in [
            ("null", "dev.example.com"),
            ("", "dev.example.com"),
            ("https://evil.com", "dev.example.com"),
            ("https://dev.example.com.evil.com", "dev.example.com"),
            ("https://evil.com/dev.example.com", "dev.example.com"),
            ("https://evil.com?dev.example.com", "dev.example.com"),
            ("https://example.com", "dev.example.com"),
            ("https://sub.dev.example.com", "dev.example.com"),
            ("https://dev.example.com.", "dev.example.com"),
            // Ports.
            ("https://dev.example.com:8443", "dev.example.com"),
            ("https://dev.example.com", "dev.example.com:8443"),
            ("http://dev.example.com", "dev.example.com:443"),
            ("https://dev.example.com", "dev.example.com:80"),
            ("http://localhost:10001", "localhost:10000"),
            ("http://localhost", "localhost:10000"),
            ("http://localhost:", "localhost"),
            ("http://localhost:x", "localhost"),
            ("http://localhost:99999", "localhost"),
            ("http://localhost:123456", "localhost"),
            ("http://localhost:10000", "localhost:"),
            // Userinfo, other schemes, malformed.
            ("https://dev.example.com@evil.com", "dev.example.com"),
            ("https://evil.com@dev.example.com", "dev.example.com"),
            ("ftp://dev.example.com", "dev.example.com"),
            ("file://dev.example.com", "dev.example.com"),
            ("javascript://dev.example.com", "dev.example.com"),
            ("dev.example.com", "dev.example.com"),
            ("//dev.example.com", "dev.example.com"),
            ("https:dev.example.com", "dev.example.com"),
            ("https://", ""),
            ("https://", "dev.example.com"),
            ("https://dev.example.com", ""),
            ("https://dev.example.com\\@evil.com", "dev.example.com"),
            ("http://[::1", "[::1"),
            ("http://[::1]x", "[::1]x"),
            ("http://::1", "::1"),
            ("http://[::1]:10000", "[::2]:10000"),
            ("https://dev example.com", "dev example.com"),
        ] {
            assert!(!so(origin, host, true), "{origin:?} vs {host:?}");
            assert!(!so(origin, host, false), "{origin:?} vs {host:?}");
        }
    }

    #[test]
    fn origin_never_panics() {
        let alphabet = [
            "h", "t", "p", "s", ":", "/", "[", "]", "@", "1", "\u{ff}", ".",
        ];
        let n = alphabet.len();
        let mut s = String::new();
        for i in 0..n.pow(5) {
            s.clear();
            let mut k = i;
            for _ in 0..5 {
                s.push_str(alphabet[k % n]);
                k /= n;
            }
            let with_scheme = format!("https://{s}");
            for https in [true, false] {
                let _ = so(&s, &s, https);
                assert!(so(&with_scheme, &s, https) == so(&with_scheme, &s, https));
            }
            // https:// is never the origin of a plain listener.
            assert!(!so(&with_scheme, &s, false));
        }
        let _ = same_origin(Some(b"\xff\xfe://\xff"), b"\xff", true);
    }

    // -----------------------------------------------------------------------------------------
    // Rate limiting

    const T: u64 = 1_700_000_000;

    #[test]
    fn attempts_round_trip() {
        for a in [
            Attempts {
                count: 0,
                window_start: 0,
            },
            Attempts {
                count: 3,
                window_start: T,
            },
            Attempts {
                count: u32::MAX,
                window_start: u64::MAX,
            },
        ] {
            let bytes = a.to_bytes();
            assert_eq!(bytes.len(), Attempts::LEN);
            assert_eq!(Attempts::from_bytes(&bytes), Some(a));
        }
        assert_eq!(
            Attempts {
                count: 2,
                window_start: 0x0102_0304_0506_0708
            }
            .to_bytes(),
            [1, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(Attempts::from_bytes(Attempts::CLEARED), None);
        assert_eq!(Attempts::from_bytes(&[]), None);
        assert_eq!(Attempts::from_bytes(&[1; 12]), None);
        assert_eq!(Attempts::from_bytes(&[1; 14]), None);
        assert_eq!(Attempts::from_bytes(&[2; 13]), None);
        assert_eq!(Attempts::from_bytes(&[0; 13]), None);
    }

    #[test]
    fn rate_limit_window() {
        let (limit, window) = (5, 300);
        let mut prev: Option<Attempts> = None;
        for i in 0..5 {
            assert_eq!(check(prev, T + i, limit, window), Verdict::Allow, "{i}");
            prev = Some(record_failure(prev, T + i, window));
        }
        assert_eq!(
            prev,
            Some(Attempts {
                count: 5,
                window_start: T
            })
        );
        assert_eq!(
            check(prev, T + 5, limit, window),
            Verdict::Limited { retry_after: 295 }
        );
        assert_eq!(
            check(prev, T + 299, limit, window),
            Verdict::Limited { retry_after: 1 }
        );
        assert_eq!(check(prev, T + 300, limit, window), Verdict::Allow);
        // A failure after the window starts a new one.
        assert_eq!(
            record_failure(prev, T + 300, window),
            Attempts {
                count: 1,
                window_start: T + 300
            }
        );
        // Failures while limited (should the glue record them) keep the window.
        assert_eq!(
            record_failure(prev, T + 10, window),
            Attempts {
                count: 6,
                window_start: T
            }
        );
        // Success resets: the glue stores CLEARED.
        let cleared = Attempts::from_bytes(Attempts::CLEARED);
        assert_eq!(check(cleared, T + 6, limit, window), Verdict::Allow);
    }

    #[test]
    fn rate_limit_edges() {
        let full = Some(Attempts {
            count: 3,
            window_start: T,
        });
        assert_eq!(check(None, T, 0, 300), Verdict::Allow);
        assert_eq!(check(None, T, 3, 300), Verdict::Allow);
        // limit 0: the first failure locks until the window ends.
        let one = Some(record_failure(None, T, 300));
        assert_eq!(check(one, T, 0, 300), Verdict::Limited { retry_after: 300 });
        // window 0: never limited.
        assert_eq!(check(full, T, 3, 0), Verdict::Allow);
        assert_eq!(record_failure(full, T, 0).count, 1);
        // Clock stepped back, or a record from the future: not trusted, no lockout.
        assert_eq!(check(full, T - 1, 3, 300), Verdict::Allow);
        assert_eq!(record_failure(full, T - 1, 300).window_start, T - 1);
        let far = Some(Attempts {
            count: u32::MAX,
            window_start: u64::MAX,
        });
        assert_eq!(check(far, T, 3, 300), Verdict::Allow);
        // Overflow-safe at the top of the range.
        let top = Some(Attempts {
            count: u32::MAX,
            window_start: u64::MAX - 10,
        });
        assert_eq!(
            check(top, u64::MAX - 5, 3, u64::MAX),
            Verdict::Limited { retry_after: 5 }
        );
        assert_eq!(record_failure(top, u64::MAX - 5, u64::MAX).count, u32::MAX);
    }

    #[test]
    fn rate_keys() {
        let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(rate_key(v4), "devgate.login.203.0.113.7");
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped());
        assert_eq!(rate_key(mapped), "devgate.login.203.0.113.7");
        let v6: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        assert_eq!(rate_key(v6), "devgate.login.2001:db8:1:2::/64");
        let same_64: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        assert_eq!(rate_key(same_64), rate_key(v6));
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_ne!(rate_key(other_64), rate_key(v6));
        assert_eq!(
            rate_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            "devgate.login.::/64"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Cookies and the session token

    #[test]
    fn cookies() {
        assert_eq!(
            session_cookie("devgate_session", "a.b.c", 28800, true).unwrap(),
            "devgate_session=a.b.c; Path=/; Max-Age=28800; Secure; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            session_cookie("devgate_session", "a.b.c", 60, false).unwrap(),
            "devgate_session=a.b.c; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            clear_session_cookie("devgate_session", true).unwrap(),
            "devgate_session=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; \
             Secure; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            clear_session_cookie("devgate_session", false).unwrap(),
            "devgate_session=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; \
             HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("__Host-devgate", "t", 60, true).is_ok());
        assert_eq!(
            session_cookie("__Host-devgate", "t", 60, false),
            Err(CookieError::PrefixRules)
        );
        assert_eq!(
            session_cookie("bad name", "t", 60, true),
            Err(CookieError::BadName)
        );
        assert_eq!(
            session_cookie("n", "t;x", 60, true),
            Err(CookieError::BadValue)
        );
        assert_eq!(
            clear_session_cookie("bad;name", true),
            Err(CookieError::BadName)
        );
    }

    #[test]
    fn session_token_round_trip() {
        let keys = KeySet::new(vec![Key {
            id: "k1".to_string(),
            secret: Secret::from_bytes(vec![7; 32]).unwrap(),
        }])
        .unwrap();
        let claims = session_claims("alice", "devgate_session", T, 3600, None);
        assert_eq!(claims.purpose, Purpose::Session);
        assert_eq!(claims.cookie.as_deref(), Some("devgate_session"));
        assert_eq!((claims.iat, claims.exp), (Some(T), T + 3600));
        token::check_claims(&claims).unwrap();
        let tok = token::mint(&claims, keys.signing_key());
        // The cookie carries it as is.
        assert!(session_cookie("devgate_session", &tok, 3600, true).is_ok());
        let expect = Expect::session("devgate_session", 30);
        assert_eq!(
            token::verify(tok.as_bytes(), &keys, &expect, T + 10),
            Ok(claims.clone())
        );
        // Not a developer token, not for another cookie, not after it expires.
        assert_eq!(
            token::verify(tok.as_bytes(), &keys, &Expect::developer(30), T + 10),
            Err(TokenError::WrongPurpose)
        );
        assert_eq!(
            token::verify(tok.as_bytes(), &keys, &Expect::session("other", 30), T + 10),
            Err(TokenError::WrongCookie)
        );
        assert_eq!(
            token::verify(tok.as_bytes(), &keys, &expect, T + 3600 + 30),
            Err(TokenError::Expired)
        );
        // Bound to a peer: IPv4-mapped folded, and enforced.
        let peer = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let bound = session_claims("alice", "devgate_session", T, 3600, Some(peer));
        assert_eq!(bound.cip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        let tok = token::mint(&bound, keys.signing_key());
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            token::verify(tok.as_bytes(), &keys, &expect.with_peer(other), T),
            Err(TokenError::WrongPeer)
        );
        assert!(token::verify(tok.as_bytes(), &keys, &expect.with_peer(peer), T).is_ok());
        // TTL overflow saturates.
        assert_eq!(
            session_claims("a", "c", u64::MAX - 1, 10, None).exp,
            u64::MAX
        );
    }

    #[test]
    fn login_flow_end_to_end() {
        use crate::core::htpasswd::Users;
        // htpasswd -nbB -C 4 dave pw4
        let users = Users::parse(
            "dave:$2y$04$JZvtNra6rAJeuvkYEvBT1OJU4Xart.tMqynAn8LVPA77/z4HIdAEq\n",
            10,
        )
        .unwrap();
        let host = b"dev.example.com";
        let origin = Some(&b"https://dev.example.com"[..]);
        assert!(same_origin(origin, host, true));
        assert!(is_form_content_type(b"application/x-www-form-urlencoded"));
        let key = rate_key(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let mut stored: Vec<u8> = Vec::new();
        // Two wrong passwords, then the right one, with a limit of 3.
        for (body, ok) in [
            ("username=dave&password=nope&back=%2F_debug%2F", false),
            ("username=eve&password=pw4&back=%2F_debug%2F", false),
            ("username=dave&password=pw4&back=%2F_debug%2F", true),
        ] {
            let prev = Attempts::from_bytes(&stored);
            assert_eq!(check(prev, T, 3, 300), Verdict::Allow);
            let form = parse_form(body.as_bytes()).unwrap();
            let back = form.back.clone().unwrap_or_default();
            if users.verify(&form.username, &form.password) {
                assert!(ok);
                stored = Attempts::CLEARED.to_vec();
                let page = redirect(&back);
                assert_eq!(page.header("location"), Some("/_debug/"));
            } else {
                assert!(!ok);
                stored = record_failure(prev, T, 300).to_bytes().to_vec();
                assert_eq!(login_page("/_devgate", &back, true).status, 401);
            }
        }
        assert_eq!(Attempts::from_bytes(&stored), None);
        assert!(key.starts_with(RATE_KEY_PREFIX));
    }
}

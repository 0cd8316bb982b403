//! The hidden login form and the signed session cookie: the pure half.
//!
//! DevAuth let developers log in through a form nobody links to; devgate serves the same form
//! from Envoy, under a configured mount (`<mount>/login`). Everything here is a pure function,
//! one concern per file (form, back, pages, csrf, rate, session_cookie):
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

use crate::core::codes::ResponseHeaders;

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
    /// The HTTP status.
    pub status: u16,
    /// The headers, names lower-case.
    pub headers: ResponseHeaders,
    /// The body.
    pub body: String,
}

impl Page {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }
}

mod back;
mod csrf;
mod form;
mod pages;
mod rate;
mod session_cookie;

pub use back::safe_back;
pub use csrf::same_origin;
pub use form::{is_form_content_type, parse_form, Field, FormError, LoginForm};
pub use pages::{login_page, redirect, text_page, too_many_attempts, LOGIN_CSP};
pub use rate::{check, rate_key, record_failure, Attempts, Verdict};
pub use session_cookie::{clear_session_cookie, session_claims, session_cookie};

#[cfg(test)]
mod tests;

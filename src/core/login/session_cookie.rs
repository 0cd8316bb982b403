//! The session cookie and the claims of its token.

use std::net::IpAddr;

use crate::core::cookie;
use crate::core::cookie::{CookieAttrs, CookieError, SameSite};
use crate::core::net::normalize_ip;
use crate::core::token::{Claims, Purpose};

pub(super) fn session_attrs(max_age: Option<u64>, secure: bool) -> CookieAttrs<'static> {
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

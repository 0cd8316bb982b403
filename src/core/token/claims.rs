//! Claims: what a token says (subject, purpose, times, binding) and the checks on them.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::error::TokenError;
use super::{MAX_JTI_LEN, MAX_SUBJECT_LEN};

/// What a token is for (claim `dgp`). A token is only accepted for the purpose it was minted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A developer credential, presented as a bearer token (`"developer"`).
    Developer,
    /// A browser session, presented in a cookie named by claim `dgc` (`"session"`).
    Session,
}

impl Purpose {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Developer => "developer",
            Purpose::Session => "session",
        }
    }

    /// Parses a claim value; `None` for anything else (including purposes added later).
    pub fn parse(value: &str) -> Option<Purpose> {
        match value {
            "developer" => Some(Purpose::Developer),
            "session" => Some(Purpose::Session),
            _ => None,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims devgate reads. Serializes (for [`mint`](super::mint)) as a JSON object in field order,
/// omitting absent optional claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// `sub`: the developer name injected upstream; see [`is_valid_subject`].
    pub sub: String,
    /// `dgp`: the purpose.
    #[serde(rename = "dgp")]
    pub purpose: Purpose,
    /// `dgc`: the cookie a session token is bound to (required for [`Purpose::Session`]).
    #[serde(rename = "dgc", skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// `cip`: the peer address the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cip: Option<IpAddr>,
    /// `jti`: token id, at most [`MAX_JTI_LEN`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `iat`: issued at, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// `nbf`: not before, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// `exp`: expiry, seconds since the epoch; the token is refused from this second on.
    pub exp: u64,
}

/// True if `sub` can be injected as an HTTP header value: 1..=256 bytes of printable ASCII
/// (0x20..=0x7E), no leading or trailing space.
pub fn is_valid_subject(sub: &str) -> bool {
    let b = sub.as_bytes();
    (1..=MAX_SUBJECT_LEN).contains(&b.len())
        && b.iter().all(|c| (0x20..=0x7e).contains(c))
        && !b.starts_with(b" ")
        && !b.ends_with(b" ")
}

/// Checks what [`verify`](super::verify) would check about the claims themselves (independent of time and
/// request): a valid subject, a `jti` of at most 128 bytes, and a cookie name on session tokens.
/// [`mint`](super::mint) does not call this; call it first to avoid minting a token that cannot verify.
pub fn check_claims(claims: &Claims) -> Result<(), TokenError> {
    if !is_valid_subject(&claims.sub) {
        return Err(TokenError::BadSubject);
    }
    if claims.jti.as_ref().is_some_and(|j| j.len() > MAX_JTI_LEN) {
        return Err(TokenError::Malformed);
    }
    if claims.purpose == Purpose::Session && claims.cookie.is_none() {
        return Err(TokenError::WrongCookie);
    }
    Ok(())
}

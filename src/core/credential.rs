//! Credentials: finding devgate's token (Bearer or cookie) and the session cookie, and
//! checking them (verify, revocation, peer binding, the networks they are honoured from).

use std::net::IpAddr;

use crate::core::codes::{Reason, Source};
use crate::core::cookie::CookieLookup;
use crate::core::policy::{LoginPolicy, TokenPolicy};
use crate::core::token::{Expect, TokenError};
use crate::core::{cookie, net, token};

use super::decision::{Ctx, Identity, Request};

/// A credential the request carries.
#[derive(Clone, Copy, Debug)]
pub(super) struct Credential<'a> {
    pub(super) source: Source,
    pub(super) token: &'a [u8],
}

/// Finds devgate's credential: `Ok(None)` when there is none, an error when there are several.
pub(super) fn find_credential<'a>(
    tokens: &TokenPolicy,
    req: &Request<'a>,
) -> Result<Option<Credential<'a>>, Reason> {
    let mut found: Option<Credential<'a>> = None;
    if tokens.bearer {
        // Envoy joins repeated Authorization headers with ',' (and a bearer token never holds
        // one), so every comma-separated element is a credential of its own.
        let mut elements = req
            .headers
            .iter()
            .filter(|(n, _)| *n == b"authorization")
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .filter(|e| !e.trim_ascii().is_empty());
        let first = elements.next();
        let bearer = first.and_then(bearer_token);
        let mut rest_has_bearer = false;
        let mut more = false;
        for e in elements {
            more = true;
            rest_has_bearer |= bearer_token(e).is_some();
        }
        if more && (bearer.is_some() || rest_has_bearer) {
            return Err(Reason::AmbiguousCredential);
        }
        if let Some(token) = bearer {
            found = Some(Credential {
                source: Source::Bearer,
                token,
            });
        }
    }
    if let Some(name) = &tokens.cookie {
        let values = req
            .headers
            .iter()
            .filter(|(n, _)| *n == b"cookie")
            .map(|(_, v)| *v);
        match cookie::find_cookie(values, name) {
            CookieLookup::NotFound => {}
            CookieLookup::Found(token) => {
                if found.is_some() {
                    return Err(Reason::AmbiguousCredential);
                }
                found = Some(Credential {
                    source: Source::Cookie,
                    token,
                });
            }
            CookieLookup::Ambiguous => return Err(Reason::AmbiguousCredential),
            CookieLookup::TooLarge => return Err(Reason::Token(TokenError::TooLong)),
        }
    }
    Ok(found)
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub(super) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(value.get(7..)?.trim_ascii())
}

/// Errors raised before devgate knew the token was meant for one of its keys. A Bearer token
/// that fails this early may belong to the application, so it is not stripped.
pub(super) fn names_our_key(result: &Result<token::Claims, TokenError>) -> bool {
    !matches!(
        result,
        Err(TokenError::TooLong
            | TokenError::Malformed
            | TokenError::UnsupportedAlg
            | TokenError::UnsupportedHeader
            | TokenError::MissingKid
            | TokenError::UnknownKid)
    )
}

/// The last checks on verified claims, shared by tokens and sessions: the peer binding the
/// policy requires, and the networks the credential is honoured from.
pub(super) fn admit(
    claims: token::Claims,
    bind_peer: bool,
    allow_from: Option<&net::CidrList>,
    peer_ip: Option<IpAddr>,
    source: Source,
) -> Result<Identity, Reason> {
    if bind_peer && claims.cip.is_none() {
        Err(Reason::UnboundToken)
    } else if allow_from.is_some_and(|nets| !peer_ip.is_some_and(|ip| nets.contains(ip))) {
        Err(Reason::NetworkDenied)
    } else {
        Ok(Identity {
            name: claims.sub,
            source,
        })
    }
}

/// Checks a credential: the developer it names, or why not.
pub(super) fn check_token(
    tokens: &TokenPolicy,
    cred: Credential<'_>,
    ctx: &Ctx<'_, '_, '_>,
) -> (Result<Identity, Reason>, bool) {
    let (peer_ip, revocation, now) = (ctx.peer_ip, ctx.revocation, ctx.req.now);
    let mut expect = Expect::developer(tokens.leeway);
    if let Some(ip) = peer_ip {
        expect = expect.with_peer(ip);
    }
    let result = token::verify(cred.token, &tokens.keys, &expect, now);
    let ours = names_our_key(&result);
    let verdict = match result {
        Err(e) => Err(Reason::Token(e)),
        Ok(claims) => {
            if revocation.is_some_and(|r| r.refuse) {
                Err(Reason::RevocationStale)
            } else if revocation.is_some_and(|r| r.token_revoked(claims.jti.as_deref())) {
                Err(Reason::Revoked)
            } else {
                admit(
                    claims,
                    tokens.bind_peer,
                    tokens.allow_from.as_ref(),
                    peer_ip,
                    cred.source,
                )
            }
        }
    };
    (verdict, ours)
}

/// The login session cookie, looked up and checked.
pub(super) enum SessionCookie {
    /// The request carries none.
    Absent,
    /// It has expired: an expired session is no session (the request goes on as anonymous and
    /// the cookie is cleared).
    Expired,
    /// The developer it names, or why not.
    Checked(Result<Identity, Reason>),
}

/// Looks for the session cookie and checks it. `Err` when it cannot be read one way only.
pub(super) fn session_cookie(
    login: &LoginPolicy,
    ctx: &Ctx<'_, '_, '_>,
) -> Result<SessionCookie, Reason> {
    let req = ctx.req;
    let values = req
        .headers
        .iter()
        .filter(|(n, _)| *n == b"cookie")
        .map(|(_, v)| *v);
    // devgate's session cookie never reaches the upstream, valid or not: [`strip_cookies`].
    let token = match cookie::find_cookie(values, &login.cookie) {
        CookieLookup::NotFound => return Ok(SessionCookie::Absent),
        CookieLookup::Found(token) => token,
        CookieLookup::Ambiguous => return Err(Reason::AmbiguousCredential),
        CookieLookup::TooLarge => return Err(Reason::Token(TokenError::TooLong)),
    };
    let peer_ip = ctx.peer_ip;
    let mut expect = Expect::session(&login.cookie, login.leeway);
    if let Some(ip) = peer_ip {
        expect = expect.with_peer(ip);
    }
    let verdict = match token::verify(token, &login.keys, &expect, req.now) {
        Err(TokenError::Expired) => return Ok(SessionCookie::Expired),
        Err(e) => Err(Reason::Token(e)),
        Ok(claims) => admit(
            claims,
            login.bind_peer,
            login.allow_from.as_ref(),
            peer_ip,
            Source::Session,
        ),
    };
    Ok(SessionCookie::Checked(verdict))
}

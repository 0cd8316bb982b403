//! Identity headers from a trusted proxy (oauth2-proxy's `X-Auth-Request-Email`, Tailscale's
//! `Tailscale-User-Login`): believed only from a configured socket peer.
//!
//! A plain header naming the user proves nothing by itself: anyone can send it. It is honest
//! only when the proxy that authenticated the user sent it, so it is read only when the
//! request's **socket** peer (never an address Envoy took from `X-Forwarded-For`) is one of the
//! configured proxies. From anywhere else it is ignored; from everywhere, it is removed before
//! the upstream ([`identify`](super::identify)).

use std::net::IpAddr;

use crate::core::codes::{Reason, Source};
use crate::core::headers::HeaderName;
use crate::core::net::CidrList;
use crate::core::token::{is_valid_subject, TokenError};

use super::super::decision::{Identity, Request};
use super::Developers;

/// One trusted proxy header (`edge.proxy_headers[]`).
#[derive(Clone, Debug)]
pub struct ProxyHeaderSource {
    /// The header naming the user.
    pub header: HeaderName,
    /// The proxies' socket addresses (CIDRs with explicit masks).
    pub from: CidrList,
    /// Who is a developer.
    pub developers: Developers,
}

/// The values of every spelling of `header` in `req`.
pub(super) fn values<'a>(req: &Request<'a>, header: &HeaderName) -> Vec<&'a [u8]> {
    req.headers
        .iter()
        .filter(|(n, _)| header.is_spelling(n))
        .map(|(_, v)| *v)
        .collect()
}

/// The developer `src`'s header names, when the request's socket peer is one of its proxies.
/// `None`: the header is absent or not sent by a listed proxy (then it is ignored). More than
/// one value (in any spelling, or joined with `,`) is refused `malformed`; a value that is not a valid header value
/// of 1-256 visible ASCII characters `bad_claim`; a user the mapping does not list
/// `not_a_developer`.
pub fn check(
    src: &ProxyHeaderSource,
    req: &Request<'_>,
    socket_peer: Option<IpAddr>,
) -> Option<Result<Identity, Reason>> {
    if !socket_peer.is_some_and(|ip| src.from.contains(ip)) {
        return None;
    }
    let found = values(req, &src.header);
    let value = match found.as_slice() {
        [] => return None,
        [one] => *one,
        _ => return Some(Err(Reason::Token(TokenError::Malformed))),
    };
    // Repeated headers may reach devgate joined with ',' (a client's copy appended to the
    // proxy's): never one name.
    if value.contains(&b',') {
        return Some(Err(Reason::Token(TokenError::Malformed)));
    }
    let name = match std::str::from_utf8(value) {
        Ok(name) if is_valid_subject(name) => name,
        _ => return Some(Err(Reason::BadClaim)),
    };
    if !src.developers.admits(name, &[]) {
        return Some(Err(Reason::NotADeveloper));
    }
    Some(Ok(Identity {
        name: name.to_string(),
        source: Source::ProxyHeader,
    }))
}

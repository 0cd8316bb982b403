//! Identity headers from a trusted proxy (oauth2-proxy's `X-Auth-Request-Email`, Tailscale's
//! `Tailscale-User-Login`): believed only from a configured socket peer. SKELETON.

use std::net::IpAddr;

use crate::core::codes::Reason;
use crate::core::headers::HeaderName;
use crate::core::net::CidrList;

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

/// The developer `src`'s header names, when the request's socket peer is one of its proxies.
/// `None`: the header is absent or not sent by a listed proxy (then it is ignored).
pub fn check(
    src: &ProxyHeaderSource,
    req: &Request<'_>,
    socket_peer: Option<IpAddr>,
) -> Option<Result<Identity, Reason>> {
    let _ = (src, req, socket_peer);
    None
}

//! Identity headers from a trusted proxy (oauth2-proxy's `X-Auth-Request-Email`, Tailscale's
//! `Tailscale-User-Login`): believed only from a configured socket peer. SKELETON.

use crate::core::headers::HeaderName;
use crate::core::net::CidrList;

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

//! The connection's client certificate, as Envoy's TLS listener validated it. SKELETON.

use std::net::IpAddr;

use crate::core::codes::Reason;
use crate::core::net::CidrList;

use super::super::decision::{Identity, Request};

/// What the host reports of the downstream connection's peer certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// Envoy validated the certificate against the listener's trusted CA.
    pub validated: bool,
    /// URI SANs (a SPIFFE ID in a mesh).
    pub uri_sans: Vec<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// Email SANs, where the host can read them.
    pub emails: Vec<String>,
    /// The subject, RFC 2253.
    pub subject: Option<String>,
}

/// Who is a developer by client certificate (`edge.client_certs`): the matched value is the
/// developer's name.
#[derive(Clone, Debug, Default)]
pub struct ClientCertSource {
    /// URI SANs (SPIFFE IDs) of developers.
    pub uri_sans: Vec<String>,
    /// DNS SANs of developers.
    pub dns_sans: Vec<String>,
    /// Email SANs of developers.
    pub emails: Vec<String>,
    /// Subjects (RFC 2253) of developers.
    pub subjects: Vec<String>,
    /// Believe `x-forwarded-client-cert` from these socket peers (a proxy that terminated TLS);
    /// `None`: never (the default).
    pub forwarded_from: Option<CidrList>,
}

/// The developer the connection's validated client certificate names (or, from a proxy in
/// `forwarded_from`, its `x-forwarded-client-cert`). `None`: no validated certificate.
pub fn check(
    src: &ClientCertSource,
    req: &Request<'_>,
    socket_peer: Option<IpAddr>,
) -> Option<Result<Identity, Reason>> {
    let _ = (src, req, socket_peer);
    None
}

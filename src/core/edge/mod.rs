//! Developers as the team's edge already knows them: signed assertions verified against their
//! issuer's public keys ([`assertion`]), identity headers from a trusted proxy's socket address
//! ([`proxy`]) and the connection's validated client certificate ([`cert`]). Each source maps
//! what it proves to a developer with [`Developers`], names its [`Source`](crate::core::Source)
//! and refuses with the codes of [`Reason`](crate::core::Reason).
//!
//! [`identify`] runs every configured source once per request (the decision's methods share the
//! answer) and returns an [`EdgeVerdict`]: who, if anyone, and why not. The decision prefers
//! devgate's own credentials (a token, the session cookie), then these sources in the order
//! above, then the socket address; a source that fails never locks out a developer another source
//! admits, and `network.deny` still wins over all of them.

use std::net::IpAddr;

use crate::core::codes::Reason;
use crate::core::headers::HeaderName;
use crate::core::jose::{Alg, PublicKeys};
use crate::core::net::{self, CidrList};

use super::decision::{Identity, Request};

pub mod assertion;
pub mod cache;
pub mod cert;
pub mod developers;
pub mod fetch;
pub mod keys;
pub mod proxy;

pub use cert::{ClientCert, ClientCertSource};
pub use developers::Developers;
pub use keys::{EdgeKeys, EdgeView, EdgeWorker, KeyFetch, KeysAt};
pub use proxy::ProxyHeaderSource;

/// The edge sources of a configuration (`edge`). Present only when configured.
#[derive(Clone, Debug, Default)]
pub struct EdgePolicy {
    /// Signed assertions, tried in order; the first that proves a developer wins.
    pub assertions: Vec<AssertionSource>,
    /// Identity headers from trusted proxies, tried in order.
    pub proxy_headers: Vec<ProxyHeaderSource>,
    /// The connection's client certificate.
    pub client_certs: Option<ClientCertSource>,
    /// Headers never believed and always removed before the upstream, by exact name (every
    /// spelling): the profiles' unsigned companions (`x-amzn-oidc-identity`). The proxy headers
    /// are removed too, from anywhere, without being listed here.
    pub strip: Vec<HeaderName>,
    /// As `strip`, by name prefix (`x-pomerium-claim-`, `x-goog-authenticated-user-`), folded
    /// like a spelling (lower case, `_` as `-`).
    pub strip_prefixes: Vec<String>,
}

/// The provider a source's defaults and quirks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Google Cloud IAP: `x-goog-iap-jwt-assertion`, ES256, issuer
    /// `https://cloud.google.com/iap`.
    GoogleIap,
    /// Cloudflare Access: `cf-access-jwt-assertion`, RS256.
    CloudflareAccess,
    /// Pomerium: `x-pomerium-jwt-assertion`, ES256.
    Pomerium,
    /// AWS ALB: `x-amzn-oidc-data`, ES256, a PEM per `kid`, the header's `signer`, padded
    /// base64url.
    AwsAlb,
    /// Any OpenID Connect issuer's ID token as `Authorization: Bearer`.
    Oidc,
}

impl Profile {
    /// The configuration's name of the profile.
    pub fn code(self) -> &'static str {
        match self {
            Profile::GoogleIap => "google_iap",
            Profile::CloudflareAccess => "cloudflare_access",
            Profile::Pomerium => "pomerium",
            Profile::AwsAlb => "aws_alb",
            Profile::Oidc => "oidc",
        }
    }
}

/// Where an assertion travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// The whole value of this header (every spelling read; more than one value is refused).
    Header(HeaderName),
    /// `Authorization: Bearer <token>`, when devgate's own tokens do not claim it.
    Bearer,
}

/// Where an assertion source's public keys come from.
#[derive(Clone, Debug)]
pub enum KeyLocation {
    /// In the configuration (a JWK set or PEM keys).
    Inline(PublicKeys),
    /// A JWK set fetched from an Envoy cluster.
    Jwks(KeyFetch),
    /// One PEM per `kid`, fetched from `<path><kid>` (AWS ALB).
    PemPerKid(KeyFetch),
}

/// A signed assertion source.
#[derive(Clone, Debug)]
pub struct AssertionSource {
    /// The source's name (logs, shared-data keys): 1-32 of `[a-z0-9_]`.
    pub name: String,
    /// Its provider.
    pub profile: Profile,
    /// Where the assertion travels.
    pub carrier: Carrier,
    /// The algorithms accepted.
    pub algorithms: Vec<Alg>,
    /// The issuer's keys.
    pub keys: KeyLocation,
    /// `iss` must equal this.
    pub issuer: String,
    /// `aud` (a string, or a list) must name one of these.
    pub audiences: Vec<String>,
    /// The claim that names the developer. Default `email`.
    pub claim: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// AWS ALB: the load balancer's ARN, which the header's `signer` must equal.
    pub signer: Option<String>,
    /// Base64url with `=` padding is accepted (AWS ALB only).
    pub padded: bool,
    /// Who is a developer.
    pub developers: Developers,
    /// Peers the assertion is honoured from (the edge proxy), as `network` lets the peer be used
    /// (the socket's address, or `X-Forwarded-For`'s with `trust_forwarded`), as for tokens'
    /// `allow_from`; from elsewhere it is refused `network_denied`. `None`: any.
    pub allow_from: Option<CidrList>,
}

/// What the edge sources say of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeVerdict {
    /// The developer, if a source proved one.
    pub identity: Option<Identity>,
    /// Why not, when a source was present and refused (the first such source's reason).
    pub refusal: Option<Reason>,
    /// An assertion needs its issuer's keys fetched before it can be decided (the keys'
    /// [`EdgeKeys`] planned the fetch): the decision is [`Decision::Ask`](crate::core::Decision::Ask).
    pub ask: bool,
    /// Header names (as the request has them) to remove before the upstream.
    pub remove: Vec<Vec<u8>>,
}

/// Runs every source of `edge` for `req` (`peer_ip`: the peer as the policy lets it be used, for
/// the assertions' `allow_from`; `keys`: the fetched keys and the verified-assertion cache,
/// `None` when the caller has none).
///
/// The assertions in order, then the proxy headers, then the client certificate: the first
/// that proves a developer wins; otherwise the first refusal of a source that was present, and
/// `ask` when an assertion waits for its keys. Proxy headers and certificates are believed only
/// from the **socket** peer (`source.address` with a port other than 0: a port-0 address came
/// from `X-Forwarded-For` and is never a proxy).
///
/// Whatever the outcome, `remove` lists every header the upstream must not see: every spelling
/// of `strip`, every name starting with one of `strip_prefixes` (folded), and every proxy
/// header from anywhere (like the identity header, only devgate tells the upstream who). The
/// assertion headers are left for the application.
pub fn identify(
    edge: &EdgePolicy,
    req: &Request<'_>,
    peer_ip: Option<IpAddr>,
    keys: Option<&dyn EdgeKeys>,
) -> EdgeVerdict {
    let mut verdict = EdgeVerdict {
        remove: removals(edge, req),
        ..EdgeVerdict::default()
    };
    for (i, src) in edge.assertions.iter().enumerate() {
        match assertion::check(src, i, req, peer_ip, keys) {
            None => {}
            Some(assertion::Found::Ask) => verdict.ask = true,
            Some(assertion::Found::Developer(id)) => return proven(verdict, id),
            Some(assertion::Found::Refused(reason)) => {
                verdict.refusal.get_or_insert(reason);
            }
        }
    }
    let socket_peer = req
        .peer
        .and_then(|p| net::parse_peer(p).ok())
        .filter(|p| !p.is_forwarded())
        .map(|p| p.ip);
    let others = edge
        .proxy_headers
        .iter()
        .map(|src| proxy::check(src, req, socket_peer))
        .chain(
            edge.client_certs
                .iter()
                .map(|src| cert::check(src, req, socket_peer)),
        );
    for found in others.flatten() {
        match found {
            Ok(id) => return proven(verdict, id),
            Err(reason) => {
                verdict.refusal.get_or_insert(reason);
            }
        }
    }
    verdict
}

/// `verdict` once a source proved `id`: nothing to ask, no refusal to give.
fn proven(verdict: EdgeVerdict, id: Identity) -> EdgeVerdict {
    EdgeVerdict {
        identity: Some(id),
        refusal: None,
        ask: false,
        remove: verdict.remove,
    }
}

/// `name` folded as a spelling is (ASCII lower case, `_` as `-`) starts with `prefix` (folded).
fn has_folded_prefix(name: &[u8], prefix: &str) -> bool {
    let prefix = prefix.as_bytes();
    name.len() >= prefix.len()
        && name.iter().zip(prefix).all(|(&a, &b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            let b = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
            a == b
        })
}

/// The header names of `req` (each once, as the request has them) the upstream must not see.
fn removals(edge: &EdgePolicy, req: &Request<'_>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (name, _) in req.headers {
        let drop = edge.strip.iter().any(|h| h.is_spelling(name))
            || edge
                .proxy_headers
                .iter()
                .any(|p| p.header.is_spelling(name))
            || edge
                .strip_prefixes
                .iter()
                .any(|p| has_folded_prefix(name, p));
        if drop && !out.iter().any(|n| n.as_slice() == *name) {
            out.push(name.to_vec());
        }
    }
    out
}

#[cfg(test)]
#[path = "../tests/edge.rs"]
mod tests;

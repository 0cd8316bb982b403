//! The decision's vocabulary: the request facts, identities, edits, the decision itself, what
//! every check of one request reads ([`Ctx`]), and the one deny path that builds every refusal.
//! The codes a decision gives ([`Reason`], [`Source`]) are in [`crate::core::codes`].

use std::borrow::Cow;
use std::net::IpAddr;

use crate::core::apikey::KeyKind;
use crate::core::codes::{Reason, ResponseHeaders, Source};
use crate::core::edge::{ClientCert, EdgeVerdict};
use crate::core::keyservice::Resolver;
use crate::core::net::NetVerdict;
use crate::core::policy::{Policy, Unauthenticated};
use crate::core::revocation::Revocation;
use crate::core::{net, session};

/// The facts of one request, as the host gave them.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Envoy's `source.address`, raw (`None` when the host has none).
    pub peer: Option<&'a [u8]>,
    /// Every request header, pseudo-headers included, as bytes, repeated ones kept.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// Seconds since the Unix epoch. Only read when the policy has tokens, API keys or a login
    /// (the glue passes 0 otherwise, to save a host call).
    pub now: u64,
    /// The connection's client certificate, read only when `edge.client_certs` is configured.
    pub cert: Option<&'a ClientCert>,
}

impl<'a> Request<'a> {
    /// The first value of `name` (lower-case, as Envoy stores names).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// A developer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// What the upstream receives in the identity header.
    pub name: String,
    /// How they proved it.
    pub source: Source,
}

/// A response devgate sends itself instead of forwarding the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// devgate's headers of the reply.
    pub headers: ResponseHeaders,
    /// The reply's body.
    pub body: &'static str,
}

/// Header changes to make before the request goes upstream. Names devgate knows (its own, or
/// the policy's `'p`) are borrowed; only a client's spelling and the values are owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits<'p> {
    /// Header names to remove (every value), exactly as the host holds them.
    pub remove: Vec<Cow<'p, [u8]>>,
    /// Headers to set (replacing any value), after the removals.
    pub set: Vec<(&'p str, Vec<u8>)>,
}

/// What to do with a request (`'p`: the policy it was decided under).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Forward it, after the edits; `identity` is `None` for an anonymous request on an
    /// unprotected path.
    Allow {
        /// The developer sent upstream, if any.
        identity: Option<Identity>,
        /// The kind of API key the request was admitted with, on an API route.
        api_key: Option<KeyKind>,
        /// What to remove from and set on the request before it goes on.
        edits: Edits<'p>,
        /// Headers to add to the upstream's response (a `Set-Cookie` clearing an expired
        /// session).
        response_headers: ResponseHeaders,
    },
    /// Answer locally.
    Deny {
        /// Why.
        reason: Reason,
        /// The reply.
        response: Response,
    },
    /// A path under the login mount: devgate answers it itself ([`session::start`]).
    Login(session::Endpoint),
    /// An API key only the key service can speak for, with nothing usable cached: ask it (the
    /// [`crate::core::keyservice::Resolver`] kept the key), then decide again.
    Ask,
}

/// The one place a deny response is built: generic bodies, nothing about why.
pub(super) fn deny(reason: Reason, policy: &Policy) -> Decision<'static> {
    let no_store = ("cache-control", Cow::Borrowed("no-store"));
    let text = ("content-type", Cow::Borrowed("text/plain; charset=utf-8"));
    let response = match reason {
        Reason::BadPath => Response {
            status: 400,
            headers: vec![text, no_store],
            body: "Bad Request\n",
        },
        Reason::OverFreeQuota => Response {
            status: 402,
            headers: vec![text, no_store],
            body: "Payment Required\n",
        },
        Reason::OverQuota => Response {
            status: 429,
            headers: vec![text, no_store],
            body: "Too Many Requests\n",
        },
        // The key is not known bad: the key service is out of reach or devgate's budget of
        // callouts is spent. Never a 401, which clients read as "this key is wrong".
        Reason::KeyServiceUnavailable | Reason::KeyServiceBusy | Reason::EdgeKeysUnavailable => {
            Response {
                status: 503,
                headers: vec![text, no_store],
                body: "Service Unavailable\n",
            }
        }
        _ if reason.is_forbidden() => Response {
            status: 403,
            headers: vec![text, no_store],
            body: "Forbidden\n",
        },
        _ => match policy.unauthenticated {
            Unauthenticated::Challenge => Response {
                status: 401,
                headers: vec![
                    (
                        "www-authenticate",
                        Cow::Borrowed("x-wsgiorg.developer_user"),
                    ),
                    text,
                    no_store,
                ],
                body: "Unauthorized\n",
            },
            Unauthenticated::Forbid => Response {
                status: 403,
                headers: vec![text, no_store],
                body: "Forbidden\n",
            },
        },
    };
    Decision::Deny { reason, response }
}

/// What every check of one request reads, derived once from the facts (the peer is parsed
/// and judged here only, the path canonicalised once), whatever the number of methods the
/// request is decided under. `'p`: the policy, which the decision's edits borrow names from.
pub(super) struct Ctx<'p, 'r, 'a> {
    pub(super) policy: &'p Policy,
    pub(super) req: &'r Request<'a>,
    /// The canonical path the rules match (the raw one when it is canonical already).
    pub(super) canonical: Cow<'a, [u8]>,
    /// What `network` says of the peer.
    pub(super) verdict: NetVerdict,
    /// The peer's address where the policy lets it be used (a socket address, or a forwarded
    /// one under `network.trust_forwarded`).
    pub(super) peer_ip: Option<IpAddr>,
    /// The revocation list's state (`None`: no `revocation` configured).
    pub(super) revocation: Option<Revocation<'r>>,
    /// What is known of keys the key service resolves (`None`: no `api.service`, or a caller
    /// that has no cache).
    pub(super) keys: Option<&'r dyn Resolver>,
    /// What the edge sources say of the request (run once by the decision).
    pub(super) edge: EdgeVerdict,
}

impl<'p, 'r, 'a> Ctx<'p, 'r, 'a> {
    pub(super) fn new(
        policy: &'p Policy,
        req: &'r Request<'a>,
        canonical: Cow<'a, [u8]>,
        revocation: Option<Revocation<'r>>,
        keys: Option<&'r dyn Resolver>,
    ) -> Self {
        let peer = net::parse_peer(req.peer.unwrap_or_default());
        Ctx {
            policy,
            req,
            canonical,
            verdict: policy.net.verdict(peer),
            peer_ip: policy.net.peer_ip(peer).ok(),
            revocation,
            keys,
            edge: EdgeVerdict::default(),
        }
    }
}

//! The decision's vocabulary: the request facts, sources, identities, reasons (their codes),
//! edits, and the one deny path that builds every refusal.

use std::borrow::Cow;

use crate::core::plan::ResponseHeaders;

use super::*;

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

/// How the developer proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Their socket address is in `network.allow` and not in `network.deny`.
    Network,
    /// A developer token in `Authorization: Bearer`.
    Bearer,
    /// A developer token in the configured cookie.
    Cookie,
    /// The login form's session cookie.
    Session,
}

impl Source {
    /// Every source (counters and audit values are generated from this list).
    pub const ALL: [Source; 4] = [
        Source::Network,
        Source::Bearer,
        Source::Cookie,
        Source::Session,
    ];

    /// Stable snake_case name for logs and stats.
    pub fn code(self) -> &'static str {
        match self {
            Source::Network => "network",
            Source::Bearer => "bearer",
            Source::Cookie => "cookie",
            Source::Session => "session",
        }
    }
}

/// A developer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// What the upstream receives in the identity header.
    pub name: String,
    pub source: Source,
}

/// Why a request was refused. Codes are stable: logs, stats and tests use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Protected path and no credential at all (or a peer that is not a developer).
    NoCredential,
    /// The path cannot be read one way only (bad escape, double encoding, not origin-form).
    BadPath,
    /// More than one credential (Bearer and cookie, two Authorization headers, a cookie sent
    /// twice with different values): devgate never picks one.
    AmbiguousCredential,
    /// The token failed verification; the code says why (`expired`, `bad_signature`, ...).
    Token(TokenError),
    /// A peer in `network.deny` on a protected path (whatever credential it sent), or a valid
    /// token or session from a peer outside `tokens.allow_from` / `login.allow_from`.
    NetworkDenied,
    /// A valid token without the peer binding `tokens.bind_peer` requires.
    UnboundToken,
    /// An API key whose id is in `api.revoked`.
    Revoked,
    /// A public key outside `key`, or a private key in `key` (where browsers would leak it).
    KeyMisplaced,
    /// An API key that does not list the route's product.
    WrongProduct,
    /// A public key used from a page its referer list does not allow.
    RefererDenied,
    /// A write needs a private key with write permission.
    WriteNeeded,
    /// A `write_only` route, or a write, with a public key.
    PrivateKeyRequired,
    /// PUT, PATCH or DELETE (or an unknown method) on a `read_only` route.
    MethodNotAllowed,
    /// A token or API key that needs the revocation list while the list is stale, with
    /// `revocation.when_stale: refuse`.
    RevocationStale,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::NoCredential => "no_credential",
            Reason::BadPath => "bad_path",
            Reason::AmbiguousCredential => "ambiguous_credential",
            Reason::Token(e) => e.code(),
            Reason::NetworkDenied => "network_denied",
            Reason::UnboundToken => "unbound_token",
            Reason::Revoked => "revoked",
            Reason::KeyMisplaced => "key_misplaced",
            Reason::WrongProduct => "wrong_product",
            Reason::RefererDenied => "referer_denied",
            Reason::WriteNeeded => "write_needed",
            Reason::PrivateKeyRequired => "private_key_required",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::RevocationStale => "revocation_stale",
        }
    }

    /// How many reasons [`Reason::all`] lists.
    pub const COUNT: usize = 13 + TokenError::ALL.len();

    /// This reason's place in `0..COUNT`: a dense index for hosts that keep one counter each.
    pub fn slot(self) -> usize {
        match self {
            Reason::NoCredential => 0,
            Reason::BadPath => 1,
            Reason::AmbiguousCredential => 2,
            Reason::NetworkDenied => 3,
            Reason::UnboundToken => 4,
            Reason::Revoked => 5,
            Reason::KeyMisplaced => 6,
            Reason::WrongProduct => 7,
            Reason::RefererDenied => 8,
            Reason::WriteNeeded => 9,
            Reason::PrivateKeyRequired => 10,
            Reason::MethodNotAllowed => 11,
            Reason::RevocationStale => 12,
            Reason::Token(e) => 13 + e as usize,
        }
    }

    /// Every reason devgate can give, for defining one counter each at configure time.
    pub fn all() -> impl Iterator<Item = Reason> {
        [
            Reason::NoCredential,
            Reason::BadPath,
            Reason::AmbiguousCredential,
            Reason::NetworkDenied,
            Reason::UnboundToken,
            Reason::Revoked,
            Reason::KeyMisplaced,
            Reason::WrongProduct,
            Reason::RefererDenied,
            Reason::WriteNeeded,
            Reason::PrivateKeyRequired,
            Reason::MethodNotAllowed,
            Reason::RevocationStale,
        ]
        .into_iter()
        .chain(TokenError::ALL.into_iter().map(Reason::Token))
    }

    /// Whether the reason is "who are you?" (401) or "not you, not from there" (403).
    fn is_forbidden(self) -> bool {
        matches!(
            self,
            Reason::NetworkDenied
                | Reason::UnboundToken
                | Reason::Token(TokenError::WrongPeer)
                | Reason::WrongProduct
                | Reason::RefererDenied
                | Reason::WriteNeeded
                | Reason::PrivateKeyRequired
                | Reason::MethodNotAllowed
        )
    }
}

/// A response devgate sends itself instead of forwarding the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: ResponseHeaders,
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
        identity: Option<Identity>,
        /// The kind of API key the request was admitted with, on an API route.
        api_key: Option<KeyKind>,
        edits: Edits<'p>,
        /// Headers to add to the upstream's response (a `Set-Cookie` clearing an expired
        /// session).
        response_headers: ResponseHeaders,
    },
    /// Answer locally.
    Deny { reason: Reason, response: Response },
    /// A path under the login mount: devgate answers it itself ([`session::start`]).
    Login(session::Endpoint),
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

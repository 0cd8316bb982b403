//! The codes the core's modules share: why a request was refused ([`Reason`]), how a developer
//! proved who they are ([`Source`]), what a login request came to ([`Outcome`]), what an
//! upstream challenge became ([`Challenge`]), and the shape of devgate's own response headers
//! ([`ResponseHeaders`]). They sit below every module that decides, counts or plans, and import
//! none of them, so the core's imports form no circle.

use std::borrow::Cow;

use crate::core::token::TokenError;

/// Headers of a response devgate sends or adds to: names are devgate's, values are its own
/// constants (borrowed) or made for the request (a cookie, a location, a retry delay).
pub type ResponseHeaders = Vec<(&'static str, Cow<'static, str>)>;

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
    /// A signed assertion from the team's edge (an identity-aware proxy or an IdP's ID token),
    /// verified against its issuer's public keys ([`crate::core::edge`]).
    Assertion,
    /// A plain header naming the user, sent by a trusted proxy's socket address.
    ProxyHeader,
    /// The connection's client certificate, validated by Envoy's TLS listener.
    ClientCert,
}

impl Source {
    /// Every source (counters and audit values are generated from this list).
    pub const ALL: [Source; 7] = [
        Source::Network,
        Source::Bearer,
        Source::Cookie,
        Source::Session,
        Source::Assertion,
        Source::ProxyHeader,
        Source::ClientCert,
    ];

    /// Stable snake_case name for logs and stats.
    pub fn code(self) -> &'static str {
        match self {
            Source::Network => "network",
            Source::Bearer => "bearer",
            Source::Cookie => "cookie",
            Source::Session => "session",
            Source::Assertion => "assertion",
            Source::ProxyHeader => "proxy_header",
            Source::ClientCert => "client_cert",
        }
    }
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
    /// The key service rejected the key (its 401), now or in a rejection still cached.
    KeyRejected,
    /// The key service forbade the key (its 403), now or in a rejection still cached.
    KeyForbidden,
    /// The key service says the key is over its quota (its 429; `Retry-After` passed on).
    OverQuota,
    /// The key service says the key is over its free quota (its 402; `Retry-After` passed on).
    OverFreeQuota,
    /// The key service could not be asked or did not answer usably, and no entry may be served
    /// in its place (none cached, or past `max_stale_seconds`): 503, never a verdict on the key.
    KeyServiceUnavailable,
    /// The process-wide budget of key-service callouts (per second, in flight, waiters) is
    /// spent: 503 with `Retry-After`, nothing asked and nothing cached.
    KeyServiceBusy,
    /// A user token whose user is not a member of the organization in the path.
    NotAMember,
    /// A user token whose user does not own the organization in the path.
    NotAnOwner,
    /// A user token whose user is not staff or superuser as the route requires.
    NotStaff,
    /// A user token sent from a browser page (`Origin`) the route does not allow.
    OriginDenied,
    /// An edge assertion whose `iss` is not its source's issuer.
    WrongIssuer,
    /// An edge assertion whose `aud` names none of its source's audiences.
    WrongAudience,
    /// An AWS ALB assertion whose signed header's `signer` is not the configured load
    /// balancer's ARN.
    WrongSigner,
    /// An edge assertion without the claim that names the developer, or with a claim of the
    /// wrong type (the developer claim not a string, the groups claim not a list of strings).
    BadClaim,
    /// A verified identity (assertion, proxy header, client certificate) that the source's
    /// `developers` does not list: 403.
    NotADeveloper,
    /// An edge assertion whose issuer's keys devgate could not fetch, or fetched too long ago
    /// (past `max_stale_seconds`): 503, never accepted unchecked and never a verdict on it.
    EdgeKeysUnavailable,
}

impl Reason {
    /// The stable snake_case code (counters, audit values, response details, logs).
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
            Reason::KeyRejected => "key_rejected",
            Reason::KeyForbidden => "key_forbidden",
            Reason::OverQuota => "over_quota",
            Reason::OverFreeQuota => "over_free_quota",
            Reason::KeyServiceUnavailable => "key_service_unavailable",
            Reason::KeyServiceBusy => "key_service_busy",
            Reason::NotAMember => "not_a_member",
            Reason::NotAnOwner => "not_an_owner",
            Reason::NotStaff => "not_staff",
            Reason::OriginDenied => "origin_denied",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongSigner => "wrong_signer",
            Reason::BadClaim => "bad_claim",
            Reason::NotADeveloper => "not_a_developer",
            Reason::EdgeKeysUnavailable => "edge_keys_unavailable",
        }
    }

    /// How many reasons [`Reason::all`] lists.
    pub const COUNT: usize = 29 + TokenError::ALL.len();

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
            Reason::KeyRejected => 13,
            Reason::KeyForbidden => 14,
            Reason::OverQuota => 15,
            Reason::OverFreeQuota => 16,
            Reason::KeyServiceUnavailable => 17,
            Reason::KeyServiceBusy => 18,
            Reason::NotAMember => 19,
            Reason::NotAnOwner => 20,
            Reason::NotStaff => 21,
            Reason::OriginDenied => 22,
            Reason::WrongIssuer => 23,
            Reason::WrongAudience => 24,
            Reason::WrongSigner => 25,
            Reason::BadClaim => 26,
            Reason::NotADeveloper => 27,
            Reason::EdgeKeysUnavailable => 28,
            Reason::Token(e) => 29 + e as usize,
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
            Reason::KeyRejected,
            Reason::KeyForbidden,
            Reason::OverQuota,
            Reason::OverFreeQuota,
            Reason::KeyServiceUnavailable,
            Reason::KeyServiceBusy,
            Reason::NotAMember,
            Reason::NotAnOwner,
            Reason::NotStaff,
            Reason::OriginDenied,
            Reason::WrongIssuer,
            Reason::WrongAudience,
            Reason::WrongSigner,
            Reason::BadClaim,
            Reason::NotADeveloper,
            Reason::EdgeKeysUnavailable,
        ]
        .into_iter()
        .chain(TokenError::ALL.into_iter().map(Reason::Token))
    }

    /// Whether the reason is "who are you?" (401) or "not you, not from there" (403).
    pub(crate) fn is_forbidden(self) -> bool {
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
                | Reason::KeyForbidden
                | Reason::NotAMember
                | Reason::NotAnOwner
                | Reason::NotStaff
                | Reason::OriginDenied
                | Reason::NotADeveloper
        )
    }
}

/// What happened, for stats and logs (`devgate.login.<code>`). Stable snake_case codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The form was served.
    Page,
    /// Right user name and password: a session cookie was set.
    Succeeded,
    /// Wrong user name or password, or a malformed form.
    Failed,
    /// Too many failures from this peer: 429.
    RateLimited,
    /// The Envoy process's budget of password verifies is spent (`login.verifies_per_minute`,
    /// `login.verify_burst`): 429 without running bcrypt.
    OverBudget,
    /// The peer is outside `login.allow_from`, inside `network.deny`, or has no usable socket
    /// address: 403.
    NetworkDenied,
    /// `Origin` (or `Referer`) names another site, or neither was sent: 403.
    Csrf,
    /// Not a form (`Content-Type`): 415.
    BadContentType,
    /// A body over the cap: 413.
    TooLarge,
    /// The session cookie was cleared.
    Logout,
    /// Another path under the mount: 404.
    NotFound,
    /// A method the endpoint does not take: 405.
    MethodNotAllowed,
    /// The session cookie could not be built (a configuration the checks let through): 500.
    Internal,
}

impl Outcome {
    /// The stable snake_case code (`devgate.login.<code>`, `login:<code>`).
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Page => "page",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RateLimited => "rate_limited",
            Outcome::OverBudget => "over_budget",
            Outcome::NetworkDenied => "network_denied",
            Outcome::Csrf => "csrf",
            Outcome::BadContentType => "bad_content_type",
            Outcome::TooLarge => "too_large",
            Outcome::Logout => "logout",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::Internal => "internal_error",
        }
    }

    /// Every outcome, for defining one counter each at configure time.
    pub const ALL: [Outcome; 13] = [
        Outcome::Page,
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::RateLimited,
        Outcome::OverBudget,
        Outcome::NetworkDenied,
        Outcome::Csrf,
        Outcome::BadContentType,
        Outcome::TooLarge,
        Outcome::Logout,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::Internal,
    ];
}

/// What became of an upstream 401 with devgate's challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Challenge {
    /// Answered with a 403: the developer is known but not allowed.
    Forbid,
    /// Answered with the login form: nobody logged in yet.
    Login,
}

impl Challenge {
    /// Every challenge outcome (counters are generated from this list).
    pub const ALL: [Challenge; 2] = [Challenge::Forbid, Challenge::Login];

    /// The stable snake_case code (`devgate.upstream_challenge.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            Challenge::Forbid => "forbid",
            Challenge::Login => "login",
        }
    }
}

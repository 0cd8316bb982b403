//! The validated policy the core decides with, and its routing: which rule governs a path.
//!
//! `crate::config` builds it from JSON (with errors that name the field); nothing here parses
//! or knows JSON beyond the `serde` names of the few enums a configuration spells out.

use serde::Deserialize;

use crate::core::budget::Budget;
use crate::core::edge::EdgePolicy;
use crate::core::headers::HeaderName;
use crate::core::htpasswd::Users;
use crate::core::keyservice::KeyService;
use crate::core::net::{CidrList, NetPolicy};
use crate::core::path::Prefix;
use crate::core::token::KeySet;
use crate::core::usertoken::{UserRoute, UserTokens};

/// What a protected path answers to a request without a usable credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(serde::Serialize, schemars::JsonSchema)
)]
#[serde(rename_all = "snake_case")]
pub enum Unauthenticated {
    /// 401 with `WWW-Authenticate: x-wsgiorg.developer_user` (the spec's open issue, answered).
    #[default]
    Challenge,
    /// Always 403, the spec's "distinctly unhelpful" mode: nothing hints that a login exists.
    Forbid,
}

/// What devgate does when the upstream application answers 401 with
/// `WWW-Authenticate: x-wsgiorg.developer_user` (the spec's open issue: "this page needs a
/// developer").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(serde::Serialize, schemars::JsonSchema)
)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamChallenge {
    /// 403, the spec's default: the request already went through devgate, so there is nothing
    /// the client can add.
    #[default]
    Forbid,
    /// `303` to the login page with `back` = the request path, for a request that carried no
    /// developer; 403 for one that did (logging in again would loop). Needs `login`.
    Login,
    /// Hand the upstream's 401 to the client unchanged.
    Pass,
}

/// Whether a rule protects a path, exempts it, or makes it an API route (index into
/// [`ApiPolicy::routes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// A protected path: a developer (or an API key on an API route) is required.
    Protect,
    /// An API route: index into [`ApiPolicy::routes`].
    Api(usize),
    /// A public path: anyone may pass.
    Public,
}

impl RuleKind {
    /// Tie-break order at equal specificity: the more closed kind first.
    pub fn rank(self) -> u8 {
        match self {
            RuleKind::Protect => 0,
            RuleKind::Api(_) => 1,
            RuleKind::Public => 2,
        }
    }
}

/// What an API route lets keys do (the reference platform's endpoint modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(serde::Serialize, schemars::JsonSchema)
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Reads with any key; POST, PUT, PATCH and DELETE need a private key with write.
    #[default]
    ReadWrite,
    /// GET, HEAD, OPTIONS and POST (queries) with any key, no write needed; PUT, PATCH and
    /// DELETE are refused.
    ReadOnly,
    /// Every method needs a private key with write permission.
    WriteOnly,
}

/// An API route: the product it belongs to and its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRoute {
    /// The product the route belongs to (a key must list it).
    pub product: String,
    /// Which methods and keys the route takes.
    pub mode: Mode,
    /// User tokens: `Some` reads `Authorization: Bearer` as a user token on this route (never
    /// as a developer token), with the route's requirement, origins and path parameters.
    pub user_tokens: Option<UserRoute>,
}

/// Header names devgate sets for the application on API routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiHeaders {
    /// Carries the key's organization.
    pub organization: HeaderName,
    /// Carries the key's project.
    pub project: HeaderName,
    /// Carries the key's kind (`public_key`, `private_key`).
    pub kind: HeaderName,
    /// Carries the key's id.
    pub key_id: HeaderName,
    /// `true`, or `false` for internal traffic (`internal_from`) that should not be counted.
    pub count: HeaderName,
    /// `true` when the key service was unavailable and devgate served its expired answer
    /// (degraded mode); absent otherwise.
    pub stale: HeaderName,
    /// The request's source ([`crate::core::source`]); absent when it has none.
    pub source: HeaderName,
    /// The user's id, for requests admitted by a user token.
    pub user: HeaderName,
}

impl ApiHeaders {
    /// Every header above: the one list of what devgate sets on API routes, so every client
    /// copy of each is stripped (headers, trailers) and no two may share a name.
    pub fn all(&self) -> [&HeaderName; 8] {
        [
            &self.organization,
            &self.project,
            &self.kind,
            &self.key_id,
            &self.count,
            &self.stale,
            &self.source,
            &self.user,
        ]
    }
}

/// API keys.
#[derive(Clone, Debug)]
pub struct ApiPolicy {
    /// The keys devgate's own API keys (`dgpk_`, `dgsk_`) are signed with; `None`: only keys
    /// the key service resolves are accepted.
    pub keys: Option<KeySet>,
    /// The authentication service that resolves every other key, if any.
    pub service: Option<KeyService>,
    /// The API routes, in the order [`RuleKind::Api`] indexes them.
    pub routes: Vec<ApiRoute>,
    /// Key ids answered with 401 `revoked`.
    pub revoked: Vec<String>,
    /// The header names devgate sets for the application.
    pub headers: ApiHeaders,
    /// Remove the key from the query string and `X-Api-Key` before the upstream. Defaults to true.
    pub strip_key: bool,
    /// Peers whose API traffic is marked `count: false`. Defaults to none.
    pub internal_from: CidrList,
    /// Clock skew tolerated on `exp`/`iat`. Defaults to 30.
    pub leeway: u64,
    /// `x-api-key`, the header private keys travel in (every spelling is read and removed).
    pub key_header: HeaderName,
    /// How user tokens are verified; `None`: no route takes them.
    pub user_tokens: Option<UserTokens>,
}

/// One path rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What the rule makes of the path.
    pub kind: RuleKind,
    /// The path prefix it matches.
    pub prefix: Prefix,
    /// `None`: every method.
    pub methods: Option<Vec<String>>,
}

impl Rule {
    fn applies(&self, method: &[u8], canonical: &[u8]) -> bool {
        // Protect rules fold case: an upstream on a case-insensitive file system or router
        // serves /_DEBUG/ as /_debug/. Public rules do not: exemptions stay as narrow as written.
        let fold = self.kind != RuleKind::Public;
        // Frameworks answer HEAD with the GET handler, so a rule naming GET covers HEAD too.
        let method = if method == b"HEAD" {
            &b"GET"[..]
        } else {
            method
        };
        self.prefix.matches(canonical, fold)
            && self.methods.as_ref().is_none_or(|ms| {
                ms.iter()
                    .any(|m| m.as_bytes() == method || (m == "HEAD" && method == b"GET"))
            })
    }
}

/// How signed developer tokens are accepted. Present only when `tokens` is configured.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    /// Verification keys; the first one signs (CLI, login).
    pub keys: KeySet,
    /// Accept `Authorization: Bearer <token>`. Defaults to true.
    pub bearer: bool,
    /// Accept the token in this cookie. Defaults to `devgate_token`; `null` turns it off.
    pub cookie: Option<String>,
    /// Socket peers a token is honoured from. `None` (the default): any peer, including one
    /// Envoy took from `X-Forwarded-For`; when set, the peer must be a socket address
    /// (or `network.trust_forwarded` must be on) inside one of these networks.
    pub allow_from: Option<CidrList>,
    /// Require tokens bound to the peer IP (`cip` claim). Defaults to false (a `cip` claim,
    /// when present, is always enforced).
    pub bind_peer: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. Defaults to 30.
    pub leeway: u64,
    /// Remove devgate's credential (its cookie, or a Bearer header carrying one of its key
    /// ids) before the request goes upstream. Defaults to true.
    pub strip_credential: bool,
}

/// The hidden login form and its session cookie. Present only when `login` is configured.
#[derive(Clone, Debug)]
pub struct LoginPolicy {
    /// Where the form lives: `<mount>/login`, `<mount>/logout`. Devgate answers every path
    /// under it itself (404 for the others). Defaults to `/.devgate`; no trailing `/`.
    pub mount: String,
    /// The developers and their bcrypt hashes (htpasswd).
    pub users: Users,
    /// Signs and verifies session cookies: the top-level `keys`, first one signs.
    pub keys: KeySet,
    /// The session cookie's name. Defaults to `devgate_session`.
    pub cookie: String,
    /// Session lifetime (the token's `exp` and the cookie's `Max-Age`). Defaults to 8 hours.
    pub session_seconds: u64,
    /// Peers the form works for (DevAuth's login networks); elsewhere it answers 403. `None`
    /// (the default): any socket peer. An address Envoy took from `X-Forwarded-For` can never
    /// log in unless `network.trust_forwarded` is on.
    pub allow_from: Option<CidrList>,
    /// Always mark the cookie `Secure`, not only when the request came over TLS. Defaults to
    /// false.
    pub secure_cookie: bool,
    /// Failed logins per peer (per /64 for IPv6) before the form answers 429. Defaults to 5.
    pub max_failures: u32,
    /// The window those failures are counted in, in seconds. Defaults to 300.
    pub failure_window: u64,
    /// Password verifies the form may run, across all workers of the Envoy process (beyond it:
    /// 429 without bcrypt). Defaults to 120 a minute, 3 at once.
    pub verify_budget: Budget,
    /// Bind each session to the address it logged in from (`cip`). Defaults to false.
    pub bind_peer: bool,
    /// Clock skew tolerated on the session token. Defaults to 30.
    pub leeway: u64,
}

/// What devgate does with credentials that need the revocation list while it is stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(serde::Serialize, schemars::JsonSchema)
)]
#[serde(rename_all = "snake_case")]
pub enum WhenStale {
    /// Refuse developer tokens and API keys (`revocation_stale`): fail closed.
    #[default]
    Refuse,
    /// Keep checking them against the last good list.
    Serve,
}

/// The revocation list service. Present only when `revocation` is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationPolicy {
    /// The Envoy cluster devgate calls (it must exist in Envoy's config).
    pub cluster: String,
    /// `:authority` of the call. Defaults to the cluster name.
    pub authority: String,
    /// `:path` of the call. Defaults to `/revoked.json`.
    pub path: String,
    /// Seconds between fetches (one per Envoy process, not per worker). Defaults to 30.
    pub refresh_seconds: u64,
    /// Timeout of one fetch. Defaults to 2000 ms.
    pub timeout_ms: u64,
    /// How long the last good list stays in force without a successful fetch. Defaults to 300.
    pub max_stale_seconds: u64,
    /// Past that, refuse (the default) or serve.
    pub when_stale: WhenStale,
    /// Where this source's list and fetch lease live in shared data
    /// ([`source_keys`](crate::core::revocation::source_keys) of the cluster, authority and path):
    /// configurations that fetch from different sources never read each other's list.
    pub keys: SourceKeys,
}

/// The shared-data keys of one revocation source: its last good list and its fetch lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceKeys {
    /// The last good list (`devgate.revocation.list.<source>`).
    pub list: String,
    /// The time of the last fetch attempt (`devgate.revocation.lease.<source>`).
    pub lease: String,
}

/// The validated, immutable policy the core decides with.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The identity header injected for the upstream. Defaults to `x-wsgiorg-developer-user`.
    pub header: HeaderName,
    /// Who is a developer by socket address.
    pub net: NetPolicy,
    /// Protect and public rules, most specific first (protect before public on a tie).
    pub rules: Vec<Rule>,
    /// What a protected path answers a request without a credential.
    pub unauthenticated: Unauthenticated,
    /// Signed developer tokens; `None` (the default) accepts none.
    pub tokens: Option<TokenPolicy>,
    /// API keys; `None` (the default) accepts none and has no API routes.
    pub api: Option<ApiPolicy>,
    /// The login form and session cookie; `None` (the default): no form, no session cookie.
    pub login: Option<LoginPolicy>,
    /// What an upstream 401 with devgate's challenge becomes. Defaults to `forbid`.
    pub upstream_challenge: UpstreamChallenge,
    /// The revocation list service; `None` (the default): only `api.revoked`.
    pub revocation: Option<RevocationPolicy>,
    /// Developers as the team's edge knows them (assertions, proxy headers, client
    /// certificates); `None` (the default): none.
    pub edge: Option<EdgePolicy>,
}

impl Policy {
    /// The rule that governs `method` on `canonical` path: the most specific one that applies.
    pub fn route(&self, method: &[u8], canonical: &[u8]) -> Option<RuleKind> {
        self.rules
            .iter()
            .find(|r| r.applies(method, canonical))
            .map(|r| r.kind)
    }

    /// True when a `protect` rule or an API route lists `method` (exactly as written there).
    pub fn names_method(&self, method: &[u8]) -> bool {
        self.rules.iter().any(|r| {
            r.methods
                .as_ref()
                .is_some_and(|ms| ms.iter().any(|m| m.as_bytes() == method))
        })
    }

    /// True when `method` on `canonical` path needs a developer.
    pub fn is_protected(&self, method: &[u8], canonical: &[u8]) -> bool {
        self.route(method, canonical) == Some(RuleKind::Protect)
    }
}

//! The decision: request facts and a policy in, a [`Decision`] out.
//!
//! Nothing here calls the host, reads a clock or logs a credential. The glue gathers the facts
//! (one header-map read, one property read), calls [`decide`], and applies the result.

pub mod apikey;
pub mod budget;
pub mod cookie;
pub mod counters;
pub mod facts;
pub mod headers;
pub mod htpasswd;
pub mod login;
pub mod method;
pub mod net;
pub mod path;
pub mod plan;
pub mod policy;
pub mod query;
pub mod revocation;
pub mod session;
pub mod shared;
pub mod stream;
pub mod token;

use std::net::IpAddr;

use apikey::{ApiKey, KeyKind};
use cookie::CookieLookup;
use net::NetVerdict;
use policy::{
    ApiPolicy, ApiRoute, LoginPolicy, Mode, Policy, RuleKind, TokenPolicy, Unauthenticated,
};
use revocation::Revocation;
use token::{Expect, TokenError};

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
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static str,
}

/// Header changes to make before the request goes upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// Header names to remove (every value), exactly as the host holds them.
    pub remove: Vec<Vec<u8>>,
    /// Headers to set (replacing any value), after the removals.
    pub set: Vec<(String, Vec<u8>)>,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward it, after the edits; `identity` is `None` for an anonymous request on an
    /// unprotected path.
    Allow {
        identity: Option<Identity>,
        /// The kind of API key the request was admitted with, on an API route.
        api_key: Option<KeyKind>,
        edits: Edits,
        /// Headers to add to the upstream's response (a `Set-Cookie` clearing an expired
        /// session).
        response_headers: Vec<(&'static str, String)>,
    },
    /// Answer locally.
    Deny { reason: Reason, response: Response },
    /// A path under the login mount: devgate answers it itself ([`session::start`]).
    Login(session::Endpoint),
}

/// The one place a deny response is built: generic bodies, nothing about why.
fn deny(reason: Reason, policy: &Policy) -> Decision {
    let no_store = ("cache-control", "no-store".to_string());
    let text = ("content-type", "text/plain; charset=utf-8".to_string());
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
                    ("www-authenticate", "x-wsgiorg.developer_user".to_string()),
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

/// A credential the request carries.
#[derive(Clone, Copy, Debug)]
struct Credential<'a> {
    source: Source,
    token: &'a [u8],
}

/// Finds devgate's credential: `Ok(None)` when there is none, an error when there are several.
fn find_credential<'a>(
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
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(value.get(7..)?.trim_ascii())
}

/// Errors raised before devgate knew the token was meant for one of its keys. A Bearer token
/// that fails this early may belong to the application, so it is not stripped.
fn names_our_key(result: &Result<token::Claims, TokenError>) -> bool {
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
fn admit(
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
fn check_token(
    tokens: &TokenPolicy,
    policy: &Policy,
    cred: Credential<'_>,
    peer: Result<net::Peer, net::PeerError>,
    now: u64,
    revocation: Option<Revocation<'_>>,
) -> (Result<Identity, Reason>, bool) {
    let peer_ip: Option<IpAddr> = policy.net.peer_ip(peer).ok();
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

/// Removes `Authorization` (devgate's Bearer token travels there).
fn strip_bearer(edits: &mut Edits) {
    edits.remove.push(b"authorization".to_vec());
}

/// devgate's own cookies, as the upstream must never see them: the token cookie (unless
/// `tokens.strip_credential` is off) and the session cookie.
fn own_cookies(policy: &Policy) -> [&str; 2] {
    let token = policy
        .tokens
        .as_ref()
        .filter(|t| t.strip_credential)
        .and_then(|t| t.cookie.as_deref());
    let session = policy.login.as_ref().map(|l| l.cookie.as_str());
    [token.unwrap_or_default(), session.unwrap_or_default()]
}

/// Rewrites the `Cookie` headers without devgate's own cookies in any spelling an upstream may
/// read as them ([`cookie::scrub`]: also after a comma, any case, percent-encoded, ...), keeping
/// every other cookie. Runs on every allowed request, whether or not devgate found a credential;
/// a header without such a spelling costs a scan and no allocation.
fn strip_cookies(policy: &Policy, req: &Request<'_>, edits: &mut Edits) {
    let names = own_cookies(policy);
    if names.iter().all(|n| n.is_empty()) {
        return;
    }
    let cookies = || {
        req.headers
            .iter()
            .filter(|(n, _)| *n == b"cookie")
            .map(|(_, v)| *v)
    };
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut rewritten = false;
    for (i, v) in cookies().enumerate() {
        match (cookie::scrub(v, &names), rewritten) {
            (Some(s), false) => {
                // The headers before the first one with a devgate cookie stay as they were.
                rewritten = true;
                kept.extend(cookies().take(i).map(<[u8]>::to_vec));
                kept.push(s);
            }
            (Some(s), true) => kept.push(s),
            (None, true) => kept.push(v.to_vec()),
            (None, false) => {}
        }
    }
    if !rewritten {
        return;
    }
    kept.retain(|v| !v.is_empty());
    edits.remove.push(b"cookie".to_vec());
    if !kept.is_empty() {
        edits
            .set
            .push(("cookie".to_string(), kept.join(&b"; "[..])));
    }
}

/// Header edits that keep devgate's Bearer credential from reaching the upstream (its cookie
/// goes in [`strip_cookies`], with every other spelling of it).
fn strip_credential(tokens: &TokenPolicy, cred: Credential<'_>, ours: bool, edits: &mut Edits) {
    if tokens.strip_credential && cred.source == Source::Bearer && ours {
        strip_bearer(edits);
    }
}

/// On an ambiguous request: removes every place a devgate Bearer credential can be (its
/// cookies go in [`strip_cookies`]).
fn strip_all_credentials(tokens: &TokenPolicy, req: &Request<'_>, edits: &mut Edits) {
    if tokens.strip_credential
        && tokens.bearer
        && req.headers.iter().any(|(n, _)| *n == b"authorization")
    {
        strip_bearer(edits);
    }
}

/// The login session cookie, checked: `None` when there is none, or when it has expired (an
/// expired session is no session: the request goes on as anonymous and the cookie is cleared).
struct SessionCookie {
    verdict: Result<Identity, Reason>,
}

/// Looks for the session cookie and checks it. `Err` when it cannot be read one way only.
/// `expired` is set when an expired session was dropped.
fn session_cookie(
    login: &LoginPolicy,
    policy: &Policy,
    req: &Request<'_>,
    peer: Result<net::Peer, net::PeerError>,
    expired: &mut bool,
) -> Result<Option<SessionCookie>, Reason> {
    let values = req
        .headers
        .iter()
        .filter(|(n, _)| *n == b"cookie")
        .map(|(_, v)| *v);
    // devgate's session cookie never reaches the upstream, valid or not: [`strip_cookies`].
    let token = match cookie::find_cookie(values, &login.cookie) {
        CookieLookup::NotFound => return Ok(None),
        CookieLookup::Found(token) => token,
        CookieLookup::Ambiguous => return Err(Reason::AmbiguousCredential),
        CookieLookup::TooLarge => return Err(Reason::Token(TokenError::TooLong)),
    };
    let peer_ip: Option<IpAddr> = policy.net.peer_ip(peer).ok();
    let mut expect = Expect::session(&login.cookie, login.leeway);
    if let Some(ip) = peer_ip {
        expect = expect.with_peer(ip);
    }
    let verdict = match token::verify(token, &login.keys, &expect, req.now) {
        Err(TokenError::Expired) => {
            *expired = true;
            return Ok(None);
        }
        Err(e) => Err(Reason::Token(e)),
        Ok(claims) => admit(
            claims,
            login.bind_peer,
            login.allow_from.as_ref(),
            peer_ip,
            Source::Session,
        ),
    };
    Ok(Some(SessionCookie { verdict }))
}

/// Where an API key was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyPlace {
    QueryKey,
    QueryPrivateKey,
    Header,
}

/// Reads are GET, HEAD and OPTIONS; every other method (unknown ones too) is a write.
fn is_read(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS")
}

fn need_write(key: &ApiKey) -> Result<(), Reason> {
    match (key.kind, key.write) {
        (KeyKind::Public, _) => Err(Reason::PrivateKeyRequired),
        (KeyKind::Private, false) => Err(Reason::WriteNeeded),
        (KeyKind::Private, true) => Ok(()),
    }
}

/// The endpoint-mode table (README, "API keys").
pub fn mode_allows(mode: Mode, method: &[u8], key: &ApiKey) -> Result<(), Reason> {
    match mode {
        Mode::ReadWrite if is_read(method) => Ok(()),
        Mode::ReadWrite => need_write(key),
        Mode::ReadOnly if is_read(method) || method == b"POST" => Ok(()),
        Mode::ReadOnly => Err(Reason::MethodNotAllowed),
        Mode::WriteOnly => need_write(key),
    }
}

/// Checks the API key of a request on an API route; the edits that pass the project
/// reference on and take the key out.
#[allow(clippy::too_many_arguments)]
fn api_key(
    api: &ApiPolicy,
    route: &ApiRoute,
    policy: &Policy,
    req: &Request<'_>,
    method: &[u8],
    peer: Result<net::Peer, net::PeerError>,
    edits: &mut Edits,
    revocation: Option<Revocation<'_>>,
) -> Result<KeyKind, Reason> {
    let raw_path = req.header(b":path").unwrap_or_default();
    let (_, query) = query::split(raw_path);
    let mut found: Vec<(KeyPlace, Vec<u8>)> = query
        .map(|q| query::find(q, &["key", "private_key"]))
        .unwrap_or_default()
        .into_iter()
        .map(|(name, v)| {
            let place = if name == "key" {
                KeyPlace::QueryKey
            } else {
                KeyPlace::QueryPrivateKey
            };
            (place, v)
        })
        .collect();
    // Every spelling (case, `_` for `-`) is the same header to some upstream, so every spelling
    // is read as a credential and removed.
    let spellings = headers::spellings_present(req.headers, &[&api.key_header]);
    for (_, v) in req
        .headers
        .iter()
        .filter(|(n, _)| api.key_header.is_spelling(n))
    {
        // Envoy joins repeated headers with ','; a key never contains one.
        for part in v
            .split(|&b| b == b',')
            .filter(|p| !p.trim_ascii().is_empty())
        {
            found.push((KeyPlace::Header, part.trim_ascii().to_vec()));
        }
    }
    if api.strip_key {
        if let Some(stripped) = query::remove(raw_path, &["key", "private_key"]) {
            edits.set.push((":path".to_string(), stripped));
        }
        edits.remove.extend(spellings.iter().map(|n| n.to_vec()));
    }
    let (place, text) = match found.as_slice() {
        [] => return Err(Reason::NoCredential),
        [one] => one,
        _ => return Err(Reason::AmbiguousCredential),
    };
    let key = apikey::verify(text, &api.keys, req.now, api.leeway).map_err(Reason::Token)?;
    let placed_right = match key.kind {
        KeyKind::Public => *place == KeyPlace::QueryKey,
        KeyKind::Private => *place != KeyPlace::QueryKey,
    };
    if !placed_right {
        return Err(Reason::KeyMisplaced);
    }
    if api.revoked.contains(&key.id) {
        return Err(Reason::Revoked);
    }
    if let Some(r) = revocation {
        if r.refuse {
            return Err(Reason::RevocationStale);
        }
        if r.key_revoked(&key.id) {
            return Err(Reason::Revoked);
        }
    }
    if !key.products.contains(&route.product) {
        return Err(Reason::WrongProduct);
    }
    let peer_ip = policy.net.peer_ip(peer).ok();
    match key.kind {
        KeyKind::Public if !key.referers.is_empty() => {
            // Every page header the browser sent must name an allowed host, and one must exist.
            let pages: Vec<Option<String>> = req
                .headers
                .iter()
                .filter(|(n, _)| *n == b"origin" || *n == b"referer")
                .map(|(_, v)| apikey::page_host(v))
                .collect();
            let ok = !pages.is_empty()
                && pages.iter().all(|h| {
                    h.as_deref()
                        .is_some_and(|h| apikey::referer_allowed(&key.referers, h))
                });
            if !ok {
                return Err(Reason::RefererDenied);
            }
        }
        KeyKind::Private if !apikey::ip_allowed(&key, peer_ip) => {
            return Err(Reason::NetworkDenied)
        }
        _ => {}
    }
    mode_allows(route.mode, method, &key)?;

    let h = &api.headers;
    let internal = peer_ip.is_some_and(|ip| api.internal_from.contains(ip));
    for (name, value) in [
        (&h.organization, key.org.as_str()),
        (&h.project, key.project.as_str()),
        (&h.kind, key.kind.as_str()),
        (&h.key_id, key.id.as_str()),
        (&h.count, if internal { "false" } else { "true" }),
    ] {
        edits
            .set
            .push((name.as_str().to_string(), value.as_bytes().to_vec()));
    }
    Ok(key.kind)
}

/// The request trailers to remove before the upstream: every spelling of the identity header,
/// of the API headers devgate sets and of the API key header, as the host holds them. HTTP/2
/// and chunked HTTP/1.1 requests can carry "headers" after the body, and upstreams that merge
/// trailers into headers would read these as devgate's. Empty (no allocation) when none.
pub fn trailer_removals<'a>(policy: &Policy, trailers: &[(&'a [u8], &'a [u8])]) -> Vec<&'a [u8]> {
    let mut names = vec![&policy.header];
    if let Some(api) = &policy.api {
        let h = &api.headers;
        names.extend([
            &h.organization,
            &h.project,
            &h.kind,
            &h.key_id,
            &h.count,
            &api.key_header,
        ]);
    }
    headers::spellings_present(trailers, &names)
}

/// Decides one request.
pub fn decide(policy: &Policy, req: &Request<'_>) -> Decision {
    decide_with(policy, req, None)
}

/// [`decide`] with the revocation list's state (`None`: no `revocation` configured).
///
/// The request is decided under its wire method and under every method an upstream framework
/// may execute it as ([`method::candidates`]: override headers, `_method`, form POSTs); the
/// first refusal wins, the wire method's first. Otherwise the wire method's answer (its edits)
/// goes on. A request with no override is decided once.
pub fn decide_with(
    policy: &Policy,
    req: &Request<'_>,
    revocation: Option<Revocation<'_>>,
) -> Decision {
    let wire = req.header(b":method").unwrap_or_default();
    let decision = decide_as(policy, req, wire, revocation);
    if !matches!(decision, Decision::Allow { .. }) {
        return decision;
    }
    for method in method::candidates(policy, req, wire) {
        let other = decide_as(policy, req, &method, revocation);
        if matches!(other, Decision::Deny { .. }) {
            return other;
        }
    }
    decision
}

/// Decides the request as if its method were `method`.
fn decide_as(
    policy: &Policy,
    req: &Request<'_>,
    method: &[u8],
    revocation: Option<Revocation<'_>>,
) -> Decision {
    let canonical = match req.header(b":path").map(path::canonicalize) {
        Some(Ok(c)) => c,
        Some(Err(_)) | None => return deny(Reason::BadPath, policy),
    };
    // The login mount is devgate's own: answered locally, whatever the rules say.
    if let Some(ep) = policy
        .login
        .as_ref()
        .and_then(|l| session::endpoint(l, &canonical))
    {
        return Decision::Login(ep);
    }
    let route = policy.route(method, &canonical);
    let protected = route == Some(RuleKind::Protect);

    let peer = net::parse_peer(req.peer.unwrap_or_default());
    let verdict = policy.net.verdict(peer);
    let by_network = match verdict {
        NetVerdict::Developer(ip) => Some(Identity {
            name: net::ip_text(ip),
            source: Source::Network,
        }),
        NetVerdict::Denied
        | NetVerdict::NotAllowed
        | NetVerdict::Forwarded
        | NetVerdict::Unknown => None,
    };

    let mut edits = Edits::default();
    // A token names a person, so it is preferred to the address; a bad one never locks out a
    // developer the network rule already admits, and never admits anyone by itself.
    let mut refusal = Reason::NoCredential;
    let mut identity = None;
    let mut expired = false;
    let session = match &policy.login {
        Some(login) => session_cookie(login, policy, req, peer, &mut expired),
        None => Ok(None),
    };
    let token = match &policy.tokens {
        Some(tokens) => find_credential(tokens, req).map(|c| c.map(|c| (tokens, c))),
        None => Ok(None),
    };
    match (session, token) {
        (Err(reason), _) | (_, Err(reason)) => {
            // Whatever the pieces were, none of them goes upstream.
            if let Some(tokens) = &policy.tokens {
                strip_all_credentials(tokens, req, &mut edits);
            }
            refusal = reason;
        }
        (Ok(Some(_)), Ok(Some(_))) => {
            if let Some(tokens) = &policy.tokens {
                strip_all_credentials(tokens, req, &mut edits);
            }
            refusal = Reason::AmbiguousCredential;
        }
        (Ok(Some(session)), Ok(None)) => match session.verdict {
            Ok(id) => identity = Some(id),
            Err(reason) => refusal = reason,
        },
        (Ok(None), Ok(Some((tokens, cred)))) => {
            let (verdict, ours) = check_token(tokens, policy, cred, peer, req.now, revocation);
            match verdict {
                Ok(id) => identity = Some(id),
                Err(reason) => refusal = reason,
            }
            strip_credential(tokens, cred, ours, &mut edits);
        }
        (Ok(None), Ok(None)) => {}
    }
    // `network.deny` means "never a developer from there" (DevAuth's deny list): no token or
    // session makes one either. Credentials are still stripped above; API keys, which name an
    // application rather than a developer, are checked below as for anyone.
    let identity = if verdict == NetVerdict::Denied {
        refusal = Reason::NetworkDenied;
        None
    } else {
        identity.or(by_network)
    };

    // An expired session is cleared, on whatever answer the request gets.
    let mut response_headers = Vec::new();
    if let (true, Some(login)) = (expired, &policy.login) {
        if let Ok(clear) = login::clear_session_cookie(&login.cookie, login.secure_cookie) {
            response_headers.push(("set-cookie", clear));
        }
    }
    let deny = |reason: Reason| {
        let mut d = deny(reason, policy);
        if let Decision::Deny { response, .. } = &mut d {
            response.headers.extend(response_headers.iter().cloned());
        }
        d
    };

    if identity.is_none() && protected {
        return deny(refusal);
    }

    let mut identity_headers = vec![&policy.header];
    let mut admitted_key = None;
    if let Some(api) = &policy.api {
        let h = &api.headers;
        identity_headers.extend([&h.organization, &h.project, &h.kind, &h.key_id, &h.count]);
        let route = match route {
            Some(RuleKind::Api(i)) => api.routes.get(i),
            _ => None,
        };
        if let Some(route) = route {
            let mut api_edits = Edits::default();
            match api_key(
                api,
                route,
                policy,
                req,
                method,
                peer,
                &mut api_edits,
                revocation,
            ) {
                Ok(kind) => admitted_key = Some(kind),
                Err(reason) => return deny(reason),
            }
            edits.remove.extend(api_edits.remove);
            edits.set.extend(api_edits.set);
        }
    }

    // Client copies are removed first, so the sets below are the only values upstream.
    let stripped: Vec<Vec<u8>> = headers::spellings_present(req.headers, &identity_headers)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    strip_cookies(policy, req, &mut edits);
    edits.remove.splice(0..0, stripped);
    if let Some(id) = &identity {
        edits.set.push((
            policy.header.as_str().to_string(),
            id.name.clone().into_bytes(),
        ));
    }
    Decision::Allow {
        identity,
        api_key: admitted_key,
        edits,
        response_headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;

    struct Case {
        peer: &'static str,
        method: &'static str,
        path: &'static [u8],
        extra: Vec<(&'static [u8], &'static [u8])>,
    }

    fn run(policy: &str, c: Case) -> Decision {
        let policy = parse_policy(policy.as_bytes()).unwrap();
        let mut headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", c.method.as_bytes()),
            (b":path", c.path),
            (b":authority", b"example"),
        ];
        headers.extend(c.extra);
        decide(
            &policy,
            &Request {
                peer: Some(c.peer.as_bytes()),
                headers: &headers,
                now: 1_700_000_000,
            },
        )
    }

    fn get(peer: &'static str, path: &'static [u8]) -> Case {
        Case {
            peer,
            method: "GET",
            path,
            extra: vec![],
        }
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Allow { .. } => 200,
            Decision::Deny { response, .. } => response.status,
            Decision::Login(_) => 0,
        }
    }

    const DEMO: &str = r#"{"protect": ["/_debug/"], "public": ["/healthz"]}"#;

    #[test]
    fn loopback_developer_gets_the_header() {
        let d = run(DEMO, get("127.0.0.1:4000", b"/_debug/"));
        let Decision::Allow {
            identity, edits, ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(identity.unwrap().name, "127.0.0.1");
        assert_eq!(
            edits.set,
            vec![("x-wsgiorg-developer-user".into(), b"127.0.0.1".to_vec())]
        );
        let d = run(DEMO, get("[::1]:4000", b"/"));
        assert!(matches!(d, Decision::Allow { identity: Some(ref i), .. } if i.name == "::1"));
    }

    #[test]
    fn non_developer_is_challenged_on_protected_paths_only() {
        let policy = r#"{"network": {"allow": ["127.0.0.1"]}, "protect": ["/_debug/"], "public": ["/healthz"]}"#;
        let d = run(policy, get("127.0.0.77:1", b"/_debug/x"));
        let Decision::Deny { reason, response } = d else {
            panic!()
        };
        assert_eq!(reason, Reason::NoCredential);
        assert_eq!(response.status, 401);
        assert!(response
            .headers
            .contains(&("www-authenticate", "x-wsgiorg.developer_user".into())));
        let d = run(policy, get("127.0.0.77:1", b"/"));
        assert_eq!(
            d,
            Decision::Allow {
                identity: None,
                api_key: None,
                edits: Edits::default(),
                response_headers: vec![],
            }
        );
        assert_eq!(status(&run(policy, get("127.0.0.77:1", b"/healthz"))), 200);
    }

    #[test]
    fn forbid_mode_answers_403_without_challenge() {
        let d = run(
            r#"{"network": {"allow": []}, "unauthenticated": "forbid"}"#,
            get("127.0.0.1:1", b"/"),
        );
        let Decision::Deny { response, .. } = d else {
            panic!()
        };
        assert_eq!(response.status, 403);
        assert!(response
            .headers
            .iter()
            .all(|(n, _)| *n != "www-authenticate"));
    }

    #[test]
    fn xff_derived_peer_is_not_a_developer() {
        // Envoy with use_remote_address: false took 127.0.0.1 from X-Forwarded-For: port 0.
        assert_eq!(status(&run("{}", get("127.0.0.1:0", b"/"))), 401);
        let trusting = r#"{"network": {"trust_forwarded": true}}"#;
        assert_eq!(status(&run(trusting, get("127.0.0.1:0", b"/"))), 200);
    }

    #[test]
    fn client_sent_identity_headers_are_stripped_for_everyone() {
        let spoof: Vec<(&[u8], &[u8])> = vec![
            (b"x-wsgiorg-developer-user", b"evil"),
            (b"x_wsgiorg_developer_user", b"evil2"),
            (b"x-wsgiorg-developer-user", b"evil3"),
        ];
        for peer in ["127.0.0.1:9", "10.0.0.1:9"] {
            let d = run(
                r#"{"protect": []}"#,
                Case {
                    peer,
                    method: "GET",
                    path: b"/",
                    extra: spoof.clone(),
                },
            );
            let Decision::Allow { edits, .. } = d else {
                panic!()
            };
            assert_eq!(
                edits.remove,
                vec![
                    b"x-wsgiorg-developer-user".to_vec(),
                    b"x_wsgiorg_developer_user".to_vec()
                ]
            );
        }
    }

    #[test]
    fn bad_paths_are_400_before_anything_else() {
        assert_eq!(status(&run("{}", get("127.0.0.1:1", b"/%zz"))), 400);
        assert_eq!(status(&run("{}", get("127.0.0.1:1", b"/%255Fdebug"))), 400);
        let d = run(
            "{}",
            Case {
                peer: "127.0.0.1:1",
                method: "GET",
                path: b"*",
                extra: vec![],
            },
        );
        assert_eq!(status(&d), 400);
    }

    #[test]
    fn path_tricks_do_not_dodge_protection() {
        let policy = r#"{"network": {"allow": []}, "protect": ["/_debug/"]}"#;
        for p in [
            &b"/%5Fdebug/"[..],
            b"/_DEBUG/",
            b"//_debug/",
            b"/x/../_debug/",
            b"/_debug;a=b/",
            b"/_debug?x",
            b"/\\_debug/",
        ] {
            assert_eq!(status(&run(policy, get("127.0.0.1:1", p))), 401, "{p:?}");
        }
        assert_eq!(status(&run(policy, get("127.0.0.1:1", b"/_debugger"))), 200);
    }

    #[test]
    fn missing_peer_or_garbage_is_not_a_developer() {
        assert_eq!(status(&run("{}", get("", b"/"))), 401);
        assert_eq!(status(&run("{}", get("\u{0}\u{1}", b"/"))), 401);
    }

    // ---- tokens ----------------------------------------------------------------------------

    use crate::config::parse_policy_with_env;
    use token::{mint, Claims, Key, Purpose, Secret};

    const NOW: u64 = 1_700_000_000;
    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn key(id: &str) -> Key {
        Key {
            id: id.into(),
            secret: Secret::from_b64url(SECRET).unwrap(),
        }
    }

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            purpose: Purpose::Developer,
            cookie: None,
            cip: None,
            jti: None,
            iat: Some(NOW - 10),
            nbf: None,
            exp,
        }
    }

    fn alice() -> String {
        mint(&claims("alice", NOW + 3600), &key("k1"))
    }

    fn token_policy(tokens: &str) -> Policy {
        let json = format!(
            r#"{{"network": {{"allow": ["127.0.0.1"]}}, "protect": ["/_debug/"],
                "keys": [{{"id": "k1", "secret_env": "K1"}}], "tokens": {tokens}}}"#
        );
        parse_policy_with_env(json.as_bytes(), &|v| {
            (v == "K1").then(|| SECRET.to_string())
        })
        .unwrap()
    }

    fn send(policy: &Policy, peer: &str, path: &[u8], extra: &[(&[u8], &[u8])]) -> Decision {
        let mut headers: Vec<(&[u8], &[u8])> = vec![(b":method", b"GET"), (b":path", path)];
        headers.extend_from_slice(extra);
        decide(
            policy,
            &Request {
                peer: Some(peer.as_bytes()),
                headers: &headers,
                now: NOW,
            },
        )
    }

    fn reason(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Deny { reason, .. } => Some(reason.code()),
            Decision::Allow { .. } | Decision::Login(_) => None,
        }
    }

    fn allowed(d: &Decision) -> (Option<(String, Source)>, Edits) {
        match d {
            Decision::Allow {
                identity, edits, ..
            } => (
                identity.as_ref().map(|i| (i.name.clone(), i.source)),
                edits.clone(),
            ),
            Decision::Deny { reason, .. } => panic!("denied: {}", reason.code()),
            Decision::Login(e) => panic!("login endpoint {e:?}"),
        }
    }

    #[test]
    fn bearer_developer_gets_the_header_and_loses_the_token() {
        let p = token_policy("{}");
        let auth = format!("Bearer {}", alice());
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[(b"authorization", auth.as_bytes())],
        );
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("alice".into(), Source::Bearer)));
        assert!(edits.remove.contains(&b"authorization".to_vec()));
        assert!(edits
            .set
            .contains(&("x-wsgiorg-developer-user".into(), b"alice".to_vec())));
    }

    #[test]
    fn cookie_developer_and_the_other_cookies_survive() {
        let p = token_policy("{}");
        let c = format!("a=1; devgate_token={}; b=2", alice());
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[(b"cookie", c.as_bytes()), (b"cookie", b"z=9")],
        );
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("alice".into(), Source::Cookie)));
        assert!(edits.remove.contains(&b"cookie".to_vec()));
        assert!(edits
            .set
            .contains(&("cookie".into(), b"a=1; b=2; z=9".to_vec())));
    }

    #[test]
    fn comma_hidden_devgate_cookie_never_reaches_the_upstream() {
        let p = login_policy("");
        let t = alice();
        // Not a credential: the outsider is refused on a protected path...
        let c = format!("a=1, devgate_token={t}");
        let d = send(&p, "192.0.2.1:9", b"/_debug/", &[(b"cookie", c.as_bytes())]);
        assert_eq!(reason(&d), Some("no_credential"));
        // ...and allowed anonymously elsewhere, without the hidden cookie.
        let d = send(&p, "192.0.2.1:9", b"/", &[(b"cookie", c.as_bytes())]);
        let (id, edits) = allowed(&d);
        assert_eq!(id, None);
        assert_eq!(edits.remove, vec![b"cookie".to_vec()]);
        assert_eq!(edits.set, vec![("cookie".to_string(), b"a=1".to_vec())]);
        // Any spelling of either cookie, in any header, also next to a real credential.
        let c2 = format!("devgate_token={t}");
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[
                (b"cookie", c2.as_bytes()),
                (b"cookie", b"z=9,DEVGATE_SESSION=x"),
                (b"cookie", b"devgate%2Etoken=y"),
            ],
        );
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("alice".into(), Source::Cookie)));
        assert_eq!(
            edits.set,
            vec![
                ("cookie".to_string(), b"z=9".to_vec()),
                ("x-wsgiorg-developer-user".to_string(), b"alice".to_vec())
            ]
        );
        // No devgate cookie in any spelling: the header is left alone.
        let d = send(&p, "192.0.2.1:9", b"/", &[(b"cookie", b"a=1, b=2")]);
        assert!(allowed(&d).1.remove.is_empty());
        // With tokens.strip_credential off the token cookie stays, the session cookie does not.
        let json = format!(
            r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}"}}], "protect": [],
                "tokens": {{"strip_credential": false}}, "login": {{"users": "{ALICE}"}}}}"#
        );
        let p = crate::config::parse_policy(json.as_bytes()).unwrap();
        let d = send(
            &p,
            "192.0.2.1:9",
            b"/",
            &[(b"cookie", b"a=1, devgate_token=T, devgate_session=S")],
        );
        assert_eq!(
            allowed(&d).1.set,
            vec![("cookie".to_string(), b"a=1, devgate_token=T".to_vec())]
        );
    }

    #[test]
    fn token_failures_are_401_with_their_code() {
        let p = token_policy("{}");
        let expired = mint(&claims("alice", NOW - 3600), &key("k1"));
        let mut other = key("k1");
        other.secret = Secret::from_bytes(vec![7; 32]).unwrap();
        let forged = mint(&claims("alice", NOW + 3600), &other);
        let unknown = mint(&claims("alice", NOW + 3600), &key("k9"));
        let mut tampered = alice();
        tampered.pop();
        for (tok, code) in [
            (expired.as_str(), "expired"),
            (forged.as_str(), "bad_signature"),
            (unknown.as_str(), "unknown_kid"),
            (tampered.as_str(), "bad_signature"),
            ("garbage", "malformed"),
        ] {
            let auth = format!("Bearer {tok}");
            let d = send(
                &p,
                "10.1.1.1:9",
                b"/_debug/",
                &[(b"authorization", auth.as_bytes())],
            );
            assert_eq!(reason(&d), Some(code), "{tok}");
            assert_eq!(status(&d), 401);
        }
    }

    #[test]
    fn bad_token_on_an_open_path_is_just_anonymous() {
        let p = token_policy("{}");
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/",
            &[(b"authorization", b"Bearer app-owned.token.x")],
        );
        let (id, edits) = allowed(&d);
        assert_eq!(id, None);
        assert!(
            edits.remove.is_empty(),
            "the application's own bearer token is left alone"
        );
    }

    #[test]
    fn bad_token_does_not_lock_out_a_network_developer() {
        let p = token_policy("{}");
        let d = send(
            &p,
            "127.0.0.1:9",
            b"/_debug/",
            &[(b"authorization", b"Bearer x.y.z")],
        );
        assert_eq!(allowed(&d).0, Some(("127.0.0.1".into(), Source::Network)));
    }

    #[test]
    fn two_credentials_are_never_a_choice() {
        let p = token_policy("{}");
        let t = alice();
        let auth = format!("Bearer {t}");
        let c = format!("devgate_token={t}");
        let both: [(&[u8], &[u8]); 2] = [
            (b"authorization", auth.as_bytes()),
            (b"cookie", c.as_bytes()),
        ];
        assert_eq!(
            reason(&send(&p, "10.1.1.1:9", b"/_debug/", &both)),
            Some("ambiguous_credential")
        );
        let twice: [(&[u8], &[u8]); 2] = [
            (b"authorization", auth.as_bytes()),
            (b"authorization", b"Basic eA=="),
        ];
        assert_eq!(
            reason(&send(&p, "10.1.1.1:9", b"/_debug/", &twice)),
            Some("ambiguous_credential")
        );
        // Envoy's HTTP/1 codec joins repeated Authorization headers with ','.
        let merged = format!("Bearer {t},Basic eA==");
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", merged.as_bytes())];
        assert_eq!(
            reason(&send(&p, "10.1.1.1:9", b"/_debug/", &h)),
            Some("ambiguous_credential")
        );
        let merged = format!("Basic eA==, Bearer {t}");
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", merged.as_bytes())];
        let d = send(&p, "127.0.0.1:9", b"/", &h);
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("127.0.0.1".into(), Source::Network)));
        assert!(
            edits.remove.contains(&b"authorization".to_vec()),
            "regression: a devgate token in a merged Authorization header reached the upstream"
        );
        let c2 = format!("devgate_token={t}; devgate_token=other");
        let d = send(&p, "10.1.1.1:9", b"/_debug/", &[(b"cookie", c2.as_bytes())]);
        assert_eq!(reason(&d), Some("ambiguous_credential"));
    }

    #[test]
    fn allow_from_makes_a_valid_token_403_elsewhere() {
        let p = token_policy(r#"{"allow_from": ["10.0.0.0/8"]}"#);
        let auth = format!("Bearer {}", alice());
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", auth.as_bytes())];
        assert_eq!(status(&send(&p, "10.1.1.1:9", b"/_debug/", &h)), 200);
        let d = send(&p, "192.0.2.1:9", b"/_debug/", &h);
        assert_eq!((status(&d), reason(&d)), (403, Some("network_denied")));
        let d = send(&p, "10.1.1.1:0", b"/_debug/", &h);
        assert_eq!(
            reason(&d),
            Some("network_denied"),
            "a forwarded address is not the socket"
        );
    }

    #[test]
    fn peer_binding() {
        let p = token_policy(r#"{"bind_peer": true}"#);
        let auth = format!("Bearer {}", alice());
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[(b"authorization", auth.as_bytes())],
        );
        assert_eq!((status(&d), reason(&d)), (403, Some("unbound_token")));
        let mut c = claims("alice", NOW + 60);
        c.cip = Some("10.1.1.1".parse().unwrap());
        let bound = format!("Bearer {}", mint(&c, &key("k1")));
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", bound.as_bytes())];
        assert_eq!(status(&send(&p, "10.1.1.1:9", b"/_debug/", &h)), 200);
        let d = send(&p, "10.1.1.2:9", b"/_debug/", &h);
        assert_eq!((status(&d), reason(&d)), (403, Some("wrong_peer")));
    }

    #[test]
    fn session_purpose_tokens_are_not_developer_tokens() {
        let p = token_policy("{}");
        let mut c = claims("alice", NOW + 60);
        c.purpose = Purpose::Session;
        c.cookie = Some("devgate_token".into());
        let t = format!("devgate_token={}", mint(&c, &key("k1")));
        let d = send(&p, "10.1.1.1:9", b"/_debug/", &[(b"cookie", t.as_bytes())]);
        assert_eq!(reason(&d), Some("wrong_purpose"));
    }

    #[test]
    fn forbid_mode_hides_token_reasons_behind_403() {
        let json = format!(
            r#"{{"unauthenticated": "forbid", "keys": [{{"id": "k1", "secret": "{SECRET}"}}], "tokens": {{}}}}"#
        );
        let p = crate::config::parse_policy(json.as_bytes()).unwrap();
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/",
            &[(b"authorization", b"Bearer x.y.z")],
        );
        assert_eq!(status(&d), 403);
    }

    // ---- login session cookie ------------------------------------------------------------

    /// Password: correct horse.
    const ALICE: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";

    fn login_policy(extra: &str) -> Policy {
        let json = format!(
            r#"{{"network": {{"allow": ["127.0.0.1"]}}, "protect": ["/_debug/"],
                "keys": [{{"id": "k1", "secret": "{SECRET}"}}], "tokens": {{}},
                "login": {{"users": "{ALICE}", "allow_from": ["10.0.0.0/8"] {extra}}}}}"#
        );
        crate::config::parse_policy(json.as_bytes()).unwrap()
    }

    fn session(sub: &str, exp: u64) -> String {
        let mut c = claims(sub, exp);
        c.purpose = Purpose::Session;
        c.cookie = Some("devgate_session".into());
        format!("devgate_session={}", mint(&c, &key("k1")))
    }

    #[test]
    fn session_cookie_names_the_developer_and_never_goes_upstream() {
        let p = login_policy("");
        let c = format!("a=1; {}; b=2", session("alice", NOW + 60));
        let d = send(&p, "10.1.1.1:9", b"/_debug/", &[(b"cookie", c.as_bytes())]);
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("alice".into(), Source::Session)));
        assert!(edits.remove.contains(&b"cookie".to_vec()));
        assert!(edits.set.contains(&("cookie".into(), b"a=1; b=2".to_vec())));
    }

    #[test]
    fn expired_session_is_no_session_and_is_cleared() {
        let p = login_policy("");
        let c = session("alice", NOW - 3600);
        // Protected: the same 401 as no cookie at all, plus the cookie cleared.
        let d = send(&p, "10.1.1.1:9", b"/_debug/", &[(b"cookie", c.as_bytes())]);
        let Decision::Deny { reason, response } = &d else {
            panic!("{d:?}")
        };
        assert_eq!((reason.code(), response.status), ("no_credential", 401));
        let clear = response.headers.iter().find(|(n, _)| *n == "set-cookie");
        assert!(clear
            .is_some_and(|(_, v)| v.starts_with("devgate_session=;") && v.contains("Max-Age=0")));
        // Unprotected: anonymous, cookie cleared on the way back and stripped on the way in.
        let d = send(&p, "10.1.1.1:9", b"/", &[(b"cookie", c.as_bytes())]);
        let Decision::Allow {
            identity,
            edits,
            response_headers,
            ..
        } = &d
        else {
            panic!("{d:?}")
        };
        assert!(identity.is_none());
        assert_eq!(edits.remove, vec![b"cookie".to_vec()]);
        assert!(response_headers.iter().any(|(n, _)| *n == "set-cookie"));
    }

    #[test]
    fn session_cookie_refusals() {
        let p = login_policy("");
        // Tampered.
        let mut c = session("alice", NOW + 60);
        c.pop();
        c.push('A');
        let d = send(&p, "10.1.1.1:9", b"/_debug/", &[(b"cookie", c.as_bytes())]);
        assert_eq!(reason(&d), Some("bad_signature"));
        // A developer token pasted into the session cookie.
        let dev = format!(
            "devgate_session={}",
            mint(&claims("alice", NOW + 60), &key("k1"))
        );
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[(b"cookie", dev.as_bytes())],
        );
        assert_eq!(reason(&d), Some("wrong_purpose"));
        // Outside the login networks: 403.
        let c = session("alice", NOW + 60);
        let d = send(&p, "192.0.2.1:9", b"/_debug/", &[(b"cookie", c.as_bytes())]);
        assert_eq!((status(&d), reason(&d)), (403, Some("network_denied")));
        // A session and a bearer token: which one? Neither.
        let bearer = format!("Bearer {}", mint(&claims("bob", NOW + 60), &key("k1")));
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[
                (b"cookie", c.as_bytes()),
                (b"authorization", bearer.as_bytes()),
            ],
        );
        assert_eq!(reason(&d), Some("ambiguous_credential"));
        // An expired session beside a valid bearer token is no session: the bearer counts.
        let old = session("alice", NOW - 3600);
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[
                (b"cookie", old.as_bytes()),
                (b"authorization", bearer.as_bytes()),
            ],
        );
        assert_eq!(allowed(&d).0, Some(("bob".into(), Source::Bearer)));
    }

    /// DevAuth's deny list translated the obvious way: allow a range, deny one address in it,
    /// log in from the range.
    fn devauth_policy() -> Policy {
        let json = format!(
            r#"{{"network": {{"allow": ["127.0.0.0/8"], "deny": ["127.0.0.77"]}},
                "protect": ["/_debug/"],
                "keys": [{{"id": "k1", "secret": "{SECRET}"}}], "tokens": {{}},
                "login": {{"users": "{ALICE}", "allow_from": ["127.0.0.0/8"]}}}}"#
        );
        crate::config::parse_policy(json.as_bytes()).unwrap()
    }

    #[test]
    fn network_deny_beats_tokens_and_sessions() {
        let p = devauth_policy();
        let bearer = format!("Bearer {}", alice());
        let sess = format!("a=1; {}", session("alice", NOW + 60));
        let token_cookie = format!("devgate_token={}; a=1", alice());
        let creds: [(&[u8], &[u8]); 3] = [
            (b"authorization", bearer.as_bytes()),
            (b"cookie", sess.as_bytes()),
            (b"cookie", token_cookie.as_bytes()),
        ];
        for cred in creds {
            // From the denied address: 403 on a protected path, never a developer.
            let d = send(&p, "127.0.0.77:9", b"/_debug/", &[cred]);
            let Decision::Deny { reason, response } = &d else {
                panic!("{d:?}")
            };
            assert_eq!((reason.code(), response.status), ("network_denied", 403));
            // On an open path: anonymous, the credential and any identity copy stripped.
            let d = send(
                &p,
                "[::ffff:127.0.0.77]:9",
                b"/",
                &[cred, (b"x-wsgiorg-developer-user", b"spoof")],
            );
            let (id, edits) = allowed(&d);
            assert_eq!(id, None);
            assert!(edits.remove.contains(&b"x-wsgiorg-developer-user".to_vec()));
            let stripped = edits.remove.contains(&b"authorization".to_vec())
                || edits.set.contains(&("cookie".into(), b"a=1".to_vec()));
            assert!(stripped, "{edits:?}");
            assert!(!edits
                .set
                .iter()
                .any(|(n, _)| n == "x-wsgiorg-developer-user"));
            // From an allowed address the same credential names the developer.
            let d = send(&p, "127.0.0.1:9", b"/_debug/", &[cred]);
            assert_eq!(allowed(&d).0.map(|(n, _)| n), Some("alice".into()));
        }
        // Without any credential the denied address gets the same 403 (no challenge: nothing
        // it could send would be accepted).
        let d = send(&p, "127.0.0.77:9", b"/_debug/", &[]);
        assert_eq!((status(&d), reason(&d)), (403, Some("network_denied")));
        assert_eq!(allowed(&send(&p, "127.0.0.77:9", b"/", &[])).0, None);
    }

    #[test]
    fn login_mount_is_answered_by_devgate() {
        let p = login_policy("");
        let d = send(&p, "192.0.2.1:9", b"/.devgate/login", &[]);
        assert_eq!(d, Decision::Login(session::Endpoint::Login));
        // Even where a public rule would match, and through path tricks.
        let d = send(&p, "192.0.2.1:9", b"/x/../.devgate/%6Cogout", &[]);
        assert_eq!(d, Decision::Login(session::Endpoint::Logout));
        let d = send(&p, "192.0.2.1:9", b"/.devgate/", &[]);
        assert_eq!(d, Decision::Login(session::Endpoint::Other));
        // Without login configured, the mount is an ordinary path.
        let d = send(&token_policy("{}"), "127.0.0.1:9", b"/.devgate/login", &[]);
        assert!(matches!(d, Decision::Allow { .. }));
    }

    // ---- revocation list --------------------------------------------------------------------

    #[test]
    fn revocation_list_and_staleness() {
        use revocation::{Revocation, RevocationList};
        let p = token_policy("{}");
        let mut c = claims("alice", NOW + 60);
        c.jti = Some("t-1".into());
        let revoked = format!("Bearer {}", mint(&c, &key("k1")));
        let fine = format!("Bearer {}", mint(&claims("bob", NOW + 60), &key("k1")));
        let mut list = RevocationList::default();
        list.tokens.insert("t-1".into());
        let send_with = |auth: &str, rev: Option<Revocation<'_>>| {
            let headers: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"GET"),
                (b":path", b"/_debug/"),
                (b"authorization", auth.as_bytes()),
            ];
            decide_with(
                &p,
                &Request {
                    peer: Some(b"10.1.1.1:9"),
                    headers: &headers,
                    now: NOW,
                },
                rev,
            )
        };
        let fresh = Some(Revocation {
            list: Some(&list),
            refuse: false,
        });
        assert_eq!(reason(&send_with(&revoked, fresh)), Some("revoked"));
        assert_eq!(
            allowed(&send_with(&fine, fresh)).0,
            Some(("bob".into(), Source::Bearer))
        );
        // Stale and refusing: every token is refused, with its own code, as a 401.
        let stale = Some(Revocation {
            list: Some(&list),
            refuse: true,
        });
        let d = send_with(&fine, stale);
        assert_eq!((status(&d), reason(&d)), (401, Some("revocation_stale")));
        // Never fetched and serving: nothing is known revoked.
        let none = Some(Revocation {
            list: None,
            refuse: false,
        });
        assert!(matches!(send_with(&revoked, none), Decision::Allow { .. }));
        // A network developer never needs the list.
        let d = decide_with(
            &p,
            &Request {
                peer: Some(b"127.0.0.1:9"),
                headers: &[(b":method", b"GET"), (b":path", b"/_debug/")],
                now: NOW,
            },
            stale,
        );
        assert!(matches!(d, Decision::Allow { .. }));
    }

    // ---- API keys --------------------------------------------------------------------------

    use apikey::{mint as mint_key, NewKey};

    fn api_policy() -> Policy {
        let json = format!(
            r#"{{"network": {{"allow": ["127.0.0.1"]}}, "protect": ["/_debug/"],
                "keys": [{{"id": "k1", "secret": "{SECRET}"}}],
                "api": {{"routes": [
                    {{"prefix": "/v1/maps", "product": "maps"}},
                    {{"prefix": "/v1/search", "product": "maps", "mode": "read_only"}},
                    {{"prefix": "/v1/admin", "product": "maps", "mode": "write_only"}}],
                  "revoked": ["gone"], "internal_from": ["10.9.0.0/16"]}}}}"#
        );
        crate::config::parse_policy(json.as_bytes()).unwrap()
    }

    fn api_key_text(
        kind: KeyKind,
        id: &str,
        write: bool,
        referers: &[&str],
        ips: &[&str],
    ) -> String {
        let products = vec!["maps".to_string()];
        let referers: Vec<String> = referers.iter().map(|s| s.to_string()).collect();
        let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
        mint_key(
            &NewKey {
                kind,
                id,
                org: "org1",
                project: "proj1",
                products: &products,
                write,
                referers: &referers,
                ips: &ips,
                iat: NOW - 10,
                exp: None,
            },
            &key("k1"),
        )
        .unwrap()
    }

    fn call(
        p: &Policy,
        method: &str,
        path: &str,
        peer: &str,
        extra: &[(&[u8], &[u8])],
    ) -> Decision {
        let mut headers: Vec<(&[u8], &[u8])> =
            vec![(b":method", method.as_bytes()), (b":path", path.as_bytes())];
        headers.extend_from_slice(extra);
        decide(
            p,
            &Request {
                peer: Some(peer.as_bytes()),
                headers: &headers,
                now: NOW,
            },
        )
    }

    #[test]
    fn mode_table_every_cell() {
        let k = |kind, write| ApiKey {
            kind,
            id: "i".into(),
            org: "o".into(),
            project: "p".into(),
            products: vec![],
            write,
            referers: vec![],
            ips: net::CidrList::default(),
            exp: None,
        };
        let public = k(KeyKind::Public, false);
        let private_ro = k(KeyKind::Private, false);
        let private_w = k(KeyKind::Private, true);
        let ok = "ok";
        // (mode, method, [public, private without write, private with write])
        let table: &[(Mode, &str, [&str; 3])] = &[
            (Mode::ReadWrite, "GET", [ok, ok, ok]),
            (Mode::ReadWrite, "HEAD", [ok, ok, ok]),
            (Mode::ReadWrite, "OPTIONS", [ok, ok, ok]),
            (
                Mode::ReadWrite,
                "POST",
                ["private_key_required", "write_needed", ok],
            ),
            (
                Mode::ReadWrite,
                "PUT",
                ["private_key_required", "write_needed", ok],
            ),
            (
                Mode::ReadWrite,
                "PATCH",
                ["private_key_required", "write_needed", ok],
            ),
            (
                Mode::ReadWrite,
                "DELETE",
                ["private_key_required", "write_needed", ok],
            ),
            (Mode::ReadOnly, "GET", [ok, ok, ok]),
            (Mode::ReadOnly, "HEAD", [ok, ok, ok]),
            (Mode::ReadOnly, "OPTIONS", [ok, ok, ok]),
            (Mode::ReadOnly, "POST", [ok, ok, ok]),
            (Mode::ReadOnly, "PUT", ["method_not_allowed"; 3]),
            (Mode::ReadOnly, "PATCH", ["method_not_allowed"; 3]),
            (Mode::ReadOnly, "DELETE", ["method_not_allowed"; 3]),
            (
                Mode::WriteOnly,
                "GET",
                ["private_key_required", "write_needed", ok],
            ),
            (
                Mode::WriteOnly,
                "POST",
                ["private_key_required", "write_needed", ok],
            ),
            (
                Mode::WriteOnly,
                "DELETE",
                ["private_key_required", "write_needed", ok],
            ),
            (
                Mode::ReadWrite,
                "PROPFIND",
                ["private_key_required", "write_needed", ok],
            ),
        ];
        for (mode, method, want) in table {
            for (key, want) in [&public, &private_ro, &private_w].into_iter().zip(want) {
                let got = match mode_allows(*mode, method.as_bytes(), key) {
                    Ok(()) => "ok",
                    Err(r) => r.code(),
                };
                assert_eq!(
                    got, *want,
                    "{mode:?} {method} {:?} write={}",
                    key.kind, key.write
                );
            }
        }
    }

    #[test]
    fn public_key_in_query_passes_the_project_reference_and_loses_the_key() {
        let p = api_policy();
        let pk = api_key_text(KeyKind::Public, "pk1", false, &[], &[]);
        let path = format!("/v1/maps/tiles?a=1&key={pk}&b=2");
        let spoof: [(&[u8], &[u8]); 1] = [(b"x-devgate-project", b"other")];
        let d = call(&p, "GET", &path, "192.0.2.1:5", &spoof);
        let (id, edits) = allowed(&d);
        assert_eq!(id, None, "an API key is not a developer");
        assert_eq!(
            edits.remove.first().map(Vec::as_slice),
            Some(&b"x-devgate-project"[..])
        );
        let set: std::collections::HashMap<_, _> = edits.set.iter().cloned().collect();
        assert_eq!(set[":path"], b"/v1/maps/tiles?a=1&b=2");
        assert_eq!(set["x-devgate-organization"], b"org1");
        assert_eq!(set["x-devgate-project"], b"proj1");
        assert_eq!(set["x-devgate-key-kind"], b"public_key");
        assert_eq!(set["x-devgate-key-id"], b"pk1");
        assert_eq!(set["x-devgate-count"], b"true");
    }

    #[test]
    fn private_key_header_and_internal_marking() {
        let p = api_policy();
        let sk = api_key_text(KeyKind::Private, "sk1", true, &[], &["10.9.0.0/16"]);
        let h: [(&[u8], &[u8]); 1] = [(b"x-api-key", sk.as_bytes())];
        let d = call(&p, "POST", "/v1/maps/x", "10.9.1.1:5", &h);
        let (_, edits) = allowed(&d);
        assert!(edits.remove.contains(&b"x-api-key".to_vec()));
        assert!(edits
            .set
            .contains(&("x-devgate-count".into(), b"false".to_vec())));
        let d = call(&p, "POST", "/v1/maps/x", "10.8.1.1:5", &h);
        assert_eq!((status(&d), reason(&d)), (403, Some("network_denied")));
        let d = call(&p, "POST", "/v1/maps/x", "10.9.1.1:0", &h);
        assert_eq!(
            reason(&d),
            Some("network_denied"),
            "a forwarded address is not the socket"
        );
    }

    #[test]
    fn api_key_refusals() {
        let p = api_policy();
        let pk = api_key_text(KeyKind::Public, "pk1", false, &["*.example.com"], &[]);
        let sk = api_key_text(KeyKind::Private, "sk1", false, &[], &[]);
        let gone = api_key_text(KeyKind::Private, "gone", false, &[], &[]);
        let q = |k: &str| format!("/v1/maps/x?key={k}");
        let qp = |k: &str| format!("/v1/maps/x?private_key={k}");
        let origin_ok: [(&[u8], &[u8]); 1] = [(b"origin", b"https://app.example.com")];
        let origin_bad: [(&[u8], &[u8]); 1] = [(b"origin", b"https://evil.net")];
        type Case<'a> = (String, String, Vec<(&'a [u8], &'a [u8])>, u16, &'a str);
        let cases: Vec<Case> = vec![
            (
                "GET".into(),
                "/v1/maps/x".into(),
                vec![],
                401,
                "no_credential",
            ),
            (
                "GET".into(),
                q(&pk),
                origin_bad.to_vec(),
                403,
                "referer_denied",
            ),
            ("GET".into(), q(&pk), vec![], 403, "referer_denied"),
            (
                "GET".into(),
                q(&pk),
                vec![
                    (b"origin", b"https://app.example.com"),
                    (b"referer", b"https://evil.net/"),
                ],
                403,
                "referer_denied",
            ),
            (
                "POST".into(),
                q(&pk),
                origin_ok.to_vec(),
                403,
                "private_key_required",
            ),
            ("POST".into(), qp(&sk), vec![], 403, "write_needed"),
            ("GET".into(), q(&sk), vec![], 401, "key_misplaced"),
            (
                "GET".into(),
                qp(&pk),
                origin_ok.to_vec(),
                401,
                "key_misplaced",
            ),
            ("GET".into(), qp(&gone), vec![], 401, "revoked"),
            (
                "GET".into(),
                format!("/v1/maps/x?key={pk}&private_key={sk}"),
                origin_ok.to_vec(),
                401,
                "ambiguous_credential",
            ),
            (
                "GET".into(),
                format!("/v1/maps/x?key={pk}&key={pk}"),
                origin_ok.to_vec(),
                401,
                "ambiguous_credential",
            ),
            (
                "GET".into(),
                "/v1/maps/x?key=dgpk_garbage".into(),
                vec![],
                401,
                "malformed",
            ),
            (
                "DELETE".into(),
                format!("/v1/search?private_key={sk}"),
                vec![],
                403,
                "method_not_allowed",
            ),
            (
                "GET".into(),
                format!("/v1/admin?private_key={sk}"),
                vec![],
                403,
                "write_needed",
            ),
        ];
        for (method, path, extra, want_status, want_reason) in cases {
            let d = call(&p, &method, &path, "192.0.2.1:5", &extra);
            assert_eq!(
                (status(&d), reason(&d)),
                (want_status, Some(want_reason)),
                "{method} {path}"
            );
        }
        let under: [(&[u8], &[u8]); 1] = [(b"x_api_key", sk.as_bytes())];
        let d = call(&p, "GET", "/v1/maps/x", "192.0.2.1:5", &under);
        let (_, edits) = allowed(&d);
        assert!(
            edits.remove.contains(&b"x_api_key".to_vec()),
            "regression: X_Api_Key next to a valid key reached the upstream"
        );
        let twice = format!("{sk},{sk}");
        let d = call(
            &p,
            "GET",
            "/v1/maps/x",
            "192.0.2.1:5",
            &[(b"x-api-key", twice.as_bytes())],
        );
        assert_eq!(
            reason(&d),
            Some("ambiguous_credential"),
            "Envoy-merged repeated X-Api-Key"
        );
        assert_eq!(
            status(&call(&p, "GET", &q(&pk), "192.0.2.1:5", &origin_ok)),
            200
        );
        assert_eq!(
            status(&call(
                &p,
                "POST",
                &format!("/v1/search?key={pk}"),
                "192.0.2.1:5",
                &origin_ok
            )),
            200
        );
    }

    #[test]
    fn method_override_does_not_bypass_a_protect_rule_limited_to_delete() {
        let p = parse_policy(
            br#"{"network": {"allow": ["127.0.0.1"]},
                 "protect": [{"prefix": "/", "methods": ["DELETE"]}], "public": ["/status"]}"#,
        )
        .unwrap();
        let outsider = "192.0.2.1:9";
        assert_eq!(status(&call(&p, "POST", "/items/1", outsider, &[])), 200);
        for h in [
            &b"x-http-method-override"[..],
            b"X-HTTP-Method",
            b"x_method_override",
        ] {
            let d = call(&p, "POST", "/items/1", outsider, &[(h, b"delete")]);
            assert_eq!(reason(&d), Some("no_credential"), "{h:?}");
        }
        let d = call(
            &p,
            "POST",
            "/items/1",
            outsider,
            &[(b"x-http-method", b"PUT, DELETE")],
        );
        assert_eq!(
            reason(&d),
            Some("no_credential"),
            "every comma-separated value"
        );
        let d = call(&p, "GET", "/items/1?_method=DELETE", outsider, &[]);
        assert_eq!(reason(&d), Some("no_credential"), "_method in the query");
        let form: [(&[u8], &[u8]); 1] = [(b"content-type", b"application/x-www-form-urlencoded")];
        let d = call(&p, "POST", "/items/1", outsider, &form);
        assert_eq!(reason(&d), Some("no_credential"), "_method in a form body");
        // A public rule exempts every method, overridden ones too.
        let over: [(&[u8], &[u8]); 1] = [(b"x-http-method-override", b"DELETE")];
        assert_eq!(status(&call(&p, "POST", "/status", outsider, &over)), 200);
        // A developer passes, and the override goes on to the upstream untouched.
        let d = call(&p, "POST", "/items/1", "127.0.0.1:9", &over);
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("127.0.0.1".into(), Source::Network)));
        assert!(edits.remove.is_empty() && edits.set.len() == 1, "{edits:?}");
    }

    #[test]
    fn method_override_does_not_bypass_api_endpoint_modes() {
        let p = api_policy();
        let sk = api_key_text(KeyKind::Private, "sk1", false, &[], &[]);
        let pk = api_key_text(KeyKind::Public, "pk1", false, &[], &[]);
        let key: (&[u8], &[u8]) = (b"x-api-key", sk.as_bytes());
        let over =
            |m: &'static [u8]| -> (&'static [u8], &'static [u8]) { (b"x-http-method-override", m) };
        let form: (&[u8], &[u8]) = (b"content-type", b"multipart/form-data; boundary=b");
        let json: (&[u8], &[u8]) = (b"content-type", b"application/json");
        let peer = "192.0.2.1:5";
        // read_only: POST is a query, PUT/PATCH/DELETE are refused however they are asked for.
        assert_eq!(
            status(&call(&p, "POST", "/v1/search", peer, &[key, json])),
            200
        );
        for (path, extra) in [
            ("/v1/search", vec![key, over(b"DELETE")]),
            ("/v1/search", vec![key, over(b"patch")]),
            ("/v1/search?_method=PUT", vec![key]),
            ("/v1/search", vec![key, form]),
        ] {
            let d = call(&p, "POST", path, peer, &extra);
            assert_eq!(
                (status(&d), reason(&d)),
                (403, Some("method_not_allowed")),
                "{path} {extra:?}"
            );
        }
        let d = call(&p, "GET", "/v1/search?_method=DELETE", peer, &[key]);
        assert_eq!(reason(&d), Some("method_not_allowed"));
        // read_write: a read overridden into a write needs a private key with write.
        let q = format!("/v1/maps/x?key={pk}");
        let origin: (&[u8], &[u8]) = (b"origin", b"https://app.example.com");
        assert_eq!(status(&call(&p, "GET", &q, peer, &[origin])), 200);
        let d = call(&p, "GET", &q, peer, &[origin, over(b"POST")]);
        assert_eq!(reason(&d), Some("private_key_required"));
        let d = call(&p, "GET", "/v1/maps/x", peer, &[key, over(b"DELETE")]);
        assert_eq!(reason(&d), Some("write_needed"));
        // write_only without write: refused on the wire method already, whatever the override.
        let d = call(&p, "POST", "/v1/admin", peer, &[key, over(b"GET")]);
        assert_eq!(reason(&d), Some("write_needed"));
    }

    #[test]
    fn identity_and_api_headers_in_trailers_are_removed() {
        let p = api_policy();
        let trailers: Vec<(&[u8], &[u8])> = vec![
            (b"x-wsgiorg-developer-user", b"mallory"),
            (b"X_Wsgiorg_Developer_User", b"mallory"),
            (b"x-devgate-organization", b"other"),
            (b"x_devgate_project", b"other"),
            (b"x-devgate-key-kind", b"private_key"),
            (b"x-devgate-key-id", b"k"),
            (b"x-devgate-count", b"false"),
            (b"x_api_key", b"dgsk_x"),
            (b"grpc-status", b"0"),
            (b"x-checksum", b"abc"),
        ];
        let removed = trailer_removals(&p, &trailers);
        assert_eq!(removed.len(), 8, "{removed:?}");
        assert!(!removed.contains(&&b"grpc-status"[..]) && !removed.contains(&&b"x-checksum"[..]));
        // Without `api`, only the identity header.
        let p = token_policy("{}");
        assert_eq!(
            trailer_removals(&p, &trailers),
            vec![
                &b"x-wsgiorg-developer-user"[..],
                b"X_Wsgiorg_Developer_User"
            ]
        );
        assert!(trailer_removals(&p, &[(b"grpc-status", b"0")]).is_empty());
    }

    #[test]
    fn wrong_product_is_403() {
        let json = format!(
            r#"{{"protect": [], "keys": [{{"id": "k1", "secret": "{SECRET}"}}],
                "api": {{"routes": [{{"prefix": "/v1/geo", "product": "geocoding"}}]}}}}"#
        );
        let p = crate::config::parse_policy(json.as_bytes()).unwrap();
        let sk = api_key_text(KeyKind::Private, "sk1", false, &[], &[]);
        let d = call(
            &p,
            "GET",
            "/v1/geo",
            "192.0.2.1:5",
            &[(b"x-api-key", sk.as_bytes())],
        );
        assert_eq!((status(&d), reason(&d)), (403, Some("wrong_product")));
    }
}

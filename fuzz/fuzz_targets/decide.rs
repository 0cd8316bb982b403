//! The whole decision (src/core/mod.rs `decide`): fixed policies with tokens, API keys, a
//! login session cookie and network rules; arbitrary request facts (peer string, header pairs as bytes, `:method`,
//! `:path`, `now`), with real credentials from a pool minted at start-up spliced in.
//!
//! Invariants (each checked against a reference written here, not against devgate's own
//! helpers):
//! * never panics;
//! * **an identity only from a valid credential or an allowed peer**: `Network` only for a
//!   socket peer (std's `SocketAddr` grammar; port 0 only when forwarded addresses are
//!   trusted) inside `allow` and outside `deny`, named by its IP; `Bearer`/`Cookie` only when
//!   the request carries, in that place, a pool token that is a developer token signed by a
//!   configured key, unexpired at `now` (leeway included), bound to this peer if bound, from
//!   `allow_from` if set, and no other credential;
//! * a protected path is never allowed without an identity; an API route only with a pool
//!   key of the admitted kind;
//! * **the upstream sees the identity header only when allowed**: after the edits (removals
//!   case-insensitive, `_` = `-`, as an upstream reads names), the identity header is there
//!   exactly once with the identity's name if there is one, and in no spelling otherwise;
//!   the API headers likewise only with an admitted key; a credential devgate used is gone
//!   when `strip_credential`/`strip_key` say so;
//! * **no secret in any output**: the test keys' bytes or base64url never appear in the
//!   decision's `Debug`, the response, the edits or the reason code;
//! * a login session (fourth policy) names a developer only from a pool session token for
//!   that cookie, signed, unexpired, from `login.allow_from`, with no token beside it; the
//!   session cookie never reaches the upstream;
//! * deny responses are 400/401/403 with a generic body; `forbid` never answers 401.
#![no_main]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use devgate::config::parse_policy;
use devgate::core::policy::Policy;
use devgate::core::apikey::{self, KeyKind, NewKey};
use devgate::core::path::canonicalize;
use devgate::core::token::{mint, Claims, Key, Purpose, Secret};
use devgate::core::{decide, Decision, Request, Source};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = common::NOW;

/// A pool token and what a correct verifier knows of it.
struct PoolToken {
    text: String,
    sub: String,
    kid: &'static str,
    /// Signed with the configured secret of `kid` (false: another secret under that id).
    genuine: bool,
    developer: bool,
    /// `dgc` of a session token.
    dgc: Option<&'static str>,
    iat: u64,
    exp: u64,
    cip: Option<IpAddr>,
}

struct PoolKey {
    text: String,
    kind: KeyKind,
    org: &'static str,
}

/// Network reference: (v6, base bits, prefix) lists, written out by hand.
type Nets = &'static [(bool, u128, u32)];

struct Fixture {
    policy: Policy,
    header: &'static str,
    allow: Nets,
    deny: Nets,
    trust_forwarded: bool,
    kids: &'static [&'static str],
    bearer: bool,
    cookie: Option<&'static str>,
    allow_from: Option<Nets>,
    bind_peer: bool,
    leeway: u64,
    strip_credential: bool,
    forbid: bool,
    api: bool,
    session: Option<SessionRef>,
}

/// The login form's session cookie, as configured.
struct SessionRef {
    cookie: &'static str,
    allow_from: Option<Nets>,
    bind_peer: bool,
    leeway: u64,
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u128 {
    ((a as u128) << 24) | ((b as u128) << 16) | ((c as u128) << 8) | d as u128
}

const F0_ALLOW: Nets = &[
    (false, v4(127, 0, 0, 0), 8),
    (true, 1, 128),
    (false, v4(10, 1, 0, 0), 16),
];
const F0_DENY: Nets = &[(false, v4(10, 1, 2, 0), 24)];
const F1_ALLOW: Nets = &[(false, v4(192, 0, 2, 0), 24)];
const F3_ALLOW: Nets = &[(false, v4(127, 0, 0, 1), 32)];
const F3_LOGIN_FROM: Nets = &[(false, v4(10, 0, 0, 0), 8), (true, 1, 128)];
/// A bcrypt hash (cost 4) from devgate's own tests; the password does not matter here.
const USERS_HASH: &str = "$2y$04$JZvtNra6rAJeuvkYEvBT1OJU4Xart.tMqynAn8LVPA77/z4HIdAEq";
const F1_ALLOW_FROM: Nets = &[
    (false, v4(10, 0, 0, 0), 8),
    (false, v4(198, 51, 100, 0), 24),
];

fn in_nets(nets: Nets, ip: IpAddr) -> bool {
    let (v6, bits) = match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    };
    nets.iter().any(|&(nv6, base, prefix)| {
        let width = if nv6 { 128 } else { 32 };
        nv6 == v6 && (prefix == 0 || (bits >> (width - prefix)) == (base >> (width - prefix)))
    })
}

fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let (k1, k2) = (common::K1_B64, common::K2_B64);
        let p = |json: String| parse_policy(json.as_bytes()).expect("fixture policy");
        vec![
            Fixture {
                policy: p(format!(
                    r#"{{"network": {{"allow": ["127.0.0.0/8", "::1", "10.1.0.0/16"], "deny": ["10.1.2.0/24"]}},
                        "protect": ["/_debug/", {{"prefix": "/admin", "methods": ["POST", "DELETE"]}}],
                        "public": ["/_debug/health"],
                        "keys": [{{"id": "k1", "secret": "{k1}"}}, {{"id": "k2", "secret": "{k2}"}}],
                        "tokens": {{}}}}"#
                )),
                header: "x-wsgiorg-developer-user",
                allow: F0_ALLOW,
                deny: F0_DENY,
                trust_forwarded: false,
                kids: &["k1", "k2"],
                bearer: true,
                cookie: Some("devgate_token"),
                allow_from: None,
                bind_peer: false,
                leeway: 30,
                strip_credential: true,
                forbid: false,
                api: false,
                session: None,
            },
            Fixture {
                policy: p(format!(
                    r#"{{"header": "X_Dev-User", "network": {{"allow": ["192.0.2.0/24"], "trust_forwarded": true}},
                        "unauthenticated": "forbid", "public": ["/healthz"],
                        "keys": [{{"id": "k2", "secret": "{k2}"}}],
                        "tokens": {{"cookie": "dev", "allow_from": ["10.0.0.0/8", "::ffff:198.51.100.0/120"],
                                    "strip_credential": false, "leeway_seconds": 0}}}}"#
                )),
                header: "x-dev-user",
                allow: F1_ALLOW,
                deny: &[],
                trust_forwarded: true,
                kids: &["k2"],
                bearer: true,
                cookie: Some("dev"),
                allow_from: Some(F1_ALLOW_FROM),
                bind_peer: false,
                leeway: 0,
                strip_credential: false,
                forbid: true,
                api: false,
                session: None,
            },
            Fixture {
                policy: p(format!(
                    r#"{{"network": {{"allow": ["::1"]}}, "protect": ["/_debug/"],
                        "keys": [{{"id": "k1", "secret": "{k1}"}}, {{"id": "k2", "secret": "{k2}"}}],
                        "tokens": {{"bind_peer": true, "cookie": null, "leeway_seconds": 300}},
                        "api": {{"routes": [{{"prefix": "/v1/maps", "product": "maps"}},
                                            {{"prefix": "/v1/search", "product": "maps", "mode": "read_only"}},
                                            {{"prefix": "/v1/admin", "product": "maps", "mode": "write_only", "methods": ["POST"]}}],
                                 "revoked": ["gone"], "internal_from": ["10.9.0.0/16"]}}}}"#
                )),
                header: "x-wsgiorg-developer-user",
                allow: &[(true, 1, 128)],
                deny: &[],
                trust_forwarded: false,
                kids: &["k1", "k2"],
                bearer: true,
                cookie: None,
                allow_from: None,
                bind_peer: true,
                leeway: 300,
                strip_credential: true,
                forbid: false,
                api: true,
                session: None,
            },
            Fixture {
                policy: p(format!(
                    r#"{{"network": {{"allow": ["127.0.0.1"]}}, "protect": ["/_debug/"],
                        "keys": [{{"id": "k1", "secret": "{k1}"}}, {{"id": "k2", "secret": "{k2}"}}],
                        "tokens": {{}},
                        "login": {{"users": "alice:{USERS_HASH}", "allow_from": ["10.0.0.0/8", "::1"],
                                   "leeway_seconds": 0}}}}"#
                )),
                header: "x-wsgiorg-developer-user",
                allow: F3_ALLOW,
                deny: &[],
                trust_forwarded: false,
                kids: &["k1", "k2"],
                bearer: true,
                cookie: Some("devgate_token"),
                allow_from: None,
                bind_peer: false,
                leeway: 30,
                strip_credential: true,
                forbid: false,
                api: false,
                session: Some(SessionRef {
                    cookie: "devgate_session",
                    allow_from: Some(F3_LOGIN_FROM),
                    bind_peer: false,
                    leeway: 0,
                }),
            },
        ]
    })
}

fn tokens() -> &'static [PoolToken] {
    static T: OnceLock<Vec<PoolToken>> = OnceLock::new();
    T.get_or_init(|| {
        let other = |id: &str, byte: u8| Key {
            id: id.into(),
            secret: Secret::from_bytes(vec![byte; 32]).expect("secret"),
        };
        type Case = (
            &'static str,
            Key,
            &'static str,
            bool,
            Option<&'static str>,
            u64,
            u64,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            // sub, key, kid, genuine, session cookie (None: a developer token), iat, exp, cip
            (
                "alice",
                common::k1(),
                "k1",
                true,
                None,
                NOW - 10,
                NOW + 3600,
                None,
            ),
            (
                "bob",
                common::k2(),
                "k2",
                true,
                None,
                NOW - 7200,
                NOW - 3600,
                None,
            ),
            (
                "carol",
                common::k1(),
                "k1",
                true,
                None,
                NOW - 10,
                NOW + 3600,
                Some("10.1.1.1"),
            ),
            (
                "dave",
                common::k1(),
                "k1",
                true,
                Some("devgate_token"),
                NOW - 10,
                NOW + 3600,
                None,
            ),
            (
                "erin",
                other("k1", 7),
                "k1",
                false,
                None,
                NOW - 10,
                NOW + 3600,
                None,
            ),
            (
                "frank",
                other("k9", 9),
                "k9",
                true,
                None,
                NOW - 10,
                NOW + 3600,
                None,
            ),
            (
                "grace",
                common::k2(),
                "k2",
                true,
                None,
                NOW + 100,
                NOW + 3600,
                Some("::1"),
            ),
            (
                "heidi",
                common::k2(),
                "k2",
                true,
                None,
                NOW - 10,
                NOW + 3600,
                Some("10.1.1.1"),
            ),
            (
                "x-wsgiorg-developer-user: root",
                common::k1(),
                "k1",
                true,
                None,
                NOW - 10,
                NOW + 3600,
                None,
            ),
            (
                "sam",
                common::k1(),
                "k1",
                true,
                Some("devgate_session"),
                NOW - 10,
                NOW + 3600,
                None,
            ),
            (
                "sue",
                common::k2(),
                "k2",
                true,
                Some("devgate_session"),
                NOW - 7200,
                NOW - 60,
                None,
            ),
            (
                "sid",
                common::k1(),
                "k1",
                true,
                Some("devgate_session"),
                NOW - 10,
                NOW + 3600,
                Some("10.1.1.1"),
            ),
            (
                "sly",
                other("k2", 5),
                "k2",
                false,
                Some("devgate_session"),
                NOW - 10,
                NOW + 3600,
                None,
            ),
        ];
        cases
            .into_iter()
            .map(|(sub, key, kid, genuine, dgc, iat, exp, cip)| {
                let cip: Option<IpAddr> = cip.map(|c| c.parse().expect("ip"));
                let developer = dgc.is_none();
                let claims = Claims {
                    sub: sub.to_string(),
                    purpose: if developer {
                        Purpose::Developer
                    } else {
                        Purpose::Session
                    },
                    cookie: dgc.map(str::to_string),
                    cip,
                    jti: None,
                    iat: Some(iat),
                    nbf: None,
                    exp,
                };
                PoolToken {
                    text: mint(&claims, &key),
                    sub: sub.to_string(),
                    kid,
                    genuine,
                    developer,
                    dgc,
                    iat,
                    exp,
                    cip,
                }
            })
            .collect()
    })
}

fn api_keys() -> &'static [PoolKey] {
    static K: OnceLock<Vec<PoolKey>> = OnceLock::new();
    K.get_or_init(|| {
        let maps = vec!["maps".to_string()];
        let other = vec!["geo".to_string()];
        let referers = vec!["*.example.com".to_string()];
        let ips = vec!["10.9.0.0/16".to_string()];
        let none: Vec<String> = vec![];
        // kind, id, org, products, write, referers, ips
        type Case<'a> = (
            KeyKind,
            &'a str,
            &'static str,
            &'a [String],
            bool,
            &'a [String],
            &'a [String],
        );
        let cases: Vec<Case> = vec![
            (
                KeyKind::Public,
                "pk1",
                "org-pub",
                &maps,
                false,
                &referers,
                &none,
            ),
            (
                KeyKind::Public,
                "pk2",
                "org-open",
                &maps,
                false,
                &none,
                &none,
            ),
            (KeyKind::Private, "sk1", "org-w", &maps, true, &none, &ips),
            (
                KeyKind::Private,
                "sk2",
                "org-ro",
                &maps,
                false,
                &none,
                &none,
            ),
            (
                KeyKind::Private,
                "gone",
                "org-gone",
                &maps,
                true,
                &none,
                &none,
            ),
            (
                KeyKind::Private,
                "sk3",
                "org-geo",
                &other,
                true,
                &none,
                &none,
            ),
        ];
        cases
            .into_iter()
            .map(|(kind, id, org, products, write, referers, ips)| PoolKey {
                text: apikey::mint(
                    &NewKey {
                        kind,
                        id,
                        org,
                        project: "proj",
                        products,
                        write,
                        referers,
                        ips,
                        iat: NOW - 10,
                        exp: Some(NOW + 86_400),
                    },
                    &common::k1(),
                )
                .expect("pool key"),
                kind,
                org,
            })
            .collect()
    })
}

// ---- the fuzzed request ----------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
enum PeerC {
    None,
    Known(u8, u16),
    Raw(Vec<u8>),
}

const PEERS: &[&str] = &[
    "127.0.0.1",
    "10.1.1.1",
    "10.1.2.3",
    "192.0.2.7",
    "10.9.1.1",
    "198.51.100.9",
    "203.0.113.5",
    "[::1]",
    "[::ffff:10.1.1.1]",
    "[::ffff:127.0.0.1]",
    "[2001:db8::1]",
    "[::ffff:192.0.2.7]",
];

#[derive(Arbitrary, Debug)]
enum Text {
    Raw(Vec<u8>),
    Token(u8, u8),
    Key(u8, u8),
    Concat(Vec<u8>, u8, Vec<u8>),
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "PROPFIND",
];
const PATHS: &[&str] = &[
    "/",
    "/_debug/",
    "/_debug",
    "/_DEBUG/x",
    "/_debug/health",
    "/_debug/healthz",
    "/admin",
    "/admin/x",
    "/healthz",
    "/v1/maps/tiles",
    "/v1/search",
    "/v1/admin",
    "/v1/geo",
    "/%5Fdebug/",
    "/x/../_debug/",
    "/_debug./",
    "//_debug//",
    "/_debug;a=b/",
    "/\\_debug\\",
    "/v1/maps/../admin",
    "/healthz/../_debug/",
    "/_debug%2F",
    "/_debug%3F",
    "/.devgate/login",
];
const NAMES: &[&str] = &[
    "authorization",
    "cookie",
    "x-api-key",
    "X-Api-Key",
    "x_api_key",
    "x-wsgiorg-developer-user",
    "X_Wsgiorg_Developer_User",
    "x-dev-user",
    "X-DEV_USER",
    "origin",
    "referer",
    "x-forwarded-for",
    "x-devgate-project",
    "X_Devgate_Organization",
    "x-devgate-count",
    ":authority",
    ":path",
    ":method",
    "Authorization",
];

#[derive(Arbitrary, Debug)]
struct Input {
    fixture: u8,
    peer: PeerC,
    method: Option<Text>,
    path: Option<(Text, Option<Text>)>,
    headers: Vec<(Result<u8, Vec<u8>>, Text)>,
    now: Result<i32, u64>,
}

fn render(t: &Text, pick: &[&str]) -> Vec<u8> {
    let toks = tokens();
    let keys = api_keys();
    match t {
        Text::Raw(b) => b.clone(),
        Text::Token(i, form) => {
            let tok = &toks[usize::from(*i) % toks.len()].text;
            match form % 10 {
                0 => format!("Bearer {tok}"),
                1 => format!("bearer   {tok} "),
                2 => format!("devgate_token={tok}"),
                3 => format!("a=1; devgate_token=\"{tok}\"; b=2"),
                4 => format!("dev={tok}"),
                5 => format!("Bearer {tok}, Basic Zm9vOmJhcg=="),
                6 => tok.clone(),
                7 => format!("devgate_session={tok}"),
                8 => format!("x=1; devgate_session={tok}; devgate_token={tok}"),
                _ => format!("devgate_token={tok}; dev={tok}"),
            }
            .into_bytes()
        }
        Text::Key(i, form) => {
            let k = &keys[usize::from(*i) % keys.len()].text;
            match form % 5 {
                0 => k.clone(),
                1 => format!("?key={k}"),
                2 => format!("?a=1&private_key={k}&b=2"),
                3 => format!("?k%65y={k}"),
                _ => format!("{k}, {k}"),
            }
            .into_bytes()
        }
        Text::Concat(a, i, b) => {
            let mut out = a.clone();
            out.extend_from_slice(pick[usize::from(*i) % pick.len()].as_bytes());
            out.extend_from_slice(b);
            out
        }
    }
}

// ---- the reference ---------------------------------------------------------------------------

/// The socket peer a correct reader sees: std's grammar, no scope id, 5-digit port at most.
fn reference_peer(raw: Option<&[u8]>) -> Option<(IpAddr, u16)> {
    let s = std::str::from_utf8(raw?).ok()?;
    if s.is_empty() || s.len() > 64 || s.contains('%') || s.rsplit(':').next()?.len() > 5 {
        return None;
    }
    let sa: SocketAddr = s.parse().ok()?;
    let ip = match sa.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    Some((ip, sa.port()))
}

fn fold(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|&b| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect()
}

/// The values of cookie `name` in the `cookie` headers (RFC 6265 pairs, trimmed, unquoted).
fn cookie_values<'a>(name: &str, headers: &[(&'a [u8], &'a [u8])]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for (n, v) in headers {
        if *n != b"cookie" {
            continue;
        }
        for pair in v.split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                if pair[..eq].trim_ascii() == name.as_bytes() {
                    let mut val = pair[eq + 1..].trim_ascii();
                    if val.len() >= 2 && val[0] == b'"' && val[val.len() - 1] == b'"' {
                        val = &val[1..val.len() - 1];
                    }
                    out.push(val);
                }
            }
        }
    }
    out
}

/// Bearer tokens and devgate-cookie values the request carries, as the spec reads them.
fn credentials<'a>(f: &Fixture, headers: &[(&'a [u8], &'a [u8])]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for (n, v) in headers {
        if f.bearer && *n == b"authorization" {
            for e in v.split(|&b| b == b',') {
                let e = e.trim_ascii();
                if e.len() >= 7 && e[..7].eq_ignore_ascii_case(b"bearer ") {
                    out.push(e[7..].trim_ascii());
                }
            }
        }
    }
    if let Some(c) = f.cookie {
        out.extend(cookie_values(c, headers));
    }
    out
}

fn check(f: &Fixture, req: &Request<'_>, d: &Decision) {
    let debug = format!("{d:?}");
    common::assert_no_secret("Decision Debug", debug.as_bytes());
    let peer = reference_peer(req.peer);
    let socket_ip = peer.and_then(|(ip, port)| (port != 0 || f.trust_forwarded).then_some(ip));
    let path = req
        .headers
        .iter()
        .find(|(n, _)| *n == b":path")
        .map(|(_, v)| *v);
    let method = req
        .headers
        .iter()
        .find(|(n, _)| *n == b":method")
        .map_or(&b""[..], |(_, v)| *v);

    match d {
        Decision::Deny { reason, response } => {
            let code = reason.code();
            common::assert_no_secret("reason", code.as_bytes());
            assert!(matches!(response.status, 400 | 401 | 403), "{response:?}");
            assert!(matches!(
                response.body,
                "Bad Request\n" | "Unauthorized\n" | "Forbidden\n"
            ));
            if f.forbid {
                assert_ne!(response.status, 401, "forbid mode answered 401");
            }
            if response.status == 401 {
                assert!(response
                    .headers
                    .iter()
                    .any(|(n, v)| *n == "www-authenticate" && v == "x-wsgiorg.developer_user"));
            }
            for (_, v) in &response.headers {
                common::assert_no_secret("response header", v.as_bytes());
            }
        }
        Decision::Allow {
            identity,
            api_key,
            edits,
            ..
        } => {
            for (n, v) in &edits.set {
                common::assert_no_secret("edit", n.as_bytes());
                common::assert_no_secret("edit", v);
            }
            let canonical = path
                .and_then(|p| canonicalize(p).ok())
                .expect("allowed => a readable path");
            if f.policy.is_protected(method, &canonical) {
                assert!(
                    identity.is_some(),
                    "protected path allowed without an identity"
                );
            }
            if let Some(id) = identity {
                match id.source {
                    Source::Network => {
                        let ip = socket_ip.expect("network developer without a socket peer");
                        assert!(
                            in_nets(f.allow, ip) && !in_nets(f.deny, ip),
                            "peer {ip} is not allowed"
                        );
                        assert_eq!(id.name, ip.to_string());
                    }
                    Source::Bearer | Source::Cookie => {
                        let creds = credentials(f, req.headers);
                        let mut distinct = creds.clone();
                        distinct.sort();
                        distinct.dedup();
                        assert_eq!(
                            distinct.len(),
                            1,
                            "identity from {} credentials",
                            distinct.len()
                        );
                        let t = tokens()
                            .iter()
                            .find(|t| t.text.as_bytes() == distinct[0])
                            .expect("FORGERY: an identity from a token that is not in the pool");
                        assert!(
                            t.genuine && t.developer && f.kids.contains(&t.kid),
                            "bad token admitted: {}",
                            t.sub
                        );
                        assert_eq!(id.name, t.sub);
                        assert!(
                            req.now < t.exp.saturating_add(f.leeway),
                            "expired token admitted"
                        );
                        assert!(
                            t.iat <= req.now.saturating_add(f.leeway),
                            "future token admitted"
                        );
                        assert!(t.sub.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                        if let Some(cip) = t.cip {
                            assert_eq!(socket_ip, Some(cip), "bound token from another peer");
                        }
                        if f.bind_peer {
                            assert!(t.cip.is_some(), "unbound token with bind_peer");
                        }
                        if let Some(nets) = f.allow_from {
                            assert!(
                                socket_ip.is_some_and(|ip| in_nets(nets, ip)),
                                "token outside allow_from"
                            );
                        }
                    }
                    Source::Session => {
                        let s = f
                            .session
                            .as_ref()
                            .expect("a session without a login policy");
                        let values = cookie_values(s.cookie, req.headers);
                        let mut distinct = values.clone();
                        distinct.sort();
                        distinct.dedup();
                        assert_eq!(
                            distinct.len(),
                            1,
                            "session from {} cookie values",
                            distinct.len()
                        );
                        assert!(
                            credentials(f, req.headers).is_empty(),
                            "session and a token at once"
                        );
                        let t = tokens()
                            .iter()
                            .find(|t| t.text.as_bytes() == distinct[0])
                            .expect("FORGERY: a session that is not in the pool");
                        assert!(
                            t.genuine && f.kids.contains(&t.kid),
                            "bad session admitted: {}",
                            t.sub
                        );
                        assert_eq!(
                            t.dgc,
                            Some(s.cookie),
                            "session bound to another cookie admitted"
                        );
                        assert_eq!(id.name, t.sub);
                        assert!(
                            req.now < t.exp.saturating_add(s.leeway),
                            "expired session admitted"
                        );
                        assert!(
                            t.iat <= req.now.saturating_add(s.leeway),
                            "future session admitted"
                        );
                        if let Some(cip) = t.cip {
                            assert_eq!(socket_ip, Some(cip), "bound session from another peer");
                        }
                        if s.bind_peer {
                            assert!(t.cip.is_some());
                        }
                        if let Some(nets) = s.allow_from {
                            assert!(
                                socket_ip.is_some_and(|ip| in_nets(nets, ip)),
                                "session outside allow_from"
                            );
                        }
                    }
                }
            }
            if let Some(kind) = api_key {
                assert!(f.api);
                let text = req
                    .headers
                    .iter()
                    .map(|(_, v)| String::from_utf8_lossy(v))
                    .collect::<Vec<_>>()
                    .join("\n");
                let k = api_keys()
                    .iter()
                    .find(|k| k.kind == *kind && text.contains(&k.text))
                    .expect("FORGERY: API access without a pool key");
                assert!(!k.text.is_empty() && !k.org.is_empty());
            }

            // The upstream's view: removals (as an upstream folds names), then the sets.
            let removed: Vec<Vec<u8>> = edits.remove.iter().map(|n| fold(n)).collect();
            let mut upstream: Vec<(Vec<u8>, Vec<u8>)> = req
                .headers
                .iter()
                .filter(|(n, _)| !removed.contains(&fold(n)))
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            for (n, v) in &edits.set {
                upstream.retain(|(m, _)| fold(m) != fold(n.as_bytes()));
                upstream.push((n.as_bytes().to_vec(), v.clone()));
            }
            let ident: Vec<&Vec<u8>> = upstream
                .iter()
                .filter(|(n, _)| fold(n) == f.header.as_bytes())
                .map(|(_, v)| v)
                .collect();
            match identity {
                Some(id) => assert_eq!(
                    ident,
                    vec![&id.name.clone().into_bytes()],
                    "identity header upstream"
                ),
                None => assert!(
                    ident.is_empty(),
                    "SPOOF: an identity header reached the upstream without a developer"
                ),
            }
            if f.api && api_key.is_none() {
                for h in [
                    "x-devgate-organization",
                    "x-devgate-project",
                    "x-devgate-key-kind",
                    "x-devgate-key-id",
                    "x-devgate-count",
                ] {
                    assert!(
                        !upstream.iter().any(|(n, _)| fold(n) == h.as_bytes()),
                        "SPOOF: {h} reached the upstream without an API key"
                    );
                }
            }
            if let Some(id) = identity {
                if matches!(id.source, Source::Bearer | Source::Cookie) && f.strip_credential {
                    let used = tokens()
                        .iter()
                        .find(|t| t.sub == id.name)
                        .map(|t| t.text.as_bytes())
                        .unwrap_or_default();
                    let view: Vec<(&[u8], &[u8])> = upstream
                        .iter()
                        .map(|(n, v)| (n.as_slice(), v.as_slice()))
                        .collect();
                    for c in credentials(f, &view) {
                        assert_ne!(c, used, "the credential reached the upstream");
                    }
                }
            }
            if let Some(s) = &f.session {
                let view: Vec<(&[u8], &[u8])> = upstream
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice()))
                    .collect();
                assert!(
                    cookie_values(s.cookie, &view).is_empty(),
                    "the session cookie reached the upstream"
                );
            }
            if api_key.is_some() {
                if let Some((_, p)) = upstream.iter().find(|(n, _)| n == b":path") {
                    let q = p.splitn(2, |&b| b == b'?').nth(1).unwrap_or_default();
                    assert!(
                        devgate::core::query::find(q, &["key", "private_key"]).is_empty(),
                        "the API key reached the upstream in the query"
                    );
                }
                assert!(
                    !upstream.iter().any(|(n, _)| fold(n) == b"x-api-key"),
                    "X-Api-Key reached the upstream"
                );
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    common::set_input(data);
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let fx = fixtures();
    let f = &fx[usize::from(input.fixture) % fx.len()];
    let peer: Option<Vec<u8>> = match &input.peer {
        PeerC::None => None,
        PeerC::Known(i, port) => {
            Some(format!("{}:{port}", PEERS[usize::from(*i) % PEERS.len()]).into_bytes())
        }
        PeerC::Raw(b) => Some(b.clone()),
    };
    let mut owned: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if let Some(m) = &input.method {
        owned.push((b":method".to_vec(), render(m, METHODS)));
    }
    if let Some((p, q)) = &input.path {
        let mut path = render(p, PATHS);
        if let Some(q) = q {
            path.extend(render(q, &["?key=", "&private_key=", "?a=b"]));
        }
        owned.push((b":path".to_vec(), path));
    }
    for (name, value) in input.headers.iter().take(12) {
        let name = match name {
            Ok(i) => NAMES[usize::from(*i) % NAMES.len()].as_bytes().to_vec(),
            Err(raw) => raw.clone(),
        };
        owned.push((name, render(value, NAMES)));
    }
    let headers: Vec<(&[u8], &[u8])> = owned
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let now = match input.now {
        Ok(delta) => NOW.saturating_add_signed(i64::from(delta)),
        Err(raw) => raw,
    };
    let req = Request {
        peer: peer.as_deref(),
        headers: &headers,
        now,
    };
    let d = decide(&f.policy, &req);
    check(f, &req, &d);
});

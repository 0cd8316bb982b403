//! The fixed policies the `decide` target runs under, and the pools of real credentials it
//! splices into requests: tokens and API keys minted at start-up with the test keys, each with
//! what a correct verifier knows of it.

use std::net::IpAddr;
use std::sync::OnceLock;

use devgate::config::parse_policy;
use devgate::core::apikey::{self, KeyKind, NewKey};
use devgate::core::policy::Policy;
use devgate::core::token::{mint, Claims, Key, Purpose, Secret};

use crate::common::{self, NOW};

/// A pool token and what a correct verifier knows of it.
pub struct PoolToken {
    pub text: String,
    pub sub: String,
    pub kid: &'static str,
    /// Signed with the configured secret of `kid` (false: another secret under that id).
    pub genuine: bool,
    pub developer: bool,
    /// `dgc` of a session token.
    pub dgc: Option<&'static str>,
    pub iat: u64,
    pub exp: u64,
    pub cip: Option<IpAddr>,
}

pub struct PoolKey {
    pub text: String,
    pub kind: KeyKind,
    pub org: &'static str,
}

/// Network reference: (v6, base bits, prefix) lists, written out by hand.
pub type Nets = &'static [(bool, u128, u32)];

pub struct Fixture {
    pub policy: Policy,
    pub header: &'static str,
    pub allow: Nets,
    pub deny: Nets,
    pub trust_forwarded: bool,
    pub kids: &'static [&'static str],
    pub bearer: bool,
    pub cookie: Option<&'static str>,
    pub allow_from: Option<Nets>,
    pub bind_peer: bool,
    pub leeway: u64,
    pub strip_credential: bool,
    pub forbid: bool,
    pub api: bool,
    pub session: Option<SessionRef>,
}

/// The login form's session cookie, as configured.
pub struct SessionRef {
    pub cookie: &'static str,
    pub allow_from: Option<Nets>,
    pub bind_peer: bool,
    pub leeway: u64,
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
pub fn fixtures() -> &'static [Fixture] {
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

pub fn tokens() -> &'static [PoolToken] {
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

pub fn api_keys() -> &'static [PoolKey] {
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

//! The edge sources: the developer mapping, the claims of a verified assertion (on payload
//! bytes), finding assertions and keys, trusted proxy headers, `identify`'s order and strip
//! list, and the decision around them (`network.deny` still wins).

use std::cell::RefCell;
use std::net::IpAddr;

use super::assertion::{check, check_claims, Found};
use super::*;
use crate::config::parse_policy;
use crate::core::codes::Source;
use crate::core::jose::Verified;
use crate::core::policy::Policy;
use crate::core::token::TokenError;
use crate::core::{decide_views, Decision, Views};

const NOW: u64 = 1_700_000_000;

fn devs(json: serde_json::Value) -> Developers {
    let mut d = Developers::default();
    let list = |k: &str| -> Vec<String> {
        json.get(k)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    d.names = list("names");
    d.domains = list("domains");
    d.groups = list("groups");
    d.anyone = json.get("anyone").is_some();
    if !d.groups.is_empty() {
        d.groups_claim = Some("groups".into());
    }
    d
}

#[test]
fn developers_by_name_domain_group_or_anyone() {
    let d = devs(serde_json::json!({"names": ["Alice@Example.com", "bob"]}));
    assert!(d.admits("alice@example.COM", &[]));
    assert!(d.admits("bob", &[]));
    assert!(!d.admits("BOB", &[]), "a plain name is exact");
    assert!(!d.admits("alice@example.com.evil", &[]));

    let d = devs(serde_json::json!({"domains": ["example.com"]}));
    assert!(d.admits("carol@example.com", &[]));
    assert!(d.admits("carol@EXAMPLE.com", &[]));
    for no in [
        "carol@evil-example.com",
        "carol@a.example.com",
        "carol@example.com@evil.com",
        "carol@example.com.evil.com",
        "@example.com",
        "example.com",
        "carol@",
    ] {
        assert!(!d.admits(no, &[]), "{no}");
    }

    let d = devs(serde_json::json!({"groups": ["devs"]}));
    assert!(d.admits("x", &["ops", "devs"]));
    assert!(!d.admits("x", &["Devs"]));
    assert!(!d.admits("x", &[]));

    assert!(devs(serde_json::json!({"anyone": true})).admits("anyone at all", &[]));
    assert!(!Developers::default().admits("alice@example.com", &[]));
}

fn source(profile: Profile) -> AssertionSource {
    AssertionSource {
        name: "edge".into(),
        profile,
        carrier: Carrier::Header(crate::core::headers::HeaderName::parse("x-assert").unwrap()),
        algorithms: vec![crate::core::jose::Alg::Es256],
        keys: KeyLocation::Inline(Default::default()),
        issuer: "https://issuer.example".into(),
        audiences: vec!["app-1".into(), "app-2".into()],
        claim: "email".into(),
        leeway: 30,
        signer: None,
        padded: false,
        developers: devs(serde_json::json!({"domains": ["example.com"], "groups": ["devs"]})),
        allow_from: None,
    }
}

fn verified(payload: serde_json::Value) -> Verified {
    Verified {
        payload: serde_json::to_vec(&payload).unwrap(),
        signer: None,
        client: None,
    }
}

/// What `check_claims` answers.
type Claimed = Result<(Identity, u64), Reason>;

#[test]
fn claims_table() {
    use serde_json::json;
    let src = source(Profile::Oidc);
    let ok = |name: &str| {
        Ok((
            Identity {
                name: name.into(),
                source: Source::Assertion,
            },
            NOW + 60,
        ))
    };
    let base = json!({"iss": "https://issuer.example", "aud": "app-1", "exp": NOW + 60,
                      "email": "alice@example.com"});
    let with = |k: &str, v: serde_json::Value| {
        let mut p = base.clone();
        p[k] = v;
        p
    };
    let without = |k: &str| {
        let mut p = base.clone();
        p.as_object_mut().unwrap().remove(k);
        p
    };
    let expired = Reason::Token(TokenError::Expired);
    let early = Reason::Token(TokenError::NotYetValid);
    let cases: Vec<(&str, serde_json::Value, Claimed)> = vec![
        ("good", base.clone(), ok("alice@example.com")),
        (
            "aud array",
            with("aud", json!(["other", "app-2"])),
            ok("alice@example.com"),
        ),
        (
            "exp fractional",
            with("exp", json!((NOW + 60) as f64 + 0.5)),
            ok("alice@example.com"),
        ),
        (
            "iss other",
            with("iss", json!("https://evil.example")),
            Err(Reason::WrongIssuer),
        ),
        ("iss missing", without("iss"), Err(Reason::WrongIssuer)),
        (
            "iss a number",
            with("iss", json!(1)),
            Err(Reason::WrongIssuer),
        ),
        (
            "aud other",
            with("aud", json!("app-3")),
            Err(Reason::WrongAudience),
        ),
        (
            "aud array other",
            with("aud", json!(["app-3"])),
            Err(Reason::WrongAudience),
        ),
        ("aud missing", without("aud"), Err(Reason::WrongAudience)),
        ("aud a number", with("aud", json!(7)), Err(Reason::BadClaim)),
        (
            "aud array of numbers",
            with("aud", json!(["app-1", 7])),
            Err(Reason::BadClaim),
        ),
        ("exp missing", without("exp"), Err(Reason::BadClaim)),
        (
            "exp a string",
            with("exp", json!("soon")),
            Err(Reason::BadClaim),
        ),
        (
            "exp negative",
            with("exp", json!(-1)),
            Err(Reason::BadClaim),
        ),
        (
            "exp past leeway",
            with("exp", json!(NOW - 30)),
            Err(expired),
        ),
        ("nbf past leeway", with("nbf", json!(NOW + 31)), Err(early)),
        ("iat past leeway", with("iat", json!(NOW + 31)), Err(early)),
        (
            "nbf a string",
            with("nbf", json!("now")),
            Err(Reason::BadClaim),
        ),
        ("iat null", with("iat", json!(null)), Err(Reason::BadClaim)),
        (
            "email a number",
            with("email", json!(42)),
            Err(Reason::BadClaim),
        ),
        (
            "email an array",
            with("email", json!(["alice@example.com"])),
            Err(Reason::BadClaim),
        ),
        (
            "email with a newline",
            with("email", json!("a@example.com\nx: y")),
            Err(Reason::BadClaim),
        ),
        ("email missing", without("email"), Err(Reason::BadClaim)),
        (
            "not a developer",
            with("email", json!("eve@evil-example.com")),
            Err(Reason::NotADeveloper),
        ),
        (
            "groups a string",
            with("groups", json!("devs")),
            Err(Reason::BadClaim),
        ),
        (
            "groups of numbers",
            with("groups", json!([1])),
            Err(Reason::BadClaim),
        ),
    ];
    for (what, payload, want) in cases {
        assert_eq!(check_claims(&src, &verified(payload), NOW), want, "{what}");
    }
    // Within the leeway on each side.
    let p = with("exp", json!(NOW - 29));
    assert!(check_claims(&src, &verified(p), NOW).is_ok());
    let p = with("nbf", json!(NOW + 30));
    assert!(check_claims(&src, &verified(p), NOW).is_ok());
    // A member of a listed group, whatever the name's domain.
    let mut p = with("email", json!("ops@elsewhere.org"));
    p["groups"] = json!(["ops", "devs"]);
    assert_eq!(
        check_claims(&src, &verified(p.clone()), NOW),
        ok("ops@elsewhere.org")
    );
    p["groups"] = json!(["ops"]);
    assert_eq!(
        check_claims(&src, &verified(p), NOW),
        Err(Reason::NotADeveloper)
    );
    // Not a JSON object.
    for raw in [&b"not json"[..], b"[1,2]", b""] {
        let v = Verified {
            payload: raw.to_vec(),
            signer: None,
            client: None,
        };
        assert_eq!(
            check_claims(&src, &v, NOW),
            Err(Reason::Token(TokenError::Malformed))
        );
    }
    // The developer's claim is configurable.
    let mut sub = source(Profile::Oidc);
    sub.claim = "sub".into();
    sub.developers = devs(serde_json::json!({"names": ["u-123"]}));
    let p = with("sub", json!("u-123"));
    assert_eq!(check_claims(&sub, &verified(p), NOW), ok("u-123"));
}

#[test]
fn alb_claims_check_the_signed_header() {
    use serde_json::json;
    let mut src = source(Profile::AwsAlb);
    src.signer = Some("arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/a/b".into());
    src.padded = true;
    // The ALB's payload has no `aud`: the signed header's `client` is the audience.
    let payload = json!({"iss": "https://issuer.example", "exp": NOW + 60,
                         "email": "alice@example.com"});
    let v = |signer: Option<&str>, client: Option<&str>| Verified {
        payload: serde_json::to_vec(&payload).unwrap(),
        signer: signer.map(str::to_string),
        client: client.map(str::to_string),
    };
    let arn = src.signer.clone();
    let arn = arn.as_deref();
    assert!(check_claims(&src, &v(arn, Some("app-2")), NOW).is_ok());
    assert_eq!(
        check_claims(
            &src,
            &v(Some("arn:aws:elasticloadbalancing:other"), Some("app-1")),
            NOW
        ),
        Err(Reason::WrongSigner)
    );
    assert_eq!(
        check_claims(&src, &v(None, Some("app-1")), NOW),
        Err(Reason::WrongSigner)
    );
    assert_eq!(
        check_claims(&src, &v(arn, Some("app-9")), NOW),
        Err(Reason::WrongAudience)
    );
    assert_eq!(
        check_claims(&src, &v(arn, None), NOW),
        Err(Reason::WrongAudience)
    );
}

/// Fetched keys and the cache as a test wants them, recording what the decision asked.
#[derive(Default)]
struct FakeKeys {
    ready: Option<crate::core::jose::PublicKeys>,
    want: bool,
    cached: Option<Identity>,
    wanted: RefCell<Vec<(usize, Option<String>)>>,
    looked_up: RefCell<Vec<usize>>,
}

impl EdgeKeys for FakeKeys {
    fn keys(&self, _source: usize) -> KeysAt<'_> {
        match &self.ready {
            Some(k) => KeysAt::Ready(k),
            None => KeysAt::Unavailable,
        }
    }
    fn want(&self, source: usize, kid: Option<&str>) -> bool {
        self.wanted
            .borrow_mut()
            .push((source, kid.map(str::to_string)));
        self.want
    }
    fn cached(&self, source: usize, _token: &[u8], _now: u64) -> Option<Identity> {
        self.looked_up.borrow_mut().push(source);
        self.cached.clone()
    }
    fn remember(&self, _source: usize, _token: &[u8], _identity: &Identity, _exp: u64) {}
}

fn req<'a>(peer: &'a str, headers: &'a [(&'a [u8], &'a [u8])]) -> Request<'a> {
    Request {
        peer: Some(peer.as_bytes()),
        headers,
        now: NOW,
        cert: None,
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn alice() -> Identity {
    Identity {
        name: "alice@example.com".into(),
        source: Source::Assertion,
    }
}

fn fetched() -> KeyLocation {
    KeyLocation::Jwks(KeyFetch {
        cluster: "idp".into(),
        authority: "idp".into(),
        path: "/jwks".into(),
        refresh_seconds: 300,
        max_stale_seconds: 86_400,
        refetch_seconds: 30,
        timeout_ms: 2000,
        store_key: "devgate.edge.keys.x".into(),
    })
}

#[test]
fn finding_the_assertion() {
    let src = source(Profile::Oidc);
    let none: &[(&[u8], &[u8])] = &[(b"x-other", b"a.b.c")];
    assert_eq!(check(&src, 0, &req("10.0.0.1:1", none), None, None), None);
    // Two values, in any spellings: refused before anything is verified.
    let two: &[(&[u8], &[u8])] = &[(b"x-assert", b"a.b.c"), (b"X_Assert", b"d.e.f")];
    let keys = FakeKeys {
        cached: Some(alice()),
        ..FakeKeys::default()
    };
    assert_eq!(
        check(&src, 0, &req("10.0.0.1:1", two), None, Some(&keys)),
        Some(Found::Refused(Reason::Token(TokenError::Malformed)))
    );
    assert!(keys.looked_up.borrow().is_empty());
    // One spelling of the header: found (here the cache knows it).
    let one: &[(&[u8], &[u8])] = &[(b"X_ASSERT", b"a.b.c")];
    assert_eq!(
        check(&src, 0, &req("10.0.0.1:1", one), None, Some(&keys)),
        Some(Found::Developer(alice()))
    );

    let mut bearer = source(Profile::Oidc);
    bearer.carrier = Carrier::Bearer;
    let basic: &[(&[u8], &[u8])] = &[(b"authorization", b"Basic eDp5")];
    assert_eq!(
        check(&bearer, 0, &req("10.0.0.1:1", basic), None, Some(&keys)),
        None
    );
    let b: &[(&[u8], &[u8])] = &[(b"authorization", b"Bearer a.b.c")];
    assert_eq!(
        check(&bearer, 0, &req("10.0.0.1:1", b), None, Some(&keys)),
        Some(Found::Developer(alice()))
    );
    let twice: &[(&[u8], &[u8])] = &[(b"authorization", b"Bearer a.b.c, Bearer d.e.f")];
    assert_eq!(
        check(&bearer, 0, &req("10.0.0.1:1", twice), None, Some(&keys)),
        Some(Found::Refused(Reason::Token(TokenError::Malformed)))
    );
}

#[test]
fn allow_from_keys_and_the_cache() {
    let h: &[(&[u8], &[u8])] = &[(b"x-assert", b"a.b.c")];
    let r = req("10.0.0.1:1", h);
    let mut src = source(Profile::Oidc);
    src.keys = fetched();
    src.allow_from = Some(CidrList(vec![
        crate::core::net::Cidr::parse("10.0.0.0/8").unwrap()
    ]));

    // Outside allow_from: refused, and no key is fetched for it.
    let keys = FakeKeys {
        want: true,
        ..FakeKeys::default()
    };
    assert_eq!(
        check(&src, 0, &r, ip("192.0.2.1"), Some(&keys)),
        Some(Found::Refused(Reason::NetworkDenied))
    );
    assert_eq!(
        check(&src, 0, &r, None, Some(&keys)),
        Some(Found::Refused(Reason::NetworkDenied))
    );
    assert!(keys.wanted.borrow().is_empty());

    // No usable keys: a fetch is planned (ask), or none may be made (refused).
    assert_eq!(
        check(&src, 3, &r, ip("10.1.2.3"), Some(&keys)),
        Some(Found::Ask)
    );
    assert_eq!(keys.wanted.borrow().first().map(|w| w.0), Some(3));
    let no_fetch = FakeKeys::default();
    assert_eq!(
        check(&src, 0, &r, ip("10.1.2.3"), Some(&no_fetch)),
        Some(Found::Refused(Reason::EdgeKeysUnavailable))
    );
    // A caller without fetched keys.
    assert_eq!(
        check(&src, 0, &r, ip("10.1.2.3"), None),
        Some(Found::Refused(Reason::EdgeKeysUnavailable))
    );
    // A cached assertion is the developer, whatever the keys.
    let cached = FakeKeys {
        cached: Some(alice()),
        ..FakeKeys::default()
    };
    assert_eq!(
        check(&src, 0, &r, ip("10.1.2.3"), Some(&cached)),
        Some(Found::Developer(alice()))
    );
    // An assertion that does not verify is refused with the token's reason, never admitted.
    let mut inline = source(Profile::Oidc);
    inline.keys = KeyLocation::Inline(Default::default());
    assert!(matches!(
        check(&inline, 0, &r, None, None),
        Some(Found::Refused(Reason::Token(_)))
    ));
}

fn proxy_source() -> ProxyHeaderSource {
    ProxyHeaderSource {
        header: crate::core::headers::HeaderName::parse("x-auth-request-email").unwrap(),
        from: CidrList(vec![crate::core::net::Cidr::parse("10.0.0.5/32").unwrap()]),
        developers: devs(serde_json::json!({"domains": ["example.com"]})),
    }
}

#[test]
fn proxy_header_only_from_a_listed_socket_peer() {
    let src = proxy_source();
    let h: &[(&[u8], &[u8])] = &[(b"X-Auth-Request-Email", b"alice@example.com")];
    let r = req("10.0.0.5:1", h);
    assert_eq!(
        proxy::check(&src, &r, ip("10.0.0.5")),
        Some(Ok(Identity {
            name: "alice@example.com".into(),
            source: Source::ProxyHeader,
        }))
    );
    assert_eq!(proxy::check(&src, &r, ip("10.0.0.6")), None);
    assert_eq!(proxy::check(&src, &r, None), None);
    let none: &[(&[u8], &[u8])] = &[];
    assert_eq!(
        proxy::check(&src, &req("10.0.0.5:1", none), ip("10.0.0.5")),
        None
    );
    let two: &[(&[u8], &[u8])] = &[
        (b"x-auth-request-email", b"alice@example.com"),
        (b"x_auth_request_email", b"bob@example.com"),
    ];
    assert_eq!(
        proxy::check(&src, &req("10.0.0.5:1", two), ip("10.0.0.5")),
        Some(Err(Reason::Token(TokenError::Malformed)))
    );
    let joined: &[(&[u8], &[u8])] = &[(b"x-auth-request-email", b"eve@evil.com,alice@example.com")];
    assert_eq!(
        proxy::check(&src, &req("10.0.0.5:1", joined), ip("10.0.0.5")),
        Some(Err(Reason::Token(TokenError::Malformed)))
    );
    let bad: &[(&[u8], &[u8])] = &[(b"x-auth-request-email", b" alice@example.com")];
    assert_eq!(
        proxy::check(&src, &req("10.0.0.5:1", bad), ip("10.0.0.5")),
        Some(Err(Reason::BadClaim))
    );
    let other: &[(&[u8], &[u8])] = &[(b"x-auth-request-email", b"eve@evil.com")];
    assert_eq!(
        proxy::check(&src, &req("10.0.0.5:1", other), ip("10.0.0.5")),
        Some(Err(Reason::NotADeveloper))
    );
}

fn edge_with_proxy() -> EdgePolicy {
    EdgePolicy {
        proxy_headers: vec![proxy_source()],
        strip: vec![crate::core::headers::HeaderName::parse("x-amzn-oidc-identity").unwrap()],
        strip_prefixes: vec!["x-goog-authenticated-user-".into()],
        ..EdgePolicy::default()
    }
}

#[test]
fn identify_believes_proxies_only_on_the_socket() {
    let edge = edge_with_proxy();
    let h: &[(&[u8], &[u8])] = &[(b"x-auth-request-email", b"alice@example.com")];
    let v = identify(&edge, &req("10.0.0.5:443", h), None, None);
    assert_eq!(v.identity.map(|i| i.source), Some(Source::ProxyHeader));
    // The same address from X-Forwarded-For (port 0) is never the proxy.
    let v = identify(&edge, &req("10.0.0.5:0", h), ip("10.0.0.5"), None);
    assert_eq!((v.identity, v.refusal), (None, None));
    // Removed before the upstream in both cases.
    assert_eq!(v.remove, vec![b"x-auth-request-email".to_vec()]);
}

#[test]
fn identify_strips_every_spelling() {
    let edge = edge_with_proxy();
    let h: &[(&[u8], &[u8])] = &[
        (b"X_Auth_Request_Email", b"eve@example.com"),
        (
            b"x-goog-authenticated-user-email",
            b"accounts.google.com:eve@example.com",
        ),
        (b"X_GOOG_Authenticated_User_Id", b"1"),
        (b"x-goog-authenticated-user-email", b"again"),
        (b"X-Amzn-Oidc_Identity", b"eve"),
        (
            b"x-goog-authenticated-users",
            b"kept: not the prefix + a dash",
        ),
        (b"x-goog-authenticated", b"kept"),
        (
            b"x-goog-iap-jwt-assertion",
            b"kept: the assertion is the application's",
        ),
        (b"host", b"kept"),
    ];
    let v = identify(&edge, &req("192.0.2.1:1", h), None, None);
    assert_eq!(
        v.remove,
        vec![
            b"X_Auth_Request_Email".to_vec(),
            b"x-goog-authenticated-user-email".to_vec(),
            b"X_GOOG_Authenticated_User_Id".to_vec(),
            b"X-Amzn-Oidc_Identity".to_vec(),
        ]
    );
    assert_eq!((v.identity, v.refusal, v.ask), (None, None, false));
}

#[test]
fn identify_order_first_proof_wins_else_first_refusal() {
    let mut edge = edge_with_proxy();
    let mut refused = source(Profile::Oidc);
    refused.keys = fetched();
    let mut second = source(Profile::Pomerium);
    second.carrier = Carrier::Header(crate::core::headers::HeaderName::parse("x-second").unwrap());
    second.keys = fetched();
    edge.assertions = vec![refused, second];
    let h: &[(&[u8], &[u8])] = &[
        (b"x-assert", b"a.b.c"),
        (b"x-second", b"d.e.f"),
        (b"x-auth-request-email", b"alice@example.com"),
    ];
    // Neither assertion's keys can be had: the first refusal, then the proxy proves alice.
    let none = FakeKeys::default();
    let v = identify(&edge, &req("10.0.0.5:1", h), None, Some(&none));
    assert_eq!(v.identity.map(|i| i.source), Some(Source::ProxyHeader));
    assert_eq!((v.refusal, v.ask), (None, false));
    // From elsewhere, the proxy header is ignored: the first refusal stands.
    let v = identify(&edge, &req("10.0.0.9:1", h), None, Some(&none));
    assert_eq!(v.identity, None);
    assert_eq!(v.refusal, Some(Reason::EdgeKeysUnavailable));
    // A fetch planned: the decision asks, unless another source proves a developer.
    let fetch = FakeKeys {
        want: true,
        ..FakeKeys::default()
    };
    let v = identify(&edge, &req("10.0.0.9:1", h), None, Some(&fetch));
    assert!(v.ask);
    let v = identify(&edge, &req("10.0.0.5:1", h), None, Some(&fetch));
    assert!(!v.ask);
    assert!(v.identity.is_some());
}

fn policy(json: &str) -> &'static Policy {
    Box::leak(Box::new(parse_policy(json.as_bytes()).unwrap()))
}

fn decide_at<'p>(
    policy: &'p Policy,
    peer: &str,
    extra: &[(&[u8], &[u8])],
    keys: Option<&dyn EdgeKeys>,
) -> Decision<'p> {
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":authority", b"x"),
    ];
    headers.extend_from_slice(extra);
    let views = Views {
        edge: keys,
        ..Views::default()
    };
    decide_views(policy, &req(peer, &headers), views, false).0
}

const EDGE_POLICY: &str = r#"{
    "network": {"allow": ["127.0.0.1/32"], "deny": ["10.0.0.0/24"]},
    "edge": {
        "assertions": [{"name": "idp", "profile": "oidc", "algorithms": ["ES256"],
                        "issuer": "https://issuer.example", "audiences": ["app"],
                        "keys": {"jwks_url": {"cluster": "idp", "path": "/jwks"}},
                        "developers": {"domains": ["example.com"]}}],
        "proxy_headers": [{"header": "x-auth-request-email", "from": ["10.0.0.5/32", "10.1.0.5/32"],
                           "developers": {"domains": ["example.com"]}}]
    }
}"#;

#[test]
fn network_deny_wins_over_every_edge_source() {
    let p = policy(EDGE_POLICY);
    let proxy: &[(&[u8], &[u8])] = &[(b"x-auth-request-email", b"alice@example.com")];
    // From an allowed proxy: the developer, the proxy's header removed, the identity set.
    let d = decide_at(p, "10.1.0.5:1", proxy, None);
    let Decision::Allow {
        identity, edits, ..
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(identity.unwrap().name, "alice@example.com");
    assert!(edits.remove.iter().any(|n| &**n == b"x-auth-request-email"));
    assert_eq!(
        edits.set,
        vec![("x-wsgiorg-developer-user", b"alice@example.com".to_vec())]
    );
    // The same from a proxy in network.deny: refused.
    let d = decide_at(p, "10.0.0.5:1", proxy, None);
    assert!(
        matches!(
            d,
            Decision::Deny {
                reason: Reason::NetworkDenied,
                ..
            }
        ),
        "{d:?}"
    );
    // A verified (here: cached) assertion from a denied peer: refused too.
    let keys = FakeKeys {
        cached: Some(alice()),
        ..FakeKeys::default()
    };
    let bearer: &[(&[u8], &[u8])] = &[(b"authorization", b"Bearer a.b.c")];
    let d = decide_at(p, "10.0.0.7:1", bearer, Some(&keys));
    assert!(
        matches!(
            d,
            Decision::Deny {
                reason: Reason::NetworkDenied,
                ..
            }
        ),
        "{d:?}"
    );
    let d = decide_at(p, "192.0.2.7:1", bearer, Some(&keys));
    assert!(
        matches!(d, Decision::Allow { identity: Some(ref i), .. } if i.source == Source::Assertion),
        "{d:?}"
    );
    // Keys to fetch: the decision asks; none to be had: refused with the edge's reason.
    let fetch = FakeKeys {
        want: true,
        ..FakeKeys::default()
    };
    assert!(matches!(
        decide_at(p, "192.0.2.7:1", bearer, Some(&fetch)),
        Decision::Ask
    ));
    let d = decide_at(p, "192.0.2.7:1", bearer, None);
    assert!(
        matches!(
            d,
            Decision::Deny {
                reason: Reason::EdgeKeysUnavailable,
                ..
            }
        ),
        "{d:?}"
    );
}

#[path = "edge_signed.rs"]
mod signed;

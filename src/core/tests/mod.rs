use std::borrow::Cow;

use super::*;
use crate::config::parse_policy;
use crate::core::policy::Policy;

struct Case {
    peer: &'static str,
    method: &'static str,
    path: &'static [u8],
    extra: Vec<(&'static [u8], &'static [u8])>,
}

fn run(policy: &str, c: Case) -> Decision<'static> {
    // A decision borrows names from its policy: the test's policy lives as long as the test run.
    let policy: &'static Policy = Box::leak(Box::new(parse_policy(policy.as_bytes()).unwrap()));
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", c.method.as_bytes()),
        (b":path", c.path),
        (b":authority", b"example"),
    ];
    headers.extend(c.extra);
    decide(
        policy,
        &Request {
            peer: Some(c.peer.as_bytes()),
            headers: &headers,
            now: 1_700_000_000,
            cert: None,
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
        Decision::Login(_) | Decision::Ask => 0,
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
        vec![("x-wsgiorg-developer-user", b"127.0.0.1".to_vec())]
    );
    let d = run(DEMO, get("[::1]:4000", b"/"));
    assert!(matches!(d, Decision::Allow { identity: Some(ref i), .. } if i.name == "::1"));
}

#[test]
fn non_developer_is_challenged_on_protected_paths_only() {
    let policy =
        r#"{"network": {"allow": ["127.0.0.1"]}, "protect": ["/_debug/"], "public": ["/healthz"]}"#;
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

fn send<'p>(policy: &'p Policy, peer: &str, path: &[u8], extra: &[(&[u8], &[u8])]) -> Decision<'p> {
    let mut headers: Vec<(&[u8], &[u8])> = vec![(b":method", b"GET"), (b":path", path)];
    headers.extend_from_slice(extra);
    decide(
        policy,
        &Request {
            peer: Some(peer.as_bytes()),
            headers: &headers,
            now: NOW,
            cert: None,
        },
    )
}

fn reason(d: &Decision) -> Option<&'static str> {
    match d {
        Decision::Deny { reason, .. } => Some(reason.code()),
        Decision::Allow { .. } | Decision::Login(_) | Decision::Ask => None,
    }
}

fn allowed<'p>(d: &Decision<'p>) -> (Option<(String, Source)>, Edits<'p>) {
    match d {
        Decision::Allow {
            identity, edits, ..
        } => (
            identity.as_ref().map(|i| (i.name.clone(), i.source)),
            edits.clone(),
        ),
        Decision::Deny { reason, .. } => panic!("denied: {}", reason.code()),
        Decision::Login(e) => panic!("login endpoint {e:?}"),
        Decision::Ask => panic!("asks the key service"),
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
    assert!(edits.remove.contains(&Cow::Borrowed(b"authorization")));
    assert!(edits
        .set
        .contains(&("x-wsgiorg-developer-user", b"alice".to_vec())));
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
    assert!(edits.remove.contains(&Cow::Borrowed(b"cookie")));
    assert!(edits.set.contains(&("cookie", b"a=1; b=2; z=9".to_vec())));
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
    assert_eq!(edits.set, vec![("cookie", b"a=1".to_vec())]);
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
            ("cookie", b"z=9".to_vec()),
            ("x-wsgiorg-developer-user", b"alice".to_vec())
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
        vec![("cookie", b"a=1, devgate_token=T".to_vec())]
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
        edits.remove.contains(&Cow::Borrowed(b"authorization")),
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

pub(crate) mod edge_keys;
mod keyservice_stream;
mod sessions_and_keys;
mod stream;
use sessions_and_keys::{login_policy, ALICE};
mod source_and_form;
mod user_tokens;

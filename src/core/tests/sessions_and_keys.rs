//! Session cookies, the revocation list and API keys, through the whole decision.

use crate::core::apikey::{ApiKey, KeyKind};
use crate::core::policy::{Mode, Policy};
use std::borrow::Cow;

use super::*;

// ---- login session cookie ------------------------------------------------------------

/// Password: correct horse.
pub(super) const ALICE: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";

pub(super) fn login_policy(extra: &str) -> Policy {
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
    assert!(edits.remove.contains(&Cow::Borrowed(b"cookie")));
    assert!(edits.set.contains(&("cookie", b"a=1; b=2".to_vec())));
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
    assert!(
        clear.is_some_and(|(_, v)| v.starts_with("devgate_session=;") && v.contains("Max-Age=0"))
    );
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
        assert!(edits
            .remove
            .contains(&Cow::Borrowed(b"x-wsgiorg-developer-user")));
        let stripped = edits.remove.contains(&Cow::Borrowed(b"authorization"))
            || edits.set.contains(&("cookie", b"a=1".to_vec()));
        assert!(stripped, "{edits:?}");
        assert!(!edits
            .set
            .iter()
            .any(|(n, _)| *n == "x-wsgiorg-developer-user"));
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
    let policy = token_policy("{}");
    let d = send(&policy, "127.0.0.1:9", b"/.devgate/login", &[]);
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
                cert: None,
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
            cert: None,
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

fn api_key_text(kind: KeyKind, id: &str, write: bool, referers: &[&str], ips: &[&str]) -> String {
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

fn call<'p>(
    p: &'p Policy,
    method: &str,
    path: &str,
    peer: &str,
    extra: &[(&[u8], &[u8])],
) -> Decision<'p> {
    let mut headers: Vec<(&[u8], &[u8])> =
        vec![(b":method", method.as_bytes()), (b":path", path.as_bytes())];
    headers.extend_from_slice(extra);
    decide(
        p,
        &Request {
            peer: Some(peer.as_bytes()),
            headers: &headers,
            now: NOW,
            cert: None,
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
        edits.remove.first().map(|n| n.as_ref()),
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
    assert!(edits.remove.contains(&Cow::Borrowed(b"x-api-key")));
    assert!(edits.set.contains(&("x-devgate-count", b"false".to_vec())));
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
        edits.remove.contains(&Cow::Borrowed(b"x_api_key")),
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
fn the_source_goes_upstream_on_api_routes_only_and_client_copies_never() {
    let p = api_policy();
    let sk = api_key_text(KeyKind::Private, "sk1", false, &[], &[]);
    let key: (&[u8], &[u8]) = (b"x-api-key", sk.as_bytes());
    let peer = "192.0.2.1:5";
    let source = |extra: &[(&[u8], &[u8])]| {
        let mut h = vec![
            key,
            (b"X_Devgate_Source", b"spoof"),
            (b"x-devgate-source", b"x"),
        ];
        h.extend_from_slice(extra);
        let d = call(&p, "GET", "/v1/maps/x", peer, &h);
        let (_, edits) = allowed(&d);
        assert!(
            edits.remove.contains(&Cow::Borrowed(b"X_Devgate_Source"))
                && edits.remove.contains(&Cow::Borrowed(b"x-devgate-source")),
            "{edits:?}"
        );
        let set: Vec<_> = edits
            .set
            .iter()
            .filter(|(n, _)| *n == "x-devgate-source")
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
            .collect();
        assert!(set.len() <= 1, "{set:?}");
        set.into_iter().next()
    };
    assert_eq!(source(&[]), None);
    assert_eq!(
        source(&[(b"x-sdk-source", b"woosmap-js")]).as_deref(),
        Some("woosmap-js")
    );
    assert_eq!(
        source(&[(b"ai-context", b"True")]).as_deref(),
        Some("ai-context")
    );
    assert_eq!(source(&[(b"x-sdk-source", b"sdk/1")]), None, "dropped");
    // Elsewhere (a protected path, a developer): client copies stripped, nothing set.
    let h: [(&[u8], &[u8]); 2] = [(b"x-sdk-source", b"sdk"), (b"x-devgate-source", b"x")];
    let d = call(&p, "GET", "/_debug/x", "127.0.0.1:5", &h);
    let (_, edits) = allowed(&d);
    assert!(edits.remove.contains(&Cow::Borrowed(b"x-devgate-source")));
    assert!(
        edits.set.iter().all(|(n, _)| *n != "x-devgate-source"),
        "{edits:?}"
    );
    // The client's own headers go on untouched.
    assert!(edits.remove.iter().all(|n| n.as_ref() != b"x-sdk-source"));
    // The name is configurable, and distinct from the others.
    let json = format!(
        r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}"}}],
            "api": {{"routes": [{{"prefix": "/v1", "product": "maps"}}],
                     "headers": {{"source": "X-Client-Source"}}}}}}"#
    );
    let p = crate::config::parse_policy(json.as_bytes()).unwrap();
    let d = call(&p, "GET", "/v1/x", peer, &[key, (b"x-sdk-source", b"s")]);
    let (_, edits) = allowed(&d);
    assert!(edits.set.contains(&("x-client-source", b"s".to_vec())));
    let json = json.replace("X-Client-Source", "x-devgate-count");
    assert!(crate::config::parse_policy(json.as_bytes()).is_err());
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
        (b"x-devgate-served-stale", b"true"),
        (b"X-Devgate-Source", b"spoof"),
        (b"x-devgate-user", b"admin"),
        (b"x_api_key", b"dgsk_x"),
        (b"grpc-status", b"0"),
        (b"x-checksum", b"abc"),
    ];
    let removed = trailer_removals(&p, &trailers);
    assert_eq!(removed.len(), 11, "{removed:?}");
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

//! User tokens on API routes, through the whole decision: the requirement matrix, the path
//! parameters, origins, revocation and verification failures.

use serde_json::{json, Value};

use super::*;
use crate::core::apikey::KeyKind;
use crate::core::revocation::{Revocation, RevocationList};
use crate::core::token::sign;

fn user_policy(extra_api: &str) -> Policy {
    let json = format!(
        r#"{{"network": {{"allow": ["127.0.0.1"]}}, "protect": ["/_debug/"],
            "keys": [{{"id": "k1", "secret": "{SECRET}"}}], "tokens": {{}},
            "api": {{"routes": [
                {{"prefix": "/v1/organizations/", "product": "console",
                  "user_tokens": {{"require": "member",
                    "path": "/v1/organizations/{{organization}}/projects/{{project}}/",
                    "origins": ["https://console.example.com"]}}}},
                {{"prefix": "/v1/owners/", "product": "console",
                  "user_tokens": {{"require": "owner", "path": "/v1/owners/{{organization}}"}}}},
                {{"prefix": "/v1/staff/", "product": "console",
                  "user_tokens": {{"require": "staff"}}}},
                {{"prefix": "/v1/root/", "product": "console",
                  "user_tokens": {{"require": "superuser"}}}},
                {{"prefix": "/v1/either/", "product": "console", "mode": "read_only",
                  "user_tokens": {{"require": "staff_or_superuser"}}}}],
              "user_tokens": {{"keys": [{{"id": "u1", "secret": "{SECRET}"}}]}} {extra_api}}}}}"#
    );
    crate::config::parse_policy(json.as_bytes()).unwrap()
}

fn user_claims(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = json!({
        "sub": "user-1", "exp": NOW + 600, "iat": NOW - 10, "jti": "ut-1",
        "organizations": ["org1", "org2"], "owned_organizations": ["org2"],
        "is_staff": false, "is_superuser": false,
    });
    if let Value::Object(m) = &mut c {
        change(m);
    }
    c
}

fn bearer(c: &Value, kid: &str) -> String {
    format!("Bearer {}", sign(c.to_string().as_bytes(), &key(kid), b""))
}

fn user(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    bearer(&user_claims(change), "u1")
}

fn ask<'p>(
    p: &'p Policy,
    method: &str,
    path: &str,
    auth: &str,
    extra: &[(&[u8], &[u8])],
    rev: Option<Revocation<'_>>,
) -> Decision<'p> {
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", method.as_bytes()),
        (b":path", path.as_bytes()),
        (b"authorization", auth.as_bytes()),
    ];
    headers.extend_from_slice(extra);
    decide_with(
        p,
        &Request {
            peer: Some(b"10.1.1.1:9"),
            headers: &headers,
            now: NOW,
            cert: None,
        },
        rev,
    )
}

fn get_as(p: &Policy, path: &str, auth: &str) -> Option<&'static str> {
    reason(&ask(p, "GET", path, auth, &[], None))
}

const PROJECT: &str = "/v1/organizations/org1/projects/p1/items";

#[test]
fn a_member_passes_with_the_path_parameters_and_the_user_upstream() {
    let p = user_policy("");
    let d = ask(&p, "GET", PROJECT, &user(|_| {}), &[], None);
    let Decision::Allow {
        api_key,
        edits,
        identity,
        ..
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(api_key, Some(KeyKind::User));
    assert!(identity.is_none());
    for (name, value) in [
        ("x-devgate-organization", "org1"),
        ("x-devgate-project", "p1"),
        ("x-devgate-key-kind", "user_token"),
        ("x-devgate-user", "user-1"),
        ("x-devgate-count", "true"),
    ] {
        assert!(
            edits.set.contains(&(name, value.as_bytes().to_vec())),
            "{name}: {:?}",
            edits.set
        );
    }
    // Client copies of the headers never go upstream.
    let d = ask(
        &p,
        "GET",
        PROJECT,
        &user(|_| {}),
        &[
            (b"x-devgate-user", b"admin"),
            (b"x-devgate-organization", b"x"),
        ],
        None,
    );
    let (_, edits) = allowed(&d);
    assert!(edits.remove.iter().any(|n| n.as_ref() == b"x-devgate-user"));
    assert!(edits
        .remove
        .iter()
        .any(|n| n.as_ref() == b"x-devgate-organization"));
}

#[test]
fn the_requirement_matrix() {
    let p = user_policy("");
    let member = user(|_| {});
    let outsider = user(|m| {
        m.insert("organizations".into(), json!(["org9"]));
        m.insert("owned_organizations".into(), json!([]));
    });
    let staff = user(|m| {
        m.insert("is_staff".into(), json!(true));
    });
    let root = user(|m| {
        m.insert("is_superuser".into(), json!(true));
    });
    let cases: [(&str, &str, Option<&str>); 14] = [
        // member of org1, owner of org2
        (PROJECT, &member, None),
        (
            "/v1/organizations/org9/projects/p1/",
            &member,
            Some("not_a_member"),
        ),
        (PROJECT, &outsider, Some("not_a_member")),
        (PROJECT, &staff, None),
        ("/v1/owners/org2/x", &member, None),
        ("/v1/owners/org1/x", &member, Some("not_an_owner")),
        ("/v1/staff/x", &member, Some("not_staff")),
        ("/v1/staff/x", &staff, None),
        ("/v1/staff/x", &root, Some("not_staff")),
        ("/v1/root/x", &root, None),
        ("/v1/root/x", &staff, Some("not_staff")),
        ("/v1/either/x", &staff, None),
        ("/v1/either/x", &root, None),
        ("/v1/either/x", &member, Some("not_staff")),
    ];
    for (path, auth, want) in cases {
        let d = ask(&p, "GET", path, auth, &[], None);
        assert_eq!(reason(&d), want, "{path}");
        if want.is_some() {
            assert_eq!(status(&d), 403, "{path}");
        }
    }
    // read_only still limits methods for user tokens.
    assert_eq!(
        reason(&ask(&p, "DELETE", "/v1/either/x", &staff, &[], None)),
        Some("method_not_allowed")
    );
    assert_eq!(
        reason(&ask(&p, "POST", "/v1/either/x", &staff, &[], None)),
        None
    );
}

#[test]
fn path_parameters_are_read_from_a_plain_canonical_path_only() {
    let p = user_policy("");
    let member = user(|_| {});
    for path in [
        "/v1/organizations/org1%2Fprojects/p1/",
        "/v1/organizations/%6frg1/projects/p1/",
        "/v1/organizations/org9/../org1/projects/p1/",
        "/v1/organizations/org1/projects/%2e%2e/p1/",
        "/v1/organizations/org9/%2e%2e/org1/projects/p1/",
        "/v1/organizations/org1/projects/%252e%252e/",
        "/v1/organizations//projects/p1/",
        "/v1/organizations/org1;x=1/projects/p1/",
        "/v1/organizations/org1./projects/p1/",
        "/v1/organizations/org1/projects/",
        "/v1/organizations/org1/teams/p1/",
        "/v1/organizations/org1/projects/p~1/",
        "/v1/organizations/org1/projects/./",
    ] {
        let d = ask(&p, "GET", path, &member, &[], None);
        assert_eq!(reason(&d), Some("bad_path"), "{path}");
        assert_eq!(status(&d), 400, "{path}");
    }
    // The query is not part of the path.
    assert_eq!(
        get_as(&p, "/v1/organizations/org1/projects/p1/?a=%2F", &member),
        None
    );
}

#[test]
fn origins_allowed_refused_and_absent() {
    let p = user_policy("");
    let member = user(|_| {});
    let with = |origin: &'static [u8]| {
        reason(&ask(
            &p,
            "GET",
            PROJECT,
            &member,
            &[(b"origin", origin)],
            None,
        ))
    };
    assert_eq!(with(b"https://console.example.com"), None);
    assert_eq!(with(b"https://evil.example.com"), Some("origin_denied"));
    assert_eq!(with(b"null"), Some("origin_denied"));
    assert_eq!(get_as(&p, PROJECT, &member), None);
    // A route without origins refuses every browser.
    let staff = user(|m| {
        m.insert("is_staff".into(), json!(true));
    });
    let d = ask(
        &p,
        "GET",
        "/v1/staff/x",
        &staff,
        &[(b"origin", b"https://console.example.com")],
        None,
    );
    assert_eq!((status(&d), reason(&d)), (403, Some("origin_denied")));
}

#[test]
fn verification_failures_and_tombstones() {
    let p = user_policy("");
    assert_eq!(
        get_as(
            &p,
            PROJECT,
            &user(|m| {
                m.insert("exp".into(), json!(NOW - 31));
            })
        ),
        Some("expired")
    );
    assert_eq!(
        get_as(
            &p,
            PROJECT,
            &user(|m| {
                m.insert("nbf".into(), json!(NOW + 60));
            })
        ),
        Some("not_yet_valid")
    );
    // Another secret under the right kid; an unknown kid; a devgate developer token.
    let forged = format!(
        "Bearer {}",
        sign(
            user_claims(|_| {}).to_string().as_bytes(),
            &Key {
                id: "u1".into(),
                secret: Secret::from_b64url("BBECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap(),
            },
            b""
        )
    );
    assert_eq!(get_as(&p, PROJECT, &forged), Some("bad_signature"));
    assert_eq!(
        get_as(&p, PROJECT, &bearer(&user_claims(|_| {}), "u9")),
        Some("unknown_kid")
    );
    assert_eq!(
        get_as(&p, PROJECT, &format!("Bearer {}", alice())),
        Some("unknown_kid")
    );
    // Claims of the wrong type.
    for (claim, value) in [
        ("organizations", json!("org1")),
        ("is_staff", json!("yes")),
        ("sub", json!(5)),
        ("sub", json!("a b")),
        ("jti", json!(7)),
    ] {
        let t = user(|m| {
            m.insert(claim.into(), value.clone());
        });
        assert_eq!(get_as(&p, PROJECT, &t), Some("malformed"), "{claim}");
    }
    // The revocation list's tokens name user tokens too.
    let mut list = RevocationList::default();
    list.tokens.insert("ut-1".into());
    let fresh = Some(Revocation {
        list: Some(&list),
        refuse: false,
    });
    let d = ask(&p, "GET", PROJECT, &user(|_| {}), &[], fresh);
    assert_eq!((status(&d), reason(&d)), (401, Some("revoked")));
    let other = user(|m| {
        m.insert("jti".into(), json!("ut-2"));
    });
    assert!(matches!(
        ask(&p, "GET", PROJECT, &other, &[], fresh),
        Decision::Allow { .. }
    ));
    let stale = Some(Revocation {
        list: Some(&list),
        refuse: true,
    });
    assert_eq!(
        reason(&ask(&p, "GET", PROJECT, &other, &[], stale)),
        Some("revocation_stale")
    );
    // A user token beside an API key, or beside another Authorization, is ambiguous.
    let d = ask(
        &p,
        "GET",
        PROJECT,
        &user(|_| {}),
        &[(b"x-api-key", b"dgsk_x")],
        None,
    );
    assert_eq!(reason(&d), Some("ambiguous_credential"));
    let two = format!("{}, Basic eA==", user(|_| {}));
    assert_eq!(get_as(&p, PROJECT, &two), Some("ambiguous_credential"));
}

#[test]
fn issuer_and_audience_when_configured() {
    let p = user_policy("");
    let _ = p;
    let json = format!(
        r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}"}}],
            "api": {{"routes": [{{"prefix": "/v1/staff/", "product": "c",
                "user_tokens": {{"require": "staff"}}}}],
              "user_tokens": {{"keys": [{{"id": "u1", "secret": "{SECRET}"}}],
                "issuer": "https://auth.example", "audience": "api"}}}}}}"#
    );
    let p = crate::config::parse_policy(json.as_bytes()).unwrap();
    let staff = |iss: Value, aud: Value| {
        user(|m| {
            m.insert("is_staff".into(), json!(true));
            m.insert("iss".into(), iss);
            m.insert("aud".into(), aud);
        })
    };
    assert_eq!(
        get_as(
            &p,
            "/v1/staff/x",
            &staff(json!("https://auth.example"), json!(["x", "api"]))
        ),
        None
    );
    assert_eq!(
        get_as(
            &p,
            "/v1/staff/x",
            &staff(json!("https://evil"), json!("api"))
        ),
        Some("wrong_purpose")
    );
    assert_eq!(
        get_as(
            &p,
            "/v1/staff/x",
            &staff(json!("https://auth.example"), json!("web"))
        ),
        Some("wrong_purpose")
    );
}

//! Paths: public and protected rules, methods, the longest rule, tricks that must not dodge
//! protection, unreadable paths.

use devgate_wasm_tests as host;
use host::HostResult;

use super::{
    assert_anonymous_pass, assert_challenge, assert_developer, assert_generic_body, assert_local,
    loaded, with_noise, COOKIE, SECRETS,
};

#[test]
fn public_and_unprotected_paths_pass_anonymously_with_identity_stripped() -> HostResult<()> {
    let mut h = loaded(r#"{"protect": ["/_debug/"], "public": ["/healthz"]}"#)?;
    for path in [
        "/",
        "/healthz",
        "/healthz/deep",
        "/_debugger",
        "/x/_debug/",
        "/static/app.js",
    ] {
        let r = with_noise(h.request().peer("10.9.9.9:1234").get(path)).send();
        assert_anonymous_pass(&r);
        let up = r.upstream_headers().unwrap();
        assert_eq!(
            up.get_str("cookie").as_deref(),
            Some(COOKIE),
            "{}",
            r.describe()
        );
    }
    for path in ["/_debug", "/_debug/", "/_debug/x", "/_debug/x/y?z"] {
        assert_challenge(&with_noise(h.request().peer("10.9.9.9:1234").get(path)).send());
    }
    // A developer on a public path is still named.
    assert_developer(
        &with_noise(h.request().peer("127.0.0.1:1").get("/healthz")).send(),
        "127.0.0.1",
    );
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn longest_rule_wins_and_ties_go_to_protect() -> HostResult<()> {
    let mut h = loaded(
        r#"{"protect": ["/", "/static/private/", "/both/"],
            "public": ["/static/", "/both/"]}"#,
    )?;
    let peer = "10.0.0.1:1";
    assert_anonymous_pass(&h.request().peer(peer).get("/static/app.js").send());
    assert_anonymous_pass(&h.request().peer(peer).get("/static").send());
    assert_challenge(&h.request().peer(peer).get("/static/private/key").send());
    assert_challenge(&h.request().peer(peer).get("/both/x").send());
    assert_challenge(&h.request().peer(peer).get("/other").send());
    Ok(())
}

#[test]
fn protect_rules_with_methods() -> HostResult<()> {
    let mut h = loaded(r#"{"protect": [{"prefix": "/api/", "methods": ["POST", "DELETE"]}]}"#)?;
    let peer = "10.0.0.1:1";
    assert_anonymous_pass(
        &h.request()
            .peer(peer)
            .method_path("GET", "/api/items")
            .send(),
    );
    assert_anonymous_pass(
        &h.request()
            .peer(peer)
            .method_path("HEAD", "/api/items")
            .send(),
    );
    assert_challenge(
        &h.request()
            .peer(peer)
            .method_path("POST", "/api/items")
            .send(),
    );
    assert_challenge(
        &h.request()
            .peer(peer)
            .method_path("DELETE", "/api/items/1")
            .send(),
    );
    assert_anonymous_pass(&h.request().peer(peer).method_path("POST", "/other").send());
    assert_developer(
        &h.request()
            .peer("127.0.0.1:1")
            .method_path("POST", "/api/items")
            .send(),
        "127.0.0.1",
    );
    Ok(())
}

#[test]
fn path_tricks_do_not_dodge_protection() -> HostResult<()> {
    let mut h = loaded(r#"{"protect": ["/_debug/"]}"#)?;
    for path in [
        "/%5Fdebug/",
        "/%5fdebug/x",
        "/_DEBUG/",
        "//_debug/",
        "/./_debug/",
        "/x/../_debug/",
        "/_debug;a=b/",
        "/_debug?x",
        "/_debug#frag",
    ] {
        // Refused either way: challenged as /_debug/, or unreadable (400).
        let r = h.request().peer("10.0.0.1:1").get(path).send();
        r.assert_well_formed();
        assert!(
            matches!(r.status(), Some(400 | 401)),
            "{path}\n{}",
            r.describe()
        );
    }
    Ok(())
}

#[test]
fn unreadable_paths_are_400_even_for_developers() -> HostResult<()> {
    let mut h = loaded("{}")?;
    for path in ["/%zz", "/%", "/%4", "/a%00b", "/%255Fdebug/", "/%2525"] {
        for peer in ["127.0.0.1:1", "10.0.0.1:1"] {
            let r = with_noise(h.request().peer(peer).get(path)).send();
            assert_local(&r, 400);
            assert_generic_body(r.local_response().unwrap().2);
        }
    }
    // No :path at all (CONNECT-like or broken host): never forwarded anonymously.
    let r = h
        .request()
        .peer("10.0.0.1:1")
        .header(":method", "GET")
        .send();
    r.assert_well_formed();
    assert!(r.upstream_headers().is_none(), "{}", r.describe());
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

//! Network developers: the peer, the allow and deny lists, forwarded peers, the challenge.

use devgate_wasm_tests as host;
use host::{Action, Host, HostResult};

use super::{
    assert_challenge, assert_developer, assert_generic_body, assert_local, loaded, watched,
    with_noise, BEARER, DEMO, IDENTITY, SECRETS, SPOOF, SPOOF2,
};

#[test]
fn loopback_peer_is_a_developer_named_by_its_ip() -> HostResult<()> {
    let mut h = loaded("{}")?;
    for (peer, name) in [
        ("127.0.0.1:5000", "127.0.0.1"),
        ("127.0.0.77:5000", "127.0.0.77"),
        ("127.255.255.254:65535", "127.255.255.254"),
        ("[::1]:4000", "::1"),
    ] {
        let r = with_noise(h.request().peer(peer).get("/_debug/")).send();
        assert_developer(&r, name);
        // The other headers are untouched.
        let up = r.upstream_headers().unwrap();
        assert_eq!(up.get_str("authorization").as_deref(), Some(BEARER));
        assert_eq!(up.get_str(":path").as_deref(), Some("/_debug/"));
        // The response passes through.
        assert_eq!(
            r.response_action,
            Some(Action::Continue),
            "{}",
            r.describe()
        );
    }
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn the_identity_header_is_set_once_even_on_legacy_envoy_replace() -> HostResult<()> {
    // Envoy before http_set_copy_replace_all_headers only replaced the first copy.
    let mut h = watched(Host::builder().legacy_replace(true))?;
    assert!(h.configure("{}")?);
    let r = h
        .request()
        .peer("127.0.0.1:1")
        .get("/")
        .header(IDENTITY, SPOOF)
        .header(IDENTITY, SPOOF2)
        .header("X-WSGIORG-DEVELOPER-USER", SPOOF)
        .send();
    assert_developer(&r, "127.0.0.1");
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn non_developer_on_a_protected_path_is_challenged() -> HostResult<()> {
    let mut h = loaded(DEMO)?;
    for peer in [
        "10.1.2.3:5000",
        "192.0.2.1:443",
        "[2001:db8::1]:80",
        "[::ffff:10.0.0.1]:1",
    ] {
        for path in ["/", "/_debug/", "/_debug", "/_debug/x?y=1", "/anything"] {
            let r = with_noise(h.request().peer(peer).get(path)).send();
            assert_challenge(&r);
            // The local reply goes through the response path too (Envoy runs encoder filters).
            assert_eq!(
                r.response_action,
                Some(Action::Continue),
                "{}",
                r.describe()
            );
        }
    }
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn forbid_mode_answers_403_without_a_challenge() -> HostResult<()> {
    let mut h = loaded(r#"{"unauthenticated": "forbid"}"#)?;
    let r = with_noise(h.request().peer("10.0.0.1:1").get("/")).send();
    assert_local(&r, 403);
    let (_, headers, body) = r.local_response().unwrap();
    assert!(!headers.contains("www-authenticate"), "{}", r.describe());
    assert_generic_body(body);
    // Developers still pass.
    assert_developer(
        &with_noise(h.request().peer("127.0.0.1:1").get("/")).send(),
        "127.0.0.1",
    );
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn allow_and_deny_lists() -> HostResult<()> {
    let mut h = loaded(
        r#"{"network": {"allow": ["127.0.0.0/8", "10.20.0.0/16", "fd00::/8"],
                        "deny": ["127.0.0.66", "10.20.30.0/24"]}}"#,
    )?;
    assert_developer(
        &h.request().peer("127.0.0.77:5000").get("/").send(),
        "127.0.0.77",
    );
    assert_developer(
        &h.request().peer("10.20.1.2:5000").get("/").send(),
        "10.20.1.2",
    );
    assert_developer(
        &h.request().peer("[fd12::5]:5000").get("/").send(),
        "fd12::5",
    );
    // Denied peers: 403, not the challenge (no credential could make them developers).
    for peer in ["127.0.0.66:5000", "10.20.30.40:5000"] {
        let r = h.request().peer(peer).get("/").send();
        assert_local(&r, 403);
        let (_, headers, body) = r.local_response().unwrap();
        assert!(
            headers.get_all("www-authenticate").is_empty(),
            "{}",
            r.describe()
        );
        assert_generic_body(body);
    }
    assert_challenge(&h.request().peer("10.21.0.1:5000").get("/").send());
    // ::1 is no longer allowed once allow is given.
    assert_challenge(&h.request().peer("[::1]:5000").get("/").send());
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn empty_allow_list_makes_nobody_a_developer() -> HostResult<()> {
    let mut h = loaded(r#"{"network": {"allow": []}}"#)?;
    assert_challenge(&h.request().peer("127.0.0.1:5000").get("/").send());
    Ok(())
}

#[test]
fn peers_envoy_derived_from_x_forwarded_for_need_trust_forwarded() -> HostResult<()> {
    // Port 0: Envoy took the address from X-Forwarded-For (use_remote_address: false).
    let mut h = loaded("{}")?;
    let r = with_noise(h.request().peer("127.0.0.1:0").get("/"))
        .header("x-forwarded-for", "127.0.0.1")
        .send();
    assert_challenge(&r);
    let mut h = loaded(r#"{"network": {"trust_forwarded": true}}"#)?;
    assert_developer(
        &h.request().peer("127.0.0.1:0").get("/").send(),
        "127.0.0.1",
    );
    assert_developer(&h.request().peer("[::1]:0").get("/").send(), "::1");
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn unparseable_or_missing_peers_are_not_developers() -> HostResult<()> {
    let mut h = loaded("{}")?;
    let peers: &[&[u8]] = &[
        b"",
        b"garbage",
        b"127.0.0.1",
        b"127.0.0.1:",
        b"127.0.0.1:99999",
        b"127.0.0.1:-1",
        b"127.0.0.1:80:80",
        b"::1",
        b"[::1]",
        b"[::1:80",
        b"127.0.0.01:80",
        b"0127.0.0.1:80",
        b"127.1:80",
        b" 127.0.0.1:80",
        b"127.0.0.1:80 ",
        b"127.0.0.1\x00:80",
        b"\xff\xfe127.0.0.1:80",
        b"/var/run/envoy.sock",
        b"envoy://internal_client_address/",
        b"[fe80::1%lo]:80",
        b"localhost:80",
    ];
    for peer in peers {
        let r = h.request().peer_bytes(peer).get("/").send();
        assert_challenge(&r);
    }
    // No source.address property at all.
    assert_challenge(&h.request().get("/").send());
    Ok(())
}

//! What a login request must pass before any password is verified: the body size, the
//! CSRF (`Origin`) and content-type checks, the login networks.

use devgate::core::budget as core_budget;
use devgate_wasm_tests as host;
use host::{HostResult, Phase};

use super::{
    assert_body_withheld, assert_failed, assert_headers_scrubbed, assert_login_local,
    assert_success, attempts, config, loaded, login_post, set_cookie, GOOD_FORM, IDENTITY, PEER,
};

#[test]
fn a_body_over_4096_bytes_is_413_in_chunks_too() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let mut body = b"username=alice&password=correct+horse&back=".to_vec();
    body.resize(5000, b'a');
    for size in [100, 4096, 4097, 1000] {
        let r = login_post(&mut h, PEER)
            .body_in_chunks_of(&body, size)
            .send();
        assert_headers_scrubbed(&r);
        assert_body_withheld(&r);
        assert_login_local(&r, 413);
        // Answered at the first chunk that takes it over 4096 bytes.
        let over = 4096 / size;
        assert_eq!(r.local_phase(), Some(Phase::RequestBody(over)), "{size}");
        assert_eq!(r.body_calls.len(), over + 1);
        assert!(r.fuel < 2_000_000, "413 cost {} fuel", r.fuel);
    }
    // A body of exactly 4096 bytes is read (and here fails: the password field is too long).
    let r = login_post(&mut h, PEER)
        .body_in_chunks_of(&body[..4096], 512)
        .send();
    assert_failed(&r);
    // No failure counted for the 413s; one for the 401.
    assert_eq!(attempts(&h.shared_data()).map(|a| a.count), Some(1));
    // A declared Content-Length over the cap is refused from the headers.
    let r = login_post(&mut h, PEER)
        .header("content-length", "5000")
        .body(&body)
        .send();
    assert_login_local(&r, 413);
    assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
    assert!(!r.body_was_read());
    assert_eq!(h.metric("devgate.login.too_large"), Some(5));
    Ok(())
}

#[test]
fn csrf_and_content_type_are_checked_before_the_body() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let cases: Vec<(Vec<(&str, &str)>, u32)> = vec![
        (vec![("origin", "https://evil.example")], 403),
        (vec![("origin", "null")], 403),
        (vec![("origin", "http://devgate.test:8080")], 403),
        (vec![("content-type", "application/json")], 415),
        (
            vec![("content-type", "multipart/form-data; boundary=x")],
            415,
        ),
    ];
    for (replace, status) in cases {
        let mut b = h
            .request()
            .peer(PEER)
            .method_path("POST", "/.devgate/login");
        for (n, v) in [
            ("origin", "http://devgate.test"),
            ("content-type", "application/x-www-form-urlencoded"),
        ] {
            let v = replace
                .iter()
                .find(|(rn, _)| *rn == n)
                .map_or(v, |(_, rv)| *rv);
            b = b.header(n, v);
        }
        let r = b.body(GOOD_FORM.as_bytes()).send();
        assert_login_local(&r, status);
        assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
        assert!(!r.body_was_read());
    }
    // No Origin, no Referer: refused. A same-site Referer without Origin: accepted.
    let r = h
        .request()
        .peer(PEER)
        .method_path("POST", "/.devgate/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(GOOD_FORM.as_bytes())
        .send();
    assert_login_local(&r, 403);
    let r = h
        .request()
        .peer(PEER)
        .method_path("POST", "/.devgate/login")
        .header("referer", "http://devgate.test/.devgate/login?back=%2F")
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(GOOD_FORM.as_bytes())
        .send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    // Nothing but the peer's record and the process's verify budget was written.
    let keys = h.shared_data().keys();
    assert!(
        keys.iter()
            .filter(|k| k.as_slice() != core_budget::KEY.as_bytes())
            .count()
            <= 1,
        "{keys:?}"
    );
    Ok(())
}

#[test]
fn login_networks_and_forwarded_peers() -> HostResult<()> {
    let mut h = loaded(&config(r#", "network": {"allow": []}"#).replace(
        r#""users": ""#,
        r#""allow_from": ["203.0.113.0/24"], "users": ""#,
    ))?;
    let r = login_post(&mut h, "198.51.100.7:1")
        .body(GOOD_FORM.as_bytes())
        .send();
    assert_login_local(&r, 403);
    assert!(!r.body_was_read());
    // Port 0: Envoy took the address from X-Forwarded-For; never a login peer.
    let r = login_post(&mut h, "203.0.113.9:0")
        .body(GOOD_FORM.as_bytes())
        .send();
    assert_login_local(&r, 403);
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    // The session only works from the login networks.
    let r = h
        .request()
        .peer("198.51.100.7:1")
        .get("/_debug/")
        .header("cookie", &format!("devgate_session={token}"))
        .send();
    r.assert_well_formed();
    assert_eq!(r.status(), Some(403), "{}", r.describe());
    Ok(())
}

#[test]
fn network_deny_refuses_the_form_the_login_and_the_session() -> HostResult<()> {
    // DevAuth's deny list, translated: allow a range, deny one address in it.
    let mut h = loaded(&config(
        r#", "network": {"allow": ["127.0.0.0/8"], "deny": ["127.0.0.77"]}"#,
    ))?;
    let denied = "127.0.0.77:4000";
    let r = h.request().peer(denied).get("/.devgate/login").send();
    assert_login_local(&r, 403);
    // The right password from there: 403 from the headers step, the body never read, no
    // bcrypt, no failure recorded.
    let r = login_post(&mut h, denied).body(GOOD_FORM.as_bytes()).send();
    assert_login_local(&r, 403);
    assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
    assert!(!r.body_was_read());
    assert!(set_cookie(&r).is_none());
    assert!(h.shared_data().value("devgate.login.127.0.0.77").is_none());
    assert_eq!(h.metric("devgate.login.network_denied"), Some(2));
    // A session minted elsewhere is no developer from the denied address, on any path.
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    let cookie = format!("devgate_session={token}");
    let r = h
        .request()
        .peer(denied)
        .get("/_debug/")
        .header("cookie", &cookie)
        .send();
    assert_login_local(&r, 403);
    assert_eq!(
        r.properties_set.get("devgate_decision").map(Vec::as_slice),
        Some(&b"deny:network_denied"[..])
    );
    let r = h
        .request()
        .peer(denied)
        .get("/healthz")
        .header("cookie", &cookie)
        .send();
    r.assert_well_formed();
    let up = r.upstream_headers().unwrap();
    assert!(
        !up.contains(IDENTITY) && !up.contains("cookie"),
        "{}",
        r.describe()
    );
    // The same cookie from an allowed address is alice.
    let r = h
        .request()
        .peer("127.0.0.5:4000")
        .get("/_debug/")
        .header("cookie", &cookie)
        .send();
    assert_eq!(
        r.upstream_headers().unwrap().get_all(IDENTITY),
        vec![&b"alice"[..]]
    );
    Ok(())
}

//! `POST /.devgate/login` that succeeds (in one chunk or many, over TLS or not) and the
//! session cookie it sets.

use devgate_wasm_tests as host;
use host::{Action, Headers, HostResult, Phase};

use super::{
    assert_body_withheld, assert_headers_scrubbed, assert_login_local, assert_success, attempts,
    config, loaded, login_post, login_post_from, set_cookie, GOOD_FORM, IDENTITY, PEER, RATE_KEY,
};

#[test]
fn login_success_in_one_chunk() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    assert_headers_scrubbed(&r);
    assert_body_withheld(&r);
    assert_eq!(r.body_calls.len(), 1);
    assert_eq!(r.body_calls[0].size, GOOD_FORM.len());
    assert!(r.body_calls[0].end_of_stream);
    assert_eq!(r.local_phase(), Some(Phase::RequestBody(0)));
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    assert!(!set_cookie(&r).unwrap().contains("Secure"));
    // The body was read with get_buffer_bytes(HttpRequestBody) and emptied with
    // set_buffer_bytes(HttpRequestBody, 0, size, "").
    let sets: Vec<&str> = r
        .calls()
        .iter()
        .filter(|c| c.name == "proxy_set_buffer_bytes")
        .map(|c| c.args.as_str())
        .collect();
    assert_eq!(sets, vec![format!("0, 0, {}, 0 bytes", GOOD_FORM.len())]);
    // A success stores the cleared record (an empty value), unconditionally.
    assert_eq!(h.shared_data().value(RATE_KEY), Some(Vec::new()));
    assert_eq!(attempts(&h.shared_data()), None);
    assert_eq!(h.metric("devgate.login.succeeded"), Some(1));
    r.assert_no_secret_in_logs(&[&token]);
    Ok(())
}

#[test]
fn login_success_in_many_small_chunks() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    for size in [1, 2, 7, 16] {
        let r = login_post(&mut h, PEER)
            .body_in_chunks_of(GOOD_FORM.as_bytes(), size)
            .send();
        assert_headers_scrubbed(&r);
        assert_body_withheld(&r);
        assert_eq!(r.body_calls.len(), GOOD_FORM.len().div_ceil(size));
        let last = r.body_calls.len() - 1;
        assert_eq!(r.local_phase(), Some(Phase::RequestBody(last)));
        let token = assert_success(&r);
        h.watch_secrets(&[&token]);
    }
    // Chunks split anywhere, empty chunks among them, and trailers at the end.
    let form = GOOD_FORM.as_bytes();
    let r = login_post(&mut h, PEER)
        .body_chunks(vec![
            form[..3].to_vec(),
            Vec::new(),
            form[3..20].to_vec(),
            Vec::new(),
            form[20..].to_vec(),
        ])
        .trailers(Headers::new())
        .send();
    assert_headers_scrubbed(&r);
    assert_body_withheld(&r);
    assert_eq!(r.trailers_action, Some(Action::Pause));
    assert_eq!(r.local_phase(), Some(Phase::RequestTrailers));
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    Ok(())
}

#[test]
fn login_over_tls_sets_a_secure_cookie() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let r = login_post_from(&mut h, PEER, "https://devgate.test")
        .property("connection.tls_version", b"TLSv1.3")
        .body(GOOD_FORM.as_bytes())
        .send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    assert!(
        set_cookie(&r).unwrap().contains("; Secure"),
        "{}",
        r.describe()
    );
    assert!(r
        .calls()
        .iter()
        .any(|c| c.name == "proxy_get_property" && c.args == "connection.tls_version"));
    // An empty property (plain-text listener in some Envoy builds) is not TLS.
    let r = login_post(&mut h, PEER)
        .property("connection.tls_version", b"")
        .body(GOOD_FORM.as_bytes())
        .send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    assert!(!set_cookie(&r).unwrap().contains("Secure"));
    Ok(())
}

#[test]
fn login_refuses_the_other_scheme_on_each_listener() -> HostResult<()> {
    // Regression: the CSRF check compared host and port only, so on a plain listener an
    // `https://` Origin or Referer of the same host and port set a session (and `http://` on TLS).
    let mut h = loaded(&config(""))?;
    for (tls, origin) in [
        (&b""[..], "https://devgate.test"),
        (b"", "https://devgate.test:80"),
        (b"TLSv1.3", "http://devgate.test"),
        (b"TLSv1.3", "http://devgate.test:443"),
    ] {
        let r = login_post_from(&mut h, PEER, origin)
            .property("connection.tls_version", tls)
            .body(GOOD_FORM.as_bytes())
            .send();
        assert_login_local(&r, 403);
        assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
        assert!(set_cookie(&r).is_none(), "{}", r.describe());
    }
    // A Referer without Origin is held to the same rule.
    let r = h
        .request()
        .peer(PEER)
        .method_path("POST", "/.devgate/login")
        .header("referer", "https://devgate.test/.devgate/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(GOOD_FORM.as_bytes())
        .send();
    assert_login_local(&r, 403);
    assert_eq!(h.metric("devgate.login.csrf"), Some(5));
    Ok(())
}

#[test]
fn the_session_cookie_admits_its_peer_as_the_user() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let r = login_post(&mut h, PEER)
        .body_in_chunks_of(GOOD_FORM.as_bytes(), 5)
        .send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);

    // Without it the peer is challenged.
    let r = h.request().peer(PEER).get("/_debug/").send();
    r.assert_well_formed();
    assert_eq!(r.status(), Some(401), "{}", r.describe());

    for peer in [PEER, "198.51.100.7:1"] {
        let r = h
            .request()
            .peer(peer)
            .get("/_debug/vars")
            .header("cookie", &format!("theme=dark; devgate_session={token}"))
            .header(IDENTITY, "spoofed-identity-5b1c9e")
            .send();
        r.assert_well_formed();
        assert!(r.forwarded, "{}", r.describe());
        let up = r.upstream_headers().unwrap();
        assert_eq!(
            up.get_all(IDENTITY),
            vec![&b"alice"[..]],
            "{}",
            r.describe()
        );
        // The session cookie never goes upstream; the others do.
        assert_eq!(up.get_str("cookie").as_deref(), Some("theme=dark"));
        // One audit property; the name is the identity header the upstream got.
        assert_eq!(
            r.properties_set.get("devgate_decision").map(Vec::as_slice),
            Some(&b"allow:session"[..])
        );
        assert_eq!(r.properties_set.len(), 1, "{:?}", r.properties_set);
        assert_eq!(r.client_status(), Some(200));
    }
    assert_eq!(h.metric("devgate.requests.allowed.session"), Some(2));

    // A tampered token is no session: challenged, and the cookie still never goes upstream.
    let mut bad = token.clone();
    bad.insert(bad.len() - 3, 'x');
    h.watch_secrets(&[&bad]);
    let r = h
        .request()
        .peer(PEER)
        .get("/healthz")
        .header("cookie", &format!("devgate_session={bad}"))
        .send();
    r.assert_well_formed();
    assert!(r.forwarded, "{}", r.describe());
    assert!(!r.upstream_headers().unwrap().contains("cookie"));
    assert!(!r.upstream_headers().unwrap().contains(IDENTITY));
    let r = h
        .request()
        .peer(PEER)
        .get("/_debug/")
        .header("cookie", &format!("devgate_session={bad}"))
        .send();
    r.assert_well_formed();
    assert!(matches!(r.status(), Some(401 | 403)), "{}", r.describe());
    r.assert_no_secret_in_logs(&[&token, &bad]);
    Ok(())
}

#[test]
fn a_session_and_a_bearer_token_together_are_refused() -> HostResult<()> {
    let mut h = loaded(&config(r#", "tokens": {}"#))?;
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    let r = h
        .request()
        .peer(PEER)
        .get("/_debug/")
        .header("cookie", &format!("devgate_session={token}"))
        .header("authorization", "Bearer bearer-secret-3c2a9f1e")
        .send();
    r.assert_well_formed();
    assert!(r.upstream_headers().is_none(), "{}", r.describe());
    Ok(())
}

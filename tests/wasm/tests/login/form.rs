//! The login form and the other endpoints under the mount (`/.devgate/`).

use devgate::core::login::{LOGIN_CSP, LOGIN_FAILED};
use devgate_wasm_tests as host;
use host::{HostResult, Phase};

use super::{assert_login_local, config, loaded, set_cookie, PEER};

#[test]
fn login_form_is_served_with_its_csp() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    for method in ["GET", "HEAD"] {
        let r = h
            .request()
            .peer(PEER)
            .method_path(method, "/.devgate/login?back=%2F_debug%2F")
            .send();
        assert_login_local(&r, 200);
        assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
        assert!(!r.body_was_read());
        let (_, headers, body) = r.local_response().unwrap();
        assert_eq!(
            headers.get_str("content-security-policy").as_deref(),
            Some(LOGIN_CSP)
        );
        assert_eq!(
            headers.get_str("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(headers.get_str("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(
            headers.get_str("cache-control").as_deref(),
            Some("no-store")
        );
        let body = String::from_utf8_lossy(body);
        assert!(body.contains("action=\"/.devgate/login\""), "{body}");
        assert!(body.contains("value=\"/_debug/\""), "{body}");
        assert!(!body.contains(LOGIN_FAILED));
        // The page passes through the encoder path untouched.
        let client = r.client_headers.as_ref().unwrap();
        assert_eq!(
            client.get_str("content-security-policy").as_deref(),
            Some(LOGIN_CSP)
        );
    }
    assert_eq!(h.metric("devgate.login.page"), Some(2));
    // No shared data is read or written for the form.
    assert!(h.shared_data().is_empty());
    Ok(())
}

#[test]
fn the_mount_is_answered_by_devgate_and_never_forwarded() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    for (method, path, status) in [
        ("GET", "/.devgate", 404),
        ("GET", "/.devgate/", 404),
        ("GET", "/.devgate/login/x", 404),
        ("POST", "/.devgate/other", 404),
        ("PUT", "/.devgate/login", 405),
        ("DELETE", "/.devgate/logout", 405),
    ] {
        // Even a network developer gets devgate's own answer.
        for peer in [PEER, "127.0.0.1:1"] {
            let r = h.request().peer(peer).method_path(method, path).send();
            assert_login_local(&r, status);
        }
    }
    let r = h
        .request()
        .peer(PEER)
        .method_path("PUT", "/.devgate/login")
        .send();
    assert_eq!(
        r.local().unwrap().headers.get_str("allow").as_deref(),
        Some("GET, HEAD, POST")
    );
    // Logout: 303 to / clearing the cookie, from anywhere, with any method it takes.
    for method in ["GET", "POST", "HEAD"] {
        let r = h
            .request()
            .peer(PEER)
            .method_path(method, "/.devgate/logout")
            .send();
        assert_login_local(&r, 303);
        let l = r.local().unwrap();
        assert_eq!(l.headers.get_str("location").as_deref(), Some("/"));
        let cookie = set_cookie(&r).unwrap();
        assert!(
            cookie.starts_with("devgate_session=;") && cookie.contains("Max-Age=0"),
            "{cookie}"
        );
    }
    Ok(())
}

//! The response path: an expired session cookie is cleared, and the upstream's developer
//! challenge is translated (`upstream_challenge`).

use devgate::core::login as core_login;
use devgate_wasm_tests as host;
use host::{Action, HostResult, Phase};

use super::{
    assert_success, config, loaded, login_post, upstream, GOOD_FORM, IDENTITY, KEY, NOW, PEER,
};

/// A session token for alice that expired an hour before `NOW`, minted with the crate's code.
fn expired_session() -> String {
    use devgate::core::token::{mint, Key, Secret};
    let key = Key {
        id: "k1".into(),
        secret: Secret::from_b64url(KEY).unwrap(),
    };
    let claims = core_login::session_claims("alice", "devgate_session", NOW - 7200, 3600, None);
    mint(&claims, &key)
}

fn cleared(value: &[u8]) -> bool {
    let v = String::from_utf8_lossy(value);
    v.starts_with("devgate_session=;") && v.contains("Max-Age=0")
}

#[test]
fn an_expired_session_cookie_is_cleared_on_the_response() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let old = expired_session();
    h.watch_secrets(&[&old]);
    let cookie = format!("devgate_session={old}; theme=dark");

    // A public path: forwarded anonymously, the cookie stripped, the clearing Set-Cookie added
    // to the upstream's response beside its own.
    let r = h
        .request()
        .peer(PEER)
        .get("/healthz")
        .header("cookie", &cookie)
        .upstream_response(upstream("200", &[]))
        .send();
    r.assert_well_formed();
    assert!(r.forwarded);
    let up = r.upstream_headers().unwrap();
    assert_eq!(up.get_str("cookie").as_deref(), Some("theme=dark"));
    assert!(!up.contains(IDENTITY));
    assert_eq!(r.response_action, Some(Action::Continue));
    let client = r.client_headers.as_ref().unwrap();
    let cookies = client.get_all("set-cookie");
    assert_eq!(cookies.len(), 2, "{}", r.describe());
    assert_eq!(cookies[0], b"app=1");
    assert!(cleared(cookies[1]), "{}", r.describe());
    assert_eq!(r.calls_named("proxy_add_header_map_value"), 1);

    // A network developer with an old cookie: still the developer, the cookie cleared.
    let r = h
        .request()
        .peer("127.0.0.1:1")
        .get("/_debug/")
        .header("cookie", &cookie)
        .send();
    r.assert_well_formed();
    assert_eq!(
        r.upstream_headers().unwrap().get_all(IDENTITY),
        vec![&b"127.0.0.1"[..]]
    );
    assert!(r
        .client_headers
        .as_ref()
        .unwrap()
        .get_all("set-cookie")
        .iter()
        .any(|v| cleared(v)));

    // A protected path: challenged, the challenge itself clearing the cookie.
    let r = h
        .request()
        .peer(PEER)
        .get("/_debug/")
        .header("cookie", &cookie)
        .send();
    r.assert_well_formed();
    assert_eq!(r.status(), Some(401));
    assert!(r
        .local()
        .unwrap()
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| cleared(v)));
    // The same token once the clock is back inside its lifetime is a session again.
    h.set_now(NOW - 3600);
    let r = h
        .request()
        .peer(PEER)
        .get("/_debug/")
        .header("cookie", &cookie)
        .send();
    r.assert_well_formed();
    assert_eq!(
        r.upstream_headers().unwrap().get_all(IDENTITY),
        vec![&b"alice"[..]],
        "{}",
        r.describe()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The upstream's developer challenge
// ------------------------------------------------------------------------------------------------

const CHALLENGE: &str = "x-wsgiorg.developer_user";

#[test]
fn an_upstream_developer_challenge_becomes_403_by_default() -> HostResult<()> {
    // A network developer, and an anonymous request on an open path.
    let both = [("127.0.0.1:1", "/_debug/"), (PEER, "/healthz")];
    for (cfg, requests) in [
        (config(""), &both[..]),
        (r#"{"protect": []}"#.to_string(), &both[..]),
        ("{}".to_string(), &both[..1]),
    ] {
        let mut h = loaded(&cfg)?;
        for &(peer, path) in requests {
            for www in [
                vec![CHALLENGE],
                vec!["Basic realm=\"x\"", "X-WSGIOrg.Developer_User"],
                vec!["Basic realm=\"x\", x-wsgiorg.developer_user"],
            ] {
                let r = h
                    .request()
                    .peer(peer)
                    .get(path)
                    .upstream_response(upstream("401", &www))
                    .send();
                r.assert_well_formed();
                assert!(r.forwarded);
                assert_eq!(r.status(), Some(403), "{cfg} {www:?}\n{}", r.describe());
                assert_eq!(r.local_phase(), Some(Phase::ResponseHeaders));
                assert_eq!(r.response_action, Some(Action::Pause));
                assert_eq!(r.client_status(), Some(403));
                let client = r.client_headers.as_ref().unwrap();
                assert!(!client.contains("www-authenticate"), "{}", r.describe());
                // The upstream's own headers are gone with its response.
                assert!(client.get_all("set-cookie").is_empty(), "{}", r.describe());
            }
            // Anything else passes through untouched.
            for (status, www) in [
                ("401", vec!["Basic realm=\"x\""]),
                ("401", vec![]),
                ("403", vec![CHALLENGE]),
                ("200", vec![CHALLENGE]),
                ("4010", vec![CHALLENGE]),
                ("401", vec!["x-wsgiorg.developer_userx"]),
            ] {
                let sent = upstream(status, &www);
                let r = h
                    .request()
                    .peer(peer)
                    .get(path)
                    .upstream_response(sent.clone())
                    .send();
                r.assert_well_formed();
                assert!(r.local().is_none(), "{status} {www:?}\n{}", r.describe());
                assert_eq!(r.client_headers.as_ref(), Some(&sent), "{}", r.describe());
            }
        }
        assert_eq!(
            h.metric("devgate.upstream_challenge.forbid"),
            Some(3 * requests.len() as i64)
        );
    }
    Ok(())
}

#[test]
fn upstream_challenge_login_sends_anonymous_clients_to_the_form() -> HostResult<()> {
    let mut h = loaded(&config(r#", "upstream_challenge": "login""#))?;
    let r = h
        .request()
        .peer(PEER)
        .get("/healthz/x?y=1&z=%2F")
        .upstream_response(upstream("401", &[CHALLENGE]))
        .send();
    r.assert_well_formed();
    assert_eq!(r.status(), Some(303), "{}", r.describe());
    assert_eq!(r.local_phase(), Some(Phase::ResponseHeaders));
    assert_eq!(
        r.local().unwrap().headers.get_str("location").as_deref(),
        Some("/.devgate/login?back=/healthz/x%3Fy%3D1%26z%3D%252F")
    );
    assert_eq!(h.metric("devgate.upstream_challenge.login"), Some(1));
    // A request devgate already sent a developer with: 403 (logging in again would loop).
    let r = h
        .request()
        .peer("127.0.0.1:1")
        .get("/_debug/")
        .upstream_response(upstream("401", &[CHALLENGE]))
        .send();
    r.assert_well_formed();
    assert_eq!(r.status(), Some(403), "{}", r.describe());
    let login = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    let token = assert_success(&login);
    h.watch_secrets(&[&token]);
    let r = h
        .request()
        .peer(PEER)
        .get("/_debug/")
        .header("cookie", &format!("devgate_session={token}"))
        .upstream_response(upstream("401", &[CHALLENGE]))
        .send();
    r.assert_well_formed();
    assert_eq!(r.status(), Some(403), "{}", r.describe());
    // An unsafe path is not carried into back.
    let r = h
        .request()
        .peer(PEER)
        .get("//evil.example/x")
        .upstream_response(upstream("401", &[CHALLENGE]))
        .send();
    r.assert_well_formed();
    if let Some(l) = r.local() {
        let location = l.headers.get_str("location").unwrap_or_default();
        assert!(
            location.is_empty() || location == "/.devgate/login?back=/",
            "{location}"
        );
    }
    // "pass" hands the 401 on.
    let mut h = loaded(&config(r#", "upstream_challenge": "pass""#))?;
    let sent = upstream("401", &[CHALLENGE]);
    let r = h
        .request()
        .peer(PEER)
        .get("/healthz")
        .upstream_response(sent.clone())
        .send();
    r.assert_well_formed();
    assert!(r.local().is_none());
    assert_eq!(r.client_headers.as_ref(), Some(&sent));
    Ok(())
}

/// Regression (found while writing these scenarios, fixed in the glue): when the response path
/// both clears an expired session (a `Set-Cookie` added to the upstream's response) and
/// translates the upstream's challenge, the translated reply replaces that response (Envoy's
/// direct local reply from the encoder path), and the clearing `Set-Cookie` is lost with it.
/// The client kept the expired cookie (harmless for the 303 to the form, which sets a new one
/// on success; in `forbid` mode it was sent again with every request until one got through).
#[test]
fn an_expired_cookie_is_cleared_even_when_the_upstream_challenge_is_translated() -> HostResult<()> {
    for (extra, peer, status) in [
        (r#", "upstream_challenge": "login""#, PEER, 303),
        ("", PEER, 403),
        ("", "127.0.0.1:1", 403),
    ] {
        let mut h = loaded(&config(extra))?;
        let old = expired_session();
        h.watch_secrets(&[&old]);
        let r = h
            .request()
            .peer(peer)
            .get("/healthz")
            .header("cookie", &format!("devgate_session={old}"))
            .upstream_response(upstream("401", &[CHALLENGE]))
            .send();
        r.assert_well_formed();
        assert_eq!(r.status(), Some(status), "{}", r.describe());
        let client = r.client_headers.as_ref().unwrap();
        assert!(
            client.get_all("set-cookie").iter().any(|v| cleared(v)),
            "the clearing Set-Cookie was lost\n{}",
            r.describe()
        );
    }
    Ok(())
}

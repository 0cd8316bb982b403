//! CSRF, rate limiting, cookies and the session token.

use std::net::IpAddr;

use crate::core::cookie::CookieError;
use crate::core::token::Purpose;

use super::*;

// -----------------------------------------------------------------------------------------
// same_origin

fn so(origin: &str, host: &str, https: bool) -> bool {
    same_origin(Some(origin.as_bytes()), host.as_bytes(), https)
}

#[test]
fn origin_matches() {
    // (origin or referer, :authority, listener is https)
    for (origin, host, https) in [
        ("https://dev.example.com", "dev.example.com", true),
        ("http://dev.example.com", "dev.example.com", false),
        ("https://DEV.Example.COM", "dev.example.com", true),
        ("HTTPS://dev.example.com", "Dev.Example.Com", true),
        ("HtTp://dev.example.com", "dev.example.com", false),
        ("https://dev.example.com:443", "dev.example.com", true),
        ("https://dev.example.com", "dev.example.com:443", true),
        ("http://dev.example.com", "dev.example.com:80", false),
        ("http://dev.example.com:80", "dev.example.com", false),
        ("http://localhost:10000", "localhost:10000", false),
        ("https://localhost:10443", "localhost:10443", true),
        ("http://127.0.0.1:10000", "127.0.0.1:10000", false),
        ("http://[::1]:10000", "[::1]:10000", false),
        ("https://[2001:db8::1]", "[2001:db8::1]", true),
        (" https://dev.example.com ", " dev.example.com ", true),
        // A Referer: path, query and fragment are ignored.
        (
            "https://dev.example.com/_devgate/login?back=/x#y",
            "dev.example.com",
            true,
        ),
        ("https://dev.example.com?x", "dev.example.com", true),
        ("http://localhost:10000/", "localhost:10000", false),
    ] {
        assert!(so(origin, host, https), "{origin:?} vs {host:?} ({https})");
        // The same URL on the other kind of listener is another origin.
        assert!(
            !so(origin, host, !https),
            "{origin:?} vs {host:?} ({https})"
        );
    }
}

#[test]
fn login_refuses_https_origin_on_plain_listener() {
    // Regression: the scheme only chose a default port, so on a plain-HTTP listener
    // `Origin: https://<host>:<port>` (or such a Referer) passed for `Host: <host>:<port>`.
    for (origin, host) in [
        ("https://dev.example.com:10000", "dev.example.com:10000"),
        ("https://dev.example.com", "dev.example.com"),
        ("https://dev.example.com", "dev.example.com:443"),
        ("https://dev.example.com:443", "dev.example.com:443"),
        ("https://dev.example.com:80", "dev.example.com"),
        (
            "https://dev.example.com:10000/.devgate/login",
            "dev.example.com:10000",
        ),
    ] {
        assert!(!so(origin, host, false), "{origin:?} vs {host:?}");
    }
    assert!(so(
        "http://dev.example.com:10000",
        "dev.example.com:10000",
        false
    ));
}

#[test]
fn login_refuses_http_origin_on_tls_listener() {
    for (origin, host) in [
        ("http://dev.example.com:10443", "dev.example.com:10443"),
        ("http://dev.example.com", "dev.example.com"),
        ("http://dev.example.com", "dev.example.com:80"),
        ("http://dev.example.com:443", "dev.example.com"),
        (
            "http://dev.example.com:10443/.devgate/login",
            "dev.example.com:10443",
        ),
    ] {
        assert!(!so(origin, host, true), "{origin:?} vs {host:?}");
    }
    assert!(so(
        "https://dev.example.com:10443",
        "dev.example.com:10443",
        true
    ));
}

#[test]
fn default_ports_follow_the_listener_scheme() {
    // Plain: `Host: h` is http://h:80.
    assert!(so("http://h:80", "h", false));
    assert!(so("http://h", "h:80", false));
    assert!(!so("http://h", "h:443", false));
    assert!(!so("http://h:443", "h", false));
    // TLS: `Host: h` is https://h:443.
    assert!(so("https://h:443", "h", true));
    assert!(so("https://h", "h:443", true));
    assert!(!so("https://h", "h:80", true));
    assert!(!so("https://h:80", "h", true));
    // A non-default port written on both sides is just a port.
    assert!(so("https://h:80", "h:80", true));
    assert!(so("http://h:443", "h:443", false));
}

#[test]
fn origin_refusals() {
    // Both headers absent.
    assert!(!same_origin(None, b"dev.example.com", true));
    assert!(!same_origin(None, b"dev.example.com", false));
    for (origin, host) in [
        ("null", "dev.example.com"),
        ("", "dev.example.com"),
        ("https://evil.com", "dev.example.com"),
        ("https://dev.example.com.evil.com", "dev.example.com"),
        ("https://evil.com/dev.example.com", "dev.example.com"),
        ("https://evil.com?dev.example.com", "dev.example.com"),
        ("https://example.com", "dev.example.com"),
        ("https://sub.dev.example.com", "dev.example.com"),
        ("https://dev.example.com.", "dev.example.com"),
        // Ports.
        ("https://dev.example.com:8443", "dev.example.com"),
        ("https://dev.example.com", "dev.example.com:8443"),
        ("http://dev.example.com", "dev.example.com:443"),
        ("https://dev.example.com", "dev.example.com:80"),
        ("http://localhost:10001", "localhost:10000"),
        ("http://localhost", "localhost:10000"),
        ("http://localhost:", "localhost"),
        ("http://localhost:x", "localhost"),
        ("http://localhost:99999", "localhost"),
        ("http://localhost:123456", "localhost"),
        ("http://localhost:10000", "localhost:"),
        // Userinfo, other schemes, malformed.
        ("https://dev.example.com@evil.com", "dev.example.com"),
        ("https://evil.com@dev.example.com", "dev.example.com"),
        ("ftp://dev.example.com", "dev.example.com"),
        ("file://dev.example.com", "dev.example.com"),
        ("javascript://dev.example.com", "dev.example.com"),
        ("dev.example.com", "dev.example.com"),
        ("//dev.example.com", "dev.example.com"),
        ("https:dev.example.com", "dev.example.com"),
        ("https://", ""),
        ("https://", "dev.example.com"),
        ("https://dev.example.com", ""),
        ("https://dev.example.com\\@evil.com", "dev.example.com"),
        ("http://[::1", "[::1"),
        ("http://[::1]x", "[::1]x"),
        ("http://::1", "::1"),
        ("http://[::1]:10000", "[::2]:10000"),
        ("https://dev example.com", "dev example.com"),
    ] {
        assert!(!so(origin, host, true), "{origin:?} vs {host:?}");
        assert!(!so(origin, host, false), "{origin:?} vs {host:?}");
    }
}

#[test]
fn origin_never_panics() {
    let alphabet = [
        "h", "t", "p", "s", ":", "/", "[", "]", "@", "1", "\u{ff}", ".",
    ];
    let n = alphabet.len();
    let mut s = String::new();
    for i in 0..n.pow(5) {
        s.clear();
        let mut k = i;
        for _ in 0..5 {
            s.push_str(alphabet[k % n]);
            k /= n;
        }
        let with_scheme = format!("https://{s}");
        for https in [true, false] {
            let _ = so(&s, &s, https);
            assert!(so(&with_scheme, &s, https) == so(&with_scheme, &s, https));
        }
        // https:// is never the origin of a plain listener.
        assert!(!so(&with_scheme, &s, false));
    }
    let _ = same_origin(Some(b"\xff\xfe://\xff"), b"\xff", true);
}

// -----------------------------------------------------------------------------------------
// Rate limiting

const T: u64 = 1_700_000_000;

#[test]
fn attempts_round_trip() {
    for a in [
        Attempts {
            count: 0,
            window_start: 0,
        },
        Attempts {
            count: 3,
            window_start: T,
        },
        Attempts {
            count: u32::MAX,
            window_start: u64::MAX,
        },
    ] {
        let bytes = a.to_bytes();
        assert_eq!(bytes.len(), Attempts::LEN);
        assert_eq!(Attempts::from_bytes(&bytes), Some(a));
    }
    assert_eq!(
        Attempts {
            count: 2,
            window_start: 0x0102_0304_0506_0708
        }
        .to_bytes(),
        [1, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(Attempts::from_bytes(Attempts::CLEARED), None);
    assert_eq!(Attempts::from_bytes(&[]), None);
    assert_eq!(Attempts::from_bytes(&[1; 12]), None);
    assert_eq!(Attempts::from_bytes(&[1; 14]), None);
    assert_eq!(Attempts::from_bytes(&[2; 13]), None);
    assert_eq!(Attempts::from_bytes(&[0; 13]), None);
}

#[test]
fn rate_limit_window() {
    let (limit, window) = (5, 300);
    let mut prev: Option<Attempts> = None;
    for i in 0..5 {
        assert_eq!(check(prev, T + i, limit, window), Verdict::Allow, "{i}");
        prev = Some(record_failure(prev, T + i, window));
    }
    assert_eq!(
        prev,
        Some(Attempts {
            count: 5,
            window_start: T
        })
    );
    assert_eq!(
        check(prev, T + 5, limit, window),
        Verdict::Limited { retry_after: 295 }
    );
    assert_eq!(
        check(prev, T + 299, limit, window),
        Verdict::Limited { retry_after: 1 }
    );
    assert_eq!(check(prev, T + 300, limit, window), Verdict::Allow);
    // A failure after the window starts a new one.
    assert_eq!(
        record_failure(prev, T + 300, window),
        Attempts {
            count: 1,
            window_start: T + 300
        }
    );
    // Failures while limited (should the glue record them) keep the window.
    assert_eq!(
        record_failure(prev, T + 10, window),
        Attempts {
            count: 6,
            window_start: T
        }
    );
    // Success resets: the glue stores CLEARED.
    let cleared = Attempts::from_bytes(Attempts::CLEARED);
    assert_eq!(check(cleared, T + 6, limit, window), Verdict::Allow);
}

#[test]
fn rate_limit_edges() {
    let full = Some(Attempts {
        count: 3,
        window_start: T,
    });
    assert_eq!(check(None, T, 0, 300), Verdict::Allow);
    assert_eq!(check(None, T, 3, 300), Verdict::Allow);
    // limit 0: the first failure locks until the window ends.
    let one = Some(record_failure(None, T, 300));
    assert_eq!(check(one, T, 0, 300), Verdict::Limited { retry_after: 300 });
    // window 0: never limited.
    assert_eq!(check(full, T, 3, 0), Verdict::Allow);
    assert_eq!(record_failure(full, T, 0).count, 1);
    // Clock stepped back, or a record from the future: not trusted, no lockout.
    assert_eq!(check(full, T - 1, 3, 300), Verdict::Allow);
    assert_eq!(record_failure(full, T - 1, 300).window_start, T - 1);
    let far = Some(Attempts {
        count: u32::MAX,
        window_start: u64::MAX,
    });
    assert_eq!(check(far, T, 3, 300), Verdict::Allow);
    // Overflow-safe at the top of the range.
    let top = Some(Attempts {
        count: u32::MAX,
        window_start: u64::MAX - 10,
    });
    assert_eq!(
        check(top, u64::MAX - 5, 3, u64::MAX),
        Verdict::Limited { retry_after: 5 }
    );
    assert_eq!(record_failure(top, u64::MAX - 5, u64::MAX).count, u32::MAX);
}

#[test]
fn rate_keys() {
    let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    assert_eq!(rate_key(v4), "devgate.login.203.0.113.7");
    let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped());
    assert_eq!(rate_key(mapped), "devgate.login.203.0.113.7");
    let v6: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
    assert_eq!(rate_key(v6), "devgate.login.2001:db8:1:2::/64");
    let same_64: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    assert_eq!(rate_key(same_64), rate_key(v6));
    let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_ne!(rate_key(other_64), rate_key(v6));
    assert_eq!(
        rate_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        "devgate.login.::/64"
    );
}

// -----------------------------------------------------------------------------------------
// Cookies and the session token

#[test]
fn cookies() {
    assert_eq!(
        session_cookie("devgate_session", "a.b.c", 28800, true).unwrap(),
        "devgate_session=a.b.c; Path=/; Max-Age=28800; Secure; HttpOnly; SameSite=Strict"
    );
    assert_eq!(
        session_cookie("devgate_session", "a.b.c", 60, false).unwrap(),
        "devgate_session=a.b.c; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
    );
    assert_eq!(
        clear_session_cookie("devgate_session", true).unwrap(),
        "devgate_session=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; \
         Secure; HttpOnly; SameSite=Strict"
    );
    assert_eq!(
        clear_session_cookie("devgate_session", false).unwrap(),
        "devgate_session=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; \
         HttpOnly; SameSite=Strict"
    );
    assert!(session_cookie("__Host-devgate", "t", 60, true).is_ok());
    assert_eq!(
        session_cookie("__Host-devgate", "t", 60, false),
        Err(CookieError::PrefixRules)
    );
    assert_eq!(
        session_cookie("bad name", "t", 60, true),
        Err(CookieError::BadName)
    );
    assert_eq!(
        session_cookie("n", "t;x", 60, true),
        Err(CookieError::BadValue)
    );
    assert_eq!(
        clear_session_cookie("bad;name", true),
        Err(CookieError::BadName)
    );
}

#[test]
fn session_token_round_trip() {
    let keys = KeySet::new(vec![Key {
        id: "k1".to_string(),
        secret: Secret::from_bytes(vec![7; 32]).unwrap(),
    }])
    .unwrap();
    let claims = session_claims("alice", "devgate_session", T, 3600, None);
    assert_eq!(claims.purpose, Purpose::Session);
    assert_eq!(claims.cookie.as_deref(), Some("devgate_session"));
    assert_eq!((claims.iat, claims.exp), (Some(T), T + 3600));
    token::check_claims(&claims).unwrap();
    let tok = token::mint(&claims, keys.signing_key());
    // The cookie carries it as is.
    assert!(session_cookie("devgate_session", &tok, 3600, true).is_ok());
    let expect = Expect::session("devgate_session", 30);
    assert_eq!(
        token::verify(tok.as_bytes(), &keys, &expect, T + 10),
        Ok(claims.clone())
    );
    // Not a developer token, not for another cookie, not after it expires.
    assert_eq!(
        token::verify(tok.as_bytes(), &keys, &Expect::developer(30), T + 10),
        Err(TokenError::WrongPurpose)
    );
    assert_eq!(
        token::verify(tok.as_bytes(), &keys, &Expect::session("other", 30), T + 10),
        Err(TokenError::WrongCookie)
    );
    assert_eq!(
        token::verify(tok.as_bytes(), &keys, &expect, T + 3600 + 30),
        Err(TokenError::Expired)
    );
    // Bound to a peer: IPv4-mapped folded, and enforced.
    let peer = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
    let bound = session_claims("alice", "devgate_session", T, 3600, Some(peer));
    assert_eq!(bound.cip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    let tok = token::mint(&bound, keys.signing_key());
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(
        token::verify(tok.as_bytes(), &keys, &expect.with_peer(other), T),
        Err(TokenError::WrongPeer)
    );
    assert!(token::verify(tok.as_bytes(), &keys, &expect.with_peer(peer), T).is_ok());
    // TTL overflow saturates.
    assert_eq!(
        session_claims("a", "c", u64::MAX - 1, 10, None).exp,
        u64::MAX
    );
}

#[test]
fn login_flow_end_to_end() {
    use crate::core::htpasswd::Users;
    // htpasswd -nbB -C 4 dave pw4
    let users = Users::parse(
        "dave:$2y$04$JZvtNra6rAJeuvkYEvBT1OJU4Xart.tMqynAn8LVPA77/z4HIdAEq\n",
        10,
    )
    .unwrap();
    let host = b"dev.example.com";
    let origin = Some(&b"https://dev.example.com"[..]);
    assert!(same_origin(origin, host, true));
    assert!(is_form_content_type(b"application/x-www-form-urlencoded"));
    let key = rate_key(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let mut stored: Vec<u8> = Vec::new();
    // Two wrong passwords, then the right one, with a limit of 3.
    for (body, ok) in [
        ("username=dave&password=nope&back=%2F_debug%2F", false),
        ("username=eve&password=pw4&back=%2F_debug%2F", false),
        ("username=dave&password=pw4&back=%2F_debug%2F", true),
    ] {
        let prev = Attempts::from_bytes(&stored);
        assert_eq!(check(prev, T, 3, 300), Verdict::Allow);
        let form = parse_form(body.as_bytes()).unwrap();
        let back = form.back.clone().unwrap_or_default();
        if users.verify(&form.username, &form.password) {
            assert!(ok);
            stored = Attempts::CLEARED.to_vec();
            let page = redirect(&back);
            assert_eq!(page.header("location"), Some("/_debug/"));
        } else {
            assert!(!ok);
            stored = record_failure(prev, T, 300).to_bytes().to_vec();
            assert_eq!(login_page("/_devgate", &back, true).status, 401);
        }
    }
    assert_eq!(Attempts::from_bytes(&stored), None);
    assert!(key.starts_with(RATE_KEY_PREFIX));
}

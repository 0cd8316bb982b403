//! Developer tokens (minted natively with the crate's own code), as Bearer and as cookie: the
//! values that matter most for the no-secret-in-logs rule.

use devgate_wasm_tests as host;
use host::{Headers, Host, HostResult};

use super::{
    assert_anonymous_pass, assert_developer, assert_generic_body, fresh, loaded, watched, IDENTITY,
    SECRETS, SPOOF, SPOOF2,
};

/// `devgate-scenario-key-0123456789abcdef!` as base64url: this module's own test key.
const KEY_B64: &str = "ZGV2Z2F0ZS1zY2VuYXJpby1rZXktMDEyMzQ1Njc4OWFiY2RlZiE";

/// The host's default clock (2026-01-01T00:00:00Z).
const NOW: u64 = 1_767_225_600;

fn token(sub: &str, exp: u64) -> String {
    use devgate::core::token::{mint, Claims, Key, Purpose, Secret};
    let key = Key {
        id: "k1".into(),
        secret: Secret::from_b64url(KEY_B64).unwrap(),
    };
    let claims = Claims {
        sub: sub.into(),
        purpose: Purpose::Developer,
        cookie: None,
        cip: None,
        jti: None,
        iat: Some(NOW - 60),
        nbf: None,
        exp,
    };
    mint(&claims, &key)
}

#[test]
fn bearer_token_developers_and_their_tokens_never_logged() -> HostResult<()> {
    let config = format!(
        r#"{{"network": {{"allow": []}}, "keys": [{{"id": "k1", "secret": "{KEY_B64}"}}],
            "tokens": {{"bearer": true}}}}"#
    );
    let mut h = loaded(&config)?;
    let good = token("alice", NOW + 3600);
    let expired = token("alice", NOW - 3600);
    let mut tampered = good.clone();
    tampered.insert(tampered.len() - 2, 'x');
    h.watch_secrets(&[&good, &expired, &tampered, KEY_B64]);

    let r = h
        .request()
        .peer("203.0.113.9:1")
        .get("/")
        .header("authorization", &format!("Bearer {good}"))
        .header(IDENTITY, SPOOF)
        .send();
    assert_developer(&r, "alice");

    for bad in [&expired, &tampered] {
        let r = h
            .request()
            .peer("203.0.113.9:1")
            .get("/")
            .header("authorization", &format!("Bearer {bad}"))
            .send();
        r.assert_well_formed();
        assert!(r.upstream_headers().is_none(), "{}", r.describe());
        assert!(matches!(r.status(), Some(401 | 403)), "{}", r.describe());
        assert_generic_body(r.local_response().unwrap().2);
    }
    // The same token once the host clock passes its expiry (leeway included).
    h.set_now(NOW + 3600 + 3600);
    let r = h
        .request()
        .peer("203.0.113.9:1")
        .get("/")
        .header("authorization", &format!("Bearer {good}"))
        .send();
    r.assert_well_formed();
    assert!(
        r.upstream_headers().is_none(),
        "expired token accepted\n{}",
        r.describe()
    );
    h.set_now(NOW);
    // None of them reached a log line (checked again when `h` drops).
    h.assert_no_secret_in_logs(&[&good, &expired, &tampered, KEY_B64]);
    Ok(())
}

#[test]
fn key_secrets_can_come_from_the_vm_environment() -> HostResult<()> {
    let mut h = watched(Host::builder().env("DEVGATE_K1", KEY_B64))?;
    let ok = h.configure(
        r#"{"network": {"allow": []}, "keys": [{"id": "k1", "secret_env": "DEVGATE_K1"}],
            "tokens": {"bearer": true}}"#,
    )?;
    assert!(ok, "{:?}", h.logs());
    let good = token("bob", NOW + 60);
    h.watch_secrets(&[&good, KEY_B64]);
    let r = h
        .request()
        .peer("203.0.113.9:1")
        .get("/")
        .header("authorization", &format!("Bearer {good}"))
        .send();
    assert_developer(&r, "bob");
    // A missing variable is a configuration error naming the field, without the value.
    let mut h = fresh()?;
    assert!(!h.configure(
        r#"{"keys": [{"id": "k1", "secret_env": "DEVGATE_NOT_SET"}], "tokens": {"bearer": true}}"#
    )?);
    assert!(
        h.logs()
            .iter()
            .any(|l| l.message.contains("keys[0].secret_env")),
        "{:?}",
        h.logs()
    );
    Ok(())
}

#[test]
fn host_buffers_of_every_size_are_read_whole_and_freed() -> HostResult<()> {
    // src/host/wasm/bindings.rs `take` rebuilds every buffer the host hands back (header maps, header
    // values, properties) as the boxed slice the SDK's allocator leaked. Sizes 0 (a NULL pointer)
    // to a few KiB, odd and even, must come back byte for byte, and freeing them must neither
    // corrupt the allocator (a trap) nor leak (memory that keeps growing).
    let mut h = loaded(r#"{"protect": ["/_debug/"]}"#)?;
    let send = |h: &mut Host, n: usize| {
        let value: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let path = format!("/{}", &value[..n.min(300)]);
        let mut upstream = Headers::new();
        upstream.add(b":status", b"401");
        upstream.add(b"www-authenticate", b"x-wsgiorg.developer_user");
        upstream.add(b"x-odd-response", value.as_bytes());
        let r = h
            .request()
            .peer("10.9.9.9:1234")
            .get(&path)
            .header("x-odd", &value)
            .header(IDENTITY, &value)
            .upstream_response(upstream)
            .send();
        assert_anonymous_pass(&r);
        let up = r.upstream_headers().unwrap();
        assert_eq!(up.get("x-odd"), Some(value.as_bytes()), "{n}");
        assert_eq!(up.get(":path"), Some(path.as_bytes()), "{n}");
        // The upstream's challenge was read (one header value, then the whole map) and turned
        // into devgate's 403.
        assert_eq!(r.client_status(), Some(403), "{n}\n{}", r.describe());
    };
    let sizes: Vec<usize> = (0..=67).chain([255, 256, 257, 1023, 4095, 4097]).collect();
    for &n in &sizes {
        send(&mut h, n);
    }
    // An empty `source.address` comes back as a NULL pointer and size 0.
    let r = h.request().peer("").get("/").send();
    assert_anonymous_pass(&r);
    let settled = h.memory_bytes();
    for _ in 0..20 {
        for &n in &sizes {
            send(&mut h, n);
        }
    }
    assert_eq!(
        h.memory_bytes(),
        settled,
        "memory grew over {} more requests: a buffer is not freed",
        20 * sizes.len()
    );
    Ok(())
}

#[test]
fn identity_and_api_headers_in_request_trailers_never_reach_the_upstream() -> HostResult<()> {
    // Regression: devgate never looked at request trailers, so an HTTP/2 or chunked
    // request could carry the identity header (or devgate's API headers) after its body.
    let config = r#"{"protect": ["/_debug/"], "keys": [{"id": "k1", "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}],
                     "api": {"routes": [{"prefix": "/v1", "product": "maps"}]}}"#;
    let mut h = loaded(config)?;
    for peer in ["127.0.0.1:1", "10.9.9.9:1"] {
        let mut trailers = Headers::new();
        trailers.add_raw(IDENTITY.as_bytes(), SPOOF.as_bytes());
        trailers.add_raw(b"x_wsgiorg_developer_user", SPOOF2.as_bytes());
        trailers.add_raw(b"x-devgate-organization", b"other-org");
        trailers.add_raw(b"x_devgate_count", b"false");
        trailers.add_raw(b"x-checksum", b"abc");
        let r = h
            .request()
            .peer(peer)
            .method_path("POST", "/upload")
            .body(b"data")
            .trailers(trailers)
            .send();
        r.assert_well_formed();
        assert!(r.forwarded, "{}", r.describe());
        let passed = r.trailers_passed_on.clone().unwrap();
        let names: Vec<&[u8]> = passed.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec![&b"x-checksum"[..]], "{}", r.describe());
    }
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

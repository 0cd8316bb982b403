use super::*;
use crate::core::policy::{Unauthenticated, WhenStale};

fn field_of(json: &str) -> String {
    parse_policy(json.as_bytes()).unwrap_err().field
}

#[test]
fn empty_config_is_closed_defaults() {
    for json in ["", "  \n", "{}"] {
        let p = parse_policy(json.as_bytes()).unwrap();
        assert_eq!(p.header.as_str(), "x-wsgiorg-developer-user");
        assert_eq!(p.net.allow, CidrList::loopback());
        assert!(p.net.deny.0.is_empty());
        assert!(!p.net.trust_forwarded);
        assert!(
            p.is_protected(b"GET", b"/"),
            "everything is protected by default"
        );
        assert!(p.is_protected(b"POST", b"/any/thing"));
        assert_eq!(p.unauthenticated, Unauthenticated::Challenge);
    }
}

#[test]
fn errors_name_the_field() {
    assert_eq!(field_of(r#"{"nope": 1}"#), "nope");
    assert_eq!(field_of(r#"{"network": {"alow": []}}"#), "network.alow");
    assert_eq!(
        field_of(r#"{"network": {"allow": ["10.0.0.1/8"]}}"#),
        "network.allow[0]"
    );
    assert_eq!(
        field_of(r#"{"network": {"allow": ["::1"], "deny": ["::1", "x"]}}"#),
        "network.deny[1]"
    );
    assert_eq!(
        field_of(r#"{"network": {"trust_forwarded": "yes"}}"#),
        "network.trust_forwarded"
    );
    assert_eq!(
        field_of(r#"{"unauthenticated": "maybe"}"#),
        "unauthenticated"
    );
    assert_eq!(field_of(r#"{"header": "bad header"}"#), "header");
    assert_eq!(field_of(r#"{"protect": ["debug"]}"#), "protect[0]");
    assert_eq!(
        field_of(r#"{"protect": [{"prefix": "/a/../b"}]}"#),
        "protect[0].prefix"
    );
    assert_eq!(
        field_of(r#"{"protect": [{"prefix": "/a", "methods": ["get"]}]}"#),
        "protect[0].methods[0]"
    );
    assert_eq!(
        field_of(r#"{"protect": [{"prefix": "/a", "methods": []}]}"#),
        "protect[0].methods"
    );
    assert_eq!(
        field_of(r#"{"protect": [{"prefix": "/a", "x": 1}]}"#),
        "protect[0].x"
    );
    assert_eq!(field_of(r#"{"protect": [7]}"#), "protect[0]");
    assert_eq!(
        field_of(r#"{"protect": [{"prefix": "/x/", "verbs": ["GET"]}]}"#),
        "protect[0].verbs"
    );
    assert_eq!(field_of(r#"{"public": ["/ok", "nope"]}"#), "public[1]");
    assert_eq!(field_of(r#"[]"#), "(root)");
    assert_eq!(field_of(r#"{} {}"#), "(root)");
    assert_eq!(field_of(r#"{"header": "\u0000"}"#), "header");
}

#[test]
fn messages_are_pinned() {
    let e = parse_policy(br#"{"network": {"allow": ["10.0.0.1/8"]}}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field `network.allow[0]`: host bits set after the prefix; did you mean 10.0.0.0/8?"
    );
    let e = parse_policy(br#"{"unauthenticated": "maybe"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field `unauthenticated`: unknown variant `…`, expected `challenge` or `forbid`"
    );
    let e = parse_policy(br#"{"extra": true}"#).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("field `extra`: unknown field `extra`"),
        "{e}"
    );
}

#[test]
fn misplaced_values_are_not_echoed() {
    let e = parse_policy(br#"{"network": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}"#).unwrap_err();
    assert_eq!(e.field, "network");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    let e = parse_policy(br#"{"unauthenticated": "config-secret-a1b2"}"#).unwrap_err();
    assert!(!e.to_string().contains("config-secret"), "regression: {e}");
    let e = parse_policy(br#"{"network": {"deny": "topsecretvalue"}}"#).unwrap_err();
    assert!(!e.to_string().contains("topsecret"), "{e}");
    assert!(!e.message.contains("line"), "{e}");
}

#[test]
fn longest_rule_wins_and_ties_protect() {
    let p = parse_policy(br#"{"protect": ["/"], "public": ["/healthz", "/static/"]}"#).unwrap();
    assert!(p.is_protected(b"GET", b"/"));
    assert!(!p.is_protected(b"GET", b"/healthz"));
    assert!(!p.is_protected(b"GET", b"/static/app.js"));
    assert!(
        p.is_protected(b"GET", b"/HEALTHZ"),
        "public rules do not fold case"
    );
    let p = parse_policy(br#"{"protect": ["/a"], "public": ["/a"]}"#).unwrap();
    assert!(p.is_protected(b"GET", b"/a/x"));
    let p = parse_policy(br#"{"protect": ["/_debug/"], "public": ["/"]}"#).unwrap();
    assert!(p.is_protected(b"GET", b"/_DEBUG/x"));
    assert!(!p.is_protected(b"GET", b"/other"));
}

#[test]
fn method_rules() {
    let p = parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["POST", "DELETE"]}]}"#)
        .unwrap();
    assert!(p.is_protected(b"POST", b"/api/x"));
    assert!(!p.is_protected(b"GET", b"/api/x"));
    assert!(
        !p.is_protected(b"post", b"/api/x"),
        "methods are case-sensitive"
    );
    assert!(!p.is_protected(b"POST", b"/"));
    let p = parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["GET"]}]}"#).unwrap();
    assert!(
        p.is_protected(b"HEAD", b"/api/x"),
        "GET handlers answer HEAD"
    );
    let p = parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["HEAD"]}]}"#).unwrap();
    assert!(p.is_protected(b"HEAD", b"/api/x"));
}

#[test]
fn invalid_json_says_so() {
    let e = parse_policy(br#"{"protect": ["/"]"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field `(root)`: not valid JSON (line 1, column 17)"
    );
    let e = parse_policy(b"{\"header\": \"x\" secret}").unwrap_err();
    assert_eq!(e.field, "(root)");
    assert!(!e.message.contains("secret"));
}

#[test]
fn protect_nothing_is_explicit() {
    let p = parse_policy(br#"{"protect": []}"#).unwrap();
    assert!(!p.is_protected(b"GET", b"/_debug/"));
}

#[test]
fn oversized_config_is_refused() {
    let big = vec![b' '; MAX_CONFIG_LEN + 1];
    assert_eq!(parse_policy(&big).unwrap_err().field, "(root)");
}

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn tok_err(json: &str) -> ConfigError {
    parse_policy_with_env(json.as_bytes(), &|v| match v {
        "GOOD" => Some(SECRET.to_string()),
        "SHORT" => Some("c2hvcnQ".to_string()),
        _ => None,
    })
    .unwrap_err()
}

#[test]
fn token_config_errors_name_the_field() {
    let e = tok_err(r#"{"tokens": {}}"#);
    assert_eq!(e.field, "keys");
    let e = tok_err(r#"{"keys": [{"id": "k1", "secret_env": "MISSING"}], "tokens": {}}"#);
    assert_eq!(e.to_string(), "field `keys[0].secret_env`: environment variable MISSING is not set in Envoy's process environment");
    // A tool names the place it read: check-config says which host's environment.
    let e = parse_policy_in(
        br#"{"login": {"users_env": "NOPE"}, "keys": [{"id": "k1", "secret_env": "GOOD"}]}"#,
        &Environment {
            lookup: &|v| (v == "GOOD").then(|| SECRET.to_string()),
            place: WASM_VM_ENVIRONMENT,
        },
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "field `login.users_env`: environment variable NOPE is not set in the Wasm VM (vm_config.environment_variables)");
    let e = tok_err(r#"{"keys": [{"id": "k1", "secret_env": "SHORT"}], "tokens": {}}"#);
    assert_eq!(e.field, "keys[0].secret_env");
    assert!(!e.message.contains("c2hvcnQ"));
    let e = tok_err(r#"{"keys": [{"id": "k1", "secret": "c2VjcmV0LXRvby1zaG9ydA"}]}"#);
    assert_eq!(e.field, "keys[0].secret");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    let e = tok_err(&format!(
        r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}", "secret_env": "GOOD"}}]}}"#
    ));
    assert_eq!(e.field, "keys[0]");
    let e = tok_err(
        r#"{"keys": [{"id": "k1", "secret_env": "GOOD"}, {"id": "k1", "secret_env": "GOOD"}]}"#,
    );
    assert_eq!(
        e.to_string(),
        "field `keys[1].id`: duplicates an earlier key id"
    );
    let e = tok_err(r#"{"keys": [{"id": "bad id", "secret_env": "GOOD"}]}"#);
    assert_eq!(e.field, "keys[0].id");
    let base = r#"{"keys": [{"id": "k1", "secret_env": "GOOD"}], "tokens": "#;
    assert_eq!(
        tok_err(&format!(r#"{base}{{"leeway_seconds": 301}}}}"#)).field,
        "tokens.leeway_seconds"
    );
    assert_eq!(
        tok_err(&format!(r#"{base}{{"cookie": "a b"}}}}"#)).field,
        "tokens.cookie"
    );
    assert_eq!(
        tok_err(&format!(r#"{base}{{"bearer": false, "cookie": null}}}}"#)).field,
        "tokens"
    );
    assert_eq!(
        tok_err(&format!(r#"{base}{{"allow_from": ["1.2.3.4/8"]}}}}"#)).field,
        "tokens.allow_from[0]"
    );
    assert_eq!(
        tok_err(&format!(r#"{base}{{"cokie": "x"}}}}"#)).field,
        "tokens.cokie"
    );
}

#[test]
fn token_defaults() {
    let json = r#"{"keys": [{"id": "new", "secret_env": "GOOD"}, {"id": "old", "secret_env": "GOOD"}], "tokens": {}}"#;
    let p = parse_policy_with_env(json.as_bytes(), &|_| Some(SECRET.to_string())).unwrap();
    let t = p.tokens.unwrap();
    assert!(t.bearer);
    assert_eq!(t.cookie.as_deref(), Some("devgate_token"));
    assert!(t.allow_from.is_none());
    assert!(!t.bind_peer);
    assert_eq!(t.leeway, 30);
    assert!(t.strip_credential);
    assert_eq!(t.keys.signing_key().id, "new", "the first key signs");
    assert!(t.keys.get("old").is_some(), "every key verifies");
    assert!(
        parse_policy(b"{}").unwrap().tokens.is_none(),
        "tokens are off by default"
    );
}

const HTPASSWD: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";

fn login_err(login: &str, extra: &str) -> ConfigError {
    let json =
        format!(r#"{{"keys": [{{"id": "k1", "secret_env": "GOOD"}}], "login": {login} {extra}}}"#);
    tok_err(&json)
}

#[test]
fn login_config_errors_name_the_field() {
    let users = format!(r#""users": "{HTPASSWD}""#);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!(r#"{{{users}, "mount": "/"}}"#),
            "login.mount",
            "segments",
        ),
        (
            format!(r#"{{{users}, "mount": "/a/"}}"#),
            "login.mount",
            "segments",
        ),
        (
            format!(r#"{{{users}, "mount": "/a/../b"}}"#),
            "login.mount",
            "segments",
        ),
        (
            format!(r#"{{{users}, "cookie": "a b"}}"#),
            "login.cookie",
            "cookie name",
        ),
        (
            format!(r#"{{{users}, "cookie": "devgate_token"}}"#),
            "login.cookie",
            "differ",
        ),
        (
            format!(r#"{{{users}, "cookie": "__Host-s"}}"#),
            "login.cookie",
            "secure_cookie",
        ),
        (
            format!(r#"{{{users}, "session_seconds": 10}}"#),
            "login.session_seconds",
            "between",
        ),
        (
            format!(r#"{{{users}, "max_cost": 13}}"#),
            "login.max_cost",
            "between 4 and 12",
        ),
        (
            format!(r#"{{{users}, "max_failures": 0}}"#),
            "login.max_failures",
            "between",
        ),
        (
            format!(r#"{{{users}, "verifies_per_minute": 0}}"#),
            "login.verifies_per_minute",
            "0 would refuse every login",
        ),
        (
            format!(r#"{{{users}, "verifies_per_minute": 60001}}"#),
            "login.verifies_per_minute",
            "between 1 and 60000",
        ),
        (
            format!(r#"{{{users}, "verify_burst": 0}}"#),
            "login.verify_burst",
            "between 1 and 1000",
        ),
        (
            format!(r#"{{{users}, "verify_burst": 1001}}"#),
            "login.verify_burst",
            "between 1 and 1000",
        ),
        (
            format!(r#"{{{users}, "failure_window_seconds": 0}}"#),
            "login.failure_window_seconds",
            "between",
        ),
        (
            format!(r#"{{{users}, "allow_from": ["10.0.0.1/8"]}}"#),
            "login.allow_from[0]",
            "",
        ),
        (
            format!(r#"{{{users}, "users_env": "X"}}"#),
            "login",
            "exactly one",
        ),
        ("{}".to_string(), "login", "exactly one"),
        (
            r#"{"users_env": "NOPE"}"#.to_string(),
            "login.users_env",
            "not set",
        ),
        (
            r#"{"users": "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}"#.to_string(),
            "login.users",
            "only bcrypt",
        ),
        (
            r#"{"users": "bob:$apr1$x$y"}"#.to_string(),
            "login.users",
            "only bcrypt",
        ),
        (
            format!(r#"{{{users}, "colour": 1}}"#),
            "login.colour",
            "unknown field",
        ),
    ];
    for (login, field, msg) in cases {
        let e = login_err(&login, r#", "tokens": {}"#);
        assert_eq!(e.field, field, "{login}: {e}");
        assert!(e.message.contains(msg), "{login}: {e}");
        for secret_part in ["WBNRJBi", "W6ph5Mm5", "$x$y"] {
            assert!(!e.to_string().contains(secret_part), "{e}");
        }
    }
    // No keys to sign sessions with.
    let e = tok_err(&format!(r#"{{"login": {{{users}}}}}"#));
    assert_eq!(e.field, "keys");
    // upstream_challenge: login needs the form.
    let e = tok_err(r#"{"upstream_challenge": "login"}"#);
    assert_eq!(e.field, "upstream_challenge");
}

#[test]
fn login_defaults() {
    let json = format!(
        r#"{{"keys": [{{"id": "k1", "secret_env": "GOOD"}}], "login": {{"users": "{HTPASSWD}"}}}}"#
    );
    let p = parse_policy_with_env(json.as_bytes(), &|_| Some(SECRET.to_string())).unwrap();
    let l = p.login.unwrap();
    assert_eq!(l.mount, "/.devgate");
    assert_eq!(l.cookie, "devgate_session");
    assert_eq!(l.session_seconds, 8 * 3600);
    assert!(l.allow_from.is_none() && !l.secure_cookie && !l.bind_peer);
    assert_eq!((l.max_failures, l.failure_window, l.leeway), (5, 300, 30));
    // Two verifies a second, three at once.
    assert_eq!(l.verify_budget, Budget::per_minute(120, 3));
    assert_eq!(
        (l.verify_budget.interval_ms, l.verify_budget.burst),
        (500, 3)
    );
    assert_eq!(l.users.len(), 1);
    assert_eq!(p.upstream_challenge, UpstreamChallenge::Forbid);
}

#[test]
fn revocation_config() {
    let base = r#"{"keys": [{"id": "k1", "secret_env": "GOOD"}], "tokens": {}, "revocation": "#;
    let ok = parse_policy_with_env(
        format!(r#"{base} {{"cluster": "revocation"}}}}"#).as_bytes(),
        &|_| Some(SECRET.to_string()),
    )
    .unwrap();
    let r = ok.revocation.unwrap();
    assert_eq!(
        (r.authority.as_str(), r.path.as_str()),
        ("revocation", "/revoked.json")
    );
    assert_eq!(
        (r.refresh_seconds, r.timeout_ms, r.max_stale_seconds),
        (30, 2000, 300)
    );
    assert_eq!(r.when_stale, WhenStale::Refuse);
    for (json, field) in [
        (r#"{"cluster": ""}"#, "revocation.cluster"),
        (r#"{"cluster": "a b"}"#, "revocation.cluster"),
        (r#"{"cluster": "c", "path": "x"}"#, "revocation.path"),
        (
            r#"{"cluster": "c", "refresh_seconds": 0}"#,
            "revocation.refresh_seconds",
        ),
        (
            r#"{"cluster": "c", "timeout_ms": 5}"#,
            "revocation.timeout_ms",
        ),
        (
            r#"{"cluster": "c", "refresh_seconds": 60, "max_stale_seconds": 30}"#,
            "revocation.max_stale_seconds",
        ),
        (
            r#"{"cluster": "c", "when_stale": "open"}"#,
            "revocation.when_stale",
        ),
        (r#"{"cluster": "c", "url": "x"}"#, "revocation.url"),
    ] {
        assert_eq!(tok_err(&format!("{base} {json}}}")).field, field, "{json}");
    }
    let e = tok_err(r#"{"revocation": {"cluster": "c"}}"#);
    assert_eq!(e.field, "revocation");
}

#[test]
fn quoted_values_with_escaped_quotes_are_redacted_whole() {
    // Found by the config fuzz target: a string value holding `"` was quoted by serde as
    // "\"session_sEconds\"", and the redaction ended at the first escaped quote, echoing
    // the rest of the value.
    for json in [
        r#""\"session_sEconds\"""#,
        r#"{"login": "\"s3cret-value\" and more"}"#,
        r#"{"keys": [{"id": "k\\\"x-secret-part"}]}"#,
    ] {
        let e = parse_policy(json.as_bytes()).unwrap_err();
        let text = e.to_string();
        for part in ["session_sEconds", "s3cret-value", "secret-part"] {
            assert!(!text.contains(part), "{text}");
        }
    }
}

#[test]
fn unknown_variants_with_backticks_are_redacted_whole() {
    // Found by the config fuzz target (fuzz/corpus/config/regression_backtick_in_variant.json):
    // the redaction of an unknown variant ended at the first backtick inside the value.
    for json in [
        r#"{"unauthenticated": "ab`SECRETSECRETSECRET"}"#,
        r#"{"unauthenticated": "ab`, expected `SECRETSECRETSECRET"}"#,
    ] {
        let e = parse_policy(json.as_bytes()).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("expected"), "{text}");
    }
}

/// An `api` section with one route and `service` as given (`{}`-less JSON members after
/// `cluster` and `keys`), with or without the top-level `keys`.
fn service_config(top_keys: bool, service: &str) -> String {
    let keys = if top_keys {
        r#""keys": [{"id": "k1", "secret_env": "GOOD"}], "#
    } else {
        ""
    };
    let sep = if service.is_empty() { "" } else { ", " };
    format!(
        r#"{{{keys}"api": {{"routes": [{{"prefix": "/api/", "product": "p"}}],
            "service": {{"cluster": "key_service",
                         "keys": [{{"id": "ks1", "secret_env": "KS"}}]{sep}{service}}}}}}}"#
    )
}

fn service_env(v: &str) -> Option<String> {
    matches!(v, "GOOD" | "KS").then(|| SECRET.to_string())
}

fn service_err(service: &str) -> ConfigError {
    parse_policy_with_env(service_config(false, service).as_bytes(), &service_env).unwrap_err()
}

#[test]
fn key_service_defaults() {
    let p = parse_policy_with_env(service_config(false, "").as_bytes(), &service_env).unwrap();
    let api = p.api.unwrap();
    assert!(api.keys.is_none(), "keys are optional with a key service");
    let s = api.service.unwrap();
    assert_eq!(s.cluster, "key_service");
    assert_eq!(
        s.authority, "key_service",
        "authority defaults to the cluster"
    );
    assert_eq!(s.path, "/access_tokens/");
    assert_eq!(s.key_header, "x-api-key");
    assert_eq!(s.timeout_ms, 1000);
    assert_eq!((s.issuer, s.audience), (None, None));
    assert_eq!(s.leeway, 30);
    assert_eq!(s.claims, crate::core::keyservice::ClaimNames::default());
    assert_eq!(s.claims.organization, "organization_id");
    assert_eq!(s.claims.id, "jti");
    assert_eq!(
        s.cache,
        crate::core::keyservice::CacheLimits {
            entries: 4096,
            rejections: 4096,
            max_ttl_s: 300,
            rejection_ttl_s: 30,
            max_stale_s: 3600,
            retry_ms: 1000,
        }
    );
    assert_eq!(
        s.budget,
        crate::core::keyservice::CalloutBudget {
            per_second: 50,
            burst: 100,
            in_flight: 64,
            waiters: 64,
        }
    );
    assert_eq!(
        s.shape,
        crate::core::keyservice::KeyShape {
            min_len: 16,
            max_len: 256,
            public_prefix: String::new(),
            private_prefix: String::new(),
        }
    );
    assert_eq!(
        s.store_prefix,
        crate::core::keyservice::store_prefix(
            "key_service",
            "key_service",
            "/access_tokens/",
            "x-api-key"
        )
    );
    let crate::core::keysource::KeySource::Hmac(keys) = &s.signing else {
        panic!("HS256 keys expected");
    };
    assert_eq!(keys.signing_key().id, "ks1");
}

#[test]
fn key_service_every_field_set() {
    let p = parse_policy_with_env(
        service_config(
            true,
            r#""authority": "ks.internal:8443", "path": "/v1/keys", "key_header": "X_Key",
               "timeout_ms": 50, "issuer": "https://auth.example", "audience": "devgate",
               "leeway_seconds": 0,
               "claims": {"kind": "k", "organization": "o", "project": "p", "products": "ps",
                          "write": "w", "referers": "r", "ips": "i", "id": "key_id"},
               "cache": {"entries": 1, "rejections": 1000000, "max_ttl_seconds": 86400,
                         "rejection_ttl_seconds": 1, "max_stale_seconds": 0, "retry_ms": 100},
               "budget": {"per_second": 1, "burst": 100000, "in_flight": 10000, "waiters": 1},
               "shape": {"min_length": 4096, "max_length": 4096, "public_prefix": "woos-",
                         "private_prefix": "sk.A~_-9"}"#,
        )
        .as_bytes(),
        &service_env,
    )
    .unwrap();
    let api = p.api.unwrap();
    assert_eq!(api.keys.unwrap().signing_key().id, "k1");
    let s = api.service.unwrap();
    assert_eq!(s.authority, "ks.internal:8443");
    assert_eq!(s.path, "/v1/keys");
    assert_eq!(s.key_header, "x-key", "header names are folded");
    assert_eq!(s.timeout_ms, 50);
    assert_eq!(s.issuer.as_deref(), Some("https://auth.example"));
    assert_eq!(s.audience.as_deref(), Some("devgate"));
    assert_eq!(s.leeway, 0);
    assert_eq!(
        (s.claims.kind.as_str(), s.claims.id.as_str()),
        ("k", "key_id")
    );
    assert_eq!((s.cache.entries, s.cache.rejections), (1, 1_000_000));
    assert_eq!((s.cache.max_ttl_s, s.cache.max_stale_s), (86_400, 0));
    assert_eq!((s.budget.burst, s.budget.in_flight), (100_000, 10_000));
    assert_eq!((s.shape.min_len, s.shape.max_len), (4096, 4096));
    assert_eq!(s.shape.public_prefix, "woos-");
    assert_ne!(
        s.store_prefix,
        crate::core::keyservice::store_prefix(
            "key_service",
            "key_service",
            "/access_tokens/",
            "x-api-key"
        ),
        "another service, another store"
    );
}

#[test]
fn api_needs_keys_or_a_key_service() {
    let api = r#""api": {"routes": [{"prefix": "/api/", "product": "p"}]}"#;
    let e = tok_err(&format!("{{{api}}}"));
    assert_eq!(
        e.to_string(),
        "field `keys`: api is enabled without api.service, so at least one key is required"
    );
    let ok = tok_err(&format!(
        r#"{{"keys": [{{"id": "k1", "secret_env": "GOOD"}}], {api}, "login": {{}}}}"#
    ));
    assert_eq!(ok.field, "login", "keys alone still do for api");
    // A key service does not stand in for the keys tokens and the login form need.
    let json = service_config(false, "").replacen('{', r#"{"tokens": {}, "#, 1);
    let e = parse_policy_with_env(json.as_bytes(), &service_env).unwrap_err();
    assert_eq!(e.field, "keys");
}

#[test]
fn key_service_errors_name_the_field() {
    for (service, field) in [
        (r#""authority": """#, "api.service.authority"),
        (r#""authority": "a/b""#, "api.service.authority"),
        (r#""path": "access_tokens""#, "api.service.path"),
        (r#""path": "/a?b=1""#, "api.service.path"),
        (r#""path": "/a#f""#, "api.service.path"),
        (r#""path": "/a b""#, "api.service.path"),
        (r#""path": "/\u00e9""#, "api.service.path"),
        (r#""key_header": ":authority""#, "api.service.key_header"),
        (r#""key_header": "x key""#, "api.service.key_header"),
        (r#""key_header": """#, "api.service.key_header"),
        (r#""key_header": "Host""#, "api.service.key_header"),
        (r#""key_header": "authorization""#, "api.service.key_header"),
        (
            r#""key_header": "Transfer_Encoding""#,
            "api.service.key_header",
        ),
        (r#""key_header": "connection""#, "api.service.key_header"),
        (r#""timeout_ms": 49"#, "api.service.timeout_ms"),
        (r#""timeout_ms": 30001"#, "api.service.timeout_ms"),
        (r#""issuer": """#, "api.service.issuer"),
        (r#""audience": """#, "api.service.audience"),
        (r#""leeway_seconds": 301"#, "api.service.leeway_seconds"),
        (r#""claims": {"kind": ""}"#, "api.service.claims.kind"),
        (r#""claims": {"ips": "products"}"#, "api.service.claims.ips"),
        (r#""claims": {"id": "exp"}"#, "api.service.claims.id"),
        (r#""claims": {"org": "o"}"#, "api.service.claims.org"),
        (r#""cache": {"entries": 0}"#, "api.service.cache.entries"),
        (
            r#""cache": {"entries": 1000001}"#,
            "api.service.cache.entries",
        ),
        (
            r#""cache": {"rejections": 0}"#,
            "api.service.cache.rejections",
        ),
        (
            r#""cache": {"max_ttl_seconds": 0}"#,
            "api.service.cache.max_ttl_seconds",
        ),
        (
            r#""cache": {"max_ttl_seconds": 86401}"#,
            "api.service.cache.max_ttl_seconds",
        ),
        (
            r#""cache": {"rejection_ttl_seconds": 3601}"#,
            "api.service.cache.rejection_ttl_seconds",
        ),
        (
            r#""cache": {"max_stale_seconds": 604801}"#,
            "api.service.cache.max_stale_seconds",
        ),
        (r#""cache": {"retry_ms": 99}"#, "api.service.cache.retry_ms"),
        (
            r#""cache": {"retry_ms": 60001}"#,
            "api.service.cache.retry_ms",
        ),
        (r#""cache": {"entries": -1}"#, "api.service.cache.entries"),
        (
            r#""budget": {"per_second": 0}"#,
            "api.service.budget.per_second",
        ),
        (r#""budget": {"burst": 100001}"#, "api.service.budget.burst"),
        (
            r#""budget": {"in_flight": 10001}"#,
            "api.service.budget.in_flight",
        ),
        (r#""budget": {"waiters": 0}"#, "api.service.budget.waiters"),
        (r#""budget": {"rate": 1}"#, "api.service.budget.rate"),
        (
            r#""shape": {"min_length": 0}"#,
            "api.service.shape.min_length",
        ),
        (
            r#""shape": {"max_length": 4097}"#,
            "api.service.shape.max_length",
        ),
        (
            r#""shape": {"min_length": 20, "max_length": 19}"#,
            "api.service.shape.min_length",
        ),
        (
            r#""shape": {"public_prefix": "a/b"}"#,
            "api.service.shape.public_prefix",
        ),
        (
            r#""shape": {"private_prefix": "abcdefghijklmnopqrstuvwxyz0123456"}"#,
            "api.service.shape.private_prefix",
        ),
        (
            r#""shape": {"min_length": 1, "max_length": 4, "public_prefix": "woos"}"#,
            "api.service.shape.public_prefix",
        ),
        (
            r#""shape": {"private_prefix": "dgsk_x"}"#,
            "api.service.shape.private_prefix",
        ),
        (r#""url": "x""#, "api.service.url"),
    ] {
        assert_eq!(service_err(service).field, field, "{service}");
    }
    let bad_cluster = service_config(false, "").replace(r#""key_service""#, r#""a b""#);
    let e = parse_policy_with_env(bad_cluster.as_bytes(), &service_env).unwrap_err();
    assert_eq!(e.field, "api.service.cluster");
    // 2^32 + 1 does not wrap into the bounds.
    assert_eq!(
        service_err(r#""budget": {"per_second": 4294967297}"#).field,
        "api.service.budget.per_second"
    );
    let e = service_err(r#""cache": {"entries": 0}"#);
    assert_eq!(
        e.to_string(),
        "field `api.service.cache.entries`: between 1 and 1000000"
    );
}

#[test]
fn key_service_keys_are_read_like_every_secret() {
    let json = |keys: &str| {
        format!(
            r#"{{"api": {{"routes": [{{"prefix": "/api/", "product": "p"}}],
                "service": {{"cluster": "c", "keys": {keys}}}}}}}"#
        )
    };
    let e = tok_err(&json(r#"[{"id": "ks1", "secret_env": "MISSING"}]"#));
    assert_eq!(
        e.to_string(),
        "field `api.service.keys[0].secret_env`: environment variable MISSING is not set in \
         Envoy's process environment"
    );
    let e = tok_err(&json(r#"[{"id": "ks1", "secret_env": "SHORT"}]"#));
    assert_eq!(e.field, "api.service.keys[0].secret_env");
    assert!(!e.message.contains("c2hvcnQ"), "{e}");
    let e = tok_err(&json(
        r#"[{"id": "ks1", "secret": "c2VjcmV0LXRvby1zaG9ydA"}]"#,
    ));
    assert_eq!(e.field, "api.service.keys[0].secret");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    let e = tok_err(&json(r#"[{"id": "ks1"}]"#));
    assert_eq!(e.field, "api.service.keys[0]");
    let e = tok_err(&json(
        r#"[{"id": "a", "secret_env": "GOOD"}, {"id": "a", "secret_env": "GOOD"}]"#,
    ));
    assert_eq!(e.field, "api.service.keys[1].id");
    let e = tok_err(&json(r#"[{"id": "bad id", "secret_env": "GOOD"}]"#));
    assert_eq!(e.field, "api.service.keys[0].id");
    assert_eq!(tok_err(&json("[]")).field, "api.service.keys");
    let e = tok_err(
        r#"{"api": {"routes": [{"prefix": "/api/", "product": "p"}], "service": {"cluster": "c"}}}"#,
    );
    assert_eq!(e.field, "api.service");
    assert!(e.message.contains("keys"), "{e}");
}

#[test]
fn served_stale_header_is_distinct() {
    let json = r#"{"keys": [{"id": "k1", "secret_env": "GOOD"}],
        "api": {"routes": [{"prefix": "/api/", "product": "p"}],
                "headers": {"stale": "x-devgate-count"}}}"#;
    assert_eq!(tok_err(json).field, "api.headers");
}

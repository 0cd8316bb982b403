//! The built devgate.wasm in a host that plays Envoy: one test per decision of the filter.
//!
//! Every scenario ends by checking that no secret-looking value it passed in (spoofed identity
//! header values, tokens, cookies, config values) appears in any log line or stdout/stderr.

// This whole crate is test code: clippy.toml allows these lints inside #[test] functions only,
// and the shared host and the helpers here are tests' code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use devgate_wasm_tests as host;

use host::{Action, Headers, Host, HostResult, Outcome};

const IDENTITY: &str = "x-wsgiorg-developer-user";

/// Values the scenarios send that must never reach a log line.
const SPOOF: &str = "spoofed-identity-5b1c9e";
const SPOOF2: &str = "second-spoof-0d4f77";
const BEARER: &str = "Bearer bearer-secret-3c2a9f1e";
const COOKIE: &str = "devgate_token=cookie-secret-77ab01; theme=dark";
const CONFIG_SECRET: &str = "config-secret-a1b2c3d4";

const SECRETS: &[&str] = &[
    SPOOF,
    SPOOF2,
    "bearer-secret-3c2a9f1e",
    "cookie-secret-77ab01",
    CONFIG_SECRET,
    // The login form's test password (tests/login.rs), in the spellings a form may carry it.
    "correct horse",
    "correct+horse",
    "correct%20horse",
];

/// The demo policy: everything protected but the health check; /_debug/ spelled out.
const DEMO: &str = r#"{"protect": ["/", "/_debug/"], "public": ["/healthz"]}"#;

/// A fresh VM that checks, when dropped, that no value of [`SECRETS`] reached its logs.
fn fresh() -> HostResult<Host> {
    watched(Host::builder())
}

fn watched(b: host::HostBuilder) -> HostResult<Host> {
    let mut h = b.load()?;
    h.watch_secrets(SECRETS);
    Ok(h)
}

fn loaded(config: &str) -> HostResult<Host> {
    let mut h = fresh()?;
    let ok = h.configure(config)?;
    assert!(ok, "configuration refused: {config}\n{:?}", h.logs());
    Ok(h)
}

/// A request with credentials and spoofed identity headers attached, so every scenario also
/// exercises the stripping and the no-secret-in-logs rule.
fn with_noise(r: host::RequestBuilder<'_>) -> host::RequestBuilder<'_> {
    r.header("authorization", BEARER)
        .header("cookie", COOKIE)
        .header(IDENTITY, SPOOF)
        .header("x_wsgiorg_developer_user", SPOOF2)
}

fn identity_values(r: &Outcome) -> Vec<String> {
    let up = r
        .upstream_headers()
        .unwrap_or_else(|| panic!("not forwarded\n{}", r.describe()));
    let mut v: Vec<String> = up
        .get_all(IDENTITY)
        .into_iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    // Any other spelling that survived counts too.
    for (n, val) in up.iter() {
        let spelled = String::from_utf8_lossy(n).replace('_', "-");
        if spelled.eq_ignore_ascii_case(IDENTITY) && n != IDENTITY.as_bytes() {
            v.push(format!(
                "{}={}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(val)
            ));
        }
    }
    v
}

fn assert_developer(r: &Outcome, name: &str) {
    r.assert_well_formed();
    assert_eq!(r.action(), Action::Continue, "{}", r.describe());
    assert_eq!(
        identity_values(r),
        vec![name.to_string()],
        "{}",
        r.describe()
    );
}

fn assert_anonymous_pass(r: &Outcome) {
    r.assert_well_formed();
    assert_eq!(r.action(), Action::Continue, "{}", r.describe());
    assert!(
        identity_values(r).is_empty(),
        "identity header survived\n{}",
        r.describe()
    );
}

fn assert_local(r: &Outcome, status: u32) {
    r.assert_well_formed();
    assert_eq!(r.action(), Action::Pause, "{}", r.describe());
    assert_eq!(r.status(), Some(status), "{}", r.describe());
    assert!(r.upstream_headers().is_none());
}

fn assert_challenge(r: &Outcome) {
    assert_local(r, 401);
    let (_, headers, body) = r.local_response().unwrap();
    assert_eq!(
        headers.get_all("www-authenticate"),
        vec![&b"x-wsgiorg.developer_user"[..]],
        "{}",
        r.describe()
    );
    assert_generic_body(body);
}

/// Deny bodies say nothing about why, who or what.
fn assert_generic_body(body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert!(text.len() < 64, "body too chatty: {text:?}");
    for leak in [
        "127.", "10.", "::", "_debug", "allow", "deny", "network", "spoof",
    ] {
        assert!(!text.contains(leak), "body mentions {leak:?}: {text:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// The module itself
// ------------------------------------------------------------------------------------------------

#[test]
fn module_has_the_abi_exports_and_only_known_imports() -> HostResult<()> {
    let exports = host::module_exports()?;
    for e in [
        "proxy_abi_version_0_2_1",
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_response_headers",
        "proxy_on_done",
        "proxy_on_delete",
        "memory",
    ] {
        assert!(
            exports.iter().any(|x| x == e),
            "missing export {e}: {exports:?}"
        );
    }
    assert!(
        exports
            .iter()
            .any(|x| x == "malloc" || x == "proxy_on_memory_allocate"),
        "no allocator export: {exports:?}"
    );
    let imports = host::module_imports()?;
    eprintln!("devgate.wasm imports: {imports:#?}");
    for i in &imports {
        assert!(
            i.starts_with("env::proxy_") || i.starts_with("wasi_snapshot_preview1::"),
            "unexpected import {i}"
        );
    }
    Ok(())
}

#[test]
fn vm_starts_and_default_config_is_accepted() -> HostResult<()> {
    let mut h = fresh()?;
    assert!(
        h.configure("")?,
        "empty configuration refused: {:?}",
        h.logs()
    );
    assert!(h.configure("{}")?, "{{}} refused: {:?}", h.logs());
    assert!(
        h.configure(
            r#"{"header": "x-wsgiorg-developer-user",
                "network": {"allow": ["127.0.0.0/8", "::1"], "deny": [], "trust_forwarded": false},
                "protect": ["/"], "public": [], "unauthenticated": "challenge"}"#
        )?,
        "the documented defaults, spelled out, refused: {:?}",
        h.logs()
    );
    assert!(h.violations().is_empty(), "{:?}", h.violations());
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Network developers
// ------------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------------
// Paths
// ------------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------------
// The identity header
// ------------------------------------------------------------------------------------------------

#[test]
fn every_client_sent_copy_of_the_identity_header_is_removed() -> HostResult<()> {
    let mut h = loaded(r#"{"protect": []}"#)?;
    for peer in ["10.0.0.1:1", "127.0.0.1:1"] {
        let r = h
            .request()
            .peer(peer)
            .get("/")
            .header(IDENTITY, SPOOF)
            .header("X-Wsgiorg-Developer-User", SPOOF2)
            .header("x_wsgiorg_developer_user", SPOOF)
            .header("X_WSGIORG-developer_user", SPOOF2)
            .header(IDENTITY, "")
            .header("x-wsgiorg-developer-users", "kept")
            .send();
        r.assert_well_formed();
        let up = r.upstream_headers().unwrap();
        assert_eq!(
            up.get_str("x-wsgiorg-developer-users").as_deref(),
            Some("kept")
        );
        if peer.starts_with("127.") {
            assert_eq!(
                identity_values(&r),
                vec!["127.0.0.1".to_string()],
                "{}",
                r.describe()
            );
        } else {
            assert!(identity_values(&r).is_empty(), "{}", r.describe());
        }
    }
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn a_configured_header_name_is_used_and_stripped() -> HostResult<()> {
    let mut h = loaded(r#"{"header": "X-Dev-User", "protect": []}"#)?;
    let r = h
        .request()
        .peer("127.0.0.1:1")
        .get("/")
        .header("x-dev-user", SPOOF)
        .header("x_dev_user", SPOOF2)
        .send();
    r.assert_well_formed();
    let up = r.upstream_headers().unwrap();
    assert_eq!(
        up.get_all("x-dev-user"),
        vec![&b"127.0.0.1"[..]],
        "{}",
        r.describe()
    );
    assert!(!up.contains("x_dev_user"), "{}", r.describe());
    let r = h
        .request()
        .peer("10.0.0.1:1")
        .get("/")
        .header("x-dev-user", SPOOF)
        .send();
    assert!(!r.upstream_headers().unwrap().contains("x-dev-user"));
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Configuration
// ------------------------------------------------------------------------------------------------

/// Configurations that must be refused, with the field the log line must name.
const BAD_CONFIGS: &[(&str, &str)] = &[
    (r#"{"headr": "x"}"#, "headr"),
    (r#"{"network": {"alow": []}}"#, "alow"),
    (
        r#"{"network": {"allow": ["127.0.0.1", "not-an-ip"]}}"#,
        "network.allow[1]",
    ),
    (
        r#"{"network": {"deny": ["10.0.0.0/33"]}}"#,
        "network.deny[0]",
    ),
    (
        r#"{"network": {"trust_forwarded": "yes"}}"#,
        "trust_forwarded",
    ),
    (r#"{"unauthenticated": "allow"}"#, "unauthenticated"),
    (
        r#"{"unauthenticated": "config-secret-a1b2c3d4"}"#,
        "unauthenticated",
    ),
    (
        r#"{"network": {"allow": ["config-secret-a1b2c3d4"]}}"#,
        "network.allow[0]",
    ),
    (
        r#"{"protect": [{"prefix": "config-secret-a1b2c3d4"}]}"#,
        "protect[0]",
    ),
    (r#"{"protect": "/"}"#, "protect"),
    (r#"{"protect": ["no-slash"]}"#, "protect[0]"),
    (
        // An object rule is one of two shapes, so serde can only point at the element.
        r#"{"protect": [{"prefix": "/x/", "verbs": ["GET"]}]}"#,
        "protect[0]",
    ),
    (r#"{"public": [7]}"#, "public[0]"),
    (r#"{"header": "has space"}"#, "header"),
    (r#"{"header": "config-secret-a1b2c3d4 x"}"#, "header"),
    (
        r#"{"unknown_secret_holder": "config-secret-a1b2c3d4"}"#,
        "unknown_secret_holder",
    ),
];

#[test]
fn bad_configurations_are_refused_naming_the_field() -> HostResult<()> {
    for (config, field) in BAD_CONFIGS {
        let mut h = fresh()?;
        let ok = h.configure(config)?;
        assert!(!ok, "accepted bad config {config}");
        let logs: Vec<&str> = h.logs().iter().map(|l| l.message.as_str()).collect();
        eprintln!("{config} -> {logs:?}");
        assert!(
            logs.iter().any(|l| l.contains(field)),
            "no log line names {field:?} for {config}: {logs:?}"
        );
        h.assert_no_secret_in_logs(SECRETS);
    }
    for config in [
        "{",
        "[]",
        "null",
        "\"x\"",
        "{} {}",
        "{\"header\": \"x\",}",
        "\u{feff}{}",
    ] {
        let mut h = fresh()?;
        assert!(!h.configure(config)?, "accepted {config:?}");
    }
    let mut h = fresh()?;
    assert!(
        !h.configure_bytes(b"{\"header\": \"\xff\"}")?,
        "accepted non-UTF-8"
    );
    Ok(())
}

#[test]
fn requests_after_a_refused_configuration_are_never_forwarded() -> HostResult<()> {
    // Envoy would not route to a filter whose configure failed; if a request arrives anyway
    // it must be refused locally.
    let mut h = fresh()?;
    assert!(!h.configure(r#"{"bogus": 1}"#)?);
    for peer in ["127.0.0.1:1", "10.0.0.1:1"] {
        let r = with_noise(h.request().peer(peer).get("/")).send();
        r.assert_well_formed();
        assert_eq!(r.action(), Action::Pause, "{}", r.describe());
        let status = r.status().unwrap();
        assert!(
            status == 500 || status == 503,
            "status {status}\n{}",
            r.describe()
        );
        eprintln!("request after refused configuration: {status}");
    }
    // A configuration refused after a good one drops the good one too (fail closed).
    let mut h = loaded(r#"{"protect": []}"#)?;
    assert_anonymous_pass(&h.request().peer("10.0.0.1:1").get("/").send());
    assert!(!h.configure(r#"{"protect": 5}"#)?);
    let r = h.request().peer("10.0.0.1:1").get("/").send();
    assert!(
        r.upstream_headers().is_none(),
        "stale policy used\n{}",
        r.describe()
    );
    // And a good one after that works again.
    assert!(h.configure(r#"{"protect": []}"#)?);
    assert_anonymous_pass(&h.request().peer("10.0.0.1:1").get("/").send());
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn an_empty_request_header_map_is_not_forwarded() -> HostResult<()> {
    // Envoy never sends one (":method" and ":path" are always there), but the ABI allows it:
    // the host then returns a NULL buffer of size 0.
    let mut h = loaded(r#"{"protect": []}"#)?;
    let r = h.request().peer("127.0.0.1:1").send();
    r.assert_well_formed();
    assert!(r.upstream_headers().is_none(), "{}", r.describe());
    eprintln!("empty header map: {:?}", r.local_response());
    Ok(())
}

#[test]
fn requests_before_any_configuration_are_never_forwarded() -> HostResult<()> {
    let mut h = fresh()?;
    let r = h.request().peer("127.0.0.1:1").get("/").send();
    r.assert_well_formed();
    assert!(r.upstream_headers().is_none(), "{}", r.describe());
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The VM over many requests, and what a request costs
// ------------------------------------------------------------------------------------------------

#[test]
fn many_requests_on_one_vm_do_not_leak_state() -> HostResult<()> {
    let mut h = loaded(DEMO)?;
    for i in 0..300u32 {
        match i % 3 {
            0 => assert_developer(
                &with_noise(
                    h.request()
                        .peer(&format!("127.0.{}.{}:1", i % 250, i % 200))
                        .get("/_debug/"),
                )
                .send(),
                &format!("127.0.{}.{}", i % 250, i % 200),
            ),
            1 => {
                assert_challenge(&with_noise(h.request().peer("10.0.0.1:1").get("/_debug/")).send())
            }
            _ => assert_anonymous_pass(
                &with_noise(h.request().peer("10.0.0.1:1").get("/healthz")).send(),
            ),
        }
    }
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn host_calls_per_request_are_few() -> HostResult<()> {
    let mut h = loaded(DEMO)?;
    let cases = [
        (
            "developer",
            with_noise(h.request().peer("127.0.0.1:1").get("/_debug/")).send(),
        ),
        (
            "denied",
            with_noise(h.request().peer("10.0.0.1:1").get("/_debug/")).send(),
        ),
        (
            "public",
            with_noise(h.request().peer("10.0.0.1:1").get("/healthz")).send(),
        ),
    ];
    for (name, r) in &cases {
        r.assert_well_formed();
        let calls: Vec<String> = r
            .calls()
            .iter()
            .map(|c| format!("{}({})", c.name, c.args))
            .collect();
        eprintln!("{name}: {} ABI calls: {calls:#?}", r.abi_call_count());
        // One header-map read, one property read, the edits or the reply: a handful.
        assert!(r.abi_call_count() <= 10, "{name}: {calls:#?}");
        assert_eq!(
            r.calls_named("proxy_get_header_map_pairs"),
            1,
            "{name}: {calls:#?}"
        );
        assert!(
            r.calls_named("proxy_get_property") <= 1,
            "{name}: {calls:#?}"
        );
    }
    Ok(())
}

#[test]
fn responses_pass_through_untouched() -> HostResult<()> {
    let mut h = loaded("{}")?;
    let mut upstream = Headers::new();
    upstream.add(b":status", b"200");
    upstream.add(b"set-cookie", b"a=b");
    upstream.add(b"x-wsgiorg-developer-user", b"from-upstream");
    let r = h
        .request()
        .peer("127.0.0.1:1")
        .get("/")
        .upstream_response(upstream.clone())
        .send();
    r.assert_well_formed();
    assert_eq!(r.response_action, Some(Action::Continue));
    assert_eq!(
        r.response_headers.as_ref(),
        Some(&upstream),
        "{}",
        r.describe()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Developer tokens (minted natively with the crate's own code): the values that matter most for
// the no-secret-in-logs rule.
// ------------------------------------------------------------------------------------------------

/// `devgate-scenario-key-0123456789abcdef!` as base64url: this file's own test key.
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
    // Issue #14 part 4: devgate never looked at request trailers, so an HTTP/2 or chunked
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

//! The built devgate.wasm in a host that plays Envoy: one test per decision of the filter.
//!
//! Every scenario ends by checking that no secret-looking value it passed in (spoofed identity
//! header values, tokens, cookies, config values) appears in any log line or stdout/stderr.
//!
//! The tests are in modules by subject (`loading`, `network`, `paths`, `identity_header`,
//! `configuration`, `vm`, `tokens`, `key_service`); the noise, the secrets and the assertions they share are
//! here.

// This whole crate is test code: clippy.toml allows these lints inside #[test] functions only,
// and the shared host and the helpers here are tests' code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod configuration;
mod identity_header;
mod key_service;
mod loading;
mod network;
mod paths;
mod tokens;
mod vm;

use devgate_wasm_tests as host;

use host::{Action, Host, HostResult, Outcome};

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
    // The login form's test password (tests/login/), in the spellings a form may carry it.
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

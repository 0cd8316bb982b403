//! The login form, its session cookie and the upstream-challenge translation, through the built
//! devgate.wasm in the host that plays Envoy: request bodies in chunks, the failed-login
//! counter in shared data (one VM, and two VMs sharing it as Envoy's workers do), response
//! headers from the upstream.
//!
//! Every host here checks, when dropped, that neither the password (in any spelling the form
//! may carry it) nor any session token or cookie value reached a log line or stdout/stderr.
//!
//! The tests are in modules by subject (`form`, `session`, `failures`, `checks`, `response`);
//! the configuration, the requests and the assertions they share are here.

// This whole crate is test code: clippy.toml allows these lints inside #[test] functions only,
// and the shared host and the helpers here are tests' code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod checks;
mod failures;
mod form;
mod response;
mod session;

use devgate_wasm_tests as host;

use devgate::core::login::{Attempts, LOGIN_FAILED};
use host::{Action, Headers, Host, HostBuilder, HostResult, Outcome, Phase, SharedData};

const IDENTITY: &str = "x-wsgiorg-developer-user";

/// Password: correct horse (bcrypt cost 5).
const ALICE: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";
const PASSWORD: &str = "correct horse";
/// `0123456789abcdef0123456789abcdef`, base64url.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

/// The right form, as a browser posts it.
const GOOD_FORM: &str = "username=alice&password=correct+horse&back=%2F_debug%2F";
const WRONG_PASSWORD: &str = "wrong-password-6f1e2d";
const WRONG_FORM: &str = "username=alice&password=wrong-password-6f1e2d&back=%2F";

/// Values that must never be logged (the session tokens are added as they are minted).
const SECRETS: &[&str] = &[
    PASSWORD,
    "correct+horse",
    "correct%20horse",
    WRONG_PASSWORD,
    KEY,
    "spoofed-identity-5b1c9e",
    "bearer-secret-3c2a9f1e",
    "cookie-secret-77ab01",
];

/// The host's default clock (2026-01-01T00:00:00Z).
const NOW: u64 = 1_767_225_600;

/// A peer outside the developer networks: only a session makes it a developer.
const PEER: &str = "203.0.113.9:41000";
const RATE_KEY: &str = "devgate.login.203.0.113.9";

/// The largest verify budget: the host's clock stands still within a test, and most tests here
/// log in more often than the default budget allows in one instant. The budget's own tests
/// replace it ([`with_budget`]).
const NO_BUDGET: &str = r#""verifies_per_minute": 60000, "verify_burst": 1000"#;

fn config(extra: &str) -> String {
    format!(
        r#"{{"protect": ["/"], "public": ["/healthz"],
            "keys": [{{"id": "k1", "secret": "{KEY}"}}],
            "login": {{"users": "{ALICE}", {NO_BUDGET}}} {extra}}}"#
    )
}

/// `config` with another verify budget.
fn with_budget(config: &str, per_minute: u32, burst: u32) -> String {
    config.replace(
        NO_BUDGET,
        &format!(r#""verifies_per_minute": {per_minute}, "verify_burst": {burst}"#),
    )
}

fn vm(b: HostBuilder, config: &str) -> HostResult<Host> {
    let mut h = b.load()?;
    h.watch_secrets(SECRETS);
    assert!(h.configure(config)?, "refused: {config}\n{:?}", h.logs());
    Ok(h)
}

fn loaded(config: &str) -> HostResult<Host> {
    vm(Host::builder(), config)
}

/// `POST /.devgate/login` as a browser on `devgate.test` sends it, with credentials and a
/// spoofed identity attached (all of which must be dropped before the headers go on).
fn login_post<'h>(h: &'h mut Host, peer: &str) -> host::RequestBuilder<'h> {
    login_post_from(h, peer, "http://devgate.test")
}

/// [`login_post`] with another `Origin` (a TLS listener's is `https://devgate.test`).
fn login_post_from<'h>(h: &'h mut Host, peer: &str, origin: &str) -> host::RequestBuilder<'h> {
    h.request()
        .peer(peer)
        .method_path("POST", "/.devgate/login")
        .header("origin", origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", "devgate_session=cookie-secret-77ab01; theme=dark")
        .header("authorization", "Bearer bearer-secret-3c2a9f1e")
        .header(IDENTITY, "spoofed-identity-5b1c9e")
        .header("x_wsgiorg_developer_user", "spoofed-identity-5b1c9e")
}

fn set_cookie(r: &Outcome) -> Option<String> {
    r.local()?.headers.get_str("set-cookie")
}

/// The session token of a successful login's `Set-Cookie`.
fn session_token(r: &Outcome) -> String {
    let cookie = set_cookie(r).unwrap_or_else(|| panic!("no set-cookie\n{}", r.describe()));
    let value = cookie
        .strip_prefix("devgate_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{cookie}"));
    assert!(value.starts_with("ey"), "{cookie}");
    value.to_string()
}

fn attempts(shared: &SharedData) -> Option<Attempts> {
    shared
        .value(RATE_KEY)
        .as_deref()
        .and_then(Attempts::from_bytes)
}

/// The login POST's headers went on (Continue) without any credential or identity.
fn assert_headers_scrubbed(r: &Outcome) {
    assert_eq!(r.action(), Action::Continue, "{}", r.describe());
    let passed = r
        .headers_passed_on
        .as_ref()
        .unwrap_or_else(|| panic!("headers not passed on\n{}", r.describe()));
    for name in [
        "cookie",
        "authorization",
        IDENTITY,
        "x_wsgiorg_developer_user",
    ] {
        assert!(!passed.contains(name), "{name} went on\n{}", r.describe());
    }
    assert_eq!(passed.get_str(":path").as_deref(), Some("/.devgate/login"));
}

/// Every chunk the module handed on was empty, and the answer came from the body step.
fn assert_body_withheld(r: &Outcome) {
    assert!(!r.body_calls.is_empty(), "{}", r.describe());
    for (i, call) in r.body_calls.iter().enumerate() {
        let last = i + 1 == r.body_calls.len();
        if last && r.local_phase() == Some(Phase::RequestBody(i)) {
            assert_eq!(call.action, Action::Pause, "{}", r.describe());
            assert!(call.passed_on.is_none());
        } else {
            assert_eq!(call.action, Action::Continue, "chunk {i}\n{}", r.describe());
            assert_eq!(
                call.passed_on.as_deref(),
                Some(&[][..]),
                "chunk {i} went on non-empty\n{}",
                r.describe()
            );
        }
    }
    assert!(
        r.body_passed_on.iter().all(Vec::is_empty),
        "{}",
        r.describe()
    );
}

fn assert_login_local(r: &Outcome, status: u32) {
    r.assert_well_formed();
    assert_eq!(r.status(), Some(status), "{}", r.describe());
    assert!(!r.forwarded, "{}", r.describe());
    assert_eq!(r.client_status(), Some(status), "{}", r.describe());
}

fn assert_success(r: &Outcome) -> String {
    assert_login_local(r, 303);
    let l = r.local().unwrap();
    assert_eq!(l.headers.get_str("location").as_deref(), Some("/_debug/"));
    let cookie = set_cookie(r).unwrap();
    for attr in ["Path=/", "Max-Age=28800", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert_eq!(
        r.properties_set.get("devgate_decision").map(Vec::as_slice),
        Some(&b"login:succeeded"[..])
    );
    session_token(r)
}

fn assert_failed(r: &Outcome) {
    assert_login_local(r, 401);
    let (_, headers, body) = r.local_response().unwrap();
    assert!(String::from_utf8_lossy(body).contains(LOGIN_FAILED));
    assert!(headers.get_str("set-cookie").is_none(), "{}", r.describe());
    assert_eq!(
        headers.get_str("www-authenticate").as_deref(),
        Some("x-wsgiorg.developer_user")
    );
}

fn upstream(status: &str, www_authenticate: &[&str]) -> Headers {
    let mut h = Headers::new();
    h.add(b":status", status.as_bytes());
    h.add(b"content-type", b"text/plain");
    h.add(b"set-cookie", b"app=1");
    for w in www_authenticate {
        h.add(b"www-authenticate", w.as_bytes());
    }
    h
}

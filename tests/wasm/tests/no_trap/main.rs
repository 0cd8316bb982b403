//! Property-based: random and adversarial requests and configurations never make devgate.wasm
//! trap, and every request ends in a valid action.
//!
//! For every request: no trap, no host-side violation (bad header bytes written, unexpected host
//! call), and either Continue with no local response, or Pause with exactly one local response
//! whose status is one devgate sends. When the request is forwarded, the identity header appears
//! at most once and only with the peer's own address: a client-sent value never survives.
//!
//! The login form adds three more: random bytes as login bodies, delivered in random chunks,
//! with random contents (garbage, valid and stale records) under the peer's failed-login key in
//! shared data; random upstream responses (status, `WWW-Authenticate`, anything else) under
//! every `upstream_challenge` mode. Each is checked against the crate's own core functions as
//! an oracle (rate-limit record, form parsing, challenge detection), so the glue's wiring is
//! checked and not just the absence of traps.
//!
//! Case counts: 8000 random requests, 2500 random configurations (each with 1-3 requests), 1500
//! raw configuration byte strings, 400 huge/repeated-header requests, 600 login bodies (about
//! one in six runs bcrypt at cost 5), 200 VMs started on garbage shared data, 3000 upstream
//! responses, 400 key-service answers to a held request (`callouts`: any status bytes, non-UTF-8
//! headers, garbage and oversized bodies, no answer). `PROPTEST_CASES=N` sets every
//! property's count to N. The seed is fixed for reproducible CI; `PROPTEST_RNG_SEED=N` explores
//! elsewhere.
//!
//! The properties are in modules by input (`requests`, `configs`, `login_form`, `responses`,
//! `callouts`);
//! the proptest settings, the cached hosts and the checks every request passes are here.

// This whole crate is test code: clippy.toml allows these lints inside #[test] functions only,
// and the shared host and the helpers here are tests' code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod callouts;
mod configs;
mod login_form;
mod requests;
mod responses;

use devgate_wasm_tests as host;

use std::cell::RefCell;
use std::net::IpAddr;

use host::{Action, Host, Outcome};
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use requests::Req;

const IDENTITY: &str = "x-wsgiorg-developer-user";

/// Statuses devgate may answer with itself.
const STATUSES: &[u32] = &[200, 303, 400, 401, 403, 404, 405, 413, 415, 429];

fn config(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    let unset = |var: &str| std::env::var(var).ok().is_none_or(|v| v.trim().is_empty());
    if unset("PROPTEST_CASES") {
        c.cases = default_cases;
    }
    if unset("PROPTEST_RNG_SEED") {
        c.rng_seed = RngSeed::Fixed(0x0de7_6a7e);
    }
    c.failure_persistence = None;
    c.max_shrink_time = 30_000;
    c
}

// ------------------------------------------------------------------------------------------------
// Hosts, reused across cases (a trap reloads them)
// ------------------------------------------------------------------------------------------------

/// The configurations the request properties run under.
const CONFIGS: &[&str] = &[
    "{}",
    r#"{"protect": ["/_debug/", {"prefix": "/api/", "methods": ["POST"]}], "public": ["/healthz"],
        "network": {"allow": ["127.0.0.0/8", "::1", "10.0.0.0/8"], "deny": ["10.6.6.6"]}}"#,
    r#"{"unauthenticated": "forbid", "network": {"trust_forwarded": true}, "header": "X-Dev"}"#,
    // The login form, its session cookie, developer tokens and the upstream challenge.
    r#"{"protect": ["/"], "public": ["/healthz"], "tokens": {}, "upstream_challenge": "login",
        "keys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}],
        "login": {"users": "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK"}}"#,
];

thread_local! {
    static HOSTS: RefCell<Vec<Option<Host>>> = RefCell::new((0..CONFIGS.len()).map(|_| None).collect());
}

/// Runs `f` on the (cached) host configured with `CONFIGS[i]`; a trapped host is dropped.
fn with_host<R>(i: usize, f: impl FnOnce(&mut Host) -> R) -> R {
    HOSTS.with(|cell| {
        let mut hosts = cell.borrow_mut();
        let slot = &mut hosts[i];
        if slot.as_ref().is_none_or(|h| h.trapped().is_some()) {
            let mut h = Host::load().unwrap_or_else(|e| panic!("{e}"));
            assert!(h.configure(CONFIGS[i]).unwrap(), "{}", CONFIGS[i]);
            *slot = Some(h);
        }
        f(slot.as_mut().unwrap())
    })
}

// ------------------------------------------------------------------------------------------------
// Checks
// ------------------------------------------------------------------------------------------------

/// The host's own reading of a peer string (Envoy's "ip:port" / "[v6]:port").
fn peer_ip(peer: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(peer).ok()?;
    let addr: std::net::SocketAddr = s.parse().ok()?;
    Some(addr.ip())
}

fn spelled_as(name: &[u8], header: &str) -> bool {
    name.len() == header.len()
        && name
            .iter()
            .zip(header.bytes())
            .all(|(&a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

fn check(r: &Outcome, peer: Option<&[u8]>, header: &str, configured: bool) {
    r.assert_well_formed();
    match r.action() {
        Action::Pause => {
            let status = r.status().unwrap();
            let allowed =
                STATUSES.contains(&status) || (!configured && (status == 500 || status == 503));
            assert!(allowed, "status {status}\n{}", r.describe());
        }
        Action::Continue => {
            assert!(
                configured,
                "forwarded without a configuration\n{}",
                r.describe()
            );
            let up = r.upstream_headers().unwrap();
            let ids: Vec<&[u8]> = up
                .iter()
                .filter(|(n, _)| spelled_as(n, header))
                .map(|(_, v)| v)
                .collect();
            assert!(ids.len() <= 1, "identity header repeated\n{}", r.describe());
            if let Some(v) = ids.first() {
                let named: Option<IpAddr> =
                    std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                let canonical = |ip: Option<IpAddr>| ip.map(|i| i.to_canonical());
                assert!(
                    named.is_some() && canonical(named) == canonical(peer.and_then(peer_ip)),
                    "identity {:?} is not the peer {:?}\n{}",
                    String::from_utf8_lossy(v),
                    peer.map(String::from_utf8_lossy),
                    r.describe()
                );
            }
        }
        other => panic!("action {other:?}\n{}", r.describe()),
    }
}

/// Credential-bearing header values (cookie, authorization, the identity header) never reach a
/// log line. Short values are skipped: they may occur in logs by coincidence.
fn assert_credentials_not_logged(r: &Outcome, req: &Req) {
    for (n, v) in &req.headers {
        let credential = n.eq_ignore_ascii_case(b"cookie")
            || n.eq_ignore_ascii_case(b"authorization")
            || spelled_as(n, IDENTITY)
            || spelled_as(n, "x-dev");
        if credential && v.len() >= 12 {
            for line in r.logs() {
                assert!(
                    !line.raw.windows(v.len()).any(|w| w == v.as_slice()),
                    "a {} value reached the logs\n{}",
                    String::from_utf8_lossy(n),
                    r.describe()
                );
            }
        }
    }
}

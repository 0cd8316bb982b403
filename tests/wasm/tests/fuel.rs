//! A deterministic cost meter: wasmtime fuel (≈ wasm instructions) per request for the main
//! scenarios, checked against `tests/wasm/fuel_baseline.json`.
//!
//! * `fuel_is_deterministic`: the same module and inputs cost the same fuel, twice over.
//! * `fuel_within_baseline`: fails if a scenario costs more than 20% over its recorded number,
//!   and fails too when there is nothing to compare with: the baseline file missing or unreadable,
//!   a scenario without a baseline, a scenario the module does not accept, or a baseline entry no
//!   scenario measures (a meter that measured nothing must not pass). `DEVGATE_FUEL_UPDATE=1`
//!   rewrites the baseline with today's numbers instead.
//! * `fuel_table` (ignored; `make bench-wasm`): prints the table, with wall-clock time per
//!   request as an informative extra column (not deterministic, not checked).
//!
//! Each scenario runs on a fresh VM at Envoy's default log level (info): configure, three warm-up requests (the allocator grows
//! memory on the first ones), then the measured one. Fuel counts the whole stream: context
//! create, request headers, response headers, done, log, delete.
//!
//! The `assertion_*` scenarios verify an edge assertion (an OIDC ID token as `Authorization:
//! Bearer`, signed by PyJWT: tests/vectors/jose_assertions.json). `assertion_<alg>_miss`: every
//! request of the VM carries another valid token, so the measured one misses the
//! verified-assertion cache and is verified in full; `assertion_es256_hit`: the same token every
//! time, so the measured one is a cache hit.

// This whole crate is test code: clippy.toml allows these lints inside #[test] functions only,
// and the shared host and the helpers here are tests' code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use devgate_wasm_tests as host;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use host::{Headers, Host, Outcome, RequestBuilder};

/// The warm-up requests before the measured one, on each scenario's fresh VM.
const WARM_UPS: usize = 3;

/// How much a scenario may rise over its baseline before the check fails.
const TOLERANCE: f64 = 0.20;

const DEMO: &str = r#"{"protect": ["/", "/_debug/"], "public": ["/healthz"]}"#;

/// A token-carrying configuration for the token-developer scenario (the key is this file's own:
/// `devgate-fuel-meter-key-0123456789abcdef`, base64url).
const TOKEN_CONFIG: &str = r#"{"protect": ["/"], "network": {"allow": []},
    "keys": [{"id": "k1", "secret": "ZGV2Z2F0ZS1mdWVsLW1ldGVyLWtleS0wMTIzNDU2Nzg5YWJjZGVm"}],
    "tokens": {"bearer": true}}"#;

/// The host's default clock (see `HostBuilder`): 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

/// The login form: alice / `correct horse` at bcrypt cost 5, and the key that signs sessions.
const LOGIN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
const LOGIN_CONFIG: &str = r#"{"protect": ["/"], "public": ["/healthz"],
    "keys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}],
    "login": {"users": "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK"}}"#;
const LOGIN_PEER: &str = "203.0.113.9:41000";
const LOGIN_RATE_KEY: &[u8] = b"devgate.login.203.0.113.9";

/// A session token for alice (valid for an hour), minted with the crate's own code.
fn session_token() -> String {
    use devgate::core::token::{mint, Key, Secret};
    let key = Key {
        id: "k1".into(),
        secret: Secret::from_b64url(LOGIN_KEY).unwrap(),
    };
    let claims = devgate::core::login::session_claims("alice", "devgate_session", NOW, 3600, None);
    mint(&claims, &key)
}

/// `POST /.devgate/login` with `form` in one chunk, from a peer with `failures` failed logins
/// recorded in shared data and a full verify budget (so every run of a scenario starts from the
/// same records).
fn login_post<'h>(h: &'h mut Host, form: &str, failures: u32) -> RequestBuilder<'h> {
    let record = devgate::core::login::Attempts {
        count: failures,
        window_start: NOW,
    };
    h.shared_data().put(LOGIN_RATE_KEY, &record.to_bytes());
    // And a full verify budget (an unreadable state counts as full), the same for every run.
    h.shared_data()
        .put(devgate::core::budget::KEY.as_bytes(), b"");
    browser_headers(
        h.request()
            .peer(LOGIN_PEER)
            .method_path("POST", "/.devgate/login"),
    )
    .header("origin", "http://devgate.test")
    .header("content-type", "application/x-www-form-urlencoded")
    .body(form.as_bytes())
}

fn challenge_401() -> Headers {
    let mut h = Headers::new();
    h.add(b":status", b"401");
    h.add(b"content-type", b"text/plain");
    h.add(b"www-authenticate", b"x-wsgiorg.developer_user");
    h
}

/// A developer token for "alice" under `TOKEN_CONFIG`'s key, minted with the crate's own code.
fn developer_token() -> String {
    use devgate::core::token::{mint, Claims, Key, Purpose, Secret};
    let key = Key {
        id: "k1".into(),
        secret: Secret::from_b64url("ZGV2Z2F0ZS1mdWVsLW1ldGVyLWtleS0wMTIzNDU2Nzg5YWJjZGVm")
            .unwrap(),
    };
    let claims = Claims {
        sub: "alice".into(),
        purpose: Purpose::Developer,
        cookie: None,
        cip: None,
        jti: None,
        iat: Some(NOW),
        nbf: None,
        exp: NOW + 3600,
    };
    mint(&claims, &key)
}

struct Scenario {
    name: &'static str,
    config: String,
    /// Builds the request on a configured host; the `usize` is the request's sequence number on
    /// this VM (0..WARM_UPS: the warm-ups, WARM_UPS: the measured one), for scenarios whose
    /// measured request must differ from the warm-ups (a cache miss).
    request: fn(&mut Host, usize) -> RequestBuilder<'_>,
    /// What the scenario must produce, so a meter never measures the wrong path.
    expect: Expect,
    /// The measured request is one the VM has not seen (a cache miss): the wall-clock column
    /// times it on fresh VMs instead of repeating it on one (where it would become a hit).
    fresh: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Forwarded,
    Local(u32),
}

fn browser_headers(r: RequestBuilder<'_>) -> RequestBuilder<'_> {
    r.header(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) devgate-fuel/1.0",
    )
    .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
    .header("accept-language", "en-US,en;q=0.5")
    .header("accept-encoding", "gzip, deflate, br")
    .header("cookie", "session=abc123; theme=dark")
    .header("x-request-id", "5f0c6d1e-6c1b-4c59-9a5c-2b7f1f6b3e11")
}

fn scenarios() -> Vec<Scenario> {
    let mut all = vec![
        Scenario {
            name: "network_developer",
            config: DEMO.into(),
            request: |h, _| {
                browser_headers(h.request().peer("127.0.0.1:41000").get("/_debug/vars"))
            },
            expect: Expect::Forwarded,
            fresh: false,
        },
        Scenario {
            name: "denied_401",
            config: DEMO.into(),
            request: |h, _| {
                browser_headers(h.request().peer("203.0.113.9:41000").get("/_debug/vars"))
            },
            expect: Expect::Local(401),
            fresh: false,
        },
        Scenario {
            name: "public_path",
            config: DEMO.into(),
            request: |h, _| browser_headers(h.request().peer("203.0.113.9:41000").get("/healthz")),
            expect: Expect::Forwarded,
            fresh: false,
        },
        Scenario {
            name: "spoofed_identity_stripped",
            config: DEMO.into(),
            request: |h, _| {
                browser_headers(h.request().peer("203.0.113.9:41000").get("/healthz"))
                    .header("x-wsgiorg-developer-user", "mallory")
                    .header("x_wsgiorg_developer_user", "mallory")
            },
            expect: Expect::Forwarded,
            fresh: false,
        },
        Scenario {
            name: "bad_path_400",
            config: DEMO.into(),
            request: |h, _| browser_headers(h.request().peer("127.0.0.1:41000").get("/%zz/_debug")),
            expect: Expect::Local(400),
            fresh: false,
        },
        Scenario {
            name: "token_developer",
            config: TOKEN_CONFIG.into(),
            request: |h, _| {
                let bearer = format!("Bearer {}", developer_token());
                browser_headers(h.request().peer("203.0.113.9:41000").get("/_debug/vars"))
                    .header("authorization", &bearer)
            },
            expect: Expect::Forwarded,
            fresh: false,
        },
        Scenario {
            name: "token_tampered_401",
            config: TOKEN_CONFIG.into(),
            request: |h, _| {
                let mut token = developer_token();
                token.push('A');
                let bearer = format!("Bearer {token}");
                browser_headers(h.request().peer("203.0.113.9:41000").get("/_debug/vars"))
                    .header("authorization", &bearer)
            },
            expect: Expect::Local(401),
            fresh: false,
        },
        Scenario {
            name: "login_form_200",
            config: LOGIN_CONFIG.into(),
            request: |h, _| {
                browser_headers(h.request().peer(LOGIN_PEER).get("/.devgate/login?back=%2F"))
            },
            expect: Expect::Local(200),
            fresh: false,
        },
        Scenario {
            // bcrypt at cost 5 dominates.
            name: "login_post_303",
            config: LOGIN_CONFIG.into(),
            request: |h, _| {
                login_post(
                    h,
                    "username=alice&password=correct+horse&back=%2F_debug%2F",
                    0,
                )
            },
            expect: Expect::Local(303),
            fresh: false,
        },
        Scenario {
            name: "login_post_wrong_401",
            config: LOGIN_CONFIG.into(),
            request: |h, _| login_post(h, "username=alice&password=not-it&back=%2F", 0),
            expect: Expect::Local(401),
            fresh: false,
        },
        Scenario {
            // Refused from the headers: no body read, no bcrypt.
            name: "login_post_limited_429",
            config: LOGIN_CONFIG.into(),
            request: |h, _| login_post(h, "username=alice&password=correct+horse", 5),
            expect: Expect::Local(429),
            fresh: false,
        },
        Scenario {
            name: "session_developer",
            config: LOGIN_CONFIG.into(),
            request: |h, _| {
                let cookie = format!("theme=dark; devgate_session={}", session_token());
                h.request()
                    .peer(LOGIN_PEER)
                    .get("/_debug/vars")
                    .header("cookie", &cookie)
            },
            expect: Expect::Forwarded,
            fresh: false,
        },
        Scenario {
            // The upstream answers 401 with devgate's challenge: 403 from the response path.
            name: "upstream_challenge_403",
            config: DEMO.into(),
            request: |h, _| {
                browser_headers(h.request().peer("127.0.0.1:41000").get("/_debug/vars"))
                    .upstream_response(challenge_401())
            },
            expect: Expect::Local(403),
            fresh: false,
        },
    ];
    all.extend(assertion_scenarios());
    all
}

/// Valid OIDC ID tokens from an independent signer (PyJWT): per algorithm a few that differ in
/// `jti` only, expiring in 2100, and the JWK set that verifies them
/// (tests/vectors/make_jose_vectors.py).
fn assertion_vectors() -> &'static serde_json::Value {
    static VECTORS: OnceLock<serde_json::Value> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../vectors/jose_assertions.json")).unwrap();
        // The host's clock must fall within the tokens' lifetime.
        assert!(v["iat"].as_u64().unwrap() <= NOW && NOW < v["exp"].as_u64().unwrap());
        v
    })
}

/// The `n`th valid token for `alg` (cycling through the vectors).
fn assertion_token(alg: &str, n: usize) -> &'static str {
    let tokens = assertion_vectors()["tokens"][alg].as_array().unwrap();
    assert!(
        tokens.len() > WARM_UPS,
        "{alg}: the measured token must differ from every warm-up's"
    );
    tokens[n % tokens.len()].as_str().unwrap()
}

/// An `oidc` (Bearer) assertion source accepting `alg` from the vectors' issuer, with the
/// vectors' JWK set inline and anyone it proves as a developer.
fn assertion_config(alg: &str) -> String {
    let v = assertion_vectors();
    serde_json::json!({
        "protect": ["/"],
        "network": {"allow": []},
        "edge": {"assertions": [{
            "name": "idp",
            "profile": "oidc",
            "algorithms": [alg],
            "issuer": v["issuer"],
            "audiences": [v["audience"]],
            "keys": {"jwks": v["jwks"]},
            "developers": {"anyone": true},
        }]},
    })
    .to_string()
}

/// An outsider's request carrying the `n`th token for `alg` as `Authorization: Bearer`.
fn assertion_request<'h>(h: &'h mut Host, alg: &str, n: usize) -> RequestBuilder<'h> {
    let bearer = format!("Bearer {}", assertion_token(alg, n));
    browser_headers(h.request().peer("203.0.113.9:41000").get("/_debug/vars"))
        .header("authorization", &bearer)
}

/// Per algorithm, a verified-assertion cache miss (every request of the VM carries another valid
/// token: the measured one verifies its signature and claims), and for ES256 a hit (the same
/// token every time).
fn assertion_scenarios() -> Vec<Scenario> {
    fn miss(
        name: &'static str,
        alg: &str,
        request: fn(&mut Host, usize) -> RequestBuilder<'_>,
    ) -> Scenario {
        Scenario {
            name,
            config: assertion_config(alg),
            request,
            expect: Expect::Forwarded,
            fresh: true,
        }
    }
    vec![
        miss("assertion_es256_miss", "ES256", |h, n| {
            assertion_request(h, "ES256", n)
        }),
        miss("assertion_es384_miss", "ES384", |h, n| {
            assertion_request(h, "ES384", n)
        }),
        miss("assertion_rs256_miss", "RS256", |h, n| {
            assertion_request(h, "RS256", n)
        }),
        miss("assertion_ps256_miss", "PS256", |h, n| {
            assertion_request(h, "PS256", n)
        }),
        miss("assertion_eddsa_miss", "EdDSA", |h, n| {
            assertion_request(h, "EdDSA", n)
        }),
        Scenario {
            name: "assertion_es256_hit",
            config: assertion_config("ES256"),
            request: |h, _| assertion_request(h, "ES256", 0),
            expect: Expect::Forwarded,
            fresh: false,
        },
    ]
}

/// The fuel of one scenario, or `None` if its configuration is refused (a scenario for a feature
/// the module does not have yet: `fuel_within_baseline` fails until the module accepts it).
fn measure(s: &Scenario) -> Option<(u64, u64, Outcome)> {
    let mut h = Host::load().unwrap_or_else(|e| panic!("{e}"));
    // Envoy's default log level: a refused request's debug note is not formatted, as in
    // production (the module follows the host's level when it is configured).
    h.set_log_level(host::level::INFO);
    if !h
        .configure(&s.config)
        .unwrap_or_else(|e| panic!("{}: {e}", s.name))
    {
        return None;
    }
    for n in 0..WARM_UPS {
        (s.request)(&mut h, n).send().assert_well_formed();
    }
    let r = (s.request)(&mut h, WARM_UPS).send();
    r.assert_well_formed();
    let got = match r.status() {
        Some(status) => Expect::Local(status),
        None => Expect::Forwarded,
    };
    if got != s.expect {
        panic!(
            "{}: expected {:?}, got {:?}\n{}",
            s.name,
            s.expect,
            got,
            r.describe()
        );
    }
    Some((r.fuel, r.fuel_request_headers, r))
}

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuel_baseline.json")
}

/// The recorded fuel per scenario, or why there is none (the file missing or unreadable, not
/// JSON, or without a `fuel_per_request` table of whole numbers).
fn read_baseline() -> Result<BTreeMap<String, u64>, String> {
    let path = baseline_path();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let table = v
        .get("fuel_per_request")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format!("{}: no `fuel_per_request` table", path.display()))?;
    table
        .iter()
        .map(|(k, v)| {
            v.as_u64()
                .map(|n| (k.clone(), n))
                .ok_or_else(|| format!("{}: {k}: {v} is not a whole number", path.display()))
        })
        .collect()
}

fn write_baseline(fuel: &BTreeMap<String, u64>) {
    let doc = serde_json::json!({
        "about": "wasmtime fuel per request (whole stream) for tests/wasm/tests/fuel.rs scenarios; \
                  rewrite with DEVGATE_FUEL_UPDATE=1",
        "tolerance": TOLERANCE,
        "fuel_per_request": fuel,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap();
    text.push('\n');
    std::fs::write(baseline_path(), text).unwrap();
    eprintln!("wrote {}", baseline_path().display());
}

#[test]
fn fuel_is_deterministic() {
    for s in scenarios() {
        let a = measure(&s).map(|m| (m.0, m.1));
        let b = measure(&s).map(|m| (m.0, m.1));
        assert_eq!(a, b, "{}: fuel differs between two identical runs", s.name);
    }
}

#[test]
fn fuel_within_baseline() {
    let update = std::env::var_os("DEVGATE_FUEL_UPDATE").is_some_and(|v| v != "0");
    // Updating may start from no baseline at all; checking may not.
    let baseline = match read_baseline() {
        Ok(b) => b,
        Err(e) if update => {
            eprintln!("no baseline yet ({e}): recording one");
            BTreeMap::new()
        }
        Err(e) => {
            panic!("no fuel baseline to check against: {e} (DEVGATE_FUEL_UPDATE=1 records one)")
        }
    };
    let mut measured = BTreeMap::new();
    let mut failures = Vec::new();
    for s in scenarios() {
        let Some((fuel, _, _)) = measure(&s) else {
            failures.push(format!(
                "{}: not measured: the module refused its configuration",
                s.name
            ));
            continue;
        };
        measured.insert(s.name.to_string(), fuel);
        match baseline.get(s.name) {
            None => failures.push(format!(
                "{}: {fuel} fuel, no baseline (DEVGATE_FUEL_UPDATE=1 records it)",
                s.name
            )),
            Some(&base) => {
                let limit = (base as f64 * (1.0 + TOLERANCE)) as u64;
                if fuel > limit {
                    failures.push(format!(
                        "{}: {fuel} fuel > {limit} (baseline {base} + 20%)",
                        s.name
                    ));
                } else if (fuel as f64) < base as f64 * (1.0 - TOLERANCE) {
                    eprintln!(
                        "{}: {fuel} fuel, well under the baseline {base}: consider DEVGATE_FUEL_UPDATE=1",
                        s.name
                    );
                }
            }
        }
    }
    for name in baseline.keys() {
        if !scenarios().iter().any(|s| s.name == name) {
            failures.push(format!(
                "{name}: in the baseline, but no scenario measures it (DEVGATE_FUEL_UPDATE=1 drops it)"
            ));
        }
    }
    if update {
        if measured.len() != scenarios().len() {
            panic!(
                "not every scenario was measured, baseline left as it was:\n{}",
                failures.join("\n")
            );
        }
        write_baseline(&measured);
        return;
    }
    assert!(
        failures.is_empty(),
        "fuel regressions or scenarios without a baseline (if intended, rerun with DEVGATE_FUEL_UPDATE=1):\n{}",
        failures.join("\n")
    );
}

/// `make bench-wasm`: the table.
#[test]
#[ignore = "prints the fuel table; run by `make bench-wasm`"]
fn fuel_table() {
    let baseline = read_baseline().unwrap_or_else(|e| {
        eprintln!("no baseline column: {e}");
        BTreeMap::new()
    });
    println!();
    println!(
        "{:<28} {:>12} {:>16} {:>12} {:>10} {:>13}",
        "scenario", "fuel/req", "on_req_headers", "baseline", "host calls", "µs/req (wall)"
    );
    for s in scenarios() {
        let Some((fuel, headers_fuel, outcome)) = measure(&s) else {
            println!("{:<28} {:>12}", s.name, "n/a");
            continue;
        };
        // Wall clock, informative only: one VM, many requests; or, for a scenario whose measured
        // request is one its VM has not seen, that request on many fresh VMs.
        let micros = if s.fresh {
            let n = 50u32;
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..n {
                let mut h = Host::load().unwrap();
                h.set_log_level(host::level::INFO);
                assert!(h.configure(&s.config).unwrap());
                for i in 0..WARM_UPS {
                    (s.request)(&mut h, i).send();
                }
                let start = Instant::now();
                let r = (s.request)(&mut h, WARM_UPS).send();
                spent += start.elapsed();
                assert!(!r.trapped());
            }
            spent.as_secs_f64() * 1e6 / f64::from(n)
        } else {
            let mut h = Host::load().unwrap();
            h.set_log_level(host::level::INFO);
            assert!(h.configure(&s.config).unwrap());
            let n = 2000u32;
            let start = Instant::now();
            for _ in 0..n {
                let r = (s.request)(&mut h, WARM_UPS).send();
                assert!(!r.trapped());
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        };
        println!(
            "{:<28} {:>12} {:>16} {:>12} {:>10} {:>13.1}",
            s.name,
            fuel,
            headers_fuel,
            baseline
                .get(s.name)
                .map_or_else(|| "-".to_string(), u64::to_string),
            outcome.abi_call_count(),
            micros
        );
    }
}

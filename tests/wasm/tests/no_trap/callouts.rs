//! Random key-service answers: whatever a callout comes back with (any status bytes, non-UTF-8
//! headers, garbage, truncated or huge bodies, tokens signed with the wrong key, no answer at
//! all), the held request ends in exactly one way and nothing traps.

use std::cell::Cell;

use devgate_wasm_tests as host;
use host::{Headers, Hold, Host};
use proptest::prelude::*;

use super::config;
use super::requests::bytes;

const SERVICE: &str = r#"{"protect": ["/_debug/"],
    "api": {"routes": [{"prefix": "/v1", "product": "maps"}],
            "service": {"cluster": "key_service",
                        "keys": [{"id": "ks1", "secret": "a2V5LXNlcnZpY2UtdGVzdC1zZWNyZXQtMDEyMzQ1Njc"}],
                        "shape": {"min_length": 20, "max_length": 128,
                                  "public_prefix": "pk-", "private_prefix": "sk-"}}}}"#;

/// The host's default clock (see `HostBuilder`): 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

/// Statuses devgate answers a held request with itself (a resolved key goes upstream).
const STATUSES: &[u32] = &[401, 402, 403, 429, 500, 503];

thread_local! {
    static SERVICE_HOST: std::cell::RefCell<Option<Host>> = const { std::cell::RefCell::new(None) };
    /// A fresh key per case: an answer is cached for the key, and must not decide the next case.
    static CASE: Cell<u64> = const { Cell::new(0) };
}

fn with_service_host<R>(f: impl FnOnce(&mut Host) -> R) -> R {
    SERVICE_HOST.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|h| h.trapped().is_some()) {
            let mut h = Host::load().unwrap_or_else(|e| panic!("{e}"));
            assert!(h.configure(SERVICE).unwrap(), "{:?}", h.logs());
            *slot = Some(h);
        }
        f(slot.as_mut().unwrap())
    })
}

/// A body: garbage, JSON-ish, token-ish, or past the 16 KiB bound.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => bytes(200),
        2 => prop::sample::select(vec![
            "{\"access_token\": \"a.b.c\"}", "{\"access_token\": 1}", "{}", "[]", "null",
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtzMSIsInR5cCI6IkpXVCJ9.e30.AAAA",
            "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.", "..", "a.b", "{\"access_token\":",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        1 => (16 * 1024 - 2..16 * 1024 + 3usize).prop_map(|n| vec![b'.'; n]),
        1 => Just(vec![0xff; 1 << 20]),
    ]
}

fn answer() -> impl Strategy<Value = Option<(Headers, Vec<u8>)>> {
    let status = prop_oneof![
        3 => prop::sample::select(vec!["200", "401", "403", "402", "429", "500", "204", "0",
                                       "999", "2000", "20", "-1", "", " 200"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => bytes(5),
    ];
    let retry = prop::option::of(prop_oneof![
        prop::sample::select(vec![
            "1",
            "0",
            "120",
            "99999999999999999999",
            "-5",
            "Wed, 21 Oct"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        bytes(20),
    ]);
    prop::option::weighted(
        0.85,
        (prop::option::weighted(0.95, status), retry, body()).prop_map(|(s, r, b)| {
            let mut h = Headers::new();
            if let Some(s) = s {
                h.add(b":status", &s);
            }
            if let Some(r) = r {
                h.add(b"retry-after", &r);
            }
            h.add(b"content-type", b"\xff\xfeapplication/jwt");
            (h, b)
        }),
    )
}

proptest! {
    #![proptest_config(config(400))]

    /// Any answer (or none) to the stream's callout: no trap, no violation, and the request
    /// either goes upstream or gets one of devgate's answers, sent from the answer's callback.
    #[test]
    fn random_callout_answers_never_trap(answer in answer(), public in any::<bool>()) {
        let n = CASE.with(|c| { c.set(c.get() + 1); c.get() });
        let key = format!("{}random-answer-key-{n:012}", if public { "pk-" } else { "sk-" });
        let hold = match answer {
            Some((h, b)) => Hold::Answer(h, b),
            None => Hold::Fail,
        };
        let r = with_service_host(|h| {
            // A second per case: the callout budget (100 at once, 50 a second) never runs out.
            h.set_now(NOW + n);
            let req = h.request().peer("198.51.100.4:999");
            let req = if public {
                req.get(&format!("/v1/tiles?key={key}"))
            } else {
                req.get("/v1/tiles").header("x-api-key", &key)
            };
            req.while_held(vec![hold]).send()
        });
        r.assert_well_formed();
        prop_assert!(r.held, "{}", r.describe());
        if let Some(status) = r.status() {
            prop_assert!(STATUSES.contains(&status), "status {status}\n{}", r.describe());
        }
        for line in r.logs() {
            prop_assert!(
                !line.raw.windows(key.len()).any(|w| w == key.as_bytes()),
                "the key reached the logs\n{}",
                r.describe()
            );
        }
    }
}

/// An assertion source whose keys are fetched (a JWK set from `iap_keys`).
const EDGE: &str = r#"{"edge": {"assertions": [{"name": "iap", "profile": "google_iap",
    "audiences": ["/projects/1/apps/p"],
    "keys": {"jwks_url": {"cluster": "iap_keys", "path": "/iap/verify/public_key-jwk"}},
    "developers": {"anyone": true}}]}}"#;

thread_local! {
    static EDGE_HOST: std::cell::RefCell<Option<Host>> = const { std::cell::RefCell::new(None) };
}

fn with_edge_host<R>(f: impl FnOnce(&mut Host) -> R) -> R {
    EDGE_HOST.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|h| h.trapped().is_some()) {
            let mut h = Host::load().unwrap_or_else(|e| panic!("{e}"));
            assert!(h.configure(EDGE).unwrap(), "{:?}", h.logs());
            *slot = Some(h);
        }
        f(slot.as_mut().unwrap())
    })
}

/// A key fetch's body: garbage, JSON-ish key sets, or past the 64 KiB bound.
fn keys_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => bytes(200),
        2 => prop::sample::select(vec![
            "{\"keys\": []}", "{\"keys\": [{}]}", "{\"keys\": \"x\"}", "{}", "[]", "null",
            "{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"AA\", \"y\": \"AA\"}]}",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "{\"keys\":",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        1 => (64 * 1024 - 2..64 * 1024 + 3usize).prop_map(|n| vec![b' '; n]),
        1 => Just(vec![0xff; 1 << 20]),
    ]
}

proptest! {
    #![proptest_config(config(200))]

    /// Any answer (or none) to a stream's fetch of an issuer's keys: no trap, no violation, the
    /// request held and then answered by devgate (nothing here is a usable key set for the
    /// assertion, so never upstream), and the assertion never in the logs.
    #[test]
    fn random_key_fetch_answers_never_trap(answer in answer(), body in keys_body()) {
        let n = CASE.with(|c| { c.set(c.get() + 1); c.get() });
        let hold = match answer {
            Some((h, _)) => Hold::Answer(h, body),
            None => Hold::Fail,
        };
        let token = format!("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJuIjo{n:08}In0.c2lnbmF0dXJl");
        let r = with_edge_host(|h| {
            // Ten seconds per case: a failed fetch holds off the next one for two.
            h.set_now(NOW + 10 * n);
            h.request()
                .peer("198.51.100.4:999")
                .get("/")
                .header("x-goog-iap-jwt-assertion", &token)
                .while_held(vec![hold])
                .send()
        });
        r.assert_well_formed();
        prop_assert!(r.held, "{}", r.describe());
        prop_assert!(
            matches!(r.status(), Some(401 | 403 | 500 | 503)),
            "status {:?}\n{}",
            r.status(),
            r.describe()
        );
        for line in r.logs() {
            prop_assert!(
                !line.raw.windows(token.len()).any(|w| w == token.as_bytes()),
                "the assertion reached the logs\n{}",
                r.describe()
            );
        }
    }
}

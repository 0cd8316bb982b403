//! Property-based: random and adversarial requests and configurations never make devgate.wasm
//! trap, and every request ends in a valid action.
//!
//! For every request: no trap, no host-side violation (bad header bytes written, unexpected host
//! call), and either Continue with no local response, or Pause with exactly one local response
//! whose status is one devgate sends. When the request is forwarded, the identity header appears
//! at most once and only with the peer's own address: a client-sent value never survives.
//!
//! Case counts: 8000 random requests, 2500 random configurations (each with 1-3 requests), 1500
//! raw configuration byte strings, 400 huge/repeated-header requests: ~12 400 cases, about 12 s
//! of CPU in release (~8 s wall on 2 cores). `PROPTEST_CASES=N` sets every property's count to N.
//! The seed is fixed for reproducible CI; `PROPTEST_RNG_SEED=N` explores elsewhere.

// This whole crate is test code: clippy.toml allows these lints inside #[test] functions only,
// and the shared host and the helpers here are tests' code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod host;

use std::cell::RefCell;
use std::net::IpAddr;

use host::{Action, Host, Outcome};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde_json::{json, Value};

const IDENTITY: &str = "x-wsgiorg-developer-user";

/// Statuses devgate may answer with itself.
const STATUSES: &[u32] = &[200, 303, 400, 401, 403, 413, 429];

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

// ------------------------------------------------------------------------------------------------
// Strategies
// ------------------------------------------------------------------------------------------------

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Header names: the ones devgate cares about in odd spellings, tokens, and arbitrary bytes.
fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "x-wsgiorg-developer-user", "X-WSGIORG-DEVELOPER-USER", "x_wsgiorg_developer_user",
            "x-wsgiorg_developer-user", "x-dev", "x_dev", "cookie", "authorization", "host",
            ":path", ":method", ":authority", ":scheme", "x-forwarded-for", "content-length",
            "x-wsgiorg-developer-users", "x-wsgiorg-developer-use",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        3 => "[a-z0-9!#$%&'*+.^_`|~-]{1,40}".prop_map(String::into_bytes),
        2 => bytes(64),
    ]
}

/// Header values: arbitrary bytes (non-UTF-8 included), credentials-shaped strings, IPs.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => bytes(200),
        2 => "(Bearer |Basic |)[A-Za-z0-9._~+/=-]{0,300}".prop_map(String::into_bytes),
        2 => "([a-z_]{1,12}=[^;]{0,40}; ?){0,6}".prop_map(String::into_bytes),
        1 => prop::sample::select(vec!["127.0.0.1", "::1", "", " ", "admin", "\u{1F600}"])
            .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

/// `:path`: arbitrary bytes, and paths made of tricky segments and escapes.
fn path() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop::sample::select(vec![
        "", ".", "..", "_debug", "_DEBUG", "%5F", "%5fdebug", "%25", "%2e%2e", "%2F", "%00", "%",
        "%zz", "%c3%a9", "healthz", "api", "a;b=c", "?q=1", "#f", "\\", "%u002e", "\u{e9}",
    ]);
    prop_oneof![
        // Clean paths, so that many requests get past the path check to the decisions.
        4 => "(/[a-z_.-]{0,12}){1,5}/?".prop_map(String::into_bytes),
        3 => prop::collection::vec(segment, 0..8).prop_map(|s| format!("/{}", s.join("/")).into_bytes()),
        2 => bytes(120),
        1 => prop::sample::select(vec!["*", "", "http://x/_debug/", "/", "//", "/_debug"])
            .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

/// `source.address`: well-formed addresses, Envoy's odd ones, and garbage.
fn peer() -> impl Strategy<Value = Option<Vec<u8>>> {
    let good = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(ip))),
        (0u8..=255, any::<u16>()).prop_map(|(last, port)| format!("127.0.0.{last}:{port}")),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))),
    ];
    prop_oneof![
        4 => good.prop_map(|s| Some(s.into_bytes())),
        2 => prop::sample::select(vec![
            "", "[::1]:0", "127.0.0.1:0", "[::1]", "::1", "127.0.0.1", "[::ffff:127.0.0.1]:80",
            "/var/run/envoy.sock", "envoy://internal_client_address/", "[fe80::1%eth0]:80",
            "127.0.0.1:65536", "[::1]:-1", "localhost:80",
        ]).prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => bytes(80).prop_map(Some),
        1 => Just(Some(format!("{}:80", "1".repeat(10_000)).into_bytes())),
        1 => Just(None),
    ]
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec!["GET", "POST", "HEAD", "DELETE", "OPTIONS", "get", "CONNECT"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => bytes(20),
    ]
}

#[derive(Clone, Debug)]
struct Req {
    config: usize,
    peer: Option<Vec<u8>>,
    method: Vec<u8>,
    path: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        0..CONFIGS.len(),
        peer(),
        method(),
        prop::option::weighted(0.95, path()),
        prop::collection::vec((header_name(), header_value()), 0..24),
    )
        .prop_map(|(config, peer, method, path, headers)| Req {
            config,
            peer,
            method,
            path,
            headers,
        })
}

fn send(h: &mut Host, req: &Req) -> Outcome {
    let mut b = h.request().header_bytes(b":method", &req.method);
    if let Some(p) = &req.path {
        b = b.header_bytes(b":path", p);
    }
    b = b
        .header(":authority", "devgate.test")
        .header(":scheme", "https");
    if let Some(p) = &req.peer {
        b = b.peer_bytes(p);
    }
    for (n, v) in &req.headers {
        b = b.header_bytes(n, v);
    }
    b.send()
}

fn header_of(config: usize) -> &'static str {
    if config == 2 {
        "x-dev"
    } else {
        IDENTITY
    }
}

// ------------------------------------------------------------------------------------------------
// Configurations: valid ones, then random JSON mutations of them
// ------------------------------------------------------------------------------------------------

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,20}".prop_map(Value::String),
        bytes(20).prop_map(|b| Value::String(String::from_utf8_lossy(&b).into_owned())),
    ]
}

fn cidr() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "127.0.0.0/8", "::1", "10.0.0.0/8", "0.0.0.0/0", "::/0", "192.168.1.1", "fd00::/8",
            "127.0.0.1/32", "::ffff:127.0.0.1",
        ])
        .prop_map(|s| json!(s)),
        // Canonical random networks (host bits cleared).
        4 => (any::<u32>(), 0u32..=32).prop_map(|(ip, len)| {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            json!(format!("{}/{len}", std::net::Ipv4Addr::from(ip & mask)))
        }),
        // Odd ones: host bits set, out-of-range lengths.
        1 => prop::sample::select(vec!["1.2.3.4/0", "10.0.0.1/8", "::1/129", "127.0.0.1/33"])
            .prop_map(|s| json!(s)),
    ]
}

fn prefix() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(vec!["/", "/_debug/", "/api", "/healthz", "/a/b/", "/x"])
            .prop_map(|s| json!(s)),
        3 => (
            prop::sample::select(vec!["/api/", "/", "/_debug"]),
            prop::collection::vec(prop::sample::select(vec!["GET", "POST", "DELETE"]), 1..3),
        )
            .prop_map(|(p, ms)| json!({"prefix": p, "methods": ms})),
        // Odd ones: non-canonical prefixes, bad methods.
        1 => prop::sample::select(vec![
            json!("/%5F"), json!("//"), json!("/x/../"), json!({"prefix": "/a", "methods": []}),
            json!({"prefix": "/a", "methods": ["get", "", "B@D"]}),
        ]),
    ]
}

fn valid_ish_config() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(vec![
            "x-wsgiorg-developer-user",
            "X-Dev",
            "x_dev",
            "a",
        ])),
        prop::option::of(prop::collection::vec(cidr(), 0..4)),
        prop::option::of(prop::collection::vec(cidr(), 0..3)),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec(prefix(), 0..4)),
        prop::option::of(prop::collection::vec(prefix(), 0..3)),
        prop::option::of(prop::sample::select(vec!["challenge", "forbid"])),
    )
        .prop_map(|(header, allow, deny, trust, protect, public, unauth)| {
            let mut c = serde_json::Map::new();
            let mut net = serde_json::Map::new();
            if let Some(h) = header {
                c.insert("header".into(), json!(h));
            }
            if let Some(a) = allow {
                net.insert("allow".into(), Value::Array(a));
            }
            if let Some(d) = deny {
                net.insert("deny".into(), Value::Array(d));
            }
            if let Some(t) = trust {
                net.insert("trust_forwarded".into(), json!(t));
            }
            if !net.is_empty() {
                c.insert("network".into(), Value::Object(net));
            }
            if let Some(p) = protect {
                c.insert("protect".into(), Value::Array(p));
            }
            if let Some(p) = public {
                c.insert("public".into(), Value::Array(p));
            }
            if let Some(u) = unauth {
                c.insert("unauthenticated".into(), json!(u));
            }
            Value::Object(c)
        })
}

/// One mutation of a JSON document, applied at a node chosen by `at`.
#[derive(Clone, Debug)]
enum Mutation {
    Replace(Value),
    Remove,
    AddKey(String, Value),
    WrapInArray,
    Duplicate,
}

fn mutation() -> impl Strategy<Value = (u32, Mutation)> {
    (
        any::<u32>(),
        prop_oneof![
            json_scalar().prop_map(Mutation::Replace),
            Just(Mutation::Remove),
            ("[a-z_]{1,12}", json_scalar()).prop_map(|(k, v)| Mutation::AddKey(k, v)),
            Just(Mutation::WrapInArray),
            Just(Mutation::Duplicate),
        ],
    )
}

fn count_nodes(v: &Value) -> u32 {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `m` to the `n`-th node (pre-order) of `v`; returns whether it was applied.
fn mutate(v: &mut Value, n: &mut u32, m: &Mutation) -> bool {
    if *n == 0 {
        match m {
            Mutation::Replace(x) => *v = x.clone(),
            Mutation::AddKey(k, x) => {
                if let Value::Object(o) = v {
                    o.insert(k.clone(), x.clone());
                } else {
                    *v = json!({ k.clone(): x.clone() });
                }
            }
            Mutation::WrapInArray => *v = Value::Array(vec![v.clone()]),
            Mutation::Duplicate => {
                if let Value::Array(a) = v {
                    let copy = a.clone();
                    a.extend(copy);
                }
            }
            Mutation::Remove => return false,
        }
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => {
            for i in 0..a.len() {
                if *n == 0 && matches!(m, Mutation::Remove) {
                    a.remove(i);
                    return true;
                }
                if mutate(&mut a[i], n, m) {
                    return true;
                }
            }
        }
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if *n == 0 && matches!(m, Mutation::Remove) {
                    o.remove(&k);
                    return true;
                }
                if let Some(child) = o.get_mut(&k) {
                    if mutate(child, n, m) {
                        return true;
                    }
                }
            }
        }
        _ => {}
    }
    false
}

fn mutated_config() -> impl Strategy<Value = (Value, Vec<(u32, Mutation)>)> {
    // About half the configurations stay valid; the rest carry 1-3 mutations.
    let mutations = prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec(mutation(), 1..4),
    ];
    (valid_ish_config(), mutations).prop_map(|(mut v, ms)| {
        for (at, m) in &ms {
            let mut n = at % count_nodes(&v);
            mutate(&mut v, &mut n, m);
        }
        (v, ms)
    })
}

// ------------------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(8000))]

    /// Random requests under three fixed configurations, on long-lived VMs (as in Envoy).
    #[test]
    fn random_requests_never_trap(req in request()) {
        let r = with_host(req.config, |h| send(h, &req));
        check(&r, req.peer.as_deref(), header_of(req.config), true);
        assert_credentials_not_logged(&r, &req);
    }
}

proptest! {
    #![proptest_config(config(2500))]

    /// Random and mutated configurations: configure never traps, and whatever it answered,
    /// requests after it are well formed (and refused outright if it said no).
    #[test]
    fn random_configs_never_trap((cfg, _mutations) in mutated_config(), reqs in prop::collection::vec(request(), 1..4)) {
        let text = cfg.to_string();
        let mut h = Host::load().unwrap();
        let ok = match h.configure(&text) {
            Ok(ok) => ok,
            Err(e) => panic!("configure trapped on {text}: {e}"),
        };
        prop_assert!(h.violations().is_empty(), "{:?}", h.violations());
        let header = cfg
            .get("header")
            .and_then(Value::as_str)
            .filter(|_| ok)
            .map(|h| h.to_ascii_lowercase().replace('_', "-"))
            .unwrap_or_else(|| IDENTITY.to_string());
        for req in &reqs {
            let r = send(&mut h, req);
            check(&r, req.peer.as_deref(), &header, ok);
            assert_credentials_not_logged(&r, req);
        }
    }
}

proptest! {
    #![proptest_config(config(1500))]

    /// Raw configuration bytes (not even JSON), and JSON with deep nesting.
    #[test]
    fn raw_config_bytes_never_trap(raw in prop_oneof![
        bytes(300),
        (1usize..2000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        (1usize..2000).prop_map(|d| format!("{{\"protect\": {}{}}}", "[".repeat(d), "]".repeat(d)).into_bytes()),
    ]) {
        let mut h = Host::load().unwrap();
        let ok = h.configure_bytes(&raw).unwrap_or_else(|e| panic!("configure trapped: {e}"));
        let r = h.request().peer("127.0.0.1:1").get("/").send();
        check(&r, Some(b"127.0.0.1:1"), IDENTITY, ok);
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Huge and repeated headers: 100 KB values, thousands of copies.
    #[test]
    fn huge_and_repeated_headers_never_trap(
        config in 0..CONFIGS.len(),
        name in header_name(),
        fill in any::<u8>(),
        size in prop_oneof![Just(100 * 1024usize), 1usize..70_000],
        copies in prop_oneof![Just(1usize), 2usize..50, Just(2000usize)],
        peer in peer(),
    ) {
        let value = vec![fill; size / copies.max(1)];
        let r = with_host(config, |h| {
            let mut b = h.request().get("/_debug/").header_bytes(&name, &value);
            for _ in 1..copies {
                b = b.header_bytes(&name, &value[..value.len().min(64)]);
            }
            b = b.header_bytes(b"cookie", &value).header_bytes(b"x-wsgiorg-developer-user", &value);
            if let Some(p) = &peer {
                b = b.peer_bytes(p);
            }
            b.send()
        });
        check(&r, peer.as_deref(), header_of(config), true);
    }
}

/// A 100 KB `:path`, a 100 KB peer, and 10 000 headers, once each.
#[test]
fn extreme_inputs_never_trap() {
    let big = vec![b'a'; 100 * 1024];
    let mut path = b"/".to_vec();
    path.extend_from_slice(&big);
    with_host(0, |h| {
        let r = h
            .request()
            .peer("127.0.0.1:1")
            .header_bytes(b":method", b"GET")
            .header_bytes(b":path", &path)
            .send();
        check(&r, Some(b"127.0.0.1:1"), IDENTITY, true);
        let r = h.request().peer_bytes(&big).get("/").send();
        check(&r, Some(&big), IDENTITY, true);
        let mut b = h.request().peer("127.0.0.1:1").get("/");
        for i in 0..10_000u32 {
            b = b.header(&format!("x-h-{}", i % 97), "v");
        }
        let r = b.send();
        check(&r, Some(b"127.0.0.1:1"), IDENTITY, true);
        // Percent-escapes all the way down.
        let r = h
            .request()
            .peer("10.0.0.1:1")
            .get(&"/%25".repeat(20_000))
            .send();
        check(&r, Some(b"10.0.0.1:1"), IDENTITY, true);
    });
}

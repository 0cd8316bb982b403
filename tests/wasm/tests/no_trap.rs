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
//! responses. `PROPTEST_CASES=N` sets every
//! property's count to N. The seed is fixed for reproducible CI; `PROPTEST_RNG_SEED=N` explores
//! elsewhere.

// This whole crate is test code: clippy.toml allows these lints inside #[test] functions only,
// and the shared host and the helpers here are tests' code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use devgate_wasm_tests as host;

use std::cell::RefCell;
use std::net::IpAddr;

use devgate::core::login::{self, Attempts};
use host::{Action, Host, Outcome, Phase, SharedData};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde_json::{json, Value};

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
        1 => "(x=1; )?devgate_(session|token)=(ey)?[A-Za-z0-9._-]{0,200}(; devgate_session=)?"
            .prop_map(String::into_bytes),
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
        // The login mount, as it is and in disguise.
        1 => prop::sample::select(vec![
            "/.devgate/login", "/.devgate/logout", "/.devgate", "/.devgate/", "/.devgate/x",
            "/.devgate/login?back=%2F_debug%2F", "/%2Edevgate/login", "/.DEVGATE/login",
            "/.devgate/./login", "/x/../.devgate/logout",
        ]).prop_map(|s| s.as_bytes().to_vec()),
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

/// A `Cookie` value as Envoy can deliver one: its HTTP/1 and HTTP/2 codecs refuse NUL, CR and
/// LF in header values, so they become spaces here. Only cookies get this: devgate rebuilds the
/// `Cookie` header from what is left after taking its own cookies out, so it writes back what
/// the client sent, and the host flags any NUL/CR/LF the module writes. Every other header
/// keeps its raw bytes (devgate only reads or removes them).
fn envoy_cookie(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .map(|&b| {
            if matches!(b, 0 | b'\r' | b'\n') {
                b' '
            } else {
                b
            }
        })
        .collect()
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
        if n.eq_ignore_ascii_case(b"cookie") {
            b = b.header_bytes(n, &envoy_cookie(v));
        } else {
            b = b.header_bytes(n, v);
        }
    }
    b.send()
}

fn header_of(config: usize) -> &'static str {
    // Config 3 (login) uses the default header.
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
        // The login form (with its key), and what an upstream challenge becomes.
        (
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["forbid", "login", "pass"])),
            prop::option::of(prop::collection::vec(cidr(), 0..3)),
        ),
    )
        .prop_map(
            |(header, allow, deny, trust, protect, public, unauth, login)| {
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
                let (with_login, challenge, login_from) = login;
                if with_login {
                    let mut l = serde_json::Map::new();
                    l.insert("users".into(), json!(ALICE));
                    if let Some(from) = login_from {
                        l.insert("allow_from".into(), Value::Array(from));
                    }
                    c.insert("login".into(), Value::Object(l));
                    c.insert("keys".into(), json!([{"id": "k1", "secret": LOGIN_KEY}]));
                }
                if let Some(mode) = challenge {
                    c.insert("upstream_challenge".into(), json!(mode));
                }
                Value::Object(c)
            },
        )
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

// ------------------------------------------------------------------------------------------------
// The login form: bodies in chunks, shared data, upstream responses
// ------------------------------------------------------------------------------------------------

/// Password: correct horse (bcrypt cost 5).
const ALICE: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";
const PASSWORD: &str = "correct horse";
const LOGIN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
/// The host's default clock: the VMs below never move it.
const NOW: u64 = 1_767_225_600;
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: u64 = 300;
const CHALLENGE: &str = "x-wsgiorg.developer_user";

/// The configurations the login and response properties run under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Challenge {
    Forbid,
    Login,
    Pass,
}

const LOGIN_CONFIGS: &[(&str, Challenge, bool)] = &[
    ("", Challenge::Forbid, true),
    (r#", "upstream_challenge": "login""#, Challenge::Login, true),
    (r#", "upstream_challenge": "pass""#, Challenge::Pass, true),
    // No login at all: the default still translates the challenge (403).
    ("", Challenge::Forbid, false),
];

/// The host's clock stands still across cases, so the verify budget is the largest there is:
/// the model below does not count it (tests/login.rs does).
fn login_config(i: usize) -> String {
    let (extra, _, with_login) = LOGIN_CONFIGS[i];
    if !with_login {
        return r#"{"protect": ["/"], "public": ["/healthz"]}"#.to_string();
    }
    format!(
        r#"{{"protect": ["/"], "public": ["/healthz"],
            "keys": [{{"id": "k1", "secret": "{LOGIN_KEY}"}}],
            "login": {{"users": "{ALICE}", "verifies_per_minute": 60000, "verify_burst": 1000}}
            {extra}}}"#
    )
}

thread_local! {
    static LOGIN_HOSTS: RefCell<Vec<Option<Host>>> =
        RefCell::new((0..LOGIN_CONFIGS.len()).map(|_| None).collect());
}

/// Runs `f` on the (cached) host configured with `login_config(i)`; a trapped host is dropped.
/// The password can never reach these VMs' logs (checked when a host is dropped, and per case).
fn with_login_host<R>(i: usize, f: impl FnOnce(&mut Host) -> R) -> R {
    LOGIN_HOSTS.with(|cell| {
        let mut hosts = cell.borrow_mut();
        let slot = &mut hosts[i];
        if slot.as_ref().is_none_or(|h| h.trapped().is_some()) {
            let mut h = Host::load().unwrap_or_else(|e| panic!("{e}"));
            h.watch_secrets(&[PASSWORD, "correct+horse", LOGIN_KEY]);
            let config = login_config(i);
            assert!(h.configure(&config).unwrap(), "{config}");
            *slot = Some(h);
        }
        f(slot.as_mut().unwrap())
    })
}

/// A form field value: plain, percent- and plus-encoded, or arbitrary bytes escaped.
fn form_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~+-]{0,24}",
        2 => bytes(24).prop_map(|b| b.iter().map(|c| format!("%{c:02X}")).collect::<String>()),
        1 => "[A-Za-z0-9%+&=]{0,16}",
        1 => prop::sample::select(vec!["correct+horse", "correct%20horse", "correct horse", ""])
            .prop_map(str::to_string),
        1 => (1usize..1300).prop_map(|n| "p".repeat(n)),
    ]
}

/// Login bodies: arbitrary bytes, and forms with the right and wrong names and passwords, odd
/// field orders, repeated fields and extra fields.
fn login_body() -> impl Strategy<Value = Vec<u8>> {
    let user = prop_oneof![
        3 => Just("alice".to_string()),
        1 => Just("ALICE".to_string()),
        1 => form_value(),
    ];
    let field = prop_oneof![
        (user, Just("username")).prop_map(|(v, n)| format!("{n}={v}")),
        form_value().prop_map(|v| format!("password={v}")),
        form_value().prop_map(|v| format!("back={v}")),
        ("[a-z]{1,8}", form_value()).prop_map(|(n, v)| format!("{n}={v}")),
    ];
    prop_oneof![
        3 => bytes(600),
        1 => bytes(6000),
        // The right password under varying shapes.
        2 => (form_value(), any::<bool>()).prop_map(|(back, first)| {
            let (u, p) = ("username=alice", "password=correct+horse");
            let (a, b) = if first { (u, p) } else { (p, u) };
            format!("{a}&{b}&back={back}").into_bytes()
        }),
        4 => prop::collection::vec(field, 0..6).prop_map(|f| f.join("&").into_bytes()),
        1 => (1usize..5000).prop_map(|n| {
            let mut b = b"username=alice&password=correct+horse&back=".to_vec();
            b.resize(b.len() + n, b'/');
            b
        }),
    ]
}

/// What is under the peer's failed-login key before the request.
#[derive(Clone, Debug)]
enum Stored {
    /// Whatever earlier cases left.
    Leave,
    Put(Vec<u8>),
}

fn stored() -> impl Strategy<Value = Stored> {
    let attempts = (
        0u32..12,
        prop_oneof![
            3 => NOW - 2 * FAILURE_WINDOW..=NOW + 50,
            1 => any::<u64>(),
        ],
    )
        .prop_map(|(count, window_start)| {
            Attempts {
                count,
                window_start,
            }
            .to_bytes()
            .to_vec()
        });
    prop_oneof![
        2 => Just(Stored::Leave),
        3 => Just(Stored::Put(Vec::new())),
        3 => attempts.prop_map(Stored::Put),
        2 => bytes(40).prop_map(Stored::Put),
        1 => (any::<u8>(), bytes(12)).prop_map(|(v, rest)| {
            let mut b = vec![v];
            b.extend(rest);
            Stored::Put(b)
        }),
    ]
}

#[derive(Clone, Debug)]
struct LoginCase {
    peer: &'static str,
    body: Vec<u8>,
    /// Chunk sizes, cycled (0 makes an empty chunk).
    sizes: Vec<usize>,
    trailers: bool,
    stored: Stored,
    tls: Option<Vec<u8>>,
    content_length: Option<&'static str>,
    config: usize,
}

fn login_case() -> impl Strategy<Value = LoginCase> {
    (
        prop::sample::select(vec![
            "203.0.113.9:41000",
            "198.51.100.7:1",
            "[2001:db8:1:2::9]:443",
            "[::ffff:203.0.113.9]:80",
            "127.0.0.1:5",
            "203.0.113.9:0",
            "garbage",
        ]),
        login_body(),
        prop::collection::vec(prop_oneof![4 => 1usize..64, 2 => 64usize..2000, 1 => Just(0usize), 1 => Just(4096usize)], 1..6),
        any::<bool>(),
        stored(),
        prop::option::weighted(0.3, prop_oneof![Just(b"TLSv1.3".to_vec()), Just(Vec::new()), bytes(8)]),
        prop::option::weighted(0.2, prop::sample::select(vec!["10", "4096", "4097", " 5000 ", "x", "-1", "99999999999999999999"])),
        0usize..3,
    )
        .prop_map(|(peer, body, sizes, trailers, stored, tls, content_length, config)| LoginCase {
            peer,
            body,
            sizes,
            trailers,
            stored,
            tls,
            content_length,
            config,
        })
}

fn chunks_of(body: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    if sizes.iter().all(|&s| s == 0) {
        // Nothing but empty chunks would never end: the body, then an empty chunk.
        return if body.is_empty() {
            vec![Vec::new()]
        } else {
            vec![body.to_vec(), Vec::new()]
        };
    }
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let size = sizes[i % sizes.len()];
        let end = (at + size).min(body.len());
        chunks.push(body[at..end].to_vec());
        at = end;
        i += 1;
    }
    chunks
}

/// The peer address devgate may use for a login (a socket peer; no forwarded ones).
fn login_peer(peer: &str) -> Option<IpAddr> {
    let addr: std::net::SocketAddr = peer.parse().ok()?;
    (addr.port() != 0).then(|| addr.ip())
}

/// What the body step must answer, computed with the crate's own core functions.
fn expected_login(case: &LoginCase, prev: Option<Attempts>, n_chunks: usize) -> (u32, Phase) {
    let end = if case.trailers {
        Phase::RequestTrailers
    } else if n_chunks == 0 {
        Phase::RequestHeaders
    } else {
        Phase::RequestBody(n_chunks - 1)
    };
    if login_peer(case.peer).is_none() {
        return (403, Phase::RequestHeaders);
    }
    let declared = case
        .content_length
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > login::MAX_BODY as u64) {
        return (413, Phase::RequestHeaders);
    }
    if login::check(prev, NOW, MAX_FAILURES, FAILURE_WINDOW) != login::Verdict::Allow {
        return (429, Phase::RequestHeaders);
    }
    if case.body.len() > login::MAX_BODY {
        // The first chunk that takes the total over the cap.
        let chunks = chunks_of(&case.body, &case.sizes);
        let mut total = 0;
        for (i, c) in chunks.iter().enumerate() {
            total += c.len();
            if total > login::MAX_BODY {
                return (413, Phase::RequestBody(i));
            }
        }
    }
    match login::parse_form(&case.body) {
        Ok(form) if form.username == "alice" && form.password == PASSWORD.as_bytes() => (303, end),
        _ => (401, end),
    }
}

fn send_login(h: &mut Host, case: &LoginCase, chunks: Vec<Vec<u8>>) -> Outcome {
    // The site's own origin: https on a TLS connection.
    let tls = case.tls.as_ref().is_some_and(|t| !t.is_empty());
    let mut b = h
        .request()
        .peer(case.peer)
        .method_path("POST", "/.devgate/login")
        .header(
            "origin",
            if tls {
                "https://devgate.test"
            } else {
                "http://devgate.test"
            },
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "cookie",
            "devgate_session=eyJub3QiOiJhIHRva2VuIn0.x.y; theme=dark",
        )
        .header("authorization", "Bearer not-a-token-0123456789")
        .header(IDENTITY, "spoofed-identity-5b1c9e");
    if let Some(v) = case.content_length {
        b = b.header("content-length", v);
    }
    if let Some(t) = &case.tls {
        b = b.property("connection.tls_version", t);
    }
    if !chunks.is_empty() {
        b = b.body_chunks(chunks);
    }
    if case.trailers {
        let mut t = host::Headers::new();
        t.add(b"x-trailer", b"1");
        b = b.trailers(t);
    }
    b.send()
}

fn check_login(
    r: &Outcome,
    case: &LoginCase,
    before: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
    n_chunks: usize,
) {
    r.assert_well_formed();
    let status = r
        .status()
        .unwrap_or_else(|| panic!("a login POST was forwarded\n{}", r.describe()));
    assert!(!r.forwarded, "{}", r.describe());
    let prev = before.as_deref().and_then(Attempts::from_bytes);
    let (want, phase) = expected_login(case, prev, n_chunks);
    assert_eq!(
        (status, r.local_phase()),
        (want, Some(phase)),
        "prev {prev:?}\n{}",
        r.describe()
    );
    // Whatever went on before the answer carried no credential and no body byte.
    if let Some(passed) = &r.headers_passed_on {
        for name in ["cookie", "authorization", IDENTITY] {
            assert!(!passed.contains(name), "{name} went on\n{}", r.describe());
        }
    }
    assert!(
        r.body_passed_on.iter().all(Vec::is_empty),
        "body bytes went on\n{}",
        r.describe()
    );
    let local = r.local().unwrap();
    let cookie = local.headers.get_str("set-cookie");
    // The failure record: cleared on success, one more failure on a 401, untouched otherwise.
    let key = login_peer(case.peer).map(login::rate_key);
    match want {
        303 => {
            let cookie = cookie.unwrap_or_else(|| panic!("no cookie\n{}", r.describe()));
            assert!(cookie.starts_with("devgate_session=ey"), "{cookie}");
            let secure = case.tls.as_ref().is_some_and(|t| !t.is_empty());
            assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
            let token = cookie
                .trim_start_matches("devgate_session=")
                .split(';')
                .next()
                .unwrap_or_default()
                .to_string();
            r.assert_no_secret_in_logs(&[&token]);
            assert_eq!(after, Some(Vec::new()), "{key:?}");
        }
        401 => {
            assert!(cookie.is_none(), "{}", r.describe());
            let next = login::record_failure(prev, NOW, FAILURE_WINDOW);
            assert_eq!(
                after.as_deref().and_then(Attempts::from_bytes),
                Some(next),
                "{key:?} before {before:?}\n{}",
                r.describe()
            );
        }
        _ => {
            assert!(cookie.is_none(), "{}", r.describe());
            assert_eq!(after, before, "{key:?}\n{}", r.describe());
        }
    }
    r.assert_no_secret_in_logs(&[PASSWORD, "correct+horse", "not-a-token-0123456789"]);
    // Any password-looking field of the body stays out of the logs.
    if let Ok(form) = login::parse_form(&case.body) {
        if form.password.len() >= 8 {
            for line in r.logs() {
                assert!(
                    !line
                        .raw
                        .windows(form.password.len())
                        .any(|w| w == form.password.as_slice()),
                    "the password reached the logs\n{}",
                    r.describe()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(config(600))]

    /// Random bytes and forms as login bodies, split into random chunks (empty ones included,
    /// trailers or not), with random contents under the peer's rate key in shared data.
    #[test]
    fn random_login_bodies_never_trap(case in login_case()) {
        let chunks = chunks_of(&case.body, &case.sizes);
        let n = chunks.len();
        let r = with_login_host(case.config, |h| {
            let shared = h.shared_data();
            let key = login_peer(case.peer).map(login::rate_key);
            if let (Some(k), Stored::Put(v)) = (&key, &case.stored) {
                shared.put(k.as_bytes(), v);
            }
            let before = key.as_deref().and_then(|k| shared.value(k));
            let r = send_login(h, &case, chunks);
            let after = key.as_deref().and_then(|k| shared.value(k));
            (r, before, after)
        });
        check_login(&r.0, &case, r.1, r.2, n);
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// Garbage under every key a VM might read, then random requests: never a trap, never a
    /// login without the password.
    #[test]
    fn garbage_shared_data_never_traps(
        garbage in prop::collection::vec((prop_oneof![
            Just("devgate.login.203.0.113.9".as_bytes().to_vec()),
            Just("devgate.login.2001:db8:1:2::/64".as_bytes().to_vec()),
            Just(devgate::core::budget::KEY.as_bytes().to_vec()),
            bytes(30),
        ], bytes(64)), 1..8),
        req in request(),
    ) {
        let shared = SharedData::new();
        for (k, v) in &garbage {
            shared.put(k, v);
        }
        let mut h = Host::builder().shared_data(&shared).load().unwrap();
        assert!(h.configure(CONFIGS[3]).unwrap());
        let r = send(&mut h, &req);
        check(&r, req.peer.as_deref(), IDENTITY, true);
        let case = LoginCase {
            peer: "203.0.113.9:41000",
            body: b"username=alice&password=nope-nope-nope".to_vec(),
            sizes: vec![7],
            trailers: false,
            stored: Stored::Leave,
            tls: None,
            content_length: None,
            config: 0,
        };
        let before = shared.value("devgate.login.203.0.113.9");
        let chunks = chunks_of(&case.body, &case.sizes);
        let n = chunks.len();
        let r = send_login(&mut h, &case, chunks);
        let after = shared.value("devgate.login.203.0.113.9");
        check_login(&r, &case, before, after, n);
    }
}

/// A `WWW-Authenticate` value: devgate's challenge in odd spellings and lists, others, bytes.
fn www_authenticate() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            CHALLENGE, "X-WSGIOrg.Developer_User", " x-wsgiorg.developer_user ",
            "Basic realm=\"x\", x-wsgiorg.developer_user", "x-wsgiorg.developer_user realm=a",
            "x-wsgiorg.developer_userx", "x-wsgiorg.developer-user", "Basic realm=\"x\"",
            "Bearer", ",,,", "", "x-wsgiorg.developer_user,Basic",
            "Basic realm=\"x-wsgiorg.developer_user\"",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        1 => bytes(60),
    ]
}

#[derive(Clone, Debug)]
struct ResponseCase {
    config: usize,
    developer: bool,
    cookie: Option<Vec<u8>>,
    statuses: Vec<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

fn response_case() -> impl Strategy<Value = ResponseCase> {
    let status = prop_oneof![
        4 => Just(b"401".to_vec()),
        2 => prop::sample::select(vec!["200", "403", "4010", "401 ", " 401", "", "302", "500"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => bytes(6),
    ];
    let header = prop_oneof![
        4 => www_authenticate().prop_map(|v| (b"www-authenticate".to_vec(), v)),
        2 => (header_name(), header_value()),
        1 => prop::sample::select(vec!["set-cookie", "location", "content-length", ":status"])
            .prop_flat_map(|n| bytes(40).prop_map(move |v| (n.as_bytes().to_vec(), v))),
    ];
    (
        0..LOGIN_CONFIGS.len(),
        any::<bool>(),
        prop::option::weighted(
            0.3,
            prop_oneof![
                Just(b"devgate_session=eyJhbGciOiJIUzI1NiJ9.e30.x".to_vec()),
                header_value(),
            ],
        ),
        prop::collection::vec(status, 0..3),
        prop::collection::vec(header, 0..10),
    )
        .prop_map(
            |(config, developer, cookie, statuses, headers)| ResponseCase {
                config,
                developer,
                cookie,
                statuses,
                headers,
            },
        )
}

proptest! {
    #![proptest_config(config(3000))]

    /// Random upstream responses (status, challenges, anything) to allowed requests, under every
    /// upstream_challenge mode: never a trap; devgate's challenge in a 401 becomes 403 (or 303
    /// to the form for an anonymous request in `login` mode); anything else passes unchanged.
    #[test]
    fn random_upstream_responses_never_trap(case in response_case()) {
        let mut response = host::Headers::new();
        for s in &case.statuses {
            response.add(b":status", s);
        }
        for (n, v) in &case.headers {
            response.add(n, v);
        }
        let r = with_login_host(case.config, |h| {
            let (peer, path) = if case.developer {
                ("127.0.0.1:1", "/_debug/x")
            } else {
                ("203.0.113.9:1", "/healthz/x?y=1")
            };
            let mut b = h.request().peer(peer).get(path).upstream_response(response.clone());
            if let Some(c) = &case.cookie {
                b = b.header_bytes(b"cookie", &envoy_cookie(c));
            }
            b.send()
        });
        r.assert_well_formed();
        if !r.forwarded {
            // Refused at the request (a broken session cookie on a protected path): the
            // upstream response never happened.
            prop_assert!(matches!(r.status(), Some(400 | 401 | 403)), "{}", r.describe());
            return Ok(());
        }
        let (_, challenge, _) = LOGIN_CONFIGS[case.config];
        let www = response.get_all("www-authenticate");
        let translated = response.get(":status") == Some(&b"401"[..])
            && devgate::core::session::has_developer_challenge(&www)
            && challenge != Challenge::Pass;
        if translated {
            let want = if challenge == Challenge::Login && !case.developer { 303 } else { 403 };
            prop_assert_eq!(r.status(), Some(want), "{}", r.describe());
            prop_assert_eq!(r.local_phase(), Some(Phase::ResponseHeaders));
            prop_assert_eq!(r.client_status(), Some(want));
            if want == 303 {
                let location = r.local().unwrap().headers.get_str("location").unwrap_or_default();
                prop_assert_eq!(location.as_str(), "/.devgate/login?back=/healthz/x%3Fy%3D1");
            }
        } else {
            prop_assert!(r.local().is_none(), "{}", r.describe());
            // Unchanged, but for a Set-Cookie clearing an expired session (never one here:
            // no cookie in these cases is a valid expired session).
            prop_assert_eq!(r.client_headers.as_ref(), Some(&response), "{}", r.describe());
        }
    }
}

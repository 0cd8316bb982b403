//! Random requests: the strategies, and the properties over fixed configurations.

use devgate_wasm_tests as host;
use host::{Host, Outcome};
use proptest::prelude::*;

use super::{assert_credentials_not_logged, check, config, with_host, CONFIGS, IDENTITY};

pub(super) fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Header names: the ones devgate cares about in odd spellings, tokens, and arbitrary bytes.
pub(super) fn header_name() -> impl Strategy<Value = Vec<u8>> {
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
pub(super) fn header_value() -> impl Strategy<Value = Vec<u8>> {
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
pub(super) struct Req {
    pub(super) config: usize,
    pub(super) peer: Option<Vec<u8>>,
    pub(super) method: Vec<u8>,
    pub(super) path: Option<Vec<u8>>,
    pub(super) headers: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn request() -> impl Strategy<Value = Req> {
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
pub(super) fn envoy_cookie(value: &[u8]) -> Vec<u8> {
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

pub(super) fn send(h: &mut Host, req: &Req) -> Outcome {
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

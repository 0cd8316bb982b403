//! The login form: random bodies in random chunks, and random records under the peer's
//! failed-login key in shared data, each checked against the crate's core functions.

use std::cell::RefCell;
use std::net::IpAddr;

use devgate::core::login::{self, Attempts};
use devgate_wasm_tests as host;
use host::{Host, Outcome, Phase, SharedData};
use proptest::prelude::*;

use super::requests::{bytes, request, send};
use super::{check, config, CONFIGS, IDENTITY};

/// Password: correct horse (bcrypt cost 5).
pub(super) const ALICE: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";
const PASSWORD: &str = "correct horse";
pub(super) const LOGIN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
/// The host's default clock: the VMs below never move it.
const NOW: u64 = 1_767_225_600;
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: u64 = 300;
pub(super) const CHALLENGE: &str = "x-wsgiorg.developer_user";

/// The configurations the login and response properties run under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Challenge {
    Forbid,
    Login,
    Pass,
}

pub(super) const LOGIN_CONFIGS: &[(&str, Challenge, bool)] = &[
    ("", Challenge::Forbid, true),
    (r#", "upstream_challenge": "login""#, Challenge::Login, true),
    (r#", "upstream_challenge": "pass""#, Challenge::Pass, true),
    // No login at all: the default still translates the challenge (403).
    ("", Challenge::Forbid, false),
];

/// The host's clock stands still across cases, so the verify budget is the largest there is:
/// the model below does not count it (tests/login/failures.rs does).
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
pub(super) fn with_login_host<R>(i: usize, f: impl FnOnce(&mut Host) -> R) -> R {
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

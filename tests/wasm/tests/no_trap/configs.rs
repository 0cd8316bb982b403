//! Random configurations: valid ones, random JSON mutations of them, raw bytes.

use devgate_wasm_tests as host;
use host::Host;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::login_form::{ALICE, LOGIN_KEY};
use super::requests::{bytes, request, send};
use super::{assert_credentials_not_logged, check, config, IDENTITY};

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

//! Random upstream responses under every `upstream_challenge` mode.

use devgate_wasm_tests as host;
use host::Phase;
use proptest::prelude::*;

use super::config;
use super::login_form::{with_login_host, Challenge, CHALLENGE, LOGIN_CONFIGS};
use super::requests::{bytes, envoy_cookie, header_name, header_value};

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

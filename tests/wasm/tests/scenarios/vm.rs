//! The VM over many requests, and what a request costs in host calls.

use devgate_wasm_tests as host;
use host::{Action, Headers, HostResult};

use super::{
    assert_anonymous_pass, assert_challenge, assert_developer, loaded, with_noise, DEMO, SECRETS,
};

#[test]
fn many_requests_on_one_vm_do_not_leak_state() -> HostResult<()> {
    let mut h = loaded(DEMO)?;
    for i in 0..300u32 {
        match i % 3 {
            0 => assert_developer(
                &with_noise(
                    h.request()
                        .peer(&format!("127.0.{}.{}:1", i % 250, i % 200))
                        .get("/_debug/"),
                )
                .send(),
                &format!("127.0.{}.{}", i % 250, i % 200),
            ),
            1 => {
                assert_challenge(&with_noise(h.request().peer("10.0.0.1:1").get("/_debug/")).send())
            }
            _ => assert_anonymous_pass(
                &with_noise(h.request().peer("10.0.0.1:1").get("/healthz")).send(),
            ),
        }
    }
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn host_calls_per_request_are_few() -> HostResult<()> {
    let mut h = loaded(DEMO)?;
    let cases = [
        (
            "developer",
            with_noise(h.request().peer("127.0.0.1:1").get("/_debug/")).send(),
        ),
        (
            "denied",
            with_noise(h.request().peer("10.0.0.1:1").get("/_debug/")).send(),
        ),
        (
            "public",
            with_noise(h.request().peer("10.0.0.1:1").get("/healthz")).send(),
        ),
    ];
    for (name, r) in &cases {
        r.assert_well_formed();
        let calls: Vec<String> = r
            .calls()
            .iter()
            .map(|c| format!("{}({})", c.name, c.args))
            .collect();
        eprintln!("{name}: {} ABI calls: {calls:#?}", r.abi_call_count());
        // One header-map read, one property read, the edits or the reply: a handful.
        assert!(r.abi_call_count() <= 10, "{name}: {calls:#?}");
        assert_eq!(
            r.calls_named("proxy_get_header_map_pairs"),
            1,
            "{name}: {calls:#?}"
        );
        assert!(
            r.calls_named("proxy_get_property") <= 1,
            "{name}: {calls:#?}"
        );
    }
    Ok(())
}

#[test]
fn responses_pass_through_untouched() -> HostResult<()> {
    let mut h = loaded("{}")?;
    let mut upstream = Headers::new();
    upstream.add(b":status", b"200");
    upstream.add(b"set-cookie", b"a=b");
    upstream.add(b"x-wsgiorg-developer-user", b"from-upstream");
    let r = h
        .request()
        .peer("127.0.0.1:1")
        .get("/")
        .upstream_response(upstream.clone())
        .send();
    r.assert_well_formed();
    assert_eq!(r.response_action, Some(Action::Continue));
    assert_eq!(
        r.response_headers.as_ref(),
        Some(&upstream),
        "{}",
        r.describe()
    );
    Ok(())
}

//! Configuration: bad ones refused naming the field, and no request forwarded without a good one.

use devgate_wasm_tests as host;
use host::{Action, HostResult};

use super::{assert_anonymous_pass, fresh, loaded, with_noise, SECRETS};

/// Configurations that must be refused, with the field the log line must name.
const BAD_CONFIGS: &[(&str, &str)] = &[
    (r#"{"headr": "x"}"#, "headr"),
    (r#"{"network": {"alow": []}}"#, "alow"),
    (
        r#"{"network": {"allow": ["127.0.0.1", "not-an-ip"]}}"#,
        "network.allow[1]",
    ),
    (
        r#"{"network": {"deny": ["10.0.0.0/33"]}}"#,
        "network.deny[0]",
    ),
    (
        r#"{"network": {"trust_forwarded": "yes"}}"#,
        "trust_forwarded",
    ),
    (r#"{"unauthenticated": "allow"}"#, "unauthenticated"),
    (
        r#"{"unauthenticated": "config-secret-a1b2c3d4"}"#,
        "unauthenticated",
    ),
    (
        r#"{"network": {"allow": ["config-secret-a1b2c3d4"]}}"#,
        "network.allow[0]",
    ),
    (
        r#"{"protect": [{"prefix": "config-secret-a1b2c3d4"}]}"#,
        "protect[0]",
    ),
    (r#"{"protect": "/"}"#, "protect"),
    (r#"{"protect": ["no-slash"]}"#, "protect[0]"),
    (
        // An object rule is one of two shapes, so serde can only point at the element.
        r#"{"protect": [{"prefix": "/x/", "verbs": ["GET"]}]}"#,
        "protect[0]",
    ),
    (r#"{"public": [7]}"#, "public[0]"),
    (r#"{"header": "has space"}"#, "header"),
    (r#"{"header": "config-secret-a1b2c3d4 x"}"#, "header"),
    (
        r#"{"unknown_secret_holder": "config-secret-a1b2c3d4"}"#,
        "unknown_secret_holder",
    ),
];

#[test]
fn bad_configurations_are_refused_naming_the_field() -> HostResult<()> {
    for (config, field) in BAD_CONFIGS {
        let mut h = fresh()?;
        let ok = h.configure(config)?;
        assert!(!ok, "accepted bad config {config}");
        let logs: Vec<&str> = h.logs().iter().map(|l| l.message.as_str()).collect();
        eprintln!("{config} -> {logs:?}");
        assert!(
            logs.iter().any(|l| l.contains(field)),
            "no log line names {field:?} for {config}: {logs:?}"
        );
        h.assert_no_secret_in_logs(SECRETS);
    }
    for config in [
        "{",
        "[]",
        "null",
        "\"x\"",
        "{} {}",
        "{\"header\": \"x\",}",
        "\u{feff}{}",
    ] {
        let mut h = fresh()?;
        assert!(!h.configure(config)?, "accepted {config:?}");
    }
    let mut h = fresh()?;
    assert!(
        !h.configure_bytes(b"{\"header\": \"\xff\"}")?,
        "accepted non-UTF-8"
    );
    Ok(())
}

#[test]
fn requests_after_a_refused_configuration_are_never_forwarded() -> HostResult<()> {
    // Envoy would not route to a filter whose configure failed; if a request arrives anyway
    // it must be refused locally.
    let mut h = fresh()?;
    assert!(!h.configure(r#"{"bogus": 1}"#)?);
    for peer in ["127.0.0.1:1", "10.0.0.1:1"] {
        let r = with_noise(h.request().peer(peer).get("/")).send();
        r.assert_well_formed();
        assert_eq!(r.action(), Action::Pause, "{}", r.describe());
        let status = r.status().unwrap();
        assert!(
            status == 500 || status == 503,
            "status {status}\n{}",
            r.describe()
        );
        eprintln!("request after refused configuration: {status}");
    }
    // A configuration refused after a good one drops the good one too (fail closed).
    let mut h = loaded(r#"{"protect": []}"#)?;
    assert_anonymous_pass(&h.request().peer("10.0.0.1:1").get("/").send());
    assert!(!h.configure(r#"{"protect": 5}"#)?);
    let r = h.request().peer("10.0.0.1:1").get("/").send();
    assert!(
        r.upstream_headers().is_none(),
        "stale policy used\n{}",
        r.describe()
    );
    // And a good one after that works again.
    assert!(h.configure(r#"{"protect": []}"#)?);
    assert_anonymous_pass(&h.request().peer("10.0.0.1:1").get("/").send());
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn an_empty_request_header_map_is_not_forwarded() -> HostResult<()> {
    // Envoy never sends one (":method" and ":path" are always there), but the ABI allows it:
    // the host then returns a NULL buffer of size 0.
    let mut h = loaded(r#"{"protect": []}"#)?;
    let r = h.request().peer("127.0.0.1:1").send();
    r.assert_well_formed();
    assert!(r.upstream_headers().is_none(), "{}", r.describe());
    eprintln!("empty header map: {:?}", r.local_response());
    Ok(())
}

#[test]
fn requests_before_any_configuration_are_never_forwarded() -> HostResult<()> {
    let mut h = fresh()?;
    let r = h.request().peer("127.0.0.1:1").get("/").send();
    r.assert_well_formed();
    assert!(r.upstream_headers().is_none(), "{}", r.describe());
    Ok(())
}

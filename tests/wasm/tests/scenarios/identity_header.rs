//! The identity header: every client-sent copy removed, a configured name used and stripped.

use devgate_wasm_tests as host;
use host::HostResult;

use super::{identity_values, loaded, IDENTITY, SECRETS, SPOOF, SPOOF2};

#[test]
fn every_client_sent_copy_of_the_identity_header_is_removed() -> HostResult<()> {
    let mut h = loaded(r#"{"protect": []}"#)?;
    for peer in ["10.0.0.1:1", "127.0.0.1:1"] {
        let r = h
            .request()
            .peer(peer)
            .get("/")
            .header(IDENTITY, SPOOF)
            .header("X-Wsgiorg-Developer-User", SPOOF2)
            .header("x_wsgiorg_developer_user", SPOOF)
            .header("X_WSGIORG-developer_user", SPOOF2)
            .header(IDENTITY, "")
            .header("x-wsgiorg-developer-users", "kept")
            .send();
        r.assert_well_formed();
        let up = r.upstream_headers().unwrap();
        assert_eq!(
            up.get_str("x-wsgiorg-developer-users").as_deref(),
            Some("kept")
        );
        if peer.starts_with("127.") {
            assert_eq!(
                identity_values(&r),
                vec!["127.0.0.1".to_string()],
                "{}",
                r.describe()
            );
        } else {
            assert!(identity_values(&r).is_empty(), "{}", r.describe());
        }
    }
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn a_configured_header_name_is_used_and_stripped() -> HostResult<()> {
    let mut h = loaded(r#"{"header": "X-Dev-User", "protect": []}"#)?;
    let r = h
        .request()
        .peer("127.0.0.1:1")
        .get("/")
        .header("x-dev-user", SPOOF)
        .header("x_dev_user", SPOOF2)
        .send();
    r.assert_well_formed();
    let up = r.upstream_headers().unwrap();
    assert_eq!(
        up.get_all("x-dev-user"),
        vec![&b"127.0.0.1"[..]],
        "{}",
        r.describe()
    );
    assert!(!up.contains("x_dev_user"), "{}", r.describe());
    let r = h
        .request()
        .peer("10.0.0.1:1")
        .get("/")
        .header("x-dev-user", SPOOF)
        .send();
    assert!(!r.upstream_headers().unwrap().contains("x-dev-user"));
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

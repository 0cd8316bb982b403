//! The module itself: its exports and imports, the VM start and the default configuration.

use devgate_wasm_tests as host;
use host::HostResult;

use super::fresh;

#[test]
fn module_has_the_abi_exports_and_only_known_imports() -> HostResult<()> {
    let exports = host::module_exports()?;
    for e in [
        "proxy_abi_version_0_2_1",
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_response_headers",
        "proxy_on_done",
        "proxy_on_delete",
        "memory",
    ] {
        assert!(
            exports.iter().any(|x| x == e),
            "missing export {e}: {exports:?}"
        );
    }
    assert!(
        exports
            .iter()
            .any(|x| x == "malloc" || x == "proxy_on_memory_allocate"),
        "no allocator export: {exports:?}"
    );
    let imports = host::module_imports()?;
    eprintln!("devgate.wasm imports: {imports:#?}");
    for i in &imports {
        assert!(
            i.starts_with("env::proxy_") || i.starts_with("wasi_snapshot_preview1::"),
            "unexpected import {i}"
        );
    }
    Ok(())
}

#[test]
fn vm_starts_and_default_config_is_accepted() -> HostResult<()> {
    let mut h = fresh()?;
    assert!(
        h.configure("")?,
        "empty configuration refused: {:?}",
        h.logs()
    );
    assert!(h.configure("{}")?, "{{}} refused: {:?}", h.logs());
    assert!(
        h.configure(
            r#"{"header": "x-wsgiorg-developer-user",
                "network": {"allow": ["127.0.0.0/8", "::1"], "deny": [], "trust_forwarded": false},
                "protect": ["/"], "public": [], "unauthenticated": "challenge"}"#
        )?,
        "the documented defaults, spelled out, refused: {:?}",
        h.logs()
    );
    assert!(h.violations().is_empty(), "{:?}", h.violations());
    Ok(())
}

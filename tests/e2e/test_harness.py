"""The harness itself, without devgate: Envoy + demo upstream + raw client behave as the other tests
assume. Failures here mean the suite, not the filter, is broken."""

from __future__ import annotations

import harness


def test_upstream_echo_keeps_order_repeats_and_bytes(gate):
    envoy = gate(with_wasm=False, hcm="envoy-defaults")
    headers = [("X-A", "1"), ("x-b", "2"), ("X-A", "3"), ("x_under", b"\xff\xe9"), ("X-Empty", "")]
    r = envoy.request("POST", "//odd/../path;p?q=1", headers=headers, source="127.0.0.77", body=b"\x00\xff")
    assert r.status == 200 and r.from_upstream and r.layer == "upstream", r.summary()
    echo = r.echo()
    assert echo.method == "POST"
    assert echo.path == "//odd/../path;p?q=1"  # no normalisation with Envoy's default HCM
    names = [k.lower() for k, _ in echo.headers]
    assert names.index("x-a") < names.index("x-b")
    assert echo.get_all("x-a") == ["1", "3"]
    assert echo.get_all("x_under") == ["\xff\xe9"]
    assert echo.spellings("x-under") == [("x_under", "\xff\xe9")]
    assert echo.body == "\x00\xff"


def test_source_binding_and_ipv6(gate):
    envoy = gate(with_wasm=False)
    for source in ("127.0.0.1", "127.0.0.5", "127.0.0.77", "::1"):
        r = envoy.request("GET", "/", source=source)
        assert r.status == 200, r.summary()
        host = r.downstream_remote.rsplit(":", 1)[0].strip("[]")
        assert host == source, r.summary()


def test_envoy_local_reply_is_labelled(gate):
    envoy = gate(with_wasm=False)
    r = envoy.request("GET", "/a%2Fb", source="127.0.0.77")
    assert r.status == 400 and r.layer == "envoy" and r.details == "path_normalization_failed", r.summary()


def test_envoy_default_hcm_passes_paths_raw(gate):
    envoy = gate(with_wasm=False, hcm="envoy-defaults")
    r = envoy.request("GET", "//x/../%5Fy", source="127.0.0.77")
    assert r.from_upstream and r.echo().path == "//x/../%5Fy", r.summary()


def test_render_bootstrap_shapes():
    cfg = harness.render_bootstrap(
        upstream_port=1234,
        plugin_config={"protect": ["/x/"]},
        hcm={"use_remote_address": False},
        listen=[("::1", 0)],
        env={"DEVGATE_KEY_K0": "c2VjcmV0"},
        wasm="/nonexistent/devgate.wasm",
    )
    listener = cfg["static_resources"]["listeners"][0]
    assert "additional_addresses" not in listener
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["use_remote_address"] is False and "normalize_path" not in hcm
    assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"
    if harness.NATIVE:
        # The dynamic-modules filter; `env` goes to Envoy's process environment (start_envoy).
        native = hcm["http_filters"][0]
        assert native["name"] == "envoy.filters.http.dynamic_modules"
        typed = native["typed_config"]
        assert typed["dynamic_module_config"]["module"]["local"]["filename"] == "/nonexistent/devgate.wasm"
        assert typed["filter_name"] == "devgate"
        assert typed["filter_config"]["value"] == '{"protect": ["/x/"]}'
        assert cfg[harness.PROCESS_ENV_KEY] == {"DEVGATE_KEY_K0": "c2VjcmV0"}
        return
    wasm = hcm["http_filters"][0]["typed_config"]["config"]
    assert wasm["failure_policy"] == "FAIL_RELOAD"
    assert wasm["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert wasm["vm_config"]["environment_variables"]["key_values"] == {"DEVGATE_KEY_K0": "c2VjcmV0"}
    assert wasm["configuration"]["value"] == '{"protect": ["/x/"]}'
    assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"

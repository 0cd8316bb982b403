"""envoy/envoy.yaml, the config `make run` uses: its security settings, and the file itself running
(with its fixed ports swapped for free ones and the .wasm path made absolute). With DEVGATE_HOST=native,
the same for envoy/envoy-native.yaml (`make run-native`), started as run_demo.py starts it: with
envoy/demo.env in Envoy's environment."""

from __future__ import annotations

import re

import pytest

import harness
from conftest import call_or_fail
from harness import IDENTITY_HEADER as H

DEMO = harness.REPO / "envoy" / harness.shipped_name("envoy.yaml")
WASM_LINE = harness.SHIPPED_NATIVE_LINE if harness.NATIVE else harness.SHIPPED_WASM_LINE
# The first line of the demo's plugin configuration (the login settings follow on the next lines).
PLUGIN_LINE = '{"network": {"allow": ["127.0.0.1", "::1"]}, "protect": ["/_debug/"], "public": ["/healthz"],'


def demo_text() -> str:
    return DEMO.read_text()


def yaml_lines() -> list[str]:
    """Non-comment content of envoy.yaml."""
    return [line.split("#", 1)[0].rstrip() for line in demo_text().splitlines() if line.split("#", 1)[0].strip()]


def test_never_fails_open():
    content = "\n".join(yaml_lines()).lower()
    assert "fail_open" not in content
    if harness.NATIVE:
        # No VM to reload: a panic is answered 500 in the hook (tests/e2e/test_native_faults.py).
        assert "failure_policy" not in content
        return
    assert re.search(r"^\s*failure_policy: FAIL_RELOAD$", "\n".join(yaml_lines()), re.M)


def test_v8_and_local_wasm():
    lines = "\n".join(yaml_lines())
    assert WASM_LINE in lines
    if harness.NATIVE:
        assert "envoy.filters.http.dynamic_modules" in lines and "envoy.filters.http.wasm" not in lines
    else:
        assert "runtime: envoy.wasm.runtime.v8" in lines


def test_hcm_settings_match_the_harness_shipped_preset():
    """tests/e2e runs the "shipped" HCM preset; it must be what envoy.yaml really sets."""
    lines = "\n".join(yaml_lines())
    for key, value in harness.SHIPPED_HCM.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        assert re.search(rf"^\s*{key}: {re.escape(text)}$", lines, re.M), f"{DEMO.name} does not set {key}: {text}"


def test_everything_binds_loopback():
    addresses = re.findall(r"address:\s*\"?([0-9a-fA-F.:]+)\"?\s*,", demo_text())
    addresses += re.findall(r"address:\s*\"([0-9a-fA-F.:]+)\"", demo_text())
    assert addresses
    assert set(addresses) <= {"127.0.0.1", "::1"}, addresses
    assert "0.0.0.0" not in demo_text() and '"::"' not in demo_text()


def demo_config(upstream_port: int, wasm, plugin_config: str | None = None) -> str:
    text = demo_text()
    replacements = [
        ("port_value: 9901", "port_value: 0", 1),
        ("port_value: 10000", "port_value: 0", 2),
        ("port_value: 8080", f"port_value: {upstream_port}", 1),
        (WASM_LINE, f"filename: {wasm}", 1),
    ]
    if plugin_config is not None:
        replacements.append((PLUGIN_LINE, plugin_config, 1))
    for old, new, count in replacements:
        assert text.count(old) == count, f"{DEMO.name} changed shape: expected {count} x {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def demo(tmp_path_factory, upstream, wasm):
    envoy = call_or_fail(harness.start_envoy, demo_config(upstream.port, wasm), tmp_path_factory.mktemp("demo"),
                         env=harness.shipped_env())
    yield envoy
    envoy.stop()


@pytest.mark.parametrize("source", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("path", ["/", "/_debug/", "/healthz"])
def test_demo_loopback_developers(demo, source, path):
    headers = [("X-Wsgiorg-Developer-User", "evil"), ("x_wsgiorg_developer_user", "evil")]
    r = demo.request("GET", path, headers=headers, source=source)
    assert r.status == 200 and r.from_upstream, r.summary()
    assert r.echo().spellings(H) == [(H, source)]


def test_demo_rejects_encoded_slash(demo):
    r = demo.request("GET", "/_debug%2Fx", source="127.0.0.77")
    assert r.status == 400 and not r.from_upstream, r.summary()


def test_demo_ignores_forwarded_for(demo):
    r = demo.request("GET", "/", headers=[("X-Forwarded-For", "10.0.0.1")], source="127.0.0.1")
    assert r.echo().spellings(H) == [(H, "127.0.0.1")]
    r = demo.request("GET", "/_debug/", headers=[("X-Forwarded-For", "127.0.0.1")], source="127.0.0.77")
    assert r.status == 401, r.summary()


def test_demo_readme_session(demo):
    """README "Try it": 200 with the header from 127.0.0.1, 401 from 127.0.0.77, and from
    127.0.0.77 a spoofed header plus X-Forwarded-For passes on / without any identity."""
    r = demo.request("GET", "/_debug/", source="127.0.0.1")
    assert r.status == 200 and r.echo().spellings(H) == [(H, "127.0.0.1")], r.summary()
    r = demo.request("GET", "/_debug/", source="127.0.0.77")
    assert r.status == 401 and r.header("www-authenticate") == "x-wsgiorg.developer_user", r.summary()
    spoof = [("X-Wsgiorg-Developer-User", "admin"), ("X-Forwarded-For", "127.0.0.1")]
    r = demo.request("GET", "/", headers=spoof, source="127.0.0.77")
    assert r.status == 200 and r.echo().spellings(H) == [], r.summary()


def test_demo_narrowed_as_run_demo_suggests(tmp_path_factory, upstream, wasm):
    """The narrowed allow list run_demo.py prints gives an outsider a 401 challenge on /_debug/."""
    narrowed = '{"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/_debug/"], "public": ["/healthz"],'
    envoy = call_or_fail(harness.start_envoy, demo_config(upstream.port, wasm, narrowed), tmp_path_factory.mktemp("demo"),
                         env=harness.shipped_env())
    try:
        r = envoy.request("GET", "/_debug/", source="127.0.0.77")
        assert r.status == 401 and r.header("www-authenticate") == "x-wsgiorg.developer_user", r.summary()
        r = envoy.request("GET", "/healthz", source="127.0.0.77")
        assert r.status == 200 and r.echo().spellings(H) == [], r.summary()
        r = envoy.request("GET", "/_debug/", source="127.0.0.1")
        assert r.status == 200 and r.echo().spellings(H) == [(H, "127.0.0.1")], r.summary()
    finally:
        envoy.stop()


def upstream_requests(envoy) -> int:
    return envoy.counters(r"^cluster\.demo_upstream\.upstream_rq_total$").get("cluster.demo_upstream.upstream_rq_total", 0)


def test_demo_login_never_reaches_the_upstream(demo):
    """The shipped login: the buffer filter after devgate on the mount's route means the router never
    starts an upstream request for the login form, its POST, or its failures."""
    before = upstream_requests(demo)
    origin = [("Origin", "http://devgate.test"), ("Content-Type", "application/x-www-form-urlencoded")]
    r = demo.request("GET", "/.devgate/login", source="127.0.0.77")
    assert r.status == 200 and not r.from_upstream
    r = demo.request("POST", "/.devgate/login", origin, source="127.0.0.77",
                     body="username=developer&password=wrong")
    assert r.status == 401 and not r.from_upstream, r.summary()
    r = demo.request("POST", "/.devgate/login", origin, source="127.0.0.77",
                     body="username=developer&password=let-me-in&back=%2F_debug%2Fvars")
    assert r.status == 303 and r.header("location") == "/_debug/vars", r.summary()
    assert upstream_requests(demo) == before
    cookie = r.header("set-cookie").split(";", 1)[0]
    r = demo.request("GET", "/_debug/vars", [("Cookie", cookie)], source="127.0.0.77")
    assert r.status == 200 and r.echo().spellings(H) == [(H, "developer")], r.summary()
    # The demo sends a browser to the form when the application asks for a developer.
    r = demo.request("GET", "/needs-developer/x", source="127.0.0.77")
    assert r.status == 303 and r.header("location") == "/.devgate/login?back=/needs-developer/x"

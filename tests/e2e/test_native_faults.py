"""The native module's panic policy, in the real Envoy (DEVGATE_HOST=native, `make e2e-native`).

A native module has no sandbox: a panic that unwound into Envoy's C++ would take every listener down.
libdevgate.so is built with panic = "unwind" and every exported hook runs its body under
catch_unwind: a panic is logged with the hook's name (and where, never the request's data), the
request is answered with a local 500, and the hook stops the request. `make fault-native` builds a
test-only libdevgate.so (target/fault-native/) that panics when a request carries
`x-devgate-fault: panic`, as a bug would. The suite's health check (Envoy.devgate_problems) reports
such a panic, so a panic in the native module fails every test that uses the check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness
from harness import IDENTITY_HEADER as H

REPO = Path(__file__).resolve().parents[2]
FAULT_NATIVE = Path(os.environ.get("DEVGATE_FAULT_NATIVE") or REPO / "target/fault-native/native/libdevgate.so")
DEV = "127.0.0.1"
OUTSIDER = "127.0.0.77"
CONFIG = {"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/_debug/"]}
PANIC = [("x-devgate-fault", "panic"), (H, "admin"), ("X_Wsgiorg_Developer_User", "admin")]


def start_faulty(upstream, workdir, log_level: str = "info") -> harness.Envoy:
    """Envoy with the panic-on-demand libdevgate.so."""
    if not FAULT_NATIVE.is_file():
        pytest.fail(f"{FAULT_NATIVE} missing: run `make fault-native` (make e2e-native builds it)", pytrace=False)
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, wasm=FAULT_NATIVE)
    return harness.start_envoy(cfg, workdir, log_level=log_level, extra_args=harness.FAST_FLUSH)


@pytest.fixture(scope="module")
def faulty(upstream, tmp_path_factory):
    envoy = start_faulty(upstream, tmp_path_factory.mktemp("fault-native"))
    yield envoy
    envoy.stop()


def test_the_health_check_reports_a_native_panic(upstream, tmp_path):
    """Envoy.devgate_problems() is what the other tests assert is empty: before the panic it is,
    after one it names the panic (the panic hook's line and the hook's), although the hook's catch
    answered 500 and Envoy stays up. The suite's default log level (warning) is enough to see it."""
    envoy = start_faulty(upstream, tmp_path, log_level="warning")
    try:
        healthy = envoy.request("GET", "/_debug/x", source=DEV)
        assert healthy.status == 200 and healthy.from_upstream, healthy.summary()
        assert envoy.devgate_problems() == []
        r = envoy.request("GET", "/_debug/x", PANIC, source=OUTSIDER)
        assert r.status == 500 and r.details == "devgate_internal_panic", r.summary()
        assert envoy.alive()
        problems = envoy.devgate_problems()
        assert any("devgate: panic at src/host/native/" in p for p in problems), problems
        assert any("devgate: panic in hook request_headers" in p for p in problems), problems
    finally:
        envoy.stop()
    # And once Envoy has stopped (its log complete), still.
    assert envoy.devgate_problems(), envoy.log_text()[-2000:]


@pytest.mark.parametrize("source, path", [(DEV, "/_debug/x"), (OUTSIDER, "/"), (OUTSIDER, "/_debug/x")])
def test_native_panic_answers_500_and_envoy_stays_up(faulty, source, path):
    r = faulty.request("GET", path, PANIC, source=source)
    assert r.status == 500 and not r.from_upstream, r.summary()
    assert r.details == "devgate_internal_panic", r.summary()
    assert faulty.alive(), "Envoy died of a panic in the module"
    # The next requests get exactly what a healthy devgate answers.
    dev = faulty.request("GET", "/_debug/x", [(H, "admin")], source=DEV)
    assert dev.status == 200 and harness.upstream_identity(dev) == [(H, DEV)], dev.summary()
    out = faulty.request("GET", "/_debug/x", [(H, "admin")], source=OUTSIDER)
    assert out.status == 401, out.summary()


def test_native_panic_log_names_the_hook_and_nothing_of_the_request(faulty):
    faulty.request("GET", "/_debug/secret-path?token=s3cr3t", PANIC + [("authorization", "Bearer s3cr3t")],
                   source=OUTSIDER)
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "panic in hook" not in faulty.log_text():
        time.sleep(0.05)
    lines = [line for line in faulty.log_text().splitlines() if harness.is_devgate_log_line(line) and "panic" in line]
    assert any("panic in hook request_headers; request refused with 500" in line for line in lines), lines
    assert any("devgate: panic at src/host/native/filter.rs:" in line for line in lines), lines
    assert not [line for line in faulty.log_text().splitlines() if "s3cr3t" in line or "secret-path" in line]

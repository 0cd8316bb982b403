"""Fail closed under faults: a devgate build that traps on demand, in the real Envoy.

`make e2e` builds target/fault/wasm32-wasip1/release/devgate.wasm with the `fault-injection`
feature: a request carrying `x-devgate-fault: trap` makes the filter execute `unreachable`, a Wasm
trap, as a bug would. With the shipped `failure_policy: FAIL_RELOAD`, the trapped request and any
in the moment after get 503, a new VM takes over, and every answer in between is either 503 or
exactly what a healthy devgate answers: never a protected page for an outsider, never a forged
identity at the upstream. With FAIL_CLOSED (Envoy's default) the filter answers 503 until Envoy
restarts: closed, not open. Either way the suite's health check (Envoy.devgate_problems) reports
the trap, so a trap fails every test that uses it.

The trap tests are the Wasm host's (skipped natively, conftest.WASM_ONLY; the native module's
panic-on-demand build is tests/e2e/test_native_faults.py). That the shipped build of either host
ignores the fault header runs on both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import harness
from harness import IDENTITY_HEADER as H

REPO = Path(__file__).resolve().parents[2]
FAULT_WASM = Path(os.environ.get("DEVGATE_FAULT_WASM") or REPO / "target/fault/wasm32-wasip1/release/devgate.wasm")
DEV = "127.0.0.1"
OUTSIDER = "127.0.0.77"
CONFIG = {"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/_debug/"]}
SPOOF = [(H, "admin"), ("X_Wsgiorg_Developer_User", "admin")]


def start(tmp_path, upstream, policy: str) -> harness.Envoy:
    if not FAULT_WASM.is_file():
        pytest.fail(f"{FAULT_WASM} missing: run `make fault-wasm` (make e2e builds it)", pytrace=False)
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, wasm=FAULT_WASM)
    for f in cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            f["typed_config"]["config"]["failure_policy"] = policy
    return harness.start_envoy(cfg, tmp_path, log_level="info")


def check_never_open(envoy) -> dict:
    """One round of requests whose right answers are known; returns {status: count}. Fails on any
    answer a healthy devgate would not give, other than 503."""
    seen: dict = {}
    for source, path, good in [(OUTSIDER, "/_debug/x", 401), (OUTSIDER, "/", 200), (DEV, "/_debug/x", 200)]:
        r = envoy.request("GET", path, SPOOF, source=source)
        seen[r.status] = seen.get(r.status, 0) + 1
        assert r.status in (good, 503), (source, path, r.summary())
        if r.status == 200:
            names = [v for _, v in r.echo().spellings()]
            assert names == ([DEV] if source == DEV else []), (source, path, names)
    return seen


@pytest.mark.parametrize("policy", ["FAIL_RELOAD", "FAIL_CLOSED"])
def test_a_trap_fails_closed(tmp_path, upstream, policy):
    envoy = start(tmp_path, upstream, policy)
    try:
        check_never_open(envoy)  # healthy first
        assert envoy.devgate_problems() == []
        r = envoy.request("GET", "/", [("x-devgate-fault", "trap")] + SPOOF, source=OUTSIDER)
        assert r.status == 503 and not r.from_upstream, r.summary()
        # The health check every other test relies on sees the trap.
        problems = envoy.devgate_problems()
        assert any(harness.WASM_TROUBLE.search(p) for p in problems), problems
        statuses: dict = {}
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for k, v in check_never_open(envoy).items():
                statuses[k] = statuses.get(k, 0) + v
        if policy == "FAIL_RELOAD":
            # Recovered: the last rounds were answered by a reloaded VM.
            assert check_never_open(envoy).get(503, 0) == 0, statuses
            reloads = envoy.counters(r"wasm.*vm_reload")
            assert any(v > 0 for k, v in reloads.items() if "success" in k or k.endswith("vm_reload")), reloads
        else:
            # Closed until restart: nothing but 503.
            assert set(statuses) == {503}, statuses
    finally:
        envoy.stop()


@pytest.mark.parametrize("fault", ["trap", "panic"])
def test_the_shipped_build_ignores_the_fault_header(gate, fault):
    """The header does nothing to the shipped build of either host (devgate.wasm, libdevgate.so:
    the `fault-injection` feature is off): not the Wasm build's `trap`, not the native build's
    `panic`. The request is answered as any other, and the health check finds nothing."""
    envoy = gate(CONFIG)
    r = envoy.request("GET", "/", [("x-devgate-fault", fault)], source=OUTSIDER)
    assert r.status == 200 and r.from_upstream, r.summary()
    r = envoy.request("GET", "/_debug/x", [("x-devgate-fault", fault)] + SPOOF, source=OUTSIDER)
    assert r.status == 401 and not r.from_upstream, r.summary()
    r = envoy.request("GET", "/_debug/x", [("x-devgate-fault", fault)] + SPOOF, source=DEV)
    assert r.status == 200 and harness.upstream_identity(r) == [(H, DEV)], r.summary()
    assert envoy.alive()
    assert envoy.devgate_problems() == []

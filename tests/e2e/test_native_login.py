"""The login form in the native module: bcrypt runs on devgate's pool, off Envoy's worker."""

from __future__ import annotations

import threading
import time
import urllib.parse

import pytest

import harness

# `devgate hash-password --user carol --cost 12` (password "slow horse"): about 0.25 s of bcrypt.
CAROL_12 = "carol:$2y$12$dbXIhMKt1qEeSgdTKhQLZ.Hnhp2lFF6w/yZnjz7n24v6qrWnIJ4tO"
ENV = {
    "DEVGATE_E2E_NATIVE_KEY": "ZGV2Z2F0ZSBkZW1vIGtleSAtIG5vdCBhIHNlY3JldCEhIQ",
    "DEVGATE_E2E_NATIVE_USERS": CAROL_12 + "\n",
}
LOGIN = "/.devgate/login"
PEER = "127.0.0.5"


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, upstream, wasm):
    cfg = harness.render_bootstrap(
        upstream_port=upstream.port,
        plugin_config={
            "network": {"allow": ["127.0.0.1"]},
            "keys": [{"id": "k1", "secret_env": "DEVGATE_E2E_NATIVE_KEY"}],
            "login": {"users_env": "DEVGATE_E2E_NATIVE_USERS", "allow_from": ["127.0.0.0/28"],
                      "max_cost": 12, "verifies_per_minute": 60000, "verify_burst": 1000},
        },
        env=ENV,
        wasm=wasm,
    )
    envoy = harness.start_envoy(cfg, tmp_path_factory.mktemp("native-login"), extra_args=("--concurrency", "1"))
    yield envoy
    envoy.stop()


def test_native_login_bcrypt_does_not_hold_the_worker(one_worker):
    """With one Envoy worker, requests keep being served while login forms are checked (bcrypt at
    cost 12, ~0.25 s each) on devgate's pool; the Wasm build checks them on the worker itself."""
    body = urllib.parse.urlencode({"username": "carol", "password": "wrong"})
    headers = [("Origin", "http://devgate.test"), ("Content-Type", "application/x-www-form-urlencoded")]
    results: list = []

    def login():
        t0 = time.perf_counter()
        r = one_worker.request("POST", LOGIN, headers, source=PEER, body=body)
        results.append((r.status, time.perf_counter() - t0))

    threads = [threading.Thread(target=login) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # both forms are in devgate's hands
    t0 = time.perf_counter()
    r = one_worker.request("GET", "/", source="127.0.0.1")
    plain = time.perf_counter() - t0
    for t in threads:
        t.join(timeout=30)
    assert r.status == 200 and r.from_upstream, r.summary()
    assert [s for s, _ in results] == [401, 401], results
    slowest = max(d for _, d in results)
    assert slowest > 0.2, results  # the checks really were slow
    assert plain < slowest / 2, (plain, results)

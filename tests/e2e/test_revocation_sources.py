"""Two devgate configurations with different revocation sources in one Envoy keep separate lists.

The revocation list and its fetch lease live in the process-wide store (proxy-wasm shared data,
whose scope is the VM id both filters share, or the native module's process store) under keys
derived from the source (cluster, authority, path: `core::revocation::source_keys`). Two listeners
here each run devgate with their own revocation service: a token revoked by one service is refused
on its listener only, on every worker, while both fetch every period (one lease per source). With
one key for the process, each fetch overwrote the other's list and one lease let only one of them
fetch. Runs on both hosts (DEVGATE_HOST).
"""

from __future__ import annotations

import json

import harness
from test_revocation import RevocationService, wait_for
from test_tokens import TOKENS_ENV, bearer, mint

PROTECTED = "/_debug/x"
# Listener A on 127.0.0.1, listener B on ::1 (harness.Envoy.port_for picks by the source's family).
# Neither source address is a developer: every request is decided by its token.
SOURCE_A, SOURCE_B = "127.0.0.77", "::1"


def source_config(cluster: str, path: str) -> dict:
    return {
        "network": {"allow": ["127.0.0.1/32"]},
        "protect": ["/_debug/"],
        "keys": [{"id": "k1", "secret_env": "DEVGATE_E2E_KEY_K1"}],
        "tokens": {},
        "revocation": {"cluster": cluster, "path": path, "refresh_seconds": 1, "timeout_ms": 500,
                       "max_stale_seconds": 30},
    }


def cluster(name: str, port: int) -> dict:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def status(envoy, source: str, token: str) -> tuple[int, str | None]:
    r = envoy.request("GET", PROTECTED, bearer(token), source=source)
    return r.status, r.details


def test_two_revocation_sources_keep_separate_lists(tmp_path, upstream, wasm):
    service_a, service_b = RevocationService(), RevocationService()
    service_a.body = b'{"tokens": ["t-a"]}'
    service_b.body = b'{"tokens": ["t-b"]}'
    boot = harness.render_bootstrap(upstream_port=upstream.port, listen=(("127.0.0.1", 0),),
                                    plugin_config=source_config("revocation-a", "/a.json"), env=TOKENS_ENV,
                                    wasm=wasm)
    first = boot["static_resources"]["listeners"][0]
    second = harness.set_plugin_config(first, source_config("revocation-b", "/b.json"))
    second["name"] = "devgate-b"
    second["address"] = {"socket_address": {"address": "::1", "port_value": 0}}
    boot["static_resources"]["listeners"].append(second)
    boot["static_resources"]["clusters"] += [cluster("revocation-a", service_a.port),
                                             cluster("revocation-b", service_b.port)]
    envoy = harness.start_envoy(boot, tmp_path, log_level="info", extra_args=("--concurrency", "2"))
    t_a, t_b, fine = mint("alice", jti="t-a"), mint("bob", jti="t-b"), mint("carol", jti="t-fine")
    try:
        wait_for(lambda: status(envoy, SOURCE_A, t_a) == (401, "devgate_revoked"), "A's list on listener A")
        wait_for(lambda: status(envoy, SOURCE_B, t_b) == (401, "devgate_revoked"), "B's list on listener B")
        # Several connections (two workers), across a few fetch periods: each listener sees its own
        # source's list only, never the other's.
        for _ in range(3):
            hits = (service_a.hits, service_b.hits)
            for _ in range(8):
                assert status(envoy, SOURCE_A, t_a) == (401, "devgate_revoked")
                assert status(envoy, SOURCE_A, t_b)[0] == 200, "listener A refused a token only B revokes"
                assert status(envoy, SOURCE_A, fine)[0] == 200
                assert status(envoy, SOURCE_B, t_b) == (401, "devgate_revoked")
                assert status(envoy, SOURCE_B, t_a)[0] == 200, "listener B refused a token only A revokes"
                assert status(envoy, SOURCE_B, fine)[0] == 200
            # Each source has its own lease: both services keep being asked.
            wait_for(lambda: service_a.hits > hits[0] and service_b.hits > hits[1], "a fetch from each source",
                     timeout=5)
        # The processes' own health: no crash, no trap, no panic.
        assert envoy.alive()
        assert envoy.devgate_problems() == [], envoy.devgate_problems()
        text = envoy.log_text()
        assert "panic" not in text, text[-3000:]
    finally:
        envoy.stop()
        service_a.stop()
        service_b.stop()
    # Both configurations were accepted (no "configuration rejected" line) and ran side by side.
    assert "configuration rejected" not in envoy.log_text(), json.dumps(boot)[:2000]

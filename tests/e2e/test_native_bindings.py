"""The native module's bindings that the shipped build does not call yet, proven in the real Envoy
(DEVGATE_HOST=native, `make e2e-native`), and its allocations per request.

A dynamic module's callback with a wrong signature, struct layout or enum value misbehaves silently,
so each binding that devgate's plan steps will rely on is exercised here before it does: the scheduler
trio and continue_decoding (a request resumed from another thread, through the bounded pool), the
request body read and drain, add_header, gauges, the TLS version attribute and HTTP callouts. They
are driven by test hooks (`x-devgate-test: <command>`, src/host/native/testhooks.rs) that exist only
in the test build (`make fault-native`: features fault-injection + test-hooks); the shipped
libdevgate.so has none of them, which test_native_shipped_build_has_no_test_hooks checks. Every hook
but `allocations` runs after devgate let the request through, so the policy still applies.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import IDENTITY_HEADER as H

REPO = Path(__file__).resolve().parents[2]
TEST_NATIVE = Path(os.environ.get("DEVGATE_FAULT_NATIVE") or REPO / "target/fault-native/native/libdevgate.so")
DEV = "127.0.0.1"
OUTSIDER = "127.0.0.77"
TOKEN_KEY_ENV = "DEVGATE_E2E_BINDINGS_K1"
CONFIG = {"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/"]}
T = "x-devgate-test"


def module_or_fail() -> Path:
    if not TEST_NATIVE.is_file():
        pytest.fail(f"{TEST_NATIVE} missing: run `make fault-native` (make e2e-native builds it)", pytrace=False)
    return TEST_NATIVE


@pytest.fixture(scope="module")
def gate(upstream, tmp_path_factory):
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, wasm=module_or_fail())
    envoy = harness.start_envoy(cfg, tmp_path_factory.mktemp("native-bindings"), log_level="info",
                                extra_args=harness.FAST_FLUSH)
    yield envoy
    envoy.stop()


def test_native_test_hooks_run_only_after_devgate_allowed(gate):
    # An outsider asking for a hook is refused by the policy first: the hooks bypass nothing.
    r = gate.request("GET", "/", [(T, "add-header")], source=OUTSIDER)
    assert r.status == 401 and not r.from_upstream, r.summary()


def test_native_defer_through_pool_and_scheduler(gate):
    """scheduler_new (worker), commit (pool thread), on_scheduled (worker), continue_decoding,
    scheduler_delete (pool thread): the request is held, then resumed with devgate's edits."""
    t0 = time.monotonic()
    r = gate.request("GET", "/deferred", [(T, "defer:200"), (H, "forged")], source=DEV)
    took = time.monotonic() - t0
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.get_all("x-devgate-test-deferred") == ["resumed"], echo.headers
    assert harness.upstream_identity(r) == [(H, DEV)], echo.headers
    assert took >= 0.2, f"answered in {took:.3f}s: the request was not held while the job ran"
    assert gate.alive()


def test_native_pool_full_answers_503_and_never_queues(gate):
    """The bounded pool fails closed: with its one worker busy and no queue, a second deferred
    request is answered 503 at once, never parked, and the first one still completes."""
    first: dict = {}

    def slow():
        first["r"] = gate.request("GET", "/slow", [(T, "defer:1500")], source=DEV)

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.4)  # the slow job is on the worker by now
    t0 = time.monotonic()
    r = gate.request("GET", "/second", [(T, "defer:0")], source=DEV)
    assert r.status == 503 and not r.from_upstream, r.summary()
    assert r.details == "devgate_test_pool_full", r.summary()
    assert time.monotonic() - t0 < 1.0, "the refused request waited"
    th.join(10)
    assert first["r"].status == 200 and first["r"].from_upstream, first["r"].summary()


@pytest.mark.parametrize("drain", [0, 6, 11])
def test_native_body_read_and_drain(gate, drain):
    """get_body_chunks(_size) of the buffered and the received request body, drain_body, and
    "stop and buffer": the module sees the whole body, and the upstream gets it minus `drain` bytes."""
    body = "hello world" + "x" * 3000
    r = gate.request("POST", "/body", [(T, f"body:{drain}"), ("content-type", "text/plain")], body=body,
                     source=DEV)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.get_all("x-devgate-test-body-seen") == [str(len(body))], echo.headers
    assert echo.body == body[drain:]


def test_native_add_header_appends_a_value(gate):
    r = gate.request("GET", "/add", [(T, "add-header"), ("x-devgate-test-added", "one")], source=DEV)
    assert r.status == 200 and r.from_upstream, r.summary()
    assert r.echo().get_all("x-devgate-test-added") == ["one", "two"], r.echo().headers
    assert r.header_all("x-devgate-test-response") == ["added"], r.summary()


def test_native_gauge_is_set(gate):
    for n in (42, 7):
        r = gate.request("GET", "/gauge", [(T, f"gauge:{n}")], source=DEV)
        assert r.status == 200, r.summary()
        gauges = gate.counters(r"devgate\.test\.gauge$")
        assert list(gauges.values()) == [n], gauges


def test_native_http_callout(gate):
    """http_callout to the demo_upstream cluster, on_http_callout_done with its headers and body
    chunks, then continue_decoding."""
    r = gate.request("GET", "/callout", [(T, "callout")], source=DEV)
    assert r.status == 200 and r.from_upstream, r.summary()
    note = r.echo().get_all("x-devgate-test-callout")
    assert len(note) == 1 and re.fullmatch(r"200 [1-9][0-9]*", note[0]), note


@pytest.fixture(scope="module")
def tls_gate(upstream, tmp_path_factory):
    certs = harness.REPO / "target" / "certs"
    if not (certs / "cert.pem").is_file():
        subprocess.run(["bash", str(harness.REPO / "envoy" / "certs.sh")], check=True, cwd=str(harness.REPO))
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, wasm=module_or_fail(),
                                   listen=(("127.0.0.1", 0),))
    cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": {"filename": str(certs / "cert.pem")},
                    "private_key": {"filename": str(certs / "key.pem")},
                }],
            },
        },
    }
    envoy = harness.start_envoy(cfg, tmp_path_factory.mktemp("native-bindings-tls"))
    yield envoy
    envoy.stop()


def test_native_tls_version_attribute_over_tls_and_plain(gate, tls_gate):
    """The connection.tls_version attribute (enum position 31): the TLS version over TLS, absent on
    plain text (what Secure cookies and the login's CSRF scheme will read)."""
    r = tls_gate.request("GET", "/tls", [(T, "tls")], source=DEV, tls=harness.tls_client(),
                         server_hostname="localhost")
    assert r.status == 200 and r.from_upstream, r.summary()
    assert r.echo().get_all("x-devgate-test-tls") in (["TLSv1.3"], ["TLSv1.2"]), r.echo().headers
    r = gate.request("GET", "/tls", [(T, "tls")], source=DEV)
    assert r.echo().get_all("x-devgate-test-tls") == ["none"], r.echo().headers


# ---------------------------------------------------------------------------------------------------
# Allocations per request
# ---------------------------------------------------------------------------------------------------


def allocations(envoy) -> tuple[int, int]:
    r = envoy.request("GET", "/", [(T, "allocations")], source=DEV)
    assert r.status == 200, r.summary()
    m = re.fullmatch(rb"total=(\d+) core=(\d+)\n", r.body)
    assert m, r.summary()
    return int(m.group(1)), int(m.group(2))


def per_request(envoy, send, n: int = 40) -> tuple[float, float]:
    """(glue, core) allocations per request of `send`, after a warm-up: the module's count before
    and after `n` requests, minus what reading the count itself costs (read twice in a row)."""
    for _ in range(10):
        send()
    t0, c0 = allocations(envoy)
    for _ in range(n):
        send()
    t1, c1 = allocations(envoy)
    t2, c2 = allocations(envoy)
    total = (t1 - t0 - (t2 - t1)) / n
    core = (c1 - c0 - (c2 - c1)) / n
    return total - core, core


@pytest.fixture(scope="module")
def token_gate(upstream, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("bindings-key") / "k1.key"
    harness.run_cli("keygen", "--out", str(key_file))
    token = harness.run_cli("mint", "--sub", "alice", "--ttl", "1h", "--kid", "k1", "--key-file",
                            str(key_file)).stdout.strip()
    config = {"network": {"allow": ["127.0.0.2/32"]}, "protect": ["/"],
              "keys": [{"id": "k1", "secret_env": TOKEN_KEY_ENV}], "tokens": {}}
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=config, wasm=module_or_fail(),
                                   env={TOKEN_KEY_ENV: key_file.read_text().strip()})
    envoy = harness.start_envoy(cfg, tmp_path_factory.mktemp("native-bindings-tokens"))
    yield envoy, token
    envoy.stop()


# The core's allocations per request on each path, as its plan needs them. Pinned both
# ways: a new allocation fails here, and so does one taken away without lowering the pin.
#   network: the address as text (the identity), its copy in the set edit (the decision keeps the
#            identity by name), the set list
#   bearer, cookie: the token's decoded payload, its `sub` (the identity), its copy in the set edit,
#                   the removal list (`authorization`, `cookie`: borrowed names) and the set list
#   deny: the reply's header list (its values, body, details and audit value are static)
CORE_ALLOCATIONS = {"network": 3, "bearer": 5, "cookie": 5, "deny": 1}


def path_allocations(gate, token_gate) -> dict:
    """(glue, core) allocations per request on each path, once per worker warm."""
    tokens, token = token_gate
    cases = {
        "network": (gate, lambda: gate.request("GET", "/", [], source=DEV)),
        "bearer": (tokens, lambda: tokens.request("GET", "/", [("authorization", f"Bearer {token}")], source=DEV)),
        "cookie": (tokens, lambda: tokens.request("GET", "/", [("cookie", f"devgate_token={token}")], source=DEV)),
        "deny": (tokens, lambda: tokens.request("GET", "/", [], source=DEV)),
    }
    seen = {name: per_request(envoy, send) for name, (envoy, send) in cases.items()}
    print("allocations per request (glue, core):", seen)
    return seen


def test_native_request_path_allocates_nothing_in_the_glue(gate, token_gate):
    """Once a worker is warm, the native glue allocates nothing per request on these paths: stream
    state comes from a per-worker free list, headers are read into stack storage and local replies
    are built on the stack."""
    seen = path_allocations(gate, token_gate)
    for name, (glue, _core) in seen.items():
        assert glue == 0, f"{name}: the glue allocates {glue} times per request ({seen})"


def test_native_core_allocations_per_request_stay_what_the_plan_needs(gate, token_gate):
    """The core's own allocations per request (its decision and plan), pinned per path: the JWS
    header and signature are decoded on the stack and read without copies, names devgate knows are
    borrowed from the policy, an already canonical path is not copied, audit values and response
    details are generated once per process. What remains is listed at CORE_ALLOCATIONS."""
    seen = path_allocations(gate, token_gate)
    core = {name: c for name, (_glue, c) in seen.items()}
    assert core == CORE_ALLOCATIONS, f"core allocations per request changed: {core} (pinned {CORE_ALLOCATIONS})"


def test_native_shipped_build_has_no_test_hooks():
    """The hooks above are the test build's only: the shipped module carries neither the test
    header, nor the test pool, nor the noop configuration."""
    shipped = harness.native_path()
    strings = subprocess.run(["strings", "-a", str(shipped)], capture_output=True, text=True, check=True).stdout
    assert "x-devgate-test" not in strings and "devgate-test" not in strings
    assert "noop configuration" not in strings


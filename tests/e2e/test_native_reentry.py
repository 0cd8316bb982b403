"""The native module's hooks when Envoy re-enters them, and its configuration destroyed on a worker
(DEVGATE_HOST=native, `make e2e-native`).

Envoy calls a dynamic module's hooks on the stream's worker, but not always one at a time: a hook
that resumes the request (`continue_decoding`, from the login pool's `scheduled` hook or a callout's
answer) runs the rest of the filter chain on the same stack, and a local reply there (a route whose
cluster has no healthy host answers 503 inline) calls the module's `response_headers` hook for the
same stream while the outer hook still runs. The bindings hold each stream in a cell a re-entered
hook finds borrowed: it answers neutrally ("continue"), is counted
(`devgate.native.hook_reentered`), and never makes a second `&mut` to the stream.

A configuration is destroyed where its last reference goes. On an Envoy worker `config_destroy`
joins nothing (the fetcher's ticker and the pools' threads stop on their own, which the module may
let them do because it is pinned in memory), counts `devgate.native.config_destroyed_off_main` and
logs it, and Envoy keeps serving. Envoy 1.40 puts that last reference on the main thread for an
LDS swap, even with a stream open across it, and keeps a configuration alive while its HTTP call
is in flight (so the call's cancel never races its answer): both measured below.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.parse
from pathlib import Path

import pytest

import harness
from harness import IDENTITY_HEADER as H

REPO = Path(__file__).resolve().parents[2]
TEST_NATIVE = Path(os.environ.get("DEVGATE_FAULT_NATIVE") or REPO / "target/fault-native/native/libdevgate.so")
DEV = "127.0.0.1"
T = "x-devgate-test"
S = "dynamicmodulescustom"
REENTERED = f"{S}.devgate.native.hook_reentered"
OFF_MAIN = f"{S}.devgate.native.config_destroyed_off_main"
DEFERRED = f"{S}.devgate.native.destroy_deferred"
# What Envoy logs when it crashes (its signal handler and its backtrace), and devgate's panic lines
# (at info level Envoy's start lists a "backtrace_action", which is none of these).
CRASH = re.compile(r"Caught (?:Segmentation fault|Aborted|Bus error|Illegal)|Backtrace \(use|devgate: panic")

# A login as in test_native_login.py: bcrypt cost 12 (about 0.25 s) on devgate's pool.
CAROL_12 = "carol:$2y$12$dbXIhMKt1qEeSgdTKhQLZ.Hnhp2lFF6w/yZnjz7n24v6qrWnIJ4tO"
ENV = {
    "DEVGATE_E2E_NATIVE_KEY": "ZGV2Z2F0ZSBkZW1vIGtleSAtIG5vdCBhIHNlY3JldCEhIQ",
    "DEVGATE_E2E_NATIVE_USERS": CAROL_12 + "\n",
}
LOGIN_PATH = "/.devgate/login"
PEER = "127.0.0.5"
FORM = [("Origin", "http://devgate.test"), ("Content-Type", "application/x-www-form-urlencoded")]
RIGHT = urllib.parse.urlencode({"username": "carol", "password": "slow horse"})
WRONG = urllib.parse.urlencode({"username": "carol", "password": "wrong"})
LOGIN = {"users_env": "DEVGATE_E2E_NATIVE_USERS", "allow_from": ["127.0.0.0/28"], "max_cost": 12,
         "verifies_per_minute": 60000, "verify_burst": 1000, "max_failures": 1000}
BUFFER = {"name": "envoy.filters.http.buffer",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                           "max_request_bytes": 65536}}
CONFIG = {
    "network": {"allow": ["127.0.0.1/32"]},
    "keys": [{"id": "k1", "secret_env": "DEVGATE_E2E_NATIVE_KEY"}],
    "login": LOGIN,
}


def module_or_fail() -> Path:
    if not TEST_NATIVE.is_file():
        pytest.fail(f"{TEST_NATIVE} missing: run `make fault-native` (make e2e-native builds it)", pytrace=False)
    return TEST_NATIVE


def with_dead_routes(boot: dict, *prefixes: str) -> dict:
    """Routes `prefixes` to a cluster with no endpoint at all: Envoy's router answers 503
    `no_healthy_upstream` inline, in the filter chain's own call stack."""
    routes = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]["routes"]
    for prefix in reversed(prefixes):
        routes.insert(0, {"match": {"prefix": prefix}, "route": {"cluster": "dead"}})
    boot["static_resources"]["clusters"].append(
        {"name": "dead", "type": "STATIC", "connect_timeout": "0.5s",
         "load_assignment": {"cluster_name": "dead", "endpoints": []}})
    return boot


def reentered(envoy) -> int:
    return envoy.counters(rf"{S}\.devgate\.native\.hook_reentered$").get(REENTERED, 0)


def deferred(envoy) -> int:
    return envoy.counters(rf"{S}\.devgate\.native\.destroy_deferred$").get(DEFERRED, 0)


def healthy(envoy) -> None:
    assert envoy.alive()
    text = envoy.log_text()
    assert not CRASH.findall(text), text[-3000:]


@pytest.fixture(scope="module")
def dead_gate(upstream, tmp_path_factory):
    """The test build, one worker, `/dead` routed to the cluster with no host; login configured."""
    boot = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, env=ENV,
                                    wasm=module_or_fail())
    envoy = harness.start_envoy(with_dead_routes(boot, "/dead"), tmp_path_factory.mktemp("native-reentry"),
                                log_level="info", extra_args=("--concurrency", "1", *harness.FAST_FLUSH))
    yield envoy
    envoy.stop()


def test_native_resumed_from_the_pool_onto_a_dead_route_reenters_and_is_answered_neutrally(dead_gate):
    """`defer`: the request waits on the pool, `scheduled` resumes it with continue_decoding, the
    router has no host and answers 503 inline, which calls response_headers for the same stream
    while `scheduled` still holds it: counted as a re-entry, answered "continue", the 503 reaches the
    client, and Envoy stays up."""
    before, destroyed = reentered(dead_gate), deferred(dead_gate)
    for i in range(3):
        r = dead_gate.request("GET", f"/dead/{i}", [(T, "defer:30"), (H, "forged")], source=DEV)
        assert r.status == 503 and not r.from_upstream, r.summary()
        assert r.details == "no_healthy_upstream", r.summary()
    assert reentered(dead_gate) - before == 3, (before, reentered(dead_gate))
    # Envoy 1.40 ends the stream only after `scheduled` has returned: no destroy came during the
    # hook (the counter is defined and stays 0). A destroy that does come during a hook (Envoys
    # before 1.40 ended the stream inside send_response) waits for the outermost hook's exit:
    # src/host/native/reentry.rs's unit tests.
    assert deferred(dead_gate) - destroyed == 0, (destroyed, deferred(dead_gate))
    assert DEFERRED in dead_gate.counters(rf"{S}\.devgate\.native\.destroy_deferred$")
    # The same resume onto a live route re-enters nothing.
    before = reentered(dead_gate)
    r = dead_gate.request("GET", "/alive", [(T, "defer:30"), (H, "forged")], source=DEV)
    assert r.status == 200 and r.from_upstream, r.summary()
    assert harness.upstream_identity(r) == [(H, DEV)], r.echo().headers
    assert reentered(dead_gate) == before
    healthy(dead_gate)


def test_native_callout_answer_resumed_onto_a_dead_route_reenters_and_is_answered_neutrally(dead_gate):
    """`callout`: the answer of the stream's HTTP call resumes the request (continue_decoding inside
    http_callout_done) onto the route with no host: the same re-entry, from another hook."""
    before, destroyed = reentered(dead_gate), deferred(dead_gate)
    r = dead_gate.request("GET", "/dead/callout", [(T, "callout")], source=DEV)
    assert r.status == 503 and r.details == "no_healthy_upstream", r.summary()
    assert reentered(dead_gate) - before == 1
    assert deferred(dead_gate) - destroyed == 0
    healthy(dead_gate)


def test_native_login_resumed_from_the_pool_on_a_dead_route(upstream, tmp_path_factory):
    """The shipped build: the login mount routed to a cluster with no host. A form checked on the
    pool is answered from `scheduled` (303 with the session, or 401) by devgate's own local reply,
    whatever the route; a request devgate lets through to the dead route gets Envoy's 503; the
    worker and Envoy stay healthy throughout. Whether Envoy re-enters response_headers for devgate's
    own reply is Envoy's choice (1.40 does not: the filter skips its module for a reply it sent);
    either way the count and the answers are right."""
    boot = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, env=ENV,
                                    wasm=harness.native_path())
    # Envoy's buffer filter after devgate, as the README asks for the login route: without it the
    # router sees the form's headers first and answers the route with no host before devgate has
    # the whole form (devgate then refuses the login: `login_unbuffered`).
    boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"].insert(1, BUFFER)
    envoy = harness.start_envoy(with_dead_routes(boot, "/.devgate/", "/dead"),
                                tmp_path_factory.mktemp("native-reentry-login"), log_level="info",
                                extra_args=("--concurrency", "1", *harness.FAST_FLUSH))
    try:
        before = reentered(envoy)
        ok = envoy.request("POST", LOGIN_PATH, FORM, source=PEER, body=RIGHT, timeout=30)
        assert ok.status == 303 and ok.header("set-cookie"), ok.summary()
        bad = envoy.request("POST", LOGIN_PATH, FORM, source=PEER, body=WRONG, timeout=30)
        assert bad.status == 401 and bad.header("set-cookie") is None, bad.summary()
        form = envoy.request("GET", LOGIN_PATH, source=PEER)
        assert form.status == 200 and b"<form" in form.body, form.summary()
        dead = envoy.request("GET", "/dead/x", source=DEV)
        assert dead.status == 503 and dead.details == "no_healthy_upstream", dead.summary()
        print("re-entries on the login's own replies:", reentered(envoy) - before)
        assert reentered(envoy) - before == 0, "Envoy re-entered the module for its own local reply"
        healthy(envoy)
    finally:
        envoy.stop()
    assert envoy.proc.returncode == 0, envoy.log_text()[-3000:]


def threads_named(envoy, name: str) -> int:
    """How many of Envoy's threads are called `name` (Linux: /proc/<pid>/task/*/comm)."""
    count = 0
    for task in Path(f"/proc/{envoy.proc.pid}/task").iterdir():
        try:
            count += (task / "comm").read_text().strip() == name
        except OSError:  # the thread exited meanwhile
            pass
    return count


def test_native_config_destroyed_on_a_worker_joins_nothing_and_envoy_keeps_serving(upstream, tmp_path):
    """The path of a configuration destroyed on an Envoy worker, in the real Envoy: config_destroy
    joins nothing (the test pool's thread, in the middle of a 4 s job, and the revocation ticker
    finish and exit on their own after config_destroy has returned), the destroy is counted and
    logged, and Envoy keeps serving with the new configuration, then exits cleanly.

    Envoy 1.40 itself puts the last reference of a configuration that an LDS update replaced on
    its main thread: the drain closes the old connections on the worker, whose streams end there
    at once, and only then does the main thread let go of the old filter chain (measured: a stream
    that lingers in its destroy, `linger`, still leaves the last reference to the main thread; see
    the next test). So the test build's configuration named `devgate-detach` takes the worker's
    path wherever it is destroyed; everything after the thread check is the code a worker runs."""
    from test_revocation import RevocationService, wait_for

    service = RevocationService()
    config = {**CONFIG, "tokens": {},
              "revocation": {"cluster": "revocation", "refresh_seconds": 1, "timeout_ms": 500,
                             "max_stale_seconds": 30}}
    lds = tmp_path / "lds.json"
    boot, listener = harness.render_lds_bootstrap(lds, upstream_port=upstream.port, plugin_config=config,
                                                  env=ENV, wasm=module_or_fail(), listen=(("127.0.0.1", 0),))
    boot["static_resources"]["clusters"].append({
        "name": "revocation", "type": "STATIC", "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": "revocation", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": service.port}}}}]}]},
    })
    detach = json.loads(json.dumps(listener))
    hcm = detach["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"]["filter_name"] = "devgate-detach"
    harness.write_lds(lds, detach, version="one")
    envoy = harness.start_envoy(boot, tmp_path / "envoy", log_level="info",
                                extra_args=("--concurrency", "1", "--drain-time-s", "1", "--drain-strategy",
                                            "immediate", *harness.FAST_FLUSH))

    def lines(what: str) -> int:
        return sum(what in line for line in envoy.log_text().splitlines() if harness.is_devgate_log_line(line))

    sock = None
    try:
        wait_for(lambda: service.hits >= 1, "the first fetch")
        assert threads_named(envoy, "devgate-test-0") == 1 and threads_named(envoy, "devgate-revocat") == 1
        # A request held by a 4 s job on the old configuration's test pool.
        sock = socket.create_connection(("127.0.0.1", envoy.port_for(DEV)), timeout=10, source_address=(DEV, 0))
        sock.sendall(b"GET /held HTTP/1.1\r\nHost: devgate.test\r\nx-devgate-test: defer:4000\r\n\r\n")
        time.sleep(0.3)
        assert lines("revocation fetcher stopped") == 0
        harness.write_lds(lds, harness.set_plugin_config(
            listener, {**config, "revocation": {**config["revocation"], "max_stale_seconds": 20}}), version="two")
        wait_for(lambda: lines("destroyed off the main thread"), "the old configuration destroyed", timeout=15)
        # config_destroy has returned (Envoy's main thread answers) while the old pool's thread is
        # still in its job: nothing waited for it.
        status, ready = envoy.admin("/ready")
        assert status == 200 and ready.strip() == "LIVE"
        assert threads_named(envoy, "devgate-test-0") == 2, "the old pool's thread was joined"
        counted = envoy.counters(rf"{S}\.devgate\.native\.config_destroyed_off_main$").get(OFF_MAIN, 0)
        assert counted == 1, counted
        # Both threads stop on their own: the ticker at once (its own log line), the pool's thread
        # when its job ends.
        wait_for(lambda: lines("revocation fetcher stopped") == 1, "the old ticker to stop", timeout=5)
        wait_for(lambda: threads_named(envoy, "devgate-revocat") == 1, "the old ticker's thread to exit", timeout=5)
        wait_for(lambda: threads_named(envoy, "devgate-test-0") == 1, "the old pool's thread to exit", timeout=10)
        # Envoy serves on, with the new configuration and its own fetcher.
        hits = service.hits
        for _ in range(5):
            r = envoy.request("GET", "/after", source=DEV)
            assert r.status == 200 and r.from_upstream, r.summary()
        wait_for(lambda: service.hits > hits, "the new configuration's fetch", timeout=5)
        healthy(envoy)
    finally:
        if sock is not None:
            sock.close()
        envoy.stop()
        service.stop()
    assert envoy.proc.returncode == 0, envoy.log_text()[-3000:]
    # The new configuration was destroyed at shutdown, on the main thread (joined as before).
    assert lines("configuration destroyed on the main thread") == 1, envoy.log_text()[-3000:]


class SlowRevocationService:
    """A revocation service that answers every GET after `delay` seconds (an empty list)."""

    def __init__(self):
        import http.server
        import threading

        self.delay = 0.0
        self.hits = 0
        self.answered = 0
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib name
                service.hits += 1
                time.sleep(service.delay)
                body = b'{"tokens": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                service.answered += 1

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_native_config_with_a_fetch_in_flight_is_destroyed_on_the_main_thread(upstream, tmp_path):
    """The revocation fetch's cancel cannot race its answer: while the configuration's HTTP call is
    in flight, Envoy 1.40's call holds the configuration, so a swap with a lingering stream (as
    above) does not destroy it on the worker; it is destroyed on the main thread once the answer
    (delivered to devgate first) lets go of it. Nothing is counted off the main thread."""
    from test_revocation import wait_for

    service = SlowRevocationService()
    config = {**CONFIG, "tokens": {},
              "revocation": {"cluster": "revocation", "refresh_seconds": 1, "timeout_ms": 10000,
                             "max_stale_seconds": 60}}
    lds = tmp_path / "lds.json"
    boot, listener = harness.render_lds_bootstrap(lds, upstream_port=upstream.port, plugin_config=config,
                                                  env=ENV, wasm=module_or_fail(), listen=(("127.0.0.1", 0),))
    boot["static_resources"]["clusters"].append({
        "name": "revocation", "type": "STATIC", "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": "revocation", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": service.port}}}}]}]},
    })
    harness.write_lds(lds, listener, version="one")
    envoy = harness.start_envoy(boot, tmp_path / "envoy", log_level="info",
                                extra_args=("--concurrency", "1", "--drain-time-s", "1", "--drain-strategy",
                                            "immediate", *harness.FAST_FLUSH))

    def lines(what: str) -> int:
        return sum(what in line for line in envoy.log_text().splitlines() if harness.is_devgate_log_line(line))

    sock = None
    try:
        wait_for(lambda: service.answered >= 1, "the first fetch")
        service.delay = 4.0
        answered = service.answered
        wait_for(lambda: service.hits > answered, "a slow fetch in flight")
        sock = socket.create_connection(("127.0.0.1", envoy.port_for(DEV)), timeout=10, source_address=(DEV, 0))
        sock.sendall(b"POST /long HTTP/1.1\r\nHost: devgate.test\r\nx-devgate-test: linger:500\r\n"
                     b"Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nfirst part")
        time.sleep(0.2)
        service.delay = 0.0  # the next configuration's fetches answer at once
        harness.write_lds(lds, harness.set_plugin_config(
            listener, {**config, "revocation": {**config["revocation"], "max_stale_seconds": 30}}), version="two")
        wait_for(lambda: lines("configuration destroyed"), "the old configuration destroyed", timeout=15)
        assert service.answered > answered, "destroyed before the fetch in flight was answered"
        assert lines("configuration destroyed on the main thread") == 1, envoy.log_text()[-3000:]
        assert lines("destroyed off the main thread") == 0, envoy.log_text()[-3000:]
        assert envoy.counters(rf"{S}\.devgate\.native\.config_destroyed_off_main$").get(OFF_MAIN, 0) == 0
        r = envoy.request("GET", "/after", source=DEV)
        assert r.status == 200 and r.from_upstream, r.summary()
        healthy(envoy)
    finally:
        if sock is not None:
            sock.close()
        envoy.stop()
        service.stop()
    assert envoy.proc.returncode == 0, envoy.log_text()[-3000:]

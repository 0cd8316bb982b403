"""The revocation list in the real Envoy: fetched from a cluster on a timer, shared by the workers,
the last good list kept through failures, and the degraded mode past max_stale_seconds.

A small revocation service runs in this process (a thread); each test moves it through phases
(serving a list, 500, a malformed body, stopped, serving again) and checks what devgate answers
in each. devgate's tick is one second and refresh_seconds is 1 here, so each phase waits a few
seconds for devgate to notice.

Both builds run every test here (DEVGATE_HOST). The Wasm build fetches from each worker's root
context, one worker per period winning a lease in shared data; the native module fetches from
Envoy's main thread (one fetcher per configuration, on the configuration's scheduler) and each
worker thread reads the list from the process store. Counters and the gauge are the same names
under each build's namespace (`harness.STATS`).
"""

from __future__ import annotations

import http.server
import threading
import time

import pytest

import harness
from test_api_keys import mint_key, write_key_file
from test_tokens import K1, TOKENS_ENV, bearer, mint

OUTSIDER = "127.0.0.77"
DEV = "127.0.0.1"
PROTECTED = "/_debug/x"


class RevocationService:
    """Serves `body` with `status` on any GET; `stop()` closes the socket (connection refused)."""

    def __init__(self):
        self.status = 200
        self.body = b'{"tokens": ["t-revoked"], "keys": []}'
        self.hits = 0
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib name
                service.hits += 1
                self.send_response(service.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(service.body)))
                self.end_headers()
                self.wfile.write(service.body)

            def log_message(self, *args):
                pass

        self._handler = Handler
        self.port = 0
        self.start()

    def start(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def config(when_stale: str = "refuse", max_stale: int = 3) -> dict:
    return {
        "network": {"allow": ["127.0.0.1/32"]},
        "protect": ["/_debug/"],
        "keys": [{"id": "k1", "secret_env": "DEVGATE_E2E_KEY_K1"}],
        "tokens": {},
        "revocation": {"cluster": "revocation", "refresh_seconds": 1, "timeout_ms": 500,
                       "max_stale_seconds": max_stale, "when_stale": when_stale},
    }


def start(tmp_path, upstream, wasm, service, cfg, workers: int = 2) -> harness.Envoy:
    boot = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=cfg, env=TOKENS_ENV, wasm=wasm)
    boot["static_resources"]["clusters"].append({
        "name": "revocation",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": "revocation", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": service.port}}}}]}]},
    })
    return harness.start_envoy(boot, tmp_path, log_level="info", extra_args=("--concurrency", str(workers)))


def status(envoy, token: str) -> tuple[int, str | None]:
    r = envoy.request("GET", PROTECTED, bearer(token), source=OUTSIDER)
    return r.status, r.details


def wait_for(fn, what: str, timeout: float = 8.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


S = harness.STATS  # wasmcustom (Wasm) or dynamicmodulescustom (native)


def counters(envoy) -> dict:
    return envoy.counters(rf"{S}\.devgate\.revocation\.")


def gauge(envoy) -> int | None:
    return envoy.counters(rf"{S}\.devgate\.revocation\.degraded$").get(f"{S}.devgate.revocation.degraded")


def test_revocation_phases(tmp_path, upstream, wasm):
    service = RevocationService()
    # max_stale 6 s: the three failure phases below take about a second each and must stay
    # inside it (with 3 s they could add up to a stale list: a test race, not a devgate bug).
    envoy = start(tmp_path, upstream, wasm, service, config(max_stale=6))
    revoked, fine, later = mint("alice", jti="t-revoked"), mint("bob", jti="t-fine"), mint("carol", jti="t-later")
    try:
        # Phase 1: the list arrives; revoked tokens are refused, others admitted.
        wait_for(lambda: status(envoy, revoked) == (401, "devgate_revoked"), "the first list")
        # Every worker has it at once: a worker whose own copy is stale reads shared data
        # before refusing (regression: the other worker answered revocation_stale until its
        # next tick).
        for _ in range(10):
            assert status(envoy, fine)[0] == 200 and status(envoy, later)[0] == 200
        # Every worker refuses it (several connections, two workers).
        assert all(status(envoy, revoked)[0] == 401 for _ in range(10))

        # Phase 2: a new entry takes effect within a refresh.
        service.body = b'{"tokens": ["t-revoked", "t-later"]}'
        wait_for(lambda: status(envoy, later) == (401, "devgate_revoked"), "the updated list")

        # Phase 3: a 500 and then a malformed body never replace the good list.
        for bad_status, bad_body in [(500, b"oops"), (200, b'{"tokens": "not a list"}'), (200, b"[]")]:
            failed_before = counters(envoy).get(f"{S}.devgate.revocation.fetch_failed", 0)
            service.status, service.body = bad_status, bad_body
            wait_for(lambda: counters(envoy).get(f"{S}.devgate.revocation.fetch_failed", 0) > failed_before,
                     f"a failed fetch ({bad_status})")
            assert status(envoy, later) == (401, "devgate_revoked")
            assert status(envoy, fine)[0] == 200
        # Still failing past max_stale_seconds (6 s): degraded; tokens refused, the gauge says so,
        # a network developer is not affected.
        service.stop()
        wait_for(lambda: status(envoy, fine) == (401, "devgate_revocation_stale"), "degraded mode", timeout=15)
        wait_for(lambda: gauge(envoy) == 1, "the degraded gauge")  # set on the next tick
        r = envoy.request("GET", PROTECTED, source=DEV)
        assert r.status == 200, r.summary()

        # Phase 4: the service is back: a good list ends the degraded mode.
        service.status, service.body = 200, b'{"tokens": ["t-revoked"]}'
        service.start()
        wait_for(lambda: status(envoy, fine)[0] == 200, "recovery")
        assert status(envoy, later)[0] == 200  # no longer on the list
        assert status(envoy, revoked) == (401, "devgate_revoked")
        wait_for(lambda: gauge(envoy) == 0, "the degraded gauge back to 0")
        # One fetch per period for the process, not one per worker (2 workers, refresh 1 s).
        c = counters(envoy)
        fetches = c[f"{S}.devgate.revocation.fetch_ok"] + c[f"{S}.devgate.revocation.fetch_failed"]
        assert service.hits <= fetches + 1
        assert not envoy.devgate_problems()
    finally:
        envoy.stop()
        try:
            service.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass


def test_when_stale_serve_keeps_the_last_good_list(tmp_path, upstream, wasm):
    service = RevocationService()
    envoy = start(tmp_path, upstream, wasm, service, config(when_stale="serve"), workers=1)
    revoked, fine = mint("alice", jti="t-revoked"), mint("bob", jti="t-fine")
    try:
        wait_for(lambda: status(envoy, revoked) == (401, "devgate_revoked"), "the first list")
        service.stop()
        wait_for(lambda: gauge(envoy) == 1, "degraded mode")
        assert status(envoy, fine)[0] == 200
        assert status(envoy, revoked) == (401, "devgate_revoked")
    finally:
        envoy.stop()


def test_before_any_list_tokens_are_refused(tmp_path, upstream, wasm):
    """Fail closed from the start: with the service down since Envoy started, no list was ever
    fetched, so tokens are refused (revocation_stale) rather than trusted unchecked."""
    service = RevocationService()
    service.stop()
    envoy = start(tmp_path, upstream, wasm, service, config(), workers=1)
    try:
        time.sleep(1.5)
        assert status(envoy, mint("bob", jti="t-fine")) == (401, "devgate_revocation_stale")
    finally:
        envoy.stop()


def worker_connections(envoy) -> dict[str, int]:
    """Connections each Envoy worker accepted so far: `listener.<address>.worker_<n>.downstream_cx_total`."""
    out: dict[str, int] = {}
    for name, value in envoy.counters(r"^listener\..*\.worker_[0-9]+\.downstream_cx_total$").items():
        worker = name.rsplit(".", 2)[-2]
        out[worker] = out.get(worker, 0) + value
    return out


def test_revoked_key_refused_on_every_connection_of_both_workers(tmp_path, upstream, wasm):
    """Two workers, many connections: one fetch per period for the process, and the list it brings
    is what every worker decides with. A revoked API key and a revoked token are refused on every
    connection, whichever worker accepted it, and a key not on the list is served on every one."""
    keyfile = write_key_file(tmp_path / "k1.key", K1)
    gone = mint_key(keyfile, "private", id="sk-gone")
    fine = mint_key(keyfile, "private", id="sk-fine")
    service = RevocationService()
    service.body = b'{"keys": ["sk-gone"], "tokens": ["t-revoked"]}'
    cfg = {**config(max_stale=30), "api": {"routes": [{"prefix": "/v1/maps", "product": "maps"}]}}
    envoy = start(tmp_path, upstream, wasm, service, cfg, workers=2)
    revoked = mint("alice", jti="t-revoked")

    def key_status(key) -> tuple[int, str | None]:
        r = envoy.request("GET", "/v1/maps/tile", [("X-Api-Key", key.text)], source=OUTSIDER)
        return r.status, r.details

    try:
        wait_for(lambda: key_status(gone) == (401, "devgate_revoked"), "the first list")
        before = worker_connections(envoy)
        answers = []
        for _ in range(40):  # one fresh connection per request
            answers.append(("gone", key_status(gone)))
            answers.append(("fine", key_status(fine)[0]))
            answers.append(("token", status(envoy, revoked)))
        after = worker_connections(envoy)
        used = {w: after.get(w, 0) - before.get(w, 0) for w in after}
        assert len(used) == 2 and all(n > 0 for n in used.values()), f"both workers should take connections: {used}"
        wrong = [a for a in answers if a not in (("gone", (401, "devgate_revoked")), ("fine", 200),
                                                 ("token", (401, "devgate_revoked")))]
        assert not wrong, wrong[:5]
        assert not envoy.devgate_problems()
    finally:
        envoy.stop()
        service.stop()

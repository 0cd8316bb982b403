"""The login form in the native module: bcrypt runs on devgate's pool, off Envoy's worker.

The pool (src/host/native/pool.rs) has 2 threads and 64 waiting places; a form beyond them gets the
core's internal refusal (500, `devgate_internal`) at once. A form whose client leaves, or whose Envoy
shuts down, while it is on the pool must neither crash Envoy nor be resumed into a stream that is
gone (src/host/native/bindings/schedulers.rs `Scheduler`)."""

from __future__ import annotations

import re
import signal
import socket
import struct
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
FORM = [("Origin", "http://devgate.test"), ("Content-Type", "application/x-www-form-urlencoded")]
RIGHT = urllib.parse.urlencode({"username": "carol", "password": "slow horse"})
WRONG = urllib.parse.urlencode({"username": "carol", "password": "wrong"})
# The native module's login pool: threads + waiting places (src/host/native/filter.rs).
POOL_THREADS, POOL_QUEUE = 2, 64
# The verify budget and the failure lockout opened to their maximums (src/config/mod.rs), so that
# neither answers before the pool does.
OPEN_LOGIN = {"users_env": "DEVGATE_E2E_NATIVE_USERS", "allow_from": ["127.0.0.0/28"], "max_cost": 12,
              "verifies_per_minute": 60000, "verify_burst": 1000, "max_failures": 1000}
# What Envoy logs when it crashes (its signal handler), and devgate's panic lines.
CRASH = re.compile(r"Caught (Segmentation fault|Aborted|Bus error|Illegal)|backtrace|panic", re.IGNORECASE)
INTERNAL_ERROR = f"{harness.STATS}.devgate.requests.denied.internal_error"


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, upstream, wasm):
    envoy = _login_envoy(tmp_path_factory, upstream, wasm, "native-login")
    yield envoy
    envoy.stop()


ACTIVE = "http.e2e.downstream_rq_active"


def test_native_login_bcrypt_does_not_hold_the_worker(one_worker):
    """With one Envoy worker, a plain request is answered while two login forms are being checked
    (bcrypt at cost 12, ~0.25 s each) on devgate's pool; the Wasm build checks them on the worker
    itself, where the plain request would wait for both. Observed as events, not timed: Envoy's
    gauge of active requests shows both forms in its hands before the plain request is sent, and
    the plain answer arrives while neither form has been answered."""
    body = urllib.parse.urlencode({"username": "carol", "password": "wrong"})
    headers = [("Origin", "http://devgate.test"), ("Content-Type", "application/x-www-form-urlencoded")]
    lock = threading.Lock()
    events: list = []  # ("login", status, seconds) and ("plain", status), in the order they ended

    def login():
        t0 = time.perf_counter()
        r = one_worker.request("POST", LOGIN, headers, source=PEER, body=body)
        with lock:
            events.append(("login", r.status, time.perf_counter() - t0))

    assert one_worker.counters(f"^{ACTIVE}$")[ACTIVE] == 0
    threads = [threading.Thread(target=login) for _ in range(2)]
    for t in threads:
        t.start()
    # Both forms are in Envoy's hands (whole requests on one connection each, read at once).
    deadline = time.monotonic() + 10
    while one_worker.counters(f"^{ACTIVE}$")[ACTIVE] < 2 and not events:
        assert time.monotonic() < deadline, "the login forms never reached Envoy"
        time.sleep(0.002)
    r = one_worker.request("GET", "/", source="127.0.0.1")
    with lock:
        events.append(("plain", r.status))
    for t in threads:
        t.join(timeout=30)
    assert r.status == 200 and r.from_upstream, r.summary()
    logins = [e for e in events if e[0] == "login"]
    assert [s for _, s, _ in logins] == [401, 401], events
    assert max(d for _, _, d in logins) > 0.2, events  # the checks really were slow
    # The plain answer came first: the worker served it while both forms were on the pool.
    assert events[0] == ("plain", 200), events


def _login_envoy(tmp_path_factory, upstream, wasm, name: str):
    cfg = harness.render_bootstrap(
        upstream_port=upstream.port,
        plugin_config={
            "network": {"allow": ["127.0.0.1"]},
            "keys": [{"id": "k1", "secret_env": "DEVGATE_E2E_NATIVE_KEY"}],
            "login": OPEN_LOGIN,
        },
        env=ENV,
        wasm=wasm,
    )
    # One worker; the log flushed every 100 ms, so a test can read it while Envoy runs.
    return harness.start_envoy(cfg, tmp_path_factory.mktemp(name),
                               extra_args=("--concurrency", "1", *harness.FAST_FLUSH))


def _abandon(envoy, body: str, n: int) -> None:
    """Sends `n` whole login forms on `n` connections, then resets them all without reading the
    answers (while the forms are on the pool)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in FORM)
    wire = (f"POST {LOGIN} HTTP/1.1\r\nHost: devgate.test\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    socks = []
    try:
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", envoy.port_for(PEER)), timeout=5,
                                            source_address=(PEER, 0))
            socks.append(sock)
            sock.sendall(wire)
        time.sleep(0.1)  # Envoy has read them and handed the forms to the pool
    finally:
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            sock.close()


def test_native_login_flood_beyond_the_pool_is_refused_at_once_never_let_through(one_worker):
    """More forms in flight than the pool's threads and waiting places (bcrypt cost 12, the budget and
    the lockout opened): the overflow gets the core's internal refusal (500 `devgate_internal`,
    counted as `requests.denied.internal_error`, logged `login_pool_full`) at once and no session;
    every form the pool took is answered as its password deserves; Envoy serves plain requests all
    along and stays up."""
    n = POOL_THREADS + POOL_QUEUE + 24
    before = one_worker.counters(INTERNAL_ERROR).get(INTERNAL_ERROR, 0)
    results: list = [None] * n
    go = threading.Event()

    def login(i: int) -> None:
        body = RIGHT if i % 2 == 0 else WRONG
        go.wait()
        t0 = time.perf_counter()
        r = one_worker.request("POST", LOGIN, FORM, source=PEER, body=body, timeout=120)
        results[i] = (i % 2 == 0, r, time.perf_counter() - t0)

    threads = [threading.Thread(target=login, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.5)  # the pool is full and busy
    t0 = time.perf_counter()
    plain = one_worker.request("GET", "/", source="127.0.0.1")
    plain_s = time.perf_counter() - t0
    for t in threads:
        t.join(timeout=180)
    assert all(r is not None for r in results), "a login got no answer"
    refused = [(right, r, d) for right, r, d in results if r.status == 500]
    checked = [(right, r, d) for right, r, d in results if r.status != 500]
    assert len(refused) >= n - (POOL_THREADS + POOL_QUEUE) - 8, (len(refused), len(checked))
    assert len(checked) >= POOL_THREADS + POOL_QUEUE, (len(refused), len(checked))
    for right, r, _ in refused:
        assert r.details == "devgate_internal" and r.header("set-cookie") is None, r.summary()
        assert not r.from_upstream, r.summary()
    for right, r, _ in checked:
        # Only a verified password gets a session; a wrong one never does.
        assert r.status == (303 if right else 401), r.summary()
        assert (r.header("set-cookie") is not None) == right, r.summary()
    slowest_checked = max(d for _, _, d in checked)
    slowest_refused = max(d for _, _, d in refused)
    assert slowest_checked > 2.0, slowest_checked  # the pool really was busy for a while
    assert slowest_refused < slowest_checked / 4, (slowest_refused, slowest_checked)
    after = one_worker.counters(INTERNAL_ERROR).get(INTERNAL_ERROR, 0)
    assert after - before == len(refused), (before, after, len(refused))
    # Read the log once Envoy has flushed it (FAST_FLUSH: every 100 ms; on a quiet machine the
    # flood ends sooner than the default 10 s flush, which once left the log empty here).
    deadline = time.monotonic() + 5
    while one_worker.log_text().count("request refused: login_pool_full") < len(refused) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert one_worker.log_text().count("request refused: login_pool_full") >= len(refused)
    assert plain.status == 200 and plain.from_upstream, plain.summary()
    assert plain_s < slowest_checked / 4, (plain_s, slowest_checked)
    assert one_worker.alive()
    assert not CRASH.findall(one_worker.log_text())


def test_native_login_client_gone_while_on_the_pool_is_not_checked_and_envoy_stays_up(
        tmp_path_factory, upstream, wasm):
    """Clients that reset their connection while their forms wait on the pool: Envoy stays up, the
    forms nobody can read the answer of are not checked (the next login waits for at most the checks
    that were in hand, not for all of them), and later requests are answered as usual."""
    envoy = _login_envoy(tmp_path_factory, upstream, wasm, "native-login-gone")
    try:
        t0 = time.perf_counter()
        r = envoy.request("POST", LOGIN, FORM, source=PEER, body=WRONG, timeout=60)
        one = time.perf_counter() - t0
        assert r.status == 401, r.summary()
        _abandon(envoy, WRONG, 16)
        t0 = time.perf_counter()
        r = envoy.request("POST", LOGIN, FORM, source=PEER, body=RIGHT, timeout=120)
        after = time.perf_counter() - t0
        assert r.status == 303 and r.header("set-cookie"), r.summary()
        # Checking all 16 would take about 8 checks' time on 2 threads; only those in hand run.
        assert after < 4 * one, (after, one)
        plain = envoy.request("GET", "/", source="127.0.0.1")
        assert plain.status == 200 and plain.from_upstream, plain.summary()
        assert envoy.alive()
        assert not CRASH.findall(envoy.log_text())
    finally:
        envoy.stop()


def test_native_envoy_sigterm_with_logins_on_the_pool_exits_cleanly(tmp_path_factory, upstream, wasm):
    """SIGTERM while forms are being checked and waiting on the pool: the streams end, the
    configuration is destroyed (its pool's threads joined before Envoy unloads the library), and
    Envoy exits 0 without a crash."""
    envoy = _login_envoy(tmp_path_factory, upstream, wasm, "native-login-sigterm")
    answers: list = []

    def login() -> None:
        try:
            answers.append(envoy.request("POST", LOGIN, FORM, source=PEER, body=WRONG, timeout=30).status)
        except (OSError, EOFError) as e:  # Envoy went away first
            answers.append(type(e).__name__)

    threads = [threading.Thread(target=login) for _ in range(12)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.4)  # two forms in bcrypt, the rest waiting
        assert envoy.alive()
        envoy.proc.send_signal(signal.SIGTERM)
        code = envoy.proc.wait(timeout=30)
    finally:
        envoy.stop()
        for t in threads:
            t.join(timeout=30)
    log = envoy.log_text()
    assert code == 0, (code, log[-3000:])
    assert not CRASH.findall(log), log[-3000:]
    # Nothing was let through on the way down.
    assert not [a for a in answers if a in (200, 303)], answers

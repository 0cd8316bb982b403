"""`make bench-login-flood`: a steady client's latency while the login form is flooded.

One single-worker Envoy per budget setting, devgate with the login form open to any peer (users at
bcrypt cost 10). For each setting, in one run:

  baseline   the steady client alone: GET /.devgate/login (the form, answered by devgate on the worker,
             no bcrypt, no upstream) from 127.0.0.1 every 20 ms
  flood      the same client while FLOOD_CLIENTS clients post wrong passwords, each attempt from a
             new loopback source address (127.1.x.y), so the per-address limit never applies

Settings: `default` (verifies_per_minute 120, verify_burst 3) and `unbounded` (60000 / 1000, the
largest budget, which bcrypt itself then limits: what devgate did before the budget). The report gives
p50 and p99 of the steady client under the flood as a ratio to its own baseline in the same run, and
the verifies devgate ran (its counters). Figures are for this machine and this run only.

  BENCH_FLOOD_SECONDS (default 10)   BENCH_FLOOD_CLIENTS (default 8)
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

import harness  # noqa: E402

BOB_10 = "bob:$2y$10$HlyJmN8Vs5mqpA4c.3v1QeD.xxEuABmkfcIwuuHi979zcGbrtML6K"  # s3cret, cost 10
KEY = "ZGV2Z2F0ZSBiZW5jaCBsb2dpbiBmbG9vZCBrZXkgMDEyMzQ1"
SETTINGS = {
    "default": {},
    "unbounded": {"verifies_per_minute": 60000, "verify_burst": 1000},
}


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))] * 1000


def steady(gw, stop: float) -> list[float]:
    out = []
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        # Answered on the worker itself: the upstream (a Python server) would add its own noise.
        r = gw.request("GET", "/.devgate/login", source="127.0.0.1")
        if r.status != 200:
            raise SystemExit(f"steady client got {r.status}: {r.summary()}")
        out.append(time.perf_counter() - t0)
        time.sleep(0.02)
    return out


def flood(gw, stop: float, clients: int) -> dict:
    lock = threading.Lock()
    counter = iter(range(10**7))
    statuses: dict[int, int] = {}

    def one():
        while time.monotonic() < stop:
            with lock:
                i = next(counter)
            try:
                r = gw.request("POST", "/.devgate/login",
                               [("Origin", "http://devgate.test"),
                                ("Content-Type", "application/x-www-form-urlencoded")],
                               source=f"127.1.{(i // 250) % 250}.{1 + i % 250}",
                               body=f"username=bob&password=guess-{i}")
                status = r.status
            except OSError:
                status = 0  # lost: Envoy closed the connection during a stall
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def main() -> int:
    seconds = float(os.environ.get("BENCH_FLOOD_SECONDS", "10"))
    clients = int(os.environ.get("BENCH_FLOOD_CLIENTS", "8"))
    up = harness.Upstream()
    rows = []
    try:
        for name, budget in SETTINGS.items():
            cfg = {"protect": ["/_debug/"], "public": ["/healthz"],
                   "keys": [{"id": "k1", "secret_env": "BENCH_KEY"}],
                   "login": {"users_env": "BENCH_USERS", **budget}}
            boot = harness.render_bootstrap(upstream_port=up.port, plugin_config=cfg,
                                            env={"BENCH_KEY": KEY, "BENCH_USERS": BOB_10 + "\n"})
            gw = harness.start_envoy(boot, Path(tempfile.mkdtemp(prefix=f"flood-{name}-")))
            try:
                base = steady(gw, time.monotonic() + seconds)
                stop = time.monotonic() + seconds
                result: dict = {}
                t = threading.Thread(target=lambda: result.update(flood(gw, stop, clients)))
                t.start()
                under = steady(gw, stop)
                t.join()
                c = gw.counters(r"wasmcustom\.devgate\.login\.")
                verifies = c["wasmcustom.devgate.login.failed"] + c["wasmcustom.devgate.login.succeeded"]
                rows.append((name, base, under, result, verifies, c.get("wasmcustom.devgate.login.over_budget", 0)))
            finally:
                gw.stop()
    finally:
        up.stop()

    print(f"login flood: {clients} clients, {seconds:.0f} s per phase, single-worker Envoy, bcrypt cost 10\n")
    print("| budget | steady p50 base → flood (×) | steady p99 base → flood (×) | verifies/s | 429 over budget | attempts | lost |")
    print("|---|---|---|---|---|---|---|")
    for name, base, under, statuses, verifies, refused in rows:
        b50, b99 = percentile(base, 0.5), percentile(base, 0.99)
        u50, u99 = percentile(under, 0.5), percentile(under, 0.99)
        print(f"| {name} | {b50:.1f} → {u50:.1f} ms ({u50 / b50:.1f}×) | {b99:.1f} → {u99:.1f} ms ({u99 / b99:.1f}×) "
              f"| {verifies / seconds:.1f} | {refused} | {sum(statuses.values())} | {statuses.get(0, 0)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

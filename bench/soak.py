#!/usr/bin/env python3
"""`make soak`: devgate in Envoy at saturation for a long time, with every kind of traffic at once, on
either host: the Wasm filter (devgate.wasm, the default) or the native module (libdevgate.so,
SOAK_HOST=native; `make soak-native`). The native module has no sandbox: a leak in it grows Envoy.

What runs (all on loopback, nothing on a fixed port):
  * the upstream: a second Envoy answering every request itself (direct_response) and reflecting in
    response headers what it received (the identity header, Authorization, Cookie, X-Api-Key, the
    API headers), so the driver can check every 200 without a slow Python upstream in the way;
  * devgate in Envoy (`--concurrency 1` unless SOAK_CONCURRENCY), rendered with tests/e2e/harness.py
    for the host SOAK_HOST names, in front of it;
  * the driver: SOAK_WORKERS processes, each an event loop over raw keep-alive HTTP/1.1 connections
    bound to the traffic classes' source addresses, every connection with one request in flight
    all the time (closed loop), so Envoy always has work queued; failed logins are paced instead.

Traffic classes and the one answer each must get (anything else is a failure, printed with details):
  network_dev     127.0.0.1   GET /_debug/vars, forged identity     200 upstream, identity 127.0.0.1
  bearer          127.0.0.77  Bearer token (devgate mint)           200 upstream, identity soak-bearer,
                                                                    no Authorization upstream
  session         127.0.0.5   Cookie devgate_session (a real login  200 upstream, identity alice, other
                              at start) + another cookie            cookies kept, session cookie gone
  api_private     127.0.0.77  X-Api-Key private maps key, /v1/maps  200 upstream, key kind/project set,
                                                                    key gone, no identity
  public          127.0.0.77  GET /healthz, forged identity         200 upstream, no identity
  deny_anonymous  127.0.0.77  GET /_debug/vars, no credential       401 devgate_no_credential + challenge
  deny_expired    127.0.0.77  Bearer expired token                  401 devgate_expired + challenge
  deny_product    127.0.0.77  X-Api-Key for geocoding on /v1/maps   403 devgate_wrong_product
  failed_login    127.0.0.8-15 POST /.devgate/login, wrong password  401 devgate_login_failed or
                  (rotating)                                        429 devgate_login_rate_limited

Failed logins cost a bcrypt verify each (until the rate limiter answers 429 for that address), so
they are paced (SOAK_LOGIN_RATE per second in all) and the htpasswd holds one cost-5 user only
(devgate pads every verify to the file's highest cost). The Wasm filter checks them on Envoy's
worker, the native module on its bcrypt pool. The limiter's window is 10 s here, not 300,
so it opens again and again during the run: both answers keep coming. The process-wide verify
budget is opened to its maximum, so that its own 429 (tested in tests/e2e/test_login.py) does not
stand in for the limiter's.

Checked (exit status 1 if any fails; 2 for a setup error):
  * zero unexpected answers (status, or a 200 with the wrong identity/headers, or a socket error);
  * Envoy never restarted (same PID and start time, uptime increasing); devgate's internal_error
    counters 0; nothing in Envoy's log that means trouble (the e2e suite's patterns: a Wasm trap or VM
    failure, or the native module's panic hook, and Envoy's fatal-signal report); on the Wasm host
    no VM reloaded (`wasm.devgate.vm_reload*` 0) and the VM counts constant;
  * flat after warm-up (the first 10% of the run): Envoy's RSS (/proc/PID/status VmRSS), its heap
    in use (server.memory_allocated) and its threads at the end of the load within the margin of
    their value after warm-up, and on the Wasm host the VMs' linear memory (found in
    /proc/PID/smaps, see soak_sample.wasm_memories()).

Written to target/soak-report.md and target/soak/samples.json (natively target/soak-report-native.md
and target/soak-native/), and printed.

The parts: soak_common.py (the host, addresses, margins), soak_traffic.py (configuration,
credentials, traffic classes), soak_driver.py (the load), soak_sample.py (sampling Envoy),
soak_report.py (verdicts and the report); this file runs them.

Environment (defaults in brackets):
  SOAK_SECONDS      how long the load runs [600]
  SOAK_WORKERS      driver processes [2]
  SOAK_CONNECTIONS  connections per closed-loop class per worker [1]
  SOAK_LOGIN_RATE   failed logins per second, all addresses together [8]
  SOAK_SAMPLE       seconds between samples [5, or less for short runs]
  SOAK_CONCURRENCY  Envoy worker threads [1]
  SOAK_HOST         wasm or native [wasm; DEVGATE_HOST if set]
  DEVGATE_WASM, DEVGATE_NATIVE, DEVGATE_ENVOY, DEVGATE_CLI   as for the tests

Needs `make build cli venv` (natively `make build-native cli venv`). Python standard library only (plus tests/e2e/harness.py).
"""


from __future__ import annotations

import datetime
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import re
import resource
import shutil
import socket
import subprocess
import sys
import time

# soak_common first: it hands SOAK_HOST to the harness before the harness is imported.
from soak_common import (
    ARTEFACT,
    DEV,
    LOGIN_WINDOW,
    NATIVE,
    REPO,
    REPORT,
    REQUEST_TIMEOUT,
    SOAK_HOST,
    WORK,
    SoakError,
    SoakFailure,
    env_num,
    harness,
    log,
)
from soak_driver import new_class_stats, parse_response, worker_main
from soak_report import (
    counter_check,
    devgate_counters,
    devgate_health,
    memory_checks,
    merge_stats,
    report,
    trouble_lines,
    vm_baseline,
)
from soak_sample import SAMPLE_HEADER, Sampler, cpu_seconds, host_cpu_seconds, sample_row
from soak_traffic import (
    DEVGATE_ENV,
    TrafficClass,
    check_answer,
    devgate_config,
    login_for_session,
    make_credentials,
    traffic_classes,
    upstream_bootstrap,
)

sys.path.insert(0, str(REPO / "bench"))
from run import cpu_model, git_revision  # noqa: E402  (make bench's: one way to name a machine)


def preflight(env: harness.Envoy, classes: list[TrafficClass]) -> list[str]:
    """One request per class on its own connection before the load: a class that is wrong from the
    start is reported as such (and the soak fails) rather than drowned in counts."""
    problems = []
    port = env.port_for(DEV)
    for tc in classes:
        src = tc.sources[0]
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT,
                                      source_address=(src, 0)) as s:
            s.sendall(tc.requests[0])
            buf = bytearray()
            parsed = None
            while parsed is None:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                parsed = parse_response(buf)
        if parsed is None:
            problems.append(f"{tc.name}: no complete answer ({bytes(buf[:200])!r})")
            continue
        status, headers, _ = parsed
        problem = check_answer(tc, status, headers)
        if problem:
            problems.append(f"{tc.name}: {problem}; headers {headers}")
    return problems


def envoy_version() -> str:
    """Envoy's version number, from `envoy --version`."""
    try:
        out = subprocess.run([str(harness.envoy_path()), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = re.search(r"version:\s*\S+?/(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def main() -> int:
    """The soak: exit status 0 (pass), 1 (a finding) or 2 (it could not be set up)."""
    duration = env_num("SOAK_SECONDS", 600, 5)
    workers = env_num("SOAK_WORKERS", 2, 1)
    n_conn = env_num("SOAK_CONNECTIONS", 1, 1)
    login_rate = env_num("SOAK_LOGIN_RATE", 8.0, 0.0, float)
    sample_s = env_num("SOAK_SAMPLE", min(5.0, max(1.0, duration / 30)), 0.5, float)
    concurrency = env_num("SOAK_CONCURRENCY", 1, 1)
    harness.wasm_path(), harness.envoy_path(), harness.cli_path()  # each raises with what to run

    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    creds = make_credentials(duration)
    log(f"{ARTEFACT}: {duration} s of load, {workers} driver processes, Envoy --concurrency {concurrency}; "
        f"work dir {WORK}")

    upstream = harness.start_envoy(upstream_bootstrap(), WORK / "upstream")
    procs: list[mp.Process] = []
    env = None
    try:
        bootstrap = harness.render_bootstrap(upstream_port=upstream.port_for("127.0.0.1"),
                                             plugin_config=devgate_config(), env=DEVGATE_ENV,
                                             listen=(("127.0.0.1", 0),))
        env = harness.start_envoy(bootstrap, WORK / "devgate", extra_args=("--concurrency", str(concurrency)))
        port = env.port_for(DEV)
        log(f"devgate Envoy PID {env.proc.pid} on 127.0.0.1:{port} (admin {env.admin_port}), upstream Envoy on "
            f"{upstream.port_for('127.0.0.1')}")
        classes = traffic_classes(creds, login_for_session(env))
        problems = preflight(env, classes)
        if problems:
            for p in problems:
                log(f"preflight: {p}")
            raise SoakFailure("a traffic class got the wrong answer before the load even started (see above)")

        vm0 = vm_baseline(env)
        sampler = Sampler(env)
        ctx = mp.get_context("fork")
        out: mp.Queue = ctx.Queue()
        c0 = devgate_counters(env)
        t0 = time.monotonic()
        t_end = t0 + duration
        stop_at = ctx.Value("d", t_end, lock=False)
        for wid in range(workers):
            p = ctx.Process(target=worker_main, args=(wid, port, classes, n_conn, workers, login_rate, stop_at, out),
                            daemon=True, name=f"soak-driver-{wid}")
            p.start()
            procs.append(p)
        progress = {wid: {} for wid in range(workers)}
        finals: dict[int, dict] = {}
        cpu0, wcpu0, host0 = sampler.cpu()
        up_cpu0 = cpu_seconds(upstream.proc.pid)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        print(SAMPLE_HEADER, flush=True)
        next_sample = t0
        cpu1 = wcpu1 = host1 = None
        t_load_end = None
        while len(finals) < workers:
            now = time.monotonic()
            if now >= next_sample and now < t_end + sample_s / 2:
                reqs = sum(sum(p.values()) for p in progress.values())
                s = sampler.take(now - t0, reqs)
                if s is None:
                    log(f"Envoy is gone: {sampler.problems[-1]}; stopping the load")
                    stop_at.value = now
                    t_end = now
                    next_sample = math.inf
                    continue
                print(sample_row(s), flush=True)
                next_sample += sample_s
            if now >= t_end and cpu1 is None:
                cpu1, wcpu1, host1 = sampler.cpu()
                up_cpu1 = cpu_seconds(upstream.proc.pid)
                t_load_end = now
            try:
                kind, wid, data = out.get(timeout=max(0.05, min(0.5, next_sample - time.monotonic())))
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and out.empty():
                    break
                continue
            if kind == "progress":
                progress[wid] = data
            else:
                finals[wid] = data
        if len(finals) < workers:
            log(f"only {len(finals)} of {workers} driver processes reported")
        load_s = (t_load_end or time.monotonic()) - t0
        if cpu1 is None:
            cpu1, wcpu1, host1 = sampler.cpu()
            up_cpu1 = cpu_seconds(upstream.proc.pid)
        for p in procs:  # reaped, so their CPU time shows in RUSAGE_CHILDREN
            p.join(10)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        driver_s = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                    + self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
        ours_s = (cpu1 - cpu0) + (up_cpu1 - up_cpu0) + driver_s
        other_pct = max(0.0, 100.0 * (host_cpu_seconds(host0, host1, 2) - ours_s) / load_s)
        irq_pct = 100.0 * host_cpu_seconds(host0, host1, 3) / load_s

        # verdicts
        failures: list[str] = []
        merged = merge_stats(list(finals.values()))
        if len(finals) < workers:
            failures.append(f"{workers - len(finals)} driver processes died without reporting")
        for tc in classes:
            st = merged.get(tc.name, new_class_stats())
            n = sum(st["statuses"].values())
            if st["unexpected"] or st["errors"]:
                failures.append(f"{tc.name}: {st['unexpected']} unexpected answers, {st['errors']} socket errors "
                                f"(examples in the report)")
            if n == 0:
                failures.append(f"{tc.name}: no answers at all")
        if "failed_login" in merged and login_rate > 0 and duration >= 2 * LOGIN_WINDOW:
            got = merged["failed_login"]["statuses"]
            if not got.get(401) or not got.get(429):
                failures.append(f"failed_login: expected both 401 and 429 over {duration} s, got {got}")
        restart = list(sampler.problems)
        gone = sampler.alive()
        if gone and not restart:
            restart.append(gone)
        failures += [f"Envoy: {p}" for p in restart]
        health_problems, log_lines, health_now = ([], [], {}) if gone else devgate_health(env, vm0)
        if gone:  # the log is still there to read
            log_lines = trouble_lines(env)
        failures += [f"{'devgate' if NATIVE else 'Wasm'}: {p}" for p in health_problems]
        failures += [f"Envoy log: {line}" for line in log_lines[:10]]
        samples = sampler.samples
        bad_vm = [] if NATIVE else [s for s in samples if s.wasm_vms != s.vm_count]
        if bad_vm:
            failures.append(f"Wasm memory: found {bad_vm[0].wasm_vms} linear memories in smaps but "
                            f"wasm.wasm_vm_count is {bad_vm[0].vm_count} (t={bad_vm[0].t:.0f}s): cannot attribute")
        mem, base, end = memory_checks(samples, duration)
        if not mem:
            failures.append("too few samples after warm-up to judge memory")
        for m in mem:
            if not m["ok"]:
                failures.append(f"{m['what']} grew by {m['growth'] / 1024:,.0f} KiB after warm-up "
                                f"(allowed {m['allowed'] / 1024:,.0f} KiB)")
        counters = {} if gone else devgate_counters(env)
        counted = [] if gone else counter_check(merged, c0, counters)
        if not any(st["errors"] for st in merged.values()):  # a lost request may or may not be counted
            for what, counter, n, delta in counted:
                if n != delta:
                    failures.append(f"devgate's {counter} moved by {delta:,} during the load, but the driver got "
                                    f"{n:,} answers for {what}")
        envoy_rq = 0 if gone else env.counters(r"^http\.e2e\.downstream_rq_total$").get("http.e2e.downstream_rq_total", 0)
        settings = {k: os.environ[k] for k in sorted(os.environ) if k.startswith("SOAK_")}
        settings.setdefault("SOAK_HOST", SOAK_HOST)
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "nproc": os.cpu_count(), "cpu_model": cpu_model(), "kernel": platform.release(),
            "envoy_version": envoy_version(), "concurrency": concurrency, "pid": env.proc.pid,
            "exe": sampler.exe, "revision": git_revision(), "artefact_bytes": harness.wasm_path().stat().st_size,
            "command": " ".join([f"{k}={v}" for k, v in settings.items()] + ["bench/soak.py"]),
            "duration_s": duration, "workers": workers,
            "closed_lanes": n_conn * sum(1 for tc in classes if not tc.paced), "login_rate": login_rate,
            "sample_s": sample_s, "load_s": load_s, "envoy_rq": envoy_rq,
            "envoy_cpu_pct": 100.0 * (cpu1 - cpu0) / load_s, "worker_cpu_pct": 100.0 * (wcpu1 - wcpu0) / load_s,
            "host_busy_pct": 100.0 * (host1[0] - host0[0]) / max(host1[1] - host0[1], 1),
            "restart_problems": restart,
            "upstream_cpu_pct": 100.0 * (up_cpu1 - up_cpu0) / load_s, "driver_cpu_pct": 100.0 * driver_s / load_s,
            "other_cpu_pct": other_pct, "irq_cpu_pct": irq_pct,
            "log_trouble": len(log_lines),
        }
        md = report(meta, classes, merged, samples, mem, base, end, failures, counted, health_now)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(md)
        (WORK / "samples.json").write_text(json.dumps({"meta": meta, "samples": [s.__dict__ for s in samples],
                                                       "classes": merged}, indent=1, default=str))
        print()
        print(md)
        log(f"written {REPORT.relative_to(REPO)} ({'PASS' if not failures else 'FAIL'}); Envoy log in "
            f"{(WORK / 'devgate').relative_to(REPO)}/")
        return 1 if failures else 0
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(5)
        if env is not None:
            env.stop()
        upstream.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SoakError, harness.HarnessError) as e:
        log(f"error: {e}")
        sys.exit(2)
    except SoakFailure as e:
        log(f"FAIL: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)

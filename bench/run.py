#!/usr/bin/env python3
"""`make bench`: devgate against the filters users would pick instead, measured in one run.

What runs (all on loopback):
  * the upstream: an Envoy answering every request itself (envoy/bench/upstream.yaml);
  * one Envoy per variant (envoy/bench/<config>.yaml), each `--concurrency 1`, pinned to one core;
  * wrk (`-t1 -c16 --latency`), the load generator, pinned to the other core with the upstream.

Each variant's Envoy is started once, checked (one request must get the expected status and, where
the variant sets one, the expected identity header; a variant that fails is reported and not
measured), warmed up, and then measured in interleaved rounds: round 1 runs every variant in order,
round 2 in reverse order, and so on, so slow drift of the machine falls on every variant alike.

Reported per variant: requests/s, p50 and p99 latency (medians over the rounds), the ratio to
baseline (median over the rounds of variant rps / baseline rps of the same round), the CPU time the
variant's Envoy spent per request (utime+stime from /proc/PID/stat over the run, divided by the
requests wrk completed) and that minus baseline's in the same round. Written to bench/out/results.md
and bench/out/results.json, and printed.

Environment (defaults in brackets):
  BENCH_ROUNDS        rounds [5]
  BENCH_DURATION      seconds per variant per round [5]
  BENCH_WARMUP        seconds of warm-up per variant before the rounds [2]
  BENCH_CONNECTIONS   wrk connections [16]
  BENCH_VARIANTS      comma-separated subset, baseline always included [all]
  BENCH_QUIET_WAIT    before each run, wait up to this many seconds for other processes to leave the
                      CPUs alone (under 5% of them) [0: do not wait; the report still shows the noise]
  BENCH_ENVOY_CPU     core for the Envoy under test [0]
  BENCH_LOAD_CPU      core for wrk [1]
  BENCH_UPSTREAM_CPU  core for the upstream Envoy [same as BENCH_LOAD_CPU]
  BENCH_CHECK_ONLY    1: start and check the variants (and, for those that price a cache, what it did
                      over 300 requests), measure nothing [0]
  DEVGATE_WASM, DEVGATE_ENVOY, DEVGATE_CLI   as for the tests (default: the repository's build outputs)

Needs: `make build cli venv` done, Rust's wasm32-wasip1 target (for bench/empty-filter), and wrk
(installed with apt-get when missing and running as root). Python's standard library, and the
venv's PyJWT and cryptography for the edge assertion variants' ES256 tokens.

The parts are in bench/benchlib/ (shared with bench/calls.py): common (paths, settings, errors),
variants (what is measured and the check of each), processes (Envoy), prepare (tools, builds,
credentials, versions), load (wrk and CPU accounting) and report (the summary and its Markdown).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

from benchlib.common import (CONFIGS, EMPTY_WASM, NATIVE, OUT, REFERENCE_WASM, REPO, TEST_NATIVE, WASM, WORK,
                             BenchError, env_int, log)
from benchlib.load import Setup, run_load, wait_quiet
from benchlib.prepare import (build_filters, check_inputs, cpu_model, ensure_wrk, envoy_version, git_revision,
                              make_credentials, wrk_version)
from benchlib.processes import Envoy, start_envoy, stop, wasm_trouble
from benchlib.report import markdown, summarize
from benchlib.variants import cache_trouble, check_variant, one_request, process_env, variants

# BENCH_CHECK_ONLY: requests sent to a variant that prices a cache, after its check, before its
# cache's counters are read.
CHECK_ONLY_REQUESTS = 300


def main() -> int:
    t_start = time.monotonic()
    rounds_n = env_int("BENCH_ROUNDS", 5, 1)
    duration = env_int("BENCH_DURATION", 5, 1)
    warmup = env_int("BENCH_WARMUP", 2, 0)
    connections = env_int("BENCH_CONNECTIONS", 16, 1)
    quiet_wait = env_int("BENCH_QUIET_WAIT", 0, 0)
    check_only = env_int("BENCH_CHECK_ONLY", 0, 0) > 0
    ncpu = os.cpu_count() or 1
    allowed = sorted(os.sched_getaffinity(0))
    envoy_cpu = os.environ.get("BENCH_ENVOY_CPU", "").strip() or str(allowed[0])
    load_cpu = os.environ.get("BENCH_LOAD_CPU", "").strip() or str(allowed[1] if len(allowed) > 1 else allowed[0])
    upstream_cpu = os.environ.get("BENCH_UPSTREAM_CPU", "").strip() or load_cpu
    for name, c in (("BENCH_ENVOY_CPU", envoy_cpu), ("BENCH_LOAD_CPU", load_cpu), ("BENCH_UPSTREAM_CPU", upstream_cpu)):
        if not c.isdigit() or int(c) not in allowed:
            raise BenchError(f"{name}={c}: not one of the CPUs this process may use ({allowed})")
    if envoy_cpu == load_cpu:
        log(f"WARNING: only CPU {envoy_cpu} is available: Envoy and wrk share it, the numbers mean little")

    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    check_inputs()
    creds = make_credentials()
    all_variants = variants(creds["token"], creds["api_key"], creds["assertion"])
    wanted = [x.strip() for x in os.environ.get("BENCH_VARIANTS", "").split(",") if x.strip()]
    if wanted:
        unknown = set(wanted) - {v.name for v in all_variants}
        if unknown:
            raise BenchError(f"BENCH_VARIANTS: unknown {sorted(unknown)}; known: {[v.name for v in all_variants]}")
        all_variants = [v for v in all_variants if v.name == "baseline" or v.name in wanted]
    check_inputs(native=any(v.native for v in all_variants))
    # A check alone needs no load generator, nor the bench's own filters unless a variant loads one.
    wrk = "" if check_only else ensure_wrk()
    if not check_only or any(v.config in ("empty_wasm.yaml", "reference.yaml") for v in all_variants):
        build_filters()

    values = {
        "DEVGATE_WASM": WASM.resolve(),
        "DEVGATE_NATIVE": NATIVE.resolve(),
        "DEVGATE_TEST_NATIVE": TEST_NATIVE.resolve(),
        "EMPTY_WASM": EMPTY_WASM.resolve(),
        "REFERENCE_WASM": REFERENCE_WASM.resolve(),
        "DEVGATE_KEY": creds["key"],
        "HTPASSWD_LINE": creds["htpasswd"],
        "ACCESS_TOKEN": creds["access_token"],
        "ASSERTION_X": creds["assertion_signer"]["x"],
        "ASSERTION_Y": creds["assertion_signer"]["y"],
    }
    envoys: list[Envoy] = []
    upstream = None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        upstream = start_envoy("upstream", CONFIGS / "upstream.yaml", values, upstream_cpu)
        envoys.append(upstream)
        values["UPSTREAM_PORT"] = upstream.port
        setup = Setup(wrk, connections, envoy_cpu, load_cpu, upstream_cpu, upstream)

        running: dict[str, Envoy] = {}
        broken: dict[str, str] = {}
        for v in all_variants:
            try:
                env = start_envoy(v.name, CONFIGS / v.config, {**values, **v.values}, envoy_cpu,
                                  env=process_env(v, values))
            except BenchError as e:
                if v.name == "baseline":
                    raise
                log(str(e))
                broken[v.name] = (f"not measured: Envoy did not start with envoy/bench/{v.config} "
                                  f"(log in {WORK / v.name})")
                log(f"{v.name}: BROKEN, {broken[v.name]}")
                continue
            envoys.append(env)
            problems = check_variant(v, env.port)
            if problems:
                broken[v.name] = "not measured: " + "; ".join(problems)
                log(f"{v.name}: BROKEN, {broken[v.name]}")
                stop(env.proc)
            else:
                running[v.name] = env
                log(f"{v.name}: ok (127.0.0.1:{env.port}, {v.status}"
                    + (f", identity {v.identity}" if v.identity else "") + ")")
        if "baseline" in broken:
            raise BenchError("the baseline itself is broken: nothing to compare with")
        if check_only:
            # The load's own check, in small: a variant that prices a cache does what it says.
            for v in all_variants:
                if v.name in running and v.cache:
                    for _ in range(CHECK_ONLY_REQUESTS):
                        one_request(running[v.name].port, v.headers)
                    cache = cache_trouble(v, running[v.name])
                    if cache:
                        broken[v.name] = f"its cache did not do what the variant prices: {cache}"
                    log(f"{v.name}: cache after {CHECK_ONLY_REQUESTS} requests: "
                        + (f"BROKEN, {cache}" if cache else f"as expected ({v.cache})"))
            log(f"BENCH_CHECK_ONLY: {len(all_variants) - len(broken)} variants answer as expected, {len(broken)} "
                "do not; nothing measured")
            return 1 if broken else 0
        measured = [v for v in all_variants if v.name in running]

        if warmup:
            log(f"warm-up: {warmup} s per variant")
            for v in measured:
                run_load(setup, v, running[v.name], warmup)

        total = rounds_n * len(measured) * duration
        log(f"measuring: {rounds_n} rounds × {len(measured)} variants × {duration} s = {total} s")
        rounds: list[dict] = []
        for i in range(rounds_n):
            order = measured if i % 2 == 0 else list(reversed(measured))
            results = {}
            for v in order:
                wait_quiet(setup, envoys, quiet_wait)
                results[v.name] = run_load(setup, v, running[v.name], duration)
            rounds.append(results)
            log(f"round {i + 1}/{rounds_n}: " + ", ".join(
                f"{v.name} {results[v.name]['rps']:.0f}" for v in measured))

        for v in measured:
            env = running[v.name]
            if env.proc.poll() is not None:
                broken[v.name] = f"discarded: its Envoy exited ({env.proc.returncode}) during the run"
            else:
                trouble = wasm_trouble(env)
                if trouble:
                    broken[v.name] = "discarded: its Wasm VM failed during the run: " + "; ".join(trouble[:3])
                cache = cache_trouble(v, env)
                if cache and v.name not in broken:
                    broken[v.name] = f"discarded: its cache did not do what the variant prices: {cache}"
    finally:
        for env in reversed(envoys):
            stop(env.proc)

    summary = summarize([v.name for v in measured], rounds)
    for name in list(broken):
        summary.pop(name, None)
    elapsed = time.monotonic() - t_start
    settings = {k: os.environ[k] for k in sorted(os.environ) if k.startswith("BENCH_")}
    python = Path(sys.executable)
    python_shown = os.path.relpath(python, REPO) if REPO in python.absolute().parents else str(python)
    command = " ".join([f"{k}={shlex.quote(v)}" for k, v in settings.items()]
                       + [python_shown, os.path.relpath(Path(__file__).resolve(), Path.cwd())])
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": ncpu,
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "envoy_version": envoy_version(),
        "wrk_version": wrk_version(wrk),
        "devgate_revision": git_revision(),
        "devgate_wasm_bytes": WASM.stat().st_size,
        "empty_wasm_bytes": EMPTY_WASM.stat().st_size,
        "command": command,
        "rounds": rounds_n,
        "duration_s": duration,
        "warmup_s": warmup,
        "connections": connections,
        "quiet_wait_s": quiet_wait,
        "envoy_cpu": envoy_cpu,
        "load_cpu": load_cpu,
        "upstream_cpu": upstream_cpu,
        "elapsed_s": elapsed,
    }
    md = markdown(meta, all_variants, summary, broken)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.md").write_text(md)
    (OUT / "results.json").write_text(json.dumps({
        "meta": meta,
        "variants": {v.name: {"config": f"envoy/bench/{v.config}", "what": v.what, "status": v.status,
                              "identity": v.identity, "headers": [k for k, _ in v.headers]} for v in all_variants},
        "broken": broken,
        "summary": summary,
        "rounds": rounds,
    }, indent=1))
    print(md)
    log(f"written {OUT / 'results.md'} and {OUT / 'results.json'} ({elapsed:.0f} s)")
    return 1 if broken else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)

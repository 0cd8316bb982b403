#!/usr/bin/env python3
"""`make bench-calls`: where the time goes, counted instead of timed.

Every variant of `make bench` (bench/run.py, same Envoy configs, same credentials), its miss variants
(benchlib.variants.miss_variants: a key or a signed edge assertion never seen before, on every
request), plus the reference filter (bench/reference-filter) making one kind of host call each, runs in
the venv's Envoy under valgrind's callgrind. After a warm-up, the counters are zeroed, N requests go
through one keep-alive connection, and the instructions Envoy executed (all of it: its own C++, V8's
compiled Wasm, the filter) are divided by N. On this hypervisor, timed runs of the same variant differ by ±5 µs per
request from one run to the next, more than most single host calls cost; instruction counts repeat
to within a fraction of a percent, so they can price one host call and show what one change saved.
They are not time (a cache miss costs more than an add), so `make bench` stays the measure of speed;
this is the measure of work.

Reported: instructions per request per variant, that minus baseline's (the filter's added work) and
that as a multiple of the empty filter's; and the price list: each reference step minus the
reference filter with no step. Written to bench/out/calls.md and bench/out/calls.json, and printed.

Environment (defaults in brackets):
  CALLS_REQUESTS   requests counted per variant [1000]
  CALLS_WARMUP     requests before counting (V8 compiles lazily, caches fill) [200]
  CALLS_JOBS       variants measured at once (callgrind counts are unaffected by sharing CPUs) [2]
  CALLS_VARIANTS   comma-separated subset [all]
  DEVGATE_WASM, DEVGATE_ENVOY, DEVGATE_CLI   as for bench/run.py

Needs: what bench/run.py needs, and valgrind (the Makefile installs it with apt-get when missing).
Slow by nature: Envoy starts under valgrind in about a minute; all variants take 15-20 minutes.
"""

from __future__ import annotations

import datetime
import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# make bench's parts (bench/benchlib/): variants, configs, credentials, Envoy helpers.
from benchlib import common  # noqa: E402  (the settings this run changes: WORK, CHECK_TIMEOUT)
from benchlib.common import (CONFIGS, EMPTY_WASM, NATIVE, REFERENCE_WASM, REPO, TEST_NATIVE, WASM,  # noqa: E402
                             BenchError, env_int)
from benchlib.prepare import (build_filters, check_inputs, command_version, envoy_version,  # noqa: E402
                              git_revision, make_credentials, mint_assertions)
from benchlib.processes import Envoy, start_envoy, stop, wasm_trouble  # noqa: E402
from benchlib.report import assertion_markdown, goals_markdown, side_by_side_markdown  # noqa: E402
from benchlib.variants import (Variant, cache_trouble, check_variant, miss_variants, process_env,  # noqa: E402
                               variants)

OUT = common.OUT
WORK = OUT / "calls-run"
STARTUP_TIMEOUT = 600.0

# The price list: the reference filter with one step each, against the same filter with none.
REFERENCE_NONE = "ref_nothing"
PRICES = [
    (REFERENCE_NONE, "", "the reference filter, no host call (the base of the prices below)"),
    ("ref_pairs", "pairs", "read every request header (proxy_get_header_map_pairs)"),
    ("ref_peer", "peer", "read the peer (property source.address)"),
    ("ref_header_present", "header::path", "read one request header that is there (:path)"),
    ("ref_header_absent", "header:x-absent", "read one request header that is not there"),
    ("ref_set", "set:x-wsgiorg-developer-user=127.0.0.1", "set a request header"),
    ("ref_property", "property:devgate_decision=allow:network", "set a property (filter state)"),
    ("ref_metric", "metric", "increment a counter"),
    ("ref_time", "time", "read the clock"),
    ("ref_response_present", "response_header::status", "read one response header that is there (:status)"),
    ("ref_response_absent", "response_header:www-authenticate", "read one response header that is not there"),
]


def log(msg: str) -> None:
    print(f"bench-calls: {msg}", file=sys.stderr, flush=True)


def envoy_binary() -> Path:
    """The real Envoy executable: .venv/bin/envoy is a Python launcher, which valgrind would trace."""
    override = os.environ.get("DEVGATE_ENVOY")
    candidates = [Path(override)] if override else []
    candidates += sorted(Path(p) for p in glob.glob(str(REPO / ".venv" / "lib" / "python*" / "site-packages"
                                                           / "envoy" / "_bin" / "envoy")))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK) and c.read_bytes()[:4] == b"\x7fELF":
            return c
    raise BenchError("no Envoy executable found in the venv (make venv)")


def start_counted(name: str, template: Path, values: dict, envoy: Path, cpu: str,
                  env: dict | None = None) -> Envoy:
    """An Envoy under callgrind, counting from the start (zeroed before the measured requests)."""
    wrapper = ("valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--dump-instr=no",
               f"--callgrind-out-file={WORK / name}/callgrind.%p")
    return start_envoy(name, template, values, cpu, wrapper=wrapper, envoy=envoy, timeout=STARTUP_TIMEOUT,
                             env=env)


SENT = iter(range(1, 1 << 62))


def send(port: int, headers: list, n: int, unique: bool = False, rotate=None) -> dict:
    """n GETs of / on one keep-alive connection, as wrk sends them; the statuses seen. `unique`:
    the first header's value gets a suffix no other request of the run had. `rotate`: an iterator
    of the first header's values, one per request (a new signed assertion each); running out of
    them is an error, never a repeat."""
    seen: dict = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(n):
            sent = dict(headers)
            if unique and headers:
                name, value = headers[0]
                sent[name] = f"{value}-{next(SENT)}"
            if rotate is not None and headers:
                value = next(rotate, None)
                if value is None:
                    raise BenchError("ran out of distinct assertions: a request would repeat one")
                sent[headers[0][0]] = value
            conn.request("GET", "/", headers=sent)
            r = conn.getresponse()
            r.read()
            seen[r.status] = seen.get(r.status, 0) + 1
    finally:
        conn.close()
    return seen


def callgrind(command: str, pid: int) -> None:
    r = subprocess.run(["callgrind_control", command, str(pid)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or "OK" not in r.stdout:
        raise BenchError(f"callgrind_control {command} {pid} failed: {r.stdout.strip()} {r.stderr.strip()}")


def instructions(workdir: Path, before: set) -> int:
    """Total instructions in the dump callgrind_control --dump wrote (the newest new file)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [Path(p) for p in glob.glob(str(workdir / "callgrind.*")) if p not in before]
        for p in sorted(new, key=lambda p: p.stat().st_mtime, reverse=True):
            for line in p.read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.5)
    raise BenchError(f"no callgrind dump appeared in {workdir}")


def measure(job: dict, envoy: Path, n: int, warmup: int, cpu: str) -> dict:
    env = start_counted(job["name"], job["template"], job["values"], envoy, cpu,
                        env=process_env(job["variant"], job["values"]))
    try:
        problems = check_variant(job["variant"], env.port) if job["check"] else []
        if problems:
            return {"error": "; ".join(problems)}
        unique = job["variant"].unique
        # One iterator for the warm-up and the counted requests: no value is sent twice.
        rotate = iter(job["variant"].rotate) if job["variant"].rotate else None
        send(env.port, job["variant"].headers, warmup, unique, rotate)
        callgrind("--zero", env.proc.pid)
        before = set(glob.glob(str(env.workdir / "callgrind.*")))
        seen = send(env.port, job["variant"].headers, n, unique, rotate)
        callgrind("--dump", env.proc.pid)
        total = instructions(env.workdir, before)
        want = job["variant"].status
        if set(seen) != {want}:
            return {"error": f"statuses {seen}, expected only {want}"}
        trouble = wasm_trouble(env)
        if trouble:
            return {"error": "Wasm VM failed: " + "; ".join(trouble[:3])}
        cache = cache_trouble(job["variant"], env)
        if cache:
            return {"error": cache}
        return {"instructions_per_request": total / n, "requests": n}
    finally:
        stop(env.proc, 120)


def markdown(meta: dict, jobs: list, results: dict) -> str:
    def per(name):
        return results.get(name, {}).get("instructions_per_request")

    base, empty, ref0 = per("baseline"), per("empty_wasm"), per(REFERENCE_NONE)
    lines = [
        "# devgate: instructions per request in Envoy (callgrind)",
        "",
        f"- date: {meta['date']}",
        f"- Envoy: {meta['envoy_version']}; valgrind: {meta['valgrind_version']}",
        f"- devgate: {meta['devgate_revision']}, devgate.wasm {meta['devgate_wasm_bytes']} bytes",
        f"- command: `{meta['command']}`",
        f"- {meta['requests']} requests counted per variant after {meta['warmup']} (one keep-alive connection, "
        f"`GET /` from 127.0.0.1, the headers of the variant); run took {meta['elapsed_s']:.0f} s",
        "",
        "| variant | instructions/req | added over baseline | × empty filter's |",
        "|---|---:|---:|---:|",
    ]
    for job in jobs:
        if job["kind"] != "variant":
            continue
        r = results.get(job["name"], {})
        if "error" in r:
            lines.append(f"| {job['name']} | not measured: {r['error'].replace('|', '/')} | | |")
            continue
        x = r.get("instructions_per_request")
        if x is None:
            continue
        added = x - base if base is not None and job["name"] != "baseline" else None
        times = added / (empty - base) if added is not None and empty is not None and empty > base else None
        lines.append(f"| {job['name']} | {x:,.0f} | {'' if added is None else f'{added:+,.0f}'} | "
                     f"{'' if times is None else f'{times:.2f}'} |")
    prices = [j for j in jobs if j["kind"] == "price" and j["name"] != REFERENCE_NONE]
    if prices and ref0 is not None:
        lines += [
            "",
            "Host call prices: the reference filter making one call per request, minus the same filter making",
            f"none ({ref0:,.0f} instructions/req). A call that hands data to the filter also makes Envoy call",
            "back into the VM to allocate it; a request header edit also clears the route cache, so the router",
            "matches the route again.",
            "",
            "| host call | instructions/req |",
            "|---|---:|",
        ]
        for job in prices:
            x = per(job["name"])
            shown = "not measured" if x is None else f"{x - ref0:+,.0f}"
            lines.append(f"| {job['what']} (`{job['values']['REFERENCE_STEPS']}`) | {shown} |")
    if base is not None:
        added = {job["name"]: {"added_instructions": per(job["name"]) - base}
                 for job in jobs if job["kind"] == "variant" and per(job["name"]) is not None}
        lines += goals_markdown(added, "added_instructions", "instructions/req")
        lines += assertion_markdown(added, "added_instructions", "instructions/req")
        lines += side_by_side_markdown(
            {k: {"x": per(k), **v} for k, v in added.items()},
            lambda x: f"{x['x']:,.0f} ({x['added_instructions']:+,.0f})")
    lines += ["", "Variants: as in bench/out/results.md (bench/run.py); `make bench` measures their speed."]
    return "\n".join(lines) + "\n"


def main() -> int:
    t0 = time.monotonic()
    n = env_int("CALLS_REQUESTS", 1000, 10)
    warmup = env_int("CALLS_WARMUP", 200, 1)
    jobs_n = env_int("CALLS_JOBS", 2, 1)
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (make bench-calls installs valgrind)")
    envoy = envoy_binary()
    check_inputs()
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    # make bench's helpers write credentials and Envoy configs under this scratch directory.
    common.WORK = WORK
    # Everything runs under valgrind: the first request (V8 compiling a Wasm filter) can be slow.
    common.CHECK_TIMEOUT = 120.0
    creds = make_credentials()
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
    # The *_assertion_miss variants: one distinct assertion for the check and one per request.
    assertions = mint_assertions(creds["assertion_signer"], 1 + warmup + n)
    jobs = [{"name": v.name, "kind": "variant", "variant": v, "template": CONFIGS / v.config,
             "values": {**values, **v.values}, "check": True, "what": v.what}
            for v in variants(creds["token"], creds["api_key"], creds["assertion"]) + miss_variants(assertions)]
    for name, steps, what in PRICES:
        v = Variant(name, "reference.yaml", what, forged=False)
        jobs.append({"name": name, "kind": "price", "variant": v, "template": CONFIGS / "reference.yaml",
                     "values": {**values, "REFERENCE_STEPS": steps}, "check": False, "what": what})
    wanted = [x.strip() for x in os.environ.get("CALLS_VARIANTS", "").split(",") if x.strip()]
    if wanted:
        unknown = set(wanted) - {j["name"] for j in jobs}
        if unknown:
            raise BenchError(f"CALLS_VARIANTS: unknown {sorted(unknown)}; known: {[j['name'] for j in jobs]}")
        jobs = [j for j in jobs if j["name"] in wanted]
    check_inputs(native=any(j["variant"].native for j in jobs))
    build_filters()

    # Every CPU this process may use: counts do not depend on where the work runs.
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    upstream = start_envoy("upstream", CONFIGS / "upstream.yaml", values, cpus)
    results: dict = {}
    queue = list(jobs)
    lock = threading.Lock()
    failures: list = []

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop(0)
            try:
                job["values"]["UPSTREAM_PORT"] = upstream.port
                r = measure(job, envoy, n, warmup, cpus)
            except (BenchError, OSError, http.client.HTTPException, subprocess.SubprocessError) as e:
                r = {"error": str(e).splitlines()[0]}
                failures.append(job["name"])
            with lock:
                results[job["name"]] = r
                shown = (f"{r['instructions_per_request']:,.0f} instructions/req" if "error" not in r
                         else f"NOT MEASURED: {r['error']}")
                log(f"{job['name']}: {shown} ({len(results)}/{len(jobs)})")

    at_once = "one at a time" if jobs_n == 1 else f"{jobs_n} at a time"
    log(f"{len(jobs)} variants, {at_once}, {n} requests each after {warmup}")
    try:
        threads = [threading.Thread(target=worker) for _ in range(jobs_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop(upstream.proc)

    settings = {k: os.environ[k] for k in sorted(os.environ) if k.startswith("CALLS_")}
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "envoy_version": envoy_version(),
        "valgrind_version": command_version(["valgrind", "--version"]).strip(),
        "devgate_revision": git_revision(),
        "devgate_wasm_bytes": WASM.stat().st_size,
        "command": " ".join([f"{k}={v}" for k, v in settings.items()] + ["make bench-calls"]),
        "requests": n,
        "warmup": warmup,
        "elapsed_s": time.monotonic() - t0,
    }
    md = markdown(meta, jobs, results)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "calls.md").write_text(md)
    (OUT / "calls.json").write_text(json.dumps({
        "meta": meta,
        "results": results,
        "prices": {name: steps for name, steps, _ in PRICES},
    }, indent=1))
    print(md)
    log(f"written {OUT / 'calls.md'} and {OUT / 'calls.json'} ({meta['elapsed_s']:.0f} s)")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)

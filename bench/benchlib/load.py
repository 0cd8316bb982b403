"""The load: wrk against one variant, with the CPU time every process and core spent meanwhile, and
waiting for a quiet machine."""

from __future__ import annotations

import re
import resource
import subprocess
import time
from dataclasses import dataclass

from benchlib.common import NOISY_PCT, BenchError, log
from benchlib.processes import Envoy, core_times, core_usage, die_with_parent, proc_cpu_seconds
from benchlib.variants import Variant


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", out, re.M)
    if not m:
        raise BenchError(f"cannot read wrk output:\n{out}")
    res["requests"] = int(m.group(1))
    res["seconds"] = _ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    res["rps"] = float(m.group(1)) if m else res["requests"] / res["seconds"]
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    res["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


@dataclass
class Setup:
    wrk: str
    connections: int
    envoy_cpu: str
    load_cpu: str
    upstream_cpu: str
    upstream: Envoy

    @property
    def cpus(self) -> list[int]:
        return sorted({int(self.envoy_cpu), int(self.load_cpu), int(self.upstream_cpu)})


def other_load(envoys: list[Envoy], cpus: list[int], seconds: float = 1.0) -> float:
    """Percent of `cpus` that processes other than ours used over the next `seconds`."""
    def ours() -> float:
        return sum(proc_cpu_seconds(e.proc.pid) for e in envoys if e.proc.poll() is None)

    c0, o0, t0 = core_times(), ours(), time.monotonic()
    time.sleep(seconds)
    c1, o1, wall = core_times(), ours(), time.monotonic() - t0
    return max(0.0, 100.0 * (core_usage(c0, c1, cpus)["process_s"] - (o1 - o0)) / (wall * len(cpus)))


def wait_quiet(s: Setup, envoys: list[Envoy], max_wait: float) -> None:
    """With BENCH_QUIET_WAIT: wait (at most max_wait seconds) until other processes leave the
    benchmark's CPUs alone, so that a build or a test suite elsewhere does not end up in the numbers."""
    if max_wait <= 0:
        return
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        busy = other_load(envoys, s.cpus, 0.5)
        if busy < NOISY_PCT:
            return
        if time.monotonic() >= deadline:
            log(f"other processes still use {busy:.0f}% of the CPUs after {max_wait:.0f} s: measuring anyway")
            return
        if not said:
            log(f"waiting up to {max_wait:.0f} s for other processes to quieten ({busy:.0f}% of the CPUs)")
            said = True


def run_load(s: Setup, v: Variant, env: Envoy, seconds: int) -> dict:
    """One wrk run against one variant, with the CPU it cost every process and core."""
    cmd = ["taskset", "-c", s.load_cpu, s.wrk, "-t1", f"-c{s.connections}", f"-d{seconds}s", "--latency",
           "--timeout", "2s"]
    for k, val in v.headers:
        cmd += ["-H", f"{k}: {val}"]
    cmd.append(f"http://127.0.0.1:{env.port}/")
    cx0 = env.counter("http.bench.downstream_cx_total")
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cores0, envoy0, up0 = core_times(), proc_cpu_seconds(env.proc.pid), proc_cpu_seconds(s.upstream.proc.pid)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=die_with_parent)
    try:
        out, _ = proc.communicate(timeout=seconds + 30)  # wrk stops itself; this bounds a hang
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"wrk against {v.name} did not finish within {seconds + 30}s") from None
    wall = time.monotonic() - t0
    envoy1, up1, cores1 = proc_cpu_seconds(env.proc.pid), proc_cpu_seconds(s.upstream.proc.pid), core_times()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, reaped by communicate()
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}) against {v.name}:\n{out}")
    res = parse_wrk(out)
    res["new_connections"] = env.counter("http.bench.downstream_cx_total") - cx0
    n = max(res["requests"], 1)
    res["envoy_cpu_s"] = envoy1 - envoy0
    res["envoy_cpu_us_per_req"] = (envoy1 - envoy0) / n * 1e6
    res["upstream_cpu_us_per_req"] = (up1 - up0) / n * 1e6
    res["wall_s"] = wall
    res["envoy_busy_pct"] = 100.0 * (envoy1 - envoy0) / wall
    wrk_s = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    res["wrk_cpu_s"] = wrk_s
    res["upstream_cpu_s"] = up1 - up0
    # Everything else that ran on the two cores meanwhile: other processes (a build, a test run) and
    # the hypervisor (steal). Loopback TCP work done in softirq is not charged to any process, so it
    # is reported apart and not counted as noise.
    cpus = s.cpus
    u = core_usage(cores0, cores1, cpus)
    ours = (envoy1 - envoy0) + (up1 - up0) + wrk_s
    res["other_process_pct"] = max(0.0, 100.0 * (u["process_s"] - ours) / (wall * len(cpus)))
    res["steal_pct"] = 100.0 * u["steal_s"] / (wall * len(cpus))
    res["softirq_pct"] = 100.0 * u["softirq_s"] / (wall * len(cpus))
    e = core_usage(cores0, cores1, [int(s.envoy_cpu)])
    res["envoy_core_busy_pct"] = 100.0 * e["busy_s"] / e["total_s"] if e["total_s"] else None
    bad = res["requests"] - res["non_2xx_3xx"] if v.status >= 300 else res["non_2xx_3xx"]
    res["wrong_status"] = bad
    return res

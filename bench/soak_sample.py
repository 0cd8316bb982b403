"""Sampling the Envoy under load: its process (same PID and start time, RSS, threads, CPU), its
stats (heap, uptime, requests), and on the Wasm host the VMs' linear memories. bench/soak.py describes
the soak."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from soak_common import CLK_TCK, NATIVE, SoakError, harness

def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields from the third (state) on."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def start_time(pid: int) -> int:
    """When the process started, in clock ticks since boot (a new process behind the PID differs)."""
    return int(proc_stat(pid)[19])  # field 22: starttime, in clock ticks since boot


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time, in seconds."""
    f = proc_stat(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK


def worker_threads_cpu(pid: int) -> float:
    """utime+stime of Envoy's worker threads (comm `wrk:worker_N`), in seconds."""
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        if comm.startswith("wrk:worker"):
            fields = text[text.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def proc_status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (`VmRSS` in bytes, `Threads` as is)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                value = line.split()
                return int(value[1]) * (1024 if len(value) > 2 and value[2] == "kB" else 1)
    raise SoakError(f"no {field} for {pid}")


def vm_rss(pid: int) -> int:
    """The process's resident memory in bytes (VmRSS)."""
    return proc_status(pid, "VmRSS")


def wasm_memories(pid: int) -> list[tuple[int, int]]:
    """[(size, rss)] in bytes of each Wasm VM's linear memory, from /proc/PID/smaps.

    Envoy 1.40 publishes no memory figure per Wasm VM in /stats (only `wasm.wasm_vm_count` and
    `wasm.envoy.wasm.runtime.v8.{active,created}`), so this reads the mappings: V8 reserves each
    Wasm memory as one 8 GiB PROT_NONE region (guard pages for bounds-check elimination) and makes
    its first `memory.size` bytes read-write, which the kernel shows as an anonymous rw-p mapping
    directly followed by the rest of the reservation (---p, gigabytes). The rw-p part's Size is the
    linear memory's size (it grows with `memory.grow`, in 64 KiB pages, and never shrinks); its Rss
    the part touched. The caller checks the count against `wasm.wasm_vm_count`."""
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$", line)
            if m:
                cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16), "perm": m.group(3),
                       "inode": int(m.group(4)), "name": m.group(5).strip(), "rss": 0}
                maps.append(cur)
            elif line.startswith("Rss:") and cur is not None:
                cur["rss"] = int(line.split()[1]) * 1024
    out = []
    for a, b in zip(maps, maps[1:]):
        if (a["perm"] == "rw-p" and not a["name"] and a["inode"] == 0 and b["perm"] == "---p"
                and b["start"] == a["end"] and b["end"] - b["start"] >= 4 << 30):
            out.append((a["end"] - a["start"], a["rss"]))
    return out


@dataclass
class Sample:
    """One reading of the Envoy under load."""

    t: float  # seconds since the load started
    requests: int  # answers the driver counted so far (its progress reports, up to a second late)
    rq_total: int  # http.e2e.downstream_rq_total: every request Envoy took, setup included
    rps: float  # Envoy's downstream requests per second since the previous sample
    rss: int
    heap: int  # server.memory_allocated
    heap_size: int  # server.memory_heap_size
    threads: int  # Envoy's threads (/proc/PID/status Threads): natively, the module's among them
    wasm_size: int  # sum of the VMs' linear memory sizes (0 natively: no VM)
    wasm_rss: int
    wasm_vms: int  # linear memories found in smaps
    vm_count: int  # wasm.wasm_vm_count
    envoy_cpu_pct: float  # whole process, % of one core, since the previous sample
    worker_cpu_pct: float  # Envoy's worker thread(s)
    host_busy_pct: float  # every CPU of the machine, all processes
    uptime: int
    cx_active: int


SAMPLE_STATS = ("server.memory_allocated", "server.memory_heap_size", "server.uptime", "wasm.wasm_vm_count",
                "http.e2e.downstream_cx_active", "http.e2e.downstream_rq_total")


def host_cpu_seconds(before: tuple, after: tuple, i: int) -> float:
    """Seconds (all CPUs) between two host_cpu() readings: i=0 busy, 2 in processes, 3 in (soft)irq."""
    return (after[i] - before[i]) / CLK_TCK


def host_cpu() -> tuple[int, int, int, int]:
    """(busy, total, user+nice+system, irq+softirq) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v), v[0] + v[1] + v[2], v[5] + v[6]


class Sampler:
    """Samples one Envoy process and notices when it is not the same process any more."""

    def __init__(self, env: harness.Envoy):
        self.env = env
        self.pid = env.proc.pid
        self.start_time = start_time(self.pid)
        self.exe = os.readlink(f"/proc/{self.pid}/exe")
        self.samples: list[Sample] = []
        self.problems: list[str] = []
        self.prev = None
        self.last_cpu = (0.0, 0.0)

    def stats(self, names) -> dict:
        """The named stats ({name: value}; 0 for one Envoy does not have)."""
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        got = self.env.counters(pattern)
        return {n: got.get(n, 0) for n in names}

    def alive(self) -> str | None:
        """None while the same Envoy process runs, else what happened."""
        code = self.env.proc.poll()
        if code is not None:
            return f"Envoy exited with {code}"
        try:
            if start_time(self.pid) != self.start_time:
                return f"PID {self.pid} is now another process"
        except OSError:
            return f"PID {self.pid} is gone"
        return None

    def cpu(self) -> tuple[float, float, tuple[int, int]]:
        """(Envoy's CPU seconds, its worker threads' CPU seconds, host_cpu()); once Envoy is gone,
        its last known figures."""
        try:
            self.last_cpu = (cpu_seconds(self.pid), worker_threads_cpu(self.pid))
        except (OSError, ValueError):
            pass
        return (*self.last_cpu, host_cpu())

    def take(self, t: float, requests: int) -> Sample | None:
        """A sample at `t` s into the load, or None (and a problem recorded) if Envoy is gone."""
        gone = self.alive()
        if gone:
            self.problems.append(f"t={t:.0f}s: {gone}")
            return None
        now = time.monotonic()
        cpu, wcpu, host = cpu_seconds(self.pid), worker_threads_cpu(self.pid), host_cpu()
        st = self.stats(SAMPLE_STATS)
        wm = [] if NATIVE else wasm_memories(self.pid)
        rq = st["http.e2e.downstream_rq_total"]
        if self.prev is None:
            rps = cpu_pct = wcpu_pct = host_pct = 0.0
        else:
            p_now, p_rq, p_cpu, p_wcpu, p_host = self.prev
            dt = max(now - p_now, 1e-6)
            rps = (rq - p_rq) / dt
            cpu_pct = 100.0 * (cpu - p_cpu) / dt
            wcpu_pct = 100.0 * (wcpu - p_wcpu) / dt
            host_pct = 100.0 * (host[0] - p_host[0]) / max(host[1] - p_host[1], 1)
        self.prev = (now, rq, cpu, wcpu, host)
        s = Sample(t=t, requests=requests, rq_total=rq, rps=rps, rss=vm_rss(self.pid), heap=st["server.memory_allocated"],
                   heap_size=st["server.memory_heap_size"], threads=proc_status(self.pid, "Threads"), wasm_size=sum(x for x, _ in wm),
                   wasm_rss=sum(x for _, x in wm), wasm_vms=len(wm), vm_count=st["wasm.wasm_vm_count"],
                   envoy_cpu_pct=cpu_pct, worker_cpu_pct=wcpu_pct, host_busy_pct=host_pct,
                   uptime=st["server.uptime"], cx_active=st["http.e2e.downstream_cx_active"])
        if self.samples and s.uptime < self.samples[-1].uptime:
            self.problems.append(f"t={t:.0f}s: server.uptime went back from {self.samples[-1].uptime} to "
                                 f"{s.uptime}: Envoy restarted")
        self.samples.append(s)
        return s


def mib(n: float) -> str:
    """Bytes as MiB, one decimal."""
    return f"{n / (1 << 20):.1f}"


# The time series' columns (the Wasm VMs' only on that host).
SAMPLE_HEADER = ("| t s | req/s | Envoy RSS MiB | heap in use MiB | threads | "
                 + ("" if NATIVE else "Wasm linear mem KiB (VMs) | Wasm RSS KiB | ")
                 + "Envoy CPU % | worker CPU % | host busy % | conns |")
SAMPLE_ALIGN = "|" + "---:|" * SAMPLE_HEADER.count(" |")


def sample_row(s: Sample) -> str:
    """One line of the time series."""
    wasm = "" if NATIVE else f"{s.wasm_size // 1024} ({s.wasm_vms}) | {s.wasm_rss // 1024} | "
    return (f"| {s.t:.0f} | {s.rps:.0f} | {mib(s.rss)} | {mib(s.heap)} | {s.threads} | {wasm}"
            f"{s.envoy_cpu_pct:.0f} | {s.worker_cpu_pct:.0f} | {s.host_busy_pct:.0f} | {s.cx_active} |")

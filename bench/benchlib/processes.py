"""Envoy processes: starting one on kernel-chosen ports, asking its admin endpoint, stopping it,
and the CPU time processes and cores spent."""

from __future__ import annotations

import ctypes
import http.client
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import common
from benchlib.common import CLK_TCK, ENVOY, REPO, STARTUP_TIMEOUT, BenchError


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    # If this script dies (even by SIGKILL), the kernel stops its Envoys and wrk too.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; fields[0] is the state
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def core_times() -> dict[int, list[int]]:
    """{cpu: [user, nice, system, idle, iowait, irq, softirq, steal]} in jiffies, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+)\s+(.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()][:8]
                out[int(m.group(1))] = v + [0] * (8 - len(v))
    return out


def core_usage(before: dict, after: dict, cpus: list[int]) -> dict:
    """Seconds of process time (user+nice+system), softirq, steal and total on `cpus` between two
    core_times() samples."""
    d = [sum(after[c][i] - before[c][i] for c in cpus if c in before and c in after) for i in range(8)]
    return {
        "busy_s": (sum(d) - d[3] - d[4]) / CLK_TCK,
        "process_s": (d[0] + d[1] + d[2]) / CLK_TCK,
        "softirq_s": (d[5] + d[6]) / CLK_TCK,
        "steal_s": d[7] / CLK_TCK,
        "total_s": sum(d) / CLK_TCK,
    }


@dataclass
class Envoy:
    name: str
    proc: subprocess.Popen
    workdir: Path
    admin_port: int = 0
    port: int = 0

    def admin(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def counter(self, name: str) -> int:
        text = self.admin(f"/stats?filter=^{re.escape(name)}$")
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == name and v.strip().isdigit():
                return int(v)
        return 0

    def log_tail(self, n: int = 4000) -> str:
        text = ""
        for p in (self.workdir / "envoy.log", self.workdir / "envoy.stderr"):
            if p.exists():
                text += p.read_text(errors="replace")
        return text[-n:]


WASM_TROUBLE = re.compile(r"panicked|wasm trap|VM failed|proxy_on_\w+ failed|wasm_fail|devgate: panic",
                          re.IGNORECASE)


def wasm_trouble(env: Envoy) -> list[str]:
    """Evidence that a Wasm VM trapped (FAIL_RELOAD then reloads it): non-zero vm_reload counters,
    log lines. Empty when healthy, and always for variants without Wasm."""
    found = []
    for line in env.admin("/stats?filter=vm_reload").splitlines():
        name, _, value = line.partition(":")
        if value.strip().isdigit() and int(value) != 0:
            found.append(f"{name.strip()} = {value.strip()}")
    found += [x for x in env.log_tail(100000).splitlines() if WASM_TROUBLE.search(x)]
    return found


def render(template: Path, values: dict, dest: Path) -> Path:
    text = template.read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    left = sorted(set(re.findall(r"\{\{([A-Z_]+)\}\}", text)))
    if left:
        raise BenchError(f"{template}: no value for {', '.join(left)}")
    dest.write_text(text)
    return dest


def start_envoy(name: str, template: Path, values: dict, cpu: str, wrapper: tuple = (),
                envoy: Path = ENVOY, timeout: float = STARTUP_TIMEOUT, env: dict | None = None) -> Envoy:
    """Start an Envoy pinned to `cpu` on ports chosen by the kernel; return once it serves.
    `wrapper` runs it under another program (bench/calls.py: valgrind), with `envoy` the
    executable itself and `timeout` the wait for it to serve; `env` its process environment
    (None: this script's)."""
    workdir = common.WORK / name
    workdir.mkdir(parents=True)
    cfg = render(template, {"ADMIN_PORT": 0, "LISTEN_PORT": 0, **values}, workdir / template.name)
    admin_file = workdir / "admin-address"
    cmd = [
        "taskset", "-c", cpu, *wrapper, str(envoy), "-c", str(cfg),
        "--concurrency", "1",
        "--disable-hot-restart",  # no shared memory: never collides with another Envoy
        "-l", "warning", "--log-path", str(workdir / "envoy.log"),
        "--admin-address-path", str(admin_file),
    ]
    with open(workdir / "envoy.stderr", "wb") as err:
        # taskset and .venv/bin/envoy both exec, so proc.pid is Envoy's pid.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=str(REPO),
                                env=env, preexec_fn=die_with_parent)
    env = Envoy(name, proc, workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if not env.admin_port and admin_file.exists() and admin_file.read_text().strip():
                env.admin_port = int(admin_file.read_text().strip().rsplit(":", 1)[1])
            if env.admin_port and env.admin("/ready").strip() == "LIVE":
                listeners = json.loads(env.admin("/listeners?format=json"))
                for ls in listeners.get("listener_statuses", []):
                    env.port = int(ls["local_address"]["socket_address"]["port_value"])
                if env.port:
                    return env
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            pass
        time.sleep(0.05)
    code = proc.poll()
    stop(proc)
    raise BenchError(f"Envoy for {name} did not start (exit code {code}); config {cfg}; log:\n{env.log_tail()}")

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
  DEVGATE_WASM, DEVGATE_ENVOY, DEVGATE_CLI   as for the tests (default: the repository's build outputs)

Needs: `make build cli venv` done, Rust's wasm32-wasip1 target (for bench/empty-filter), and wrk
(installed with apt-get when missing and running as root). Python standard library only.
"""

from __future__ import annotations

import base64
import ctypes
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
CONFIGS = REPO / "envoy" / "bench"
OUT = BENCH / "out"
WORK = OUT / "run"  # per-run scratch: rendered configs, Envoy logs, the key (recreated every run)
EMPTY_CRATE = BENCH / "empty-filter"
EMPTY_TARGET = EMPTY_CRATE / "target"
EMPTY_WASM = EMPTY_TARGET / "wasm32-wasip1" / "release" / "devgate_bench_empty_filter.wasm"
REFERENCE_CRATE = BENCH / "reference-filter"
REFERENCE_TARGET = REFERENCE_CRATE / "target"
REFERENCE_WASM = REFERENCE_TARGET / "wasm32-wasip1" / "release" / "devgate_bench_reference_filter.wasm"

WASM = Path(os.environ.get("DEVGATE_WASM") or REPO / "target" / "wasm32-wasip1" / "release" / "devgate.wasm")
# The native Envoy dynamic module (`make build-native`) and its test build (`make fault-native`: the
# native_noop variant's `filter_config: "noop"` exists only there, never in the shipped module).
NATIVE = Path(os.environ.get("DEVGATE_NATIVE") or REPO / "target" / "native" / "libdevgate.so")
TEST_NATIVE = Path(os.environ.get("DEVGATE_FAULT_NATIVE")
                   or REPO / "target" / "fault-native" / "native" / "libdevgate.so")
ENVOY = Path(os.environ.get("DEVGATE_ENVOY") or REPO / ".venv" / "bin" / "envoy")
CLI = Path(os.environ.get("DEVGATE_CLI") or REPO / "target" / "release" / "devgate")

IDENTITY = "x-wsgiorg-developer-user"
CHALLENGE = "x-wsgiorg.developer_user"
CHECK_PATH = "/__bench_check"  # the upstream reports what it received on this path only
BASIC_USER, BASIC_PASSWORD = "bench", "bench-password"
TOKEN_SUB = "bench"
KEY_ENV = "DEVGATE_BENCH_K1"  # the name devgate_tokens.yaml reads the secret from
# The name the native variants' configs read it from, in Envoy's process environment (the name the
# repository's example configs use, so that `make unit`'s check of every shipped config resolves it).
NATIVE_KEY_ENV = "DEVGATE_K1"

STARTUP_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY_PCT = 5.0  # other processes above this share of the CPUs: the report says the run was noisy


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r}: not an integer") from None
    if value < minimum:
        raise BenchError(f"{name}={value}: must be at least {minimum}")
    return value


# --------------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    config: str  # file under envoy/bench/
    what: str  # one line for the report
    headers: list = field(default_factory=list)  # [(name, value)] on every request (filled in later)
    status: int = 200  # every response must have it
    identity: str | None = None  # the identity header the upstream must receive (None: none)
    # The check request also carries a forged identity header, which the filter must replace.
    forged: bool = True
    # The check also sends one request without the variant's credential, which must get 401.
    needs_credential: bool = False
    # Template values of this variant's config only (the reference filter's steps).
    values: dict = field(default_factory=dict)
    # devgate as a native dynamic module: it reads `secret_env` from Envoy's process environment (no
    # VM environment), so this variant's Envoy, and only it, gets the run's key there.
    native: bool = False


# The reference filter's steps (bench/reference-filter): the host calls devgate's network path cannot
# do without (read the headers, which it must search for the path, credentials and every spelling of
# the identity header; read the peer; set the identity), and the straightforward filter of issue #7
# (the peer, two headers, one header set).
WASM_MINIMUM = "pairs peer set:x-wsgiorg-developer-user=127.0.0.1"
NAIVE_WASM = "peer header:authorization header:cookie set:x-wsgiorg-developer-user=127.0.0.1"


def variants(token: str, api_key: str) -> list[Variant]:
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    return [
        Variant("baseline", "baseline.yaml", "no filter (router only)", forged=False),
        Variant("devgate_network", "devgate_network.yaml",
                "devgate, peer 127.0.0.1 is a network developer, protect /", identity="127.0.0.1"),
        Variant("devgate_bearer", "devgate_tokens.yaml",
                "devgate, outsider with Authorization: Bearer <devgate token>",
                headers=[("Authorization", f"Bearer {token}")], identity=TOKEN_SUB, needs_credential=True),
        Variant("devgate_cookie", "devgate_tokens.yaml",
                "devgate, outsider with Cookie: devgate_token=<devgate token>",
                headers=[("Cookie", f"devgate_token={token}")], identity=TOKEN_SUB, needs_credential=True),
        Variant("devgate_deny", "devgate_tokens.yaml",
                "devgate, outsider without credentials: 401 challenge", status=401),
        Variant("devgate_api_key", "devgate_api.yaml",
                "devgate, outsider with X-Api-Key: <private API key> on an API route",
                headers=[("X-Api-Key", api_key)], needs_credential=True),
        Variant("empty_wasm", "empty_wasm.yaml", "proxy-wasm filter that does nothing (V8)", forged=False),
        Variant("wasm_minimum", "reference.yaml",
                "proxy-wasm filter making only the host calls devgate's network path cannot avoid: "
                "all request headers, the peer, set the identity", identity="127.0.0.1",
                values={"REFERENCE_STEPS": WASM_MINIMUM}),
        Variant("naive_wasm", "reference.yaml",
                "proxy-wasm filter reading the peer and two headers, setting one (issue #7's naive filter)",
                identity="127.0.0.1", values={"REFERENCE_STEPS": NAIVE_WASM}),
        Variant("basic_auth", "basic_auth.yaml", "envoy.filters.http.basic_auth, {SHA} user",
                headers=[("Authorization", f"Basic {basic}")], identity=BASIC_USER, needs_credential=True),
        Variant("jwt_authn", "jwt_authn.yaml", "envoy.filters.http.jwt_authn, same HS256 token, inline oct JWKS",
                headers=[("Authorization", f"Bearer {token}")], identity=TOKEN_SUB, needs_credential=True),
        Variant("lua", "lua.yaml", "envoy.filters.http.lua doing devgate's network path", identity="127.0.0.1"),
        # devgate as a native Envoy dynamic module (libdevgate.so): the same policies as the devgate_*
        # variants above, the same requests, the same checks.
        Variant("native_network", "native_network.yaml",
                "devgate native module, peer 127.0.0.1 is a network developer, protect /",
                identity="127.0.0.1", native=True),
        Variant("native_bearer", "native_tokens.yaml",
                "devgate native module, outsider with Authorization: Bearer <devgate token>",
                headers=[("Authorization", f"Bearer {token}")], identity=TOKEN_SUB, needs_credential=True,
                native=True),
        Variant("native_cookie", "native_tokens.yaml",
                "devgate native module, outsider with Cookie: devgate_token=<devgate token>",
                headers=[("Cookie", f"devgate_token={token}")], identity=TOKEN_SUB, needs_credential=True,
                native=True),
        Variant("native_deny", "native_tokens.yaml",
                "devgate native module, outsider without credentials: 401 challenge", status=401, native=True),
        Variant("native_api_key", "native_api.yaml",
                "devgate native module, outsider with X-Api-Key: <private API key> on an API route",
                headers=[("X-Api-Key", api_key)], needs_credential=True, native=True),
        Variant("native_noop", "native_noop.yaml",
                "devgate's native module doing nothing (test build, filter_name devgate-noop): the fixed cost "
                "of an extra dynamic-module filter", forged=False, native=True),
    ]


def process_env(v: Variant, values: dict) -> dict | None:
    """Envoy's process environment for variant `v`: the run's key for a native devgate (which reads
    `secret_env` there), nothing added for the others."""
    if not v.native:
        return None
    return {**os.environ, NATIVE_KEY_ENV: str(values["DEVGATE_KEY"])}


# The issue's goals for the native module (issue #17), checked against the same run: the variant, the
# anchor it is compared with, and what each figure must be.
NATIVE_GOALS = [
    # (variant, minimum x baseline, anchor variant, max ratio of added work to the anchor's, note)
    ("native_network", 0.90, "basic_auth", 1.5, "and within 0.05 of basic_auth's x baseline"),
    ("native_bearer", 0.85, "jwt_authn", 0.5, ""),
    ("native_cookie", 0.85, "jwt_authn", 0.5, ""),
    ("native_api_key", 0.85, None, None, ""),
]


def goals_markdown(summary: dict, added_key: str, unit: str) -> list[str]:
    """The native goals next to this run's figures (`added_key`: the summary's added-work figure)."""
    rows = []
    for name, min_ratio, anchor, max_times, note in NATIVE_GOALS:
        x = summary.get(name)
        if not x:
            continue
        ratio = x.get("ratio")
        cells = [name]
        if ratio is not None:
            ok = ratio >= min_ratio
            if name == "native_network" and summary.get("basic_auth", {}).get("ratio") is not None:
                ok = ok and ratio >= summary["basic_auth"]["ratio"] - 0.05
            cells.append(f"{ratio:.3f} (goal ≥ {min_ratio:.2f}{' ' + note if note else ''}): "
                         f"{'met' if ok else 'NOT met'}")
        else:
            cells.append("–")
        a = summary.get(anchor, {}) if anchor else {}
        # An anchor whose added work is within noise of zero (timed runs) gives no ratio.
        if anchor and x.get(added_key) is not None and (a.get(added_key) or 0) > 0:
            times = x[added_key] / a[added_key]
            shown = f"{x[added_key]:+,.0f}" if unit.startswith("instructions") else f"{x[added_key]:+.1f}"
            cells.append(f"{shown} {unit} = {times:.2f} × {anchor}'s "
                         f"(goal ≤ {max_times:g}): {'met' if times <= max_times else 'NOT met'}")
        else:
            cells.append("–")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["", "Native module goals (issue #17), this run:", "",
            "| variant | × baseline | added work vs anchor |", "|---|---|---|"] + rows


# Each devgate path as (what, Wasm variant, native variant); the anchors beside them.
PATHS = [
    ("network developer", "devgate_network", "native_network"),
    ("Bearer token", "devgate_bearer", "native_bearer"),
    ("cookie token", "devgate_cookie", "native_cookie"),
    ("private API key", "devgate_api_key", "native_api_key"),
    ("401 (answered without the upstream)", "devgate_deny", "native_deny"),
]
ANCHORS = [
    ("no filter (the baseline)", "baseline", "baseline"),
    ("no-op filter: empty proxy-wasm (Wasm column), devgate-noop (native column)", "empty_wasm", "native_noop"),
    ("Envoy `basic_auth` (anchor, no devgate)", "basic_auth", "basic_auth"),
    ("Envoy `jwt_authn`, same HS256 token (anchor, no devgate)", "jwt_authn", "jwt_authn"),
]


def side_by_side_markdown(summary: dict, cell) -> list[str]:
    """Both builds per path in one table, with the anchors, from this run's `summary`
    (`cell(x)` formats one variant's figures; a variant not in this run shows a dash)."""
    rows = []
    for what, wasm, native in ANCHORS + PATHS:
        if wasm not in summary and native not in summary:
            continue
        shown = [cell(summary[v]) if v in summary else "–" for v in (wasm, native)]
        bold = "" if (wasm, native) in [(w, n) for _, w, n in ANCHORS] else "**"
        rows.append(f"| {bold}{what}{bold} | {shown[0]} | {shown[1]} |")
    if not rows:
        return []
    return ["", "Both builds side by side, this run:", "",
            "| path | Wasm (`devgate.wasm`) | native (`libdevgate.so`) |", "|---|---:|---:|"] + rows


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
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
    workdir = WORK / name
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
                                env=env, preexec_fn=_die_with_parent)
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


# --------------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk is not installed; installing it with apt-get (Debian package wrk)")
    if os.geteuid() != 0:
        raise BenchError("wrk is missing and this is not root: install it (apt-get install -y wrk) and rerun")
    try:
        subprocess.run(["apt-get", "update"], check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.SubprocessError) as e:
        raise BenchError(f"could not install wrk with apt-get ({e}); install it by hand and rerun") from None
    path = shutil.which("wrk")
    if not path:
        raise BenchError("apt-get install wrk succeeded but there is still no wrk on PATH")
    return path


def build_filters() -> None:
    """The empty filter (empty_wasm) and the reference filter (wasm_minimum, naive_wasm, bench-calls)."""
    for crate, target, wasm, what in ((EMPTY_CRATE, EMPTY_TARGET, EMPTY_WASM, "the empty_wasm variant"),
                                      (REFERENCE_CRATE, REFERENCE_TARGET, REFERENCE_WASM, "the reference variants")):
        log(f"building bench/{crate.name} ({what})")
        cmd = ["cargo", "build", "--release", "--target", "wasm32-wasip1", "--quiet",
               "--manifest-path", str(crate / "Cargo.toml"), "--target-dir", str(target)]
        r = subprocess.run(cmd, cwd=str(crate), timeout=900)
        if r.returncode != 0 or not wasm.is_file():
            raise BenchError(f"building bench/{crate.name} failed: {shlex.join(cmd)} "
                             "(is the wasm32-wasip1 target installed? `make toolchain` adds it)")

def check_inputs(native: bool = False) -> None:
    """Everything the run needs is there (`native`: some variant runs the native module)."""
    missing = []
    if not WASM.is_file():
        missing.append(f"devgate.wasm ({WASM}): run `make build`")
    if native and not NATIVE.is_file():
        missing.append(f"libdevgate.so ({NATIVE}): run `make build-native`")
    if native and not TEST_NATIVE.is_file():
        missing.append(f"the test build of libdevgate.so ({TEST_NATIVE}): run `make fault-native`")
    if not (ENVOY.is_file() and os.access(ENVOY, os.X_OK)):
        missing.append(f"envoy ({ENVOY}): run `make venv`")
    if not (CLI.is_file() and os.access(CLI, os.X_OK)):
        missing.append(f"the devgate CLI ({CLI}): run `make cli`")
    if not shutil.which("taskset"):
        missing.append("taskset (util-linux)")
    if missing:
        raise BenchError("missing: " + "; ".join(missing))


def cli(*args: str) -> str:
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise BenchError(f"devgate {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def make_credentials() -> dict:
    """A fresh key (devgate keygen), a token for it (devgate mint), the htpasswd line."""
    key_file = WORK / "k1.key"
    cli("keygen", "--out", str(key_file))
    key = key_file.read_text().strip()
    token = cli("mint", "--sub", TOKEN_SUB, "--ttl", "1h", "--kid", "k1", "--key-file", str(key_file))
    api_key = cli("mint-key", "--kind", "private", "--org", "bench", "--project", "bench", "--product", "bench",
                  "--id", "bench-key", "--ttl", "1h", "--kid", "k1", "--key-file", str(key_file))
    sha = base64.b64encode(hashlib.sha1(BASIC_PASSWORD.encode()).digest()).decode()
    return {"key": key, "token": token, "api_key": api_key, "htpasswd": f"{BASIC_USER}:{{SHA}}{sha}"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_version(cmd: list[str]) -> str:
    """What `cmd` prints (stdout and stderr), or "" if it cannot run."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout + r.stderr


def envoy_version() -> str:
    m = re.search(r"version:\s*(\S+)", command_version([str(ENVOY), "--version"]))
    return m.group(1) if m else "unknown"


def wrk_version(wrk: str) -> str:
    m = re.search(r"^(wrk \S+)", command_version([wrk, "--version"]), re.M)
    return m.group(1) if m else "unknown"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=str(REPO), timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                               capture_output=True, text=True, cwd=str(REPO), timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" (src modified)" if dirty else "")


# --------------------------------------------------------------------------------------------------
# Correctness
# --------------------------------------------------------------------------------------------------


# Seconds the correctness check waits for an answer (bench/calls.py raises it: under valgrind, V8's
# first compilation of a Wasm filter can take longer on a busy machine).
CHECK_TIMEOUT = 10.0


def one_request(port: int, headers: list) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CHECK_TIMEOUT)
    try:
        conn.request("GET", CHECK_PATH, headers=dict(headers))
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def check_variant(v: Variant, port: int) -> list[str]:
    """What is wrong with this variant's answers (empty: it does what it claims)."""
    try:
        return _check_variant(v, port)
    except (OSError, http.client.HTTPException) as e:
        return [f"check request failed: {e!r}"]


def _check_variant(v: Variant, port: int) -> list[str]:
    problems = []
    headers = list(v.headers)
    if v.forged:
        headers.append((IDENTITY, "forged"))
    status, got = one_request(port, headers)
    if status != v.status:
        problems.append(f"status {status}, expected {v.status}")
    elif status == 200:
        ident = got.get("x-bench-identity")
        if ident != v.identity:
            problems.append(f"upstream received {IDENTITY}: {ident!r}, expected {v.identity!r}")
    elif status == 401 and got.get("www-authenticate") != CHALLENGE:
        problems.append(f"401 without the challenge (www-authenticate: {got.get('www-authenticate')!r})")
    if v.needs_credential:
        status, _ = one_request(port, [(IDENTITY, "forged")])
        if status != 401:
            problems.append(f"without the credential: status {status}, expected 401")
    return problems


# --------------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------------

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
                            preexec_fn=_die_with_parent)
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


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def med(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(names: list[str], rounds: list[dict]) -> dict:
    out = {}
    for name in names:
        runs = [r[name] for r in rounds if name in r]
        ratios = [r[name]["rps"] / r["baseline"]["rps"] for r in rounds if name in r and r["baseline"]["rps"]]
        added = [r[name]["envoy_cpu_us_per_req"] - r["baseline"]["envoy_cpu_us_per_req"] for r in rounds if name in r]
        out[name] = {
            "rps": med([x["rps"] for x in runs]),
            "rps_rounds": [round(x["rps"]) for x in runs],
            "ratio": med(ratios),
            "ratio_min": min(ratios) if ratios else None,
            "ratio_max": max(ratios) if ratios else None,
            "p50_ms": med([x["p50_ms"] for x in runs]),
            "p99_ms": med([x["p99_ms"] for x in runs]),
            "envoy_cpu_us_per_req": med([x["envoy_cpu_us_per_req"] for x in runs]),
            "added_cpu_us_per_req": med(added),
            "upstream_cpu_us_per_req": med([x["upstream_cpu_us_per_req"] for x in runs]),
            "envoy_busy_pct": med([x["envoy_busy_pct"] for x in runs]),
            "envoy_core_busy_pct": med([x["envoy_core_busy_pct"] for x in runs]),
            "wrk_cpu_us_per_req": med([x["wrk_cpu_s"] / max(x["requests"], 1) * 1e6 for x in runs]),
            "other_process_pct": med([x["other_process_pct"] for x in runs]),
            "other_process_pct_max": max(x["other_process_pct"] for x in runs),
            "steal_pct": med([x["steal_pct"] for x in runs]),
            "new_connections": med([x["new_connections"] for x in runs]),
            "wrong_status": sum(x["wrong_status"] for x in runs),
            "socket_errors": sum(x["socket_errors"] for x in runs),
        }
    return out


def fmt(x, spec: str, dash: str = "–") -> str:
    return dash if x is None else format(x, spec)


def markdown(meta: dict, vs: list[Variant], summary: dict, broken: dict) -> str:
    others = [x["other_process_pct"] for x in summary.values()]
    steal = [x["steal_pct"] for x in summary.values()]
    lines = [
        "# devgate benchmark",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['nproc']} CPUs, {meta['cpu_model']}, Linux {meta['kernel']}",
        f"- Envoy: {meta['envoy_version']}; wrk: {meta['wrk_version']}",
        f"- devgate: {meta['devgate_revision']}, devgate.wasm {meta['devgate_wasm_bytes']} bytes "
        f"(empty filter: {meta['empty_wasm_bytes']} bytes)",
        f"- command: `{meta['command']}`",
        f"- {meta['rounds']} rounds × {meta['duration_s']} s per variant after {meta['warmup_s']} s of warm-up; "
        f"wrk -t1 -c{meta['connections']} on CPU {meta['load_cpu']}; Envoy under test `--concurrency 1` on CPU "
        f"{meta['envoy_cpu']}; upstream Envoy (direct_response) on CPU {meta['upstream_cpu']}; "
        f"run took {meta['elapsed_s']:.0f} s",
    ]
    if others:
        worst = max(x["other_process_pct_max"] for x in summary.values())
        lines.append(f"- noise: other processes used {statistics.median(others):.1f}% of the benchmark's CPUs "
                     f"(median over variants; worst run {worst:.1f}%), hypervisor steal {statistics.median(steal):.1f}%")
    lines += [
        "",
        "| variant | req/s | × baseline (min–max) | p50 ms | p99 ms | Envoy CPU µs/req | added µs/req "
        "| × empty filter's | Envoy busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    empty = summary.get("empty_wasm", {}).get("added_cpu_us_per_req")
    for v in vs:
        if v.name in broken:
            lines.append(f"| {v.name} | {broken[v.name].replace('|', '/')} | | | | | | | |")
            continue
        x = summary[v.name]
        ratio = f"{x['ratio']:.3f} ({x['ratio_min']:.2f}–{x['ratio_max']:.2f})"
        added = "" if v.name == "baseline" else fmt(x["added_cpu_us_per_req"], "+.1f")
        # The issue's yardstick: added CPU as a multiple of the empty filter's (the V8 floor).
        times = ""
        if v.name != "baseline" and empty and empty > 0 and x["added_cpu_us_per_req"] is not None:
            times = f"{x['added_cpu_us_per_req'] / empty:.2f}"
        lines.append(
            f"| {v.name} | {x['rps']:.0f} | {ratio} | {fmt(x['p50_ms'], '.3f')} | {fmt(x['p99_ms'], '.3f')} | "
            f"{fmt(x['envoy_cpu_us_per_req'], '.1f')} | {added} | {times} | {fmt(x['envoy_busy_pct'], '.0f')}% |"
        )
    lines += ["", "Variants:", ""]
    for v in vs:
        lines.append(f"- `{v.name}` (envoy/bench/{v.config}): {v.what}; expects {v.status}"
                     + (f", identity `{v.identity}`" if v.identity else ""))
    warnings = []
    for v in vs:
        x = summary.get(v.name)
        if not x:
            continue
        if x["wrong_status"]:
            warnings.append(f"{v.name}: {x['wrong_status']} responses during the load had another status "
                            f"than {v.status}: its numbers are suspect")
        if x["socket_errors"]:
            warnings.append(f"{v.name}: {x['socket_errors']} socket errors (wrk)")
        if x["new_connections"] is not None and x["new_connections"] > 2 * meta["connections"]:
            warnings.append(f"{v.name}: {x['new_connections']:.0f} new connections per run: Envoy closed "
                            "connections, so this variant also measures connection setup")
        if x["other_process_pct"] > NOISY_PCT:
            warnings.append(f"{v.name}: other processes used {x['other_process_pct']:.0f}% of the CPUs during "
                            "its runs: the machine was not quiet, compare with care")
        elif x["envoy_core_busy_pct"] is not None and x["envoy_core_busy_pct"] < 90:
            warnings.append(f"{v.name}: the Envoy under test's CPU was busy only {x['envoy_core_busy_pct']:.0f}% "
                            "of the time: it was not the bottleneck (is the load generator's CPU saturated?)")
    if warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in warnings]
    lines += goals_markdown(summary, "added_cpu_us_per_req", "µs/req")
    lines += side_by_side_markdown(
        summary, lambda x: f"{fmt(x['ratio'], '.3f')} × no filter, {fmt(x['added_cpu_us_per_req'], '+.1f')} µs/req")
    lines += [
        "",
        "How to read it: req/s, p50 and p99 are medians over the rounds. × baseline is the median over the "
        "rounds of the variant's req/s divided by baseline's req/s in the same round (each round runs every "
        "variant once, every other round in reverse order), with the lowest and highest round. Envoy CPU µs/req "
        "is the CPU time (user+system, all threads) the variant's Envoy used during a run divided by the "
        "requests completed; added µs/req is that minus baseline's in the same round (median). Envoy busy is "
        "that CPU time over the run's wall time (the kernel's loopback work, not charged to any process, takes "
        "a few % more of the same CPU). "
        "wrk connects from 127.0.0.1, so the outsider variants (devgate_bearer, devgate_cookie, devgate_deny) "
        "run devgate with a network allow list of 127.0.0.2/32 only: 127.0.0.1 is then an outsider, as "
        "127.0.0.77 would be.",
        "",
        "Requests/s per round: "
        + "; ".join(f"{v.name} {summary[v.name]['rps_rounds']}" for v in vs if v.name in summary),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def main() -> int:
    t_start = time.monotonic()
    rounds_n = env_int("BENCH_ROUNDS", 5, 1)
    duration = env_int("BENCH_DURATION", 5, 1)
    warmup = env_int("BENCH_WARMUP", 2, 0)
    connections = env_int("BENCH_CONNECTIONS", 16, 1)
    quiet_wait = env_int("BENCH_QUIET_WAIT", 0, 0)
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
    all_variants = variants(creds["token"], creds["api_key"])
    wanted = [x.strip() for x in os.environ.get("BENCH_VARIANTS", "").split(",") if x.strip()]
    if wanted:
        unknown = set(wanted) - {v.name for v in all_variants}
        if unknown:
            raise BenchError(f"BENCH_VARIANTS: unknown {sorted(unknown)}; known: {[v.name for v in all_variants]}")
        all_variants = [v for v in all_variants if v.name == "baseline" or v.name in wanted]
    check_inputs(native=any(v.native for v in all_variants))
    wrk = ensure_wrk()
    build_filters()

    values = {
        "DEVGATE_WASM": WASM.resolve(),
        "DEVGATE_NATIVE": NATIVE.resolve(),
        "DEVGATE_TEST_NATIVE": TEST_NATIVE.resolve(),
        "EMPTY_WASM": EMPTY_WASM.resolve(),
        "REFERENCE_WASM": REFERENCE_WASM.resolve(),
        "DEVGATE_KEY": creds["key"],
        "HTPASSWD_LINE": creds["htpasswd"],
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

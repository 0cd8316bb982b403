"""The suite's processes: the demo upstream, Envoy (started on kernel-chosen ports, its log, admin,
counters), and the check that Envoy and devgate stayed healthy (Envoy.devgate_problems, per host).
Imported through `harness`."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from harness_base import (
    DEMO_UPSTREAM,
    ENVOY_CRASH,
    NATIVE,
    PROCESS_ENV_KEY,
    REPO,
    REQUEST_TIMEOUT,
    STARTUP_TIMEOUT,
    TROUBLE,
    HarnessError,
    envoy_path,
)
from harness_clients import Response, Text, request

# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child if the test process dies without stopping it (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort; normal teardown still stops the child
        pass


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class Upstream:
    """tests/demo_upstream.py in a subprocess on a kernel-chosen port. Its stdout lines after the
    first (e.g. `demo_upstream upgrade <target>` per WebSocket upgrade request) are kept in `lines`."""

    def __init__(self, host: str = "127.0.0.1", python: str = sys.executable):
        self.host = host
        self.proc = subprocess.Popen(
            [python, str(DEMO_UPSTREAM), "--host", host, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent,
        )
        line = self._first_line()
        m = re.match(r"demo_upstream listening on (\S+) (\d+)$", line.strip())
        if not m:
            self.stop()
            raise HarnessError(f"demo upstream did not start: {line!r}")
        self.port = int(m.group(2))
        self.lines: list[str] = []
        self._seen = threading.Condition()
        # keep draining stdout so the child never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()

    def _first_line(self) -> str:
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(STARTUP_TIMEOUT)
        return result[0] if result else ""

    def _drain(self) -> None:
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_for_line(self, line: str, timeout: float = REQUEST_TIMEOUT) -> bool:
        """True once the upstream has printed exactly `line` (False after `timeout`)."""
        with self._seen:
            return self._seen.wait_for(lambda: line in self.lines, timeout)

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class EnvoyResult:
    """How an Envoy start went."""

    ready: bool
    exit_code: int | None
    log: str
    elapsed: float
    probe: object = None  # what a request got, if Envoy came up anyway


@dataclass
class Envoy:
    """A running Envoy: its config, ports, log."""

    proc: subprocess.Popen
    workdir: Path
    config: dict
    admin_port: int = 0
    ports: dict = field(default_factory=dict)  # {"v4": port, "v6": port}

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    def log_text(self) -> str:
        text = ""
        for p in (self.log_path, self.workdir / "envoy.stderr"):
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def port_for(self, source: str) -> int:
        fam = "v6" if ":" in source else "v4"
        if fam not in self.ports:
            raise HarnessError(f"this Envoy has no {fam} listener (ports: {self.ports})")
        return self.ports[fam]

    def request(self, method: str, path: Text, headers: Iterable[tuple[Text, Text]] = (),
                source: str = "127.0.0.77", body: Text | None = None, **kw) -> Response:
        kw.setdefault("port", self.port_for(source))
        return request(method, path, headers, source=source, body=body, **kw)

    def admin(self, path: str, method: str = "GET") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def counters(self, regex: str) -> dict[str, int]:
        """Admin `/stats?filter=<regex>` as {name: value}, integer-valued stats only (counters and
        gauges; histograms, which print no single number, are left out)."""
        status, text = self.admin("/stats?filter=" + urllib.parse.quote(regex, safe=""))
        if status != 200:
            raise HarnessError(f"admin /stats answered {status}: {text[:300]}")
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def flush_logs(self, timeout: float = 10.0) -> None:
        """Returns once everything Envoy has logged so far is in its files (its log, `--log-path`,
        and the file access logs), so a check that reads them sees it. Envoy writes its files from
        a buffer, every 10 s by default (FAST_FLUSH: 100 ms) and on exit: `POST /reopen_logs` wakes
        the flush thread now, and the gauge `filesystem.write_total_buffered` (bytes logged and
        not yet written; it drops only once a write has returned) reads 0 once they are out.
        Nothing to do for a stopped Envoy (it wrote everything on exit); HarnessError if the gauge
        does not drain within `timeout` (at debug level it may never: the admin requests that read
        it are logged themselves)."""
        if not self.alive():
            return
        status, text = self.admin("/reopen_logs", method="POST")
        if status != 200:
            raise HarnessError(f"admin /reopen_logs answered {status}: {text[:300]}")
        gauge = "filesystem.write_total_buffered"
        deadline = time.monotonic() + timeout
        while True:
            buffered = self.counters(f"^{re.escape(gauge)}$").get(gauge)
            if buffered is None:
                raise HarnessError(f"this Envoy has no {gauge} gauge: cannot tell whether its log is written")
            if buffered == 0 or not self.alive():
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"Envoy's log still has {buffered} bytes unwritten after {timeout:.0f} s")
            time.sleep(0.01)

    def flushed_log_text(self) -> str:
        """log_text() once flush_logs() has returned: everything Envoy logged until now."""
        self.flush_logs()
        return self.log_text()

    def devgate_problems(self) -> list[str]:
        """Evidence that Envoy or devgate is in trouble, for the host the suite runs (empty when
        both are healthy), read from Envoy's log once it is written (flush_logs):
          - Wasm: a trap, panic or VM failure in the log (WASM_TROUBLE) and non-zero
            `wasm.<plugin>.vm_reload*` counters (FAIL_RELOAD reloads a VM that failed);
          - native: the module's panic hook lines (NATIVE_TROUBLE: `devgate: panic at ...`,
            `devgate: panic in hook ...`), whether or not the hook's catch turned the panic into
            a 500 (the native module has no VM to reload, so no counter says so);
          - both: Envoy's report of a fatal signal (ENVOY_CRASH)."""
        problems: list[str] = []
        if self.alive():
            try:
                self.flush_logs()
            except (OSError, http.client.HTTPException, HarnessError) as e:
                problems.append(f"Envoy's log could not be flushed: {e}")
        problems += [line for line in self.log_text().splitlines()
                     if TROUBLE.search(line) or ENVOY_CRASH.search(line)]
        if self.alive() and not NATIVE:
            try:
                _, stats = self.admin("/stats?filter=vm_reload")
            except (OSError, http.client.HTTPException) as e:
                problems.append(f"admin /stats unreachable: {e}")
            else:
                for line in stats.splitlines():
                    name, _, value = line.partition(":")
                    if value.strip().isdigit() and int(value) != 0:
                        problems.append(f"stat {name} = {value.strip()}")
        return problems

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc)


def _launch(config: dict | str, workdir: Path, log_level: str, extra_args: Sequence[str] = (),
            env: dict | None = None) -> Envoy:
    workdir.mkdir(parents=True, exist_ok=True)
    process_env = {**os.environ, **env} if env else None
    if isinstance(config, dict) and PROCESS_ENV_KEY in config:
        config = dict(config)
        process_env = {**(process_env or os.environ), **config.pop(PROCESS_ENV_KEY)}
    if isinstance(config, dict):
        cfg_path = workdir / "envoy.json"
        cfg_path.write_text(json.dumps(config, indent=1))
    else:
        cfg_path = workdir / "envoy.yaml"
        cfg_path.write_text(config)
    admin_file = workdir / "admin-address"
    if admin_file.exists():
        admin_file.unlink()
    cmd = [
        str(envoy_path()),
        "-c", str(cfg_path),
        # One worker unless the caller asks for more (extra_args "--concurrency", "2").
        *(() if "--concurrency" in extra_args else ("--concurrency", "1")),
        # No hot restart: no shared memory, no base id, nothing to collide with other Envoys.
        "--disable-hot-restart",
        "-l", log_level,
        "--log-path", str(workdir / "envoy.log"),
        "--admin-address-path", str(admin_file),
        *extra_args,
    ]
    stderr = open(workdir / "envoy.stderr", "wb")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, cwd=str(REPO),
                                env=process_env, preexec_fn=_die_with_parent)
    finally:
        stderr.close()
    return Envoy(proc=proc, workdir=workdir, config=config if isinstance(config, dict) else {})


def _wait_ready(env: Envoy, timeout: float) -> bool:
    """True once /ready says LIVE and every listener address accepts; False if Envoy exits first."""
    admin_file = env.workdir / "admin-address"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not env.alive():
            return False
        if env.admin_port == 0 and admin_file.exists():
            text = admin_file.read_text().strip()
            if text:
                env.admin_port = int(text.rsplit(":", 1)[1])
        if env.admin_port:
            try:
                status, body = env.admin("/ready")
                if status == 200 and body.strip() == "LIVE":
                    status, body = env.admin("/listeners?format=json")
                    ports = _listener_ports(json.loads(body))
                    if ports and all(_accepts(h, p) for h, p in ports):
                        for h, p in ports:
                            env.ports["v6" if ":" in h else "v4"] = p
                        return True
            except (OSError, http.client.HTTPException, ValueError):
                pass
        time.sleep(0.05)
    return False


def _listener_ports(data: dict) -> list[tuple[str, int]]:
    out = []
    for ls in data.get("listener_statuses", []):
        addrs = [ls.get("local_address")] + list(ls.get("additional_local_addresses") or [])
        for a in addrs:
            sa = (a or {}).get("socket_address")
            if sa and sa.get("port_value"):
                out.append((sa["address"], int(sa["port_value"])))
    return out


def _accepts(host: str, port: int) -> bool:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def start_envoy(config: dict | str, workdir: Path, log_level: str = "warning",
                timeout: float = STARTUP_TIMEOUT, extra_args: Sequence[str] = (),
                env: dict | None = None) -> Envoy:
    """Start Envoy and wait until it serves; raise HarnessError (with its log) if it does not.
    extra_args: more Envoy command-line options (e.g. FAST_FLUSH); env: variables added to Envoy's
    process environment (where the native module reads `secret_env`)."""
    env = _launch(config, workdir, log_level, extra_args, env)
    if not _wait_ready(env, timeout):
        code = env.proc.poll()
        env.stop()
        raise HarnessError(
            f"Envoy did not become ready (exit code {code}); config {workdir}; log:\n{env.log_text()[-6000:]}"
        )
    return env


def try_envoy(config: dict | str, workdir: Path, log_level: str = "info",
              timeout: float = STARTUP_TIMEOUT, env: dict | None = None) -> tuple[EnvoyResult, Envoy]:
    """Start Envoy and report how it went, for configs that should be refused. If Envoy does come up,
    it is returned running (the caller stops it) so the test can show what got through. env: as
    start_envoy's."""
    t0 = time.monotonic()
    env = _launch(config, workdir, log_level, env=env)
    ready = _wait_ready(env, timeout)
    if not ready and env.alive():
        env.stop()
    if not ready:
        try:
            env.proc.wait(5)
        except subprocess.TimeoutExpired:
            env.stop()
    return EnvoyResult(ready, env.proc.poll(), env.log_text(), time.monotonic() - t0), env

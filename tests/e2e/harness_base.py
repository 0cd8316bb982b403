"""The harness's ground floor: which host the suite runs, where the artefacts are, the names every
other harness module shares (response diagnostics, timeouts, HarnessError), what in Envoy's log means
trouble, and the devgate CLI. Tests import all of it through `harness` (harness.py)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_UPSTREAM = REPO / "tests" / "demo_upstream.py"
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "devgate.wasm"
DEFAULT_ENVOY = REPO / ".venv" / "bin" / "envoy"
DEFAULT_NATIVE = REPO / "target" / "native" / "libdevgate.so"

# The host switch: which build every rendered bootstrap loads.
HOSTS = ("wasm", "native")
HOST = os.environ.get("DEVGATE_HOST") or "wasm"
if HOST not in HOSTS:
    raise RuntimeError(f"DEVGATE_HOST={HOST!r}: expected one of {HOSTS}")
NATIVE = HOST == "native"
# The admin stats namespace of devgate's counters: `<STATS>.devgate.*`.
STATS = "dynamicmodulescustom" if NATIVE else "wasmcustom"
# Bootstrap key (never sent to Envoy) carrying environment variables for Envoy's process: the native
# module reads `secret_env` / `users_env` from the process, not from a Wasm VM's environment.
PROCESS_ENV_KEY = "__devgate_process_env"

IDENTITY_HEADER = "x-wsgiorg-developer-user"
UPSTREAM_MARKER = ("x-devgate-demo-upstream", "echo")
# Diagnostics the harness adds to responses (never the shipped config):
#  - on every reply Envoy generates locally (devgate's included): %RESPONSE_CODE_DETAILS%, i.e. which
#    layer answered and why;
#  - on every reply: the downstream address as the filter chain sees it (what devgate reads as
#    `source.address`; with use_remote_address false it may come from X-Forwarded-For) and the socket
#    peer.
DETAILS_HEADER = "x-e2e-response-details"
REMOTE_HEADER = "x-e2e-downstream-remote"
DIRECT_REMOTE_HEADER = "x-e2e-downstream-direct-remote"
_DIAG_HEADERS = [
    (REMOTE_HEADER, "%DOWNSTREAM_REMOTE_ADDRESS%"),
    (DIRECT_REMOTE_HEADER, "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
]

# (hcm, path, status, layer, details or upstream path): filled by the path-trick tests, printed in
# the terminal summary with -v or DEVGATE_E2E_TABLE=1.
PATH_TRICK_TABLE: list = []

# What in Envoy's log means devgate (or Envoy) is in trouble; Envoy.devgate_problems() looks for the
# patterns of the host the suite runs (TROUBLE) and for Envoy's own crash report (ENVOY_CRASH).
# The Wasm filter: the VM trapped, panicked or was torn down (Envoy's Wasm layer says so).
WASM_TROUBLE = re.compile(
    r"panicked|RuntimeError|wasm trap|VM failed|Function: \S+ failed|proxy_on_\w+ failed|wasm_fail",
    re.IGNORECASE,
)
# The native module: its panic hook (installed when Envoy loads libdevgate.so) logs
# "devgate: panic at <file>:<line>" for every panic, on any thread, and a hook that caught one logs
# "devgate: panic in hook <hook>[; request refused with 500]" (src/host/native/bindings.rs).
NATIVE_TROUBLE = re.compile(r"devgate: panic (at |in hook )")
TROUBLE = NATIVE_TROUBLE if NATIVE else WASM_TROUBLE
# Envoy's fatal-signal handler, on either host (a native module has no sandbox: its crash is Envoy's).
ENVOY_CRASH = re.compile(r"Caught (Segmentation fault|Abort|Bus error|Illegal|Floating point)")


def is_devgate_log_line(line: str) -> bool:
    """A line devgate itself logged: "wasm log devgate: ..." from the Wasm filter, or
    "[dynamic_modules] ... devgate: ..." from the native module."""
    if "wasm log" in line and "devgate" in line:
        return True
    return "[dynamic_modules]" in line and "devgate: " in line


STARTUP_TIMEOUT = 30.0


REQUEST_TIMEOUT = 10.0

# --------------------------------------------------------------------------------------------------
# Locating the artefacts
# --------------------------------------------------------------------------------------------------


class HarnessError(RuntimeError):
    """The harness could not do what a test asked (an artefact missing, Envoy not starting): a test
    failure, never a skip (conftest.call_or_fail)."""


def wasm_path() -> Path:
    """The artefact the suite runs: devgate.wasm, or libdevgate.so when DEVGATE_HOST=native (the
    name stays for the tests that pass it around as `wasm`)."""
    if NATIVE:
        return native_path()
    p = Path(os.environ.get("DEVGATE_WASM") or DEFAULT_WASM)
    if not p.is_file():
        raise HarnessError(f"devgate.wasm not built: run `make build` (looked for {p})")
    return p


def native_path() -> Path:
    p = Path(os.environ.get("DEVGATE_NATIVE") or DEFAULT_NATIVE)
    if not p.is_file():
        raise HarnessError(f"libdevgate.so not built: run `make build-native` (looked for {p})")
    return p


def envoy_path() -> Path:
    p = Path(os.environ.get("DEVGATE_ENVOY") or DEFAULT_ENVOY)
    if not (p.is_file() and os.access(p, os.X_OK)):
        raise HarnessError(f"envoy not found at {p}: run `make venv` (or set DEVGATE_ENVOY)")
    return p


# --------------------------------------------------------------------------------------------------
# The devgate CLI
# --------------------------------------------------------------------------------------------------

DEFAULT_CLI = REPO / "target" / "release" / "devgate"


def cli_path() -> Path:
    """The native `devgate` command (DEVGATE_CLI, default target/release/devgate)."""
    p = Path(os.environ.get("DEVGATE_CLI") or DEFAULT_CLI)
    if not (p.is_file() and os.access(p, os.X_OK)):
        raise HarnessError(f"devgate CLI not built: run `make cli` (looked for {p})")
    return p


def run_cli(*args: str, env: dict | None = None, stdin: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess:
    """`devgate ARGS...` -> CompletedProcess (text stdout/stderr, returncode). `env` is added to a
    minimal environment (PATH only), so nothing from the test runner's environment leaks in."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    full_env.update(env or {})
    return subprocess.run([str(cli_path()), *args], input=stdin, capture_output=True, text=True,
                          env=full_env, timeout=timeout)

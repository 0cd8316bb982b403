#!/usr/bin/env python3
"""`make run`: devgate in Envoy on 127.0.0.1:10000 / [::1]:10000 in front of the demo upstream.

Starts tests/demo_upstream.py on 127.0.0.1:8080 and Envoy with envoy/envoy.yaml (admin on
127.0.0.1:9901), prints a few requests to try, and runs until Ctrl-C or SIGTERM, which stop both.
Extra arguments go to Envoy (e.g. `-l debug`).

`--tls` (`make run-tls`): envoy/envoy-tls.yaml instead, HTTPS on 127.0.0.1:10443 / [::1]:10443 with
the certificate from `make certs` (target/certs/).

`--native` (`make run-native`): envoy/envoy-native.yaml instead, with devgate as the native dynamic
module target/native/libdevgate.so (`make build-native`); the same demo, login form included. The
native module reads the login users and session key from Envoy's process environment: this script
puts envoy/demo.env's variables there (the values envoy.yaml gives the Wasm VM).
`--native --tls` (`make run-native-tls`): envoy/envoy-native-tls.yaml, the native demo over TLS.

Environment: DEVGATE_ENVOY (the envoy binary; default .venv/bin/envoy),
DEVGATE_WASM (checked to exist; envoy.yaml itself loads target/wasm32-wasip1/release/devgate.wasm).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WASM = Path("target/wasm32-wasip1/release/devgate.wasm")  # what envoy.yaml loads, repo-relative
NATIVE = Path("target/native/libdevgate.so")  # what envoy-native.yaml loads (--native), repo-relative
ENVOY = Path(os.environ.get("DEVGATE_ENVOY") or REPO / ".venv" / "bin" / "envoy")
UPSTREAM = ("127.0.0.1", 8080)
ADMIN = ("127.0.0.1", 9901)
# Set by main(): plain HTTP (envoy.yaml) or, with --tls, HTTPS (envoy-tls.yaml).
CONFIG = Path("envoy/envoy.yaml")
LISTEN = 10000
CERTS = Path("target/certs")  # what envoy-tls.yaml loads, repo-relative
DEMO_ENV = Path("envoy/demo.env")  # the native demos' users and key (Envoy's environment), repo-relative


def demo_env(path: Path = DEMO_ENV) -> dict[str, str]:
    """envoy/demo.env: `NAME='value'` lines (comments and blank lines skipped). The e2e harness
    reads the file with this function too."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value.strip("'")
    return out


def try_text(tls: bool) -> str:
    scheme, ws = ("https", "wss") if tls else ("http", "ws")
    curl = f"curl --cacert {CERTS}/ca.pem" if tls else "curl"
    host = "localhost" if tls else "127.0.0.1"
    ws_env = f"SSL_CERT_FILE={CERTS}/ca.pem " if tls else ""  # the websockets CLI trusts only this CA then
    cert_note = (
        f"\nThe certificate ({CERTS}/cert.pem: localhost, 127.0.0.1, ::1) is signed by {CERTS}/ca.pem;"
        "\nwith mkcert installed, `mkcert -install` makes browsers trust it.\n"
        if tls else ""
    )
    return f"""
devgate demo is up: Envoy on {scheme}://127.0.0.1:{LISTEN} and {scheme}://[::1]:{LISTEN}, admin on
127.0.0.1:{ADMIN[1]}, upstream (echoes what it receives) on 127.0.0.1:{UPSTREAM[1]}. Config: {CONFIG}
127.0.0.1 and ::1 are developers; other loopback addresses play outsiders. Watch the
x-wsgiorg-developer-user header in the upstream's echo:
{cert_note}
  {curl} -s {scheme}://{host}:{LISTEN}/_debug/vars           # protected, you are developer 127.0.0.1
  {curl} -s -g '{scheme}://[::1]:{LISTEN}/_debug/'              # developer ::1
  {curl} -si --interface 127.0.0.77 {scheme}://{host}:{LISTEN}/_debug/   # outsider: 401 challenge
  {curl} -s --interface 127.0.0.77 {scheme}://{host}:{LISTEN}/           # outsider, open path: no header
  {curl} -s --interface 127.0.0.77 {scheme}://{host}:{LISTEN}/ -H 'X-Wsgiorg-Developer-User: evil' \\
       -H 'x_wsgiorg_developer_user: evil' -H 'X-Forwarded-For: 127.0.0.1'   # forged: removed, ignored
  {curl} -si '{scheme}://{host}:{LISTEN}/_debug%2Fx'         # ambiguous path: 400 from Envoy
  {curl} -si '{scheme}://{host}:{LISTEN}/%255Fdebug/'        # double encoding: 400 from devgate

WebSocket upgrades pass through devgate too (the upstream sends the headers it got, then echoes):
  {ws_env}.venv/bin/python -m websockets {ws}://{host}:{LISTEN}/_debug/ws

Ctrl-C stops Envoy and the upstream.
"""


def die(msg: str, code: int = 1) -> "None":
    print(f"run_demo: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def stop(proc: subprocess.Popen | None, name: str, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"run_demo: {name} did not stop on SIGTERM, killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def envoy_live() -> bool:
    try:
        conn = http.client.HTTPConnection(*ADMIN, timeout=1)
        conn.request("GET", "/ready")
        r = conn.getresponse()
        return r.status == 200 and r.read().strip() == b"LIVE"
    except (OSError, http.client.HTTPException):
        return False


def main(argv: list[str]) -> int:
    global CONFIG, LISTEN
    os.chdir(REPO)
    tls = "--tls" in argv
    native = "--native" in argv  # `make run-native`: envoy/envoy-native.yaml, libdevgate.so
    argv = [a for a in argv if a not in ("--tls", "--native")]
    artifact = NATIVE if native else WASM
    if native:
        CONFIG = Path("envoy/envoy-native.yaml")
    if tls:
        CONFIG, LISTEN = Path("envoy/envoy-native-tls.yaml" if native else "envoy/envoy-tls.yaml"), 10443
        for name in ("cert.pem", "key.pem", "ca.pem"):
            if not (CERTS / name).is_file():
                die(f"{REPO / CERTS / name} is missing: run: make certs")
    if not artifact.is_file():
        die(f"{REPO / artifact} is missing: run: make {'build-native' if native else 'build'}")
    if not ENVOY.is_file():
        die(f"envoy not found at {ENVOY}: run: make venv")

    # SIGTERM ends the demo the same way Ctrl-C does.
    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    upstream = envoy = None
    try:
        # Own sessions: Ctrl-C reaches only this script, which then stops the children in order.
        upstream = subprocess.Popen(
            [sys.executable, "tests/demo_upstream.py", "--host", UPSTREAM[0], "--port", str(UPSTREAM[1])],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        line = upstream.stdout.readline()
        if not line.startswith("demo_upstream listening"):
            upstream.wait(5)
            die(f"the demo upstream could not start on {UPSTREAM[0]}:{UPSTREAM[1]} (port in use?)")
        threading.Thread(target=lambda: [None for _ in upstream.stdout], daemon=True).start()

        cmd = [
            str(ENVOY), "-c", str(CONFIG),
            "--concurrency", "1",
            "--disable-hot-restart",
            "-l", "warning",
            "--component-log-level", "wasm:info,dynamic_modules:info",
            *argv,
        ]
        print("run_demo: " + " ".join(cmd), flush=True)
        # Native: the login users and session key from envoy/demo.env, in Envoy's own environment.
        env = {**os.environ, **demo_env()} if native else None
        envoy = subprocess.Popen(cmd, start_new_session=True, env=env)

        deadline = time.monotonic() + 60
        while not envoy_live():
            if envoy.poll() is not None:
                die(f"Envoy exited with status {envoy.returncode} (see its log above; "
                    f"ports {LISTEN} and {ADMIN[1]} must be free)")
            if time.monotonic() > deadline:
                die("Envoy did not become ready within 60s")
            time.sleep(0.1)
        print(try_text(tls), flush=True)

        while True:
            if envoy.poll() is not None:
                print(f"run_demo: Envoy exited with status {envoy.returncode}", file=sys.stderr)
                return envoy.returncode or 1
            if upstream.poll() is not None:
                print(f"run_demo: the demo upstream exited with status {upstream.returncode}", file=sys.stderr)
                return upstream.returncode or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nrun_demo: stopping", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop(envoy, "Envoy")
        stop(upstream, "demo upstream")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

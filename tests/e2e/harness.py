"""End-to-end harness: the real Envoy from the venv, devgate.wasm, the demo upstream, a raw client.

Nothing here hardcodes a port. Envoy's admin and listeners bind port 0 and the harness asks the admin
endpoint which ports the kernel gave them; the demo upstream is started with `--port 0` and prints its
port. Hot restart is disabled (`--disable-hot-restart`), so concurrent Envoys never share a base id or
shared-memory region, with this suite or with anything else on the machine. Everything binds on
127.0.0.1 / ::1 only.

Environment:
  DEVGATE_HOST   which build of devgate the suite runs: `wasm` (default; devgate.wasm in Envoy's
                 Wasm filter) or `native` (libdevgate.so in Envoy's dynamic-modules filter)
  DEVGATE_WASM   absolute path of devgate.wasm   (default: <repo>/target/wasm32-wasip1/release/devgate.wasm)
  DEVGATE_NATIVE absolute path of libdevgate.so  (default: <repo>/target/native/libdevgate.so)
  DEVGATE_ENVOY  the envoy binary                (default: <repo>/.venv/bin/envoy)
  DEVGATE_CLI    the devgate command line        (default: <repo>/target/release/devgate)
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

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

# Lines in Envoy's log that mean the Wasm VM trapped, panicked or was torn down.
WASM_TROUBLE = re.compile(
    r"panicked|RuntimeError|wasm trap|VM failed|Function: \S+ failed|proxy_on_\w+ failed|wasm_fail",
    re.IGNORECASE,
)

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
    pass


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
# HCM presets
# --------------------------------------------------------------------------------------------------

# What envoy/envoy.yaml ships (tests/e2e/test_demo_config.py checks the two agree).
SHIPPED_HCM = {
    "use_remote_address": True,
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
}

# Envoy's own defaults: nothing set. use_remote_address is false, so Envoy takes the downstream address
# from the last X-Forwarded-For entry when there is one; no path normalisation at all.
ENVOY_DEFAULT_HCM: dict = {}

HCM_PRESETS = {"shipped": SHIPPED_HCM, "envoy-defaults": ENVOY_DEFAULT_HCM}


def _hcm_options(hcm: Union[str, dict, None]) -> dict:
    if hcm is None:
        return dict(SHIPPED_HCM)
    if isinstance(hcm, str):
        return dict(HCM_PRESETS[hcm])
    return dict(hcm)


# --------------------------------------------------------------------------------------------------
# Bootstrap rendering
# --------------------------------------------------------------------------------------------------

Address = tuple  # (host, port)


def _socket_address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def wasm_filter(
    plugin_config: Union[dict, str, None],
    *,
    wasm: Union[str, Path],
    env: dict | None = None,
) -> dict:
    """The devgate filter entry: envoy.filters.http.wasm, or with DEVGATE_HOST=native the
    dynamic-modules filter (native_filter). `plugin_config`: dict (JSON-encoded), str (sent verbatim,
    for malformed-JSON tests) or None (no `configuration` at all)."""
    if NATIVE:
        return native_filter(plugin_config, module=wasm)
    vm_config: dict = {
        "vm_id": "devgate",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(wasm)}},
    }
    if env:
        vm_config["environment_variables"] = {"key_values": dict(env)}
    config: dict = {
        "name": "devgate",
        "vm_config": vm_config,
        # Never fail open: if the VM dies, requests fail and the VM is reloaded.
        "failure_policy": "FAIL_RELOAD",
    }
    if plugin_config is not None:
        value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": value,
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


def native_filter(plugin_config: Union[dict, str, None], *, module: Union[str, Path]) -> dict:
    """The envoy.filters.http.dynamic_modules entry loading libdevgate.so from `module`, with devgate's
    JSON configuration as a StringValue `filter_config` (None: no filter_config)."""
    typed: dict = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"module": {"local": {"filename": str(module)}}},
        "filter_name": "devgate",
    }
    if plugin_config is not None:
        value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        typed["filter_config"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
    return {"name": "envoy.filters.http.dynamic_modules", "typed_config": typed}


def render_bootstrap(
    *,
    upstream_port: int,
    plugin_config: Union[dict, str, None] = None,
    hcm: Union[str, dict, None] = "shipped",
    listen: Sequence[Address] = (("127.0.0.1", 0), ("::1", 0)),
    env: dict | None = None,
    wasm: Union[str, Path, None] = None,
    with_wasm: bool = True,
    diagnostics: bool = True,
    admin: Address = ("127.0.0.1", 0),
    upstream_host: str = "127.0.0.1",
    access_log: Sequence[dict] = (),
) -> dict:
    """An Envoy v3 bootstrap (as a dict; written as JSON, which Envoy reads as YAML).

    hcm: "shipped" (what envoy/envoy.yaml sets), "envoy-defaults" (nothing set), or a dict of
    HttpConnectionManager fields (use_remote_address, normalize_path, merge_slashes,
    path_with_escaped_slashes_action, xff_num_trusted_hops, common_http_protocol_options, ...).
    listen: the listener's addresses; the first is `address`, the others `additional_addresses`.
    env: vm_config.environment_variables.key_values.
    with_wasm=False renders the same chain without devgate (to check the harness itself).
    access_log: the HttpConnectionManager's access_log entries (see file_access_log()).
    """
    if not listen:
        raise ValueError("need at least one listen address")
    http_filters = []
    if with_wasm:
        http_filters.append(wasm_filter(plugin_config, wasm=wasm or wasm_path(), env=env))
    http_filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    hcm_config: dict = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "e2e",
        "codec_type": "AUTO",
        "route_config": {
            "name": "all",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "demo_upstream"}}],
                }
            ],
        },
        "http_filters": http_filters,
    }
    if diagnostics:
        hcm_config["route_config"]["response_headers_to_add"] = [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in _DIAG_HEADERS
        ]
    hcm_config.update(_hcm_options(hcm))
    if access_log:
        hcm_config["access_log"] = [dict(a) for a in access_log]
    if diagnostics:
        hcm_config["local_reply_config"] = {
            "mappers": [
                {
                    "filter": {"not_health_check_filter": {}},
                    "headers_to_add": [
                        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                        for k, v in [(DETAILS_HEADER, "%RESPONSE_CODE_DETAILS%")] + _DIAG_HEADERS
                    ],
                }
            ]
        }
    listener: dict = {
        "name": "devgate",
        "address": _socket_address(*listen[0]),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm_config}
                ]
            }
        ],
    }
    if len(listen) > 1:
        listener["additional_addresses"] = [{"address": _socket_address(*a)} for a in listen[1:]]
    boot: dict = {}
    if NATIVE and env and with_wasm:
        boot[PROCESS_ENV_KEY] = dict(env)
    return {
        **boot,
        "admin": {"address": _socket_address(*admin)},
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                {
                    "name": "demo_upstream",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "demo_upstream",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": _socket_address(upstream_host, upstream_port)}}]}
                        ],
                    },
                }
            ],
        },
    }


def file_access_log(path: Union[str, Path], *, text: str | None = None, json_format: dict | None = None) -> dict:
    """An access_log entry (envoy.access_loggers.file) writing to `path`, one line per request, either in
    a text format (`text`, a trailing newline is added if missing) or as one JSON object per line
    (`json_format`: field name -> command operator). Envoy writes the file in batches: start it with
    `extra_args=FAST_FLUSH` (or stop it) before reading."""
    if (text is None) == (json_format is None):
        raise ValueError("give exactly one of text and json_format")
    if text is not None:
        log_format: dict = {"text_format_source": {"inline_string": text if text.endswith("\n") else text + "\n"}}
    else:
        log_format = {"json_format": dict(json_format)}
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": log_format,
        },
    }


# Envoy flushes file access logs and --log-path every 10 s by default (and on exit); this makes it
# every 100 ms, so a test can read them while Envoy runs.
FAST_FLUSH = ("--file-flush-interval-msec", "100")


# --------------------------------------------------------------------------------------------------
# HTTP/2 client
# --------------------------------------------------------------------------------------------------


def h2_request(port: int, method: str, path: str, headers: list, *, source: str, body: bytes | None = None,
               trailers: list | None = None, validate: bool = True) -> tuple[int, bytes]:
    """One HTTP/2 request (prior knowledge, cleartext) with the `h2` client (an HTTP/2 stack nobody
    here wrote): `headers` after the pseudo-headers, then `body` and `trailers` when given ->
    (status, body). `validate=False` turns the client's own header checks off, so a byte Envoy
    must judge reaches Envoy. A reset stream or a connection closed before the answer ends raises
    HarnessError."""
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(REQUEST_TIMEOUT)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=validate,
                                           normalize_outbound_headers=validate)
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        pseudo = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "devgate.test")]
        ends_here = body is None and trailers is None
        conn.send_headers(sid, pseudo + list(headers), end_stream=ends_here)
        if body is not None:
            conn.send_data(sid, body, end_stream=trailers is None)
        if trailers is not None:
            conn.send_headers(sid, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, data = 0, b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise HarnessError("connection closed before the response ended")
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    raise HarnessError(f"stream reset: {ev.error_code!r}")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise HarnessError(f"connection terminated: {ev.error_code!r}")
                elif isinstance(ev, h2.events.StreamEnded):
                    return status, data
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------------
# Raw HTTP/1.1 client
# --------------------------------------------------------------------------------------------------

Text = Union[str, bytes]


def _b(x: Text) -> bytes:
    return x if isinstance(x, bytes) else x.encode("latin-1")


@dataclass
class Echo:
    """What the demo upstream says it received."""

    method: str
    path: str
    headers: list  # [[name, value], ...] as received, order and repeats kept
    body: str = ""
    trailers: list = field(default_factory=list)  # [[name, value], ...] of a chunked body

    def get_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def spellings(self, name: str = IDENTITY_HEADER) -> list[tuple[str, str]]:
        """Every header that any upstream might read as `name`: any case, '_' for '-'."""
        want = name.lower().replace("_", "-")
        return [(k, v) for k, v in self.headers if k.lower().replace("_", "-") == want]


@dataclass
class Response:
    status: int
    reason: str
    headers: list  # [(lowercase name, value)], order and repeats kept
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        vals = self.header_all(name)
        return vals[0] if vals else None

    def header_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k == n]

    @property
    def from_upstream(self) -> bool:
        return self.header(UPSTREAM_MARKER[0]) == UPSTREAM_MARKER[1]

    @property
    def details(self) -> str | None:
        """Envoy's response code details for a locally generated reply (harness configs only)."""
        return self.header(DETAILS_HEADER)

    @property
    def downstream_remote(self) -> str | None:
        """The downstream remote address Envoy used for this request (harness configs only)."""
        return self.header(REMOTE_HEADER)

    @property
    def layer(self) -> str:
        """Who answered: 'upstream', 'devgate' (a wasm local reply), 'envoy' (any other local reply)."""
        if self.from_upstream:
            return "upstream"
        d = self.details or ""
        if "wasm" in d or "devgate" in d or self.header("www-authenticate") is not None:
            return "devgate"
        return "envoy"

    def echo(self) -> Echo:
        assert self.from_upstream, f"response did not come from the demo upstream: {self.summary()}"
        assert self.body, "the upstream's echo has no body (a HEAD request?)"
        data = json.loads(self.body)
        return Echo(data["method"], data["path"], data["headers"], data.get("body", ""), data.get("trailers", []))

    def summary(self) -> str:
        body = self.body[:300].decode("latin-1")
        return f"{self.status} {self.reason} details={self.details!r} headers={self.headers!r} body={body!r}"


def upstream_identity(resp: Response, name: str = IDENTITY_HEADER) -> list[tuple[str, str]]:
    """Every spelling of the identity header that reached the upstream (empty if none)."""
    return resp.echo().spellings(name)


class _Reader:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def until(self, delim: bytes, limit: int = 1 << 20) -> bytes:
        while delim not in self.buf:
            if len(self.buf) > limit or not self._fill():
                raise EOFError(f"connection closed before {delim!r} (have {self.buf[:200]!r})")
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out


def _read_response(r: _Reader, method: str) -> Response:
    while True:
        head = r.until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise HarnessError(f"bad status line {status_line!r}")
        status = int(m.group(1))
        headers = []
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            headers.append((k.strip().lower(), v.strip()))
        if 100 <= status < 200:
            continue  # interim response; the real one follows
        break
    hmap = {k: v for k, v in headers}
    if method.upper() == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in hmap.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size_line = r.until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while r.until(b"\r\n") != b"\r\n":
                    pass
                break
            parts.append(r.exactly(size))
            r.until(b"\r\n")
        body = b"".join(parts)
    elif "content-length" in hmap:
        body = r.exactly(int(hmap["content-length"]))
    else:
        body = r.rest()
    return Response(status, m.group(2) or "", headers, body, head)


def request(
    method: str,
    path: Text,
    headers: Iterable[tuple[Text, Text]] = (),
    source: str = "127.0.0.77",
    body: Text | None = None,
    port: int | None = None,
    host: str | None = None,
    timeout: float = REQUEST_TIMEOUT,
    add_host: bool = True,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Response:
    """One raw HTTP/1.1 request on a fresh connection whose local end is bound to `source`.

    `path` and header names/values go on the wire byte for byte (str is encoded as latin-1; pass bytes
    for anything else), so tests can send odd request targets, repeated or underscore headers and
    non-UTF-8 values. `Host` is added unless present or add_host=False; `Content-Length` when there is
    a body and none was given; `Connection: close` always, so the response ends with the connection.
    `host` defaults to 127.0.0.1 or ::1 to match the family of `source`.
    tls: speak TLS with this context (server_hostname, default `host`, is what the certificate is
    checked against; an IP address is checked against the certificate's IP SANs and sends no SNI).
    """
    if port is None:
        raise ValueError("port is required")
    v6 = ":" in source
    if host is None:
        host = "::1" if v6 else "127.0.0.1"
    hdrs = [(_b(k), _b(v)) for k, v in headers]
    names = {k.lower() for k, _ in hdrs}
    out = [_b(method) + b" " + _b(path) + b" HTTP/1.1"]
    if add_host and b"host" not in names:
        out.append(b"Host: devgate.test")
    out += [k + b": " + v for k, v in hdrs]
    payload = _b(body) if body is not None else b""
    if body is not None and b"content-length" not in names and b"transfer-encoding" not in names:
        out.append(b"Content-Length: " + str(len(payload)).encode())
    out.append(b"Connection: close")
    wire = b"\r\n".join(out) + b"\r\n\r\n" + payload

    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect((host, port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
        try:
            sock.sendall(wire)
        except (BrokenPipeError, ConnectionResetError):
            pass  # Envoy may answer (e.g. 431) and close before reading everything; read what it said
        return _read_response(_Reader(sock), method)
    finally:
        sock.close()


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

    def admin(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
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

    def wasm_problems(self) -> list[str]:
        """Evidence of a Wasm trap, panic or VM failure (empty when the filter is healthy): log lines,
        and non-zero `wasm.<plugin>.vm_reload*` counters (FAIL_RELOAD reloads a VM that failed)."""
        problems = [line for line in self.log_text().splitlines() if WASM_TROUBLE.search(line)]
        if self.alive():
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


# --------------------------------------------------------------------------------------------------
# The shipped configs (envoy/*.yaml) as they are, on free ports
# --------------------------------------------------------------------------------------------------

SHIPPED_WASM_LINE = "filename: target/wasm32-wasip1/release/devgate.wasm"
SHIPPED_NATIVE_LINE = "filename: target/native/libdevgate.so"
CERTS = REPO / "target" / "certs"
# With DEVGATE_HOST=native, a test of a shipped demo config runs its native twin: the same listener
# and HCM with the dynamic-modules filter, started with shipped_env() in Envoy's environment.
NATIVE_SHIPPED = {"envoy.yaml": "envoy-native.yaml", "envoy-tls.yaml": "envoy-native-tls.yaml"}


# The native demos' login users and session key: Envoy's process environment, as `make run-native`
# sets it (the Wasm demos carry the same values in their VM's environment).
DEMO_ENV = REPO / "envoy" / "demo.env"


def demo_env() -> dict:
    """envoy/demo.env as a dict, parsed as `make run-native` parses it (tests/run_demo.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import run_demo
    finally:
        sys.path.pop(0)
    return run_demo.demo_env(DEMO_ENV)


def shipped_env() -> dict | None:
    """What Envoy's process environment must add for a shipped demo config with this host: the
    native demos read their login users and key from it (envoy/demo.env); None for Wasm."""
    return demo_env() if NATIVE else None


def shipped_name(name: str) -> str:
    """The shipped config a test of envoy/<name> runs with this host (its native twin if native)."""
    return NATIVE_SHIPPED.get(name, name) if NATIVE else name


def shipped_config(name: str, *, upstream_port: int, wasm: Union[str, Path], listen_port: int,
                   replace: Sequence[tuple[str, str, int]] = ()) -> str:
    """The text of envoy/<name> with its fixed ports made free: admin 9901 and the listener's
    `listen_port` (address and additional address) to 0, the upstream's 8080 to `upstream_port`,
    and the .wasm path made absolute. Other relative paths (target/certs/...) stay as they are:
    Envoy runs from the repository root, as `make run` / `make run-tls` do. Each replacement
    (old, new, count), these and `replace`, must occur exactly `count` times. With
    DEVGATE_HOST=native, envoy/<name>'s native twin (shipped_name) with the module path made absolute."""
    name = shipped_name(name)
    module_line = SHIPPED_NATIVE_LINE if NATIVE else SHIPPED_WASM_LINE
    text = (REPO / "envoy" / name).read_text()
    for old, new, count in [
        ("port_value: 9901", "port_value: 0", 1),
        (f"port_value: {listen_port}", "port_value: 0", 2),
        ("port_value: 8080", f"port_value: {upstream_port}", 1),
        (module_line, f"filename: {wasm}", 1),
        *replace,
    ]:
        if text.count(old) != count:
            raise HarnessError(f"envoy/{name} changed shape: expected {count} x {old!r}, found {text.count(old)}")
        text = text.replace(old, new)
    return text


def tls_client(cafile: Union[str, Path, None] = None) -> ssl.SSLContext:
    """A verifying TLS client context trusting only `cafile` (default target/certs/ca.pem)."""
    cafile = Path(cafile or CERTS / "ca.pem")
    if not cafile.is_file():
        raise HarnessError(f"no CA at {cafile}: run `make certs`")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def websocket(port: int, path: str, *, source: str = "127.0.0.77", host: str | None = None,
              headers: Iterable[tuple[str, str]] = (), tls: ssl.SSLContext | None = None,
              server_hostname: str | None = None, timeout: float = REQUEST_TIMEOUT,
              close_timeout: float = 0.2):
    """A WebSocket client connection (the `websockets` library's sync client) on a socket bound to
    `source`; use it as a context manager (`with websocket(...) as ws:`). A refused upgrade raises
    websockets.exceptions.InvalidStatus, whose .response has status_code, headers and body.

    close_timeout: after the closing handshake the client waits this long for the server to close
    TCP first (RFC 6455 7.1.1), but Envoy, after relaying the upstream's close, waits for the client
    to close first (the HCM's delayed_close_timeout, 1 s by default): a short wait here keeps each
    close from costing a second."""
    from websockets.sync.client import connect

    v6 = ":" in source
    host = host or ("::1" if v6 else "127.0.0.1")
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    authority = f"[{host}]" if v6 else host
    uri = f"{'wss' if tls else 'ws'}://{authority}:{port}{path}"
    kw = {"ssl": tls, "server_hostname": server_hostname or host} if tls else {}
    try:
        return connect(uri, sock=sock, additional_headers=list(headers), open_timeout=timeout,
                       close_timeout=close_timeout, compression=None, proxy=None, legacy=True, **kw)
    except BaseException:
        sock.close()
        raise


# --------------------------------------------------------------------------------------------------
# The devgate CLI, YAML, and a listener from a filesystem LDS (config reload without restart)
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


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML for JSON-like data (dict/list/str/int/bool/None). Scalars are JSON-encoded,
    which YAML reads as double-quoted strings / plain numbers and booleans. Starts with a comment so
    tools that sniff for JSON (`{`) see YAML."""

    def node(o, level: int) -> str:
        pad = "  " * level
        if isinstance(o, dict):
            if not o:
                return " {}"
            return "".join(f"\n{pad}{json.dumps(str(k))}:{node(v, level + 1)}" for k, v in o.items())
        if isinstance(o, (list, tuple)):
            if not o:
                return " []"
            return "".join(f"\n{pad}-{node(v, level + 1)}" for v in o)
        return " " + json.dumps(o)

    if not isinstance(obj, dict):
        raise TypeError("to_yaml renders a mapping at the top level")
    return "# rendered by tests/e2e/harness.py\n" + node(obj, indent).lstrip("\n") + "\n"


LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def render_lds_bootstrap(lds_path: Union[str, Path], **kw) -> tuple[dict, dict]:
    """render_bootstrap(**kw), with the listener moved out of static_resources into a filesystem LDS
    at `lds_path` (dynamic_resources.lds_config.path_config_source). Returns (bootstrap, listener);
    write the listener with write_lds() before starting Envoy, and again to change it. Envoy watches
    for the file being moved into place, so write_lds() writes a sibling and renames it over."""
    boot = render_bootstrap(**kw)
    listener = boot["static_resources"].pop("listeners")[0]
    boot["node"] = {"id": "devgate-e2e", "cluster": "devgate-e2e"}
    boot["dynamic_resources"] = {
        "lds_config": {"resource_api_version": "V3", "path_config_source": {"path": str(lds_path)}}
    }
    return boot, listener


def write_lds(lds_path: Union[str, Path], listeners: Union[dict, Sequence[dict]], version: str = "") -> None:
    """Atomically replace the LDS file: write `<name>.tmp-<n>` next to it, fsync, rename over."""
    lds_path = Path(lds_path)
    if isinstance(listeners, dict):
        listeners = [listeners]
    doc = {"resources": [{"@type": LISTENER_TYPE, **x} for x in listeners]}
    if version:
        doc["version_info"] = version
    tmp = lds_path.with_name(f"{lds_path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    with open(tmp, "w") as f:
        f.write(json.dumps(doc, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, lds_path)


def set_plugin_config(listener: dict, plugin_config: Union[dict, str, None], env: dict | None = None) -> dict:
    """A deep copy of a rendered listener whose devgate filter has a new configuration (and, if
    given, new VM environment variables)."""
    new = json.loads(json.dumps(listener))
    hcm = new["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.dynamic_modules":
            if env is not None:
                raise HarnessError("native host: the environment is Envoy's process's, fixed at start")
            typed = f["typed_config"]
            if plugin_config is None:
                typed.pop("filter_config", None)
            else:
                value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
                typed["filter_config"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
            return new
        if f["name"] != "envoy.filters.http.wasm":
            continue
        config = f["typed_config"]["config"]
        if plugin_config is None:
            config.pop("configuration", None)
        else:
            value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
            config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
        if env is not None:
            if env:
                config["vm_config"]["environment_variables"] = {"key_values": dict(env)}
            else:
                config["vm_config"].pop("environment_variables", None)
        return new
    raise HarnessError("no devgate (envoy.filters.http.wasm) filter in this listener")

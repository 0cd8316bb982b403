#!/usr/bin/env python3
"""`make soak`: devgate in Envoy at saturation for a long time, with every kind of traffic at once.

What runs (all on loopback, nothing on a fixed port):
  * the upstream: a second Envoy answering every request itself (direct_response) and reflecting in
    response headers what it received (the identity header, Authorization, Cookie, X-Api-Key, the
    API headers), so the driver can check every 200 without a slow Python upstream in the way;
  * devgate.wasm in Envoy (`--concurrency 1` unless SOAK_CONCURRENCY), rendered with
    tests/e2e/harness.py, in front of it;
  * the driver: SOAK_WORKERS processes, each an event loop over raw keep-alive HTTP/1.1 connections
    bound to the traffic classes' source addresses, every connection with one request in flight
    all the time (closed loop), so Envoy always has work queued; failed logins are paced instead.

Traffic classes and the one answer each must get (anything else is a failure, printed with details):
  network_dev     127.0.0.1   GET /_debug/vars, forged identity     200 upstream, identity 127.0.0.1
  bearer          127.0.0.77  Bearer token (devgate mint)           200 upstream, identity soak-bearer,
                                                                    no Authorization upstream
  session         127.0.0.5   Cookie devgate_session (a real login  200 upstream, identity alice, other
                              at start) + another cookie            cookies kept, session cookie gone
  api_private     127.0.0.77  X-Api-Key private maps key, /v1/maps  200 upstream, key kind/project set,
                                                                    key gone, no identity
  public          127.0.0.77  GET /healthz, forged identity         200 upstream, no identity
  deny_anonymous  127.0.0.77  GET /_debug/vars, no credential       401 devgate_no_credential + challenge
  deny_expired    127.0.0.77  Bearer expired token                  401 devgate_expired + challenge
  deny_product    127.0.0.77  X-Api-Key for geocoding on /v1/maps   403 devgate_wrong_product
  failed_login    127.0.0.8-15 POST /.devgate/login, wrong password  401 devgate_login_failed or
                  (rotating)                                        429 devgate_login_rate_limited

Failed logins cost a bcrypt verify each (until the rate limiter answers 429 for that address), so
they are paced (SOAK_LOGIN_RATE per second in all) and the htpasswd holds one cost-5 user only
(devgate pads every verify to the file's highest cost). The limiter's window is 10 s here, not 300,
so it opens again and again during the run: both answers keep coming.

Checked (exit status 1 if any fails; 2 for a setup error):
  * zero unexpected answers (status, or a 200 with the wrong identity/headers, or a socket error);
  * Envoy never restarted (same PID and start time, uptime increasing) and no Wasm VM was reloaded
    or trapped (`wasm.devgate.vm_reload*` 0, VM counts constant, devgate's internal_error counters 0,
    nothing like 'panicked|wasm trap|VM failed' in Envoy's log);
  * flat memory: Envoy's RSS (/proc/PID/status VmRSS), its heap in use (server.memory_allocated) and
    the Wasm VMs' linear memory (found in /proc/PID/smaps, see wasm_memories()) at the end of the
    load within the margin of their value after warm-up (the first 10% of the run).

Written to target/soak-report.md (and target/soak/samples.json), and printed.

Environment (defaults in brackets):
  SOAK_SECONDS      how long the load runs [600]
  SOAK_WORKERS      driver processes [2]
  SOAK_CONNECTIONS  connections per closed-loop class per worker [1]
  SOAK_LOGIN_RATE   failed logins per second, all addresses together [8]
  SOAK_SAMPLE       seconds between samples [5, or less for short runs]
  SOAK_CONCURRENCY  Envoy worker threads [1]
  DEVGATE_WASM, DEVGATE_ENVOY, DEVGATE_CLI   as for the tests

Needs `make build cli venv`. Python standard library only (plus tests/e2e/harness.py).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import harness  # noqa: E402
sys.path.insert(0, str(REPO / "bench"))
from run import cpu_model, git_revision  # noqa: E402  (make bench's: one way to name a machine)

WORK = REPO / "target" / "soak"
REPORT = REPO / "target" / "soak-report.md"

IDENTITY = harness.IDENTITY_HEADER  # x-wsgiorg-developer-user
CHALLENGE = "x-wsgiorg.developer_user"
HOST = "devgate.test"
LOGIN = "/.devgate/login"

DEV = "127.0.0.1"  # network developer
SESSION_PEER = "127.0.0.5"  # inside login.allow_from, logs in once, then uses the session cookie
OUTSIDER = "127.0.0.77"  # outside every allow list: tokens, API keys, denials, public paths
LOGIN_PEERS = [f"127.0.0.{i}" for i in range(8, 16)]  # failed logins, inside login.allow_from

SECRET = hashlib.sha256(b"devgate soak k1").digest()
SECRET_ENV = "DEVGATE_SOAK_K1"
USERS_ENV = "DEVGATE_SOAK_USERS"
# `htpasswd -nbB -C 5 alice 'correct horse'` (Apache 2.4), as in tests/e2e/test_login.py: cost 5 only.
ALICE_05 = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK"
ALICE_PASSWORD = "correct horse"
BEARER_SUB = "soak-bearer"
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW = 10

WARMUP_FRACTION = 0.10
# Margins for "flat" memory: end - after-warm-up may be at most max(fraction * after-warm-up, floor).
RSS_MARGIN = (0.10, 5 << 20)  # Envoy RSS and heap in use: 10% or 5 MiB, whichever is larger
WASM_MARGIN = (0.10, 1 << 20)  # Wasm linear memory (about 1 MiB per VM): 10% or 1 MiB (16 pages)

WASM_TROUBLE = re.compile(r"panicked|wasm trap|VM failed|RuntimeError|proxy_on_\w+ failed|wasm_fail|"
                          r"Function: \S+ failed", re.IGNORECASE)
REQUEST_TIMEOUT = 10.0
MAX_EXAMPLES = 5  # unexpected answers kept per class and worker, with details
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


class SoakError(RuntimeError):
    """The soak could not be set up (exit 2), as opposed to a finding (exit 1)."""


class SoakFailure(RuntimeError):
    """devgate answered wrongly before the load started (exit 1)."""


def env_num(name: str, default, minimum, kind=int):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SoakError(f"{name}={raw!r}: not a number") from None
    if value < minimum:
        raise SoakError(f"{name}={value}: must be at least {minimum}")
    return value


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------------------------------
# Configuration and credentials
# --------------------------------------------------------------------------------------------------


def devgate_config() -> dict:
    return {
        "network": {"allow": [f"{DEV}/32"]},
        "protect": ["/_debug/"],
        "public": ["/healthz"],
        "keys": [{"id": "k1", "secret_env": SECRET_ENV}],
        "tokens": {},
        "api": {"routes": [{"prefix": "/v1/maps", "product": "maps"},
                           {"prefix": "/v1/geo", "product": "geocoding"}]},
        "login": {
            "users_env": USERS_ENV,
            "allow_from": ["127.0.0.0/28"],
            "max_failures": LOGIN_MAX_FAILURES,
            "failure_window_seconds": LOGIN_WINDOW,
        },
    }


VM_ENV = {SECRET_ENV: b64u(SECRET), USERS_ENV: ALICE_05 + "\n"}

# What the upstream reflects: response header -> the request header it received (absent when the
# request had none: Envoy leaves out headers whose value formats to "").
ECHO = {
    "x-soak-upstream": None,  # always "1": the answer came from the upstream
    "x-soak-identity": IDENTITY,
    "x-soak-authorization": "authorization",
    "x-soak-cookie": "cookie",
    "x-soak-api-key": "x-api-key",
    "x-soak-key-kind": "x-devgate-key-kind",
    "x-soak-project": "x-devgate-project",
    "x-soak-organization": "x-devgate-organization",
}


def upstream_bootstrap() -> dict:
    headers = [{"header": {"key": k, "value": "1" if v is None else f"%REQ({v})%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in ECHO.items()]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "soak_upstream",
        "codec_type": "AUTO",
        "route_config": {
            "name": "upstream",
            "virtual_hosts": [{
                "name": "upstream",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}],
                "response_headers_to_add": headers,
            }],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": "soak_upstream",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}],
        }]},
    }


def cli(*args: str) -> str:
    r = harness.run_cli(*args)
    if r.returncode != 0:
        raise SoakError(f"devgate {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


@dataclass
class Credentials:
    token: str
    expired: str
    private_maps: str
    private_geo: str


def make_credentials(ttl_seconds: int) -> Credentials:
    """Everything minted with the shipped CLI (`devgate mint`, `devgate mint-key`) from a 0600 key file."""
    key_file = WORK / "k1.key"
    key_file.write_text(b64u(SECRET) + "\n")
    key_file.chmod(0o600)
    kf = str(key_file)
    now = int(time.time())
    hours = max(2, math.ceil(ttl_seconds / 3600) + 1)
    return Credentials(
        token=cli("mint", "--sub", BEARER_SUB, "--ttl", f"{hours}h", "--key-file", kf),
        # issued two hours ago for one hour: expired an hour ago, far beyond the 30 s leeway
        expired=cli("mint", "--sub", BEARER_SUB, "--ttl", "1h", "--now", str(now - 7200), "--key-file", kf),
        private_maps=cli("mint-key", "--kind", "private", "--org", "acme", "--project", "soak",
                         "--product", "maps", "--id", "sk-soak-maps", "--key-file", kf),
        private_geo=cli("mint-key", "--kind", "private", "--org", "acme", "--project", "soak",
                        "--product", "geocoding", "--id", "sk-soak-geo", "--key-file", kf),
    )


def login_for_session(env: harness.Envoy) -> str:
    """Log alice in through the form, as a browser would: the `devgate_session=...` it sets."""
    body = f"username=alice&password={ALICE_PASSWORD.replace(' ', '+')}&back=%2F_debug%2Fvars"
    r = env.request("POST", LOGIN, [("Origin", f"http://{HOST}"),
                                    ("Content-Type", "application/x-www-form-urlencoded")],
                    source=SESSION_PEER, body=body)
    if r.status != 303:
        raise SoakError(f"alice could not log in: {r.summary()}")
    for value in r.header_all("set-cookie"):
        if value.startswith("devgate_session="):
            return value.split(";", 1)[0]
    raise SoakError(f"the login set no session cookie: {r.summary()}")


# --------------------------------------------------------------------------------------------------
# Traffic classes
# --------------------------------------------------------------------------------------------------


def wire(method: str, path: str, headers: list, body: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"] + [f"{k}: {v}" for k, v in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + (body or "")).encode("latin-1")


@dataclass
class TrafficClass:
    name: str
    sources: list  # one connection per source (per lane); failed_login rotates over several
    requests: list  # wire bytes, sent in turn
    statuses: tuple  # the statuses it may get
    # response header -> value it must have (None: must be absent); checked on every answer
    expect: dict = field(default_factory=dict)
    paced: bool = False  # failed logins: SOAK_LOGIN_RATE in all, not closed loop
    what: str = ""


def traffic_classes(c: Credentials, session_cookie: str) -> list[TrafficClass]:
    forged = (IDENTITY, "forged")
    absent_upstream = {"x-soak-upstream": None}  # devgate answered itself

    def upstream(identity=None, **more):
        exp = {"x-soak-upstream": "1", "x-soak-identity": identity, "x-soak-authorization": None,
               "x-soak-api-key": None, "x-soak-key-kind": None, "x-soak-project": None}
        exp.update(more)
        return exp

    def denied(details, challenge):
        return {**absent_upstream, harness.DETAILS_HEADER: details,
                "www-authenticate": CHALLENGE if challenge else None, "cache-control": "no-store"}

    form = [("Origin", f"http://{HOST}"), ("Content-Type", "application/x-www-form-urlencoded")]
    wrong = [f"username=alice&password=wrong-{i}" for i in range(3)] + ["username=mallory&password=x"]
    return [
        TrafficClass("network_dev", [DEV], [wire("GET", "/_debug/vars", [forged])], (200,),
                     upstream(DEV), what="network developer, forged identity header"),
        TrafficClass("bearer", [OUTSIDER], [wire("GET", "/_debug/vars",
                                                 [("Authorization", f"Bearer {c.token}"), forged])],
                     (200,), upstream(BEARER_SUB), what="Authorization: Bearer <token>"),
        TrafficClass("session", [SESSION_PEER], [wire("GET", "/_debug/vars",
                                                      [("Cookie", f"theme=dark; {session_cookie}"), forged])],
                     (200,), upstream("alice", **{"x-soak-cookie": "theme=dark"}),
                     what="session cookie from a real login"),
        TrafficClass("api_private", [OUTSIDER], [wire("GET", "/v1/maps/tiles?z=3",
                                                      [("X-Api-Key", c.private_maps), forged])],
                     (200,), upstream(None, **{"x-soak-key-kind": "private_key", "x-soak-project": "soak",
                                               "x-soak-organization": "acme"}),
                     what="private API key (X-Api-Key) on an API route"),
        TrafficClass("public", [OUTSIDER], [wire("GET", "/healthz", [forged])], (200,), upstream(None),
                     what="public path, anonymous, forged identity header"),
        TrafficClass("deny_anonymous", [OUTSIDER], [wire("GET", "/_debug/vars", [])], (401,),
                     denied("devgate_no_credential", True), what="protected path, no credential"),
        TrafficClass("deny_expired", [OUTSIDER], [wire("GET", "/_debug/vars",
                                                       [("Authorization", f"Bearer {c.expired}")])],
                     (401,), denied("devgate_expired", True), what="expired token"),
        TrafficClass("deny_product", [OUTSIDER], [wire("GET", "/v1/maps/tiles?z=3",
                                                       [("X-Api-Key", c.private_geo)])],
                     (403,), denied("devgate_wrong_product", False), what="private key for another product"),
        TrafficClass("failed_login", list(LOGIN_PEERS), [wire("POST", LOGIN, form, b) for b in wrong],
                     (401, 429), {**absent_upstream, "cache-control": "no-store"}, paced=True,
                     what="POST /.devgate/login, wrong password, rotating peers"),
    ]


FAILED_LOGIN_DETAILS = {401: ("devgate_login_failed", CHALLENGE), 429: ("devgate_login_rate_limited", None)}


def check_answer(tc: TrafficClass, status: int, headers: dict) -> str | None:
    """None if the answer is what the class must get, else what is wrong."""
    if status not in tc.statuses:
        return f"status {status}, expected {'/'.join(map(str, tc.statuses))}"
    for name, want in tc.expect.items():
        got = headers.get(name)
        if got != want:
            return f"{name}: {got!r}, expected {want!r}"
    if tc.name == "failed_login":
        details, challenge = FAILED_LOGIN_DETAILS[status]
        if headers.get(harness.DETAILS_HEADER) != details or headers.get("www-authenticate") != challenge:
            return (f"{status} with details {headers.get(harness.DETAILS_HEADER)!r}, www-authenticate "
                    f"{headers.get('www-authenticate')!r}")
    return None


# --------------------------------------------------------------------------------------------------
# The driver: one event loop per process over raw keep-alive connections
# --------------------------------------------------------------------------------------------------

N_BUCKETS = 96  # latency histogram: bucket i holds [2^(i/4), 2^((i+1)/4)) microseconds


def bucket(us: float) -> int:
    return min(N_BUCKETS - 1, max(0, int(4 * math.log2(max(us, 1.0)))))


def bucket_upper_ms(i: int) -> float:
    return 2 ** ((i + 1) / 4) / 1000.0


class Lane:
    """One connection of one class, one request in flight at a time."""

    def __init__(self, tc: TrafficClass, sources: list, interval: float, offset: float):
        self.tc = tc
        self.sources = sources
        self.src_i = 0
        self.req_i = 0
        self.interval = interval  # paced lanes: seconds between requests; 0 = closed loop
        self.next_send = time.monotonic() + offset
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.sent_at = 0.0
        self.in_flight = False
        self.connects = 0

    @property
    def source(self) -> str:
        return self.sources[self.src_i]

    def connect(self, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(REQUEST_TIMEOUT)
        s.bind((self.source, 0))
        s.connect(("127.0.0.1", port))
        self.sock = s
        self.buf = bytearray()
        self.connects += 1

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = bytearray()
        self.in_flight = False


def parse_response(buf: bytearray):
    """(status, headers, consumed) for one complete response at the start of buf, or None if more
    bytes are needed. Header names lower-cased; a repeated header keeps its values joined by ', '."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0][9:12])
    headers: dict = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        v = v.strip()
        headers[k] = f"{headers[k]}, {v}" if k in headers else v
    pos = end + 4
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(buf) < pos + n:
            return None
        return status, headers, pos + n
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                end_t = buf.find(b"\r\n\r\n", pos - 2)
                if end_t < 0:
                    return None
                return status, headers, end_t + 4
            if len(buf) < pos + size + 2:
                return None
            pos += size + 2
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, pos
    raise ValueError(f"response without a length: {head[0]!r}")


def new_class_stats() -> dict:
    return {"statuses": {}, "unexpected": 0, "errors": 0, "examples": [], "latency": [0] * N_BUCKETS,
            "connects": 0}


def worker_main(wid: int, port: int, classes: list[TrafficClass], n_conn: int, n_workers: int,
                login_rate: float, stop_at, out: mp.Queue) -> None:
    """One driver process. stop_at: a shared double, the monotonic time to stop sending (the parent
    moves it earlier if Envoy dies); then in-flight requests are waited for and the stats sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    lanes: list[Lane] = []
    for tc in classes:
        if tc.paced:
            mine = tc.sources[wid::n_workers]
            if not mine or login_rate <= 0:
                continue
            # one lane per worker rotating over its addresses, at its share of the rate
            share = login_rate * len(mine) / len(tc.sources)
            lanes.append(Lane(tc, mine, 1.0 / share, offset=wid / login_rate))
        else:
            for _ in range(n_conn):
                lanes.append(Lane(tc, tc.sources, 0.0, 0.0))
    stats = {tc.name: new_class_stats() for tc in classes}
    sel = selectors.DefaultSelector()

    def record_problem(lane: Lane, kind: str, detail: str, status=None, headers=None) -> None:
        st = stats[lane.tc.name]
        if kind == "error":
            st["errors"] += 1
        else:
            st["unexpected"] += 1
        if len(st["examples"]) < MAX_EXAMPLES:
            st["examples"].append({"time": datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3],
                                   "worker": wid, "source": lane.source, "kind": kind, "detail": detail,
                                   "status": status, "headers": headers,
                                   "request": lane.tc.requests[lane.req_i].decode("latin-1")[:300]})

    def drop(lane: Lane) -> None:
        if lane.sock is not None:
            try:
                sel.unregister(lane.sock)
            except (KeyError, ValueError):
                pass
        lane.close()

    def send(lane: Lane) -> None:
        if lane.sock is None:
            try:
                lane.connect(port)
            except OSError as e:
                record_problem(lane, "error", f"connect from {lane.source}: {e!r}")
                lane.close()
                lane.next_send = time.monotonic() + 0.1
                return
            sel.register(lane.sock, selectors.EVENT_READ, lane)
        try:
            lane.sock.sendall(lane.tc.requests[lane.req_i])
        except OSError as e:
            record_problem(lane, "error", f"send: {e!r}")
            drop(lane)
            lane.next_send = time.monotonic() + 0.1
            return
        lane.sent_at = time.monotonic()
        lane.in_flight = True

    def advance(lane: Lane) -> None:
        lane.req_i = (lane.req_i + 1) % len(lane.tc.requests)
        if lane.interval:
            lane.next_send = max(lane.next_send + lane.interval, time.monotonic() - 1.0)
            if len(lane.sources) > 1:  # rotate: the next request comes from the next address
                drop(lane)
                lane.src_i = (lane.src_i + 1) % len(lane.sources)
        else:
            lane.next_send = 0.0

    def on_readable(lane: Lane) -> None:
        try:
            data = lane.sock.recv(65536)
        except OSError as e:
            data = None
            err = repr(e)
        else:
            err = "connection closed by Envoy"
        if not data:
            if lane.in_flight:
                record_problem(lane, "error", f"{err} with a request in flight ({len(lane.buf)} bytes read)")
                advance(lane)
            drop(lane)
            return
        lane.buf += data
        while lane.in_flight:
            try:
                parsed = parse_response(lane.buf)
            except (ValueError, IndexError) as e:
                record_problem(lane, "error", f"unreadable response: {e!r}: {bytes(lane.buf[:300])!r}")
                drop(lane)
                advance(lane)
                return
            if parsed is None:
                return
            status, headers, used = parsed
            del lane.buf[:used]
            if 100 <= status < 200:
                continue
            now = time.monotonic()
            st = stats[lane.tc.name]
            st["statuses"][status] = st["statuses"].get(status, 0) + 1
            st["latency"][bucket((now - lane.sent_at) * 1e6)] += 1
            problem = check_answer(lane.tc, status, headers)
            if problem:
                record_problem(lane, "unexpected", problem, status, headers)
            lane.in_flight = False
            closing = headers.get("connection", "").lower() == "close"
            if closing:
                drop(lane)
            advance(lane)

    last_report = 0.0
    draining = False
    try:
        while True:
            now = time.monotonic()
            if not draining and now >= stop_at.value:
                draining = True
                drain_deadline = now + REQUEST_TIMEOUT
            if draining and (not any(x.in_flight for x in lanes) or now >= drain_deadline):
                break
            if not draining:
                for lane in lanes:
                    if not lane.in_flight and lane.next_send <= now:
                        send(lane)
            for lane in lanes:
                if lane.in_flight and now - lane.sent_at > REQUEST_TIMEOUT:
                    record_problem(lane, "error", f"no answer within {REQUEST_TIMEOUT:.0f} s")
                    drop(lane)
                    advance(lane)
            pending = [x.next_send for x in lanes if not x.in_flight and x.next_send > now]
            timeout = min([0.2] + [max(0.0, p - now) for p in pending])
            for key, _ in sel.select(timeout):
                on_readable(key.data)
            if now - last_report >= 1.0:
                last_report = now
                out.put(("progress", wid, {n: sum(s["statuses"].values()) for n, s in stats.items()}))
    finally:
        for lane in lanes:
            stats[lane.tc.name]["connects"] += lane.connects
            drop(lane)
        out.put(("final", wid, stats))


# --------------------------------------------------------------------------------------------------
# Sampling Envoy
# --------------------------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def start_time(pid: int) -> int:
    return int(proc_stat(pid)[19])  # field 22: starttime, in clock ticks since boot


def cpu_seconds(pid: int) -> float:
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


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SoakError(f"no VmRSS for {pid}")


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
    t: float  # seconds since the load started
    requests: int  # answers the driver counted so far (its progress reports, up to a second late)
    rq_total: int  # http.e2e.downstream_rq_total: every request Envoy took, setup included
    rps: float  # Envoy's downstream requests per second since the previous sample
    rss: int
    heap: int  # server.memory_allocated
    heap_size: int  # server.memory_heap_size
    wasm_size: int  # sum of the VMs' linear memory sizes
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
        gone = self.alive()
        if gone:
            self.problems.append(f"t={t:.0f}s: {gone}")
            return None
        now = time.monotonic()
        cpu, wcpu, host = cpu_seconds(self.pid), worker_threads_cpu(self.pid), host_cpu()
        st = self.stats(SAMPLE_STATS)
        wm = wasm_memories(self.pid)
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
                   heap_size=st["server.memory_heap_size"], wasm_size=sum(x for x, _ in wm),
                   wasm_rss=sum(x for _, x in wm), wasm_vms=len(wm), vm_count=st["wasm.wasm_vm_count"],
                   envoy_cpu_pct=cpu_pct, worker_cpu_pct=wcpu_pct, host_busy_pct=host_pct,
                   uptime=st["server.uptime"], cx_active=st["http.e2e.downstream_cx_active"])
        if self.samples and s.uptime < self.samples[-1].uptime:
            self.problems.append(f"t={t:.0f}s: server.uptime went back from {self.samples[-1].uptime} to "
                                 f"{s.uptime}: Envoy restarted")
        self.samples.append(s)
        return s


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f}"


SAMPLE_HEADER = ("| t s | req/s | Envoy RSS MiB | heap in use MiB | Wasm linear mem KiB (VMs) | Wasm RSS KiB | "
                 "Envoy CPU % | worker CPU % | host busy % | conns |")


def sample_row(s: Sample) -> str:
    return (f"| {s.t:.0f} | {s.rps:.0f} | {mib(s.rss)} | {mib(s.heap)} | {s.wasm_size // 1024} ({s.wasm_vms}) | "
            f"{s.wasm_rss // 1024} | {s.envoy_cpu_pct:.0f} | {s.worker_cpu_pct:.0f} | {s.host_busy_pct:.0f} | "
            f"{s.cx_active} |")


# --------------------------------------------------------------------------------------------------
# Verdicts and report
# --------------------------------------------------------------------------------------------------


def margin(value: int, rule: tuple) -> int:
    frac, floor = rule
    return max(int(value * frac), floor)


def memory_checks(samples: list[Sample], duration: float) -> tuple[list[dict], Sample | None, Sample | None]:
    after = [s for s in samples if s.t >= WARMUP_FRACTION * duration]
    if len(after) < 2:
        return [], None, None
    base, end = after[0], after[-1]
    out = []
    for label, attr, rule in (("Envoy RSS (VmRSS)", "rss", RSS_MARGIN),
                              ("Envoy heap in use (server.memory_allocated)", "heap", RSS_MARGIN),
                              ("Wasm linear memory, all VMs", "wasm_size", WASM_MARGIN)):
        b, e = getattr(base, attr), getattr(end, attr)
        peak = max(getattr(s, attr) for s in after)
        allowed = margin(b, rule)
        out.append({"what": label, "base": b, "end": e, "peak": peak, "growth": e - b, "allowed": allowed,
                    "ok": e - b <= allowed, "rule": f"{int(rule[0] * 100)}% or {rule[1] >> 20} MiB"})
    return out, base, end


def percentile_ms(hist: list[int], q: float) -> float | None:
    n = sum(hist)
    if not n:
        return None
    want = q * n
    acc = 0
    for i, c in enumerate(hist):
        acc += c
        if acc >= want:
            return bucket_upper_ms(i)
    return bucket_upper_ms(len(hist) - 1)


def merge_stats(finals: list[dict]) -> dict:
    out: dict = {}
    for stats in finals:
        for name, st in stats.items():
            m = out.setdefault(name, new_class_stats())
            for k, v in st["statuses"].items():
                m["statuses"][k] = m["statuses"].get(k, 0) + v
            m["unexpected"] += st["unexpected"]
            m["errors"] += st["errors"]
            m["examples"] += st["examples"]
            m["connects"] += st["connects"]
            m["latency"] = [a + b for a, b in zip(m["latency"], st["latency"])]
    return out


def wasm_health(env: harness.Envoy, vm0: dict) -> tuple[list[str], list[str], dict]:
    """(counter problems, Envoy log lines that look like a trap or VM failure, the counters looked at);
    both lists empty when the VMs are healthy."""
    problems = []
    names = ("wasm.devgate.vm_reload", "wasm.devgate.vm_reload_backoff", "wasm.devgate.vm_reload_failure",
             "wasm.devgate.vm_reload_success", "wasm.envoy.wasm.runtime.v8.active",
             "wasm.envoy.wasm.runtime.v8.created", "wasm.wasm_vm_count",
             "wasmcustom.devgate.requests.denied.internal_error", "wasmcustom.devgate.login.internal_error",
             "wasmcustom.devgate.config.rejected")
    now = {n: env.counters("^" + re.escape(n) + "$").get(n, 0) for n in names}
    for n in names[:4] + names[7:]:
        if now[n]:
            problems.append(f"{n} = {now[n]}")
    for n in names[4:7]:
        if now[n] != vm0[n]:
            problems.append(f"{n} went from {vm0[n]} to {now[n]} (a VM was created or torn down)")
    log_lines = [line for line in env.log_text().splitlines() if WASM_TROUBLE.search(line)]
    return problems, log_lines, now


def devgate_counters(env: harness.Envoy) -> dict:
    return {k: v for k, v in env.counters(r"^wasmcustom\.devgate\.(requests|login)\.").items() if v}


# What devgate must have counted for each class's answers: (class, status or None for all) -> counter.
COUNTED = [
    ("network_dev", None, "wasmcustom.devgate.requests.allowed.network"),
    ("bearer", None, "wasmcustom.devgate.requests.allowed.bearer"),
    ("session", None, "wasmcustom.devgate.requests.allowed.session"),
    ("api_private", None, "wasmcustom.devgate.requests.allowed.private_key"),
    ("public", None, "wasmcustom.devgate.requests.allowed.anonymous"),
    ("deny_anonymous", None, "wasmcustom.devgate.requests.denied.no_credential"),
    ("deny_expired", None, "wasmcustom.devgate.requests.denied.expired"),
    ("deny_product", None, "wasmcustom.devgate.requests.denied.wrong_product"),
    ("failed_login", 401, "wasmcustom.devgate.login.failed"),
    ("failed_login", 429, "wasmcustom.devgate.login.rate_limited"),
]


def counter_check(merged: dict, c0: dict, c1: dict) -> list[tuple[str, str, int, int]]:
    """[(class/status, counter, driver's answers, counter delta)] over the load; the counters not
    listed in COUNTED must not have moved at all."""
    rows = []
    for name, status, counter in COUNTED:
        st = merged.get(name, new_class_stats())["statuses"]
        n = sum(st.values()) if status is None else st.get(status, 0)
        rows.append((name if status is None else f"{name} {status}", counter, n, c1.get(counter, 0) - c0.get(counter, 0)))
    listed = {c for _, _, c in COUNTED}
    for counter in sorted(set(c0) | set(c1)):
        if counter not in listed and c1.get(counter, 0) != c0.get(counter, 0):
            rows.append(("(none)", counter, 0, c1.get(counter, 0) - c0.get(counter, 0)))
    return rows


def report(meta: dict, classes: list[TrafficClass], merged: dict, samples: list[Sample], mem: list[dict],
           base: Sample | None, end: Sample | None, failures: list[str], counted: list,
           wasm_counters: dict) -> str:
    d = meta["duration_s"]
    total = sum(sum(st["statuses"].values()) for st in merged.values())
    lines = [
        "# devgate soak",
        "",
        f"- date: {meta['date']}; result: **{'PASS' if not failures else 'FAIL'}**",
        f"- machine: {meta['nproc']} CPUs, {meta['cpu_model']}, Linux {meta['kernel']} (shared with other work)",
        f"- Envoy {meta['envoy_version']} `--concurrency {meta['concurrency']}`, PID {meta['pid']}; "
        f"devgate {meta['revision']}, devgate.wasm {meta['wasm_bytes']} bytes",
        f"- command: `{meta['command']}`",
        f"- load: {d} s (warm-up: the first {WARMUP_FRACTION:.0%}, {d * WARMUP_FRACTION:.0f} s); driver "
        f"{meta['workers']} processes × {meta['closed_lanes']} closed-loop keep-alive connections, plus failed "
        f"logins paced at {meta['login_rate']}/s from {len(LOGIN_PEERS)} rotating addresses; samples every "
        f"{meta['sample_s']} s",
        f"- answers: {total:,} in {meta['load_s']:.0f} s = **{total / max(meta['load_s'], 1e-9):,.0f} req/s**; "
        f"Envoy counted {meta['envoy_rq']:,} downstream requests (the driver's plus the setup's); "
        f"Envoy CPU {meta['envoy_cpu_pct']:.0f}% of a core (worker thread {meta['worker_cpu_pct']:.0f}%), "
        f"whole machine busy {meta['host_busy_pct']:.0f}% of {meta['nproc']} CPUs",
        f"- where the CPU went (% of one core): devgate's Envoy {meta['envoy_cpu_pct']:.0f}, upstream Envoy "
        f"{meta['upstream_cpu_pct']:.0f}, driver {meta['driver_cpu_pct']:.0f}, other processes on the machine "
        f"{meta['other_cpu_pct']:.0f}, interrupts (the kernel's loopback TCP work) {meta['irq_cpu_pct']:.0f}",
        "",
        "## Traffic classes",
        "",
        "| class | what | source | expected | answers | req/s | statuses | unexpected | socket errors | "
        "connects | p50 ms | p99 ms |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for tc in classes:
        st = merged.get(tc.name, new_class_stats())
        n = sum(st["statuses"].values())
        src = tc.sources[0] if len(tc.sources) == 1 else f"{tc.sources[0]}–{tc.sources[-1].rsplit('.', 1)[1]}"
        statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(st["statuses"].items())) or "–"
        p50, p99 = percentile_ms(st["latency"], 0.5), percentile_ms(st["latency"], 0.99)
        lines.append(f"| {tc.name} | {tc.what} | {src} | {'/'.join(map(str, tc.statuses))} | {n:,} | "
                     f"{n / max(meta['load_s'], 1e-9):,.1f} | {statuses} | {st['unexpected']} | {st['errors']} | "
                     f"{st['connects']} | {'–' if p50 is None else f'{p50:.2f}'} | "
                     f"{'–' if p99 is None else f'{p99:.2f}'} |")
    lines += ["", "(Latency from histogram buckets of 2^¼: upper bounds, ±19%.)", ""]

    lines += ["## Memory", "",
              f"After warm-up = the first sample at or after {WARMUP_FRACTION:.0%} of the run"
              + (f" (t = {base.t:.0f} s)" if base else "") + "; end = the last sample under load"
              + (f" (t = {end.t:.0f} s)" if end else "") + ".", "",
              "| what | after warm-up | end | peak after warm-up | growth | allowed | |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for m in mem:
        kib = m["what"].startswith("Wasm")
        f = (lambda x: f"{x / 1024:,.0f} KiB") if kib else (lambda x: f"{mib(x)} MiB")
        lines.append(f"| {m['what']} | {f(m['base'])} | {f(m['end'])} | {f(m['peak'])} | "
                     f"{'+' if m['growth'] >= 0 else ''}{f(m['growth'])} | {f(m['allowed'])} ({m['rule']}) | "
                     f"{'ok' if m['ok'] else '**GREW**'} |")
    if samples:
        first = samples[0]
        lines += ["", f"At the start of the load (t = {first.t:.0f} s): RSS {mib(first.rss)} MiB, heap in use "
                  f"{mib(first.heap)} MiB, Wasm linear memory {first.wasm_size // 1024} KiB in {first.wasm_vms} "
                  f"VMs (wasm.wasm_vm_count {first.vm_count})."]
    if base and end and end.rq_total > base.rq_total:
        n = end.rq_total - base.rq_total
        lines += ["", f"Sensitivity: {n:,} requests between the two samples, so the RSS margin would catch a "
                  f"leak of {margin(base.rss, RSS_MARGIN) / n:.1f} bytes per request or more, the Wasm margin one "
                  f"of {margin(base.wasm_size, WASM_MARGIN) / n:.2f} bytes per request."]
    lines += ["", "Why these margins: Envoy's RSS and tcmalloc heap move by a few MiB without any leak (tcmalloc "
              "keeps freed spans in per-thread and central caches and returns them to the kernel lazily; the "
              "admin requests of the sampler and connection buffers come and go), so 10% of ~100 MiB or 5 MiB is "
              "noise, not growth. A Wasm VM's linear memory is about 1 MiB, grows in 64 KiB pages and never "
              "shrinks, so 5 MiB would hide a fivefold growth: its margin is 10% or 1 MiB (16 pages). Envoy 1.40 "
              "has no per-VM memory stat (only wasm.wasm_vm_count and wasm.envoy.wasm.runtime.v8.active/created), "
              "so the linear memories are read from /proc/PID/smaps: each is the read-write start of V8's 8 GiB "
              "reservation for it; their number is checked against wasm.wasm_vm_count.", ""]

    lines += ["## Time series", "", SAMPLE_HEADER, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [sample_row(s) for s in samples]

    lines += ["", "## Envoy and the Wasm VMs", ""]
    lines += [f"- same Envoy process throughout: PID {meta['pid']}, exe {meta['exe']}"
              + ("" if not meta["restart_problems"] else ": **NO**: " + "; ".join(meta["restart_problems"]))]
    lines += [f"- `{k}`: {v}" for k, v in wasm_counters.items()]
    lines += [f"- Envoy log lines matching {WASM_TROUBLE.pattern!r}: {meta['log_trouble']}"]
    lines += ["", "devgate's own counters over the load (`wasmcustom.devgate.*`) against what the driver got:", "",
              "| class | counter | driver's answers | counter moved by | |", "|---|---|---:|---:|---|"]
    lines += [f"| {what} | `{counter}` | {n:,} | {delta:,} | {'ok' if n == delta else '**differs**'} |"
              for what, counter, n, delta in counted]

    examples = [(tc.name, ex) for tc in classes for ex in merged.get(tc.name, new_class_stats())["examples"]]
    if examples:
        lines += ["", "## Unexpected answers (first few per class and worker)", ""]
        for name, ex in examples:
            hdrs = json.dumps(ex["headers"]) if ex["headers"] else ""
            lines.append(f"- {name} at {ex['time']} from {ex['source']} (worker {ex['worker']}): {ex['kind']}: "
                         f"{ex['detail']}; headers {hdrs}; request `{ex['request']!r}`")
    lines += ["", "## Verdict", ""]
    lines += [f"- FAIL: {f}" for f in failures] or ["- PASS: every answer was the expected one, Envoy and its Wasm "
                                                    "VMs ran throughout, memory stayed flat."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def preflight(env: harness.Envoy, classes: list[TrafficClass]) -> list[str]:
    """One request per class on its own connection before the load: a class that is wrong from the
    start is reported as such (and the soak fails) rather than drowned in counts."""
    problems = []
    port = env.port_for(DEV)
    for tc in classes:
        src = tc.sources[0]
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT,
                                      source_address=(src, 0)) as s:
            s.sendall(tc.requests[0])
            buf = bytearray()
            parsed = None
            while parsed is None:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                parsed = parse_response(buf)
        if parsed is None:
            problems.append(f"{tc.name}: no complete answer ({bytes(buf[:200])!r})")
            continue
        status, headers, _ = parsed
        problem = check_answer(tc, status, headers)
        if problem:
            problems.append(f"{tc.name}: {problem}; headers {headers}")
    return problems


def envoy_version() -> str:
    try:
        out = subprocess.run([str(harness.envoy_path()), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = re.search(r"version:\s*\S+?/(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def main() -> int:
    duration = env_num("SOAK_SECONDS", 600, 5)
    workers = env_num("SOAK_WORKERS", 2, 1)
    n_conn = env_num("SOAK_CONNECTIONS", 1, 1)
    login_rate = env_num("SOAK_LOGIN_RATE", 8.0, 0.0, float)
    sample_s = env_num("SOAK_SAMPLE", min(5.0, max(1.0, duration / 30)), 0.5, float)
    concurrency = env_num("SOAK_CONCURRENCY", 1, 1)
    harness.wasm_path(), harness.envoy_path(), harness.cli_path()  # each raises with what to run

    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    creds = make_credentials(duration)
    log(f"{duration} s of load, {workers} driver processes, Envoy --concurrency {concurrency}; work dir {WORK}")

    upstream = harness.start_envoy(upstream_bootstrap(), WORK / "upstream")
    procs: list[mp.Process] = []
    env = None
    try:
        bootstrap = harness.render_bootstrap(upstream_port=upstream.port_for("127.0.0.1"),
                                             plugin_config=devgate_config(), env=VM_ENV,
                                             listen=(("127.0.0.1", 0),))
        env = harness.start_envoy(bootstrap, WORK / "devgate", extra_args=("--concurrency", str(concurrency)))
        port = env.port_for(DEV)
        log(f"devgate Envoy PID {env.proc.pid} on 127.0.0.1:{port} (admin {env.admin_port}), upstream Envoy on "
            f"{upstream.port_for('127.0.0.1')}")
        classes = traffic_classes(creds, login_for_session(env))
        problems = preflight(env, classes)
        if problems:
            for p in problems:
                log(f"preflight: {p}")
            raise SoakFailure("a traffic class got the wrong answer before the load even started (see above)")

        vm0 = {n: env.counters("^" + re.escape(n) + "$").get(n, 0)
               for n in ("wasm.envoy.wasm.runtime.v8.active", "wasm.envoy.wasm.runtime.v8.created",
                         "wasm.wasm_vm_count")}
        sampler = Sampler(env)
        ctx = mp.get_context("fork")
        out: mp.Queue = ctx.Queue()
        c0 = devgate_counters(env)
        t0 = time.monotonic()
        t_end = t0 + duration
        stop_at = ctx.Value("d", t_end, lock=False)
        for wid in range(workers):
            p = ctx.Process(target=worker_main, args=(wid, port, classes, n_conn, workers, login_rate, stop_at, out),
                            daemon=True, name=f"soak-driver-{wid}")
            p.start()
            procs.append(p)
        progress = {wid: {} for wid in range(workers)}
        finals: dict[int, dict] = {}
        cpu0, wcpu0, host0 = sampler.cpu()
        up_cpu0 = cpu_seconds(upstream.proc.pid)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        print(SAMPLE_HEADER, flush=True)
        next_sample = t0
        cpu1 = wcpu1 = host1 = None
        t_load_end = None
        while len(finals) < workers:
            now = time.monotonic()
            if now >= next_sample and now < t_end + sample_s / 2:
                reqs = sum(sum(p.values()) for p in progress.values())
                s = sampler.take(now - t0, reqs)
                if s is None:
                    log(f"Envoy is gone: {sampler.problems[-1]}; stopping the load")
                    stop_at.value = now
                    t_end = now
                    next_sample = math.inf
                    continue
                print(sample_row(s), flush=True)
                next_sample += sample_s
            if now >= t_end and cpu1 is None:
                cpu1, wcpu1, host1 = sampler.cpu()
                up_cpu1 = cpu_seconds(upstream.proc.pid)
                t_load_end = now
            try:
                kind, wid, data = out.get(timeout=max(0.05, min(0.5, next_sample - time.monotonic())))
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and out.empty():
                    break
                continue
            if kind == "progress":
                progress[wid] = data
            else:
                finals[wid] = data
        if len(finals) < workers:
            log(f"only {len(finals)} of {workers} driver processes reported")
        load_s = (t_load_end or time.monotonic()) - t0
        if cpu1 is None:
            cpu1, wcpu1, host1 = sampler.cpu()
            up_cpu1 = cpu_seconds(upstream.proc.pid)
        for p in procs:  # reaped, so their CPU time shows in RUSAGE_CHILDREN
            p.join(10)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        driver_s = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                    + self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
        ours_s = (cpu1 - cpu0) + (up_cpu1 - up_cpu0) + driver_s
        other_pct = max(0.0, 100.0 * (host_cpu_seconds(host0, host1, 2) - ours_s) / load_s)
        irq_pct = 100.0 * host_cpu_seconds(host0, host1, 3) / load_s

        # verdicts
        failures: list[str] = []
        merged = merge_stats(list(finals.values()))
        if len(finals) < workers:
            failures.append(f"{workers - len(finals)} driver processes died without reporting")
        for tc in classes:
            st = merged.get(tc.name, new_class_stats())
            n = sum(st["statuses"].values())
            if st["unexpected"] or st["errors"]:
                failures.append(f"{tc.name}: {st['unexpected']} unexpected answers, {st['errors']} socket errors "
                                f"(examples in the report)")
            if n == 0:
                failures.append(f"{tc.name}: no answers at all")
        if "failed_login" in merged and login_rate > 0 and duration >= 2 * LOGIN_WINDOW:
            got = merged["failed_login"]["statuses"]
            if not got.get(401) or not got.get(429):
                failures.append(f"failed_login: expected both 401 and 429 over {duration} s, got {got}")
        restart = list(sampler.problems)
        gone = sampler.alive()
        if gone and not restart:
            restart.append(gone)
        failures += [f"Envoy: {p}" for p in restart]
        wasm_problems, log_lines, wasm_now = ([], [], {}) if gone else wasm_health(env, vm0)
        if gone:  # the log is still there to read
            log_lines = [line for line in env.log_text().splitlines() if WASM_TROUBLE.search(line)]
        failures += [f"Wasm: {p}" for p in wasm_problems]
        failures += [f"Envoy log: {line}" for line in log_lines[:10]]
        samples = sampler.samples
        bad_vm = [s for s in samples if s.wasm_vms != s.vm_count]
        if bad_vm:
            failures.append(f"Wasm memory: found {bad_vm[0].wasm_vms} linear memories in smaps but "
                            f"wasm.wasm_vm_count is {bad_vm[0].vm_count} (t={bad_vm[0].t:.0f}s): cannot attribute")
        mem, base, end = memory_checks(samples, duration)
        if not mem:
            failures.append("too few samples after warm-up to judge memory")
        for m in mem:
            if not m["ok"]:
                failures.append(f"{m['what']} grew by {m['growth'] / 1024:,.0f} KiB after warm-up "
                                f"(allowed {m['allowed'] / 1024:,.0f} KiB)")
        counters = {} if gone else devgate_counters(env)
        counted = [] if gone else counter_check(merged, c0, counters)
        if not any(st["errors"] for st in merged.values()):  # a lost request may or may not be counted
            for what, counter, n, delta in counted:
                if n != delta:
                    failures.append(f"devgate's {counter} moved by {delta:,} during the load, but the driver got "
                                    f"{n:,} answers for {what}")
        envoy_rq = 0 if gone else env.counters(r"^http\.e2e\.downstream_rq_total$").get("http.e2e.downstream_rq_total", 0)
        settings = {k: os.environ[k] for k in sorted(os.environ) if k.startswith("SOAK_")}
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "nproc": os.cpu_count(), "cpu_model": cpu_model(), "kernel": platform.release(),
            "envoy_version": envoy_version(), "concurrency": concurrency, "pid": env.proc.pid,
            "exe": sampler.exe, "revision": git_revision(), "wasm_bytes": harness.wasm_path().stat().st_size,
            "command": " ".join([f"{k}={v}" for k, v in settings.items()] + ["bench/soak.py"]),
            "duration_s": duration, "workers": workers,
            "closed_lanes": n_conn * sum(1 for tc in classes if not tc.paced), "login_rate": login_rate,
            "sample_s": sample_s, "load_s": load_s, "envoy_rq": envoy_rq,
            "envoy_cpu_pct": 100.0 * (cpu1 - cpu0) / load_s, "worker_cpu_pct": 100.0 * (wcpu1 - wcpu0) / load_s,
            "host_busy_pct": 100.0 * (host1[0] - host0[0]) / max(host1[1] - host0[1], 1),
            "restart_problems": restart,
            "upstream_cpu_pct": 100.0 * (up_cpu1 - up_cpu0) / load_s, "driver_cpu_pct": 100.0 * driver_s / load_s,
            "other_cpu_pct": other_pct, "irq_cpu_pct": irq_pct,
            "log_trouble": len(log_lines),
        }
        md = report(meta, classes, merged, samples, mem, base, end, failures, counted, wasm_now)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(md)
        (WORK / "samples.json").write_text(json.dumps({"meta": meta, "samples": [s.__dict__ for s in samples],
                                                       "classes": merged}, indent=1, default=str))
        print()
        print(md)
        log(f"written {REPORT.relative_to(REPO)} ({'PASS' if not failures else 'FAIL'}); Envoy log in "
            f"{(WORK / 'devgate').relative_to(REPO)}/")
        return 1 if failures else 0
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(5)
        if env is not None:
            env.stop()
        upstream.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SoakError, harness.HarnessError) as e:
        log(f"error: {e}")
        sys.exit(2)
    except SoakFailure as e:
        log(f"FAIL: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)

"""The suite's clients: a raw HTTP/1.1 client that puts bytes on the wire as given (odd targets,
repeated and underscore headers, non-UTF-8 values) from a chosen source address, an HTTP/2 client
(the `h2` library), TLS and WebSocket clients, and what the demo upstream echoes. Imported through
`harness`."""

from __future__ import annotations

import json
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

from harness_base import (
    DETAILS_HEADER,
    IDENTITY_HEADER,
    REMOTE_HEADER,
    REQUEST_TIMEOUT,
    UPSTREAM_MARKER,
    HarnessError,
)
from harness_bootstrap import CERTS

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

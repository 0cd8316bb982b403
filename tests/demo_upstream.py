#!/usr/bin/env python3
"""Demo upstream for devgate: echoes every request back as JSON.

Answers any method on any path with 200 and a JSON body

    {"method": "GET", "path": "/raw/request-target?q", "headers": [["name", "value"], ...],
     "body": "...", "trailers": [["name", "value"], ...]}

describing exactly what arrived: the request-target as sent (not normalised), every header line in
arrival order with repeats kept and the name's case as received, bytes decoded as latin-1 so nothing is
lost or rejected; `trailers` are those of a chunked body (Envoy sends them to an HTTP/1 upstream
only with `enable_trailers` in the cluster's HTTP/1 options). The response carries `x-devgate-demo-upstream: echo`, which lets tests tell an
upstream answer from a reply Envoy or the filter generated.

Under `/needs-developer` it plays an application that wants a developer (the Developer Auth spec's
open issue): 401 with `WWW-Authenticate: x-wsgiorg.developer_user` unless the request carries
`x-wsgiorg-developer-user` (with `?as=<name>`: that developer); otherwise the usual echo.

WebSocket: a GET with `Upgrade: websocket` (RFC 6455, version 13) is answered `101 Switching
Protocols` (with the marker header); the upstream then sends one text message, the same JSON as
above (so a test sees which headers the upgrade request carried), and echoes every text or binary
message back as it came, answers pings, and closes when the client does. Each upgrade request that
arrives (accepted or not) is logged on stdout as `demo_upstream upgrade <request-target>`, so a test
can tell whether an upgrade ever reached the upstream.

Stdlib only. HTTP/1.1 with keep-alive (every response has a Content-Length), threaded.

    python tests/demo_upstream.py --host 127.0.0.1 --port 8080

With `--port 0` the kernel picks a free port; the first line on stdout is always
`demo_upstream listening on <host> <port>` once the socket is bound.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER_HEADER = "x-devgate-demo-upstream"
MARKER_VALUE = "echo"
IDENTITY_HEADER = "x-wsgiorg-developer-user"
NEEDS_DEVELOPER = "/needs-developer"
MAX_BODY = 8 * 1024 * 1024

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
WS_MAX_MESSAGE = 1024 * 1024
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_stdout_lock = threading.Lock()


def announce(line: str) -> None:
    """One line on stdout, whole, whatever other handler threads print."""
    with _stdout_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (servers never mask)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class WsClosed(Exception):
    """The WebSocket ends: `reply` is the payload of the close frame to send (b"" for a close frame
    without a status code), or None when the connection is gone and nothing can be sent."""

    def __init__(self, reply: bytes | None):
        super().__init__(reply)
        self.reply = reply

    @classmethod
    def status(cls, code: int) -> "WsClosed":
        return cls(struct.pack("!H", code))


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devgate-demo-upstream"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - signature is the stdlib's
        if self.server.verbose:  # type: ignore[attr-defined]
            sys.stderr.write("demo_upstream: %s - %s\n" % (self.address_string(), format % args))

    # Any method: BaseHTTPRequestHandler dispatches to do_<METHOD>.
    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._echo
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        self.trailers: list[list[str]] = []
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line, reported in the echo as received
                    while (line := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                        name, _, value = line.decode("latin-1").partition(":")
                        self.trailers.append([name.strip(), value.strip()])
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length:
            n = int(length)
            if n < 0 or n > MAX_BODY:
                raise ValueError("bad content-length")
            return self.rfile.read(n)
        return b""

    def _target(self) -> str:
        # self.path may have been tidied by the stdlib (it collapses a leading "//"); the raw request
        # line is what really arrived.
        parts = self.requestline.split(" ")
        return parts[1] if len(parts) >= 3 else self.path

    def _challenge(self) -> bool:
        """The Developer Auth spec's open issue, played by an application: under /needs-developer it
        answers 401 with `WWW-Authenticate: x-wsgiorg.developer_user` unless the request carries a
        developer (with `?as=<name>`: unless it is that developer). True when it answered."""
        developer = self.headers.get(IDENTITY_HEADER)
        query = self._target().partition("?")[2]
        wanted = dict(p.partition("=")[::2] for p in query.split("&") if p).get("as")
        if developer is not None and (wanted is None or developer == wanted):
            return False
        out = b"this page needs a developer\n"
        self.send_response(401)
        self.send_header("WWW-Authenticate", "x-wsgiorg.developer_user")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.send_header(MARKER_HEADER, MARKER_VALUE)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)
        return True

    def _echo(self) -> None:
        if "websocket" in (self.headers.get("Upgrade") or "").lower():
            self._websocket()
            return
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400)
            return
        if self._target().startswith(NEEDS_DEVELOPER):
            if self._challenge():
                return
        payload = {
            "method": self.command,
            "path": self._target(),
            # parse_headers decodes as iso-8859-1 and keeps order and repeats.
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
            "trailers": self.trailers,
        }
        out = json.dumps(payload).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header(MARKER_HEADER, MARKER_VALUE)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    # ---------------------------------------------------------------------------------------------
    # WebSocket (RFC 6455): handshake, then the request's JSON, then echo
    # ---------------------------------------------------------------------------------------------

    def _websocket(self) -> None:
        announce(f"demo_upstream upgrade {self._target()}")
        self.close_connection = True  # whatever happens, this connection ends with the WebSocket
        connection = {t.strip().lower() for t in (self.headers.get("Connection") or "").split(",")}
        key = self.headers.get("Sec-WebSocket-Key") or ""
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            key_ok = False
        if (
            self.command != "GET"
            or "upgrade" not in connection
            or self.headers.get("Sec-WebSocket-Version") != "13"
            or not key_ok
        ):
            self.send_error(400, "bad WebSocket upgrade")
            return
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws_accept(key))
        self.send_header(MARKER_HEADER, MARKER_VALUE)
        self.end_headers()
        hello = {"method": self.command, "path": self._target(), "headers": [[k, v] for k, v in self.headers.items()]}
        try:
            self.wfile.write(ws_frame(OP_TEXT, json.dumps(hello).encode("utf-8")))
            while True:
                opcode, message = self._ws_message()
                self.wfile.write(ws_frame(opcode, message))
        except WsClosed as closed:
            if closed.reply is not None:
                try:
                    self.wfile.write(ws_frame(OP_CLOSE, closed.reply))
                except OSError:
                    pass
        except OSError:
            pass

    def _ws_read(self, n: int) -> bytes:
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise WsClosed(None)  # the connection ended (mid-frame)
        return data

    def _ws_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._ws_read(2)
        fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
        if b0 & 0x70 or not masked:  # no extensions were agreed; clients must mask
            raise WsClosed.status(1002)
        if n == 126:
            (n,) = struct.unpack("!H", self._ws_read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._ws_read(8))
        if n > WS_MAX_MESSAGE:
            raise WsClosed.status(1009)
        mask = self._ws_read(4)
        data = self._ws_read(n)
        key = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        return fin, opcode, payload

    def _ws_message(self) -> tuple[int, bytes]:
        """The next text or binary message (fragments joined); answers pings and closes on the way."""
        opcode, parts, size = None, [], 0
        while True:
            fin, op, payload = self._ws_frame()
            if op == OP_PING:
                self.wfile.write(ws_frame(OP_PONG, payload))
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                raise WsClosed(payload[:2])  # echo the client's status code (none if it sent none)
            if op in (OP_TEXT, OP_BINARY) and opcode is None:
                opcode = op
            elif not (op == OP_CONT and opcode is not None):
                raise WsClosed.status(1002)
            size += len(payload)
            if size > WS_MAX_MESSAGE:
                raise WsClosed.status(1009)
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, verbose: bool = False):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.verbose = verbose
        super().__init__((host, port), EchoHandler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = ap.parse_args(argv)
    try:
        server = EchoServer(args.host, args.port, args.verbose)
    except OSError as e:
        print(f"demo_upstream: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"demo_upstream listening on {host} {port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Demo upstream for devgate: echoes every request back as JSON.

Answers any method on any path with 200 and a JSON body

    {"method": "GET", "path": "/raw/request-target?q", "headers": [["name", "value"], ...],
     "body": "..."}

describing exactly what arrived: the request-target as sent (not normalised), every header line in
arrival order with repeats kept and the name's case as received, bytes decoded as latin-1 so nothing is
lost or rejected. The response carries `x-devgate-demo-upstream: echo`, which lets tests tell an
upstream answer from a reply Envoy or the filter generated.

Stdlib only. HTTP/1.1 with keep-alive (every response has a Content-Length), threaded.

    python tests/demo_upstream.py --host 127.0.0.1 --port 8080

With `--port 0` the kernel picks a free port; the first line on stdout is always
`demo_upstream listening on <host> <port>` once the socket is bound.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER_HEADER = "x-devgate-demo-upstream"
MARKER_VALUE = "echo"
MAX_BODY = 8 * 1024 * 1024


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
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
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

    def _echo(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400)
            return
        # self.path may have been tidied by the stdlib (it collapses a leading "//"); the raw request
        # line is what really arrived.
        parts = self.requestline.split(" ")
        target = parts[1] if len(parts) >= 3 else self.path
        payload = {
            "method": self.command,
            "path": target,
            # parse_headers decodes as iso-8859-1 and keeps order and repeats.
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        out = json.dumps(payload).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header(MARKER_HEADER, MARKER_VALUE)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)


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

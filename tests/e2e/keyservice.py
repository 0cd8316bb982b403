"""A real authentication service for the suite (issue #22): the team's key service, as devgate asks it.

`GET <path>` with the key in a header (`x-api-key` by default) answers, by the key and the phase:

  known key          200, an HS256 access token (PyJWT; header `kid`, claims `exp`, `iat`, `iss`,
                     `aud`, `kind`, `organization_id`, `project_id`, `products`, `write`,
                     `referers`, `ips`, `jti`), `exp` = now + the key's (or the service's) `ttl`
  forbidden key      403
  over-quota key     429 (or 402) with `Retry-After`
  anything else      401

and the phases a test moves it through (`phase = ...`, or `stop()` / `start()`):

  up              the answers above
  error           500 for everything
  down            not listening: connection refused (`stop()`; `start()` listens again, same port)
  slow            every answer `slow_seconds` late (past devgate's timeout)
  garbage         200 with a body that is no token
  bad_signature   the token a known key gets, signed with another secret

It counts every request it receives (`calls`, `per_key`) and keeps what devgate sent
(`requests`: path and headers, with the key's value as received). The `key_service` fixture
starts one on a free loopback port and stops it; tests import it (`from keyservice import
key_service`).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import jwt
import pytest

SECRET = hashlib.sha256(b"devgate e2e key service ks1").digest()
WRONG_SECRET = hashlib.sha256(b"devgate e2e key service: not the service's key").digest()
KID = "ks1"
ISSUER = "https://auth.e2e.example"
AUDIENCE = "devgate"
PATH = "/access_tokens/"
KEY_HEADER = "x-api-key"

PHASES = ("up", "error", "down", "slow", "garbage", "bad_signature")


@dataclass
class Account:
    """What the service knows about one key (the access token's claims, exp aside)."""

    kind: str = "private_key"  # public_key | private_key
    org: str = "acme"
    project: str = "web"
    products: list = field(default_factory=lambda: ["maps"])
    write: bool = False
    referers: list = field(default_factory=list)
    ips: list = field(default_factory=list)
    id: str = "ks-key"
    ttl: float | None = None  # seconds until exp; None: the service's ttl


@dataclass
class Seen:
    """One request the service received."""

    path: str
    headers: list  # (name, value) as received
    key: str | None


class KeyService:
    """The service; see the module docstring. Thread-safe counters; set attributes from the test."""

    def __init__(self, *, secret: bytes = SECRET, kid: str = KID, ttl: float = 2,
                 issuer: str | None = ISSUER, audience: str | None = AUDIENCE, path: str = PATH,
                 key_header: str = KEY_HEADER, json_body: bool = False):
        self.secret, self.kid, self.ttl = secret, kid, ttl
        self.issuer, self.audience, self.path, self.key_header = issuer, audience, path, key_header
        self.json_body = json_body  # answer {"access_token": ...} instead of the bare JWS
        self.accounts: dict[str, Account] = {}
        self.forbidden: set[str] = set()
        self.over_quota: dict[str, tuple[int, str]] = {}  # key -> (402 | 429, Retry-After)
        self.phase = "up"
        self.slow_seconds = 2.0
        self.delay = 0.0  # added to every answer in any phase (to hold a callout in flight)
        self.calls = 0
        self.per_key: Counter = Counter()
        self.requests: list[Seen] = []
        self.issued: dict[str, int] = {}  # key -> the `exp` of the last token it got
        self._lock = threading.Lock()
        self._handler = self._make_handler()
        self.port = 0
        self.server: http.server.ThreadingHTTPServer | None = None
        self.start()

    # -- the keys -------------------------------------------------------------------------------

    def add(self, key: str, **claims) -> Account:
        """Makes `key` known, described by `claims` (Account's fields)."""
        account = Account(**claims)
        self.accounts[key] = account
        return account

    def token(self, key: str, *, secret: bytes | None = None) -> str:
        """The access token `key` gets now (signed with `secret`, default the service's)."""
        a = self.accounts[key]
        now = int(time.time())
        ttl = self.ttl if a.ttl is None else a.ttl
        claims = {
            "exp": int(now + ttl), "iat": now, "kind": a.kind, "organization_id": a.org,
            "project_id": a.project, "products": list(a.products), "write": a.write, "jti": a.id,
        }
        if a.referers:
            claims["referers"] = list(a.referers)
        if a.ips:
            claims["ips"] = list(a.ips)
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        self.issued[key] = claims["exp"]
        return jwt.encode(claims, secret or self.secret, algorithm="HS256", headers={"kid": self.kid})

    # -- counting ---------------------------------------------------------------------------------

    def calls_for(self, key: str) -> int:
        with self._lock:
            return self.per_key[key]

    def reset_counts(self) -> None:
        with self._lock:
            self.calls = 0
            self.per_key.clear()
            self.requests.clear()
            self.issued.clear()

    # -- what it answers ----------------------------------------------------------------------------

    def answer(self, key: str | None) -> tuple[int, list, bytes]:
        """(status, headers, body) for a request carrying `key`, in the current phase."""
        if self.phase == "error":
            return 500, [], b'{"error": "internal"}'
        if self.phase == "garbage":
            return 200, [("Content-Type", "application/jwt")], b"this is not an access token"
        if key is None or key not in self.accounts:
            if key in self.forbidden:
                return 403, [], b'{"error": "forbidden"}'
            if key in self.over_quota:
                status, retry_after = self.over_quota[key]
                return status, [("Retry-After", retry_after)], b'{"error": "over quota"}'
            return 401, [], b'{"error": "unknown key"}'
        secret = WRONG_SECRET if self.phase == "bad_signature" else None
        token = self.token(key, secret=secret)
        if self.json_body:
            return 200, [("Content-Type", "application/json")], json.dumps({"access_token": token}).encode()
        return 200, [("Content-Type", "application/jwt")], token.encode()

    def _make_handler(self):
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: one connection per request, so `stop()` leaves no pooled connection
            # that would still answer (connection refused means refused).
            def do_GET(self):  # noqa: N802 - stdlib name
                key = self.headers.get(service.key_header)
                with service._lock:
                    service.calls += 1
                    service.per_key[key] += 1
                    service.requests.append(Seen(self.path, list(self.headers.items()), key))
                delay = service.delay + (service.slow_seconds if service.phase == "slow" else 0.0)
                if self.path != service.path:
                    status, headers, body = 404, [], b"{}"
                else:
                    status, headers, body = service.answer(key)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # devgate gave up (timeout) and Envoy closed the connection
                    self.close_connection = True

            def log_message(self, *args):
                pass

        return Handler

    # -- listening ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Listens (again) on the same port; the phase goes back to `up` if it was `down`."""
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        server.daemon_threads = True
        self.server = server
        self.port = server.server_address[1]
        if self.phase == "down":
            self.phase = "up"
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stops listening: connection refused (phase `down`)."""
        server, self.server = self.server, None
        self.phase = "down"
        if server is not None:
            server.shutdown()
            server.server_close()

    def set_phase(self, phase: str) -> None:
        """Moves to `phase` (one of PHASES); `down` stops listening, leaving it starts again."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        if phase == "down":
            if self.server is not None:
                self.stop()
            return
        if self.server is None:
            self.start()
        self.phase = phase


@pytest.fixture(scope="module")
def key_service():
    """A KeyService on a free loopback port for the module; stopped at the end."""
    service = KeyService()
    yield service
    if service.server is not None:
        service.stop()

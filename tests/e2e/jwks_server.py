"""An issuer's keys for the edge-assertion tests (issue #23): signing keys made with `cryptography`,
tokens signed with PyJWT, and a key server Envoy fetches the public halves from.

`SigningKey(alg, kid)` is a fresh private key for one of ES256, ES384, RS256, PS256, EdDSA: its
public JWK (`jwk()`, PyJWT's own conversion), its SPKI PEM (`pem()`) and `sign(claims, **header)`
(PyJWT, never by hand). `padded(token, key)` re-encodes PyJWT's segments with base64 padding and
signs the padded signing input with `cryptography` (AWS ALB's quirk).

`KeyServer(keys)` listens on a free loopback port and answers

  GET <jwks_path>           200, {"keys": [the public JWKs of `keys`]}
  GET <pem_prefix><kid>     200, the SPKI PEM of that key (404 if none)

in phase `up`; in phase `error` 500 for everything, in `garbage` 200 with a body that is no key
set and no PEM, in `down` it does not listen (connection refused; `start()` listens again on the
same port). `keys` may be changed at any time (`add`, `remove`): rotation. Every request is counted
(`hits`, `paths`). HTTP/1.0: one connection per request, so a stopped server leaves no pooled
connection that would still answer.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections import Counter

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
PHASES = ("up", "error", "garbage", "down")
GARBAGE = b"<html>502 Bad Gateway, or anything else that is no key set</html>"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKey:
    """A private key of `alg`, named `kid`."""

    def __init__(self, alg: str, kid: str):
        if alg not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {alg!r}")
        self.alg, self.kid = alg, kid
        if alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            self.private = ec.generate_private_key(ec.SECP384R1())
        elif alg in ("RS256", "PS256"):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
        self.public = self.private.public_key()

    def jwk(self, **extra) -> dict:
        """The public JWK (PyJWT's conversion), with `kid`, `alg` and `use: sig` unless `extra`
        overrides them (None removes one)."""
        if self.alg.startswith("ES"):
            out = ECAlgorithm.to_jwk(self.public, as_dict=True)
        elif self.alg == "EdDSA":
            out = OKPAlgorithm.to_jwk(self.public, as_dict=True)
        else:
            out = RSAAlgorithm.to_jwk(self.public, as_dict=True)
        out.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        out.update(extra)
        return {k: v for k, v in out.items() if v is not None}

    def pem(self) -> str:
        """The SPKI PEM (`-----BEGIN PUBLIC KEY-----`)."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def sign(self, claims: dict, *, alg: str | None = None, **header) -> str:
        """A compact JWS of `claims` by PyJWT, header `kid` (override or drop with kid=None) and
        whatever else `header` adds (AWS ALB's `signer`, `client`)."""
        header.setdefault("kid", self.kid)
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=header)

    def raw_signature(self, signing_input: bytes) -> bytes:
        """The JWS signature of `signing_input` (ECDSA as r||s), with `cryptography`."""
        if self.alg in ("ES256", "ES384"):
            digest, size = (hashes.SHA256(), 32) if self.alg == "ES256" else (hashes.SHA384(), 48)
            r, s = utils.decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(digest)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if self.alg == "RS256":
            return self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return self.private.sign(signing_input, pss, hashes.SHA256())
        return self.private.sign(signing_input)


def padded_b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def padded(token: str, key: SigningKey) -> str:
    """`token` (PyJWT's output) with its header and payload re-encoded as base64url WITH `=`
    padding, signed again over that padded signing input with `cryptography`, the signature
    padded too: a token as AWS ALB sends it. The caller makes sure some segment needs padding
    (`needs_padding`)."""
    header_b64, payload_b64, _ = token.split(".")
    signing_input = padded_b64u(unb64u(header_b64)) + "." + padded_b64u(unb64u(payload_b64))
    signature = key.raw_signature(signing_input.encode("ascii"))
    return signing_input + "." + padded_b64u(signature)


def needs_padding(token: str) -> bool:
    """Whether the payload of `token` (unpadded) gets `=` once padded (an ES256 signature always
    does; the header may or may not, as its fields fall)."""
    _, payload_b64, _ = token.split(".")
    return len(payload_b64) % 4 != 0


class KeyServer:
    """See the module docstring. Set attributes (`phase`, `delay`) from the test."""

    def __init__(self, keys=(), *, jwks_path: str = "/jwks.json", pem_prefix: str = "/pem/"):
        self.keys: list[SigningKey] = list(keys)
        self.jwks_path, self.pem_prefix = jwks_path, pem_prefix
        self.extra_jwks: list[dict] = []  # raw entries served after the keys' own (odd ones)
        self.extra_members: dict = {}  # more top-level members of the JWK set (Cloudflare's certs)
        self.phase = "up"
        self.delay = 0.0
        self.hits = 0
        self.paths: Counter = Counter()
        self.headers: list[dict] = []  # the headers of each request, lower-case names
        self._lock = threading.Lock()
        self._handler = self._make_handler()
        self.port = 0
        self.server: http.server.ThreadingHTTPServer | None = None
        self.start()

    # -- the keys ---------------------------------------------------------------------------------

    def add(self, key: SigningKey) -> None:
        self.keys = [*self.keys, key]

    def remove(self, kid: str) -> None:
        self.keys = [k for k in self.keys if k.kid != kid]

    def jwks(self) -> bytes:
        return json.dumps({"keys": [k.jwk() for k in self.keys] + list(self.extra_jwks),
                           **self.extra_members}).encode()

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if self.phase == "error":
            return 500, "application/json", b'{"error": "internal"}'
        if self.phase == "garbage":
            return 200, "application/json", GARBAGE
        if path == self.jwks_path:
            return 200, "application/json", self.jwks()
        if path.startswith(self.pem_prefix):
            kid = path[len(self.pem_prefix):]
            for k in self.keys:
                if k.kid == kid:
                    return 200, "application/x-pem-file", k.pem().encode()
        return 404, "text/plain", b"not found\n"

    # -- counting -----------------------------------------------------------------------------------

    def hits_now(self) -> int:
        with self._lock:
            return self.hits

    def _make_handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib name
                with server._lock:
                    server.hits += 1
                    server.paths[self.path] += 1
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, ctype, body = server.answer(self.path)
                if server.delay:
                    time.sleep(server.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        return Handler

    # -- listening ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Listens (again) on the same port; the phase goes back to `up` if it was `down`."""
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        srv.daemon_threads = True
        self.server = srv
        self.port = srv.server_address[1]
        if self.phase == "down":
            self.phase = "up"
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stops listening: connection refused (phase `down`)."""
        srv, self.server = self.server, None
        self.phase = "down"
        if srv is not None:
            srv.shutdown()
            srv.server_close()

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        if phase == "down":
            if self.server is not None:
                self.stop()
            return
        if self.server is None:
            self.start()
        self.phase = phase

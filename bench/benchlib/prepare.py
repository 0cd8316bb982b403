"""Before a run: the tools and build outputs it needs, the two bench filters built, fresh
credentials, and what the report says about the machine and the versions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import platform
import re
import shlex
import subprocess
import shutil
import time
from pathlib import Path

from benchlib import common
from benchlib.common import (ASSERTION_AUDIENCE, ASSERTION_EMAIL, ASSERTION_ISSUER, ASSERTION_KID, BASIC_PASSWORD,
                             BASIC_USER, CLI, EMPTY_CRATE, EMPTY_TARGET, EMPTY_WASM, ENVOY, NATIVE,
                             REFERENCE_CRATE, REFERENCE_TARGET, REFERENCE_WASM, REPO, TEST_NATIVE, TOKEN_SUB, WASM,
                             BenchError, log)


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk is not installed; installing it with apt-get (Debian package wrk)")
    if os.geteuid() != 0:
        raise BenchError("wrk is missing and this is not root: install it (apt-get install -y wrk) and rerun")
    try:
        subprocess.run(["apt-get", "update"], check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.SubprocessError) as e:
        raise BenchError(f"could not install wrk with apt-get ({e}); install it by hand and rerun") from None
    path = shutil.which("wrk")
    if not path:
        raise BenchError("apt-get install wrk succeeded but there is still no wrk on PATH")
    return path


def build_filters() -> None:
    """The empty filter (empty_wasm) and the reference filter (wasm_minimum, naive_wasm, bench-calls)."""
    for crate, target, wasm, what in ((EMPTY_CRATE, EMPTY_TARGET, EMPTY_WASM, "the empty_wasm variant"),
                                      (REFERENCE_CRATE, REFERENCE_TARGET, REFERENCE_WASM, "the reference variants")):
        log(f"building bench/{crate.name} ({what})")
        cmd = ["cargo", "build", "--release", "--target", "wasm32-wasip1", "--quiet",
               "--manifest-path", str(crate / "Cargo.toml"), "--target-dir", str(target)]
        r = subprocess.run(cmd, cwd=str(crate), timeout=900)
        if r.returncode != 0 or not wasm.is_file():
            raise BenchError(f"building bench/{crate.name} failed: {shlex.join(cmd)} "
                             "(is the wasm32-wasip1 target installed? `make toolchain` adds it)")

def check_inputs(native: bool = False) -> None:
    """Everything the run needs is there (`native`: some variant runs the native module)."""
    missing = []
    if not WASM.is_file():
        missing.append(f"devgate.wasm ({WASM}): run `make build`")
    if native and not NATIVE.is_file():
        missing.append(f"libdevgate.so ({NATIVE}): run `make build-native`")
    if native and not TEST_NATIVE.is_file():
        missing.append(f"the test build of libdevgate.so ({TEST_NATIVE}): run `make fault-native`")
    if not (ENVOY.is_file() and os.access(ENVOY, os.X_OK)):
        missing.append(f"envoy ({ENVOY}): run `make venv`")
    if not (CLI.is_file() and os.access(CLI, os.X_OK)):
        missing.append(f"the devgate CLI ({CLI}): run `make cli`")
    if not shutil.which("taskset"):
        missing.append("taskset (util-linux)")
    if missing:
        raise BenchError("missing: " + "; ".join(missing))


def cli(*args: str) -> str:
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise BenchError(f"devgate {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def make_credentials() -> dict:
    """A fresh key (devgate keygen), a token for it (devgate mint), the htpasswd line, and the edge
    assertion variants' P-256 key with one ES256 ID token signed by it."""
    key_file = common.WORK / "k1.key"
    cli("keygen", "--out", str(key_file))
    key = key_file.read_text().strip()
    token = cli("mint", "--sub", TOKEN_SUB, "--ttl", "1h", "--kid", "k1", "--key-file", str(key_file))
    api_key = cli("mint-key", "--kind", "private", "--org", "bench", "--project", "bench", "--product", "bench",
                  "--id", "bench-key", "--ttl", "1h", "--kid", "k1", "--key-file", str(key_file))
    sha = base64.b64encode(hashlib.sha1(BASIC_PASSWORD.encode()).digest()).decode()
    signer = assertion_signer()
    return {"key": key, "token": token, "api_key": api_key, "htpasswd": f"{BASIC_USER}:{{SHA}}{sha}",
            "access_token": access_token(key), "assertion_signer": signer,
            "assertion": mint_assertion(signer["key"], "bench-assertion")}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assertion_signer() -> dict:
    """The edge assertion variants' issuer for this run: a new P-256 key (`key`, to sign with; never
    written anywhere) and its public point (`x`, `y`: base64url, the JWK's coordinates the configs'
    inline JWK sets are filled with)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        raise BenchError("the edge assertion variants need cryptography (the venv has it: make venv)") from None
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_numbers()
    return {"key": key, "x": _b64(point.x.to_bytes(32, "big")), "y": _b64(point.y.to_bytes(32, "big"))}


def mint_assertion(key, jti: str, claims: dict | None = None) -> str:
    """An ES256 ID token signed with `key` (PyJWT, an independent signer): issuer, audience and
    `email` as the configs expect, valid for an hour, `jti` making it distinct; `claims` override."""
    try:
        import jwt
    except ImportError:
        raise BenchError("the edge assertion variants need PyJWT (the venv has it: make venv)") from None
    now = int(time.time())
    body = {"iss": ASSERTION_ISSUER, "aud": ASSERTION_AUDIENCE, "sub": "bench-developer", "email": ASSERTION_EMAIL,
            "iat": now, "nbf": now - 60, "exp": now + 3600, "jti": jti, **(claims or {})}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": ASSERTION_KID})


def mint_assertions(signer: dict, count: int) -> list[str]:
    """`count` distinct ES256 ID tokens (each its own `jti`): bench-calls' *_assertion_miss variants
    send each once, so that every request is a miss in devgate's verified-assertion cache."""
    return [mint_assertion(signer["key"], f"bench-miss-{i}") for i in range(count)]


def forged_assertion() -> str:
    """The token the configs must refuse: the right claims and `kid`, signed by another P-256 key."""
    return mint_assertion(assertion_signer()["key"], "bench-forged")


def access_token(key: str) -> str:
    """The key service's answer in the *_resolved_key variants (docs/key-service.md): an HS256
    access token signed with the run's key (`kid` k1) describing a private key of org/project
    "bench" for product "bench", valid for an hour."""
    b64 = _b64
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    claims = {"kind": "private_key", "organization_id": "bench", "project_id": "bench", "products": ["bench"],
              "jti": "bench-resolved", "iat": now, "exp": now + 3600}
    payload = b64(json.dumps(claims).encode())
    secret = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_version(cmd: list[str]) -> str:
    """What `cmd` prints (stdout and stderr), or "" if it cannot run."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout + r.stderr


def envoy_version() -> str:
    m = re.search(r"version:\s*(\S+)", command_version([str(ENVOY), "--version"]))
    return m.group(1) if m else "unknown"


def wrk_version(wrk: str) -> str:
    m = re.search(r"^(wrk \S+)", command_version([wrk, "--version"]), re.M)
    return m.group(1) if m else "unknown"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=str(REPO), timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                               capture_output=True, text=True, cwd=str(REPO), timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" (src modified)" if dirty else "")

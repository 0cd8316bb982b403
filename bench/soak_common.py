"""What every part of the soak shares: the host it runs (SOAK_HOST), where it writes, the traffic's
addresses and secrets, the margins for "flat", and small helpers. bench/soak.py describes the soak.

SOAK_HOST picks the build of devgate (`wasm`, the default: devgate.wasm in Envoy's Wasm filter;
`native`: libdevgate.so in Envoy's dynamic-modules filter). It is handed to the e2e harness as
DEVGATE_HOST before the harness is imported, so every bootstrap the soak renders loads that build.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOAK_HOST = os.environ.get("SOAK_HOST") or os.environ.get("DEVGATE_HOST") or "wasm"
if SOAK_HOST not in ("wasm", "native"):
    raise SystemExit(f"soak: SOAK_HOST={SOAK_HOST!r}: expected wasm or native")
os.environ["DEVGATE_HOST"] = SOAK_HOST
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import harness  # noqa: E402

NATIVE = harness.NATIVE
# devgate's counters: `<STATS>.devgate.*` (wasmcustom, or dynamicmodulescustom natively).
STATS = harness.STATS
ARTEFACT = "libdevgate.so" if NATIVE else "devgate.wasm"
# One report per host, so a run of one does not overwrite the other's.
SUFFIX = "-native" if NATIVE else ""
WORK = REPO / "target" / f"soak{SUFFIX}"
REPORT = REPO / "target" / f"soak-report{SUFFIX}.md"


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
THREADS_MARGIN = (0.0, 0)  # Envoy's threads (the native module's bcrypt pool among them): none more
WASM_MARGIN = (0.10, 1 << 20)  # Wasm linear memory (about 1 MiB per VM): 10% or 1 MiB (16 pages)

# What in Envoy's log means trouble: the host's (a Wasm trap or VM failure; the native module's panic
# hook) and Envoy's fatal-signal report; the same patterns as the e2e suite's health check.
TROUBLE = harness.TROUBLE
ENVOY_CRASH = harness.ENVOY_CRASH
REQUEST_TIMEOUT = 10.0
MAX_EXAMPLES = 5  # unexpected answers kept per class and worker, with details
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    """A progress line on stderr."""
    print(f"soak: {msg}", file=sys.stderr, flush=True)


class SoakError(RuntimeError):
    """The soak could not be set up (exit 2), as opposed to a finding (exit 1)."""


class SoakFailure(RuntimeError):
    """devgate answered wrongly before the load started (exit 1)."""


def env_num(name: str, default, minimum, kind=int):
    """The number in environment variable `name` (`default` when unset), at least `minimum`."""
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
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

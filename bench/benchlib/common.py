"""What every part of the benchmark shares: where things are, the names and limits of the run,
logging and the one error type.

`WORK` and `CHECK_TIMEOUT` are read when used (as `common.WORK`), so a caller may point them
elsewhere before it starts Envoys: bench/calls.py does, for its own scratch directory and for
checks under valgrind."""

from __future__ import annotations

import os
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
CONFIGS = REPO / "envoy" / "bench"
OUT = BENCH / "out"
WORK = OUT / "run"  # per-run scratch: rendered configs, Envoy logs, the key (recreated every run)
EMPTY_CRATE = BENCH / "empty-filter"
EMPTY_TARGET = EMPTY_CRATE / "target"
EMPTY_WASM = EMPTY_TARGET / "wasm32-wasip1" / "release" / "devgate_bench_empty_filter.wasm"
REFERENCE_CRATE = BENCH / "reference-filter"
REFERENCE_TARGET = REFERENCE_CRATE / "target"
REFERENCE_WASM = REFERENCE_TARGET / "wasm32-wasip1" / "release" / "devgate_bench_reference_filter.wasm"

WASM = Path(os.environ.get("DEVGATE_WASM") or REPO / "target" / "wasm32-wasip1" / "release" / "devgate.wasm")
# The native Envoy dynamic module (`make build-native`) and its test build (`make fault-native`: the
# native_noop variant's `filter_config: "noop"` exists only there, never in the shipped module).
NATIVE = Path(os.environ.get("DEVGATE_NATIVE") or REPO / "target" / "native" / "libdevgate.so")
TEST_NATIVE = Path(os.environ.get("DEVGATE_FAULT_NATIVE")
                   or REPO / "target" / "fault-native" / "native" / "libdevgate.so")
ENVOY = Path(os.environ.get("DEVGATE_ENVOY") or REPO / ".venv" / "bin" / "envoy")
CLI = Path(os.environ.get("DEVGATE_CLI") or REPO / "target" / "release" / "devgate")

IDENTITY = "x-wsgiorg-developer-user"
CHALLENGE = "x-wsgiorg.developer_user"
CHECK_PATH = "/__bench_check"  # the upstream reports what it received on this path only
BASIC_USER, BASIC_PASSWORD = "bench", "bench-password"
TOKEN_SUB = "bench"
# The edge assertion variants' ID tokens (envoy/bench/devgate_assertion.yaml, jwt_authn_es256.yaml):
# who signs them, for whom, with which key id, and the developer their `email` claim names.
ASSERTION_ISSUER = "https://idp.bench"
ASSERTION_AUDIENCE = "bench"
ASSERTION_KID = "bench-es256"
ASSERTION_EMAIL = "developer@bench.example"
KEY_ENV = "DEVGATE_BENCH_K1"  # the name devgate_tokens.yaml reads the secret from
# The name the native variants' configs read it from, in Envoy's process environment (the name the
# repository's example configs use, so that `make unit`'s check of every shipped config resolves it).
NATIVE_KEY_ENV = "DEVGATE_K1"

STARTUP_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY_PCT = 5.0  # other processes above this share of the CPUs: the report says the run was noisy


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r}: not an integer") from None
    if value < minimum:
        raise BenchError(f"{name}={value}: must be at least {minimum}")
    return value


# Seconds the correctness check waits for an answer (bench/calls.py raises it: under valgrind, V8's
# first compilation of a Wasm filter can take longer on a busy machine).
CHECK_TIMEOUT = 10.0

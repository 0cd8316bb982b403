"""The request's source (README "API keys", src/core/source.rs) end to end, on either host: the
client's `X-SDK-Source`, or `ai-context` for `AI-Context: true`, handed to the upstream in one
normalised header (`api.headers.source`, default `x-devgate-source`) on API routes only; anything
that is not one 1-64 byte token is dropped; client copies of that header are stripped on every
route; the client's own headers go on untouched. The access log reads the value from the upstream
header with `%REQ(X-DEVGATE-SOURCE)%` (the audit value `devgate_decision` does not change).
"""

from __future__ import annotations

import base64
import hashlib
import time

import pytest

import harness
from harness import HarnessError

OUTSIDER = "127.0.0.77"
SOURCE = "x-devgate-source"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


SECRET = hashlib.sha256(b"devgate e2e source k1").digest()
ENV_K1 = "DEVGATE_E2E_SOURCE_K1"
ENV = {ENV_K1: b64u(SECRET)}
CONFIG = {
    "network": {"allow": ["127.0.0.1/32"]},
    "protect": ["/_debug/"],
    "keys": [{"id": "k1", "secret_env": ENV_K1}],
    "api": {"routes": [{"prefix": "/v1/maps", "product": "maps"}]},
}
LOG_FORMAT = "%REQ(:PATH)% devgate=%FILTER_STATE(wasm.devgate_decision:PLAIN)% source=%REQ(X-DEVGATE-SOURCE)%"


@pytest.fixture(scope="module")
def private_key(tmp_path_factory) -> str:
    keyfile = tmp_path_factory.mktemp("source") / "k1.key"
    keyfile.write_text(b64u(SECRET) + "\n")
    keyfile.chmod(0o600)
    try:
        r = harness.run_cli("mint-key", "--kind", "private", "--org", "acme", "--project", "web",
                            "--product", "maps", "--id", "sk-src", "--key-file", str(keyfile))
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def logged(upstream, tmp_path_factory, wasm):
    tmp = tmp_path_factory.mktemp("source-log")
    log = tmp / "access.log"
    cfg = harness.render_bootstrap(
        upstream_port=upstream.port, plugin_config=CONFIG, env=ENV, wasm=wasm,
        access_log=[harness.file_access_log(log, text=LOG_FORMAT)],
    )
    envoy = harness.start_envoy(cfg, tmp / "envoy", extra_args=harness.FAST_FLUSH)
    yield envoy, log
    envoy.stop()


def logged_line(log, path: str) -> str | None:
    """The access log's line for `path` (each test uses its own), once Envoy has flushed it."""
    deadline = time.monotonic() + 5
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        mine = [line for line in lines if line.split(" ", 1)[0] == path]
        if mine or time.monotonic() > deadline:
            assert len(mine) <= 1, mine
            return mine[0] if mine else None
        time.sleep(0.05)


SPOOF = [("X-Devgate-Source", "spoof"), ("x_devgate_source", "spoof"), ("X_DEVGATE_SOURCE", "spoof")]

# what the client sends (besides the key and the spoofed copies) -> what the upstream gets
CASES = {
    "none": ([], None),
    "sdk": ([("X-SDK-Source", "woosmap-js")], "woosmap-js"),
    "ai-context": ([("AI-Context", "TRUE")], "ai-context"),
    "ai-context-false": ([("AI-Context", "false")], None),
    "sdk-first": ([("AI-Context", "true"), ("X-SDK-Source", "ios")], "ios"),
    "too-long": ([("X-SDK-Source", "a" * 65)], None),
    "longest": ([("X-SDK-Source", "b" * 64)], "b" * 64),
    "not-a-token": ([("X-SDK-Source", "sdk/1.0")], None),
    "space": ([("X-SDK-Source", "my sdk")], None),
    "twice": ([("X-SDK-Source", "a"), ("X-SDK-Source", "b")], None),
    "bad-sdk-then-ai": ([("X-SDK-Source", "a;b"), ("AI-Context", "true")], "ai-context"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_source_on_an_api_route(logged, private_key, case):
    envoy, log = logged
    sent, want = CASES[case]
    path = f"/v1/maps/{case}"
    r = envoy.request("GET", path, SPOOF + [("X-Api-Key", private_key)] + sent, source=OUTSIDER)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.spellings(SOURCE) == ([(SOURCE, want)] if want else []), echo.headers
    # The client's own headers are not identity claims: they go on as sent.
    for name, value in sent:
        assert value in echo.get_all(name.lower()), (name, echo.headers)
    assert logged_line(log, path) == f"{path} devgate=allow:private_key source={want or '-'}"


@pytest.mark.parametrize("path,source", [("/", OUTSIDER), ("/_debug/x", "127.0.0.1"), ("/v2/x", OUTSIDER)])
def test_no_source_off_api_routes_and_copies_stripped(logged, path, source):
    envoy, _ = logged
    r = envoy.request("GET", path, SPOOF + [("X-SDK-Source", "sdk"), ("AI-Context", "true")], source=source)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.spellings(SOURCE) == [], echo.headers
    assert echo.get_all("x-sdk-source") == ["sdk"] and echo.get_all("ai-context") == ["true"]


def test_refused_api_request_logs_no_source(logged):
    envoy, log = logged
    r = envoy.request("GET", "/v1/maps/nokey", SPOOF + [("X-SDK-Source", "sdk")], source=OUTSIDER)
    assert r.status == 401 and not r.from_upstream, r.summary()
    assert logged_line(log, "/v1/maps/nokey") == "/v1/maps/nokey devgate=deny:no_credential source=-"

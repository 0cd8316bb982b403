"""WebSocket upgrades through devgate (envoy/envoy.yaml and envoy-tls.yaml: `upgrade_configs:
[{upgrade_type: websocket}]` on the HCM).

An upgrade request is an HTTP request like any other to devgate: a non-developer's upgrade to a
protected path gets the 401 challenge and never reaches the upstream; every client-sent spelling of
the identity header is removed and a developer's is set. The client is the `websockets` library on a
socket bound to the chosen loopback source address; the demo upstream (tests/demo_upstream.py) answers
the upgrade, sends the request's headers as its first message, then echoes, and prints
`demo_upstream upgrade <target>` for every upgrade request that reaches it.
"""

from __future__ import annotations

import json
import uuid

import pytest
from websockets.exceptions import InvalidStatus

import harness
from conftest import call_or_fail
from harness import IDENTITY_HEADER as H

DEV4 = "127.0.0.1"
DEV6 = "::1"
OUTSIDER = "127.0.0.77"
CHALLENGE = "x-wsgiorg.developer_user"
SPOOF = [
    ("X-Wsgiorg-Developer-User", "admin"),
    ("x-wsgiorg-developer-user", "admin"),
    ("X_Wsgiorg_Developer_User", "admin"),
    ("x_wsgiorg_developer_user", "admin"),
    ("X-WSGIORG-DEVELOPER-USER", "admin"),
]


@pytest.fixture(scope="module")
def ws_gate(upstream, wasm, tmp_path_factory):
    """envoy/envoy.yaml as shipped, on free ports."""
    text = call_or_fail(harness.shipped_config, "envoy.yaml", upstream_port=upstream.port, wasm=wasm, listen_port=10000)
    envoy = call_or_fail(harness.start_envoy, text, tmp_path_factory.mktemp("ws"), env=harness.shipped_env())
    yield envoy
    envoy.stop()


@pytest.fixture(scope="module")
def wss_gate(upstream, wasm, tmp_path_factory):
    """envoy/envoy-tls.yaml as shipped, on free ports (needs `make certs`)."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        if not (harness.CERTS / name).is_file():
            pytest.fail(f"no {harness.CERTS / name}: run `make certs`", pytrace=False)
    text = call_or_fail(harness.shipped_config, "envoy-tls.yaml", upstream_port=upstream.port, wasm=wasm,
                        listen_port=10443)
    envoy = call_or_fail(harness.start_envoy, text, tmp_path_factory.mktemp("wss"), env=harness.shipped_env())
    yield envoy
    envoy.stop()


def nonce_path(prefix: str) -> str:
    """A path no other test uses, so the upstream's log line for it is this test's alone."""
    return f"{prefix}?n={uuid.uuid4().hex}"


def open_ws(envoy, path, source, headers=(), **kw):
    return harness.websocket(envoy.port_for(source), path, source=source, headers=headers, **kw)


def hello_identity(ws) -> list:
    """The identity headers the upstream saw on the upgrade request (its first message)."""
    hello = json.loads(ws.recv(timeout=harness.REQUEST_TIMEOUT))
    return harness.Echo(hello["method"], hello["path"], hello["headers"]).spellings(H)


def assert_echoes(ws) -> None:
    for message in ("hello", "x" * 70_000, b"\x00\xff binary"):
        ws.send(message)
        assert ws.recv(timeout=harness.REQUEST_TIMEOUT) == message


def assert_challenged_upgrade(envoy, upstream, path, source=OUTSIDER, headers=(), **kw) -> None:
    """The upgrade gets 401 + the challenge, never 101, and the upstream never sees it."""
    with pytest.raises(InvalidStatus) as refused:
        with open_ws(envoy, path, source, headers, **kw):
            pass
    response = refused.value.response
    assert response.status_code == 401, (response.status_code, response.headers, response.body)
    assert response.headers.get_all("WWW-Authenticate") == [CHALLENGE], response.headers
    assert response.headers.get("x-devgate-demo-upstream") is None
    # A developer's upgrade after it does reach the upstream, so its log is current: the refused one
    # is not in it.
    sentinel = nonce_path("/_debug/ws")
    with open_ws(envoy, sentinel, DEV4, **kw) as ws:
        assert hello_identity(ws) == [(H, DEV4)]
    assert upstream.wait_for_line(f"demo_upstream upgrade {sentinel}")
    assert not [line for line in upstream.lines if path.split("?")[1] in line], upstream.lines[-5:]


# --------------------------------------------------------------------------------------------------
# ws://
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [DEV4, DEV6])
def test_developer_upgrades_on_protected_path(ws_gate, upstream, source):
    path = nonce_path("/_debug/ws")
    with open_ws(ws_gate, path, source, SPOOF) as ws:
        assert ws.response.status_code == 101
        assert ws.response.headers.get("x-devgate-demo-upstream") == "echo"
        assert hello_identity(ws) == [(H, source)]
        assert_echoes(ws)
    assert upstream.wait_for_line(f"demo_upstream upgrade {path}")


@pytest.mark.parametrize(
    "prefix", ["/_debug/ws", "/_debug", "/_DEBUG/ws", "/%5Fdebug/ws", "//_debug/ws", "/x/../_debug/ws"]
)
def test_outsider_upgrade_on_protected_path_is_challenged(ws_gate, upstream, prefix):
    assert_challenged_upgrade(ws_gate, upstream, nonce_path(prefix), headers=SPOOF)


@pytest.mark.parametrize("source", [DEV4, DEV6, OUTSIDER])
@pytest.mark.parametrize("prefix", ["/ws", "/healthz/ws"])
def test_identity_spellings_are_stripped_on_public_upgrades(ws_gate, upstream, source, prefix):
    path = nonce_path(prefix)
    with open_ws(ws_gate, path, source, SPOOF + [("X-Forwarded-For", DEV4)]) as ws:
        assert ws.response.status_code == 101
        assert hello_identity(ws) == ([] if source == OUTSIDER else [(H, source)])
        assert_echoes(ws)
    assert upstream.wait_for_line(f"demo_upstream upgrade {path}")


def test_upgrade_request_reaches_upstream_as_an_upgrade(ws_gate):
    """Envoy forwards the upgrade (Upgrade/Connection/Sec-WebSocket-* kept), not a plain GET."""
    with open_ws(ws_gate, nonce_path("/ws"), DEV4) as ws:
        hello = harness.Echo(**{**json.loads(ws.recv(timeout=harness.REQUEST_TIMEOUT)), "body": ""})
    assert [v.lower() for v in hello.get_all("upgrade")] == ["websocket"]
    assert hello.get_all("sec-websocket-version") == ["13"] and len(hello.get_all("sec-websocket-key")) == 1


# --------------------------------------------------------------------------------------------------
# wss:// (envoy-tls.yaml)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source,server_hostname", [(DEV4, "localhost"), (DEV6, "::1")])
def test_wss_developer(wss_gate, upstream, source, server_hostname):
    path = nonce_path("/_debug/ws")
    with open_ws(wss_gate, path, source, SPOOF, tls=harness.tls_client(), server_hostname=server_hostname) as ws:
        assert hello_identity(ws) == [(H, source)]
        assert_echoes(ws)
    assert upstream.wait_for_line(f"demo_upstream upgrade {path}")


def test_wss_outsider_is_challenged(wss_gate, upstream):
    assert_challenged_upgrade(wss_gate, upstream, nonce_path("/_debug/ws"), headers=SPOOF,
                              tls=harness.tls_client(), server_hostname="localhost")


def test_wss_outsider_public_path_without_identity(wss_gate, upstream):
    path = nonce_path("/ws")
    with open_ws(wss_gate, path, OUTSIDER, SPOOF, tls=harness.tls_client(), server_hostname="127.0.0.1") as ws:
        assert hello_identity(ws) == []
        assert_echoes(ws)

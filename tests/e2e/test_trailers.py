"""Request trailers through the real Envoy: HTTP/2 and chunked HTTP/1.1 requests can
carry "headers" after the body. devgate removes every spelling of the identity header and of its API
headers from them, as from the headers, and fails closed if it cannot.

Envoy here is configured to pass trailers everywhere it can: `http_protocol_options.enable_trailers`
on the HCM (HTTP/1.1 downstream; HTTP/2 carries them natively) and on the cluster's upstream HTTP/1
codec, so the demo upstream sees and reports (`trailers` in its echo) every trailer that gets past
devgate. The shipped configs set neither: there Envoy drops HTTP/1.1 request trailers on the way in
and every request trailer on the way to an HTTP/1 upstream (an HTTP/2 or gRPC upstream gets them).

Peers: 127.0.0.1 is the only network developer; 127.0.0.77 is the outsider.
"""

from __future__ import annotations

import pytest

import harness
from conftest import call_or_fail
from harness import IDENTITY_HEADER as H

DEV4 = "127.0.0.1"
OUTSIDER = "127.0.0.77"
SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

CONFIG = {
    "network": {"allow": ["127.0.0.1/32"]},
    "protect": ["/_debug/"],
    "keys": [{"id": "k1", "secret": SECRET}],
    "api": {"routes": [{"prefix": "/v1", "product": "maps"}]},
}

SPOOFED = [
    (H, "mallory"),
    ("x_wsgiorg_developer_user", "mallory"),
    ("x-devgate-organization", "other-org"),
    ("x-devgate-project", "other-project"),
    ("x-devgate-key-kind", "private_key"),
    ("x-devgate-key-id", "someone"),
    ("x_devgate_count", "false"),
]
BENIGN = ("x-checksum", "sha256-abc")


@pytest.fixture(scope="module")
def envoy(tmp_path_factory, upstream, wasm):
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, wasm=wasm)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_protocol_options"] = {"enable_trailers": True}
    cfg["static_resources"]["clusters"][0]["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
        }
    }
    env = call_or_fail(harness.start_envoy, cfg, tmp_path_factory.mktemp("trailers"))
    yield env
    env.stop()


def h2_post(port: int, path: str, trailers: list, *, source: str, body: bytes = b"payload") -> tuple[int, bytes]:
    """One HTTP/2 (prior knowledge, cleartext) POST with `trailers` after the body -> (status, body)."""
    return harness.h2_request(port, "POST", path, [("content-type", "application/octet-stream")],
                              source=source, body=body, trailers=trailers)


def echoed(status: int, body: bytes) -> harness.Echo:
    assert status == 200, (status, body[:300])
    r = harness.Response(status, "", [harness.UPSTREAM_MARKER], body)
    return r.echo()


@pytest.mark.parametrize("source, identity", [(DEV4, [(H, DEV4)]), (OUTSIDER, [])])
def test_identity_and_api_headers_in_http2_trailers_never_reach_the_upstream(envoy, source, identity):
    echo = echoed(*h2_post(envoy.port_for(source), "/upload", SPOOFED + [BENIGN], source=source))
    assert echo.body == "payload"
    assert echo.trailers == [list(BENIGN)], "the benign trailer passes, every spoofed one is removed"
    assert echo.spellings(H) == identity


def chunked_with_trailers(trailers: list) -> str:
    return "7\r\npayload\r\n0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in trailers) + "\r\n"


@pytest.mark.parametrize("source, identity", [(DEV4, [(H, DEV4)]), (OUTSIDER, [])])
def test_identity_in_chunked_http1_trailers_never_reaches_the_upstream(envoy, source, identity):
    trailers = [("X-Wsgiorg-Developer-User", "mallory"), ("X_WSGIORG_DEVELOPER_USER", "mallory"),
                ("X-Devgate-Key-Id", "someone"), BENIGN]
    r = envoy.request("POST", "/upload", [("Transfer-Encoding", "chunked")], source=source,
                      body=chunked_with_trailers(trailers))
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.body == "payload"
    assert echo.trailers == [list(BENIGN)], echo.trailers
    assert echo.spellings(H) == identity


def test_trailers_leave_the_filter_healthy(envoy):
    assert envoy.devgate_problems() == []

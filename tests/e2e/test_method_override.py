"""Method overrides (README "Path matching") through the real Envoy: a request is
decided under its wire method and every method a framework may run it as (X-HTTP-Method-Override and
its siblings in any spelling, `_method` in the query, a form POST's `_method`), the strictest answer
wins, and the override reaches the upstream untouched.

Peers: 127.0.0.1 is the only network developer; 127.0.0.77 is the outsider.
"""

from __future__ import annotations

import pytest

import harness
from harness import IDENTITY_HEADER as H

DEV4 = "127.0.0.1"
OUTSIDER = "127.0.0.77"

CONFIG = {
    "network": {"allow": ["127.0.0.1/32"]},
    "protect": [{"prefix": "/items", "methods": ["DELETE"]}],
    "public": ["/items/status"],
}

FORM = ("Content-Type", "application/x-www-form-urlencoded")


def assert_refused(r: harness.Response) -> None:
    assert not r.from_upstream, f"reached the upstream: {r.summary()}"
    assert r.status == 401, r.summary()
    assert r.details == "devgate_no_credential", r.summary()


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("POST", "/items/1", [("X-HTTP-Method-Override", "DELETE")]),
        ("POST", "/items/1", [("x_http_method", "put, delete")]),
        ("POST", "/items/1", [("X-Method-Override", "delete")]),
        ("GET", "/items/1?_method=DELETE", []),
        ("POST", "/items/1?%5Fmethod=delete", []),
        ("POST", "/items/1", [FORM]),
    ],
)
def test_method_override_does_not_bypass_a_protect_rule_limited_to_delete(gate, method, path, headers):
    envoy = gate(CONFIG)
    body = "_method=DELETE" if FORM in headers else None
    assert_refused(envoy.request(method, path, headers, source=OUTSIDER, body=body))


def test_without_an_override_the_rule_does_not_apply(gate):
    envoy = gate(CONFIG)
    r = envoy.request("POST", "/items/1", [("Content-Type", "application/json")], source=OUTSIDER, body="{}")
    assert r.status == 200 and r.from_upstream, r.summary()
    assert_refused(envoy.request("DELETE", "/items/1", source=OUTSIDER))


def test_public_rule_still_exempts_overridden_methods(gate):
    envoy = gate(CONFIG)
    r = envoy.request("POST", "/items/status", [("X-HTTP-Method-Override", "DELETE")], source=OUTSIDER)
    assert r.status == 200 and r.from_upstream, r.summary()


def test_developer_passes_and_the_override_reaches_the_upstream(gate):
    envoy = gate(CONFIG)
    r = envoy.request("POST", "/items/1?_method=DELETE", [("X-HTTP-Method-Override", "DELETE")], source=DEV4)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.method == "POST"
    assert echo.path == "/items/1?_method=DELETE"
    assert echo.get_all("x-http-method-override") == ["DELETE"], echo.headers
    assert echo.spellings(H) == [(H, DEV4)]

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


# --------------------------------------------------------------------------------------------------
# A form POST's `_method` read from its body (README "Path matching"): when, and only when, the
# answer depends on it, devgate holds the body (up to 64 KiB) and decides the request as the method
# it asks for, or as the POST it is. Envoy's buffer filter after devgate keeps the router from
# seeing the request meanwhile, as for the login form.
# --------------------------------------------------------------------------------------------------

ADMIN = {"network": {"allow": ["127.0.0.1/32"]}, "protect": [{"prefix": "/admin", "methods": ["DELETE"]}]}
BUFFER = {"name": "envoy.filters.http.buffer",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                           "max_request_bytes": 1048576}}
BOUNDARY = "devgate-e2e-boundary"
MULTIPART = ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")


def multipart(**fields: str) -> str:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return "".join(parts) + f"--{BOUNDARY}--\r\n"


@pytest.fixture(scope="module")
def buffered(upstream, tmp_path_factory, wasm):
    """devgate, then Envoy's buffer filter, then the router."""
    boot = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=ADMIN, wasm=wasm)
    boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"].insert(1, BUFFER)
    envoy = harness.start_envoy(boot, tmp_path_factory.mktemp("form-method"))
    yield envoy
    envoy.stop()


PLAIN = {
    "urlencoded": ([FORM], "title=hello&body=a+b%26c"),
    "multipart": ([MULTIPART], multipart(title="hello", method="DELETE")),
    # a body just under devgate's bound
    "urlencoded-64k": ([FORM], "a=" + "x" * (64 * 1024 - 2)),
}


@pytest.mark.parametrize("case", list(PLAIN), ids=list(PLAIN))
def test_an_outsiders_plain_form_post_is_the_post_it_is(buffered, case):
    headers, body = PLAIN[case]
    r = buffered.request("POST", "/admin/x", headers, source=OUTSIDER, body=body)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert (echo.method, echo.path, echo.body) == ("POST", "/admin/x", body), "the body went on intact"
    assert echo.spellings(H) == []


OVERRIDING = {
    "urlencoded": ([FORM], "title=x&_method=DELETE"),
    "urlencoded-encoded": ([FORM], "%5Fmethod=+delete+&title=x"),
    "multipart": ([MULTIPART], multipart(title="x", _method="DELETE")),
    # in the body's first chunk, which the last one does not repeat: the whole body is read
    "urlencoded-60k": ([FORM], "_method=DELETE&a=" + "x" * 60000),
    # unreadable, so decided as if it asked for every method: too large, a multipart body without its end
    "too-large": ([FORM], "a=" + "x" * (64 * 1024 - 1)),
    "multipart-unterminated": ([MULTIPART], f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'),
}


@pytest.mark.parametrize("case", list(OVERRIDING), ids=list(OVERRIDING))
def test_a_form_post_asking_for_delete_or_unreadable_is_refused(buffered, case):
    headers, body = OVERRIDING[case]
    assert_refused(buffered.request("POST", "/admin/x", headers, source=OUTSIDER, body=body))


def test_a_developer_may_delete_through_a_form(buffered):
    body = "_method=DELETE"
    r = buffered.request("POST", "/admin/x", [FORM], source=DEV4, body=body)
    assert r.status == 200 and r.from_upstream, r.summary()
    assert r.echo().body == body and r.echo().spellings(H) == [(H, DEV4)]


def test_without_the_buffer_filter_the_body_still_decides(gate):
    """The router sees the headers first; devgate still holds the body until it has decided."""
    envoy = gate(ADMIN)
    r = envoy.request("POST", "/admin/x", [FORM], source=OUTSIDER, body="title=x")
    assert r.status == 200 and r.from_upstream and r.echo().body == "title=x", r.summary()
    assert_refused(envoy.request("POST", "/admin/x", [FORM], source=OUTSIDER, body="_method=DELETE"))

"""Identity headers from a trusted proxy (issue #23, `edge.proxy_headers`) in the real Envoy, on both
hosts: oauth2-proxy's `X-Auth-Request-Email` believed only when the request's SOCKET peer is a
listed proxy (127.0.0.1/32 here); from anywhere else (127.0.0.77, ::1) ignored and, in every
spelling, removed before the upstream; an `X-Forwarded-For` naming the proxy changes nothing, even
with `network.trust_forwarded` on an HCM that takes the downstream address from it; and
`network.deny` wins over the proxy.

127.0.0.1 is the proxy and no developer by address here (`network.allow` lists only 127.0.0.9),
so every identity seen upstream is the header's.
"""

from __future__ import annotations

import pytest

import harness
from harness import IDENTITY_HEADER as H
from test_edge_assertions import OPEN, PROTECTED, counter, start_edge

PROXY = "127.0.0.1"
OUTSIDER = "127.0.0.77"
OUTSIDER6 = "::1"
ALICE = "alice@example.com"
HEADER = "X-Auth-Request-Email"
SPELLINGS = ["x-auth-request-email", "X_Auth_Request_Email"]
CHALLENGE = "x-wsgiorg.developer_user"


def config(*, network: dict | None = None) -> dict:
    return {
        "network": network or {"allow": ["127.0.0.9/32"]},
        "protect": ["/_debug/"],
        "edge": {"proxy_headers": [
            {"header": "x-auth-request-email", "from": ["127.0.0.1/32"],
             "developers": {"domains": ["example.com"], "names": ["ops@partner.example"]}},
        ]},
    }


@pytest.fixture(scope="module")
def gates(tmp_path_factory, upstream, envoy_bin):
    running: dict[str, harness.Envoy] = {}

    def get(name: str, cfg: dict, hcm="shipped") -> harness.Envoy:
        if name not in running:
            running[name] = start_edge(tmp_path_factory, upstream, cfg, hcm=hcm)
        return running[name]

    yield get
    for envoy in running.values():
        problems = envoy.devgate_problems()
        envoy.stop()
        assert not problems


@pytest.fixture(scope="module")
def gw(gates):
    return gates("plain", config())


def no_proxy_header(echo: harness.Echo) -> None:
    assert echo.spellings(HEADER) == [], echo.spellings(HEADER)


def test_the_proxy_names_a_developer(gw):
    before = counter(gw, "allowed.proxy_header")
    for who in (ALICE, "ops@partner.example"):
        r = gw.request("GET", PROTECTED, [(HEADER, who), (H, "root")], source=PROXY)
        assert r.status == 200 and r.from_upstream, r.summary()
        echo = r.echo()
        assert echo.spellings(H) == [(H, who)], echo.spellings(H)
        no_proxy_header(echo)
    assert counter(gw, "allowed.proxy_header") == before + 2


def test_the_proxy_naming_a_non_developer_is_forbidden(gw):
    for who in ("mallory@evil.example", "eve@evil-example.com", "x@a.example.com"):
        r = gw.request("GET", PROTECTED, [(HEADER, who)], source=PROXY)
        assert (r.status, r.details) == (403, "devgate_not_a_developer"), r.summary()
        assert not r.from_upstream


@pytest.mark.parametrize("source", [OUTSIDER, OUTSIDER6])
@pytest.mark.parametrize("spelling", [HEADER, *SPELLINGS])
def test_from_anyone_else_the_header_is_ignored_and_stripped(gw, source, spelling):
    r = gw.request("GET", PROTECTED, [(spelling, ALICE)], source=source)
    assert (r.status, r.details) == (401, "devgate_no_credential"), r.summary()
    assert r.header_all("www-authenticate") == [CHALLENGE]
    r = gw.request("GET", OPEN, [(spelling, ALICE)], source=source)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.spellings(H) == []
    no_proxy_header(echo)


def test_two_values_from_the_proxy_are_not_a_developer(gw):
    r = gw.request("GET", PROTECTED, [(HEADER, ALICE), (HEADER, "ops@partner.example")], source=PROXY)
    assert r.status in (401, 403) and not r.from_upstream, r.summary()


@pytest.mark.parametrize("hcm", ["shipped", "envoy-defaults"])
def test_x_forwarded_for_naming_the_proxy_changes_nothing(gates, hcm):
    """With trust_forwarded, on the HCM that takes the downstream address from X-Forwarded-For
    (envoy-defaults) and on the shipped one: the proxy is the socket peer or nobody."""
    gw = gates(f"xff-{hcm}", config(network={"allow": ["127.0.0.9/32"], "trust_forwarded": True}), hcm=hcm)
    xff = [("X-Forwarded-For", PROXY), (HEADER, ALICE)]
    r = gw.request("GET", PROTECTED, xff, source=OUTSIDER)
    assert (r.status, r.details) == (401, "devgate_no_credential"), r.summary()
    r = gw.request("GET", OPEN, xff, source=OUTSIDER)
    assert r.status == 200 and r.echo().spellings(H) == [], r.summary()
    no_proxy_header(r.echo())
    # the control: from the proxy's socket it works on this Envoy too
    r = gw.request("GET", PROTECTED, [(HEADER, ALICE)], source=PROXY)
    assert r.status == 200 and r.echo().spellings(H) == [(H, ALICE)], r.summary()


def test_network_deny_wins_over_the_proxy(gates):
    gw = gates("deny", config(network={"allow": ["127.0.0.9/32"], "deny": ["127.0.0.1/32"]}))
    before = counter(gw, "denied.network_denied")
    r = gw.request("GET", PROTECTED, [(HEADER, ALICE)], source=PROXY)
    assert (r.status, r.details) == (403, "devgate_network_denied"), r.summary()
    assert not r.from_upstream
    assert counter(gw, "denied.network_denied") == before + 1
    r = gw.request("GET", OPEN, [(HEADER, ALICE)], source=PROXY)
    assert r.status == 200 and r.echo().spellings(H) == [], r.summary()
    no_proxy_header(r.echo())


@pytest.mark.parametrize("cidr", ["10.0.0.0", "127.0.0.1/33", "not-an-address"])
def test_a_proxy_address_without_an_explicit_mask_is_refused(refused, cidr):
    cfg = config()
    cfg["edge"]["proxy_headers"][0]["from"] = [cidr]
    result = refused(cfg)
    assert not result.ready, f"Envoy accepted from: [{cidr!r}]: probe {result.probe!r}"

"""devgate in the real Envoy: network identity, header hygiene, path matching, robustness, bad configs.

Clients connect from chosen loopback addresses (the socket is bound before connecting), so the filter
sees that peer as `source.address`:
  127.0.0.1, ::1  developers unless a test's allow list says otherwise
  127.0.0.5       a developer inside an allowed range
  127.0.0.77      the outsider (denied, or outside a narrow allow list)
"""

from __future__ import annotations

import pytest

import harness
from harness import IDENTITY_HEADER as H
from harness import Response

DEV4 = "127.0.0.1"
DEV6 = "::1"
FIVE = "127.0.0.5"
OUTSIDER = "127.0.0.77"

CHALLENGE = "x-wsgiorg.developer_user"

# The demo's rules, with a narrow allow list so 127.0.0.77 is an outsider.
DEMO_NARROW = {
    "network": {"allow": ["127.0.0.1/32", "::1"]},
    "protect": ["/_debug/"],
    "public": ["/healthz"],
}
DENY_INSIDE_ALLOW = {"network": {"allow": ["127.0.0.0/8", "::/0"], "deny": ["127.0.0.77/32", "::1/128"]}}
FORBID = {"network": {"allow": ["127.0.0.1/32", "::1"]}, "unauthenticated": "forbid"}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def assert_passed(r: Response, identity: str | None) -> None:
    """The request reached the upstream, carrying exactly `identity` (or no identity header)."""
    assert r.status == 200 and r.from_upstream, r.summary()
    seen = r.echo().spellings(H)
    if identity is None:
        assert seen == [], f"upstream saw an identity header from a non-developer: {seen}"
    else:
        assert seen == [(H, identity)], f"upstream saw {seen}, expected exactly one {H}: {identity}"


def assert_challenged(r: Response) -> None:
    assert not r.from_upstream, f"reached the upstream: {r.summary()}"
    assert r.status == 401, r.summary()
    assert r.header_all("www-authenticate") == [CHALLENGE], r.summary()
    assert r.header("cache-control") == "no-store", r.summary()
    assert len(r.body) < 1024, r.summary()


def assert_forbidden(r: Response) -> None:
    assert not r.from_upstream, f"reached the upstream: {r.summary()}"
    assert r.status == 403, r.summary()
    assert r.header("www-authenticate") is None, r.summary()
    assert len(r.body) < 1024, r.summary()


# --------------------------------------------------------------------------------------------------
# who is a developer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [DEV4, DEV6, OUTSIDER, FIVE])
def test_default_allow_makes_loopback_peers_developers(gate, source):
    """Default config: allow 127.0.0.0/8 and ::1, protect everything. Each loopback peer is a
    developer named by its IP, and the upstream gets exactly one identity header."""
    envoy = gate({})
    assert_passed(envoy.request("GET", "/", source=source), source)
    assert_passed(envoy.request("POST", "/_debug/x?y=1", source=source, body="abc"), source)


def test_empty_configuration_is_the_default(gate):
    """No `configuration` at all behaves like `{}`. (This Envoy also carries a VM environment variable,
    to check the harness's vm_config.environment_variables shape is accepted and harmless.)"""
    envoy = gate(None, env={"DEVGATE_E2E_UNUSED": "x"})
    assert_passed(envoy.request("GET", "/", source=DEV4), DEV4)
    assert_passed(envoy.request("GET", "/", source=DEV6), DEV6)


@pytest.mark.parametrize("source,developer", [(FIVE, True), (DEV4, True), (OUTSIDER, False), (DEV6, False)])
def test_deny_wins_inside_an_allowed_range(gate, source, developer):
    """allow 127.0.0.0/8 and ::/0, deny 127.0.0.77/32 and ::1/128 (both families, deny wins).
    A denied peer gets 403, not the challenge: nothing it could send would make it a developer
    (test_login.py's DevAuth tests cover tokens, sessions and the form)."""
    envoy = gate(DENY_INSIDE_ALLOW)
    r = envoy.request("GET", "/", source=source)
    if developer:
        assert_passed(r, source)
    else:
        assert_forbidden(r)
        assert r.details == "devgate_network_denied", r.summary()


# --------------------------------------------------------------------------------------------------
# protect / public, challenge / forbid
# --------------------------------------------------------------------------------------------------


class TestDemoRules:
    """protect ["/_debug/"], public ["/healthz"], only 127.0.0.1 and ::1 are developers."""

    @pytest.mark.parametrize("path", ["/_debug/", "/_debug", "/_debug/vars", "/_debug/?q=1", "/_DEBUG/x"])
    def test_outsider_is_challenged_on_protected(self, gate, path):
        envoy = gate(DEMO_NARROW)
        assert_challenged(envoy.request("GET", path, source=OUTSIDER))
        assert_challenged(envoy.request("POST", path, source=OUTSIDER, body="x"))

    @pytest.mark.parametrize("path", ["/", "/healthz", "/healthz/deep", "/_debugger", "/app/_debug/", "/x?_debug/"])
    def test_outsider_passes_unprotected_without_identity(self, gate, path):
        envoy = gate(DEMO_NARROW)
        assert_passed(envoy.request("GET", path, source=OUTSIDER), None)

    @pytest.mark.parametrize("source", [DEV4, DEV6])
    @pytest.mark.parametrize("path", ["/_debug/", "/", "/healthz"])
    def test_developer_passes_everywhere_with_identity(self, gate, source, path):
        envoy = gate(DEMO_NARROW)
        assert_passed(envoy.request("GET", path, source=source), source)


class TestRuleResolution:
    """Longest matching rule wins; a tie goes to protect; protect is case-insensitive, public is not;
    a protect rule with methods only applies to those methods."""

    CONFIG = {
        "network": {"allow": ["127.0.0.1/32"]},
        "protect": ["/", "/healthz/secret/", {"prefix": "/api/", "methods": ["POST"]}, "/tie/"],
        "public": ["/healthz", "/api/", "/tie/", "/docs/"],
    }

    @pytest.mark.parametrize(
        "method,path,protected",
        [
            ("GET", "/", True),
            ("GET", "/healthz", False),
            ("GET", "/healthz/ok", False),
            ("GET", "/HEALTHZ", True),  # public is case-sensitive; falls back to protect "/"
            ("GET", "/healthz/secret/x", True),  # longer protect beats shorter public
            ("GET", "/healthz/SECRET/x", True),  # ... and protect is case-insensitive
            ("GET", "/api/items", False),
            ("POST", "/api/items", True),  # tie between protect /api/ (POST) and public /api/
            ("GET", "/tie/", True),  # tie -> protect
            ("GET", "/docs/x", False),
            ("GET", "/docsx", True),  # segment-aware: /docs/ does not cover /docsx
        ],
    )
    def test_rules(self, gate, method, path, protected):
        envoy = gate(self.CONFIG)
        r = envoy.request(method, path, source=OUTSIDER, body="x" if method == "POST" else None)
        if protected:
            assert_challenged(r)
        else:
            assert_passed(r, None)
        assert_passed(envoy.request(method, path, source=DEV4, body="x" if method == "POST" else None), DEV4)


def test_forbid_mode(gate):
    envoy = gate(FORBID)
    assert_forbidden(envoy.request("GET", "/", source=OUTSIDER))
    assert_forbidden(envoy.request("GET", "/_debug/", source=OUTSIDER, headers=[(H, DEV4)]))
    assert_passed(envoy.request("GET", "/", source=DEV4), DEV4)


# --------------------------------------------------------------------------------------------------
# client-sent identity headers never reach the upstream
# --------------------------------------------------------------------------------------------------

SPOOFS = {
    "canonical-case": [("X-Wsgiorg-Developer-User", "evil")],
    "lower": [("x-wsgiorg-developer-user", "evil")],
    "upper": [("X-WSGIORG-DEVELOPER-USER", "evil")],
    "repeated": [("x-wsgiorg-developer-user", "evil1"), ("X-Wsgiorg-Developer-User", "evil2")],
    "underscore": [("x_wsgiorg_developer_user", "evil")],
    "underscore-upper": [("X_WSGIORG_DEVELOPER_USER", "evil")],
    # A WSGI/CGI server maps every '-' and '_' to '_': any mix is the same variable there.
    "mixed-separators": [("x_wsgiorg-developer_user", "evil")],
    "claims-developer": [(H, "127.0.0.1")],
    "empty-value": [(H, "")],
    "non-utf8-value": [(H, b"\xff\xfe\x80")],
    "everything": [
        ("X-Wsgiorg-Developer-User", "a"),
        ("x_wsgiorg_developer_user", "b"),
        ("x-wsgiorg-developer-user", "c"),
        ("X_Wsgiorg_Developer_User", "d"),
    ],
}


@pytest.mark.parametrize("spoof", list(SPOOFS), ids=list(SPOOFS))
@pytest.mark.parametrize("source", [DEV4, DEV6])
def test_spoofed_identity_replaced_for_developer(gate, spoof, source):
    envoy = gate(DEMO_NARROW)
    headers = [("X-Before", "1")] + SPOOFS[spoof] + [("X-After", "2")]
    r = envoy.request("GET", "/", headers=headers, source=source)
    assert_passed(r, source)
    echo = r.echo()
    assert echo.get_all("x-before") == ["1"] and echo.get_all("x-after") == ["2"], "other headers must survive"


@pytest.mark.parametrize("spoof", list(SPOOFS), ids=list(SPOOFS))
@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_spoofed_identity_removed_for_outsider(gate, spoof, path):
    envoy = gate(DEMO_NARROW)
    r = envoy.request("GET", path, headers=SPOOFS[spoof], source=OUTSIDER)
    assert_passed(r, None)


@pytest.mark.parametrize("spoof", list(SPOOFS), ids=list(SPOOFS))
def test_spoofed_identity_does_not_open_protected_path(gate, spoof):
    envoy = gate(DEMO_NARROW)
    assert_challenged(envoy.request("GET", "/_debug/", headers=SPOOFS[spoof], source=OUTSIDER))


def test_custom_header_name(gate):
    """With `header` set, that name is injected and stripped, and the default name is left alone."""
    envoy = gate({"header": "x-dev-user", "network": {"allow": ["127.0.0.1/32"]}, "protect": ["/_debug/"]})
    r = envoy.request("GET", "/", headers=[("X-Dev-User", "evil"), ("x_dev_user", "evil")], source=DEV4)
    assert r.status == 200 and r.from_upstream, r.summary()
    assert r.echo().spellings("x-dev-user") == [("x-dev-user", DEV4)]
    r = envoy.request("GET", "/", headers=[("X-Dev-User", "evil")], source=OUTSIDER)
    assert r.status == 200 and r.echo().spellings("x-dev-user") == []


# --------------------------------------------------------------------------------------------------
# X-Forwarded-For and friends
# --------------------------------------------------------------------------------------------------

FORWARDING_SPOOFS = {
    "xff": [("X-Forwarded-For", "127.0.0.1")],
    "xff-list": [("X-Forwarded-For", "10.0.0.9, 127.0.0.1")],
    "xff-v6": [("X-Forwarded-For", "::1")],
    "xff-repeated": [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "127.0.0.1")],
    "x-real-ip": [("X-Real-IP", "127.0.0.1")],
    "forwarded": [("Forwarded", "for=127.0.0.1")],
    "x-envoy-external-address": [("X-Envoy-External-Address", "127.0.0.1")],
}


@pytest.mark.parametrize("hcm", ["shipped", "envoy-defaults"])
@pytest.mark.parametrize("spoof", list(FORWARDING_SPOOFS), ids=list(FORWARDING_SPOOFS))
def test_forwarded_headers_do_not_make_a_developer(gate, hcm, spoof):
    """(a) shipped HCM (use_remote_address: true): Envoy uses the socket peer; the headers are inert.
    (b) Envoy's default HCM (use_remote_address: false, xff_num_trusted_hops: 0): Envoy takes the
    LAST X-Forwarded-For entry as the downstream address and gives it to filters as `source.address`
    with port 0 (e.g. "127.0.0.1:0", "[::1]:0"); the socket peer 127.0.0.77 is only in
    DOWNSTREAM_DIRECT_REMOTE_ADDRESS. There it is `trust_forwarded: false` (the default) that keeps
    127.0.0.77 out: devgate refuses port-0 (header-derived) addresses."""
    envoy = gate(DEMO_NARROW, hcm=hcm)
    r = envoy.request("GET", "/_debug/", headers=FORWARDING_SPOOFS[spoof], source=OUTSIDER)
    assert_challenged(r)
    if hcm == "envoy-defaults" and spoof.startswith("xff"):
        want = "[::1]:0" if spoof == "xff-v6" else "127.0.0.1:0"
        assert r.downstream_remote == want, "Envoy's default HCM should hand the XFF address to filters"
        assert r.header(harness.DIRECT_REMOTE_HEADER).startswith(OUTSIDER + ":"), r.summary()
    else:
        assert r.downstream_remote.startswith(OUTSIDER + ":"), r.summary()


def test_trust_forwarded_is_what_protects_on_default_hcm(gate):
    """Control for the test above: the same Envoy-default HCM with `trust_forwarded: true` does make
    127.0.0.77 a developer named by the XFF address. So on that HCM nothing but trust_forwarded:false
    stands between a forged X-Forwarded-For and developer access."""
    cfg = {"network": {"allow": ["127.0.0.1/32", "::1"], "trust_forwarded": True}}
    envoy = gate(cfg, hcm="envoy-defaults")
    r = envoy.request("GET", "/", headers=[("X-Forwarded-For", "127.0.0.1")], source=OUTSIDER)
    assert r.downstream_remote == "127.0.0.1:0"
    assert_passed(r, DEV4)
    # and without the header the outsider is still an outsider
    assert_challenged(envoy.request("GET", "/", source=OUTSIDER))


def test_trust_forwarded_is_inert_with_use_remote_address(gate):
    """With use_remote_address: true Envoy never takes the address from XFF, so even
    trust_forwarded: true cannot be abused through the header."""
    cfg = {"network": {"allow": ["127.0.0.1/32", "::1"], "trust_forwarded": True}}
    envoy = gate(cfg, hcm="shipped")
    assert_challenged(envoy.request("GET", "/", headers=[("X-Forwarded-For", "127.0.0.1")], source=OUTSIDER))
    assert_passed(envoy.request("GET", "/", source=DEV4), DEV4)


def test_developer_behind_default_hcm_with_xff_loses_identity(gate):
    """Documents Envoy's default HCM: a real developer (127.0.0.1) that sends X-Forwarded-For is
    judged on the header's address (port 0), which trust_forwarded: false refuses. Closed, not open."""
    envoy = gate(DEMO_NARROW, hcm="envoy-defaults")
    assert_passed(envoy.request("GET", "/_debug/", source=DEV4), DEV4)
    r = envoy.request("GET", "/_debug/", headers=[("X-Forwarded-For", "10.9.9.9")], source=DEV4)
    assert r.downstream_remote == "10.9.9.9:0"
    assert_challenged(r)


# --------------------------------------------------------------------------------------------------
# path tricks
# --------------------------------------------------------------------------------------------------

# Every one of these names /_debug/ (or something under it) to some reasonable upstream.
PATH_TRICKS = [
    "/_debug/",
    "/_debug",
    "/_debug/x",
    "/%5Fdebug/",
    "/%5fdebug/",
    "/_deb%75g/",
    "/%5FDEBUG/",
    "/_DEBUG/",
    "/_Debug/x",
    "//_debug/",
    "///_debug//x",
    "/x/../_debug/",
    "/x/..//_debug/",
    "/./_debug/",
    "/_debug/./",
    "/_debug;a=b/",
    "/_debug;a=b",
    "/_debug%3Ba=b/",
    "/healthz/../_debug/",
    "/healthz/..;/_debug/",
    "/healthz/%2e%2e/_debug/",
    "/%2E%2E/_debug/",
    "/_debug/?q",
    "/_debug?x=/healthz",
    "/\\_debug/",
    "/healthz\\..\\_debug\\",
    "/%5C_debug/",
    "/%2F_debug/",
    "/healthz/..%2F_debug/",
    "/_debug%2Fx",
    "/%255Fdebug/",
    "/_debug/%00",
    "/_debug%00/",
    "http://devgate.test/_debug/",
    # merge-vs-dot order: RFC 3986 (and Envoy's normalize_path) resolve "/healthz//../_debug/" to
    # "/healthz/_debug/"; Go's path.Clean, Python's normpath and nginx to "/_debug/".
    "/healthz//../_debug/",
    "/a//..//_debug/",
    "/healthz/x//../../_debug/",
    "/healthz/;x/../_debug/",
    "/healthz;/../_debug/",
    "/healthz/%2F../_debug/",
    "/healthz%2f..%2f_debug/",
    "/%5f%64ebug/",
]


def could_name_debug(path: str) -> bool:
    """Oracle: True if some common reading of `path` (decoded zero, one or two times, cut at a NUL or
    not, ';params' kept or cut, '\\' as '/' or not, slashes merged before or after dot segments, any
    case) is /_debug or under it."""
    from urllib.parse import unquote

    target = path.split("#", 1)[0].split("?", 1)[0]
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]

    def dots(segs):
        out = []
        for s in segs:
            if s == "..":
                if out:
                    out.pop()
            elif s != ".":
                out.append(s)
        return out

    readings = set()
    once = unquote(target, encoding="latin-1")
    twice = unquote(once, encoding="latin-1")
    for decoded in (target, once, twice, once.split("\0", 1)[0], twice.split("\0", 1)[0]):
        for backslash in (False, True):
            p = decoded.replace("\\", "/") if backslash else decoded
            for params in (False, True):
                segs = p.split("/")[1:]
                if params:
                    segs = [s.split(";", 1)[0] for s in segs]
                merged_first = dots([s for s in segs if s])
                dots_first = [s for s in dots(segs) if s]
                readings.add("/" + "/".join(merged_first))
                readings.add("/" + "/".join(dots_first))
    return any(r.lower() == "/_debug" or r.lower().startswith("/_debug/") for r in readings)

# Never protected, for the control test.
PATH_CONTROLS = ["/", "/healthz", "/healthz/x", "/_debugger", "/app/_debug/x"]

@pytest.mark.parametrize("hcm", ["shipped", "envoy-defaults"])
@pytest.mark.parametrize("path", PATH_TRICKS)
def test_path_trick_never_reaches_protected_upstream(gate, hcm, path):
    """An outsider never gets a protected path to the upstream: devgate answers 401 (or 400 for an
    ambiguous encoding), or Envoy's own normalisation rejects the request first."""
    assert could_name_debug(path), "not a trick: fix the list or the oracle"
    envoy = gate(DEMO_NARROW, hcm=hcm)
    r = envoy.request("GET", path, source=OUTSIDER)
    upstream_path = r.echo().path if r.from_upstream else ""
    harness.PATH_TRICK_TABLE.append((hcm, path, r.status, r.layer, r.details or f"upstream got {upstream_path}"))
    if r.from_upstream:
        # Only acceptable when Envoy's normalisation turned it into a path that no reading makes
        # protected (e.g. "/healthz//../_debug/" -> "/healthz/_debug/"); devgate judged that same path.
        assert not could_name_debug(upstream_path), f"outsider reached the upstream with {upstream_path!r}"
        assert r.echo().spellings(H) == []
        return
    if r.status == 401:
        assert_challenged(r)
    else:
        assert r.status == 400, r.summary()


@pytest.mark.parametrize("hcm", ["shipped", "envoy-defaults"])
@pytest.mark.parametrize("path", ["/%5Fdebug/", "/_DEBUG/", "//_debug/", "/x/../_debug/", "/_debug;a=b/"])
def test_path_trick_developer_still_passes(gate, hcm, path):
    """The canonicalisation is not a denial of service for developers."""
    envoy = gate(DEMO_NARROW, hcm=hcm)
    assert_passed(envoy.request("GET", path, source=DEV4), DEV4)


@pytest.mark.parametrize("hcm", ["shipped", "envoy-defaults"])
@pytest.mark.parametrize("path", PATH_CONTROLS)
def test_path_controls_pass(gate, hcm, path):
    assert not could_name_debug(path)
    envoy = gate(DEMO_NARROW, hcm=hcm)
    assert_passed(envoy.request("GET", path, source=OUTSIDER), None)


@pytest.mark.parametrize("hcm", ["shipped", "envoy-defaults"])
@pytest.mark.parametrize("path", ["/%zz", "/a%2", "/%255F", "/x%00y"])
def test_bad_escapes_rejected_everywhere(gate, hcm, path):
    """Bad or double encodings are refused (400) even on unprotected paths and even for developers:
    devgate would not know which path the upstream will see."""
    envoy = gate(DEMO_NARROW, hcm=hcm)
    for source in (OUTSIDER, DEV4):
        r = envoy.request("GET", path, source=source)
        assert r.status == 400 and not r.from_upstream, r.summary()


# --------------------------------------------------------------------------------------------------
# robustness: odd bytes, big headers; the filter must keep working afterwards
# --------------------------------------------------------------------------------------------------


def assert_filter_alive(envoy) -> None:
    assert envoy.alive(), envoy.log_text()[-3000:]
    assert_passed(envoy.request("GET", "/", source=DEV4), DEV4)
    assert_challenged(envoy.request("GET", "/_debug/", source=OUTSIDER))
    problems = envoy.devgate_problems()
    assert not problems, "devgate trouble in Envoy's log:\n" + "\n".join(problems)


@pytest.mark.parametrize("source", [DEV4, OUTSIDER])
@pytest.mark.parametrize(
    "headers",
    [
        [("X-Bin", b"\xff\xfe\x80\xc0\xaf")],
        [("X-Half-Utf8", b"caf\xc3")],
        [(H, b"\xff")],
        [("x_" + "a" * 100, b"\xe9")],
        [("Cookie", b"a=\xff; devgate=\x80")],
        [("Authorization", b"Bearer \xff\xff")],
    ],
    ids=["bin", "half-utf8", "identity-bin", "long-name", "cookie", "authorization"],
)
def test_non_utf8_header_values(gate, source, headers):
    envoy = gate(DEMO_NARROW)
    r = envoy.request("GET", "/", headers=headers, source=source)
    assert_passed(r, DEV4 if source == DEV4 else None)
    r = envoy.request("GET", "/_debug/", headers=headers, source=source)
    if source == DEV4:
        assert_passed(r, DEV4)
    else:
        assert_challenged(r)
    assert_filter_alive(envoy)


def test_non_utf8_path(gate):
    envoy = gate(DEMO_NARROW)
    for path in (b"/caf\xe9", b"/_debug/\xff", b"/%ff", b"/_debug/%ff%fe"):
        r = envoy.request("GET", path, source=OUTSIDER)
        assert r.status in (200, 400, 401), r.summary()
        if path.startswith(b"/_debug"):
            assert not r.from_upstream, r.summary()
    assert_filter_alive(envoy)


@pytest.mark.parametrize("size", [8 * 1024, 50 * 1024, 59 * 1024, 60 * 1024, 64 * 1024])
@pytest.mark.parametrize("source", [DEV4, OUTSIDER])
def test_huge_header(gate, size, source):
    """Up to Envoy's 60 KiB request-header limit the filter sees it and answers normally; beyond it
    Envoy answers 431 itself. Either way a clean response and the filter is still alive."""
    envoy = gate(DEMO_NARROW)
    big = [("X-Big", "b" * size)]
    for path in ("/", "/_debug/"):
        r = envoy.request("GET", path, headers=big, source=source)
        if r.status == 431:
            assert size >= 60 * 1024 and r.layer == "envoy", r.summary()
        elif source == DEV4 or path == "/":
            assert_passed(r, DEV4 if source == DEV4 else None)
        else:
            assert_challenged(r)
    assert_filter_alive(envoy)


def test_many_headers_and_huge_identity_header(gate):
    envoy = gate(DEMO_NARROW)
    headers = [(H, "x" * 1000) for _ in range(40)] + [("x_wsgiorg_developer_user", "y" * 20000)]
    assert_passed(envoy.request("GET", "/", headers=headers, source=DEV4), DEV4)
    assert_passed(envoy.request("GET", "/", headers=headers, source=OUTSIDER), None)
    assert_filter_alive(envoy)


# --------------------------------------------------------------------------------------------------
# bad configurations are refused by Envoy
# --------------------------------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown-top-level-field": ({"protect": ["/"], "bogus": 1}, "bogus"),
    "unknown-network-field": ({"network": {"allow": ["127.0.0.1/32"], "alow": []}}, "alow"),
    "host-bits-set": ({"network": {"allow": ["10.0.0.1/8"]}}, "network.allow"),
    "host-bits-set-second": ({"network": {"allow": ["::1", "10.0.0.1/8"]}}, "network.allow[1]"),
    "bad-deny-cidr": ({"network": {"deny": ["127.0.0.300"]}}, "network.deny"),
    "unauthenticated-maybe": ({"unauthenticated": "maybe"}, "unauthenticated"),
    "not-json": ('{"protect": ["/"]', None),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
def test_bad_config_is_refused(refused, case):
    plugin_config, field_name = BAD_CONFIGS[case]
    result = refused(plugin_config)
    assert not result.ready, f"Envoy accepted a bad devgate config; a request got: {result.probe!r}"
    assert result.exit_code not in (None, 0), f"Envoy should exit non-zero (got {result.exit_code})"
    # devgate's own log lines reach Envoy's log as "wasm log devgate: ..." (native: "[dynamic_modules] ... devgate: ...")
    devgate_lines = [line for line in result.log.splitlines() if harness.is_devgate_log_line(line)]
    assert devgate_lines, "no devgate log line in Envoy's log:\n" + result.log[-4000:]
    if field_name:
        naming = [line for line in devgate_lines if field_name in line]
        assert naming, f"no devgate log line names {field_name!r}:\n" + "\n".join(devgate_lines)

"""Signed developer tokens (docs/token-format.md) in the real Envoy, plus the devgate CLI around them.

Clients connect from chosen loopback addresses (see test_network.py). Every config here makes only
127.0.0.1 a developer by address and protects /_debug/, so 127.0.0.77 (and ::1) need a token there:
  127.0.0.1    network developer
  127.0.0.5    a peer inside `tokens.allow_from` (allow_from tests only)
  127.0.0.77   the outsider, who presents tokens
Secrets reach the filter through vm_config.environment_variables (`secret_env`), so the plugin
configuration carries none; the allow_from config uses an inline `secret` instead.

Tokens are minted here with hmac/hashlib (so tests can build broken ones), by PyJWT and by
`devgate mint`; the filter's clock is Envoy's (the real time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import stat
import threading
import time

import jwt  # PyJWT: an HS256 implementation nobody here wrote
import pytest

import harness
from harness import IDENTITY_HEADER as H
from harness import HarnessError, Response

DEV4 = "127.0.0.1"
DEV6 = "::1"
FIVE = "127.0.0.5"
OUTSIDER = "127.0.0.77"

CHALLENGE = "x-wsgiorg.developer_user"
PROTECTED = "/_debug/vars"

# --------------------------------------------------------------------------------------------------
# keys, configs
# --------------------------------------------------------------------------------------------------


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


K1 = hashlib.sha256(b"devgate e2e secret k1").digest()
K2 = hashlib.sha256(b"devgate e2e secret k2").digest()
OTHER = hashlib.sha256(b"devgate e2e someone else's secret").digest()
ENV_K1 = "DEVGATE_E2E_KEY_K1"
ENV_K2 = "DEVGATE_E2E_KEY_K2"

BASE = {"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/_debug/"]}


def token_config(keys: list, **tokens) -> dict:
    return {**BASE, "keys": keys, "tokens": tokens}


KEY1 = {"id": "k1", "secret_env": ENV_K1}
KEY2 = {"id": "k2", "secret_env": ENV_K2}

TOKENS = token_config([KEY1])
TOKENS_ENV = {ENV_K1: b64u(K1)}
# Rotation: k2 added first (it signs), k1 still verifies; then k1 removed.
ROTATING = token_config([KEY2, KEY1])
ROTATING_ENV = {ENV_K1: b64u(K1), ENV_K2: b64u(K2)}
ROTATED = token_config([KEY2])
ROTATED_ENV = {ENV_K2: b64u(K2)}
# allow_from, with the secret inline for once.
ALLOW_FROM = token_config([{"id": "k1", "secret": b64u(K1)}], allow_from=["127.0.0.5/32"])


def tokens_gate(gate) -> harness.Envoy:
    return gate(TOKENS, env=TOKENS_ENV)


# --------------------------------------------------------------------------------------------------
# minting (deliberately independent of the filter's code)
# --------------------------------------------------------------------------------------------------


def now() -> int:
    return int(time.time())


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sign(header: dict, claims: dict, secret: bytes = K1, digest=hashlib.sha256) -> str:
    signing_input = b64u(_json(header)) + "." + b64u(_json(claims))
    mac = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
    return signing_input + "." + b64u(mac)


def claims_for(sub: str = "alice", ttl: int = 3600, **extra) -> dict:
    """Developer claims issued now; extra claims override (None removes one)."""
    t = now()
    claims = {"sub": sub, "dgp": "developer", "iat": t, "exp": t + ttl}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def mint(sub: str = "alice", *, kid: str = "k1", secret: bytes = K1, ttl: int = 3600, **extra) -> str:
    return sign({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims_for(sub, ttl, **extra), secret)


def bearer(token: str) -> list:
    return [("Authorization", f"Bearer {token}")]


def cookie(value: str) -> list:
    return [("Cookie", value)]


def tampered_payload() -> str:
    h, _, s = mint("alice").split(".")
    return ".".join([h, b64u(_json(claims_for("mallory"))), s])


def alg_none(with_signature: bool) -> str:
    header = b64u(_json({"alg": "none", "kid": "k1", "typ": "JWT"}))
    body = b64u(_json(claims_for("alice")))
    sig = b64u(hmac.new(K1, f"{header}.{body}".encode(), hashlib.sha256).digest()) if with_signature else ""
    return f"{header}.{body}.{sig}"


def token_of_length(n: int, sub: str = "alice") -> str:
    """A correctly signed developer token of exactly n bytes: an ignored `pad` claim fills it, and the
    header is written compact or with JSON's spaces (a base64url segment is never 1 mod 4 long, so
    one header spelling cannot reach every total length)."""
    for separators in ((",", ":"), (", ", ": ")):
        header = b64u(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}, separators=separators).encode())
        for pad in range(max(0, n * 3 // 4 - 200), n):
            signing_input = header + "." + b64u(_json(claims_for(sub, pad="x" * pad)))
            t = signing_input + "." + b64u(hmac.new(K1, signing_input.encode(), hashlib.sha256).digest())
            if len(t) == n:
                return t
            if len(t) > n:
                break
    raise AssertionError(f"could not build a token of exactly {n} bytes")


# --------------------------------------------------------------------------------------------------
# assertions
# --------------------------------------------------------------------------------------------------


def assert_developer(r: Response, name: str) -> harness.Echo:
    """Reached the upstream with exactly one identity header, `name`, and no devgate credential."""
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.spellings(H) == [(H, name)], f"upstream saw {echo.spellings(H)}, expected exactly one {H}: {name}"
    return echo


def assert_anonymous(r: Response) -> harness.Echo:
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.spellings(H) == [], f"upstream saw an identity header: {echo.spellings(H)}"
    return echo


def assert_challenged(r: Response, code: str) -> None:
    assert not r.from_upstream, f"reached the upstream: {r.summary()}"
    assert r.status == 401, r.summary()
    assert r.header_all("www-authenticate") == [CHALLENGE], r.summary()
    assert r.details == f"devgate_{code}", r.summary()
    assert r.header("cache-control") == "no-store", r.summary()
    assert code.encode() not in r.body, "the body must not say why"


def assert_forbidden(r: Response, code: str) -> None:
    assert not r.from_upstream, f"reached the upstream: {r.summary()}"
    assert r.status == 403, r.summary()
    assert r.header("www-authenticate") is None, r.summary()
    assert r.details == f"devgate_{code}", r.summary()


# --------------------------------------------------------------------------------------------------
# the happy paths
# --------------------------------------------------------------------------------------------------


class TestBearer:
    def test_bearer_developer(self, gate):
        envoy = tokens_gate(gate)
        spoof = [(H, "evil"), ("x_wsgiorg_developer_user", "evil2")]
        headers = [("X-Before", "1")] + bearer(mint("alice")) + spoof + [("X-After", "2")]
        echo = assert_developer(envoy.request("GET", PROTECTED, headers, source=OUTSIDER), "alice")
        assert echo.get_all("authorization") == [], "devgate's bearer token must not reach the upstream"
        assert echo.get_all("x-before") == ["1"] and echo.get_all("x-after") == ["2"]

    def test_bearer_developer_over_ipv6_and_other_methods(self, gate):
        envoy = tokens_gate(gate)
        r = envoy.request("POST", "/_debug/x?y=1", bearer(mint("bob")), source=DEV6, body="abc")
        echo = assert_developer(r, "bob")
        assert echo.method == "POST" and echo.body == "abc" and echo.get_all("authorization") == []

    def test_scheme_is_case_insensitive(self, gate):
        envoy = tokens_gate(gate)
        r = envoy.request("GET", PROTECTED, [("Authorization", "bEaReR " + mint("carol"))], source=OUTSIDER)
        assert_developer(r, "carol")

    def test_token_names_a_network_developer_too(self, gate):
        """A token names a person, so it beats the address; a bad one never locks out 127.0.0.1."""
        envoy = tokens_gate(gate)
        assert_developer(envoy.request("GET", PROTECTED, bearer(mint("alice")), source=DEV4), "alice")
        r = envoy.request("GET", PROTECTED, bearer(mint("alice", ttl=-3600)), source=DEV4)
        assert_developer(r, DEV4)

    def test_identity_on_unprotected_path(self, gate):
        envoy = tokens_gate(gate)
        echo = assert_developer(envoy.request("GET", "/", bearer(mint("alice")), source=OUTSIDER), "alice")
        assert echo.get_all("authorization") == []

    def test_within_leeway(self, gate):
        """leeway_seconds 30 (default): just expired or not quite valid yet is still accepted."""
        envoy = tokens_gate(gate)
        t = now()
        assert_developer(envoy.request("GET", PROTECTED, bearer(mint("a", exp=t - 5)), source=OUTSIDER), "a")
        assert_developer(envoy.request("GET", PROTECTED, bearer(mint("b", nbf=t + 10)), source=OUTSIDER), "b")

    def test_size_limit_boundary(self, gate):
        envoy = tokens_gate(gate)
        ok = token_of_length(4096, "big")
        assert_developer(envoy.request("GET", PROTECTED, bearer(ok), source=OUTSIDER), "big")
        too_long = token_of_length(4097, "big")
        assert_challenged(envoy.request("GET", PROTECTED, bearer(too_long), source=OUTSIDER), "too_long")

    def test_no_secret_in_plugin_config_or_log(self, gate):
        """The key reaches devgate through the environment (`secret_env`), never through its
        configuration: the configuration Envoy runs (admin /config_dump) names the variable and
        holds the key in no form; and nothing Envoy or devgate logged while a token was verified,
        at info level (devgate's configuration line among it) and read once Envoy has written its
        log, holds it either. (At debug level Envoy itself logs every filter's configuration, the
        Wasm VM's environment included: Envoy's own, not devgate's, so not this test's.)"""
        envoy = gate(TOKENS, env=TOKENS_ENV, log_level="info")
        assert_developer(envoy.request("GET", PROTECTED, bearer(mint("alice")), source=OUTSIDER), "alice")
        forms = secret_forms(K1)
        status, dump = envoy.admin("/config_dump")
        assert status == 200, dump[:300]
        configs = devgate_configurations(json.loads(dump))
        # (The listener's configuration appears twice: in the bootstrap and in the listener dump.)
        assert configs and all(ENV_K1 in c for c in configs), configs
        assert not [f for c in configs for f in forms if f in c], "the key is in devgate's configuration"
        log = envoy.flushed_log_text()
        assert "devgate: configuration accepted" in log, "devgate's lines are not in the log read"
        assert not [f for f in forms if f in log], "the key is in Envoy's log"
        assert envoy.devgate_problems() == []


def secret_forms(key: bytes) -> list[str]:
    """The spellings a key could leak in: base64url (as configured), base64, hex."""
    return [b64u(key), base64.b64encode(key).decode(), base64.b64encode(key).decode().rstrip("="),
            key.hex(), key.hex().upper()]


def devgate_configurations(dump) -> list[str]:
    """The JSON configuration of every devgate filter in an admin /config_dump: the Wasm filter's
    `configuration`, the dynamic-modules filter's `filter_config` (the StringValue's text)."""
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            kind = node.get("@type", "")
            if kind.endswith("filters.http.wasm.v3.Wasm"):
                found.append(node.get("config", {}).get("configuration", {}).get("value", ""))
            elif kind.endswith("filters.http.dynamic_modules.v3.DynamicModuleFilter"):
                found.append(node.get("filter_config", {}).get("value", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dump)
    return found


class TestCookie:
    def test_cookie_developer_other_cookies_survive_in_order(self, gate):
        envoy = tokens_gate(gate)
        headers = cookie(f"a=1; devgate_token={mint('alice')}; b=2") + cookie("z=9")
        echo = assert_developer(envoy.request("GET", PROTECTED, headers, source=OUTSIDER), "alice")
        assert echo.get_all("cookie") == ["a=1; b=2; z=9"], echo.headers
        assert "devgate_token" not in json.dumps(echo.headers)

    def test_devgate_cookie_alone_leaves_no_cookie_header(self, gate):
        envoy = tokens_gate(gate)
        echo = assert_developer(
            envoy.request("GET", PROTECTED, cookie(f"devgate_token={mint('alice')}"), source=OUTSIDER), "alice"
        )
        assert echo.get_all("cookie") == []

    def test_devgate_cookie_in_its_own_header_among_others(self, gate):
        envoy = tokens_gate(gate)
        headers = cookie("a=1") + cookie(f"devgate_token={mint('alice')}") + cookie("b=2; c=3")
        echo = assert_developer(envoy.request("GET", PROTECTED, headers, source=OUTSIDER), "alice")
        assert echo.get_all("cookie") == ["a=1; b=2; c=3"], echo.headers

    def test_applications_basic_auth_survives_next_to_the_cookie(self, gate):
        envoy = tokens_gate(gate)
        headers = [("Authorization", "Basic dXNlcjpwdw==")] + cookie(f"devgate_token={mint('alice')}")
        echo = assert_developer(envoy.request("GET", PROTECTED, headers, source=OUTSIDER), "alice")
        assert echo.get_all("authorization") == ["Basic dXNlcjpwdw=="]


def test_comma_hidden_devgate_cookie_never_reaches_the_upstream(gate):
    """Regression: `Cookie: a=1, devgate_token=T` hid devgate's cookie from devgate (it splits
    at `;` only) while an upstream that also splits at `,` read it. Not a credential, always removed,
    in every spelling an upstream may read as devgate's (case, percent-encoding, PHP's `.`)."""
    envoy = tokens_gate(gate)
    t = mint("alice")
    hidden = cookie(f"a=1, devgate_token={t}")
    assert_challenged(envoy.request("GET", PROTECTED, hidden, source=OUTSIDER), "no_credential")
    echo = assert_anonymous(envoy.request("GET", "/open", hidden, source=OUTSIDER))
    assert echo.get_all("cookie") == ["a=1"], echo.headers
    spellings = cookie(f"b=2,DEVGATE_TOKEN={t}; devgate%5Ftoken={t}; devgate.token={t}; c=3")
    echo = assert_developer(envoy.request("GET", "/open", spellings, source=DEV4), DEV4)
    assert echo.get_all("cookie") == ["b=2; c=3"], echo.headers
    assert t not in json.dumps(echo.headers)


@pytest.mark.parametrize("space", ["\x0c", "\x0b"])
def test_whitespace_hidden_devgate_cookie_never_reaches_the_upstream(gate, space):
    """Found by the cookie_header fuzz target: cookie names were trimmed of space and tab only, so a
    form feed or vertical tab before `devgate_token` would have kept the pair in the header going
    upstream, where a framework whose cookie pattern skips `\\s` (Werkzeug, Python's http.cookies)
    reads it. In Envoy 1.40 neither byte gets through: HTTP/1.1 answers 400 and HTTP/2 refuses the
    stream, before any filter. This pins that (devgate's own removal is unit-tested in
    src/core/cookie.rs), so an Envoy that starts forwarding them is noticed."""
    envoy = tokens_gate(gate)
    t = mint("alice")
    hidden = f"a=1; {space}devgate_token={t}; b=2"
    r = envoy.request("GET", "/open", cookie(hidden), source=OUTSIDER)
    assert r.status == 400 and not r.from_upstream, r.summary()
    port = envoy.port_for(OUTSIDER)
    plain, _ = harness.h2_request(port, "GET", "/open", [("cookie", "a=1")], source=OUTSIDER, validate=False)
    assert plain == 200, "this listener must speak HTTP/2 (prior knowledge) for the check below to mean anything"
    try:
        status, body = harness.h2_request(port, "GET", "/open", [("cookie", hidden)], source=OUTSIDER,
                                          validate=False)
    except harness.HarnessError:  # Envoy reset the stream or closed the connection: refused
        status, body = 0, b""
    assert status != 200 and harness.UPSTREAM_MARKER[0].encode() not in body, (status, body[:200])


# --------------------------------------------------------------------------------------------------
# refusals: 401 + challenge, the reason code in Envoy's response code details
# --------------------------------------------------------------------------------------------------

REFUSALS = {
    "expired": (lambda: bearer(mint(ttl=-3600)), "expired"),
    "expired-just-beyond-leeway": (lambda: bearer(mint(exp=now() - 40)), "expired"),
    "nbf-in-the-future": (lambda: bearer(mint(nbf=now() + 3600)), "not_yet_valid"),
    "iat-in-the-future": (lambda: bearer(mint(iat=now() + 3600)), "not_yet_valid"),
    "wrong-key-same-kid": (lambda: bearer(mint(secret=OTHER)), "bad_signature"),
    "unknown-kid": (lambda: bearer(mint(kid="k9")), "unknown_kid"),
    "missing-kid": (lambda: bearer(sign({"alg": "HS256", "typ": "JWT"}, claims_for())), "missing_kid"),
    "extra-header-member": (
        lambda: bearer(sign({"alg": "HS256", "jku": "https://evil/", "kid": "k1"}, claims_for())),
        "unsupported_header",
    ),
    "session-purpose-as-bearer": (lambda: bearer(mint(dgp="session", dgc="devgate_token")), "wrong_purpose"),
    "session-purpose-as-cookie": (
        lambda: cookie("devgate_token=" + mint(dgp="session", dgc="devgate_token")),
        "wrong_purpose",
    ),
    "unknown-purpose": (lambda: bearer(mint(dgp="api")), "wrong_purpose"),
    "tampered-payload": (lambda: bearer(tampered_payload()), "bad_signature"),
    "truncated-signature": (lambda: bearer(mint()[:-4]), "bad_signature"),
    "signature-dropped": (lambda: bearer(mint().rsplit(".", 1)[0] + "."), "malformed"),
    "alg-none-unsigned": (lambda: bearer(alg_none(False)), "malformed"),
    "alg-none-signed": (lambda: bearer(alg_none(True)), "unsupported_alg"),
    "alg-HS512": (
        lambda: bearer(sign({"alg": "HS512", "kid": "k1", "typ": "JWT"}, claims_for(), K1, hashlib.sha512)),
        "unsupported_alg",
    ),
    "oversized": (lambda: bearer(mint(pad="x" * 4000)), "too_long"),
    "garbage": (lambda: bearer("garbage"), "malformed"),
    "garbage-chars": (lambda: bearer("a.b.c!"), "malformed"),
    "bad-subject": (lambda: bearer(mint(" alice")), "bad_subject"),
    "garbage-cookie": (lambda: cookie("devgate_token=garbage"), "malformed"),
    "empty-cookie": (lambda: cookie("a=1; devgate_token=; b=2"), "malformed"),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_refused_token(gate, case):
    envoy = tokens_gate(gate)
    headers, code = REFUSALS[case]
    assert_challenged(envoy.request("GET", PROTECTED, headers(), source=OUTSIDER), code)


@pytest.mark.parametrize("value", ["Bearer ", "Bearer", "Bearer    ", "Bearer \t"])
def test_empty_bearer_is_refused(gate, value):
    """Envoy's HTTP/1 codec trims trailing whitespace from header values, so the filter sees
    `Bearer` without a token: not a Bearer credential at all, hence `no_credential`."""
    envoy = tokens_gate(gate)
    assert_challenged(envoy.request("GET", PROTECTED, [("Authorization", value)], source=OUTSIDER), "no_credential")


def test_no_credential(gate):
    envoy = tokens_gate(gate)
    assert_challenged(envoy.request("GET", PROTECTED, source=OUTSIDER), "no_credential")


# --------------------------------------------------------------------------------------------------
# ambiguity, foreign bearer tokens
# --------------------------------------------------------------------------------------------------


def test_bearer_and_cookie_at_once_is_ambiguous(gate):
    envoy = tokens_gate(gate)
    t = mint("alice")
    r = envoy.request("GET", PROTECTED, bearer(t) + cookie(f"devgate_token={t}"), source=OUTSIDER)
    assert_challenged(r, "ambiguous_credential")
    # Even when each alone is a valid token for a different developer.
    r = envoy.request("GET", PROTECTED, bearer(mint("a")) + cookie(f"devgate_token={mint('b')}"), source=OUTSIDER)
    assert_challenged(r, "ambiguous_credential")


@pytest.mark.parametrize(
    "headers",
    [
        lambda: cookie(f"devgate_token={mint('alice')}; devgate_token={mint('bob')}"),
        lambda: cookie(f"devgate_token={mint('alice')}") + cookie(f"devgate_token={mint('bob')}"),
        lambda: cookie(f"devgate_token={mint('alice')}; devgate_token=garbage"),
    ],
    ids=["one-header", "two-headers", "valid-and-garbage"],
)
def test_two_different_devgate_cookies_are_ambiguous(gate, headers):
    envoy = tokens_gate(gate)
    assert_challenged(envoy.request("GET", PROTECTED, headers(), source=OUTSIDER), "ambiguous_credential")


@pytest.mark.parametrize("first_is_bearer", [True, False], ids=["bearer-first", "basic-first"])
def test_two_authorization_headers_are_refused(gate, first_is_bearer):
    """Envoy's HTTP/1 codec joins repeated Authorization headers into one value with ","
    (`Bearer <token>,Basic eA==`), so the filter never sees two headers: it sees one value that is
    devgate reads every comma-separated element as a credential of its own: two credentials, one of
    them a bearer token, are ambiguous whichever comes first."""
    envoy = tokens_gate(gate)
    auth = bearer(mint("alice")) + [("Authorization", "Basic eA==")]
    r = envoy.request("GET", PROTECTED, auth if first_is_bearer else auth[::-1], source=OUTSIDER)
    assert_challenged(r, "ambiguous_credential")


@pytest.mark.parametrize("first_is_bearer", [True, False], ids=["bearer-first", "basic-first"])
def test_devgate_token_in_repeated_authorization_does_not_reach_upstream(gate, first_is_bearer):
    """Regression: Envoy merged two Authorization headers into one value, devgate did not see its
    token inside it, and the token reached the upstream on an open path."""
    envoy = tokens_gate(gate)
    tok = mint("alice")
    auth = bearer(tok) + [("Authorization", "Basic eA==")]
    r = envoy.request("GET", "/app", auth if first_is_bearer else auth[::-1], source=OUTSIDER)
    # Two credentials where devgate takes one are refused as ambiguous; on this open path that makes
    # the request anonymous: it goes on, without the token.
    assert r.status == 200 and r.from_upstream, r.summary()
    assert tok not in json.dumps(r.echo().headers), r.summary()
    assert r.echo().spellings(H) == [], r.summary()


@pytest.mark.parametrize(
    "token,forwarded",
    [
        ("abc.def", True),  # not a JWS at all: the application's
        ("abc.def.ghi", True),  # malformed for devgate: the application's
        ("UNKNOWN_KID", True),  # a kid devgate does not have: the application's
        ("EXPIRED", False),  # names devgate's key: devgate's credential, stripped even when refused
        ("WRONG_KEY", False),
    ],
)
def test_bearer_on_unprotected_path(gate, token, forwarded):
    """On an unprotected path a refused bearer token is simply anonymous. Only a token naming one of
    devgate's keys is devgate's (and stripped); any other Authorization reaches the upstream as is."""
    envoy = tokens_gate(gate)
    token = {"UNKNOWN_KID": mint(kid="app"), "EXPIRED": mint(ttl=-3600), "WRONG_KEY": mint(secret=OTHER)}.get(
        token, token
    )
    echo = assert_anonymous(envoy.request("GET", "/app", bearer(token), source=OUTSIDER))
    assert echo.get_all("authorization") == ([f"Bearer {token}"] if forwarded else [])


def test_foreign_bearer_on_protected_path_is_challenged(gate):
    envoy = tokens_gate(gate)
    assert_challenged(envoy.request("GET", PROTECTED, bearer("abc.def"), source=OUTSIDER), "malformed")


# --------------------------------------------------------------------------------------------------
# rotation, allow_from
# --------------------------------------------------------------------------------------------------


def test_rotation_both_keys_verify(gate):
    envoy = gate(ROTATING, env=ROTATING_ENV)
    assert_developer(envoy.request("GET", PROTECTED, bearer(mint("new", kid="k2", secret=K2)), source=OUTSIDER), "new")
    assert_developer(envoy.request("GET", PROTECTED, bearer(mint("old", kid="k1", secret=K1)), source=OUTSIDER), "old")
    # kid selects the key: a k1-signed token claiming k2 is not accepted
    assert_challenged(
        envoy.request("GET", PROTECTED, bearer(mint("x", kid="k2", secret=K1)), source=OUTSIDER), "bad_signature"
    )


def test_rotation_old_key_removed(gate):
    envoy = gate(ROTATED, env=ROTATED_ENV)
    assert_developer(envoy.request("GET", PROTECTED, bearer(mint("new", kid="k2", secret=K2)), source=OUTSIDER), "new")
    assert_challenged(
        envoy.request("GET", PROTECTED, bearer(mint("old", kid="k1", secret=K1)), source=OUTSIDER), "unknown_kid"
    )


class TestAllowFrom:
    """allow_from ["127.0.0.5/32"], secret inline."""

    def test_inside(self, gate):
        envoy = gate(ALLOW_FROM)
        assert_developer(envoy.request("GET", PROTECTED, bearer(mint("alice")), source=FIVE), "alice")
        assert_developer(
            envoy.request("GET", PROTECTED, cookie(f"devgate_token={mint('alice')}"), source=FIVE), "alice"
        )

    @pytest.mark.parametrize("source", [OUTSIDER, DEV6])
    def test_outside_is_403(self, gate, source):
        envoy = gate(ALLOW_FROM)
        assert_forbidden(envoy.request("GET", PROTECTED, bearer(mint("alice")), source=source), "network_denied")
        assert_forbidden(
            envoy.request("GET", PROTECTED, cookie(f"devgate_token={mint('alice')}"), source=source), "network_denied"
        )

    def test_outside_with_a_bad_token_is_still_401(self, gate):
        envoy = gate(ALLOW_FROM)
        assert_challenged(envoy.request("GET", PROTECTED, bearer(mint(ttl=-3600)), source=OUTSIDER), "expired")

    def test_network_developer_outside_allow_from_keeps_network_identity(self, gate):
        envoy = gate(ALLOW_FROM)
        assert_developer(envoy.request("GET", PROTECTED, bearer(mint("alice")), source=DEV4), DEV4)


# --------------------------------------------------------------------------------------------------
# interop: PyJWT and the devgate CLI
# --------------------------------------------------------------------------------------------------


def cli(*args, **kw):
    try:
        return harness.run_cli(*args, **kw)
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def keygen_file(tmp_path_factory):
    """A key made by `devgate keygen --out F`: (path, text)."""
    path = tmp_path_factory.mktemp("keys") / "kg.key"
    r = cli("keygen", "--out", str(path))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return path, path.read_text()


def test_keygen_writes_a_private_32_byte_key(keygen_file):
    path, text = keygen_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", text), repr(text)
    assert len(unb64u(text)) == 32
    r = cli("keygen", "--out", str(path))
    assert r.returncode == 3 and "exists" in r.stderr, (r.returncode, r.stderr)
    assert path.read_text() == text, "keygen overwrote an existing key"
    r = cli("keygen")
    assert r.returncode == 0 and re.fullmatch(r"[A-Za-z0-9_-]{43}\n", r.stdout) and r.stdout != text


def test_pyjwt_tokens_accepted_through_envoy(gate):
    envoy = tokens_gate(gate)
    t = now()
    claims = {"sub": "py-dev", "dgp": "developer", "exp": t + 600}
    tok = jwt.encode(claims, K1, algorithm="HS256", headers={"kid": "k1"})
    assert_developer(envoy.request("GET", PROTECTED, bearer(tok), source=OUTSIDER), "py-dev")
    # other tools' claims (iss, aud, ...) are ignored; nbf/iat honoured
    tok = jwt.encode(
        {"sub": "py dev 2", "dgp": "developer", "iss": "x", "aud": ["y"], "iat": t, "nbf": t, "exp": t + 60},
        K1, algorithm="HS256", headers={"kid": "k1"},
    )
    assert_developer(envoy.request("GET", PROTECTED, cookie(f"devgate_token={tok}"), source=OUTSIDER), "py dev 2")
    # PyJWT's expired and HS512 tokens are refused like ours
    tok = jwt.encode({"sub": "a", "dgp": "developer", "exp": t - 3600}, K1, algorithm="HS256", headers={"kid": "k1"})
    assert_challenged(envoy.request("GET", PROTECTED, bearer(tok), source=OUTSIDER), "expired")
    tok = jwt.encode({"sub": "a", "dgp": "developer", "exp": t + 60}, K1, algorithm="HS512", headers={"kid": "k1"})
    assert_challenged(envoy.request("GET", PROTECTED, bearer(tok), source=OUTSIDER), "unsupported_alg")


def test_cli_minted_token_verifies_in_pyjwt(keygen_file):
    path, text = keygen_file
    before = now()
    r = cli("mint", "--sub", "cli-dev", "--ttl", "1h", "--kid", "k1", "--key-file", str(path))
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stderr == "", "a 0600 key file must not draw a warning"
    tok = r.stdout.strip()
    assert r.stdout == tok + "\n"
    claims = jwt.decode(tok, unb64u(text), algorithms=["HS256"], options={"require": ["exp", "iat"]})
    assert claims["sub"] == "cli-dev" and claims["dgp"] == "developer"
    assert claims["exp"] - claims["iat"] == 3600
    assert before <= claims["iat"] <= now()
    assert set(claims) == {"sub", "dgp", "iat", "exp"}
    assert jwt.get_unverified_header(tok) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tok, K1, algorithms=["HS256"])


def test_cli_mint_matches_pyjwt_byte_for_byte(keygen_file):
    path, text = keygen_file
    r = cli("mint", "--sub", "alice", "--ttl", "8h", "--kid", "k1", "--key-file", str(path), "--now", "1700000000")
    assert r.returncode == 0, r.stderr
    theirs = jwt.encode({"sub": "alice", "dgp": "developer", "iat": 1700000000, "exp": 1700028800}, unb64u(text),
                        algorithm="HS256", headers={"kid": "k1"})
    assert r.stdout.strip() == theirs


def test_cli_minted_token_through_envoy(gate, keygen_file):
    """keygen -> the VM's environment (secret_env) -> Envoy; mint with the same file -> accepted."""
    path, text = keygen_file
    config = token_config([{"id": "kg", "secret_env": "DEVGATE_E2E_KEYGEN"}])
    envoy = gate(config, env={"DEVGATE_E2E_KEYGEN": text.strip()})
    r = cli("mint", "--sub", "cli-dev", "--ttl", "10m", "--kid", "kg", "--key-file", str(path))
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    echo = assert_developer(envoy.request("GET", PROTECTED, bearer(tok), source=OUTSIDER), "cli-dev")
    assert echo.get_all("authorization") == []
    r = cli("mint", "--sub", "sess", "--ttl", "10m", "--kid", "kg", "--key-file", str(path),
            "--purpose", "session", "--cookie", "devgate_token")
    assert r.returncode == 0, r.stderr
    r = envoy.request("GET", PROTECTED, cookie("devgate_token=" + r.stdout.strip()), source=OUTSIDER)
    assert_challenged(r, "wrong_purpose")


def test_cli_verify_accepts_pyjwt_token(tmp_path):
    key = tmp_path / "k1.key"
    key.write_text(b64u(K1) + "\n")
    key.chmod(0o600)
    t = now()
    tok = jwt.encode({"sub": "py-dev", "dgp": "developer", "iat": t, "exp": t + 600}, K1, algorithm="HS256",
                     headers={"kid": "k1"})
    r = cli("verify", tok, "--key-file", str(key), "--kid", "k1")
    assert r.returncode == 0, (r.stdout, r.stderr)
    claims = json.loads(r.stdout)
    assert claims["sub"] == "py-dev" and claims["exp"] == t + 600
    r = cli("verify", "-", "--key-file", str(key), stdin=tok + "\n")
    assert r.returncode == 0 and json.loads(r.stdout)["sub"] == "py-dev", (r.stdout, r.stderr)
    for bad, code in [(tampered_payload(), "bad_signature"), (mint(ttl=-3600), "expired"), ("x", "malformed")]:
        r = cli("verify", bad, "--key-file", str(key))
        assert (r.returncode, r.stdout.strip()) == (1, f"invalid: {code}"), (r.stdout, r.stderr)


# --------------------------------------------------------------------------------------------------
# devgate check-config
# --------------------------------------------------------------------------------------------------


def write_json(path, obj) -> str:
    path.write_text(json.dumps(obj, indent=2))
    return str(path)


@pytest.mark.parametrize(
    "config,env",
    [(TOKENS, TOKENS_ENV), (ALLOW_FROM, {}), (ROTATING, ROTATING_ENV), (BASE, {})],
    ids=["secret_env", "inline", "rotating", "no-tokens"],
)
def test_check_config_good(tmp_path, config, env):
    r = cli("check-config", write_json(tmp_path / "devgate.json", config), env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")


SHORT_SECRET = b64u(b"sixteen byte sec")
BAD_CONFIGS = {
    "leeway": (token_config([KEY1], leeway_seconds=301), TOKENS_ENV, "tokens.leeway_seconds"),
    "secret_env-unset": (TOKENS, {}, "keys[0].secret_env"),
    "secret_env-short": (TOKENS, {ENV_K1: SHORT_SECRET}, "keys[0].secret_env"),
    "inline-short": (token_config([{"id": "k1", "secret": SHORT_SECRET}]), {}, "keys[0].secret"),
    "second-key-unset": (ROTATING, {ENV_K2: b64u(K2)}, "keys[1].secret_env"),
    "tokens-without-keys": ({**BASE, "tokens": {}}, {}, "keys"),
    "allow_from": (token_config([KEY1], allow_from=["127.0.0.5/8"]), TOKENS_ENV, "tokens.allow_from[0]"),
    "typo": (token_config([KEY1], cokie="x"), TOKENS_ENV, "tokens.cokie"),
    "duplicate-kid": (token_config([KEY1, KEY1]), TOKENS_ENV, "keys[1].id"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
def test_check_config_bad(tmp_path, case):
    config, env, field = BAD_CONFIGS[case]
    r = cli("check-config", write_json(tmp_path / "devgate.json", config), env=env)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert f"`{field}`" in r.stderr, r.stderr
    assert "ok" not in r.stdout
    assert SHORT_SECRET not in r.stderr + r.stdout, "a secret was echoed"


def test_check_config_usage_and_io_errors(tmp_path):
    r = cli("check-config")
    assert r.returncode == 2, (r.returncode, r.stderr)
    r = cli("check-config", str(tmp_path / "missing.json"))
    assert r.returncode == 3, (r.returncode, r.stderr)
    r = cli("check-config", "--help")
    assert r.returncode == 0 and "check-config" in r.stdout


def test_check_config_on_envoy_yaml_agrees_with_envoy(tmp_path, upstream, wasm):
    """The same Envoy YAML: check-config says ok and Envoy runs it (tokens work); without the VM's
    environment variable check-config names the field and Envoy refuses the filter."""
    good = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=TOKENS, env=TOKENS_ENV, wasm=wasm)
    # Native: the key is in Envoy's process environment, not in the YAML; check-config then reads
    # the native module's keys from its own environment, so both get the same variables.
    process_env = good.pop(harness.PROCESS_ENV_KEY, None)
    good_yaml = harness.to_yaml(good)
    (tmp_path / "good.yaml").write_text(good_yaml)
    r = cli("check-config", str(tmp_path / "good.yaml"), env=process_env)
    assert r.returncode == 0 and r.stderr == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ok") and "devgate" in lines[0], r.stdout
    envoy = harness.start_envoy(good_yaml, tmp_path / "envoy-good", env=process_env)
    try:
        assert_developer(envoy.request("GET", PROTECTED, bearer(mint("yaml")), source=OUTSIDER), "yaml")
    finally:
        envoy.stop()

    bad = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=TOKENS, env={"UNRELATED": "x"}, wasm=wasm)
    process_env = bad.pop(harness.PROCESS_ENV_KEY, None)
    bad_yaml = harness.to_yaml(bad)
    (tmp_path / "bad.yaml").write_text(bad_yaml)
    r = cli("check-config", str(tmp_path / "bad.yaml"), env=process_env)
    assert r.returncode == 1 and "`keys[0].secret_env`" in r.stderr and "devgate" in r.stderr, (r.stdout, r.stderr)
    result, envoy = harness.try_envoy(bad_yaml, tmp_path / "envoy-bad", timeout=15, env=process_env)
    if result.ready:
        envoy.stop()
    assert not result.ready, "Envoy accepted a devgate config whose secret_env variable is not set"
    assert "keys[0].secret_env" in result.log


# --------------------------------------------------------------------------------------------------
# config reload through a filesystem LDS, under load
# --------------------------------------------------------------------------------------------------


class Traffic:
    """Client loops from 127.0.0.77: one keep-alive connection (http.client, reconnecting only when
    Envoy says `Connection: close`) and one new connection per request. Any exception, or any
    status other than 200/401, is recorded."""

    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list = []  # (loop, token name, status, details)
        self.errors: list = []
        self.keepalive_conns: set = set()
        self.tokens = {"k1": lambda: mint("one", kid="k1", secret=K1), "k2": lambda: mint("two", kid="k2", secret=K2)}
        self.threads = [threading.Thread(target=self._keepalive, daemon=True),
                        threading.Thread(target=self._fresh, daemon=True)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def _record(self, loop, name, status, details):
        with self.lock:
            self.results.append((loop, name, status, details))

    def _keepalive(self):
        conn = None
        i = 0
        while not self.stop.is_set():
            name = ("k1", "k2", None)[i % 3]
            i += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5, source_address=(OUTSIDER, 0))
                    conn.connect()
                    with self.lock:
                        self.keepalive_conns.add(conn.sock.getsockname())
                headers = {"Authorization": f"Bearer {self.tokens[name]()}"} if name else {}
                conn.request("GET", PROTECTED if name else "/", headers=headers)
                resp = conn.getresponse()
                resp.read()
                self._record("keepalive", name, resp.status, resp.getheader(harness.DETAILS_HEADER))
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every error is a finding
                with self.lock:
                    self.errors.append(("keepalive", name, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _fresh(self):
        i = 0
        while not self.stop.is_set():
            name = ("k1", "k2")[i % 2]
            i += 1
            try:
                r = harness.request("GET", PROTECTED, bearer(self.tokens[name]()), source=OUTSIDER, port=self.port,
                                    timeout=5)
                self._record("fresh", name, r.status, r.details)
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    self.errors.append(("fresh", name, repr(e)))


def _stats(envoy: harness.Envoy, prefix: str) -> dict:
    _, text = envoy.admin(f"/stats?filter=^{prefix}")
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(": ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def test_config_reload_without_restart_or_dropped_requests(tmp_path, upstream, wasm):
    """A key swap (k1 -> k2) by a listener update, under load: no restart, no dropped request.

    Wasm: the update carries the VM's new environment (k2's variable). Native: the module reads
    `secret_env` from Envoy's process environment, fixed when Envoy starts, so the operator's way is
    to start Envoy with both variables and let the update switch which one the config names."""
    t_start = time.monotonic()
    lds = tmp_path / "lds.json"
    start_env = {**TOKENS_ENV, **ROTATED_ENV} if harness.NATIVE else TOKENS_ENV
    boot, listener = harness.render_lds_bootstrap(
        lds, upstream_port=upstream.port, plugin_config=TOKENS, env=start_env, wasm=wasm, listen=[(DEV4, 0)]
    )
    swapped = harness.set_plugin_config(listener, ROTATED, env=None if harness.NATIVE else ROTATED_ENV)
    harness.write_lds(lds, listener, version="k1")
    envoy = harness.start_envoy(boot, tmp_path / "envoy")
    try:
        pid, port = envoy.proc.pid, envoy.ports["v4"]
        uptime0 = _stats(envoy, "server.uptime").get("server.uptime", 0)

        def probe(name: str) -> Response:
            tok = mint("one", kid="k1", secret=K1) if name == "k1" else mint("two", kid="k2", secret=K2)
            return envoy.request("GET", PROTECTED, bearer(tok), source=OUTSIDER)

        assert_developer(probe("k1"), "one")
        assert_challenged(probe("k2"), "unknown_kid")

        with Traffic(port) as traffic:
            time.sleep(1.0)
            harness.write_lds(lds, swapped, version="k2")
            t_swap = time.monotonic()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                if probe("k2").status == 200:
                    break
                time.sleep(0.05)
            time.sleep(1.0)  # keep the loops going after the switch

        switched_after = time.monotonic() - t_swap
        assert time.monotonic() - t_start < 15, "the reload test must stay bounded"
        # After the swap: k2 works, k1 is gone (new connections).
        assert_developer(probe("k2"), "two")
        assert_challenged(probe("k1"), "unknown_kid")

        assert traffic.errors == [], f"{len(traffic.errors)} client errors, e.g. {traffic.errors[:5]}"
        statuses = {s for _, _, s, _ in traffic.results}
        assert statuses <= {200, 401}, sorted(statuses)
        by_loop = {loop: [r for r in traffic.results if r[0] == loop] for loop in ("keepalive", "fresh")}
        assert len(by_loop["keepalive"]) >= 20 and len(by_loop["fresh"]) >= 20, {k: len(v) for k, v in by_loop.items()}
        assert len(traffic.keepalive_conns) < len(by_loop["keepalive"]) / 5, "the keep-alive loop did not reuse"
        fresh = by_loop["fresh"]
        # new connections saw the switch: k1 200 -> 401 unknown_kid, k2 401 unknown_kid -> 200
        assert ("fresh", "k1", 200, None) in fresh and ("fresh", "k2", 200, None) in fresh
        assert ("fresh", "k1", 401, "devgate_unknown_kid") in fresh
        assert ("fresh", "k2", 401, "devgate_unknown_kid") in fresh
        for loop, name, status, details in traffic.results:
            if status == 401:
                assert details == "devgate_unknown_kid", (loop, name, status, details)

        # Same process, same socket, never restarted; the listener was updated in place.
        assert envoy.alive() and envoy.proc.pid == pid
        assert envoy.port_for(OUTSIDER) == port and harness._listener_ports(
            json.loads(envoy.admin("/listeners?format=json")[1])) == [(DEV4, port)]
        stats = _stats(envoy, "(server\\.|listener_manager\\.)")
        ka = by_loop["keepalive"]
        print(
            f"reload: {len(traffic.results)} requests ({len(ka)} keep-alive on {len(traffic.keepalive_conns)} "
            f"connections, {len(fresh)} on new connections), statuses {sorted(statuses)}; new connections "
            f"switched ~{switched_after:.2f}s after the rename; keep-alive k1 after the swap: "
            f"{sorted({s for (_, n, s, _) in ka[-30:] if n == 'k1'})}; "
            + ", ".join(f"{k}={v}" for k, v in sorted(stats.items()) if "listener" in k and v)
        )
        assert stats["server.uptime"] >= uptime0, stats
        assert stats.get("server.hot_restart_epoch", 0) == 0, stats
        assert stats["listener_manager.lds.update_success"] >= 2, stats
        assert stats["listener_manager.lds.update_rejected"] == 0, stats
        assert stats["listener_manager.listener_modified"] >= 1, stats
        assert stats["listener_manager.listener_in_place_updated"] >= 1, "expected an in-place filter chain update"
        assert envoy.devgate_problems() == []
    finally:
        envoy.stop()

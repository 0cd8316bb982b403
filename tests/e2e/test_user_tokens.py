"""User tokens on API routes (docs/key-service.md, "User tokens") end to end, on both hosts
(DEVGATE_HOST): access tokens the authentication service issues to the application's users, minted
here with PyJWT (HS256, `kid`), sent as `Authorization: Bearer` on routes with `user_tokens`, and
checked by devgate in the real Envoy: the member/owner/staff/superuser matrix, the organization in
the path, encoded path tricks, the browser origin, a tombstoned token (the revocation list's
`tokens`), an expired token and a forged one. What reached the upstream is read from the demo
upstream's echo.
"""

from __future__ import annotations

import base64
import hashlib
import time

import jwt
import pytest

import harness
from test_revocation import RevocationService, wait_for

OUTSIDER = "127.0.0.77"

ORG = "x-devgate-organization"
PROJECT = "x-devgate-project"
KIND = "x-devgate-key-kind"
USER = "x-devgate-user"
COUNT = "x-devgate-count"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


KEYS_SECRET = hashlib.sha256(b"devgate e2e user tokens k1").digest()
USER_SECRET = hashlib.sha256(b"devgate e2e user tokens u1").digest()
FORGED_SECRET = hashlib.sha256(b"devgate e2e user tokens: someone else").digest()
ENV = {"DEVGATE_E2E_UT_K1": b64u(KEYS_SECRET), "DEVGATE_E2E_UT_U1": b64u(USER_SECRET)}
CONSOLE = "https://console.example.com"

ROUTES = [
    {"prefix": "/v1/organizations/", "product": "console",
     "user_tokens": {"require": "member", "origins": [CONSOLE],
                     "path": "/v1/organizations/{organization}/projects/{project}/"}},
    {"prefix": "/v1/owners/", "product": "console",
     "user_tokens": {"require": "owner", "path": "/v1/owners/{organization}/"}},
    {"prefix": "/v1/staff/", "product": "console", "user_tokens": {"require": "staff"}},
    {"prefix": "/v1/root/", "product": "console", "user_tokens": {"require": "superuser"}},
    {"prefix": "/v1/either/", "product": "console", "user_tokens": {"require": "staff_or_superuser"}},
]


def config(**extra) -> dict:
    return {
        "network": {"allow": ["127.0.0.1/32"]},
        "protect": ["/_debug/"],
        "keys": [{"id": "k1", "secret_env": "DEVGATE_E2E_UT_K1"}],
        "tokens": {},
        "api": {"routes": ROUTES,
                "user_tokens": {"keys": [{"id": "u1", "secret_env": "DEVGATE_E2E_UT_U1"}]}},
        **extra,
    }


def mint(*, secret: bytes = USER_SECRET, kid: str = "u1", **claims) -> str:
    now = int(time.time())
    body = {"sub": "user-1", "iat": now - 5, "exp": now + 600, "jti": "ut-1",
            "organizations": ["org1", "org2"], "owned_organizations": ["org2"],
            "is_staff": False, "is_superuser": False}
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256", headers={"kid": kid})


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


MEMBER = mint()
STAFF = mint(is_staff=True)
ROOT = mint(is_superuser=True)
OUTSIDER_USER = mint(organizations=["org9"], owned_organizations=[])
PROJECT_PATH = "/v1/organizations/org1/projects/p1/items"


@pytest.fixture(scope="module")
def envoy(gate) -> harness.Envoy:
    return gate(config(), env=ENV)


def outcome(envoy, path: str, token: str, extra=()) -> tuple[int, str | None]:
    r = envoy.request("GET", path, bearer(token) + list(extra), source=OUTSIDER)
    if r.status == 200:
        assert r.from_upstream, r.summary()
        return 200, None
    return r.status, r.details


def test_a_member_reaches_the_upstream_with_the_path_parameters_and_the_user(envoy):
    forged_headers = [(USER, "admin"), (ORG, "org9")]
    r = envoy.request("GET", PROJECT_PATH, bearer(MEMBER) + forged_headers, source=OUTSIDER)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    for name, value in {ORG: "org1", PROJECT: "p1", KIND: "user_token", USER: "user-1", COUNT: "true"}.items():
        assert echo.spellings(name) == [(name, value)], (name, echo.spellings(name))


@pytest.mark.parametrize(
    "path,token,want",
    [
        (PROJECT_PATH, MEMBER, (200, None)),
        ("/v1/organizations/org9/projects/p1/", MEMBER, (403, "devgate_not_a_member")),
        (PROJECT_PATH, OUTSIDER_USER, (403, "devgate_not_a_member")),
        ("/v1/owners/org2/x", MEMBER, (200, None)),
        ("/v1/owners/org1/x", MEMBER, (403, "devgate_not_an_owner")),
        ("/v1/staff/x", STAFF, (200, None)),
        ("/v1/staff/x", MEMBER, (403, "devgate_not_staff")),
        ("/v1/staff/x", ROOT, (403, "devgate_not_staff")),
        ("/v1/root/x", ROOT, (200, None)),
        ("/v1/root/x", STAFF, (403, "devgate_not_staff")),
        ("/v1/either/x", STAFF, (200, None)),
        ("/v1/either/x", ROOT, (200, None)),
        ("/v1/either/x", MEMBER, (403, "devgate_not_staff")),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None,
)
def test_the_requirement_matrix(envoy, path, token, want):
    assert outcome(envoy, path, token) == want


@pytest.mark.parametrize(
    "path",
    [
        "/v1/organizations/org1%2Fprojects/p1/",
        "/v1/organizations/%6frg1/projects/p1/",
        "/v1/organizations/org1/projects/%2e%2e/p1/",
        "/v1/organizations/org9/../org1/projects/p1/",
        "/v1/organizations/org1/projects/%252e%252e/",
        "/v1/organizations/org1;x=1/projects/p1/",
        "/v1/organizations/org1/projects/",
    ],
)
def test_encoded_path_tricks_are_refused(envoy, path):
    """Refused 400 (by devgate: `bad_path`, or by Envoy first); or, where the listener's own path
    normalisation (the shipped HCM merges slashes and decodes unreserved escapes) already made
    the path plain, admitted with the parameters the upstream's path really names."""
    r = envoy.request("GET", path, bearer(MEMBER), source=OUTSIDER)
    if r.status == 200:
        echo = r.echo()
        seen = echo.path.split("?")[0]
        assert "%" not in seen and "/../" not in seen and "/./" not in seen, seen
        parts = seen.split("/")
        assert echo.spellings(ORG) == [(ORG, parts[3])], (seen, echo.spellings(ORG))
        assert echo.spellings(PROJECT) == [(PROJECT, parts[5])], (seen, echo.spellings(PROJECT))
        return
    assert r.status == 400 and not r.from_upstream, r.summary()
    assert r.details is None or not r.details.startswith("devgate_") or r.details == "devgate_bad_path", r.details


def test_origins_allowed_refused_and_absent(envoy):
    assert outcome(envoy, PROJECT_PATH, MEMBER, [("Origin", CONSOLE)]) == (200, None)
    assert outcome(envoy, PROJECT_PATH, MEMBER, [("Origin", "https://evil.example.com")]) == (
        403, "devgate_origin_denied")
    assert outcome(envoy, PROJECT_PATH, MEMBER) == (200, None)


def test_expired_and_forged_tokens_are_refused(envoy):
    now = int(time.time())
    assert outcome(envoy, PROJECT_PATH, mint(exp=now - 120)) == (401, "devgate_expired")
    assert outcome(envoy, PROJECT_PATH, mint(secret=FORGED_SECRET)) == (401, "devgate_bad_signature")
    assert outcome(envoy, PROJECT_PATH, mint(kid="u9")) == (401, "devgate_unknown_kid")


def test_a_tombstoned_user_token_is_refused(tmp_path, upstream, wasm):
    service = RevocationService()
    service.body = b'{"tokens": ["ut-revoked"], "keys": []}'
    cfg = config(revocation={"cluster": "revocation", "refresh_seconds": 1, "timeout_ms": 500,
                             "max_stale_seconds": 30, "when_stale": "refuse"})
    boot = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=cfg, env=ENV, wasm=wasm)
    boot["static_resources"]["clusters"].append({
        "name": "revocation",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": "revocation", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": service.port}}}}]}]},
    })
    envoy = harness.start_envoy(boot, tmp_path, log_level="info")
    revoked = mint(jti="ut-revoked")
    try:
        wait_for(lambda: outcome(envoy, PROJECT_PATH, revoked) == (401, "devgate_revoked"), "the list")
        assert outcome(envoy, PROJECT_PATH, MEMBER) == (200, None)
    finally:
        envoy.stop()
        service.stop()

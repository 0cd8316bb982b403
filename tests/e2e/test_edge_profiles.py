"""The edge providers devgate knows (issue #23, `edge.assertions[].profile`) in the real Envoy, on
both hosts: each profile's header, algorithm, issuer, audience and quirks, with tokens shaped as
the provider documents them and signed with PyJWT (the padded AWS ALB token with `cryptography`).

  google_iap         `x-goog-iap-jwt-assertion`, ES256, issuer https://cloud.google.com/iap,
                     audience `/projects/NUM/global/backendServices/ID` or `/projects/NUM/apps/ID`;
                     the unsigned `x-goog-authenticated-user-*` headers stripped, never believed
  cloudflare_access  `Cf-Access-Jwt-Assertion`, RS256, the current and the previous key in the
                     set (inline, and fetched from `/cdn-cgi/access/certs`), the AUD tag
  pomerium           `X-Pomerium-Jwt-Assertion`, ES256, issuer and audience the route's host,
                     keys inline and at `/.well-known/pomerium/jwks.json`; `X-Pomerium-Claim-*`
                     stripped, never believed
  aws_alb            `x-amzn-oidc-data`, ES256, one PEM per kid at `<path><kid>` (the key server),
                     the signed header's `signer` and `client`, base64url with padding
  oidc               an ID token as `Authorization: Bearer`, beside devgate's own HS256 tokens
"""

from __future__ import annotations

import time

import pytest

import harness
from harness import IDENTITY_HEADER as H
from jwks_server import KeyServer, SigningKey, needs_padding, padded
from test_edge_assertions import (
    OPEN,
    OUTSIDER,
    admitted,
    bearer,
    counter,
    denied,
    edge_config,
    start_edge,
)
from test_tokens import TOKENS_ENV, KEY1, mint

ALICE = "alice@example.com"
MALLORY = "mallory@evil.example"
DEVELOPERS = {"domains": ["example.com"]}


@pytest.fixture(scope="module")
def gates(tmp_path_factory, upstream, envoy_bin):
    """gates(name, cfg, clusters=(), env=None) -> an Envoy per name, started once per module."""
    running: dict[str, harness.Envoy] = {}

    def get(name: str, cfg: dict, clusters=(), env=None) -> harness.Envoy:
        if name not in running:
            running[name] = start_edge(tmp_path_factory, upstream, cfg, clusters=clusters, env=env)
        return running[name]

    yield get
    for envoy in running.values():
        problems = envoy.devgate_problems()
        envoy.stop()
        assert not problems


def now() -> int:
    return int(time.time())


def stripped(echo: harness.Echo, prefix: str) -> None:
    """No header whose name (any case, `_` as `-`) starts with `prefix` reached the upstream."""
    seen = [(k, v) for k, v in echo.headers if k.lower().replace("_", "-").startswith(prefix)]
    assert seen == [], seen


# --------------------------------------------------------------------------------------------------
# Google IAP
# --------------------------------------------------------------------------------------------------

IAP_ISSUER = "https://cloud.google.com/iap"
IAP_BACKEND = "/projects/123456789012/global/backendServices/4567890123456789012"
IAP_APP = "/projects/123456789012/apps/e2e-project"
IAP_KEY = SigningKey("ES256", "iap-es256")
IAP_RSA = SigningKey("RS256", "iap-rs256")  # in the set, but not the profile's algorithm
IAP_UNSIGNED = [("X-Goog-Authenticated-User-Email", f"accounts.google.com:{MALLORY}"),
                ("x-goog-authenticated-user-id", "accounts.google.com:666"),
                ("X_Goog_Authenticated_User_Email", f"accounts.google.com:{ALICE}")]


def iap_token(aud: str = IAP_BACKEND, key: SigningKey = IAP_KEY, **extra) -> str:
    t = now()
    body = {"iss": IAP_ISSUER, "aud": aud, "sub": "accounts.google.com:1234567890", "email": ALICE,
            "hd": "example.com", "iat": t, "exp": t + 600, **extra}
    return key.sign({k: v for k, v in body.items() if v is not None})


@pytest.fixture(scope="module")
def iap(gates):
    src = {"name": "iap", "profile": "google_iap", "audiences": [IAP_BACKEND, IAP_APP],
           "keys": {"jwks": {"keys": [IAP_KEY.jwk(), IAP_RSA.jwk()]}}, "developers": DEVELOPERS}
    return gates("iap", edge_config(src))


def assertion(value: str) -> list:
    return [("x-goog-iap-jwt-assertion", value)]


@pytest.mark.parametrize("aud", [IAP_BACKEND, IAP_APP], ids=["backend-service", "app-engine"])
def test_iap_both_audience_formats_and_the_unsigned_headers_stripped(iap, aud):
    before = counter(iap, "allowed.assertion")
    echo = admitted(iap, IAP_UNSIGNED + assertion(iap_token(aud)), ALICE)
    stripped(echo, "x-goog-authenticated-user-")
    assert counter(iap, "allowed.assertion") == before + 1


@pytest.mark.parametrize("make,code", [
    (lambda: iap_token("/projects/123456789012/global/backendServices/1111"), "wrong_audience"),
    (lambda: iap_token("/projects/999/apps/e2e-project"), "wrong_audience"),
    (lambda: iap_token(iss="https://accounts.google.com"), "wrong_issuer"),
    (lambda: iap_token(key=IAP_RSA), "unsupported_alg"),
    (lambda: iap_token(email=MALLORY), "not_a_developer"),
    (lambda: iap_token(exp=now() - 3600), "expired"),
], ids=["other-backend", "other-project", "other-issuer", "rs256", "not-a-developer", "expired"])
def test_iap_refusals(iap, make, code):
    denied(iap, assertion(make()), code)


def test_iap_unsigned_headers_alone_are_never_believed(iap):
    denied(iap, IAP_UNSIGNED, "no_credential")
    r = iap.request("GET", OPEN, IAP_UNSIGNED, source=OUTSIDER)
    assert r.status == 200, r.summary()
    echo = r.echo()
    assert echo.spellings(H) == []
    stripped(echo, "x-goog-authenticated-user-")


def test_iap_assertion_in_another_header_is_not_read(iap):
    denied(iap, bearer(iap_token()), "no_credential")


# --------------------------------------------------------------------------------------------------
# Cloudflare Access
# --------------------------------------------------------------------------------------------------

CF_ISSUER = "https://e2e-team.cloudflareaccess.com"
CF_AUD = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"
CF_CURRENT, CF_PREVIOUS = SigningKey("RS256", "cf-current"), SigningKey("RS256", "cf-previous")
CF_RETIRED = SigningKey("RS256", "cf-retired")


@pytest.fixture(scope="module")
def cf_server():
    server = KeyServer([CF_CURRENT, CF_PREVIOUS], jwks_path="/cdn-cgi/access/certs")
    server.extra_members = {"public_certs": []}  # Cloudflare's certs answer carries more than `keys`
    yield server
    if server.server is not None:
        server.stop()


@pytest.fixture(scope="module", params=["inline", "fetched"])
def cloudflare(request, gates, cf_server):
    if request.param == "inline":
        keys, clusters = {"jwks": {"keys": [CF_CURRENT.jwk(), CF_PREVIOUS.jwk()]}}, []
    else:
        keys = {"jwks_url": {"cluster": "cf_keys", "authority": "e2e-team.cloudflareaccess.com",
                             "path": "/cdn-cgi/access/certs", "timeout_ms": 1000}}
        clusters = [harness.static_cluster("cf_keys", cf_server.port)]
    src = {"name": "cloudflare", "profile": "cloudflare_access", "issuer": CF_ISSUER, "audiences": [CF_AUD],
           "keys": keys, "developers": DEVELOPERS}
    return gates(f"cloudflare-{request.param}", edge_config(src), clusters)


def cf_token(key: SigningKey = CF_CURRENT, aud=(CF_AUD,), alg: str | None = None, **extra) -> str:
    t = now()
    body = {"aud": list(aud), "email": ALICE, "exp": t + 600, "iat": t, "nbf": t, "iss": CF_ISSUER,
            "type": "app", "identity_nonce": "6ei69kawdKzMIAPF", "sub": "7335d417-61da-459d-899c-0a01c76a2f94",
            "country": "US", **extra}
    return key.sign({k: v for k, v in body.items() if v is not None}, alg=alg)


def cf(value: str) -> list:
    return [("Cf-Access-Jwt-Assertion", value)]


def test_cloudflare_current_and_previous_keys(cloudflare, cf_server):
    unsigned = [("Cf-Access-Authenticated-User-Email", MALLORY)]
    echo = admitted(cloudflare, unsigned + cf(cf_token(CF_CURRENT)), ALICE)
    stripped(echo, "cf-access-authenticated-user-email")
    admitted(cloudflare, cf(cf_token(CF_PREVIOUS)), ALICE)
    if cloudflare.config["static_resources"]["clusters"][1:]:
        assert cf_server.paths["/cdn-cgi/access/certs"] >= 1
        assert cf_server.headers[0].get("host") == "e2e-team.cloudflareaccess.com"


@pytest.mark.parametrize("make,code", [
    (lambda: cf_token(aud=["0" * 64]), "wrong_audience"),
    (lambda: cf_token(iss="https://other-team.cloudflareaccess.com"), "wrong_issuer"),
    (lambda: cf_token(CF_RETIRED), "unknown_kid"),
    (lambda: cf_token(alg="PS256"), "unsupported_alg"),
    (lambda: cf_token(email=MALLORY), "not_a_developer"),
    (lambda: cf_token(nbf=now() + 3600), "not_yet_valid"),
], ids=["other-aud-tag", "other-team", "retired-key", "ps256", "not-a-developer", "not-yet-valid"])
def test_cloudflare_refusals(cloudflare, make, code):
    denied(cloudflare, cf(make()), code)


# --------------------------------------------------------------------------------------------------
# Pomerium
# --------------------------------------------------------------------------------------------------

POMERIUM_HOST = "app.e2e.example"
POMERIUM_KEY = SigningKey("ES256", "pomerium-es256")
POMERIUM_UNSIGNED = [("X-Pomerium-Claim-Email", ALICE), ("x-pomerium-claim-groups", "admins"),
                     ("X_Pomerium_Claim_User", "root")]


@pytest.fixture(scope="module")
def pomerium_server():
    server = KeyServer([POMERIUM_KEY], jwks_path="/.well-known/pomerium/jwks.json")
    yield server
    if server.server is not None:
        server.stop()


@pytest.fixture(scope="module", params=["inline", "fetched"])
def pomerium(request, gates, pomerium_server):
    if request.param == "inline":
        keys, clusters = {"jwks": {"keys": [POMERIUM_KEY.jwk()]}}, []
    else:
        keys = {"jwks_url": {"cluster": "pomerium", "authority": "authenticate.e2e.example",
                             "path": "/.well-known/pomerium/jwks.json", "timeout_ms": 1000}}
        clusters = [harness.static_cluster("pomerium", pomerium_server.port)]
    src = {"name": "pomerium", "profile": "pomerium", "issuer": POMERIUM_HOST, "audiences": [POMERIUM_HOST],
           "keys": keys, "developers": {"groups": ["devs"]}}
    return gates(f"pomerium-{request.param}", edge_config(src), clusters)


def pomerium_token(email: str = ALICE, **extra) -> str:
    t = now()
    body = {"iss": POMERIUM_HOST, "aud": POMERIUM_HOST, "sub": "pomerium-user-1", "user": "pomerium-user-1",
            "email": email, "groups": ["devs", "everyone"], "iat": t, "exp": t + 300,
            "jti": "0b2e4d4a-6f9e-4b1f-b4c3-1d2e3f4a5b6c", **extra}
    return POMERIUM_KEY.sign({k: v for k, v in body.items() if v is not None})


def pom(value: str) -> list:
    return [("Host", POMERIUM_HOST), ("X-Pomerium-Jwt-Assertion", value)]


def test_pomerium_route_host_as_issuer_and_audience_and_claim_headers_stripped(pomerium):
    echo = admitted(pomerium, POMERIUM_UNSIGNED + pom(pomerium_token()), ALICE)
    stripped(echo, "x-pomerium-claim-")


@pytest.mark.parametrize("make,code", [
    (lambda: pomerium_token(aud="other.e2e.example"), "wrong_audience"),
    (lambda: pomerium_token(iss="other.e2e.example"), "wrong_issuer"),
    (lambda: pomerium_token(groups=["everyone"]), "not_a_developer"),
    (lambda: pomerium_token(groups="devs"), "bad_claim"),
], ids=["another-route", "another-issuer", "not-in-the-group", "groups-a-string"])
def test_pomerium_refusals(pomerium, make, code):
    denied(pomerium, pom(make()), code)


def test_pomerium_claim_headers_alone_are_never_believed(pomerium):
    denied(pomerium, [("Host", POMERIUM_HOST)] + POMERIUM_UNSIGNED, "no_credential")
    r = pomerium.request("GET", OPEN, POMERIUM_UNSIGNED, source=OUTSIDER)
    assert r.status == 200, r.summary()
    assert r.echo().spellings(H) == []
    stripped(r.echo(), "x-pomerium-claim-")


# --------------------------------------------------------------------------------------------------
# AWS ALB
# --------------------------------------------------------------------------------------------------

ALB_ARN = "arn:aws:elasticloadbalancing:us-east-2:123456789012:loadbalancer/app/e2e-alb/50dc6c495c0c9188"
ALB_CLIENT = "5k3hq7b2e2e0example0client"
ALB_ISSUER = "https://idp.e2e.example"
ALB_KEY = SigningKey("ES256", "4d6c0e6b-2f3c-4a4f-9a1f-0123456789ab")
ALB_UNSERVED = SigningKey("ES256", "0c1d2e3f-0000-4000-8000-000000000000")


@pytest.fixture(scope="module")
def alb_server():
    server = KeyServer([ALB_KEY], pem_prefix="/alb/")
    yield server
    if server.server is not None:
        server.stop()


@pytest.fixture(scope="module")
def alb(gates, alb_server):
    src = {"name": "alb", "profile": "aws_alb", "issuer": ALB_ISSUER, "audiences": [ALB_CLIENT],
           "signer": ALB_ARN, "developers": DEVELOPERS,
           "keys": {"pem_url": {"cluster": "alb_keys", "authority": "public-keys.auth.elb.us-east-2.amazonaws.com",
                                "path": "/alb/", "timeout_ms": 1000}}}
    return gates("alb", edge_config(src), [harness.static_cluster("alb_keys", alb_server.port)])


def alb_token(key: SigningKey = ALB_KEY, *, signer=ALB_ARN, client=ALB_CLIENT, pad: bool = True,
              kid: str | None = None, **extra) -> str:
    """An `x-amzn-oidc-data` token: the signed header carries `signer`, `iss`, `client`, `exp`."""
    t = now()
    header = {"signer": signer, "iss": ALB_ISSUER, "client": client, "exp": t + 600, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    header = {k: v for k, v in header.items() if v is not None}
    for n in range(8):
        body = {"sub": "1234567890", "email": ALICE, "name": "Alice", "exp": t + 600, "iss": ALB_ISSUER,
                "filler": "x" * n, **extra}
        raw = key.sign({k: v for k, v in body.items() if v is not None}, **header)
        if not pad:
            return raw
        if needs_padding(raw):
            return padded(raw, key)
    raise AssertionError("no padded token")


def oidc_data(value: str) -> list:
    return [("x-amzn-oidc-data", value)]


def test_alb_padded_token_and_the_pem_fetched_per_kid(alb, alb_server):
    t = alb_token()
    assert "=" in t.split(".")[1] and t.endswith("=")
    echo = admitted(alb, [("x-amzn-oidc-identity", "mallory-sub")] + oidc_data(t), ALICE)
    stripped(echo, "x-amzn-oidc-identity")
    assert alb_server.paths[f"/alb/{ALB_KEY.kid}"] >= 1
    assert alb_server.headers[0].get("host") == "public-keys.auth.elb.us-east-2.amazonaws.com"
    admitted(alb, oidc_data(alb_token(pad=False)), ALICE)  # unpadded (a segment's length mod 4 == 0 too)


@pytest.mark.parametrize("make,code", [
    (lambda: alb_token(signer="arn:aws:elasticloadbalancing:us-east-2:123456789012:loadbalancer/app/other/1"),
     "wrong_signer"),
    (lambda: alb_token(signer=None), "wrong_signer"),
    (lambda: alb_token(client="another-client"), "wrong_audience"),
    (lambda: alb_token(iss="https://evil.e2e.example"), "wrong_issuer"),
    (lambda: alb_token(email=MALLORY), "not_a_developer"),
    (lambda: alb_token(exp=now() - 3600), "expired"),
    (lambda: alb_token(ALB_UNSERVED), {"unknown_kid", "edge_keys_unavailable"}),
], ids=["other-alb", "no-signer", "other-client", "other-issuer", "not-a-developer", "expired", "unserved-kid"])
def test_alb_refusals(alb, make, code):
    denied(alb, oidc_data(make()), code)


@pytest.mark.parametrize("kid", ["../../admin", "a/b", "x?y=1", "%2e%2e", "k" * 200])
def test_alb_kid_never_becomes_a_path_it_should_not(alb, alb_server, kid):
    """The kid goes into the fetch's path: one that is not a plain name is refused, never fetched."""
    before = dict(alb_server.paths)
    denied(alb, oidc_data(alb_token(kid=kid)), {"malformed", "unknown_kid", "missing_kid",
                                                "unsupported_header", "edge_keys_unavailable"})
    new = [p for p in alb_server.paths if p not in before]
    assert new == [], new


# --------------------------------------------------------------------------------------------------
# Generic OIDC beside devgate's own HS256 Bearer tokens
# --------------------------------------------------------------------------------------------------

OIDC_ISSUER = "https://accounts.e2e.example"
OIDC_CLIENT = "devgate-e2e-client"
OIDC_KEYS = [SigningKey("RS256", "oidc-rs"), SigningKey("ES256", "oidc-es")]


@pytest.fixture(scope="module")
def oidc(gates):
    src = {"name": "oidc", "profile": "oidc", "algorithms": ["RS256", "ES256"], "issuer": OIDC_ISSUER,
           "audiences": [OIDC_CLIENT], "keys": {"jwks": {"keys": [k.jwk() for k in OIDC_KEYS]}},
           "developers": DEVELOPERS}
    return gates("oidc", edge_config(src, keys=[KEY1], tokens={}), env=TOKENS_ENV)


def id_token(key: SigningKey = OIDC_KEYS[0], **extra) -> str:
    t = now()
    body = {"iss": OIDC_ISSUER, "aud": OIDC_CLIENT, "azp": OIDC_CLIENT, "sub": "248289761001", "email": ALICE,
            "email_verified": True, "iat": t, "exp": t + 600, "nonce": "n-0S6_WzA2Mj", **extra}
    return key.sign({k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize("key", OIDC_KEYS, ids=lambda k: k.alg)
def test_oidc_id_tokens_and_devgate_tokens_side_by_side(oidc, key):
    before = (counter(oidc, "allowed.assertion"), counter(oidc, "allowed.bearer"))
    admitted(oidc, bearer(id_token(key)), ALICE)
    admitted(oidc, bearer(mint("dev-bob")), "dev-bob")  # devgate's own HS256 token, kid k1
    assert (counter(oidc, "allowed.assertion"), counter(oidc, "allowed.bearer")) == (before[0] + 1, before[1] + 1)


def test_devgate_token_refusals_keep_their_codes_beside_oidc(oidc):
    denied(oidc, bearer(mint("dev-bob", secret=b"\x00" * 32)), "bad_signature")  # devgate's, forged
    denied(oidc, bearer(mint("dev-bob", ttl=-3600)), "expired")


def test_oidc_refusals_beside_devgate_tokens_name_the_edge_reason(oidc):
    denied(oidc, bearer(id_token(aud="someone-else")), "wrong_audience")
    denied(oidc, bearer(id_token(email=MALLORY)), "not_a_developer")


def test_oidc_refusals_without_devgate_tokens(oidc_alone):
    denied(oidc_alone, bearer(id_token(aud="someone-else")), "wrong_audience")
    denied(oidc_alone, bearer(id_token(email=MALLORY)), "not_a_developer")
    denied(oidc_alone, bearer(id_token(iss="https://evil.e2e.example")), "wrong_issuer")


@pytest.fixture(scope="module")
def oidc_alone(gates):
    """The same OIDC source without devgate's own tokens."""
    src = {"name": "oidc", "profile": "oidc", "algorithms": ["RS256", "ES256"], "issuer": OIDC_ISSUER,
           "audiences": [OIDC_CLIENT], "keys": {"jwks": {"keys": [k.jwk() for k in OIDC_KEYS]}},
           "developers": DEVELOPERS}
    return gates("oidc-alone", edge_config(src))

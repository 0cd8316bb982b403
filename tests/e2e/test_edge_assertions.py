"""Signed edge assertions (issue #23, `edge.assertions`) in the real Envoy, on both hosts
(DEVGATE_HOST): tokens signed by someone else's private key (every algorithm: ES256, ES384,
RS256, PS256, EdDSA), verified by devgate against the public keys given inline (a JWK set or PEM)
or fetched from a key server behind an Envoy cluster (tests/e2e/jwks_server.py); the developer
mapping (listed name, domain, group); the forgeries (algorithm confusion, `alg: none`, an unknown
`kid`, a key of another type, expired, not yet valid, wrong audience or issuer, claims of the
wrong type, padding outside AWS ALB, forged identity headers); and the fetched keys' life (the
first request waits for the first fetch, rotation, garbage and outages keep the last good set,
past `max_stale_seconds` 503, never a fetch per request).

Every token is signed with PyJWT (and `cryptography` where PyJWT will not: the padded token);
nothing is signed by hand. Clients connect from 127.0.0.77 (an outsider: no developer by address);
127.0.0.1 is a developer by address, the control that a key outage locks out nobody else.
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
from jwt.algorithms import HMACAlgorithm

import harness
from conftest import call_or_fail
from harness import IDENTITY_HEADER as H
from jwks_server import ALGORITHMS, KeyServer, SigningKey, needs_padding, padded

OUTSIDER = "127.0.0.77"
DEV = "127.0.0.1"
PROTECTED = "/_debug/x"
OPEN = "/open"
CHALLENGE = "x-wsgiorg.developer_user"
S = harness.STATS

ISSUER = "https://idp.e2e.example"
AUDIENCE = "devgate-e2e"
DEVELOPERS = {"names": ["alice@example.com"], "domains": ["dev.example.com"], "groups": ["devs"]}
KEYS = {alg: SigningKey(alg, f"k-{alg.lower()}") for alg in ALGORITHMS}
STRANGER = SigningKey("ES256", "k-stranger")  # nobody publishes it

ALICE = "alice@example.com"  # a listed name
BOB = "bob@dev.example.com"  # the listed domain
CAROL = "carol@elsewhere.example"  # in the listed group
MALLORY = "mallory@evil-dev.example.com"  # verified, but no developer


# --------------------------------------------------------------------------------------------------
# configs, Envoys, tokens
# --------------------------------------------------------------------------------------------------


def inline_jwks(keys=None) -> dict:
    return {"jwks": {"keys": [k.jwk() for k in (keys or KEYS.values())]}}


def inline_pem(keys=None) -> dict:
    return {"pem": [{"id": k.kid, "pem": k.pem()} for k in (keys or KEYS.values())]}


def fetched(cluster: str = "idp_keys", path: str = "/jwks.json", **bounds) -> dict:
    return {"jwks_url": {"cluster": cluster, "path": path, "timeout_ms": 1000, **bounds}}


def source(keys: dict, **over) -> dict:
    """An `oidc` assertion source (`Authorization: Bearer`) accepting every algorithm."""
    out = {"name": "idp", "profile": "oidc", "algorithms": list(ALGORITHMS), "issuer": ISSUER,
           "audiences": [AUDIENCE], "keys": keys, "developers": DEVELOPERS}
    out.update(over)
    return out


def edge_config(*assertions, proxy_headers=(), network=None, **extra) -> dict:
    edge: dict = {"assertions": list(assertions)}
    if proxy_headers:
        edge["proxy_headers"] = list(proxy_headers)
    return {"network": network or {"allow": ["127.0.0.1/32"]}, "protect": ["/_debug/"], "edge": edge, **extra}


def start_edge(tmp_path_factory, upstream, cfg: dict, *, clusters=(), env=None, hcm="shipped",
               workers: int = 2) -> harness.Envoy:
    """Envoy with devgate and `cfg`, the key servers' `clusters` beside the upstream."""
    work = tmp_path_factory.mktemp("edge")
    boot = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=cfg, env=env, hcm=hcm,
                                    wasm=harness.wasm_path(), clusters=list(clusters))
    return call_or_fail(harness.start_envoy, boot, work / "envoy", log_level="info",
                        extra_args=("--concurrency", str(workers)))


def claims(email=ALICE, **extra) -> dict:
    """An ID token's claims issued now for `email`; extra claims override (None removes one)."""
    now = int(time.time())
    out = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{email}", "email": email,
           "iat": now, "exp": now + 600}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def token(alg: str = "ES256", email=ALICE, **extra) -> str:
    return KEYS[alg].sign(claims(email, **extra))


SENT: list[str] = []  # every assertion the module sent, for the log check


def bearer(t: str) -> list:
    SENT.append(t)
    return [("Authorization", f"Bearer {t}")]


class _PublicKeyAsSecret(HMACAlgorithm):
    """PyJWT's HS256 without its guard against PEM keys: the algorithm-confusion forger."""

    def prepare_key(self, key):
        return key if isinstance(key, bytes) else key.encode()


def confused(victim: SigningKey, body: dict) -> str:
    """HS256 over `body`, the HMAC secret being `victim`'s public PEM, `kid` naming `victim`."""
    jws = jwt.PyJWS()
    jws.unregister_algorithm("HS256")
    jws.register_algorithm("HS256", _PublicKeyAsSecret(HMACAlgorithm.SHA256))
    return jws.encode(json.dumps(body).encode(), victim.pem().encode(), algorithm="HS256",
                      headers={"kid": victim.kid, "typ": "JWT"})


def padded_token(key: SigningKey, email=ALICE, **extra) -> str:
    """A token of `key` whose header and payload both carry `=` padding (a `pad` claim varies the
    payload's length until they do)."""
    for n in range(8):
        t = key.sign(claims(email, pad="x" * n, **extra))
        if needs_padding(t):
            return padded(t, key)
    raise AssertionError("no padded token")


# --------------------------------------------------------------------------------------------------
# what the upstream and the client see
# --------------------------------------------------------------------------------------------------


def counter(envoy, name: str) -> int:
    full = f"{S}.devgate.requests.{name}"
    return envoy.counters(f"^{full.replace('.', chr(92) + '.')}$").get(full, 0)


def edge_stat(envoy, name: str) -> int:
    """`<ns>.devgate.edge.<name>`: keys_fetched, keys_fetch_failed, cache_hit, cache_miss (counters),
    keys_degraded (the gauge)."""
    full = f"{S}.devgate.edge.{name}"
    return envoy.counters(f"^{full.replace('.', chr(92) + '.')}$").get(full, 0)


def admitted(envoy, headers, who: str, *, path: str = PROTECTED, source: str = OUTSIDER) -> harness.Echo:
    """Reached the upstream with exactly one identity header, `who`."""
    r = envoy.request("GET", path, list(headers), source=source)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.spellings(H) == [(H, who)], echo.spellings(H)
    return echo


def denied(envoy, headers, code: str | set, *, path: str = PROTECTED, status: int | None = None) -> str:
    """Refused by devgate (never the upstream), with `code` (or one of them); the counter
    `requests.denied.<code>` moved by one. 401 with the challenge, 403 for not_a_developer and
    network_denied, 503 for edge_keys_unavailable, unless `status` says."""
    codes = {code} if isinstance(code, str) else set(code)
    before = {c: counter(envoy, f"denied.{c}") for c in codes}
    r = envoy.request("GET", path, list(headers), source=OUTSIDER)
    assert not r.from_upstream, f"reached the upstream: {r.summary()}"
    got = (r.details or "").removeprefix("devgate_")
    assert got in codes, r.summary()
    want = status or {"not_a_developer": 403, "network_denied": 403, "edge_keys_unavailable": 503}.get(got, 401)
    assert r.status == want, r.summary()
    if want == 401:
        assert r.header_all("www-authenticate") == [CHALLENGE], r.summary()
    else:
        assert r.header("www-authenticate") is None, r.summary()
    assert got.encode() not in r.body, "the body must not say why"
    assert counter(envoy, f"denied.{got}") == before[got] + 1, got
    return got


# --------------------------------------------------------------------------------------------------
# every algorithm, every key location
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp_server():
    server = KeyServer(KEYS.values())
    yield server
    if server.server is not None:
        server.stop()


@pytest.fixture(scope="module", params=["jwks", "pem", "jwks_url"])
def located(request, tmp_path_factory, upstream, envoy_bin, idp_server):
    """An Envoy whose source has every algorithm's key inline as a JWK set, inline as PEM, or
    fetched from the key server."""
    keys = {"jwks": inline_jwks, "pem": inline_pem, "jwks_url": fetched}[request.param]()
    clusters = [harness.static_cluster("idp_keys", idp_server.port)] if request.param == "jwks_url" else []
    envoy = start_edge(tmp_path_factory, upstream, edge_config(source(keys)), clusters=clusters)
    yield envoy
    assert not envoy.devgate_problems()
    envoy.stop()


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_algorithm_makes_developers_of_names_domains_and_groups(located, alg):
    before = counter(located, "allowed.assertion")
    admitted(located, bearer(token(alg, ALICE)), ALICE)
    admitted(located, bearer(token(alg, BOB)), BOB)
    admitted(located, bearer(token(alg, CAROL, groups=["staff", "devs"])), CAROL)
    assert counter(located, "allowed.assertion") == before + 3


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_verified_non_developer_is_forbidden(located, alg):
    denied(located, bearer(token(alg, MALLORY)), "not_a_developer")
    denied(located, bearer(token(alg, "eve@a.dev.example.com")), "not_a_developer")  # a subdomain
    denied(located, bearer(token(alg, CAROL, groups=["staff"])), "not_a_developer")


def test_no_assertion_is_challenged_and_a_network_developer_still_passes(located):
    denied(located, [], "no_credential")
    r = located.request("GET", PROTECTED, source=DEV)
    assert r.status == 200 and r.from_upstream, r.summary()
    r = located.request("GET", OPEN, source=OUTSIDER)
    assert r.status == 200 and r.echo().spellings(H) == [], r.summary()


# --------------------------------------------------------------------------------------------------
# forgeries, on the inline JWK set
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inline(tmp_path_factory, upstream, envoy_bin):
    envoy = start_edge(tmp_path_factory, upstream, edge_config(source(inline_jwks())))
    yield envoy
    assert not envoy.devgate_problems()
    envoy.stop()


def _tampered() -> str:
    h, _, s = token("ES256", MALLORY).split(".")
    _, p, _ = token("ES256", ALICE).split(".")
    return f"{h}.{p}.{s}"


FORGERIES = {
    # algorithm confusion: the victim's public PEM as an HMAC secret
    "hs256-with-the-rsa-public-pem": (lambda: confused(KEYS["RS256"], claims()), "unsupported_alg"),
    "hs256-with-the-ec-public-pem": (lambda: confused(KEYS["ES256"], claims()), "unsupported_alg"),
    "alg-none": (lambda: jwt.encode(claims(), None, algorithm="none", headers={"kid": "k-es256"}),
                 {"unsupported_alg", "malformed"}),
    "kid-not-in-the-set": (lambda: STRANGER.sign(claims()), "unknown_kid"),
    "no-kid": (lambda: KEYS["ES256"].sign(claims(), kid=None), {"unknown_kid", "missing_kid", "malformed"}),
    # a key of another type: RS256 naming the EC key, ES256 naming the RSA key, EdDSA naming ES384's
    "rs256-naming-an-ec-key": (lambda: KEYS["RS256"].sign(claims(), kid="k-es256"),
                               {"unsupported_alg", "bad_signature", "unknown_kid"}),
    "es256-naming-an-rsa-key": (lambda: KEYS["ES256"].sign(claims(), kid="k-rs256"),
                                {"unsupported_alg", "bad_signature", "unknown_kid"}),
    "eddsa-naming-a-p384-key": (lambda: KEYS["EdDSA"].sign(claims(), kid="k-es384"),
                                {"unsupported_alg", "bad_signature", "unknown_kid"}),
    "signed-by-a-stranger-under-a-known-kid": (lambda: STRANGER.sign(claims(), kid="k-es256"), "bad_signature"),
    "payload-swapped": (_tampered, "bad_signature"),
    "expired": (lambda: token(exp=int(time.time()) - 3600), "expired"),
    "not-yet-valid": (lambda: token(nbf=int(time.time()) + 3600), "not_yet_valid"),
    "issued-in-the-future": (lambda: token(iat=int(time.time()) + 3600), "not_yet_valid"),
    "wrong-audience": (lambda: token(aud="another-application"), "wrong_audience"),
    "wrong-audience-list": (lambda: token(aud=["another-application", "a-third"]), "wrong_audience"),
    "no-audience": (lambda: token(aud=None), {"wrong_audience", "bad_claim"}),
    "wrong-issuer": (lambda: token(iss="https://evil.e2e.example"), "wrong_issuer"),
    "no-issuer": (lambda: token(iss=None), {"wrong_issuer", "bad_claim"}),
    "developer-claim-a-number": (lambda: token(email=42), "bad_claim"),
    "developer-claim-a-list": (lambda: token(email=[ALICE]), "bad_claim"),
    "developer-claim-missing": (lambda: token(email=None), "bad_claim"),
    "groups-a-string": (lambda: token(email=CAROL, groups="devs"), "bad_claim"),
    "groups-of-numbers": (lambda: token(email=CAROL, groups=[1, 2]), "bad_claim"),
    "padded-outside-aws-alb": (lambda: padded_token(KEYS["ES256"]), "malformed"),
    "not-a-jws": (lambda: "not.a.jws", "malformed"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forgeries_are_refused(inline, name):
    make, code = FORGERIES[name]
    denied(inline, bearer(make()), code)


def test_an_audience_list_naming_ours_and_leeway_are_accepted(inline):
    now = int(time.time())
    admitted(inline, bearer(token(aud=["another-application", AUDIENCE])), ALICE)
    admitted(inline, bearer(token(exp=now - 5, iat=now - 600)), ALICE)  # inside the 30 s leeway
    admitted(inline, bearer(token(nbf=now + 5)), ALICE)


def test_forged_identity_headers_never_reach_the_upstream(inline):
    spoof = [(H, "root"), ("X-Wsgiorg-Developer-User", "root2"), ("x_wsgiorg_developer_user", "root3")]
    # beside a valid assertion: the assertion's developer, once
    admitted(inline, spoof + bearer(token("ES256", BOB)), BOB)
    admitted(inline, bearer(token("ES256", BOB)) + spoof, BOB, path=OPEN)
    # without one: challenged on a protected path, anonymous elsewhere
    denied(inline, spoof, "no_credential")
    for extra in ([], bearer(_tampered()), bearer(confused(KEYS["RS256"], claims()))):
        r = inline.request("GET", OPEN, spoof + extra, source=OUTSIDER)
        assert r.status == 200 and r.echo().spellings(H) == [], r.summary()


def test_a_jwks_entry_whose_alg_lies_about_its_kty_never_verifies(tmp_path, upstream, envoy_bin):
    """An EC P-256 key published with `alg: RS256` (and one with `kty` RSA fields under an `EC`
    entry's name): an ES256 token naming it is refused; the honest key beside it still works. A
    configuration refused outright for it is fail-closed too."""
    liar = SigningKey("ES256", "k-liar")
    honest = KEYS["ES256"]
    jwks = {"keys": [honest.jwk(), liar.jwk(alg="RS256")]}
    boot = harness.render_bootstrap(upstream_port=upstream.port, wasm=harness.wasm_path(),
                                    plugin_config=edge_config(source({"jwks": jwks})))
    result, envoy = harness.try_envoy(boot, tmp_path, log_level="info")
    if not result.ready:
        return  # refused at configuration: nothing verifies against it
    try:
        denied(envoy, bearer(liar.sign(claims())), {"unsupported_alg", "unknown_kid", "bad_signature"})
        admitted(envoy, bearer(honest.sign(claims())), ALICE)
    finally:
        envoy.stop()


@pytest.mark.parametrize("bad", [
    {"algorithms": ["HS256"]},
    {"algorithms": ["none"]},
    {"algorithms": ["ES256", "HS256"]},
    {"audiences": []},
    {"issuer": None},
    {"keys": {"jwks": {"keys": []}}},
    {"keys": {}},
    {"keys": {**inline_jwks(), **inline_pem()}},
], ids=["hs256", "none", "es256-and-hs256", "no-audience", "no-issuer", "empty-jwks", "no-keys", "two-key-kinds"])
def test_configs_envoy_refuses(refused, bad):
    bad = dict(bad)
    keys = bad.pop("keys", inline_jwks())
    cfg = edge_config({k: v for k, v in source(keys, **bad).items() if v is not None})
    result = refused(cfg)
    assert not result.ready, f"Envoy accepted {bad}: probe {result.probe!r}"


# --------------------------------------------------------------------------------------------------
# fetched keys: first fetch, rotation, garbage, outages, staleness, and never a fetch per request
# --------------------------------------------------------------------------------------------------

REFRESH, MAX_STALE, REFETCH = 10, 60, 1


def fetching(tmp_path_factory, upstream, server: KeyServer, **bounds) -> harness.Envoy:
    keys = fetched(refresh_seconds=REFRESH, max_stale_seconds=MAX_STALE, refetch_seconds=REFETCH, **bounds)
    return start_edge(tmp_path_factory, upstream, edge_config(source(keys)),
                      clusters=[harness.static_cluster("idp_keys", server.port)])


def outcome(envoy, t: str) -> tuple[int, str | None]:
    r = envoy.request("GET", PROTECTED, bearer(t), source=OUTSIDER)
    if r.status == 200:
        assert r.from_upstream and r.echo().spellings(H), r.summary()
    return r.status, r.details


def wait_for(fn, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def wait_hits(server: KeyServer, above: int, envoy, t: str, timeout: float = REFRESH + 5) -> None:
    """Until the server is asked again (a refresh once `refresh_seconds` passed), with a request
    carrying `t` at each look (a refresh may be made when a request finds the set due)."""
    def asked() -> bool:
        outcome(envoy, t)
        return server.hits_now() > above
    wait_for(asked, "a fetch", timeout)


def test_the_first_request_waits_for_the_first_fetch_and_repeats_fetch_nothing(tmp_path_factory, upstream,
                                                                                envoy_bin):
    k1 = SigningKey("ES256", "f1")
    server = KeyServer([k1])
    server.delay = 0.3  # the first request arrives while the first fetch is in flight
    envoy = fetching(tmp_path_factory, upstream, server)
    try:
        assert outcome(envoy, k1.sign(claims())) == (200, None)
        assert server.hits_now() >= 1
        assert server.headers[0].get("host") == "idp_keys"  # :authority defaults to the cluster
        assert set(server.paths) == {"/jwks.json"}
        assert edge_stat(envoy, "keys_fetched") >= 1
        server.delay = 0.0
        hits = server.hits_now()
        tokens = [k1.sign(claims(e)) for e in (ALICE, BOB, ALICE.upper(), "x@dev.example.com")]
        cache_hits = edge_stat(envoy, "cache_hit")
        t0 = time.monotonic()
        for i in range(60):  # new connections: both workers
            assert outcome(envoy, tokens[i % len(tokens)])[0] == 200
        assert time.monotonic() - t0 < REFRESH, "too slow to tell a refresh from a fetch per request"
        assert server.hits_now() - hits <= 1, server.paths  # at most one periodic refresh
        # the verified-assertion cache, per worker: at most a miss per token and worker
        assert edge_stat(envoy, "cache_hit") - cache_hits >= 60 - len(tokens) * 2
        assert not envoy.devgate_problems()
    finally:
        envoy.stop()
        server.stop()


def test_rotation_a_new_kid_refetches_once_and_a_removed_key_stops_verifying(tmp_path_factory, upstream,
                                                                             envoy_bin):
    k1, k2 = SigningKey("ES256", "r1"), SigningKey("RS256", "r2")
    server = KeyServer([k1])
    envoy = fetching(tmp_path_factory, upstream, server)
    t1 = k1.sign(claims(ALICE))
    try:
        assert outcome(envoy, t1) == (200, None)
        time.sleep(REFETCH + 0.2)
        server.add(k2)
        hits = server.hits_now()
        t2 = k2.sign(claims(BOB))
        assert outcome(envoy, t2) == (200, None)  # its unknown kid fetched the set again
        assert hits + 1 <= server.hits_now() <= hits + 2  # one refetch (and perhaps a refresh)
        # a kid nobody serves: refused; a burst of them fetches at most once per refetch_seconds
        time.sleep(REFETCH + 0.2)
        hits = server.hits_now()
        t0 = time.monotonic()
        for _ in range(20):
            assert outcome(envoy, STRANGER.sign(claims()))[1] == "devgate_unknown_kid"
        allowed = 1 + int((time.monotonic() - t0) / REFETCH) + 1
        assert server.hits_now() - hits <= allowed, (server.hits_now() - hits, allowed)
        # k1 removed: its token (verified before, maybe cached) stops verifying after a refresh
        server.remove("r1")
        wait_for(lambda: outcome(envoy, t1) == (401, "devgate_unknown_kid"), "the removed key", REFRESH + 5)
        assert outcome(envoy, t2) == (200, None)
        assert not envoy.devgate_problems()
    finally:
        envoy.stop()
        server.stop()


def test_never_fetched_keys_answer_503_and_lock_out_nobody_else(tmp_path_factory, upstream, envoy_bin):
    k1 = SigningKey("ES256", "n1")
    server = KeyServer([k1])
    server.stop()  # connection refused from the start
    envoy = fetching(tmp_path_factory, upstream, server)
    try:
        denied(envoy, bearer(k1.sign(claims())), "edge_keys_unavailable")
        r = envoy.request("GET", PROTECTED, source=DEV)
        assert r.status == 200 and r.from_upstream, r.summary()
        denied(envoy, [], "no_credential")
        server.start()
        wait_for(lambda: outcome(envoy, k1.sign(claims())) == (200, None), "the keys", REFRESH + 5)
    finally:
        envoy.stop()
        server.stop()


def test_garbage_and_errors_keep_the_last_good_set_until_max_stale_then_503_then_back(
        tmp_path_factory, upstream, envoy_bin):
    """About 80 s: max_stale_seconds is at least 60."""
    k1 = SigningKey("EdDSA", "g1")
    server = KeyServer([k1])
    envoy = fetching(tmp_path_factory, upstream, server)
    t1 = k1.sign(claims(ALICE, exp=int(time.time()) + 900))
    try:
        assert outcome(envoy, t1) == (200, None)
        first_good = time.monotonic()
        for phase in ("garbage", "error"):
            failed = edge_stat(envoy, "keys_fetch_failed")
            server.set_phase(phase)
            wait_hits(server, server.hits_now(), envoy, t1)
            wait_for(lambda: edge_stat(envoy, "keys_fetch_failed") > failed, "a failed fetch counted", 5)
            assert outcome(envoy, t1) == (200, None), phase
            # an unknown kid refetches (garbage or 500 again), and the good set stays
            assert outcome(envoy, STRANGER.sign(claims()))[1] == "devgate_unknown_kid"
            assert outcome(envoy, t1) == (200, None), phase
        server.stop()
        assert outcome(envoy, t1) == (200, None)
        code = wait_for(lambda: outcome(envoy, t1) == (503, "devgate_edge_keys_unavailable"), "degraded",
                        MAX_STALE + REFRESH + 10)
        assert code
        assert time.monotonic() - first_good >= MAX_STALE - 2, "degraded before max_stale_seconds"
        r = envoy.request("GET", PROTECTED, bearer(t1), source=OUTSIDER)
        assert r.status == 503 and r.header("www-authenticate") is None and not r.from_upstream, r.summary()
        assert edge_stat(envoy, "keys_degraded") == 1
        r = envoy.request("GET", PROTECTED, source=DEV)  # a network developer is not affected
        assert r.status == 200 and r.from_upstream, r.summary()
        server.start()
        wait_for(lambda: outcome(envoy, t1) == (200, None), "the keys back", REFRESH + 5)
        wait_for(lambda: edge_stat(envoy, "keys_degraded") == 0, "the gauge back to 0", 5)
        assert not envoy.devgate_problems()
    finally:
        envoy.stop()
        server.stop()


def test_no_token_reaches_the_log(inline):
    """Last: no assertion this module sent (valid or forged) is in Envoy's log."""
    text = inline.flushed_log_text()
    sent = [t for t in SENT if len(t) > 40]
    assert sent
    leaked = [t for t in sent if t in text or (len(t.split(".")[-1]) > 16 and t.split(".")[-1] in text)]
    assert leaked == []

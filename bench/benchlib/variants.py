"""The variants `make bench` measures (and `make bench-calls` counts), each with the answer it must
give, and the check that it gives it before it is measured."""

from __future__ import annotations

import base64
import http.client
import os
from dataclasses import dataclass, field

from benchlib import common
from benchlib.common import (ASSERTION_EMAIL, BASIC_PASSWORD, BASIC_USER, CHALLENGE, CHECK_PATH, IDENTITY,
                             NATIVE_KEY_ENV, TOKEN_SUB)
from benchlib.prepare import forged_assertion


@dataclass
class Variant:
    name: str
    config: str  # file under envoy/bench/
    what: str  # one line for the report
    headers: list = field(default_factory=list)  # [(name, value)] on every request (filled in later)
    status: int = 200  # every response must have it
    identity: str | None = None  # the identity header the upstream must receive (None: none)
    # The check request also carries a forged identity header, which the filter must replace.
    forged: bool = True
    # The check also sends one request without the variant's credential, which must get 401.
    needs_credential: bool = False
    # Template values of this variant's config only (the reference filter's steps).
    values: dict = field(default_factory=dict)
    # devgate as a native dynamic module: it reads `secret_env` from Envoy's process environment (no
    # VM environment), so this variant's Envoy, and only it, gets the run's key there.
    native: bool = False
    # `make bench-calls` only: every request's first header value gets its own suffix (`-<n>`), so
    # that each request carries a key devgate has not seen (the key service's miss path).
    unique: bool = False
    # `make bench-calls` only: the first header's values, one per request after the check (which
    # sends `headers`), none sent twice: a new edge assertion on every request (the *_assertion_miss
    # variants; a suffix as with `unique` would break the signature). The run fails rather than
    # repeat one when the list runs out.
    rotate: list = field(default_factory=list)
    # The check also sends each of these header sets (what it is, headers), which must get 401: a
    # credential that looks right but is not (a token signed by another key).
    refused: list = field(default_factory=list)
    # What the variant's cache must have done once measured: "hit" (at least 99% of the lookups were
    # hits: the same token, verified once) or "miss" (no hit at all: a new token each request), read
    # from the Envoy stats `cache_stats` (hit counter, miss counter); None: not checked.
    cache: str | None = None
    cache_stats: tuple = ()


# The reference filter's steps (bench/reference-filter): the host calls devgate's network path cannot
# do without (read the headers, which it must search for the path, credentials and every spelling of
# the identity header; read the peer; set the identity), and the straightforward filter someone might
# write by hand instead (the peer, two headers, one header set).
WASM_MINIMUM = "pairs peer set:x-wsgiorg-developer-user=127.0.0.1"
NAIVE_WASM = "peer header:authorization header:cookie set:x-wsgiorg-developer-user=127.0.0.1"
# The *_resolved_key variants' key: opaque (no dgsk_ prefix), so devgate asks the key service.
RESOLVED_KEY = "bench-resolved-key-0123456789abcdef"
# jwt_authn_es256.yaml's one difference between the uncached and the cached anchor (a line of YAML).
JWT_NO_CACHE = "# no jwt_cache_config: every request's token is verified (Envoy's default)"
JWT_CACHE = "jwt_cache_config: { jwt_cache_size: 100 }"


# The stats counting cache lookups: devgate's verified-assertion cache (`devgate.edge.<code>`, in the
# namespace each host gives devgate's stats) and jwt_authn's JWT cache.
EDGE_CACHE_WASM = ("wasmcustom.devgate.edge.cache_hit", "wasmcustom.devgate.edge.cache_miss")
EDGE_CACHE_NATIVE = ("dynamicmodulescustom.devgate.edge.cache_hit", "dynamicmodulescustom.devgate.edge.cache_miss")
JWT_AUTHN_CACHE = ("http.bench.jwt_authn.jwt_cache_hit", "http.bench.jwt_authn.jwt_cache_miss")


def bearer(token: str) -> list:
    return [("Authorization", f"Bearer {token}")]


def forged_bearer() -> list:
    """The check's forgery for the assertion variants: the right claims and key id, another key."""
    return [("an ES256 token signed by another key", bearer(forged_assertion()))]


def variants(token: str, api_key: str, assertion: str) -> list[Variant]:
    """`token`: devgate's own HS256 token; `api_key`: a private API key; `assertion`: the run's ES256
    ID token (prepare.mint_assertion)."""
    forged = forged_bearer()
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    return [
        Variant("baseline", "baseline.yaml", "no filter (router only)", forged=False),
        Variant("devgate_network", "devgate_network.yaml",
                "devgate, peer 127.0.0.1 is a network developer, protect /", identity="127.0.0.1"),
        Variant("devgate_bearer", "devgate_tokens.yaml",
                "devgate, outsider with Authorization: Bearer <devgate token>",
                headers=[("Authorization", f"Bearer {token}")], identity=TOKEN_SUB, needs_credential=True),
        Variant("devgate_cookie", "devgate_tokens.yaml",
                "devgate, outsider with Cookie: devgate_token=<devgate token>",
                headers=[("Cookie", f"devgate_token={token}")], identity=TOKEN_SUB, needs_credential=True),
        Variant("devgate_deny", "devgate_tokens.yaml",
                "devgate, outsider without credentials: 401 challenge", status=401),
        Variant("devgate_api_key", "devgate_api.yaml",
                "devgate, outsider with X-Api-Key: <private API key> on an API route",
                headers=[("X-Api-Key", api_key)], needs_credential=True),
        Variant("devgate_resolved_key", "devgate_resolved.yaml",
                "devgate, outsider with X-Api-Key: <a key devgate did not sign>, resolved at the key service "
                "once, then a cache hit",
                headers=[("X-Api-Key", RESOLVED_KEY)], needs_credential=True),
        Variant("devgate_assertion", "devgate_assertion.yaml",
                "devgate, outsider with Authorization: Bearer <ES256 ID token> (edge assertion, profile oidc, "
                "inline JWKS): verified once, then a hit in the verified-assertion cache",
                headers=bearer(assertion), identity=ASSERTION_EMAIL, needs_credential=True, refused=forged,
                cache="hit", cache_stats=EDGE_CACHE_WASM),
        Variant("empty_wasm", "empty_wasm.yaml", "proxy-wasm filter that does nothing (V8)", forged=False),
        Variant("wasm_minimum", "reference.yaml",
                "proxy-wasm filter making only the host calls devgate's network path cannot avoid: "
                "all request headers, the peer, set the identity", identity="127.0.0.1",
                values={"REFERENCE_STEPS": WASM_MINIMUM}),
        Variant("naive_wasm", "reference.yaml",
                "proxy-wasm filter reading the peer and two headers, setting one (a naive hand-written filter)",
                identity="127.0.0.1", values={"REFERENCE_STEPS": NAIVE_WASM}),
        Variant("basic_auth", "basic_auth.yaml", "envoy.filters.http.basic_auth, {SHA} user",
                headers=[("Authorization", f"Basic {basic}")], identity=BASIC_USER, needs_credential=True),
        Variant("jwt_authn", "jwt_authn.yaml", "envoy.filters.http.jwt_authn, same HS256 token, inline oct JWKS",
                headers=[("Authorization", f"Bearer {token}")], identity=TOKEN_SUB, needs_credential=True),
        Variant("jwt_authn_es256", "jwt_authn_es256.yaml",
                "envoy.filters.http.jwt_authn, the devgate_assertion ES256 token, inline EC JWKS, no JWT cache: "
                "a signature verify per request",
                headers=bearer(assertion), identity=ASSERTION_EMAIL, needs_credential=True, refused=forged,
                values={"JWT_CACHE": JWT_NO_CACHE}, cache="miss", cache_stats=JWT_AUTHN_CACHE),
        Variant("jwt_authn_es256_cached", "jwt_authn_es256.yaml",
                "envoy.filters.http.jwt_authn as jwt_authn_es256 with jwt_cache_config: verified once, then a "
                "cache hit",
                headers=bearer(assertion), identity=ASSERTION_EMAIL, needs_credential=True, refused=forged,
                values={"JWT_CACHE": JWT_CACHE}, cache="hit", cache_stats=JWT_AUTHN_CACHE),
        Variant("lua", "lua.yaml", "envoy.filters.http.lua doing devgate's network path", identity="127.0.0.1"),
        # devgate as a native Envoy dynamic module (libdevgate.so): the same policies as the devgate_*
        # variants above, the same requests, the same checks.
        Variant("native_network", "native_network.yaml",
                "devgate native module, peer 127.0.0.1 is a network developer, protect /",
                identity="127.0.0.1", native=True),
        Variant("native_bearer", "native_tokens.yaml",
                "devgate native module, outsider with Authorization: Bearer <devgate token>",
                headers=[("Authorization", f"Bearer {token}")], identity=TOKEN_SUB, needs_credential=True,
                native=True),
        Variant("native_cookie", "native_tokens.yaml",
                "devgate native module, outsider with Cookie: devgate_token=<devgate token>",
                headers=[("Cookie", f"devgate_token={token}")], identity=TOKEN_SUB, needs_credential=True,
                native=True),
        Variant("native_deny", "native_tokens.yaml",
                "devgate native module, outsider without credentials: 401 challenge", status=401, native=True),
        Variant("native_api_key", "native_api.yaml",
                "devgate native module, outsider with X-Api-Key: <private API key> on an API route",
                headers=[("X-Api-Key", api_key)], needs_credential=True, native=True),
        Variant("native_resolved_key", "native_resolved.yaml",
                "devgate native module, outsider with X-Api-Key: <a key devgate did not sign>, resolved at the "
                "key service once, then a cache hit",
                headers=[("X-Api-Key", RESOLVED_KEY)], needs_credential=True, native=True),
        Variant("native_assertion", "native_assertion.yaml",
                "devgate native module, outsider with Authorization: Bearer <ES256 ID token> (edge assertion): "
                "verified once, then a hit in the verified-assertion cache",
                headers=bearer(assertion), identity=ASSERTION_EMAIL, needs_credential=True, refused=forged,
                native=True, cache="hit", cache_stats=EDGE_CACHE_NATIVE),
        Variant("native_noop", "native_noop.yaml",
                "devgate's native module doing nothing (test build, filter_name devgate-noop): the fixed cost "
                "of an extra dynamic-module filter", forged=False, native=True),
    ]


def miss_variants(assertions: list[str]) -> list[Variant]:
    """`make bench-calls` only (wrk sends one header set): the *_resolved_key configs with a key
    devgate has not seen on every request, so each one is a cache miss, a callout to the key
    service and the answer's verification and caching; the *_assertion configs with a new ES256 ID
    token on every request (`assertions`, distinct, at least one more than the requests sent: the
    first is the check's), so each one is a verified-assertion cache miss, a signature verify and
    the claims. jwt_authn_es256 (no JWT cache) is their anchor as it stands."""
    forged = forged_bearer()
    miss = [f"Bearer {a}" for a in assertions[1:]]
    first = bearer(assertions[0]) if assertions else []
    return [
        Variant("devgate_resolved_miss", "devgate_resolved.yaml",
                "devgate, a new key on every request: cache miss, callout to the key service, verify, cache",
                headers=[("X-Api-Key", RESOLVED_KEY)], needs_credential=True, unique=True),
        Variant("native_resolved_miss", "native_resolved.yaml",
                "devgate native module, a new key on every request: cache miss, callout, verify, cache",
                headers=[("X-Api-Key", RESOLVED_KEY)], needs_credential=True, native=True, unique=True),
        Variant("devgate_assertion_miss", "devgate_assertion.yaml",
                "devgate, a new ES256 ID token (its own jti) on every request: verified-assertion cache miss, "
                "signature verify, claims, cache",
                headers=first, identity=ASSERTION_EMAIL, needs_credential=True, refused=forged, rotate=miss,
                cache="miss", cache_stats=EDGE_CACHE_WASM),
        Variant("native_assertion_miss", "native_assertion.yaml",
                "devgate native module, a new ES256 ID token on every request: cache miss, signature verify, "
                "claims, cache",
                headers=first, identity=ASSERTION_EMAIL, needs_credential=True, refused=forged, native=True,
                rotate=miss, cache="miss", cache_stats=EDGE_CACHE_NATIVE),
    ]


def process_env(v: Variant, values: dict) -> dict | None:
    """Envoy's process environment for variant `v`: the run's key for a native devgate (which reads
    `secret_env` there), nothing added for the others."""
    if not v.native:
        return None
    return {**os.environ, NATIVE_KEY_ENV: str(values["DEVGATE_KEY"])}


def one_request(port: int, headers: list) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=common.CHECK_TIMEOUT)
    try:
        conn.request("GET", CHECK_PATH, headers=dict(headers))
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def check_variant(v: Variant, port: int) -> list[str]:
    """What is wrong with this variant's answers (empty: it does what it claims)."""
    try:
        return _check_variant(v, port)
    except (OSError, http.client.HTTPException) as e:
        return [f"check request failed: {e!r}"]


def _check_variant(v: Variant, port: int) -> list[str]:
    problems = []
    headers = list(v.headers)
    if v.forged:
        headers.append((IDENTITY, "forged"))
    status, got = one_request(port, headers)
    if status != v.status:
        problems.append(f"status {status}, expected {v.status}")
    elif status == 200:
        ident = got.get("x-bench-identity")
        if ident != v.identity:
            problems.append(f"upstream received {IDENTITY}: {ident!r}, expected {v.identity!r}")
    elif status == 401 and got.get("www-authenticate") != CHALLENGE:
        problems.append(f"401 without the challenge (www-authenticate: {got.get('www-authenticate')!r})")
    if v.needs_credential:
        status, _ = one_request(port, [(IDENTITY, "forged")])
        if status != 401:
            problems.append(f"without the credential: status {status}, expected 401")
    for what, bad in v.refused:
        status, got = one_request(port, list(bad) + [(IDENTITY, "forged")])
        if status != 401:
            problems.append(f"with {what}: status {status}, expected 401"
                            + (f" (upstream received {IDENTITY}: {got.get('x-bench-identity')!r})"
                               if status == 200 else ""))
    return problems


def cache_trouble(v: Variant, env) -> str | None:
    """What is wrong with what `v`'s cache did in its Envoy `env` (benchlib.processes.Envoy) so far:
    a cached variant that verified more than its first tokens, an uncached one that hit, no lookup
    counted at all. None: as expected, or nothing to check."""
    if not v.cache:
        return None
    hit_stat, miss_stat = v.cache_stats
    hits, misses = env.counter(hit_stat), env.counter(miss_stat)
    if hits + misses == 0:
        return f"no cache lookup counted ({hit_stat}, {miss_stat})"
    if v.cache == "hit" and hits < 0.99 * (hits + misses):
        return f"expected cache hits: {hits} hits, {misses} misses ({hit_stat})"
    if v.cache == "miss" and hits:
        return f"expected no cache hit: {hits} hits, {misses} misses ({hit_stat})"
    return None

"""Keys devgate did not sign, resolved at the team's authentication service (issue #22 part 1, the
seed's `application_kit.authenticator` model), end to end in the real Envoy, on both hosts.

A real key service runs in this process (tests/e2e/keyservice.py): it signs access tokens with its
own HS256 key (`api.service.keys`, the secret reaching devgate through `secret_env`), counts the
calls it gets, and moves through phases (up, 500s, connection refused, slow past the timeout,
garbage, bad signature, back up). Envoy reaches it through the `key_service` cluster
(harness.static_cluster). Every test uses keys of its own, so the process-wide cache one test
fills never answers for another; lifetimes are short (tokens live 1-2 s, rejections 1 s,
`max_stale` 2 s) so the file runs in well under two minutes per host.

Peers: 127.0.0.77 is an ordinary API client; the flood comes from 127.0.0.2-254.
"""

from __future__ import annotations

import json
import secrets
import statistics
import threading
import time

import pytest

import harness
from conftest import call_or_fail
from keyservice import KEY_HEADER, SECRET as KS_SECRET, KeyService, key_service  # noqa: F401 - fixture
from test_api_keys import (
    COUNT,
    ENV_K1,
    KIND,
    KEY_ID,
    ORG,
    PROJECT,
    SECRET as K1_SECRET,
    Key,
    assert_api_pass,
    b64u,
    mint_key,
    write_key_file,
)

CLIENT = "127.0.0.77"
STALE = "x-devgate-served-stale"
KS_ENV = "DEVGATE_E2E_KEY_SERVICE"
ENV = {ENV_K1: b64u(K1_SECRET), KS_ENV: b64u(KS_SECRET)}
S = harness.STATS
TIMEOUT_MS = 500
RETRY_MS = 250
MAX_STALE = 2
REJECTION_TTL = 1
DECISION = {"path": "%PATH(NQ)%", "code": "%RESPONSE_CODE%",
            "decision": "%FILTER_STATE(wasm.devgate_decision:PLAIN)%"}


def service_config(**extra) -> dict:
    return {
        "cluster": "key_service",
        "authority": "key-service",
        "path": "/access_tokens/",
        "key_header": KEY_HEADER,
        "timeout_ms": TIMEOUT_MS,
        "keys": [{"id": "ks1", "secret_env": KS_ENV}],
        "issuer": "https://auth.e2e.example",
        "audience": "devgate",
        "cache": {"max_ttl_seconds": 300, "rejection_ttl_seconds": REJECTION_TTL,
                  "max_stale_seconds": MAX_STALE, "retry_ms": RETRY_MS},
        "shape": {"min_length": 20, "max_length": 128, "public_prefix": "pk-", "private_prefix": "sk-"},
        **extra,
    }


def config(**service_extra) -> dict:
    return {
        "network": {"allow": ["127.0.0.1/32"]},
        "protect": ["/_debug/"],
        "keys": [{"id": "k1", "secret_env": ENV_K1}],  # devgate's own dgpk_/dgsk_ keys, side by side
        "api": {"routes": [{"prefix": "/v1/maps", "product": "maps"}], "service": service_config(**service_extra)},
    }


def start(tmp_path_factory, upstream, service: KeyService, cfg: dict, workers: int = 2):
    work = tmp_path_factory.mktemp("keyservice")
    log = work / "access.jsonl"
    boot = harness.render_bootstrap(
        upstream_port=upstream.port, plugin_config=cfg, env=ENV, wasm=harness.wasm_path(),
        clusters=[harness.static_cluster("key_service", service.port)],
        access_log=[harness.file_access_log(log, json_format=DECISION)],
    )
    envoy = call_or_fail(harness.start_envoy, boot, work / "envoy", log_level="info",
                         extra_args=("--concurrency", str(workers), *harness.FAST_FLUSH))
    envoy.access_log = log
    return envoy


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream, envoy_bin, key_service):  # noqa: F811 - the fixture
    envoy = start(tmp_path_factory, upstream, key_service, config())
    yield envoy
    envoy.stop()


@pytest.fixture
def ks(key_service):  # noqa: F811 - the fixture
    """The module's service, back up and prompt after each test."""
    yield key_service
    key_service.set_phase("up")
    key_service.delay = 0.0
    key_service.json_body = False


def new_key(prefix: str = "sk-") -> str:
    return prefix + secrets.token_urlsafe(24)


def call(gw, key: str, *, public: bool = False, path: str = "/v1/maps/tile", headers=(), source=CLIENT):
    if public:
        return gw.request("GET", f"{path}?key={key}", list(headers), source=source)
    return gw.request("GET", path, [("X-Api-Key", key), *headers], source=source)


def denied(r, status: int, code: str) -> None:
    assert (r.status, r.details) == (status, f"devgate_{code}"), r.summary()
    assert not r.from_upstream


def counters(gw) -> dict[str, int]:
    prefix = f"{S}.devgate.key_service."
    return {k[len(prefix):]: v for k, v in gw.counters(rf"^{S}\.devgate\.key_service\.").items()}


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def after_retry() -> None:
    """Past `retry_ms`: the next request for a key whose callout failed asks again."""
    time.sleep(RETRY_MS / 1000 + 0.15)


def described(ks: KeyService, key: str) -> Key:
    a = ks.accounts[key]
    return Key(key, a.kind, a.id, a.org, a.project)


# --------------------------------------------------------------------------------------------------
# The cache: one call per key until exp, one callout for many waiters
# --------------------------------------------------------------------------------------------------


def test_first_use_calls_the_service_once_with_the_key_in_its_header(gw, ks):
    key = new_key()
    ks.add(key, id="ks-first")
    r = call(gw, key)
    echo = assert_api_pass(r, described(ks, key))
    assert key not in echo.path + json.dumps(echo.headers), "the key reached the upstream"
    assert ks.calls_for(key) == 1
    seen = [s for s in ks.requests if s.key == key]
    assert [s.path for s in seen] == ["/access_tokens/"]  # the key travels in the header, never the URL
    assert dict((n.lower(), v) for n, v in seen[0].headers)["host"] == "key-service"


def test_repeats_call_zero_times_until_exp(gw, ks):
    key = new_key()
    ks.add(key, id="ks-repeat", ttl=3)  # at least 2 s of freshness for the repeats
    assert call(gw, key).status == 200
    exp = ks.issued[key]
    for _ in range(10):
        assert call(gw, key).status == 200
    assert time.time() < exp, "the repeats took longer than the token's life: the test proves nothing"
    assert ks.calls_for(key) == 1
    sleep_until(exp + 0.1)
    assert call(gw, key).status == 200
    assert ks.calls_for(key) == 2


def test_an_answer_may_be_a_json_object_carrying_the_access_token(gw, ks):
    key = new_key()
    ks.add(key, id="ks-json", org="initech")
    ks.json_body = True  # {"access_token": "<jws>"}
    assert_api_pass(call(gw, key), described(ks, key))
    assert ks.calls_for(key) == 1


def test_twenty_concurrent_requests_for_a_new_key_make_one_callout(gw, ks):
    key = new_key()
    ks.add(key, id="ks-herd")
    ks.delay = 0.3  # the callout stays in flight while the others arrive
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def one():
        barrier.wait()
        statuses.append(call(gw, key).status)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 20, statuses
    assert ks.calls_for(key) == 1


def test_upstream_sees_the_key_facts_never_a_client_served_stale_copy(gw, ks):
    key = new_key()
    ks.add(key, org="globex", project="etl", id="ks-facts")
    spoof = [(STALE, "true"), ("X_Devgate_Served_Stale", "true"), (ORG, "evil"), (KEY_ID, "admin")]
    echo = assert_api_pass(call(gw, key, headers=spoof), described(ks, key))
    assert echo.spellings(STALE) == [], echo.headers
    assert [v for n in (ORG, PROJECT, KIND, KEY_ID, COUNT) for v in echo.get_all(n)] == [
        "globex", "etl", "private_key", "ks-facts", "true"]


def test_a_resolved_public_key_keeps_its_referer_list(gw, ks):
    key = new_key("pk-")
    ks.add(key, kind="public_key", referers=["*.example.com"], id="ks-public")
    assert_api_pass(call(gw, key, public=True, headers=[("Origin", "https://app.example.com")]), described(ks, key))
    denied(call(gw, key, public=True, headers=[("Origin", "https://evil.example.org")]), 403, "referer_denied")
    denied(call(gw, key), 401, "malformed")  # a `pk-` key is no private key's shape: never asked
    assert ks.calls_for(key) == 1


# --------------------------------------------------------------------------------------------------
# Authoritative answers: rejections are cached and never softened
# --------------------------------------------------------------------------------------------------


def test_a_rejection_is_cached_and_stays_a_rejection_through_an_outage(gw, ks):
    key = new_key()  # unknown to the service: 401
    denied(call(gw, key), 401, "key_rejected")
    denied(call(gw, key), 401, "key_rejected")
    assert ks.calls_for(key) == 1  # cached for rejection_ttl_seconds
    ks.set_phase("down")
    time.sleep(REJECTION_TTL + 0.2)
    for _ in range(3):  # past its TTL, the service refusing connections: still a rejection, never 503
        denied(call(gw, key), 401, "key_rejected")
    ks.set_phase("error")
    after_retry()
    denied(call(gw, key), 401, "key_rejected")
    assert ks.calls_for(key) == 2  # asked again past the TTL, answered 500: still a rejection


def test_a_forbidden_key_is_403_and_cached(gw, ks):
    key = new_key()
    ks.forbidden.add(key)
    denied(call(gw, key), 403, "key_forbidden")
    denied(call(gw, key), 403, "key_forbidden")
    assert ks.calls_for(key) == 1


@pytest.mark.parametrize("status,code", [(429, "over_quota"), (402, "over_free_quota")])
def test_over_quota_passes_the_status_and_retry_after(gw, ks, status, code):
    key = new_key()
    ks.over_quota[key] = (status, "30")
    r = call(gw, key)
    denied(r, status, code)
    assert r.header("retry-after") == "30", r.summary()
    again = call(gw, key)  # cached: the same answer, the wait counted down
    denied(again, status, code)
    assert 1 <= int(again.header("retry-after") or 0) <= 30, again.summary()
    assert ks.calls_for(key) == 1


# --------------------------------------------------------------------------------------------------
# Outages: never a rejection, stale served up to max_stale
# --------------------------------------------------------------------------------------------------


def decisions(gw, path: str, n: int = 1) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        text = gw.access_log.read_text() if gw.access_log.exists() else ""
        found = [e["decision"] for e in map(json.loads, text.splitlines()) if e["path"] == path]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_an_expired_entry_is_served_stale_through_an_outage_then_503_past_max_stale(gw, ks):
    key = new_key()
    ks.add(key, id="ks-stale", ttl=1)
    assert_api_pass(call(gw, key), described(ks, key))
    exp = ks.issued[key]
    before = counters(gw)
    ks.set_phase("error")
    sleep_until(exp + 0.05)
    path = f"/v1/maps/stale-{secrets.token_hex(4)}"
    r = call(gw, key, path=path)
    echo = assert_api_pass(r, described(ks, key))
    assert echo.spellings(STALE) == [(STALE, "true")], echo.headers
    assert decisions(gw, path) == ["allow:private_key,served_stale"]
    assert counters(gw)["stale_served"] > before["stale_served"]
    ks.set_phase("down")
    sleep_until(exp + MAX_STALE + 0.05)
    denied(call(gw, key), 503, "key_service_unavailable")  # not known bad: never 401
    ks.set_phase("up")
    after_retry()
    echo = assert_api_pass(call(gw, key), described(ks, key))
    assert echo.spellings(STALE) == []


def test_a_key_resolved_while_the_service_is_slow_times_out_to_503(gw, ks):
    key = new_key()
    ks.add(key, id="ks-slow")
    ks.slow_seconds = 2.0
    ks.set_phase("slow")
    t0 = time.monotonic()
    r = call(gw, key)
    took = time.monotonic() - t0
    denied(r, 503, "key_service_unavailable")
    assert took < ks.slow_seconds - 0.3, f"devgate waited {took:.2f} s, past its {TIMEOUT_MS} ms timeout"
    ks.set_phase("up")
    after_retry()
    assert_api_pass(call(gw, key), described(ks, key))


@pytest.mark.parametrize("phase", ["garbage", "bad_signature", "error", "down"])
def test_an_unusable_answer_is_503_never_401_and_never_cached(gw, ks, phase):
    key = new_key()
    ks.add(key, id=f"ks-{phase.replace('_', '-')}")
    ks.set_phase(phase)
    r = call(gw, key)
    denied(r, 503, "key_service_unavailable")
    assert r.header("www-authenticate") is None, r.summary()
    assert ks.calls_for(key) == (0 if phase == "down" else 1)
    ks.set_phase("up")
    after_retry()
    assert_api_pass(call(gw, key), described(ks, key))


# --------------------------------------------------------------------------------------------------
# Cost: the shape check, the budget under a flood
# --------------------------------------------------------------------------------------------------

JUNK = {
    "too-short": "sk-short",
    "too-long": "sk-" + "a" * 200,
    "bad-character": "sk-" + "a" * 20 + "!" + "b" * 4,
    "wrong-prefix": "xx-" + "a" * 30,
}


def test_junk_keys_failing_the_shape_check_never_reach_the_service(gw, ks):
    calls = ks.calls
    for name, junk in JUNK.items():
        denied(call(gw, junk), 401, "malformed")
    denied(call(gw, "sk-" + "a" * 30, public=True), 401, "malformed")  # a private prefix in `key`
    assert ks.calls == calls


def test_a_devgate_minted_key_still_works_beside_the_service(gw, ks, tmp_path):
    minted = mint_key(write_key_file(tmp_path / "k1.key", K1_SECRET), "private", id="sk-local")
    calls = ks.calls
    assert_api_pass(call(gw, minted.text), minted)
    assert ks.calls == calls


def test_key_service_counters_move(gw, ks):
    key, down = new_key(), new_key()
    ks.add(key, id="ks-count")
    c0 = counters(gw)
    assert call(gw, key).status == 200
    c1 = counters(gw)
    assert call(gw, key).status == 200
    c2 = counters(gw)
    ks.set_phase("error")
    ks.add(down, id="ks-count-down")
    denied(call(gw, down), 503, "key_service_unavailable")
    c3 = counters(gw)

    def moved(a, b):
        return {k: b[k] - a.get(k, 0) for k in b if b[k] != a.get(k, 0) and k != "entries"}

    assert moved(c0, c1) == {"miss": 1, "callout": 1}
    assert moved(c1, c2) == {"hit": 1}
    assert moved(c2, c3) == {"miss": 1, "callout": 1, "unavailable": 1}
    assert sorted(c3) == sorted(
        ["hit", "miss", "stale_served", "callout", "unavailable", "over_budget"]
        + (["entries"] if "entries" in c3 else [])
    )
    if "entries" in c3:  # the gauge: slots ever filled
        assert c3["entries"] >= 1


BUDGET = {"per_second": 5, "burst": 5, "in_flight": 2, "waiters": 4}


def flood_address(i: int) -> str:
    return f"127.0.0.{2 + i % 253}"


def steady_run(gw, key: str, seconds: float, latencies: list, statuses: list) -> None:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        r = call(gw, key, source="127.0.0.77")
        latencies.append(time.perf_counter() - t0)
        statuses.append(r.status)
        time.sleep(0.02)


def p99(latencies: list) -> float:
    lat = sorted(latencies)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000


def test_junk_key_flood_stays_within_the_callout_budget_while_a_cached_key_keeps_200(
        tmp_path_factory, upstream, envoy_bin):
    """Shape-valid junk keys from 253 addresses, each new (a miss and, budget permitting, a callout
    the service answers 401): callouts stay within `budget` (counted at the service), the rest are
    answered 503 key_service_busy with Retry-After, nothing queues, and a steady client whose key
    is cached keeps getting 200. Its p99 with and without the flood is printed, not asserted."""
    service = KeyService(ttl=300)
    envoy = start(tmp_path_factory, upstream, service, config(budget=BUDGET))
    try:
        steady = new_key()
        service.add(steady, id="ks-steady")
        assert call(envoy, steady).status == 200
        quiet_lat: list[float] = []
        quiet_status: list[int] = []
        steady_run(envoy, steady, 1.5, quiet_lat, quiet_status)

        service.reset_counts()
        duration, lock, seq = 3.0, threading.Lock(), iter(range(10**6))
        statuses: dict[tuple, int] = {}
        lat: list[float] = []
        steady_status: list[int] = []
        stop = time.monotonic() + duration

        def flood():
            while time.monotonic() < stop:
                with lock:
                    i = next(seq)
                r = call(envoy, new_key(), source=flood_address(i))
                outcome = (r.status, r.details, r.header("retry-after") is not None)
                with lock:
                    statuses[outcome] = statuses.get(outcome, 0) + 1

        t0 = time.monotonic()
        threads = [threading.Thread(target=flood) for _ in range(8)]
        threads.append(threading.Thread(target=steady_run, args=(envoy, steady, duration, lat, steady_status)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        calls = service.calls
        c = counters(envoy)
        ratio = p99(lat) / p99(quiet_lat)
        print(f"key flood: {sum(statuses.values())} junk keys in {elapsed:.1f} s, {calls} callouts, "
              f"{c['over_budget']} over budget; steady client p99 {p99(quiet_lat):.1f} ms alone, "
              f"{p99(lat):.1f} ms under the flood (ratio {ratio:.2f}), p50 {statistics.median(lat) * 1000:.1f} ms")
        assert calls <= BUDGET["burst"] + BUDGET["per_second"] * (elapsed + 1), (calls, elapsed, statuses)
        assert calls >= BUDGET["burst"], statuses  # the budget was used, not refused outright
        assert set(statuses) <= {(401, "devgate_key_rejected", False), (503, "devgate_key_service_busy", True)}, \
            statuses
        assert statuses.get((503, "devgate_key_service_busy", True), 0) > 0, statuses
        assert c["over_budget"] > 0, c
        assert service.calls_for(steady) == 0
        assert quiet_status and set(quiet_status) == {200}, quiet_status
        assert steady_status and set(steady_status) == {200}, steady_status
        assert not envoy.devgate_problems()
    finally:
        envoy.stop()
        service.stop()


def test_no_key_reaches_the_log(gw, ks):
    """Last: no key this module sent (resolved, rejected or junk) and no access token is in Envoy's
    log or the access log."""
    text = gw.log_text() + (gw.access_log.read_text() if gw.access_log.exists() else "")
    sent = [s.key for s in ks.requests if s.key] + list(JUNK.values())
    assert sent, "nothing was sent"
    assert [k for k in sent if k in text] == []
    assert not gw.devgate_problems()

"""What operators see: devgate's Envoy counters (admin /stats and /stats/prometheus) and its access log
fields, after a scripted mix of requests whose every outcome is known in advance.

The counters (src/core/counters.rs `Counter::all`, defined at configure time, so they exist at zero),
under `wasmcustom.` with the Wasm build and `dynamicmodulescustom.` with the native module
(DEVGATE_HOST=native; harness.STATS):
  <ns>.devgate.requests.allowed.<network|bearer|cookie|public_key|private_key|user_token|anonymous>
  <ns>.devgate.requests.denied.<reason>   every code of `Reason::all()`, plus internal_error
  <ns>.devgate.config.<accepted|rejected>
  <ns>.devgate.counter_missing             bumps of a counter the host did not define (0)
  <ns>.devgate.key_service.<hit|miss|stale_served|callout|unavailable|over_budget>   keys resolved at
                                           the authentication service (0 here: no `api.service`)
  <ns>.devgate.edge.<keys_fetched|keys_fetch_failed|cache_hit|cache_miss>   fetched issuer keys and
                                           the verified-assertion cache (0 here: no `edge`)

The access log fields:
  %FILTER_STATE(wasm.devgate_decision:PLAIN)%   the one property devgate sets:
      allow:<one of the allowed codes above>, allow:<key kind>+<source> when a developer came with
      an API key, deny:<reason>
  %REQ(X-WSGIORG-DEVELOPER-USER)%   the developer's name: the identity header as the upstream got it
      (absent for API keys alone and anonymous requests; a client's own copy never shows, even on a
      request devgate refuses)
A request Envoy refuses before any filter runs (e.g. path_normalization_failed) has none of them and
counts nowhere.

Peers (see test_network.py): 127.0.0.1 is the only network developer (network.allow 127.0.0.1/32),
127.0.0.77 and ::1 are outsiders, 127.0.0.5 is the one address a restricted private key allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass

import pytest

import harness
from conftest import call_or_fail

DEV4 = "127.0.0.1"
DEV6_OUTSIDER = "::1"
OUTSIDER = "127.0.0.77"

ALLOWED = ["network", "bearer", "cookie", "session", "public_key", "private_key", "user_token", "anonymous"]
# Reason::all() (src/core/mod.rs) then TokenError::ALL (src/core/token.rs), then the glue's own code.
DENIED = [
    "no_credential", "bad_path", "ambiguous_credential", "network_denied", "unbound_token", "revoked",
    "key_misplaced", "wrong_product", "referer_denied", "write_needed", "private_key_required",
    "method_not_allowed", "revocation_stale",
    "key_rejected", "key_forbidden", "over_quota", "over_free_quota", "key_service_unavailable", "key_service_busy",
    "not_a_member", "not_an_owner", "not_staff", "origin_denied",
    "too_long", "malformed", "unsupported_alg", "unsupported_header", "missing_kid", "unknown_kid",
    "bad_signature", "wrong_purpose", "expired", "not_yet_valid", "bad_subject", "wrong_cookie", "wrong_peer",
    "internal_error",
]
CONFIG_OUTCOMES = ["accepted", "rejected"]
# core::session::Outcome::ALL (src/core/session.rs), and the upstream-challenge translations.
LOGIN_OUTCOMES = [
    "page", "succeeded", "failed", "rate_limited", "over_budget", "network_denied", "csrf", "bad_content_type",
    "too_large", "logout", "not_found", "method_not_allowed", "internal_error",
]
CHALLENGE_OUTCOMES = ["forbid", "login"]
REVOCATION_OUTCOMES = ["fetch_ok", "fetch_failed"]
# core::counters::KeyEvent::ALL (src/core/counters.rs): the key service's cache and callouts.
KEY_SERVICE_EVENTS = ["hit", "miss", "stale_served", "callout", "unavailable", "over_budget"]
# core::counters::EdgeEvent::ALL: the edge sources' key fetches and verified-assertion cache.
EDGE_EVENTS = ["keys_fetched", "keys_fetch_failed", "cache_hit", "cache_miss"]
# The namespace Envoy gives devgate's stats: `wasmcustom` (Wasm) or `dynamicmodulescustom` (native).
NS = harness.STATS
PREFIX = f"{NS}.devgate."
# Native only: the binding layer's own counters (src/host/native/bindings/state.rs), defined with
# every configuration and zero in this run (no hook re-entered, no destroy deferred or off the main
# thread; tests/e2e/test_native_reentry.py makes them move).
NATIVE_BINDING_COUNTERS = (
    [f"{PREFIX}native.{c}" for c in ("config_destroyed_off_main", "destroy_deferred", "hook_reentered")]
    if harness.NATIVE
    else []
)
ALL_COUNTERS = sorted(
    [f"{PREFIX}requests.allowed.{c}" for c in ALLOWED]
    + [f"{PREFIX}requests.denied.{c}" for c in DENIED]
    + [f"{PREFIX}config.{c}" for c in CONFIG_OUTCOMES]
    + [f"{PREFIX}login.{c}" for c in LOGIN_OUTCOMES]
    + [f"{PREFIX}upstream_challenge.{c}" for c in CHALLENGE_OUTCOMES]
    + [f"{PREFIX}revocation.{c}" for c in REVOCATION_OUTCOMES]
    + [f"{PREFIX}counter_missing"]
    + [f"{PREFIX}key_service.{c}" for c in KEY_SERVICE_EVENTS]
    + [f"{PREFIX}edge.{c}" for c in EDGE_EVENTS]
    + NATIVE_BINDING_COUNTERS
)
# Gauges: 1 while the revocation list is stale (always defined; 0 without `revocation`), the key
# service cache's slots ever filled (always defined; 0 without `api.service`), and 1 while a fetched
# assertion source has no usable keys (always defined; 0 without `edge`). The native module defines
# its gauges only with the feature configured (revocation, api.service, fetched keys), so none here.
ALL_GAUGES = (
    []
    if harness.NATIVE
    else [f"{PREFIX}revocation.degraded", f"{PREFIX}key_service.entries", f"{PREFIX}edge.keys_degraded"]
)

# Wasm: Envoy 1.40 calls devgate's on_configure twice on the main thread (once for the plugin's base VM,
# once for the main thread's own instance) and once per worker thread; the harness runs one worker.
# Native: Envoy calls the module's config_new once per filter configuration, on the main thread (the
# workers share that configuration). Each call logs one "configuration accepted|rejected" line, which
# the tests count too.
CONFIGURE_CALLS = 1 if harness.NATIVE else 2 + 1


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


SECRET = hashlib.sha256(b"devgate e2e observability k1").digest()
OTHER = hashlib.sha256(b"devgate e2e observability: not our key").digest()
ENV_K1 = "DEVGATE_E2E_OBS_K1"
ENV = {ENV_K1: b64u(SECRET)}

CONFIG = {
    "network": {"allow": ["127.0.0.1/32"]},
    "protect": ["/_debug/"],
    "keys": [{"id": "k1", "secret_env": ENV_K1}],
    "tokens": {},
    "api": {
        "routes": [
            {"prefix": "/v1/maps", "product": "maps"},
            {"prefix": "/v1/ro", "product": "maps", "mode": "read_only"},
        ],
        "revoked": ["sk-obs-revoked"],
    },
}

# The access log format envoy/envoy.yaml ships, verbatim (YAML double-quoted, JSON-compatible escapes).
SHIPPED_FORMAT = json.loads(
    re.search(r'^\s*inline_string: ("(?:[^"\\]|\\.)*")\s*$', (harness.REPO / "envoy" / "envoy.yaml").read_text(),
              re.M).group(1)
)
SHIPPED_LINE = re.compile(
    r'^\[(?P<time>[^\]]+)\] (?P<peer>\S+) "(?P<method>\S+) (?P<path>[^" ]*)" (?P<code>\d+) (?P<details>\S+) '
    r"devgate=(?P<decision>\S+) user=(?P<user>\S+)$"
)
# One JSON object per request, for exact per-field checks.
JSON_FORMAT = {
    "path": "%PATH(NQ)%",
    "method": "%REQ(:METHOD)%",
    "peer": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "code": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "upstream": "%UPSTREAM_HOST%",
    "decision": "%FILTER_STATE(wasm.devgate_decision:PLAIN)%",
    "user": "%REQ(X-WSGIORG-DEVELOPER-USER)%",
}

LOG_WAIT = 10.0  # seconds to wait for Envoy to flush a file (it flushes every 100 ms here)


# --------------------------------------------------------------------------------------------------
# credentials (every one sent is recorded; none may appear in a log)
# --------------------------------------------------------------------------------------------------

SENT: list[str] = []  # credential strings, and their secret-bearing parts


def _record(text: str) -> str:
    SENT.append(text)
    if text.count(".") == 2:
        head, body, sig = text.split(".")
        SENT.extend([body, sig])
    return text


def mint(sub: str, *, secret: bytes = SECRET, kid: str = "k1", ttl: int = 3600) -> str:
    def seg(obj) -> str:
        return b64u(json.dumps(obj, separators=(",", ":")).encode())

    t = int(time.time())
    signing_input = seg({"alg": "HS256", "kid": kid, "typ": "JWT"}) + "." + seg(
        {"sub": sub, "dgp": "developer", "iat": t - 60, "exp": t + ttl}
    )
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return _record(signing_input + "." + b64u(mac))


def mint_key(keyfile, kind: str, id: str, *extra: str, product: str = "maps") -> str:
    try:
        r = harness.run_cli("mint-key", "--kind", kind, "--org", "acme", "--project", "obs", "--product", product,
                            "--id", id, "--key-file", str(keyfile), *extra)
    except harness.HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    assert (r.returncode, r.stderr) == (0, ""), (r.returncode, r.stderr)
    return _record(r.stdout.strip())


# --------------------------------------------------------------------------------------------------
# the script
# --------------------------------------------------------------------------------------------------

NO = "-"  # how the text access log prints a field that is not set


@dataclass
class Req:
    """One scripted request and everything it must produce. `path` has a `{n}` for its sequence number,
    so each access log line names its request."""

    label: str
    method: str
    path: str
    headers: list
    source: str
    status: int
    details: str
    decision: str = NO  # allow:<code>[+<source>] | deny:<code> | NO (devgate never saw it)
    user: str = NO
    body: str | None = None
    n: int = 0

    @property
    def target(self) -> str:
        return self.path.format(n=self.n)

    @property
    def logged_path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def counter(self) -> str | None:
        if self.decision == NO:
            return None
        verdict, _, code = self.decision.partition(":")
        code = code.partition("+")[0]  # allow:private_key+network counts as private_key
        return f"{PREFIX}requests.{'allowed' if verdict == 'allow' else 'denied'}.{code}"


N_NETWORK = 5


def script(keyfile) -> list[Req]:
    alice, bob, carol = mint("alice"), mint("bob"), mint("carol")
    expired = mint("alice", ttl=-3600)
    forged = mint("alice", secret=OTHER)
    unknown_kid = mint("alice", kid="k9")
    pk = mint_key(keyfile, "public", "pk-obs", "--referer", "*.example.com")
    sk = mint_key(keyfile, "private", "sk-obs")
    skw = mint_key(keyfile, "private", "sk-obs-w", "--write")
    sk_geo = mint_key(keyfile, "private", "sk-obs-geo", product="geocoding")
    sk_revoked = mint_key(keyfile, "private", "sk-obs-revoked")
    sk_five = mint_key(keyfile, "private", "sk-obs-five", "--ip", "127.0.0.5/32")
    origin = [("Origin", "https://app.example.com")]

    def ok(label, path, headers, source, code, user=NO, via=NO, method="GET", body=None):
        # `via`: how the developer proved who they are, when that is not `code` itself (an API key)
        decision = f"allow:{code}" if via in (NO, code) else f"allow:{code}+{via}"
        return Req(label, method, path, headers, source, 200, "via_upstream", decision, user, body)

    def no(label, path, headers, source, status, code, method="GET", body=None):
        return Req(label, method, path, headers, source, status, f"devgate_{code}", f"deny:{code}", body=body)

    reqs = [ok("network", "/_debug/obs/{n}", [], DEV4, "network", DEV4, "network") for _ in range(N_NETWORK)]
    reqs += [
        ok("network-unprotected", "/obs/{n}", [], DEV4, "network", DEV4, "network"),
        ok("network-post", "/_debug/obs/{n}", [], DEV4, "network", DEV4, "network", method="POST", body="x"),
    ]
    reqs += [ok("bearer", "/_debug/obs/{n}", [("Authorization", f"Bearer {alice}")], OUTSIDER, "bearer", "alice",
                "bearer") for _ in range(3)]
    # a token names a person, so it wins over the developer address
    reqs.append(ok("bearer-from-developer", "/_debug/obs/{n}", [("Authorization", f"Bearer {carol}")], DEV4,
                   "bearer", "carol", "bearer"))
    reqs += [ok("cookie", "/_debug/obs/{n}", [("Cookie", f"a=1; devgate_token={bob}; b=2")], OUTSIDER, "cookie",
                "bob", "cookie") for _ in range(2)]
    reqs += [ok("public-key", "/v1/maps/obs/{n}?key=" + pk, origin, OUTSIDER, "public_key") for _ in range(2)]
    reqs += [ok("private-key", "/v1/maps/obs/{n}", [("X-Api-Key", sk)], OUTSIDER, "private_key") for _ in range(2)]
    reqs += [
        ok("private-key-by-developer", "/v1/maps/obs/{n}", [("X-Api-Key", sk)], DEV4, "private_key", DEV4,
           "network"),
        ok("private-key-in-query", "/v1/maps/obs/{n}?private_key=" + skw, [], OUTSIDER, "private_key"),
    ]
    reqs += [ok("anonymous", "/obs/{n}", [], OUTSIDER, "anonymous") for _ in range(3)]
    reqs += [
        ok("anonymous-ipv6", "/obs/{n}", [], DEV6_OUTSIDER, "anonymous"),
        # a bad token on an unprotected path: stripped, and the request goes on without identity
        ok("anonymous-expired-token", "/obs/{n}", [("Authorization", f"Bearer {expired}")], OUTSIDER, "anonymous"),
    ]
    reqs += [no("no-credential", "/_debug/obs/{n}", [], OUTSIDER, 401, "no_credential") for _ in range(4)]
    reqs += [
        no("no-credential-ipv6", "/_debug/obs/{n}", [], DEV6_OUTSIDER, 401, "no_credential"),
        no("no-key", "/v1/maps/obs/{n}", [], OUTSIDER, 401, "no_credential"),
        # a refused request's own identity copies are removed: the log's user is never the client's
        no("no-credential-spoofed-identity", "/_debug/obs/{n}",
           [("X-Wsgiorg-Developer-User", "root"), ("x_wsgiorg_developer_user", "admin")], OUTSIDER, 401,
           "no_credential"),
        no("no-key-developer", "/v1/maps/obs/{n}", [], DEV4, 401, "no_credential"),
    ]
    reqs += [no("expired", "/_debug/obs/{n}", [("Authorization", f"Bearer {expired}")], OUTSIDER, 401, "expired")
             for _ in range(2)]
    reqs += [
        no("forged", "/_debug/obs/{n}", [("Authorization", f"Bearer {forged}")], OUTSIDER, 401, "bad_signature"),
        no("unknown-kid", "/_debug/obs/{n}", [("Authorization", f"Bearer {unknown_kid}")], OUTSIDER, 401,
           "unknown_kid"),
        no("garbage-cookie", "/_debug/obs/{n}", [("Cookie", "devgate_token=garbage")], OUTSIDER, 401, "malformed"),
        no("bearer-and-cookie", "/_debug/obs/{n}",
           [("Authorization", f"Bearer {alice}"), ("Cookie", f"devgate_token={bob}")], OUTSIDER, 401,
           "ambiguous_credential"),
        no("bad-path", "/obs/{n}/%zz", [], OUTSIDER, 400, "bad_path"),
        # before anything else, so a developer's request too carries no identity
        no("bad-path-developer", "/obs/{n}/%255F", [], DEV4, 400, "bad_path"),
        no("wrong-product", "/v1/maps/obs/{n}", [("X-Api-Key", sk_geo)], OUTSIDER, 403, "wrong_product"),
        no("revoked", "/v1/maps/obs/{n}", [("X-Api-Key", sk_revoked)], OUTSIDER, 401, "revoked"),
        no("private-key-in-key", "/v1/maps/obs/{n}?key=" + sk, [], OUTSIDER, 401, "key_misplaced"),
        no("no-origin", "/v1/maps/obs/{n}?key=" + pk, [], OUTSIDER, 403, "referer_denied"),
        no("read-only-route", "/v1/ro/obs/{n}", [("X-Api-Key", skw)], OUTSIDER, 403, "method_not_allowed",
           method="PUT", body="x"),
        no("wrong-peer-for-key", "/v1/maps/obs/{n}", [("X-Api-Key", sk_five)], OUTSIDER, 403, "network_denied"),
        # Envoy's own normalisation refuses it before any filter: no decision, no counter
        Req("envoy-refused", "GET", "/obs/{n}/x%00y", [], OUTSIDER, 400, "path_normalization_failed"),
    ]
    random.Random(20240601).shuffle(reqs)  # a fixed interleaving
    for i, r in enumerate(reqs):
        r.n = i
    return reqs


def expected_counts(reqs: list[Req]) -> dict[str, int]:
    counts = {name: 0 for name in ALL_COUNTERS}
    for name, k in Counter(r.counter for r in reqs if r.counter).items():
        assert name in counts, f"the script expects a counter devgate does not define: {name}"
        counts[name] = k
    counts[f"{PREFIX}config.accepted"] = CONFIGURE_CALLS
    return counts


# --------------------------------------------------------------------------------------------------
# the run: one Envoy, the script sent once; every test reads what it left behind
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    envoy: harness.Envoy
    reqs: list
    responses: list
    json_log: object
    text_log: object


def wait_for_lines(path, n: int, what: str) -> list[str]:
    deadline = time.monotonic() + LOG_WAIT
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == n, f"{what}: {len(lines)} lines, expected {n} ({path})"
    return lines


def config_log_lines(envoy: harness.Envoy, outcome: str) -> int:
    return sum(f"devgate: configuration {outcome}" in line for line in envoy.log_text().splitlines())


@pytest.fixture(scope="module")
def run(tmp_path_factory, upstream, wasm) -> Run:
    work = tmp_path_factory.mktemp("observability")
    keyfile = work / "k1.key"
    keyfile.write_text(b64u(SECRET) + "\n")
    keyfile.chmod(0o600)
    json_log, text_log = work / "access.jsonl", work / "access.log"
    cfg = harness.render_bootstrap(
        upstream_port=upstream.port, plugin_config=CONFIG, env=ENV, wasm=wasm,
        access_log=[harness.file_access_log(json_log, json_format=JSON_FORMAT),
                    harness.file_access_log(text_log, text=SHIPPED_FORMAT)],
    )
    envoy = call_or_fail(harness.start_envoy, cfg, work / "envoy", log_level="info", extra_args=harness.FAST_FLUSH)
    try:
        reqs = script(keyfile)
        responses = [envoy.request(r.method, r.target, r.headers, source=r.source, body=r.body) for r in reqs]
        yield Run(envoy, reqs, responses, json_log, text_log)
    finally:
        envoy.stop()


def test_every_request_got_what_the_script_says(run):
    assert len(run.reqs) >= 40
    for req, resp in zip(run.reqs, run.responses):
        assert resp.status == req.status, (req.label, resp.summary())
        if req.status == 200:
            assert resp.from_upstream, (req.label, resp.summary())
        else:
            assert not resp.from_upstream and resp.details == req.details, (req.label, resp.summary())


def test_counters_exact_in_admin_stats(run):
    """Every counter devgate defines is listed (zeros included), each with exactly the script's count;
    nothing else is under <ns>.devgate."""
    stats = run.envoy.counters("devgate")
    ours = {k: v for k, v in stats.items() if k.startswith(PREFIX) and k not in ALL_GAUGES}
    assert sorted(ours) == ALL_COUNTERS, sorted(set(ours) ^ set(ALL_COUNTERS))
    assert {k: v for k, v in stats.items() if k in ALL_GAUGES} == {g: 0 for g in ALL_GAUGES}
    want = expected_counts(run.reqs)
    wrong = {k: (ours[k], want[k]) for k in ALL_COUNTERS if ours[k] != want[k]}
    assert not wrong, f"(got, expected): {wrong}"
    assert ours[f"{PREFIX}requests.allowed.network"] == N_NETWORK + 2
    assert ours[f"{PREFIX}requests.denied.internal_error"] == 0
    # the allow and deny counters add up to the requests devgate saw (all but Envoy's own refusal)
    seen = sum(v for k, v in ours.items() if ".requests." in k)
    assert seen == len([r for r in run.reqs if r.decision != NO]) == len(run.reqs) - 1
    if harness.NATIVE:
        return  # the rest is about the Wasm VM
    # Envoy's own counters for the plugin's VM: no reload, so no trap
    assert {k: v for k, v in stats.items() if k.startswith("wasm.devgate.vm_reload")} == {
        "wasm.devgate.vm_reload": 0, "wasm.devgate.vm_reload_backoff": 0,
        "wasm.devgate.vm_reload_failure": 0, "wasm.devgate.vm_reload_success": 0}


def test_config_accepted_counts_every_configure_call(run):
    deadline = time.monotonic() + LOG_WAIT
    while config_log_lines(run.envoy, "accepted") < CONFIGURE_CALLS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert config_log_lines(run.envoy, "accepted") == CONFIGURE_CALLS
    assert config_log_lines(run.envoy, "rejected") == 0
    stats = run.envoy.counters(rf"^{NS}\.devgate\.config\.")
    assert stats == {f"{PREFIX}config.accepted": CONFIGURE_CALLS, f"{PREFIX}config.rejected": 0}


# The Prometheus name of a devgate stat: `wasmcustom` is dropped (a registered custom namespace);
# `dynamicmodulescustom` is kept, with Envoy's `envoy_` prefix (Envoy 1.40 does not register it).
PROM = "envoy_dynamicmodulescustom_" if harness.NATIVE else ""


def prom_name(stat: str) -> str:
    return PROM + stat.removeprefix(f"{NS}.").replace(".", "_")


PROM_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def prometheus(envoy: harness.Envoy) -> tuple[dict, dict]:
    """({(name, labels): value}, {name: type}) from admin /stats/prometheus."""
    status, text = envoy.admin("/stats/prometheus")
    assert status == 200, text[:300]
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            m = PROM_LINE.match(line)
            assert m, f"not a Prometheus sample: {line!r}"
            samples[(m["name"], m["labels"] or "")] = float(m["value"])
    return samples, types


def test_prometheus_names(run):
    """What Envoy 1.40 exports for devgate's counters in /stats/prometheus (no stats_tags configured).

    `wasmcustom` is one of Envoy's *custom stat namespaces* (the Wasm extension registers it). For
    those, the Prometheus exporter drops the namespace and does NOT add Envoy's `envoy_` prefix; the
    rest of the name has its dots turned into underscores, and there are no labels:

        wasmcustom.devgate.requests.allowed.network  ->  devgate_requests_allowed_network{} 7
        wasmcustom.devgate.requests.denied.expired   ->  devgate_requests_denied_expired{} 2
        wasmcustom.devgate.config.accepted           ->  devgate_config_accepted{} 3

    each preceded by `# TYPE devgate_... counter`. No `envoy_wasmcustom_...` name exists. Envoy's own
    stats for the plugin's VM keep the usual form: `wasm.devgate.vm_reload` ->
    `envoy_wasm_devgate_vm_reload{} 0`. To get one metric with the code as a label instead, configure
    tag extraction (test_prometheus_labels_with_stats_tags).

    The native module's `dynamicmodulescustom` is NOT a registered custom namespace in Envoy 1.40: its
    names keep the namespace and get the `envoy_` prefix like Envoy's own stats (PROM, below):

        dynamicmodulescustom.devgate.requests.allowed.network
            ->  envoy_dynamicmodulescustom_devgate_requests_allowed_network{} 7
    """
    samples, types = prometheus(run.envoy)
    want = expected_counts(run.reqs)
    ours = {k: v for k, v in samples.items() if k[0].startswith(PROM + "devgate_")}
    for gauge in ALL_GAUGES:
        assert ours.pop((prom_name(gauge), "")) == 0.0
        assert types[prom_name(gauge)] == "gauge"
    expected = {(prom_name(name), ""): float(v) for name, v in want.items()}
    assert ours == expected, sorted(set(ours.items()) ^ set(expected.items()))
    for name, _ in expected:
        assert types.get(name) == "counter", name
    if harness.NATIVE:
        assert not [k for k in samples if k[0].startswith("devgate_")]
    else:
        assert not [k for k in samples if NS in k[0]]
        assert samples[("envoy_wasm_devgate_vm_reload", "")] == 0


# With the native module the regexes name its namespace: `^dynamicmodulescustom\\.devgate\\...`.
TAGS = [
    {"tag_name": "devgate_allowed", "regex": rf"^{NS}\.devgate\.requests\.allowed(\.(\w+))$"},
    {"tag_name": "devgate_reason", "regex": rf"^{NS}\.devgate\.requests\.denied(\.(\w+))$"},
    {"tag_name": "devgate_outcome", "regex": rf"^{NS}\.devgate\.config(\.(\w+))$"},
    {"tag_name": "devgate_login", "regex": rf"^{NS}\.devgate\.login(\.(\w+))$"},
    {"tag_name": "devgate_translation", "regex": rf"^{NS}\.devgate\.upstream_challenge(\.(\w+))$"},
]


def test_prometheus_labels_with_stats_tags(tmp_path, upstream, wasm):
    """With bootstrap `stats_config.stats_tags` (the first capture group is cut from the name, the second
    becomes the tag's value) Envoy exports one metric per family, the code as a label:

        stats_config:
          stats_tags:
            - tag_name: devgate_allowed
              regex: '^wasmcustom\\.devgate\\.requests\\.allowed(\\.(\\w+))$'
            - tag_name: devgate_reason
              regex: '^wasmcustom\\.devgate\\.requests\\.denied(\\.(\\w+))$'
            - tag_name: devgate_outcome
              regex: '^wasmcustom\\.devgate\\.config(\\.(\\w+))$'
            - tag_name: devgate_login
              regex: '^wasmcustom\\.devgate\\.login(\\.(\\w+))$'
            - tag_name: devgate_translation
              regex: '^wasmcustom\\.devgate\\.upstream_challenge(\\.(\\w+))$'

        devgate_requests_allowed{devgate_allowed="network"} 1
        devgate_requests_denied{devgate_reason="no_credential"} 2
        devgate_config{devgate_outcome="accepted"} 3

    (native: the same with the regexes on `dynamicmodulescustom` and each name prefixed
    `envoy_dynamicmodulescustom_`, see test_prometheus_names.)
    Admin /stats (text and JSON) keeps the full dotted names either way.
    """
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=CONFIG, env=ENV, wasm=wasm)
    cfg["stats_config"] = {"stats_tags": TAGS}
    envoy = call_or_fail(harness.start_envoy, cfg, tmp_path / "envoy")
    try:
        assert envoy.request("GET", "/_debug/", source=DEV4).status == 200
        assert envoy.request("GET", "/", source=OUTSIDER).status == 200
        for _ in range(2):
            assert envoy.request("GET", "/_debug/", source=OUTSIDER).status == 401
        samples, types = prometheus(envoy)
        ours = {k: v for k, v in samples.items() if k[0].startswith(PROM + "devgate_")}
        expected = {(PROM + "devgate_requests_allowed", f'devgate_allowed="{c}"'): 0.0 for c in ALLOWED}
        expected.update({(PROM + "devgate_requests_denied", f'devgate_reason="{c}"'): 0.0 for c in DENIED})
        expected.update({(PROM + "devgate_config", f'devgate_outcome="{c}"'): 0.0 for c in CONFIG_OUTCOMES})
        expected.update({(PROM + "devgate_login", f'devgate_login="{c}"'): 0.0 for c in LOGIN_OUTCOMES})
        expected.update(
            {(PROM + "devgate_upstream_challenge", f'devgate_translation="{c}"'): 0.0 for c in CHALLENGE_OUTCOMES}
        )
        expected.update({(f"{PROM}devgate_revocation_{c}", ""): 0.0 for c in REVOCATION_OUTCOMES})
        expected.update({(f"{PROM}devgate_key_service_{c}", ""): 0.0 for c in KEY_SERVICE_EVENTS})
        expected[(PROM + "devgate_counter_missing", "")] = 0.0
        for counter in NATIVE_BINDING_COUNTERS:
            expected[(prom_name(counter), "")] = 0.0
        for gauge in ALL_GAUGES:
            expected[(prom_name(gauge), "")] = 0.0
        expected[(PROM + "devgate_requests_allowed", 'devgate_allowed="network"')] = 1
        expected[(PROM + "devgate_requests_allowed", 'devgate_allowed="anonymous"')] = 1
        expected[(PROM + "devgate_requests_denied", 'devgate_reason="no_credential"')] = 2
        expected[(PROM + "devgate_config", 'devgate_outcome="accepted"')] = CONFIGURE_CALLS
        assert ours == expected, sorted(set(ours.items()) ^ set(expected.items()))
        for name in ("devgate_requests_allowed", "devgate_requests_denied", "devgate_config"):
            assert types[PROM + name] == "counter"
        stats = envoy.counters(rf"^{NS}\.devgate\.")
        assert sorted(stats) == sorted(ALL_COUNTERS + ALL_GAUGES)
        assert stats[f"{PREFIX}requests.denied.no_credential"] == 2
        assert envoy.devgate_problems() == []
    finally:
        envoy.stop()


def test_access_log_fields_per_request(run):
    """One JSON line per request: the decision devgate set, the identity the upstream got, Envoy's response code
    details, and whether an upstream was reached; Envoy prints an unset field as null here."""
    lines = wait_for_lines(run.json_log, len(run.reqs), "JSON access log")
    by_path = {}
    for line in lines:
        entry = json.loads(line)
        by_path[entry["path"]] = entry
    assert len(by_path) == len(run.reqs), "each request's path is unique"

    def unset(v):
        return None if v == NO else v

    for req in run.reqs:
        entry = by_path.get(req.logged_path)
        assert entry is not None, f"no access log line for {req.label} {req.logged_path}: {sorted(by_path)[:5]}"
        got = {k: entry[k] for k in ("method", "peer", "code", "details", "decision", "user")}
        want = {"method": req.method, "peer": req.source, "code": req.status, "details": req.details,
                "decision": unset(req.decision), "user": unset(req.user)}
        assert got == want, (req.label, entry)
        # devgate's denials and Envoy's refusal never reach the upstream
        assert (entry["upstream"] is not None) == (req.status == 200), (req.label, entry)


def test_shipped_access_log_format(run):
    """The format envoy/envoy.yaml ships, parsed back: the same fields for every request, `-` when unset."""
    assert "%FILTER_STATE(wasm.devgate_decision:PLAIN)%" in SHIPPED_FORMAT and "%PATH(NQ)%" in SHIPPED_FORMAT
    lines = wait_for_lines(run.text_log, len(run.reqs), "access log in the shipped format")
    parsed = {}
    for line in lines:
        m = SHIPPED_LINE.match(line)
        assert m, f"line does not parse: {line!r}"
        parsed[m["path"]] = m
    for req in run.reqs:
        m = parsed[req.logged_path]
        peer = m["peer"].rsplit(":", 1)[0].strip("[]")
        got = (m["method"], peer, int(m["code"]), m["details"], m["decision"], m["user"])
        assert got == (req.method, req.source, req.status, req.details, req.decision, req.user), (
            req.label, m.string)


def test_logs_never_contain_a_credential(run):
    """Last test of the module: stops Envoy so every log is flushed, then looks for each token, key and
    signing secret that was sent (and their payload and signature segments) in both access logs and
    Envoy's own log."""
    envoy = run.envoy
    assert envoy.alive() and envoy.devgate_problems() == []
    envoy.stop()
    texts = {
        "json access log": run.json_log.read_text(),
        "text access log": run.text_log.read_text(),
        "envoy log": envoy.log_text(),
    }
    assert "devgate: configuration accepted" in texts["envoy log"], "the filter's info lines should be there"
    secrets = sorted(set(SENT)) + [b64u(SECRET), b64u(OTHER)]
    assert len(SENT) > 30
    for where, text in texts.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} credential strings in the {where}: {[s[:12] + '...' for s in leaked]}"
        assert not re.search(r"dg[ps]k_", text), where
        assert "devgate_token=" not in text and "Bearer" not in text, where
    assert not envoy.devgate_problems(), envoy.devgate_problems()


# --------------------------------------------------------------------------------------------------
# config.rejected: a refused configuration pushed to a running Envoy (filesystem LDS)
# --------------------------------------------------------------------------------------------------


def wait_for(fn, what: str, timeout: float = LOG_WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert value, f"timed out waiting for {what}"
    return value


def test_config_counters_across_live_updates(tmp_path, upstream, wasm):
    """A refused update counts once in config.rejected (Envoy validates it on the main thread and keeps
    the old listener, which goes on enforcing the old policy); an accepted one adds one
    config.accepted per configure call (CONFIGURE_CALLS). Each outcome logs one line."""
    lds = tmp_path / "lds.json"
    first = {"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/_debug/"]}
    second = {"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/_admin/"]}
    boot, listener = harness.render_lds_bootstrap(lds, upstream_port=upstream.port, plugin_config=first, wasm=wasm,
                                                  listen=[(DEV4, 0)])
    harness.write_lds(lds, listener, version="first")
    envoy = call_or_fail(harness.start_envoy, boot, tmp_path / "envoy", log_level="info",
                         extra_args=harness.FAST_FLUSH)
    config = rf"^({NS}\.devgate\.config\.|listener_manager\.lds\.update_(success|rejected)$)"
    try:
        assert envoy.counters(config) == {
            f"{PREFIX}config.accepted": CONFIGURE_CALLS, f"{PREFIX}config.rejected": 0,
            "listener_manager.lds.update_success": 1, "listener_manager.lds.update_rejected": 0}

        harness.write_lds(lds, harness.set_plugin_config(listener, {"protect": "/_debug/"}), version="bad")
        wait_for(lambda: envoy.counters(config)["listener_manager.lds.update_rejected"] == 1, "the LDS rejection")
        assert envoy.counters(config) == {
            f"{PREFIX}config.accepted": CONFIGURE_CALLS, f"{PREFIX}config.rejected": 1,
            "listener_manager.lds.update_success": 1, "listener_manager.lds.update_rejected": 1}
        assert envoy.request("GET", "/_debug/", source=OUTSIDER).status == 401  # the old policy still holds
        wait_for(lambda: config_log_lines(envoy, "rejected") == 1, "the rejection's log line")

        harness.write_lds(lds, harness.set_plugin_config(listener, second), version="second")
        wait_for(lambda: envoy.counters(config)["listener_manager.lds.update_success"] == 2, "the LDS update")
        assert envoy.counters(config) == {
            f"{PREFIX}config.accepted": 2 * CONFIGURE_CALLS, f"{PREFIX}config.rejected": 1,
            "listener_manager.lds.update_success": 2, "listener_manager.lds.update_rejected": 1}
        wait_for(lambda: envoy.request("GET", "/_admin/x", source=OUTSIDER).status == 401, "the new policy")
        assert envoy.request("GET", "/_debug/", source=OUTSIDER).status == 200
        wait_for(lambda: config_log_lines(envoy, "accepted") == 2 * CONFIGURE_CALLS, "the accepted log lines")
        assert config_log_lines(envoy, "rejected") == 1
        problems = envoy.devgate_problems()
        if harness.NATIVE:
            assert problems == [], problems
        else:
            # Envoy reports the refusal as a "VM failed" line; that one, once, and no reload or trap
            assert len(problems) == 1 and "Failed to configure base Wasm plugin" in problems[0], problems
    finally:
        envoy.stop()


def test_denial_notes_follow_envoys_log_level(upstream, tmp_path_factory):
    """A refused request's log line is a debug note, on either host: the module asks Envoy whether
    its logger writes debug lines (natively `log_enabled` on the `dynamic_modules` logger; in Wasm
    the `wasm` logger's level, read when the configuration comes) and formats and writes the note
    only then, so it is in the log at debug and costs nothing at Envoy's default level."""
    seen = {}
    for level in ("info", "debug"):
        config = {"network": {"allow": ["127.0.0.1/32"]}, "protect": ["/"]}
        cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=config, wasm=harness.wasm_path())
        envoy = harness.start_envoy(cfg, tmp_path_factory.mktemp(f"notes-{level}"), log_level=level,
                                    extra_args=harness.FAST_FLUSH)
        try:
            r = envoy.request("GET", "/", [], source="127.0.0.77")
            assert r.status == 401 and not r.from_upstream, r.summary()
        finally:
            envoy.stop()
        seen[level] = "devgate: denied 401 (no_credential)" in envoy.log_text()
    assert seen == {"info": False, "debug": True}, seen

"""The soak's traffic: devgate's configuration, the upstream that reflects what it received, the
credentials (minted with the shipped CLI), the traffic classes and the one answer each must get.
bench/soak.py describes the soak."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from soak_common import (
    ALICE_05,
    ALICE_PASSWORD,
    BEARER_SUB,
    CHALLENGE,
    DEV,
    HOST,
    IDENTITY,
    LOGIN,
    LOGIN_MAX_FAILURES,
    LOGIN_PEERS,
    LOGIN_WINDOW,
    OUTSIDER,
    SECRET,
    SECRET_ENV,
    SESSION_PEER,
    USERS_ENV,
    WORK,
    SoakError,
    b64u,
    harness,
)

# --------------------------------------------------------------------------------------------------
# Configuration and credentials
# --------------------------------------------------------------------------------------------------


def devgate_config() -> dict:
    """devgate's configuration: every feature a traffic class uses."""
    return {
        "network": {"allow": [f"{DEV}/32"]},
        "protect": ["/_debug/"],
        "public": ["/healthz"],
        "keys": [{"id": "k1", "secret_env": SECRET_ENV}],
        "tokens": {},
        "api": {"routes": [{"prefix": "/v1/maps", "product": "maps"},
                           {"prefix": "/v1/geo", "product": "geocoding"}]},
        "login": {
            "users_env": USERS_ENV,
            "allow_from": ["127.0.0.0/28"],
            "max_failures": LOGIN_MAX_FAILURES,
            "failure_window_seconds": LOGIN_WINDOW,
            # The process-wide verify budget opened to its maximum: at its default (3 at once, then
            # 2 a second) the paced failed logins would mostly get its 429 (over_budget) and never
            # the per-address limiter's; the budget has its own test (tests/e2e/test_login.py).
            "verifies_per_minute": 60000,
            "verify_burst": 1000,
        },
    }


# The key and the login users: the Wasm VM's environment, or natively Envoy's process environment
# (the harness puts them where the host reads them).
DEVGATE_ENV = {SECRET_ENV: b64u(SECRET), USERS_ENV: ALICE_05 + "\n"}

# What the upstream reflects: response header -> the request header it received (absent when the
# request had none: Envoy leaves out headers whose value formats to "").
ECHO = {
    "x-soak-upstream": None,  # always "1": the answer came from the upstream
    "x-soak-identity": IDENTITY,
    "x-soak-authorization": "authorization",
    "x-soak-cookie": "cookie",
    "x-soak-api-key": "x-api-key",
    "x-soak-key-kind": "x-devgate-key-kind",
    "x-soak-project": "x-devgate-project",
    "x-soak-organization": "x-devgate-organization",
}


def upstream_bootstrap() -> dict:
    """The upstream: an Envoy answering 200 itself, reflecting what it received (ECHO)."""
    headers = [{"header": {"key": k, "value": "1" if v is None else f"%REQ({v})%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in ECHO.items()]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "soak_upstream",
        "codec_type": "AUTO",
        "route_config": {
            "name": "upstream",
            "virtual_hosts": [{
                "name": "upstream",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}],
                "response_headers_to_add": headers,
            }],
        },
        # The buffer filter: like an application, the upstream reads a request to its end before
        # it answers. (A direct_response alone answers on the headers. The native module forwards
        # a login POST's headers while it checks the form on its pool, so such an upstream's 200
        # reached the client before devgate's answer: a bug this soak found, reported with the
        # change that added this filter; the soak measures the rest meanwhile.)
        "http_filters": [{"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 65536}},
                         {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": "soak_upstream",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}],
        }]},
    }


def cli(*args: str) -> str:
    """`devgate ARGS...`'s output, or SoakError."""
    r = harness.run_cli(*args)
    if r.returncode != 0:
        raise SoakError(f"devgate {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


@dataclass
class Credentials:
    token: str
    expired: str
    private_maps: str
    private_geo: str


def make_credentials(ttl_seconds: int) -> Credentials:
    """Everything minted with the shipped CLI (`devgate mint`, `devgate mint-key`) from a 0600 key file."""
    key_file = WORK / "k1.key"
    key_file.write_text(b64u(SECRET) + "\n")
    key_file.chmod(0o600)
    kf = str(key_file)
    now = int(time.time())
    hours = max(2, math.ceil(ttl_seconds / 3600) + 1)
    return Credentials(
        token=cli("mint", "--sub", BEARER_SUB, "--ttl", f"{hours}h", "--key-file", kf),
        # issued two hours ago for one hour: expired an hour ago, far beyond the 30 s leeway
        expired=cli("mint", "--sub", BEARER_SUB, "--ttl", "1h", "--now", str(now - 7200), "--key-file", kf),
        private_maps=cli("mint-key", "--kind", "private", "--org", "acme", "--project", "soak",
                         "--product", "maps", "--id", "sk-soak-maps", "--key-file", kf),
        private_geo=cli("mint-key", "--kind", "private", "--org", "acme", "--project", "soak",
                        "--product", "geocoding", "--id", "sk-soak-geo", "--key-file", kf),
    )


def login_for_session(env: harness.Envoy) -> str:
    """Log alice in through the form, as a browser would: the `devgate_session=...` it sets."""
    body = f"username=alice&password={ALICE_PASSWORD.replace(' ', '+')}&back=%2F_debug%2Fvars"
    r = env.request("POST", LOGIN, [("Origin", f"http://{HOST}"),
                                    ("Content-Type", "application/x-www-form-urlencoded")],
                    source=SESSION_PEER, body=body)
    if r.status != 303:
        raise SoakError(f"alice could not log in: {r.summary()}")
    for value in r.header_all("set-cookie"):
        if value.startswith("devgate_session="):
            return value.split(";", 1)[0]
    raise SoakError(f"the login set no session cookie: {r.summary()}")


# --------------------------------------------------------------------------------------------------
# Traffic classes
# --------------------------------------------------------------------------------------------------


def wire(method: str, path: str, headers: list, body: str | None = None) -> bytes:
    """One HTTP/1.1 request as bytes (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"] + [f"{k}: {v}" for k, v in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + (body or "")).encode("latin-1")


@dataclass
class TrafficClass:
    name: str
    sources: list  # one connection per source (per lane); failed_login rotates over several
    requests: list  # wire bytes, sent in turn
    statuses: tuple  # the statuses it may get
    # response header -> value it must have (None: must be absent); checked on every answer
    expect: dict = field(default_factory=dict)
    paced: bool = False  # failed logins: SOAK_LOGIN_RATE in all, not closed loop
    what: str = ""


def traffic_classes(c: Credentials, session_cookie: str) -> list[TrafficClass]:
    forged = (IDENTITY, "forged")
    absent_upstream = {"x-soak-upstream": None}  # devgate answered itself

    def upstream(identity=None, **more):
        exp = {"x-soak-upstream": "1", "x-soak-identity": identity, "x-soak-authorization": None,
               "x-soak-api-key": None, "x-soak-key-kind": None, "x-soak-project": None}
        exp.update(more)
        return exp

    def denied(details, challenge):
        return {**absent_upstream, harness.DETAILS_HEADER: details,
                "www-authenticate": CHALLENGE if challenge else None, "cache-control": "no-store"}

    form = [("Origin", f"http://{HOST}"), ("Content-Type", "application/x-www-form-urlencoded")]
    wrong = [f"username=alice&password=wrong-{i}" for i in range(3)] + ["username=mallory&password=x"]
    return [
        TrafficClass("network_dev", [DEV], [wire("GET", "/_debug/vars", [forged])], (200,),
                     upstream(DEV), what="network developer, forged identity header"),
        TrafficClass("bearer", [OUTSIDER], [wire("GET", "/_debug/vars",
                                                 [("Authorization", f"Bearer {c.token}"), forged])],
                     (200,), upstream(BEARER_SUB), what="Authorization: Bearer <token>"),
        TrafficClass("session", [SESSION_PEER], [wire("GET", "/_debug/vars",
                                                      [("Cookie", f"theme=dark; {session_cookie}"), forged])],
                     (200,), upstream("alice", **{"x-soak-cookie": "theme=dark"}),
                     what="session cookie from a real login"),
        TrafficClass("api_private", [OUTSIDER], [wire("GET", "/v1/maps/tiles?z=3",
                                                      [("X-Api-Key", c.private_maps), forged])],
                     (200,), upstream(None, **{"x-soak-key-kind": "private_key", "x-soak-project": "soak",
                                               "x-soak-organization": "acme"}),
                     what="private API key (X-Api-Key) on an API route"),
        TrafficClass("public", [OUTSIDER], [wire("GET", "/healthz", [forged])], (200,), upstream(None),
                     what="public path, anonymous, forged identity header"),
        TrafficClass("deny_anonymous", [OUTSIDER], [wire("GET", "/_debug/vars", [])], (401,),
                     denied("devgate_no_credential", True), what="protected path, no credential"),
        TrafficClass("deny_expired", [OUTSIDER], [wire("GET", "/_debug/vars",
                                                       [("Authorization", f"Bearer {c.expired}")])],
                     (401,), denied("devgate_expired", True), what="expired token"),
        TrafficClass("deny_product", [OUTSIDER], [wire("GET", "/v1/maps/tiles?z=3",
                                                       [("X-Api-Key", c.private_geo)])],
                     (403,), denied("devgate_wrong_product", False), what="private key for another product"),
        TrafficClass("failed_login", list(LOGIN_PEERS), [wire("POST", LOGIN, form, b) for b in wrong],
                     (401, 429), {**absent_upstream, "cache-control": "no-store"}, paced=True,
                     what="POST /.devgate/login, wrong password, rotating peers"),
    ]


FAILED_LOGIN_DETAILS = {401: ("devgate_login_failed", CHALLENGE), 429: ("devgate_login_rate_limited", None)}


def check_answer(tc: TrafficClass, status: int, headers: dict) -> str | None:
    """None if the answer is what the class must get, else what is wrong."""
    if status not in tc.statuses:
        return f"status {status}, expected {'/'.join(map(str, tc.statuses))}"
    for name, want in tc.expect.items():
        got = headers.get(name)
        if got != want:
            return f"{name}: {got!r}, expected {want!r}"
    if tc.name == "failed_login":
        details, challenge = FAILED_LOGIN_DETAILS[status]
        if headers.get(harness.DETAILS_HEADER) != details or headers.get("www-authenticate") != challenge:
            return (f"{status} with details {headers.get(harness.DETAILS_HEADER)!r}, www-authenticate "
                    f"{headers.get('www-authenticate')!r}")
    return None

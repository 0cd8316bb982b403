"""API keys (README "API keys", src/core/apikey.rs) end to end: minted by `devgate mint-key`, checked by
devgate in the real Envoy, the result read back from the demo upstream's echo.

Peers (clients bind their socket to these loopback addresses; see test_network.py):
  127.0.0.1    the network developer (network.allow is only 127.0.0.1/32)
  127.0.0.5    an API client inside `api.internal_from`, and the one address a restricted key allows
  127.0.0.77   an ordinary API client
/_debug/ is protected, so API clients are never developers there.

The signing secret reaches the filter through vm_config.environment_variables (`secret_env`); the
CLI reads the same secret from a 0600 key file. Every minted key string is recorded, and the last
test greps Envoy's log for each of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass

import pytest

import harness
from harness import IDENTITY_HEADER as H
from harness import HarnessError, Response

DEV4 = "127.0.0.1"
FIVE = "127.0.0.5"
OUTSIDER = "127.0.0.77"

CHALLENGE = "x-wsgiorg.developer_user"

ORG = "x-devgate-organization"
PROJECT = "x-devgate-project"
KIND = "x-devgate-key-kind"
KEY_ID = "x-devgate-key-id"
COUNT = "x-devgate-count"
API_HEADERS = (ORG, PROJECT, KIND, KEY_ID, COUNT)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


SECRET = hashlib.sha256(b"devgate e2e api keys k1").digest()
OTHER_SECRET = hashlib.sha256(b"devgate e2e api keys: someone else's secret").digest()
ENV_K1 = "DEVGATE_E2E_API_K1"
ENV = {ENV_K1: b64u(SECRET)}

ROUTES = [
    {"prefix": "/v1/maps", "product": "maps"},  # mode defaults to read_write
    {"prefix": "/v1/rw", "product": "maps", "mode": "read_write"},
    {"prefix": "/v1/ro", "product": "maps", "mode": "read_only"},
    {"prefix": "/v1/wo", "product": "maps", "mode": "write_only"},
    {"prefix": "/v1/geo", "product": "geocoding"},
    {"prefix": "/v1/upload", "product": "maps", "mode": "write_only", "methods": ["POST"]},
]
REVOKED_IDS = ["sk-revoked", "pk-revoked"]


def api_config(**api_extra) -> dict:
    return {
        "network": {"allow": ["127.0.0.1/32"]},
        "protect": ["/_debug/"],
        "keys": [{"id": "k1", "secret_env": ENV_K1}],
        "api": {"routes": ROUTES, "revoked": REVOKED_IDS, "internal_from": ["127.0.0.5/32"], **api_extra},
    }


MAIN = api_config()
# strip_key off, and two header names changed (one written with '_' and capitals: the config folds it).
UNSTRIPPED = api_config(strip_key=False, headers={"organization": "x-org-id", "project": "X_Project_Ref"})
# info: the filter's own log lines (configuration accepted, warnings) land in the log the last test greps.
LOG_LEVEL = "info"


def main_gate(gate) -> harness.Envoy:
    return gate(MAIN, env=ENV, log_level=LOG_LEVEL)


def unstripped_gate(gate) -> harness.Envoy:
    return gate(UNSTRIPPED, env=ENV, log_level=LOG_LEVEL)


# --------------------------------------------------------------------------------------------------
# minting with the CLI
# --------------------------------------------------------------------------------------------------

MINTED: list[str] = []  # every key (and key-like string) sent to Envoy by this module

KEY_RE = re.compile(r"dg[ps]k_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Key:
    text: str
    kind: str  # the value devgate sends upstream: public_key / private_key
    id: str
    org: str
    project: str

    @property
    def signature(self) -> str:
        return self.text.rsplit(".", 1)[1]


def cli(*args, **kw):
    try:
        return harness.run_cli(*args, **kw)
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


def now() -> int:
    return int(time.time())


def write_key_file(path, secret: bytes):
    path.write_text(b64u(secret) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory):
    return write_key_file(tmp_path_factory.mktemp("apikeys") / "k1.key", SECRET)


@pytest.fixture(scope="module")
def other_keyfile(tmp_path_factory):
    return write_key_file(tmp_path_factory.mktemp("apikeys-other") / "other.key", OTHER_SECRET)


def mint_key(keyfile, kind: str, *, id: str, org: str = "acme", project: str = "web", product: str = "maps",
             extra: tuple = ()) -> Key:
    r = cli("mint-key", "--kind", kind, "--org", org, "--project", project, "--product", product, "--id", id,
            "--key-file", str(keyfile), *extra)
    assert (r.returncode, r.stderr) == (0, ""), (r.returncode, r.stderr)
    text = r.stdout.strip()
    assert r.stdout == text + "\n" and KEY_RE.fullmatch(text), r.stdout
    assert text.startswith("dgpk_" if kind == "public" else "dgsk_")
    MINTED.append(text)
    return Key(text, f"{kind}_key", id, org, project)


def relabel(key: Key, text: str) -> Key:
    MINTED.append(text)
    return Key(text, key.kind, key.id, key.org, key.project)


@pytest.fixture(scope="module")
def keys(keyfile) -> dict[str, Key]:
    """Keys without time pressure (no expiry), minted once for the module."""
    ref = ("--referer", "*.example.com,exact.example.org")
    return {
        "pk": mint_key(keyfile, "public", id="pk-web", extra=ref),
        "pk_open": mint_key(keyfile, "public", id="pk-open", project="sdk"),
        "pk_geo": mint_key(keyfile, "public", id="pk-geo", product="geocoding", extra=ref),
        "sk": mint_key(keyfile, "private", id="sk-ro", org="acme-data", project="etl"),
        "skw": mint_key(keyfile, "private", id="sk-rw", project="etl", extra=("--write",)),
        "sk_five": mint_key(keyfile, "private", id="sk-five", project="batch",
                            extra=("--ip", "127.0.0.5/32", "--write")),
        "sk_geo": mint_key(keyfile, "private", id="sk-geo", product="geocoding"),
        "sk_both": mint_key(keyfile, "private", id="sk-both", product="maps,geocoding"),
        "sk_revoked": mint_key(keyfile, "private", id="sk-revoked"),
        "pk_revoked": mint_key(keyfile, "public", id="pk-revoked", extra=ref),
    }


def with_param(path: str, name: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{name}={value}"


def q_key(path: str, key: Key) -> str:
    return with_param(path, "key", key.text)


def q_private(path: str, key: Key) -> str:
    return with_param(path, "private_key", key.text)


def x_api_key(key: Key) -> list:
    return [("X-Api-Key", key.text)]


ORIGIN_OK = [("Origin", "https://app.example.com")]


# --------------------------------------------------------------------------------------------------
# assertions
# --------------------------------------------------------------------------------------------------


def assert_api_pass(r: Response, key: Key, *, count: str = "true", developer: str | None = None) -> harness.Echo:
    """Reached the upstream with exactly one of each project header, devgate's values, and no key."""
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    want = {ORG: key.org, PROJECT: key.project, KIND: key.kind, KEY_ID: key.id, COUNT: count}
    for name, value in want.items():
        assert echo.spellings(name) == [(name, value)], f"upstream saw {echo.spellings(name)} for {name}"
    assert echo.spellings(H) == ([(H, developer)] if developer else []), echo.spellings(H)
    return echo


def assert_key_gone(echo: harness.Echo, key: Key) -> None:
    seen = echo.path + json.dumps(echo.headers) + echo.body
    assert key.text not in seen and key.signature not in seen, "the key reached the upstream"
    assert echo.spellings("x-api-key") == [], echo.headers


def assert_no_api_headers(echo: harness.Echo) -> None:
    for name in API_HEADERS:
        assert echo.spellings(name) == [], f"upstream saw {echo.spellings(name)}"


def _local_reply(r: Response, code: str) -> None:
    assert not r.from_upstream, f"reached the upstream: {r.summary()}"
    assert r.details == f"devgate_{code}", r.summary()
    assert r.header("cache-control") == "no-store", r.summary()
    assert code.encode() not in r.body, "the body must not say why"
    assert b"dgpk_" not in r.raw_head + r.body and b"dgsk_" not in r.raw_head + r.body, r.summary()


def assert_challenged(r: Response, code: str) -> None:
    assert r.status == 401, r.summary()
    assert r.header_all("www-authenticate") == [CHALLENGE], r.summary()
    _local_reply(r, code)


def assert_forbidden(r: Response, code: str) -> None:
    assert r.status == 403, r.summary()
    assert r.header("www-authenticate") is None, r.summary()
    _local_reply(r, code)


# --------------------------------------------------------------------------------------------------
# public keys: `?key=`, page restrictions, what the upstream gets
# --------------------------------------------------------------------------------------------------

PAGES_OK = {
    "origin": [("Origin", "https://app.example.com")],
    "referer": [("Referer", "https://app.example.com/page?x=1")],
    "origin-and-referer": [("Origin", "https://a.b.example.com"), ("Referer", "https://exact.example.org/p")],
    "origin-with-port-and-case": [("Origin", "HTTPS://App.Example.COM:8443")],
}


@pytest.mark.parametrize("page", list(PAGES_OK), ids=list(PAGES_OK))
def test_public_key_from_an_allowed_page(gate, keys, page):
    envoy = main_gate(gate)
    pk = keys["pk"]
    path = f"/v1/maps/tiles?a=1&key={pk.text}&b=two&c=%20x&d"
    echo = assert_api_pass(envoy.request("GET", path, PAGES_OK[page], source=OUTSIDER), pk)
    assert echo.method == "GET"
    assert echo.path == "/v1/maps/tiles?a=1&b=two&c=%20x&d", "the key must go, everything else stay in order"
    assert_key_gone(echo, pk)
    for name, value in PAGES_OK[page]:
        assert echo.get_all(name) == [value], "page headers are the application's too"


QUERIES = {
    # (query template, query the upstream gets)
    "only": ("?key={k}", ""),
    "first": ("?key={k}&a=1", "?a=1"),
    "last": ("?a=1&key={k}", "?a=1"),
    "encoded-name": ("?a=1&k%65y={k}&b=2", "?a=1&b=2"),
    "encoded-value": ("?a=&key={k_enc}&b", "?a=&b"),
    "similar-names-stay": ("?keys=1&key={k}&akey=2&key_=3", "?keys=1&akey=2&key_=3"),
}


@pytest.mark.parametrize("case", list(QUERIES), ids=list(QUERIES))
def test_public_key_query_forms(gate, keys, case):
    envoy = main_gate(gate)
    pk = keys["pk"]
    template, rest = QUERIES[case]
    query = template.format(k=pk.text, k_enc=pk.text.replace(".", "%2E").replace("_", "%5F"))
    echo = assert_api_pass(envoy.request("GET", "/v1/maps/x" + query, ORIGIN_OK, source=OUTSIDER), pk)
    assert echo.path == "/v1/maps/x" + rest
    assert_key_gone(echo, pk)


def test_public_key_without_referer_list_needs_no_page(gate, keys):
    envoy = main_gate(gate)
    pk = keys["pk_open"]
    echo = assert_api_pass(envoy.request("GET", q_key("/v1/maps/x", pk), source=OUTSIDER), pk)
    assert_key_gone(echo, pk)


PAGES_DENIED = {
    "none": [],
    "origin-elsewhere": [("Origin", "https://evil.net")],
    "referer-elsewhere": [("Referer", "https://evil.net/page")],
    "bare-domain": [("Origin", "https://example.com")],  # *.example.com is subdomains only
    "suffix-trick": [("Origin", "https://app.example.com.evil.net")],
    "lookalike": [("Origin", "https://evilexample.com")],
    "subdomain-of-exact": [("Origin", "https://a.exact.example.org")],
    "userinfo-trick": [("Origin", "https://app.example.com@evil.net")],
    "allowed-host-in-query": [("Referer", "https://evil.net/?next=https://app.example.com/")],
    "origin-null": [("Origin", "null")],
    "no-scheme": [("Referer", "app.example.com")],
    "origin-ok-referer-not": [("Origin", "https://app.example.com"), ("Referer", "https://evil.net/")],
    "referer-ok-origin-not": [("Referer", "https://app.example.com/"), ("Origin", "https://evil.net")],
    # A Referer with a fragment or user info is invalid (RFC 9110 10.1.3); Envoy drops it before any
    # filter, so devgate sees no page at all (browsers never send one).
    "referer-with-fragment": [("Referer", "https://app.example.com/page#top")],
    "referer-with-userinfo": [("Referer", "https://user:pw@app.example.com/")],
}


@pytest.mark.parametrize("page", list(PAGES_DENIED), ids=list(PAGES_DENIED))
def test_public_key_from_another_page_is_403(gate, keys, page):
    envoy = main_gate(gate)
    r = envoy.request("GET", q_key("/v1/maps/x?a=1", keys["pk"]), PAGES_DENIED[page], source=OUTSIDER)
    assert_forbidden(r, "referer_denied")


def test_envoy_drops_invalid_referers(gate):
    """Why two PAGES_DENIED cases say "no page": Envoy removes these Referer values itself."""
    envoy = main_gate(gate)
    for value in ("https://app.example.com/page#top", "https://user:pw@app.example.com/"):
        r = envoy.request("GET", "/app", [("Referer", value)], source=OUTSIDER)
        assert r.status == 200 and r.echo().get_all("referer") == [], r.summary()


# --------------------------------------------------------------------------------------------------
# private keys: X-Api-Key and `?private_key=`
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["X-Api-Key", "x-api-key", "X-API-KEY"])
def test_private_key_in_header(gate, keys, name):
    envoy = main_gate(gate)
    sk = keys["sk"]
    headers = [("X-Before", "1"), (name, sk.text), ("X-After", "2")]
    echo = assert_api_pass(envoy.request("GET", "/v1/maps/x?a=1", headers, source=OUTSIDER), sk)
    assert_key_gone(echo, sk)
    assert echo.path == "/v1/maps/x?a=1"
    assert echo.get_all("x-before") == ["1"] and echo.get_all("x-after") == ["2"]


def test_private_key_in_query(gate, keys):
    envoy = main_gate(gate)
    skw = keys["skw"]
    r = envoy.request("POST", f"/v1/maps/x?a=1&private_key={skw.text}&b=2", source=OUTSIDER, body='{"q": 1}')
    echo = assert_api_pass(r, skw)
    assert (echo.method, echo.path, echo.body) == ("POST", "/v1/maps/x?a=1&b=2", '{"q": 1}')
    assert_key_gone(echo, skw)


def test_strip_key_false_keeps_the_key(gate, keys):
    """strip_key: false: the key stays where the client put it; the project headers are still set
    (here under the configured names, `X_Project_Ref` folded to x-project-ref)."""
    envoy = unstripped_gate(gate)
    sk, pk = keys["sk"], keys["pk"]
    spoof = [("X-Org-Id", "evil"), ("x_project_ref", "evil"), ("X-Devgate-Key-Id", "evil")]
    r = envoy.request("GET", "/v1/maps/x?a=1", x_api_key(sk) + spoof, source=OUTSIDER)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.get_all("x-api-key") == [sk.text]
    assert echo.path == "/v1/maps/x?a=1"
    assert echo.spellings("x-org-id") == [("x-org-id", sk.org)]
    assert echo.spellings("x-project-ref") == [("x-project-ref", sk.project)]
    assert echo.spellings(KEY_ID) == [(KEY_ID, sk.id)]
    assert echo.spellings(ORG) == [] and echo.spellings(PROJECT) == [], "the default names are not used"

    path = f"/v1/maps/x?a=1&private_key={sk.text}&b=2"
    echo = envoy.request("GET", path, source=OUTSIDER).echo()
    assert echo.path == path and echo.spellings(KIND) == [(KIND, "private_key")]
    path = f"/v1/maps/x?key={pk.text}&b=2"
    echo = envoy.request("GET", path, ORIGIN_OK, source=OUTSIDER).echo()
    assert echo.path == path and echo.spellings(KIND) == [(KIND, "public_key")]


def test_underscore_x_api_key_is_read_and_never_reaches_upstream(gate, keys):
    """`X_Api_Key` is `X-Api-Key` to a WSGI app (HTTP_X_API_KEY), so devgate reads it as the key
    header and removes it. Regression: it used to be ignored, and next to a valid `?key=` it
    reached the upstream."""
    envoy = main_gate(gate)
    r = envoy.request("GET", "/v1/maps/x", [("X_Api_Key", keys["sk"].text)], source=OUTSIDER)
    assert r.status == 200, r.summary()
    assert keys["sk"].text not in json.dumps(r.echo().headers)


# --------------------------------------------------------------------------------------------------
# client copies of devgate's headers
# --------------------------------------------------------------------------------------------------

SPOOF = [
    (variant(name), "evil")
    for name in API_HEADERS
    for variant in (str.lower, str.title, lambda n: n.replace("-", "_"), lambda n: n.upper().replace("-", "_"))
] + [(H, "evil"), ("x_wsgiorg_developer_user", "evil")]


def test_spoof_list_covers_every_header_in_every_spelling():
    for name in API_HEADERS:
        spellings = {k for k, _ in SPOOF if k.lower().replace("_", "-") == name}
        assert len(spellings) == 4, (name, spellings)


@pytest.mark.parametrize("how", ["public-query", "private-header", "private-query"])
def test_spoofed_api_headers_replaced_on_api_route(gate, keys, how):
    envoy = main_gate(gate)
    key, path, headers = {
        "public-query": (keys["pk"], q_key("/v1/maps/x", keys["pk"]), ORIGIN_OK),
        "private-header": (keys["sk"], "/v1/maps/x", x_api_key(keys["sk"])),
        "private-query": (keys["sk"], q_private("/v1/maps/x", keys["sk"]), []),
    }[how]
    r = envoy.request("GET", path, SPOOF + headers + SPOOF, source=OUTSIDER)
    assert_key_gone(assert_api_pass(r, key), key)
    # the same from the internal peer: `count` is devgate's `false`, never the client's
    assert_api_pass(envoy.request("GET", path, SPOOF + headers, source=FIVE), key, count="false")


@pytest.mark.parametrize(
    "path,source,developer",
    [
        ("/", OUTSIDER, None),
        ("/app?x=1", OUTSIDER, None),
        ("/_debug/vars", DEV4, DEV4),
        ("/", DEV4, DEV4),
        ("/v1/upload", OUTSIDER, None),  # GET on a POST-only API route: not an API request
        ("/v1/mapsx", OUTSIDER, None),  # prefixes match whole segments
    ],
)
def test_spoofed_api_headers_removed_on_other_routes(gate, path, source, developer):
    envoy = main_gate(gate)
    r = envoy.request("GET", path, SPOOF, source=source)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert_no_api_headers(echo)
    assert echo.spellings(H) == ([(H, developer)] if developer else [])


def test_spoofed_headers_do_not_open_an_api_route(gate):
    envoy = main_gate(gate)
    assert_challenged(envoy.request("GET", "/v1/maps/x", SPOOF, source=OUTSIDER), "no_credential")


# --------------------------------------------------------------------------------------------------
# the endpoint-mode table: mode x method x key kind, 36 cells through one Envoy
# --------------------------------------------------------------------------------------------------

OK = "ok"
MODE_PATHS = {"read_write": "/v1/rw/items", "read_only": "/v1/ro/items", "write_only": "/v1/wo/items"}
WRITE = ["private_key_required", "write_needed", OK]  # [public, private, private --write]
# README's table, written out (the unit test mode_table_every_cell pins mode_allows itself).
MODE_TABLE = {
    ("read_write", "GET"): [OK, OK, OK],
    ("read_write", "POST"): WRITE,
    ("read_write", "PUT"): WRITE,
    ("read_write", "DELETE"): WRITE,
    ("read_only", "GET"): [OK, OK, OK],
    ("read_only", "POST"): [OK, OK, OK],
    ("read_only", "PUT"): ["method_not_allowed"] * 3,
    ("read_only", "DELETE"): ["method_not_allowed"] * 3,
    ("write_only", "GET"): WRITE,
    ("write_only", "POST"): WRITE,
    ("write_only", "PUT"): WRITE,
    ("write_only", "DELETE"): WRITE,
}
KEY_KINDS = ["public", "private", "private-write"]
GRID = [(mode, method, kind) for (mode, method) in MODE_TABLE for kind in KEY_KINDS]


@pytest.mark.parametrize("mode,method,kind", GRID, ids=[f"{m}-{x}-{k}" for m, x, k in GRID])
def test_mode_table(gate, keys, mode, method, kind):
    envoy = main_gate(gate)
    want = MODE_TABLE[(mode, method)][KEY_KINDS.index(kind)]
    key = {"public": keys["pk"], "private": keys["sk"], "private-write": keys["skw"]}[kind]
    path = MODE_PATHS[mode] + "?a=1"
    if kind == "public":
        path, headers = q_key(path, key), ORIGIN_OK
    else:
        headers = x_api_key(key)
    body = '{"x": 1}' if method in ("POST", "PUT") else None
    r = envoy.request(method, path, headers, source=OUTSIDER, body=body)
    if want == OK:
        echo = assert_api_pass(r, key)
        assert (echo.method, echo.path) == (method, MODE_PATHS[mode] + "?a=1")
        assert echo.body == (body or "")
        assert_key_gone(echo, key)
    else:
        assert_forbidden(r, want)


# --------------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------------


def test_wrong_product_is_403(gate, keys):
    envoy = main_gate(gate)
    assert_forbidden(envoy.request("GET", "/v1/maps/x", x_api_key(keys["sk_geo"]), source=OUTSIDER), "wrong_product")
    assert_forbidden(envoy.request("GET", "/v1/geo/x", x_api_key(keys["sk"]), source=OUTSIDER), "wrong_product")
    assert_forbidden(envoy.request("GET", q_key("/v1/maps/x", keys["pk_geo"]), ORIGIN_OK, source=OUTSIDER),
                     "wrong_product")
    assert_forbidden(envoy.request("GET", q_key("/v1/geo/x", keys["pk"]), ORIGIN_OK, source=OUTSIDER),
                     "wrong_product")
    both = keys["sk_both"]
    for path in ("/v1/maps/x", "/v1/geo/x"):
        assert_api_pass(envoy.request("GET", path, x_api_key(both), source=OUTSIDER), both)
    assert_api_pass(envoy.request("GET", q_key("/v1/geo/x", keys["pk_geo"]), ORIGIN_OK, source=OUTSIDER),
                    keys["pk_geo"])


def test_private_key_ip_restriction(gate, keys):
    """--ip 127.0.0.5/32: the socket peer must be 127.0.0.5 (also inside internal_from: count false)."""
    envoy = main_gate(gate)
    sk = keys["sk_five"]
    echo = assert_api_pass(envoy.request("DELETE", "/v1/maps/x", x_api_key(sk), source=FIVE), sk, count="false")
    assert echo.method == "DELETE"
    assert_api_pass(envoy.request("GET", q_private("/v1/maps/x", sk), source=FIVE), sk, count="false")
    for source in (OUTSIDER, DEV4):  # a developer's address is not the key's address either
        assert_forbidden(envoy.request("GET", "/v1/maps/x", x_api_key(sk), source=source), "network_denied")
        assert_forbidden(envoy.request("GET", q_private("/v1/maps/x", sk), source=source), "network_denied")
    # a forwarded address is not the socket peer
    r = envoy.request("GET", "/v1/maps/x", x_api_key(sk) + [("X-Forwarded-For", FIVE)], source=OUTSIDER)
    assert_forbidden(r, "network_denied")


MISSING_KEY_PATHS = [
    ("GET", "/v1/maps"),
    ("GET", "/v1/maps/x?a=1"),
    ("POST", "/v1/maps/x"),
    ("GET", "/v1/ro/items"),
    ("POST", "/v1/upload"),
    ("GET", "/V1/MAPS/x"),  # API prefixes fold case, like protect prefixes
    ("GET", "/v1/./maps/x"),
    ("GET", "/v1//maps/x"),
    ("GET", "/%761/maps/x"),
    ("GET", "/v1/maps;x=1/y"),
    ("GET", "/app/../v1/maps/x"),
    ("GET", "/v1/maps/x?keys=1&akey=2&Key=3"),  # names are case-sensitive: none of these is `key`
]


@pytest.mark.parametrize("method,path", MISSING_KEY_PATHS, ids=[f"{m} {p}" for m, p in MISSING_KEY_PATHS])
def test_missing_key_is_401(gate, method, path):
    envoy = main_gate(gate)
    r = envoy.request(method, path, source=OUTSIDER, body="x" if method == "POST" else None)
    assert_challenged(r, "no_credential")


def test_post_only_api_route_other_methods_are_not_api_requests(gate, keys):
    """`methods` narrows an API route like a protect rule: GET /v1/upload is no API request at all,
    so it passes anonymously, the key (if any) untouched and no project headers set."""
    envoy = main_gate(gate)
    pk = keys["pk"]
    r = envoy.request("GET", q_key("/v1/upload", pk), ORIGIN_OK, source=OUTSIDER)
    assert r.status == 200 and r.from_upstream, r.summary()
    echo = r.echo()
    assert echo.path == q_key("/v1/upload", pk)
    assert_no_api_headers(echo)
    skw = keys["skw"]
    assert_api_pass(envoy.request("POST", "/v1/upload", x_api_key(skw), source=OUTSIDER, body="b"), skw)


AMBIGUOUS = {
    "key-and-private_key": lambda k: (f"/v1/maps/x?key={k['pk'].text}&private_key={k['sk'].text}", ORIGIN_OK),
    "key-twice-same": lambda k: (f"/v1/maps/x?key={k['pk'].text}&key={k['pk'].text}", ORIGIN_OK),
    "key-twice-different": lambda k: (f"/v1/maps/x?key={k['pk'].text}&k%65y={k['pk_open'].text}", ORIGIN_OK),
    "key-and-empty-key": lambda k: (f"/v1/maps/x?key={k['pk'].text}&key=", ORIGIN_OK),
    "private_key-twice": lambda k: (f"/v1/maps/x?private_key={k['sk'].text}&private_key={k['skw'].text}", []),
    "two-x-api-key-headers": lambda k: ("/v1/maps/x", x_api_key(k["sk"]) + x_api_key(k["skw"])),
    "two-x-api-key-headers-same": lambda k: ("/v1/maps/x", x_api_key(k["sk"]) + x_api_key(k["sk"])),
    "x-api-key-comma-joined": lambda k: ("/v1/maps/x", [("X-Api-Key", f"{k['sk'].text}, {k['skw'].text}")]),
    "header-and-private_key": lambda k: (q_private("/v1/maps/x", k["sk"]), x_api_key(k["sk"])),
    "header-and-key": lambda k: (q_key("/v1/maps/x", k["pk"]), ORIGIN_OK + x_api_key(k["sk"])),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS), ids=list(AMBIGUOUS))
def test_two_credentials_are_ambiguous(gate, keys, case):
    envoy = main_gate(gate)
    path, headers = AMBIGUOUS[case](keys)
    assert_challenged(envoy.request("GET", path, headers, source=OUTSIDER), "ambiguous_credential")


MISPLACED = {
    "private-in-key": lambda k: (q_key("/v1/maps/x", k["sk"]), []),
    "private-write-in-key": lambda k: (q_key("/v1/maps/x", k["skw"]), []),
    "public-in-private_key": lambda k: (q_private("/v1/maps/x", k["pk"]), ORIGIN_OK),
    "public-in-header": lambda k: ("/v1/maps/x", ORIGIN_OK + x_api_key(k["pk"])),
}


@pytest.mark.parametrize("case", list(MISPLACED), ids=list(MISPLACED))
def test_misplaced_key_is_401(gate, keys, case):
    envoy = main_gate(gate)
    path, headers = MISPLACED[case](keys)
    assert_challenged(envoy.request("GET", path, headers, source=OUTSIDER), "key_misplaced")


def test_revoked_key_is_401(gate, keys):
    envoy = main_gate(gate)
    assert_challenged(envoy.request("GET", "/v1/maps/x", x_api_key(keys["sk_revoked"]), source=OUTSIDER), "revoked")
    r = envoy.request("GET", q_key("/v1/maps/x", keys["pk_revoked"]), ORIGIN_OK, source=OUTSIDER)
    assert_challenged(r, "revoked")


def test_expiry(gate, keyfile):
    """Minted with --now in the past (no 30 s wait); the default leeway is 30 s."""
    envoy = main_gate(gate)
    t = now()

    def sk(id, at, ttl):
        return mint_key(keyfile, "private", id=id, extra=("--now", str(at), "--ttl", ttl))

    long_gone = sk("sk-exp-1", t - 7200, "1h")  # exp = now - 3600
    just_gone = sk("sk-exp-2", t - 100, "60s")  # exp = now - 40: beyond the leeway
    in_leeway = sk("sk-exp-3", t - 100, "85s")  # exp = now - 15: within it
    fresh = sk("sk-exp-4", t, "10m")
    from_the_future = mint_key(keyfile, "private", id="sk-future", extra=("--now", str(t + 3600)))
    assert_challenged(envoy.request("GET", "/v1/maps/x", x_api_key(long_gone), source=OUTSIDER), "expired")
    assert_challenged(envoy.request("GET", "/v1/maps/x", x_api_key(just_gone), source=OUTSIDER), "expired")
    assert_api_pass(envoy.request("GET", "/v1/maps/x", x_api_key(in_leeway), source=OUTSIDER), in_leeway)
    assert_api_pass(envoy.request("GET", "/v1/maps/x", x_api_key(fresh), source=OUTSIDER), fresh)
    assert_challenged(envoy.request("GET", "/v1/maps/x", x_api_key(from_the_future), source=OUTSIDER),
                      "not_yet_valid")
    pk = mint_key(keyfile, "public", id="pk-exp", extra=("--now", str(t - 7200), "--ttl", "1h"))
    assert_challenged(envoy.request("GET", q_key("/v1/maps/x", pk), source=OUTSIDER), "expired")


def _tamper_payload(key: Key, **changes) -> str:
    prefix, head, payload, sig = key.text[:5], *key.text[5:].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = b64u(json.dumps(claims, separators=(",", ":")).encode())
    return f"{prefix}{head}.{body}.{sig}"


def test_bad_keys_are_401(gate, keys, keyfile, other_keyfile):
    envoy = main_gate(gate)
    pk, sk = keys["pk"], keys["sk"]
    foreign = mint_key(other_keyfile, "private", id="sk-foreign")
    foreign_pk = mint_key(other_keyfile, "public", id="pk-foreign")
    unknown_kid = mint_key(keyfile, "private", id="sk-k9", extra=("--kid", "k9"))
    r = cli("mint", "--sub", "alice", "--ttl", "1h", "--key-file", str(keyfile))
    assert r.returncode == 0, r.stderr
    dev_token = r.stdout.strip()
    MINTED.append(dev_token)
    pk_as_sk = relabel(pk, "dgsk_" + pk.text[5:])
    sk_as_pk = relabel(sk, "dgpk_" + sk.text[5:])
    cases = [
        # (path, headers, reason)
        ("/v1/maps/x", x_api_key(foreign), "bad_signature"),
        (q_key("/v1/maps/x", foreign_pk), [], "bad_signature"),
        ("/v1/maps/x", x_api_key(pk_as_sk), "bad_signature"),  # public key relabelled private
        (q_private("/v1/maps/x", pk_as_sk), [], "bad_signature"),
        (q_key("/v1/maps/x", pk_as_sk), ORIGIN_OK, "bad_signature"),
        (q_key("/v1/maps/x", sk_as_pk), [], "bad_signature"),  # private key relabelled public
        ("/v1/maps/x", x_api_key(relabel(sk, _tamper_payload(sk, project="other"))), "bad_signature"),
        ("/v1/maps/x", x_api_key(relabel(sk, _tamper_payload(sk, write=True))), "bad_signature"),
        ("/v1/maps/x", x_api_key(relabel(sk, sk.text[:-4])), "bad_signature"),
        ("/v1/maps/x", [("X-Api-Key", "dgsk_" + dev_token)], "bad_signature"),  # a developer token
        ("/v1/maps/x", x_api_key(unknown_kid), "unknown_kid"),
        ("/v1/maps/x", [("X-Api-Key", sk.text[5:])], "malformed"),  # prefix dropped
        ("/v1/maps/x", [("X-Api-Key", dev_token)], "malformed"),
        ("/v1/maps/x?key=dgpk_garbage", [], "malformed"),
        ("/v1/maps/x?private_key=", [], "malformed"),
    ]
    for path, headers, reason in cases:
        r = envoy.request("GET", path, headers, source=OUTSIDER)
        assert r.status == 401 and r.details == f"devgate_{reason}", (path, headers, r.summary())
        assert_challenged(r, reason)


# --------------------------------------------------------------------------------------------------
# internal traffic, developers on API routes
# --------------------------------------------------------------------------------------------------


def test_internal_from_marks_traffic_not_counted(gate, keys):
    envoy = main_gate(gate)
    pk, sk = keys["pk"], keys["sk"]
    assert_api_pass(envoy.request("GET", q_key("/v1/maps/x", pk), ORIGIN_OK, source=FIVE), pk, count="false")
    assert_api_pass(envoy.request("GET", "/v1/maps/x", x_api_key(sk), source=FIVE), sk, count="false")
    assert_api_pass(envoy.request("GET", "/v1/maps/x", x_api_key(sk), source=OUTSIDER), sk, count="true")
    assert_api_pass(envoy.request("GET", "/v1/maps/x", x_api_key(sk), source=DEV4), sk, count="true",
                    developer=DEV4)
    # the internal peer is still an API client: no key, no entry; and not a developer on /_debug/
    assert_challenged(envoy.request("GET", "/v1/maps/x", source=FIVE), "no_credential")
    assert_challenged(envoy.request("GET", "/_debug/vars", source=FIVE), "no_credential")
    # a forwarded address does not make traffic internal
    r = envoy.request("GET", "/v1/maps/x", x_api_key(sk) + [("X-Forwarded-For", FIVE)], source=OUTSIDER)
    assert_api_pass(r, sk, count="true")


def test_network_developer_needs_a_key_on_api_routes(gate, keys):
    envoy = main_gate(gate)
    assert_challenged(envoy.request("GET", "/v1/maps/x", source=DEV4), "no_credential")
    assert_challenged(envoy.request("POST", "/v1/wo/x", source=DEV4, body="x"), "no_credential")
    sk, pk = keys["sk"], keys["pk"]
    echo = assert_api_pass(envoy.request("GET", "/v1/maps/x", x_api_key(sk), source=DEV4), sk, developer=DEV4)
    assert_key_gone(echo, sk)
    assert_api_pass(envoy.request("GET", q_key("/v1/maps/x", pk), ORIGIN_OK, source=DEV4), pk, developer=DEV4)
    # the key's rules still hold for a developer
    assert_forbidden(envoy.request("POST", "/v1/maps/x", x_api_key(sk), source=DEV4, body="x"), "write_needed")
    # and off the API routes the developer needs nothing
    r = envoy.request("GET", "/_debug/vars", source=DEV4)
    assert r.status == 200 and r.echo().spellings(H) == [(H, DEV4)], r.summary()


# --------------------------------------------------------------------------------------------------
# logs (keep last: it checks every key the module sent)
# --------------------------------------------------------------------------------------------------


def test_logs_never_contain_a_key(gate, keys):
    envoy = main_gate(gate)
    other = unstripped_gate(gate)
    # one of each outcome here too, so this test stands alone under -k
    pk, sk, skw = keys["pk"], keys["sk"], keys["skw"]
    assert_api_pass(envoy.request("GET", q_key("/v1/maps/x", pk), ORIGIN_OK, source=OUTSIDER), pk)
    assert_api_pass(envoy.request("GET", "/v1/maps/x", x_api_key(sk), source=OUTSIDER), sk)
    assert_forbidden(envoy.request("GET", q_key("/v1/maps/x", pk), source=OUTSIDER), "referer_denied")
    assert_challenged(envoy.request("GET", q_key("/v1/maps/x", sk), source=OUTSIDER), "key_misplaced")
    assert_forbidden(envoy.request("PUT", "/v1/ro/x", x_api_key(skw), source=OUTSIDER, body="x"),
                     "method_not_allowed")
    assert other.request("GET", "/v1/maps/x", x_api_key(sk), source=OUTSIDER).status == 200
    # Envoy writes its log file in batches (--file-flush-interval-msec, 10 s by default) and flushes it
    # on exit: stop both Envoys (this is the module's last test; teardown copes with stopped ones).
    for e in (envoy, other):
        assert e.alive() and e.devgate_problems() == [], e.devgate_problems()
        e.stop()
    for e in (envoy, other):
        text = e.log_text()
        assert "devgate: configuration accepted" in text, "the filter's info lines should be in this log"
        assert b64u(SECRET) not in text
        minted = sorted(set(MINTED))
        leaked = [k for k in minted if k in text or k.rsplit(".", 1)[1] in text
                  or (k.count(".") == 2 and k.split(".")[1] in text)]
        assert not leaked, f"{len(leaked)} of {len(minted)} keys in {e.log_path}: {leaked[:2]}"
        assert not KEY_RE.search(text), KEY_RE.search(text)
        assert not e.devgate_problems(), e.devgate_problems()
    assert len(set(MINTED)) >= 10

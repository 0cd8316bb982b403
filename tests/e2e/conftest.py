"""Fixtures for the devgate end-to-end suite (real Envoy, real devgate.wasm, real upstream).

One demo upstream per session; one Envoy per distinct configuration per module (started on first use,
reused by every test in the module that asks for the same configuration, stopped when the module
ends). All ports are kernel-chosen, hot restart is off, so the suite runs next to anything else.

A missing devgate.wasm or envoy is a failure, never a skip.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import HarnessError  # noqa: E402


# Tests that run only against the Wasm build: file name -> reason, or "file::test" -> reason. Each is
# skipped with its reason under DEVGATE_HOST=native (`make e2e-native`). Only a genuinely Wasm-only
# mechanism belongs here (VM traps and reloads, the OCI image Istio loads), with its native
# counterpart, if any, named in the reason; a feature the native module lacked was listed here
# until it landed. Everything else runs on both hosts.
WASM_ONLY = {
    "test_faults.py::test_a_trap_fails_closed":
        "Wasm traps and VM reloads; the native panic policy is tests/e2e/test_native_faults.py",
    "test_oci_image.py": "the OCI image carries devgate.wasm for Istio; the native module has none",
    "test_manifests.py::test_manifests_pin_the_image_built_from_this_source":
        "the pinned OCI image carries devgate.wasm; the native module has none",
}
# Tests of the native module only, skipped when the suite runs the Wasm build.
NATIVE_ONLY = ("test_native_",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        file = item.path.name
        if harness.NATIVE:
            reason = WASM_ONLY.get(f"{file}::{item.originalname}") or WASM_ONLY.get(file)
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"native host: {reason}"))
        elif file.startswith(NATIVE_ONLY):
            item.add_marker(pytest.mark.skip(reason="native module tests (DEVGATE_HOST=native)"))


def pytest_report_header(config):
    import os

    return [
        f"devgate e2e: DEVGATE_HOST={harness.HOST}",
        f"devgate e2e: DEVGATE_WASM={os.environ.get('DEVGATE_WASM') or harness.DEFAULT_WASM}",
        f"devgate e2e: DEVGATE_ENVOY={os.environ.get('DEVGATE_ENVOY') or harness.DEFAULT_ENVOY}",
    ]


def call_or_fail(fn, *args, **kw):
    """fn(*args, **kw), turning a HarnessError into a plain test failure (never a skip)."""
    try:
        return fn(*args, **kw)
    except HarnessError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def envoy_bin() -> Path:
    return call_or_fail(harness.envoy_path)


@pytest.fixture(scope="session")
def wasm(envoy_bin) -> Path:
    return call_or_fail(harness.wasm_path)


@pytest.fixture(scope="session")
def upstream():
    up = harness.Upstream()
    yield up
    up.stop()


class GateFactory:
    """Starts (and caches, per module) an Envoy running devgate with a given configuration."""

    def __init__(self, tmp_path_factory, upstream: harness.Upstream):
        self._tmp = tmp_path_factory
        self._upstream = upstream
        self._running: dict[str, harness.Envoy] = {}

    def __call__(
        self,
        plugin_config: dict | str | None = None,
        *,
        hcm: str | dict = "shipped",
        listen=(("127.0.0.1", 0), ("::1", 0)),
        env: dict | None = None,
        with_wasm: bool = True,
        log_level: str = "warning",
    ) -> harness.Envoy:
        key = json.dumps(
            [plugin_config, hcm, [list(a) for a in listen], env, with_wasm, log_level], sort_keys=True
        )
        running = self._running.get(key)
        if running is not None:
            if running.alive():
                return running
            pytest.fail(f"Envoy for this config died earlier; log:\n{running.log_text()[-4000:]}", pytrace=False)
        wasm = call_or_fail(harness.wasm_path) if with_wasm else None
        cfg = harness.render_bootstrap(
            upstream_port=self._upstream.port,
            plugin_config=plugin_config,
            hcm=hcm,
            listen=listen,
            env=env,
            wasm=wasm,
            with_wasm=with_wasm,
        )
        envoy = call_or_fail(harness.start_envoy, cfg, self._tmp.mktemp("envoy"), log_level=log_level)
        self._running[key] = envoy
        return envoy

    def stop_all(self) -> None:
        for e in self._running.values():
            e.stop()
        self._running.clear()


@pytest.fixture(scope="module")
def gate(tmp_path_factory, upstream, envoy_bin):
    """gate(plugin_config, hcm="shipped"|"envoy-defaults"|{...}, listen=..., env=...) -> harness.Envoy"""
    f = GateFactory(tmp_path_factory, upstream)
    yield f
    f.stop_all()


@pytest.fixture
def refused(tmp_path_factory, upstream, wasm):
    """refused(plugin_config, **render_kw) -> harness.EnvoyResult for a config Envoy should refuse.

    If Envoy comes up anyway, the result says so (ready=True) and carries, in `.probe`, what a
    request to `/` from the allowed developer address got; Envoy is then stopped.
    """

    def run(plugin_config, **kw) -> harness.EnvoyResult:
        cfg = harness.render_bootstrap(upstream_port=upstream.port, plugin_config=plugin_config, wasm=wasm, **kw)
        result, envoy = harness.try_envoy(cfg, tmp_path_factory.mktemp("refused"), log_level="info")
        result.probe = None
        if result.ready:
            try:
                result.probe = envoy.request("GET", "/", source="127.0.0.1")
            except Exception as e:  # noqa: BLE001 - reported, not swallowed
                result.probe = e
            finally:
                envoy.stop()
                result.log = envoy.log_text()
        return result

    return run


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import os

    rows = harness.PATH_TRICK_TABLE
    if not rows or not (config.option.verbose > 0 or os.environ.get("DEVGATE_E2E_TABLE")):
        return
    tr = terminalreporter
    tr.section("path tricks: who answered the outsider (127.0.0.77)")
    tr.write_line(f"{'HCM':15} {'path':32} {'status':6} {'layer':9} details / upstream path")
    for hcm, path, status, layer, details in sorted(rows, key=lambda r: (r[1], r[0])):
        tr.write_line(f"{hcm:15} {path!s:32} {status:<6} {layer:9} {details}")

"""Envoy configurations for the suite: bootstraps with devgate (either host) in front of the demo
upstream, file access logs, the shipped demo configs on free ports, YAML, and a listener served from
a filesystem LDS (a configuration swap without a restart). Imported through `harness`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence, Union

from harness_base import (
    _DIAG_HEADERS,
    DETAILS_HEADER,
    NATIVE,
    PROCESS_ENV_KEY,
    REPO,
    HarnessError,
    wasm_path,
)

# --------------------------------------------------------------------------------------------------
# HCM presets
# --------------------------------------------------------------------------------------------------

# What envoy/envoy.yaml ships (tests/e2e/test_demo_config.py checks the two agree).
SHIPPED_HCM = {
    "use_remote_address": True,
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
}

# Envoy's own defaults: nothing set. use_remote_address is false, so Envoy takes the downstream address
# from the last X-Forwarded-For entry when there is one; no path normalisation at all.
ENVOY_DEFAULT_HCM: dict = {}

HCM_PRESETS = {"shipped": SHIPPED_HCM, "envoy-defaults": ENVOY_DEFAULT_HCM}


def _hcm_options(hcm: Union[str, dict, None]) -> dict:
    if hcm is None:
        return dict(SHIPPED_HCM)
    if isinstance(hcm, str):
        return dict(HCM_PRESETS[hcm])
    return dict(hcm)


# --------------------------------------------------------------------------------------------------
# Bootstrap rendering
# --------------------------------------------------------------------------------------------------

Address = tuple  # (host, port)


def _socket_address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def wasm_filter(
    plugin_config: Union[dict, str, None],
    *,
    wasm: Union[str, Path],
    env: dict | None = None,
) -> dict:
    """The devgate filter entry: envoy.filters.http.wasm, or with DEVGATE_HOST=native the
    dynamic-modules filter (native_filter). `plugin_config`: dict (JSON-encoded), str (sent verbatim,
    for malformed-JSON tests) or None (no `configuration` at all)."""
    if NATIVE:
        return native_filter(plugin_config, module=wasm)
    vm_config: dict = {
        "vm_id": "devgate",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(wasm)}},
    }
    if env:
        vm_config["environment_variables"] = {"key_values": dict(env)}
    config: dict = {
        "name": "devgate",
        "vm_config": vm_config,
        # Never fail open: if the VM dies, requests fail and the VM is reloaded.
        "failure_policy": "FAIL_RELOAD",
    }
    if plugin_config is not None:
        value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": value,
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


def native_filter(plugin_config: Union[dict, str, None], *, module: Union[str, Path]) -> dict:
    """The envoy.filters.http.dynamic_modules entry loading libdevgate.so from `module`, with devgate's
    JSON configuration as a StringValue `filter_config` (None: no filter_config)."""
    typed: dict = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"module": {"local": {"filename": str(module)}}},
        "filter_name": "devgate",
    }
    if plugin_config is not None:
        value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        typed["filter_config"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
    return {"name": "envoy.filters.http.dynamic_modules", "typed_config": typed}


def render_bootstrap(
    *,
    upstream_port: int,
    plugin_config: Union[dict, str, None] = None,
    hcm: Union[str, dict, None] = "shipped",
    listen: Sequence[Address] = (("127.0.0.1", 0), ("::1", 0)),
    env: dict | None = None,
    wasm: Union[str, Path, None] = None,
    with_wasm: bool = True,
    diagnostics: bool = True,
    admin: Address = ("127.0.0.1", 0),
    upstream_host: str = "127.0.0.1",
    access_log: Sequence[dict] = (),
    clusters: Sequence[dict] = (),
) -> dict:
    """An Envoy v3 bootstrap (as a dict; written as JSON, which Envoy reads as YAML).

    hcm: "shipped" (what envoy/envoy.yaml sets), "envoy-defaults" (nothing set), or a dict of
    HttpConnectionManager fields (use_remote_address, normalize_path, merge_slashes,
    path_with_escaped_slashes_action, xff_num_trusted_hops, common_http_protocol_options, ...).
    listen: the listener's addresses; the first is `address`, the others `additional_addresses`.
    env: vm_config.environment_variables.key_values.
    with_wasm=False renders the same chain without devgate (to check the harness itself).
    access_log: the HttpConnectionManager's access_log entries (see file_access_log()).
    clusters: more clusters beside demo_upstream, for devgate's callouts (see static_cluster()).
    """
    if not listen:
        raise ValueError("need at least one listen address")
    http_filters = []
    if with_wasm:
        http_filters.append(wasm_filter(plugin_config, wasm=wasm or wasm_path(), env=env))
    http_filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    hcm_config: dict = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "e2e",
        "codec_type": "AUTO",
        "route_config": {
            "name": "all",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "demo_upstream"}}],
                }
            ],
        },
        "http_filters": http_filters,
    }
    if diagnostics:
        hcm_config["route_config"]["response_headers_to_add"] = [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in _DIAG_HEADERS
        ]
    hcm_config.update(_hcm_options(hcm))
    if access_log:
        hcm_config["access_log"] = [dict(a) for a in access_log]
    if diagnostics:
        hcm_config["local_reply_config"] = {
            "mappers": [
                {
                    "filter": {"not_health_check_filter": {}},
                    "headers_to_add": [
                        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                        for k, v in [(DETAILS_HEADER, "%RESPONSE_CODE_DETAILS%")] + _DIAG_HEADERS
                    ],
                }
            ]
        }
    listener: dict = {
        "name": "devgate",
        "address": _socket_address(*listen[0]),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm_config}
                ]
            }
        ],
    }
    if len(listen) > 1:
        listener["additional_addresses"] = [{"address": _socket_address(*a)} for a in listen[1:]]
    boot: dict = {}
    if NATIVE and env and with_wasm:
        boot[PROCESS_ENV_KEY] = dict(env)
    return {
        **boot,
        "admin": {"address": _socket_address(*admin)},
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                {
                    "name": "demo_upstream",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "demo_upstream",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": _socket_address(upstream_host, upstream_port)}}]}
                        ],
                    },
                },
                *[dict(c) for c in clusters],
            ],
        },
    }


def static_cluster(name: str, port: int, *, host: str = "127.0.0.1", connect_timeout: str = "0.25s") -> dict:
    """A STATIC cluster `name` with one endpoint, `host:port`: where devgate's callouts go (the
    `key_service` of api.service, the `revocation` list). A stopped endpoint is a refused connection,
    which Envoy reports to devgate at once (no answer)."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]}],
        },
    }


def file_access_log(path: Union[str, Path], *, text: str | None = None, json_format: dict | None = None) -> dict:
    """An access_log entry (envoy.access_loggers.file) writing to `path`, one line per request, either in
    a text format (`text`, a trailing newline is added if missing) or as one JSON object per line
    (`json_format`: field name -> command operator). Envoy writes the file in batches: start it with
    `extra_args=FAST_FLUSH` (or stop it) before reading."""
    if (text is None) == (json_format is None):
        raise ValueError("give exactly one of text and json_format")
    if text is not None:
        log_format: dict = {"text_format_source": {"inline_string": text if text.endswith("\n") else text + "\n"}}
    else:
        log_format = {"json_format": dict(json_format)}
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": log_format,
        },
    }


# Envoy flushes file access logs and --log-path every 10 s by default (and on exit); this makes it
# every 100 ms, so a test can read them while Envoy runs.
FAST_FLUSH = ("--file-flush-interval-msec", "100")


# --------------------------------------------------------------------------------------------------
# The shipped configs (envoy/*.yaml) as they are, on free ports
# --------------------------------------------------------------------------------------------------

SHIPPED_WASM_LINE = "filename: target/wasm32-wasip1/release/devgate.wasm"
SHIPPED_NATIVE_LINE = "filename: target/native/libdevgate.so"
CERTS = REPO / "target" / "certs"
# With DEVGATE_HOST=native, a test of a shipped demo config runs its native twin: the same listener
# and HCM with the dynamic-modules filter, started with shipped_env() in Envoy's environment.
NATIVE_SHIPPED = {"envoy.yaml": "envoy-native.yaml", "envoy-tls.yaml": "envoy-native-tls.yaml"}


# The native demos' login users and session key: Envoy's process environment, as `make run-native`
# sets it (the Wasm demos carry the same values in their VM's environment).
DEMO_ENV = REPO / "envoy" / "demo.env"


def demo_env() -> dict:
    """envoy/demo.env as a dict, parsed as `make run-native` parses it (tests/run_demo.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import run_demo
    finally:
        sys.path.pop(0)
    return run_demo.demo_env(DEMO_ENV)


def shipped_env() -> dict | None:
    """What Envoy's process environment must add for a shipped demo config with this host: the
    native demos read their login users and key from it (envoy/demo.env); None for Wasm."""
    return demo_env() if NATIVE else None


def shipped_name(name: str) -> str:
    """The shipped config a test of envoy/<name> runs with this host (its native twin if native)."""
    return NATIVE_SHIPPED.get(name, name) if NATIVE else name


def shipped_config(name: str, *, upstream_port: int, wasm: Union[str, Path], listen_port: int,
                   replace: Sequence[tuple[str, str, int]] = ()) -> str:
    """The text of envoy/<name> with its fixed ports made free: admin 9901 and the listener's
    `listen_port` (address and additional address) to 0, the upstream's 8080 to `upstream_port`,
    and the .wasm path made absolute. Other relative paths (target/certs/...) stay as they are:
    Envoy runs from the repository root, as `make run` / `make run-tls` do. Each replacement
    (old, new, count), these and `replace`, must occur exactly `count` times. With
    DEVGATE_HOST=native, envoy/<name>'s native twin (shipped_name) with the module path made absolute."""
    name = shipped_name(name)
    module_line = SHIPPED_NATIVE_LINE if NATIVE else SHIPPED_WASM_LINE
    text = (REPO / "envoy" / name).read_text()
    for old, new, count in [
        ("port_value: 9901", "port_value: 0", 1),
        (f"port_value: {listen_port}", "port_value: 0", 2),
        ("port_value: 8080", f"port_value: {upstream_port}", 1),
        (module_line, f"filename: {wasm}", 1),
        *replace,
    ]:
        if text.count(old) != count:
            raise HarnessError(f"envoy/{name} changed shape: expected {count} x {old!r}, found {text.count(old)}")
        text = text.replace(old, new)
    return text


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML for JSON-like data (dict/list/str/int/bool/None). Scalars are JSON-encoded,
    which YAML reads as double-quoted strings / plain numbers and booleans. Starts with a comment so
    tools that sniff for JSON (`{`) see YAML."""

    def node(o, level: int) -> str:
        pad = "  " * level
        if isinstance(o, dict):
            if not o:
                return " {}"
            return "".join(f"\n{pad}{json.dumps(str(k))}:{node(v, level + 1)}" for k, v in o.items())
        if isinstance(o, (list, tuple)):
            if not o:
                return " []"
            return "".join(f"\n{pad}-{node(v, level + 1)}" for v in o)
        return " " + json.dumps(o)

    if not isinstance(obj, dict):
        raise TypeError("to_yaml renders a mapping at the top level")
    return "# rendered by tests/e2e/harness.py\n" + node(obj, indent).lstrip("\n") + "\n"


LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def render_lds_bootstrap(lds_path: Union[str, Path], **kw) -> tuple[dict, dict]:
    """render_bootstrap(**kw), with the listener moved out of static_resources into a filesystem LDS
    at `lds_path` (dynamic_resources.lds_config.path_config_source). Returns (bootstrap, listener);
    write the listener with write_lds() before starting Envoy, and again to change it. Envoy watches
    for the file being moved into place, so write_lds() writes a sibling and renames it over."""
    boot = render_bootstrap(**kw)
    listener = boot["static_resources"].pop("listeners")[0]
    boot["node"] = {"id": "devgate-e2e", "cluster": "devgate-e2e"}
    boot["dynamic_resources"] = {
        "lds_config": {"resource_api_version": "V3", "path_config_source": {"path": str(lds_path)}}
    }
    return boot, listener


def write_lds(lds_path: Union[str, Path], listeners: Union[dict, Sequence[dict]], version: str = "") -> None:
    """Atomically replace the LDS file: write `<name>.tmp-<n>` next to it, fsync, rename over."""
    lds_path = Path(lds_path)
    if isinstance(listeners, dict):
        listeners = [listeners]
    doc = {"resources": [{"@type": LISTENER_TYPE, **x} for x in listeners]}
    if version:
        doc["version_info"] = version
    tmp = lds_path.with_name(f"{lds_path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    with open(tmp, "w") as f:
        f.write(json.dumps(doc, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, lds_path)


def set_plugin_config(listener: dict, plugin_config: Union[dict, str, None], env: dict | None = None) -> dict:
    """A deep copy of a rendered listener whose devgate filter has a new configuration (and, if
    given, new VM environment variables)."""
    new = json.loads(json.dumps(listener))
    hcm = new["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.dynamic_modules":
            if env is not None:
                raise HarnessError("native host: the environment is Envoy's process's, fixed at start")
            typed = f["typed_config"]
            if plugin_config is None:
                typed.pop("filter_config", None)
            else:
                value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
                typed["filter_config"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
            return new
        if f["name"] != "envoy.filters.http.wasm":
            continue
        config = f["typed_config"]["config"]
        if plugin_config is None:
            config.pop("configuration", None)
        else:
            value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
            config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
        if env is not None:
            if env:
                config["vm_config"]["environment_variables"] = {"key_values": dict(env)}
            else:
                config["vm_config"].pop("environment_variables", None)
        return new
    raise HarnessError("no devgate (envoy.filters.http.wasm) filter in this listener")
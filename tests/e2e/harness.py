"""End-to-end harness: the real Envoy from the venv, devgate (either host), the demo upstream, clients.

Nothing here hardcodes a port. Envoy's admin and listeners bind port 0 and the harness asks the admin
endpoint which ports the kernel gave them; the demo upstream is started with `--port 0` and prints its
port. Hot restart is disabled (`--disable-hot-restart`), so concurrent Envoys never share a base id or
shared-memory region, with this suite or with anything else on the machine. Everything binds on
127.0.0.1 / ::1 only.

Environment:
  DEVGATE_HOST   which build of devgate the suite runs: `wasm` (default; devgate.wasm in Envoy's
                 Wasm filter) or `native` (libdevgate.so in Envoy's dynamic-modules filter)
  DEVGATE_WASM   absolute path of devgate.wasm   (default: <repo>/target/wasm32-wasip1/release/devgate.wasm)
  DEVGATE_NATIVE absolute path of libdevgate.so  (default: <repo>/target/native/libdevgate.so)
  DEVGATE_ENVOY  the envoy binary                (default: <repo>/.venv/bin/envoy)
  DEVGATE_CLI    the devgate command line        (default: <repo>/target/release/devgate)

Tests import everything from here (`import harness`, `from harness import ...`); it lives in
  harness_base.py       the host switch, artefact paths, shared names, log trouble patterns, the CLI
  harness_bootstrap.py  Envoy bootstraps with devgate, access logs, the shipped configs, LDS
  harness_clients.py    raw HTTP/1.1, HTTP/2, TLS and WebSocket clients, the upstream's echo
  harness_envoy.py      the demo upstream and Envoy processes, and devgate_problems(), the check
                        that Envoy and devgate stayed healthy on the host the suite runs
"""

from __future__ import annotations

from harness_base import (  # noqa: F401
    cli_path,
    DEFAULT_CLI,
    DEFAULT_ENVOY,
    DEFAULT_NATIVE,
    DEFAULT_WASM,
    DEMO_UPSTREAM,
    DETAILS_HEADER,
    _DIAG_HEADERS,
    DIRECT_REMOTE_HEADER,
    ENVOY_CRASH,
    envoy_path,
    HarnessError,
    HOST,
    HOSTS,
    IDENTITY_HEADER,
    is_devgate_log_line,
    NATIVE,
    native_path,
    NATIVE_TROUBLE,
    PATH_TRICK_TABLE,
    PROCESS_ENV_KEY,
    REMOTE_HEADER,
    REPO,
    REQUEST_TIMEOUT,
    run_cli,
    STARTUP_TIMEOUT,
    STATS,
    TROUBLE,
    UPSTREAM_MARKER,
    wasm_path,
    WASM_TROUBLE,
)
from harness_bootstrap import (  # noqa: F401
    Address,
    CERTS,
    DEMO_ENV,
    demo_env,
    ENVOY_DEFAULT_HCM,
    FAST_FLUSH,
    file_access_log,
    _hcm_options,
    HCM_PRESETS,
    LISTENER_TYPE,
    native_filter,
    NATIVE_SHIPPED,
    render_bootstrap,
    render_lds_bootstrap,
    set_plugin_config,
    shipped_config,
    shipped_env,
    SHIPPED_HCM,
    shipped_name,
    SHIPPED_NATIVE_LINE,
    static_cluster,
    SHIPPED_WASM_LINE,
    _socket_address,
    to_yaml,
    wasm_filter,
    write_lds,
)
from harness_clients import (  # noqa: F401
    _b,
    Echo,
    h2_request,
    _read_response,
    _Reader,
    request,
    Response,
    Text,
    tls_client,
    upstream_identity,
    websocket,
)
from harness_envoy import (  # noqa: F401
    _accepts,
    _die_with_parent,
    Envoy,
    EnvoyResult,
    _launch,
    _listener_ports,
    start_envoy,
    _stop,
    try_envoy,
    Upstream,
    _wait_ready,
)

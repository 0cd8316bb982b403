//! The Envoy callbacks devgate calls: `extern "C"` declarations of exactly the subset it uses,
//! each with the contract it relies on and a label a test reads (`tests/e2e/test_native_abi.py`):
//!
//! * *Used*: the shipped build calls it (so imports it), and an end-to-end test in the pinned
//!   Envoy exercises it, because a wrong signature is otherwise silent;
//! * *Bound, test build only*: only the test build's hooks (`test-hooks`, `testhooks.rs`) call it,
//!   each exercised in Envoy by `tests/e2e/test_native_bindings.py`;
//! * *Declared*: bound, called by nothing.
//!
//! Source of the signatures: Envoy's `source/extensions/dynamic_modules/abi/abi.h` (the `v0.1.0`
//! text is the newest public copy; the ABI's own rule is that `v0.1.y` stays compatible with
//! `v0.2.x`, and 1.40 reports `v0.2.0`), read against the 1.40 binary: every symbol the module
//! imports is checked to exist in the pinned Envoy (`tests/e2e/test_native_abi.py`).
//!
//! Nothing here is called outside the binding layer: the safe handles (`handles.rs`,
//! `schedulers.rs`) wrap each call with its `SAFETY` argument.

use super::types::{
    ConfigEnvoyPtr, ConfigSchedulerPtr, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, ModuleBuffer,
    ModuleHttpHeader, SchedulerPtr,
};

extern "C" {
    /// *Used.* Logs `message` under Envoy's `dynamic_modules` logger at `level`. Envoy copies the
    /// message; any thread. Confirmed by `test_native_refuses_bad_config_and_logs_the_field`
    /// (the rejection line is read back from Envoy's log).
    pub(super) fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    /// *Used.* Whether Envoy's `dynamic_modules` logger writes lines at `level` (its level is at
    /// or below it); any thread, no side effect. The core formats a note only when this says
    /// yes, so a refused request's debug note costs nothing at Envoy's default level. Confirmed by
    /// `test_denial_notes_follow_envoys_log_level` (the note appears at debug, not at info).
    pub(super) fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    /// *Used.* Number of entries (repeats counted, pseudo-headers included) in header map
    /// `header_type`; 0 when the map is absent in this phase.
    pub(super) fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;

    /// *Used.* Fills `result_headers` (room for `get_headers_size` entries, written by Envoy) with
    /// views into map `header_type`; the views live until the hook returns or a setter is called.
    /// `false` when the map is absent. Confirmed by every e2e test that makes a decision from a
    /// header (`:path`, `Authorization`, cookies, API keys).
    pub(super) fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    /// *Used.* Replaces every value of `key` in map `header_type` with `value`; a NULL `value`
    /// removes the key (the ABI has no separate remove). Envoy copies both; invalidates views.
    /// Confirmed by the identity-header tests (every client spelling removed, devgate's set).
    pub(super) fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// *Used* (for the plan: an expired session's clearing `Set-Cookie` in the
    /// response). Appends a value to `key` in map `header_type`, keeping the others; Envoy copies
    /// both; invalidates views. Confirmed by `test_native_add_header_appends_a_value` (a second
    /// request value next to the client's, and a response header).
    pub(super) fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// *Used.* Ends the stream with a local reply: `status_code`, `headers_vector_size` headers,
    /// `body`, and `details` (what `%RESPONSE_CODE_DETAILS%` shows). Envoy copies everything
    /// before returning. Confirmed by the deny tests (status, `WWW-Authenticate`, body) and by
    /// the harness's details header (`devgate_<reason>`).
    pub(super) fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *const ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// *Used.* A string attribute (`attribute_id`, see [`attribute`](super::types::attribute)) into `result`, a view
    /// valid until the hook returns; `false` when Envoy has none. Confirmed by the network tests
    /// (127.0.0.1 is a developer, 127.0.0.77 is not; a forwarded address has port 0).
    pub(super) fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// *Used.* A boolean attribute (`attribute_id`) into `result`; `false` when Envoy has none
    /// (then `result` is not written). devgate reads `connection.mtls` with it. Confirmed by
    /// `tests/e2e/test_client_certs.py` (a presented certificate makes a developer, none does
    /// not).
    pub(super) fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut bool,
    ) -> bool;

    /// *Declared.* The socket peer (`ip:port`), never rewritten from `X-Forwarded-For`. Not used:
    /// devgate's core reads `source.address` (port 0 marks an address Envoy took from
    /// `X-Forwarded-For`, which it refuses unless `network.trust_forwarded`), so the socket peer
    /// alone would hide a forwarded request behind its proxy's loopback address. Envoy added it in
    /// 1.40: `loader.rs` looks its name up (never calls it) to refuse an older Envoy.
    #[allow(dead_code)]
    pub(super) fn envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
        filter: FilterEnvoyPtr,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// *Used.* Sets filter state `key` to `value` (a string accessor; Envoy copies both), which
    /// access logs read with `%FILTER_STATE(<key>:PLAIN)%`. `false` if the key exists read-only.
    /// Confirmed by `test_native_access_log_has_the_audit_value`.
    pub(super) fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// *Used.* Defines a counter on the filter configuration (main thread, in `config_new`) and
    /// writes its id to `counter_id_ptr`. No labels here (`label_names` NULL, length 0).
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;

    /// *Used.* Adds `value` to counter `id` (defined on the configuration that made this filter).
    /// Confirmed by `test_native_counts_decisions`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// *Used* (`devgate.revocation.degraded`). Defines a gauge, as `define_counter` (main
    /// thread, `config_new`). Confirmed by `test_native_gauge_is_set` and
    /// `test_revocation_phases`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> u32;

    /// *Used* (`devgate.key_service.entries`, set by the stream whose answer filled a slot of the
    /// key service's cache). Sets gauge `id` (from `define_gauge` on this filter's configuration)
    /// to `value`; no labels. Confirmed by `test_native_gauge_is_set`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// *Used* (for the login form). Number of chunks of body `body_type` (see
    /// [`Body`](super::Body)); 0 when there is none. Confirmed by `test_native_body_read_and_drain`.
    pub(super) fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;

    /// *Used.* Fills `result_buffer_vector` (room for `get_body_chunks_size`
    /// entries) with views of the chunks of body `body_type`, valid until the hook returns or the
    /// body changes. Confirmed by `test_native_body_read_and_drain`.
    pub(super) fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;

    /// *Used.* Drops the first `number_of_bytes` of body `body_type`; `false`
    /// when there is no such body. Invalidates chunk views. Confirmed by
    /// `test_native_body_read_and_drain` (the upstream receives the rest).
    pub(super) fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;

    /// *Used* (for off-thread bcrypt). A scheduler for this filter, made on
    /// its worker in a hook, usable from any thread; devgate owns it and must `scheduler_delete`
    /// it (once, from any thread). Confirmed by `test_native_defer_through_pool_and_scheduler`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;

    /// *Used.* From any thread: makes Envoy call
    /// `on_http_filter_scheduled(event_id)` on the filter's worker, or nothing if the stream has
    /// ended by then (Envoy holds the filter weakly). The worker's dispatcher is held by
    /// reference: committed only while the stream exists (see `RawScheduler`).
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );

    /// *Used.* Frees a scheduler (any thread, after its last commit).
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler: SchedulerPtr,
    );

    /// *Used.* Resumes a request a hook stopped (worker thread: from
    /// `on_http_filter_scheduled` or `on_http_filter_http_callout_done`). Confirmed by
    /// `test_native_defer_through_pool_and_scheduler` and `test_native_http_callout`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter: FilterEnvoyPtr,
    );

    /// *Used* (the key service: a stream's callout to resolve an API key; the revocation list is
    /// fetched by the configuration-level call below, with no stream involved). Starts an HTTP
    /// call to `cluster_name`; the answer comes to `on_http_filter_http_callout_done` on the
    /// filter's worker with the id written to `callout_id_out`. `headers` must include `:method`,
    /// `:path` and `host` (or `:authority`); Envoy copies headers and body. Returns the init
    /// result (0 success; otherwise no `done` call comes). The 1.40 binary exports it under this
    /// name (`nm -D`); the signature is the one of its configuration-level and bootstrap twins.
    /// Envoy cancels a call still pending when it destroys the filter. Confirmed by
    /// `test_native_http_callout`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    /// *Used* (the revocation fetcher's clock). A scheduler for a filter configuration, made on the
    /// main thread (in `config_new`: Envoy already holds the configuration in a `shared_ptr` then,
    /// and the scheduler keeps a `weak_ptr` to it and a reference to the main dispatcher). devgate
    /// owns it and frees it with `config_scheduler_delete`. Confirmed by
    /// `test_native_revocation_fetcher_runs_on_the_config_scheduler`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;

    /// *Used.* From any thread: posts to Envoy's main dispatcher a call of
    /// `on_http_filter_config_scheduled(event_id)`, which Envoy skips if the configuration is gone
    /// by then (the `weak_ptr` no longer locks). Must not follow `config_scheduler_delete`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );

    /// *Used.* Frees a configuration scheduler (a plain `delete`; any thread), after its last
    /// commit. Confirmed by `test_native_config_swap_joins_the_old_fetcher_and_envoy_keeps_serving`
    /// (a configuration replaced at run time: its ticker joined, its scheduler deleted, Envoy up).
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: ConfigSchedulerPtr,
    );

    /// *Used* (the revocation list fetch). The configuration-level twin of `http_callout`, on the
    /// main thread: starts an HTTP call to `cluster_name` through the main thread's cluster manager;
    /// the answer comes to `on_http_filter_config_http_callout_done` on the main thread with the id
    /// written to `callout_id_out`. Envoy copies headers and body. Returns the init result (0
    /// success; otherwise no `done` call comes; a call that completes inline also reports a
    /// failure here). Pending calls are cancelled when the configuration is destroyed. Confirmed by
    /// `test_revocation_phases` (a list fetched, a 500, a malformed body, a refused connection).
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    /// *Used.* Adds `value` to counter `id` (from `define_counter` on this configuration) with no
    /// stream at hand: the same arguments as `http_filter_increment_counter`, the configuration
    /// pointer first (read from the 1.40 binary's code: `id` in the second register, the label
    /// count in the fourth, `value` in the fifth). From `config_new` too, before or without any
    /// stream: `devgate.config.accepted|rejected`, a refused configuration included (its counter
    /// is the same named stat as the running configuration's, so the count outlives the refused
    /// object). Confirmed by `test_revocation_phases` (`revocation.fetch_ok|fetch_failed`) and
    /// `test_config_counters_across_live_updates` (DEVGATE_HOST=native).
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// *Used.* Sets gauge `id` (from `define_gauge` on this configuration), as
    /// `http_filter_set_gauge` with the configuration pointer first. Confirmed by
    /// `test_revocation_phases` (`devgate.revocation.degraded` 1, then 0).
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

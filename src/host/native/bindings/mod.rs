//! The binding layer: Envoy 1.40's dynamic-module C ABI (`v0.2.0`), the subset devgate uses.
//!
//! The only file in the crate with `unsafe`. Three parts:
//!
//! 1. `extern "C"` declarations of the Envoy callbacks devgate calls, each with the contract it
//!    relies on. Source of the signatures: Envoy's `source/extensions/dynamic_modules/abi/abi.h`
//!    (the `v0.1.0` text is the newest public copy; the ABI's own rule is that `v0.1.y` stays
//!    compatible with `v0.2.x`, and 1.40 reports `v0.2.0`), read against the 1.40 binary:
//!    every symbol the module imports is checked to exist in the pinned Envoy
//!    (`tests/e2e/test_native_abi.py`), and every callback marked *used* below is exercised by an
//!    end-to-end test in that Envoy, because a wrong signature is otherwise silent. Callbacks
//!    marked *bound, test build only* (the per-stream gauge and HTTP call) are not called by the
//!    shipped build (so not imported by it); the test build's hooks (`test-hooks`,
//!    `testhooks.rs`) exercise each in Envoy (`tests/e2e/test_native_bindings.py`). *Declared*:
//!    bound, called by nothing.
//! 2. [`Host`] and [`ConfigHost`]: safe handles. Views into Envoy's memory borrow the handle, and
//!    every call that may invalidate them takes `&mut self`, so the borrow checker enforces the
//!    ABI's "valid until the hook returns or a setter is called".
//! 3. The exported hooks. Each runs its body inside [`std::panic::catch_unwind`] (the `native`
//!    profile builds with `panic = "unwind"` for this): a panic is logged with the hook's name and
//!    nothing of the request, the request is answered with a local 500, and the hook returns
//!    "stop". A panic never unwinds into Envoy and never lets a request continue. A stream's
//!    state lives in a slot from a per-worker free list and headers are read into stack storage,
//!    so that once a worker is warm a request costs the glue no allocation (the core's decision
//!    allocates what it returns).
//!
//! Layout: every struct below is `#[repr(C)]` and passed exactly as the C header passes it
//! (`{ptr, length}` pairs by value, which the SysV x86-64 and AArch64 C ABIs put in two registers).
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::filter::{BodyStatus, Config, Stream};

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// `envoy_dynamic_module_type_http_filter_envoy_ptr`: Envoy's `DynamicModuleHttpFilter`, valid
/// from `on_http_filter_new` until `on_http_filter_destroy`.
type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`: devgate's per-stream state, a
/// `Box<Stream>` from `on_http_filter_new`, freed in `on_http_filter_destroy`.
type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`: Envoy's filter configuration object.
type ConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`: devgate's configuration, an
/// `Arc<Config>` turned into a raw pointer in `config_new`, released in `config_destroy`.
type ConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr`: made by `scheduler_new` for one
/// filter, owned by devgate ([`Scheduler`]), freed with `scheduler_delete`.
type SchedulerPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr`: made by
/// `config_scheduler_new` for one filter configuration, owned by devgate ([`ConfigScheduler`]),
/// freed with `config_scheduler_delete`.
type ConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: memory owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

impl EnvoyBuffer {
    const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, borrowed for `'a`.
    ///
    /// # Safety
    /// Envoy must keep the memory alive and unchanged for `'a`: the caller ties `'a` to a borrow
    /// of the [`Host`] that a setter would need mutably.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: non-null, `length` bytes owned by Envoy and alive for 'a (see above).
            unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_module_buffer`: memory owned by devgate, only read by Envoy during
/// the call it is passed to (Envoy copies what it keeps).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

impl ModuleBuffer {
    /// A NULL buffer: for `set_header`, "remove the key".
    const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    fn of(b: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: b.as_ptr().cast::<c_char>(),
            length: b.len(),
        }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`: views into Envoy's header map (zero-copy).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

impl EnvoyHttpHeader {
    /// The name and value, borrowed for `'a`.
    ///
    /// # Safety
    /// As [`EnvoyBuffer::bytes`]: Envoy keeps both alive and unchanged for `'a`.
    unsafe fn views<'a>(self) -> (&'a [u8], &'a [u8]) {
        let k = EnvoyBuffer {
            ptr: self.key_ptr,
            length: self.key_length,
        };
        let v = EnvoyBuffer {
            ptr: self.value_ptr,
            length: self.value_length,
        };
        // SAFETY: per this function's contract.
        unsafe { (k.bytes(), v.bytes()) }
    }
}

/// How many headers [`Host::with_headers`] reads into stack storage; a map with more costs one
/// allocation (browsers and API clients send 10-25).
const INLINE_HEADERS: usize = 48;

/// `envoy_dynamic_module_type_module_http_header`: a header devgate owns (for local replies).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

impl ModuleHttpHeader {
    const NULL: ModuleHttpHeader = ModuleHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };

    fn of(k: &[u8], v: &[u8]) -> ModuleHttpHeader {
        ModuleHttpHeader {
            key_ptr: k.as_ptr().cast::<c_char>(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast::<c_char>(),
            value_length: v.len(),
        }
    }
}

/// Up to `N` headers of a local reply or callout on the stack, more on the heap.
struct ModuleHeaders<const N: usize> {
    inline: [ModuleHttpHeader; N],
    len: usize,
    spilled: Vec<ModuleHttpHeader>,
}

impl<const N: usize> ModuleHeaders<N> {
    /// The headers, pointing into `headers`' strings (which must outlive the Envoy call).
    fn of<'h>(headers: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> ModuleHeaders<N> {
        let mut out = ModuleHeaders {
            inline: [ModuleHttpHeader::NULL; N],
            len: 0,
            spilled: Vec::new(),
        };
        for (k, v) in headers {
            let h = ModuleHttpHeader::of(k.as_bytes(), v);
            if out.spilled.is_empty() {
                if let Some(slot) = out.inline.get_mut(out.len) {
                    *slot = h;
                    out.len += 1;
                    continue;
                }
                out.spilled
                    .extend_from_slice(out.inline.get(..out.len).unwrap_or_default());
            }
            out.spilled.push(h);
        }
        out
    }

    fn as_slice(&self) -> &[ModuleHttpHeader] {
        if self.spilled.is_empty() {
            self.inline.get(..self.len).unwrap_or_default()
        } else {
            &self.spilled
        }
    }
}

/// `envoy_dynamic_module_type_http_header_type` (a C enum: `int`-sized, in this order).
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum HeaderMap {
    RequestHeader = 0,
    RequestTrailer = 1,
    ResponseHeader = 2,
}

/// `envoy_dynamic_module_type_log_level` (C enum, in this order; mirrors Envoy's spdlog levels).
#[derive(Clone, Copy)]
#[repr(u32)]
#[allow(dead_code)] // Trace, Debug and Critical: part of the enum, unused by devgate
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// `envoy_dynamic_module_type_attribute_id` values devgate reads (the enum's positions).
mod attribute {
    /// `source.address`: the downstream remote address as Envoy's connection manager decided it,
    /// `ip:port`; port 0 when Envoy took it from `X-Forwarded-For` (`use_remote_address: false`).
    /// Position 24 of the enum (request.* 0-14, response.* 15-23).
    pub const SOURCE_ADDRESS: u32 = 24;
    /// `connection.tls_version`: the downstream connection's TLS version (`TLSv1.3`); absent
    /// (the call returns false) on a plain-text connection. Position 31 (after source.port 25,
    /// destination.address 26, destination.port 27, connection.id 28, connection.mtls 29,
    /// connection.requested_server_name 30). Confirmed by
    /// `test_native_tls_version_attribute_over_tls_and_plain`.
    pub const CONNECTION_TLS_VERSION: u32 = 31;
}

/// `envoy_dynamic_module_type_http_body_type` (C enum, in this order; the response-side values 2
/// and 3 are not used).
#[derive(Clone, Copy)]
#[repr(u32)]
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub enum Body {
    /// The chunk(s) of this `request_body` call.
    ReceivedRequest = 0,
    /// What earlier `request_body` calls buffered (the hook returned "stop and buffer").
    BufferedRequest = 1,
}

/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result_Success` (then `Reset`,
/// `ExceedResponseBufferLimit`).
const CALLOUT_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;

/// Return values of the request/response hooks. Every `on_http_filter_*_status` enum has
/// `Continue` at 0; the header hooks have `StopIteration` at 1, the trailer hooks too.
const CONTINUE: u32 = 0;
const STOP_ITERATION: u32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_request_body_status`: `Continue` 0,
/// `StopIterationAndBuffer` 1, `StopIterationAndWatermark` 2, `StopIterationNoBuffer` 3.
const BODY_STOP_AND_BUFFER: u32 = 1;
const BODY_STOP_NO_BUFFER: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Callbacks (Envoy's side)
// ---------------------------------------------------------------------------------------------

extern "C" {
    /// *Used.* Logs `message` under Envoy's `dynamic_modules` logger at `level`. Envoy copies the
    /// message; any thread. Confirmed by `test_native_refuses_bad_config_and_logs_the_field`
    /// (the rejection line is read back from Envoy's log).
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    /// *Used.* Number of entries (repeats counted, pseudo-headers included) in header map
    /// `header_type`; 0 when the map is absent in this phase.
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;

    /// *Used.* Fills `result_headers` (room for `get_headers_size` entries, written by Envoy) with
    /// views into map `header_type`; the views live until the hook returns or a setter is called.
    /// `false` when the map is absent. Confirmed by every e2e test that makes a decision from a
    /// header (`:path`, `Authorization`, cookies, API keys).
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    /// *Used.* Replaces every value of `key` in map `header_type` with `value`; a NULL `value`
    /// removes the key (the ABI has no separate remove). Envoy copies both; invalidates views.
    /// Confirmed by the identity-header tests (every client spelling removed, devgate's set).
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// *Used* (for the plan: an expired session's clearing `Set-Cookie` in the
    /// response). Appends a value to `key` in map `header_type`, keeping the others; Envoy copies
    /// both; invalidates views. Confirmed by `test_native_add_header_appends_a_value` (a second
    /// request value next to the client's, and a response header).
    fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// *Used.* Ends the stream with a local reply: `status_code`, `headers_vector_size` headers,
    /// `body`, and `details` (what `%RESPONSE_CODE_DETAILS%` shows). Envoy copies everything
    /// before returning. Confirmed by the deny tests (status, `WWW-Authenticate`, body) and by
    /// the harness's details header (`devgate_<reason>`).
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *const ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// *Used.* A string attribute (`attribute_id`, see [`attribute`]) into `result`, a view
    /// valid until the hook returns; `false` when Envoy has none. Confirmed by the network tests
    /// (127.0.0.1 is a developer, 127.0.0.77 is not; a forwarded address has port 0).
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// *Declared.* The socket peer (`ip:port`), never rewritten from `X-Forwarded-For`. Not used:
    /// devgate's core reads `source.address` (port 0 marks an address Envoy took from
    /// `X-Forwarded-For`, which it refuses unless `network.trust_forwarded`), so the socket peer
    /// alone would hide a forwarded request behind its proxy's loopback address.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
        filter: FilterEnvoyPtr,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// *Used.* Sets filter state `key` to `value` (a string accessor; Envoy copies both), which
    /// access logs read with `%FILTER_STATE(<key>:PLAIN)%`. `false` if the key exists read-only.
    /// Confirmed by `test_native_access_log_has_the_audit_value`.
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// *Used.* Defines a counter on the filter configuration (main thread, in `config_new`) and
    /// writes its id to `counter_id_ptr`. No labels here (`label_names` NULL, length 0).
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;

    /// *Used.* Adds `value` to counter `id` (defined on the configuration that made this filter).
    /// Confirmed by `test_native_counts_decisions`.
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// *Used* (`devgate.revocation.degraded`). Defines a gauge, as `define_counter` (main
    /// thread, `config_new`). Confirmed by `test_native_gauge_is_set` and
    /// `test_revocation_phases`.
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> u32;

    /// *Bound, test build only.* Sets gauge `id` (from `define_gauge` on this filter's
    /// configuration) to `value`; no labels. Confirmed by `test_native_gauge_is_set`.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// *Used* (for the login form). Number of chunks of body `body_type` (see
    /// [`Body`]); 0 when there is none. Confirmed by `test_native_body_read_and_drain`.
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;

    /// *Used.* Fills `result_buffer_vector` (room for `get_body_chunks_size`
    /// entries) with views of the chunks of body `body_type`, valid until the hook returns or the
    /// body changes. Confirmed by `test_native_body_read_and_drain`.
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;

    /// *Used.* Drops the first `number_of_bytes` of body `body_type`; `false`
    /// when there is no such body. Invalidates chunk views. Confirmed by
    /// `test_native_body_read_and_drain` (the upstream receives the rest).
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;

    /// *Used* (for off-thread bcrypt). A scheduler for this filter, made on
    /// its worker in a hook, usable from any thread; devgate owns it and must `scheduler_delete`
    /// it (once, from any thread). Confirmed by `test_native_defer_through_pool_and_scheduler`.
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;

    /// *Used.* From any thread: makes Envoy call
    /// `on_http_filter_scheduled(event_id)` on the filter's worker, or nothing if the stream has
    /// ended by then (Envoy holds the filter weakly). The worker's dispatcher is held by
    /// reference: committed only while the stream exists (see `RawScheduler`).
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );

    /// *Used.* Frees a scheduler (any thread, after its last commit).
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);

    /// *Used.* Resumes a request a hook stopped (worker thread: from
    /// `on_http_filter_scheduled` or `on_http_filter_http_callout_done`). Confirmed by
    /// `test_native_defer_through_pool_and_scheduler` and `test_native_http_callout`.
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    /// *Bound, test build only* (the revocation list is fetched by the configuration-level call
    /// below, with no stream involved). Starts an HTTP call to
    /// `cluster_name`; the answer comes to `on_http_filter_http_callout_done` on the filter's
    /// worker with the id written to `callout_id_out`. `headers` must include `:method`, `:path`
    /// and `host`; Envoy copies headers and body. Returns the init result (0 success; then no
    /// `done` call comes). Confirmed by `test_native_http_callout`.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    fn envoy_dynamic_module_callback_http_filter_http_callout(
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
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;

    /// *Used.* From any thread: posts to Envoy's main dispatcher a call of
    /// `on_http_filter_config_scheduled(event_id)`, which Envoy skips if the configuration is gone
    /// by then (the `weak_ptr` no longer locks). Must not follow `config_scheduler_delete`.
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );

    /// *Used.* Frees a configuration scheduler (a plain `delete`; any thread), after its last
    /// commit. Confirmed by `test_native_config_swap_joins_the_old_fetcher_and_envoy_keeps_serving`
    /// (a configuration replaced at run time: its ticker joined, its scheduler deleted, Envoy up).
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: ConfigSchedulerPtr,
    );

    /// *Used* (the revocation list fetch). The configuration-level twin of `http_callout`, on the
    /// main thread: starts an HTTP call to `cluster_name` through the main thread's cluster manager;
    /// the answer comes to `on_http_filter_config_http_callout_done` on the main thread with the id
    /// written to `callout_id_out`. Envoy copies headers and body. Returns the init result (0
    /// success; otherwise no `done` call comes; a call that completes inline also reports a
    /// failure here). Pending calls are cancelled when the configuration is destroyed. Confirmed by
    /// `test_revocation_phases` (a list fetched, a 500, a malformed body, a refused connection).
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
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
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// *Used.* Sets gauge `id` (from `define_gauge` on this configuration), as
    /// `http_filter_set_gauge` with the configuration pointer first. Confirmed by
    /// `test_revocation_phases` (`devgate.revocation.degraded` 1, then 0).
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

// ---------------------------------------------------------------------------------------------
// Safe handles
// ---------------------------------------------------------------------------------------------

/// Logs one line through Envoy (`[dynamic_modules]` logger). Never pass request data, tokens,
/// keys, cookies or passwords: only codes and configuration field names.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: plain FFI; `message` outlives the call and Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes())) }
}

/// The filter configuration, on Envoy's main thread, for the duration of one configuration hook
/// (`config_new`: defines metrics, counts the configuration's own outcome and makes the
/// scheduler; `config_scheduled` and `config_http_callout_done`: counts, sets the gauge, starts
/// HTTP calls).
pub struct ConfigHost {
    ptr: ConfigEnvoyPtr,
}

impl ConfigHost {
    /// Adds one to counter `id` (defined on this configuration). Failing to count never changes
    /// a decision.
    pub fn increment(&self, id: usize) {
        // SAFETY: `ptr` is the configuration pointer of this hook; `id` came from
        // `define_counter` on it; no labels (NULL, 0).
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                1,
            )
        };
    }

    /// Sets gauge `id` (defined on this configuration) to `value`.
    pub fn set_gauge(&self, id: usize, value: u64) {
        // SAFETY: as `increment`, for a gauge id from `define_gauge`.
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                value,
            )
        };
    }

    /// A scheduler that runs `on_http_filter_config_scheduled` on the main thread, committed from
    /// any thread (`config_new` only: see the declaration).
    pub fn scheduler(&self) -> Option<ConfigScheduler> {
        // SAFETY: `ptr` is the configuration pointer `config_new` was given, on the main thread.
        let ptr =
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr) };
        (!ptr.is_null()).then_some(ConfigScheduler { ptr })
    }

    /// Starts an HTTP call to `cluster` (`headers` with `:method`, `:path`, `:authority`) from
    /// the configuration, on the main thread; its answer comes to `Config::callout_done`.
    /// `Err(init result)` when Envoy refused to start it (no answer will come).
    pub fn http_callout<'h>(
        &self,
        cluster: &str,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let hs = ModuleHeaders::<8>::of(headers);
        let hs = hs.as_slice();
        let mut id = 0u64;
        // SAFETY: the configuration pointer of this main-thread hook; `id` is a valid out-pointer;
        // the cluster name, `hs` and every buffer it points to, and `body` outlive the call (Envoy
        // copies them).
        let rc = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                hs.as_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        if rc == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    /// Defines a counter; `None` if Envoy refused it (counting then does nothing).
    pub fn define_counter(&self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `ptr` is the config pointer Envoy passed to this `config_new`; `name` outlives
        // the call (Envoy copies it); no labels (NULL, 0); `id` is a valid out-pointer.
        let rc = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.ptr,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        (rc == METRICS_SUCCESS).then_some(id)
    }

    /// Defines a gauge; `None` if Envoy refused it.
    pub fn define_gauge(&self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: as `define_counter`.
        let rc = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_gauge(
                self.ptr,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        (rc == METRICS_SUCCESS).then_some(id)
    }
}

/// The answer to an HTTP callout, as views valid during `on_http_filter_http_callout_done` (or
/// its configuration-level twin).
#[derive(Clone, Copy)]
pub struct CalloutAnswer<'a> {
    /// The response headers, `:status` included.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// The response body, in chunks.
    pub body: &'a [&'a [u8]],
}

/// Envoy's scheduler for one filter (`scheduler_new`), deleted when dropped. Reached only through
/// [`Scheduler`] (the stream's) and [`Resumer`] (a pool job's).
///
/// The contract, from Envoy 1.40's `DynamicModuleHttpFilterScheduler`
/// (`source/extensions/filters/http/dynamic_modules/filter.h` and `abi_impl.cc`): the object holds
/// the filter by `weak_ptr` and the stream's worker `Event::Dispatcher` *by reference*; `commit`
/// posts a closure to that dispatcher (which locks the weak pointer on the worker, and calls
/// `on_http_filter_scheduled` only if the filter still exists); `delete` is a plain C++ `delete`
/// (a weak pointer released: any thread). So a commit after the stream ended is harmless, but a
/// commit after the worker's dispatcher is gone (Envoy shutting down) would use freed memory.
/// What devgate adds: a commit happens only while the stream's [`Scheduler`] exists (see there).
struct RawScheduler(SchedulerPtr);

// SAFETY: per the contract above, Envoy's scheduler may be committed to and deleted from any
// thread; nothing in it is tied to the thread that made it. `RawScheduler` is only ever reached
// under the lock of a `Revocable`, one thread at a time.
unsafe impl Send for RawScheduler {}

impl Drop for RawScheduler {
    fn drop(&mut self) {
        // SAFETY: made by `scheduler_new`, freed exactly once, here (any thread: see above).
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

/// A stream's scheduler ([`Host::scheduler`]). It must live in the stream's state, so that it is
/// dropped, on the stream's worker, when Envoy destroys the stream (`on_http_filter_destroy`) at
/// the latest; it is not `Send`, so it cannot leave the worker. It hands out [`Resumer`]s, which
/// other threads use to commit, and its drop withdraws Envoy's scheduler from them (waiting for a
/// commit in progress) and deletes it. Hence a commit only ever happens while the stream exists,
/// that is while its worker and the worker's dispatcher do: never into a deleted scheduler, never
/// into a dispatcher Envoy has torn down, whatever the order in which a job finishes, the client
/// goes away and Envoy shuts down.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub struct Scheduler {
    owner: crate::host::native::pool::Revocable<RawScheduler>,
    /// Not `Send`: dropped on the stream's worker.
    _worker: std::marker::PhantomData<*const ()>,
}

/// A [`Scheduler`]'s other end, for a pool job: commits events while the stream exists, and
/// nothing once it has gone.
pub struct Resumer {
    access: crate::host::native::pool::Access<RawScheduler>,
}

#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
impl Scheduler {
    /// A handle for another thread to resume the stream with.
    pub fn resumer(&self) -> Resumer {
        Resumer {
            access: self.owner.access(),
        }
    }
}

#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
impl Resumer {
    /// Asks Envoy to call the stream's `scheduled` hook with `event_id` on its worker. `false`:
    /// the stream has gone, nothing was committed (nothing would have run anyway).
    pub fn commit(&self, event_id: u64) -> bool {
        self.access
            .with(|raw| {
                // SAFETY: a live scheduler (deleted only once withdrawn, and withdrawn only after
                // this closure returns); the stream's `Scheduler` exists (that is what `with`
                // guarantees), so the filter has not been destroyed and its worker's dispatcher,
                // which the commit posts to, is alive.
                unsafe {
                    envoy_dynamic_module_callback_http_filter_scheduler_commit(raw.0, event_id)
                }
            })
            .is_some()
    }

    /// Whether the stream still exists (it may end right after): work for a stream that has
    /// gone can be skipped.
    pub fn live(&self) -> bool {
        self.access.live()
    }
}

/// A filter configuration's scheduler ([`ConfigHost::scheduler`]): moves to any thread, commits
/// events that Envoy delivers to `on_http_filter_config_scheduled` on the main thread, and is
/// freed when dropped. Its owner (the revocation ticker thread) drops it only after its last
/// commit, and `config_destroy` joins that thread, so no commit follows the delete or the
/// configuration's end.
pub struct ConfigScheduler {
    ptr: ConfigSchedulerPtr,
}

// SAFETY: Envoy's contract for the configuration scheduler: `commit` posts to the main dispatcher
// (thread-safe) and `delete` is a plain `delete`, both from any thread. Not `Sync`: one owner.
unsafe impl Send for ConfigScheduler {}

impl ConfigScheduler {
    /// Asks Envoy to call the configuration's `scheduled` hook with `event_id` on the main thread
    /// (nothing happens if the configuration has been destroyed by then).
    pub fn commit(&self, event_id: u64) {
        // SAFETY: a live scheduler (freed only in `drop`).
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.ptr, event_id)
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: made by `config_scheduler_new`, freed exactly once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.ptr) }
    }
}

/// One HTTP stream's filter, for the duration of one hook call. Views of Envoy's memory borrow
/// `&self`; calls that can invalidate them take `&mut self`.
pub struct Host {
    ptr: FilterEnvoyPtr,
    /// A local reply went out in this hook: a later failure must not send a second one.
    responded: bool,
}

impl Host {
    /// Runs `f` on every header of `map` (pseudo-headers included, repeats kept, names
    /// lower-case as Envoy stores them) and returns what it returns; `None` when Envoy has no such
    /// map now. The views exist only during `f` (they cannot escape it: `R` does not borrow them),
    /// and are read into uninitialised stack storage: no allocation, no copy, for up to
    /// [`INLINE_HEADERS`] headers.
    pub fn with_headers<R>(
        &self,
        map: HeaderMap,
        f: impl for<'h> FnOnce(&'h [(&'h [u8], &'h [u8])]) -> R,
    ) -> Option<R> {
        // SAFETY: `ptr` is this stream's live filter pointer (valid for the hook).
        let n =
            unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.ptr, map as u32) };
        if n == 0 {
            return Some(f(&[]));
        }
        if n > INLINE_HEADERS {
            let mut raw: Vec<EnvoyHttpHeader> = Vec::with_capacity(n);
            // SAFETY: `raw` has room for `n` entries, which is what Envoy writes (it counted them
            // just now, on this thread, with no call in between that changes the map).
            let ok = unsafe {
                envoy_dynamic_module_callback_http_get_headers(
                    self.ptr,
                    map as u32,
                    raw.as_mut_ptr(),
                )
            };
            if !ok {
                return None;
            }
            // SAFETY: Envoy initialised all `n` entries (the call returned true).
            unsafe { raw.set_len(n) };
            // SAFETY: views into Envoy's header map, alive until the hook returns or a setter
            // runs; `&self` is borrowed for as long as `f` runs, so no setter can.
            let views: Vec<(&[u8], &[u8])> = raw.iter().map(|h| unsafe { h.views() }).collect();
            return Some(f(&views));
        }
        let mut raw = [MaybeUninit::<EnvoyHttpHeader>::uninit(); INLINE_HEADERS];
        // SAFETY: `raw` has room for `n` (<= INLINE_HEADERS) entries, as above.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.ptr,
                map as u32,
                raw.as_mut_ptr().cast::<EnvoyHttpHeader>(),
            )
        };
        if !ok {
            return None;
        }
        let mut views = [MaybeUninit::<(&[u8], &[u8])>::uninit(); INLINE_HEADERS];
        for (view, h) in views.iter_mut().zip(raw.iter()).take(n) {
            // SAFETY: Envoy initialised the first `n` entries (the call returned true); the views
            // stay valid while `&self` is borrowed, as above.
            view.write(unsafe { h.assume_init().views() });
        }
        // SAFETY: the first `n` entries of `views` were written just above; `MaybeUninit<T>` has
        // the layout of `T`.
        let views = unsafe { std::slice::from_raw_parts(views.as_ptr().cast(), n) };
        Some(f(views))
    }

    /// Envoy's `source.address` (`ip:port`; port 0 when taken from `X-Forwarded-For`).
    pub fn source_address(&self) -> Option<&[u8]> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: live filter pointer; `out` is a valid out-pointer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr,
                attribute::SOURCE_ADDRESS,
                &mut out,
            )
        };
        // SAFETY: Envoy's buffer, alive for the hook; borrowed from `&self`.
        ok.then(|| unsafe { out.bytes() })
    }

    /// Sets request header `name` to `value`, replacing every value. Invalidates views.
    pub fn set_header(&mut self, map: HeaderMap, name: &[u8], value: &[u8]) -> bool {
        // SAFETY: live filter pointer; both buffers outlive the call (Envoy copies them). An
        // empty value is passed as a real (non-NULL) pointer, so it sets "" rather than removes.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map as u32,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            )
        }
    }

    /// Removes every value of header `name`. Invalidates views.
    pub fn remove_header(&mut self, map: HeaderMap, name: &[u8]) -> bool {
        // SAFETY: as `set_header`; a NULL value means "remove".
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map as u32,
                ModuleBuffer::of(name),
                ModuleBuffer::NULL,
            )
        }
    }

    /// Answers the request locally. Invalidates views. No allocation for up to 16 headers.
    pub fn send_response<'h>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
        details: &str,
    ) {
        let hs = ModuleHeaders::<16>::of(headers);
        let hs = hs.as_slice();
        self.responded = true;
        // SAFETY: live filter pointer; `hs` and every buffer it points to outlive the call, and
        // Envoy copies them into the reply before returning.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                hs.as_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            )
        }
    }

    /// Appends `value` to header `name` of `map`, keeping the values already there. Invalidates
    /// views.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn add_header(&mut self, map: HeaderMap, name: &[u8], value: &[u8]) -> bool {
        // SAFETY: live filter pointer; both buffers outlive the call (Envoy copies them).
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.ptr,
                map as u32,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            )
        }
    }

    /// The downstream connection's TLS version (`TLSv1.3`), `None` on plain text.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn tls_version(&self) -> Option<&[u8]> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: live filter pointer; `out` is a valid out-pointer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr,
                attribute::CONNECTION_TLS_VERSION,
                &mut out,
            )
        };
        // SAFETY: Envoy's buffer (the connection's), alive for the hook; borrowed from `&self`.
        ok.then(|| unsafe { out.bytes() })
    }

    /// Sets gauge `id` to `value`. Failing to set it never changes a decision.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn set_gauge(&self, id: usize, value: u64) {
        // SAFETY: live filter pointer; `id` came from `define_gauge` on this filter's
        // configuration; no labels (NULL, 0).
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_set_gauge(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                value,
            )
        };
    }

    /// The chunks of body `which`, as views (empty when there is none).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn body_chunks(&self, which: Body) -> Vec<&[u8]> {
        // SAFETY: live filter pointer.
        let n = unsafe {
            envoy_dynamic_module_callback_http_get_body_chunks_size(self.ptr, which as u32)
        };
        if n == 0 {
            return Vec::new();
        }
        let mut raw: Vec<EnvoyBuffer> = Vec::with_capacity(n);
        // SAFETY: `raw` has room for the `n` entries Envoy just counted.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_body_chunks(
                self.ptr,
                which as u32,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        // SAFETY: Envoy initialised all `n` entries (the call returned true).
        unsafe { raw.set_len(n) };
        // SAFETY: views into Envoy's body buffer, alive until the hook returns or the body is
        // changed, which needs `&mut self`.
        raw.iter().map(|b| unsafe { b.bytes() }).collect()
    }

    /// Drops the first `n` bytes of body `which`. Invalidates chunk views.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn drain_body(&mut self, which: Body, n: usize) -> bool {
        // SAFETY: live filter pointer.
        unsafe { envoy_dynamic_module_callback_http_drain_body(self.ptr, which as u32, n) }
    }

    /// A scheduler that resumes work on this stream's worker from any thread.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn scheduler(&self) -> Option<Scheduler> {
        // SAFETY: live filter pointer, on the stream's worker (inside a hook).
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) };
        (!ptr.is_null()).then(|| Scheduler {
            owner: crate::host::native::pool::revocable(RawScheduler(ptr)).0,
            _worker: std::marker::PhantomData,
        })
    }

    /// Resumes the request a hook stopped.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn continue_decoding(&mut self) {
        // SAFETY: live filter pointer, on the stream's worker (inside a hook).
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }

    /// Starts an HTTP call to `cluster` (`headers` with `:method`, `:path`, `host`); its answer
    /// comes to [`Stream::callout_done`] with the returned id. `Err(init result)` when Envoy
    /// refused to start it (no answer will come).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn http_callout<'h>(
        &mut self,
        cluster: &str,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let hs = ModuleHeaders::<8>::of(headers);
        let hs = hs.as_slice();
        let mut id = 0u64;
        // SAFETY: live filter pointer; `id` is a valid out-pointer; the cluster name, `hs` and
        // every buffer it points to, and `body` outlive the call (Envoy copies them).
        let rc = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.ptr,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                hs.as_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        if rc == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    /// Sets filter state `key` (the access log's `%FILTER_STATE(key:PLAIN)%`).
    pub fn set_filter_state(&mut self, key: &str, value: &[u8]) -> bool {
        // SAFETY: live filter pointer; both buffers outlive the call (Envoy copies them).
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.ptr,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// Adds one to counter `id`. Failing to count never changes a decision.
    pub fn increment(&self, id: usize) {
        // SAFETY: live filter pointer; `id` came from `define_counter` on the configuration that
        // created this filter; no labels (NULL, 0).
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                1,
            )
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Exported hooks (Envoy's calls into devgate)
// ---------------------------------------------------------------------------------------------

/// The ABI version of the pinned Envoy (1.40.0), `ENVOY_DYNAMIC_MODULES_ABI_VERSION`, as a C
/// string. Envoy 1.40 only warns on a mismatch, so `tests/e2e/test_native_abi.py` pins it to the
/// Envoy version in tests/requirements.txt (and checks Envoy logs "matched"): moving Envoy without
/// revisiting these bindings fails that test.
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Runs `body` with panics caught. On a panic: one log line naming the hook (the panic hook set
/// in `on_program_init` has logged where), a local 500 unless this hook already answered, and
/// `on_panic` returned, which the callers make a "stop" status. The request never continues.
fn guard(hook: &str, host: &mut Host, on_panic: u32, body: impl FnOnce(&mut Host) -> u32) -> u32 {
    match catch_unwind(AssertUnwindSafe(|| body(&mut *host))) {
        Ok(status) => status,
        Err(_) => {
            log(
                LogLevel::Error,
                &format!("devgate: panic in hook {hook}; request refused with 500"),
            );
            answer_500(host, "devgate_internal_panic");
            on_panic
        }
    }
}

/// The generic 500 of a request devgate cannot finish, unless this hook already answered.
fn answer_500(host: &mut Host, details: &str) {
    if !host.responded {
        let headers: [(&str, &[u8]); 2] = [
            ("content-type", b"text/plain; charset=utf-8"),
            ("cache-control", b"no-store"),
        ];
        host.send_response(500, headers, b"Internal Server Error\n", details);
    }
}

/// Like [`guard`] for hooks that return nothing and have no request to answer.
fn guard_void(hook: &str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log(LogLevel::Error, &format!("devgate: panic in hook {hook}"));
    }
}

/// A stream's state lives in a slot: `Some(stream)` between `on_http_filter_new` and
/// `on_http_filter_destroy`, `None` while the slot waits in its worker's free list. Reusing slots
/// makes a stream cost no allocation once a worker has seen as many concurrent streams as it will.
type Slot = Option<Stream>;

/// At most this many free slots are kept per worker thread (a burst of concurrent streams beyond
/// it frees its slots; a slot is a few dozen bytes).
const FREE_SLOTS_MAX: usize = 1024;

thread_local! {
    /// This thread's free slots. Envoy creates and destroys a stream's filter on the stream's
    /// worker; a slot freed on another thread simply joins that thread's list.
    // Boxed on purpose: a slot's address is what Envoy holds as the stream's module pointer, so it
    // must not move when the list grows.
    #[allow(clippy::vec_box)]
    static FREE_SLOTS: RefCell<Vec<Box<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// A slot holding `stream`: a free one of this thread if there is one, else a new one.
fn take_slot(stream: Stream) -> Box<Slot> {
    let free = FREE_SLOTS
        .try_with(|f| f.try_borrow_mut().ok().and_then(|mut f| f.pop()))
        .ok()
        .flatten();
    match free {
        Some(mut slot) => {
            *slot = Some(stream);
            slot
        }
        None => Box::new(Some(stream)),
    }
}

/// Ends the slot's stream (and its reference to the configuration) and keeps the slot for the
/// next stream of this thread, or frees it when the list is full or gone (thread exit).
fn give_slot(mut slot: Box<Slot>) {
    drop(slot.take());
    let _ = FREE_SLOTS.try_with(move |f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            if f.len() < FREE_SLOTS_MAX {
                f.push(slot);
            }
        }
    });
}

/// # Safety
/// `m` must be a pointer `on_http_filter_new` returned and `on_http_filter_destroy` has not freed.
unsafe fn stream<'a>(m: FilterModulePtr) -> Option<&'a mut Stream> {
    // SAFETY: per the contract above, `m` is a live `Box<Slot>` that Envoy only uses from the
    // stream's worker thread, one hook at a time, so this is the only reference.
    unsafe { m.cast::<Slot>().cast_mut().as_mut() }.and_then(Option::as_mut)
}

/// Called once when Envoy loads the library: installs a panic hook that logs only where a panic
/// happened (never its message, which could carry request data) and returns the ABI version.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log(LogLevel::Error, &format!("devgate: panic at {at}"));
    }));
    ABI_VERSION.as_ptr().cast::<c_char>()
}

/// A new filter configuration (main thread). NULL refuses it, and Envoy refuses the listener.
///
/// # Safety
/// Envoy passes a live config pointer and two buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    // SAFETY: Envoy's buffers (`filter_name`, `filter_config`), valid for this call; nothing
    // keeps a view past it (the parser copies what it keeps).
    let (name, bytes) = unsafe { (name.bytes(), config.bytes()) };
    let host = ConfigHost { ptr: config_envoy };
    match catch_unwind(AssertUnwindSafe(|| Config::new(&host, name, bytes))) {
        Ok(Some(cfg)) => Arc::into_raw(Arc::new(cfg)).cast::<c_void>(),
        Ok(None) => std::ptr::null(),
        Err(_) => {
            log(
                LogLevel::Error,
                "devgate: panic in hook config_new; configuration refused",
            );
            std::ptr::null()
        }
    }
}

/// # Safety
/// `c` is a pointer `config_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(c: ConfigModulePtr) {
    if !c.is_null() {
        // SAFETY: `c` came from `Arc::into_raw` in `config_new`; this releases that reference
        // (streams and login checks hold their own).
        let config = unsafe { Arc::from_raw(c.cast::<Config>()) };
        // The configuration's own thread (the revocation ticker) is stopped and joined here, not
        // when the last reference goes: that may be later, and its scheduler must not outlive
        // Envoy's configuration.
        guard_void("config_destroy", || config.stop());
        drop(config);
    }
}

/// # Safety
/// `c` is NULL or a pointer `config_new` returned that `config_destroy` has not released.
unsafe fn config<'a>(c: ConfigModulePtr) -> Option<&'a Config> {
    // SAFETY: per the contract above, the `Arc<Config>` that `config_new` leaked, alive until
    // `config_destroy`; shared, so only `&` is handed out.
    unsafe { c.cast::<Config>().as_ref() }
}

/// An event committed through the configuration's [`ConfigScheduler`], on the main thread: the
/// revocation fetcher's tick. Envoy passes NULL as `c` if the event comes before `config_new`
/// returned.
///
/// # Safety
/// Envoy's live configuration pointer and devgate's (NULL or from `config_new`).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: ConfigEnvoyPtr,
    c: ConfigModulePtr,
    event_id: u64,
) {
    // SAFETY: see `config`.
    let Some(config) = (unsafe { config(c) }) else {
        return;
    };
    let host = ConfigHost { ptr: config_envoy };
    guard_void("config_scheduled", || config.scheduled(&host, event_id));
}

/// The answer to a configuration's [`ConfigHost::http_callout`], on the main thread, handed to
/// `Config::callout_done` as views (`None` when the call failed: reset, timeout, too large).
///
/// # Safety
/// As `config_scheduled`; `headers` and `body_chunks` point to `headers_size` and
/// `body_chunks_size` entries valid for this call (or are NULL).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: ConfigEnvoyPtr,
    c: ConfigModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: see `config`.
    let Some(config) = (unsafe { config(c) }) else {
        return;
    };
    let host = ConfigHost { ptr: config_envoy };
    let hs: &[EnvoyHttpHeader] = if headers.is_null() || headers_size == 0 {
        &[]
    } else {
        // SAFETY: per this function's contract.
        unsafe { std::slice::from_raw_parts(headers, headers_size) }
    };
    let bs: &[EnvoyBuffer] = if body_chunks.is_null() || body_chunks_size == 0 {
        &[]
    } else {
        // SAFETY: per this function's contract.
        unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
    };
    guard_void("config_http_callout_done", || {
        let answer = (result == CALLOUT_SUCCESS).then(|| {
            // SAFETY: views valid for this call (the contract above); they do not outlive it.
            let headers: Vec<(&[u8], &[u8])> = hs.iter().map(|x| unsafe { x.views() }).collect();
            // SAFETY: as above.
            let body: Vec<&[u8]> = bs.iter().map(|x| unsafe { x.bytes() }).collect();
            (headers, body)
        });
        let answer = answer
            .as_ref()
            .map(|(headers, body)| CalloutAnswer { headers, body });
        config.callout_done(&host, callout_id, answer);
    });
}

/// A new stream. NULL makes Envoy close the stream (fail closed).
///
/// # Safety
/// `c` is a live pointer from `config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    c: ConfigModulePtr,
    _f: FilterEnvoyPtr,
) -> FilterModulePtr {
    if c.is_null() {
        return std::ptr::null();
    }
    let c = c.cast::<Config>();
    // SAFETY: `c` is the `Arc<Config>` pointer from `config_new`, alive until `config_destroy`;
    // this takes one more strong reference for the stream, released when the stream is dropped.
    let config = unsafe {
        Arc::increment_strong_count(c);
        Arc::from_raw(c)
    };
    match catch_unwind(AssertUnwindSafe(|| take_slot(Stream::new(config)))) {
        Ok(s) => Box::into_raw(s).cast::<c_void>().cast_const(),
        Err(_) => {
            log(LogLevel::Error, "devgate: panic in hook http_filter_new");
            std::ptr::null()
        }
    }
}

/// # Safety
/// `m` is a pointer `on_http_filter_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(m: FilterModulePtr) {
    if !m.is_null() {
        // SAFETY: `m` came from `Box::into_raw` in `on_http_filter_new`; Envoy calls this once.
        let s = unsafe { Box::from_raw(m.cast::<Slot>().cast_mut()) };
        guard_void("http_filter_destroy", move || give_slot(s));
    }
}

/// # Safety
/// Envoy's live filter pointer and the stream's module pointer.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let mut host = Host {
        ptr: f,
        responded: false,
    };
    // SAFETY: see `stream`.
    let Some(s) = (unsafe { stream(m) }) else {
        log(
            LogLevel::Error,
            "devgate: request_headers without stream state",
        );
        answer_500(&mut host, "devgate_internal_no_stream");
        return STOP_ITERATION;
    };
    guard("request_headers", &mut host, STOP_ITERATION, |h| {
        if s.request_headers(h, end_of_stream) {
            CONTINUE
        } else {
            STOP_ITERATION
        }
    })
}

/// What the stream says of a body chunk ([`Stream::request_body`]); no stream: stop.
///
/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let mut host = Host {
        ptr: f,
        responded: false,
    };
    // SAFETY: see `stream`.
    let s = unsafe { stream(m) };
    guard("request_body", &mut host, BODY_STOP_NO_BUFFER, |h| match s
        .map(|s| s.request_body(h, end_of_stream))
    {
        Some(BodyStatus::Continue) => CONTINUE,
        Some(BodyStatus::StopAndBuffer) => BODY_STOP_AND_BUFFER,
        Some(BodyStatus::Stop) | None => BODY_STOP_NO_BUFFER,
    })
}

/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
) -> u32 {
    let mut host = Host {
        ptr: f,
        responded: false,
    };
    // SAFETY: see `stream`.
    let s = unsafe { stream(m) };
    guard("request_trailers", &mut host, STOP_ITERATION, |h| {
        match s.map(|s| s.proceeds() && s.request_trailers(h)) {
            Some(true) => CONTINUE,
            _ => STOP_ITERATION,
        }
    })
}

/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    let mut host = Host {
        ptr: f,
        responded: false,
    };
    // SAFETY: see `stream`.
    let s = unsafe { stream(m) };
    guard("response_headers", &mut host, STOP_ITERATION, |h| {
        match s.map(|s| s.response_headers(h)) {
            Some(true) => CONTINUE,
            _ => STOP_ITERATION,
        }
    })
}

// The remaining hooks Envoy 1.40 requires (a missing one makes it refuse the filter). devgate has
// nothing to do in them yet; they return "continue" and touch nothing.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) {
}

/// The answer to an [`Host::http_callout`] of this stream, on its worker: handed to
/// [`Stream::callout_done`] as views (`None` when the call failed: reset, timeout, too large).
///
/// # Safety
/// Envoy's live filter pointer and the stream's module pointer; `headers` and `body_chunks` point
/// to `headers_size` and `body_chunks_size` entries valid for this call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    let mut host = Host {
        ptr: f,
        responded: false,
    };
    // SAFETY: see `stream`.
    let Some(s) = (unsafe { stream(m) }) else {
        return;
    };
    let hs: &[EnvoyHttpHeader] = if headers.is_null() || headers_size == 0 {
        &[]
    } else {
        // SAFETY: per this function's contract.
        unsafe { std::slice::from_raw_parts(headers, headers_size) }
    };
    let bs: &[EnvoyBuffer] = if body_chunks.is_null() || body_chunks_size == 0 {
        &[]
    } else {
        // SAFETY: per this function's contract.
        unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
    };
    guard("http_callout_done", &mut host, STOP_ITERATION, |h| {
        let answer = (result == CALLOUT_SUCCESS).then(|| {
            // SAFETY: views valid for this call (the contract above); they do not outlive it.
            let headers: Vec<(&[u8], &[u8])> = hs.iter().map(|x| unsafe { x.views() }).collect();
            // SAFETY: as above.
            let body: Vec<&[u8]> = bs.iter().map(|x| unsafe { x.bytes() }).collect();
            (headers, body)
        });
        let answer = answer
            .as_ref()
            .map(|(headers, body)| CalloutAnswer { headers, body });
        s.callout_done(h, callout_id, answer);
        CONTINUE
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

/// An event committed through a [`Scheduler`] of this stream, on its worker.
///
/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    event_id: u64,
) {
    let mut host = Host {
        ptr: f,
        responded: false,
    };
    // SAFETY: see `stream`.
    let Some(s) = (unsafe { stream(m) }) else {
        return;
    };
    guard("scheduled", &mut host, STOP_ITERATION, |h| {
        s.scheduled(h, event_id);
        CONTINUE
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) {
}

// ---------------------------------------------------------------------------------------------
// Test build only: allocation counting
// ---------------------------------------------------------------------------------------------

/// The test build's global allocator: the system's, counting every allocation (and reallocation)
/// the module makes, so that `tests/e2e/test_native_bindings.py` can measure allocations per
/// request in Envoy. Never in the shipped build.
#[cfg(feature = "test-hooks")]
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU64, Ordering};

    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    /// Allocations so far, every thread of the module.
    pub fn allocations() -> u64 {
        ALLOCATIONS.load(Ordering::Relaxed)
    }

    pub struct Counting;

    // SAFETY: forwards every call to `System` unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;
}

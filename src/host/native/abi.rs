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
//!    marked *declared* are bound for the features still to come (login body, revocation fetch,
//!    off-thread bcrypt); no code calls them yet, so they are not imported and not yet confirmed.
//! 2. [`Host`] and [`ConfigHost`]: safe handles. Views into Envoy's memory borrow the handle, and
//!    every call that may invalidate them takes `&mut self`, so the borrow checker enforces the
//!    ABI's "valid until the hook returns or a setter is called".
//! 3. The exported hooks. Each runs its body inside [`std::panic::catch_unwind`] (the `native`
//!    profile builds with `panic = "unwind"` for this): a panic is logged with the hook's name and
//!    nothing of the request, the request is answered with a local 500, and the hook returns
//!    "stop". A panic never unwinds into Envoy and never lets a request continue.
//!
//! Layout: every struct below is `#[repr(C)]` and passed exactly as the C header passes it
//! (`{ptr, length}` pairs by value, which the SysV x86-64 and AArch64 C ABIs put in two registers).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::filter::{Config, Stream};

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
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr` (declared only).
type SchedulerPtr = *mut c_void;

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

/// `envoy_dynamic_module_type_module_http_header`: a header devgate owns (for local replies).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
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
}

/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;

/// Return values of the request/response hooks. Every `on_http_filter_*_status` enum has
/// `Continue` at 0; the header hooks have `StopIteration` at 1, the trailer hooks too.
const CONTINUE: u32 = 0;
const STOP_ITERATION: u32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationNoBuffer`.
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

    /// *Declared* (response phase: an expired session's clearing `Set-Cookie`). Appends a value.
    #[allow(dead_code)]
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

    /// *Declared* (`devgate.revocation.degraded`). Defines a gauge, as `define_counter`.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> u32;

    /// *Declared.* Sets gauge `id` to `value`.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// *Declared* (login form). Number of chunks of body `body_type` (0 received request body,
    /// 1 buffered request body).
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;

    /// *Declared.* Views of the chunks of body `body_type`, as `get_headers`.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;

    /// *Declared.* Drops the first `number_of_bytes` of body `body_type`.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;

    /// *Declared* (off-thread bcrypt). A scheduler for this filter, usable from any thread; the
    /// module owns it and must `scheduler_delete` it.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;

    /// *Declared.* Makes Envoy call `on_http_filter_scheduled(event_id)` on the filter's worker.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );

    /// *Declared.* Frees a scheduler.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);

    /// *Declared.* Resumes a request a hook stopped.
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    /// *Declared* (revocation list). Starts an HTTP call to `cluster_name`; the answer comes to
    /// `on_http_filter_http_callout_done` with the id written to `callout_id_out`. `headers`
    /// must include `:method`, `:path` and `host`. Returns the init result (0 success).
    #[allow(dead_code)]
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
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

/// The filter configuration, during `config_new` only: defines metrics.
pub struct ConfigHost {
    ptr: ConfigEnvoyPtr,
}

impl ConfigHost {
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
}

/// One HTTP stream's filter, for the duration of one hook call. Views of Envoy's memory borrow
/// `&self`; calls that can invalidate them take `&mut self`.
pub struct Host {
    ptr: FilterEnvoyPtr,
    /// A local reply went out in this hook: a later failure must not send a second one.
    responded: bool,
}

impl Host {
    /// Every header of `map`, pseudo-headers included, repeats kept, names lower-case as Envoy
    /// stores them; `None` when Envoy has no such map now.
    pub fn headers(&self, map: HeaderMap) -> Option<Vec<(&[u8], &[u8])>> {
        // SAFETY: `ptr` is this stream's live filter pointer (valid for the hook).
        let n =
            unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.ptr, map as u32) };
        if n == 0 {
            return Some(Vec::new());
        }
        let mut raw: Vec<EnvoyHttpHeader> = Vec::with_capacity(n);
        // SAFETY: `raw` has room for `n` entries, which is what Envoy writes (it counted them
        // just now, on this thread, with no call in between that changes the map).
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(self.ptr, map as u32, raw.as_mut_ptr())
        };
        if !ok {
            return None;
        }
        // SAFETY: Envoy initialised all `n` entries (the call returned true).
        unsafe { raw.set_len(n) };
        let views = raw
            .iter()
            .map(|h| {
                let k = EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                };
                let v = EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                };
                // SAFETY: views into Envoy's header map, alive until the hook returns or a
                // setter runs; both need `&mut self` or the end of the borrow of `self`.
                unsafe { (k.bytes(), v.bytes()) }
            })
            .collect();
        Some(views)
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

    /// Answers the request locally. Invalidates views.
    pub fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) {
        let hs: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr().cast::<c_char>(),
                key_length: k.len(),
                value_ptr: v.as_ptr().cast::<c_char>(),
                value_length: v.len(),
            })
            .collect();
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
        host.send_response(
            500,
            &[
                ("content-type", b"text/plain; charset=utf-8"),
                ("cache-control", b"no-store"),
            ],
            b"Internal Server Error\n",
            details,
        );
    }
}

/// Like [`guard`] for hooks that return nothing and have no request to answer.
fn guard_void(hook: &str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log(LogLevel::Error, &format!("devgate: panic in hook {hook}"));
    }
}

/// # Safety
/// `m` must be a pointer `on_http_filter_new` returned and `on_http_filter_destroy` has not freed.
unsafe fn stream<'a>(m: FilterModulePtr) -> Option<&'a mut Stream> {
    // SAFETY: per the contract above, `m` is a live `Box<Stream>` that Envoy only uses from the
    // stream's worker thread, one hook at a time, so this is the only reference.
    unsafe { m.cast::<Stream>().cast_mut().as_mut() }
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
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    // SAFETY: Envoy's buffer, valid for this call; copied by the parser before we return.
    let bytes = unsafe { config.bytes() };
    let host = ConfigHost { ptr: config_envoy };
    match catch_unwind(AssertUnwindSafe(|| Config::new(&host, bytes))) {
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
        // (streams hold their own).
        drop(unsafe { Arc::from_raw(c.cast::<Config>()) });
    }
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
    match catch_unwind(AssertUnwindSafe(|| Box::new(Stream::new(config)))) {
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
        let s = unsafe { Box::from_raw(m.cast::<Stream>().cast_mut()) };
        guard_void("http_filter_destroy", move || drop(s));
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

/// Bodies pass untouched (devgate decides on headers); stops only after devgate answered.
///
/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
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
    guard(
        "request_body",
        &mut host,
        BODY_STOP_NO_BUFFER,
        |_| match s.map(|s| s.proceeds()) {
            Some(true) => CONTINUE,
            _ => BODY_STOP_NO_BUFFER,
        },
    )
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

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
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

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _event_id: u64,
) {
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

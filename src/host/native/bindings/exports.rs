//! The exported hooks: Envoy's calls into devgate. Each runs its body inside
//! [`std::panic::catch_unwind`] (the `native` profile builds with `panic = "unwind"` for this): a
//! panic is logged with the hook's name and nothing of the request, the request is answered with
//! a local 500, and the hook returns "stop". A panic never unwinds into Envoy and never lets a
//! request continue. A stream's state lives in a slot from a per-worker free list and headers are
//! read into stack storage, so that once a worker is warm a request costs the glue no allocation
//! (the core's decision allocates what it returns).
//!
//! This is the binding layer's only edge upward: the hook bodies are the glue's entry points,
//! [`Config`]'s (`new`, `scheduled`, `callout_done`, `stop`) and [`Stream`]'s (`new`,
//! `request_headers`, `request_body`, `request_trailers`, `response_headers`, `callout_done`,
//! `scheduled`, `proceeds`). The glue reaches back only into the safe handles, never into this
//! file.

use std::cell::RefCell;
use std::ffi::c_void;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::handles::{log, CalloutAnswer, ConfigHost, Host};
use super::types::{
    BodyStatus, ConfigEnvoyPtr, ConfigModulePtr, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr,
    FilterModulePtr, LogLevel, BODY_STOP_AND_BUFFER, BODY_STOP_NO_BUFFER, CALLOUT_SUCCESS,
    CONTINUE, STOP_ITERATION,
};
use crate::host::native::filter::{Config, Stream};

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
    // SAFETY: the configuration pointer of this hook; `host` does not outlive it.
    let host = unsafe { ConfigHost::new(config_envoy) };
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
    // SAFETY: the configuration pointer of this hook; `host` does not outlive it.
    let host = unsafe { ConfigHost::new(config_envoy) };
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
    // SAFETY: the configuration pointer of this hook; `host` does not outlive it.
    let host = unsafe { ConfigHost::new(config_envoy) };
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
    // SAFETY: the filter pointer of this hook; `host` does not outlive it.
    let mut host = unsafe { Host::new(f) };
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
    // SAFETY: the filter pointer of this hook; `host` does not outlive it.
    let mut host = unsafe { Host::new(f) };
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
    // SAFETY: the filter pointer of this hook; `host` does not outlive it.
    let mut host = unsafe { Host::new(f) };
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
    // SAFETY: the filter pointer of this hook; `host` does not outlive it.
    let mut host = unsafe { Host::new(f) };
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

/// A response body chunk: nothing to do; continue.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

/// Response trailers: nothing to do; continue.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) -> u32 {
    CONTINUE
}

/// The stream has ended (its state goes in `http_filter_destroy`): nothing to do.
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
    // SAFETY: the filter pointer of this hook; `host` does not outlive it.
    let mut host = unsafe { Host::new(f) };
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

/// Headers of a streamed HTTP call: devgate starts none.
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

/// Data of a streamed HTTP call: devgate starts none.
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

/// Trailers of a streamed HTTP call: devgate starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

/// End of a streamed HTTP call: devgate starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
) {
}

/// Reset of a streamed HTTP call: devgate starts none.
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
    // SAFETY: the filter pointer of this hook; `host` does not outlive it.
    let mut host = unsafe { Host::new(f) };
    // SAFETY: see `stream`.
    let Some(s) = (unsafe { stream(m) }) else {
        return;
    };
    guard("scheduled", &mut host, STOP_ITERATION, |h| {
        s.scheduled(h, event_id);
        CONTINUE
    });
}

/// Flow control: devgate writes no body, so nothing to pause.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) {
}

/// Flow control: devgate writes no body, so nothing to resume.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) {
}

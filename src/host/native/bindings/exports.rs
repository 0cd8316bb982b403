//! The exported hooks: Envoy's calls into devgate. Each runs its body inside
//! [`std::panic::catch_unwind`] (the `native` profile builds with `panic = "unwind"` for this): a
//! panic is logged with the hook's name and nothing of the request, the request is answered with
//! a local 500, and the hook returns "stop". A panic never unwinds into Envoy and never lets a
//! request continue. A stream's state lives in a slot from a per-worker free list (`state.rs`),
//! reached by every stream hook through [`stream_hook`], which stays sound when Envoy re-enters
//! the module for the same stream or destroys it during a hook; headers are read into stack
//! storage, so that once a worker is warm a request costs the glue no allocation (the core's
//! decision allocates what it returns).
//!
//! A configuration may be destroyed on an Envoy worker (its last stream ended there after a
//! configuration update replaced it): `config_destroy` then waits for none of the configuration's
//! threads (they stop on their own; the library is pinned in memory, `loader.rs`), counts it
//! (`devgate.native.config_destroyed_off_main`) and logs it.
//!
//! This is the binding layer's only edge upward: the hook bodies are the glue's entry points,
//! [`Config`]'s (`new`, `scheduled`, `callout_done`, `stop`) and [`Stream`]'s (`new`,
//! `request_headers`, `request_body`, `request_trailers`, `response_headers`, `callout_done`,
//! `scheduled`, `proceeds`). The glue reaches back only into the safe handles, never into this
//! file.

use std::ffi::c_void;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::thread::{self, ThreadId};

use super::handles::{log, CalloutAnswer, ConfigHost, Host};
use super::loader;
use super::state::{self, bound, new_slot, stream_hook, Bound, Fallback, Native};
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

/// Like a stream hook's guard (`state::stream_hook`) for hooks that return nothing and have no
/// request to answer.
fn guard_void(hook: &str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log(LogLevel::Error, &format!("devgate: panic in hook {hook}"));
    }
}

/// Envoy's main thread: the one that loads the library and makes every configuration.
static MAIN: OnceLock<ThreadId> = OnceLock::new();

/// Whether this is Envoy's main thread (not known: no, so nothing blocks).
fn on_main_thread() -> bool {
    MAIN.get()
        .is_some_and(|main| *main == thread::current().id())
}

/// Called once when Envoy loads the library (main thread): notes the main thread, installs a
/// panic hook that logs only where a panic happened (never its message, which could carry request
/// data), refuses an Envoy older than 1.40 and pins the library in memory (`loader.rs`), and
/// returns the ABI version. NULL (a refusal, or a panic) makes Envoy refuse the module.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    match catch_unwind(program_init) {
        Ok(true) => ABI_VERSION.as_ptr().cast::<c_char>(),
        Ok(false) => std::ptr::null(),
        Err(_) => {
            log(LogLevel::Error, "devgate: panic in hook program_init");
            std::ptr::null()
        }
    }
}

/// The body of `on_program_init`; `false`: refuse to load.
fn program_init() -> bool {
    let _ = MAIN.set(thread::current().id());
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log(LogLevel::Error, &format!("devgate: panic at {at}"));
    }));
    if !loader::envoy_is_1_40_or_newer() {
        log(
            LogLevel::Error,
            "devgate: this Envoy lacks the dynamic-module callbacks of Envoy 1.40, which \
             libdevgate.so is built for (ABI v0.2.0); refusing to load",
        );
        return false;
    }
    if !loader::pin() {
        log(
            LogLevel::Error,
            "devgate: libdevgate.so could not pin itself in memory (RTLD_NODELETE); refusing to load",
        );
        return false;
    }
    true
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
    let _ = MAIN.get_or_init(|| thread::current().id());
    // SAFETY: the configuration pointer of this hook; `host` does not outlive it.
    let host = unsafe { ConfigHost::new(config_envoy) };
    let made = catch_unwind(AssertUnwindSafe(|| {
        Config::new(&host, name, bytes).map(|config| Bound {
            config: Arc::new(config),
            native: Native::define(&host, config_envoy),
            #[cfg(feature = "test-hooks")]
            as_if_off_main: name == b"devgate-detach",
        })
    }));
    match made {
        Ok(Some(bound)) => Box::into_raw(Box::new(bound)).cast::<c_void>().cast_const(),
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

/// The end of a configuration: on the main thread (Envoy shutting down, or the configuration's
/// last stream ended before Envoy let go of it) its threads are stopped and joined; on a worker
/// (its last stream ended there, after Envoy had let go) nothing is joined, the threads stop on
/// their own, and the destroy is counted and logged. Either way the scheduler is deleted after its
/// last commit, by the ticker thread itself.
///
/// Envoy 1.40 keeps a configuration alive while one of its HTTP calls (the revocation fetch) is in
/// flight: the call holds a reference, so a configuration is never destroyed with its fetch
/// pending, and Envoy's cancel of pending calls in its destructor finds none, whichever thread runs
/// it (`tests/e2e/test_native_reentry.py`).
///
/// # Safety
/// `c` is a pointer `config_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(c: ConfigModulePtr) {
    if c.is_null() {
        return;
    }
    // SAFETY: `c` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
    let bound = unsafe { Box::from_raw(c.cast::<Bound>().cast_mut()) };
    guard_void("config_destroy", move || {
        #[cfg(not(feature = "test-hooks"))]
        let Bound { config, native } = *bound;
        #[cfg(feature = "test-hooks")]
        let Bound {
            config,
            native,
            as_if_off_main,
        } = *bound;
        let join = on_main_thread();
        // Test build only: a configuration named `devgate-detach` takes the worker's path wherever
        // it is destroyed (Envoy 1.40 puts the last reference of a configuration an update replaced
        // on its main thread: tests/e2e/test_native_reentry.py).
        #[cfg(feature = "test-hooks")]
        let join = join && !as_if_off_main;
        if join {
            log(
                LogLevel::Info,
                "devgate: configuration destroyed on the main thread",
            );
        } else {
            native.count_off_main();
            log(
                LogLevel::Warn,
                "devgate: configuration destroyed off the main thread (its last stream ended on a \
                 worker); its threads stop on their own, none is joined",
            );
        }
        // Streams hold their own references, but Envoy destroys every stream before their
        // configuration: this is the last one.
        match Arc::try_unwrap(config) {
            Ok(config) => config.end(join),
            Err(shared) => shared.stop(join),
        }
    });
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
    // SAFETY: see `bound`.
    let Some(bound) = (unsafe { bound(c) }) else {
        return;
    };
    // SAFETY: the configuration pointer of this hook; `host` does not outlive it.
    let host = unsafe { ConfigHost::new(config_envoy) };
    guard_void("config_scheduled", || {
        bound.config.scheduled(&host, event_id)
    });
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
    // SAFETY: see `bound`.
    let Some(bound) = (unsafe { bound(c) }) else {
        return;
    };
    // SAFETY: the configuration pointer of this hook; `host` does not outlive it.
    let host = unsafe { ConfigHost::new(config_envoy) };
    // SAFETY: per this function's contract, Envoy's arrays for the length of this call.
    let (hs, bs) = unsafe { callout_answer(headers, headers_size, body_chunks, body_chunks_size) };
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
        bound.config.callout_done(&host, callout_id, answer);
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
    // SAFETY: see `bound`.
    let Some(bound) = (unsafe { bound(c) }) else {
        return std::ptr::null();
    };
    let made = catch_unwind(AssertUnwindSafe(|| {
        // One more reference to the configuration, released when the stream is dropped.
        new_slot(Stream::new(Arc::clone(&bound.config)), bound.native)
    }));
    match made {
        Ok(s) => Box::into_raw(s).cast::<c_void>().cast_const(),
        Err(_) => {
            log(LogLevel::Error, "devgate: panic in hook http_filter_new");
            std::ptr::null()
        }
    }
}

/// The end of a stream: its state goes now, or, when Envoy ends the stream inside one of its
/// hooks (a local reply that completes the response while the hook runs), when the outermost hook
/// returns (`state::destroy`); either way through [`Stream::end`] (a request still waiting for
/// the key service ends its flight).
///
/// # Safety
/// `m` is a pointer `on_http_filter_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(m: FilterModulePtr) {
    // SAFETY: the caller's contract, passed on.
    guard_void("http_filter_destroy", || unsafe { state::destroy(m) });
}

/// The request's headers. No stream state: refused (500). Re-entered (another hook of this stream
/// runs): "stop", the outer hook decides.
///
/// # Safety
/// Envoy's live filter pointer and the stream's module pointer.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let fallback = Fallback {
        busy: STOP_ITERATION,
        gone: STOP_ITERATION,
        panicked: STOP_ITERATION,
        refuse_gone: true,
    };
    // SAFETY: the caller's contract, passed on.
    unsafe {
        stream_hook("request_headers", f, m, fallback, |s, h| {
            if s.request_headers(h, end_of_stream) {
                CONTINUE
            } else {
                STOP_ITERATION
            }
        })
    }
}

/// What the stream says of a body chunk ([`Stream::request_body`]); no stream, or re-entered:
/// stop.
///
/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let fallback = Fallback {
        busy: BODY_STOP_NO_BUFFER,
        gone: BODY_STOP_NO_BUFFER,
        panicked: BODY_STOP_NO_BUFFER,
        refuse_gone: false,
    };
    // SAFETY: the caller's contract, passed on.
    unsafe {
        stream_hook("request_body", f, m, fallback, |s, h| {
            match s.request_body(h, end_of_stream) {
                BodyStatus::Continue => CONTINUE,
                BodyStatus::StopAndBuffer => BODY_STOP_AND_BUFFER,
                BodyStatus::Stop => BODY_STOP_NO_BUFFER,
            }
        })
    }
}

/// Request trailers ([`Stream::request_trailers`]: edited for a request that goes on or waits
/// for the key service); otherwise (no stream, re-entered): stop.
///
/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
) -> u32 {
    let fallback = Fallback {
        busy: STOP_ITERATION,
        gone: STOP_ITERATION,
        panicked: STOP_ITERATION,
        refuse_gone: false,
    };
    // SAFETY: the caller's contract, passed on.
    unsafe {
        stream_hook("request_trailers", f, m, fallback, |s, h| {
            if s.request_trailers(h) {
                CONTINUE
            } else {
                STOP_ITERATION
            }
        })
    }
}

/// Response headers. Re-entered (a local reply made while another hook of this stream runs, such
/// as the router's 503 during `continue_decoding`): "continue", the reply goes out as Envoy made
/// it (it came from no upstream, so there is no challenge to translate). No stream: stop.
///
/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    let fallback = Fallback {
        busy: CONTINUE,
        gone: STOP_ITERATION,
        panicked: STOP_ITERATION,
        refuse_gone: false,
    };
    // SAFETY: the caller's contract, passed on.
    unsafe {
        stream_hook("response_headers", f, m, fallback, |s, h| {
            if s.response_headers(h) {
                CONTINUE
            } else {
                STOP_ITERATION
            }
        })
    }
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

/// The answer to a `Host::http_callout` of this stream, on its worker: handed to
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
    // SAFETY: per this function's contract, Envoy's arrays for the length of this call.
    let (hs, bs) = unsafe { callout_answer(headers, headers_size, body_chunks, body_chunks_size) };
    // Re-entered, no stream: the answer is dropped (nothing waits for it any more).
    let fallback = Fallback {
        busy: (),
        gone: (),
        panicked: (),
        refuse_gone: false,
    };
    let body = |s: &mut Stream, h: &mut Host| {
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
    };
    // SAFETY: the caller's contract, passed on.
    unsafe { stream_hook("http_callout_done", f, m, fallback, body) }
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

/// An event committed through a `Scheduler` of this stream, on its worker. Re-entered (an event
/// delivered while another hook of this stream runs) or no stream: dropped.
///
/// # Safety
/// As `request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    event_id: u64,
) {
    let fallback = Fallback {
        busy: (),
        gone: (),
        panicked: (),
        refuse_gone: false,
    };
    // SAFETY: the caller's contract, passed on.
    unsafe { stream_hook("scheduled", f, m, fallback, |s, h| s.scheduled(h, event_id)) }
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

/// The headers and body chunks of an HTTP callout's answer as slices (empty for a null pointer or
/// a zero length), as both callout hooks (stream and configuration) receive them.
///
/// # Safety
/// A non-null `headers` points at `headers_size` initialised headers and a non-null `body_chunks`
/// at `body_chunks_size` buffers, both valid and unchanged for `'a` (Envoy's arrays live for the
/// hook's call).
unsafe fn callout_answer<'a>(
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) -> (&'a [EnvoyHttpHeader], &'a [EnvoyBuffer]) {
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
    (hs, bs)
}

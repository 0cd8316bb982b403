//! The safe handles the glue holds during a hook: [`Host`] (one stream's filter) and
//! [`ConfigHost`] (a filter configuration), plus [`log`] and [`CalloutAnswer`]. Views into Envoy's
//! memory borrow the handle, and every call that may invalidate them takes `&mut self`, so the
//! borrow checker enforces the ABI's "valid until the hook returns or a setter is called". The
//! calls both handles have (callout, counter, gauge, scheduler) are implemented once, in
//! `twins.rs`; each handle here only forwards to its kind.

use std::mem::MaybeUninit;

use super::imports::{
    envoy_dynamic_module_callback_http_add_header, envoy_dynamic_module_callback_http_drain_body,
    envoy_dynamic_module_callback_http_filter_config_define_counter,
    envoy_dynamic_module_callback_http_filter_config_define_gauge,
    envoy_dynamic_module_callback_http_filter_continue_decoding,
    envoy_dynamic_module_callback_http_filter_get_attribute_bool,
    envoy_dynamic_module_callback_http_filter_get_attribute_string,
    envoy_dynamic_module_callback_http_get_body_chunks,
    envoy_dynamic_module_callback_http_get_body_chunks_size,
    envoy_dynamic_module_callback_http_get_headers,
    envoy_dynamic_module_callback_http_get_headers_size,
    envoy_dynamic_module_callback_http_send_response,
    envoy_dynamic_module_callback_http_set_filter_state_bytes,
    envoy_dynamic_module_callback_http_set_header, envoy_dynamic_module_callback_log,
    envoy_dynamic_module_callback_log_enabled,
};
use super::schedulers::{ConfigScheduler, RawScheduler, Scheduler};
use super::twins::{Live, OfConfig, OfStream};
use super::types::{
    attribute, Body, ConfigEnvoyPtr, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, HeaderMap,
    LogLevel, ModuleBuffer, ModuleHeaders, INLINE_HEADERS, METRICS_SUCCESS,
};

/// Logs one line through Envoy (`[dynamic_modules]` logger). Never pass request data, tokens,
/// keys, cookies or passwords: only codes and configuration field names.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: plain FFI; `message` outlives the call and Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes())) }
}

/// Whether Envoy writes lines at `level` under the `dynamic_modules` logger.
pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: plain FFI on a plain value; Envoy only reads its logger's level.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) }
}

/// The filter configuration, on Envoy's main thread, for the duration of one configuration hook
/// (`config_new`: defines metrics, counts the configuration's own outcome and makes the
/// scheduler; `config_scheduled` and `config_http_callout_done`: counts, sets the gauge, starts
/// HTTP calls).
pub struct ConfigHost {
    envoy: Live<OfConfig>,
}

impl ConfigHost {
    /// The handle of one configuration hook call.
    ///
    /// # Safety
    /// `ptr` is the configuration pointer Envoy passed to the running hook, or (to count from a
    /// stream hook or `config_destroy`: `state.rs`) that of the configuration that made the
    /// running hook's stream, or that `config_destroy` is destroying, which Envoy keeps alive for
    /// as long; and the handle is dropped before the hook returns.
    pub(super) unsafe fn new(ptr: ConfigEnvoyPtr) -> ConfigHost {
        ConfigHost {
            // SAFETY: the caller's contract.
            envoy: unsafe { Live::new(ptr) },
        }
    }

    /// Adds one to counter `id` (defined on this configuration). Failing to count never changes
    /// a decision.
    pub fn increment(&self, id: usize) {
        self.envoy.increment(id);
    }

    /// Sets gauge `id` (defined on this configuration) to `value`.
    pub fn set_gauge(&self, id: usize, value: u64) {
        self.envoy.set_gauge(id, value);
    }

    /// A scheduler that runs `on_http_filter_config_scheduled` on the main thread, committed from
    /// any thread (`config_new` only: see the declaration).
    pub fn scheduler(&self) -> Option<ConfigScheduler> {
        RawScheduler::adopt(self.envoy.scheduler_new()).map(ConfigScheduler::new)
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
        self.envoy.http_callout(cluster, headers, body, timeout_ms)
    }

    /// Defines a counter; `None` if Envoy refused it (counting then does nothing).
    pub fn define_counter(&self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `ptr` is the config pointer Envoy passed to this `config_new`; `name` outlives
        // the call (Envoy copies it); no labels (NULL, 0); `id` is a valid out-pointer.
        let rc = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.envoy.ptr(),
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
                self.envoy.ptr(),
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

/// The downstream peer certificate's attributes, views into Envoy's connection (alive for the
/// hook).
pub struct PeerCertificate<'h> {
    /// `connection.subject_peer_certificate` (RFC 2253).
    pub subject: Option<&'h [u8]>,
    /// `connection.dns_san_peer_certificate`: the first DNS SAN only.
    pub dns_san: Option<&'h [u8]>,
    /// `connection.uri_san_peer_certificate`: the first URI SAN only.
    pub uri_san: Option<&'h [u8]>,
}

/// One HTTP stream's filter, for the duration of one hook call. Views of Envoy's memory borrow
/// `&self`; calls that can invalidate them take `&mut self`.
pub struct Host {
    envoy: Live<OfStream>,
    /// A local reply went out in this hook: a later failure must not send a second one.
    pub(super) responded: bool,
}

impl Host {
    /// The handle of one stream hook call.
    ///
    /// # Safety
    /// `ptr` is the filter pointer Envoy passed to the running hook, and the handle is dropped
    /// before the hook returns.
    pub(super) unsafe fn new(ptr: FilterEnvoyPtr) -> Host {
        Host {
            // SAFETY: the caller's contract.
            envoy: unsafe { Live::new(ptr) },
            responded: false,
        }
    }

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
        let n = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.envoy.ptr(), map as u32)
        };
        if n == 0 {
            return Some(f(&[]));
        }
        if n > INLINE_HEADERS {
            let mut raw: Vec<EnvoyHttpHeader> = Vec::with_capacity(n);
            // SAFETY: `raw` has room for `n` entries, which is what Envoy writes (it counted them
            // just now, on this thread, with no call in between that changes the map).
            let ok = unsafe {
                envoy_dynamic_module_callback_http_get_headers(
                    self.envoy.ptr(),
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
                self.envoy.ptr(),
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
                self.envoy.ptr(),
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
                self.envoy.ptr(),
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
                self.envoy.ptr(),
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
                self.envoy.ptr(),
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
                self.envoy.ptr(),
                map as u32,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            )
        }
    }

    /// The downstream connection's TLS version (`TLSv1.3`), `None` on plain text.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn tls_version(&self) -> Option<&[u8]> {
        self.attribute_string(attribute::CONNECTION_TLS_VERSION)
    }

    /// A string attribute of the stream, `None` when Envoy has none.
    fn attribute_string(&self, id: u32) -> Option<&[u8]> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: live filter pointer; `out` is a valid out-pointer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.envoy.ptr(),
                id,
                &mut out,
            )
        };
        // SAFETY: Envoy's buffer (the connection's), alive for the hook; borrowed from `&self`.
        ok.then(|| unsafe { out.bytes() })
    }

    /// The downstream connection's peer certificate as Envoy reports it: `None` unless the
    /// connection is TLS and the peer presented a certificate (`connection.mtls`); then its
    /// subject, first DNS SAN and first URI SAN, each `None` when absent. Envoy says nothing of
    /// validation here: see `core::edge::cert`.
    pub fn peer_certificate(&self) -> Option<PeerCertificate<'_>> {
        let mut mtls = false;
        // SAFETY: live filter pointer; `mtls` is a valid out-pointer for one bool.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_bool(
                self.envoy.ptr(),
                attribute::CONNECTION_MTLS,
                &mut mtls,
            )
        };
        (ok && mtls).then(|| PeerCertificate {
            subject: self.attribute_string(attribute::CONNECTION_SUBJECT_PEER_CERTIFICATE),
            dns_san: self.attribute_string(attribute::CONNECTION_DNS_SAN_PEER_CERTIFICATE),
            uri_san: self.attribute_string(attribute::CONNECTION_URI_SAN_PEER_CERTIFICATE),
        })
    }

    /// Sets gauge `id` to `value`. Failing to set it never changes a decision.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn set_gauge(&self, id: usize, value: u64) {
        self.envoy.set_gauge(id, value);
    }

    /// The chunks of body `which`, as views (empty when there is none).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn body_chunks(&self, which: Body) -> Vec<&[u8]> {
        // SAFETY: live filter pointer.
        let n = unsafe {
            envoy_dynamic_module_callback_http_get_body_chunks_size(self.envoy.ptr(), which as u32)
        };
        if n == 0 {
            return Vec::new();
        }
        let mut raw: Vec<EnvoyBuffer> = Vec::with_capacity(n);
        // SAFETY: `raw` has room for the `n` entries Envoy just counted.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_body_chunks(
                self.envoy.ptr(),
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
        unsafe { envoy_dynamic_module_callback_http_drain_body(self.envoy.ptr(), which as u32, n) }
    }

    /// A scheduler that resumes work on this stream's worker from any thread.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn scheduler(&self) -> Option<Scheduler> {
        RawScheduler::adopt(self.envoy.scheduler_new()).map(Scheduler::new)
    }

    /// Resumes the request a hook stopped.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn continue_decoding(&mut self) {
        // SAFETY: live filter pointer, on the stream's worker (inside a hook).
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.envoy.ptr()) }
    }

    /// Starts an HTTP call to `cluster` (`headers` with `:method`, `:path`, `host`); its answer
    /// comes to the stream's `callout_done` with the returned id. `Err(init result)` when Envoy
    /// refused to start it (no answer will come).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn http_callout<'h>(
        &mut self,
        cluster: &str,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        self.envoy.http_callout(cluster, headers, body, timeout_ms)
    }

    /// Sets filter state `key` (the access log's `%FILTER_STATE(key:PLAIN)%`).
    pub fn set_filter_state(&mut self, key: &str, value: &[u8]) -> bool {
        // SAFETY: live filter pointer; both buffers outlive the call (Envoy copies them).
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.envoy.ptr(),
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// Adds one to counter `id`. Failing to count never changes a decision.
    pub fn increment(&self, id: usize) {
        self.envoy.increment(id);
    }
}

//! The C ABI's types, as Envoy 1.40's `abi.h` (`v0.2.0`) defines them, and the enum values devgate
//! passes or reads. Every struct is `#[repr(C)]` and passed exactly as the C header passes it
//! (`{ptr, length}` pairs by value, which the SysV x86-64 and AArch64 C ABIs put in two registers).
//!
//! `unsafe` here: turning Envoy's `{ptr, length}` views into slices ([`EnvoyBuffer::bytes`],
//! [`EnvoyHttpHeader::views`]), each tied by its caller to a borrow of the hook's handle.

use std::ffi::c_void;
use std::os::raw::c_char;

/// `envoy_dynamic_module_type_http_filter_envoy_ptr`: Envoy's `DynamicModuleHttpFilter`, valid
/// from `on_http_filter_new` until `on_http_filter_destroy`.
pub(super) type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`: devgate's per-stream state, a
/// `Box<Stream>` from `on_http_filter_new`, freed in `on_http_filter_destroy`.
pub(super) type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`: Envoy's filter configuration object.
pub(super) type ConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`: devgate's configuration, an
/// `Arc<Config>` turned into a raw pointer in `config_new`, released in `config_destroy`.
pub(super) type ConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr`: made by `scheduler_new` for one
/// filter, owned by devgate ([`Scheduler`](super::Scheduler)), freed with `scheduler_delete`.
pub(super) type SchedulerPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr`: made by
/// `config_scheduler_new` for one filter configuration, owned by devgate ([`ConfigScheduler`](super::ConfigScheduler)),
/// freed with `config_scheduler_delete`.
pub(super) type ConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: memory owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

impl EnvoyBuffer {
    /// No buffer (what an out-parameter starts as).
    pub(super) const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, borrowed for `'a`.
    ///
    /// # Safety
    /// Envoy must keep the memory alive and unchanged for `'a`: the caller ties `'a` to a borrow
    /// of the [`Host`](super::Host) that a setter would need mutably.
    pub(super) unsafe fn bytes<'a>(self) -> &'a [u8] {
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
    pub(super) const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// A view of `b`, which must outlive the Envoy call it is passed to.
    pub(super) fn of(b: &[u8]) -> ModuleBuffer {
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
    pub(super) unsafe fn views<'a>(self) -> (&'a [u8], &'a [u8]) {
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

/// How many headers [`Host::with_headers`](super::Host::with_headers) reads into stack storage; a map with more costs one
/// allocation (browsers and API clients send 10-25).
pub(super) const INLINE_HEADERS: usize = 48;

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
    /// An empty header (the filler of unused inline slots).
    pub(super) const NULL: ModuleHttpHeader = ModuleHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };

    /// A view of `k: v`; both must outlive the Envoy call it is passed to.
    pub(super) fn of(k: &[u8], v: &[u8]) -> ModuleHttpHeader {
        ModuleHttpHeader {
            key_ptr: k.as_ptr().cast::<c_char>(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast::<c_char>(),
            value_length: v.len(),
        }
    }
}

/// Up to `N` headers of a local reply or callout on the stack, more on the heap.
pub(super) struct ModuleHeaders<const N: usize> {
    inline: [ModuleHttpHeader; N],
    len: usize,
    spilled: Vec<ModuleHttpHeader>,
}

impl<const N: usize> ModuleHeaders<N> {
    /// The headers, pointing into `headers`' strings (which must outlive the Envoy call).
    pub(super) fn of<'h>(
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) -> ModuleHeaders<N> {
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

    /// The headers, in order.
    pub(super) fn as_slice(&self) -> &[ModuleHttpHeader] {
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
    /// The request headers.
    RequestHeader = 0,
    /// The request trailers.
    RequestTrailer = 1,
    /// The response headers.
    ResponseHeader = 2,
}

/// `envoy_dynamic_module_type_log_level` (C enum, in this order; mirrors Envoy's spdlog levels).
#[derive(Clone, Copy)]
#[repr(u32)]
#[allow(dead_code)] // Trace, Debug and Critical: part of the enum, unused by devgate
pub enum LogLevel {
    /// `trace`.
    Trace = 0,
    /// `debug`.
    Debug = 1,
    /// `info`.
    Info = 2,
    /// `warning`.
    Warn = 3,
    /// `error`.
    Error = 4,
    /// `critical`.
    Critical = 5,
}

/// `envoy_dynamic_module_type_attribute_id` values devgate reads (the enum's positions).
pub(super) mod attribute {
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
    /// `connection.mtls` (a bool): the downstream connection is TLS and the peer presented a
    /// certificate. Envoy reports presence, not validation. Position 29.
    pub const CONNECTION_MTLS: u32 = 29;
    /// `connection.subject_peer_certificate`: the peer certificate's subject, RFC 2253. Position
    /// 33 (after connection.subject_local_certificate 32).
    pub const CONNECTION_SUBJECT_PEER_CERTIFICATE: u32 = 33;
    /// `connection.dns_san_peer_certificate`: the peer certificate's **first** DNS SAN. Position
    /// 35 (after connection.dns_san_local_certificate 34).
    pub const CONNECTION_DNS_SAN_PEER_CERTIFICATE: u32 = 35;
    /// `connection.uri_san_peer_certificate`: the peer certificate's **first** URI SAN. Position
    /// 37 (after connection.uri_san_local_certificate 36). The three certificate ids are
    /// confirmed by `tests/e2e/test_client_certs.py` (a developer by each of URI SAN, DNS SAN and
    /// subject, over the native host).
    pub const CONNECTION_URI_SAN_PEER_CERTIFICATE: u32 = 37;
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

/// What the glue answers for a request body chunk; `on_http_filter_request_body` (`exports.rs`)
/// maps it to Envoy's status.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub enum BodyStatus {
    /// Pass it on (and resume a request whose headers were held).
    Continue,
    /// Hold it, with what came before, until the end of the body.
    StopAndBuffer,
    /// Hold it without buffering (an answered request).
    Stop,
}

/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
pub(super) const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result_Success` (then `Reset`,
/// `ExceedResponseBufferLimit`).
pub(super) const CALLOUT_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub(super) const METRICS_SUCCESS: u32 = 0;

/// Return values of the request/response hooks. Every `on_http_filter_*_status` enum has
/// `Continue` at 0; the header hooks have `StopIteration` at 1, the trailer hooks too.
pub(super) const CONTINUE: u32 = 0;
/// `StopIteration` of the header and trailer hooks (see [`CONTINUE`]).
pub(super) const STOP_ITERATION: u32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_request_body_status`: `Continue` 0,
/// `StopIterationAndBuffer` 1, `StopIterationAndWatermark` 2, `StopIterationNoBuffer` 3.
pub(super) const BODY_STOP_AND_BUFFER: u32 = 1;
/// `StopIterationNoBuffer` of the request body hook (see [`BODY_STOP_AND_BUFFER`]).
pub(super) const BODY_STOP_NO_BUFFER: u32 = 3;

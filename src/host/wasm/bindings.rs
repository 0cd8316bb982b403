//! The few host calls devgate makes, written against the proxy-wasm ABI directly.
//!
//! The SDK's getters turn header names into `String` with `unwrap()` and panic on any status they
//! do not expect; a panic here is a trap, and a trap is a 503 (or, with a fail-open setting, a
//! bypass). These wrappers read everything as bytes, return every failure as an error, and let
//! the caller fail closed. The SDK still drives the contexts and allocates the buffers the host
//! hands back: see [`take`] for that contract, checked against `proxy-wasm` 0.2.5 (pinned
//! exactly in Cargo.toml for that reason).
#![allow(unsafe_code)]

use core::ptr::{null, null_mut};

use super::map::serialize_pairs;

/// `MapType::HttpRequestHeaders` of the ABI.
const REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpRequestTrailers` of the ABI.
const REQUEST_TRAILERS: u32 = 1;
/// `MapType::HttpResponseHeaders` of the ABI.
const RESPONSE_HEADERS: u32 = 2;
/// `BufferType::HttpRequestBody` of the ABI.
const REQUEST_BODY: u32 = 0;
/// `Status::CasMismatch`.
const CAS_MISMATCH: u32 = 8;
/// `Status::Ok`.
const OK: u32 = 0;
/// `Status::NotFound`.
const NOT_FOUND: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// A host call returned a status other than the ones devgate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

/// Takes ownership of a buffer the host returned through a `(data, size)` out-parameter pair.
///
/// The contract, checked against proxy-wasm 0.2.5 and proxy-wasm-cpp-host (Envoy):
/// - For a non-empty value the host calls the module's `proxy_on_memory_allocate(size)` (the
///   SDK's, in `allocator.rs`), which builds a `Vec<MaybeUninit<u8>>` with `with_capacity(size)`,
///   sets its length to `size`, turns it into a `Box<[MaybeUninit<u8>]>` (whose allocation has
///   exactly the layout of `[u8; size]`: size `size`, align 1) and leaks it with
///   `Box::into_raw`. The host writes all `size` bytes and stores the pointer and `size`.
/// - For an empty value the host allocates nothing and stores a null pointer and 0
///   (cpp-host's `copyToPointerSize`); a host that called the allocator with 0 anyway gets a
///   dangling, non-null pointer to a zero-sized allocation, which owns no memory.
///
/// So the buffer is rebuilt as exactly what the allocator leaked, a boxed slice of `size`
/// bytes (`Box::from_raw` is the inverse of `Box::into_raw`), and turned into a `Vec` (capacity
/// == length, no copy). Null or 0 is an empty `Vec` that frees nothing.
fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    let slice = core::ptr::slice_from_raw_parts_mut(data, size);
    // SAFETY: per the contract above, `data` is the pointer `Box::into_raw` returned for a boxed
    // slice of exactly `size` bytes from the global allocator, every byte initialised by the
    // host (`MaybeUninit<u8>` and `u8` have the same layout), and nothing else owns it.
    unsafe { Box::from_raw(slice) }.into_vec()
}

/// All request headers, serialized as the ABI does (see [`super::map::parse_pairs`]).
pub fn request_header_pairs() -> Result<Vec<u8>, HostError> {
    map_pairs(REQUEST_HEADERS)
}

/// All request trailers, serialized as the ABI does (only valid in the trailers callback).
pub fn request_trailer_pairs() -> Result<Vec<u8>, HostError> {
    map_pairs(REQUEST_TRAILERS)
}

/// Removes every value of a request trailer.
pub fn remove_request_trailer(name: &[u8]) -> Result<(), HostError> {
    remove_map_value(REQUEST_TRAILERS, name)
}

/// Every pair of header map `map`, serialized as the ABI does.
fn map_pairs(map: u32) -> Result<Vec<u8>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: plain FFI; the out-pointers are valid for the duration of the call.
    match unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) } {
        OK => Ok(take(data, size)),
        s => Err(HostError(s)),
    }
}

/// A property such as `source.address`; `Ok(None)` when the host has none.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    // The ABI encodes a property path as its segments, each followed by a NUL.
    let mut encoded = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for seg in path {
        encoded.extend_from_slice(seg.as_bytes());
        encoded.push(0);
    }
    property_encoded(&encoded)
}

/// [`property`] with the path already encoded (`b"source\0address\0"`): no allocation for the
/// one property every request reads.
pub fn property_encoded(encoded: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: plain FFI; `encoded` outlives the call.
    match unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size) } {
        OK => Ok(Some(take(data, size))),
        NOT_FOUND => Ok(None),
        s => Err(HostError(s)),
    }
}

/// Sets a one-segment property; Envoy keeps it as filter state `wasm.<name>`, which access
/// logs read with `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: plain FFI; both slices outlive the call.
    match unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) } {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// The level of Envoy's wasm logger (the ABI's `LogLevel`: 0 trace .. 5 critical).
pub fn log_level() -> Result<u32, HostError> {
    let mut level = 0u32;
    // SAFETY: plain FFI; `level` is a valid out-pointer for the duration of the call.
    match unsafe { proxy_get_log_level(&mut level) } {
        OK => Ok(level),
        s => Err(HostError(s)),
    }
}

/// Defines (or finds) a counter; Envoy shows it as `wasmcustom.<name>`.
pub fn define_counter(name: &str) -> Result<u32, HostError> {
    let mut id = 0u32;
    // SAFETY: plain FFI; `name` outlives the call, `id` is a valid out-pointer.
    match unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) } {
        OK => Ok(id),
        s => Err(HostError(s)),
    }
}

/// Defines (or finds) a gauge; Envoy shows it as `wasmcustom.<name>`.
pub fn define_gauge(name: &str) -> Result<u32, HostError> {
    let mut id = 0u32;
    // SAFETY: plain FFI; `name` outlives the call, `id` is a valid out-pointer.
    match unsafe { proxy_define_metric(1, name.as_ptr(), name.len(), &mut id) } {
        OK => Ok(id),
        s => Err(HostError(s)),
    }
}

/// Sets a gauge. Errors are ignored, as for counters.
pub fn record(id: u32, value: u64) {
    // SAFETY: plain FFI on plain values.
    let _ = unsafe { proxy_record_metric(id, value) };
}

/// Adds one to a counter. Failing to count never changes a decision, so errors are ignored.
pub fn increment(id: u32) {
    // SAFETY: plain FFI on plain values.
    let _ = unsafe { proxy_increment_metric(id, 1) };
}

/// Removes every value of a request header.
pub fn remove_request_header(name: &[u8]) -> Result<(), HostError> {
    remove_map_value(REQUEST_HEADERS, name)
}

/// Removes every value of `name` from header map `map`.
fn remove_map_value(map: u32, name: &[u8]) -> Result<(), HostError> {
    // SAFETY: plain FFI; `name` outlives the call.
    match unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) } {
        OK | NOT_FOUND => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Sets a request header to one value, replacing any.
pub fn set_request_header(name: &[u8], value: &[u8]) -> Result<(), HostError> {
    // SAFETY: plain FFI; both slices outlive the call.
    let status = unsafe {
        proxy_replace_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Answers the request locally. `details` shows up as `%RESPONSE_CODE_DETAILS%`.
pub fn send_local_response(
    status: u16,
    details: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<(), HostError> {
    let map = serialize_pairs(headers);
    // SAFETY: plain FFI; every buffer outlives the call. `body` may be empty (null is allowed).
    let rc = unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    match rc {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// The first value of a response header (`:status`, ...); `Ok(None)` when absent.
pub fn response_header(name: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    map_value(RESPONSE_HEADERS, name)
}

/// The first value of `name` in header map `map`; `Ok(None)` when absent.
fn map_value(map: u32, name: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: plain FFI; `name` outlives the call, the out-pointers are valid.
    let status =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    match status {
        OK => Ok(Some(take(data, size))),
        NOT_FOUND => Ok(None),
        s => Err(HostError(s)),
    }
}

/// Up to `size` bytes from the start of buffer `buffer`; empty when the host has none.
fn buffer_bytes(buffer: u32, size: usize) -> Result<Vec<u8>, HostError> {
    let mut data = null_mut();
    let mut got = 0;
    // SAFETY: plain FFI; the out-pointers are valid for the duration of the call.
    match unsafe { proxy_get_buffer_bytes(buffer, 0, size, &mut data, &mut got) } {
        OK => Ok(take(data, got)),
        NOT_FOUND => Ok(Vec::new()),
        s => Err(HostError(s)),
    }
}

/// All response headers, serialized as the ABI does.
pub fn response_header_pairs() -> Result<Vec<u8>, HostError> {
    map_pairs(RESPONSE_HEADERS)
}

/// Adds a response header value (keeping the others: `Set-Cookie` may repeat).
pub fn add_response_header(name: &[u8], value: &[u8]) -> Result<(), HostError> {
    // SAFETY: plain FFI; both slices outlive the call.
    let status = unsafe {
        proxy_add_header_map_value(
            RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Empties the request body chunk the current callback holds, so the filters after devgate
/// (and the upstream) never receive it.
pub fn drop_request_body(size: usize) -> Result<(), HostError> {
    // SAFETY: plain FFI; a zero-length replacement (null is allowed with size 0).
    match unsafe { proxy_set_buffer_bytes(REQUEST_BODY, 0, size, null(), 0) } {
        OK | NOT_FOUND => Ok(()),
        s => Err(HostError(s)),
    }
}

/// The first `size` bytes of the request body chunk the current callback holds.
pub fn request_body(size: usize) -> Result<Vec<u8>, HostError> {
    // An empty body has no buffer: empty.
    buffer_bytes(REQUEST_BODY, size)
}

/// A shared-data value (shared by every VM of the plugin in this Envoy process) and its
/// compare-and-swap token; `(None, 0)` when absent.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0u32;
    // SAFETY: plain FFI; `key` outlives the call, the out-pointers are valid.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok((Some(take(data, size)), cas)),
        NOT_FOUND => Ok((None, 0)),
        s => Err(HostError(s)),
    }
}

/// Whether a compare-and-swap write went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cas {
    Stored,
    /// Another worker wrote first: read again and retry.
    Mismatch,
}

/// Writes a shared-data value if its CAS token is still `cas` (0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<Cas, HostError> {
    // SAFETY: plain FFI; both slices outlive the call.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        OK => Ok(Cas::Stored),
        CAS_MISMATCH => Ok(Cas::Mismatch),
        s => Err(HostError(s)),
    }
}

/// `MapType::HttpCallResponseHeaders` of the ABI.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// `BufferType::HttpCallResponseBody` of the ABI.
const HTTP_CALL_RESPONSE_BODY: u32 = 4;

/// `StreamType::HttpRequest` of the ABI.
const HTTP_REQUEST_STREAM: u32 = 0;

/// `:status` of the response to a `dispatch_http_call`; `None` when the call failed (no response).
pub fn http_call_status() -> Option<Vec<u8>> {
    http_call_header(b":status").ok().flatten()
}

/// The first value of header `name` of the response to a `dispatch_http_call`, as bytes;
/// `Ok(None)` when absent (or when no response came).
pub fn http_call_header(name: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    map_value(HTTP_CALL_RESPONSE_HEADERS, name)
}

/// Sets the root context's tick period (0: no ticks). Called from a stream's context, Envoy
/// sets its root context's.
pub fn set_tick_period_ms(period: u32) -> Result<(), HostError> {
    // SAFETY: plain FFI on a plain value.
    match unsafe { proxy_set_tick_period_milliseconds(period) } {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Makes `context_id` the context the following host calls act on (a stream's, from a root
/// callback). An error when the host no longer knows that context.
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    // SAFETY: plain FFI on a plain value.
    match unsafe { proxy_set_effective_context(context_id) } {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Lets the (effective) stream's held request go on (`resume_http_request`).
pub fn resume_request() -> Result<(), HostError> {
    // SAFETY: plain FFI on a plain value.
    match unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) } {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// The body of the response to a `dispatch_http_call` (`size` bytes).
pub fn http_call_body(size: usize) -> Result<Vec<u8>, HostError> {
    buffer_bytes(HTTP_CALL_RESPONSE_BODY, size)
}

/// The host as the core sees it: lazily read facts and the process-wide store.
pub struct Wasm;

impl crate::core::facts::Facts for Wasm {
    fn now(&self) -> u64 {
        proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }

    fn now_ms(&self) -> u64 {
        proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Envoy's `connection.tls_version` attribute.
    fn tls(&self) -> bool {
        matches!(property(&["connection", "tls_version"]), Ok(Some(v)) if !v.is_empty())
    }
    /// Envoy's `connection.mtls` (one byte, 1: a peer certificate was presented) and the
    /// certificate's `connection.uri_san_peer_certificate`, `connection.dns_san_peer_certificate`
    /// (each the first SAN of its kind only) and `connection.subject_peer_certificate` (RFC
    /// 2253). Envoy tells a Wasm filter nothing of validation nor of email SANs: `validated` is
    /// the presence, which the listener's `validation_context` makes a validation
    /// (docs/client-certificates.md; `devgate check-config` checks it).
    fn client_cert(&self) -> Option<crate::core::edge::ClientCert> {
        let mtls = property(&["connection", "mtls"]).ok()??;
        if mtls.as_slice() != [1] {
            return None;
        }
        let text = |name: &str| {
            property(&["connection", name])
                .ok()
                .flatten()
                .and_then(|v| String::from_utf8(v).ok())
                .filter(|s| !s.is_empty())
        };
        Some(crate::core::edge::ClientCert {
            validated: true,
            uri_sans: text("uri_san_peer_certificate").into_iter().collect(),
            dns_sans: text("dns_san_peer_certificate").into_iter().collect(),
            emails: Vec::new(),
            subject: text("subject_peer_certificate"),
        })
    }
}

impl crate::core::facts::ResponseFacts for Wasm {
    /// Asking for an absent header copies nothing into the VM: the cheapest read there is
    /// (`make bench-calls`).
    fn has_header(&self, name: &[u8]) -> bool {
        matches!(response_header(name), Ok(Some(_)))
    }

    fn with_headers<R>(&self, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> Option<R> {
        let buf = response_header_pairs().ok()?;
        let pairs = super::map::parse_pairs(&buf)?;
        Some(f(&pairs))
    }
}

impl crate::core::shared::SharedStore for Wasm {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), crate::core::shared::Unavailable> {
        shared_data(key).map_err(|_| crate::core::shared::Unavailable)
    }

    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: u32,
    ) -> Result<bool, crate::core::shared::Unavailable> {
        match set_shared_data(key, value, cas) {
            Ok(Cas::Stored) => Ok(true),
            Ok(Cas::Mismatch) => Ok(false),
            Err(_) => Err(crate::core::shared::Unavailable),
        }
    }
}

//! Constants of the proxy-wasm ABI (status codes, map and buffer types).

/// proxy-wasm status codes (`WasmResult`).
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const SERIALIZATION_FAILURE: i32 = 3;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
}

/// WASI errno values the host returns.
pub(crate) mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
}

pub(crate) const MAP_REQUEST_HEADERS: i32 = 0;
pub(crate) const MAP_REQUEST_TRAILERS: i32 = 1;
pub(crate) const MAP_RESPONSE_HEADERS: i32 = 2;
pub(crate) const MAP_RESPONSE_TRAILERS: i32 = 3;
pub(crate) const MAP_HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
pub(crate) const MAP_HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;

pub(crate) const BUFFER_HTTP_REQUEST_BODY: i32 = 0;
pub(crate) const BUFFER_HTTP_RESPONSE_BODY: i32 = 1;
pub(crate) const BUFFER_HTTP_CALL_RESPONSE_BODY: i32 = 4;
pub(crate) const BUFFER_VM_CONFIGURATION: i32 = 6;
pub(crate) const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;
/// `WasmBufferType::MAX` (CallData).
pub(crate) const BUFFER_MAX: i32 = 8;

/// Log levels as the ABI numbers them.
pub mod level {
    pub const TRACE: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

/// Fuel given to each guest entry sequence; far more than any request may use.
pub(crate) const FUEL_BUDGET: u64 = 10_000_000_000;

/// The root context id (Envoy gives the root context the first id).
pub(crate) const ROOT_ID: u32 = 1;

//! The host state (the wasmtime store's data).

use std::collections::BTreeMap;

use crate::codes::{
    MAP_HTTP_CALL_RESPONSE_HEADERS, MAP_HTTP_CALL_RESPONSE_TRAILERS, MAP_REQUEST_HEADERS,
    MAP_REQUEST_TRAILERS, MAP_RESPONSE_HEADERS, MAP_RESPONSE_TRAILERS,
};
use crate::headers::{show, Headers};
use crate::records::{HostCall, LocalResponse, LogLine, Phase};
use crate::shared::{HttpCall, Metric, SharedData};

#[derive(Default)]
pub(crate) struct State {
    // Set by the test.
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) now_nanos: u64,
    pub(crate) monotonic_nanos: u64,
    pub(crate) log_level: u32,
    pub(crate) legacy_replace: bool,
    pub(crate) root_properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) rng: u64,

    // The module's allocator export ("malloc" preferred, as proxy-wasm-cpp-host does).
    pub(crate) malloc: Option<&'static str>,

    // The request in flight.
    pub(crate) in_request: bool,
    pub(crate) current_context: u32,
    /// The context id of the request in flight (0: none).
    pub(crate) stream_context: u32,
    /// Tokens of the `proxy_http_call`s already answered.
    pub(crate) answered_calls: Vec<u32>,
    pub(crate) phase: Phase,
    pub(crate) properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) request_headers: Option<Headers>,
    pub(crate) request_trailers: Option<Headers>,
    pub(crate) response_headers: Option<Headers>,
    /// The body buffer of the `proxy_on_request_body` in progress (None: no body callback).
    pub(crate) request_body: Option<Vec<u8>>,
    /// `proxy_on_response_headers` is encoding devgate's own local reply.
    pub(crate) encoding_local_reply: bool,
    pub(crate) local_responses: Vec<LocalResponse>,
    pub(crate) properties_set: BTreeMap<String, Vec<u8>>,
    pub(crate) continued_request: u32,
    pub(crate) continued_response: u32,

    // Kept across requests.
    pub(crate) logs: Vec<LogLine>,
    pub(crate) calls: Vec<HostCall>,
    pub(crate) violations: Vec<String>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) shared: SharedData,
    pub(crate) tick_period_ms: Option<u32>,
    pub(crate) http_calls: Vec<HttpCall>,
    pub(crate) next_http_token: u32,
    pub(crate) http_call_response: Option<(Headers, Vec<u8>, Headers)>,
    pub(crate) proxy_done_calls: u32,
}

impl State {
    pub(crate) fn record(&mut self, name: &'static str, args: String) {
        self.calls.push(HostCall { name, args });
    }

    pub(crate) fn violation(&mut self, message: String) {
        self.violations.push(message);
    }

    pub(crate) fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, so the guest's random seeds (and so its fuel) are too.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn map(&self, map_type: i32) -> Option<&Headers> {
        match map_type {
            MAP_REQUEST_HEADERS => self.request_headers.as_ref(),
            MAP_REQUEST_TRAILERS => self.request_trailers.as_ref(),
            MAP_RESPONSE_HEADERS => self.response_headers.as_ref(),
            MAP_HTTP_CALL_RESPONSE_HEADERS => self.http_call_response.as_ref().map(|r| &r.0),
            MAP_HTTP_CALL_RESPONSE_TRAILERS => self.http_call_response.as_ref().map(|r| &r.2),
            _ => None,
        }
    }

    pub(crate) fn map_mut(&mut self, map_type: i32) -> Option<&mut Headers> {
        match map_type {
            MAP_REQUEST_HEADERS => self.request_headers.as_mut(),
            MAP_REQUEST_TRAILERS => self.request_trailers.as_mut(),
            MAP_RESPONSE_HEADERS => self.response_headers.as_mut(),
            _ => None,
        }
    }

    /// Checks a header the module writes the way Envoy's header validation would.
    pub(crate) fn check_header_write(&mut self, call: &str, name: &[u8], value: &[u8]) {
        if name.is_empty() {
            self.violation(format!("{call}: empty header name"));
        }
        if name.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
            self.violation(format!(
                "{call}: header name with NUL/CR/LF: {}",
                show(name, 60)
            ));
        }
        if value.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
            self.violation(format!(
                "{call}: value of {} contains NUL/CR/LF",
                show(name, 60)
            ));
        }
    }
}

pub(crate) fn map_name(map_type: i32) -> &'static str {
    match map_type {
        MAP_REQUEST_HEADERS => "request_headers",
        MAP_REQUEST_TRAILERS => "request_trailers",
        MAP_RESPONSE_HEADERS => "response_headers",
        MAP_RESPONSE_TRAILERS => "response_trailers",
        MAP_HTTP_CALL_RESPONSE_HEADERS => "http_call_response_headers",
        MAP_HTTP_CALL_RESPONSE_TRAILERS => "http_call_response_trailers",
        _ => "unknown_map",
    }
}

/// A property path as Envoy reads it: segments split on NUL, a trailing NUL ending the path
/// (so `source\0address` and `source\0address\0` are the same property).
pub(crate) fn normalize_property_path(path: &[u8]) -> Vec<u8> {
    match path.strip_suffix(&[0]) {
        Some(stripped) => stripped.to_vec(),
        None => path.to_vec(),
    }
}

/// Property paths arrive as NUL-separated segments; shown dotted.
pub(crate) fn property_name(path: &[u8]) -> String {
    show(
        &path
            .iter()
            .map(|&b| if b == 0 { b'.' } else { b })
            .collect::<Vec<_>>(),
        80,
    )
}

/// Dotted property name to the ABI's NUL-separated path.
pub fn property_path(dotted: &str) -> Vec<u8> {
    dotted
        .bytes()
        .map(|b| if b == b'.' { 0 } else { b })
        .collect()
}

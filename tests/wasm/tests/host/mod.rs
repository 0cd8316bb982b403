//! A test host that plays Envoy for the built `devgate.wasm` (proxy-wasm ABI 0.2.1).
//!
//! It loads the module into wasmtime, links **every** import the module declares, and drives the
//! callbacks in the order Envoy does:
//!
//! ```text
//! load:       _initialize (or _start) -> proxy_on_context_create(root, 0) -> proxy_on_vm_start
//! configure:  proxy_on_configure(root, len(plugin config))
//! request:    proxy_on_context_create(ctx, root) -> proxy_on_request_headers
//!             -> proxy_on_request_body (once per chunk) -> proxy_on_request_trailers
//!             -> (local reply or upstream response) proxy_on_response_headers
//!             -> proxy_on_done -> proxy_on_log -> proxy_on_delete
//! ```
//!
//! A request body is delivered in the chunks the test chose, one `proxy_on_request_body` each,
//! as Envoy 1.40's `Context::decodeData` does: `proxy_get_buffer_bytes(HttpRequestBody)` reads
//! the current chunk (plus whatever an earlier `Pause` buffered), `proxy_set_buffer_bytes`
//! edits it with Envoy's `Buffer::copyFrom` rules, and what a `Continue` leaves in it is what the
//! next filter gets (recorded per chunk). Once a callback continues, Envoy forgets that map or
//! buffer: request headers are unavailable in later callbacks.
//!
//! A local reply sent while the request is decoded goes through the encoder filters (this one
//! too: `proxy_on_response_headers` sees it); one sent from `proxy_on_response_headers` of an
//! upstream response replaces that response and goes straight to the client (Envoy's
//! `sendDirectLocalReply`). Shared data (`proxy_{get,set}_shared_data`) has proxy-wasm-cpp-host's
//! semantics (one process-wide CAS counter, a CAS of 0 always stores, a missing key is stored
//! whatever the CAS) and can be shared by several hosts, as Envoy's workers share it.
//!
//! Host header maps are ordered multimaps of byte strings with lowercase names, with Envoy's
//! semantics for each map call (`get` returns the first value, `replace` removes every copy then
//! appends, `set_pairs` replaces the whole map, `remove` removes every copy). Properties, the
//! plugin and VM configuration, the clock, the WASI environment and randomness are all set by the
//! test; randomness and clocks are deterministic, so wasmtime fuel per request is too.
//!
//! Every host call is recorded (name + short arguments) per request. An import the host does not
//! implement is linked to a stub that traps with "unexpected host call X" and records a
//! violation, so a test that reaches it fails loudly.
//!
//! Each test file does `mod host;` and uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use wasmtime::{
    AsContextMut, Caller, Config, Engine, Extern, ExternType, Instance, Linker, Module, Store,
};

// ------------------------------------------------------------------------------------------------
// Constants of the ABI
// ------------------------------------------------------------------------------------------------

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
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
}

const MAP_REQUEST_HEADERS: i32 = 0;
const MAP_REQUEST_TRAILERS: i32 = 1;
const MAP_RESPONSE_HEADERS: i32 = 2;
const MAP_RESPONSE_TRAILERS: i32 = 3;
const MAP_HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
const MAP_HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;

const BUFFER_HTTP_REQUEST_BODY: i32 = 0;
const BUFFER_HTTP_RESPONSE_BODY: i32 = 1;
const BUFFER_HTTP_CALL_RESPONSE_BODY: i32 = 4;
const BUFFER_VM_CONFIGURATION: i32 = 6;
const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;
/// `WasmBufferType::MAX` (CallData).
const BUFFER_MAX: i32 = 8;

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
const FUEL_BUDGET: u64 = 10_000_000_000;

/// The root context id (Envoy gives the root context the first id).
const ROOT_ID: u32 = 1;

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

/// A failure of the harness itself or of the module (trap), with a readable message.
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostError {}

pub type HostResult<T> = Result<T, HostError>;

fn err<T>(message: impl Into<String>) -> HostResult<T> {
    Err(HostError(message.into()))
}

// ------------------------------------------------------------------------------------------------
// The compiled module, once per test process
// ------------------------------------------------------------------------------------------------

/// Where the module is: `$DEVGATE_WASM`, else `<repo>/target/wasm32-wasip1/release/devgate.wasm`.
pub fn wasm_path() -> PathBuf {
    match std::env::var_os("DEVGATE_WASM") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/wasm32-wasip1/release/devgate.wasm"),
    }
}

struct Compiled {
    engine: Engine,
    module: Module,
}

static COMPILED: OnceLock<Result<Compiled, String>> = OnceLock::new();

fn compiled() -> HostResult<&'static Compiled> {
    let result = COMPILED.get_or_init(|| {
        let path = wasm_path();
        if !path.is_file() {
            let mut message = String::from(
                "devgate.wasm not built: run `make build` (target/wasm32-wasip1/release/devgate.wasm)",
            );
            if std::env::var_os("DEVGATE_WASM").is_some() {
                message.push_str(&format!("; DEVGATE_WASM points at {}", path.display()));
            }
            return Err(message);
        }
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e:#}"))?;
        let module = Module::from_file(&engine, &path)
            .map_err(|e| format!("compiling {}: {e:#}", path.display()))?;
        Ok(Compiled { engine, module })
    });
    result.as_ref().map_err(|m| HostError(m.clone()))
}

/// The module's imports as `module::name` strings (sorted), for inspection in tests.
pub fn module_imports() -> HostResult<Vec<String>> {
    let c = compiled()?;
    let mut v: Vec<String> = c
        .module
        .imports()
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    v.sort();
    Ok(v)
}

/// The module's exports (sorted).
pub fn module_exports() -> HostResult<Vec<String>> {
    let c = compiled()?;
    let mut v: Vec<String> = c.module.exports().map(|e| e.name().to_string()).collect();
    v.sort();
    Ok(v)
}

// ------------------------------------------------------------------------------------------------
// Header maps
// ------------------------------------------------------------------------------------------------

/// An ordered multimap of byte strings, as Envoy's header maps (names stored lowercase).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(Vec<u8>, Vec<u8>)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in &self.0 {
            list.entry(&format!("{}: {}", show(name, 60), show(value, 60)));
        }
        list.finish()
    }
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a header; the name is lowercased (ASCII) as Envoy's `LowerCaseString` does.
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.0.push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Appends a header with the name exactly as given (for adversarial inputs).
    pub fn add_raw(&mut self, name: &[u8], value: &[u8]) {
        self.0.push((name.to_vec(), value.to_vec()));
    }

    /// Every value of `name` (ASCII case-insensitive), in order.
    pub fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The first value of `name`, as Envoy's `getHeaderMapValue` answers.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).into_iter().next()
    }

    /// The first value of `name` as (lossy) UTF-8.
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.count(name) > 0
    }

    /// Envoy `remove`: every copy of the (lowercased) name.
    pub fn remove(&mut self, name: &[u8]) {
        let lower = name.to_ascii_lowercase();
        self.0.retain(|(n, _)| *n != lower);
    }

    /// Envoy `setCopy` (1.40): removes every copy, then appends one.
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }

    /// Pre-2021 Envoy `setCopy`: replaces the first copy only, leaving the others.
    pub fn replace_first_only(&mut self, name: &[u8], value: &[u8]) {
        let lower = name.to_ascii_lowercase();
        match self.0.iter_mut().find(|(n, _)| *n == lower) {
            Some(entry) => entry.1 = value.to_vec(),
            None => self.add(name, value),
        }
    }

    /// Envoy `byteSize`: the sum of name and value lengths.
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    /// Serialized as the ABI's map format: count, (name len, value len)*, (name\0 value\0)*.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.byte_size() + self.0.len() * 10);
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for (n, v) in &self.0 {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in &self.0 {
            out.extend_from_slice(n);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    /// Parses the ABI's map format strictly (every length and terminator checked).
    pub fn deserialize(bytes: &[u8]) -> Result<Headers, String> {
        if bytes.is_empty() {
            return Ok(Headers::new());
        }
        let word = |at: usize| -> Result<usize, String> {
            bytes
                .get(at..at + 4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
                .ok_or_else(|| format!("map truncated at byte {at}"))
        };
        let count = word(0)?;
        if count > bytes.len() / 8 {
            return Err(format!("map claims {count} pairs in {} bytes", bytes.len()));
        }
        let mut pos = 4 + count * 8;
        let mut map = Headers::new();
        for i in 0..count {
            let name_len = word(4 + i * 8)?;
            let value_len = word(8 + i * 8)?;
            let mut take = |len: usize| -> Result<Vec<u8>, String> {
                let s = bytes
                    .get(pos..pos + len)
                    .ok_or_else(|| format!("map entry {i} runs past the end"))?
                    .to_vec();
                if bytes.get(pos + len) != Some(&0) {
                    return Err(format!("map entry {i} lacks its NUL terminator"));
                }
                pos += len + 1;
                Ok(s)
            };
            let name = take(name_len)?;
            let value = take(value_len)?;
            map.0.push((name, value));
        }
        if pos != bytes.len() {
            return Err(format!("map has {} trailing bytes", bytes.len() - pos));
        }
        Ok(map)
    }
}

/// A short, printable rendering of bytes for records and messages.
pub fn show(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push_str(&format!("…({} bytes)", bytes.len()));
    }
    out.escape_debug().to_string()
}

// ------------------------------------------------------------------------------------------------
// Records
// ------------------------------------------------------------------------------------------------

/// One `proxy_log` line, or one line the module wrote to stdout/stderr (level `None`).
#[derive(Clone, Debug)]
pub struct LogLine {
    pub level: Option<u32>,
    pub message: String,
    pub raw: Vec<u8>,
}

/// One host call made by the module: its name and a short rendering of its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCall {
    pub name: &'static str,
    pub args: String,
}

/// The stream callback the module is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    RequestHeaders,
    /// `proxy_on_request_body` for chunk `n` (0-based).
    RequestBody(usize),
    RequestTrailers,
    ResponseHeaders,
    /// done / log / delete, or outside a stream.
    Other,
}

/// What `proxy_send_local_response` asked for.
#[derive(Clone, Debug)]
pub struct LocalResponse {
    pub status: u32,
    pub details: Vec<u8>,
    pub body: Vec<u8>,
    pub headers: Headers,
    pub grpc_status: i32,
    /// The callback that sent it.
    pub phase: Phase,
}

/// One `proxy_on_request_body` call.
#[derive(Clone, Debug)]
pub struct BodyCall {
    /// The chunk the host delivered with this call.
    pub delivered: Vec<u8>,
    /// The `body_size` argument: the buffer's size (earlier paused chunks included).
    pub size: usize,
    pub end_of_stream: bool,
    pub action: Action,
    /// What went on to the next filter: the buffer as the module left it, when it returned
    /// Continue with no local reply; `None` when it paused (buffered) or answered.
    pub passed_on: Option<Vec<u8>>,
}

// ------------------------------------------------------------------------------------------------
// Shared data
// ------------------------------------------------------------------------------------------------

/// Envoy's shared data for one `vm_id`: key -> (value, CAS), shared by every VM (worker) of the
/// plugin in the process. Clone the handle into several [`HostBuilder::shared_data`] to have
/// several VMs share it, as Envoy's workers do.
///
/// Semantics of proxy-wasm-cpp-host's `SharedData`: get of a missing key is NotFound; set with
/// CAS 0 always stores; set with a CAS that is not the key's current one is CasMismatch (a
/// missing key is stored whatever the CAS); every store takes the next value of one
/// process-wide CAS counter (starting at 1, skipping 0).
#[derive(Clone, Default)]
pub struct SharedData(Arc<Mutex<SharedInner>>);

#[derive(Default)]
struct SharedInner {
    map: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    last_cas: u32,
    /// Writes "another worker" makes just before the module's next CAS writes to a key.
    interference: Vec<(Vec<u8>, Vec<u8>, u32)>,
    /// Every set the module attempted: (key, CAS it passed, status answered).
    sets: Vec<(Vec<u8>, u32, i32)>,
}

impl SharedInner {
    fn next_cas(&mut self) -> u32 {
        self.last_cas = self.last_cas.wrapping_add(1);
        if self.last_cas == 0 {
            self.last_cas = 1;
        }
        self.last_cas
    }

    fn store(&mut self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        if let Some((_, current)) = self.map.get(key) {
            if cas != 0 && cas != *current {
                return status::CAS_MISMATCH;
            }
        }
        let next = self.next_cas();
        self.map.insert(key.to_vec(), (value.to_vec(), next));
        status::OK
    }
}

impl SharedData {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SharedInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value and CAS under `key`.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().map.get(key.as_bytes()).cloned()
    }

    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).map(|(v, _)| v)
    }

    /// What another worker (or a test) writes: an unconditional store (CAS 0).
    pub fn put(&self, key: &[u8], value: &[u8]) {
        self.lock().store(key, value, 0);
    }

    /// The next `times` CAS writes (CAS != 0) the module makes to `key` each find that another
    /// worker stored `value` between its read and its write: the write answers CasMismatch.
    pub fn interfere(&self, key: &str, value: &[u8], times: u32) {
        self.lock()
            .interference
            .push((key.as_bytes().to_vec(), value.to_vec(), times));
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self.lock().map.keys().cloned().collect();
        k.sort();
        k
    }

    /// Every `proxy_set_shared_data` so far: (key, CAS passed, status answered).
    pub fn sets(&self) -> Vec<(Vec<u8>, u32, i32)> {
        self.lock().sets.clone()
    }

    /// `proxy_get_shared_data`.
    fn module_get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock().map.get(key).cloned()
    }

    /// `proxy_set_shared_data`.
    fn module_set(&self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        let mut inner = self.lock();
        if cas != 0 {
            let pending = inner
                .interference
                .iter()
                .position(|(k, _, times)| k == key && *times > 0);
            if let Some(i) = pending {
                let (k, v, _) = inner.interference[i].clone();
                inner.interference[i].2 -= 1;
                inner.store(&k, &v, 0);
            }
        }
        let rc = inner.store(key, value, cas);
        inner.sets.push((key.to_vec(), cas, rc));
        rc
    }
}

/// One `proxy_http_call`, recorded for the test to answer later.
#[derive(Clone, Debug)]
pub struct HttpCall {
    pub token: u32,
    pub context_id: u32,
    pub upstream: Vec<u8>,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout_ms: u32,
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub kind: u32,
    pub name: String,
    pub value: i64,
}

/// The action a callback returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
    /// A value outside the ABI's 0.2.1 header action set ({0, 1}).
    Invalid(i32),
    /// The callback trapped (or an earlier one did), so there is no action.
    Trapped,
}

impl Action {
    fn from_raw(raw: i32) -> Action {
        match raw {
            0 => Action::Continue,
            1 => Action::Pause,
            other => Action::Invalid(other),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Host state (the wasmtime store's data)
// ------------------------------------------------------------------------------------------------

#[derive(Default)]
struct State {
    // Set by the test.
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    env: Vec<(String, String)>,
    now_nanos: u64,
    monotonic_nanos: u64,
    log_level: u32,
    legacy_replace: bool,
    root_properties: BTreeMap<Vec<u8>, Vec<u8>>,
    rng: u64,

    // The module's allocator export ("malloc" preferred, as proxy-wasm-cpp-host does).
    malloc: Option<&'static str>,

    // The request in flight.
    in_request: bool,
    current_context: u32,
    phase: Phase,
    properties: BTreeMap<Vec<u8>, Vec<u8>>,
    request_headers: Option<Headers>,
    request_trailers: Option<Headers>,
    response_headers: Option<Headers>,
    /// The body buffer of the `proxy_on_request_body` in progress (None: no body callback).
    request_body: Option<Vec<u8>>,
    /// `proxy_on_response_headers` is encoding devgate's own local reply.
    encoding_local_reply: bool,
    local_responses: Vec<LocalResponse>,
    properties_set: BTreeMap<String, Vec<u8>>,
    continued_request: u32,
    continued_response: u32,

    // Kept across requests.
    logs: Vec<LogLine>,
    calls: Vec<HostCall>,
    violations: Vec<String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    metrics: Vec<Metric>,
    shared: SharedData,
    tick_period_ms: Option<u32>,
    http_calls: Vec<HttpCall>,
    next_http_token: u32,
    http_call_response: Option<(Headers, Vec<u8>, Headers)>,
    proxy_done_calls: u32,
}

impl State {
    fn record(&mut self, name: &'static str, args: String) {
        self.calls.push(HostCall { name, args });
    }

    fn violation(&mut self, message: String) {
        self.violations.push(message);
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, so the guest's random seeds (and so its fuel) are too.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn map(&self, map_type: i32) -> Option<&Headers> {
        match map_type {
            MAP_REQUEST_HEADERS => self.request_headers.as_ref(),
            MAP_REQUEST_TRAILERS => self.request_trailers.as_ref(),
            MAP_RESPONSE_HEADERS => self.response_headers.as_ref(),
            MAP_HTTP_CALL_RESPONSE_HEADERS => self.http_call_response.as_ref().map(|r| &r.0),
            MAP_HTTP_CALL_RESPONSE_TRAILERS => self.http_call_response.as_ref().map(|r| &r.2),
            _ => None,
        }
    }

    fn map_mut(&mut self, map_type: i32) -> Option<&mut Headers> {
        match map_type {
            MAP_REQUEST_HEADERS => self.request_headers.as_mut(),
            MAP_REQUEST_TRAILERS => self.request_trailers.as_mut(),
            MAP_RESPONSE_HEADERS => self.response_headers.as_mut(),
            _ => None,
        }
    }

    /// Checks a header the module writes the way Envoy's header validation would.
    fn check_header_write(&mut self, call: &str, name: &[u8], value: &[u8]) {
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

fn map_name(map_type: i32) -> &'static str {
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
fn normalize_property_path(path: &[u8]) -> Vec<u8> {
    match path.strip_suffix(&[0]) {
        Some(stripped) => stripped.to_vec(),
        None => path.to_vec(),
    }
}

/// Property paths arrive as NUL-separated segments; shown dotted.
fn property_name(path: &[u8]) -> String {
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

// ------------------------------------------------------------------------------------------------
// Guest memory helpers
// ------------------------------------------------------------------------------------------------

type Ctx<'a> = Caller<'a, State>;
type WResult<T> = wasmtime::Result<T>;

fn memory(caller: &mut Ctx<'_>) -> WResult<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => wasmtime::bail!("host: the module exports no memory"),
    }
}

fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> WResult<Vec<u8>> {
    let mem = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    match mem.data(&*caller).get(start..start.saturating_add(len)) {
        Some(bytes) => Ok(bytes.to_vec()),
        None => wasmtime::bail!("host: guest buffer {start:#x}+{len} is out of bounds"),
    }
}

fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> WResult<()> {
    let mem = memory(caller)?;
    let start = ptr as u32 as usize;
    match mem
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(bytes.len()))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => wasmtime::bail!(
            "host: guest out-pointer {start:#x}+{} is out of bounds",
            bytes.len()
        ),
    }
}

fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> WResult<()> {
    write(caller, ptr, &value.to_le_bytes())
}

fn write_u64(caller: &mut Ctx<'_>, ptr: i32, value: u64) -> WResult<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `bytes.len()` in the guest with its allocator export and copies `bytes` there.
fn guest_alloc(caller: &mut Ctx<'_>, bytes: &[u8]) -> WResult<u32> {
    let name = match caller.data().malloc {
        Some(name) => name,
        None => {
            wasmtime::bail!("host: the module exports neither malloc nor proxy_on_memory_allocate")
        }
    };
    let func = match caller.get_export(name) {
        Some(Extern::Func(f)) => f,
        _ => wasmtime::bail!("host: export {name} vanished"),
    };
    let typed = func.typed::<i32, i32>(&*caller)?;
    let ptr = typed.call(&mut *caller, bytes.len() as i32)?;
    if ptr == 0 {
        wasmtime::bail!("host: guest {name}({}) returned NULL", bytes.len());
    }
    write(caller, ptr, bytes)?;
    Ok(ptr as u32)
}

/// Returns bytes to the guest through (pointer, size) out-parameters, as proxy-wasm-cpp-host's
/// `copyToPointerSize` does: an empty value is a NULL pointer and size 0.
fn give(caller: &mut Ctx<'_>, bytes: &[u8], ptr_out: i32, size_out: i32) -> WResult<()> {
    let ptr = if bytes.is_empty() {
        0
    } else {
        guest_alloc(caller, bytes)?
    };
    write_u32(caller, ptr_out, ptr)?;
    write_u32(caller, size_out, bytes.len() as u32)
}

// ------------------------------------------------------------------------------------------------
// The imports
// ------------------------------------------------------------------------------------------------

fn define_env(linker: &mut Linker<State>) -> WResult<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Ctx<'_>, lvl: i32, ptr: i32, len: i32| -> WResult<i32> {
            let raw = read(&mut c, ptr, len)?;
            let message = String::from_utf8_lossy(&raw).into_owned();
            let s = c.data_mut();
            s.record("proxy_log", format!("{lvl}, {}", show(&raw, 60)));
            s.logs.push(LogLine {
                level: Some(lvl as u32),
                message,
                raw,
            });
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Ctx<'_>, out: i32| -> WResult<i32> {
            c.data_mut().record("proxy_get_log_level", String::new());
            let level = c.data().log_level;
            write_u32(&mut c, out, level)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, out: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_current_time_nanoseconds", String::new());
            let now = c.data().now_nanos;
            write_u64(&mut c, out, now)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, period: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_set_tick_period_milliseconds", format!("{period}"));
            s.tick_period_ms = Some(period as u32);
            Ok(status::OK)
        },
    )?;

    // --- properties ---------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>,
         path_ptr: i32,
         path_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> WResult<i32> {
            let path = normalize_property_path(&read(&mut c, path_ptr, path_len)?);
            let s = c.data_mut();
            s.record("proxy_get_property", property_name(&path));
            let value = if s.in_request {
                s.properties
                    .get(&path)
                    .or_else(|| s.root_properties.get(&path))
            } else {
                s.root_properties.get(&path)
            }
            .cloned();
            match value {
                Some(v) => {
                    give(&mut c, &v, ret_ptr, ret_len)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>,
         path_ptr: i32,
         path_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> WResult<i32> {
            let path = normalize_property_path(&read(&mut c, path_ptr, path_len)?);
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_property",
                format!("{} = {}", property_name(&path), show(&value, 40)),
            );
            if !s.in_request {
                // Envoy: no stream info outside a stream.
                return Ok(status::NOT_FOUND);
            }
            s.properties_set.insert(property_name(&path), value.clone());
            s.properties.insert(path, value);
            Ok(status::OK)
        },
    )?;

    // --- header maps --------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, map_type: i32, ret_ptr: i32, ret_len: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_header_map_pairs", map_name(map_type).into());
            // Envoy answers an unavailable map with an empty list.
            let bytes = match c.data().map(map_type) {
                Some(m) if !m.is_empty() => m.serialize(),
                _ => Vec::new(),
            };
            give(&mut c, &bytes, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_>, map_type: i32, ptr: i32, len: i32| -> WResult<i32> {
            let bytes = read(&mut c, ptr, len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_header_map_pairs",
                format!("{}, {} bytes", map_name(map_type), bytes.len()),
            );
            let pairs = match Headers::deserialize(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    s.violation(format!("proxy_set_header_map_pairs: malformed map: {e}"));
                    return Ok(status::SERIALIZATION_FAILURE);
                }
            };
            for (n, v) in pairs.0.clone() {
                s.check_header_write("proxy_set_header_map_pairs", &n, &v);
            }
            match s.map_mut(map_type) {
                Some(m) => {
                    // Envoy removes every existing key, then adds each pair (lowercased).
                    *m = Headers::new();
                    for (n, v) in &pairs.0 {
                        m.add(n, v);
                    }
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            c.data_mut().record(
                "proxy_get_header_map_value",
                format!("{}, {}", map_name(map_type), show(&key, 60)),
            );
            let found = match c.data().map(map_type) {
                None => return Ok(status::BAD_ARGUMENT),
                Some(m) => {
                    let lower = key.to_ascii_lowercase();
                    m.0.iter()
                        .find(|(n, _)| *n == lower)
                        .map(|(_, v)| v.clone())
                }
            };
            match found {
                Some(v) => {
                    give(&mut c, &v, ret_ptr, ret_len)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Ctx<'_>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_add_header_map_value",
                format!(
                    "{}, {}, {}",
                    map_name(map_type),
                    show(&key, 60),
                    show(&value, 40)
                ),
            );
            s.check_header_write("proxy_add_header_map_value", &key, &value);
            match s.map_mut(map_type) {
                Some(m) => {
                    m.add(&key, &value);
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Ctx<'_>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_replace_header_map_value",
                format!(
                    "{}, {}, {}",
                    map_name(map_type),
                    show(&key, 60),
                    show(&value, 40)
                ),
            );
            s.check_header_write("proxy_replace_header_map_value", &key, &value);
            let legacy = s.legacy_replace;
            match s.map_mut(map_type) {
                Some(m) => {
                    if legacy {
                        m.replace_first_only(&key, &value);
                    } else {
                        m.replace(&key, &value);
                    }
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, map_type: i32, key_ptr: i32, key_len: i32| -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_remove_header_map_value",
                format!("{}, {}", map_name(map_type), show(&key, 60)),
            );
            match s.map_mut(map_type) {
                Some(m) => {
                    m.remove(&key);
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Ctx<'_>, map_type: i32, out: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_header_map_size", map_name(map_type).into());
            let size = match c.data().map(map_type) {
                Some(m) => m.byte_size() as u32,
                None => return Ok(status::BAD_ARGUMENT),
            };
            write_u32(&mut c, out, size)?;
            Ok(status::OK)
        },
    )?;

    // --- buffers ------------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>,
         buffer_type: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> WResult<i32> {
            c.data_mut().record(
                "proxy_get_buffer_bytes",
                format!("{buffer_type}, {start}, {}", max as u32),
            );
            let buffer = match buffer_of(c.data(), buffer_type) {
                Some(b) => b,
                None => return Ok(status::NOT_FOUND),
            };
            let start = (start as u32 as usize).min(buffer.len());
            let end = start.saturating_add(max as u32 as usize).min(buffer.len());
            let slice = buffer.get(start..end).unwrap_or_default().to_vec();
            // An empty range is a NULL pointer and size 0, as in proxy-wasm-cpp-host.
            give(&mut c, &slice, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Ctx<'_>, buffer_type: i32, len_out: i32, flags_out: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_buffer_status", format!("{buffer_type}"));
            let len = match buffer_of(c.data(), buffer_type) {
                Some(b) => b.len() as u32,
                None => return Ok(status::NOT_FOUND),
            };
            write_u32(&mut c, len_out, len)?;
            write_u32(&mut c, flags_out, 0)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>,
         buffer_type: i32,
         start: i32,
         length: i32,
         data_ptr: i32,
         data_len: i32|
         -> WResult<i32> {
            let data = read(&mut c, data_ptr, data_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_buffer_bytes",
                format!(
                    "{buffer_type}, {}, {}, {} bytes",
                    start as u32,
                    length as u32,
                    data.len()
                ),
            );
            if !(0..=BUFFER_MAX).contains(&buffer_type) {
                return Ok(status::BAD_ARGUMENT);
            }
            let (start, length) = (start as u32 as usize, length as u32 as usize);
            match (buffer_type, s.request_body.as_mut()) {
                // Envoy's `Buffer::copyFrom` on a live body chunk: at 0, drain `length` (as much
                // as there is) and prepend; at or past the end, append; elsewhere, BadArgument.
                (BUFFER_HTTP_REQUEST_BODY, Some(body)) => {
                    if start == 0 {
                        let drained = length.min(body.len());
                        let mut next = data;
                        next.extend_from_slice(&body[drained..]);
                        *body = next;
                        Ok(status::OK)
                    } else if start >= body.len() {
                        body.extend_from_slice(&data);
                        Ok(status::OK)
                    } else {
                        Ok(status::BAD_ARGUMENT)
                    }
                }
                // No body buffer in this callback (Envoy: a string buffer, not settable), and
                // the configuration buffers are read-only.
                _ => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    // --- local responses and streams ----------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         status_code: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc_status: i32|
         -> WResult<i32> {
            let details = read(&mut c, details_ptr, details_len)?;
            let body = read(&mut c, body_ptr, body_len)?;
            let raw_headers = read(&mut c, headers_ptr, headers_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_send_local_response",
                format!(
                    "{status_code}, {}, {} body bytes",
                    show(&details, 40),
                    body.len()
                ),
            );
            let headers = match Headers::deserialize(&raw_headers) {
                Ok(h) => h,
                Err(e) => {
                    s.violation(format!("proxy_send_local_response: malformed headers: {e}"));
                    return Ok(status::SERIALIZATION_FAILURE);
                }
            };
            for (n, v) in headers.0.clone() {
                s.check_header_write("proxy_send_local_response", &n, &v);
            }
            if !(100..=599).contains(&status_code) {
                s.violation(format!("proxy_send_local_response: status {status_code}"));
            }
            if !s.in_request {
                s.violation("proxy_send_local_response outside a request".into());
                return Ok(status::BAD_ARGUMENT);
            }
            if !s.local_responses.is_empty() {
                s.violation(format!(
                    "a second proxy_send_local_response ({status_code}) in one stream, in {:?}",
                    s.phase
                ));
            } else if s.encoding_local_reply {
                s.violation(format!(
                    "proxy_send_local_response ({status_code}) while encoding devgate's own reply"
                ));
            }
            let mut lowered = Headers::new();
            for (n, v) in &headers.0 {
                lowered.add(n, v);
            }
            let phase = s.phase;
            s.local_responses.push(LocalResponse {
                status: status_code as u32,
                details,
                body,
                headers: lowered,
                grpc_status,
                phase,
            });
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Ctx<'_>, stream: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_continue_stream", format!("{stream}"));
            match stream {
                0 => s.continued_request += 1,
                1 => s.continued_response += 1,
                _ => return Ok(status::BAD_ARGUMENT),
            }
            Ok(status::OK)
        },
    )?;

    linker.func_wrap("env", "proxy_done", |mut c: Ctx<'_>| -> WResult<i32> {
        let s = c.data_mut();
        s.record("proxy_done", String::new());
        s.proxy_done_calls += 1;
        Ok(status::OK)
    })?;

    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, id: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_set_effective_context", format!("{id}"));
            s.current_context = id as u32;
            Ok(status::OK)
        },
    )?;

    // --- metrics ------------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: i32, name_ptr: i32, name_len: i32, out: i32| -> WResult<i32> {
            let name = String::from_utf8_lossy(&read(&mut c, name_ptr, name_len)?).into_owned();
            let s = c.data_mut();
            s.record("proxy_define_metric", format!("{kind}, {name}"));
            if kind > 2 {
                return Ok(status::BAD_ARGUMENT);
            }
            // Envoy hands back the same id for the same name.
            let id = match s.metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    s.metrics.push(Metric {
                        kind: kind as u32,
                        name,
                        value: 0,
                    });
                    s.metrics.len() - 1
                }
            };
            write_u32(&mut c, out, id as u32 + 1)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: i32, offset: i64| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_increment_metric", format!("{id}, {offset}"));
            match (id as usize)
                .checked_sub(1)
                .and_then(|i| s.metrics.get_mut(i))
            {
                Some(m) if m.kind == 2 => {
                    s.violation(format!("proxy_increment_metric on histogram {id}"));
                    Ok(status::BAD_ARGUMENT)
                }
                Some(m) => {
                    m.value = m.value.wrapping_add(offset);
                    Ok(status::OK)
                }
                None => {
                    s.violation(format!(
                        "proxy_increment_metric: metric {id} was never defined"
                    ));
                    Ok(status::NOT_FOUND)
                }
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: i32, value: i64| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_record_metric", format!("{id}, {value}"));
            match (id as usize)
                .checked_sub(1)
                .and_then(|i| s.metrics.get_mut(i))
            {
                Some(m) => {
                    m.value = value;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, out: i32| -> WResult<i32> {
            c.data_mut().record("proxy_get_metric", format!("{id}"));
            let value = match (id as usize)
                .checked_sub(1)
                .and_then(|i| c.data().metrics.get(i))
            {
                Some(m) => m.value as u64,
                None => return Ok(status::NOT_FOUND),
            };
            write_u64(&mut c, out, value)?;
            Ok(status::OK)
        },
    )?;

    // --- shared data --------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32,
         cas_out: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            c.data_mut().record("proxy_get_shared_data", show(&key, 60));
            let entry = c.data().shared.module_get(&key);
            match entry {
                Some((value, cas)) => {
                    give(&mut c, &value, ret_ptr, ret_len)?;
                    write_u32(&mut c, cas_out, cas)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32,
         cas: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_shared_data",
                format!("{}, {} bytes, cas {cas}", show(&key, 60), value.len()),
            );
            Ok(s.shared.module_set(&key, &value, cas as u32))
        },
    )?;

    // --- outbound HTTP ------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up_ptr: i32,
         up_len: i32,
         h_ptr: i32,
         h_len: i32,
         b_ptr: i32,
         b_len: i32,
         t_ptr: i32,
         t_len: i32,
         timeout: i32,
         token_out: i32|
         -> WResult<i32> {
            let upstream = read(&mut c, up_ptr, up_len)?;
            let raw_headers = read(&mut c, h_ptr, h_len)?;
            let body = read(&mut c, b_ptr, b_len)?;
            let raw_trailers = read(&mut c, t_ptr, t_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_http_call",
                format!(
                    "{}, {} header bytes, {} body bytes, {timeout} ms",
                    show(&upstream, 40),
                    raw_headers.len(),
                    body.len()
                ),
            );
            let (headers, trailers) = match (
                Headers::deserialize(&raw_headers),
                Headers::deserialize(&raw_trailers),
            ) {
                (Ok(h), Ok(t)) => (h, t),
                (Err(e), _) | (_, Err(e)) => {
                    s.violation(format!("proxy_http_call: malformed map: {e}"));
                    return Ok(status::SERIALIZATION_FAILURE);
                }
            };
            if timeout < 0
                || [":path", ":method", ":authority"]
                    .iter()
                    .any(|h| !headers.contains(h))
            {
                // Envoy's checks.
                return Ok(status::BAD_ARGUMENT);
            }
            s.next_http_token += 1;
            let token = s.next_http_token;
            let context_id = s.current_context;
            s.http_calls.push(HttpCall {
                token,
                context_id,
                upstream,
                headers,
                body,
                trailers,
                timeout_ms: timeout as u32,
            });
            write_u32(&mut c, token_out, token)?;
            Ok(status::OK)
        },
    )?;

    Ok(())
}

fn buffer_of(state: &State, buffer_type: i32) -> Option<Vec<u8>> {
    match buffer_type {
        // Envoy hands out the live chunk in a body callback, and an empty buffer elsewhere.
        BUFFER_HTTP_REQUEST_BODY => Some(state.request_body.clone().unwrap_or_default()),
        BUFFER_HTTP_RESPONSE_BODY => Some(Vec::new()),
        BUFFER_VM_CONFIGURATION => Some(state.vm_config.clone()),
        BUFFER_PLUGIN_CONFIGURATION => Some(state.plugin_config.clone()),
        BUFFER_HTTP_CALL_RESPONSE_BODY => state.http_call_response.as_ref().map(|r| r.1.clone()),
        _ => None,
    }
}

fn define_wasi(linker: &mut Linker<State>) -> WResult<()> {
    const W: &str = "wasi_snapshot_preview1";

    linker.func_wrap(
        W,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, written_out: i32| -> WResult<i32> {
            let mut data = Vec::new();
            for i in 0..n {
                let iov = read(&mut c, iovs.wrapping_add(i * 8), 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                data.extend(read(&mut c, ptr, len)?);
            }
            let s = c.data_mut();
            s.record("fd_write", format!("{fd}, {}", show(&data, 60)));
            match fd {
                1 => s.stdout.extend_from_slice(&data),
                2 => s.stderr.extend_from_slice(&data),
                _ => return Ok(errno::BADF),
            }
            s.logs.push(LogLine {
                level: None,
                message: String::from_utf8_lossy(&data).into_owned(),
                raw: data.clone(),
            });
            write_u32(&mut c, written_out, data.len() as u32)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "environ_sizes_get",
        |mut c: Ctx<'_>, count_out: i32, size_out: i32| -> WResult<i32> {
            c.data_mut().record("environ_sizes_get", String::new());
            let env = c.data().env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            write_u32(&mut c, count_out, env.len() as u32)?;
            write_u32(&mut c, size_out, size as u32)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "environ_get",
        |mut c: Ctx<'_>, environ: i32, buf: i32| -> WResult<i32> {
            c.data_mut().record("environ_get", String::new());
            let env = c.data().env.clone();
            let mut at = buf;
            for (i, (k, v)) in env.iter().enumerate() {
                write_u32(&mut c, environ.wrapping_add(i as i32 * 4), at as u32)?;
                let entry = format!("{k}={v}\0");
                write(&mut c, at, entry.as_bytes())?;
                at = at.wrapping_add(entry.len() as i32);
            }
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "args_sizes_get",
        |mut c: Ctx<'_>, count_out: i32, size_out: i32| -> WResult<i32> {
            c.data_mut().record("args_sizes_get", String::new());
            write_u32(&mut c, count_out, 0)?;
            write_u32(&mut c, size_out, 0)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "args_get",
        |mut c: Ctx<'_>, _argv: i32, _buf: i32| -> WResult<i32> {
            c.data_mut().record("args_get", String::new());
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, out: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("clock_time_get", format!("{id}"));
            let t = match id {
                0 => s.now_nanos,
                1..=3 => {
                    // Monotonic and CPU clocks: advance deterministically.
                    s.monotonic_nanos += 1_000;
                    s.monotonic_nanos
                }
                _ => return Ok(errno::INVAL),
            };
            write_u64(&mut c, out, t)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "clock_res_get",
        |mut c: Ctx<'_>, id: i32, out: i32| -> WResult<i32> {
            c.data_mut().record("clock_res_get", format!("{id}"));
            write_u64(&mut c, out, 1)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "random_get",
        |mut c: Ctx<'_>, buf: i32, len: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("random_get", format!("{len}"));
            let mut bytes = Vec::with_capacity(len as u32 as usize);
            while bytes.len() < len as u32 as usize {
                bytes.extend_from_slice(&s.next_random().to_le_bytes());
            }
            bytes.truncate(len as u32 as usize);
            write(&mut c, buf, &bytes)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(W, "sched_yield", |mut c: Ctx<'_>| -> WResult<i32> {
        c.data_mut().record("sched_yield", String::new());
        Ok(errno::SUCCESS)
    })?;

    // No preopened directories and no files, as in Envoy.
    linker.func_wrap(
        W,
        "fd_prestat_get",
        |mut c: Ctx<'_>, fd: i32, _out: i32| -> WResult<i32> {
            c.data_mut().record("fd_prestat_get", format!("{fd}"));
            Ok(errno::BADF)
        },
    )?;

    linker.func_wrap(
        W,
        "fd_prestat_dir_name",
        |mut c: Ctx<'_>, fd: i32, _p: i32, _l: i32| -> WResult<i32> {
            c.data_mut().record("fd_prestat_dir_name", format!("{fd}"));
            Ok(errno::BADF)
        },
    )?;

    linker.func_wrap(W, "fd_close", |mut c: Ctx<'_>, fd: i32| -> WResult<i32> {
        c.data_mut().record("fd_close", format!("{fd}"));
        Ok(errno::BADF)
    })?;

    linker.func_wrap(W, "proc_exit", |mut c: Ctx<'_>, code: i32| -> WResult<()> {
        c.data_mut().record("proc_exit", format!("{code}"));
        wasmtime::bail!("guest called proc_exit({code})")
    })?;

    Ok(())
}

/// Links a stub for every import the host does not implement: calling it records a violation and
/// traps with "unexpected host call MODULE::NAME".
fn define_stubs(
    linker: &mut Linker<State>,
    module: &Module,
    store: &mut Store<State>,
) -> WResult<()> {
    let mut stubbed = HashSet::new();
    for import in module.imports() {
        if linker.get_by_import(&mut *store, &import).is_some() {
            continue;
        }
        let (m, n) = (import.module().to_string(), import.name().to_string());
        match import.ty() {
            ExternType::Func(ty) => {
                let label = format!("{m}::{n}");
                if !stubbed.insert(label.clone()) {
                    continue;
                }
                linker.func_new(&m, &n, ty, move |mut c: Ctx<'_>, _params, _results| {
                    let message = format!("unexpected host call {label}");
                    c.data_mut().violation(message.clone());
                    Err(wasmtime::Error::msg(message))
                })?;
            }
            other => wasmtime::bail!("the module imports a non-function {m}::{n}: {other:?}"),
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The host
// ------------------------------------------------------------------------------------------------

/// Options that must be set before the module starts (the WASI environment is read at start).
#[derive(Clone)]
pub struct HostBuilder {
    env: Vec<(String, String)>,
    vm_config: Vec<u8>,
    log_level: u32,
    now_unix_secs: u64,
    legacy_replace: bool,
    root_properties: Vec<(String, Vec<u8>)>,
    shared: Option<SharedData>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            env: Vec::new(),
            vm_config: Vec::new(),
            log_level: level::TRACE,
            // 2026-01-01T00:00:00Z: a fixed, deterministic "now".
            now_unix_secs: 1_767_225_600,
            legacy_replace: false,
            root_properties: vec![
                ("plugin_name".into(), b"devgate".to_vec()),
                ("plugin_root_id".into(), b"devgate".to_vec()),
                ("plugin_vm_id".into(), b"devgate".to_vec()),
            ],
            shared: None,
        }
    }
}

impl HostBuilder {
    /// A variable in the VM's environment (Envoy: `vm_config.environment_variables`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The VM configuration buffer passed to `proxy_on_vm_start`.
    pub fn vm_config(mut self, bytes: &[u8]) -> Self {
        self.vm_config = bytes.to_vec();
        self
    }

    /// What `proxy_get_log_level` answers (default: trace, so every log path runs).
    pub fn log_level(mut self, level: u32) -> Self {
        self.log_level = level;
        self
    }

    pub fn now(mut self, unix_secs: u64) -> Self {
        self.now_unix_secs = unix_secs;
        self
    }

    /// Envoy before `http_set_copy_replace_all_headers`: `replace` changes the first copy only.
    pub fn legacy_replace(mut self, on: bool) -> Self {
        self.legacy_replace = on;
        self
    }

    pub fn root_property(mut self, dotted: &str, value: &[u8]) -> Self {
        self.root_properties.push((dotted.into(), value.to_vec()));
        self
    }

    /// Shares `data` with this VM (default: a map of its own). Give several hosts the same
    /// handle to play several Envoy workers of one plugin.
    pub fn shared_data(mut self, data: &SharedData) -> Self {
        self.shared = Some(data.clone());
        self
    }

    /// Instantiates the module and starts the VM: `_initialize`, root context, `proxy_on_vm_start`.
    pub fn load(self) -> HostResult<Host> {
        let compiled = compiled()?;
        let state = State {
            vm_config: self.vm_config,
            env: self.env,
            now_nanos: self.now_unix_secs.saturating_mul(1_000_000_000),
            monotonic_nanos: 1_000_000_000,
            log_level: self.log_level,
            legacy_replace: self.legacy_replace,
            root_properties: self
                .root_properties
                .iter()
                .map(|(k, v)| (property_path(k), v.clone()))
                .collect(),
            rng: 0x9E37_79B9_7F4A_7C15,
            shared: self.shared.unwrap_or_default(),
            ..State::default()
        };
        let mut store = Store::new(&compiled.engine, state);
        let fail = |what: &str, e: wasmtime::Error| HostError(format!("{what}: {e:#}"));
        let mut linker = Linker::new(&compiled.engine);
        define_env(&mut linker).map_err(|e| fail("defining proxy-wasm imports", e))?;
        define_wasi(&mut linker).map_err(|e| fail("defining WASI imports", e))?;
        define_stubs(&mut linker, &compiled.module, &mut store)
            .map_err(|e| fail("defining stubs", e))?;
        let instance = linker
            .instantiate(&mut store, &compiled.module)
            .map_err(|e| fail("instantiating devgate.wasm", e))?;

        let exports: HashSet<String> = compiled
            .module
            .exports()
            .map(|e| e.name().to_string())
            .collect();
        store.data_mut().malloc = ["malloc", "proxy_on_memory_allocate"]
            .into_iter()
            .find(|n| exports.contains(*n));

        let mut host = Host {
            store,
            instance,
            exports,
            next_context: ROOT_ID + 1,
            configured: None,
            trapped: None,
            vm_started: false,
            watched: Vec::new(),
        };
        host.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| fail("fuel", e))?;
        if host.exports.contains("_initialize") {
            host.call_void("_initialize", ())?;
        } else if host.exports.contains("_start") {
            host.call_void("_start", ())?;
        }
        host.call_void("proxy_on_context_create", (ROOT_ID as i32, 0))?;
        let vm_len = host.store.data().vm_config.len() as i32;
        let started = host.call_i32("proxy_on_vm_start", (ROOT_ID as i32, vm_len))?;
        host.vm_started = started != 0;
        if !host.vm_started {
            return err(format!(
                "proxy_on_vm_start returned false; logs: {:?}",
                host.logs().iter().map(|l| &l.message).collect::<Vec<_>>()
            ));
        }
        Ok(host)
    }
}

/// The VM, its root context and Envoy's side of the ABI.
pub struct Host {
    store: Store<State>,
    instance: Instance,
    exports: HashSet<String>,
    next_context: u32,
    configured: Option<bool>,
    trapped: Option<String>,
    vm_started: bool,
    /// Checked against every log line when the host is dropped (see [`Host::watch_secrets`]).
    watched: Vec<String>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.watched.is_empty() && !std::thread::panicking() {
            let watched = std::mem::take(&mut self.watched);
            let refs: Vec<&str> = watched.iter().map(String::as_str).collect();
            self.assert_no_secret_in_logs(&refs);
        }
    }
}

impl Host {
    /// Loads the module with default options (empty environment, trace log level, fixed clock).
    pub fn load() -> HostResult<Host> {
        HostBuilder::default().load()
    }

    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// `proxy_on_configure` with this plugin configuration; the module's answer.
    /// A trap is an error (and poisons the host, as Envoy marks the VM failed).
    pub fn configure(&mut self, json: &str) -> HostResult<bool> {
        self.configure_bytes(json.as_bytes())
    }

    pub fn configure_bytes(&mut self, config: &[u8]) -> HostResult<bool> {
        self.store.data_mut().plugin_config = config.to_vec();
        self.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| HostError(format!("fuel: {e:#}")))?;
        let ok = self.call_i32("proxy_on_configure", (ROOT_ID as i32, config.len() as i32))? != 0;
        self.configured = Some(ok);
        Ok(ok)
    }

    /// The last `proxy_on_configure` answer (None before any).
    pub fn configured(&self) -> Option<bool> {
        self.configured
    }

    /// Sets the host clock (`proxy_get_current_time_nanoseconds`, WASI realtime clock).
    pub fn set_now(&mut self, unix_secs: u64) {
        self.store.data_mut().now_nanos = unix_secs.saturating_mul(1_000_000_000);
    }

    pub fn set_now_nanos(&mut self, nanos: u64) {
        self.store.data_mut().now_nanos = nanos;
    }

    pub fn set_log_level(&mut self, level: u32) {
        self.store.data_mut().log_level = level;
    }

    /// Starts building a request; `.send()` runs it through the filter.
    pub fn request(&mut self) -> RequestBuilder<'_> {
        RequestBuilder {
            host: self,
            headers: Headers::new(),
            properties: Vec::new(),
            end_of_stream: true,
            upstream_response: None,
            body: Vec::new(),
            trailers: None,
            before_chunk: None,
        }
    }

    /// `proxy_on_tick` on the root context, if the module exports it.
    pub fn tick(&mut self) -> HostResult<()> {
        if self.exports.contains("proxy_on_tick") {
            self.store
                .set_fuel(FUEL_BUDGET)
                .map_err(|e| HostError(format!("fuel: {e:#}")))?;
            self.call_void("proxy_on_tick", (ROOT_ID as i32,))?;
        }
        Ok(())
    }

    /// Answers a recorded `proxy_http_call` (`proxy_on_http_call_response` on the caller's context).
    pub fn respond_http_call(
        &mut self,
        token: u32,
        headers: Headers,
        body: &[u8],
    ) -> HostResult<()> {
        let call = self
            .store
            .data()
            .http_calls
            .iter()
            .find(|c| c.token == token)
            .cloned()
            .ok_or_else(|| HostError(format!("no http call with token {token}")))?;
        let n = headers.len() as i32;
        self.store.data_mut().http_call_response = Some((headers, body.to_vec(), Headers::new()));
        self.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| HostError(format!("fuel: {e:#}")))?;
        let result = self.call_void(
            "proxy_on_http_call_response",
            (
                call.context_id as i32,
                token as i32,
                n,
                body.len() as i32,
                0,
            ),
        );
        self.store.data_mut().http_call_response = None;
        result
    }

    pub fn http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    /// This VM's shared data (a handle: clone it into another host to share it).
    pub fn shared_data(&self) -> SharedData {
        self.store.data().shared.clone()
    }

    pub fn tick_period_ms(&self) -> Option<u32> {
        self.store.data().tick_period_ms
    }

    pub fn metrics(&self) -> &[Metric] {
        &self.store.data().metrics
    }

    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Every log line recorded so far (configure-time and all requests, stdout/stderr included).
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// Every host call recorded so far.
    pub fn calls(&self) -> &[HostCall] {
        &self.store.data().calls
    }

    /// Host-side rule breaks seen so far (bad header bytes, unexpected host calls, ...).
    pub fn violations(&self) -> &[String] {
        &self.store.data().violations
    }

    pub fn stdout(&self) -> &[u8] {
        &self.store.data().stdout
    }

    pub fn stderr(&self) -> &[u8] {
        &self.store.data().stderr
    }

    /// The trap that poisoned this VM, if any.
    pub fn trapped(&self) -> Option<&str> {
        self.trapped.as_deref()
    }

    /// The size of the module's linear memory, in bytes (it only ever grows).
    pub fn memory_bytes(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
            .map_or(0, |m| m.data_size(&self.store))
    }

    pub fn exports(&self) -> &HashSet<String> {
        &self.exports
    }

    /// Registers values that must never appear in a log line: checked when the host is dropped,
    /// so every scenario is covered even if it forgets to call [`Host::assert_no_secret_in_logs`].
    pub fn watch_secrets(&mut self, secrets: &[&str]) {
        self.watched.extend(secrets.iter().map(|s| s.to_string()));
    }

    /// Fails if any secret (token, cookie, key...) appears in any line this VM ever logged or
    /// wrote to stdout/stderr. Empty strings are ignored.
    pub fn assert_no_secret_in_logs(&self, secrets: &[&str]) {
        assert_no_secret_in(self.logs(), secrets);
        for (name, stream) in [("stdout", self.stdout()), ("stderr", self.stderr())] {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                assert!(
                    !contains(stream, secret.as_bytes()),
                    "secret {secret:?} leaked to the module's {name}"
                );
            }
        }
    }

    // --- guest calls --------------------------------------------------------------------------

    fn poisoned(&self) -> HostResult<()> {
        match &self.trapped {
            Some(t) => err(format!("VM already trapped: {t}")),
            None => Ok(()),
        }
    }

    fn on_trap(&mut self, what: &str, e: wasmtime::Error) -> HostError {
        let message = format!("{what} trapped: {e:#}");
        self.trapped = Some(message.clone());
        HostError(message)
    }

    fn call_void<P: wasmtime::WasmParams>(&mut self, name: &str, params: P) -> HostResult<()> {
        self.poisoned()?;
        let f = self
            .instance
            .get_typed_func::<P, ()>(&mut self.store, name)
            .map_err(|e| HostError(format!("export {name}: {e:#}")))?;
        f.call(&mut self.store, params)
            .map_err(|e| self.on_trap(name, e))
    }

    fn call_i32<P: wasmtime::WasmParams>(&mut self, name: &str, params: P) -> HostResult<i32> {
        self.poisoned()?;
        let f = self
            .instance
            .get_typed_func::<P, i32>(&mut self.store, name)
            .map_err(|e| HostError(format!("export {name}: {e:#}")))?;
        f.call(&mut self.store, params)
            .map_err(|e| self.on_trap(name, e))
    }

    fn fuel_left(&mut self) -> u64 {
        self.store.as_context_mut().get_fuel().unwrap_or(0)
    }

    fn local_count(&self) -> usize {
        self.store.data().local_responses.len()
    }

    /// Runs one HTTP stream through the module the way Envoy's wasm filter does.
    fn run(&mut self, mut req: RequestBuilderParts<'_>) -> Outcome {
        let ctx = self.next_context;
        self.next_context += 1;
        let calls_before = self.store.data().calls.len();
        let logs_before = self.store.data().logs.len();
        let violations_before = self.store.data().violations.len();
        {
            let s = self.store.data_mut();
            s.in_request = true;
            s.current_context = ctx;
            s.phase = Phase::RequestHeaders;
            s.properties = req
                .properties
                .iter()
                .map(|(k, v)| (property_path(k), v.clone()))
                .collect();
            s.request_headers = Some(req.headers.clone());
            s.request_trailers = None;
            s.response_headers = None;
            s.request_body = None;
            s.encoding_local_reply = false;
            s.local_responses.clear();
            s.properties_set.clear();
            s.continued_request = 0;
            s.continued_response = 0;
        }
        // The body as DATA frames. Headers without END_STREAM and no body: one empty frame that
        // ends the stream (an HTTP/2 client may send exactly that).
        let mut chunks = std::mem::take(&mut req.body);
        if !req.end_of_stream && chunks.is_empty() && req.trailers.is_none() {
            chunks.push(Vec::new());
        }
        let headers_eos = chunks.is_empty() && req.trailers.is_none();
        let mut out = Outcome {
            context_id: ctx,
            action: Action::Trapped,
            response_action: None,
            trap: None,
            local_responses: Vec::new(),
            request_headers: req.headers.clone(),
            forwarded: false,
            headers_passed_on: None,
            body_calls: Vec::new(),
            body_passed_on: Vec::new(),
            trailers_action: None,
            trailers_passed_on: None,
            stalled: None,
            response_headers: None,
            client_headers: None,
            client_body: None,
            logs: Vec::new(),
            calls: Vec::new(),
            violations: Vec::new(),
            fuel: 0,
            fuel_request_headers: 0,
            fuel_request_body: 0,
            properties_set: BTreeMap::new(),
        };
        let _ = self.store.set_fuel(FUEL_BUDGET);

        let steps = (|| -> HostResult<()> {
            self.call_void("proxy_on_context_create", (ctx as i32, ROOT_ID as i32))?;
            let n = req.headers.len() as i32;
            let before = self.fuel_left();
            let raw = self.call_i32(
                "proxy_on_request_headers",
                (ctx as i32, n, headers_eos as i32),
            )?;
            out.fuel_request_headers = before - self.fuel_left();
            out.action = Action::from_raw(raw);

            // The request phase: headers, then body chunks, then trailers, until the module
            // answers, stops, or the request is all passed on.
            let mut answered = self.local_count() > 0;
            let resumed = self.store.data().continued_request > 0;
            let mut passing = !answered && (out.action == Action::Continue || resumed);
            if passing {
                // Envoy forgets the request map once the filter continues.
                let h = self
                    .store
                    .data_mut()
                    .request_headers
                    .take()
                    .unwrap_or_default();
                out.headers_passed_on = Some(h.clone());
                out.request_headers = h;
            } else if !answered {
                out.stalled = Some(format!(
                    "proxy_on_request_headers returned {:?} with no local reply and never resumed",
                    out.action
                ));
            }
            let mut buffered: Option<Vec<u8>> = None;
            if passing {
                let last = chunks.len();
                for (i, chunk) in chunks.iter().enumerate() {
                    if let Some(hook) = req.before_chunk.as_mut() {
                        hook(i);
                    }
                    let eos = i + 1 == last && req.trailers.is_none();
                    let mut current = buffered.take().unwrap_or_default();
                    current.extend_from_slice(chunk);
                    let size = current.len();
                    {
                        let s = self.store.data_mut();
                        s.phase = Phase::RequestBody(i);
                        s.request_body = Some(current);
                    }
                    let before = self.fuel_left();
                    let result = self.call_i32(
                        "proxy_on_request_body",
                        (ctx as i32, size as i32, eos as i32),
                    );
                    out.fuel_request_body += before - self.fuel_left();
                    let left = self
                        .store
                        .data_mut()
                        .request_body
                        .take()
                        .unwrap_or_default();
                    let action = match &result {
                        Ok(raw) => Action::from_raw(*raw),
                        Err(_) => Action::Trapped,
                    };
                    let local = self.local_count() > 0;
                    let passed_on = match (local, action) {
                        (false, Action::Continue) => Some(left),
                        (false, Action::Pause) => {
                            // StopIterationAndBuffer: Envoy keeps it and hands it over again,
                            // with the next chunk appended, in the next call.
                            buffered = Some(left);
                            None
                        }
                        _ => None,
                    };
                    if let Some(p) = &passed_on {
                        out.body_passed_on.push(p.clone());
                    }
                    out.body_calls.push(BodyCall {
                        delivered: chunk.clone(),
                        size,
                        end_of_stream: eos,
                        action,
                        passed_on,
                    });
                    result?;
                    if local {
                        answered = true;
                        passing = false;
                        break;
                    }
                    if let Action::Invalid(raw) = action {
                        out.stalled = Some(format!("proxy_on_request_body returned {raw}"));
                        passing = false;
                        break;
                    }
                }
            }
            if passing {
                if let Some(trailers) = req.trailers.clone() {
                    {
                        let s = self.store.data_mut();
                        s.phase = Phase::RequestTrailers;
                        s.request_trailers = Some(trailers.clone());
                    }
                    let raw = self.call_i32(
                        "proxy_on_request_trailers",
                        (ctx as i32, trailers.len() as i32),
                    )?;
                    let action = Action::from_raw(raw);
                    out.trailers_action = Some(action);
                    let left = self.store.data_mut().request_trailers.take();
                    if action == Action::Continue && self.local_count() == 0 {
                        out.trailers_passed_on = left;
                    }
                    if self.local_count() > 0 {
                        answered = true;
                        passing = false;
                    } else if action == Action::Continue {
                        // Continuing at the trailers lets whatever was buffered go on.
                        if let Some(b) = buffered.take() {
                            out.body_passed_on.push(b);
                        }
                    } else {
                        out.stalled = Some(format!(
                            "proxy_on_request_trailers returned {action:?} with no local reply"
                        ));
                        passing = false;
                    }
                }
            }
            if passing && buffered.is_some() {
                out.stalled = Some(
                    "the request body was paused (buffered) at end of stream with no local reply"
                        .into(),
                );
                passing = false;
            }
            out.forwarded = passing;

            let local = self.store.data().local_responses.first().cloned();
            let response = if let (true, Some(local)) = (answered, local) {
                // Envoy sends the local reply after the VM call returns; it goes through the
                // encoder filters, this one included.
                let mut headers = Headers::new();
                headers.add(b":status", local.status.to_string().as_bytes());
                for (n, v) in local.headers.iter() {
                    headers.add(n, v);
                }
                if !local.body.is_empty() {
                    headers.add(b"content-length", local.body.len().to_string().as_bytes());
                    if !headers.contains("content-type") {
                        headers.add(b"content-type", b"text/plain");
                    }
                }
                out.client_body = Some(local.body.clone());
                self.store.data_mut().encoding_local_reply = true;
                Some((headers, local.body.is_empty()))
            } else if passing {
                let upstream = req.upstream_response.clone().unwrap_or_else(|| {
                    let mut h = Headers::new();
                    h.add(b":status", b"200");
                    h.add(b"content-type", b"text/plain");
                    h.add(b"content-length", b"2");
                    h
                });
                Some((upstream, false))
            } else {
                None
            };
            if let Some(h) = self.store.data().request_headers.clone() {
                out.request_headers = h;
            }
            if let Some((headers, end_of_stream)) = response {
                let locals_before = self.local_count();
                let n = headers.len() as i32;
                {
                    let s = self.store.data_mut();
                    s.phase = Phase::ResponseHeaders;
                    s.response_headers = Some(headers);
                }
                let raw = self.call_i32(
                    "proxy_on_response_headers",
                    (ctx as i32, n, end_of_stream as i32),
                )?;
                out.response_action = Some(Action::from_raw(raw));
                out.response_headers = self.store.data_mut().response_headers.take();
                let direct = self
                    .store
                    .data()
                    .local_responses
                    .get(locals_before)
                    .cloned();
                match direct {
                    // A local reply from the encoder path of an upstream response replaces it
                    // and goes straight to the codec (sendDirectLocalReply): no filter sees it.
                    Some(local) if !answered => {
                        let mut headers = Headers::new();
                        headers.add(b":status", local.status.to_string().as_bytes());
                        for (n, v) in local.headers.iter() {
                            headers.add(n, v);
                        }
                        if !local.body.is_empty() {
                            headers.add(b"content-length", local.body.len().to_string().as_bytes());
                        }
                        out.client_headers = Some(headers);
                        out.client_body = Some(local.body);
                    }
                    _ => out.client_headers = out.response_headers.clone(),
                }
                self.store.data_mut().encoding_local_reply = false;
            }
            // Stream end.
            {
                let s = self.store.data_mut();
                s.request_headers = None;
                s.phase = Phase::Other;
            }
            if self.exports.contains("proxy_on_done") {
                self.call_i32("proxy_on_done", (ctx as i32,))?;
            }
            if self.exports.contains("proxy_on_log") {
                self.call_void("proxy_on_log", (ctx as i32,))?;
            }
            if self.exports.contains("proxy_on_delete") {
                self.call_void("proxy_on_delete", (ctx as i32,))?;
            }
            Ok(())
        })();
        if let Err(e) = steps {
            out.trap = Some(e.0);
            if out.action != Action::Trapped && self.trapped.is_some() {
                // A later callback trapped: the request's outcome is still a trap.
                out.action = Action::Trapped;
            }
        }
        out.fuel = FUEL_BUDGET - self.fuel_left().min(FUEL_BUDGET);
        let s = self.store.data_mut();
        s.in_request = false;
        s.current_context = ROOT_ID;
        s.phase = Phase::Other;
        s.properties.clear();
        s.request_headers = None;
        s.request_trailers = None;
        s.request_body = None;
        s.response_headers = None;
        s.encoding_local_reply = false;
        out.local_responses = std::mem::take(&mut s.local_responses);
        out.properties_set = std::mem::take(&mut s.properties_set);
        out.logs = s.logs.get(logs_before..).unwrap_or_default().to_vec();
        out.calls = s.calls.get(calls_before..).unwrap_or_default().to_vec();
        out.violations = s
            .violations
            .get(violations_before..)
            .unwrap_or_default()
            .to_vec();
        out
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if any of `secrets` appears in any of `logs`.
pub fn assert_no_secret_in(logs: &[LogLine], secrets: &[&str]) {
    for line in logs {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !contains(&line.raw, secret.as_bytes()),
                "secret {secret:?} appears in a log line: {:?}",
                line.message
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Requests and their outcomes
// ------------------------------------------------------------------------------------------------

/// Called before body chunk `n` is delivered: what "another worker" does meanwhile.
type ChunkHook<'h> = Box<dyn FnMut(usize) + 'h>;

struct RequestBuilderParts<'h> {
    headers: Headers,
    properties: Vec<(String, Vec<u8>)>,
    end_of_stream: bool,
    upstream_response: Option<Headers>,
    body: Vec<Vec<u8>>,
    trailers: Option<Headers>,
    before_chunk: Option<ChunkHook<'h>>,
}

/// Builds one request: `h.request().peer("127.0.0.1:5000").header(":path", "/").send()`.
pub struct RequestBuilder<'h> {
    host: &'h mut Host,
    headers: Headers,
    properties: Vec<(String, Vec<u8>)>,
    end_of_stream: bool,
    upstream_response: Option<Headers>,
    body: Vec<Vec<u8>>,
    trailers: Option<Headers>,
    before_chunk: Option<ChunkHook<'h>>,
}

impl<'h> RequestBuilder<'h> {
    /// The downstream peer: property `source.address` ("ip:port" or "[v6]:port").
    pub fn peer(self, address: &str) -> Self {
        self.peer_bytes(address.as_bytes())
    }

    pub fn peer_bytes(self, address: &[u8]) -> Self {
        self.property("source.address", address)
    }

    /// Any property, by dotted name (`"source.address"`, `"request.id"`, ...).
    pub fn property(mut self, dotted: &str, value: &[u8]) -> Self {
        self.properties.retain(|(k, _)| k != dotted);
        self.properties.push((dotted.into(), value.to_vec()));
        self
    }

    /// A request header (name lowercased, as Envoy delivers it).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name.as_bytes(), value.as_bytes());
        self
    }

    /// A request header with arbitrary bytes; the name is lowercased.
    pub fn header_bytes(mut self, name: &[u8], value: &[u8]) -> Self {
        self.headers.add(name, value);
        self
    }

    /// A request header exactly as given (no lowercasing): things Envoy would never deliver.
    pub fn header_raw(mut self, name: &[u8], value: &[u8]) -> Self {
        self.headers.add_raw(name, value);
        self
    }

    /// The common pseudo-headers for `method path` on host `devgate.test`.
    pub fn get(self, path: &str) -> Self {
        self.method_path("GET", path)
    }

    pub fn method_path(self, method: &str, path: &str) -> Self {
        self.header(":method", method)
            .header(":scheme", "http")
            .header(":authority", "devgate.test")
            .header(":path", path)
    }

    /// Whether the headers end the stream (default true: no body). `false` with no body and no
    /// trailers delivers one empty body chunk that ends the stream.
    pub fn end_of_stream(mut self, eos: bool) -> Self {
        self.end_of_stream = eos;
        self
    }

    /// The request body in one chunk (the headers then do not end the stream).
    pub fn body(self, bytes: &[u8]) -> Self {
        self.body_chunks(vec![bytes.to_vec()])
    }

    /// The request body in these chunks, one `proxy_on_request_body` each; the last one ends
    /// the stream unless trailers follow.
    pub fn body_chunks(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.body = chunks;
        self.end_of_stream = self.body.is_empty() && self.trailers.is_none();
        self
    }

    /// `bytes` in chunks of `size` bytes (at least 1).
    pub fn body_in_chunks_of(self, bytes: &[u8], size: usize) -> Self {
        let chunks = bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect();
        self.body_chunks(chunks)
    }

    /// Request trailers after the body: they end the stream.
    pub fn trailers(mut self, trailers: Headers) -> Self {
        self.trailers = Some(trailers);
        self.end_of_stream = false;
        self
    }

    /// Runs `hook(n)` before body chunk `n` is delivered: another worker's requests, a test's
    /// writes to shared data.
    pub fn before_chunk(mut self, hook: impl FnMut(usize) + 'h) -> Self {
        self.before_chunk = Some(Box::new(hook));
        self
    }

    /// The upstream's response headers if the request is forwarded (default `:status 200`).
    pub fn upstream_response(mut self, headers: Headers) -> Self {
        self.upstream_response = Some(headers);
        self
    }

    /// Runs the request through the module.
    pub fn send(self) -> Outcome {
        let parts = RequestBuilderParts {
            headers: self.headers,
            properties: self.properties,
            end_of_stream: self.end_of_stream,
            upstream_response: self.upstream_response,
            body: self.body,
            trailers: self.trailers,
            before_chunk: self.before_chunk,
        };
        self.host.run(parts)
    }
}

/// What happened to one request.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub context_id: u32,
    /// What `proxy_on_request_headers` returned.
    pub action: Action,
    /// What `proxy_on_response_headers` returned (for the upstream response or the local reply).
    pub response_action: Option<Action>,
    /// The trap message, if any callback of this stream trapped (or the VM was already poisoned).
    pub trap: Option<String>,
    pub local_responses: Vec<LocalResponse>,
    /// The request header map after the filter ran.
    pub request_headers: Headers,
    /// Whether the whole request went upstream: every callback continued (or the headers one
    /// was resumed) and none answered locally while the request was decoded.
    pub forwarded: bool,
    /// The request headers as handed to the next filter, when the headers callback continued
    /// (a login POST's headers go on before its body is read, so this can be set even when
    /// the body step then answers locally).
    pub headers_passed_on: Option<Headers>,
    /// Every `proxy_on_request_body`, in order.
    pub body_calls: Vec<BodyCall>,
    /// The body chunks handed to the next filter, as the module left them.
    pub body_passed_on: Vec<Vec<u8>>,
    /// What `proxy_on_request_trailers` returned, if trailers were delivered.
    pub trailers_action: Option<Action>,
    /// The request trailers as handed to the next filter, when that callback continued.
    pub trailers_passed_on: Option<Headers>,
    /// Why the stream never finished (a pause nobody resumes), if it did not.
    pub stalled: Option<String>,
    /// The response header map after `proxy_on_response_headers` ran.
    pub response_headers: Option<Headers>,
    /// The response headers the client gets: the encoded map, or a local reply sent from the
    /// response path in place of the upstream's.
    pub client_headers: Option<Headers>,
    /// The body of a local reply the client gets (None: the upstream's body).
    pub client_body: Option<Vec<u8>>,
    pub logs: Vec<LogLine>,
    pub calls: Vec<HostCall>,
    pub violations: Vec<String>,
    /// Fuel for the whole stream (context create .. delete).
    pub fuel: u64,
    /// Fuel for `proxy_on_request_headers` alone.
    pub fuel_request_headers: u64,
    /// Fuel for every `proxy_on_request_body` together.
    pub fuel_request_body: u64,
    /// Properties the module set during the stream (`proxy_set_property`), dotted names.
    pub properties_set: BTreeMap<String, Vec<u8>>,
}

impl Outcome {
    /// The (first) local response: status, headers, body.
    pub fn local_response(&self) -> Option<(u32, &Headers, &[u8])> {
        self.local_responses
            .first()
            .map(|l| (l.status, &l.headers, l.body.as_slice()))
    }

    pub fn local(&self) -> Option<&LocalResponse> {
        self.local_responses.first()
    }

    pub fn status(&self) -> Option<u32> {
        self.local().map(|l| l.status)
    }

    /// The request headers as the upstream sees them, if the request was forwarded.
    pub fn upstream_headers(&self) -> Option<&Headers> {
        self.forwarded.then_some(&self.request_headers)
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn trapped(&self) -> bool {
        self.trap.is_some()
    }

    pub fn logs(&self) -> &[LogLine] {
        &self.logs
    }

    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn calls(&self) -> &[HostCall] {
        &self.calls
    }

    /// Host calls of this stream, `proxy_log` and WASI excluded: what a request costs the host.
    pub fn abi_call_count(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| c.name.starts_with("proxy_") && c.name != "proxy_log")
            .count()
    }

    pub fn calls_named(&self, name: &str) -> usize {
        self.calls.iter().filter(|c| c.name == name).count()
    }

    pub fn assert_no_secret_in_logs(&self, secrets: &[&str]) {
        assert_no_secret_in(&self.logs, secrets);
    }

    /// The status line the client gets (`:status` of [`Outcome::client_headers`]).
    pub fn client_status(&self) -> Option<u32> {
        self.client_headers
            .as_ref()
            .and_then(|h| h.get_str(":status"))
            .and_then(|s| s.parse().ok())
    }

    /// The callback that sent the local response, if any.
    pub fn local_phase(&self) -> Option<Phase> {
        self.local().map(|l| l.phase)
    }

    /// Whether any body callback ran.
    pub fn body_was_read(&self) -> bool {
        !self.body_calls.is_empty()
    }

    /// Panics with a readable account unless the stream ran cleanly: no trap, no host-side
    /// violation, only valid actions, no stall, and exactly one ending: either the request went
    /// upstream with every callback continuing and no local response, or exactly one local
    /// response, sent by a callback that then paused.
    pub fn assert_well_formed(&self) {
        assert!(
            self.trap.is_none(),
            "the module trapped\n{}",
            self.describe()
        );
        assert!(
            self.violations.is_empty(),
            "violations: {:?}\n{}",
            self.violations,
            self.describe()
        );
        let mut actions = vec![("request headers".to_string(), self.action)];
        for (i, b) in self.body_calls.iter().enumerate() {
            actions.push((format!("request body chunk {i}"), b.action));
        }
        if let Some(a) = self.trailers_action {
            actions.push(("request trailers".into(), a));
        }
        if let Some(a) = self.response_action {
            actions.push(("response headers".into(), a));
        }
        for (what, action) in &actions {
            assert!(
                matches!(action, Action::Continue | Action::Pause),
                "invalid action {action:?} from {what}\n{}",
                self.describe()
            );
        }
        assert!(
            self.stalled.is_none(),
            "the stream stalled: {}\n{}",
            self.stalled.as_deref().unwrap_or_default(),
            self.describe()
        );
        assert!(
            self.local_responses.len() <= 1,
            "more than one local response\n{}",
            self.describe()
        );
        let Some(local) = self.local() else {
            // Nothing answered locally: everything continued (headers possibly resumed).
            assert!(
                self.forwarded,
                "not forwarded, not answered\n{}",
                self.describe()
            );
            if self.action == Action::Pause {
                assert!(
                    self.calls_named("proxy_continue_stream") > 0,
                    "paused without a local response\n{}",
                    self.describe()
                );
            }
            for (what, action) in actions.iter().skip(1) {
                assert_eq!(
                    *action,
                    Action::Continue,
                    "{what} paused with no local response\n{}",
                    self.describe()
                );
            }
            return;
        };
        let sender = match local.phase {
            Phase::RequestHeaders => Some(self.action),
            Phase::RequestBody(i) => self.body_calls.get(i).map(|b| b.action),
            Phase::RequestTrailers => self.trailers_action,
            Phase::ResponseHeaders => self.response_action,
            Phase::Other => None,
        };
        assert_eq!(
            sender,
            Some(Action::Pause),
            "the {:?} callback sent a local response and did not pause\n{}",
            local.phase,
            self.describe()
        );
        if local.phase == Phase::ResponseHeaders {
            // It replaced an upstream response.
            assert!(self.forwarded, "{}", self.describe());
        } else {
            assert!(
                !self.forwarded,
                "forwarded and answered\n{}",
                self.describe()
            );
            // The local reply itself then passes through this filter's encoder path.
            assert_eq!(
                self.response_action,
                Some(Action::Continue),
                "the local reply was held up in proxy_on_response_headers\n{}",
                self.describe()
            );
        }
    }

    /// A multi-line account of the stream, for assertion messages.
    pub fn describe(&self) -> String {
        const MAX: usize = 40;
        let more = |n: usize| {
            if n > MAX {
                format!("  ... and {} more\n", n - MAX)
            } else {
                String::new()
            }
        };
        let mut s = format!(
            "action {:?}, body actions {:?}, trailers {:?}, response {:?}, forwarded {}, \
             stalled {:?}, trap {:?}\nlocal responses: {:?}\nrequest headers after:\n",
            self.action,
            self.body_calls.iter().map(|b| b.action).collect::<Vec<_>>(),
            self.trailers_action,
            self.response_action,
            self.forwarded,
            self.stalled,
            self.trap,
            self.local_responses
        );
        for (n, v) in self.request_headers.iter().take(MAX) {
            s.push_str(&format!("  {}: {}\n", show(n, 60), show(v, 60)));
        }
        s.push_str(&more(self.request_headers.len()));
        if let Some(h) = &self.client_headers {
            s.push_str("client response headers:\n");
            for (n, v) in h.iter().take(MAX) {
                s.push_str(&format!("  {}: {}\n", show(n, 60), show(v, 60)));
            }
            s.push_str(&more(h.len()));
        }
        s.push_str("logs:\n");
        for l in self.logs.iter().take(MAX) {
            s.push_str(&format!("  [{:?}] {}\n", l.level, show(&l.raw, 200)));
        }
        s.push_str(&more(self.logs.len()));
        s.push_str("calls:\n");
        for c in self.calls.iter().take(MAX) {
            s.push_str(&format!("  {}({})\n", c.name, c.args));
        }
        s.push_str(&more(self.calls.len()));
        s
    }
}

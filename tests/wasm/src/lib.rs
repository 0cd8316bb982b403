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
//! A request the module holds (its headers callback pauses with no local reply) runs the test's
//! [`Hold`] script: its body chunks and trailers arrive first (each must pause), then callout
//! answers and root ticks, until the module answers or resumes it. As in Envoy, every
//! `proxy_http_call` is the root context's and its answer comes as
//! `proxy_on_http_call_response(root, ...)`; the module routes it to its stream and must make
//! the stream's context effective (`proxy_set_effective_context`) before continuing it or
//! replying (a continue or a reply in another context is a violation).
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
//! The library of this test package: each test file uses it as `host`.

mod codes;
mod error;
mod headers;
mod host;
mod imports;
mod memory;
mod module;
mod records;
mod request;
mod shared;
mod state;
mod wasi;

pub use codes::{level, status};
pub use error::{HostError, HostResult};
pub use headers::{show, Headers};
pub use host::{assert_no_secret_in, Host, HostBuilder};
pub use module::{module_exports, module_imports, wasm_path};
pub use records::{BodyCall, HostCall, LocalResponse, LogLine, Phase};
pub use request::{Hold, Outcome, RequestBuilder};
pub use shared::{Action, HttpCall, Metric, SharedData};
pub use state::property_path;

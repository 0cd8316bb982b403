//! devgate as a proxy-wasm filter (`devgate.wasm`).
//!
//! * [`map`]: the proxy-wasm ABI's map serialisation, pure functions compiled on every target so
//!   that they are unit-tested and fuzzed natively.
//! * `filter` (wasm32 only): the root and HTTP contexts. Each callback gathers the facts the core
//!   asks for, hands them to the core and has the core's interpreter carry out the plan; it holds
//!   no policy branch. Natively the `proxy-wasm` crate is not even a dependency.
//! * `bindings` (wasm32 only): the few host calls devgate makes, written against the proxy-wasm
//!   ABI directly, reading everything as bytes; one of the two places allowed `unsafe` (the
//!   other is the native host's `bindings/`).
//! * `waiters` (wasm32 only): the streams held for the key service that the root context must
//!   reach (waiters it resumes on a fast tick, callouts whose answer it hands over).

pub mod map;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod waiters;

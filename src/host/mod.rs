//! The two hosts that run the core, laid out alike: each has a `mod.rs` (what it is and how it is
//! built), a `filter.rs` (the safe glue: gather facts, call the core, hand the plan to the core's
//! interpreter) and its `bindings` (the only code that talks to Envoy, and the only `unsafe`).
//!
//! * [`wasm`]: the proxy-wasm filter (`devgate.wasm`, `make build`). Its glue and bindings exist
//!   only on `wasm32`; the ABI's map serialisation ([`wasm::map`]) is pure and compiled
//!   everywhere, so that it is unit-tested natively.
//! * `native`: the Envoy dynamic module (`libdevgate.so`, `make build-native`). Its glue and
//!   bindings exist only with the `native-module` feature; its bounded worker pool
//!   (`native::pool`) is std-only and compiled natively everywhere, so that `make unit` tests it.

pub mod wasm;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;

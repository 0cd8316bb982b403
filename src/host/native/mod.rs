//! devgate as a native Envoy dynamic module (`libdevgate.so`).
//!
//! Envoy `dlopen`s the library and calls it through the dynamic-module C ABI of the pinned Envoy
//! (1.40, ABI `v0.2.0`). With the `native-module` feature:
//!
//! * `bindings`: the binding layer, one of the two places in the crate allowed `unsafe` (the other
//!   is the Wasm host's bindings). It declares exactly the Envoy callbacks devgate uses, exports
//!   the hooks Envoy requires, turns raw pointers into safe handles, and runs every hook body under
//!   `catch_unwind` (a panic is answered with a local 500 and a log line naming the hook, never
//!   unwound into C++).
//! * `filter`: safe glue. It reads facts through the handles, calls the core, and has the core's
//!   interpreter carry out the plan. Like the Wasm host's `filter` it decides nothing.
//! * `revocation`: the revocation list's fetcher on Envoy's main thread.
//!
//! Always compiled natively (with or without the feature): [`pool`], the bounded worker pool that
//! checks login passwords off Envoy's workers; std only, so `make unit` tests it.
//!
//! What a native module changes for a security filter: there is no sandbox. A memory error is
//! Envoy's crash, which is why `unsafe` stays in the bindings and why hooks never unwind.

// Without `native-module` (the unit tests' build) only its tests use it.
#[cfg_attr(not(feature = "native-module"), allow(dead_code))]
pub(crate) mod pool;

#[cfg(feature = "native-module")]
mod bindings;
#[cfg(feature = "native-module")]
mod filter;
#[cfg(feature = "native-module")]
mod process;
#[cfg(feature = "native-module")]
mod revocation;
#[cfg(all(feature = "native-module", feature = "test-hooks"))]
mod testhooks;

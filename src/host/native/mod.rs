//! devgate as a native Envoy dynamic module (`libdevgate.so`).
//!
//! Envoy `dlopen`s the library and calls it through the dynamic-module C ABI of the pinned Envoy
//! (1.40, ABI `v0.2.0`). Two parts:
//!
//! * [`abi`]: the binding layer, the only code in the crate allowed `unsafe`. It declares exactly
//!   the Envoy callbacks devgate uses, exports the hooks Envoy requires, turns raw pointers into
//!   the safe [`abi::Host`] handle, and runs every hook body under `catch_unwind` (a panic is
//!   answered with a local 500 and a log line naming the hook, never unwound into C++).
//! * [`filter`]: safe glue. It reads facts through [`abi::Host`], calls the core, and carries out
//!   the decision. Like `src/filter/` on the wasm side it decides nothing; it is a placeholder
//!   interpreter that the plan API of issue #16 replaces.
//!
//! What a native module changes for a security filter: there is no sandbox. A memory error is
//! Envoy's crash, which is why `unsafe` stays in one reviewed file and why hooks never unwind.

mod abi;
mod filter;
mod revocation;
#[cfg(feature = "test-hooks")]
mod testhooks;

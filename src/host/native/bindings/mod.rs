//! The binding layer: Envoy 1.40's dynamic-module C ABI (`v0.2.0`), the subset devgate uses.
//!
//! One of the two places in the crate with `unsafe` (the other is the Wasm host's
//! `src/host/wasm/bindings.rs`); every file of it is short enough to read whole:
//!
//! * `types.rs`: the C ABI's types (`#[repr(C)]` buffers and headers, the enums, the status and
//!   result codes), as `abi.h` defines them, and `BodyStatus`, the glue's answer to a body chunk.
//! * `imports.rs`: `extern "C"` declarations of the Envoy callbacks devgate calls, each with the
//!   contract it relies on and its label (*Used*, *Bound, test build only*, *Declared*), which
//!   `tests/e2e/test_native_abi.py` checks against what the shipped build imports.
//! * `twins.rs`: the callbacks Envoy has for both a stream and a configuration (HTTP callout,
//!   counter, gauge, scheduler), implemented once over the kind of object.
//! * `handles.rs`: [`Host`] and [`ConfigHost`], the safe handles. Views into Envoy's memory borrow
//!   the handle, and every call that may invalidate them takes `&mut self`, so the borrow checker
//!   enforces the ABI's "valid until the hook returns or a setter is called".
//! * `schedulers.rs`: the stream's [`Scheduler`] (and its `Resumer`s) and the configuration's
//!   [`ConfigScheduler`], with the argument for when a commit is sound.
//! * `state.rs`: what the layer keeps for Envoy's objects between hooks (a configuration's
//!   `Bound`, a stream's `Slot` holding its state in a `reentry::Held`) and `stream_hook`, the one
//!   way a stream hook reaches its state: sound when Envoy re-enters the module for the same
//!   stream (the second hook finds the state borrowed and answers neutrally) or destroys the
//!   stream during a hook (deferred to the outermost hook's exit).
//! * `loader.rs`: the library's own loading: it pins itself in memory and refuses an Envoy older
//!   than 1.40.
//! * `exports.rs`: the exported hooks, each body under `catch_unwind` (a panic is logged with the
//!   hook's name, answered with a local 500, never unwound into C++).
//! * `counting.rs` (test build only): the global allocator that counts allocations, so that
//!   `tests/e2e/test_native_bindings.py` can pin the allocations per request.
//!
//! Imports inside the layer go one way: `types` ← `imports` ← `twins` ← `schedulers` ←
//! `handles` ← `state` ← `exports` (and `loader` ← `exports`). Out of it, only `state` and
//! `exports` reach up, to the glue's entry points (`filter::Config`, `filter::Stream`) and to
//! `reentry`; the glue uses the handles re-exported here.
#![allow(unsafe_code)]

/// Test build only: the allocator that counts allocations (see `counting.rs`).
#[cfg(feature = "test-hooks")]
pub(super) mod counting;
mod exports;
mod handles;
mod imports;
mod loader;
mod schedulers;
mod state;
mod twins;
mod types;

pub(super) use handles::{log, log_enabled, CalloutAnswer, ConfigHost, Host};
pub(super) use schedulers::{ConfigScheduler, Resumer, Scheduler};
pub(super) use types::{Body, BodyStatus, HeaderMap, LogLevel};

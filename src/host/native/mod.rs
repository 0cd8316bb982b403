//! devgate as a native Envoy dynamic module (`libdevgate.so`).
//!
//! Envoy `dlopen`s the library and calls it through the dynamic-module C ABI of the pinned Envoy
//! (1.40, ABI `v0.2.0`). With the `native-module` feature:
//!
//! * `bindings/`: the binding layer, one of the two places in the crate allowed `unsafe` (the
//!   other is the Wasm host's bindings), split so that each file reads whole: the C types, the
//!   declared Envoy callbacks, the safe handles (`Host`, `ConfigHost`, the schedulers), the exported
//!   hooks (every body under `catch_unwind`: a panic is answered with a local 500 and a log line
//!   naming the hook, never unwound into C++) and, in the test build, the counting allocator.
//! * `filter`: safe glue. It reads facts through the handles, calls the core, and hands the plan it
//!   gets back to the core's interpreter (`core::perform`). Like the Wasm host's `filter` it
//!   decides nothing.
//! * `effects`: the primitive effects the interpreter asks of this host (`core::effects::Effects`),
//!   for a stream's hooks and for the configuration's: each one call of the handles.
//! * `process`: what the whole process shares: the clock and the shared store as the core reads
//!   them off a stream (`Process`), and the store itself.
//! * `revocation`: the revocation list's fetcher on Envoy's main thread.
//! * `keyservice`: what a stream holds while its request waits for the key service (its
//!   callout's id, or its scheduler while it waits for another stream's callout) and the wakers of
//!   the process-wide registry of waiting streams.
//! * `testhooks` (test build only): request headers that drive the callbacks the shipped build
//!   does not call, so each is proven in Envoy.
//!
//! Always compiled natively (with or without the feature), std only, so `make unit` tests them:
//! [`answer`], a key-service callout's answer as the core reads it; [`pool`], the bounded worker
//! pool that checks login passwords off Envoy's workers; [`reentry`], the cell a stream's state
//! lives in between hooks (sound when Envoy re-enters a hook for the same stream or destroys the
//! stream during one); and [`waiters`], the registry of streams waiting for another stream's
//! key-service callout (woken by its owner, or at their deadline by its timer thread).
//!
//! Imports go one way, with no circle (`a → b`: `a` uses `b`; the core and `config` are below
//! all of them and import none):
//!
//! ```text
//! bindings::exports → filter            (the hook bodies: filter::Config, filter::Stream)
//! bindings::state   → filter, reentry   (a stream's state in a reentry::Held)
//! filter            → bindings (handles, types), effects, keyservice, answer, process,
//!                     revocation, pool, testhooks (test build)
//! testhooks         → bindings (handles, types, counting), pool
//! revocation        → bindings (handles, types), effects, process, pool (lock_or_restart)
//! effects           → bindings (handles, types), keyservice, process
//! keyservice        → bindings (schedulers, handles), process, waiters
//! bindings::schedulers → pool           (the stream scheduler's revocable handle)
//! ```
//!
//! Inside `bindings/` the files import one way too (see its module doc), and nothing outside it
//! reaches `exports`: the glue calls Envoy only through the handles (and names the types they
//! take), Envoy calls the glue only through the hooks.
//!
//! What a native module changes for a security filter: there is no sandbox. A memory error is
//! Envoy's crash, which is why `unsafe` stays in the bindings and why hooks never unwind.

// Without `native-module` (the unit tests' build) only its tests use it.
#[cfg_attr(not(feature = "native-module"), allow(dead_code))]
pub(crate) mod answer;
// Without `native-module` (the unit tests' build) only its tests use it.
#[cfg_attr(not(feature = "native-module"), allow(dead_code))]
pub(crate) mod pool;
// Without `native-module` (the unit tests' build) only its tests use it.
#[cfg_attr(not(feature = "native-module"), allow(dead_code))]
pub(crate) mod reentry;
// Without `native-module` (the unit tests' build) only its tests use it.
#[cfg_attr(not(feature = "native-module"), allow(dead_code))]
pub(crate) mod waiters;

#[cfg(feature = "native-module")]
mod bindings;
#[cfg(feature = "native-module")]
mod effects;
#[cfg(feature = "native-module")]
mod filter;
#[cfg(feature = "native-module")]
mod keyservice;
#[cfg(feature = "native-module")]
mod process;
#[cfg(feature = "native-module")]
mod revocation;
#[cfg(all(feature = "native-module", feature = "test-hooks"))]
mod testhooks;

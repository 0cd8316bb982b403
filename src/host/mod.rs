//! Hosts other than proxy-wasm that run the same core.
//!
//! `native`: devgate as an Envoy dynamic module (`libdevgate.so`, issue #17), built with the
//! `native-module` feature and the `native` profile (`make build-native`).

#[cfg(feature = "native-module")]
mod native;

/// The bounded worker pool of the native module (bcrypt off Envoy's workers). Std only and
/// host-independent: compiled natively with or without `native-module`, so that `make unit` tests it.
// Without `native-module` (the unit tests' build) only its tests use it.
#[cfg_attr(not(feature = "native-module"), allow(dead_code))]
#[path = "native/pool.rs"]
pub(crate) mod pool;

//! Hosts other than proxy-wasm that run the same core.
//!
//! `native`: devgate as an Envoy dynamic module (`libdevgate.so`, issue #17), built with the
//! `native-module` feature and the `native` profile (`make build-native`).

mod native;

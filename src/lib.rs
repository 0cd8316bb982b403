//! devgate: developer and API-key authentication for Envoy, as a proxy-wasm filter.
//!
//! The crate has two halves that never mix:
//!
//! * [`config`] and [`core`]: pure Rust. Plain data in (the request facts Envoy gave us, the
//!   clock), a [`core::Decision`] out. Compiled and unit-tested natively; they cannot call the
//!   host because natively the `proxy-wasm` crate is not even a dependency.
//! * `filter` (wasm32 only): the glue. It reads from the host, calls the core, and maps the
//!   decision to host calls. It decides nothing.
//!
//! The request-header name devgate injects is `x-wsgiorg-developer-user`, the HTTP spelling of the
//! `x-wsgiorg.developer_user` key of the Developer Auth specification.

pub mod abi;
pub mod config;
pub mod core;

#[cfg(target_arch = "wasm32")]
mod filter;

#[cfg(not(target_arch = "wasm32"))]
mod host;

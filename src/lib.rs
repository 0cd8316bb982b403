//! devgate: developer and API-key authentication for Envoy, as a proxy-wasm filter.
//!
//! Dependencies point one way:
//!
//! * [`core`]: pure Rust, no host, no I/O. The validated [`core::policy::Policy`] and its
//!   routing, the decision, and the per-stream [`core::stream::Stream`] that turns facts (peer,
//!   headers, body chunks, lazily read clock and TLS state, a shared store behind
//!   [`core::shared::SharedStore`]) into a complete [`core::plan::Plan`]: header edits, the
//!   local reply, the audit value, the counter, the log note. It imports neither `config` nor a
//!   host.
//! * [`config`]: JSON in, a core `Policy` out, with errors that name the field.
//! * `filter` (wasm32 only): the Wasm host. It gathers facts, calls the core and performs the
//!   plan; it holds no policy branch. Natively the `proxy-wasm` crate is not even a dependency.
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

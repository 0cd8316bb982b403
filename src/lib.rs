//! devgate: developer and API-key authentication for Envoy, one pure core in two hosts: a
//! proxy-wasm filter (`devgate.wasm`) and a native Envoy dynamic module (`libdevgate.so`).
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
//! * [`host`]: the two hosts, laid out alike (`host/wasm/`, `host/native/`). Each gathers facts,
//!   calls the core and hands the plan back to be carried out; it holds no policy branch.
//!   Natively the `proxy-wasm` crate is not even a dependency; the native module's bindings are
//!   compiled only with the `native-module` feature.
//!
//! The request-header name devgate injects is `x-wsgiorg-developer-user`, the HTTP spelling of the
//! `x-wsgiorg.developer_user` key of the Developer Auth specification.

#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod host;

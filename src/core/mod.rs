//! The core: pure Rust, no host, no I/O, no clock of its own. A host owns a
//! [`stream::Stream`] per HTTP stream and a [`revocation::Worker`] per worker, hands them facts
//! ([`facts`]) and a shared store ([`shared`]), and has [`perform`] carry out the [`plan::Plan`]
//! or [`plan::Report`] it gets back through the host's primitive [`effects::Effects`].
//!
//! The decision of one request's headers is [`decide_with`]: request facts and a
//! [`policy::Policy`] in, a [`Decision`] out, built from `decision` (the vocabulary and the
//! one deny path), `credential` (tokens and the session cookie), `api` (API keys) and
//! `edits` (what never reaches the upstream). The codes every part shares (reasons, sources,
//! login outcomes) are in [`codes`], which imports none of the modules that use them. Nothing
//! here imports the configuration parser or a host.

pub mod apikey;
pub mod budget;
pub mod callout;
pub mod codes;
pub mod cookie;
pub mod counters;
pub mod edge;
pub mod effects;
pub mod facts;
pub mod form;
pub mod headers;
pub mod htpasswd;
pub mod jose;
pub mod keyservice;
pub mod keysource;
pub mod login;
pub mod method;
pub mod net;
pub mod path;
pub mod perform;
pub mod plan;
pub mod policy;
pub mod query;
pub mod revocation;
pub mod session;
pub mod shared;
pub mod source;
pub mod stream;
pub mod token;
pub mod usertoken;

mod api;
mod credential;
mod decide;
mod decision;
mod edits;

pub use api::mode_allows;
pub use codes::{Reason, Source};
pub use decide::{
    decide, decide_form, decide_keyed, decide_views, decide_with, FormVerdicts, Views,
};
pub use decision::{Decision, Edits, Identity, Request, Response};
pub use edits::trailer_removals;

#[cfg(test)]
mod tests;

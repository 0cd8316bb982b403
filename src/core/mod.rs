//! The core: pure Rust, no host, no I/O, no clock of its own. A host owns a
//! [`stream::Stream`] per HTTP stream and a [`revocation::Worker`] per worker, hands them facts
//! ([`facts`]) and a shared store ([`shared`]), and performs the [`plan::Plan`] it gets back.
//!
//! The decision of one request's headers is [`decide_with`]: request facts and a
//! [`policy::Policy`] in, a [`Decision`] out, built from `decision` (the vocabulary and the
//! one deny path), `credential` (tokens and the session cookie), `api` (API keys) and
//! `edits` (what never reaches the upstream). Nothing here imports the configuration parser
//! or a host.

pub mod apikey;
pub mod budget;
pub mod codes;
pub mod cookie;
pub mod counters;
pub mod effects;
pub mod facts;
pub mod headers;
pub mod htpasswd;
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
pub mod stream;
pub mod token;

mod api;
mod credential;
mod decide;
mod decision;
mod edits;

use std::net::IpAddr;

use apikey::{ApiKey, KeyKind};
use cookie::CookieLookup;
use net::NetVerdict;
use policy::{
    ApiPolicy, ApiRoute, LoginPolicy, Mode, Policy, RuleKind, TokenPolicy, Unauthenticated,
};
use revocation::Revocation;
use token::{Expect, TokenError};

pub use api::mode_allows;
use api::*;
pub use codes::{Reason, Source};
use credential::*;
use decide::Ctx;
pub use decide::{decide, decide_with};
pub use decision::*;
pub use edits::trailer_removals;
use edits::*;

#[cfg(test)]
mod tests;

//! The primitive effects a host carries out for the core: the one trait a host implements so
//! that [`crate::core::perform`] can carry out every [`Plan`](crate::core::plan::Plan) and
//! [`Report`](crate::core::plan::Report) for it.
//!
//! Each method is one host call (or none) and decides nothing: which effects happen, in which
//! order, what a failure leads to, how a missing counter is handled and whether a note is
//! written are [`crate::core::perform`]'s. A host's implementation maps each method to its ABI
//! and reports a failed call as [`Failed`]; nothing else.

use std::fmt;

use crate::core::callout::{Callout, Wait};
use crate::core::counters::Table;
use crate::core::plan::{Level, Reply};

/// A host call did not do what it was asked (the host said so, or cannot do it at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

/// Which header map a step's removals and sets apply to: the map of the hook that made the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMap {
    /// The request's headers (request-headers, body and response steps).
    RequestHeaders,
    /// The request's trailers (the trailers step).
    RequestTrailers,
}

/// A gauge devgate sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    /// `devgate.revocation.degraded`: 1 while the revocation list is stale.
    RevocationDegraded,
    /// `devgate.key_service.entries`: the key service cache's slots ever filled.
    KeyServiceEntries,
    /// `devgate.edge.keys_degraded`: 1 while a fetched assertion source has no usable keys
    /// (none fetched within `max_stale_seconds`); its assertions are refused.
    EdgeKeysDegraded,
}

/// What a host can do for a plan or a report, one primitive at a time.
///
/// Steps that only a stream has (header edits, the audit value, a local reply) may fail with
/// [`Failed`]; the core then ends the step in its refusal. A host with no stream (the
/// configuration, a revocation worker) is only asked for counters, gauges and log lines.
pub trait Effects {
    /// The host's id of a defined metric.
    type Id: Copy;

    /// Removes every value of header `name` (spelled as the host holds it) from `map`.
    fn remove_header(&mut self, map: HeaderMap, name: &[u8]) -> Result<(), Failed>;
    /// Sets header `name` of `map` to `value`, replacing any value.
    fn set_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), Failed>;
    /// Adds a header to the upstream's response.
    fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Failed>;
    /// The host's counter ids, defined once from [`Counter::all`](crate::core::counters::Counter::all).
    fn counters(&self) -> &Table<Self::Id>;
    /// Adds one to the counter `id`.
    fn increment(&mut self, id: Self::Id);
    /// Sets `gauge` to `value` (a host that did not define it does nothing).
    fn set_gauge(&mut self, gauge: Gauge, value: u64);
    /// Sets the request's audit value (`devgate_decision`).
    fn set_audit(&mut self, value: &str) -> Result<(), Failed>;
    /// Whether a line at `level` would be written: the core formats a note only then.
    fn log_enabled(&self, level: Level) -> bool;
    /// Writes one log line at `level` (only called when [`Effects::log_enabled`] said yes).
    fn log(&mut self, level: Level, line: fmt::Arguments<'_>);
    /// Answers the request with `reply` instead of letting it go on.
    fn send_reply(&mut self, reply: &Reply) -> Result<(), Failed>;
    /// Starts `callout` for the stream; its answer (or its failure) is handed to
    /// [`crate::core::stream::Stream::on_callout_answer`] later. `Failed`: it could not start.
    fn start_callout(&mut self, callout: &Callout) -> Result<(), Failed>;
    /// Holds the stream until a wake for `wait.flight` or `wait.until_ms`, then has it
    /// [`crate::core::stream::Stream::resume`].
    fn wait(&mut self, wait: &Wait) -> Result<(), Failed>;
    /// Wakes every stream of the process waiting on `flight` (a host whose waiters look for
    /// themselves on a timer does nothing).
    fn wake(&mut self, flight: u64);
}

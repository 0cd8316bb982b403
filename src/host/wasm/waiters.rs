//! The streams of this VM (one Envoy worker) that the root context must reach: those waiting
//! for another stream's key-service callout, and those whose callout's answer comes back to the
//! root context (a callout started from a root callback; see below). One registry per VM, in a
//! thread-local, as the SDK keeps its contexts.
//!
//! A waiting stream is polled, not woken: while any stream waits the root context ticks every
//! [`FAST_TICK_MS`], and each tick runs every waiter's resume step (the core decides whether it
//! still waits, from the shared cache and flight table, so a wake from another worker's stream
//! is seen on the next tick as well as one from this worker's). When nobody waits the period
//! goes back to the normal one (the revocation worker's, or none).
//!
//! Envoy makes every `dispatch_http_call` on the root context, and the SDK routes its answer to
//! the context that was active when the call started: the stream's own for a call started in a
//! stream callback, the root for one started while the root context resumed a waiter. The
//! registry remembers each stream callout's token so that the root can hand such an answer to
//! its stream.
//!
//! Entries hold [`Weak`] references: a stream Envoy destroyed is never run again, and
//! [`unregister`] drops its entries when its context goes away.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Weak;

use super::bindings::{self, HostError};
use super::filter::Held;

/// The root context's tick period while a stream waits, in milliseconds.
pub const FAST_TICK_MS: u32 = 20;

#[derive(Default)]
struct Registry {
    /// Waiting streams: context id -> (until when, in ms since the epoch; the stream).
    waiting: BTreeMap<u32, (u64, Weak<Held>)>,
    /// Callouts of streams in the air: token -> (context id, stream).
    callouts: BTreeMap<u32, (u32, Weak<Held>)>,
    /// The root context's tick period when nobody waits (0: no ticks).
    normal_ms: u32,
    /// The tick period is [`FAST_TICK_MS`].
    fast: bool,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Runs `f` on the registry; `None` if it is busy (never, as nothing here calls out).
fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    REGISTRY.with(|r| r.try_borrow_mut().ok().map(|mut r| f(&mut r)))
}

/// Stream `id` waits (until `until_ms` at the latest): the root context ticks fast until
/// nobody waits. An error when the tick period cannot be set (then nothing is registered).
pub fn wait(id: u32, until_ms: u64, stream: Weak<Held>) -> Result<(), HostError> {
    let fast = with(|r| r.fast).unwrap_or(false);
    if !fast {
        bindings::set_tick_period_ms(FAST_TICK_MS)?;
    }
    with(|r| {
        r.fast = true;
        r.waiting.insert(id, (until_ms, stream));
    })
    .ok_or(HostError(u32::MAX))
}

/// Every waiting stream, the earliest deadline first, taken out of the registry: a waiter that
/// still waits after its resume step registers again.
pub fn take_waiting() -> Vec<(u32, Weak<Held>)> {
    let mut all: Vec<(u64, u32, Weak<Held>)> = with(|r| std::mem::take(&mut r.waiting))
        .unwrap_or_default()
        .into_iter()
        .map(|(id, (until, stream))| (until, id, stream))
        .collect();
    all.sort_by_key(|(until, id, _)| (*until, *id));
    all.into_iter().map(|(_, id, s)| (id, s)).collect()
}

/// Stream `id` started the callout `token`.
pub fn callout_started(token: u32, id: u32, stream: Weak<Held>) {
    with(|r| r.callouts.insert(token, (id, stream)));
}

/// The stream whose callout `token` is, taken out of the registry; `None` for a callout no
/// stream started (the revocation fetch).
pub fn take_callout(token: u32) -> Option<(u32, Weak<Held>)> {
    with(|r| r.callouts.remove(&token)).flatten()
}

/// Stream `id`'s context goes away: it waits for nothing any more.
pub fn unregister(id: u32) {
    with(|r| {
        r.waiting.remove(&id);
        if !r.callouts.is_empty() {
            r.callouts.retain(|_, (owner, _)| *owner != id);
        }
    });
}

/// The tick period when nobody waits (the revocation worker's); set now unless streams wait.
pub fn set_normal_period(period_ms: u32) -> Result<(), HostError> {
    let fast = with(|r| {
        r.normal_ms = period_ms;
        r.fast
    })
    .unwrap_or(false);
    if fast {
        return Ok(());
    }
    bindings::set_tick_period_ms(period_ms)
}

/// After a tick: back to the normal period when nobody waits any more.
pub fn settle() {
    let normal = with(|r| (r.fast && r.waiting.is_empty()).then_some(r.normal_ms)).flatten();
    if let Some(normal) = normal {
        if bindings::set_tick_period_ms(normal).is_ok() {
            with(|r| r.fast = false);
        }
    }
}

//! The native host's side of the key service: what a stream holds while its request waits (its
//! callout's id, or its scheduler while it waits for another stream's callout), the process-wide
//! registry of waiting streams ([`waiters`](super::waiters)) with the wakers that bring them back
//! to their workers.
//!
//! Safe glue: Envoy is reached only through the binding layer's handles.

use std::sync::OnceLock;
use std::thread;

use super::bindings::{Resumer, Scheduler};
use super::process::Process;
use super::waiters::{Waiters, Waker};
use crate::core::facts::Facts;

/// The scheduler event that brings a waiting stream back: its flight was woken or its deadline
/// passed (not the test build's event, 1, nor the login pool's, 2).
pub(super) const WAITER_WOKEN: u64 = 3;

/// What a stream holds while its request waits for the key service.
#[derive(Default)]
pub(super) struct KeyHold {
    /// The id of the stream's callout to the key service, until its answer comes.
    pub(super) callout: Option<u64>,
    /// The stream's scheduler while it waits for another stream's callout: the registry holds its
    /// other end. Dropped on the worker (the answer's hook, or the stream's end), which withdraws
    /// it: a wake that comes later commits nothing.
    pub(super) waiting: Option<Scheduler>,
    /// The registry's number read before the stream's last decision ([`Waiters::mark`]).
    pub(super) mark: u64,
}

/// A waiting stream's waker: its scheduler's other end, committing [`WAITER_WOKEN`].
pub(super) struct StreamWaker(Resumer);

impl Waker for StreamWaker {
    fn wake(&self) -> bool {
        self.0.commit(WAITER_WOKEN)
    }

    fn live(&self) -> bool {
        self.0.live()
    }
}

impl StreamWaker {
    /// The waker of the stream whose scheduler is `scheduler`.
    pub(super) fn of(scheduler: &Scheduler) -> StreamWaker {
        StreamWaker(scheduler.resumer())
    }
}

/// The process's registry of waiting streams (every configuration's: a flight's number is the
/// key's hash, which no two configurations' streams share a cache slot for by accident, and a
/// wake of another configuration's flight only makes a stream look again).
pub(super) fn registry() -> &'static Waiters<StreamWaker> {
    static REGISTRY: OnceLock<Waiters<StreamWaker>> = OnceLock::new();
    REGISTRY.get_or_init(Waiters::default)
}

/// Starts the registry's timer thread (once, with the first waiter); `false`: it did not start.
/// It runs as long as the process (the library is pinned in memory, `bindings/loader.rs`), and
/// commits only through wakers whose streams exist.
pub(super) fn start_timer() -> bool {
    thread::Builder::new()
        .name("devgate-waiters".to_string())
        .spawn(|| registry().run_timer(|| Process.now_ms()))
        .is_ok()
}

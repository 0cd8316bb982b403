//! The native host's side of the key service: what a stream holds while its request waits (its
//! callout's id, or its scheduler while it waits for another stream's callout), the process-wide
//! registry of waiting streams ([`waiters`](super::waiters)) with the wakers that bring them back
//! to their workers, and the answer of a callout as the core reads it.
//!
//! Safe glue: Envoy is reached only through the binding layer's handles.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::thread;

use super::bindings::{CalloutAnswer as Views, Resumer, Scheduler};
use super::process::Process;
use super::waiters::{Waiters, Waker};
use crate::core::callout::{CalloutAnswer, MAX_ANSWER_BODY};
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

/// A callout's answer as the host read it: its status, `retry-after`, and its body in one piece
/// (copied only when Envoy hands it in several chunks).
pub(super) struct Answer<'a> {
    status: Option<u16>,
    retry_after: Option<&'a [u8]>,
    body: Cow<'a, [u8]>,
}

impl<'a> Answer<'a> {
    /// Reads an answer's views. No answer (the call failed: reset, timeout, no cluster), no
    /// readable `:status`, or a body over [`MAX_ANSWER_BODY`]: [`CalloutAnswer::FAILED`].
    pub(super) fn of(views: Option<Views<'a>>) -> Answer<'a> {
        let failed = Answer {
            status: None,
            retry_after: None,
            body: Cow::Borrowed(&b""[..]),
        };
        let Some(views) = views else {
            return failed;
        };
        let header = |name: &[u8]| {
            views
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        };
        let status = header(b":status")
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok());
        let size: usize = views.body.iter().map(|c| c.len()).sum();
        if status.is_none() || size > MAX_ANSWER_BODY {
            return failed;
        }
        let body = match views.body {
            [] => Cow::Borrowed(&b""[..]),
            [one] => Cow::Borrowed(*one),
            many => Cow::Owned(many.concat()),
        };
        Answer {
            status,
            retry_after: header(b"retry-after"),
            body,
        }
    }

    /// The answer as the core reads it.
    pub(super) fn core(&self) -> CalloutAnswer<'_> {
        if self.status.is_none() {
            return CalloutAnswer::FAILED;
        }
        CalloutAnswer {
            status: self.status,
            retry_after: self.retry_after,
            body: &self.body,
        }
    }
}

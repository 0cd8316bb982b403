//! Streams waiting for another stream's key-service callout (single flight), process-wide: the
//! registry behind the native host's `wait` and `wake` effects.
//!
//! A stream the core tells to wait (`Next::Wait { flight, until_ms }`) registers a [`Waker`] (its
//! scheduler's other end) under the flight; the stream that owns the flight performs `wake(flight)`
//! once its answer is stored (or when it ends without one), which takes every waker of the flight
//! out and wakes each: Envoy then runs the waiting stream's `scheduled` hook on its own worker,
//! and the stream runs its step again (`core::stream::Stream::resume`).
//!
//! Three things can go wrong, and each has its answer here:
//! * the owner wakes between a waiter's decision (it joined the flight) and its registration (a
//!   few microseconds later, on another worker): every wake takes a number from one sequence, and
//!   the registry remembers recently woken flights (at most [`RECENT_MAX`], for [`RECENT_MS`]); a
//!   waiter registers with the number it read before its decision ([`Waiters::mark`]), and a wake
//!   of its flight after that number wakes it at once. A wake before the decision is not one: the
//!   core read the flight's state after it, so an old wake never makes a waiter spin;
//! * no wake ever comes (the owner's worker is stuck): one timer thread, started with the first
//!   registration, wakes every waiter at its `until_ms`;
//! * the waiting stream ends: its waker says so ([`Waker::live`]); the registry drops it at the
//!   flight's wake or the deadline, whichever comes first (a dead waker's wake does nothing).
//!
//! At most [`MAX_WAITERS`] wakers are held at once (the core's own budget bounds waiters per
//! flight; this bounds the process): one more is refused, and the core refuses that request.
//!
//! Std only, no `unsafe`, generic over the waker: compiled and unit-tested without the
//! `native-module` feature.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a wake is remembered for a waiter that registers after it.
pub const RECENT_MS: u64 = 1_000;
/// At most this many recent wakes are remembered (the oldest go first).
pub const RECENT_MAX: usize = 4_096;
/// At most this many wakers are held at once, for the whole process.
pub const MAX_WAITERS: usize = 16_384;
/// The timer's longest sleep while wakers are held: a bound on how late a deadline is honoured
/// if the clock jumps.
const TICK_MS: u64 = 100;

/// Brings one waiting stream back to its worker.
pub trait Waker: Send {
    /// Asks for the stream's step to run again; `false`: the stream has gone (nothing happens).
    fn wake(&self) -> bool;
    /// Whether the stream still exists.
    fn live(&self) -> bool;
}

/// Why a waiter could not be registered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_WAITERS`] are held already.
    Full,
    /// The timer thread could not start, so no deadline would be honoured.
    NoTimer,
}

/// The registry (one per process: see the native host's `effects.rs`).
pub struct Waiters<W> {
    inner: Mutex<Inner<W>>,
    /// The number the next wake takes (read without the lock by every decision: [`Waiters::mark`]).
    next: AtomicU64,
    /// Signalled when a waker is registered (the timer sleeps until the earliest deadline).
    changed: Condvar,
}

struct Inner<W> {
    /// The wakers of each flight, with their deadlines (milliseconds since the epoch).
    flights: HashMap<u64, Vec<(W, u64)>>,
    /// Wakers held, over every flight.
    held: usize,
    /// Recent wakes, oldest first: flight, its number, when (milliseconds since the epoch).
    recent: VecDeque<(u64, u64, u64)>,
    /// Whether the timer thread runs.
    timer: bool,
}

impl<W: Waker> Default for Waiters<W> {
    fn default() -> Self {
        Waiters {
            inner: Mutex::new(Inner {
                flights: HashMap::new(),
                held: 0,
                recent: VecDeque::new(),
                timer: false,
            }),
            next: AtomicU64::new(1),
            changed: Condvar::new(),
        }
    }
}

impl<W: Waker> Waiters<W> {
    /// The registry's lock; a poisoned one (a panic while held: only a bug) is taken as is, the
    /// state it guards being consistent between statements.
    fn lock(&self) -> MutexGuard<'_, Inner<W>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number a stream reads before its decision, and registers with ([`Waiters::register`]).
    pub fn mark(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Registers `waker` on `flight` until `until_ms`. It is woken at once (before this returns)
    /// when its deadline has passed or the flight was woken after `mark`. `start_timer` starts the
    /// thread that honours deadlines, once per registry; `false` from it refuses the waiter.
    pub fn register(
        &self,
        flight: u64,
        until_ms: u64,
        waker: W,
        mark: u64,
        now_ms: u64,
        start_timer: impl FnOnce() -> bool,
    ) -> Result<(), Refused> {
        let mut inner = self.lock();
        forget_old(&mut inner.recent, now_ms);
        let woken = inner
            .recent
            .iter()
            .any(|&(f, number, _)| f == flight && number >= mark);
        if woken || until_ms <= now_ms {
            drop(inner);
            waker.wake();
            return Ok(());
        }
        if inner.held >= MAX_WAITERS {
            return Err(Refused::Full);
        }
        if !inner.timer {
            if !start_timer() {
                return Err(Refused::NoTimer);
            }
            inner.timer = true;
        }
        inner
            .flights
            .entry(flight)
            .or_default()
            .push((waker, until_ms));
        inner.held += 1;
        drop(inner);
        self.changed.notify_all();
        Ok(())
    }

    /// Wakes every waker of `flight` (each at most once) and remembers the wake for a waiter
    /// about to register. Returns how many were live.
    pub fn wake(&self, flight: u64, now_ms: u64) -> usize {
        let mut inner = self.lock();
        // Taken under the lock, so a registration (also under it) sees every wake numbered at or
        // after its mark, or comes before it and is woken by it.
        let number = self.next.fetch_add(1, Ordering::SeqCst);
        forget_old(&mut inner.recent, now_ms);
        if inner.recent.len() >= RECENT_MAX {
            inner.recent.pop_front();
        }
        inner.recent.push_back((flight, number, now_ms));
        let wakers = inner.flights.remove(&flight).unwrap_or_default();
        inner.held = inner.held.saturating_sub(wakers.len());
        drop(inner);
        // Outside the lock: a waker takes its stream's own lock (pool::Revocable).
        wakers.into_iter().filter(|(w, _)| w.wake()).count()
    }

    /// Wakes every waker whose deadline is `now_ms` or earlier, and drops those whose stream has
    /// gone. Returns the earliest deadline still held.
    pub fn expire(&self, now_ms: u64) -> Option<u64> {
        let mut due = Vec::new();
        let mut inner = self.lock();
        let mut earliest: Option<u64> = None;
        for wakers in inner.flights.values_mut() {
            let mut i = 0;
            while let Some((w, until)) = wakers.get(i) {
                if *until <= now_ms || !w.live() {
                    due.push(wakers.swap_remove(i));
                } else {
                    earliest = Some(earliest.map_or(*until, |e| e.min(*until)));
                    i += 1;
                }
            }
        }
        inner.flights.retain(|_, wakers| !wakers.is_empty());
        inner.held = inner.held.saturating_sub(due.len());
        drop(inner);
        for (w, _) in due {
            w.wake();
        }
        earliest
    }

    /// Wakers held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// The timer thread's loop: sleeps until the earliest deadline (at most [`TICK_MS`]; until a
    /// registration when nothing is held) and expires what is due. Never returns.
    pub fn run_timer(&self, now_ms: impl Fn() -> u64) {
        loop {
            let next = self.expire(now_ms());
            let inner = self.lock();
            if next.is_none() && inner.held == 0 {
                drop(self.changed.wait(inner).unwrap_or_else(|p| p.into_inner()));
            } else {
                let now = now_ms();
                let sleep = next.map_or(TICK_MS, |n| n.saturating_sub(now).clamp(1, TICK_MS));
                drop(
                    self.changed
                        .wait_timeout(inner, Duration::from_millis(sleep))
                        .unwrap_or_else(|p| p.into_inner()),
                );
            }
        }
    }
}

/// Drops the wakes older than [`RECENT_MS`].
fn forget_old(recent: &mut VecDeque<(u64, u64, u64)>, now_ms: u64) {
    while recent
        .front()
        .is_some_and(|&(_, _, at)| at.saturating_add(RECENT_MS) < now_ms)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Probe {
        woken: Arc<AtomicUsize>,
        gone: Arc<AtomicBool>,
    }

    impl Waker for Probe {
        fn wake(&self) -> bool {
            if self.gone.load(Ordering::SeqCst) {
                return false;
            }
            self.woken.fetch_add(1, Ordering::SeqCst);
            true
        }
        fn live(&self) -> bool {
            !self.gone.load(Ordering::SeqCst)
        }
    }

    impl Probe {
        fn woken(&self) -> usize {
            self.woken.load(Ordering::SeqCst)
        }
    }

    fn timer() -> bool {
        true
    }

    #[test]
    fn a_wake_wakes_every_waiter_of_its_flight_once_and_no_other() {
        let reg = Waiters::default();
        let (a, b, c) = (Probe::default(), Probe::default(), Probe::default());
        let mark = reg.mark();
        reg.register(7, 5_000, a.clone(), mark, 1_000, timer)
            .unwrap();
        reg.register(7, 5_000, b.clone(), mark, 1_000, timer)
            .unwrap();
        reg.register(8, 5_000, c.clone(), mark, 1_000, timer)
            .unwrap();
        assert_eq!(reg.held(), 3);
        assert_eq!(reg.wake(7, 1_100), 2);
        assert_eq!((a.woken(), b.woken(), c.woken()), (1, 1, 0));
        assert_eq!(reg.wake(7, 1_200), 0);
        assert_eq!((a.woken(), b.woken()), (1, 1));
        assert_eq!(reg.held(), 1);
    }

    #[test]
    fn a_wake_between_the_decision_and_the_registration_is_not_lost() {
        let reg = Waiters::default();
        let w = Probe::default();
        let mark = reg.mark(); // before the waiter's decision
        reg.wake(7, 1_000); // the owner's answer, on another worker
        reg.register(7, 5_000, w.clone(), mark, 1_001, timer)
            .unwrap();
        assert_eq!(w.woken(), 1, "woken at once");
        assert_eq!(reg.held(), 0);
    }

    #[test]
    fn a_wake_before_the_decision_does_not_wake_a_new_waiter() {
        let reg = Waiters::default();
        reg.wake(7, 1_000);
        let w = Probe::default();
        let mark = reg.mark(); // the decision saw the flight after that wake
        reg.register(7, 5_000, w.clone(), mark, 1_001, timer)
            .unwrap();
        assert_eq!(w.woken(), 0, "no spin on an old wake");
        assert_eq!(reg.held(), 1);
    }

    #[test]
    fn wakes_are_remembered_for_a_second_and_a_bounded_number() {
        let reg: Waiters<Probe> = Waiters::default();
        let mark = reg.mark();
        reg.wake(7, 1_000);
        let w = Probe::default();
        reg.register(7, 9_000, w.clone(), mark, 2_001, timer)
            .unwrap();
        assert_eq!(w.woken(), 0, "a wake older than RECENT_MS is forgotten");
        for i in 0..(RECENT_MAX as u64 + 10) {
            reg.wake(1_000 + i, 2_001);
        }
        assert!(reg.lock().recent.len() <= RECENT_MAX);
    }

    #[test]
    fn a_passed_deadline_wakes_and_a_dead_waker_is_dropped() {
        let reg = Waiters::default();
        let (a, b, late) = (Probe::default(), Probe::default(), Probe::default());
        let mark = reg.mark();
        reg.register(7, 1_500, a.clone(), mark, 1_000, timer)
            .unwrap();
        reg.register(7, 3_000, b.clone(), mark, 1_000, timer)
            .unwrap();
        reg.register(9, 900, late.clone(), mark, 1_000, timer)
            .unwrap();
        assert_eq!(late.woken(), 1, "a deadline already passed wakes at once");
        assert_eq!(reg.expire(1_200), Some(1_500));
        assert_eq!(reg.expire(1_500), Some(3_000));
        assert_eq!((a.woken(), b.woken()), (1, 0));
        b.gone.store(true, Ordering::SeqCst);
        assert_eq!(reg.expire(1_600), None);
        assert_eq!(reg.held(), 0);
        assert_eq!(b.woken(), 0);
    }

    #[test]
    fn the_registry_is_bounded_and_refuses_without_a_timer() {
        let reg = Waiters::default();
        let mark = reg.mark();
        assert_eq!(
            reg.register(1, 9_000, Probe::default(), mark, 1, || false),
            Err(Refused::NoTimer)
        );
        for i in 0..MAX_WAITERS as u64 {
            reg.register(i, 9_000, Probe::default(), mark, 1, timer)
                .unwrap();
        }
        assert_eq!(
            reg.register(1, 9_000, Probe::default(), mark, 1, timer),
            Err(Refused::Full)
        );
    }

    #[test]
    fn the_timer_thread_honours_a_deadline() {
        let reg: &'static Waiters<Probe> = Box::leak(Box::default());
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        };
        let w = Probe::default();
        let start = || {
            std::thread::spawn(move || reg.run_timer(now));
            true
        };
        reg.register(7, now() + 50, w.clone(), reg.mark(), now(), start)
            .unwrap();
        for _ in 0..100 {
            if w.woken() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(w.woken(), 1);
        assert_eq!(reg.held(), 0);
    }
}

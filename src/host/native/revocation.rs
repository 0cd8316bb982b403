//! The revocation list in the native host: the core's [`Worker`] driven by Envoy's main thread,
//! and each worker thread's copy of the list. No policy here: when to fetch, what a fetch's
//! answer means, when the list is stale and what a request sees of it are the core's
//! (`core::revocation`); this file only carries out its [`TickPlan`](crate::core::revocation::TickPlan)s
//! and [`Report`]s, as `src/host/wasm/filter.rs` does with proxy-wasm's root context.
//!
//! # Design
//!
//! * **One fetcher per accepted configuration, on the main thread.** A small ticker thread owned by
//!   the configuration commits the configuration's scheduler every
//!   [`tick_seconds`](crate::core::revocation::tick_seconds); Envoy runs
//!   `on_http_filter_config_scheduled` on its main thread, where the fetcher's `Worker` ticks (the
//!   lease in the process store makes one fetch per period for the process, as with Wasm's
//!   workers) and starts the configuration-level HTTP call; its answer comes back to the main
//!   thread, to [`Worker::on_fetched`], which stores a good list in the process store.
//! * **The list every worker thread reads.** The process store (`process.rs`, a locked map) is the
//!   native form of proxy-wasm shared data: the list is written there once per fetch. Each Envoy
//!   worker thread keeps its own `Worker` (a thread-local, so a request takes no lock) and a
//!   process-wide generation tells it when a fetch has finished: the next request on that thread
//!   starts from a fresh `Worker`, whose first view reads the stored list. Between fetches a
//!   request costs no lock and no copy. A thread keeps one `Worker` per revocation source it
//!   serves (configurations with different sources have different lists, under keys derived from
//!   the source: `core::revocation::source_keys`).
//! * **No lock across a call into Envoy.** The fetcher's `Worker` is locked only while the core
//!   works on it, never while Envoy is called (the HTTP call, a counter, the gauge, a log line), so
//!   a hook Envoy would run inside one of those calls cannot deadlock on it. A panic while it was
//!   locked (a bug) starts the `Worker` over instead of silencing the fetcher: the next tick sets
//!   the degraded gauge and fetches when due.
//! * **Stopping.** On the main thread (Envoy shutting down, or replacing the configuration when
//!   its last stream is already gone) `config_destroy` stops the ticker and joins it before it
//!   returns. On an Envoy worker (the configuration's last stream ended there) it only tells the
//!   ticker to stop and does not wait: the worker's other streams must not stall, and the library
//!   stays mapped (it pins itself when it loads). Either way the ticker owns the scheduler and drops
//!   (deletes) it as its last act, then logs `revocation fetcher stopped`, so there is never a
//!   commit into a deleted scheduler; a commit after Envoy's configuration is gone is dropped by
//!   Envoy (the scheduler holds the configuration weakly).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::bindings::{log, CalloutAnswer, ConfigHost, ConfigScheduler, LogLevel};
use super::effects::OnConfig;
use super::pool::lock_or_restart;
use super::process::Process;
use crate::core::counters::Table;
use crate::core::edge::EdgeWorker;
use crate::core::perform::perform_report;
use crate::core::plan::Report;
use crate::core::policy::Policy;
use crate::core::revocation::{tick_seconds, Worker, DEGRADED_GAUGE};
use crate::core::stream::WorkerState;

/// The configuration scheduler's event: the fetcher's tick.
pub const TICK: u64 = 1;

/// Bumped each time a fetch has finished (its list, if good, is in the process store).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// At most this many revocation sources' copies are kept per worker thread (the oldest goes).
const SOURCES_PER_THREAD: usize = 8;

thread_local! {
    /// This worker thread's copies of the list, one per source it has served (the `Worker`'s
    /// `source`), each with the generation it was made in.
    static WORKERS: Cell<Vec<(u64, Worker)>> = const { Cell::new(Vec::new()) };
    /// This worker thread's edge keys and verified-assertion cache (it follows the policy's
    /// sources itself: another configuration's sources start it over).
    static EDGE: Cell<Option<EdgeWorker>> = const { Cell::new(None) };
}

/// Runs `f` (a request's decision) with this thread's [`WorkerState`]: its revocation `Worker`
/// ([`with_revocation`]) and its edge keys and assertion cache (kept only for a policy with
/// assertion sources).
pub fn with_worker<R>(policy: &Policy, f: impl FnOnce(&mut WorkerState) -> R) -> R {
    let keep_edge = policy
        .edge
        .as_ref()
        .is_some_and(|e| !e.assertions.is_empty());
    let edge = match keep_edge {
        true => EDGE.try_with(Cell::take).ok().flatten().unwrap_or_default(),
        false => EdgeWorker::default(),
    };
    let mut state = WorkerState {
        revocation: Worker::default(),
        edge,
    };
    let out = with_revocation(policy, |worker| {
        state.revocation = std::mem::take(worker);
        let out = f(&mut state);
        *worker = std::mem::take(&mut state.revocation);
        out
    });
    if keep_edge {
        let _ = EDGE.try_with(|e| e.set(Some(state.edge)));
    }
    out
}

/// Runs `f` (a request's decision) with this thread's revocation `Worker` for the policy's
/// source: a fresh one after a fetch has finished, so that its first view reads the list from the
/// process store. A policy without `revocation` gets an empty one (the core never consults it).
fn with_revocation<R>(policy: &Policy, f: impl FnOnce(&mut Worker) -> R) -> R {
    let Some(rc) = &policy.revocation else {
        return f(&mut Worker::default());
    };
    let generation = GENERATION.load(Ordering::Acquire);
    let mut workers = WORKERS.try_with(Cell::take).unwrap_or_default();
    let mine = workers
        .iter()
        .position(|(_, w)| w.source() == rc.keys.list)
        .map(|i| workers.swap_remove(i));
    let mut worker = match mine {
        Some((g, w)) if g == generation => w,
        _ => Worker::default(),
    };
    let out = f(&mut worker);
    if workers.len() >= SOURCES_PER_THREAD {
        workers.remove(0);
    }
    workers.push((generation, worker));
    let _ = WORKERS.try_with(|w| w.set(workers));
    out
}

/// A configuration's revocation fetcher (only with `revocation` configured).
pub struct Fetcher {
    /// The fetcher's `Worker`: its lease, its pending call, its view of staleness. Only the main
    /// thread's hooks lock it.
    worker: Mutex<Worker>,
    /// `devgate.revocation.degraded`.
    degraded: Option<usize>,
    /// The thread that commits the scheduler every tick; `None` once stopped.
    ticker: Mutex<Option<Ticker>>,
}

impl Fetcher {
    /// For a policy with `revocation` (`config_new`, main thread): defines the degraded gauge and
    /// starts the ticker. `Ok(None)`: nothing to fetch. `Err(why)`: the configuration must be
    /// refused (no list would ever come).
    pub fn start(host: &ConfigHost, policy: &Policy) -> Result<Option<Fetcher>, &'static str> {
        let Some(seconds) = tick_seconds(policy) else {
            return Ok(None);
        };
        let scheduler = host
            .scheduler()
            .ok_or("Envoy gave no configuration scheduler")?;
        let ticker = Ticker::start(scheduler, Duration::from_secs(seconds))
            .map_err(|_| "the revocation thread did not start")?;
        Ok(Some(Fetcher {
            worker: Mutex::new(Worker::default()),
            degraded: host.define_gauge(DEGRADED_GAUGE),
            ticker: Mutex::new(Some(ticker)),
        }))
    }

    /// Stops the ticker (`config_destroy`): `join` waits for its thread (the main thread), else
    /// it exits on its own (an Envoy worker must not wait). Idempotent.
    pub fn stop(&self, join: bool) {
        let ticker = self
            .ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match ticker {
            Some(ticker) if !join => ticker.detach(),
            ticker => drop(ticker),
        }
    }

    /// The fetcher's `Worker`, locked; never held across a call into Envoy. After a panic while it
    /// was held, a fresh one: a half-updated state must neither be trusted nor silence the fetcher.
    fn worker(&self) -> MutexGuard<'_, Worker> {
        lock_or_restart(&self.worker, || {
            log(
                LogLevel::Error,
                "devgate: revocation fetcher recovered from a panic; its state starts over",
            );
        })
    }

    /// A tick (main thread): the core's tick plan carried out, the fetch started if it asks for
    /// one.
    pub fn tick(&self, host: &ConfigHost, policy: &Policy, counters: &Table<usize>) {
        let tick = self.worker().on_tick(policy, &Process);
        self.perform(
            host,
            counters,
            Report {
                degraded: tick.degraded,
                ..Report::default()
            },
        );
        let Some(fetch) = tick.fetch else {
            return;
        };
        let started = host
            .http_callout(
                fetch.cluster,
                fetch.headers.iter().map(|(n, v)| (*n, v.as_bytes())),
                b"",
                fetch.timeout_ms,
            )
            .is_ok();
        let report = self.worker().fetch_started(started, policy);
        self.perform(host, counters, report);
    }

    /// The fetch's answer (main thread; `None`: no response): handed to the core, then every
    /// worker thread told to read the store again.
    pub fn fetched(
        &self,
        host: &ConfigHost,
        counters: &Table<usize>,
        answer: Option<CalloutAnswer<'_>>,
    ) {
        let status = answer.and_then(|a| {
            a.headers
                .iter()
                .find(|(n, _)| *n == b":status")
                .map(|(_, v)| *v)
        });
        let size = answer.map_or(0, |a| a.body.iter().map(|c| c.len()).sum());
        let report = self.worker().on_fetched(
            status,
            size,
            |size| {
                let mut body = Vec::with_capacity(size);
                for chunk in answer.map_or(&[][..], |a| a.body) {
                    body.extend_from_slice(chunk);
                }
                Some(body)
            },
            &Process,
        );
        GENERATION.fetch_add(1, Ordering::Release);
        self.perform(host, counters, report);
    }

    /// Has the core's interpreter perform a worker-level report: its counter, the gauge, its
    /// log line.
    fn perform(&self, host: &ConfigHost, counters: &Table<usize>, report: Report) {
        let mut fx = OnConfig {
            host,
            counters,
            degraded: self.degraded,
        };
        perform_report(&report, &mut fx);
    }
}

/// The ticker: a thread that commits the configuration scheduler every period until stopped.
struct Ticker {
    /// `true`: stop. Guarded by the mutex, signalled through the condvar.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(scheduler: ConfigScheduler, period: Duration) -> std::io::Result<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("devgate-revocation".into())
            .spawn(move || {
                let (lock, wake) = &*signal;
                loop {
                    let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let stopped = match wake.wait_timeout_while(stopped, period, |s| !*s) {
                        Ok((guard, _)) => guard,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                    if *stopped {
                        break;
                    }
                    // Committed without the lock: a stop waits for no call into Envoy.
                    drop(stopped);
                    scheduler.commit(TICK);
                }
                // The scheduler is deleted here, on this thread, after its last commit.
                drop(scheduler);
                log(LogLevel::Info, "devgate: revocation fetcher stopped");
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Ticker {
    /// Tells the thread to stop.
    fn signal(&self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    /// Stops the thread without waiting for it (an Envoy worker): it deletes the scheduler and
    /// exits on its own, at once (it only ever waits on the stop signal or commits).
    fn detach(mut self) {
        self.signal();
        drop(self.thread.take());
    }
}

impl Drop for Ticker {
    /// Stops the thread and waits for it: when this returns, the scheduler is deleted and no
    /// commit can come.
    fn drop(&mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log(LogLevel::Error, "devgate: the revocation ticker panicked");
            }
        }
    }
}

//! A bounded pool of worker threads for work that must not run on Envoy's workers, and the
//! handoff ([`revocable`]) by which such work reaches back to a stream that may be gone.
//!
//! What it is for: a bcrypt verification takes tens of milliseconds of CPU. On an Envoy worker it
//! would stall every other stream of that worker for as long; the native module instead hands it
//! to this pool and parks the request (the hook returns "stop"), and the job, once done, asks
//! Envoy through the filter's scheduler to resume the request on its own worker.
//!
//! The rules, all of them fail closed:
//! * `threads` workers, started when the pool is made (a thread that cannot be started refuses
//!   the pool, so the configuration that needs it is refused);
//! * at most `queue` jobs waiting: [`Pool::submit`] never blocks and never grows the queue; when
//!   it is full it returns [`Refused::Full`] and the caller answers the request itself (the core's
//!   internal refusal, a 500), so a flood of logins costs bounded memory and bounded threads;
//! * a job that panics is dropped and its worker goes on (the pool never shrinks); a job must
//!   therefore report its outcome itself, whatever happens inside it;
//! * dropping the pool closes it: jobs still waiting are dropped without running, the jobs in
//!   hand finish, and the drop returns only once every worker thread has exited. That is what
//!   makes unloading the module safe: Envoy drops the configuration (and with it the pool) before
//!   it `dlclose`s the library, so no thread of the pool is still running the library's code when
//!   its pages go. The price: the thread that drops the pool (Envoy's main thread, at shutdown or
//!   when a configuration is replaced) waits for the jobs in hand, at most one each (one bcrypt
//!   check at the highest accepted cost: about half a second);
//! * a thread that must not wait (an Envoy worker that destroys the configuration) closes the
//!   pool with [`Pool::detach`] instead: the same closing, but the threads finish the jobs in
//!   hand and exit on their own. The native module may do that because it pins itself in memory
//!   when it loads (no `dlclose` unmaps it).
//!
//! Std only, no `unsafe`, no policy: it runs closures. Host-independent, so it is compiled and
//! unit-tested natively without the `native-module` feature too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

/// One unit of work.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why [`Pool::submit`] did not take a job. Either way the job was not run and never will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `queue` jobs are already waiting.
    Full,
    /// Every worker is gone (cannot happen while the pool exists: workers survive panics).
    Stopped,
}

/// A fixed set of threads behind a bounded queue.
pub struct Pool {
    /// `None` once the pool is closing (in `drop`).
    queue: Option<SyncSender<Job>>,
    /// Set before the queue closes: a worker drops, unrun, any job it receives after it.
    closing: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` workers (at least one) named `<name>-<i>`, with room for `queue` waiting
    /// jobs (0: a job is only taken when a worker is idle). An error if a thread cannot start
    /// (the threads already started are stopped and joined first).
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut pool = Pool {
            queue: Some(tx),
            closing: Arc::new(AtomicBool::new(false)),
            workers: Vec::with_capacity(threads.max(1)),
        };
        for i in 0..threads.max(1) {
            let (rx, closing) = (Arc::clone(&rx), Arc::clone(&pool.closing));
            let worker = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&rx, &closing))?; // `pool` dropped: started threads joined
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Queues `job` for a worker, or refuses it at once (never blocks).
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Refused> {
        let Some(queue) = &self.queue else {
            return Err(Refused::Stopped);
        };
        match queue.try_send(Box::new(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

impl Pool {
    /// Closes the pool without waiting for its threads: for a thread that must not block, an
    /// Envoy worker that destroys the configuration (every stream of that worker would stall for
    /// the checks in hand). Waiting jobs are dropped unrun as by the drop; the jobs in hand finish
    /// and their threads exit on their own. Sound in the native module only because the library
    /// is pinned in memory when it loads (`bindings/loader.rs`): no unload can pull the code from
    /// under a thread that is still finishing.
    pub fn detach(mut self) {
        self.close();
        // The handles dropped: the threads are detached. The drop then has nothing to join.
        self.workers.clear();
    }

    /// Marks the pool closing and closes its queue: idle workers wake up and exit.
    fn close(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        drop(self.queue.take()); // workers blocked on an empty queue wake up and exit
    }
}

impl Drop for Pool {
    /// Closes the pool and waits for its threads: see the module's rules.
    fn drop(&mut self) {
        self.close();
        let me = thread::current().id();
        for worker in self.workers.drain(..) {
            // A pool dropped by one of its own jobs cannot wait for that thread (it would wait
            // for itself); that thread is in the library's code anyway. No caller does this: the
            // jobs of the native module never own their pool.
            if worker.thread().id() != me {
                let _ = worker.join(); // a worker never panics (jobs are caught)
            }
        }
    }
}

/// A worker: takes jobs until the pool is dropped and the queue is empty.
fn work(rx: &Mutex<Receiver<Job>>, closing: &AtomicBool) {
    loop {
        // The lock is held only while waiting for the next job, never while running one. A
        // poisoned lock cannot happen (nothing panics while holding it), but is not fatal either.
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else {
            return; // the pool was dropped and the queue is drained
        };
        if closing.load(Ordering::SeqCst) {
            // Closing: waiting jobs are dropped unrun (their captures released, here).
            let _ = catch_unwind(AssertUnwindSafe(move || drop(job)));
            continue;
        }
        // A panicking job is dropped; the worker lives on. (The panic hook logs where.)
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// A value that its owner ([`Revocable`]) can withdraw from other threads ([`Access`]) at any
/// time, with a guarantee the two sides can build on: once [`Revocable`] has been dropped, no
/// [`Access::with`] runs, and none is still running (the drop waits for the one in progress).
///
/// The native module keeps Envoy's scheduler in it: the stream owns the [`Revocable`] and drops
/// it when Envoy destroys the stream, and a pool job commits through its [`Access`] only inside
/// `with`, so a commit can never reach a scheduler (and the worker dispatcher it points at) of a
/// stream that is gone. The value is dropped by the owner's drop, on the owner's thread, after the
/// lock is released. (A leaked owner leaks the value, still reachable: the guarantee rests on the
/// owner being dropped, which is why the native module keeps it in the stream's state.)
pub fn revocable<T: Send>(value: T) -> (Revocable<T>, Access<T>) {
    let shared = Arc::new(Mutex::new(Some(value)));
    (
        Revocable {
            shared: Arc::clone(&shared),
        },
        Access { shared },
    )
}

/// The owning side of [`revocable`]: dropping it withdraws the value.
pub struct Revocable<T> {
    shared: Arc<Mutex<Option<T>>>,
}

/// The other side of [`revocable`]: uses the value while its owner still holds it. `Send` (for a
/// `Send` value): it is what a pool job carries.
pub struct Access<T> {
    shared: Arc<Mutex<Option<T>>>,
}

/// `mutex` locked; if a panic poisoned it (a holder panicked half-way through an update), its
/// value is replaced by a fresh one and the poison cleared, and `restarted` is called once, so that
/// a half-updated state is neither trusted nor left to refuse every later lock (the native
/// revocation fetcher: a poisoned lock that made every tick return would silence the fetcher
/// forever, and its degraded gauge with it).
pub fn lock_or_restart<T: Default>(
    mutex: &Mutex<T>,
    restarted: impl FnOnce(),
) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| {
        let mut value = poisoned.into_inner();
        *value = T::default();
        mutex.clear_poison();
        restarted();
        value
    })
}

/// The lock, whether or not a `with` closure panicked while holding it (the value is still
/// whole: `with` only lends it by shared reference).
fn held<T>(shared: &Mutex<Option<T>>) -> MutexGuard<'_, Option<T>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Revocable<T> {
    /// Another access to the value.
    pub fn access(&self) -> Access<T> {
        Access {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Revocable<T> {
    fn drop(&mut self) {
        // Waits for a `with` in progress; from here on every `with` finds nothing.
        let value = held(&self.shared).take();
        drop(value); // after the lock: the value's own drop may take time
    }
}

impl<T> Access<T> {
    /// Runs `f` with the value, holding the lock (so the owner's drop waits for `f`), if the owner
    /// has not withdrawn it; `None` if it has. Keep `f` short: the owner's thread may be waiting.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        held(&self.shared).as_ref().map(f)
    }

    /// Whether the owner still holds the value (it may withdraw it right after).
    pub fn live(&self) -> bool {
        held(&self.shared).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;
    use std::time::{Duration, Instant};

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn runs_every_job_on_the_pools_threads() {
        let pool = Pool::new("t-run", 3, 16).unwrap();
        let (tx, rx) = channel();
        for i in 0..10 {
            let tx = tx.clone();
            pool.submit(move || {
                let name = thread::current().name().unwrap_or("").to_string();
                tx.send((i, name)).unwrap();
            })
            .unwrap();
        }
        let mut seen: Vec<(i32, String)> =
            (0..10).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        seen.sort();
        assert_eq!(
            seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert!(
            seen.iter().all(|(_, n)| n.starts_with("t-run-")),
            "{seen:?}"
        );
    }

    /// Fail closed under a flood: with every worker busy and the queue full, a job is refused at
    /// once (the request gets a 503), never queued beyond the bound, never run later.
    #[test]
    fn refuses_when_the_queue_is_full_and_never_runs_the_refused_job() {
        let pool = Pool::new("t-full", 2, 3).unwrap();
        let (release_tx, release_rx) = channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (started_tx, started_rx) = channel::<()>();
        let ran = Arc::new(AtomicUsize::new(0));
        // Two jobs hold both workers until released.
        for _ in 0..2 {
            let (release_rx, started_tx, ran) = (
                Arc::clone(&release_rx),
                started_tx.clone(),
                Arc::clone(&ran),
            );
            pool.submit(move || {
                started_tx.send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        for _ in 0..2 {
            started_rx.recv_timeout(WAIT).unwrap();
        }
        // Three wait in the queue; the fourth is refused.
        for _ in 0..3 {
            let ran = Arc::clone(&ran);
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let refused_ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&refused_ran);
        assert_eq!(
            pool.submit(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }),
            Err(Refused::Full)
        );
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        let deadline = Instant::now() + WAIT;
        while ran.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 5);
        assert_eq!(refused_ran.load(Ordering::SeqCst), 0);
        // Room again once the queue drained.
        let (tx, rx) = channel();
        pool.submit(move || tx.send(()).unwrap()).unwrap();
        rx.recv_timeout(WAIT).unwrap();
    }

    /// Submits until a worker takes the job (a zero queue only hands a job to an idle worker,
    /// and a new worker may not be waiting yet).
    fn submit_when_idle(pool: &Pool, make: impl Fn() -> Box<dyn FnOnce() + Send>) {
        let deadline = Instant::now() + WAIT;
        while pool.submit(make()) == Err(Refused::Full) {
            assert!(Instant::now() < deadline, "no worker became idle");
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_zero_queue_takes_a_job_only_when_a_worker_is_idle() {
        let pool = Pool::new("t-zero", 1, 0).unwrap();
        let (hold_tx, hold_rx) = channel::<()>();
        let hold_rx = Arc::new(Mutex::new(hold_rx));
        let (started_tx, started_rx) = channel::<()>();
        submit_when_idle(&pool, || {
            let (hold_rx, started_tx) = (Arc::clone(&hold_rx), started_tx.clone());
            Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = hold_rx.lock().unwrap().recv();
            })
        });
        started_rx.recv_timeout(WAIT).unwrap();
        // The only worker is busy and there is no queue: refused, not parked.
        assert_eq!(pool.submit(|| {}), Err(Refused::Full));
        hold_tx.send(()).unwrap();
        let (tx, rx) = channel::<()>();
        submit_when_idle(&pool, || {
            let tx = tx.clone();
            Box::new(move || tx.send(()).unwrap())
        });
        rx.recv_timeout(WAIT).unwrap();
    }

    #[test]
    fn a_panicking_job_does_not_take_its_worker_down() {
        let pool = Pool::new("t-panic", 1, 4).unwrap();
        pool.submit(|| panic!("job fails")).unwrap();
        let (tx, rx) = channel();
        pool.submit(move || tx.send(7).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), 7);
    }

    /// What makes unloading the library safe: the drop returns only after the job in hand has
    /// finished and its thread has exited (its thread-locals destroyed), and a job still waiting
    /// is dropped without running.
    #[test]
    fn dropping_the_pool_waits_for_the_job_in_hand_and_its_thread_and_drops_waiting_jobs() {
        struct OnThreadExit(Arc<AtomicUsize>);
        impl Drop for OnThreadExit {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        thread_local! {
            static EXIT: std::cell::RefCell<Option<OnThreadExit>> = const { std::cell::RefCell::new(None) };
        }
        let finished = Arc::new(AtomicUsize::new(0));
        let exited = Arc::new(AtomicUsize::new(0));
        let waiting_ran = Arc::new(AtomicUsize::new(0));
        let captured = Arc::new(());
        let (started_tx, started_rx) = channel::<()>();
        let pool = Pool::new("t-drop", 1, 4).unwrap();
        let (f, e) = (Arc::clone(&finished), Arc::clone(&exited));
        pool.submit(move || {
            EXIT.with(|x| *x.borrow_mut() = Some(OnThreadExit(e)));
            started_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(150));
            f.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        for _ in 0..3 {
            let (ran, keep) = (Arc::clone(&waiting_ran), Arc::clone(&captured));
            pool.submit(move || {
                let _keep = keep;
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let t0 = Instant::now();
        drop(pool);
        assert!(
            t0.elapsed() >= Duration::from_millis(50),
            "drop did not wait"
        );
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the job in hand finished first"
        );
        assert_eq!(exited.load(Ordering::SeqCst), 1, "its thread had exited");
        assert_eq!(
            waiting_ran.load(Ordering::SeqCst),
            0,
            "waiting jobs never run"
        );
        assert_eq!(Arc::strong_count(&captured), 1, "and were dropped");
    }

    #[test]
    fn a_detached_pool_returns_while_its_job_runs_and_the_thread_exits_on_its_own() {
        let (started_tx, started_rx) = channel::<()>();
        let (release_tx, release_rx) = channel::<()>();
        let (done_tx, done_rx) = channel::<()>();
        let waiting_ran = Arc::new(AtomicUsize::new(0));
        let pool = Pool::new("t-detach", 1, 4).unwrap();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(WAIT).unwrap();
            done_tx.send(()).unwrap();
        })
        .unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        let ran = Arc::clone(&waiting_ran);
        pool.submit(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        // The job in hand is blocked until released: a detach that waited would never return
        // before the release below.
        pool.detach();
        assert!(
            done_rx.try_recv().is_err(),
            "the job in hand is still running"
        );
        release_tx.send(()).unwrap();
        done_rx.recv_timeout(WAIT).unwrap();
        // The thread goes on to the queue, which is closed: the waiting job is dropped unrun and
        // the thread exits (its name is gone from the process's threads).
        let deadline = Instant::now() + WAIT;
        while thread_alive("t-detach-0") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !thread_alive("t-detach-0"),
            "the detached thread did not exit"
        );
        assert_eq!(
            waiting_ran.load(Ordering::SeqCst),
            0,
            "waiting jobs never run"
        );
    }

    /// Whether a thread of this process has this name (Linux: /proc/self/task/*/comm).
    fn thread_alive(name: &str) -> bool {
        std::fs::read_dir("/proc/self/task").unwrap().any(|task| {
            std::fs::read_to_string(task.unwrap().path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
    }

    #[test]
    fn a_poisoned_lock_restarts_its_value_once_and_locks_again() {
        let m = Arc::new(Mutex::new(vec![1, 2, 3]));
        let holder = Arc::clone(&m);
        let _ = thread::spawn(move || {
            let mut v = holder.lock().unwrap();
            v.push(4);
            panic!("half-way through an update");
        })
        .join();
        assert!(m.is_poisoned());
        let mut restarts = 0;
        assert!(
            lock_or_restart(&m, || restarts += 1).is_empty(),
            "a fresh value"
        );
        assert_eq!(restarts, 1);
        assert!(!m.is_poisoned());
        lock_or_restart(&m, || restarts += 1).push(9);
        assert_eq!(*lock_or_restart(&m, || restarts += 1), [9]);
        assert_eq!(restarts, 1, "restarted once, not at every lock");
    }

    /// Dropping a pool whose workers are idle waits for nothing but them: closing the queue is
    /// what wakes them, so the drop returns with no job to run, nothing released by the test and
    /// no timer, and both threads have exited by then (their thread-locals destroyed). Observed,
    /// not timed: each worker first runs a job that ends as soon as the test's barrier opens (so
    /// both are alive and idle, or about to be), the drop runs on a thread of its own and reports
    /// its return, and the test lets nothing else happen meanwhile (a drop that waited for a job
    /// or a wake-up would never report: the deadline only fails such a drop instead of hanging).
    #[test]
    fn a_dropped_pool_with_idle_workers_wakes_them_and_returns() {
        struct OnThreadExit(Arc<AtomicUsize>);
        impl Drop for OnThreadExit {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        thread_local! {
            static EXIT: std::cell::RefCell<Option<OnThreadExit>> = const { std::cell::RefCell::new(None) };
        }
        const THREADS: usize = 2;
        let pool = Pool::new("t-idle", THREADS, 2).unwrap();
        let exited = Arc::new(AtomicUsize::new(0));
        // Each worker takes one job (held until both have one, so neither takes both) and goes
        // back to the queue: both idle, each with a marker that counts its thread's exit.
        let barrier = Arc::new(std::sync::Barrier::new(THREADS + 1));
        for _ in 0..THREADS {
            let (barrier, exited) = (Arc::clone(&barrier), Arc::clone(&exited));
            pool.submit(move || {
                EXIT.with(|x| *x.borrow_mut() = Some(OnThreadExit(exited)));
                barrier.wait();
            })
            .unwrap();
        }
        barrier.wait();
        assert_eq!(exited.load(Ordering::SeqCst), 0, "no worker has exited yet");
        let (done_tx, done_rx) = channel();
        let dropper = thread::spawn(move || {
            drop(pool);
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(WAIT)
            .expect("the drop never returned: it waited for something other than its idle workers");
        assert_eq!(
            exited.load(Ordering::SeqCst),
            THREADS,
            "the drop returned before its workers had exited"
        );
        dropper.join().unwrap();
    }

    #[test]
    fn access_reaches_the_value_while_owned_and_never_after() {
        let (owner, access) = revocable(41);
        assert_eq!(access.with(|v| v + 1), Some(42));
        assert!(access.live());
        let other = owner.access();
        drop(owner);
        assert_eq!(access.with(|v| v + 1), None);
        assert_eq!(other.with(|v| v + 1), None);
        assert!(!access.live());
    }

    /// The ordering a commit into Envoy's scheduler relies on: the stream's drop (the owner's)
    /// waits for a commit in progress, and no commit starts after it.
    #[test]
    fn dropping_the_owner_waits_for_a_use_in_progress() {
        let (owner, access) = revocable(());
        let (entered_tx, entered_rx) = channel::<()>();
        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        let user = thread::spawn(move || {
            let used = access.with(|()| {
                entered_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(150));
                d.fetch_add(1, Ordering::SeqCst);
            });
            (used.is_some(), access)
        });
        entered_rx.recv_timeout(WAIT).unwrap();
        drop(owner);
        assert_eq!(done.load(Ordering::SeqCst), 1, "the drop returned mid-use");
        let (used, access) = user.join().unwrap();
        assert!(used);
        assert_eq!(access.with(|()| ()), None);
    }

    #[test]
    fn the_value_is_dropped_once_by_the_owner_on_its_thread() {
        struct Value(Arc<Mutex<Vec<thread::ThreadId>>>);
        impl Drop for Value {
            fn drop(&mut self) {
                self.0.lock().unwrap().push(thread::current().id());
            }
        }
        let drops = Arc::new(Mutex::new(Vec::new()));
        let (owner, access) = revocable(Value(Arc::clone(&drops)));
        let elsewhere = thread::spawn(move || access.with(|_| ()).is_some());
        assert!(elsewhere.join().unwrap());
        drop(owner);
        assert_eq!(*drops.lock().unwrap(), vec![thread::current().id()]);
    }

    #[test]
    fn a_leaked_owner_leaks_its_value_never_frees_it_twice() {
        let drops = Arc::new(());
        let (owner, access) = revocable(Arc::clone(&drops));
        std::mem::forget(owner);
        assert_eq!(access.with(|_| ()), Some(()));
        drop(access);
        // The leaked owner still holds the shared cell: the value is never used after it, and
        // never freed twice (leaked with it).
        assert_eq!(Arc::strong_count(&drops), 2);
    }
}

//! A bounded pool of worker threads for work that must not run on Envoy's workers.
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
//!   it is full it returns [`Refused::Full`] and the caller answers the request itself (a 503),
//!   so a flood of logins costs bounded memory and bounded threads;
//! * a job that panics is dropped and its worker goes on (the pool never shrinks); a job must
//!   therefore report its outcome itself, whatever happens inside it (see the native test hooks);
//! * dropping the pool closes the queue: workers finish the job in hand and the jobs already
//!   queued, then exit. Nothing waits for them (the thread that drops the pool is Envoy's main
//!   thread, which must not block).
//!
//! Std only, no `unsafe`, no policy: it runs closures. Host-independent, so it is compiled and
//! unit-tested natively without the `native-module` feature too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

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
    queue: SyncSender<Job>,
}

impl Pool {
    /// Starts `threads` workers (at least one) named `<name>-<i>`, with room for `queue` waiting
    /// jobs (0: a job is only taken when a worker is idle). An error if a thread cannot start.
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Pool { queue: tx })
    }

    /// Queues `job` for a worker, or refuses it at once (never blocks).
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Refused> {
        match self.queue.try_send(Box::new(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

/// A worker: takes jobs until the pool is dropped and the queue is empty.
fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one. A
        // poisoned lock cannot happen (nothing panics while holding it), but is not fatal either.
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = next else {
            return; // the pool was dropped and the queue is drained
        };
        // A panicking job is dropped; the worker lives on. (The panic hook logs where.)
        let _ = catch_unwind(AssertUnwindSafe(job));
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

    #[test]
    fn dropping_the_pool_lets_queued_jobs_finish_and_stops_the_workers() {
        let alive = Arc::new(());
        let (tx, rx) = channel();
        {
            let pool = Pool::new("t-drop", 2, 8).unwrap();
            for i in 0..4 {
                let (tx, alive) = (tx.clone(), Arc::clone(&alive));
                pool.submit(move || {
                    let _keep = alive;
                    thread::sleep(Duration::from_millis(10));
                    tx.send(i).unwrap();
                })
                .unwrap();
            }
        }
        let mut got: Vec<i32> = (0..4).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 3]);
        let deadline = Instant::now() + WAIT;
        while Arc::strong_count(&alive) > 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(Arc::strong_count(&alive), 1);
    }
}

//! Envoy's schedulers, owned by devgate: a stream's ([`Scheduler`], with [`Resumer`]s for the
//! pool's threads) and a filter configuration's ([`ConfigScheduler`], for the revocation ticker).
//! Both wrap one [`RawScheduler`], whose commit and delete are the twin callbacks of `twins.rs`;
//! what differs is when a commit is allowed, which each type's doc argues.

use std::ffi::c_void;
use std::marker::PhantomData;

use super::twins::{Kind, OfConfig, OfStream};
use crate::host::native::pool::{Access, Revocable};

/// Envoy's scheduler for one object of kind `K` (`scheduler_new` or `config_scheduler_new`),
/// deleted when dropped. A stream's is reached only through [`Scheduler`] (the stream's) and
/// [`Resumer`] (a pool job's); a configuration's only through [`ConfigScheduler`].
///
/// The contract, from Envoy 1.40's `DynamicModuleHttpFilterScheduler`
/// (`source/extensions/filters/http/dynamic_modules/filter.h` and `abi_impl.cc`): the object holds
/// the filter by `weak_ptr` and the stream's worker `Event::Dispatcher` *by reference*; `commit`
/// posts a closure to that dispatcher (which locks the weak pointer on the worker, and calls
/// `on_http_filter_scheduled` only if the filter still exists); `delete` is a plain C++ `delete`
/// (a weak pointer released: any thread). So a commit after the stream ended is harmless, but a
/// commit after the worker's dispatcher is gone (Envoy shutting down) would use freed memory.
/// What devgate adds: a commit happens only while the stream's [`Scheduler`] exists (see there).
/// The configuration's scheduler is the same with the configuration in place of the filter and
/// the main dispatcher in place of the worker's.
pub(super) struct RawScheduler<K: Kind> {
    ptr: *mut c_void,
    kind: PhantomData<K>,
}

// SAFETY: per the contract above, Envoy's schedulers (either kind) may be committed to and
// deleted from any thread; nothing in them is tied to the thread that made them. A stream's
// `RawScheduler` is only ever reached under the lock of a `Revocable`, one thread at a time; a
// configuration's has one owner (`ConfigScheduler` is not `Sync`).
unsafe impl<K: Kind> Send for RawScheduler<K> {}

impl<K: Kind> RawScheduler<K> {
    /// Takes ownership of `ptr` from `scheduler_new`; `None` for NULL (Envoy made none).
    pub(super) fn adopt(ptr: *mut c_void) -> Option<RawScheduler<K>> {
        (!ptr.is_null()).then_some(RawScheduler {
            ptr,
            kind: PhantomData,
        })
    }

    /// Commits `event_id`.
    ///
    /// # Safety
    /// The object's dispatcher is alive: for a stream, its [`Scheduler`] exists; for a
    /// configuration, Envoy has not shut down (the ticker that commits is joined in
    /// `config_destroy`).
    unsafe fn commit(&self, event_id: u64) {
        // SAFETY: a live scheduler (deleted only in `drop`), and the caller's contract.
        unsafe { (K::SCHEDULER_COMMIT)(self.ptr, event_id) }
    }
}

impl<K: Kind> Drop for RawScheduler<K> {
    fn drop(&mut self) {
        // SAFETY: made by this kind's `scheduler_new` (`adopt`), freed exactly once, here (any
        // thread: see above).
        unsafe { (K::SCHEDULER_DELETE)(self.ptr) }
    }
}

/// A stream's scheduler ([`Host::scheduler`](super::Host::scheduler)). It must live in the
/// stream's state, so that it is dropped, on the stream's worker, when Envoy destroys the stream
/// (`on_http_filter_destroy`) at the latest; it is not `Send`, so it cannot leave the worker. It
/// hands out [`Resumer`]s, which other threads use to commit, and its drop withdraws Envoy's
/// scheduler from them (waiting for a commit in progress) and deletes it. Hence a commit only
/// ever happens while the stream exists, that is while its worker and the worker's dispatcher do:
/// never into a deleted scheduler, never into a dispatcher Envoy has torn down, whatever the
/// order in which a job finishes, the client goes away and Envoy shuts down.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub struct Scheduler {
    owner: Revocable<RawScheduler<OfStream>>,
    /// Not `Send`: dropped on the stream's worker.
    _worker: PhantomData<*const ()>,
}

/// A [`Scheduler`]'s other end, for a pool job: commits events while the stream exists, and
/// nothing once it has gone.
pub struct Resumer {
    access: Access<RawScheduler<OfStream>>,
}

#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
impl Scheduler {
    /// Wraps a stream's new scheduler (made on its worker, inside a hook).
    pub(super) fn new(raw: RawScheduler<OfStream>) -> Scheduler {
        Scheduler {
            owner: crate::host::native::pool::revocable(raw).0,
            _worker: PhantomData,
        }
    }

    /// A handle for another thread to resume the stream with.
    pub fn resumer(&self) -> Resumer {
        Resumer {
            access: self.owner.access(),
        }
    }
}

#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
impl Resumer {
    /// Asks Envoy to call the stream's `scheduled` hook with `event_id` on its worker. `false`:
    /// the stream has gone, nothing was committed (nothing would have run anyway).
    pub fn commit(&self, event_id: u64) -> bool {
        self.access
            .with(|raw| {
                // SAFETY: a live scheduler (deleted only once withdrawn, and withdrawn only after
                // this closure returns); the stream's `Scheduler` exists (that is what `with`
                // guarantees), so the filter has not been destroyed and its worker's dispatcher,
                // which the commit posts to, is alive.
                unsafe { raw.commit(event_id) }
            })
            .is_some()
    }

    /// Whether the stream still exists (it may end right after): work for a stream that has
    /// gone can be skipped.
    pub fn live(&self) -> bool {
        self.access.live()
    }
}

/// A filter configuration's scheduler ([`ConfigHost::scheduler`](super::ConfigHost::scheduler)):
/// moves to any thread, commits events that Envoy delivers to `on_http_filter_config_scheduled`
/// on the main thread, and is freed when dropped. Its owner (the revocation ticker thread) drops
/// it only after its last commit, and `config_destroy` joins that thread, so no commit follows
/// the delete or the configuration's end.
pub struct ConfigScheduler {
    raw: RawScheduler<OfConfig>,
}

impl ConfigScheduler {
    /// Wraps a configuration's new scheduler (made on the main thread in `config_new`).
    pub(super) fn new(raw: RawScheduler<OfConfig>) -> ConfigScheduler {
        ConfigScheduler { raw }
    }

    /// Asks Envoy to call the configuration's `scheduled` hook with `event_id` on the main thread
    /// (nothing happens if the configuration has been destroyed by then).
    pub fn commit(&self, event_id: u64) {
        // SAFETY: Envoy's contract for the configuration scheduler: `commit` posts to the main
        // dispatcher (thread-safe), which outlives every configuration; the scheduler is live
        // (freed only when `self` drops, after its owner's last commit).
        unsafe { self.raw.commit(event_id) }
    }
}

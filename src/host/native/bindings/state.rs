//! What the binding layer keeps for Envoy's objects between hooks, and how a stream hook reaches
//! its stream:
//!
//! * [`Bound`]: a filter configuration as Envoy holds it (the module pointer `config_new`
//!   returns): the glue's `Config`, Envoy's configuration pointer, and the binding layer's own
//!   counters ([`Native`]).
//! * [`Slot`]: a stream as Envoy holds it (the module pointer `on_http_filter_new` returns): its
//!   state in a [`Held`] (see `reentry.rs`: a re-entered hook finds it borrowed and is answered
//!   neutrally; a destroy during a hook is deferred to the outermost hook's exit), from a
//!   per-worker free list so that a warm worker allocates nothing per stream.
//! * [`stream_hook`]: the one way every stream hook runs its body: a shared `&Slot` (so re-entry
//!   makes no second `&mut`), the body under `catch_unwind`, re-entries and deferred destroys
//!   counted, and the slot freed by whichever of the destroy and the outermost hook comes last.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::handles::{log, ConfigHost, Host};
use super::types::{ConfigEnvoyPtr, ConfigModulePtr, FilterEnvoyPtr, FilterModulePtr, LogLevel};
use crate::host::native::filter::{Config, Stream};
use crate::host::native::reentry::{Destroy, Entry, Held};

/// A filter configuration, from `config_new` to `config_destroy`.
pub(super) struct Bound {
    /// The glue's configuration; each stream holds another reference.
    pub(super) config: Arc<Config>,
    /// The binding layer's counters, and the configuration pointer to count them through.
    pub(super) native: Native,
    /// Test build only (`filter_name: devgate-detach`): `config_destroy` takes the path of a
    /// destroy on an Envoy worker (joins nothing) even on the main thread.
    #[cfg(feature = "test-hooks")]
    pub(super) as_if_off_main: bool,
}

/// The binding layer's own counters (the glue counts the core's), defined on the configuration in
/// `config_new` and counted through Envoy's configuration pointer: that works from any hook of a
/// stream the configuration made (each keeps Envoy's configuration alive) and from
/// `config_destroy`, where there is no stream.
#[derive(Clone, Copy)]
pub(super) struct Native {
    envoy: ConfigEnvoyPtr,
    /// `devgate.native.hook_reentered`: hooks Envoy called for a stream while another hook of the
    /// same stream ran, answered neutrally.
    reentered: Option<usize>,
    /// `devgate.native.destroy_deferred`: streams Envoy destroyed during one of their hooks,
    /// freed when the outermost hook returned.
    deferred: Option<usize>,
    /// `devgate.native.config_destroyed_off_main`: configurations destroyed on an Envoy worker.
    off_main: Option<usize>,
}

impl Native {
    /// Defines the counters (`config_new` only: Envoy freezes a configuration's stats after it).
    pub(super) fn define(host: &ConfigHost, envoy: ConfigEnvoyPtr) -> Native {
        Native {
            envoy,
            reentered: host.define_counter("devgate.native.hook_reentered"),
            deferred: host.define_counter("devgate.native.destroy_deferred"),
            off_main: host.define_counter("devgate.native.config_destroyed_off_main"),
        }
    }

    /// Counts a configuration destroyed on an Envoy worker (from `config_destroy`).
    pub(super) fn count_off_main(&self) {
        self.count(self.off_main, 1);
    }

    /// Adds `n` to counter `id`. Failing to count never changes a decision.
    fn count(&self, id: Option<usize>, n: u32) {
        let Some(id) = id else {
            return;
        };
        // SAFETY: `envoy` is the pointer of the configuration that made the stream whose hook
        // runs now, or of the one `config_destroy` is destroying. Envoy's configuration outlives
        // every filter it made (each holds it by `shared_ptr`), and its destructor calls
        // `config_destroy` before its members (the stats among them) go; the handle is dropped
        // before this returns.
        let host = unsafe { ConfigHost::new(self.envoy) };
        for _ in 0..n {
            host.increment(id);
        }
    }
}

/// # Safety
/// `c` is NULL or a pointer `config_new` returned that `config_destroy` has not released.
pub(super) unsafe fn bound<'a>(c: ConfigModulePtr) -> Option<&'a Bound> {
    // SAFETY: per the contract above, the `Box<Bound>` that `config_new` leaked, alive until
    // `config_destroy`; shared, so only `&` is handed out.
    unsafe { c.cast::<Bound>().as_ref() }
}

/// One stream's state, and the counters to count what happens to it.
pub(super) struct Slot {
    held: Held<Stream>,
    native: Native,
}

/// At most this many free slots are kept per worker thread (a burst of concurrent streams beyond
/// it frees its slots; a slot is a few dozen bytes).
const FREE_SLOTS_MAX: usize = 1024;

thread_local! {
    /// This thread's free slots. Envoy creates and destroys a stream's filter on the stream's
    /// worker; a slot freed on another thread simply joins that thread's list.
    // Boxed on purpose: a slot's address is what Envoy holds as the stream's module pointer, so it
    // must not move when the list grows.
    #[allow(clippy::vec_box)]
    static FREE_SLOTS: RefCell<Vec<Box<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// A slot holding `stream`: a free one of this thread if there is one, else a new one.
pub(super) fn new_slot(stream: Stream, native: Native) -> Box<Slot> {
    let free = FREE_SLOTS
        .try_with(|f| f.try_borrow_mut().ok().and_then(|mut f| f.pop()))
        .ok()
        .flatten();
    let stream = match free {
        Some(mut slot) => match slot.held.refill(stream) {
            Ok(()) => {
                slot.native = native;
                return slot;
            }
            Err(stream) => stream,
        },
        None => stream,
    };
    Box::new(Slot {
        held: Held::new(stream),
        native,
    })
}

/// Keeps a slot whose stream has ended for the next stream of this thread, or frees it when the
/// list is full or gone (thread exit).
fn give_back(slot: Box<Slot>) {
    let _ = FREE_SLOTS.try_with(move |f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            if f.len() < FREE_SLOTS_MAX {
                f.push(slot);
            }
        }
    });
}

/// # Safety
/// `m` is NULL or a pointer `on_http_filter_new` returned whose slot has not been freed (a destroy
/// deferred by a running hook leaves it allocated until that hook leaves).
unsafe fn slot<'a>(m: FilterModulePtr) -> Option<&'a Slot> {
    // SAFETY: per the contract above, a live `Box<Slot>`, used only on the stream's worker.
    // Shared: a hook Envoy re-enters for the same stream gets another `&Slot`, never a second
    // `&mut` (the state's `&mut` comes only from `Held::enter`, which refuses the second one).
    unsafe { m.cast::<Slot>().as_ref() }
}

/// Frees the slot of a stream that has ended: back to this thread's free list.
///
/// # Safety
/// `m` came from `Box::into_raw` in `on_http_filter_new`, its stream has been taken out, Envoy
/// will not pass it again, and no reference to the slot is used after this call.
unsafe fn free(m: FilterModulePtr) {
    // SAFETY: per the contract above.
    give_back(unsafe { Box::from_raw(m.cast::<Slot>().cast_mut()) });
}

/// Ends a stream's state ([`Stream::end`]: a wait for the key service ends; then its schedulers
/// are withdrawn, its configuration reference released), never unwinding.
fn end(stream: Stream) {
    if catch_unwind(AssertUnwindSafe(move || stream.end())).is_err() {
        log(LogLevel::Error, "devgate: panic while ending a stream");
    }
}

/// Envoy destroys a stream (`on_http_filter_destroy`): its state goes now, or, if one of its
/// hooks is running (Envoy ended the stream inside it), when the outermost one leaves.
///
/// # Safety
/// `m` is NULL or a pointer `on_http_filter_new` returned, destroyed once.
pub(super) unsafe fn destroy(m: FilterModulePtr) {
    // SAFETY: see `slot`.
    let Some(slot) = (unsafe { slot(m) }) else {
        return;
    };
    match slot.held.destroy() {
        Destroy::Deferred => {}
        Destroy::Now(stream) => {
            if let Some(stream) = stream {
                end(stream);
            }
            // SAFETY: the stream is out, no hook runs (`Now`), Envoy passes `m` no more, and
            // `slot` is not used again.
            unsafe { free(m) };
        }
    }
}

/// How a stream hook answers when its body does not run.
pub(super) struct Fallback<R> {
    /// Another hook of this stream runs (Envoy re-entered the module): the neutral answer.
    pub(super) busy: R,
    /// The stream has no state (a NULL pointer, or a hook after the destroy).
    pub(super) gone: R,
    /// The body panicked (the request was answered 500 unless it had been answered).
    pub(super) panicked: R,
    /// Whether a stream with no state is refused with a 500 and a log line (the first request
    /// hook: a request must never pass a filter that could not look at it).
    pub(super) refuse_gone: bool,
}

/// Runs a stream hook's body with the stream's state (see the module doc).
///
/// # Safety
/// `f` is the filter pointer Envoy passed to the running hook; `m` as for `slot`.
pub(super) unsafe fn stream_hook<R>(
    hook: &str,
    f: FilterEnvoyPtr,
    m: FilterModulePtr,
    fallback: Fallback<R>,
    body: impl FnOnce(&mut Stream, &mut Host) -> R,
) -> R {
    // SAFETY: the filter pointer of this hook; `host` does not outlive it.
    let mut host = unsafe { Host::new(f) };
    // SAFETY: see `slot`.
    let Some(slot) = (unsafe { slot(m) }) else {
        return gone(hook, &mut host, fallback);
    };
    let native = slot.native;
    let exit = slot
        .held
        .enter(|s| catch_unwind(AssertUnwindSafe(|| body(s, &mut host))));
    let answer = match exit.entry {
        Entry::Ran(Ok(answer)) => answer,
        Entry::Ran(Err(_)) => {
            log(
                LogLevel::Error,
                &format!("devgate: panic in hook {hook}; request refused with 500"),
            );
            // A stream Envoy has ended is not answered again.
            if exit.ended.is_none() {
                answer_500(&mut host, "devgate_internal_panic");
            }
            fallback.panicked
        }
        Entry::Busy => fallback.busy,
        Entry::Gone => gone(hook, &mut host, fallback),
    };
    if exit.reentered > 0 {
        native.count(native.reentered, exit.reentered);
    }
    if let Some(stream) = exit.ended {
        native.count(native.deferred, 1);
        end(stream);
        // SAFETY: Envoy destroyed this stream during this hook (the destroy was deferred to here,
        // the outermost hook's exit), so it passes `m` no more; the stream is out; `slot` is not
        // used again.
        unsafe { free(m) };
    }
    answer
}

/// The answer of a hook that found no stream state.
fn gone<R>(hook: &str, host: &mut Host, fallback: Fallback<R>) -> R {
    if fallback.refuse_gone {
        log(
            LogLevel::Error,
            &format!("devgate: {hook} without stream state"),
        );
        answer_500(host, "devgate_internal_no_stream");
    }
    fallback.gone
}

/// The generic 500 of a request devgate cannot finish, unless this hook already answered.
pub(super) fn answer_500(host: &mut Host, details: &str) {
    if !host.responded {
        let headers: [(&str, &[u8]); 2] = [
            ("content-type", b"text/plain; charset=utf-8"),
            ("cache-control", b"no-store"),
        ];
        host.send_response(500, headers, b"Internal Server Error\n", details);
    }
}

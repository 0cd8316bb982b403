//! A stream's state as the binding layer holds it between Envoy's hooks, sound when Envoy
//! re-enters the module for the same stream and when it destroys the stream during a hook.
//!
//! Envoy calls a stream's hooks on its worker, but not always one at a time. A hook that resumes
//! the request (`continue_decoding` from `scheduled` or from a callout's answer) runs the rest of
//! the filter chain on the same stack; a local reply there (the router finding no healthy host,
//! another filter's 403) calls this module's `response_headers` for the same stream while the
//! outer hook still runs (measured in Envoy 1.40: `tests/e2e/test_native_reentry.py`). And an Envoy
//! that ends the stream while a hook runs calls `destroy` inside it: Envoys before 1.40 did so
//! inside `send_response`; 1.40 ends the stream only after the hook has returned. A fresh `&mut`
//! to the stream per hook would alias the outer hook's, and a destroy that freed the state would
//! leave the outer hook writing to freed memory.
//!
//! So the state lives in a [`Held`]: a hook gets `&mut` to it only through [`Held::enter`], which
//! borrows a `RefCell`. A hook that finds it borrowed is not run ([`Entry::Busy`]: the binding
//! answers neutrally, "continue" or nothing, and the outermost hook learns how many there were); a
//! destroy that arrives while a hook runs is deferred ([`Destroy::Deferred`]) and the state is
//! handed out for dropping when the outermost hook leaves ([`Exit::ended`]); a hook after the
//! destroy finds nothing ([`Entry::Gone`]). No `unsafe` here: the raw pointer Envoy holds is turned
//! into a `&Held` (shared, so re-entry makes no second `&mut`) in the bindings.
//!
//! Std only, no policy; compiled natively without the `native-module` feature so that `make
//! unit` tests it.

use std::cell::{Cell, RefCell};

/// One stream's state and what the hooks running for it have seen.
pub struct Held<T> {
    value: RefCell<Option<T>>,
    /// Hooks of this stream on the stack now.
    depth: Cell<u32>,
    /// Envoy destroyed the stream while a hook ran: the state goes when the outermost leaves.
    destroyed: Cell<bool>,
    /// Hooks that found the state borrowed since the outermost hook began.
    reentered: Cell<u32>,
}

/// What a hook got.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<R> {
    /// It ran with the state and returned this.
    Ran(R),
    /// Another hook of this stream holds the state (Envoy re-entered the module): not run.
    Busy,
    /// The stream has no state (destroyed, or never filled): not run.
    Gone,
}

/// What [`Held::enter`] tells the hook that leaves.
pub struct Exit<T, R> {
    /// What the hook got.
    pub entry: Entry<R>,
    /// For the outermost hook: how many hooks found the state borrowed while it ran (0 for a hook
    /// that was itself re-entered).
    pub reentered: u32,
    /// For the outermost hook, when Envoy destroyed the stream while it ran: the state, taken out,
    /// for the caller to drop (and the slot to be freed) now that no hook uses it.
    pub ended: Option<T>,
}

/// What Envoy's destroy of a stream does.
#[derive(Debug, PartialEq, Eq)]
pub enum Destroy<T> {
    /// No hook runs: the state, taken out, to drop now (and the slot to free).
    Now(Option<T>),
    /// A hook runs: the state goes when the outermost one leaves ([`Exit::ended`]); the slot must
    /// not be freed yet.
    Deferred,
}

/// Restores the depth when a hook leaves, a panicking one included (the bindings catch panics
/// around [`Held::enter`], and a depth left raised would defer the stream's destroy forever).
struct Depth<'a> {
    depth: &'a Cell<u32>,
    was: u32,
}

impl Drop for Depth<'_> {
    fn drop(&mut self) {
        self.depth.set(self.was);
    }
}

impl<T> Held<T> {
    /// State for a new stream.
    pub const fn new(value: T) -> Held<T> {
        Held {
            value: RefCell::new(Some(value)),
            depth: Cell::new(0),
            destroyed: Cell::new(false),
            reentered: Cell::new(0),
        }
    }

    /// Puts a new stream's state into a slot whose stream has ended; `Err(value)` back, and
    /// nothing done, if the slot is still in use (a slot is only reused once its state is out).
    pub fn refill(&self, value: T) -> Result<(), T> {
        if self.depth.get() != 0 {
            return Err(value);
        }
        let Ok(mut slot) = self.value.try_borrow_mut() else {
            return Err(value);
        };
        if slot.is_some() {
            return Err(value);
        }
        *slot = Some(value);
        self.destroyed.set(false);
        self.reentered.set(0);
        Ok(())
    }

    /// Runs a hook with the state: `f` gets the only `&mut` to it, unless another hook of this
    /// stream already holds it ([`Entry::Busy`]) or the stream is gone ([`Entry::Gone`]).
    pub fn enter<R>(&self, f: impl FnOnce(&mut T) -> R) -> Exit<T, R> {
        let was = self.depth.get();
        let entry = {
            let _depth = Depth {
                depth: &self.depth,
                was,
            };
            self.depth.set(was.saturating_add(1));
            if self.destroyed.get() {
                Entry::Gone
            } else {
                match self.value.try_borrow_mut() {
                    Ok(mut slot) => match slot.as_mut() {
                        Some(value) => Entry::Ran(f(value)),
                        None => Entry::Gone,
                    },
                    Err(_) => {
                        self.reentered.set(self.reentered.get().saturating_add(1));
                        Entry::Busy
                    }
                }
            }
        };
        if was != 0 {
            return Exit {
                entry,
                reentered: 0,
                ended: None,
            };
        }
        let reentered = self.reentered.replace(0);
        let ended = if self.destroyed.get() {
            self.take()
        } else {
            None
        };
        Exit {
            entry,
            reentered,
            ended,
        }
    }

    /// Envoy destroys the stream: its state now, or when the outermost running hook leaves.
    pub fn destroy(&self) -> Destroy<T> {
        if self.depth.get() != 0 {
            self.destroyed.set(true);
            return Destroy::Deferred;
        }
        Destroy::Now(self.take())
    }

    /// Takes the state out (nothing while a hook borrows it; never panics).
    fn take(&self) -> Option<T> {
        self.value.try_borrow_mut().ok().and_then(|mut v| v.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream state that records its own drop.
    #[derive(Debug, PartialEq, Eq)]
    struct State<'a> {
        steps: Vec<&'static str>,
        dropped: &'a Cell<bool>,
    }

    impl Drop for State<'_> {
        fn drop(&mut self) {
            self.dropped.set(true);
        }
    }

    fn held(dropped: &Cell<bool>) -> Held<State<'_>> {
        Held::new(State {
            steps: Vec::new(),
            dropped,
        })
    }

    #[test]
    fn one_hook_at_a_time_runs_and_leaves_nothing_behind() {
        let dropped = Cell::new(false);
        let h = held(&dropped);
        let exit = h.enter(|s| {
            s.steps.push("headers");
            7
        });
        assert_eq!(exit.entry, Entry::Ran(7));
        assert_eq!(exit.reentered, 0);
        assert!(exit.ended.is_none());
        assert!(!dropped.get());
        let Destroy::Now(Some(state)) = h.destroy() else {
            panic!("no hook runs: the state goes now");
        };
        assert_eq!(state.steps, ["headers"]);
        drop(state);
        assert!(dropped.get());
        assert_eq!(
            h.enter(|_| ()).entry,
            Entry::Gone,
            "a hook after the destroy"
        );
    }

    #[test]
    fn a_reentered_hook_gets_no_second_mut_and_the_outermost_counts_it() {
        let dropped = Cell::new(false);
        let h = held(&dropped);
        let exit = h.enter(|s| {
            s.steps.push("scheduled");
            // continue_decoding: a local reply calls response_headers for the same stream.
            let inner = h.enter(|s| s.steps.push("response_headers"));
            assert_eq!(inner.entry, Entry::Busy);
            assert_eq!(inner.reentered, 0, "only the outermost reports");
            assert!(inner.ended.is_none());
            assert_eq!(h.enter(|_| ()).entry, Entry::Busy);
            s.steps.push("after");
        });
        assert_eq!(exit.entry, Entry::Ran(()));
        assert_eq!(exit.reentered, 2);
        assert!(exit.ended.is_none());
        let again = h.enter(|s| s.steps.clone());
        assert_eq!(again.entry, Entry::Ran(vec!["scheduled", "after"]));
        assert_eq!(again.reentered, 0, "counted once");
    }

    #[test]
    fn a_destroy_during_a_hook_is_deferred_to_the_outermost_exit() {
        let dropped = Cell::new(false);
        let h = held(&dropped);
        let exit = h.enter(|s| {
            s.steps.push("scheduled");
            // The local reply ends the stream inside the hook: response_headers, then destroy.
            assert_eq!(h.enter(|_| ()).entry, Entry::Busy);
            assert_eq!(h.destroy(), Destroy::Deferred);
            // The outer hook still owns its state: writing to it is sound.
            s.steps.push("written after the destroy");
            assert!(!dropped.get());
            // Envoy calls nothing more for the stream; if it did, it would find nothing.
            assert_eq!(h.enter(|_| ()).entry, Entry::Gone);
        });
        assert_eq!(exit.entry, Entry::Ran(()));
        assert_eq!(exit.reentered, 1);
        let state = exit.ended.expect("the outermost exit hands the state out");
        assert_eq!(state.steps, ["scheduled", "written after the destroy"]);
        drop(state);
        assert!(dropped.get());
        assert_eq!(h.enter(|_| ()).entry, Entry::Gone);
        assert_eq!(h.destroy(), Destroy::Now(None));
    }

    #[test]
    fn a_destroy_inside_a_reentered_hook_waits_for_the_outermost_too() {
        let dropped = Cell::new(false);
        let h = held(&dropped);
        let exit = h.enter(|_| {
            let inner = h.enter(|_| ());
            assert_eq!(inner.entry, Entry::Busy);
            // Depth 1 again: the destroy still waits for the outer hook.
            assert_eq!(h.destroy(), Destroy::Deferred);
        });
        assert!(exit.ended.is_some());
    }

    #[test]
    fn a_panicking_hook_restores_the_depth_so_a_later_destroy_is_not_deferred_forever() {
        let dropped = Cell::new(false);
        let h = held(&dropped);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.enter(|_| -> () { panic!("a bug in a hook") })
        }));
        assert!(caught.is_err());
        assert!(matches!(h.destroy(), Destroy::Now(Some(_))));
        assert!(dropped.get());
    }

    #[test]
    fn a_slot_is_refilled_only_once_its_state_is_out() {
        let (one, two) = (Cell::new(false), Cell::new(false));
        let h = held(&one);
        let refused = h.refill(State {
            steps: vec!["refused"],
            dropped: &two,
        });
        assert_eq!(refused.unwrap_err().steps, ["refused"], "handed back");
        assert!(two.get());
        two.set(false);
        assert!(matches!(h.destroy(), Destroy::Now(Some(_))));
        assert!(h
            .refill(State {
                steps: vec!["new"],
                dropped: &two,
            })
            .is_ok());
        assert_eq!(h.enter(|s| s.steps.clone()).entry, Entry::Ran(vec!["new"]));
        // A refilled slot starts clean: a hook runs, nothing is deferred.
        assert!(matches!(h.destroy(), Destroy::Now(Some(_))));
    }
}

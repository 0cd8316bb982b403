//! The login form's process-wide budget of password verifies: the pure arithmetic.
//!
//! A wrong password costs one bcrypt verify on the Envoy worker that took the request (about
//! 89 ms at cost 10 in Wasm), and every other request on that worker waits meanwhile. The
//! per-address failure limit does not bound that when the guesses come from many addresses, so
//! every verify also takes one unit from a budget shared by all workers of the Envoy process;
//! when none is left the form answers 429 with `Retry-After` without running bcrypt.
//!
//! The budget is a token bucket written as GCRA (the generic cell rate algorithm): its whole
//! state is one number, the *theoretical arrival time* (TAT) in milliseconds since the epoch,
//! so the glue keeps it under one shared-data key ([`KEY`]) and updates it with
//! compare-and-swap, as it does the failure counter. Over any `t` milliseconds at most
//! `burst + t / interval_ms` verifies are let through.

/// The shared-data key of the budget's state (one per Envoy process; [`encode`]).
pub const KEY: &str = "devgate.budget.login_verify";

/// Format version of [`encode`].
const VERSION: u8 = 1;
/// Size of [`encode`].
pub const LEN: usize = 9;

/// How many verifies: one every `interval_ms` on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Milliseconds between verifies at the sustained rate (at least 1).
    pub interval_ms: u64,
    /// Verifies allowed back to back when the budget is full (at least 1).
    pub burst: u32,
}

impl Budget {
    /// `per_minute` verifies a minute (the interval rounded up to whole milliseconds, so never
    /// more than asked), `burst` at once. Zeroes count as one.
    pub fn per_minute(per_minute: u32, burst: u32) -> Budget {
        Budget {
            interval_ms: 60_000u64.div_ceil(u64::from(per_minute.max(1))),
            burst: burst.max(1),
        }
    }
}

/// The state as stored: a version byte, then the TAT big-endian.
pub fn encode(tat_ms: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    let (version, rest) = out.split_at_mut(1);
    version.copy_from_slice(&[VERSION]);
    rest.copy_from_slice(&tat_ms.to_be_bytes());
    out
}

/// Reads [`encode`]; `None` for anything else (absent, another version, garbage), which counts
/// as a full budget.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    let [VERSION, rest @ ..] = bytes else {
        return None;
    };
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Takes one verify at `now_ms` from the budget whose state is `prev`: `Ok(next state)` to
/// store before the verify runs, or `Err(retry_after)` in whole seconds (at least 1) when none
/// is left, with nothing to store.
///
/// A state further in the future than a full burst can reach (a clock stepped back, corrupt
/// data) is not trusted and counts as a full budget, so it never locks the form for longer
/// than the budget itself would.
pub fn take(prev: Option<u64>, now_ms: u64, budget: Budget) -> Result<u64, u64> {
    let interval = budget.interval_ms.max(1);
    let burst = u64::from(budget.burst.max(1));
    // How far ahead of now the TAT may be and still admit one more.
    let tolerance = interval.saturating_mul(burst - 1);
    let horizon = now_ms.saturating_add(interval.saturating_mul(burst));
    let tat = match prev {
        Some(t) if t > now_ms && t <= horizon => t,
        _ => now_ms,
    };
    let ahead = tat - now_ms;
    if ahead > tolerance {
        Err((ahead - tolerance).div_ceil(1000).max(1))
    } else {
        Ok(tat.saturating_add(interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600_000;

    /// Takes at `now` until refused; the number taken and the state.
    fn drain(mut state: Option<u64>, now: u64, b: Budget) -> (u32, Option<u64>, u64) {
        let mut n = 0;
        loop {
            match take(state, now, b) {
                Ok(next) => {
                    state = Some(next);
                    n += 1;
                }
                Err(retry) => return (n, state, retry),
            }
        }
    }

    #[test]
    fn a_full_budget_lets_a_burst_through_then_refuses() {
        let b = Budget::per_minute(120, 10);
        assert_eq!(b.interval_ms, 500);
        // (The shipped default is a burst of 3; 10 here shows the arithmetic.)
        let (n, state, retry) = drain(None, T, b);
        assert_eq!((n, retry), (10, 1));
        assert_eq!(state, Some(T + 5_000));
        // Half a second later exactly one more.
        let (n, _, _) = drain(state, T + 500, b);
        assert_eq!(n, 1);
        // Nothing refused stored anything: the same state admits again later.
        assert_eq!(take(state, T + 499, b), Err(1));
        assert_eq!(take(state, T + 500, b), Ok(T + 5_500));
        // An idle budget refills to the burst, never beyond.
        let (n, _, _) = drain(state, T + 3_600_000, b);
        assert_eq!(n, 10);
    }

    #[test]
    fn never_more_than_burst_plus_rate_times_elapsed() {
        for (per_minute, burst) in [(120, 10), (1, 1), (7, 3), (60_000, 1000), (30, 1)] {
            let b = Budget::per_minute(per_minute, burst);
            let mut state = None;
            let mut taken = 0u64;
            // One attempt every 37 ms for ten minutes.
            let span = 600_000u64;
            for t in (0..span).step_by(37) {
                if let Ok(next) = take(state, T + t, b) {
                    state = Some(next);
                    taken += 1;
                }
            }
            let bound = u64::from(burst) + span * u64::from(per_minute) / 60_000 + 1;
            assert!(
                taken <= bound,
                "{per_minute}/min burst {burst}: {taken} > {bound}"
            );
            // And the budget is used, not starved: at least one per interval (plus the 37 ms
            // an attempt may come after the TAT).
            let floor = (span / (b.interval_ms + 37)).min(span / 37);
            assert!(taken >= floor, "{per_minute}/min: {taken} < {floor}");
        }
    }

    #[test]
    fn retry_after_says_when_the_next_one_fits() {
        // One a minute: after the burst of 2, the next fits 60 s later.
        let b = Budget::per_minute(1, 2);
        let (n, state, retry) = drain(None, T, b);
        assert_eq!((n, retry), (2, 60));
        assert_eq!(take(state, T + 59_001, b), Err(1));
        assert!(take(state, T + 60_000, b).is_ok());
    }

    #[test]
    fn untrusted_states_count_as_full() {
        let b = Budget::per_minute(120, 10);
        // Clock stepped back an hour, or garbage far in the future: a full budget.
        assert_eq!(drain(Some(T + 3_600_000), T, b).0, 10);
        assert_eq!(drain(Some(u64::MAX), T, b).0, 10);
        // In the past: full too.
        assert_eq!(drain(Some(0), T, b).0, 10);
        // At the top of the range nothing overflows.
        assert!(take(None, u64::MAX, b).is_ok());
        assert!(take(Some(u64::MAX), u64::MAX - 1, b).is_ok());
        // Zeroes never divide by zero or admit without limit.
        let z = Budget {
            interval_ms: 0,
            burst: 0,
        };
        assert_eq!(drain(None, T, z).0, 1);
        assert_eq!(Budget::per_minute(0, 0), Budget::per_minute(1, 1));
    }

    #[test]
    fn state_round_trips() {
        for t in [0, 1, T, u64::MAX] {
            assert_eq!(decode(&encode(t)), Some(t));
        }
        assert_eq!(encode(0x0102_0304_0506_0708), [1, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[1; 8]), None);
        assert_eq!(decode(&[1; 10]), None);
        assert_eq!(decode(&[2; 9]), None);
    }
}

//! One callout per key at a time across the Envoy process, and the process-wide budget of
//! callouts: one shared-store entry per service (`<prefix>.f`), updated with compare-and-swap.
//!
//! The entry holds the budget's state (a GCRA theoretical arrival time, as the login verify
//! budget: [`crate::core::budget`]) and a short list of flights, one per key being asked or
//! recently failed:
//!
//! - **in flight**: a stream is asking the service about the key until `until_ms` (its timeout
//!   and a second's margin, so a flight whose stream vanished ends by itself). Another request
//!   for that key waits for it (at most `budget.waiters` per flight) instead of asking again.
//! - **failed**: the last callout for the key ended unavailable; until `until_ms`
//!   (`cache.retry_ms` later) requests for it use what is cached, or get 503, without asking.
//!
//! A new flight needs room (fewer than `budget.in_flight` in flight) and a unit of the rate
//! budget; otherwise the request gets 503 with `Retry-After` ([`Join::Busy`]): never a queue
//! without bound, and nothing is cached.

use std::cell::Cell;

use crate::core::budget::{self, Budget};
use crate::core::callout::Wait;
use crate::core::shared::{self, SharedStore, Unavailable};

use super::{KeyHash, KeyService};

const VERSION: u8 = 1;
const IN_FLIGHT: u8 = 0;
const FAILED: u8 = 1;
/// One flight as stored: id, until, state, waiters.
const FLIGHT_LEN: usize = 8 + 8 + 1 + 2;
/// Failed flights remembered at most, beside those in flight.
const MAX_FAILED: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flight {
    id: u64,
    until_ms: u64,
    state: u8,
    waiters: u16,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Flights {
    tat_ms: Option<u64>,
    list: Vec<Flight>,
}

fn key(service: &KeyService) -> String {
    format!("{}.f", service.store_prefix)
}

fn encode(f: &Flights) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + f.list.len() * FLIGHT_LEN);
    out.push(VERSION);
    out.extend_from_slice(&f.tat_ms.unwrap_or(0).to_be_bytes());
    for fl in &f.list {
        out.extend_from_slice(&fl.id.to_be_bytes());
        out.extend_from_slice(&fl.until_ms.to_be_bytes());
        out.push(fl.state);
        out.extend_from_slice(&fl.waiters.to_be_bytes());
    }
    out
}

/// Reads [`encode`], dropping flights that ended by `now_ms`; anything unreadable is an empty
/// table with a full budget.
fn decode(bytes: Option<&[u8]>, now_ms: u64) -> Flights {
    let Some([VERSION, rest @ ..]) = bytes else {
        return Flights::default();
    };
    let Some((tat, list)) = rest.split_first_chunk::<8>() else {
        return Flights::default();
    };
    let tat = u64::from_be_bytes(*tat);
    let list = list
        .chunks_exact(FLIGHT_LEN)
        .filter_map(|c| {
            let (id, c) = c.split_first_chunk::<8>()?;
            let (until, c) = c.split_first_chunk::<8>()?;
            let (state, c) = c.split_first()?;
            let waiters: [u8; 2] = c.try_into().ok()?;
            Some(Flight {
                id: u64::from_be_bytes(*id),
                until_ms: u64::from_be_bytes(*until),
                state: *state,
                waiters: u16::from_be_bytes(waiters),
            })
        })
        .filter(|f| f.until_ms > now_ms)
        .collect();
    Flights {
        tat_ms: (tat != 0).then_some(tat),
        list,
    }
}

/// What a request that must ask the service about a key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Ask: this stream owns the key's flight and must end it ([`land`], or [`abandon`] when
    /// the stream goes away first).
    Owner,
    /// Another stream is asking: wait for it.
    Wait(Wait),
    /// The key's last callout failed a moment ago: decide with what is cached, without asking.
    Failed,
    /// No budget left: 503 with `Retry-After` (seconds).
    Busy {
        /// Seconds until the budget has room again.
        retry_after: u64,
    },
}

/// Joins the key's flight at `now_ms`: owns a new one, waits for the one in the air (`rejoin`:
/// this stream already waited on it, so it is not counted again), or is refused for budget.
pub fn join<S: SharedStore + ?Sized>(
    service: &KeyService,
    store: &S,
    hash: &KeyHash,
    now_ms: u64,
    rejoin: bool,
) -> Result<Join, Unavailable> {
    let b = &service.budget;
    let rate = Budget {
        interval_ms: 1000u64.div_ceil(u64::from(b.per_second.max(1))),
        burst: b.burst.max(1),
    };
    let id = hash.short();
    let outcome = Cell::new(Join::Busy { retry_after: 1 });
    let written = shared::try_update(store, &key(service), |prev| {
        let mut f = decode(prev, now_ms);
        if let Some(fl) = f.list.iter_mut().find(|fl| fl.id == id) {
            if fl.state == FAILED {
                outcome.set(Join::Failed);
                return Err(());
            }
            if !rejoin {
                if u32::from(fl.waiters) >= b.waiters {
                    outcome.set(Join::Busy { retry_after: 1 });
                    return Err(());
                }
                fl.waiters = fl.waiters.saturating_add(1);
            }
            outcome.set(Join::Wait(Wait {
                flight: id,
                until_ms: fl.until_ms,
            }));
            return Ok(encode(&f));
        }
        let flying = f.list.iter().filter(|fl| fl.state == IN_FLIGHT).count();
        if flying >= usize::try_from(b.in_flight).unwrap_or(usize::MAX) {
            outcome.set(Join::Busy { retry_after: 1 });
            return Err(());
        }
        match budget::take(f.tat_ms, now_ms, rate) {
            Err(retry_after) => {
                outcome.set(Join::Busy { retry_after });
                Err(())
            }
            Ok(tat) => {
                f.tat_ms = Some(tat);
                f.list.push(Flight {
                    id,
                    until_ms: now_ms
                        .saturating_add(service.timeout_ms)
                        .saturating_add(1000),
                    state: IN_FLIGHT,
                    waiters: 0,
                });
                outcome.set(Join::Owner);
                Ok(encode(&f))
            }
        }
    })?;
    match written {
        Ok(()) | Err(()) => Ok(outcome.get()),
    }
}

/// The owner's callout for `hash` ended: the flight is over, and when it ended `unavailable`
/// the key is marked failed for `cache.retry_ms`.
pub fn land<S: SharedStore + ?Sized>(
    service: &KeyService,
    store: &S,
    hash: &KeyHash,
    unavailable: bool,
    now_ms: u64,
) -> Result<(), Unavailable> {
    let id = hash.short();
    shared::update(store, &key(service), |prev| {
        let mut f = decode(prev, now_ms);
        f.list.retain(|fl| fl.id != id);
        if unavailable {
            let failed = f.list.iter().filter(|fl| fl.state == FAILED).count();
            if failed >= MAX_FAILED {
                if let Some(i) = f.list.iter().position(|fl| fl.state == FAILED) {
                    f.list.remove(i);
                }
            }
            f.list.push(Flight {
                id,
                until_ms: now_ms.saturating_add(service.cache.retry_ms.max(1)),
                state: FAILED,
                waiters: 0,
            });
        }
        encode(&f)
    })
}

/// The owner went away before its callout ended: the flight is over, so a waiter asks next.
pub fn abandon<S: SharedStore + ?Sized>(
    service: &KeyService,
    store: &S,
    hash: &KeyHash,
    now_ms: u64,
) -> Result<(), Unavailable> {
    let id = hash.short();
    shared::try_update(store, &key(service), |prev| {
        let mut f = decode(prev, now_ms);
        let before = f.list.len();
        f.list.retain(|fl| !(fl.id == id && fl.state == IN_FLIGHT));
        if f.list.len() == before {
            return Err(());
        }
        Ok(encode(&f))
    })
    .map(|_| ())
}

/// Whether the key's last callout ended unavailable less than `cache.retry_ms` ago.
pub fn recently_failed<S: SharedStore + ?Sized>(
    service: &KeyService,
    store: &S,
    hash: &KeyHash,
    now_ms: u64,
) -> Result<bool, Unavailable> {
    let (value, _) = store.get(&key(service))?;
    let id = hash.short();
    Ok(decode(value.as_deref(), now_ms)
        .list
        .iter()
        .any(|fl| fl.id == id && fl.state == FAILED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keyservice::testing::{service, NOW};
    use crate::core::shared::MemoryStore;

    const T: u64 = NOW * 1000;

    fn h(s: &KeyService, n: u32) -> KeyHash {
        KeyHash::of(s, format!("flight-key-{n}-0123456789").as_bytes())
    }

    fn table(s: &KeyService, db: &MemoryStore, now_ms: u64) -> Flights {
        decode(db.get(&key(s)).unwrap().0.as_deref(), now_ms)
    }

    #[test]
    fn the_first_asks_the_others_wait_on_the_same_flight() {
        let mut s = service();
        s.budget.waiters = 3;
        let db = MemoryStore::default();
        let a = h(&s, 1);
        assert_eq!(join(&s, &db, &a, T, false), Ok(Join::Owner));
        let wait = Join::Wait(Wait {
            flight: a.short(),
            until_ms: T + 1000 + 1000,
        });
        for i in 1..=3 {
            assert_eq!(join(&s, &db, &a, T + i, false), Ok(wait));
            assert_eq!(table(&s, &db, T).list[0].waiters, i as u16);
        }
        // A waiter that comes back (woken early) is not counted again.
        assert_eq!(join(&s, &db, &a, T + 5, true), Ok(wait));
        assert_eq!(table(&s, &db, T).list[0].waiters, 3);
        // One more new waiter is over the cap.
        assert_eq!(
            join(&s, &db, &a, T + 6, false),
            Ok(Join::Busy { retry_after: 1 })
        );
        // Another key has its own flight.
        assert_eq!(join(&s, &db, &h(&s, 2), T, false), Ok(Join::Owner));
    }

    #[test]
    fn flights_in_the_air_are_capped() {
        let mut s = service();
        s.budget.in_flight = 2;
        let db = MemoryStore::default();
        assert_eq!(join(&s, &db, &h(&s, 1), T, false), Ok(Join::Owner));
        assert_eq!(join(&s, &db, &h(&s, 2), T, false), Ok(Join::Owner));
        assert_eq!(
            join(&s, &db, &h(&s, 3), T, false),
            Ok(Join::Busy { retry_after: 1 })
        );
        // Waiting on one in the air is still fine.
        assert!(matches!(
            join(&s, &db, &h(&s, 1), T, false),
            Ok(Join::Wait(_))
        ));
        land(&s, &db, &h(&s, 1), false, T + 10).unwrap();
        assert_eq!(join(&s, &db, &h(&s, 3), T + 10, false), Ok(Join::Owner));
        // A failed mark is not a flight in the air.
        land(&s, &db, &h(&s, 2), true, T + 20).unwrap();
        assert_eq!(join(&s, &db, &h(&s, 4), T + 20, false), Ok(Join::Owner));
    }

    #[test]
    fn callouts_per_second_are_budgeted() {
        let mut s = service();
        s.budget.per_second = 2;
        s.budget.burst = 2;
        let db = MemoryStore::default();
        assert_eq!(join(&s, &db, &h(&s, 1), T, false), Ok(Join::Owner));
        assert_eq!(join(&s, &db, &h(&s, 2), T, false), Ok(Join::Owner));
        assert_eq!(
            join(&s, &db, &h(&s, 3), T, false),
            Ok(Join::Busy { retry_after: 1 })
        );
        // Half a second later one more unit has come back.
        assert_eq!(join(&s, &db, &h(&s, 3), T + 500, false), Ok(Join::Owner));
        assert!(matches!(
            join(&s, &db, &h(&s, 4), T + 500, false),
            Ok(Join::Busy { .. })
        ));
        // A slow budget says how long to wait.
        let mut slow = service();
        slow.budget.per_second = 1;
        slow.budget.burst = 1;
        slow.store_prefix.push_str("-slow");
        assert_eq!(join(&slow, &db, &h(&slow, 1), T, false), Ok(Join::Owner));
        assert_eq!(
            join(&slow, &db, &h(&slow, 2), T + 1, false),
            Ok(Join::Busy { retry_after: 1 })
        );
        assert_eq!(
            join(&slow, &db, &h(&slow, 2), T + 1000, false),
            Ok(Join::Owner)
        );
    }

    #[test]
    fn landing_ends_the_flight_and_a_failure_is_remembered_for_retry_ms() {
        let s = service();
        let db = MemoryStore::default();
        let a = h(&s, 1);
        assert_eq!(join(&s, &db, &a, T, false), Ok(Join::Owner));
        land(&s, &db, &a, false, T + 50).unwrap();
        assert!(table(&s, &db, T + 50).list.is_empty());
        assert_eq!(recently_failed(&s, &db, &a, T + 50), Ok(false));
        assert_eq!(join(&s, &db, &a, T + 60, false), Ok(Join::Owner));
        land(&s, &db, &a, true, T + 100).unwrap();
        assert_eq!(recently_failed(&s, &db, &a, T + 100), Ok(true));
        assert_eq!(recently_failed(&s, &db, &h(&s, 2), T + 100), Ok(false));
        assert_eq!(join(&s, &db, &a, T + 1099, false), Ok(Join::Failed));
        // retry_ms (1000) later the key may be asked again.
        assert_eq!(recently_failed(&s, &db, &a, T + 1100), Ok(false));
        assert_eq!(join(&s, &db, &a, T + 1100, false), Ok(Join::Owner));
        // A success after a failure clears the mark at once.
        land(&s, &db, &a, true, T + 2000).unwrap();
        land(&s, &db, &a, false, T + 2001).unwrap();
        assert_eq!(recently_failed(&s, &db, &a, T + 2001), Ok(false));
    }

    #[test]
    fn failed_marks_are_bounded() {
        let s = service();
        let db = MemoryStore::default();
        for i in 0..(MAX_FAILED as u32 + 10) {
            land(&s, &db, &h(&s, i), true, T).unwrap();
        }
        let t = table(&s, &db, T);
        assert_eq!(t.list.len(), MAX_FAILED);
        // The oldest marks went first.
        assert_eq!(recently_failed(&s, &db, &h(&s, 0), T), Ok(false));
        assert_eq!(
            recently_failed(&s, &db, &h(&s, MAX_FAILED as u32 + 9), T),
            Ok(true)
        );
    }

    #[test]
    fn an_abandoned_or_expired_flight_lets_a_new_owner_in() {
        let s = service();
        let db = MemoryStore::default();
        let a = h(&s, 1);
        assert_eq!(join(&s, &db, &a, T, false), Ok(Join::Owner));
        abandon(&s, &db, &a, T + 10).unwrap();
        assert_eq!(join(&s, &db, &a, T + 20, true), Ok(Join::Owner));
        // Abandoning twice, or a flight that is not there, changes nothing.
        abandon(&s, &db, &a, T + 30).unwrap();
        assert_eq!(abandon(&s, &db, &h(&s, 9), T + 30), Ok(()));
        assert!(table(&s, &db, T + 30).list.is_empty());
        // Abandon never clears a failed mark.
        land(&s, &db, &a, true, T + 40).unwrap();
        abandon(&s, &db, &a, T + 41).unwrap();
        assert_eq!(recently_failed(&s, &db, &a, T + 41), Ok(true));
        // A flight whose owner vanished ends by itself at until_ms.
        let b = h(&s, 2);
        assert_eq!(join(&s, &db, &b, T, false), Ok(Join::Owner));
        let until = T + s.timeout_ms + 1000;
        assert!(matches!(
            join(&s, &db, &b, until - 1, false),
            Ok(Join::Wait(w)) if w.until_ms == until
        ));
        assert_eq!(join(&s, &db, &b, until, true), Ok(Join::Owner));
    }

    #[test]
    fn garbage_reads_as_an_empty_table() {
        let s = service();
        let db = MemoryStore::default();
        for junk in [&b""[..], b"\x02", b"\x01abc", b"hello world, not a table"] {
            db.set(&key(&s), junk, 0).unwrap();
            assert_eq!(join(&s, &db, &h(&s, 1), T, false), Ok(Join::Owner));
            db.set(&key(&s), junk, 0).unwrap();
        }
        let f = Flights {
            tat_ms: Some(T + 5),
            list: vec![Flight {
                id: 7,
                until_ms: T + 9,
                state: FAILED,
                waiters: 2,
            }],
        };
        assert_eq!(decode(Some(&encode(&f)), T), f);
        assert_eq!(decode(Some(&encode(&f)), T + 9).list, vec![]);
    }
}

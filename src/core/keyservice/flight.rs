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

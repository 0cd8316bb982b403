//! The shared cache of the key service's answers, for every worker of the Envoy process.
//!
//! Two slot tables under the service's store prefix, each slot one shared-store entry holding
//! at most one key (found by its [`KeyHash`], never the key itself):
//!
//! - `<prefix>.k.<i>`, `api.service.cache.entries` slots: resolved keys, fresh until the access
//!   token's `exp` (capped by `max_ttl_seconds`), then servable stale for `max_stale_seconds`
//!   while the service is unavailable;
//! - `<prefix>.r.<i>`, `api.service.cache.rejections` slots: authoritative rejections, fresh
//!   for `rejection_ttl_seconds` (or the service's `Retry-After` for over-quota answers), and
//!   still rejecting past that while the service is unavailable.
//!
//! A key's slot is fixed by its hash (direct-mapped): a new answer replaces whatever key was
//! there. Because rejections have their own table, a flood of junk keys only ever replaces
//! rejections and cannot evict a resolved key (lua-resty-mlcache's `shm_miss` idea). Only an
//! authoritative answer is written; an unavailable service writes nothing, so it never replaces
//! a good entry. An authoritative answer clears the key's entry in the other table.
//!
//! `<prefix>.n` counts the slots ever filled (the `key_service.entries` gauge); slots are
//! overwritten or cleared (a one-byte marker), never removed, so the store holds at most
//! `entries + rejections + 2` keys per service.

use serde::{Deserialize, Serialize};

use crate::core::apikey::{ApiKey, KeyKind};
use crate::core::codes::Reason;
use crate::core::counters::KeyEvent;
use crate::core::net::{Cidr, CidrList};
use crate::core::shared::{self, SharedStore, Unavailable};

use super::{flight, KeyHash, KeyService, Lookup, Resolution};

const VERSION: u8 = 1;
const RESOLVED: u8 = b'k';
const REJECTED: u8 = b'r';
/// version, kind, hash, fetched_ms, then two u64 times.
const HEAD: usize = 1 + 1 + 32 + 8 + 8 + 8;

/// What a cleared slot holds: not an entry, and not empty either, so that filling the slot
/// again is not counted as a slot filled for the first time (the gauge stays at most
/// `entries + rejections`; a host may also read an empty value back as "never set").
const CLEARED: [u8; 1] = [0];

/// The rejections a cache keeps, by their place in this list (the stored byte).
const REJECTIONS: [Reason; 4] = [
    Reason::KeyRejected,
    Reason::KeyForbidden,
    Reason::OverQuota,
    Reason::OverFreeQuota,
];

/// The facts of a resolved key as stored (the key itself never is).
#[derive(Serialize, Deserialize)]
struct Stored {
    k: String,
    id: String,
    org: String,
    project: String,
    products: Vec<String>,
    #[serde(default)]
    write: bool,
    #[serde(default)]
    referers: Vec<String>,
    #[serde(default)]
    ips: Vec<String>,
    exp: Option<u64>,
}

/// One decoded slot.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Resolved {
        hash: [u8; 32],
        fetched_ms: u64,
        fresh_until: u64,
        stale_until: u64,
        key: ApiKey,
    },
    Rejected {
        hash: [u8; 32],
        fetched_ms: u64,
        until: u64,
        reason: Reason,
        retry_after: Option<u64>,
    },
}

fn slot_key(service: &KeyService, table: u8, hash: &KeyHash) -> String {
    let slots = match table {
        RESOLVED => service.cache.entries,
        _ => service.cache.rejections,
    }
    .max(1);
    let i = hash.short() % u64::from(slots);
    let mut key = String::with_capacity(service.store_prefix.len() + 24);
    key.push_str(&service.store_prefix);
    key.push('.');
    key.push(char::from(table));
    key.push('.');
    key.push_str(&i.to_string());
    key
}

fn count_key(service: &KeyService) -> String {
    format!("{}.n", service.store_prefix)
}

fn encode(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD + 128);
    out.push(VERSION);
    match entry {
        Entry::Resolved {
            hash,
            fetched_ms,
            fresh_until,
            stale_until,
            key,
        } => {
            out.push(RESOLVED);
            out.extend_from_slice(hash);
            out.extend_from_slice(&fetched_ms.to_be_bytes());
            out.extend_from_slice(&fresh_until.to_be_bytes());
            out.extend_from_slice(&stale_until.to_be_bytes());
            let stored = Stored {
                k: key.kind.as_str().to_string(),
                id: key.id.clone(),
                org: key.org.clone(),
                project: key.project.clone(),
                products: key.products.clone(),
                write: key.write,
                referers: key.referers.clone(),
                ips: key.ips.0.iter().map(Cidr::to_string).collect(),
                exp: key.exp,
            };
            // Serialising owned strings and vectors cannot fail; an empty tail reads as garbage.
            out.extend(serde_json::to_vec(&stored).unwrap_or_default());
        }
        Entry::Rejected {
            hash,
            fetched_ms,
            until,
            reason,
            retry_after,
        } => {
            out.push(REJECTED);
            out.extend_from_slice(hash);
            out.extend_from_slice(&fetched_ms.to_be_bytes());
            out.extend_from_slice(&until.to_be_bytes());
            out.extend_from_slice(&retry_after.map_or(u64::MAX, |r| r).to_be_bytes());
            let code = REJECTIONS.iter().position(|r| r == reason).unwrap_or(0);
            out.push(u8::try_from(code).unwrap_or(0));
        }
    }
    out
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Reads [`encode`]; `None` for an empty slot, another version, or garbage.
fn decode(bytes: &[u8]) -> Option<Entry> {
    let [VERSION, table, rest @ ..] = bytes else {
        return None;
    };
    let table = *table;
    let hash: [u8; 32] = rest.get(..32)?.try_into().ok()?;
    let fetched_ms = u64_at(rest, 32)?;
    let a = u64_at(rest, 40)?;
    let b = u64_at(rest, 48)?;
    let tail = rest.get(56..)?;
    match table {
        RESOLVED => {
            let s: Stored = serde_json::from_slice(tail).ok()?;
            let kind = KeyKind::SIGNED.into_iter().find(|k| k.as_str() == s.k)?;
            let ips = s
                .ips
                .iter()
                .map(|c| Cidr::parse(c))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some(Entry::Resolved {
                hash,
                fetched_ms,
                fresh_until: a,
                stale_until: b,
                key: ApiKey {
                    kind,
                    id: s.id,
                    org: s.org,
                    project: s.project,
                    products: s.products,
                    write: s.write,
                    referers: s.referers,
                    ips: CidrList(ips),
                    exp: s.exp,
                },
            })
        }
        REJECTED => {
            let reason = *REJECTIONS.get(usize::from(*tail.first()?))?;
            Some(Entry::Rejected {
                hash,
                fetched_ms,
                until: a,
                reason,
                retry_after: (b != u64::MAX).then_some(b),
            })
        }
        _ => None,
    }
}

/// The entry of `table` for `hash`, if that slot holds this key.
fn read<S: SharedStore + ?Sized>(
    service: &KeyService,
    store: &S,
    table: u8,
    hash: &KeyHash,
) -> Result<Option<Entry>, Unavailable> {
    let (value, _) = store.get(&slot_key(service, table, hash))?;
    Ok(value.as_deref().and_then(decode).filter(|e| match e {
        Entry::Resolved { hash: h, .. } | Entry::Rejected { hash: h, .. } => *h == hash.0,
    }))
}

/// What the cache (and `in_hand`, the stream's own callout's answer, which comes first) says
/// about the key `hash` at `now` (seconds) / `now_ms`, and the event to count.
pub fn lookup<S: SharedStore + ?Sized>(
    service: &KeyService,
    store: &S,
    hash: &KeyHash,
    now: u64,
    now_ms: u64,
    in_hand: Option<&Resolution>,
) -> Result<(Lookup, Option<KeyEvent>), Unavailable> {
    let mut unavailable = false;
    match in_hand {
        Some(Resolution::Resolved { key, .. }) => {
            return Ok((
                Lookup::Known {
                    key: key.clone(),
                    stale: false,
                },
                None,
            ))
        }
        Some(Resolution::Rejected {
            reason,
            retry_after,
        }) => {
            return Ok((
                Lookup::Rejected {
                    reason: *reason,
                    retry_after: *retry_after,
                },
                None,
            ))
        }
        Some(Resolution::Unavailable) => unavailable = true,
        None => {}
    }
    let resolved = read(service, store, RESOLVED, hash)?;
    if let Some(Entry::Resolved {
        fresh_until, key, ..
    }) = &resolved
    {
        if now < *fresh_until {
            return Ok((
                Lookup::Known {
                    key: key.clone(),
                    stale: false,
                },
                Some(KeyEvent::Hit),
            ));
        }
    }
    let resolved_at = match &resolved {
        Some(Entry::Resolved { fetched_ms, .. }) => Some(*fetched_ms),
        _ => None,
    };
    let rejected = read(service, store, REJECTED, hash)?.filter(|e| match e {
        // A rejection older than the key's last resolution no longer speaks for it.
        Entry::Rejected { fetched_ms, .. } => resolved_at.is_none_or(|r| *fetched_ms >= r),
        Entry::Resolved { .. } => false,
    });
    if let Some(Entry::Rejected {
        until,
        reason,
        retry_after,
        ..
    }) = &rejected
    {
        let rejection = Lookup::Rejected {
            reason: *reason,
            retry_after: retry_after.map(|r| r.min(until.saturating_sub(now).max(1))),
        };
        if now < *until {
            return Ok((rejection, Some(KeyEvent::Hit)));
        }
        unavailable = unavailable || flight::recently_failed(service, store, hash, now_ms)?;
        // Past its freshness, a rejection still rejects while the service cannot be asked.
        if unavailable {
            return Ok((rejection, None));
        }
        return Ok((Lookup::Ask, Some(KeyEvent::Miss)));
    }
    unavailable = unavailable || flight::recently_failed(service, store, hash, now_ms)?;
    if !unavailable {
        return Ok((Lookup::Ask, Some(KeyEvent::Miss)));
    }
    match resolved {
        Some(Entry::Resolved {
            stale_until, key, ..
        }) if now < stale_until => Ok((
            Lookup::Known { key, stale: true },
            Some(KeyEvent::StaleServed),
        )),
        _ => Ok((Lookup::Unavailable, None)),
    }
}

/// Writes an authoritative answer for `hash` (an unavailable one writes nothing) and clears the
/// key's entry in the other table. Returns the number of slots ever filled, for the gauge,
/// when it changed.
pub fn store<S: SharedStore + ?Sized>(
    service: &KeyService,
    store: &S,
    hash: &KeyHash,
    resolution: &Resolution,
    now: u64,
    now_ms: u64,
) -> Result<Option<u64>, Unavailable> {
    let limits = &service.cache;
    let (table, other, entry) = match resolution {
        Resolution::Unavailable => return Ok(None),
        Resolution::Resolved { key, fresh_until } => (
            RESOLVED,
            REJECTED,
            Entry::Resolved {
                hash: hash.0,
                fetched_ms: now_ms,
                fresh_until: *fresh_until,
                stale_until: fresh_until.saturating_add(limits.max_stale_s),
                key: key.clone(),
            },
        ),
        Resolution::Rejected {
            reason,
            retry_after,
        } => {
            let ttl = match reason {
                Reason::OverQuota | Reason::OverFreeQuota => retry_after
                    .unwrap_or(limits.rejection_ttl_s)
                    .min(limits.max_ttl_s.max(limits.rejection_ttl_s)),
                _ => limits.rejection_ttl_s,
            };
            (
                REJECTED,
                RESOLVED,
                Entry::Rejected {
                    hash: hash.0,
                    fetched_ms: now_ms,
                    until: now.saturating_add(ttl),
                    reason: *reason,
                    retry_after: *retry_after,
                },
            )
        }
    };
    let value = encode(&entry);
    let was_empty = std::cell::Cell::new(false);
    shared::update(store, &slot_key(service, table, hash), |prev| {
        was_empty.set(prev.is_none_or(<[u8]>::is_empty));
        value.clone()
    })?;
    // The other table's entry for this key no longer speaks for it; another key's stays.
    let _ = shared::try_update(store, &slot_key(service, other, hash), |prev| {
        match prev.and_then(decode) {
            Some(Entry::Resolved { hash: h, .. } | Entry::Rejected { hash: h, .. })
                if h == hash.0 =>
            {
                Ok(CLEARED.to_vec())
            }
            _ => Err(()),
        }
    })?;
    if !was_empty.get() {
        return Ok(None);
    }
    let count = std::cell::Cell::new(0u64);
    shared::update(store, &count_key(service), |prev| {
        let n = prev
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes)
            .saturating_add(1);
        count.set(n);
        n.to_be_bytes().to_vec()
    })?;
    Ok(Some(count.get()))
}

#[cfg(test)]
#[path = "../tests/keyservice_cache.rs"]
mod tests;

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
            let kind = KeyKind::ALL.into_iter().find(|k| k.as_str() == s.k)?;
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
mod tests {
    use super::store as put;
    use super::*;
    use crate::core::keyservice::testing::{service, Host, NOW};
    use crate::core::shared::MemoryStore;

    const NOW_MS: u64 = NOW * 1000;

    fn private_key(id: &str) -> ApiKey {
        ApiKey {
            kind: KeyKind::Private,
            id: id.into(),
            org: "org1".into(),
            project: "proj1".into(),
            products: vec!["maps".into(), "search".into()],
            write: true,
            referers: Vec::new(),
            ips: CidrList(vec![
                Cidr::parse("10.0.0.0/8").unwrap(),
                Cidr::parse("192.0.2.7").unwrap(),
            ]),
            exp: Some(NOW + 3600),
        }
    }

    fn public_key(id: &str) -> ApiKey {
        ApiKey {
            kind: KeyKind::Public,
            id: id.into(),
            org: "org1".into(),
            project: "proj1".into(),
            products: vec!["maps".into()],
            write: false,
            referers: vec!["app.example".into(), "*.example.org".into()],
            ips: CidrList(Vec::new()),
            exp: None,
        }
    }

    fn resolved(key: ApiKey, fresh_until: u64) -> Resolution {
        Resolution::Resolved { key, fresh_until }
    }

    fn rejected(reason: Reason, retry_after: Option<u64>) -> Resolution {
        Resolution::Rejected {
            reason,
            retry_after,
        }
    }

    fn at(
        s: &KeyService,
        db: &MemoryStore,
        hash: &KeyHash,
        now: u64,
    ) -> (Lookup, Option<KeyEvent>) {
        lookup(s, db, hash, now, now * 1000, None).unwrap()
    }

    fn known(key: &ApiKey, stale: bool) -> Lookup {
        Lookup::Known {
            key: key.clone(),
            stale,
        }
    }

    fn fail(s: &KeyService, db: &MemoryStore, hash: &KeyHash, now: u64) {
        flight::land(s, db, hash, true, now * 1000).unwrap();
    }

    #[test]
    fn a_resolved_key_round_trips_and_is_a_hit_while_fresh() {
        let s = service();
        let db = MemoryStore::default();
        for (i, key) in [private_key("p1"), public_key("u1")]
            .into_iter()
            .enumerate()
        {
            let h = KeyHash::of(&s, format!("round-trip-key-{i}").as_bytes());
            assert_eq!(at(&s, &db, &h, NOW), (Lookup::Ask, Some(KeyEvent::Miss)));
            put(&s, &db, &h, &resolved(key.clone(), NOW + 60), NOW, NOW_MS).unwrap();
            assert_eq!(
                at(&s, &db, &h, NOW),
                (known(&key, false), Some(KeyEvent::Hit))
            );
            assert_eq!(
                at(&s, &db, &h, NOW + 59),
                (known(&key, false), Some(KeyEvent::Hit))
            );
            // Expired: ask again.
            assert_eq!(
                at(&s, &db, &h, NOW + 60),
                (Lookup::Ask, Some(KeyEvent::Miss))
            );
        }
    }

    #[test]
    fn an_expired_key_is_served_stale_only_while_the_service_is_failing() {
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"stale-key-0123456789");
        let key = private_key("p1");
        put(&s, &db, &h, &resolved(key.clone(), NOW + 60), NOW, NOW_MS).unwrap();
        let later = NOW + 600;
        fail(&s, &db, &h, later);
        assert_eq!(
            at(&s, &db, &h, later),
            (known(&key, true), Some(KeyEvent::StaleServed))
        );
        // The stream's own failed callout counts as a failure too.
        let in_hand = Resolution::Unavailable;
        let past_retry = later + 2;
        assert_eq!(
            at(&s, &db, &h, past_retry),
            (Lookup::Ask, Some(KeyEvent::Miss)),
            "the failure is remembered for retry_ms only"
        );
        assert_eq!(
            lookup(&s, &db, &h, past_retry, past_retry * 1000, Some(&in_hand)).unwrap(),
            (known(&key, true), Some(KeyEvent::StaleServed))
        );
        // Past max_stale: 503, never the old answer, and no callout.
        let too_late = NOW + 60 + 3600;
        fail(&s, &db, &h, too_late);
        assert_eq!(at(&s, &db, &h, too_late - 1).0, known(&key, true));
        assert_eq!(at(&s, &db, &h, too_late), (Lookup::Unavailable, None));
        // Nothing cached at all: 503.
        let other = KeyHash::of(&s, b"never-seen-key-0123456789");
        fail(&s, &db, &other, NOW);
        assert_eq!(at(&s, &db, &other, NOW), (Lookup::Unavailable, None));
        // An unavailable answer writes nothing.
        assert_eq!(
            put(&s, &db, &other, &Resolution::Unavailable, NOW, NOW_MS),
            Ok(None)
        );
        assert_eq!(db.get(&slot_key(&s, RESOLVED, &other)).unwrap().0, None);
    }

    #[test]
    fn a_fresh_entry_wins_over_a_failing_service() {
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"fresh-key-0123456789");
        let key = private_key("p1");
        put(&s, &db, &h, &resolved(key.clone(), NOW + 60), NOW, NOW_MS).unwrap();
        fail(&s, &db, &h, NOW);
        assert_eq!(
            at(&s, &db, &h, NOW),
            (known(&key, false), Some(KeyEvent::Hit))
        );
    }

    #[test]
    fn rejections_stay_fresh_for_their_ttl_and_keep_rejecting_while_unavailable() {
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"rejected-key-0123456789");
        put(
            &s,
            &db,
            &h,
            &rejected(Reason::KeyRejected, None),
            NOW,
            NOW_MS,
        )
        .unwrap();
        let no = Lookup::Rejected {
            reason: Reason::KeyRejected,
            retry_after: None,
        };
        assert_eq!(at(&s, &db, &h, NOW + 29), (no.clone(), Some(KeyEvent::Hit)));
        assert_eq!(
            at(&s, &db, &h, NOW + 30),
            (Lookup::Ask, Some(KeyEvent::Miss))
        );
        fail(&s, &db, &h, NOW + 40);
        assert_eq!(at(&s, &db, &h, NOW + 40), (no.clone(), None));
        let in_hand = Resolution::Unavailable;
        assert_eq!(
            lookup(&s, &db, &h, NOW + 5000, (NOW + 5000) * 1000, Some(&in_hand)).unwrap(),
            (no, None),
            "a rejection is never softened by an outage"
        );
    }

    #[test]
    fn over_quota_rejections_live_for_their_retry_after() {
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"quota-key-0123456789");
        put(
            &s,
            &db,
            &h,
            &rejected(Reason::OverQuota, Some(120)),
            NOW,
            NOW_MS,
        )
        .unwrap();
        assert_eq!(
            at(&s, &db, &h, NOW + 100).0,
            Lookup::Rejected {
                reason: Reason::OverQuota,
                retry_after: Some(20)
            }
        );
        assert_eq!(at(&s, &db, &h, NOW + 120).0, Lookup::Ask);
        // A Retry-After beyond max_ttl is capped for the cache (not for the client).
        let h = KeyHash::of(&s, b"quota-key-long-0123456789");
        let r = rejected(Reason::OverFreeQuota, Some(86_400));
        put(&s, &db, &h, &r, NOW, NOW_MS).unwrap();
        assert_eq!(
            at(&s, &db, &h, NOW + 299).0,
            Lookup::Rejected {
                reason: Reason::OverFreeQuota,
                retry_after: Some(1)
            }
        );
        assert_eq!(at(&s, &db, &h, NOW + 300).0, Lookup::Ask);
    }

    #[test]
    fn an_answer_replaces_the_other_kind_for_the_same_key() {
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"flipping-key-0123456789");
        let key = private_key("p1");
        put(&s, &db, &h, &resolved(key.clone(), NOW + 60), NOW, NOW_MS).unwrap();
        put(
            &s,
            &db,
            &h,
            &rejected(Reason::KeyForbidden, None),
            NOW + 1,
            NOW_MS + 1000,
        )
        .unwrap();
        assert_eq!(
            read(&s, &db, RESOLVED, &h).unwrap(),
            None,
            "the rejection cleared the resolved entry"
        );
        assert_eq!(
            at(&s, &db, &h, NOW + 2).0,
            Lookup::Rejected {
                reason: Reason::KeyForbidden,
                retry_after: None
            }
        );
        put(
            &s,
            &db,
            &h,
            &resolved(key.clone(), NOW + 90),
            NOW + 3,
            NOW_MS + 3000,
        )
        .unwrap();
        assert_eq!(read(&s, &db, REJECTED, &h).unwrap(), None);
        assert_eq!(at(&s, &db, &h, NOW + 4).0, known(&key, false));
        // Expired and failing: the stale key, not the old rejection.
        fail(&s, &db, &h, NOW + 100);
        assert_eq!(at(&s, &db, &h, NOW + 100).0, known(&key, true));
    }

    #[test]
    fn a_rejection_older_than_the_resolution_does_not_speak_for_the_key() {
        // Two workers raced: the rejection was written but its clearing of the resolved entry
        // was lost, then the key resolved again. The resolution is newer: it wins once stale.
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"raced-key-0123456789");
        let key = private_key("p1");
        let old = encode(&Entry::Rejected {
            hash: h.0,
            fetched_ms: NOW_MS,
            until: NOW + 30,
            reason: Reason::KeyRejected,
            retry_after: None,
        });
        db.set(&slot_key(&s, REJECTED, &h), &old, 0).unwrap();
        let new = encode(&Entry::Resolved {
            hash: h.0,
            fetched_ms: NOW_MS + 1,
            fresh_until: NOW + 1,
            stale_until: NOW + 3600,
            key: key.clone(),
        });
        db.set(&slot_key(&s, RESOLVED, &h), &new, 0).unwrap();
        fail(&s, &db, &h, NOW + 2);
        assert_eq!(at(&s, &db, &h, NOW + 2).0, known(&key, true));
    }

    #[test]
    fn junk_keys_only_ever_replace_rejections() {
        let mut s = service();
        s.cache.entries = 4;
        s.cache.rejections = 4;
        let db = MemoryStore::default();
        let good: Vec<KeyHash> = (0..4)
            .map(|i| KeyHash::of(&s, format!("good-key-{i}-0123456789").as_bytes()))
            .collect();
        for (i, h) in good.iter().enumerate() {
            let key = private_key(&format!("p{i}"));
            put(&s, &db, h, &resolved(key, NOW + 60), NOW, NOW_MS).unwrap();
        }
        let before: Vec<Option<Vec<u8>>> = (0..4)
            .map(|i| db.get(&format!("{}.k.{i}", s.store_prefix)).unwrap().0)
            .collect();
        for i in 0..500 {
            let junk = KeyHash::of(&s, format!("junk-{i}-0123456789").as_bytes());
            put(
                &s,
                &db,
                &junk,
                &rejected(Reason::KeyRejected, None),
                NOW,
                NOW_MS,
            )
            .unwrap();
        }
        let after: Vec<Option<Vec<u8>>> = (0..4)
            .map(|i| db.get(&format!("{}.k.{i}", s.store_prefix)).unwrap().0)
            .collect();
        assert_eq!(before, after, "no resolved slot was touched");
        for h in &good {
            // Whichever keys still own their slot are hits; the junk changed nothing.
            let (l, _) = at(&s, &db, h, NOW + 1);
            assert!(matches!(l, Lookup::Known { .. } | Lookup::Ask), "{l:?}");
        }
        let owner = good
            .iter()
            .filter(|h| read(&s, &db, RESOLVED, h).unwrap().is_some())
            .count();
        assert!(owner >= 1);
        for h in good
            .iter()
            .filter(|h| read(&s, &db, RESOLVED, h).unwrap().is_some())
        {
            assert!(matches!(at(&s, &db, h, NOW + 1).0, Lookup::Known { .. }));
        }
    }

    #[test]
    fn another_key_in_the_same_slot_is_not_mistaken_for_this_one() {
        let mut s = service();
        s.cache.entries = 1;
        s.cache.rejections = 1;
        let db = MemoryStore::default();
        let a = KeyHash::of(&s, b"first-key-0123456789");
        let b = KeyHash::of(&s, b"second-key-0123456789");
        assert_eq!(slot_key(&s, RESOLVED, &a), slot_key(&s, RESOLVED, &b));
        let key = private_key("p1");
        put(&s, &db, &a, &resolved(key.clone(), NOW + 60), NOW, NOW_MS).unwrap();
        assert_eq!(at(&s, &db, &b, NOW).0, Lookup::Ask);
        fail(&s, &db, &b, NOW);
        assert_eq!(at(&s, &db, &b, NOW).0, Lookup::Unavailable);
        // b's rejection does not clear a's resolved entry (another key's stays).
        put(
            &s,
            &db,
            &b,
            &rejected(Reason::KeyRejected, None),
            NOW,
            NOW_MS,
        )
        .unwrap();
        assert_eq!(at(&s, &db, &a, NOW).0, known(&key, false));
        // b resolved replaces a in the one slot.
        let other = private_key("p2");
        put(&s, &db, &b, &resolved(other.clone(), NOW + 60), NOW, NOW_MS).unwrap();
        assert_eq!(at(&s, &db, &b, NOW).0, known(&other, false));
        assert_eq!(at(&s, &db, &a, NOW).0, Lookup::Ask);
    }

    #[test]
    fn the_entries_count_counts_slots_filled_once() {
        let s = service();
        let db = MemoryStore::default();
        let a = KeyHash::of(&s, b"count-key-a-0123456789");
        let b = KeyHash::of(&s, b"count-key-b-0123456789");
        let key = private_key("p1");
        let ok = resolved(key.clone(), NOW + 60);
        let no = rejected(Reason::KeyRejected, None);
        assert_eq!(put(&s, &db, &a, &ok, NOW, NOW_MS), Ok(Some(1)));
        assert_eq!(put(&s, &db, &a, &ok, NOW, NOW_MS), Ok(None), "overwritten");
        assert_eq!(put(&s, &db, &b, &ok, NOW, NOW_MS), Ok(Some(2)));
        assert_eq!(put(&s, &db, &a, &no, NOW, NOW_MS), Ok(Some(3)));
        // Flipping back and forth refills cleared slots: not new slots.
        for _ in 0..5 {
            assert_eq!(put(&s, &db, &a, &ok, NOW, NOW_MS), Ok(None));
            assert_eq!(put(&s, &db, &a, &no, NOW, NOW_MS), Ok(None));
        }
        assert_eq!(
            db.get(&count_key(&s)).unwrap().0,
            Some(3u64.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn garbage_in_a_slot_reads_as_empty() {
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"garbage-key-0123456789");
        let key = private_key("p1");
        let good = encode(&Entry::Resolved {
            hash: h.0,
            fetched_ms: NOW_MS,
            fresh_until: NOW + 60,
            stale_until: NOW + 600,
            key: key.clone(),
        });
        let mut wrong_version = good.clone();
        wrong_version[0] = 2;
        let mut wrong_table = good.clone();
        wrong_table[1] = b'x';
        let mut bad_json = good.clone();
        bad_json.truncate(good.len() - 3);
        let mut bad_kind = good.clone();
        let text = String::from_utf8(bad_kind.split_off(HEAD)).unwrap();
        bad_kind.extend(text.replace("private_key", "secret_key").into_bytes());
        let mut bad_reason = encode(&Entry::Rejected {
            hash: h.0,
            fetched_ms: NOW_MS,
            until: NOW + 60,
            reason: Reason::KeyRejected,
            retry_after: None,
        });
        *bad_reason.last_mut().unwrap() = 9;
        for junk in [
            vec![],
            vec![0],
            vec![1],
            vec![1, b'k'],
            b"hello world".to_vec(),
            good[..HEAD - 1].to_vec(),
            wrong_version,
            wrong_table,
            bad_json,
            bad_kind,
        ] {
            assert_eq!(decode(&junk), None, "{junk:?}");
            db.set(&slot_key(&s, RESOLVED, &h), &junk, 0).unwrap();
            assert_eq!(at(&s, &db, &h, NOW).0, Lookup::Ask);
        }
        assert_eq!(decode(&bad_reason), None);
        db.set(&slot_key(&s, REJECTED, &h), &bad_reason, 0).unwrap();
        assert_eq!(at(&s, &db, &h, NOW).0, Lookup::Ask);
        // A good entry over garbage reads back.
        put(&s, &db, &h, &resolved(key.clone(), NOW + 60), NOW, NOW_MS).unwrap();
        assert_eq!(at(&s, &db, &h, NOW).0, known(&key, false));
        assert!(decode(&good).is_some());
    }

    #[test]
    fn the_streams_own_answer_comes_first() {
        let s = service();
        let db = MemoryStore::default();
        let h = KeyHash::of(&s, b"in-hand-key-0123456789");
        let key = private_key("p1");
        let in_hand = resolved(key.clone(), NOW + 60);
        assert_eq!(
            lookup(&s, &db, &h, NOW, NOW_MS, Some(&in_hand)).unwrap(),
            (known(&key, false), None)
        );
        let in_hand = rejected(Reason::OverQuota, Some(7));
        assert_eq!(
            lookup(&s, &db, &h, NOW, NOW_MS, Some(&in_hand)).unwrap(),
            (
                Lookup::Rejected {
                    reason: Reason::OverQuota,
                    retry_after: Some(7)
                },
                None
            )
        );
    }

    #[test]
    fn a_failing_store_is_an_error_not_a_verdict() {
        struct Broken;
        impl SharedStore for Broken {
            fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable> {
                Err(Unavailable)
            }
            fn set(&self, _: &str, _: &[u8], _: u32) -> Result<bool, Unavailable> {
                Err(Unavailable)
            }
        }
        let s = service();
        let h = KeyHash::of(&s, b"broken-key-0123456789");
        assert_eq!(lookup(&s, &Broken, &h, NOW, NOW_MS, None), Err(Unavailable));
        let r = resolved(private_key("p1"), NOW + 60);
        assert_eq!(put(&s, &Broken, &h, &r, NOW, NOW_MS), Err(Unavailable));
        let _ = Host::default();
    }
}

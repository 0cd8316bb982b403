//! The key service's shared cache ([`crate::core::keyservice::cache`]; a child module of it,
//! kept here so that cache.rs stays under 900 lines).

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

fn at(s: &KeyService, db: &MemoryStore, hash: &KeyHash, now: u64) -> (Lookup, Option<KeyEvent>) {
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

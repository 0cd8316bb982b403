//! Fetching an assertion source's keys through the stream's callout machinery, and what every
//! worker of the process shares of them: two shared-data entries per source.
//!
//! - `<store_key>`: the last good answer, with the time it was fetched: the JWK set's bytes, or
//!   for a PEM-per-`kid` source each `kid` fetched so far with its PEM (at most
//!   [`MAX_PEM_KIDS`], the oldest out). Only a good answer is written here, so a failed or
//!   garbage fetch never replaces the last good set. Every worker parses it once per version.
//! - `<store_key>.f`: the source's single flight (until when a stream's fetch is in the air),
//!   until when a failed fetch holds off the next one ([`RETRY_MS`]), and when the last fetch
//!   started (an unknown `kid` fetches again at most once per `refetch_seconds`).

use std::borrow::Cow;
use std::cell::Cell;

use crate::core::callout::{Callout, CalloutAnswer, Wait};
use crate::core::jose::PublicKeys;
use crate::core::shared::{self, SharedStore, Unavailable};

use super::keys::KeyFetch;

/// After a failed fetch, no new fetch of that source for this long (milliseconds): requests
/// use the last good set, or are refused while there is none usable.
pub const RETRY_MS: u64 = 2000;
/// A PEM-per-`kid` source keeps at most this many keys (the oldest fetched goes).
pub const MAX_PEM_KIDS: usize = 16;

const VERSION: u8 = 1;
const JWKS: u8 = 0;
const PEM: u8 = 1;
const FLIGHT_LEN: usize = 1 + 8 * 3;

/// Why a fetch is wanted: each has its own rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No usable keys (never fetched, or older than `max_stale_seconds`).
    Missing,
    /// The token's `kid` is not in a usable set: at most once per `refetch_seconds`.
    UnknownKid,
    /// The set is older than `refresh_seconds` (still usable).
    Refresh,
}

/// The source's flight record, as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flight {
    /// A stream's fetch is in the air until then (ms; 0: none).
    until_ms: u64,
    /// The last fetch failed: none before then (ms).
    failed_until_ms: u64,
    /// When the last fetch started (seconds).
    started: u64,
}

fn flight_key(fetch: &KeyFetch) -> String {
    format!("{}.f", fetch.store_key)
}

fn encode_flight(f: &Flight) -> Vec<u8> {
    let mut out = Vec::with_capacity(FLIGHT_LEN);
    out.push(VERSION);
    out.extend_from_slice(&f.until_ms.to_be_bytes());
    out.extend_from_slice(&f.failed_until_ms.to_be_bytes());
    out.extend_from_slice(&f.started.to_be_bytes());
    out
}

/// Reads [`encode_flight`]; anything unreadable is no flight and no failure.
fn decode_flight(bytes: Option<&[u8]>) -> Flight {
    let Some([VERSION, rest @ ..]) = bytes else {
        return Flight::default();
    };
    let Some((a, rest)) = rest.split_first_chunk::<8>() else {
        return Flight::default();
    };
    let Some((b, rest)) = rest.split_first_chunk::<8>() else {
        return Flight::default();
    };
    let Some((c, _)) = rest.split_first_chunk::<8>() else {
        return Flight::default();
    };
    Flight {
        until_ms: u64::from_be_bytes(*a),
        failed_until_ms: u64::from_be_bytes(*b),
        started: u64::from_be_bytes(*c),
    }
}

/// What the flight allows, as a pure rule on its record.
fn allowed(f: &Flight, fetch: &KeyFetch, why: Why, now_ms: u64) -> Join {
    if f.until_ms > now_ms {
        return Join::Wait(Wait {
            flight: flight_id(fetch),
            until_ms: f.until_ms,
        });
    }
    if f.failed_until_ms > now_ms {
        return Join::No;
    }
    let now = now_ms / 1000;
    if why == Why::UnknownKid
        && f.started != 0
        && now < f.started.saturating_add(fetch.refetch_seconds)
    {
        return Join::No;
    }
    Join::Owner
}

/// What a request that wants the source's keys fetched does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Fetch: this stream owns the flight and must end it ([`land`], or [`abandon`]).
    Owner,
    /// Another stream is fetching: wait for it.
    Wait(Wait),
    /// No fetch now (one just failed, or an unknown `kid` fetched too recently).
    No,
}

/// The flight id streams wait on (a wake names it): the same for every worker.
pub fn flight_id(fetch: &KeyFetch) -> u64 {
    // FNV-1a over a prefix and the store key: distinct from the key service's flights (the
    // first 8 bytes of a SHA-256) by construction of the input, not by luck alone.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"devgate.edge.flight:"
        .iter()
        .chain(fetch.store_key.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether a fetch for `why` would be owned or waited on now (read only: what
/// [`super::EdgeKeys::want`] answers; [`join`] decides for good).
pub fn may_fetch<S: SharedStore + ?Sized>(
    fetch: &KeyFetch,
    store: &S,
    why: Why,
    now_ms: u64,
) -> bool {
    let Ok((value, _)) = store.get(&flight_key(fetch)) else {
        return false;
    };
    allowed(&decode_flight(value.as_deref()), fetch, why, now_ms) != Join::No
}

/// Joins the source's flight at `now_ms` for `why`: owns a new one (the fetch starts now),
/// waits for the one in the air, or may not fetch.
pub fn join<S: SharedStore + ?Sized>(
    fetch: &KeyFetch,
    store: &S,
    why: Why,
    now_ms: u64,
) -> Result<Join, Unavailable> {
    let outcome = Cell::new(Join::No);
    shared::try_update(store, &flight_key(fetch), |prev| {
        let mut f = decode_flight(prev);
        let joined = allowed(&f, fetch, why, now_ms);
        outcome.set(joined);
        if joined != Join::Owner {
            return Err(());
        }
        f.until_ms = now_ms.saturating_add(fetch.timeout_ms).saturating_add(1000);
        f.started = now_ms / 1000;
        Ok(encode_flight(&f))
    })?
    .ok();
    Ok(outcome.get())
}

/// The owner's fetch ended (`good`: a usable set was stored): the flight is over, and a failure
/// holds off the next fetch for [`RETRY_MS`].
pub fn land<S: SharedStore + ?Sized>(
    fetch: &KeyFetch,
    store: &S,
    good: bool,
    now_ms: u64,
) -> Result<(), Unavailable> {
    shared::update(store, &flight_key(fetch), |prev| {
        let mut f = decode_flight(prev);
        f.until_ms = 0;
        f.failed_until_ms = if good {
            0
        } else {
            now_ms.saturating_add(RETRY_MS)
        };
        encode_flight(&f)
    })
}

/// The owner went away before its fetch ended: the flight is over, so a waiter fetches next.
pub fn abandon<S: SharedStore + ?Sized>(
    fetch: &KeyFetch,
    store: &S,
    now_ms: u64,
) -> Result<(), Unavailable> {
    shared::try_update(store, &flight_key(fetch), |prev| {
        let mut f = decode_flight(prev);
        if f.until_ms <= now_ms {
            return Err(());
        }
        f.until_ms = 0;
        Ok(encode_flight(&f))
    })
    .map(|_| ())
}

/// The fetch's GET: the JWK set's path, or for a PEM per `kid` the path with `kid` appended
/// (`kid` is 1-128 of `[A-Za-z0-9._-]`, [`crate::core::jose::unverified_kid`], so it is a path
/// segment as is).
pub fn callout(fetch: &KeyFetch, kid: Option<&str>) -> Callout {
    let mut path = fetch.path.clone();
    if let Some(kid) = kid {
        path.push_str(kid);
    }
    Callout {
        cluster: fetch.cluster.clone(),
        headers: vec![
            (Cow::Borrowed(":method"), b"GET".to_vec()),
            (Cow::Borrowed(":path"), path.into_bytes()),
            (
                Cow::Borrowed(":authority"),
                fetch.authority.as_bytes().to_vec(),
            ),
            (
                Cow::Borrowed("accept"),
                b"application/json, application/x-pem-file, */*".to_vec(),
            ),
        ],
        timeout_ms: fetch.timeout_ms,
    }
}

/// A source's last good keys as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A JWK set's bytes.
    Jwks(Vec<u8>),
    /// Each `kid` fetched so far and its PEM, oldest first.
    Pem(Vec<(String, Vec<u8>)>),
}

fn encode_stored(at: u64, stored: &Stored) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&at.to_be_bytes());
    match stored {
        Stored::Jwks(body) => {
            out.push(JWKS);
            out.extend_from_slice(body);
        }
        Stored::Pem(list) => {
            out.push(PEM);
            for (kid, pem) in list {
                // kid ≤ 128 bytes, a PEM ≤ the answer's bound: both fit their lengths.
                let (Ok(k), Ok(p)) = (u8::try_from(kid.len()), u32::try_from(pem.len())) else {
                    continue;
                };
                out.push(k);
                out.extend_from_slice(kid.as_bytes());
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(pem);
            }
        }
    }
    out
}

/// Reads [`encode_stored`]: the fetch time and the keys' bytes.
pub fn decode_stored(bytes: &[u8]) -> Option<(u64, Stored)> {
    let [VERSION, rest @ ..] = bytes else {
        return None;
    };
    let (at, rest) = rest.split_first_chunk::<8>()?;
    let (kind, mut rest) = rest.split_first()?;
    let stored = match *kind {
        JWKS => Stored::Jwks(rest.to_vec()),
        PEM => {
            let mut list = Vec::new();
            while let Some((len, tail)) = rest.split_first() {
                let (kid, tail) = tail.split_at_checked(usize::from(*len))?;
                let (plen, tail) = tail.split_first_chunk::<4>()?;
                let plen = usize::try_from(u32::from_be_bytes(*plen)).ok()?;
                let (pem, tail) = tail.split_at_checked(plen)?;
                list.push((String::from_utf8(kid.to_vec()).ok()?, pem.to_vec()));
                rest = tail;
            }
            Stored::Pem(list)
        }
        _ => return None,
    };
    Some((u64::from_be_bytes(*at), stored))
}

/// The keys of a stored set, and for a PEM-per-`kid` source the most recently fetched `kid`
/// (what a refresh fetches again). `None`: nothing usable.
pub fn parse(stored: &Stored) -> Option<(PublicKeys, Option<String>)> {
    match stored {
        Stored::Jwks(body) => PublicKeys::from_jwks(body).ok().map(|k| (k, None)),
        Stored::Pem(list) => {
            let mut keys: Option<PublicKeys> = None;
            for (kid, pem) in list {
                if let Ok(one) = PublicKeys::from_pem(kid, pem) {
                    keys = Some(match keys {
                        Some(k) => k.merged(one),
                        None => one,
                    });
                }
            }
            let last = list.last().map(|(kid, _)| kid.clone());
            keys.map(|k| (k, last))
        }
    }
}

/// What the answer to a fetch was worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A usable set: stored for every worker.
    Good,
    /// No answer, not a 200, or nothing usable in it: the last good set stays.
    Failed,
}

/// Takes the answer of a fetch made at `now` (seconds): a usable set replaces the stored one
/// (a JWK set whole; a PEM is added to the source's, replacing the same `kid`), anything else
/// leaves it untouched. `pem_kid`: the `kid` fetched, for a PEM-per-`kid` source.
pub fn take_answer<S: SharedStore + ?Sized>(
    fetch: &KeyFetch,
    store: &S,
    pem_kid: Option<&str>,
    answer: CalloutAnswer<'_>,
    now: u64,
) -> Result<Answer, Unavailable> {
    if answer.status != Some(200) || answer.body.is_empty() {
        return Ok(Answer::Failed);
    }
    let body = answer.body;
    match pem_kid {
        None => {
            if PublicKeys::from_jwks(body).is_err() {
                return Ok(Answer::Failed);
            }
            let value = encode_stored(now, &Stored::Jwks(body.to_vec()));
            store.set(&fetch.store_key, &value, 0)?;
        }
        Some(kid) => {
            if PublicKeys::from_pem(kid, body).is_err() {
                return Ok(Answer::Failed);
            }
            shared::update(store, &fetch.store_key, |prev| {
                let mut list = match prev.and_then(decode_stored) {
                    Some((_, Stored::Pem(list))) => list,
                    _ => Vec::new(),
                };
                list.retain(|(k, _)| k != kid);
                if list.len() >= MAX_PEM_KIDS {
                    list.remove(0);
                }
                list.push((kid.to_string(), body.to_vec()));
                encode_stored(now, &Stored::Pem(list))
            })?;
        }
    }
    Ok(Answer::Good)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::shared::MemoryStore;

    pub(crate) fn fetch() -> KeyFetch {
        KeyFetch {
            cluster: "idp".into(),
            authority: "idp.example".into(),
            path: "/keys/".into(),
            refresh_seconds: 300,
            max_stale_seconds: 3600,
            refetch_seconds: 30,
            timeout_ms: 1000,
            store_key: "devgate.edge.test".into(),
        }
    }

    const T: u64 = 1_700_000_000_000;

    #[test]
    fn one_owner_the_others_wait_then_it_lands() {
        let f = fetch();
        let db = MemoryStore::default();
        assert!(may_fetch(&f, &db, Why::Missing, T));
        assert_eq!(join(&f, &db, Why::Missing, T), Ok(Join::Owner));
        let wait = Join::Wait(Wait {
            flight: flight_id(&f),
            until_ms: T + 2000,
        });
        assert_eq!(join(&f, &db, Why::Missing, T + 1), Ok(wait));
        assert_eq!(join(&f, &db, Why::Refresh, T + 1), Ok(wait));
        assert!(may_fetch(&f, &db, Why::UnknownKid, T + 1));
        land(&f, &db, true, T + 50).unwrap();
        assert_eq!(join(&f, &db, Why::Refresh, T + 60), Ok(Join::Owner));
        // A flight whose owner vanished ends by itself, or when abandoned.
        abandon(&f, &db, T + 70).unwrap();
        assert_eq!(join(&f, &db, Why::Missing, T + 80), Ok(Join::Owner));
        assert_eq!(join(&f, &db, Why::Missing, T + 80 + 2000), Ok(Join::Owner));
    }

    #[test]
    fn a_failure_holds_off_fetches_for_retry_ms() {
        let f = fetch();
        let db = MemoryStore::default();
        assert_eq!(join(&f, &db, Why::Missing, T), Ok(Join::Owner));
        land(&f, &db, false, T + 10).unwrap();
        assert_eq!(join(&f, &db, Why::Missing, T + 11), Ok(Join::No));
        assert!(!may_fetch(&f, &db, Why::Missing, T + 11));
        assert_eq!(
            join(&f, &db, Why::Missing, T + 10 + RETRY_MS),
            Ok(Join::Owner)
        );
    }

    #[test]
    fn an_unknown_kid_fetches_at_most_once_per_refetch_seconds() {
        let f = fetch();
        let db = MemoryStore::default();
        assert_eq!(join(&f, &db, Why::UnknownKid, T), Ok(Join::Owner));
        land(&f, &db, true, T + 10).unwrap();
        assert_eq!(join(&f, &db, Why::UnknownKid, T + 1000), Ok(Join::No));
        assert!(!may_fetch(&f, &db, Why::UnknownKid, T + 29_999));
        // Other reasons are not held by it.
        assert!(may_fetch(&f, &db, Why::Missing, T + 1000));
        assert_eq!(join(&f, &db, Why::UnknownKid, T + 30_000), Ok(Join::Owner));
    }

    #[test]
    fn stored_sets_round_trip_and_garbage_is_nothing() {
        let jwks = Stored::Jwks(b"{\"keys\":[]}".to_vec());
        assert_eq!(decode_stored(&encode_stored(7, &jwks)), Some((7, jwks)));
        let pem = Stored::Pem(vec![
            ("a".into(), b"-----BEGIN".to_vec()),
            ("kid-2".into(), Vec::new()),
        ]);
        assert_eq!(decode_stored(&encode_stored(9, &pem)), Some((9, pem)));
        for junk in [
            &b""[..],
            b"\x02",
            b"\x01abc",
            b"\x01\0\0\0\0\0\0\0\x01\x01\x05ab",
        ] {
            assert_eq!(decode_stored(junk), None);
        }
        assert_eq!(decode_flight(Some(b"junk")), Flight::default());
    }

    #[test]
    fn a_failed_or_garbage_answer_never_replaces_the_stored_set() {
        let f = fetch();
        let db = MemoryStore::default();
        let before = encode_stored(5, &Stored::Jwks(b"good".to_vec()));
        db.set(&f.store_key, &before, 0).unwrap();
        let answers = [
            CalloutAnswer::FAILED,
            CalloutAnswer {
                status: Some(500),
                retry_after: None,
                body: b"{}",
            },
            CalloutAnswer {
                status: Some(200),
                retry_after: None,
                body: b"<html>not keys</html>",
            },
        ];
        for a in answers {
            assert_eq!(take_answer(&f, &db, None, a, 10), Ok(Answer::Failed));
            assert_eq!(take_answer(&f, &db, Some("k"), a, 10), Ok(Answer::Failed));
            assert_eq!(db.get(&f.store_key).unwrap().0, Some(before.clone()));
        }
    }

    #[test]
    fn the_callout_asks_the_path_or_the_path_and_kid() {
        let f = fetch();
        let c = callout(&f, Some("abc-1"));
        assert_eq!(c.cluster, "idp");
        assert_eq!(c.headers[1].1, b"/keys/abc-1");
        assert_eq!(c.headers[2].1, b"idp.example");
        assert_eq!(callout(&f, None).headers[1].1, b"/keys/");
        assert_ne!(flight_id(&f), 0);
    }
}

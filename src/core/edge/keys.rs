//! Fetched issuer keys and the verified-assertion cache, as the decision sees them.
//!
//! [`EdgeKeys`] is the interface between the decision and the worker's keys. Each worker keeps
//! an [`EdgeWorker`]: its parsed copy of every fetched source's keys (the fetch and the shared
//! entries are [`super::fetch`]'s) and its verified-assertion cache ([`super::cache`]). A
//! request's decision sees them through an [`EdgeView`], which also records the fetch the
//! decision wants ([`EdgeView::planned`]): the stream then owns or waits on the source's single
//! flight.

use std::cell::{Cell, RefCell};

use crate::core::jose::PublicKeys;
use crate::core::shared::SharedStore;

use super::super::decision::Identity;
use super::cache::AssertionCache;
use super::fetch::{decode_stored, may_fetch, parse, Why};
use super::{AssertionSource, EdgePolicy, KeyLocation};

/// The gauge that is 1 while a fetched assertion source has no usable keys.
pub const DEGRADED_GAUGE: &str = "devgate.edge.keys_degraded";

/// Where and how often a source's keys are fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFetch {
    /// The Envoy cluster.
    pub cluster: String,
    /// `:authority` of the fetch. Defaults to the cluster name.
    pub authority: String,
    /// `:path` of the JWK set, or the prefix a `kid` is appended to (PEM per `kid`).
    pub path: String,
    /// A good key set is fetched again after this many seconds.
    pub refresh_seconds: u64,
    /// Past this many seconds without a good fetch the source is degraded: its assertions are
    /// refused (`edge_keys_unavailable`), never accepted unchecked.
    pub max_stale_seconds: u64,
    /// An unknown `kid` fetches again at most once per this many seconds (per process).
    pub refetch_seconds: u64,
    /// Timeout of one fetch.
    pub timeout_ms: u64,
    /// Where this source's keys live in shared data (made from the cluster, authority and path).
    pub store_key: String,
}

/// The keys of a fetched source as this worker knows them.
#[derive(Clone, Copy, Debug)]
pub enum KeysAt<'a> {
    /// Usable keys (fetched within `max_stale_seconds`).
    Ready(&'a PublicKeys),
    /// None usable: never fetched, or too long ago.
    Unavailable,
}

/// The decision's view of fetched keys and of the verified-assertion cache (one per worker).
pub trait EdgeKeys {
    /// The keys of the fetched assertion source at `source` (its index in `edge.assertions`).
    fn keys(&self, source: usize) -> KeysAt<'_>;
    /// The token names `kid` (`None`: unreadable) and the keys have none such, or there are no
    /// usable keys: plan a fetch. `true`: a fetch is planned and the request must wait for it
    /// (the decision asks); `false`: none may be made now (one was made too recently, or just
    /// failed): decide with what there is.
    fn want(&self, source: usize, kid: Option<&str>) -> bool;
    /// A verified assertion of `source` seen before, still valid at `now`: its developer.
    fn cached(&self, source: usize, token: &[u8], now: u64) -> Option<Identity>;
    /// Remembers that `token` of `source` verified to `identity` until `exp`.
    fn remember(&self, source: usize, token: &[u8], identity: &Identity, exp: u64);
}

/// One fetched source as this worker holds it: the set parsed once per shared-data version.
#[derive(Debug, Default)]
struct Held {
    /// The source's `store_key` (empty: an inline source, nothing held).
    store_key: String,
    /// Version of the shared-data entry the set was read from (0: none read).
    cas: u32,
    keys: Option<PublicKeys>,
    /// When the set was fetched (seconds).
    fetched_at: u64,
    /// A PEM-per-`kid` source's most recently fetched `kid` (what a refresh fetches).
    last_kid: Option<String>,
    /// Bumped each time the set changes: cached assertions of another generation are gone.
    generation: u64,
    /// When a request last looked for a newer set in shared data (ms): at most once a second
    /// per worker while the set is missing or due (a stream about to fetch always looks).
    looked_ms: u64,
}

/// The edge sources' state of one worker: each fetched source's parsed keys (re-read only when
/// the shared-data entry's version changed, so a request costs no parse) and the
/// verified-assertion cache.
#[derive(Debug, Default)]
pub struct EdgeWorker {
    held: Vec<Held>,
    cache: RefCell<AssertionCache>,
}

impl EdgeWorker {
    /// Follows `edge`'s sources: a source whose store key changed (another configuration)
    /// starts over, and so does the cache.
    fn adopt(&mut self, edge: &EdgePolicy) {
        let same = self.held.len() == edge.assertions.len()
            && self
                .held
                .iter()
                .zip(&edge.assertions)
                .all(|(h, a)| h.store_key == store_key(a));
        if same {
            return;
        }
        self.held = edge
            .assertions
            .iter()
            .map(|a| Held {
                store_key: store_key(a).to_string(),
                ..Held::default()
            })
            .collect();
        self.cache.get_mut().clear();
    }

    /// Re-reads source `i`'s set from shared data when its version changed since this worker
    /// parsed it. A stored set that does not parse is skipped (the copy held stays).
    pub fn load<S: SharedStore + ?Sized>(&mut self, i: usize, store: &S) -> bool {
        let Some(held) = self.held.get_mut(i) else {
            return false;
        };
        if held.store_key.is_empty() || store.version(&held.store_key) == Ok(held.cas) {
            return false;
        }
        let Ok((Some(bytes), cas)) = store.get(&held.store_key) else {
            return false;
        };
        held.cas = cas;
        let Some((at, keys, last_kid)) = decode_stored(&bytes)
            .and_then(|(at, stored)| parse(&stored).map(|(k, last)| (at, k, last)))
        else {
            return false;
        };
        held.keys = Some(keys);
        held.fetched_at = at;
        held.last_kid = last_kid;
        held.generation = held.generation.wrapping_add(1);
        self.cache.get_mut().drop_source(i);
        true
    }

    /// The decision's view for a request at `now_ms`, under `edge`: a fetched set that is
    /// missing or due for a refresh is first looked up again in shared data (another worker may
    /// have fetched it), at most once a second: in Wasm looking copies the stored set. `may_fetch`: the request may still plan a fetch (not after one it
    /// already waited for).
    pub fn view<'w, S: SharedStore>(
        &'w mut self,
        edge: &'w EdgePolicy,
        now_ms: u64,
        store: &'w S,
        may_fetch: bool,
    ) -> EdgeView<'w> {
        self.adopt(edge);
        let now = now_ms / 1000;
        for (i, a) in edge.assertions.iter().enumerate() {
            let Some(fetch) = fetched(a) else {
                continue;
            };
            let Some(held) = self.held.get_mut(i) else {
                continue;
            };
            let due = held.keys.is_none() || age(held, now) > fetch.refresh_seconds;
            if due && now_ms >= held.looked_ms.saturating_add(1000) {
                held.looked_ms = now_ms;
                self.load(i, store);
            }
        }
        EdgeView {
            edge,
            held: &self.held,
            cache: &self.cache,
            store,
            now_ms,
            may_fetch,
            planned: RefCell::new(None),
            consulted: Cell::new(0),
            counts: Cell::new((0, 0)),
        }
    }

    /// Tests: holds `keys` for source `i` of `edge` as fetched at `at` (a new generation), as if
    /// read from shared data.
    #[cfg(test)]
    pub(crate) fn hold(&mut self, edge: &EdgePolicy, i: usize, keys: PublicKeys, at: u64) {
        self.adopt(edge);
        if let Some(h) = self.held.get_mut(i) {
            h.keys = Some(keys);
            h.fetched_at = at;
            h.generation = h.generation.wrapping_add(1);
            h.cas = u32::MAX;
        }
        self.cache.get_mut().drop_source(i);
    }

    /// Whether source `i` of `edge` has usable keys at `now` (inline keys always do): the
    /// degraded gauge after a fetch of it.
    pub fn usable(&self, edge: &EdgePolicy, i: usize, now: u64) -> bool {
        match (edge.assertions.get(i).map(fetched), self.held.get(i)) {
            (Some(None), _) => true,
            (Some(Some(fetch)), Some(held)) => usable(held, fetch, now),
            _ => false,
        }
    }
}

/// A fetch a request's decision planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The source's index in `edge.assertions`.
    pub source: usize,
    /// Why.
    pub why: Why,
    /// The `kid` to fetch (a PEM-per-`kid` source).
    pub kid: Option<String>,
}

/// [`EdgeKeys`] over one worker's [`EdgeWorker`], for one request.
pub struct EdgeView<'w> {
    edge: &'w EdgePolicy,
    held: &'w [Held],
    cache: &'w RefCell<AssertionCache>,
    store: &'w dyn SharedStore,
    now_ms: u64,
    may_fetch: bool,
    planned: RefCell<Option<Planned>>,
    /// Sources the decision looked at (bit `i`), for the refresh and the gauge.
    consulted: Cell<u64>,
    /// Cache hits and misses.
    counts: Cell<(u32, u32)>,
}

impl EdgeView<'_> {
    /// The fetch the decision planned, if any.
    pub fn planned(&self) -> Option<Planned> {
        self.planned.borrow().clone()
    }

    /// Cache hits and misses of this decision.
    pub fn counts(&self) -> (u32, u32) {
        self.counts.get()
    }

    /// A fetched source the decision looked at whose keys are usable but older than
    /// `refresh_seconds`: the request that notices refreshes it (one per process).
    pub fn refresh_due(&self) -> Option<Planned> {
        let now = self.now_ms / 1000;
        self.sources().find_map(|(i, fetch, held, pem)| {
            let due = usable(held, fetch, now) && age(held, now) > fetch.refresh_seconds;
            let kid = match pem {
                true => Some(held.last_kid.clone()?),
                false => None,
            };
            (due && self.consulted(i)).then_some(Planned {
                source: i,
                why: Why::Refresh,
                kid,
            })
        })
    }

    /// Whether a fetched source the decision looked at has no usable keys, and no fetch is
    /// planned for it: its assertions are refused.
    pub fn degraded(&self) -> bool {
        if self.planned.borrow().is_some() {
            return false;
        }
        let now = self.now_ms / 1000;
        self.sources()
            .any(|(i, fetch, held, _)| self.consulted(i) && !usable(held, fetch, now))
    }

    fn consulted(&self, i: usize) -> bool {
        u32::try_from(i)
            .ok()
            .and_then(|i| 1u64.checked_shl(i))
            .is_some_and(|bit| self.consulted.get() & bit != 0)
    }

    fn consult(&self, i: usize) {
        if let Some(bit) = u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i)) {
            self.consulted.set(self.consulted.get() | bit);
        }
    }

    /// Every fetched source: index, fetch, what is held, PEM per `kid`.
    fn sources(&self) -> impl Iterator<Item = (usize, &KeyFetch, &Held, bool)> {
        self.edge
            .assertions
            .iter()
            .zip(self.held)
            .enumerate()
            .filter_map(|(i, (a, h))| match &a.keys {
                KeyLocation::Jwks(f) => Some((i, f, h, false)),
                KeyLocation::PemPerKid(f) => Some((i, f, h, true)),
                KeyLocation::Inline(_) => None,
            })
    }

    fn generation(&self, source: usize) -> u64 {
        self.held.get(source).map_or(0, |h| h.generation)
    }
}

impl EdgeKeys for EdgeView<'_> {
    fn keys(&self, source: usize) -> KeysAt<'_> {
        self.consult(source);
        let now = self.now_ms / 1000;
        match (self.edge.assertions.get(source), self.held.get(source)) {
            (Some(a), _) if matches!(a.keys, KeyLocation::Inline(_)) => match &a.keys {
                KeyLocation::Inline(keys) => KeysAt::Ready(keys),
                _ => KeysAt::Unavailable,
            },
            (Some(a), Some(held)) => match (fetched(a), &held.keys) {
                (Some(fetch), Some(keys)) if usable(held, fetch, now) => KeysAt::Ready(keys),
                _ => KeysAt::Unavailable,
            },
            _ => KeysAt::Unavailable,
        }
    }

    fn want(&self, source: usize, kid: Option<&str>) -> bool {
        self.consult(source);
        if !self.may_fetch || self.planned.borrow().is_some() {
            return false;
        }
        let (Some(a), Some(held)) = (self.edge.assertions.get(source), self.held.get(source))
        else {
            return false;
        };
        let (fetch, pem) = match &a.keys {
            KeyLocation::Jwks(f) => (f, false),
            KeyLocation::PemPerKid(f) => (f, true),
            KeyLocation::Inline(_) => return false,
        };
        let now = self.now_ms / 1000;
        let why = match (&held.keys, kid) {
            (Some(keys), Some(kid)) if usable(held, fetch, now) => match keys.has_kid(kid) {
                true => return false,
                false => Why::UnknownKid,
            },
            (Some(_), None) if usable(held, fetch, now) => return false,
            _ => Why::Missing,
        };
        // A PEM's URL is the path and the `kid`: none without one, and never `.` or `..`
        // (a `kid` is `[A-Za-z0-9._-]`, so nothing else can leave the path's directory).
        if pem && kid.is_none_or(|k| k.bytes().all(|b| b == b'.')) {
            return false;
        }
        if !may_fetch(fetch, self.store, why, self.now_ms) {
            return false;
        }
        *self.planned.borrow_mut() = Some(Planned {
            source,
            why,
            kid: if pem { kid.map(str::to_string) } else { None },
        });
        true
    }

    fn cached(&self, source: usize, token: &[u8], now: u64) -> Option<Identity> {
        self.consult(source);
        let generation = self.generation(source);
        // A fetched source past `max_stale_seconds` accepts nothing, not even what its keys
        // verified before (they may have been removed since).
        let stale = self
            .sources()
            .any(|(i, fetch, held, _)| i == source && !usable(held, fetch, self.now_ms / 1000));
        let found = self
            .cache
            .try_borrow_mut()
            .ok()
            .filter(|_| !stale)
            .and_then(|mut c| c.get(source, token, now, generation));
        let (hits, misses) = self.counts.get();
        self.counts.set(match found {
            Some(_) => (hits.saturating_add(1), misses),
            None => (hits, misses.saturating_add(1)),
        });
        found
    }

    fn remember(&self, source: usize, token: &[u8], identity: &Identity, exp: u64) {
        let generation = self.generation(source);
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            c.put(source, token, identity, exp, generation);
        }
    }
}

/// The store key of a fetched source ("" for inline keys).
fn store_key(a: &AssertionSource) -> &str {
    fetched(a).map_or("", |f| f.store_key.as_str())
}

/// The fetch of a source whose keys are fetched.
pub fn fetched(a: &AssertionSource) -> Option<&KeyFetch> {
    match &a.keys {
        KeyLocation::Jwks(f) | KeyLocation::PemPerKid(f) => Some(f),
        KeyLocation::Inline(_) => None,
    }
}

fn age(h: &Held, now: u64) -> u64 {
    now.saturating_sub(h.fetched_at)
}

/// Keys held and fetched within `max_stale_seconds`.
fn usable(h: &Held, fetch: &KeyFetch, now: u64) -> bool {
    h.keys.is_some() && age(h, now) <= fetch.max_stale_seconds
}

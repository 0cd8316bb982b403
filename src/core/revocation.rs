//! The revocation list: revoked API key ids and token ids (`jti`), fetched from a configured
//! Envoy cluster and shared by every worker. Pure: parsing, the stored form, and freshness.
//!
//! # Format
//!
//! The service answers `200` with a JSON object, `{"keys": ["<key id>", ...], "tokens": ["<jti>",
//! ...]}`; both fields optional, nothing else allowed. At most [`MAX_LIST_BYTES`] bytes and
//! [`MAX_ENTRIES`] ids. Anything else (another status, a body that does not parse, too big) is a
//! failed fetch: the last good list stays in force, a malformed one never replaces it.
//!
//! # Staleness
//!
//! A list is fresh for `max_stale_seconds` after the fetch that produced it. Past that (or before
//! any fetch succeeded since the filter started), devgate is *degraded*: per `when_stale`, the
//! credentials that need the list (developer tokens, API keys) are refused (`revocation_stale`,
//! the default), or served against the last good list.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::core::counters::{Counter, Fetch};
use crate::core::facts::Facts;
use crate::core::plan::{Note, Report};
use crate::core::policy::{Policy, RevocationPolicy, SourceKeys, WhenStale};
use crate::core::shared::SharedStore;

/// Largest list body accepted.
pub const MAX_LIST_BYTES: usize = 1024 * 1024;
/// Most ids in one list (keys and tokens together).
pub const MAX_ENTRIES: usize = 100_000;

/// A parsed revocation list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationList {
    /// Revoked API key ids.
    pub keys: HashSet<String>,
    /// Revoked token ids (`jti`).
    pub tokens: HashSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    tokens: Vec<String>,
}

/// Why a fetched list was not taken. Codes are stable (logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    /// The body is over the size cap.
    TooLarge,
    /// The body is not the list's JSON.
    Malformed,
    /// The list has more entries than the cap.
    TooManyEntries,
}

impl ListError {
    /// The stable code (logs).
    pub fn code(self) -> &'static str {
        match self {
            ListError::TooLarge => "list_too_large",
            ListError::Malformed => "list_malformed",
            ListError::TooManyEntries => "list_too_many_entries",
        }
    }
}

/// Parses a list body. Never panics.
pub fn parse_list(body: &[u8]) -> Result<RevocationList, ListError> {
    if body.len() > MAX_LIST_BYTES {
        return Err(ListError::TooLarge);
    }
    // An object, not serde's other spelling of a struct (a JSON array of its fields).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ListError::Malformed);
    }
    let raw: RawList = serde_json::from_slice(body).map_err(|_| ListError::Malformed)?;
    if raw.keys.len().saturating_add(raw.tokens.len()) > MAX_ENTRIES {
        return Err(ListError::TooManyEntries);
    }
    let ok = |id: &String| !id.is_empty() && id.len() <= 128;
    if !raw.keys.iter().all(ok) || !raw.tokens.iter().all(ok) {
        return Err(ListError::Malformed);
    }
    Ok(RevocationList {
        keys: raw.keys.into_iter().collect(),
        tokens: raw.tokens.into_iter().collect(),
    })
}

/// The form kept in shared data: the fetch time in seconds, a newline, the body as fetched.
pub fn encode_stored(fetched_at: u64, body: &[u8]) -> Vec<u8> {
    let mut out = fetched_at.to_string().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Reads [`encode_stored`]: the fetch time and the list, or `None` for anything else.
pub fn decode_stored(stored: &[u8]) -> Option<(u64, RevocationList)> {
    let newline = stored.iter().position(|&b| b == b'\n')?;
    let (time, rest) = stored.split_at(newline);
    let fetched_at = std::str::from_utf8(time).ok()?.parse().ok()?;
    let list = parse_list(rest.get(1..)?).ok()?;
    Some((fetched_at, list))
}

/// What the decision sees of the list.
#[derive(Clone, Copy, Debug)]
pub struct Revocation<'a> {
    /// The last good list, if any fetch ever succeeded.
    pub list: Option<&'a RevocationList>,
    /// Past `max_stale_seconds` (or never fetched) and configured to refuse then.
    pub refuse: bool,
}

impl Revocation<'_> {
    /// Whether a token id is revoked.
    pub fn token_revoked(&self, jti: Option<&str>) -> bool {
        match (self.list, jti) {
            (Some(list), Some(jti)) => list.tokens.contains(jti),
            _ => false,
        }
    }

    /// Whether an API key id is revoked.
    pub fn key_revoked(&self, id: &str) -> bool {
        self.list.is_some_and(|l| l.keys.contains(id))
    }
}

/// Whether a list fetched at `fetched_at` (`None`: never) is stale at `now`.
pub fn is_stale(fetched_at: Option<u64>, now: u64, max_stale: u64) -> bool {
    match fetched_at {
        None => true,
        Some(t) => now.saturating_sub(t) > max_stale,
    }
}

// ---- one worker's copy, and the fetch schedule ---------------------------------------------

/// Prefix of the shared-data key of a source's last good revocation list ([`encode_stored`]).
pub const LIST_KEY: &str = "devgate.revocation.list";
/// Prefix of the shared-data key of a source's last fetch attempt: one worker fetches per period.
pub const LEASE_KEY: &str = "devgate.revocation.lease";

/// The shared-data keys of the source `cluster`, `authority`, `path`: [`LIST_KEY`] and
/// [`LEASE_KEY`], each followed by `.` and 32 hex digits of a SHA-256 over the three (each
/// length-prefixed, so no two sources give the same input). Every configuration that fetches from
/// the same source shares its list and its lease (one fetch per period for all of them); two
/// sources never see each other's list, whichever host, whichever worker. Both hosts get the keys
/// from the policy ([`RevocationPolicy::keys`]), made once when the configuration is loaded.
pub fn source_keys(cluster: &str, authority: &str, path: &str) -> SourceKeys {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [cluster, authority, path] {
        hash.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut id = String::with_capacity(32);
    for b in digest.iter().take(16) {
        let _ = write!(id, "{b:02x}");
    }
    SourceKeys {
        list: format!("{LIST_KEY}.{id}"),
        lease: format!("{LEASE_KEY}.{id}"),
    }
}
/// The gauge a host sets from [`TickPlan::degraded`] and [`Report::degraded`]: 1 while the list is
/// stale. Both hosts define it under this name.
pub const DEGRADED_GAUGE: &str = "devgate.revocation.degraded";
/// How often a worker runs [`Worker::on_tick`] when `revocation` is configured: pick up the
/// list another worker fetched, and fetch when due.
pub const TICK_SECONDS: u64 = 1;

/// The tick period a host sets for `policy` (`None`: no ticks needed).
pub fn tick_seconds(policy: &Policy) -> Option<u64> {
    policy.revocation.as_ref().map(|_| TICK_SECONDS)
}

/// The revocation list as one worker knows it. Owned by the host, one per worker (and per
/// source: a worker that is shown another source's policy starts over for it).
#[derive(Debug, Default)]
pub struct Worker {
    /// The list key of the source the fields below are about (empty: none yet).
    source: String,
    list: Option<RevocationList>,
    fetched_at: Option<u64>,
    /// Version of the shared-data entry the list was read from.
    cas: u32,
    /// A fetch this worker started and has not heard back from.
    pending: bool,
    /// The list key of the source the fetch in flight asked (its answer is stored there even if
    /// the worker has moved to another source meanwhile).
    fetching: Option<String>,
}

/// A fetch for the host to start: a GET to `cluster` with these pseudo-headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchCall<'p> {
    /// The Envoy cluster to call.
    pub cluster: &'p str,
    /// `:method`, `:path` and `:authority` of the call.
    pub headers: [(&'static str, &'p str); 3],
    /// How long the call may take, in milliseconds.
    pub timeout_ms: u64,
}

/// What a tick asks of the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickPlan<'p> {
    /// Set the `devgate.revocation.degraded` gauge.
    pub degraded: Option<bool>,
    /// Start this fetch, then report with [`Worker::fetch_started`].
    pub fetch: Option<FetchCall<'p>>,
}

impl Worker {
    /// The list key of the source this worker's copy is of (empty before its first view or tick):
    /// a host that keeps several workers on one thread picks the one of a policy's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Makes this worker about `rc`'s source: a copy of another source's list is dropped (the
    /// first view then reads this source's from shared data).
    fn adopt(&mut self, rc: &RevocationPolicy) {
        if self.source != rc.keys.list {
            self.source.clone_from(&rc.keys.list);
            self.list = None;
            self.fetched_at = None;
            self.cas = 0;
        }
    }

    /// Takes another worker's fetch: a newer entry in shared data (a malformed one is ignored).
    fn load_shared<S: SharedStore + ?Sized>(&mut self, shared: &S) {
        // Unchanged since this worker decoded it: no copy. While the list is stale every
        // request asks, so the list (up to MAX_LIST_BYTES) must not be copied per request where
        // the host can say its version alone.
        let key = self.source.as_str();
        if shared.version(key) == Ok(self.cas) {
            return;
        }
        if let Ok((Some(stored), cas)) = shared.get(key) {
            if cas != self.cas {
                if let Some((at, list)) = decode_stored(&stored) {
                    self.list = Some(list);
                    self.fetched_at = Some(at);
                }
                self.cas = cas;
            }
        }
    }

    /// What the decision of a request at `now` sees of the list (`None`: no `revocation`
    /// configured). A stale copy may only mean this worker has not ticked since another one
    /// fetched: shared data is read before refusing on an old view.
    pub fn view<S: SharedStore + ?Sized>(
        &mut self,
        policy: &Policy,
        now: u64,
        shared: &S,
    ) -> Option<Revocation<'_>> {
        let rc = policy.revocation.as_ref()?;
        self.adopt(rc);
        if is_stale(self.fetched_at, now, rc.max_stale_seconds) {
            self.load_shared(shared);
        }
        Some(Revocation {
            list: self.list.as_ref(),
            refuse: rc.when_stale == WhenStale::Refuse
                && is_stale(self.fetched_at, now, rc.max_stale_seconds),
        })
    }

    /// The periodic step: refresh from shared data, report staleness, and fetch when this
    /// worker wins the process-wide lease for the period.
    pub fn on_tick<'p, H: Facts + SharedStore>(
        &mut self,
        policy: &'p Policy,
        host: &H,
    ) -> TickPlan<'p> {
        let Some(rc) = &policy.revocation else {
            return TickPlan::default();
        };
        let now = host.now();
        let shared = host;
        self.adopt(rc);
        self.load_shared(shared);
        let mut plan = TickPlan {
            degraded: Some(is_stale(self.fetched_at, now, rc.max_stale_seconds)),
            fetch: None,
        };
        if self.pending {
            return plan;
        }
        // One fetch per period per Envoy process: the worker that moves the lease fetches.
        let Ok((lease, cas)) = shared.get(&rc.keys.lease) else {
            return plan;
        };
        let last = lease
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(last) < rc.refresh_seconds && last <= now {
            return plan;
        }
        if shared.set(&rc.keys.lease, now.to_string().as_bytes(), cas) != Ok(true) {
            return plan;
        }
        self.fetching = Some(rc.keys.list.clone());
        plan.fetch = Some(FetchCall {
            cluster: &rc.cluster,
            headers: [
                (":method", "GET"),
                (":path", &rc.path),
                (":authority", &rc.authority),
            ],
            timeout_ms: rc.timeout_ms,
        });
        plan
    }

    /// The host started the fetch of [`TickPlan::fetch`] (`false`: it could not). An answer the
    /// host delivered inside the call that started the fetch has already been taken
    /// ([`Worker::on_fetched`]): nothing is pending then.
    pub fn fetch_started(&mut self, started: bool, policy: &Policy) -> Report {
        if started {
            self.pending = self.fetching.is_some();
            return Report::default();
        }
        self.fetching = None;
        Report {
            counter: Some(Counter::Revocation(Fetch::Failed)),
            degraded: None,
            note: Some(Note::FetchNotStarted {
                cluster: policy
                    .revocation
                    .as_ref()
                    .map(|rc| rc.cluster.clone())
                    .unwrap_or_default(),
            }),
        }
    }

    /// The fetch's answer: `status` (`None`: no response), the body's size, and a way to read
    /// the body, called only when it will be used. A good list is stored for every worker, under
    /// the key of the source the fetch asked (the worker's own source if [`Worker::on_tick`] planned
    /// none); a failed fetch never replaces the last good one. Before the worker has a source there
    /// is nowhere to store a list: the answer is ignored.
    pub fn on_fetched<H: Facts + SharedStore>(
        &mut self,
        status: Option<&[u8]>,
        body_size: usize,
        read_body: impl FnOnce(usize) -> Option<Vec<u8>>,
        host: &H,
    ) -> Report {
        let now = host.now();
        let shared = host;
        self.pending = false;
        let key = self.fetching.take().unwrap_or_else(|| self.source.clone());
        if key.is_empty() {
            return Report::default();
        }
        let outcome = match status {
            Some(b"200") if body_size <= MAX_LIST_BYTES => match read_body(body_size) {
                Some(body) => parse_list(&body)
                    .map(|list| (list, body))
                    .map_err(ListError::code),
                None => Err("body_unavailable"),
            },
            Some(b"200") => Err("list_too_large"),
            Some(_) => Err("bad_status"),
            None => Err("no_response"),
        };
        match outcome {
            Ok((list, body)) => {
                let _ = shared.set(&key, &encode_stored(now, &body), 0);
                // The worker's own copy, unless it has moved to another source meanwhile.
                if key == self.source {
                    if let Ok(cas) = shared.version(&key) {
                        self.cas = cas;
                    }
                    self.list = Some(list);
                    self.fetched_at = Some(now);
                }
                Report {
                    counter: Some(Counter::Revocation(Fetch::Ok)),
                    degraded: Some(false),
                    note: None,
                }
            }
            Err(code) => Report {
                counter: Some(Counter::Revocation(Fetch::Failed)),
                degraded: None,
                note: Some(Note::FetchFailed(code)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_strictly() {
        let l = parse_list(br#"{"keys": ["k-1"], "tokens": ["t-1", "t-2"]}"#).unwrap();
        assert!(l.keys.contains("k-1") && l.tokens.contains("t-2"));
        assert_eq!(parse_list(b"{}").unwrap(), RevocationList::default());
        for bad in [
            &b""[..],
            b"[]",
            b"{\"keys\": [1]}",
            b"{\"keys\": [\"\"]}",
            b"{\"other\": []}",
            b"{\"keys\": []",
            b"\xff",
        ] {
            assert_eq!(parse_list(bad), Err(ListError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_list(&vec![b' '; MAX_LIST_BYTES + 1]),
            Err(ListError::TooLarge)
        );
    }

    #[test]
    fn stored_form_round_trips_and_refuses_garbage() {
        let stored = encode_stored(1_700_000_000, br#"{"tokens": ["t"]}"#);
        let (at, list) = decode_stored(&stored).unwrap();
        assert_eq!(at, 1_700_000_000);
        assert!(list.tokens.contains("t"));
        for bad in [&b""[..], b"x\n{}", b"12", b"12\n{", b"\n{}"] {
            assert!(decode_stored(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn staleness() {
        assert!(is_stale(None, 10, 100));
        assert!(!is_stale(Some(10), 110, 100));
        assert!(is_stale(Some(10), 111, 100));
        // A clock that stepped back is not stale.
        assert!(!is_stale(Some(200), 100, 100));
    }

    /// A host with a clock and a store in memory, counting how often a value is copied out.
    #[derive(Default)]
    struct Host {
        now: u64,
        store: crate::core::shared::MemoryStore,
        copies: std::cell::Cell<usize>,
    }

    impl Facts for Host {
        fn client_cert(&self) -> Option<crate::core::edge::ClientCert> {
            None
        }
        fn now_ms(&self) -> u64 {
            self.now * 1000
        }
        fn tls(&self) -> bool {
            false
        }
    }

    impl SharedStore for Host {
        fn get(
            &self,
            key: &str,
        ) -> Result<(Option<Vec<u8>>, u32), crate::core::shared::Unavailable> {
            self.copies.set(self.copies.get() + 1);
            self.store.get(key)
        }
        fn set(
            &self,
            key: &str,
            value: &[u8],
            cas: u32,
        ) -> Result<bool, crate::core::shared::Unavailable> {
            self.store.set(key, value, cas)
        }
        fn version(&self, key: &str) -> Result<u32, crate::core::shared::Unavailable> {
            self.store.version(key)
        }
    }

    #[test]
    fn a_stale_list_is_not_copied_again_on_every_request() {
        let policy = revocation_policy("serve");
        let key = &policy.revocation.as_ref().unwrap().keys.list;
        let store = Host::default();
        let stored = encode_stored(1_000, br#"{"keys": ["k-1"]}"#);
        assert_eq!(store.set(key, &stored, 0), Ok(true));
        let mut w = Worker::default();
        // Past max_stale_seconds: every request's view asks the store.
        for now in 2_000..2_100 {
            let view = w.view(&policy, now, &store).unwrap();
            assert!(view.key_revoked("k-1"));
        }
        assert_eq!(
            store.copies.get(),
            1,
            "copied once, when it was new to the worker"
        );
        // A newer list is read at the next request.
        let newer = encode_stored(2_100, br#"{"keys": ["k-2"]}"#);
        assert_eq!(store.set(key, &newer, 0), Ok(true));
        assert!(w.view(&policy, 2_101, &store).unwrap().key_revoked("k-2"));
        assert_eq!(store.copies.get(), 2);
    }

    fn revocation_policy(when_stale: &str) -> Policy {
        source_policy(when_stale, "rev", "/revoked.json")
    }

    fn source_policy(when_stale: &str, cluster: &str, path: &str) -> Policy {
        let json = format!(
            r#"{{"keys": [{{"id": "k", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}}],
                 "tokens": {{}}, "revocation": {{"cluster": "{cluster}", "path": "{path}",
                 "refresh_seconds": 30, "max_stale_seconds": 300, "when_stale": "{when_stale}"}}}}"#
        );
        crate::config::parse_policy(json.as_bytes()).unwrap()
    }

    #[test]
    fn source_keys_name_the_source_and_nothing_else() {
        let a = source_keys("rev", "rev", "/revoked.json");
        assert_eq!(a, source_keys("rev", "rev", "/revoked.json"), "stable");
        assert!(a.list.starts_with("devgate.revocation.list.") && a.list.len() == 24 + 32);
        assert!(a.lease.starts_with("devgate.revocation.lease."));
        assert_eq!(a.list.rsplit('.').next(), a.lease.rsplit('.').next());
        // Any part of the source makes another key, and moving bytes between parts does too.
        for other in [
            source_keys("rev2", "rev", "/revoked.json"),
            source_keys("rev", "other", "/revoked.json"),
            source_keys("rev", "rev", "/other.json"),
            source_keys("re", "vrev", "/revoked.json"),
        ] {
            assert_ne!(a.list, other.list);
            assert_ne!(a.lease, other.lease);
        }
        let policy = revocation_policy("refuse");
        assert_eq!(
            policy.revocation.unwrap().keys,
            a,
            "the authority defaults to the cluster"
        );
    }

    #[test]
    fn two_sources_never_see_each_others_list_or_lease() {
        let host = Host {
            now: 1_000,
            ..Host::default()
        };
        let (one, two) = (
            source_policy("refuse", "rev-a", "/a.json"),
            source_policy("refuse", "rev-b", "/b.json"),
        );
        let (mut a, mut b) = (Worker::default(), Worker::default());
        // Each source has its own lease: both fetch in the same period.
        assert!(a.on_tick(&one, &host).fetch.is_some());
        assert!(b.on_tick(&two, &host).fetch.is_some());
        assert_eq!(a.fetch_started(true, &one), Report::default());
        let r = a.on_fetched(
            Some(b"200"),
            1,
            |_| Some(br#"{"keys": ["k-a"]}"#.to_vec()),
            &host,
        );
        assert_eq!(r.counter, Some(Counter::Revocation(Fetch::Ok)));
        // Source B has no list yet: its worker stays stale (refuses) and never sees A's entry.
        let view = b.view(&two, 1_001, &host).unwrap();
        assert!(view.refuse && !view.key_revoked("k-a"));
        // A third worker shown B's then A's policy (one thread serving both configurations)
        // drops B's copy and reads A's list.
        let mut c = Worker::default();
        assert!(c.view(&two, 1_001, &host).unwrap().refuse);
        let view = c.view(&one, 1_001, &host).unwrap();
        assert!(!view.refuse && view.key_revoked("k-a"));
        assert_eq!(c.source(), one.revocation.as_ref().unwrap().keys.list);
        // B's answer goes to B's key even if its worker was moved to A before it came.
        assert_eq!(b.fetch_started(true, &two), Report::default());
        assert!(b.view(&one, 1_001, &host).unwrap().key_revoked("k-a"));
        b.on_fetched(
            Some(b"200"),
            1,
            |_| Some(br#"{"keys": ["k-b"]}"#.to_vec()),
            &host,
        );
        let view = b.view(&one, 1_002, &host).unwrap();
        assert!(view.key_revoked("k-a") && !view.key_revoked("k-b"));
        let mut d = Worker::default();
        let view = d.view(&two, 1_002, &host).unwrap();
        assert!(!view.refuse && view.key_revoked("k-b") && !view.key_revoked("k-a"));
    }

    #[test]
    fn one_worker_fetches_per_period_and_others_read_its_list() {
        let policy = revocation_policy("refuse");
        let host = Host {
            now: 1_000,
            ..Host::default()
        };
        let (mut a, mut b) = (Worker::default(), Worker::default());
        let tick = a.on_tick(&policy, &host);
        assert_eq!(tick.degraded, Some(true), "never fetched: stale");
        let fetch = tick.fetch.unwrap();
        assert_eq!(fetch.cluster, "rev");
        assert_eq!(fetch.headers[1], (":path", "/revoked.json"));
        assert_eq!(a.fetch_started(true, &policy), Report::default());
        // The lease is taken for the period: the other worker does not fetch.
        assert_eq!(b.on_tick(&policy, &host).fetch, None);
        // A pending fetch is not started twice.
        assert_eq!(a.on_tick(&policy, &host).fetch, None);
        let report = a.on_fetched(
            Some(b"200"),
            15,
            |_| Some(br#"{"keys": ["k-1"]}"#.to_vec()),
            &host,
        );
        assert_eq!(report.counter, Some(Counter::Revocation(Fetch::Ok)));
        assert_eq!(report.degraded, Some(false));
        // The other worker's stale view reads shared data before refusing.
        let view = b.view(&policy, 1_001, &host).unwrap();
        assert!(!view.refuse);
        assert!(view.key_revoked("k-1"));
        // Due again after refresh_seconds.
        let later = Host {
            now: 1_031,
            store: host.store,
            ..Host::default()
        };
        assert!(b.on_tick(&policy, &later).fetch.is_some());
    }

    #[test]
    fn a_failed_fetch_keeps_the_last_good_list_and_staleness_follows_when_stale() {
        let host = Host {
            now: 1_000,
            ..Host::default()
        };
        let policy = revocation_policy("refuse");
        let mut w = Worker::default();
        assert!(
            w.view(&policy, 1_000, &host).unwrap().refuse,
            "never fetched: refuse"
        );
        w.on_fetched(Some(b"200"), 2, |_| Some(b"{}".to_vec()), &host);
        for (status, size, want) in [
            (Some(&b"500"[..]), 2, "bad_status"),
            (None, 0, "no_response"),
            (Some(b"200"), MAX_LIST_BYTES + 1, "list_too_large"),
            (Some(b"200"), 1, "list_malformed"),
        ] {
            let r = w.on_fetched(status, size, |_| Some(b"[".to_vec()), &host);
            assert_eq!(r.counter, Some(Counter::Revocation(Fetch::Failed)));
            assert_eq!(r.note, Some(Note::FetchFailed(want)));
        }
        assert!(
            !w.view(&policy, 1_300, &host).unwrap().refuse,
            "the last good list holds"
        );
        assert!(
            w.view(&policy, 1_301, &host).unwrap().refuse,
            "past max_stale: refuse"
        );
        let serve = revocation_policy("serve");
        assert!(!w.view(&serve, 9_999, &host).unwrap().refuse);
        let none = crate::config::parse_policy(b"{}").unwrap();
        assert!(w.view(&none, 1_000, &host).is_none());
        assert_eq!(tick_seconds(&none), None);
        assert_eq!(tick_seconds(&serve), Some(TICK_SECONDS));
    }

    #[test]
    fn an_answer_delivered_before_the_start_is_reported_leaves_nothing_pending() {
        let policy = revocation_policy("refuse");
        let host = Host {
            now: 1_000,
            ..Host::default()
        };
        let mut w = Worker::default();
        assert!(w.on_tick(&policy, &host).fetch.is_some());
        // The host's call delivered its answer before returning (re-entry), then reports it.
        let r = w.on_fetched(Some(b"200"), 2, |_| Some(b"{}".to_vec()), &host);
        assert_eq!(r.counter, Some(Counter::Revocation(Fetch::Ok)));
        assert_eq!(w.fetch_started(true, &policy), Report::default());
        // Not stuck waiting for an answer that came: due again after refresh_seconds.
        let later = Host {
            now: 1_031,
            store: host.store,
            ..Host::default()
        };
        assert!(w.on_tick(&policy, &later).fetch.is_some());
    }

    #[test]
    fn a_fetch_that_could_not_start_is_counted_and_names_the_cluster() {
        let policy = revocation_policy("refuse");
        let r = Worker::default().fetch_started(false, &policy);
        assert_eq!(r.counter, Some(Counter::Revocation(Fetch::Failed)));
        assert_eq!(
            r.note,
            Some(Note::FetchNotStarted {
                cluster: "rev".into()
            })
        );
    }
}

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

use serde::Deserialize;

use crate::core::counters::{Counter, Fetch};
use crate::core::facts::Facts;
use crate::core::plan::{Note, Report};
use crate::core::policy::{Policy, WhenStale};
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

/// Shared-data key of the last good revocation list ([`encode_stored`]).
pub const LIST_KEY: &str = "devgate.revocation.list";
/// Shared-data key of the time of the last fetch attempt: one worker fetches per period.
pub const LEASE_KEY: &str = "devgate.revocation.lease";
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

/// The revocation list as one worker knows it. Owned by the host, one per worker.
#[derive(Debug, Default)]
pub struct Worker {
    list: Option<RevocationList>,
    fetched_at: Option<u64>,
    /// Version of the shared-data entry the list was read from.
    cas: u32,
    /// A fetch this worker started and has not heard back from.
    pending: bool,
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
    /// Takes another worker's fetch: a newer entry in shared data (a malformed one is ignored).
    fn load_shared<S: SharedStore + ?Sized>(&mut self, shared: &S) {
        // Unchanged since this worker decoded it: no copy. While the list is stale every
        // request asks, so the list (up to MAX_LIST_BYTES) must not be copied per request where
        // the host can say its version alone.
        if shared.version(LIST_KEY) == Ok(self.cas) {
            return;
        }
        if let Ok((Some(stored), cas)) = shared.get(LIST_KEY) {
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
        self.load_shared(shared);
        let mut plan = TickPlan {
            degraded: Some(is_stale(self.fetched_at, now, rc.max_stale_seconds)),
            fetch: None,
        };
        if self.pending {
            return plan;
        }
        // One fetch per period per Envoy process: the worker that moves the lease fetches.
        let Ok((lease, cas)) = shared.get(LEASE_KEY) else {
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
        if shared.set(LEASE_KEY, now.to_string().as_bytes(), cas) != Ok(true) {
            return plan;
        }
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

    /// The host started the fetch of [`TickPlan::fetch`] (`false`: it could not).
    pub fn fetch_started(&mut self, started: bool, policy: &Policy) -> Report {
        if started {
            self.pending = true;
            return Report::default();
        }
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
    /// the body, called only when it will be used. A good list is stored for every worker; a
    /// failed fetch never replaces the last good one.
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
                let _ = shared.set(LIST_KEY, &encode_stored(now, &body), 0);
                if let Ok((_, cas)) = shared.get(LIST_KEY) {
                    self.cas = cas;
                }
                self.list = Some(list);
                self.fetched_at = Some(now);
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
        let store = Host::default();
        let stored = encode_stored(1_000, br#"{"keys": ["k-1"]}"#);
        assert_eq!(store.set(LIST_KEY, &stored, 0), Ok(true));
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
        assert_eq!(store.set(LIST_KEY, &newer, 0), Ok(true));
        assert!(w.view(&policy, 2_101, &store).unwrap().key_revoked("k-2"));
        assert_eq!(store.copies.get(), 2);
    }

    fn revocation_policy(when_stale: &str) -> Policy {
        let json = format!(
            r#"{{"keys": [{{"id": "k", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}}],
                 "tokens": {{}}, "revocation": {{"cluster": "rev", "refresh_seconds": 30,
                 "max_stale_seconds": 300, "when_stale": "{when_stale}"}}}}"#
        );
        crate::config::parse_policy(json.as_bytes()).unwrap()
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

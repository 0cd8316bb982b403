//! Fetched edge keys as a worker's decision sees them ([`EdgeWorker`], [`EdgeView`]), with the
//! source's flight and store in a [`MemoryStore`]: what a request may fetch and when, the last
//! good set through failures, staleness, the refresh, and the verified-assertion cache.
//!
//! A set "read from shared data" is mostly put in place with [`EdgeWorker::hold`] (an empty
//! `PublicKeys`, so every `kid` is unknown); `with_real_keys` stores and parses real JWK sets
//! and PEMs.

use crate::core::edge::fetch::{self, Join, Why, RETRY_MS};
use crate::core::edge::{
    AssertionSource, Carrier, Developers, EdgeKeys, EdgePolicy, EdgeWorker, KeyFetch, KeyLocation,
    KeysAt, Profile,
};
use crate::core::jose::{Alg, PublicKeys};
use crate::core::shared::{MemoryStore, SharedStore};
use crate::core::{Identity, Source};

pub(crate) const T: u64 = 1_700_000_000;
pub(crate) const T_MS: u64 = T * 1000;

pub(crate) fn key_fetch(name: &str) -> KeyFetch {
    KeyFetch {
        cluster: "idp".into(),
        authority: "idp.example".into(),
        path: "/keys/".into(),
        refresh_seconds: 300,
        max_stale_seconds: 3600,
        refetch_seconds: 30,
        timeout_ms: 1000,
        store_key: format!("devgate.edge.keys.{name}"),
    }
}

fn source(name: &str, keys: KeyLocation) -> AssertionSource {
    AssertionSource {
        name: name.into(),
        profile: Profile::Oidc,
        carrier: Carrier::Bearer,
        algorithms: vec![Alg::Es256],
        keys,
        issuer: "https://idp.example".into(),
        audiences: vec!["devgate".into()],
        claim: "email".into(),
        leeway: 30,
        signer: None,
        padded: false,
        developers: Developers {
            anyone: true,
            ..Developers::default()
        },
        allow_from: None,
    }
}

/// Source 0: a JWK set fetched; 1: inline keys; 2: a PEM per `kid`.
pub(crate) fn edge() -> EdgePolicy {
    EdgePolicy {
        assertions: vec![
            source("jwks", KeyLocation::Jwks(key_fetch("jwks"))),
            source("inline", KeyLocation::Inline(PublicKeys::default())),
            source("alb", KeyLocation::PemPerKid(key_fetch("alb"))),
        ],
        ..EdgePolicy::default()
    }
}

fn fetch_of(e: &EdgePolicy, i: usize) -> &KeyFetch {
    match &e.assertions[i].keys {
        KeyLocation::Jwks(f) | KeyLocation::PemPerKid(f) => f,
        KeyLocation::Inline(_) => panic!("inline"),
    }
}

fn ada() -> Identity {
    Identity {
        name: "ada@example.com".into(),
        source: Source::Assertion,
    }
}

fn ready(k: KeysAt<'_>) -> bool {
    matches!(k, KeysAt::Ready(_))
}

#[test]
fn the_first_request_plans_the_fetch_one_owns_it_the_others_wait() {
    let e = edge();
    let db = MemoryStore::default();
    let mut w = EdgeWorker::default();
    let v = w.view(&e, T_MS, &db, true);
    assert!(!ready(v.keys(0)), "nothing fetched yet");
    assert!(v.want(0, Some("k1")));
    let planned = v.planned().unwrap();
    assert_eq!(
        (planned.source, planned.why, planned.kid),
        (0, Why::Missing, None)
    );
    // Only one fetch is planned per decision.
    assert!(!v.want(2, Some("k1")));
    assert!(!v.degraded(), "a fetch is planned: not degraded yet");
    let f = fetch_of(&e, 0);
    assert_eq!(fetch::join(f, &db, Why::Missing, T_MS), Ok(Join::Owner));
    // Another worker's request: its decision still asks, and waits on the same flight.
    let mut other = EdgeWorker::default();
    let v = other.view(&e, T_MS + 5, &db, true);
    assert!(v.want(0, None));
    assert!(matches!(
        fetch::join(f, &db, Why::Missing, T_MS + 5),
        Ok(Join::Wait(w)) if w.flight == fetch::flight_id(f)
    ));
    // A request decided again after its rounds may not ask again.
    let v = other.view(&e, T_MS + 5, &db, false);
    assert!(!v.want(0, None));
}

#[test]
fn a_failed_fetch_keeps_the_last_good_set_and_holds_off_the_next() {
    let e = edge();
    let db = MemoryStore::default();
    let f = fetch_of(&e, 0);
    let mut w = EdgeWorker::default();
    w.hold(&e, 0, PublicKeys::default(), T);
    // The refresh (keys usable, older than refresh_seconds) fails.
    let now = T + 301;
    assert_eq!(
        fetch::join(f, &db, Why::Refresh, now * 1000),
        Ok(Join::Owner)
    );
    let garbage = crate::core::callout::CalloutAnswer {
        status: Some(200),
        retry_after: None,
        body: b"<html>maintenance</html>",
    };
    assert_eq!(
        fetch::take_answer(f, &db, None, garbage, now),
        Ok(fetch::Answer::Failed)
    );
    fetch::land(f, &db, false, now * 1000).unwrap();
    let v = w.view(&e, now * 1000 + 10, &db, true);
    assert!(ready(v.keys(0)), "the last good set is still used");
    assert!(
        !v.want(0, Some("new-kid")),
        "no fetch within the retry time"
    );
    // After it, an unknown kid fetches again, once refetch_seconds passed since the last.
    let v = w.view(&e, now * 1000 + RETRY_MS, &db, true);
    assert!(!v.want(0, Some("new-kid")));
    let v = w.view(&e, (now + 30) * 1000, &db, true);
    assert!(v.want(0, Some("new-kid")));
}

#[test]
fn an_unknown_kid_refetches_at_most_once_per_refetch_seconds() {
    let e = edge();
    let db = MemoryStore::default();
    let f = fetch_of(&e, 0);
    let mut w = EdgeWorker::default();
    w.hold(&e, 0, PublicKeys::default(), T);
    let v = w.view(&e, T_MS, &db, true);
    assert!(v.want(0, Some("rotated")));
    assert_eq!(v.planned().unwrap().why, Why::UnknownKid);
    assert_eq!(fetch::join(f, &db, Why::UnknownKid, T_MS), Ok(Join::Owner));
    fetch::land(f, &db, true, T_MS + 20).unwrap();
    // Still unknown after the fetch: refused (`unknown_kid`), not fetched again...
    for later in [1_000, 29_999] {
        let v = w.view(&e, T_MS + later, &db, true);
        assert!(!v.want(0, Some("rotated")), "{later}");
        assert!(v.planned().is_none());
    }
    // ... until refetch_seconds passed.
    let v = w.view(&e, T_MS + 30_000, &db, true);
    assert!(v.want(0, Some("forged")));
    // A token without a readable kid never fetches a usable set again.
    assert!(!w.view(&e, T_MS + 30_000, &db, true).want(0, None));
}

#[test]
fn a_set_due_for_refresh_is_refreshed_by_a_request_that_uses_it() {
    let e = edge();
    let db = MemoryStore::default();
    let mut w = EdgeWorker::default();
    w.hold(&e, 0, PublicKeys::default(), T);
    let v = w.view(&e, (T + 300) * 1000, &db, true);
    assert!(ready(v.keys(0)));
    assert!(v.refresh_due().is_none(), "fresh for refresh_seconds");
    let v = w.view(&e, (T + 301) * 1000, &db, true);
    assert!(
        v.refresh_due().is_none(),
        "a request that did not use the source"
    );
    assert!(
        ready(v.keys(0)),
        "still usable: nobody waits for the refresh"
    );
    let due = v.refresh_due().unwrap();
    assert_eq!((due.source, due.why), (0, Why::Refresh));
    assert!(!v.degraded());
    // The refresh is one flight per process: a second noticer goes on without it.
    let f = fetch_of(&e, 0);
    assert_eq!(
        fetch::join(f, &db, Why::Refresh, (T + 301) * 1000),
        Ok(Join::Owner)
    );
    assert!(matches!(
        fetch::join(f, &db, Why::Refresh, (T + 301) * 1000 + 1),
        Ok(Join::Wait(_))
    ));
}

#[test]
fn a_pem_per_kid_source_fetches_the_token_s_kid_and_refreshes_the_last() {
    let e = edge();
    let db = MemoryStore::default();
    let mut w = EdgeWorker::default();
    let v = w.view(&e, T_MS, &db, true);
    assert!(!v.want(2, None), "no kid, no URL");
    assert!(!v.want(2, Some("..")), "never out of the path's directory");
    assert!(!v.want(2, Some(".")));
    assert!(v.want(2, Some("0123-abcd")));
    let planned = v.planned().unwrap();
    assert_eq!(planned.kid.as_deref(), Some("0123-abcd"));
    let call = fetch::callout(fetch_of(&e, 2), planned.kid.as_deref());
    assert_eq!(call.headers[1].1, b"/keys/0123-abcd");
}

#[test]
fn past_max_stale_the_source_is_degraded_and_its_keys_unavailable() {
    let e = edge();
    let db = MemoryStore::default();
    let f = fetch_of(&e, 0);
    let mut w = EdgeWorker::default();
    w.hold(&e, 0, PublicKeys::default(), T);
    let stale = (T + 3600) * 1000;
    assert!(ready(w.view(&e, stale, &db, true).keys(0)));
    assert!(w.usable(&e, 0, T + 3600));
    assert!(!w.usable(&e, 2, T + 3600), "never fetched");
    assert!(w.usable(&e, 1, T + 3600), "inline");
    let past = (T + 3601) * 1000;
    // The fetch that would bring it back fails.
    fetch::land(f, &db, false, past).unwrap();
    let v = w.view(&e, past + 1, &db, true);
    assert!(!ready(v.keys(0)), "never accepted unchecked");
    assert!(
        !v.want(0, Some("k1")),
        "retry time: refused edge_keys_unavailable"
    );
    assert!(v.degraded());
    assert!(!w.usable(&e, 0, T + 3601));
    // Inline keys are never degraded.
    let v = w.view(&e, past + 1, &db, true);
    assert!(ready(v.keys(1)));
    assert!(!v.want(1, Some("k1")));
    assert!(!v.degraded(), "source 0 was not used by this request");
}

#[test]
fn the_cache_hits_until_exp_and_forgets_a_changed_key_set() {
    let e = edge();
    let db = MemoryStore::default();
    let mut w = EdgeWorker::default();
    w.hold(&e, 0, PublicKeys::default(), T);
    let v = w.view(&e, T_MS, &db, true);
    assert_eq!(v.cached(0, b"tok", T), None);
    v.remember(0, b"tok", &ada(), T + 60);
    v.remember(1, b"inline-tok", &ada(), T + 60);
    assert_eq!(v.cached(0, b"tok", T + 59), Some(ada()));
    assert_eq!(v.cached(1, b"inline-tok", T + 59), Some(ada()));
    assert_eq!(v.counts(), (2, 1));
    assert_eq!(v.cached(0, b"tok", T + 60), None, "never past exp");
    // Past max_stale_seconds the source's cached assertions are not accepted either.
    let v = w.view(&e, T_MS, &db, true);
    v.remember(0, b"tok-2", &ada(), T + 7200);
    let v = w.view(&e, (T + 3601) * 1000, &db, true);
    assert_eq!(v.cached(0, b"tok-2", T + 3601), None);
    assert_eq!(v.cached(1, b"inline-tok", T + 59), Some(ada()));
    let v = w.view(&e, T_MS, &db, true);
    v.remember(0, b"tok", &ada(), T + 60);
    // The keys rotate (another generation): the entry is gone; the inline source's stays.
    w.hold(&e, 0, PublicKeys::default(), T + 10);
    let v = w.view(&e, T_MS + 10_000, &db, true);
    assert_eq!(v.cached(0, b"tok", T + 11), None);
    assert_eq!(v.cached(1, b"inline-tok", T + 11), Some(ada()));
}

#[test]
fn an_unreadable_stored_set_leaves_the_held_copy() {
    let e = edge();
    let db = MemoryStore::default();
    let mut w = EdgeWorker::default();
    w.hold(&e, 0, PublicKeys::default(), T);
    db.set("devgate.edge.keys.jwks", b"\x01garbage", 0).unwrap();
    assert!(!w.load(0, &db));
    let v = w.view(&e, (T + 400) * 1000, &db, true);
    assert!(ready(v.keys(0)));
}

#[test]
fn another_configuration_starts_the_worker_over() {
    let e = edge();
    let db = MemoryStore::default();
    let mut w = EdgeWorker::default();
    w.hold(&e, 0, PublicKeys::default(), T);
    let v = w.view(&e, T_MS, &db, true);
    v.remember(1, b"tok", &ada(), T + 60);
    let mut other = edge();
    other.assertions.swap(0, 2);
    let v = w.view(&other, T_MS, &db, true);
    assert!(!ready(v.keys(2)), "a new source: nothing held");
    assert_eq!(v.cached(1, b"tok", T), None, "the cache starts over");
}

mod through_the_stream {
    //! The same through [`Stream`]: a request whose assertion needs keys the worker lacks.
    use crate::config::parse_policy;
    use crate::core::callout::CalloutAnswer;
    use crate::core::codes::Reason;
    use crate::core::counters::{Counter, EdgeEvent};
    use crate::core::edge::fetch::RETRY_MS;
    use crate::core::effects::Gauge;
    use crate::core::facts::RequestHeaders;
    use crate::core::keyservice::testing::Host;
    use crate::core::plan::{Next, Plan};
    use crate::core::policy::Policy;
    use crate::core::shared::SharedStore;
    use crate::core::stream::{BodyPlan, Stream, WorkerState};

    pub(super) fn policy() -> Policy {
        let json = r#"{"edge": {"assertions": [{"name": "iap", "profile": "google_iap",
            "audiences": ["/projects/1/apps/p"],
            "keys": {"jwks_url": {"cluster": "iap_keys", "path": "/iap/verify/public_key-jwk"}},
            "developers": {"anyone": true}}]}}"#;
        parse_policy(json.as_bytes()).unwrap()
    }

    const HEADERS: [(&[u8], &[u8]); 4] = [
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":authority", b"app.example"),
        (
            b"x-goog-iap-jwt-assertion",
            b"eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
        ),
    ];

    pub(super) fn req() -> RequestHeaders<'static> {
        RequestHeaders {
            peer: Some(b"192.0.2.1:5"),
            headers: &HEADERS,
            end_of_stream: false,
        }
    }

    fn headers<'p>(s: &mut Stream, p: &'p Policy, w: &mut WorkerState, h: &Host) -> Plan<'p> {
        s.on_request_headers(p, req(), w, h)
    }

    fn refused(plan: &Plan<'_>, reason: Reason) -> bool {
        plan.counter == Some(Counter::Denied(reason)) && matches!(plan.next, Next::Reply(_))
    }

    #[test]
    fn the_first_request_fetches_the_others_wait_a_failure_refuses_them_for_now() {
        let p = policy();
        let host = Host::default();
        let (mut w1, mut w2) = (WorkerState::default(), WorkerState::default());
        let mut owner = Stream::new();
        let plan = headers(&mut owner, &p, &mut w1, &host);
        let Next::Callout(call) = &plan.next else {
            panic!("{plan:?}");
        };
        assert_eq!(call.cluster, "iap_keys");
        assert_eq!(call.headers[1].1, b"/iap/verify/public_key-jwk");
        assert_eq!(plan.edge[0], Some(Counter::Edge(EdgeEvent::CacheMiss)));
        assert_eq!(owner.body_plan(), BodyPlan::Hold);
        // Another worker's request for the same source waits on the flight.
        let mut waiter = Stream::new();
        let plan = headers(&mut waiter, &p, &mut w2, &host);
        let Next::Wait(wait) = plan.next else {
            panic!("{plan:?}");
        };
        let flight = wait.flight;
        // The key server is down: nothing stored, the flight lands failed, the owner is refused
        // (503 edge_keys_unavailable), the source is degraded, the waiters wake.
        host.advance_ms(30);
        let plan = owner.on_callout_answer(&p, CalloutAnswer::FAILED, req(), &mut w1, &host);
        assert!(refused(&plan, Reason::EdgeKeysUnavailable), "{plan:?}");
        assert_eq!(plan.wake, Some(flight));
        assert_eq!(
            plan.edge,
            [None, Some(Counter::Edge(EdgeEvent::KeysFetchFailed))]
        );
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 1)));
        let plan = waiter.resume(&p, req(), &mut w2, &host);
        assert!(refused(&plan, Reason::EdgeKeysUnavailable), "{plan:?}");
        assert_eq!(plan.edge, [None, None], "its cache miss was counted once");
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 1)));
        assert!(!waiter.holding());
        // Within the retry time a new request is refused at once, without a fetch.
        let plan = headers(&mut Stream::new(), &p, &mut w2, &host);
        assert!(refused(&plan, Reason::EdgeKeysUnavailable), "{plan:?}");
        // After it, one request fetches again.
        host.advance_ms(RETRY_MS);
        let mut again = Stream::new();
        let plan = headers(&mut again, &p, &mut w2, &host);
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
        // Garbage is no better than nothing: still nothing stored.
        host.advance_ms(5);
        let garbage = CalloutAnswer {
            status: Some(200),
            retry_after: None,
            body: b"{\"keys\": \"not a list\"}",
        };
        let plan = again.on_callout_answer(&p, garbage, req(), &mut w2, &host);
        assert!(refused(&plan, Reason::EdgeKeysUnavailable), "{plan:?}");
        let key = match &p.edge.as_ref().unwrap().assertions[0].keys {
            crate::core::edge::KeyLocation::Jwks(f) => f.store_key.clone(),
            _ => unreachable!(),
        };
        assert_eq!(host.get(&key).unwrap().0, None);
    }

    #[test]
    fn an_owner_that_goes_away_lets_a_waiter_fetch() {
        let p = policy();
        let host = Host::default();
        let mut w = WorkerState::default();
        let mut owner = Stream::new();
        assert!(matches!(
            headers(&mut owner, &p, &mut w, &host).next,
            Next::Callout(_)
        ));
        let mut waiter = Stream::new();
        assert!(matches!(
            headers(&mut waiter, &p, &mut w, &host).next,
            Next::Wait(_)
        ));
        assert!(owner.on_destroy(&p, &host).wake.is_some());
        let plan = waiter.resume(&p, req(), &mut w, &host);
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
    }
}

mod with_real_keys {
    //! Stored sets parsed for real: rotation, PEM per `kid`, and a good fetch through the
    //! stream.
    use super::*;
    use crate::core::callout::CalloutAnswer;
    use crate::core::edge::fetch::Answer;

    const JWK_A: &str = r#"{"kty": "EC", "crv": "P-256", "kid": "rot-a", "use": "sig", "alg": "ES256",
        "x": "9wYv9-sNvMrJbSPHfA3V8wAbs_iRdTHD9rUhPQ_amPA", "y": "TAFiUwLC8DYdigYFPgabeqgO6JsQ0KA5qrcIlZUi9t8"}"#;
    pub(super) const JWK_B: &str = r#"{"kty": "EC", "crv": "P-256", "kid": "rot-b", "use": "sig", "alg": "ES256",
        "x": "lgTUaOs8y7JBj0sJeMrZsiMNPTvGuHmil4AbSurUWlM", "y": "lN3iMnxDJjr-rbgO1Y7P9XiFHvvk0JDBqoKkAIp25bc"}"#;
    const PEM_A: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9wYv9+sNvMrJbSPHfA3V8wAbs/iR
dTHD9rUhPQ/amPBMAWJTAsLwNh2KBgU+Bpt6qA7omxDQoDmqtwiVlSL23w==
-----END PUBLIC KEY-----
";
    const PEM_B: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElgTUaOs8y7JBj0sJeMrZsiMNPTvG
uHmil4AbSurUWlOU3eIyfEMmOv6tuA7Vjs/1eIUe++TQkMGqgqQAinbltw==
-----END PUBLIC KEY-----
";

    fn ok(body: &[u8]) -> CalloutAnswer<'_> {
        CalloutAnswer {
            status: Some(200),
            retry_after: None,
            body,
        }
    }

    fn has(k: KeysAt<'_>, kid: &str) -> bool {
        matches!(k, KeysAt::Ready(keys) if keys.has_kid(kid))
    }

    #[test]
    fn keys_rotate_the_new_set_replaces_the_copy_and_its_cached_assertions() {
        let e = edge();
        let db = MemoryStore::default();
        let f = fetch_of(&e, 0);
        let set_a = format!(r#"{{"keys": [{JWK_A}]}}"#);
        let set_b = format!(r#"{{"keys": [{JWK_B}]}}"#);
        assert_eq!(
            fetch::take_answer(f, &db, None, ok(set_a.as_bytes()), T),
            Ok(Answer::Good)
        );
        let mut w = EdgeWorker::default();
        let v = w.view(&e, T_MS, &db, true);
        assert!(has(v.keys(0), "rot-a"));
        assert!(!v.want(0, Some("rot-a")), "a known kid fetches nothing");
        v.remember(0, b"tok", &ada(), T + 3600);
        assert_eq!(v.cached(0, b"tok", T + 1), Some(ada()));
        // The issuer rotates: the next fetch has only the new key.
        let later = T + 301;
        assert_eq!(
            fetch::take_answer(f, &db, None, ok(set_b.as_bytes()), later),
            Ok(Answer::Good)
        );
        let v = w.view(&e, later * 1000 + 1000, &db, true);
        assert!(has(v.keys(0), "rot-b"), "the new key verifies");
        assert!(!has(v.keys(0), "rot-a"), "the removed key stops verifying");
        assert_eq!(
            v.cached(0, b"tok", later + 1),
            None,
            "its cached assertions too"
        );
        assert!(v.refresh_due().is_none(), "fresh again");
    }

    #[test]
    fn a_good_fetch_through_the_stream_is_stored_counted_and_used_by_every_worker() {
        use crate::core::counters::{Counter, EdgeEvent};
        use crate::core::effects::Gauge;
        use crate::core::keyservice::testing::Host;
        use crate::core::plan::Next;
        use crate::core::stream::{Stream, WorkerState};
        let p = super::through_the_stream::policy();
        let host = Host::default();
        let mut w = WorkerState::default();
        let mut owner = Stream::new();
        let req = super::through_the_stream::req;
        let plan = owner.on_request_headers(&p, req(), &mut w, &host);
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
        let set = format!(r#"{{"keys": [{JWK_A}]}}"#);
        let plan = owner.on_callout_answer(&p, ok(set.as_bytes()), req(), &mut w, &host);
        assert_eq!(plan.edge[1], Some(Counter::Edge(EdgeEvent::KeysFetched)));
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 0)));
        assert!(plan.wake.is_some());
        // Decided with the keys: the made-up assertion is refused for what it is.
        assert_ne!(
            plan.counter,
            Some(Counter::Denied(crate::core::Reason::EdgeKeysUnavailable))
        );
        // Another worker uses the stored set without fetching.
        let plan = Stream::new().on_request_headers(&p, req(), &mut WorkerState::default(), &host);
        assert!(matches!(plan.next, Next::Reply(_)), "{plan:?}");
    }

    #[test]
    fn a_pem_per_kid_source_keeps_each_kid_fetched() {
        let e = edge();
        let db = MemoryStore::default();
        let f = fetch_of(&e, 2);
        for (kid, pem, at) in [("rot-a", PEM_A, T), ("rot-b", PEM_B, T + 10)] {
            assert_eq!(
                fetch::take_answer(f, &db, Some(kid), ok(pem.as_bytes()), at),
                Ok(Answer::Good)
            );
        }
        // A garbage PEM for a third kid changes nothing.
        assert_eq!(
            fetch::take_answer(f, &db, Some("rot-c"), ok(b"-----BEGIN junk"), T + 11),
            Ok(Answer::Failed)
        );
        let mut w = EdgeWorker::default();
        let v = w.view(&e, (T + 12) * 1000, &db, true);
        assert!(has(v.keys(2), "rot-a") && has(v.keys(2), "rot-b"));
        assert!(!has(v.keys(2), "rot-c"));
        // Due for a refresh: the newest kid is fetched again.
        let v = w.view(&e, (T + 311) * 1000, &db, true);
        let _ = v.keys(2);
        assert_eq!(
            v.refresh_due().and_then(|p| p.kid).as_deref(),
            Some("rot-b")
        );
    }
}

mod signed_through_the_stream {
    //! Assertions signed by an independent signer (the vectors of `edge_signed.rs`: PyJWT, one
    //! P-256 key `k1`, expiring in 2100) through the stream with fetched keys: the first fetch,
    //! the cache, an unknown `kid`, a refresh that fails, degraded past max stale, rotation.
    use crate::config::parse_policy;
    use crate::core::callout::CalloutAnswer;
    use crate::core::codes::Reason;
    use crate::core::counters::{Admission, Counter, EdgeEvent};
    use crate::core::effects::Gauge;
    use crate::core::facts::RequestHeaders;
    use crate::core::keyservice::testing::Host;
    use crate::core::plan::{Next, Plan};
    use crate::core::policy::Policy;
    use crate::core::stream::{Stream, WorkerState};
    use crate::core::token::TokenError;
    use crate::core::Source;

    const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "QulmS3-MwRJ6vJPoS_tO8PJHubbBdqtoWhYOjtaJLg4", "y": "uum9aWLax8tv5OWkgBq0q2XtULnV92PfUuGtRbxCUX0", "kid": "k1", "alg": "ES256", "use": "sig"}]}"#;
    const GOOD: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.nEniVwrBZD0pU4-wjRQnN0xsRq4xUPvj96np8DsbaiNNiT-1Yk79mez_ePIzy8fNg0idFpaK6qFCIuRmhevFPA";
    const UNKNOWN_KID: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsyIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.uKS-aCq2TlFzLHa45akDmnCvNmXv25YCFwIm_7dUpHkwQ2Vq9woT4h81Pgy3XuKpHIz5y_AFZtPnkTxLHDeEmg";

    fn policy() -> Policy {
        let json = r#"{"edge": {"assertions": [{"name": "idp", "profile": "oidc", "header": "x-assert",
            "algorithms": ["ES256"], "issuer": "https://issuer.example", "audiences": ["app-1"],
            "keys": {"jwks_url": {"cluster": "idp", "path": "/jwks", "refetch_seconds": 30,
                                  "refresh_seconds": 300, "max_stale_seconds": 3600}},
            "developers": {"domains": ["example.com"]}}]}}"#;
        parse_policy(json.as_bytes()).unwrap()
    }

    fn run<'p>(token: &str, f: impl FnOnce(RequestHeaders<'_>) -> Plan<'p>) -> Plan<'p> {
        let headers: [(&[u8], &[u8]); 4] = [
            (b":method", b"GET"),
            (b":path", b"/"),
            (b":authority", b"app.example"),
            (b"x-assert", token.as_bytes()),
        ];
        f(RequestHeaders {
            peer: Some(b"192.0.2.1:5"),
            headers: &headers,
            end_of_stream: true,
        })
    }

    fn ok(body: &str) -> CalloutAnswer<'_> {
        CalloutAnswer {
            status: Some(200),
            retry_after: None,
            body: body.as_bytes(),
        }
    }

    const ALLOWED: Option<Counter> = Some(Counter::Allowed(Admission::Source(Source::Assertion)));
    const HIT: Option<Counter> = Some(Counter::Edge(EdgeEvent::CacheHit));
    const MISS: Option<Counter> = Some(Counter::Edge(EdgeEvent::CacheMiss));

    fn denied(r: Reason) -> Option<Counter> {
        Some(Counter::Denied(r))
    }

    #[test]
    fn fetched_keys_end_to_end() {
        let p = policy();
        let host = Host::default();
        let (mut w, mut w2) = (WorkerState::default(), WorkerState::default());
        let mut s = Stream::new();
        // The first request fetches; with the answer it is decided and allowed.
        let plan = run(GOOD, |r| s.on_request_headers(&p, r, &mut w, &host));
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
        assert_eq!(plan.edge[0], MISS);
        let plan = run(GOOD, |r| {
            s.on_callout_answer(&p, ok(JWKS), r, &mut w, &host)
        });
        assert_eq!(plan.counter, ALLOWED, "{plan:?}");
        assert_eq!(
            plan.edge,
            [None, Some(Counter::Edge(EdgeEvent::KeysFetched))]
        );
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 0)));
        // The same assertion again: a cache hit; on another worker: verified with the stored set.
        let plan = run(GOOD, |r| {
            Stream::new().on_request_headers(&p, r, &mut w, &host)
        });
        assert_eq!((plan.counter, plan.edge[0]), (ALLOWED, HIT));
        let plan = run(GOOD, |r| {
            Stream::new().on_request_headers(&p, r, &mut w2, &host)
        });
        assert_eq!((plan.counter, plan.edge[0]), (ALLOWED, MISS));
        // A kid not in the set: within refetch_seconds of the last fetch, refused at once...
        let unknown = denied(Reason::Token(TokenError::UnknownKid));
        host.advance_ms(10_000);
        let plan = run(UNKNOWN_KID, |r| {
            Stream::new().on_request_headers(&p, r, &mut w, &host)
        });
        assert_eq!(plan.counter, unknown, "{plan:?}");
        // ... after it, one refetch, and still refused when the set has no such key.
        host.advance_ms(21_000);
        let mut s = Stream::new();
        let plan = run(UNKNOWN_KID, |r| s.on_request_headers(&p, r, &mut w, &host));
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
        let plan = run(UNKNOWN_KID, |r| {
            s.on_callout_answer(&p, ok(JWKS), r, &mut w, &host)
        });
        assert_eq!(plan.counter, unknown);
        let plan = run(UNKNOWN_KID, |r| {
            Stream::new().on_request_headers(&p, r, &mut w, &host)
        });
        assert_eq!(plan.counter, unknown, "rate-limited again");
        // Past refresh_seconds: the first request that uses the set refreshes it and alone
        // waits; the others go on with the set held.
        host.advance_ms(301_000);
        let mut owner = Stream::new();
        let plan = run(GOOD, |r| owner.on_request_headers(&p, r, &mut w, &host));
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
        let plan = run(GOOD, |r| {
            Stream::new().on_request_headers(&p, r, &mut w2, &host)
        });
        assert_eq!(plan.counter, ALLOWED, "not held: {plan:?}");
        // The refresh fails: the last good set is kept.
        let plan = run(GOOD, |r| {
            owner.on_callout_answer(&p, CalloutAnswer::FAILED, r, &mut w, &host)
        });
        assert_eq!(plan.counter, ALLOWED, "{plan:?}");
        assert_eq!(
            plan.edge[1],
            Some(Counter::Edge(EdgeEvent::KeysFetchFailed))
        );
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 0)));
        // Past max_stale_seconds without a good fetch: refused, cache or not, and degraded.
        host.advance_ms(3_600_000);
        let mut s = Stream::new();
        let plan = run(GOOD, |r| s.on_request_headers(&p, r, &mut w, &host));
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
        let plan = run(GOOD, |r| {
            s.on_callout_answer(&p, CalloutAnswer::FAILED, r, &mut w, &host)
        });
        assert_eq!(plan.counter, denied(Reason::EdgeKeysUnavailable));
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 1)));
        let plan = run(GOOD, |r| {
            Stream::new().on_request_headers(&p, r, &mut w2, &host)
        });
        assert_eq!(plan.counter, denied(Reason::EdgeKeysUnavailable));
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 1)));
        // The issuer comes back having rotated: `k1` is gone, so its assertions stop verifying.
        host.advance_ms(2_000);
        let rotated = format!(r#"{{"keys": [{}]}}"#, super::with_real_keys::JWK_B);
        let mut s = Stream::new();
        let plan = run(GOOD, |r| s.on_request_headers(&p, r, &mut w, &host));
        assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
        let plan = run(GOOD, |r| {
            s.on_callout_answer(&p, ok(&rotated), r, &mut w, &host)
        });
        assert_eq!(plan.counter, unknown, "{plan:?}");
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 0)));
    }
}

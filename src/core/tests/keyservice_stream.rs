//! The key service end to end through a [`Stream`]: the callout step, the shared cache, single
//! flight, degraded mode and rejections, with a [`crate::core::shared::MemoryStore`] and a
//! clock the tests move.

use std::borrow::Cow;

use crate::config::parse_policy;
use crate::core::apikey::{self, KeyKind, NewKey};
use crate::core::callout::{Callout, CalloutAnswer};
use crate::core::codes::Reason;
use crate::core::counters::{Admission, Counter, KeyEvent};
use crate::core::effects::Gauge;
use crate::core::facts::RequestHeaders;
use crate::core::keyservice::testing::{claims, service, token, Host, NOW};
use crate::core::plan::{Next, Plan};
use crate::core::policy::Policy;
use crate::core::shared::SharedStore;
use crate::core::stream::WorkerState;
use crate::core::stream::{BodyPlan, Stream};
use crate::core::token::{Key, Secret};

use super::SECRET;

/// An opaque private key, as the team's service issues them.
const OPAQUE: &[u8] = b"sk-live-0123456789abcdefABCDEF";

fn policy() -> Policy {
    let json = format!(
        r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}"}}],
            "api": {{"routes": [{{"prefix": "/v1/maps", "product": "maps"}}]}}}}"#
    );
    let mut p = parse_policy(json.as_bytes()).unwrap();
    p.api.as_mut().unwrap().service = Some(service());
    p
}

fn with_key(key: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
    vec![
        (b":method", b"GET".to_vec()),
        (b":path", b"/v1/maps/tiles?z=1".to_vec()),
        (b":authority", b"api.example".to_vec()),
        (b"x-api-key", key.to_vec()),
    ]
}

/// Runs `f` with the request's headers as a host hands them.
fn req<R>(headers: &[(&'static [u8], Vec<u8>)], f: impl FnOnce(RequestHeaders<'_>) -> R) -> R {
    let pairs: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    f(RequestHeaders {
        peer: Some(b"192.0.2.1:5"),
        headers: &pairs,
        end_of_stream: true,
    })
}

fn headers_step<'p>(s: &mut Stream, p: &'p Policy, host: &Host, key: &[u8]) -> Plan<'p> {
    req(&with_key(key), |r| {
        s.on_request_headers(p, r, &mut WorkerState::default(), host)
    })
}

fn answer<'p>(
    s: &mut Stream,
    p: &'p Policy,
    host: &Host,
    key: &[u8],
    a: CalloutAnswer<'_>,
) -> Plan<'p> {
    req(&with_key(key), |r| {
        s.on_callout_answer(p, a, r, &mut WorkerState::default(), host)
    })
}

fn resume<'p>(s: &mut Stream, p: &'p Policy, host: &Host, key: &[u8]) -> Plan<'p> {
    req(&with_key(key), |r| {
        s.resume(p, r, &mut WorkerState::default(), host)
    })
}

fn ok(body: &[u8]) -> CalloutAnswer<'_> {
    CalloutAnswer {
        status: Some(200),
        retry_after: None,
        body,
    }
}

fn callout(plan: &Plan<'_>) -> Callout {
    match &plan.next {
        Next::Callout(c) => c.clone(),
        other => panic!("not a callout: {other:?}"),
    }
}

fn set<'a>(plan: &'a Plan<'_>, name: &str) -> Option<&'a [u8]> {
    plan.set
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_slice())
}

fn status(plan: &Plan<'_>) -> u16 {
    plan.reply().map_or(0, |r| r.status)
}

fn reply_header<'a>(plan: &'a Plan<'_>, name: &str) -> Option<&'a str> {
    plan.reply()?
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_ref())
}

fn key_event(e: KeyEvent) -> Option<Counter> {
    Some(Counter::KeyService(e))
}

/// Resolves `key` once (a callout answered with a token expiring at `exp`).
fn resolve(p: &Policy, host: &Host, key: &[u8], exp: u64) {
    let mut s = Stream::new();
    callout(&headers_step(&mut s, p, host, key));
    let t = token(&claims("private_key", exp));
    let plan = answer(&mut s, p, host, key, ok(t.as_bytes()));
    assert_eq!(plan.next, Next::Continue, "{plan:?}");
}

#[test]
fn an_opaque_key_is_resolved_by_one_callout_then_served_from_the_cache() {
    let p = policy();
    let host = Host::default();
    let mut s = Stream::new();
    let plan = headers_step(&mut s, &p, &host, OPAQUE);
    let c = callout(&plan);
    assert_eq!(plan.also, [key_event(KeyEvent::Miss), None]);
    assert_eq!(plan.counter, key_event(KeyEvent::Callout));
    assert_eq!(plan.audit, None, "decided once the answer comes");
    assert!(s.holding());
    assert_eq!(s.body_plan(), BodyPlan::Hold);
    // The key travels in the configured header, never in the path, and is never printed.
    let header = |name: &str| {
        c.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-api-key").as_deref(), Some(OPAQUE));
    assert_eq!(header(":path").as_deref(), Some(&b"/access_tokens/"[..]));
    let key_text = std::str::from_utf8(OPAQUE).unwrap();
    for shown in [format!("{c:?}"), format!("{plan:?}"), format!("{s:?}")] {
        assert!(!shown.contains(key_text), "{shown}");
    }

    let t = token(&claims("private_key", NOW + 3600));
    let plan = answer(&mut s, &p, &host, OPAQUE, ok(t.as_bytes()));
    assert_eq!(plan.next, Next::Continue, "{plan:?}");
    let h = &p.api.as_ref().unwrap().headers;
    assert_eq!(set(&plan, h.organization.as_str()), Some(&b"org1"[..]));
    assert_eq!(set(&plan, h.project.as_str()), Some(&b"proj1"[..]));
    assert_eq!(set(&plan, h.kind.as_str()), Some(&b"private_key"[..]));
    assert_eq!(set(&plan, h.key_id.as_str()), Some(&b"key-1"[..]));
    assert_eq!(set(&plan, h.stale.as_str()), None);
    assert!(plan.remove.contains(&Cow::Borrowed(&b"x-api-key"[..])));
    assert_eq!(
        plan.counter,
        Some(Counter::Allowed(Admission::of(
            Some(KeyKind::Private),
            None
        )))
    );
    assert_eq!(
        plan.audit.map(|a| a.value()).as_deref(),
        Some("allow:private_key")
    );
    assert_eq!(
        plan.also,
        [None, None],
        "the miss was counted with the callout"
    );
    assert_eq!(plan.gauge, Some((Gauge::KeyServiceEntries, 1)));
    assert!(plan.wake.is_some());
    assert!(!s.holding());

    // The next request for the key: a hit, no callout.
    let mut s2 = Stream::new();
    let plan = headers_step(&mut s2, &p, &host, OPAQUE);
    assert_eq!(plan.next, Next::Continue, "{plan:?}");
    assert_eq!(plan.also, [key_event(KeyEvent::Hit), None]);
    assert_eq!(set(&plan, h.key_id.as_str()), Some(&b"key-1"[..]));
    assert!(!s2.holding());
}

#[test]
fn twenty_requests_for_a_new_key_share_one_callout() {
    let p = policy();
    let host = Host::default();
    let mut streams: Vec<Stream> = (0..20).map(|_| Stream::new()).collect();
    let mut owners = 0;
    let mut flights = Vec::new();
    for s in &mut streams {
        let plan = headers_step(s, &p, &host, OPAQUE);
        assert_eq!(plan.also, [key_event(KeyEvent::Miss), None]);
        match plan.next {
            Next::Callout(_) => owners += 1,
            Next::Wait(w) => {
                assert!(w.until_ms > host.now_ms.get());
                flights.push(w.flight);
            }
            other => panic!("{other:?}"),
        }
        assert!(s.holding());
    }
    assert_eq!((owners, flights.len()), (1, 19));
    let t = token(&claims("private_key", NOW + 3600));
    let plan = answer(&mut streams[0], &p, &host, OPAQUE, ok(t.as_bytes()));
    assert_eq!(plan.next, Next::Continue);
    let woken = plan.wake.unwrap();
    assert!(flights.iter().all(|f| *f == woken));
    for s in &mut streams[1..] {
        let plan = resume(s, &p, &host, OPAQUE);
        assert_eq!(plan.next, Next::Continue, "{plan:?}");
        assert_eq!(
            plan.also,
            [None, None],
            "counted as a miss when it began waiting"
        );
        assert!(!s.holding());
    }
}

#[test]
fn a_failed_callout_serves_the_expired_answer_stale() {
    let p = policy();
    let host = Host::default();
    resolve(&p, &host, OPAQUE, NOW + 60);
    host.advance_ms(120_000);
    let mut s = Stream::new();
    callout(&headers_step(&mut s, &p, &host, OPAQUE));
    let plan = answer(&mut s, &p, &host, OPAQUE, CalloutAnswer::FAILED);
    assert_eq!(plan.next, Next::Continue, "{plan:?}");
    let h = &p.api.as_ref().unwrap().headers;
    assert_eq!(set(&plan, h.stale.as_str()), Some(&b"true"[..]));
    assert_eq!(set(&plan, h.organization.as_str()), Some(&b"org1"[..]));
    assert_eq!(
        plan.audit.map(|a| a.value()).as_deref(),
        Some("allow:private_key,served_stale")
    );
    assert_eq!(
        plan.also,
        [
            key_event(KeyEvent::StaleServed),
            key_event(KeyEvent::Unavailable)
        ]
    );
    assert!(plan.wake.is_some());
    // While the failure is recent, the next request is served stale without asking.
    let mut s2 = Stream::new();
    let plan = headers_step(&mut s2, &p, &host, OPAQUE);
    assert_eq!(plan.next, Next::Continue, "{plan:?}");
    assert_eq!(plan.also, [key_event(KeyEvent::StaleServed), None]);
    assert_eq!(set(&plan, h.stale.as_str()), Some(&b"true"[..]));
    // Past retry_ms it asks again.
    host.advance_ms(1000);
    callout(&headers_step(&mut Stream::new(), &p, &host, OPAQUE));
}

#[test]
fn a_failed_callout_with_nothing_cached_is_503_never_401() {
    let p = policy();
    let host = Host::default();
    let mut s = Stream::new();
    callout(&headers_step(&mut s, &p, &host, OPAQUE));
    for failed in [
        CalloutAnswer::FAILED,
        CalloutAnswer {
            status: Some(500),
            retry_after: None,
            body: b"oops",
        },
    ] {
        let plan = answer(&mut s, &p, &host, OPAQUE, failed);
        assert_eq!(status(&plan), 503, "{plan:?}");
        assert_eq!(
            plan.reply().unwrap().details,
            "devgate_key_service_unavailable"
        );
        assert_eq!(reply_header(&plan, "www-authenticate"), None);
        assert_eq!(
            plan.counter,
            Some(Counter::Denied(Reason::KeyServiceUnavailable))
        );
        assert_eq!(plan.also[1], key_event(KeyEvent::Unavailable));
        assert!(!s.holding());
        // A second answer for the same stream is a broken host: refused.
        let again = answer(&mut s, &p, &host, OPAQUE, CalloutAnswer::FAILED);
        assert_eq!(status(&again), 500);
        s = Stream::new();
        host.advance_ms(1000);
        callout(&headers_step(&mut s, &p, &host, OPAQUE));
    }
    // Within retry_ms of the failure: 503 at once, without a callout.
    answer(&mut s, &p, &host, OPAQUE, CalloutAnswer::FAILED);
    let plan = headers_step(&mut Stream::new(), &p, &host, OPAQUE);
    assert_eq!(status(&plan), 503);
    assert_eq!(plan.also, [None, None]);
}

#[test]
fn a_rejection_is_401_with_the_challenge_and_is_cached() {
    let p = policy();
    let host = Host::default();
    let mut s = Stream::new();
    callout(&headers_step(&mut s, &p, &host, OPAQUE));
    let rejected = CalloutAnswer {
        status: Some(401),
        retry_after: None,
        body: b"{}",
    };
    let plan = answer(&mut s, &p, &host, OPAQUE, rejected);
    assert_eq!(status(&plan), 401);
    assert_eq!(plan.reply().unwrap().details, "devgate_key_rejected");
    assert!(reply_header(&plan, "www-authenticate").is_some());
    assert_eq!(plan.counter, Some(Counter::Denied(Reason::KeyRejected)));
    assert_eq!(plan.gauge, Some((Gauge::KeyServiceEntries, 1)));
    let plan = headers_step(&mut Stream::new(), &p, &host, OPAQUE);
    assert_eq!(status(&plan), 401);
    assert_eq!(plan.also, [key_event(KeyEvent::Hit), None]);
    // 403 too.
    let other = b"sk-live-forbidden-0123456789";
    let mut s = Stream::new();
    callout(&headers_step(&mut s, &p, &host, other));
    let forbidden = CalloutAnswer {
        status: Some(403),
        retry_after: None,
        body: b"",
    };
    let plan = answer(&mut s, &p, &host, other, forbidden);
    assert_eq!(status(&plan), 403);
    assert_eq!(plan.counter, Some(Counter::Denied(Reason::KeyForbidden)));
}

#[test]
fn over_quota_answers_pass_retry_after_on() {
    let p = policy();
    let host = Host::default();
    for (code, reason) in [(429, Reason::OverQuota), (402, Reason::OverFreeQuota)] {
        let key = format!("sk-live-quota-{code}-0123456789");
        let mut s = Stream::new();
        callout(&headers_step(&mut s, &p, &host, key.as_bytes()));
        let over = CalloutAnswer {
            status: Some(code),
            retry_after: Some(b"30"),
            body: b"",
        };
        let plan = answer(&mut s, &p, &host, key.as_bytes(), over);
        assert_eq!(status(&plan), code);
        assert_eq!(plan.counter, Some(Counter::Denied(reason)));
        assert_eq!(reply_header(&plan, "retry-after"), Some("30"));
        // From the cache, the time left.
        host.advance_ms(10_000);
        let plan = headers_step(&mut Stream::new(), &p, &host, key.as_bytes());
        assert_eq!(status(&plan), code);
        assert_eq!(reply_header(&plan, "retry-after"), Some("20"));
    }
}

#[test]
fn junk_is_refused_by_its_shape_without_asking() {
    let p = policy();
    let host = Host::default();
    let long = vec![b'a'; 257];
    for junk in [
        &b"short"[..],
        b"has spaces in it 0123456789",
        b"semi;colon0123456789",
        &long,
    ] {
        let mut s = Stream::new();
        let plan = headers_step(&mut s, &p, &host, junk);
        assert_eq!(status(&plan), 401, "{junk:?}");
        assert_eq!(plan.also, [None, None]);
        assert!(!s.holding());
    }
    let prefix = &p
        .api
        .as_ref()
        .unwrap()
        .service
        .as_ref()
        .unwrap()
        .store_prefix;
    assert_eq!(
        host.get(&format!("{prefix}.f")).unwrap().0,
        None,
        "no flight"
    );
}

#[test]
fn devgate_keys_are_still_verified_locally() {
    let p = policy();
    let host = Host::default();
    let products = vec!["maps".to_string()];
    let mine = apikey::mint(
        &NewKey {
            kind: KeyKind::Private,
            id: "local-1",
            org: "org9",
            project: "proj9",
            products: &products,
            write: false,
            referers: &[],
            ips: &[],
            iat: NOW - 10,
            exp: None,
        },
        &Key {
            id: "k1".into(),
            secret: Secret::from_b64url(SECRET).unwrap(),
        },
    )
    .unwrap();
    let mut s = Stream::new();
    let plan = headers_step(&mut s, &p, &host, mine.as_bytes());
    assert_eq!(plan.next, Next::Continue, "{plan:?}");
    let h = &p.api.as_ref().unwrap().headers;
    assert_eq!(set(&plan, h.key_id.as_str()), Some(&b"local-1"[..]));
    assert_eq!(plan.also, [None, None]);
    // A forged devgate key is refused locally, never sent to the service.
    let mut forged = mine.clone();
    forged.pop();
    forged.push(if mine.ends_with('A') { 'B' } else { 'A' });
    let plan = headers_step(&mut Stream::new(), &p, &host, forged.as_bytes());
    assert_eq!(status(&plan), 401);
    assert!(!matches!(plan.next, Next::Callout(_)));
}

#[test]
fn a_client_copy_of_the_stale_header_is_stripped() {
    let p = policy();
    let host = Host::default();
    resolve(&p, &host, OPAQUE, NOW + 3600);
    let mut headers = with_key(OPAQUE);
    headers.push((b"X-Devgate-Served-Stale", b"true".to_vec()));
    let plan = req(&headers, |r| {
        Stream::new().on_request_headers(&p, r, &mut WorkerState::default(), &host)
    });
    assert_eq!(plan.next, Next::Continue);
    assert!(plan
        .remove
        .contains(&Cow::Borrowed(&b"X-Devgate-Served-Stale"[..])));
    assert_eq!(set(&plan, "x-devgate-served-stale"), None);
}

#[test]
fn an_owner_that_goes_away_wakes_a_waiter_who_asks_next() {
    let p = policy();
    let host = Host::default();
    let mut owner = Stream::new();
    let mut waiter = Stream::new();
    callout(&headers_step(&mut owner, &p, &host, OPAQUE));
    let Next::Wait(w) = headers_step(&mut waiter, &p, &host, OPAQUE).next else {
        panic!("waits")
    };
    let plan = owner.on_destroy(&p, &host);
    assert_eq!(plan.wake, Some(w.flight));
    assert!(!owner.holding());
    let plan = resume(&mut waiter, &p, &host, OPAQUE);
    callout(&plan);
    assert_eq!(
        plan.also,
        [None, None],
        "its miss was counted when it began to wait"
    );
    let t = token(&claims("private_key", NOW + 3600));
    let plan = answer(&mut waiter, &p, &host, OPAQUE, ok(t.as_bytes()));
    assert_eq!(plan.next, Next::Continue);
    // A waiter going away wakes nobody; a stream that decided has nothing to end.
    assert_eq!(Stream::new().on_destroy(&p, &host), Plan::default());
}

#[test]
fn a_waiter_whose_wait_ran_out_asks_itself() {
    let p = policy();
    let host = Host::default();
    let mut owner = Stream::new();
    let mut waiter = Stream::new();
    callout(&headers_step(&mut owner, &p, &host, OPAQUE));
    let Next::Wait(w) = headers_step(&mut waiter, &p, &host, OPAQUE).next else {
        panic!("waits")
    };
    // Woken early (another flight's wake): still waiting, on the same flight.
    assert_eq!(resume(&mut waiter, &p, &host, OPAQUE).next, Next::Wait(w));
    host.now_ms.set(w.until_ms);
    callout(&resume(&mut waiter, &p, &host, OPAQUE));
    // The first owner's late answer still counts for it.
    let t = token(&claims("private_key", NOW + 3600));
    let plan = answer(&mut owner, &p, &host, OPAQUE, ok(t.as_bytes()));
    assert_eq!(plan.next, Next::Continue);
}

#[test]
fn the_budget_refuses_with_503_and_retry_after() {
    let mut p = policy();
    if let Some(svc) = p.api.as_mut().and_then(|a| a.service.as_mut()) {
        svc.budget.waiters = 1;
    }
    let host = Host::default();
    callout(&headers_step(&mut Stream::new(), &p, &host, OPAQUE));
    assert!(matches!(
        headers_step(&mut Stream::new(), &p, &host, OPAQUE).next,
        Next::Wait(_)
    ));
    let mut s = Stream::new();
    let plan = headers_step(&mut s, &p, &host, OPAQUE);
    assert_eq!(status(&plan), 503);
    assert_eq!(plan.reply().unwrap().details, "devgate_key_service_busy");
    assert_eq!(reply_header(&plan, "retry-after"), Some("1"));
    assert_eq!(
        plan.also,
        [key_event(KeyEvent::Miss), key_event(KeyEvent::OverBudget)]
    );
    assert_eq!(plan.counter, Some(Counter::Denied(Reason::KeyServiceBusy)));
    assert!(!s.holding());
}

#[test]
fn an_owner_run_again_before_its_answer_keeps_its_callout() {
    let p = policy();
    let host = Host::default();
    let mut owner = Stream::new();
    callout(&headers_step(&mut owner, &p, &host, OPAQUE));
    let plan = resume(&mut owner, &p, &host, OPAQUE);
    assert!(matches!(plan.next, Next::Wait(_)), "{plan:?}");
    assert_eq!(plan.also, [None, None]);
    assert!(owner.holding());
    let t = token(&claims("private_key", NOW + 3600));
    let plan = answer(&mut owner, &p, &host, OPAQUE, ok(t.as_bytes()));
    assert_eq!(plan.next, Next::Continue, "its answer is still its own");
}

#[test]
fn a_public_key_travels_in_the_query_and_its_kind_must_match_its_place() {
    let p = policy();
    let host = Host::default();
    let public = b"pk-live-0123456789abcdef";
    let headers: Vec<(&'static [u8], Vec<u8>)> = vec![
        (b":method", b"GET".to_vec()),
        (
            b":path",
            b"/v1/maps/tiles?key=pk-live-0123456789abcdef&z=1".to_vec(),
        ),
    ];
    let mut s = Stream::new();
    let plan = req(&headers, |r| {
        s.on_request_headers(&p, r, &mut WorkerState::default(), &host)
    });
    let c = callout(&plan);
    let path = c.headers.iter().find(|(n, _)| n == ":path").unwrap();
    assert_eq!(path.1, b"/access_tokens/");
    let t = token(&claims("public_key", NOW + 3600));
    let plan = req(&headers, |r| {
        s.on_callout_answer(&p, ok(t.as_bytes()), r, &mut WorkerState::default(), &host)
    });
    assert_eq!(plan.next, Next::Continue, "{plan:?}");
    assert_eq!(set(&plan, ":path"), Some(&b"/v1/maps/tiles?z=1"[..]));
    assert_eq!(
        plan.audit.map(|a| a.value()).as_deref(),
        Some("allow:public_key")
    );
    // The same key in X-Api-Key (a private key's place) is misplaced.
    let plan = headers_step(&mut Stream::new(), &p, &host, public);
    assert_eq!(status(&plan), 401, "{plan:?}");
    assert_eq!(plan.counter, Some(Counter::Denied(Reason::KeyMisplaced)));
}

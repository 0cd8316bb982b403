//! A stream's part in fetching an assertion source's keys: the decision planned a fetch
//! ([`crate::core::edge::EdgeKeys::want`], or a refresh the request noticed), and the stream
//! owns the source's single flight (a callout to the key URL), waits for the stream that owns
//! it, or decides with what there is. The owner's answer is stored for every worker
//! ([`crate::core::edge::fetch`]), the flight lands (its waiters are woken) and the request is
//! decided again.
//!
//! A refresh (keys usable, older than `refresh_seconds`) holds only its owner: the one request
//! per process that noticed first waits for the fetch; every other request goes on with the
//! set held. The owner cannot be spared: a callout's answer comes back to the stream that made
//! it, and neither host lets a callout outlive a request that went on.

use crate::core::callout::{CalloutAnswer, Wait};
use crate::core::counters::{Counter, EdgeEvent};
use crate::core::edge::fetch::{self, Answer, Join, Why};
use crate::core::edge::keys::{fetched, Planned};
use crate::core::edge::{EdgeView, EdgeWorker};
use crate::core::effects::Gauge;
use crate::core::facts::{Facts, RequestHeaders};
use crate::core::plan::{Next, Plan};
use crate::core::policy::Policy;
use crate::core::revocation::Worker;
use crate::core::shared::SharedStore;

use super::{State, Stream};

/// A request decides again after a fetch at most this many times: it never asks forever.
pub const MAX_ROUNDS: u8 = 3;

/// What one worker keeps across requests, for its streams: its copy of the revocation list and
/// its edge sources' keys and verified-assertion cache.
#[derive(Debug, Default)]
pub struct WorkerState {
    /// The revocation list as this worker holds it.
    pub revocation: Worker,
    /// The fetched edge keys and verified-assertion cache of this worker.
    pub edge: EdgeWorker,
}

/// A request held for an assertion source's keys.
#[derive(Debug)]
pub struct FetchStep {
    /// The source's index in `edge.assertions`.
    source: usize,
    /// This stream started the fetch and has not had its answer yet.
    owner: bool,
    /// The `kid` fetched (PEM per `kid`).
    kid: Option<String>,
    /// How many times the request was held for keys.
    pub(super) rounds: u8,
    /// The flight waited on.
    flight: u64,
}

/// What a decision's edge view said, once the view is gone.
#[derive(Debug)]
pub struct Fetches {
    /// A fetch the decision wants before it can decide.
    pub planned: Option<Planned>,
    /// A source the request used is due for a refresh.
    pub refresh: Option<Planned>,
    /// The cache's hit or miss (counted at a request's first decision only).
    pub cache: Option<Counter>,
    /// A source the request used has no usable keys, and no fetch is planned.
    pub degraded: bool,
}

impl Fetches {
    /// Reads `view` after the decision (`resumed`: decided before, its cache lookup counted).
    pub fn of(view: &EdgeView<'_>, resumed: bool) -> Fetches {
        let (hits, misses) = view.counts();
        let cache = match (resumed, hits, misses) {
            (true, _, _) | (false, 0, 0) => None,
            (false, 0, _) => Some(Counter::Edge(EdgeEvent::CacheMiss)),
            (false, _, _) => Some(Counter::Edge(EdgeEvent::CacheHit)),
        };
        let planned = view.planned();
        Fetches {
            degraded: view.degraded(),
            refresh: view.refresh_due(),
            planned,
            cache,
        }
    }
}

impl Stream {
    /// The decision wants `wanted` fetched: own the source's flight, wait on it, or decide with
    /// what there is. `None`: go on with the decision made (a refresh someone else does, or
    /// none may be made now).
    pub(super) fn fetch_keys<'p, H: Facts + SharedStore>(
        &mut self,
        policy: &'p Policy,
        wanted: Planned,
        fetches: &Fetches,
        req: RequestHeaders<'_>,
        worker: &mut WorkerState,
        host: &H,
    ) -> Option<Plan<'p>> {
        let edge = policy.edge.as_ref()?;
        let fetch = edge.assertions.get(wanted.source).and_then(fetched)?;
        let flight = fetch::flight_id(fetch);
        let rounds = match &self.state {
            State::Fetch(step) => step.rounds,
            _ => 0,
        }
        .saturating_add(1);
        let refresh = wanted.why == Why::Refresh;
        let step = |owner: bool, rounds: u8| {
            State::Fetch(FetchStep {
                source: wanted.source,
                owner,
                kid: wanted.kid.clone(),
                rounds,
                flight,
            })
        };
        if worker.edge.load(wanted.source, host) {
            // Another worker stored a newer set since this one read it: decide with it first
            // (a refresh is done: the request goes on with the set it was decided with).
            if refresh {
                return None;
            }
            self.state = step(false, rounds);
            return Some(self.on_request_headers(policy, req, worker, host));
        }
        match fetch::join(fetch, host, wanted.why, host.now_ms()) {
            Ok(Join::Owner) => {
                self.state = step(true, rounds);
                Some(Plan {
                    edge: [fetches.cache, None],
                    next: Next::Callout(fetch::callout(fetch, wanted.kid.as_deref())),
                    ..Plan::default()
                })
            }
            Ok(Join::Wait(wait)) if !refresh => {
                self.state = step(false, rounds);
                Some(Plan {
                    edge: [fetches.cache, None],
                    next: Next::Wait(wait),
                    ..Plan::default()
                })
            }
            Ok(Join::No) if !refresh => {
                // Decided again as after a failed fetch of its own: never asks twice.
                self.state = step(false, MAX_ROUNDS);
                Some(self.on_request_headers(policy, req, worker, host))
            }
            Ok(Join::Wait(_) | Join::No) => None,
            Err(_) if refresh => None,
            Err(_) => {
                self.state = State::Done;
                Some(Plan::refuse("shared_data_unavailable"))
            }
        }
    }

    /// The answer of this stream's key fetch (or [`CalloutAnswer::FAILED`]): a usable set is
    /// stored for every worker, the flight lands (its waiters are woken), and the request is
    /// decided again.
    pub(super) fn on_fetched<'p, H: Facts + SharedStore>(
        &mut self,
        policy: &'p Policy,
        answer: CalloutAnswer<'_>,
        req: RequestHeaders<'_>,
        worker: &mut WorkerState,
        host: &H,
    ) -> Plan<'p> {
        let State::Fetch(step) = &mut self.state else {
            return Plan::refuse("callout_unexpected");
        };
        if !step.owner {
            return Plan::refuse("callout_unexpected");
        }
        step.owner = false;
        let (source, flight) = (step.source, step.flight);
        let edge = policy.edge.as_ref();
        let Some((edge, fetch)) = edge.and_then(|e| Some((e, fetched(e.assertions.get(source)?)?)))
        else {
            self.state = State::Done;
            return Plan::refuse("edge_keys_not_configured");
        };
        let now_ms = host.now_ms();
        let taken = fetch::take_answer(fetch, host, step.kid.as_deref(), answer, now_ms / 1000);
        let good = taken == Ok(Answer::Good);
        let landed = fetch::land(fetch, host, good, now_ms);
        if taken.is_err() || landed.is_err() {
            self.state = State::Done;
            let mut plan = Plan::refuse("shared_data_unavailable");
            plan.wake = Some(flight);
            return plan;
        }
        worker.edge.load(source, host);
        let mut plan = self.on_request_headers(policy, req, worker, host);
        let event = match good {
            true => EdgeEvent::KeysFetched,
            false => EdgeEvent::KeysFetchFailed,
        };
        plan.edge[1] = Some(Counter::Edge(event));
        let degraded = !worker.edge.usable(edge, source, now_ms / 1000);
        plan.gauge = plan
            .gauge
            .or(Some((Gauge::EdgeKeysDegraded, u64::from(degraded))));
        plan.wake = Some(flight);
        plan
    }

    /// Run again while its own fetch is out (a host's stray resume): it keeps its flight and
    /// waits for its answer.
    pub(super) fn still_fetching<H: Facts>(
        &self,
        policy: &Policy,
        host: &H,
    ) -> Option<Plan<'static>> {
        let State::Fetch(step) = &self.state else {
            return None;
        };
        if !step.owner {
            return None;
        }
        let timeout = policy
            .edge
            .as_ref()
            .and_then(|e| e.assertions.get(step.source))
            .and_then(fetched)
            .map_or(0, |f| f.timeout_ms);
        Some(Plan {
            next: Next::Wait(Wait {
                flight: step.flight,
                until_ms: host.now_ms().saturating_add(timeout).saturating_add(1000),
            }),
            ..Plan::default()
        })
    }
}

/// The stream ends while held for keys: an owner whose fetch never answered ends the flight,
/// so its waiters are woken and one of them fetches instead.
pub(super) fn destroyed<H: Facts + SharedStore>(
    policy: &Policy,
    step: &FetchStep,
    host: &H,
) -> Plan<'static> {
    let fetch = policy
        .edge
        .as_ref()
        .and_then(|e| e.assertions.get(step.source))
        .and_then(fetched);
    match fetch {
        Some(fetch) if step.owner => {
            let _ = fetch::abandon(fetch, host, host.now_ms());
            Plan {
                wake: Some(step.flight),
                ..Plan::default()
            }
        }
        _ => Plan::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;
    use crate::core::counters::Counter;
    use crate::core::keyservice::testing::Host;
    use crate::core::stream::BodyPlan;
    use crate::core::tests::edge_keys::{edge, key_fetch};

    fn policy() -> Policy {
        let mut p = parse_policy(b"{}").unwrap();
        p.edge = Some(edge());
        p
    }

    const HEADERS: [(&[u8], &[u8]); 3] = [
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":authority", b"app.example"),
    ];

    fn req() -> RequestHeaders<'static> {
        RequestHeaders {
            peer: Some(b"192.0.2.1:5"),
            headers: &HEADERS,
            end_of_stream: true,
        }
    }

    fn missing(source: usize, kid: Option<&str>) -> Planned {
        Planned {
            source,
            why: Why::Missing,
            kid: kid.map(str::to_string),
        }
    }

    fn none() -> Fetches {
        Fetches {
            planned: None,
            refresh: None,
            cache: None,
            degraded: false,
        }
    }

    fn fetch_keys<'p>(
        s: &mut Stream,
        p: &'p Policy,
        wanted: Planned,
        host: &Host,
    ) -> Option<Plan<'p>> {
        s.fetch_keys(p, wanted, &none(), req(), &mut WorkerState::default(), host)
    }

    #[test]
    fn one_stream_fetches_the_others_wait_and_its_answer_wakes_them() {
        let p = policy();
        let host = Host::default();
        let flight = fetch::flight_id(&key_fetch("jwks"));
        let mut owner = Stream::new();
        let plan = fetch_keys(&mut owner, &p, missing(0, None), &host).unwrap();
        let Next::Callout(call) = &plan.next else {
            panic!("{plan:?}");
        };
        assert_eq!(call.cluster, "idp");
        assert_eq!(call.headers[1].1, b"/keys/");
        assert!(owner.holding());
        assert_eq!(owner.body_plan(), BodyPlan::Hold);
        let mut waiter = Stream::new();
        let plan = fetch_keys(&mut waiter, &p, missing(0, None), &host).unwrap();
        assert!(matches!(plan.next, Next::Wait(w) if w.flight == flight));
        assert!(waiter.holding());
        // A stray resume of the owner keeps it waiting for its own answer.
        let plan = owner.resume(&p, req(), &mut WorkerState::default(), &host);
        assert!(matches!(plan.next, Next::Wait(w) if w.flight == flight));
        // The answer is garbage: nothing stored, the flight lands failed, the waiters wake, the
        // request is decided again (refused, not held), the source is degraded.
        host.advance_ms(40);
        let answer = CalloutAnswer {
            status: Some(200),
            retry_after: None,
            body: b"not a key set",
        };
        let plan = owner.on_callout_answer(&p, answer, req(), &mut WorkerState::default(), &host);
        assert_eq!(plan.wake, Some(flight));
        assert_eq!(
            plan.edge[1],
            Some(Counter::Edge(EdgeEvent::KeysFetchFailed))
        );
        assert_eq!(plan.gauge, Some((Gauge::EdgeKeysDegraded, 1)));
        assert!(matches!(plan.next, Next::Reply(_)));
        assert!(!owner.holding());
        assert_eq!(host.get("devgate.edge.keys.jwks").unwrap().0, None);
        // Within the retry time nobody fetches: a request is decided with what there is.
        let mut late = Stream::new();
        let plan = fetch_keys(&mut late, &p, missing(0, None), &host).unwrap();
        assert!(matches!(plan.next, Next::Reply(_)), "{plan:?}");
        assert!(!late.holding());
        // A refresh someone else owns, or none may be made: the decision goes on.
        let refresh = Planned {
            why: Why::Refresh,
            ..missing(0, None)
        };
        assert!(fetch_keys(&mut Stream::new(), &p, refresh, &host).is_none());
    }

    #[test]
    fn an_owner_that_goes_away_ends_the_flight_so_a_waiter_fetches() {
        let p = policy();
        let host = Host::default();
        let mut owner = Stream::new();
        let plan = fetch_keys(&mut owner, &p, missing(2, Some("kid-1")), &host).unwrap();
        assert!(matches!(&plan.next, Next::Callout(c) if c.headers[1].1 == b"/keys/kid-1"));
        let mut waiter = Stream::new();
        assert!(matches!(
            fetch_keys(&mut waiter, &p, missing(2, Some("kid-1")), &host)
                .unwrap()
                .next,
            Next::Wait(_)
        ));
        let plan = owner.on_destroy(&p, &host);
        assert_eq!(plan.wake, Some(fetch::flight_id(&key_fetch("alb"))));
        // The woken waiter asks again and owns the next flight.
        assert!(matches!(
            fetch_keys(&mut waiter, &p, missing(2, Some("kid-1")), &host)
                .unwrap()
                .next,
            Next::Callout(_)
        ));
        // A waiter's end wakes nobody.
        let mut other = Stream::new();
        let _ = fetch_keys(&mut other, &p, missing(2, Some("kid-1")), &host);
        assert_eq!(other.on_destroy(&p, &host).wake, None);
        // An answer to a stream that did not ask is refused.
        let plan = other.on_callout_answer(
            &p,
            CalloutAnswer::FAILED,
            req(),
            &mut WorkerState::default(),
            &host,
        );
        assert_eq!(plan.counter, Some(Counter::InternalError));
    }

    #[test]
    fn a_request_holds_only_so_many_rounds() {
        let p = policy();
        let host = Host::default();
        let mut s = Stream::new();
        for round in 1..=MAX_ROUNDS {
            // Each round: its flight ends by itself (the owner vanished), so it may own the next.
            let plan = fetch_keys(&mut s, &p, missing(0, None), &host).unwrap();
            assert!(matches!(plan.next, Next::Callout(_)), "round {round}");
            let State::Fetch(step) = &s.state else {
                panic!("held");
            };
            assert_eq!(step.rounds, round);
            host.advance_ms(2_001);
        }
    }
}

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
            degraded: planned.is_none() && view.degraded(),
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
        if !refresh && worker.edge.load(wanted.source, host) {
            // Another worker stored a newer set since this one read it: decide with it first.
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
        let degraded = !worker.edge.all_usable(edge, now_ms / 1000);
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

//! One HTTP stream, step by step: the host hands each step's facts to a [`Stream`] it owns and
//! has the core's interpreter ([`crate::core::perform`]) carry out the [`Plan`] it gets back. Every decision a host would otherwise make is here: the
//! request's plan, the login flow across the body, what to do with trailers, and what the
//! upstream's response becomes.
//!
//! Facts a step may not need are read through [`Facts`] and [`ResponseFacts`], only when the
//! policy needs them: the clock only for tokens, API keys and the login; TLS state only under
//! the login mount; the response's headers only when the cheap `www-authenticate` probe hits.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::core::callout::CalloutAnswer;
use crate::core::codes::Outcome;
use crate::core::codes::Reason;
use crate::core::codes::ResponseHeaders;
use crate::core::counters::KeyEvent;
use crate::core::counters::{Admission, Counter};
use crate::core::decision::deny;
use crate::core::effects::Gauge;
use crate::core::facts::{Facts, RequestHeaders, ResponseFacts};
use crate::core::headers;
use crate::core::keyservice::flight::{self, Join};
use crate::core::keyservice::Resolver;
use crate::core::keyservice::{
    answer, cache, Asked, CacheResolver, KeyHash, KeyService, Lookup, Resolution,
};
use crate::core::login::{self, Attempts, Page, MAX_BODY};
use crate::core::net;
use crate::core::plan::{deny_details, login_details, Audit, Next, Note, Plan, Reply};
use crate::core::policy::{Policy, UpstreamChallenge};
use crate::core::session::{self, Endpoint, LoginRequest, Step};
use crate::core::shared::{self, SharedStore};
use crate::core::{decide_views, form, Decision, FormVerdicts, Request, Response, Views};

mod edge;
mod finish;

use edge::FetchStep;
pub use edge::WorkerState;
pub use finish::{checks_login_forms, finish_login, finish_with};

/// The body of `POST <mount>/login` being collected, and what its finish step needs. `Send`:
/// a host may run [`finish_login`] off its worker thread.
#[derive(Debug)]
pub struct PendingLogin {
    peer: IpAddr,
    tls: bool,
    body: Vec<u8>,
}

/// What the response step needs from the request step.
#[derive(Debug)]
struct After {
    /// Headers to add to the response (a `Set-Cookie` clearing an expired session).
    add: ResponseHeaders,
    /// Translate an upstream 401 with devgate's challenge.
    translate: bool,
    /// devgate sent a developer with the request.
    had_identity: bool,
    /// The request's `:path` as it went upstream, for `back` (only kept in `login` mode).
    raw_path: Vec<u8>,
}

#[derive(Debug, Default)]
enum State {
    /// Nothing more to do for this stream.
    #[default]
    Done,
    /// Collecting a login body.
    Login(PendingLogin),
    /// The request went upstream and its response needs a look.
    After(After),
    /// The request is held while the key service is asked about its key (this stream owns the
    /// callout) or while another stream asks (this one waits), and decided again after.
    Key(KeyStep),
    /// The request is held while an assertion source's keys are fetched (this stream owns the
    /// fetch) or while another stream fetches them, and decided again after.
    Fetch(FetchStep),
    /// A form POST whose answer turns on its body's `_method`: its headers went on with the
    /// edits, its body is kept in the host until it is whole ([`BodyPlan::Inspect`]).
    Form(Box<FormStep>),
}

/// A form POST waiting for its body.
#[derive(Debug)]
struct FormStep {
    kind: form::Kind,
    verdicts: FormVerdicts,
    /// The counter and audit value of the request once allowed.
    counter: Counter,
    audit: Audit,
    /// What the response step needs, once allowed.
    after: Option<After>,
}

/// A request held for the key service.
#[derive(Debug)]
struct KeyStep {
    /// The key's hash (its flight).
    hash: KeyHash,
    /// This stream started the callout and has not had its answer yet.
    owner: bool,
    /// The answer of this stream's own callout, once it came.
    answer: Option<Resolution>,
}

/// What the host does with request body chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// Let them through untouched; do not read them.
    Pass,
    /// Read each chunk, drop it from the stream, and hand it to [`Stream::on_request_body`].
    Collect,
    /// Keep the chunks in the host's buffer, unread, and hold them: the request waits for the
    /// key service ([`Stream::holding`]).
    Hold,
    /// Keep the chunks in the host's buffer and hold them until the body is whole, then hand
    /// its size and the whole body to [`Stream::on_form_body`]; the body goes on intact when
    /// the request does (a form POST whose `_method` decides it).
    Inspect,
}

/// One HTTP stream's state. Owned by the host, one per stream.
#[derive(Debug, Default)]
pub struct Stream {
    state: State,
}

impl Stream {
    /// A stream with nothing decided yet.
    pub fn new() -> Stream {
        Stream::default()
    }

    /// The request headers step. It may end in a callout to the key service
    /// ([`crate::core::plan::Next::Callout`]: the host hands its answer to
    /// [`Stream::on_callout_answer`]) or a wait for another stream's callout
    /// ([`crate::core::plan::Next::Wait`]: the host calls [`Stream::resume`] when woken).
    pub fn on_request_headers<'p, H: Facts + SharedStore>(
        &mut self,
        policy: &'p Policy,
        req: RequestHeaders<'_>,
        worker: &mut WorkerState,
        host: &H,
    ) -> Plan<'p> {
        let edge = policy.edge.as_ref();
        // Only tokens, API keys, sessions and assertions look at the clock, and only client
        // certificates at the connection's certificate: skip the host calls otherwise.
        let assertions = edge.filter(|e| !e.assertions.is_empty());
        let clock = policy.tokens.is_some()
            || policy.api.is_some()
            || policy.login.is_some()
            || assertions.is_some();
        let cert = match edge.and_then(|e| e.client_certs.as_ref()) {
            Some(_) => host.client_cert(),
            None => None,
        };
        let now_ms = if assertions.is_some() {
            host.now_ms()
        } else {
            0
        };
        let request = Request {
            peer: req.peer,
            headers: req.headers,
            now: if clock { host.now() } else { 0 },
            cert: cert.as_ref(),
        };
        let view = worker.revocation.view(policy, request.now, host);
        let service = policy.api.as_ref().and_then(|a| a.service.as_ref());
        // A request held for the key service or a key fetch is decided again (woken,
        // answered): its hit or miss was counted at its first decision.
        let resumed = matches!(self.state, State::Key(_) | State::Fetch(_));
        let in_hand = match &self.state {
            State::Key(step) => step.answer.clone().map(|answer| (step.hash, answer)),
            _ => None,
        };
        let rounds = match &self.state {
            State::Fetch(step) => step.rounds,
            _ => 0,
        };
        let keys = assertions.map(|e| worker.edge.view(e, now_ms, host, rounds < edge::MAX_ROUNDS));
        // A form POST whose answer turns on its body's `_method` is read, when devgate can: not
        // after a wait for the key service, whose held body chunks went by unread (a request
        // without a body asks for no other method).
        let form = match (req.end_of_stream, &self.state) {
            (true, _) | (false, State::Key(_) | State::Fetch(_)) => None,
            (false, _) => form::Kind::of(req.headers),
        };
        let read_form = req.end_of_stream || form.is_some();
        let decide = |resolver: Option<&dyn Resolver>| {
            let views = Views {
                revocation: view,
                keys: resolver,
                edge: keys.as_ref().map(|k| k as &dyn crate::core::edge::EdgeKeys),
            };
            decide_views(policy, &request, views, read_form)
        };
        let ((decision, verdicts), mut asked) = match service {
            Some(service) => {
                let resolver = CacheResolver::new(
                    service,
                    host,
                    request.now,
                    host.now_ms(),
                    in_hand.as_ref().map(|(hash, answer)| (hash, answer)),
                );
                (decide(Some(&resolver)), resolver.asked())
            }
            None => (decide(None), None),
        };
        let fetches = keys.map(|k| edge::Fetches::of(&k, resumed));
        if let (true, Some(asked)) = (resumed, asked.as_mut()) {
            asked.event = asked
                .event
                .filter(|e| !matches!(e, KeyEvent::Hit | KeyEvent::Miss));
        }
        let event = asked
            .as_ref()
            .and_then(|a| a.event)
            .map(Counter::KeyService);
        let stale = matches!(
            asked.as_ref().map(|a| &a.lookup),
            Some(Lookup::Known { stale: true, .. })
        );
        if let Some(fetches) = &fetches {
            // Keys to fetch: this request waits for them (or owns a refresh it noticed).
            let refresh = !matches!(decision, Decision::Ask) && !resumed;
            let wanted = match (&decision, refresh) {
                (Decision::Ask, _) => fetches.planned.clone(),
                (_, true) => fetches.refresh.clone(),
                _ => None,
            };
            if let Some(wanted) = wanted {
                if let Some(plan) = self.fetch_keys(policy, wanted, fetches, req, worker, host) {
                    return plan;
                }
            }
        }
        if !matches!(decision, Decision::Ask) {
            // Decided: whatever the stream waited for is over.
            if matches!(self.state, State::Key(_) | State::Fetch(_)) {
                self.state = State::Done;
            }
        }
        let mut plan = match decision {
            Decision::Ask => {
                return match (service, asked) {
                    (Some(service), Some(asked)) => {
                        self.ask(policy, service, asked, req, worker, host)
                    }
                    _ => Plan::refuse("key_service_state_lost"),
                }
            }
            Decision::Allow {
                identity,
                api_key,
                edits,
                response_headers,
            } => {
                let translate = policy.upstream_challenge != UpstreamChallenge::Pass;
                if translate || !response_headers.is_empty() {
                    // `back` is the path as it goes upstream (an API key already taken out).
                    let raw_path = if policy.upstream_challenge == UpstreamChallenge::Login {
                        edits
                            .set
                            .iter()
                            .find(|(n, _)| *n == ":path")
                            .map(|(_, v)| v.as_slice())
                            .or_else(|| request.header(b":path"))
                            .unwrap_or_default()
                            .to_vec()
                    } else {
                        Vec::new()
                    };
                    self.state = State::After(After {
                        add: response_headers,
                        translate,
                        had_identity: identity.is_some(),
                        raw_path,
                    });
                }
                let source = identity.as_ref().map(|id| id.source);
                let audit = match api_key {
                    Some(kind) if stale => Audit::AllowStale(kind, source),
                    _ => Audit::Allow(api_key, source),
                };
                let counter = Counter::Allowed(Admission::of(api_key, source));
                let mut plan = Plan {
                    remove: edits.remove,
                    set: edits.set,
                    counter: Some(counter),
                    audit: Some(audit),
                    ..Plan::default()
                };
                if let (Some(verdicts), Some(kind)) = (verdicts, form) {
                    // The edits go on with the headers (they are the same whatever the body
                    // asks for); the answer, its counter and audit value wait for the body.
                    let after = match std::mem::take(&mut self.state) {
                        State::After(after) => Some(after),
                        _ => None,
                    };
                    (plan.counter, plan.audit) = (None, None);
                    self.state = State::Form(Box::new(FormStep {
                        kind,
                        verdicts,
                        counter,
                        audit,
                        after,
                    }));
                }
                plan
            }
            Decision::Deny { reason, response } => {
                self.state = State::Done;
                refusal(policy, reason, response, req)
            }
            Decision::Login(endpoint) => {
                let mut plan = self.login_headers(policy, endpoint, &request, req, host);
                let mut remove = scrub_identity(policy, req.headers);
                remove.append(&mut plan.remove);
                plan.remove = remove;
                plan
            }
        };
        plan.also = [event, None];
        if let Some(fetches) = fetches {
            plan.edge = [fetches.cache, None];
            if fetches.degraded {
                plan.gauge = plan.gauge.or(Some((Gauge::EdgeKeysDegraded, 1)));
            }
        }
        plan
    }

    /// The request's key must be asked about: own the key's callout, wait for another stream's,
    /// or be refused for budget. A key whose last callout just failed is decided at once with
    /// what is cached (stale, a kept rejection, or 503).
    fn ask<'p, H: Facts + SharedStore>(
        &mut self,
        policy: &'p Policy,
        service: &KeyService,
        asked: Asked,
        req: RequestHeaders<'_>,
        worker: &mut WorkerState,
        host: &H,
    ) -> Plan<'p> {
        let miss = asked.event.map(Counter::KeyService);
        if matches!(&self.state, State::Key(k) if k.hash == asked.hash && k.owner) {
            // Run again while its own callout is out (a host's stray resume): it keeps its
            // flight and waits for its answer, never joining its own flight as a waiter.
            return Plan {
                next: Next::Wait(crate::core::callout::Wait {
                    flight: asked.hash.short(),
                    until_ms: host
                        .now_ms()
                        .saturating_add(service.timeout_ms)
                        .saturating_add(1000),
                }),
                ..Plan::default()
            };
        }
        let rejoin = matches!(&self.state, State::Key(k) if k.hash == asked.hash);
        let joined = flight::join(service, host, &asked.hash, host.now_ms(), rejoin);
        match joined {
            Ok(Join::Owner) => {
                self.state = State::Key(KeyStep {
                    hash: asked.hash,
                    owner: true,
                    answer: None,
                });
                Plan {
                    also: [miss, None],
                    counter: Some(Counter::KeyService(KeyEvent::Callout)),
                    next: Next::Callout(answer::callout(service, &asked.key)),
                    ..Plan::default()
                }
            }
            Ok(Join::Wait(wait)) => {
                self.state = State::Key(KeyStep {
                    hash: asked.hash,
                    owner: false,
                    answer: None,
                });
                Plan {
                    also: [miss, None],
                    next: Next::Wait(wait),
                    ..Plan::default()
                }
            }
            Ok(Join::Failed) => {
                // Decided again as after a failed callout of its own: never asks twice.
                self.state = State::Key(KeyStep {
                    hash: asked.hash,
                    owner: false,
                    answer: Some(Resolution::Unavailable),
                });
                self.on_request_headers(policy, req, worker, host)
            }
            Ok(Join::Busy { retry_after }) => {
                self.state = State::Done;
                let reason = Reason::KeyServiceBusy;
                let mut plan = match deny(reason, policy) {
                    Decision::Deny { reason, response } => refusal(policy, reason, response, req),
                    _ => Plan::refuse("key_service_busy"),
                };
                if let Next::Reply(reply) = &mut plan.next {
                    reply
                        .headers
                        .push(("retry-after", Cow::Owned(retry_after.max(1).to_string())));
                }
                plan.also = [miss, Some(Counter::KeyService(KeyEvent::OverBudget))];
                plan
            }
            Err(_) => {
                self.state = State::Done;
                Plan::refuse("shared_data_unavailable")
            }
        }
    }

    /// The answer of this stream's callout (or [`CalloutAnswer::FAILED`]): what it means is
    /// cached for every worker, the key's flight ends (its waiters are woken), and the request
    /// is decided again with the answer in hand, from its headers as the host reads them now.
    pub fn on_callout_answer<'p, H: Facts + SharedStore>(
        &mut self,
        policy: &'p Policy,
        answer: CalloutAnswer<'_>,
        req: RequestHeaders<'_>,
        worker: &mut WorkerState,
        host: &H,
    ) -> Plan<'p> {
        if matches!(self.state, State::Fetch(_)) {
            return self.on_fetched(policy, answer, req, worker, host);
        }
        let Some(service) = policy.api.as_ref().and_then(|a| a.service.as_ref()) else {
            return Plan::refuse("key_service_not_configured");
        };
        let State::Key(step) = &mut self.state else {
            return Plan::refuse("callout_unexpected");
        };
        if !step.owner {
            return Plan::refuse("callout_unexpected");
        }
        let (now, now_ms) = (host.now(), host.now_ms());
        let resolution = answer::classify(service, answer, now);
        let unavailable = resolution == Resolution::Unavailable;
        let entries = cache::store(service, host, &step.hash, &resolution, now, now_ms)
            .ok()
            .flatten();
        let landed = flight::land(service, host, &step.hash, unavailable, now_ms);
        let flight = step.hash.short();
        step.owner = false;
        step.answer = Some(resolution);
        if landed.is_err() {
            self.state = State::Done;
            let mut plan = Plan::refuse("shared_data_unavailable");
            plan.wake = Some(flight);
            return plan;
        }
        let mut plan = self.on_request_headers(policy, req, worker, host);
        if unavailable {
            let [first, _] = plan.also;
            plan.also = [first, Some(Counter::KeyService(KeyEvent::Unavailable))];
        }
        plan.gauge = entries.map(|n| (Gauge::KeyServiceEntries, n));
        plan.wake = Some(flight);
        plan
    }

    /// A stream that waited on another's callout was woken (or its wait ran out): decide again.
    pub fn resume<'p, H: Facts + SharedStore>(
        &mut self,
        policy: &'p Policy,
        req: RequestHeaders<'_>,
        worker: &mut WorkerState,
        host: &H,
    ) -> Plan<'p> {
        if let Some(plan) = self.still_fetching(policy, host) {
            return plan;
        }
        self.on_request_headers(policy, req, worker, host)
    }

    /// Whether the request is held for the key service or a key fetch: its body and trailers
    /// wait in the host.
    pub fn holding(&self) -> bool {
        matches!(self.state, State::Key(_) | State::Fetch(_))
    }

    /// The stream ends (the client left, or Envoy destroys it). A stream whose callout never
    /// answered ends its flight, so its waiters are woken and one of them asks instead.
    pub fn on_destroy<H: Facts + SharedStore>(
        &mut self,
        policy: &Policy,
        host: &H,
    ) -> Plan<'static> {
        let step = match std::mem::take(&mut self.state) {
            State::Key(step) => step,
            State::Fetch(step) => return edge::destroyed(policy, &step, host),
            _ => return Plan::default(),
        };
        let service = policy.api.as_ref().and_then(|a| a.service.as_ref());
        match service {
            Some(service) if step.owner => {
                let _ = flight::abandon(service, host, &step.hash, host.now_ms());
                Plan {
                    wake: Some(step.hash.short()),
                    ..Plan::default()
                }
            }
            _ => Plan::default(),
        }
    }

    /// The headers step of a request under the login mount (identity copies are scrubbed by
    /// the caller, before these removals).
    fn login_headers<H: Facts + SharedStore>(
        &mut self,
        policy: &Policy,
        endpoint: Endpoint,
        request: &Request<'_>,
        req: RequestHeaders<'_>,
        host: &H,
    ) -> Plan<'static> {
        let Some(login) = &policy.login else {
            return Plan::refuse("login_not_configured");
        };
        let method = request.header(b":method").unwrap_or_default();
        // A peer in `network.deny` has no usable address here: the form refuses it (403).
        let peer = policy
            .net
            .undenied_ip(net::parse_peer(request.peer.unwrap_or_default()))
            .ok();
        let attempts = match (session::needs_attempts(endpoint, method), peer) {
            (true, Some(ip)) => match read_attempts(host, &login::rate_key(ip)) {
                Ok((attempts, _)) => attempts,
                Err(_) => return Plan::refuse("shared_data_unavailable"),
            },
            _ => None,
        };
        let tls = endpoint != Endpoint::Other && host.tls();
        let login_request = LoginRequest {
            endpoint,
            headers: request.headers,
            peer,
            tls,
            attempts,
            now: request.now,
        };
        match session::start(login, &login_request) {
            Step::Respond(outcome, page) => login_answer(outcome, page),
            Step::ReadBody => {
                let Some(peer) = peer else {
                    return Plan::refuse("login_without_peer");
                };
                if req.end_of_stream {
                    let pending = PendingLogin {
                        peer,
                        tls,
                        body: Vec::new(),
                    };
                    return finish_login(login, pending, host);
                }
                // A paused Wasm filter is never handed the body (Envoy turns a paused
                // `on_http_request_headers` into StopAllIteration), so the headers go on to
                // the next filter and devgate keeps the body itself, chunk by chunk, handing
                // on empty chunks. The shipped configs put Envoy's buffer filter after devgate
                // on the login route, so the router never sees the request; without it the
                // upstream gets these scrubbed headers, no body, then a reset.
                self.state = State::Login(PendingLogin {
                    peer,
                    tls,
                    body: Vec::with_capacity(512),
                });
                Plan {
                    remove: vec![
                        Cow::Borrowed(b"cookie".as_slice()),
                        Cow::Borrowed(b"authorization".as_slice()),
                        Cow::Borrowed(b"proxy-authorization".as_slice()),
                    ],
                    ..Plan::default()
                }
            }
        }
    }

    /// What the host does with the request body's chunks.
    pub fn body_plan(&self) -> BodyPlan {
        match self.state {
            State::Login(_) => BodyPlan::Collect,
            State::Key(_) | State::Fetch(_) => BodyPlan::Hold,
            State::Form(_) => BodyPlan::Inspect,
            State::Done | State::After(_) => BodyPlan::Pass,
        }
    }

    /// A step of a held form POST's body (only under [`BodyPlan::Inspect`]): `size` bytes are
    /// in the host's buffer, this step's included; `end`: the body ends with them. `read` gives
    /// the whole buffered body; it is called once, when the body is whole within
    /// [`form::MAX_BODY`] (`None`: it could not be read). Until then the plan is empty and
    /// the body plan stays [`BodyPlan::Inspect`]; after, the request goes on (body intact, the
    /// body plan no longer `Inspect`) or is answered.
    pub fn on_form_body(
        &mut self,
        policy: &Policy,
        size: usize,
        end: bool,
        read: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Plan<'static> {
        let within = size <= form::MAX_BODY;
        if !matches!(self.state, State::Form(_)) || (within && !end) {
            return Plan::default();
        }
        let State::Form(step) = std::mem::take(&mut self.state) else {
            return Plan::refuse("form_state_lost");
        };
        let methods = within
            .then(read)
            .flatten()
            .filter(|body| body.len() <= form::MAX_BODY)
            .and_then(|body| step.kind.methods(&body));
        let refusal = match methods {
            Some(methods) => step.verdicts.refusal(policy, &methods),
            None => Some(step.verdicts.strict()),
        };
        if let Some((reason, response)) = refusal {
            return form_refusal(reason, response);
        }
        if let Some(after) = step.after {
            self.state = State::After(after);
        }
        Plan {
            counter: Some(step.counter),
            audit: Some(step.audit),
            ..Plan::default()
        }
    }

    /// A chunk of the request body (only under [`BodyPlan::Collect`]); `end`: the last one.
    pub fn on_request_body<H: Facts + SharedStore>(
        &mut self,
        policy: &Policy,
        chunk: &[u8],
        end: bool,
        host: &H,
    ) -> Plan<'static> {
        match self.collect_body(chunk, end) {
            Collected::Plan(plan) => plan,
            Collected::Finish(pending) => finish_with(policy, pending, host),
        }
    }

    /// [`Stream::on_request_body`] for a host that runs the finish step (bcrypt) off its worker
    /// thread: the whole form comes back as [`Collected::Finish`], for [`finish_login`].
    pub fn collect_body(&mut self, chunk: &[u8], end: bool) -> Collected {
        let State::Login(pending) = &mut self.state else {
            return Collected::Plan(Plan::default());
        };
        if pending.body.len().saturating_add(chunk.len()) > MAX_BODY {
            self.state = State::Done;
            return Collected::Plan(login_answer(Outcome::TooLarge, session::too_large()));
        }
        pending.body.extend_from_slice(chunk);
        if !end {
            return Collected::Plan(Plan::default());
        }
        match std::mem::take(&mut self.state) {
            State::Login(pending) => Collected::Finish(pending),
            _ => Collected::Plan(Plan::refuse("login_state_lost")),
        }
    }

    /// The login form being collected, taken whole: its body ended (trailers came) and a host
    /// that runs the finish step off its worker thread hands it to [`finish_login`]. `None`: no
    /// form is being collected.
    pub fn take_login(&mut self) -> Option<PendingLogin> {
        match std::mem::take(&mut self.state) {
            State::Login(pending) => Some(pending),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The request trailers step. A login body followed by trailers ended with its last data
    /// frame, and devgate answers the request itself. Trailers of a forwarded request lose every
    /// spelling of the headers devgate sets ([`crate::core::trailer_removals`]): the plan's
    /// removals apply to the trailers.
    pub fn on_request_trailers<H: Facts + SharedStore>(
        &mut self,
        policy: &Policy,
        trailers: &[(&[u8], &[u8])],
        host: &H,
    ) -> Plan<'static> {
        match &self.state {
            State::Login(_) => self.finish(policy, host),
            // The body ended without its last data frame saying so: decided strictly.
            State::Form(step) => {
                let (reason, response) = step.verdicts.strict();
                self.state = State::Done;
                form_refusal(reason, response)
            }
            State::Done | State::After(_) | State::Key(_) | State::Fetch(_) => Plan {
                remove: crate::core::trailer_removals(policy, trailers)
                    .into_iter()
                    .map(|n| Cow::Owned(n.to_vec()))
                    .collect(),
                ..Plan::default()
            },
        }
    }

    fn finish<H: Facts + SharedStore>(&mut self, policy: &Policy, host: &H) -> Plan<'static> {
        let State::Login(pending) = std::mem::take(&mut self.state) else {
            return Plan::refuse("login_state_lost");
        };
        finish_with(policy, pending, host)
    }

    /// The response headers step.
    pub fn on_response_headers<R: ResponseFacts>(
        &mut self,
        policy: &Policy,
        resp: &R,
    ) -> Plan<'static> {
        match std::mem::take(&mut self.state) {
            State::Done => Plan::default(),
            // A login POST whose headers reached an upstream that answered before devgate had
            // the whole form: nothing holds the login route (see README, "Login"). The form's
            // body never went on; the upstream's answer does not go out either.
            State::Login(_) => Plan {
                note: Some(Note::LoginUnbuffered),
                ..Plan::refuse("login_unbuffered")
            },
            State::After(after) => respond_after(policy, after, resp),
            // A response while the request is held: Envoy answered it (a timeout, a reset).
            State::Key(_) | State::Fetch(_) => Plan::default(),
            // The upstream answered a form POST whose body devgate still holds: nothing held
            // the request before the router (the buffer filter belongs after devgate there).
            State::Form(_) => Plan::refuse("form_unbuffered"),
        }
    }
}

/// The response step of a request that went upstream.
fn respond_after<R: ResponseFacts>(policy: &Policy, after: After, resp: &R) -> Plan<'static> {
    let mut plan = Plan {
        add_response: after.add,
        ..Plan::default()
    };
    // Only a response with a challenge can need translating, and almost every response has no
    // `WWW-Authenticate`: asking for an absent header is the cheapest read a host has. The
    // whole map, status included, is read only when the header is there.
    if !after.translate || !resp.has_header(b"www-authenticate") {
        return plan;
    }
    let translated = resp.with_headers(|pairs| {
        let status = pairs
            .iter()
            .find(|(n, _)| *n == b":status")
            .map(|(_, v)| *v)
            .unwrap_or_default();
        let www: Vec<&[u8]> = pairs
            .iter()
            .filter(|(n, _)| *n == b"www-authenticate")
            .map(|(_, v)| *v)
            .collect();
        session::translate_challenge(policy, status, &www, after.had_identity, &after.raw_path)
    });
    let Some(Some((challenge, mut page))) = translated else {
        return plan;
    };
    // The reply replaces the upstream's response: carry the headers meant for it (the
    // expired session's clearing Set-Cookie) into the reply.
    page.headers.append(&mut plan.add_response);
    plan.counter = Some(Counter::Challenge(challenge));
    plan.next = Next::Reply(page_reply(
        page,
        Cow::Borrowed("devgate_upstream_challenge"),
    ));
    plan
}

/// What [`Stream::collect_body`] asks of the host.
#[derive(Debug)]
pub enum Collected {
    /// Perform this plan now.
    Plan(Plan<'static>),
    /// The whole form is in: run [`finish_with`] (on any thread) and perform its plan.
    Finish(PendingLogin),
}

/// The answer to a request under the login mount, counted and audited by its outcome.
fn login_answer(outcome: Outcome, page: Page) -> Plan<'static> {
    Plan {
        counter: Some(Counter::Login(outcome)),
        audit: Some(Audit::Login(outcome)),
        next: Next::Reply(page_reply(page, login_details(outcome))),
        ..Plan::default()
    }
}

fn page_reply(page: Page, details: Cow<'static, str>) -> Reply {
    Reply {
        status: page.status,
        headers: page.headers,
        body: Cow::Owned(page.body),
        details,
    }
}

/// The plan of a refusal: the identity's client copies scrubbed, counted, audited, noted, and
/// the reply.
fn refusal<'p>(
    policy: &'p Policy,
    reason: Reason,
    response: Response,
    req: RequestHeaders<'_>,
) -> Plan<'p> {
    Plan {
        remove: scrub_identity(policy, req.headers),
        ..form_refusal(reason, response)
    }
}

/// A refusal without header edits: counted, audited, noted, and the reply. A held form POST's
/// (from its body step: the client copies of devgate's headers went when its headers went on).
fn form_refusal(reason: Reason, response: Response) -> Plan<'static> {
    let Response {
        status,
        headers,
        body,
    } = response;
    Plan {
        counter: Some(Counter::Denied(reason)),
        audit: Some(Audit::Deny(reason)),
        note: Some(Note::Denied { status, reason }),
        next: Next::Reply(Reply {
            status,
            headers,
            body: Cow::Borrowed(body),
            details: deny_details(reason),
        }),
        ..Plan::default()
    }
}

/// Every client-sent spelling of the identity header (and of the source header, with `api`),
/// for a request devgate answers itself: an access log's `%REQ(x-wsgiorg-developer-user)%` and
/// `%REQ(x-devgate-source)%` then only ever show a value devgate set.
fn scrub_identity(policy: &Policy, headers: &[(&[u8], &[u8])]) -> Vec<Cow<'static, [u8]>> {
    // On the stack: a refusal allocates only its reply's header list.
    let only = [&policy.header];
    let with_source;
    let names: &[&headers::HeaderName] = match &policy.api {
        Some(api) => {
            with_source = [&policy.header, &api.headers.source];
            &with_source
        }
        None => &only,
    };
    headers::spellings_present(headers, names)
        .into_iter()
        .map(|n| Cow::Owned(n.to_vec()))
        .collect()
}

/// The peer's failed-login record and its version.
fn read_attempts<S: SharedStore + ?Sized>(
    shared: &S,
    key: &str,
) -> Result<(Option<Attempts>, u32), shared::Unavailable> {
    let (value, cas) = shared.get(key)?;
    Ok((value.as_deref().and_then(Attempts::from_bytes), cas))
}

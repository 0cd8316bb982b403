//! The Wasm host: the only code that names `proxy_wasm`. Each callback gathers the facts the
//! core asks for ([`Wasm`] reads the lazy ones), hands them to the core ([`Stream`], [`Worker`])
//! and has the core's interpreter ([`perform`], [`perform_report`]) carry out the [`Plan`] or
//! [`Report`] it gets back through this host's primitive [`Effects`] ([`Envoy`]). It holds no
//! policy branch and no order of effects. A step it cannot complete (a host call failed) ends in
//! the core's refusal ([`refuse`]), a local 500, never in a forwarded request.
//!
//! A request held for the key service goes on from a later callback: its callout's answer
//! (`on_http_call_response`, in the stream's context or, for a callout started from a root
//! callback, handed over by the root), or a root tick that runs a waiting stream's resume step
//! in the stream's context ([`waiters`]). Each stream's state ([`Held`]) is therefore shared
//! between its HTTP context and that registry.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use super::bindings::{self, Wasm};
use super::map::parse_pairs;
use super::waiters;
use crate::config::load;
use crate::core::callout::{Callout, CalloutAnswer, Wait, MAX_ANSWER_BODY};
use crate::core::counters::Table;
use crate::core::edge::keys;
use crate::core::effects::{Effects, Failed, Gauge, HeaderMap};
use crate::core::facts::{Facts, RequestHeaders};
use crate::core::keyservice;
use crate::core::perform::{perform, perform_report, refuse, Flow};
use crate::core::plan::{Level, Reply, Report};
use crate::core::policy::Policy;
use crate::core::revocation;
use crate::core::stream::WorkerState;
use crate::core::stream::{BodyPlan, Stream};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root {
            id,
            policy: None,
            stats: Rc::new(Stats::default()),
            revocation: Rc::new(RefCell::new(WorkerState::default())),
            revocation_ms: 0,
            revocation_due_ms: 0,
        })
    });
}}

struct Root {
    /// The root context's id (the effective context again after a tick ran streams' steps).
    id: u32,
    /// `None` until a configuration has been accepted, and again after one is refused.
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
    /// This worker's copy of the revocation list and of the edge sources' keys, and its
    /// verified-assertion cache (shared data is the process-wide one).
    revocation: Rc<RefCell<WorkerState>>,
    /// The revocation worker's tick period in ms (0: no revocation ticks yet).
    revocation_ms: u64,
    /// When the revocation worker's next tick is due (ms since the epoch): the root also ticks
    /// fast while streams wait, and the worker's tick must not run more often for that.
    revocation_due_ms: u64,
}

/// Metrics, defined once per VM: the counters from [`Counter::all`](crate::core::counters::Counter::all)
/// (Envoy lists them under `wasmcustom.devgate.*`) and the gauges.
#[derive(Default)]
struct Stats {
    /// Metric ids of the counters (empty until the first configuration).
    counters: Table<u32>,
    /// `devgate.revocation.degraded`: 1 while the list is stale.
    degraded: Option<u32>,
    /// `devgate.key_service.entries`: the key service cache's slots ever filled.
    entries: Option<u32>,
    /// `devgate.edge.keys_degraded`: 1 while a fetched assertion source has no usable keys.
    keys_degraded: Option<u32>,
}

impl Stats {
    fn define() -> Stats {
        Stats {
            counters: Table::define(|name| bindings::define_counter(name).ok()),
            degraded: bindings::define_gauge(revocation::DEGRADED_GAUGE).ok(),
            entries: bindings::define_gauge(keyservice::ENTRIES_GAUGE).ok(),
            keys_degraded: bindings::define_gauge(keys::DEGRADED_GAUGE).ok(),
        }
    }
}

/// The primitive effects of this host, for the core's interpreter ([`perform`]): each one host
/// call, deciding nothing.
struct Envoy<'s> {
    stats: &'s Stats,
    /// The stream whose plan is performed (its callout's answer and its wait's resume come back
    /// to it); `None` for a worker-level report.
    stream: Option<&'s Rc<Held>>,
}

impl Effects for Envoy<'_> {
    type Id = u32;

    fn remove_header(&mut self, map: HeaderMap, name: &[u8]) -> Result<(), Failed> {
        let removed = match map {
            HeaderMap::RequestHeaders => bindings::remove_request_header(name),
            HeaderMap::RequestTrailers => bindings::remove_request_trailer(name),
        };
        removed.map_err(|_| Failed)
    }

    fn set_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), Failed> {
        match map {
            HeaderMap::RequestHeaders => {
                bindings::set_request_header(name.as_bytes(), value).map_err(|_| Failed)
            }
            // The core never sets a trailer; one it did could not be carried out here.
            HeaderMap::RequestTrailers => Err(Failed),
        }
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Failed> {
        bindings::add_response_header(name.as_bytes(), value.as_bytes()).map_err(|_| Failed)
    }

    fn counters(&self) -> &Table<u32> {
        &self.stats.counters
    }

    fn increment(&mut self, id: u32) {
        bindings::increment(id);
    }

    fn set_gauge(&mut self, gauge: Gauge, value: u64) {
        let id = match gauge {
            Gauge::RevocationDegraded => self.stats.degraded,
            Gauge::KeyServiceEntries => self.stats.entries,
            Gauge::EdgeKeysDegraded => self.stats.keys_degraded,
        };
        if let Some(id) = id {
            bindings::record(id, value);
        }
    }

    fn set_audit(&mut self, value: &str) -> Result<(), Failed> {
        bindings::set_property("devgate_decision", value.as_bytes()).map_err(|_| Failed)
    }

    fn log_enabled(&self, level: Level) -> bool {
        log::log_enabled!(log_level(level))
    }

    fn log(&mut self, level: Level, line: fmt::Arguments<'_>) {
        log::log!(log_level(level), "{line}");
    }

    fn send_reply(&mut self, reply: &Reply) -> Result<(), Failed> {
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_bytes()))
            .collect();
        bindings::send_local_response(
            reply.status,
            &reply.details,
            &headers,
            reply.body.as_bytes(),
        )
        .map_err(|_| Failed)
    }

    /// Through the SDK, whose dispatcher must know the call's token to route its answer back to
    /// this stream. Its header values are `&str`: the key service's headers are ASCII (a key of
    /// another shape is never asked about), and one that is not makes the callout not start.
    fn start_callout(&mut self, callout: &Callout) -> Result<(), Failed> {
        let Some(held) = self.stream else {
            return Err(Failed);
        };
        let headers = callout
            .headers
            .iter()
            .map(|(n, v)| std::str::from_utf8(v).map(|v| (n.as_ref(), v)))
            .collect::<Result<Vec<(&str, &str)>, _>>()
            .map_err(|_| Failed)?;
        let token = proxy_wasm::hostcalls::dispatch_http_call(
            &callout.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(callout.timeout_ms),
        )
        .map_err(|_| Failed)?;
        held.registered.set(true);
        waiters::callout_started(token, held.id, Rc::downgrade(held));
        Ok(())
    }

    fn wait(&mut self, wait: &Wait) -> Result<(), Failed> {
        let Some(held) = self.stream else {
            return Err(Failed);
        };
        held.registered.set(true);
        waiters::wait(held.id, wait.until_ms, Rc::downgrade(held)).map_err(|_| Failed)
    }

    /// Nothing: this VM's waiters run their resume step on every fast tick (see [`waiters`]),
    /// and so see a flight's end within [`waiters::FAST_TICK_MS`], as other workers' do.
    fn wake(&mut self, _flight: u64) {}
}

/// The `log` crate's level of a core [`Level`] (proxy-wasm's logger passes it to the host).
fn log_level(level: Level) -> log::Level {
    match level {
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warn => log::Level::Warn,
        Level::Error => log::Level::Error,
    }
}

impl Root {
    /// Performs a worker-level report (counter, gauge, note) through the core's interpreter.
    fn report(&self, report: &Report) {
        perform_report(
            report,
            &mut Envoy {
                stats: &self.stats,
                stream: None,
            },
        );
    }

    /// Runs every waiting stream's resume step, each in its own context, and lets those the
    /// core lets through go on.
    fn resume_waiters(&self) {
        let waiting = waiters::take_waiting();
        if waiting.is_empty() {
            return;
        }
        for (id, stream) in waiting {
            // A stream Envoy destroyed is gone from the registry; a dead reference is skipped.
            let Some(held) = stream.upgrade() else {
                continue;
            };
            if bindings::set_effective_context(id).is_err() {
                continue;
            }
            Held::go_on(held.run(Step::Resume));
        }
        let _ = bindings::set_effective_context(self.id);
    }

    /// The revocation worker's tick: at most once per its period, however fast the root ticks.
    fn revocation_tick(&mut self) {
        if self.revocation_ms == 0 {
            return;
        }
        let now_ms = Wasm.now_ms();
        // Half a fast tick early is on time: a normal tick comes exactly one period later.
        let slack = u64::from(waiters::FAST_TICK_MS / 2);
        if now_ms.saturating_add(slack) < self.revocation_due_ms {
            return;
        }
        self.revocation_due_ms = now_ms.saturating_add(self.revocation_ms);
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let Ok(mut worker) = self.revocation.try_borrow_mut() else {
            return;
        };
        let tick = worker.revocation.on_tick(&policy, &Wasm);
        self.report(&Report {
            degraded: tick.degraded,
            ..Report::default()
        });
        let Some(fetch) = tick.fetch else {
            return;
        };
        let started = self
            .dispatch_http_call(
                fetch.cluster,
                fetch.headers.to_vec(),
                None,
                vec![],
                Duration::from_millis(fetch.timeout_ms),
            )
            .is_ok();
        let report = worker.revocation.fetch_started(started, &policy);
        self.report(&report);
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _t: usize) {
        // A stream's callout started from a root callback (a waiter's resume step): its answer
        // is the stream's, in the stream's context.
        if let Some((id, stream)) = waiters::take_callout(token) {
            if let Some(held) = stream.upgrade() {
                if bindings::set_effective_context(id).is_ok() {
                    held.answered(headers, body_size);
                }
                let _ = bindings::set_effective_context(self.id);
            }
            return;
        }
        let Ok(mut worker) = self.revocation.try_borrow_mut() else {
            return;
        };
        let status = bindings::http_call_status();
        let report = worker.revocation.on_fetched(
            status.as_deref(),
            body_size,
            |size| bindings::http_call_body(size).ok(),
            &Wasm,
        );
        self.report(&report);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Notes are formatted only at a level Envoy's wasm logger writes (the core asks
        // `log_enabled`): follow its level as it is when the configuration comes, so that a
        // refused request's debug note is logged under `-l debug` and costs nothing otherwise.
        if let Ok(level) = bindings::log_level() {
            proxy_wasm::set_log_level(match level {
                0 | 1 => LogLevel::Debug,
                2 => LogLevel::Info,
                3 => LogLevel::Warn,
                _ => LogLevel::Error,
            });
        }
        if !self.stats.counters.is_defined() {
            self.stats = Rc::new(Stats::define());
        }
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let (policy, report) = load(&raw);
        self.report(&report);
        let accepted = policy.is_some();
        if let Some(seconds) = policy.as_ref().and_then(revocation::tick_seconds) {
            if self.revocation_ms == 0 {
                let ms = seconds.saturating_mul(1000);
                if waiters::set_normal_period(u32::try_from(ms).unwrap_or(u32::MAX)).is_ok() {
                    self.revocation_ms = ms;
                }
            }
        }
        // Fail closed: a refused configuration drops any previous policy too.
        self.policy = policy.map(Rc::new);
        accepted
    }

    fn on_tick(&mut self) {
        self.resume_waiters();
        self.revocation_tick();
        waiters::settle();
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            held: Rc::new(Held {
                id,
                policy: self.policy.clone(),
                stats: Rc::clone(&self.stats),
                revocation: Rc::clone(&self.revocation),
                stream: RefCell::new(Stream::new()),
                end_of_stream: Cell::new(false),
                registered: Cell::new(false),
            }),
            done: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One stream's state, shared with this VM's registry of held streams ([`waiters`]) so that the
/// root context can run the stream's resume step, or hand it its callout's answer, in the
/// stream's own context.
pub(super) struct Held {
    /// The stream's context id.
    id: u32,
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
    revocation: Rc<RefCell<WorkerState>>,
    stream: RefCell<Stream>,
    /// The request headers ended the stream (kept for the steps that read them again).
    end_of_stream: Cell<bool>,
    /// The stream was ever put in the registry (a wait, a callout): it leaves it when it ends.
    registered: Cell<bool>,
}

/// Which of the core's request steps a stream runs: each reads the request's headers and peer.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// The request headers came.
    Headers,
    /// The stream's callout answered (or failed, or could not start).
    Answer(CalloutAnswer<'a>),
    /// The stream waited on another's callout and its turn came.
    Resume,
}

/// Reads the request's headers and peer, as every step that decides the request needs them
/// (the headers step, a callout's answer, a waiter's resume), and hands them to `f`. `Err`
/// names what could not be read.
fn with_request<R>(
    end_of_stream: bool,
    f: impl FnOnce(RequestHeaders<'_>) -> Result<R, &'static str>,
) -> Result<R, &'static str> {
    let buf = bindings::request_header_pairs().map_err(|_| "headers_unavailable")?;
    let headers = parse_pairs(&buf).ok_or("headers_malformed")?;
    #[cfg(feature = "fault-injection")]
    if headers
        .iter()
        .any(|(n, v)| *n == b"x-devgate-fault" && *v == b"trap")
    {
        // A Wasm trap, as a bug would cause one (tests only; see Cargo.toml).
        core::arch::wasm32::unreachable();
    }
    let peer = bindings::property_encoded(b"source\0address\0").map_err(|_| "peer_unavailable")?;
    f(RequestHeaders {
        peer: peer.as_deref(),
        headers: &headers,
        end_of_stream,
    })
}

/// The answer to a stream's callout, as read from the host (owned, so the host's buffers are
/// read once).
struct Answered {
    status: Option<u16>,
    retry_after: Option<Vec<u8>>,
    body: Vec<u8>,
}

impl Answered {
    /// Reads the answer of the callout whose response is being delivered: its `:status` and
    /// `retry-after` as bytes, its body up to [`MAX_ANSWER_BODY`]. No headers, no usable status
    /// or a longer body: no answer ([`CalloutAnswer::FAILED`]).
    fn read(headers: usize, body_size: usize) -> Answered {
        let failed = Answered {
            status: None,
            retry_after: None,
            body: Vec::new(),
        };
        if headers == 0 || body_size > MAX_ANSWER_BODY {
            return failed;
        }
        let status = match bindings::http_call_header(b":status") {
            Ok(Some(v)) => parse_status(&v),
            _ => None,
        };
        let Some(status) = status else {
            return failed;
        };
        let Ok(body) = bindings::http_call_body(body_size) else {
            return failed;
        };
        if body.len() > MAX_ANSWER_BODY {
            return failed;
        }
        Answered {
            status: Some(status),
            retry_after: bindings::http_call_header(b"retry-after").ok().flatten(),
            body,
        }
    }

    fn answer(&self) -> CalloutAnswer<'_> {
        match self.status {
            None => CalloutAnswer::FAILED,
            status => CalloutAnswer {
                status,
                retry_after: self.retry_after.as_deref(),
                body: &self.body,
            },
        }
    }
}

/// An HTTP status as Envoy spells it (three ASCII digits, 100..=999); anything else is none.
fn parse_status(v: &[u8]) -> Option<u16> {
    let [a, b, c] = v else {
        return None;
    };
    if !(a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit()) || *a == b'0' {
        return None;
    }
    Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
}

impl Held {
    /// The effects of this stream's plans.
    fn fx<'s>(self: &'s Rc<Self>) -> Envoy<'s> {
        Envoy {
            stats: &self.stats,
            stream: Some(self),
        }
    }

    /// Has the core's interpreter perform its refusal of a step this host could not complete.
    fn refuse(self: &Rc<Self>, what: &'static str) -> Flow {
        refuse(what, &mut self.fx())
    }

    /// Runs `step` and performs its plan. A callout that could not start is answered at once,
    /// as a failed one ([`CalloutAnswer::FAILED`]); never `Flow::CalloutNotStarted`.
    fn run(self: &Rc<Self>, step: Step<'_>) -> Flow {
        let mut step = step;
        // The answer of a failed callout decides the request; a second failed start would be a
        // core bug, refused rather than looped on.
        for _ in 0..2 {
            match self.run_once(step) {
                Flow::CalloutNotStarted => step = Step::Answer(CalloutAnswer::FAILED),
                flow => return flow,
            }
        }
        self.refuse("callout_not_started")
    }

    fn run_once(self: &Rc<Self>, step: Step<'_>) -> Flow {
        let Some(policy) = self.policy.as_deref() else {
            return self.refuse("not_configured");
        };
        let planned = with_request(self.end_of_stream.get(), |req| {
            let mut worker = self
                .revocation
                .try_borrow_mut()
                .map_err(|_| "revocation_state_busy")?;
            let mut stream = self
                .stream
                .try_borrow_mut()
                .map_err(|_| "stream_state_busy")?;
            let plan = match step {
                Step::Headers => stream.on_request_headers(policy, req, &mut worker, &Wasm),
                Step::Answer(answer) => {
                    stream.on_callout_answer(policy, answer, req, &mut worker, &Wasm)
                }
                Step::Resume => stream.resume(policy, req, &mut worker, &Wasm),
            };
            // Performed here, not returned: a plan is large, and every move of it is a copy.
            drop((stream, worker));
            Ok(perform(plan, HeaderMap::RequestHeaders, &mut self.fx()))
        });
        planned.unwrap_or_else(|what| self.refuse(what))
    }

    /// A step run outside the request's own callbacks (an answer, a resume) ended in `flow`: a
    /// request let through goes on now; one answered or still held stays as it is.
    fn go_on(flow: Flow) {
        if flow == Flow::Continue {
            // Fails only for a stream Envoy already ended: nothing left to let through.
            let _ = bindings::resume_request();
        }
    }

    /// The answer of this stream's callout is being delivered (the effective context is the
    /// stream's).
    fn answered(self: &Rc<Self>, headers: usize, body_size: usize) {
        let answered = Answered::read(headers, body_size);
        let flow = self.run(Step::Answer(answered.answer()));
        Held::go_on(flow);
    }

    /// The stream ends: a callout it owns ends its flight (its waiters ask next). Once only.
    fn destroy(self: &Rc<Self>) {
        let Some(policy) = self.policy.as_deref() else {
            return;
        };
        let Ok(mut stream) = self.stream.try_borrow_mut() else {
            return;
        };
        // Only a held stream has anything to end (`on_destroy`'s whole subject): every other
        // stream skips the step, which costs each request fuel for nothing.
        if !stream.holding() {
            return;
        }
        let plan = stream.on_destroy(policy, &Wasm);
        drop(stream);
        let _ = perform(plan, HeaderMap::RequestHeaders, &mut self.fx());
    }
}

struct Http {
    held: Rc<Held>,
    /// `on_done` ran the stream's end already.
    done: bool,
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _t: usize) {
        let _ = waiters::take_callout(token);
        self.held.answered(headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        if !self.done {
            self.done = true;
            self.held.destroy();
        }
        true
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.held.destroy();
        }
        if self.held.registered.get() {
            waiters::unregister(self.held.id);
        }
    }
}

/// proxy-wasm's action for how a performed step ends: only a request let through goes on now.
fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        // Held (`Wait`: an answer or a resume lets it go on later) or answered.
        Flow::Stop | Flow::Wait | Flow::CalloutNotStarted => Action::Pause,
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        self.held.end_of_stream.set(end_of_stream);
        action(self.held.run(Step::Headers))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let held = &self.held;
        let Ok(body_plan) = held.stream.try_borrow().map(|s| s.body_plan()) else {
            return action(held.refuse("stream_state_busy"));
        };
        let Some(policy) = held.policy.as_deref() else {
            return action(held.refuse("not_configured"));
        };
        match body_plan {
            BodyPlan::Pass => return Action::Continue,
            // Held for the key service: Envoy keeps the chunks (unread) until the request goes on.
            BodyPlan::Hold => return Action::Pause,
            BodyPlan::Inspect => {
                // Paused (buffered by Envoy) until the form is whole: `body_size` is all of it so
                // far, and the read is of all of it.
                let Ok(mut stream) = held.stream.try_borrow_mut() else {
                    return action(held.refuse("stream_state_busy"));
                };
                let plan = stream.on_form_body(policy, body_size, end_of_stream, || {
                    bindings::request_body(body_size).ok()
                });
                drop(stream);
                let flow = perform(plan, HeaderMap::RequestHeaders, &mut held.fx());
                let still = held
                    .stream
                    .try_borrow()
                    .map(|s| s.body_plan() == BodyPlan::Inspect)
                    .unwrap_or(false);
                return match flow {
                    Flow::Continue if still => Action::Pause,
                    flow => action(flow),
                };
            }
            BodyPlan::Collect => {}
        }
        // Never buffered by devgate's Action, so this is the current chunk only.
        let Ok(chunk) = bindings::request_body(body_size) else {
            return action(held.refuse("body_unavailable"));
        };
        if bindings::drop_request_body(body_size).is_err() {
            return action(held.refuse("body_edit_failed"));
        }
        let Ok(mut stream) = held.stream.try_borrow_mut() else {
            return action(held.refuse("stream_state_busy"));
        };
        let plan = stream.on_request_body(policy, &chunk, end_of_stream, &Wasm);
        drop(stream);
        action(perform(plan, HeaderMap::RequestHeaders, &mut held.fx()))
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        let held = &self.held;
        let Some(policy) = held.policy.as_deref() else {
            return action(held.refuse("not_configured"));
        };
        let Ok(buf) = bindings::request_trailer_pairs() else {
            return action(held.refuse("trailers_unavailable"));
        };
        let Some(trailers) = parse_pairs(&buf) else {
            return action(held.refuse("trailers_malformed"));
        };
        let Ok(mut stream) = held.stream.try_borrow_mut() else {
            return action(held.refuse("stream_state_busy"));
        };
        let plan = stream.on_request_trailers(policy, &trailers, &Wasm);
        let holding = stream.holding();
        drop(stream);
        match perform(plan, HeaderMap::RequestTrailers, &mut held.fx()) {
            // The request is held for the key service: the trailers wait with it.
            Flow::Continue if holding => Action::Pause,
            flow => action(flow),
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let held = &self.held;
        let Some(policy) = held.policy.as_deref() else {
            return Action::Continue;
        };
        let Ok(mut stream) = held.stream.try_borrow_mut() else {
            return action(held.refuse("stream_state_busy"));
        };
        let plan = stream.on_response_headers(policy, &Wasm);
        drop(stream);
        action(perform(plan, HeaderMap::RequestHeaders, &mut held.fx()))
    }
}

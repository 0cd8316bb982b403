//! The native host's glue. It gathers facts through [`Host`], hands them to a
//! [`core::stream::Stream`](CoreStream), and has the core's interpreter ([`perform`]) carry out
//! the [`Plan`] it gets back through this host's primitive effects ([`OnStream`], [`OnConfig`]).
//! It holds no policy branch and no order of effects.
//!
//! The login form's finish step (bcrypt) runs on a bounded pool of threads, and the request is
//! resumed on its worker through Envoy's scheduler. The revocation list is fetched from Envoy's
//! main thread through the configuration's scheduler and HTTP call (`revocation.rs`).

use std::sync::{Arc, Mutex};

use super::answer::Answer;
#[cfg(feature = "test-hooks")]
use super::bindings::{log, LogLevel};
use super::bindings::{Body, BodyStatus, CalloutAnswer, ConfigHost, HeaderMap, Host, Scheduler};
use super::effects::{OnConfig, OnEnd, OnStream};
use super::keyservice::{registry, KeyHold, WAITER_WOKEN};
use super::process::Process;
use super::revocation::{self, Fetcher};
use crate::config::load;
use crate::core::callout::CalloutAnswer as CoreAnswer;
use crate::core::counters::{ConfigOutcome, Counter, Table};
use crate::core::edge::keys::{fetched, DEGRADED_GAUGE};
use crate::core::effects;
use crate::core::facts::{Facts, RequestHeaders, ResponseFacts};
use crate::core::keyservice;
use crate::core::perform::{perform, perform_report, refuse, Flow};
use crate::core::plan::{Note, Plan, Report};
use crate::core::policy::Policy;
use crate::core::shared::{SharedStore, Unavailable};
use crate::core::stream::WorkerState;
use crate::core::stream::{
    checks_login_forms, finish_with, BodyPlan, Collected, PendingLogin, Stream as CoreStream,
};
use crate::host::native::pool::Pool;

/// The scheduler event that resumes a stream whose login form was checked on the pool (not the
/// test build's event, 1).
const LOGIN_FINISHED: u64 = 2;

/// Threads of a configuration's login pool (each runs one bcrypt check at a time). The core's
/// verify budget meters how many checks the process starts; the pool bounds how many run at once.
const LOGIN_THREADS: usize = 2;
/// Checks waiting for a thread; one more is refused at once (the core's internal refusal, 500).
const LOGIN_QUEUE: usize = 64;

/// One accepted configuration, shared by every stream it creates (on any worker).
pub struct Config {
    /// Shared with the login checks on the pool, which hold the policy and not the configuration:
    /// the configuration (and its pool, whose drop waits for the pool's threads) is therefore
    /// always dropped by Envoy's `config_destroy` or a stream's end, never by a pool thread.
    policy: Arc<Policy>,
    /// This configuration's counter ids.
    counters: Table<usize>,
    /// Where login forms are checked (bcrypt), off the workers: only with a `login` section.
    login_pool: Option<Pool>,
    /// The revocation list's fetcher: only with a `revocation` section.
    revocation: Option<Fetcher>,
    /// `devgate.key_service.entries`: only with `api.service`.
    entries: Option<usize>,
    /// `devgate.edge.keys_degraded`: only with assertion sources whose keys are fetched.
    keys_degraded: Option<usize>,
    /// Test build only (`filter_name: devgate-noop`, the `native_noop` benchmark): every request
    /// goes on untouched, so that the module's fixed cost can be measured apart from devgate's
    /// work.
    #[cfg(feature = "test-hooks")]
    noop: bool,
    /// Test build only: what the test hooks need (src/host/native/testhooks.rs).
    #[cfg(feature = "test-hooks")]
    test: super::testhooks::ConfigTest,
}

impl Config {
    /// Parses the filter's configuration (`filter_config`, a `StringValue`'s bytes); `None`
    /// refuses it, after logging why (the field, never a secret). `name` is the `filter_name`,
    /// which only the test build reads.
    pub fn new(host: &ConfigHost, name: &[u8], raw: &[u8]) -> Option<Config> {
        #[cfg(not(feature = "test-hooks"))]
        let _ = name;
        #[cfg(feature = "test-hooks")]
        if name == b"devgate-noop" {
            log(LogLevel::Warn, "devgate: test build: noop configuration");
            let test = super::testhooks::ConfigTest::new(host)?;
            return load(b"{}").0.map(|policy| Config {
                policy: Arc::new(policy),
                counters: Table::empty(),
                login_pool: None,
                revocation: None,
                entries: None,
                keys_degraded: None,
                noop: true,
                test,
            });
        }
        let counters = Table::define(|name| host.define_counter(name));
        // `devgate.config.accepted|rejected`, counted on this configuration's own counters from
        // here (there is no stream yet). A refused configuration's object is destroyed, but its
        // counter is the same named stat as the running configuration's, which keeps the count:
        // the Wasm build's semantics, one count per configure call.
        let report = |report: &Report| {
            let mut fx = OnConfig {
                host,
                counters: &counters,
                degraded: None,
            };
            perform_report(report, &mut fx);
        };
        // What this host could not set up for a valid policy: counted, logged with the field.
        let reject = |why: String| {
            report(&Report {
                counter: Some(Counter::Config(ConfigOutcome::Rejected)),
                note: Some(Note::ConfigRejected(why)),
                ..Report::default()
            });
        };
        let (policy, loaded) = load(raw);
        let Some(policy) = policy else {
            report(&loaded);
            return None;
        };
        let login_pool = if checks_login_forms(&policy) {
            match Pool::new("devgate-login", LOGIN_THREADS, LOGIN_QUEUE) {
                Ok(pool) => Some(pool),
                Err(_) => {
                    reject("login: the login threads did not start".to_string());
                    return None;
                }
            }
        } else {
            None
        };
        let revocation = match Fetcher::start(host, &policy) {
            Ok(fetcher) => fetcher,
            Err(why) => {
                reject(format!("revocation: {why}"));
                return None;
            }
        };
        // The key service's gauge, beside the revocation list's (defined by its fetcher).
        let entries = policy
            .api
            .as_ref()
            .and_then(|api| api.service.as_ref())
            .and_then(|_| host.define_gauge(keyservice::ENTRIES_GAUGE));
        // The edge keys' gauge: only when some assertion source fetches its keys.
        let keys_degraded = policy
            .edge
            .as_ref()
            .is_some_and(|e| e.assertions.iter().any(|a| fetched(a).is_some()))
            .then(|| host.define_gauge(DEGRADED_GAUGE))
            .flatten();
        #[cfg(feature = "test-hooks")]
        let test = super::testhooks::ConfigTest::new(host)?;
        // Accepted: counted and logged once the configuration will run.
        report(&loaded);
        Some(Config {
            policy: Arc::new(policy),
            counters,
            login_pool,
            revocation,
            entries,
            keys_degraded,
            #[cfg(feature = "test-hooks")]
            noop: false,
            #[cfg(feature = "test-hooks")]
            test,
        })
    }
}

/// The lazily read facts and the shared store, as the core reads them from this host.
struct Envoy<'h> {
    host: &'h Host,
}

impl Facts for Envoy<'_> {
    fn now_ms(&self) -> u64 {
        Process.now_ms()
    }

    /// The downstream connection's TLS version attribute: present only over TLS.
    fn tls(&self) -> bool {
        self.host.tls_version().is_some()
    }
    /// Envoy's `connection.mtls` and the peer certificate's subject, first DNS SAN and first URI
    /// SAN (`Host::peer_certificate`). Envoy tells a module nothing of validation nor of email
    /// SANs: `validated` is the presence, which the listener's `validation_context` makes a
    /// validation (docs/client-certificates.md; `devgate check-config` checks it).
    fn client_cert(&self) -> Option<crate::core::edge::ClientCert> {
        let peer = self.host.peer_certificate()?;
        let text = |v: Option<&[u8]>| {
            v.and_then(|b| std::str::from_utf8(b).ok())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Some(crate::core::edge::ClientCert {
            validated: true,
            uri_sans: text(peer.uri_san).into_iter().collect(),
            dns_sans: text(peer.dns_san).into_iter().collect(),
            emails: Vec::new(),
            subject: text(peer.subject),
        })
    }
}

impl ResponseFacts for Envoy<'_> {
    /// Header access is zero-copy natively, so the probe is a scan of the map.
    fn has_header(&self, name: &[u8]) -> bool {
        self.host
            .with_headers(HeaderMap::ResponseHeader, |hs| {
                hs.iter().any(|(n, _)| *n == name)
            })
            .unwrap_or(false)
    }

    fn with_headers<R>(&self, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> Option<R> {
        self.host.with_headers(HeaderMap::ResponseHeader, f)
    }
}

impl SharedStore for Envoy<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable> {
        Process.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, Unavailable> {
        Process.set(key, value, cas)
    }

    fn version(&self, key: &str) -> Result<u32, Unavailable> {
        Process.version(key)
    }
}

/// What the test build reads of the request headers beside the plan (the shipped build: nothing).
#[cfg(feature = "test-hooks")]
type Test = super::testhooks::Command;
/// What the test build reads of the request headers beside the plan (the shipped build: nothing).
#[cfg(not(feature = "test-hooks"))]
type Test = ();

/// Reads the request's facts and has the core take `step` with them and this worker's copy of
/// the revocation list (revocation.rs): every step of the request headers goes through here (the
/// headers themselves, the answer of the stream's key-service callout, a waiter's resume). The
/// facts are every request header and `source.address`, as views into Envoy's memory that live
/// only inside this call, released before the plan edits the map. `None`: Envoy has no request
/// headers now.
fn gather<'p>(
    policy: &'p Policy,
    host: &Host,
    end_of_stream: bool,
    step: impl FnOnce(RequestHeaders<'_>, &mut WorkerState, &Envoy<'_>) -> Plan<'p>,
) -> Option<(Plan<'p>, Test)> {
    host.with_headers(HeaderMap::RequestHeader, |headers| {
        #[cfg(feature = "fault-injection")]
        if headers
            .iter()
            .any(|(n, v)| *n == b"x-devgate-fault" && *v == b"panic")
        {
            // A panic, as a bug would cause one (tests only; see Cargo.toml).
            #[allow(clippy::panic)]
            {
                panic!("fault injection");
            }
        }
        let req = RequestHeaders {
            peer: host.source_address(),
            headers,
            end_of_stream,
        };
        let decide = |worker: &mut WorkerState| step(req, worker, &Envoy { host });
        #[cfg(not(feature = "test-hooks"))]
        let plan = revocation::with_worker(policy, decide);
        #[cfg(feature = "test-hooks")]
        let plan = super::testhooks::in_core(|| revocation::with_worker(policy, decide));
        #[cfg(feature = "test-hooks")]
        let test = super::testhooks::Command::of(headers);
        #[cfg(not(feature = "test-hooks"))]
        let test = ();
        (plan, test)
    })
}

/// A login form being checked on the pool, as its stream holds it.
struct OnPool {
    /// Brings the stream back to its worker ([`LOGIN_FINISHED`]). Dropped with the stream at the
    /// latest (Envoy destroyed it: client gone, Envoy shutting down), which withdraws it from the
    /// pool's job: a check that ends later commits nothing (see [`Scheduler`]).
    _scheduler: Scheduler,
    /// The plan, written by the pool thread that checked the form before it commits, taken on
    /// the worker when the scheduler brings [`LOGIN_FINISHED`].
    plan: Arc<Mutex<Option<Plan<'static>>>>,
}

/// One HTTP stream.
pub struct Stream {
    /// This stream's login form while it is on the pool. First, so dropped first: its scheduler
    /// is withdrawn from the pool before anything else of the stream goes.
    on_pool: Option<OnPool>,
    config: Arc<Config>,
    core: CoreStream,
    /// The last step went on (bodies and trailers of an answered request stop).
    proceeds: bool,
    /// The request headers' `end_of_stream`, for the steps taken again later (answer, resume).
    end_of_stream: bool,
    /// The key service's callout or wait of this request (a wait's scheduler, dropped with the
    /// stream on its worker, is withdrawn from the registry's waker).
    key: KeyHold,
    /// Test build only: the test hook this request asked for.
    #[cfg(feature = "test-hooks")]
    test: super::testhooks::StreamTest,
}

impl Stream {
    /// A new stream of `config` (`on_http_filter_new`).
    pub fn new(config: Arc<Config>) -> Stream {
        Stream {
            on_pool: None,
            config,
            core: CoreStream::new(),
            proceeds: false,
            end_of_stream: false,
            key: KeyHold::default(),
            #[cfg(feature = "test-hooks")]
            test: super::testhooks::StreamTest::default(),
        }
    }

    /// A request body chunk: passes once the request went on; held after devgate answered.
    /// Under the core's [`BodyPlan::Collect`] (a login form), each chunk is read, dropped from
    /// the stream and handed to the core, as the Wasm build does; the whole form is checked on
    /// the login pool.
    pub fn request_body(&mut self, host: &mut Host, end_of_stream: bool) -> BodyStatus {
        #[cfg(feature = "test-hooks")]
        match super::testhooks::request_body(&mut self.test, host, end_of_stream) {
            Some(Ok(status)) => return status,
            Some(Err(what)) => {
                self.refuse(host, what);
                return BodyStatus::Stop;
            }
            None => {}
        }
        match self.core.body_plan() {
            // The request waits for the key service: its body stays in Envoy's buffer, unread.
            BodyPlan::Hold => return BodyStatus::StopAndBuffer,
            BodyPlan::Pass => {
                return if self.proceeds {
                    BodyStatus::Continue
                } else {
                    BodyStatus::Stop
                };
            }
            BodyPlan::Inspect => return self.inspect_form(host, end_of_stream),
            BodyPlan::Collect => {}
        }
        // Never buffered by this filter's status, so this call's chunks are the new data only.
        let chunks = host.body_chunks(Body::ReceivedRequest);
        let size: usize = chunks.iter().map(|c| c.len()).sum();
        let last = chunks.len().saturating_sub(1);
        let mut collected = Collected::Plan(Plan::default());
        for (i, chunk) in chunks.iter().enumerate() {
            collected = self.core.collect_body(chunk, end_of_stream && i == last);
            if !matches!(&collected, Collected::Plan(p) if *p == Plan::default()) {
                break;
            }
        }
        if chunks.is_empty() && end_of_stream {
            collected = self.core.collect_body(b"", true);
        }
        if size > 0 && !host.drain_body(Body::ReceivedRequest, size) {
            self.refuse(host, "body_edit_failed");
            return BodyStatus::Stop;
        }
        let proceeds = match collected {
            Collected::Plan(plan) => self.perform(host, plan, effects::HeaderMap::RequestHeaders),
            Collected::Finish(pending) => self.finish_login(host, pending),
        };
        self.proceeds = proceeds;
        if proceeds {
            BodyStatus::Continue
        } else {
            BodyStatus::Stop
        }
    }

    /// A body chunk of a form POST whose `_method` decides it: buffered by Envoy (this filter's
    /// "stop and buffer") until the form is whole, then read whole; the request goes on with its
    /// body intact, or is answered.
    fn inspect_form(&mut self, host: &mut Host, end_of_stream: bool) -> BodyStatus {
        let config = Arc::clone(&self.config);
        let h: &Host = host;
        let plan = {
            // Earlier calls' chunks, then this call's.
            let buffered = h.body_chunks(Body::BufferedRequest);
            let received = h.body_chunks(Body::ReceivedRequest);
            let chunks = || buffered.iter().chain(received.iter());
            let size = chunks().map(|c| c.len()).sum();
            self.core
                .on_form_body(&config.policy, size, end_of_stream, || {
                    Some(chunks().flat_map(|c| c.iter().copied()).collect())
                })
        };
        self.proceeds = self.perform(host, plan, effects::HeaderMap::RequestHeaders);
        match (self.proceeds, self.core.body_plan()) {
            (true, BodyPlan::Inspect) => BodyStatus::StopAndBuffer,
            (true, _) => BodyStatus::Continue,
            (false, _) => BodyStatus::Stop,
        }
    }

    /// Checks a whole login form on the login pool; the request waits (`false`) until
    /// [`Stream::scheduled`] performs the plan. A pool that cannot take it is the core's refusal.
    fn finish_login(&mut self, host: &mut Host, pending: PendingLogin) -> bool {
        let Some(pool) = self.config.login_pool.as_ref() else {
            return self.refuse(host, "login_pool_missing");
        };
        let Some(scheduler) = host.scheduler() else {
            return self.refuse(host, "scheduler_unavailable");
        };
        let resumer = scheduler.resumer();
        let plan = Arc::new(Mutex::new(None));
        let out = Arc::clone(&plan);
        let policy = Arc::clone(&self.config.policy);
        let job = move || {
            // The stream has gone (its client left, or Envoy is shutting down) while the form
            // waited: nobody can read the answer, so the form is not checked (no verify spent, no
            // failure counted) and the pool moves on.
            if !resumer.live() {
                return;
            }
            // A panic (a bug) still resumes the request, with the core's refusal: never a
            // request left hanging, never one let through.
            let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                finish_with(&policy, pending, &Process)
            }))
            .unwrap_or_else(|_| Plan::refuse("login_check_panicked"));
            if let Ok(mut out) = out.lock() {
                *out = Some(plan);
            }
            // Nothing if the stream went meanwhile.
            resumer.commit(LOGIN_FINISHED);
        };
        if pool.submit(job).is_err() {
            return self.refuse(host, "login_pool_full");
        }
        self.on_pool = Some(OnPool {
            _scheduler: scheduler,
            plan,
        });
        false
    }

    /// An event this stream scheduled ([`Scheduler`]), on its worker: a login form
    /// checked on the pool, whose plan is performed here (and the request resumed if it goes on),
    /// or a wait for another stream's key-service callout that is over ([`WAITER_WOKEN`]).
    pub fn scheduled(&mut self, host: &mut Host, event_id: u64) {
        #[cfg(feature = "test-hooks")]
        if let Err(what) = super::testhooks::scheduled(&mut self.test, host, event_id) {
            self.refuse(host, what);
        }
        if event_id == WAITER_WOKEN {
            // Dropped here, on the worker: this wait is over (a new one makes a new scheduler).
            if self.key.waiting.take().is_some() {
                let flow = self.resumed(host);
                self.go_on(host, flow);
            }
            return;
        }
        if event_id != LOGIN_FINISHED {
            return;
        }
        // The scheduler is deleted here, on the worker, once this is dropped.
        let Some(on_pool) = self.on_pool.take() else {
            return;
        };
        let plan = on_pool.plan.lock().ok().and_then(|mut p| p.take());
        let Some(plan) = plan else {
            self.refuse(host, "login_result_lost");
            return;
        };
        self.proceeds = self.perform(host, plan, effects::HeaderMap::RequestHeaders);
        if self.proceeds {
            host.continue_decoding();
        }
    }

    /// The answer to an HTTP call this stream started (`None`: it failed): the key service's
    /// (the revocation list is fetched by the configuration: [`Config::callout_done`]). Its
    /// status, `retry-after` and body (bounded: [`crate::core::callout::MAX_ANSWER_BODY`]) go to
    /// the core with the request's facts read again; the request goes on if the plan says so.
    pub fn callout_done(&mut self, host: &mut Host, id: u64, answer: Option<CalloutAnswer<'_>>) {
        #[cfg(feature = "test-hooks")]
        if let Err(what) = super::testhooks::callout_done(&mut self.test, host, id, answer) {
            self.refuse(host, what);
        }
        if self.key.callout != Some(id) {
            return;
        }
        self.key.callout = None;
        let answer = Answer::of(answer.map(|a| (a.headers, a.body)));
        let flow = self.answered(host, answer.core());
        self.go_on(host, flow);
    }

    /// The stream's end (Envoy destroys it): a request still waiting for its key-service callout
    /// ends its flight, whose waiters are woken (one of them asks instead). Performed with no
    /// filter to act on ([`OnEnd`]).
    pub fn end(mut self) {
        let config = Arc::clone(&self.config);
        let plan = self.core.on_destroy(&config.policy, &Process);
        let mut fx = OnEnd {
            counters: &config.counters,
        };
        let _ = perform(plan, effects::HeaderMap::RequestHeaders, &mut fx);
    }

    /// The request's headers: facts in, the core's plan performed. `true`: continue.
    pub fn request_headers(&mut self, host: &mut Host, end_of_stream: bool) -> bool {
        #[cfg(feature = "test-hooks")]
        if self.config.noop {
            self.proceeds = true;
            return true;
        }
        let config = Arc::clone(&self.config);
        self.end_of_stream = end_of_stream;
        self.key.mark = registry().mark();
        let core = &mut self.core;
        let step = gather(&config.policy, host, end_of_stream, |req, worker, facts| {
            core.on_request_headers(&config.policy, req, worker, facts)
        });
        let Some(step) = step else {
            return self.refuse(host, "headers_unavailable");
        };
        #[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
        let (step, test) = step;
        #[cfg(feature = "test-hooks")]
        if test == super::testhooks::Command::Allocations {
            return super::testhooks::allocations(host);
        }
        self.proceeds = self.perform_request(host, step) == Flow::Continue;
        #[cfg(feature = "test-hooks")]
        if self.proceeds {
            // `false`: the hook holds the request (resumed later) or answered it.
            let cfg = &self.config.test;
            return match super::testhooks::after_allow(test, &mut self.test, cfg, host) {
                Ok(go) => go,
                Err(what) => self.refuse(host, what),
            };
        }
        self.proceeds
    }

    /// Request trailers of a request that goes on, or that waits for the key service: the core
    /// names what must not reach the upstream. `true`: continue (never while the request waits:
    /// the trailers are edited now, and go on when the request does).
    pub fn request_trailers(&mut self, host: &mut Host) -> bool {
        let holding = self.core.holding();
        if !holding && !self.proceeds {
            return false;
        }
        // A login form followed by trailers ended with its last data frame.
        if let Some(pending) = self.core.take_login() {
            self.proceeds = self.finish_login(host, pending);
            return self.proceeds;
        }
        let config = Arc::clone(&self.config);
        let core = &mut self.core;
        let h: &Host = host;
        let plan = h.with_headers(HeaderMap::RequestTrailer, |trailers| {
            core.on_request_trailers(&config.policy, trailers, &Envoy { host: h })
        });
        let Some(plan) = plan else {
            return self.refuse(host, "trailers_unavailable");
        };
        let go = self.perform(host, plan, effects::HeaderMap::RequestTrailers);
        if holding {
            if !go {
                // Refused (answered): a later answer or wake of this request is not performed.
                self.key = KeyHold::default();
                self.proceeds = false;
            }
            return false;
        }
        self.proceeds = go;
        self.proceeds
    }

    /// Response headers: what an upstream challenge becomes. `true`: continue.
    pub fn response_headers(&mut self, host: &mut Host) -> bool {
        #[cfg(feature = "test-hooks")]
        super::testhooks::response_headers(&mut self.test, host);
        let config = Arc::clone(&self.config);
        let plan = self
            .core
            .on_response_headers(&config.policy, &Envoy { host });
        self.perform(host, plan, effects::HeaderMap::RequestHeaders)
    }

    /// Has the core's interpreter perform `plan` (the step's header map is `map`); `true`:
    /// continue.
    fn perform(&mut self, host: &mut Host, plan: Plan<'_>, map: effects::HeaderMap) -> bool {
        self.perform_flow(host, plan, map) == Flow::Continue
    }

    /// [`Stream::perform`], saying how the request goes on.
    fn perform_flow(&mut self, host: &mut Host, plan: Plan<'_>, map: effects::HeaderMap) -> Flow {
        let mut fx = OnStream {
            host,
            counters: &self.config.counters,
            entries: self.config.entries,
            keys_degraded: self.config.keys_degraded,
            key: &mut self.key,
        };
        perform(plan, map, &mut fx)
    }

    /// Performs a plan of the request headers' step (the headers, or a waiter's resume): a
    /// callout that could not start is answered at once, as a failed one.
    fn perform_request(&mut self, host: &mut Host, plan: Plan<'_>) -> Flow {
        match self.perform_flow(host, plan, effects::HeaderMap::RequestHeaders) {
            Flow::CalloutNotStarted => self.answered(host, CoreAnswer::FAILED),
            flow => flow,
        }
    }

    /// The answer to the stream's key-service callout (or its failure): the request's facts read
    /// again, the core's step taken and performed.
    fn answered(&mut self, host: &mut Host, answer: CoreAnswer<'_>) -> Flow {
        let config = Arc::clone(&self.config);
        self.key.mark = registry().mark();
        let core = &mut self.core;
        let step = gather(
            &config.policy,
            host,
            self.end_of_stream,
            |req, worker, facts| core.on_callout_answer(&config.policy, answer, req, worker, facts),
        );
        let Some((plan, _)) = step else {
            self.refuse(host, "headers_unavailable");
            return Flow::Stop;
        };
        match self.perform_flow(host, plan, effects::HeaderMap::RequestHeaders) {
            // An answer's step starts no callout: one that could not start is refused.
            Flow::CalloutNotStarted => {
                self.refuse(host, "callout_not_started");
                Flow::Stop
            }
            flow => flow,
        }
    }

    /// A waiting stream woken (its flight's owner answered or ended, or its deadline passed):
    /// the request's facts read again, the core's step taken and performed.
    fn resumed(&mut self, host: &mut Host) -> Flow {
        let config = Arc::clone(&self.config);
        self.key.mark = registry().mark();
        let core = &mut self.core;
        let step = gather(
            &config.policy,
            host,
            self.end_of_stream,
            |req, worker, facts| core.resume(&config.policy, req, worker, facts),
        );
        let Some((plan, _)) = step else {
            self.refuse(host, "headers_unavailable");
            return Flow::Stop;
        };
        self.perform_request(host, plan)
    }

    /// After a step taken outside the request's own hooks (an answer, a wake): the request goes
    /// on (`Continue`: decoding resumes), was answered (`Stop`), or still waits (`Wait`).
    fn go_on(&mut self, host: &mut Host, flow: Flow) {
        self.proceeds = flow == Flow::Continue;
        if self.proceeds {
            host.continue_decoding();
        }
    }

    /// Has the core's interpreter perform its refusal of a step this host could not complete.
    fn refuse(&mut self, host: &mut Host, what: &'static str) -> bool {
        self.proceeds = false;
        let mut fx = OnStream {
            host,
            counters: &self.config.counters,
            entries: self.config.entries,
            keys_degraded: self.config.keys_degraded,
            key: &mut self.key,
        };
        refuse(what, &mut fx);
        false
    }
}

/// The configuration's own work, on Envoy's main thread (the revocation fetcher, revocation.rs).
impl Config {
    /// An event of the configuration's scheduler: the fetcher's tick.
    pub fn scheduled(&self, host: &ConfigHost, event_id: u64) {
        if let (Some(fetcher), revocation::TICK) = (&self.revocation, event_id) {
            fetcher.tick(host, &self.policy, &self.counters);
        }
    }

    /// The answer to the configuration's HTTP call (the only one it makes: the list fetch).
    pub fn callout_done(&self, host: &ConfigHost, _id: u64, answer: Option<CalloutAnswer<'_>>) {
        if let Some(fetcher) = &self.revocation {
            fetcher.fetched(host, &self.counters, answer);
        }
    }

    /// Stops the revocation ticker (`config_destroy`, when another reference is still held):
    /// `join` waits for its thread (the main thread may; an Envoy worker must not), else it stops
    /// on its own. The login pool stops with the last reference.
    pub fn stop(&self, join: bool) {
        if let Some(fetcher) = &self.revocation {
            fetcher.stop(join);
        }
    }

    /// Ends the configuration (`config_destroy`, the last reference): its threads, the revocation
    /// ticker and the login pool's, are stopped; `join` waits for them (the main thread), else
    /// (an Envoy worker, whose streams must not stall) they finish what they hold and exit on
    /// their own.
    pub fn end(mut self, join: bool) {
        self.stop(join);
        if !join {
            if let Some(pool) = self.login_pool.take() {
                pool.detach();
            }
            #[cfg(feature = "test-hooks")]
            self.test.detach();
        }
    }
}

//! The Wasm host: the only code that names `proxy_wasm`. An interpreter of the core's plans:
//! each callback gathers the facts the core asks for ([`Wasm`] reads the lazy ones),
//! hands them to the core ([`Stream`], [`Worker`]) and performs the [`Plan`] or [`Report`] it
//! gets back, in one fixed order. It holds no policy branch. A step it cannot complete (a host
//! call failed) ends in the core's refusal, a local 500, never in a forwarded request.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use super::bindings::{self, Wasm};
use super::map::parse_pairs;
use crate::config::load;
use crate::core::counters::Counter;
use crate::core::facts::RequestHeaders;
use crate::core::plan::{Level, Note, Plan, Report};
use crate::core::policy::Policy;
use crate::core::revocation::{self, Worker};
use crate::core::stream::{BodyPlan, Stream};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            policy: None,
            stats: Rc::new(Stats::default()),
            revocation: Rc::new(RefCell::new(Worker::default())),
            tick_set: false,
        })
    });
}}

struct Root {
    /// `None` until a configuration has been accepted, and again after one is refused.
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
    /// This worker's copy of the revocation list (shared data is the process-wide one).
    revocation: Rc<RefCell<Worker>>,
    tick_set: bool,
}

/// Counters, defined once per VM from [`Counter::all`]; Envoy lists them under
/// `wasmcustom.devgate.*`. Counting is a vector index and a host call.
#[derive(Default)]
struct Stats {
    /// Metric ids at [`Counter::slot`] (`None`: the host refused to define it).
    ids: Vec<Option<u32>>,
    /// A missing counter was logged (once per VM).
    missing_logged: Cell<bool>,
    /// `devgate.revocation.degraded`: 1 while the list is stale.
    degraded: Option<u32>,
}

impl Stats {
    fn define() -> Stats {
        Stats {
            ids: {
                let mut ids = vec![None; Counter::COUNT];
                for counter in Counter::all() {
                    if let Some(slot) = ids.get_mut(counter.slot()) {
                        *slot = bindings::define_counter(&counter.name()).ok();
                    }
                }
                ids
            },
            degraded: bindings::define_gauge(revocation::DEGRADED_GAUGE).ok(),
            missing_logged: Cell::new(false),
        }
    }

    fn is_defined(&self) -> bool {
        !self.ids.is_empty()
    }

    /// Adds one to `counter`. One the host did not define is never dropped silently: it is
    /// logged once and counted in `devgate.counter_missing`.
    fn bump(&self, counter: Counter) {
        if let Some(Some(id)) = self.ids.get(counter.slot()) {
            bindings::increment(*id);
            return;
        }
        if !self.missing_logged.replace(true) {
            log::warn!("devgate: counter {} is not defined", counter.name());
        }
        if let Some(Some(id)) = self.ids.get(Counter::Missing.slot()) {
            bindings::increment(*id);
        }
    }

    /// Performs the counter and the log line of a worker-level report.
    fn report(&self, report: Report) {
        if let Some(counter) = report.counter {
            self.bump(counter);
        }
        if let (Some(on), Some(id)) = (report.degraded, self.degraded) {
            bindings::record(id, u64::from(on));
        }
        if let Some(note) = report.note {
            log_note(&note);
        }
    }
}

/// Writes a log line, formatted only when its level is enabled.
fn log_note(note: &Note) {
    let level = match note.level() {
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warn => log::Level::Warn,
        Level::Error => log::Level::Error,
    };
    log::log!(level, "{note}");
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _t: usize) {
        let Ok(mut worker) = self.revocation.try_borrow_mut() else {
            return;
        };
        let status = bindings::http_call_status();
        let report = worker.on_fetched(
            status.as_deref(),
            body_size,
            |size| bindings::http_call_body(size).ok(),
            &Wasm,
        );
        self.stats.report(report);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        if !self.stats.is_defined() {
            self.stats = Rc::new(Stats::define());
        }
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let (policy, report) = load(&raw);
        self.stats.report(report);
        let accepted = policy.is_some();
        if let Some(seconds) = policy.as_ref().and_then(revocation::tick_seconds) {
            if !self.tick_set {
                self.set_tick_period(Duration::from_secs(seconds));
                self.tick_set = true;
            }
        }
        // Fail closed: a refused configuration drops any previous policy too.
        self.policy = policy.map(Rc::new);
        accepted
    }

    fn on_tick(&mut self) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let Ok(mut worker) = self.revocation.try_borrow_mut() else {
            return;
        };
        let tick = worker.on_tick(&policy, &Wasm);
        self.stats.report(Report {
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
        self.stats.report(worker.fetch_started(started, &policy));
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            policy: self.policy.clone(),
            stats: Rc::clone(&self.stats),
            revocation: Rc::clone(&self.revocation),
            stream: Stream::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
    revocation: Rc<RefCell<Worker>>,
    stream: Stream,
}

impl Context for Http {}

/// Which header map a plan's removals and sets apply to.
#[derive(Clone, Copy)]
enum Map {
    RequestHeaders,
    RequestTrailers,
}

impl Http {
    /// Performs a plan, in the one order every host uses: removals, sets, response headers,
    /// counter, audit, log, then the reply or "continue".
    fn perform(&self, plan: Plan<'_>, map: Map) -> Action {
        for name in &plan.remove {
            let removed = match map {
                Map::RequestHeaders => bindings::remove_request_header(name),
                Map::RequestTrailers => bindings::remove_request_trailer(name),
            };
            if removed.is_err() {
                return self.refuse("header_edit_failed");
            }
        }
        for (name, value) in &plan.set {
            let set = match map {
                Map::RequestHeaders => bindings::set_request_header(name.as_bytes(), value),
                // The core never sets a trailer; one it did could not be carried out here.
                Map::RequestTrailers => Err(bindings::HostError(u32::MAX)),
            };
            if set.is_err() {
                return self.refuse("header_edit_failed");
            }
        }
        for (name, value) in &plan.add_response {
            let _ = bindings::add_response_header(name.as_bytes(), value.as_bytes());
        }
        if let Some(counter) = plan.counter {
            self.stats.bump(counter);
        }
        if let Some(audit) = plan.audit {
            let _ = bindings::set_property("devgate_decision", audit.value().as_bytes());
        }
        if let Some(note) = &plan.note {
            log_note(note);
        }
        let Some(reply) = plan.reply else {
            return Action::Continue;
        };
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_bytes()))
            .collect();
        match bindings::send_local_response(
            reply.status,
            &reply.details,
            &headers,
            reply.body.as_bytes(),
        ) {
            Ok(()) => Action::Pause,
            Err(_) => self.refuse("send_local_response_failed"),
        }
    }

    /// Performs the core's refusal of a step this host could not complete. Nothing in it can
    /// fail over to anything else: if even the reply fails, the request still does not go on.
    fn refuse(&self, what: &'static str) -> Action {
        let plan = Plan::refuse(what);
        if let Some(note) = &plan.note {
            log_note(note);
        }
        if let Some(counter) = plan.counter {
            self.stats.bump(counter);
        }
        if let Some(audit) = plan.audit {
            let _ = bindings::set_property("devgate_decision", audit.value().as_bytes());
        }
        if let Some(reply) = plan.reply {
            let headers: Vec<(&str, &[u8])> = reply
                .headers
                .iter()
                .map(|(n, v)| (*n, v.as_bytes()))
                .collect();
            let _ = bindings::send_local_response(
                reply.status,
                &reply.details,
                &headers,
                reply.body.as_bytes(),
            );
        }
        Action::Pause
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.as_deref() else {
            return self.refuse("not_configured");
        };
        let Ok(buf) = bindings::request_header_pairs() else {
            return self.refuse("headers_unavailable");
        };
        let Some(headers) = parse_pairs(&buf) else {
            return self.refuse("headers_malformed");
        };
        #[cfg(feature = "fault-injection")]
        if headers
            .iter()
            .any(|(n, v)| *n == b"x-devgate-fault" && *v == b"trap")
        {
            // A Wasm trap, as a bug would cause one (tests only; see Cargo.toml).
            core::arch::wasm32::unreachable();
        }
        let Ok(peer) = bindings::property_encoded(b"source\0address\0") else {
            return self.refuse("peer_unavailable");
        };
        let Ok(mut worker) = self.revocation.try_borrow_mut() else {
            return self.refuse("revocation_state_busy");
        };
        let req = RequestHeaders {
            peer: peer.as_deref(),
            headers: &headers,
            end_of_stream,
        };
        let plan = self
            .stream
            .on_request_headers(policy, req, &mut worker, &Wasm);
        drop(worker);
        self.perform(plan, Map::RequestHeaders)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.stream.body_plan() == BodyPlan::Pass {
            return Action::Continue;
        }
        let Some(policy) = self.policy.as_deref() else {
            return self.refuse("not_configured");
        };
        // Never buffered by devgate's Action, so this is the current chunk only.
        let Ok(chunk) = bindings::request_body(body_size) else {
            return self.refuse("body_unavailable");
        };
        if bindings::drop_request_body(body_size).is_err() {
            return self.refuse("body_edit_failed");
        }
        let plan = self
            .stream
            .on_request_body(policy, &chunk, end_of_stream, &Wasm);
        self.perform(plan, Map::RequestHeaders)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        let Some(policy) = self.policy.as_deref() else {
            return self.refuse("not_configured");
        };
        let Ok(buf) = bindings::request_trailer_pairs() else {
            return self.refuse("trailers_unavailable");
        };
        let Some(trailers) = parse_pairs(&buf) else {
            return self.refuse("trailers_malformed");
        };
        let plan = self.stream.on_request_trailers(policy, &trailers, &Wasm);
        self.perform(plan, Map::RequestTrailers)
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.as_deref() else {
            return Action::Continue;
        };
        let plan = self.stream.on_response_headers(policy, &Wasm);
        self.perform(plan, Map::RequestHeaders)
    }
}

//! The Wasm host: the only code that names `proxy_wasm`. Each callback gathers the facts the
//! core asks for ([`Wasm`] reads the lazy ones), hands them to the core ([`Stream`], [`Worker`])
//! and has the core's interpreter ([`perform`], [`perform_report`]) carry out the [`Plan`] or
//! [`Report`] it gets back through this host's primitive [`Effects`] ([`Envoy`]). It holds no
//! policy branch and no order of effects. A step it cannot complete (a host call failed) ends in
//! the core's refusal ([`refuse`]), a local 500, never in a forwarded request.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use super::bindings::{self, Wasm};
use super::map::parse_pairs;
use crate::config::load;
use crate::core::callout::{Callout, Wait};
use crate::core::counters::Table;
use crate::core::effects::{Effects, Failed, Gauge, HeaderMap};
use crate::core::facts::RequestHeaders;
use crate::core::perform::{perform, perform_report, refuse, Flow};
use crate::core::plan::{Level, Plan, Reply, Report};
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

/// Metrics, defined once per VM: the counters from [`Counter::all`](crate::core::counters::Counter::all)
/// (Envoy lists them under `wasmcustom.devgate.*`) and the degraded gauge.
#[derive(Default)]
struct Stats {
    /// Metric ids of the counters (empty until the first configuration).
    counters: Table<u32>,
    /// `devgate.revocation.degraded`: 1 while the list is stale.
    degraded: Option<u32>,
}

impl Stats {
    fn define() -> Stats {
        Stats {
            counters: Table::define(|name| bindings::define_counter(name).ok()),
            degraded: bindings::define_gauge(revocation::DEGRADED_GAUGE).ok(),
        }
    }
}

/// The primitive effects of this host, for the core's interpreter ([`perform`]): each one host
/// call, deciding nothing.
struct Envoy<'s> {
    stats: &'s Stats,
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
            Gauge::KeyServiceEntries => None,
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

    // Key-service callouts: not wired in this host yet, so a callout "cannot start" and the
    // core decides as for an unavailable service (503), never letting the request through.
    fn start_callout(&mut self, _callout: &Callout) -> Result<(), Failed> {
        Err(Failed)
    }

    fn wait(&mut self, _wait: &Wait) -> Result<(), Failed> {
        Err(Failed)
    }

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
        perform_report(report, &mut Envoy { stats: &self.stats });
    }
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
        let report = worker.fetch_started(started, &policy);
        self.report(&report);
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

impl Http {
    /// Has the core's interpreter perform `plan` (the step's header map is `map`).
    fn perform(&self, plan: Plan<'_>, map: HeaderMap) -> Action {
        action(perform(plan, map, &mut Envoy { stats: &self.stats }))
    }

    /// Has the core's interpreter perform its refusal of a step this host could not complete.
    fn refuse(&self, what: &'static str) -> Action {
        action(refuse(what, &mut Envoy { stats: &self.stats }))
    }
}

/// proxy-wasm's action for how a performed step ends.
fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        // Not reachable until this host makes callouts: no configuration has a key service.
        Flow::Stop | Flow::Wait | Flow::CalloutNotStarted => Action::Pause,
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
        self.perform(plan, HeaderMap::RequestHeaders)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.stream.body_plan() == BodyPlan::Pass {
            return Action::Continue;
        }
        let Some(policy) = self.policy.as_deref() else {
            return self.refuse("not_configured");
        };
        if self.stream.body_plan() == BodyPlan::Inspect {
            // Paused (buffered by Envoy) until the form is whole: `body_size` is all of it so
            // far, and the read is of all of it.
            let plan = self
                .stream
                .on_form_body(policy, body_size, end_of_stream, || {
                    bindings::request_body(body_size).ok()
                });
            let action = self.perform(plan, HeaderMap::RequestHeaders);
            return match (action, self.stream.body_plan()) {
                (Action::Continue, BodyPlan::Inspect) => Action::Pause,
                (action, _) => action,
            };
        }
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
        self.perform(plan, HeaderMap::RequestHeaders)
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
        self.perform(plan, HeaderMap::RequestTrailers)
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.as_deref() else {
            return Action::Continue;
        };
        let plan = self.stream.on_response_headers(policy, &Wasm);
        self.perform(plan, HeaderMap::RequestHeaders)
    }
}

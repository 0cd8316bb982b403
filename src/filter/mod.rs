//! The glue: the only code that names `proxy_wasm`. It reads from the host, calls the core, and
//! maps the decision to host calls. It decides nothing, and every path it cannot complete ends
//! in a local error response, never in a forwarded request.

mod host;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::abi::parse_pairs;
use crate::config::{parse_policy, Policy};
use crate::core::apikey::KeyKind;
use crate::core::{decide, Decision, Reason, Request, Response};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { policy: None, stats: Rc::new(Stats::default()) })
    });
}}

struct Root {
    /// `None` until a configuration has been accepted, and again after one is refused.
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
}

/// Counters, defined once per VM. Envoy lists them under `wasmcustom.devgate.*`:
/// `requests.allowed.<source>`, `requests.denied.<reason>`, `config.accepted|rejected`.
/// Looked up by the static code, so counting costs no allocation.
#[derive(Default)]
struct Stats {
    allowed: HashMap<&'static str, u32>,
    denied: HashMap<&'static str, u32>,
    config: HashMap<&'static str, u32>,
}

/// What allowed a request: the identity's source, an API key kind, or nothing.
const ALLOWED: [&str; 6] = [
    "network",
    "bearer",
    "cookie",
    "public_key",
    "private_key",
    "anonymous",
];

fn define_all(
    prefix: &str,
    codes: impl Iterator<Item = &'static str>,
) -> HashMap<&'static str, u32> {
    codes
        .filter_map(|code| {
            let mut name = String::with_capacity(prefix.len() + code.len());
            name.push_str(prefix);
            name.push_str(code);
            host::define_counter(&name).ok().map(|id| (code, id))
        })
        .collect()
}

impl Stats {
    fn define() -> Stats {
        let denied = Reason::all()
            .map(Reason::code)
            .chain(std::iter::once(INTERNAL_ERROR));
        Stats {
            allowed: define_all("devgate.requests.allowed.", ALLOWED.into_iter()),
            denied: define_all("devgate.requests.denied.", denied),
            config: define_all("devgate.config.", ["accepted", "rejected"].into_iter()),
        }
    }

    fn is_defined(&self) -> bool {
        !self.config.is_empty()
    }

    fn bump(map: &HashMap<&'static str, u32>, code: &str) {
        if let Some(id) = map.get(code) {
            host::increment(*id);
        }
    }

    fn allowed(&self, what: &str) {
        Stats::bump(&self.allowed, what);
    }

    fn denied(&self, code: &str) {
        Stats::bump(&self.denied, code);
    }

    fn config(&self, outcome: &str) {
        Stats::bump(&self.config, outcome);
    }
}

/// The reason code of a request the glue itself could not complete.
const INTERNAL_ERROR: &str = "internal_error";

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        if !self.stats.is_defined() {
            self.stats = Rc::new(Stats::define());
        }
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match parse_policy(&raw) {
            Ok(policy) => {
                log::info!(
                    "devgate: configuration accepted ({} path rules, header {})",
                    policy.rules.len(),
                    policy.header.as_str()
                );
                self.policy = Some(Rc::new(policy));
                self.stats.config("accepted");
                true
            }
            Err(e) => {
                // Fail closed: drop any previous policy too, so nothing runs on a stale one.
                self.policy = None;
                self.stats.config("rejected");
                log::error!("devgate: configuration rejected: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            policy: self.policy.clone(),
            stats: Rc::clone(&self.stats),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
}

impl Context for Http {}

/// Stops the request with a generic error: used whenever the glue cannot finish its job.
fn fail_closed(stats: &Stats, code: &str) -> Action {
    log::warn!("devgate: request refused: {code}");
    stats.denied(INTERNAL_ERROR);
    let _ = host::set_property("devgate_decision", b"deny:internal_error");
    let headers: [(&str, &[u8]); 2] = [
        ("content-type", b"text/plain; charset=utf-8"),
        ("cache-control", b"no-store"),
    ];
    // If even this fails there is nothing left to do but not continue.
    let _ = host::send_local_response(
        500,
        "devgate_internal",
        &headers,
        b"Internal Server Error\n",
    );
    Action::Pause
}

fn respond(stats: &Stats, code: &str, r: &Response) -> Action {
    let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let mut details = String::with_capacity(8 + code.len());
    details.push_str("devgate_");
    details.push_str(code);
    match host::send_local_response(r.status, &details, &headers, r.body.as_bytes()) {
        Ok(()) => Action::Pause,
        Err(_) => fail_closed(stats, "send_local_response_failed"),
    }
}

impl Http {
    fn now(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            return fail_closed(&self.stats, "not_configured");
        };
        let Ok(buf) = host::request_header_pairs() else {
            return fail_closed(&self.stats, "headers_unavailable");
        };
        let Some(headers) = parse_pairs(&buf) else {
            return fail_closed(&self.stats, "headers_malformed");
        };
        let Ok(peer) = host::property(&["source", "address"]) else {
            return fail_closed(&self.stats, "peer_unavailable");
        };
        let req = Request {
            peer: peer.as_deref(),
            headers: &headers,
            // Only tokens and API keys look at the clock: skip the host call otherwise.
            now: if policy.tokens.is_some() || policy.api.is_some() {
                self.now()
            } else {
                0
            },
        };
        match decide(&policy, &req) {
            Decision::Allow {
                identity,
                api_key,
                edits,
            } => {
                for name in &edits.remove {
                    if host::remove_request_header(name).is_err() {
                        return fail_closed(&self.stats, "header_edit_failed");
                    }
                }
                for (name, value) in &edits.set {
                    if host::set_request_header(name.as_bytes(), value).is_err() {
                        return fail_closed(&self.stats, "header_edit_failed");
                    }
                }
                let what = match (&identity, api_key) {
                    (_, Some(KeyKind::Public)) => "public_key",
                    (_, Some(KeyKind::Private)) => "private_key",
                    (Some(id), None) => id.source.code(),
                    (None, None) => "anonymous",
                };
                self.stats.allowed(what);
                // Audit fields for the access log: who, and how. Never a credential.
                let mut decision = String::with_capacity(6 + what.len());
                decision.push_str("allow:");
                decision.push_str(what);
                let _ = host::set_property("devgate_decision", decision.as_bytes());
                if let Some(id) = &identity {
                    let _ = host::set_property("devgate_user", id.name.as_bytes());
                    let _ = host::set_property("devgate_source", id.source.code().as_bytes());
                }
                Action::Continue
            }
            Decision::Deny { reason, response } => {
                let code = reason.code();
                log::debug!("devgate: denied {} ({code})", response.status);
                self.stats.denied(code);
                let mut decision = String::with_capacity(5 + code.len());
                decision.push_str("deny:");
                decision.push_str(code);
                let _ = host::set_property("devgate_decision", decision.as_bytes());
                respond(&self.stats, code, &response)
            }
        }
    }
}

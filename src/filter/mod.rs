//! The glue: the only code that names `proxy_wasm`. It reads from the host, calls the core, and
//! maps the decision to host calls. It decides nothing, and every path it cannot complete ends
//! in a local error response, never in a forwarded request.

mod host;

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::abi::parse_pairs;
use crate::config::{parse_policy, Policy};
use crate::core::{decide, Decision, Request, Response};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { policy: None }) });
}}

struct Root {
    /// `None` until a configuration has been accepted, and again after one is refused.
    policy: Option<Rc<Policy>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match parse_policy(&raw) {
            Ok(policy) => {
                log::info!(
                    "devgate: configuration accepted ({} path rules, header {})",
                    policy.rules.len(),
                    policy.header.as_str()
                );
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                // Fail closed: drop any previous policy too, so nothing runs on a stale one.
                self.policy = None;
                log::error!("devgate: configuration rejected: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            policy: self.policy.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    policy: Option<Rc<Policy>>,
}

impl Context for Http {}

/// Stops the request with a generic error: used whenever the glue cannot finish its job.
fn fail_closed(code: &str) -> Action {
    log::warn!("devgate: request refused: {code}");
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

fn respond(code: &str, r: &Response) -> Action {
    let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let mut details = String::with_capacity(8 + code.len());
    details.push_str("devgate_");
    details.push_str(code);
    match host::send_local_response(r.status, &details, &headers, r.body.as_bytes()) {
        Ok(()) => Action::Pause,
        Err(_) => fail_closed("send_local_response_failed"),
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
            return fail_closed("not_configured");
        };
        let Ok(buf) = host::request_header_pairs() else {
            return fail_closed("headers_unavailable");
        };
        let Some(headers) = parse_pairs(&buf) else {
            return fail_closed("headers_malformed");
        };
        let Ok(peer) = host::property(&["source", "address"]) else {
            return fail_closed("peer_unavailable");
        };
        let req = Request {
            peer: peer.as_deref(),
            headers: &headers,
            now: self.now(),
        };
        match decide(&policy, &req) {
            Decision::Allow { identity, edits } => {
                for name in &edits.remove {
                    if host::remove_request_header(name).is_err() {
                        return fail_closed("header_edit_failed");
                    }
                }
                for (name, value) in &edits.set {
                    if host::set_request_header(name.as_bytes(), value).is_err() {
                        return fail_closed("header_edit_failed");
                    }
                }
                if let Some(id) = identity {
                    log::debug!("devgate: developer via {}", id.source.code());
                }
                Action::Continue
            }
            Decision::Deny { reason, response } => {
                log::debug!("devgate: denied {} ({})", response.status, reason.code());
                respond(reason.code(), &response)
            }
        }
    }
}

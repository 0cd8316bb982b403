//! The native host's glue: facts from Envoy through [`Host`], a decision from the core, and the
//! host calls that carry it out. It decides nothing.
//!
//! A placeholder interpreter of today's [`Decision`], to be replaced by the plan API of issue #16.
//! What it does not carry out yet (the login form, the revocation fetch, the response-phase
//! challenge) it refuses at load with a message naming the field, so that no configuration
//! half-works.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::abi::{log, ConfigHost, HeaderMap, Host, LogLevel};
use crate::config::{parse_policy, Policy, UpstreamChallenge};
use crate::core::apikey::KeyKind;
use crate::core::session::translate_challenge;
use crate::core::{decide_with, Decision, Response, Source};

/// The filter state key of the audit value: the wasm build's, so that an access log
/// (`%FILTER_STATE(wasm.devgate_decision:PLAIN)%`) reads the same with either build.
const DECISION_KEY: &str = "wasm.devgate_decision";

/// The reason code of a request the glue itself could not complete.
const INTERNAL_ERROR: &str = "internal_error";

/// What the response step needs from the request step.
struct After {
    /// devgate sent a developer with the request.
    had_identity: bool,
}

/// What allowed a request (the wasm build's counter names).
const ALLOWED: [&str; 7] = [
    "network",
    "bearer",
    "cookie",
    "session",
    "public_key",
    "private_key",
    "anonymous",
];

/// Configuration a native module cannot carry out yet: the field and why. Refused at load.
fn unsupported(policy: &Policy) -> Option<(&'static str, &'static str)> {
    if policy.login.is_some() {
        return Some((
            "login",
            "the login form is not in the native module yet (use the wasm build)",
        ));
    }
    if policy.revocation.is_some() {
        return Some((
            "revocation",
            "the revocation list fetch is not in the native module yet (use the wasm build)",
        ));
    }
    // `login` (the other value) needs the login form, refused above.
    None
}

/// One accepted configuration, shared by every stream it creates (on any worker).
pub struct Config {
    policy: Policy,
    /// `devgate.requests.allowed.<what>` counter ids.
    allowed: HashMap<&'static str, usize>,
    /// `devgate.requests.denied.<reason>` counter ids.
    denied: HashMap<&'static str, usize>,
    /// `devgate.upstream_challenge.<forbid|login>` counter ids.
    challenge: HashMap<&'static str, usize>,
}

fn define_all(
    host: &ConfigHost,
    prefix: &str,
    codes: impl Iterator<Item = &'static str>,
) -> HashMap<&'static str, usize> {
    codes
        .filter_map(|code| {
            let mut name = String::with_capacity(prefix.len() + code.len());
            name.push_str(prefix);
            name.push_str(code);
            host.define_counter(&name).map(|id| (code, id))
        })
        .collect()
}

impl Config {
    /// Parses the filter's configuration (`filter_config`, a `StringValue`'s bytes); `None`
    /// refuses it, after logging why (the field, never a secret).
    pub fn new(host: &ConfigHost, raw: &[u8]) -> Option<Config> {
        let policy = match parse_policy(raw) {
            Ok(p) => p,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("devgate: configuration rejected: {e}"),
                );
                return None;
            }
        };
        if let Some((field, why)) = unsupported(&policy) {
            log(
                LogLevel::Error,
                &format!("devgate: configuration rejected: {field}: {why}"),
            );
            return None;
        }
        let denied = crate::core::Reason::all()
            .map(crate::core::Reason::code)
            .chain(std::iter::once(INTERNAL_ERROR));
        let config = Config {
            allowed: define_all(host, "devgate.requests.allowed.", ALLOWED.into_iter()),
            denied: define_all(host, "devgate.requests.denied.", denied),
            challenge: define_all(
                host,
                "devgate.upstream_challenge.",
                ["forbid", "login"].into_iter(),
            ),
            policy,
        };
        log(
            LogLevel::Info,
            &format!(
                "devgate: configuration accepted ({} path rules, header {})",
                config.policy.rules.len(),
                config.policy.header.as_str()
            ),
        );
        Some(config)
    }

    fn count(map: &HashMap<&'static str, usize>, host: &Host, code: &str) {
        if let Some(id) = map.get(code) {
            host.increment(*id);
        }
    }
}

/// One HTTP stream.
pub struct Stream {
    config: Arc<Config>,
    /// devgate let the request through (its body and trailers may follow it upstream).
    allowed: bool,
    /// Set when the request went upstream and its response needs a look.
    after: Option<After>,
}

/// Seconds since the Unix epoch (0 for a clock before it: then no token is valid).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `devgate_decision` of an allowed request (the wasm build's values).
fn allow_decision(key: Option<KeyKind>, source: Option<Source>) -> &'static str {
    use KeyKind::{Private, Public};
    use Source::{Bearer, Cookie, Network, Session};
    match (key, source) {
        (None, None) => "allow:anonymous",
        (None, Some(Network)) => "allow:network",
        (None, Some(Bearer)) => "allow:bearer",
        (None, Some(Cookie)) => "allow:cookie",
        (None, Some(Session)) => "allow:session",
        (Some(Public), None) => "allow:public_key",
        (Some(Public), Some(Network)) => "allow:public_key+network",
        (Some(Public), Some(Bearer)) => "allow:public_key+bearer",
        (Some(Public), Some(Cookie)) => "allow:public_key+cookie",
        (Some(Public), Some(Session)) => "allow:public_key+session",
        (Some(Private), None) => "allow:private_key",
        (Some(Private), Some(Network)) => "allow:private_key+network",
        (Some(Private), Some(Bearer)) => "allow:private_key+bearer",
        (Some(Private), Some(Cookie)) => "allow:private_key+cookie",
        (Some(Private), Some(Session)) => "allow:private_key+session",
    }
}

impl Stream {
    pub fn new(config: Arc<Config>) -> Stream {
        Stream {
            config,
            allowed: false,
            after: None,
        }
    }

    /// Whether the request goes on (bodies and trailers of an answered request stop).
    pub fn proceeds(&self) -> bool {
        self.allowed
    }

    /// Response headers of a request devgate let through: an upstream's developer challenge
    /// (401 + `WWW-Authenticate: x-wsgiorg.developer_user`) becomes what `upstream_challenge`
    /// says. `true`: continue. Envoy also runs devgate's own local replies through here; they
    /// have no `after` and go on untouched.
    pub fn response_headers(&mut self, host: &mut Host) -> bool {
        let Some(after) = self.after.take() else {
            return true;
        };
        let config = Arc::clone(&self.config);
        let Some(headers) = host.headers(HeaderMap::ResponseHeader) else {
            return true;
        };
        let status = headers
            .iter()
            .find(|(n, _)| *n == b":status")
            .map(|(_, v)| *v)
            .unwrap_or_default();
        let www: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| *n == b"www-authenticate")
            .map(|(_, v)| *v)
            .collect();
        // `raw_path` is only read for `upstream_challenge: login`, refused at load.
        let page = translate_challenge(&config.policy, status, &www, after.had_identity, b"");
        drop(www);
        drop(headers);
        match page {
            None => true,
            Some(page) => {
                let what = if page.status == 303 {
                    "login"
                } else {
                    "forbid"
                };
                Config::count(&config.challenge, host, what);
                let headers: Vec<(&str, &[u8])> = page
                    .headers
                    .iter()
                    .map(|(n, v)| (*n, v.as_bytes()))
                    .collect();
                host.send_response(
                    page.status,
                    &headers,
                    page.body.as_bytes(),
                    "devgate_upstream_challenge",
                );
                false
            }
        }
    }

    /// The request's headers: decide and carry the decision out. `true`: continue.
    pub fn request_headers(&mut self, host: &mut Host, _end_of_stream: bool) -> bool {
        let config = Arc::clone(&self.config);
        let policy = &config.policy;
        // Facts: every request header and `source.address`, as views into Envoy's memory.
        let Some(headers) = host.headers(HeaderMap::RequestHeader) else {
            return self.fail_closed(host, "headers_unavailable");
        };
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
        let req = crate::core::Request {
            peer: host.source_address(),
            headers: &headers,
            now: if policy.tokens.is_some() || policy.api.is_some() {
                now()
            } else {
                0
            },
        };
        let decision = decide_with(policy, &req, None);
        // Names of the client's identity-header spellings, copied out before any edit (an edit
        // invalidates the views): a request devgate answers itself loses them too, so the access
        // log never shows a name devgate did not set.
        let spellings: Vec<Vec<u8>> = if matches!(decision, Decision::Allow { .. }) {
            Vec::new()
        } else {
            crate::core::headers::spellings_present(&headers, &[&policy.header])
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        };
        drop(headers);
        for name in &spellings {
            if !host.remove_header(HeaderMap::RequestHeader, name) {
                return self.fail_closed(host, "header_edit_failed");
            }
        }
        match decision {
            Decision::Allow {
                identity,
                api_key,
                edits,
                response_headers,
            } => {
                if !response_headers.is_empty() {
                    // Only sessions ask for response headers, and login is refused at load.
                    return self.fail_closed(host, "response_phase_unsupported");
                }
                for name in &edits.remove {
                    if !host.remove_header(HeaderMap::RequestHeader, name) {
                        return self.fail_closed(host, "header_edit_failed");
                    }
                }
                for (name, value) in &edits.set {
                    if !host.set_header(HeaderMap::RequestHeader, name.as_bytes(), value) {
                        return self.fail_closed(host, "header_edit_failed");
                    }
                }
                if config.policy.upstream_challenge != UpstreamChallenge::Pass {
                    self.after = Some(After {
                        had_identity: identity.is_some(),
                    });
                }
                let what = match (&identity, api_key) {
                    (_, Some(KeyKind::Public)) => "public_key",
                    (_, Some(KeyKind::Private)) => "private_key",
                    (Some(id), None) => id.source.code(),
                    (None, None) => "anonymous",
                };
                Config::count(&config.allowed, host, what);
                let decision = allow_decision(api_key, identity.as_ref().map(|id| id.source));
                let _ = host.set_filter_state(DECISION_KEY, decision.as_bytes());
                self.allowed = true;
                true
            }
            Decision::Deny { reason, response } => {
                let code = reason.code();
                Config::count(&config.denied, host, code);
                let mut audit = String::with_capacity(5 + code.len());
                audit.push_str("deny:");
                audit.push_str(code);
                let _ = host.set_filter_state(DECISION_KEY, audit.as_bytes());
                let mut details = String::with_capacity(8 + code.len());
                details.push_str("devgate_");
                details.push_str(code);
                respond(host, &details, &response);
                false
            }
            // The login mount is only routed when `login` is configured, which is refused at load.
            Decision::Login(_) => self.fail_closed(host, "login_not_configured"),
        }
    }

    /// Stops the request with a generic 500: the glue could not finish its job.
    fn fail_closed(&mut self, host: &mut Host, code: &str) -> bool {
        log(LogLevel::Warn, &format!("devgate: request refused: {code}"));
        self.allowed = false;
        Config::count(&self.config.denied, host, INTERNAL_ERROR);
        let _ = host.set_filter_state(DECISION_KEY, b"deny:internal_error");
        host.send_response(
            500,
            &[
                ("content-type", b"text/plain; charset=utf-8"),
                ("cache-control", b"no-store"),
            ],
            b"Internal Server Error\n",
            "devgate_internal",
        );
        false
    }
}

/// Sends one of the core's local responses.
fn respond(host: &mut Host, details: &str, r: &Response) {
    let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    host.send_response(r.status, &headers, r.body.as_bytes(), details);
}

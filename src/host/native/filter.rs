//! The native host's glue: facts from Envoy through [`Host`], a decision from the core, and the
//! host calls that carry it out. It decides nothing.
//!
//! A placeholder interpreter of today's [`Decision`], to be replaced by the plan API of issue #16.
//! What it does not carry out yet (the login form, the revocation fetch, the response-phase
//! challenge) it refuses at load with a message naming the field, so that no configuration
//! half-works.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::abi::{log, CalloutAnswer, ConfigHost, HeaderMap, Host, LogLevel};
use crate::config::{parse_policy, Policy, UpstreamChallenge};
use crate::core::apikey::KeyKind;
use crate::core::session::translate_challenge;
use crate::core::{decide_with, Decision, Response, Source};

/// The filter state key of the audit value: the wasm build's, so that an access log
/// (`%FILTER_STATE(wasm.devgate_decision:PLAIN)%`) reads the same with either build.
const DECISION_KEY: &str = "wasm.devgate_decision";

/// The reason code of a request the glue itself could not complete.
const INTERNAL_ERROR: &str = "internal_error";

/// What to do with a request body chunk (the binding layer maps it to Envoy's status).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub enum BodyStatus {
    /// Pass it on (and resume a request whose headers were held).
    Continue,
    /// Hold it, with what came before, until the end of the body.
    StopAndBuffer,
    /// Hold it without buffering (an answered request).
    Stop,
}

/// What the request step learns while Envoy's header views are alive (all owned).
struct Facts {
    decision: Decision,
    /// The client's spellings of the identity header (requests devgate answers itself).
    spellings: Vec<Vec<u8>>,
    #[cfg(feature = "test-hooks")]
    test: super::testhooks::Command,
}

/// What the response step needs from the request step.
struct After {
    /// devgate sent a developer with the request.
    had_identity: bool,
}

/// FNV-1a, for the counter tables: their keys are devgate's own codes, fixed at configuration time,
/// so the default hasher's protection against chosen keys buys nothing and costs a few hundred
/// instructions per request (counted with make bench-calls).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A table keyed by devgate's codes.
type Codes<V> = HashMap<&'static str, V, BuildHasherDefault<Fnv>>;

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
    allowed: Codes<usize>,
    /// `devgate.requests.denied.<reason>` counter ids.
    denied: Codes<usize>,
    /// Per reason: the audit value (`deny:<reason>`) and the local reply's details
    /// (`devgate_<reason>`), made once here so that a denied request allocates nothing for them.
    deny_labels: Codes<(String, String)>,
    /// `devgate.upstream_challenge.<forbid|login>` counter ids.
    challenge: Codes<usize>,
    /// Test build only (`filter_name: devgate-noop`, the `native_noop` benchmark): every request
    /// goes on untouched, so that the module's fixed cost can be measured apart from devgate's
    /// work.
    #[cfg(feature = "test-hooks")]
    noop: bool,
    /// Test build only: what the test hooks need (src/host/native/testhooks.rs).
    #[cfg(feature = "test-hooks")]
    pub(super) test: super::testhooks::ConfigTest,
}

fn define_all(
    host: &ConfigHost,
    prefix: &str,
    codes: impl Iterator<Item = &'static str>,
) -> Codes<usize> {
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
    /// refuses it, after logging why (the field, never a secret). `name` is the `filter_name`,
    /// which only the test build reads.
    pub fn new(host: &ConfigHost, name: &[u8], raw: &[u8]) -> Option<Config> {
        #[cfg(not(feature = "test-hooks"))]
        let _ = name;
        #[cfg(feature = "test-hooks")]
        if name == b"devgate-noop" {
            log(LogLevel::Warn, "devgate: test build: noop configuration");
            let test = super::testhooks::ConfigTest::new(host)?;
            return parse_policy(b"{}").ok().map(|policy| Config {
                policy,
                allowed: Codes::default(),
                denied: Codes::default(),
                deny_labels: Codes::default(),
                challenge: Codes::default(),
                noop: true,
                test,
            });
        }
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
        let deny_labels = crate::core::Reason::all()
            .map(crate::core::Reason::code)
            .chain(std::iter::once(INTERNAL_ERROR))
            .map(|code| (code, (format!("deny:{code}"), format!("devgate_{code}"))))
            .collect();
        let config = Config {
            allowed: define_all(host, "devgate.requests.allowed.", ALLOWED.into_iter()),
            denied: define_all(host, "devgate.requests.denied.", denied),
            deny_labels,
            challenge: define_all(
                host,
                "devgate.upstream_challenge.",
                ["forbid", "login"].into_iter(),
            ),
            policy,
            #[cfg(feature = "test-hooks")]
            noop: false,
            #[cfg(feature = "test-hooks")]
            test: super::testhooks::ConfigTest::new(host)?,
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

    fn count(map: &Codes<usize>, host: &Host, code: &str) {
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
    /// Test build only: the test hook this request asked for.
    #[cfg(feature = "test-hooks")]
    pub(super) test: super::testhooks::StreamTest,
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
            #[cfg(feature = "test-hooks")]
            test: super::testhooks::StreamTest::default(),
        }
    }

    /// A request body chunk: passes once devgate let the request through; held after devgate
    /// answered. (The login form's body step of the plan comes here.)
    pub fn request_body(&mut self, host: &mut Host, end_of_stream: bool) -> BodyStatus {
        #[cfg(feature = "test-hooks")]
        if let Some(status) = super::testhooks::request_body(self, host, end_of_stream) {
            return status;
        }
        let _ = (host, end_of_stream);
        if self.allowed {
            BodyStatus::Continue
        } else {
            BodyStatus::Stop
        }
    }

    /// An event this stream scheduled ([`super::abi::Scheduler`]), on its worker. The shipped
    /// build schedules none yet (off-thread bcrypt of the plan comes here).
    pub fn scheduled(&mut self, host: &mut Host, event_id: u64) {
        #[cfg(feature = "test-hooks")]
        super::testhooks::scheduled(self, host, event_id);
        let _ = (host, event_id);
    }

    /// The answer to an HTTP call this stream started (`None`: it failed). The shipped build
    /// starts none yet (the revocation list fetch of the plan comes here).
    pub fn callout_done(&mut self, host: &mut Host, id: u64, answer: Option<CalloutAnswer<'_>>) {
        #[cfg(feature = "test-hooks")]
        super::testhooks::callout_done(self, host, id, answer);
        let _ = (host, id, answer);
    }

    /// Request trailers: those of an answered request stop; from those of a forwarded one, the
    /// names the core lists (`trailer_removals`: identity and API header spellings) are removed
    /// before the upstream sees them. `true`: continue.
    pub fn request_trailers(&mut self, host: &mut Host) -> bool {
        if !self.allowed {
            return false;
        }
        let config = Arc::clone(&self.config);
        let names = host.with_headers(HeaderMap::RequestTrailer, |trailers| {
            crate::core::trailer_removals(&config.policy, trailers)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect::<Vec<Vec<u8>>>()
        });
        let Some(names) = names else {
            return self.fail_closed(host, "trailers_unavailable");
        };
        for name in &names {
            if !host.remove_header(HeaderMap::RequestTrailer, name) {
                return self.fail_closed(host, "trailer_edit_failed");
            }
        }
        true
    }

    /// The configuration (test hooks).
    #[cfg(feature = "test-hooks")]
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    /// Response headers of a request devgate let through: an upstream's developer challenge
    /// (401 + `WWW-Authenticate: x-wsgiorg.developer_user`) becomes what `upstream_challenge`
    /// says. `true`: continue. Envoy also runs devgate's own local replies through here; they
    /// have no `after` and go on untouched.
    pub fn response_headers(&mut self, host: &mut Host) -> bool {
        #[cfg(feature = "test-hooks")]
        super::testhooks::response_headers(self, host);
        let Some(after) = self.after.take() else {
            return true;
        };
        let config = Arc::clone(&self.config);
        let page = host.with_headers(HeaderMap::ResponseHeader, |headers| {
            let status = headers
                .iter()
                .find(|(n, _)| *n == b":status")
                .map(|(_, v)| *v)
                .unwrap_or_default();
            // Every WWW-Authenticate value, on the stack for up to four (one in practice).
            let mut inline: [&[u8]; 4] = [&[]; 4];
            let mut n = 0;
            let mut more: Vec<&[u8]> = Vec::new();
            for (_, v) in headers.iter().filter(|(k, _)| *k == b"www-authenticate") {
                match inline.get_mut(n) {
                    Some(slot) if more.is_empty() => {
                        *slot = v;
                        n += 1;
                    }
                    _ => {
                        if more.is_empty() {
                            more.extend_from_slice(inline.get(..n).unwrap_or_default());
                        }
                        more.push(v);
                    }
                }
            }
            let www = if more.is_empty() {
                inline.get(..n).unwrap_or_default()
            } else {
                &more[..]
            };
            // `raw_path` is only read for `upstream_challenge: login`, refused at load.
            translate_challenge(&config.policy, status, www, after.had_identity, b"")
        });
        match page.flatten() {
            None => true,
            Some(page) => {
                let what = if page.status == 303 {
                    "login"
                } else {
                    "forbid"
                };
                Config::count(&config.challenge, host, what);
                host.send_response(
                    page.status,
                    page.headers.iter().map(|(n, v)| (*n, v.as_bytes())),
                    page.body.as_bytes(),
                    "devgate_upstream_challenge",
                );
                false
            }
        }
    }

    /// The request's headers: decide and carry the decision out. `true`: continue.
    pub fn request_headers(&mut self, host: &mut Host, _end_of_stream: bool) -> bool {
        #[cfg(feature = "test-hooks")]
        if self.config.noop {
            self.allowed = true;
            return true;
        }
        let config = Arc::clone(&self.config);
        let policy = &config.policy;
        // Facts: every request header and `source.address`, as views into Envoy's memory that
        // live only inside this closure; what comes out is owned.
        let facts = host.with_headers(HeaderMap::RequestHeader, |headers| {
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
                headers,
                now: if policy.tokens.is_some() || policy.api.is_some() {
                    now()
                } else {
                    0
                },
            };
            #[cfg(not(feature = "test-hooks"))]
            let decision = decide_with(policy, &req, None);
            #[cfg(feature = "test-hooks")]
            let decision = super::testhooks::in_core(|| decide_with(policy, &req, None));
            // Names of the client's identity-header spellings, copied out before any edit (an
            // edit invalidates the views): a request devgate answers itself loses them too, so
            // the access log never shows a name devgate did not set.
            let spellings: Vec<Vec<u8>> = if matches!(decision, Decision::Allow { .. }) {
                Vec::new()
            } else {
                crate::core::headers::spellings_present(headers, &[&policy.header])
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            Facts {
                decision,
                spellings,
                #[cfg(feature = "test-hooks")]
                test: super::testhooks::Command::of(headers),
            }
        });
        let Some(Facts {
            decision,
            spellings,
            #[cfg(feature = "test-hooks")]
            test,
        }) = facts
        else {
            return self.fail_closed(host, "headers_unavailable");
        };
        #[cfg(feature = "test-hooks")]
        if test == super::testhooks::Command::Allocations {
            return super::testhooks::allocations(host);
        }
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
                #[cfg(feature = "test-hooks")]
                return super::testhooks::after_allow(test, self, host);
                #[cfg(not(feature = "test-hooks"))]
                true
            }
            Decision::Deny { reason, response } => {
                let code = reason.code();
                Config::count(&config.denied, host, code);
                let (audit, details) = config
                    .deny_labels
                    .get(code)
                    .map_or(("deny", "devgate"), |(a, d)| (a.as_str(), d.as_str()));
                let _ = host.set_filter_state(DECISION_KEY, audit.as_bytes());
                respond(host, details, &response);
                false
            }
            // The login mount is only routed when `login` is configured, which is refused at load.
            Decision::Login(_) => self.fail_closed(host, "login_not_configured"),
        }
    }

    /// Stops the request with a generic 500: the glue could not finish its job.
    pub(super) fn fail_closed(&mut self, host: &mut Host, code: &str) -> bool {
        log(LogLevel::Warn, &format!("devgate: request refused: {code}"));
        self.allowed = false;
        Config::count(&self.config.denied, host, INTERNAL_ERROR);
        let _ = host.set_filter_state(DECISION_KEY, b"deny:internal_error");
        let headers: [(&str, &[u8]); 2] = [
            ("content-type", b"text/plain; charset=utf-8"),
            ("cache-control", b"no-store"),
        ];
        host.send_response(500, headers, b"Internal Server Error\n", "devgate_internal");
        false
    }
}

/// Sends one of the core's local responses.
fn respond(host: &mut Host, details: &str, r: &Response) {
    host.send_response(
        r.status,
        r.headers.iter().map(|(n, v)| (*n, v.as_bytes())),
        r.body.as_bytes(),
        details,
    );
}

//! The glue: the only code that names `proxy_wasm`. It reads from the host, calls the core, and
//! maps the decision to host calls. It decides nothing, and every path it cannot complete ends
//! in a local error response, never in a forwarded request.

mod host;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::abi::parse_pairs;
use crate::config::parse_policy;
use crate::core::apikey::KeyKind;
use crate::core::login::{self, Attempts, Page, MAX_BODY};
use crate::core::policy::{LoginPolicy, Policy, UpstreamChallenge, WhenStale};
use crate::core::revocation::{self, Revocation, RevocationList};
use crate::core::session::{self, Endpoint, LoginRequest, Outcome, Step, Store};
use crate::core::{decide_with, net, Decision, Reason, Request, Response, Source};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            policy: None,
            stats: Rc::new(Stats::default()),
            revocation: Rc::new(RefCell::new(RevState::default())),
            tick_set: false,
        })
    });
}}

struct Root {
    /// `None` until a configuration has been accepted, and again after one is refused.
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
    /// This worker's copy of the revocation list (shared data is the process-wide one).
    revocation: Rc<RefCell<RevState>>,
    tick_set: bool,
}

/// Shared-data key of the last good revocation list ([`revocation::encode_stored`]).
const REVOCATION_LIST_KEY: &str = "devgate.revocation.list";
/// Shared-data key of the time of the last fetch attempt: one worker fetches per period.
const REVOCATION_LEASE_KEY: &str = "devgate.revocation.lease";

impl RevState {
    /// Takes another worker's fetch: a newer entry in shared data (a malformed one is ignored).
    fn load_shared(&mut self) {
        if let Ok((Some(stored), cas)) = host::shared_data(REVOCATION_LIST_KEY) {
            if cas != self.cas {
                if let Some((at, list)) = revocation::decode_stored(&stored) {
                    self.list = Some(list);
                    self.fetched_at = Some(at);
                }
                self.cas = cas;
            }
        }
    }
}

/// The revocation list as this worker knows it.
#[derive(Default)]
struct RevState {
    list: Option<RevocationList>,
    fetched_at: Option<u64>,
    /// CAS token of the shared-data entry the list was read from.
    cas: u32,
    /// A fetch this worker started and has not heard back from.
    pending: bool,
}

/// Counters, defined once per VM. Envoy lists them under `wasmcustom.devgate.*`:
/// `requests.allowed.<source>`, `requests.denied.<reason>`, `login.<outcome>`,
/// `upstream_challenge.<forbid|login>`, `config.accepted|rejected`.
/// Looked up by the static code, so counting costs no allocation.
#[derive(Default)]
struct Stats {
    allowed: HashMap<&'static str, u32>,
    denied: HashMap<&'static str, u32>,
    login: HashMap<&'static str, u32>,
    challenge: HashMap<&'static str, u32>,
    revocation: HashMap<&'static str, u32>,
    /// `devgate.revocation.degraded`: 1 while the list is stale.
    degraded: Option<u32>,
    config: HashMap<&'static str, u32>,
}

/// What allowed a request: the identity's source, an API key kind, or nothing.
const ALLOWED: [&str; 7] = [
    "network",
    "bearer",
    "cookie",
    "session",
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
            login: define_all(
                "devgate.login.",
                Outcome::ALL.into_iter().map(Outcome::code),
            ),
            challenge: define_all(
                "devgate.upstream_challenge.",
                ["forbid", "login"].into_iter(),
            ),
            revocation: define_all(
                "devgate.revocation.",
                ["fetch_ok", "fetch_failed"].into_iter(),
            ),
            degraded: host::define_gauge("devgate.revocation.degraded").ok(),
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

    fn login(&self, outcome: Outcome) {
        Stats::bump(&self.login, outcome.code());
    }

    fn revocation(&self, what: &str) {
        Stats::bump(&self.revocation, what);
    }

    fn degraded(&self, on: bool) {
        if let Some(id) = self.degraded {
            host::record(id, u64::from(on));
        }
    }

    fn challenge(&self, what: &str) {
        Stats::bump(&self.challenge, what);
    }

    fn config(&self, outcome: &str) {
        Stats::bump(&self.config, outcome);
    }
}

/// Seconds since the Unix epoch (0 for a clock before it: then no token is valid).
fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `devgate_decision` of an allowed request: `allow:` and what let it through, an API key's
/// kind followed by `+<source>` when a developer came with the key. The one audit property:
/// the developer's name is the identity header itself, which an access log reads with
/// `%REQ(x-wsgiorg-developer-user)%` (one property costs a host call and a filter-state object
/// per request, `make bench-calls`). Static strings: no allocation per request.
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

/// The reason code of a request the glue itself could not complete.
const INTERNAL_ERROR: &str = "internal_error";

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _t: usize) {
        let now = unix_seconds(self.get_current_time());
        let Ok(mut state) = self.revocation.try_borrow_mut() else {
            return;
        };
        state.pending = false;
        let status = host::http_call_status();
        let outcome = match status.as_deref() {
            Some(b"200") if body_size <= revocation::MAX_LIST_BYTES => {
                match host::http_call_body(body_size) {
                    Ok(body) => revocation::parse_list(&body)
                        .map(|list| (list, body))
                        .map_err(|e| e.code()),
                    Err(_) => Err("body_unavailable"),
                }
            }
            Some(b"200") => Err("list_too_large"),
            Some(_) => Err("bad_status"),
            None => Err("no_response"),
        };
        match outcome {
            Ok((list, body)) => {
                // The last good list, for every worker; a failed fetch never gets here.
                let _ = host::set_shared_data(
                    REVOCATION_LIST_KEY,
                    &revocation::encode_stored(now, &body),
                    0,
                );
                if let Ok((_, cas)) = host::shared_data(REVOCATION_LIST_KEY) {
                    state.cas = cas;
                }
                state.list = Some(list);
                state.fetched_at = Some(now);
                self.stats.revocation("fetch_ok");
                self.stats.degraded(false);
            }
            Err(code) => {
                self.stats.revocation("fetch_failed");
                log::warn!(
                    "devgate: revocation list fetch failed: {code}; keeping the last good list"
                );
            }
        }
    }
}

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
                if policy.revocation.is_some() && !self.tick_set {
                    // Once a second: pick up the list another worker fetched, and fetch when due.
                    self.set_tick_period(Duration::from_secs(1));
                    self.tick_set = true;
                }
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

    fn on_tick(&mut self) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let Some(rc) = &policy.revocation else {
            return;
        };
        let now = unix_seconds(self.get_current_time());
        let Ok(mut state) = self.revocation.try_borrow_mut() else {
            return;
        };
        state.load_shared();
        self.stats.degraded(revocation::is_stale(
            state.fetched_at,
            now,
            rc.max_stale_seconds,
        ));
        if state.pending {
            return;
        }
        // One fetch per period per Envoy process: the worker that moves the lease fetches.
        let Ok((lease, cas)) = host::shared_data(REVOCATION_LEASE_KEY) else {
            return;
        };
        let last = lease
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(last) < rc.refresh_seconds && last <= now {
            return;
        }
        if !matches!(
            host::set_shared_data(REVOCATION_LEASE_KEY, now.to_string().as_bytes(), cas),
            Ok(host::Cas::Stored)
        ) {
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", rc.path.as_str()),
            (":authority", rc.authority.as_str()),
        ];
        let timeout = Duration::from_millis(rc.timeout_ms);
        match self.dispatch_http_call(&rc.cluster, headers, None, vec![], timeout) {
            Ok(_) => state.pending = true,
            Err(_) => {
                self.stats.revocation("fetch_failed");
                log::warn!(
                    "devgate: revocation list fetch not started (cluster {})",
                    rc.cluster
                );
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            policy: self.policy.clone(),
            stats: Rc::clone(&self.stats),
            revocation: Rc::clone(&self.revocation),
            pending: None,
            after: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    policy: Option<Rc<Policy>>,
    stats: Rc<Stats>,
    revocation: Rc<RefCell<RevState>>,
    /// A `POST <mount>/login` whose body is being buffered.
    pending: Option<Pending>,
    /// Set when the request went upstream and its response needs a look.
    after: Option<After>,
}

/// What the body step of a login needs from the headers step, and the body so far.
struct Pending {
    peer: std::net::IpAddr,
    tls: bool,
    body: Vec<u8>,
}

/// What the response step needs from the request step.
struct After {
    /// Headers to add to the response (a `Set-Cookie` clearing an expired session).
    add: Vec<(&'static str, String)>,
    /// Translate an upstream 401 with devgate's challenge.
    translate: bool,
    /// devgate sent a developer with the request.
    had_identity: bool,
    /// The request's `:path`, for `back` (only kept in `login` mode).
    raw_path: Vec<u8>,
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
    let mut details = String::with_capacity(8 + code.len());
    details.push_str("devgate_");
    details.push_str(code);
    send(stats, r.status, &details, &r.headers, r.body.as_bytes())
}

/// Answers with one of devgate's own pages (login form, redirects, ...).
fn respond_page(stats: &Stats, details: &str, page: &Page) -> Action {
    send(
        stats,
        page.status,
        details,
        &page.headers,
        page.body.as_bytes(),
    )
}

/// The one place a local reply is sent; a reply that cannot be sent fails closed.
fn send(
    stats: &Stats,
    status: u16,
    details: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> Action {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    match host::send_local_response(status, details, &headers, body) {
        Ok(()) => Action::Pause,
        Err(_) => fail_closed(stats, "send_local_response_failed"),
    }
}

/// Removes every client-sent spelling of the identity header from a request devgate answers
/// itself, so that an access log's `%REQ(x-wsgiorg-developer-user)%` only ever shows a name
/// devgate set. A host call per spelling present, none when the client sent none.
fn scrub_identity(policy: &Policy, headers: &[(&[u8], &[u8])]) -> Result<(), host::HostError> {
    for name in crate::core::headers::spellings_present(headers, &[&policy.header]) {
        host::remove_request_header(name)?;
    }
    Ok(())
}

/// The peer's failed-login record and its CAS token.
fn read_attempts(key: &str) -> Result<(Option<Attempts>, u32), host::HostError> {
    let (value, cas) = host::shared_data(key)?;
    Ok((value.as_deref().and_then(Attempts::from_bytes), cas))
}

/// Counts one more failure for `key`, racing other workers with compare-and-swap.
fn store_failure(login: &LoginPolicy, key: &str, now: u64) -> Result<(), host::HostError> {
    for _ in 0..8 {
        let (prev, cas) = read_attempts(key)?;
        let next = login::record_failure(prev, now, login.failure_window);
        if host::set_shared_data(key, &next.to_bytes(), cas)? == host::Cas::Stored {
            return Ok(());
        }
    }
    Err(host::HostError(u32::MAX))
}

impl Http {
    fn now(&self) -> u64 {
        unix_seconds(self.get_current_time())
    }
}

impl Http {
    /// Whether the downstream connection is TLS (Envoy's `connection.tls_version` attribute).
    /// Read only under the login mount, where it decides the cookie's `Secure`.
    fn is_tls(&self) -> bool {
        matches!(host::property(&["connection", "tls_version"]), Ok(Some(v)) if !v.is_empty())
    }

    /// Answers a request under the login mount, counting and auditing the outcome.
    fn login_answer(&self, outcome: Outcome, page: &Page) -> Action {
        self.stats.login(outcome);
        let code = outcome.code();
        let mut decision = String::with_capacity(6 + code.len());
        decision.push_str("login:");
        decision.push_str(code);
        let _ = host::set_property("devgate_decision", decision.as_bytes());
        let mut details = String::with_capacity(14 + code.len());
        details.push_str("devgate_login_");
        details.push_str(code);
        respond_page(&self.stats, &details, page)
    }

    /// The headers step of a request under the login mount.
    fn login_headers(
        &mut self,
        policy: &Policy,
        endpoint: Endpoint,
        req: &Request<'_>,
        end_of_stream: bool,
    ) -> Action {
        let Some(login) = &policy.login else {
            return fail_closed(&self.stats, "login_not_configured");
        };
        let method = req.header(b":method").unwrap_or_default();
        let peer = policy
            .net
            .peer_ip(net::parse_peer(req.peer.unwrap_or_default()))
            .ok();
        let attempts = match (session::needs_attempts(endpoint, method), peer) {
            (true, Some(ip)) => match read_attempts(&login::rate_key(ip)) {
                Ok((attempts, _)) => attempts,
                Err(_) => return fail_closed(&self.stats, "shared_data_unavailable"),
            },
            _ => None,
        };
        let tls = endpoint != Endpoint::Other && self.is_tls();
        let request = LoginRequest {
            endpoint,
            headers: req.headers,
            peer,
            tls,
            attempts,
            now: self.now(),
        };
        match session::start(login, &request) {
            Step::Respond(outcome, page) => self.login_answer(outcome, &page),
            Step::ReadBody => {
                let Some(peer) = peer else {
                    return fail_closed(&self.stats, "login_without_peer");
                };
                if end_of_stream {
                    self.pending = Some(Pending {
                        peer,
                        tls,
                        body: Vec::new(),
                    });
                    return self.finish_login();
                }
                // A paused Wasm filter is never handed the body (Envoy turns a paused
                // `on_http_request_headers` into StopAllIteration), so the headers go on to
                // the next filter and devgate keeps the body itself, chunk by chunk, handing
                // on empty chunks. The shipped configs put Envoy's buffer filter after devgate
                // on the login route, so the router never sees the request; without it the
                // upstream gets these scrubbed headers (identity spellings went before
                // `login_headers`), no body, then a reset.
                for name in [&b"cookie"[..], b"authorization", b"proxy-authorization"] {
                    if host::remove_request_header(name).is_err() {
                        return fail_closed(&self.stats, "header_edit_failed");
                    }
                }
                self.pending = Some(Pending {
                    peer,
                    tls,
                    body: Vec::with_capacity(512),
                });
                Action::Continue
            }
        }
    }

    /// The body step of `POST <mount>/login`, once the whole body is in `pending`.
    fn finish_login(&mut self) -> Action {
        let (Some(pending), Some(policy)) = (self.pending.take(), self.policy.clone()) else {
            return fail_closed(&self.stats, "login_state_lost");
        };
        let Some(login) = &policy.login else {
            return fail_closed(&self.stats, "login_not_configured");
        };
        let key = login::rate_key(pending.peer);
        let now = self.now();
        let Ok((attempts, _)) = read_attempts(&key) else {
            return fail_closed(&self.stats, "shared_data_unavailable");
        };
        let (outcome, page, store) = session::finish(
            login,
            &pending.body,
            pending.peer,
            pending.tls,
            attempts,
            now,
        );
        match store {
            Store::Nothing => {}
            Store::Failure => {
                // A failure that cannot be counted would let guessing go unmetered.
                if store_failure(login, &key, now).is_err() {
                    return fail_closed(&self.stats, "shared_data_unavailable");
                }
            }
            Store::Clear => {
                let _ = host::set_shared_data(&key, Attempts::CLEARED, 0);
            }
        }
        if outcome == Outcome::Succeeded {
            log::info!("devgate: login succeeded");
        }
        self.login_answer(outcome, &page)
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            return fail_closed(&self.stats, "not_configured");
        };
        let Ok(buf) = host::request_header_pairs() else {
            return fail_closed(&self.stats, "headers_unavailable");
        };
        let Some(headers) = parse_pairs(&buf) else {
            return fail_closed(&self.stats, "headers_malformed");
        };
        #[cfg(feature = "fault-injection")]
        if headers
            .iter()
            .any(|(n, v)| *n == b"x-devgate-fault" && *v == b"trap")
        {
            // A Wasm trap, as a bug would cause one (tests only; see Cargo.toml).
            core::arch::wasm32::unreachable();
        }
        let Ok(peer) = host::property_encoded(b"source\0address\0") else {
            return fail_closed(&self.stats, "peer_unavailable");
        };
        let req = Request {
            peer: peer.as_deref(),
            headers: &headers,
            // Only tokens, API keys and sessions look at the clock: skip the host call otherwise.
            now: if policy.tokens.is_some() || policy.api.is_some() || policy.login.is_some() {
                self.now()
            } else {
                0
            },
        };
        if let Some(rc) = &policy.revocation {
            // A stale copy may only mean this worker has not ticked since another one fetched:
            // look at shared data now rather than refuse on an old view.
            let Ok(mut state) = self.revocation.try_borrow_mut() else {
                return fail_closed(&self.stats, "revocation_state_busy");
            };
            if revocation::is_stale(state.fetched_at, req.now, rc.max_stale_seconds) {
                state.load_shared();
            }
        }
        let Ok(rev_state) = self.revocation.try_borrow() else {
            return fail_closed(&self.stats, "revocation_state_busy");
        };
        let revocation = policy.revocation.as_ref().map(|rc| Revocation {
            list: rev_state.list.as_ref(),
            refuse: rc.when_stale == WhenStale::Refuse
                && revocation::is_stale(rev_state.fetched_at, req.now, rc.max_stale_seconds),
        });
        let decision = decide_with(&policy, &req, revocation);
        drop(rev_state);
        // Allowed requests get their edits from the decision; the others are answered here.
        if !matches!(decision, Decision::Allow { .. }) && scrub_identity(&policy, &headers).is_err()
        {
            return fail_closed(&self.stats, "header_edit_failed");
        }
        match decision {
            Decision::Login(endpoint) => self.login_headers(&policy, endpoint, &req, end_of_stream),
            Decision::Allow {
                identity,
                api_key,
                edits,
                response_headers,
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
                let translate = policy.upstream_challenge != UpstreamChallenge::Pass;
                if translate || !response_headers.is_empty() {
                    // `back` is the path as it goes upstream (an API key already taken out).
                    let raw_path = if policy.upstream_challenge == UpstreamChallenge::Login {
                        edits
                            .set
                            .iter()
                            .find(|(n, _)| n == ":path")
                            .map(|(_, v)| v.as_slice())
                            .or_else(|| req.header(b":path"))
                            .unwrap_or_default()
                            .to_vec()
                    } else {
                        Vec::new()
                    };
                    self.after = Some(After {
                        add: response_headers,
                        translate,
                        had_identity: identity.is_some(),
                        raw_path,
                    });
                }
                let what = match (&identity, api_key) {
                    (_, Some(KeyKind::Public)) => "public_key",
                    (_, Some(KeyKind::Private)) => "private_key",
                    (Some(id), None) => id.source.code(),
                    (None, None) => "anonymous",
                };
                self.stats.allowed(what);
                // The audit field for the access log: how. Never a credential.
                let decision = allow_decision(api_key, identity.as_ref().map(|id| id.source));
                let _ = host::set_property("devgate_decision", decision.as_bytes());
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

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(pending) = self.pending.as_mut() else {
            return Action::Continue;
        };
        // Never buffered by devgate's Action, so this is the current chunk only.
        let chunk = match host::request_body(body_size) {
            Ok(chunk) => chunk,
            Err(_) => return fail_closed(&self.stats, "body_unavailable"),
        };
        if host::drop_request_body(body_size).is_err() {
            return fail_closed(&self.stats, "body_edit_failed");
        }
        if pending.body.len().saturating_add(chunk.len()) > MAX_BODY {
            self.pending = None;
            return self.login_answer(Outcome::TooLarge, &session::too_large());
        }
        pending.body.extend_from_slice(&chunk);
        if end_of_stream {
            self.finish_login()
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.pending.is_none() {
            return Action::Continue;
        }
        // A body followed by trailers: the body ended with the last data frame.
        self.finish_login()
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.pending.take().is_some() {
            // A login POST whose headers reached an upstream that answered before devgate had
            // the whole form: nothing holds the login route (see README, "Login"). The form's
            // body never went on; the upstream's answer does not go out either.
            log::warn!(
                "devgate: a login request reached the upstream; put Envoy's buffer filter after \
                 devgate on the login route"
            );
            return fail_closed(&self.stats, "login_unbuffered");
        }
        let Some(after) = self.after.take() else {
            return Action::Continue;
        };
        for (name, value) in &after.add {
            let _ = host::add_response_header(name.as_bytes(), value.as_bytes());
        }
        let Some(policy) = self.policy.clone().filter(|_| after.translate) else {
            return Action::Continue;
        };
        // Only a response with a challenge can need translating, and almost every response has
        // no `WWW-Authenticate`. Asking for an absent header copies nothing into the VM: 4,043
        // instructions in Envoy against 10,701 for reading `:status` (`make bench-calls`). The
        // whole map, status included, is read only when the header is there.
        if !matches!(host::response_header(b"www-authenticate"), Ok(Some(_))) {
            return Action::Continue;
        }
        let Ok(buf) = host::response_header_pairs() else {
            return Action::Continue;
        };
        let Some(pairs) = parse_pairs(&buf) else {
            return Action::Continue;
        };
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
        match session::translate_challenge(
            &policy,
            status,
            &www,
            after.had_identity,
            &after.raw_path,
        ) {
            None => Action::Continue,
            Some(mut page) => {
                // The reply replaces the upstream's response, headers added above included:
                // carry them (the expired session's clearing Set-Cookie) into it.
                page.headers.extend(after.add);
                self.stats.challenge(if page.status == 303 {
                    "login"
                } else {
                    "forbid"
                });
                respond_page(&self.stats, "devgate_upstream_challenge", &page)
            }
        }
    }
}

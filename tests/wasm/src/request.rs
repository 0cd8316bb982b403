//! Requests and their outcomes.

use std::collections::BTreeMap;

use crate::headers::{show, Headers};
use crate::host::{assert_no_secret_in, Host};
use crate::records::{BodyCall, HostCall, LocalResponse, LogLine, Phase};
use crate::shared::Action;

/// Called before body chunk `n` is delivered: what "another worker" does meanwhile.
pub(crate) type ChunkHook<'h> = Box<dyn FnMut(usize) + 'h>;

/// What happens while a request is held (its headers callback paused with no local reply and
/// nothing resumed it yet), in order, until the module answers or resumes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The stream's oldest unanswered `proxy_http_call` answers with these headers (`:status`
    /// among them) and this body.
    Answer(Headers, Vec<u8>),
    /// The stream's oldest unanswered call fails (reset, timeout, no healthy host): Envoy
    /// delivers it with no headers and no body.
    Fail,
    /// The clock moves on this many milliseconds, then the root context ticks.
    Tick(u64),
}

pub(crate) struct RequestBuilderParts<'h> {
    pub(crate) headers: Headers,
    pub(crate) properties: Vec<(String, Vec<u8>)>,
    pub(crate) end_of_stream: bool,
    pub(crate) upstream_response: Option<Headers>,
    pub(crate) body: Vec<Vec<u8>>,
    pub(crate) trailers: Option<Headers>,
    pub(crate) before_chunk: Option<ChunkHook<'h>>,
    pub(crate) hold: Vec<Hold>,
    pub(crate) on_held: Option<ChunkHook<'h>>,
    pub(crate) keep_open: bool,
}

/// Builds one request: `h.request().peer("127.0.0.1:5000").header(":path", "/").send()`.
pub struct RequestBuilder<'h> {
    pub(crate) host: &'h mut Host,
    pub(crate) headers: Headers,
    pub(crate) properties: Vec<(String, Vec<u8>)>,
    pub(crate) end_of_stream: bool,
    pub(crate) upstream_response: Option<Headers>,
    pub(crate) body: Vec<Vec<u8>>,
    pub(crate) trailers: Option<Headers>,
    pub(crate) before_chunk: Option<ChunkHook<'h>>,
    pub(crate) hold: Vec<Hold>,
    pub(crate) on_held: Option<ChunkHook<'h>>,
    pub(crate) keep_open: bool,
}

impl<'h> RequestBuilder<'h> {
    /// The downstream peer: property `source.address` ("ip:port" or "[v6]:port").
    pub fn peer(self, address: &str) -> Self {
        self.peer_bytes(address.as_bytes())
    }

    pub fn peer_bytes(self, address: &[u8]) -> Self {
        self.property("source.address", address)
    }

    /// Any property, by dotted name (`"source.address"`, `"request.id"`, ...).
    pub fn property(mut self, dotted: &str, value: &[u8]) -> Self {
        self.properties.retain(|(k, _)| k != dotted);
        self.properties.push((dotted.into(), value.to_vec()));
        self
    }

    /// A request header (name lowercased, as Envoy delivers it).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name.as_bytes(), value.as_bytes());
        self
    }

    /// A request header with arbitrary bytes; the name is lowercased.
    pub fn header_bytes(mut self, name: &[u8], value: &[u8]) -> Self {
        self.headers.add(name, value);
        self
    }

    /// A request header exactly as given (no lowercasing): things Envoy would never deliver.
    pub fn header_raw(mut self, name: &[u8], value: &[u8]) -> Self {
        self.headers.add_raw(name, value);
        self
    }

    /// The common pseudo-headers for `method path` on host `devgate.test`.
    pub fn get(self, path: &str) -> Self {
        self.method_path("GET", path)
    }

    pub fn method_path(self, method: &str, path: &str) -> Self {
        self.header(":method", method)
            .header(":scheme", "http")
            .header(":authority", "devgate.test")
            .header(":path", path)
    }

    /// Whether the headers end the stream (default true: no body). `false` with no body and no
    /// trailers delivers one empty body chunk that ends the stream.
    pub fn end_of_stream(mut self, eos: bool) -> Self {
        self.end_of_stream = eos;
        self
    }

    /// The request body in one chunk (the headers then do not end the stream).
    pub fn body(self, bytes: &[u8]) -> Self {
        self.body_chunks(vec![bytes.to_vec()])
    }

    /// The request body in these chunks, one `proxy_on_request_body` each; the last one ends
    /// the stream unless trailers follow.
    pub fn body_chunks(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.body = chunks;
        self.end_of_stream = self.body.is_empty() && self.trailers.is_none();
        self
    }

    /// `bytes` in chunks of `size` bytes (at least 1).
    pub fn body_in_chunks_of(self, bytes: &[u8], size: usize) -> Self {
        let chunks = bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect();
        self.body_chunks(chunks)
    }

    /// Request trailers after the body: they end the stream.
    pub fn trailers(mut self, trailers: Headers) -> Self {
        self.trailers = Some(trailers);
        self.end_of_stream = false;
        self
    }

    /// Runs `hook(n)` before body chunk `n` is delivered: another worker's requests, a test's
    /// writes to shared data.
    pub fn before_chunk(mut self, hook: impl FnMut(usize) + 'h) -> Self {
        self.before_chunk = Some(Box::new(hook));
        self
    }

    /// What happens if the module holds the request (see [`Hold`]). With a script, the body
    /// chunks and trailers arrive while the request is held (as a client's usually do before a
    /// callout answers): each reaches the module, which must keep them (pause); they go on when
    /// the module resumes the request.
    pub fn while_held(mut self, events: Vec<Hold>) -> Self {
        self.hold = events;
        self
    }

    /// Runs `hook(n)` before event `n` of the [`RequestBuilder::while_held`] script: what
    /// another worker does while this request is held.
    pub fn on_held(mut self, hook: impl FnMut(usize) + 'h) -> Self {
        self.on_held = Some(Box::new(hook));
        self
    }

    /// Leaves the stream open where the script left it (no response, no done/delete), its
    /// request state kept in the host: another worker's request still in flight. The host
    /// then plays only that worker (its callouts can still be answered, its root ticked).
    pub fn keep_open(mut self) -> Self {
        self.keep_open = true;
        self
    }

    /// The upstream's response headers if the request is forwarded (default `:status 200`).
    pub fn upstream_response(mut self, headers: Headers) -> Self {
        self.upstream_response = Some(headers);
        self
    }

    /// Runs the request through the module.
    pub fn send(self) -> Outcome {
        let parts = RequestBuilderParts {
            headers: self.headers,
            properties: self.properties,
            end_of_stream: self.end_of_stream,
            upstream_response: self.upstream_response,
            body: self.body,
            trailers: self.trailers,
            before_chunk: self.before_chunk,
            hold: self.hold,
            on_held: self.on_held,
            keep_open: self.keep_open,
        };
        self.host.run(parts)
    }
}

/// What happened to one request.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub context_id: u32,
    /// What `proxy_on_request_headers` returned.
    pub action: Action,
    /// What `proxy_on_response_headers` returned (for the upstream response or the local reply).
    pub response_action: Option<Action>,
    /// The trap message, if any callback of this stream trapped (or the VM was already poisoned).
    pub trap: Option<String>,
    pub local_responses: Vec<LocalResponse>,
    /// The request header map after the filter ran.
    pub request_headers: Headers,
    /// Whether the whole request went upstream: every callback continued (or the headers one
    /// was resumed) and none answered locally while the request was decoded.
    pub forwarded: bool,
    /// The request headers as handed to the next filter, when the headers callback continued
    /// (a login POST's headers go on before its body is read, so this can be set even when
    /// the body step then answers locally).
    pub headers_passed_on: Option<Headers>,
    /// Every `proxy_on_request_body`, in order.
    pub body_calls: Vec<BodyCall>,
    /// The body chunks handed to the next filter, as the module left them.
    pub body_passed_on: Vec<Vec<u8>>,
    /// What `proxy_on_request_trailers` returned, if trailers were delivered.
    pub trailers_action: Option<Action>,
    /// The request trailers as handed to the next filter, when that callback continued.
    pub trailers_passed_on: Option<Headers>,
    /// Why the stream never finished (a pause nobody resumes), if it did not.
    pub stalled: Option<String>,
    /// The module held the request (paused its headers with no local reply) and a root
    /// callback (a callout's answer, a tick) answered or resumed it.
    pub held: bool,
    /// The response header map after `proxy_on_response_headers` ran.
    pub response_headers: Option<Headers>,
    /// The response headers the client gets: the encoded map, or a local reply sent from the
    /// response path in place of the upstream's.
    pub client_headers: Option<Headers>,
    /// The body of a local reply the client gets (None: the upstream's body).
    pub client_body: Option<Vec<u8>>,
    pub logs: Vec<LogLine>,
    pub calls: Vec<HostCall>,
    pub violations: Vec<String>,
    /// Fuel for the whole stream (context create .. delete).
    pub fuel: u64,
    /// Fuel for `proxy_on_request_headers` alone.
    pub fuel_request_headers: u64,
    /// Fuel for every `proxy_on_request_body` together.
    pub fuel_request_body: u64,
    /// Properties the module set during the stream (`proxy_set_property`), dotted names.
    pub properties_set: BTreeMap<String, Vec<u8>>,
}

impl Outcome {
    /// The (first) local response: status, headers, body.
    pub fn local_response(&self) -> Option<(u32, &Headers, &[u8])> {
        self.local_responses
            .first()
            .map(|l| (l.status, &l.headers, l.body.as_slice()))
    }

    pub fn local(&self) -> Option<&LocalResponse> {
        self.local_responses.first()
    }

    pub fn status(&self) -> Option<u32> {
        self.local().map(|l| l.status)
    }

    /// The request headers as the upstream sees them, if the request was forwarded.
    pub fn upstream_headers(&self) -> Option<&Headers> {
        self.forwarded.then_some(&self.request_headers)
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn trapped(&self) -> bool {
        self.trap.is_some()
    }

    pub fn logs(&self) -> &[LogLine] {
        &self.logs
    }

    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn calls(&self) -> &[HostCall] {
        &self.calls
    }

    /// Host calls of this stream, `proxy_log` and WASI excluded: what a request costs the host.
    pub fn abi_call_count(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| c.name.starts_with("proxy_") && c.name != "proxy_log")
            .count()
    }

    pub fn calls_named(&self, name: &str) -> usize {
        self.calls.iter().filter(|c| c.name == name).count()
    }

    pub fn assert_no_secret_in_logs(&self, secrets: &[&str]) {
        assert_no_secret_in(&self.logs, secrets);
    }

    /// The status line the client gets (`:status` of [`Outcome::client_headers`]).
    pub fn client_status(&self) -> Option<u32> {
        self.client_headers
            .as_ref()
            .and_then(|h| h.get_str(":status"))
            .and_then(|s| s.parse().ok())
    }

    /// The callback that sent the local response, if any.
    pub fn local_phase(&self) -> Option<Phase> {
        self.local().map(|l| l.phase)
    }

    /// Whether any body callback ran.
    pub fn body_was_read(&self) -> bool {
        !self.body_calls.is_empty()
    }

    /// Panics with a readable account unless the stream ran cleanly: no trap, no host-side
    /// violation, only valid actions, no stall, and exactly one ending: either the request went
    /// upstream with every callback continuing and no local response, or exactly one local
    /// response, sent by a callback that then paused.
    pub fn assert_well_formed(&self) {
        assert!(
            self.trap.is_none(),
            "the module trapped\n{}",
            self.describe()
        );
        assert!(
            self.violations.is_empty(),
            "violations: {:?}\n{}",
            self.violations,
            self.describe()
        );
        let mut actions = vec![("request headers".to_string(), self.action)];
        for (i, b) in self.body_calls.iter().enumerate() {
            actions.push((format!("request body chunk {i}"), b.action));
        }
        if let Some(a) = self.trailers_action {
            actions.push(("request trailers".into(), a));
        }
        if let Some(a) = self.response_action {
            actions.push(("response headers".into(), a));
        }
        for (what, action) in &actions {
            assert!(
                matches!(action, Action::Continue | Action::Pause),
                "invalid action {action:?} from {what}\n{}",
                self.describe()
            );
        }
        assert!(
            self.stalled.is_none(),
            "the stream stalled: {}\n{}",
            self.stalled.as_deref().unwrap_or_default(),
            self.describe()
        );
        assert!(
            self.local_responses.len() <= 1,
            "more than one local response\n{}",
            self.describe()
        );
        let Some(local) = self.local() else {
            // Nothing answered locally: everything continued (headers possibly resumed).
            assert!(
                self.forwarded,
                "not forwarded, not answered\n{}",
                self.describe()
            );
            if self.action == Action::Pause {
                assert!(
                    self.calls_named("proxy_continue_stream") > 0,
                    "paused without a local response\n{}",
                    self.describe()
                );
            }
            // Body chunks and trailers that came while the request was held were kept (paused)
            // and went on when it was resumed.
            let held_calls = if self.held {
                self.body_calls.len() + usize::from(self.trailers_action.is_some())
            } else {
                0
            };
            for (what, action) in actions.iter().skip(1 + held_calls) {
                assert_eq!(
                    *action,
                    Action::Continue,
                    "{what} paused with no local response\n{}",
                    self.describe()
                );
            }
            return;
        };
        let sender = match local.phase {
            Phase::RequestHeaders => Some(self.action),
            Phase::RequestBody(i) => self.body_calls.get(i).map(|b| b.action),
            Phase::RequestTrailers => self.trailers_action,
            Phase::ResponseHeaders => self.response_action,
            // Sent from a root callback: the held callbacks had all paused.
            Phase::Held => Some(Action::Pause),
            Phase::Other => None,
        };
        assert_eq!(
            sender,
            Some(Action::Pause),
            "the {:?} callback sent a local response and did not pause\n{}",
            local.phase,
            self.describe()
        );
        if local.phase == Phase::ResponseHeaders {
            // It replaced an upstream response.
            assert!(self.forwarded, "{}", self.describe());
        } else {
            assert!(
                !self.forwarded,
                "forwarded and answered\n{}",
                self.describe()
            );
            // The local reply itself then passes through this filter's encoder path.
            assert_eq!(
                self.response_action,
                Some(Action::Continue),
                "the local reply was held up in proxy_on_response_headers\n{}",
                self.describe()
            );
        }
    }

    /// A multi-line account of the stream, for assertion messages.
    pub fn describe(&self) -> String {
        const MAX: usize = 40;
        let more = |n: usize| {
            if n > MAX {
                format!("  ... and {} more\n", n - MAX)
            } else {
                String::new()
            }
        };
        let mut s = format!(
            "action {:?}, held {}, body actions {:?}, trailers {:?}, response {:?}, forwarded {}, \
             stalled {:?}, trap {:?}\nlocal responses: {:?}\nrequest headers after:\n",
            self.action,
            self.held,
            self.body_calls.iter().map(|b| b.action).collect::<Vec<_>>(),
            self.trailers_action,
            self.response_action,
            self.forwarded,
            self.stalled,
            self.trap,
            self.local_responses
        );
        for (n, v) in self.request_headers.iter().take(MAX) {
            s.push_str(&format!("  {}: {}\n", show(n, 60), show(v, 60)));
        }
        s.push_str(&more(self.request_headers.len()));
        if let Some(h) = &self.client_headers {
            s.push_str("client response headers:\n");
            for (n, v) in h.iter().take(MAX) {
                s.push_str(&format!("  {}: {}\n", show(n, 60), show(v, 60)));
            }
            s.push_str(&more(h.len()));
        }
        s.push_str("logs:\n");
        for l in self.logs.iter().take(MAX) {
            s.push_str(&format!("  [{:?}] {}\n", l.level, show(&l.raw, 200)));
        }
        s.push_str(&more(self.logs.len()));
        s.push_str("calls:\n");
        for c in self.calls.iter().take(MAX) {
            s.push_str(&format!("  {}({})\n", c.name, c.args));
        }
        s.push_str(&more(self.calls.len()));
        s
    }
}

//! The host: building it, configuring the plugin, driving the root context.

use std::collections::{BTreeMap, HashSet};

use wasmtime::{AsContextMut, Instance, Linker, Store};

use crate::codes::{level, FUEL_BUDGET, ROOT_ID};
use crate::error::{err, HostError, HostResult};
use crate::headers::Headers;
use crate::imports::define_env;
use crate::module::compiled;
use crate::records::{BodyCall, HostCall, LogLine, Phase};
use crate::request::{Hold, Outcome, RequestBuilder, RequestBuilderParts};
use crate::shared::{Action, HttpCall, Metric, SharedData};
use crate::state::{property_path, State};
use crate::wasi::{define_stubs, define_wasi};

/// Options that must be set before the module starts (the WASI environment is read at start).
#[derive(Clone)]
pub struct HostBuilder {
    env: Vec<(String, String)>,
    vm_config: Vec<u8>,
    log_level: u32,
    now_unix_secs: u64,
    legacy_replace: bool,
    root_properties: Vec<(String, Vec<u8>)>,
    shared: Option<SharedData>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            env: Vec::new(),
            vm_config: Vec::new(),
            log_level: level::TRACE,
            // 2026-01-01T00:00:00Z: a fixed, deterministic "now".
            now_unix_secs: 1_767_225_600,
            legacy_replace: false,
            root_properties: vec![
                ("plugin_name".into(), b"devgate".to_vec()),
                ("plugin_root_id".into(), b"devgate".to_vec()),
                ("plugin_vm_id".into(), b"devgate".to_vec()),
            ],
            shared: None,
        }
    }
}

impl HostBuilder {
    /// A variable in the VM's environment (Envoy: `vm_config.environment_variables`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The VM configuration buffer passed to `proxy_on_vm_start`.
    pub fn vm_config(mut self, bytes: &[u8]) -> Self {
        self.vm_config = bytes.to_vec();
        self
    }

    /// What `proxy_get_log_level` answers (default: trace, so every log path runs).
    pub fn log_level(mut self, level: u32) -> Self {
        self.log_level = level;
        self
    }

    pub fn now(mut self, unix_secs: u64) -> Self {
        self.now_unix_secs = unix_secs;
        self
    }

    /// Envoy before `http_set_copy_replace_all_headers`: `replace` changes the first copy only.
    pub fn legacy_replace(mut self, on: bool) -> Self {
        self.legacy_replace = on;
        self
    }

    pub fn root_property(mut self, dotted: &str, value: &[u8]) -> Self {
        self.root_properties.push((dotted.into(), value.to_vec()));
        self
    }

    /// Shares `data` with this VM (default: a map of its own). Give several hosts the same
    /// handle to play several Envoy workers of one plugin.
    pub fn shared_data(mut self, data: &SharedData) -> Self {
        self.shared = Some(data.clone());
        self
    }

    /// Instantiates the module and starts the VM: `_initialize`, root context, `proxy_on_vm_start`.
    pub fn load(self) -> HostResult<Host> {
        let compiled = compiled()?;
        let state = State {
            vm_config: self.vm_config,
            env: self.env,
            now_nanos: self.now_unix_secs.saturating_mul(1_000_000_000),
            monotonic_nanos: 1_000_000_000,
            log_level: self.log_level,
            legacy_replace: self.legacy_replace,
            root_properties: self
                .root_properties
                .iter()
                .map(|(k, v)| (property_path(k), v.clone()))
                .collect(),
            rng: 0x9E37_79B9_7F4A_7C15,
            shared: self.shared.unwrap_or_default(),
            ..State::default()
        };
        let mut store = Store::new(&compiled.engine, state);
        let fail = |what: &str, e: wasmtime::Error| HostError(format!("{what}: {e:#}"));
        let mut linker = Linker::new(&compiled.engine);
        define_env(&mut linker).map_err(|e| fail("defining proxy-wasm imports", e))?;
        define_wasi(&mut linker).map_err(|e| fail("defining WASI imports", e))?;
        define_stubs(&mut linker, &compiled.module, &mut store)
            .map_err(|e| fail("defining stubs", e))?;
        let instance = linker
            .instantiate(&mut store, &compiled.module)
            .map_err(|e| fail("instantiating devgate.wasm", e))?;

        let exports: HashSet<String> = compiled
            .module
            .exports()
            .map(|e| e.name().to_string())
            .collect();
        store.data_mut().malloc = ["malloc", "proxy_on_memory_allocate"]
            .into_iter()
            .find(|n| exports.contains(*n));

        let mut host = Host {
            store,
            instance,
            exports,
            next_context: ROOT_ID + 1,
            configured: None,
            trapped: None,
            vm_started: false,
            watched: Vec::new(),
        };
        host.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| fail("fuel", e))?;
        if host.exports.contains("_initialize") {
            host.call_void("_initialize", ())?;
        } else if host.exports.contains("_start") {
            host.call_void("_start", ())?;
        }
        host.call_void("proxy_on_context_create", (ROOT_ID as i32, 0))?;
        let vm_len = host.store.data().vm_config.len() as i32;
        let started = host.call_i32("proxy_on_vm_start", (ROOT_ID as i32, vm_len))?;
        host.vm_started = started != 0;
        if !host.vm_started {
            return err(format!(
                "proxy_on_vm_start returned false; logs: {:?}",
                host.logs().iter().map(|l| &l.message).collect::<Vec<_>>()
            ));
        }
        Ok(host)
    }
}

/// The VM, its root context and Envoy's side of the ABI.
pub struct Host {
    store: Store<State>,
    instance: Instance,
    exports: HashSet<String>,
    next_context: u32,
    configured: Option<bool>,
    trapped: Option<String>,
    vm_started: bool,
    /// Checked against every log line when the host is dropped (see [`Host::watch_secrets`]).
    watched: Vec<String>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.watched.is_empty() && !std::thread::panicking() {
            let watched = std::mem::take(&mut self.watched);
            let refs: Vec<&str> = watched.iter().map(String::as_str).collect();
            self.assert_no_secret_in_logs(&refs);
        }
    }
}

impl Host {
    /// Loads the module with default options (empty environment, trace log level, fixed clock).
    pub fn load() -> HostResult<Host> {
        HostBuilder::default().load()
    }

    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// `proxy_on_configure` with this plugin configuration; the module's answer.
    /// A trap is an error (and poisons the host, as Envoy marks the VM failed).
    pub fn configure(&mut self, json: &str) -> HostResult<bool> {
        self.configure_bytes(json.as_bytes())
    }

    pub fn configure_bytes(&mut self, config: &[u8]) -> HostResult<bool> {
        self.store.data_mut().plugin_config = config.to_vec();
        self.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| HostError(format!("fuel: {e:#}")))?;
        let ok = self.call_i32("proxy_on_configure", (ROOT_ID as i32, config.len() as i32))? != 0;
        self.configured = Some(ok);
        Ok(ok)
    }

    /// The last `proxy_on_configure` answer (None before any).
    pub fn configured(&self) -> Option<bool> {
        self.configured
    }

    /// Sets the host clock (`proxy_get_current_time_nanoseconds`, WASI realtime clock).
    pub fn set_now(&mut self, unix_secs: u64) {
        self.store.data_mut().now_nanos = unix_secs.saturating_mul(1_000_000_000);
    }

    pub fn set_now_nanos(&mut self, nanos: u64) {
        self.store.data_mut().now_nanos = nanos;
    }

    pub fn set_log_level(&mut self, level: u32) {
        self.store.data_mut().log_level = level;
    }

    /// Starts building a request; `.send()` runs it through the filter.
    pub fn request(&mut self) -> RequestBuilder<'_> {
        RequestBuilder {
            host: self,
            headers: Headers::new(),
            properties: Vec::new(),
            end_of_stream: true,
            upstream_response: None,
            body: Vec::new(),
            trailers: None,
            before_chunk: None,
            hold: Vec::new(),
            on_held: None,
            keep_open: false,
        }
    }

    /// `proxy_on_tick` on the root context, if the module exports it.
    pub fn tick(&mut self) -> HostResult<()> {
        self.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| HostError(format!("fuel: {e:#}")))?;
        self.root_tick()
    }

    /// Answers a recorded `proxy_http_call` (`proxy_on_http_call_response`).
    pub fn respond_http_call(
        &mut self,
        token: u32,
        headers: Headers,
        body: &[u8],
    ) -> HostResult<()> {
        self.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| HostError(format!("fuel: {e:#}")))?;
        self.answer_call(token, Some((headers, body.to_vec())))
    }

    /// A recorded `proxy_http_call` fails (reset, timeout): answered with no headers, no body.
    pub fn fail_http_call(&mut self, token: u32) -> HostResult<()> {
        self.store
            .set_fuel(FUEL_BUDGET)
            .map_err(|e| HostError(format!("fuel: {e:#}")))?;
        self.answer_call(token, None)
    }

    /// `proxy_on_tick`, as Envoy calls it: on the root context (whatever stream is in flight).
    fn root_tick(&mut self) -> HostResult<()> {
        if !self.exports.contains("proxy_on_tick") {
            return Ok(());
        }
        let previous = std::mem::replace(&mut self.store.data_mut().current_context, ROOT_ID);
        let result = self.call_void("proxy_on_tick", (ROOT_ID as i32,));
        self.store.data_mut().current_context = previous;
        result
    }

    /// `proxy_on_http_call_response` for `token`, as Envoy calls it: every call is the root
    /// context's (proxy-wasm-cpp-host's `http_call` makes it on the root), so the answer comes
    /// to the root, and the module routes it to the context that made the call.
    fn answer_call(&mut self, token: u32, response: Option<(Headers, Vec<u8>)>) -> HostResult<()> {
        if !self
            .store
            .data()
            .http_calls
            .iter()
            .any(|c| c.token == token)
        {
            return err(format!("no http call with token {token}"));
        }
        if self.store.data().answered_calls.contains(&token) {
            return err(format!("http call {token} was answered already"));
        }
        let (n, len) = response
            .as_ref()
            .map_or((0, 0), |(h, b)| (h.len() as i32, b.len() as i32));
        let previous = {
            let s = self.store.data_mut();
            s.answered_calls.push(token);
            s.http_call_response = response.map(|(h, b)| (h, b, Headers::new()));
            std::mem::replace(&mut s.current_context, ROOT_ID)
        };
        let result = self.call_void(
            "proxy_on_http_call_response",
            (ROOT_ID as i32, token as i32, n, len, 0),
        );
        let s = self.store.data_mut();
        s.http_call_response = None;
        s.current_context = previous;
        result
    }

    /// The oldest unanswered `proxy_http_call` made since call `from` (an index).
    fn pending_call(&self, from: usize) -> Option<u32> {
        let s = self.store.data();
        s.http_calls
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|c| c.token)
            .find(|t| !s.answered_calls.contains(t))
    }

    /// One `proxy_on_request_body` with `current` as the body buffer: its result, the action,
    /// the buffer as the module left it, and the fuel it took.
    fn body_call(
        &mut self,
        ctx: u32,
        i: usize,
        current: Vec<u8>,
        eos: bool,
    ) -> (HostResult<i32>, Action, Vec<u8>, u64) {
        let size = current.len();
        {
            let s = self.store.data_mut();
            s.phase = Phase::RequestBody(i);
            s.request_body = Some(current);
        }
        let before = self.fuel_left();
        let result = self.call_i32(
            "proxy_on_request_body",
            (ctx as i32, size as i32, eos as i32),
        );
        let fuel = before - self.fuel_left();
        let left = self
            .store
            .data_mut()
            .request_body
            .take()
            .unwrap_or_default();
        let action = match &result {
            Ok(raw) => Action::from_raw(*raw),
            Err(_) => Action::Trapped,
        };
        (result, action, left, fuel)
    }

    pub fn http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    /// This VM's shared data (a handle: clone it into another host to share it).
    pub fn shared_data(&self) -> SharedData {
        self.store.data().shared.clone()
    }

    pub fn tick_period_ms(&self) -> Option<u32> {
        self.store.data().tick_period_ms
    }

    pub fn metrics(&self) -> &[Metric] {
        &self.store.data().metrics
    }

    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Every log line recorded so far (configure-time and all requests, stdout/stderr included).
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// Every host call recorded so far.
    pub fn calls(&self) -> &[HostCall] {
        &self.store.data().calls
    }

    /// Host-side rule breaks seen so far (bad header bytes, unexpected host calls, ...).
    pub fn violations(&self) -> &[String] {
        &self.store.data().violations
    }

    pub fn stdout(&self) -> &[u8] {
        &self.store.data().stdout
    }

    pub fn stderr(&self) -> &[u8] {
        &self.store.data().stderr
    }

    /// The trap that poisoned this VM, if any.
    pub fn trapped(&self) -> Option<&str> {
        self.trapped.as_deref()
    }

    /// The size of the module's linear memory, in bytes (it only ever grows).
    pub fn memory_bytes(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
            .map_or(0, |m| m.data_size(&self.store))
    }

    pub fn exports(&self) -> &HashSet<String> {
        &self.exports
    }

    /// Registers values that must never appear in a log line: checked when the host is dropped,
    /// so every scenario is covered even if it forgets to call [`Host::assert_no_secret_in_logs`].
    pub fn watch_secrets(&mut self, secrets: &[&str]) {
        self.watched.extend(secrets.iter().map(|s| s.to_string()));
    }

    /// Fails if any secret (token, cookie, key...) appears in any line this VM ever logged or
    /// wrote to stdout/stderr. Empty strings are ignored.
    pub fn assert_no_secret_in_logs(&self, secrets: &[&str]) {
        assert_no_secret_in(self.logs(), secrets);
        for (name, stream) in [("stdout", self.stdout()), ("stderr", self.stderr())] {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                assert!(
                    !contains(stream, secret.as_bytes()),
                    "secret {secret:?} leaked to the module's {name}"
                );
            }
        }
    }

    // --- guest calls --------------------------------------------------------------------------

    fn poisoned(&self) -> HostResult<()> {
        match &self.trapped {
            Some(t) => err(format!("VM already trapped: {t}")),
            None => Ok(()),
        }
    }

    fn on_trap(&mut self, what: &str, e: wasmtime::Error) -> HostError {
        let message = format!("{what} trapped: {e:#}");
        self.trapped = Some(message.clone());
        HostError(message)
    }

    fn call_void<P: wasmtime::WasmParams>(&mut self, name: &str, params: P) -> HostResult<()> {
        self.poisoned()?;
        let f = self
            .instance
            .get_typed_func::<P, ()>(&mut self.store, name)
            .map_err(|e| HostError(format!("export {name}: {e:#}")))?;
        f.call(&mut self.store, params)
            .map_err(|e| self.on_trap(name, e))
    }

    fn call_i32<P: wasmtime::WasmParams>(&mut self, name: &str, params: P) -> HostResult<i32> {
        self.poisoned()?;
        let f = self
            .instance
            .get_typed_func::<P, i32>(&mut self.store, name)
            .map_err(|e| HostError(format!("export {name}: {e:#}")))?;
        f.call(&mut self.store, params)
            .map_err(|e| self.on_trap(name, e))
    }

    fn fuel_left(&mut self) -> u64 {
        self.store.as_context_mut().get_fuel().unwrap_or(0)
    }

    fn local_count(&self) -> usize {
        self.store.data().local_responses.len()
    }

    /// Runs one HTTP stream through the module the way Envoy's wasm filter does.
    pub(crate) fn run(&mut self, mut req: RequestBuilderParts<'_>) -> Outcome {
        let ctx = self.next_context;
        self.next_context += 1;
        let calls_before = self.store.data().calls.len();
        let logs_before = self.store.data().logs.len();
        let violations_before = self.store.data().violations.len();
        {
            let s = self.store.data_mut();
            s.in_request = true;
            s.current_context = ctx;
            s.stream_context = ctx;
            s.phase = Phase::RequestHeaders;
            s.properties = req
                .properties
                .iter()
                .map(|(k, v)| (property_path(k), v.clone()))
                .collect();
            s.request_headers = Some(req.headers.clone());
            s.request_trailers = None;
            s.response_headers = None;
            s.request_body = None;
            s.encoding_local_reply = false;
            s.local_responses.clear();
            s.properties_set.clear();
            s.continued_request = 0;
            s.continued_response = 0;
        }
        // The body as DATA frames. Headers without END_STREAM and no body: one empty frame that
        // ends the stream (an HTTP/2 client may send exactly that).
        let mut chunks = std::mem::take(&mut req.body);
        if !req.end_of_stream && chunks.is_empty() && req.trailers.is_none() {
            chunks.push(Vec::new());
        }
        let headers_eos = chunks.is_empty() && req.trailers.is_none();
        let mut out = Outcome {
            context_id: ctx,
            action: Action::Trapped,
            response_action: None,
            trap: None,
            local_responses: Vec::new(),
            request_headers: req.headers.clone(),
            forwarded: false,
            headers_passed_on: None,
            body_calls: Vec::new(),
            body_passed_on: Vec::new(),
            trailers_action: None,
            trailers_passed_on: None,
            stalled: None,
            held: false,
            response_headers: None,
            client_headers: None,
            client_body: None,
            logs: Vec::new(),
            calls: Vec::new(),
            violations: Vec::new(),
            fuel: 0,
            fuel_request_headers: 0,
            fuel_request_body: 0,
            properties_set: BTreeMap::new(),
        };
        let _ = self.store.set_fuel(FUEL_BUDGET);
        let http_calls_before = self.store.data().http_calls.len();

        let steps = (|| -> HostResult<()> {
            self.call_void("proxy_on_context_create", (ctx as i32, ROOT_ID as i32))?;
            let n = req.headers.len() as i32;
            let before = self.fuel_left();
            let raw = self.call_i32(
                "proxy_on_request_headers",
                (ctx as i32, n, headers_eos as i32),
            )?;
            out.fuel_request_headers = before - self.fuel_left();
            out.action = Action::from_raw(raw);

            // The request phase: headers, then body chunks, then trailers, until the module
            // answers, stops, or the request is all passed on.
            let mut answered = self.local_count() > 0;
            let mut resumed = self.store.data().continued_request > 0;
            let mut passing = !answered && (out.action == Action::Continue || resumed);
            let mut buffered: Option<Vec<u8>> = None;
            let mut held_trailers: Option<Option<Headers>> = None;
            if !answered && !passing && out.action == Action::Pause && !req.hold.is_empty() {
                // Held: the body and trailers arrive meanwhile (Envoy calls this filter for
                // them; a pause keeps them buffered), then the script runs until the module
                // answers or resumes the request.
                let last = chunks.len();
                for (i, chunk) in std::mem::take(&mut chunks).into_iter().enumerate() {
                    let eos = i + 1 == last && req.trailers.is_none();
                    let mut current = buffered.take().unwrap_or_default();
                    current.extend_from_slice(&chunk);
                    let size = current.len();
                    let (result, action, left, fuel) = self.body_call(ctx, i, current, eos);
                    out.fuel_request_body += fuel;
                    out.body_calls.push(BodyCall {
                        delivered: chunk,
                        size,
                        end_of_stream: eos,
                        action,
                        passed_on: None,
                    });
                    result?;
                    if self.local_count() > 0 {
                        answered = true;
                        break;
                    }
                    if action != Action::Pause {
                        self.store.data_mut().violation(format!(
                            "proxy_on_request_body returned {action:?} while the request is held"
                        ));
                    }
                    buffered = Some(left);
                }
                if let (false, Some(trailers)) = (answered, req.trailers.take()) {
                    {
                        let s = self.store.data_mut();
                        s.phase = Phase::RequestTrailers;
                        s.request_trailers = Some(trailers.clone());
                    }
                    let raw = self.call_i32(
                        "proxy_on_request_trailers",
                        (ctx as i32, trailers.len() as i32),
                    )?;
                    let action = Action::from_raw(raw);
                    out.trailers_action = Some(action);
                    held_trailers = Some(self.store.data_mut().request_trailers.take());
                    answered = self.local_count() > 0;
                    if !answered && action != Action::Pause {
                        self.store.data_mut().violation(format!(
                            "proxy_on_request_trailers returned {action:?} while the request is held"
                        ));
                    }
                }
                self.store.data_mut().phase = Phase::Held;
                for (i, event) in std::mem::take(&mut req.hold).into_iter().enumerate() {
                    if answered || resumed {
                        break;
                    }
                    if let Some(hook) = req.on_held.as_mut() {
                        hook(i);
                    }
                    match event {
                        Hold::Answer(headers, body) => {
                            let token = self.pending_call(http_calls_before).ok_or_else(|| {
                                HostError("no callout of this stream to answer".into())
                            })?;
                            self.answer_call(token, Some((headers, body)))?;
                        }
                        Hold::Fail => {
                            let token = self.pending_call(http_calls_before).ok_or_else(|| {
                                HostError("no callout of this stream to fail".into())
                            })?;
                            self.answer_call(token, None)?;
                        }
                        Hold::Tick(ms) => {
                            let s = self.store.data_mut();
                            s.now_nanos = s.now_nanos.saturating_add(ms.saturating_mul(1_000_000));
                            self.root_tick()?;
                        }
                    }
                    answered = self.local_count() > 0;
                    resumed = self.store.data().continued_request > 0;
                }
                out.held = answered || resumed;
                passing = !answered && resumed;
                if passing {
                    // What was kept while held goes on with the request.
                    if let Some(b) = buffered.take() {
                        out.body_passed_on.push(b);
                    }
                    if let Some(t) = held_trailers.take() {
                        out.trailers_passed_on = t;
                    }
                }
            }
            if passing {
                // Envoy forgets the request map once the filter continues.
                let h = self
                    .store
                    .data_mut()
                    .request_headers
                    .take()
                    .unwrap_or_default();
                out.headers_passed_on = Some(h.clone());
                out.request_headers = h;
            } else if !answered {
                out.stalled = Some(format!(
                    "proxy_on_request_headers returned {:?} with no local reply and never resumed",
                    out.action
                ));
            }
            if passing {
                let last = chunks.len();
                for (i, chunk) in chunks.iter().enumerate() {
                    if let Some(hook) = req.before_chunk.as_mut() {
                        hook(i);
                    }
                    let eos = i + 1 == last && req.trailers.is_none();
                    let mut current = buffered.take().unwrap_or_default();
                    current.extend_from_slice(chunk);
                    let size = current.len();
                    let (result, action, left, fuel) = self.body_call(ctx, i, current, eos);
                    out.fuel_request_body += fuel;
                    let local = self.local_count() > 0;
                    let passed_on = match (local, action) {
                        (false, Action::Continue) => Some(left),
                        (false, Action::Pause) => {
                            // StopIterationAndBuffer: Envoy keeps it and hands it over again,
                            // with the next chunk appended, in the next call.
                            buffered = Some(left);
                            None
                        }
                        _ => None,
                    };
                    if let Some(p) = &passed_on {
                        out.body_passed_on.push(p.clone());
                    }
                    out.body_calls.push(BodyCall {
                        delivered: chunk.clone(),
                        size,
                        end_of_stream: eos,
                        action,
                        passed_on,
                    });
                    result?;
                    if local {
                        answered = true;
                        passing = false;
                        break;
                    }
                    if let Action::Invalid(raw) = action {
                        out.stalled = Some(format!("proxy_on_request_body returned {raw}"));
                        passing = false;
                        break;
                    }
                }
            }
            if passing {
                if let Some(trailers) = req.trailers.clone() {
                    {
                        let s = self.store.data_mut();
                        s.phase = Phase::RequestTrailers;
                        s.request_trailers = Some(trailers.clone());
                    }
                    let raw = self.call_i32(
                        "proxy_on_request_trailers",
                        (ctx as i32, trailers.len() as i32),
                    )?;
                    let action = Action::from_raw(raw);
                    out.trailers_action = Some(action);
                    let left = self.store.data_mut().request_trailers.take();
                    if action == Action::Continue && self.local_count() == 0 {
                        out.trailers_passed_on = left;
                    }
                    if self.local_count() > 0 {
                        answered = true;
                        passing = false;
                    } else if action == Action::Continue {
                        // Continuing at the trailers lets whatever was buffered go on.
                        if let Some(b) = buffered.take() {
                            out.body_passed_on.push(b);
                        }
                    } else {
                        out.stalled = Some(format!(
                            "proxy_on_request_trailers returned {action:?} with no local reply"
                        ));
                        passing = false;
                    }
                }
            }
            if passing && buffered.is_some() {
                out.stalled = Some(
                    "the request body was paused (buffered) at end of stream with no local reply"
                        .into(),
                );
                passing = false;
            }
            out.forwarded = passing;

            let local = self.store.data().local_responses.first().cloned();
            let response = if let (true, Some(local)) = (answered, local) {
                // Envoy sends the local reply after the VM call returns; it goes through the
                // encoder filters, this one included.
                let mut headers = Headers::new();
                headers.add(b":status", local.status.to_string().as_bytes());
                for (n, v) in local.headers.iter() {
                    headers.add(n, v);
                }
                if !local.body.is_empty() {
                    headers.add(b"content-length", local.body.len().to_string().as_bytes());
                    if !headers.contains("content-type") {
                        headers.add(b"content-type", b"text/plain");
                    }
                }
                out.client_body = Some(local.body.clone());
                self.store.data_mut().encoding_local_reply = true;
                Some((headers, local.body.is_empty()))
            } else if passing {
                let upstream = req.upstream_response.clone().unwrap_or_else(|| {
                    let mut h = Headers::new();
                    h.add(b":status", b"200");
                    h.add(b"content-type", b"text/plain");
                    h.add(b"content-length", b"2");
                    h
                });
                Some((upstream, false))
            } else {
                None
            };
            if let Some(h) = self.store.data().request_headers.clone() {
                out.request_headers = h;
            }
            if req.keep_open {
                out.stalled = None;
                return Ok(());
            }
            if let Some((headers, end_of_stream)) = response {
                let locals_before = self.local_count();
                let n = headers.len() as i32;
                {
                    let s = self.store.data_mut();
                    s.phase = Phase::ResponseHeaders;
                    s.response_headers = Some(headers);
                }
                let raw = self.call_i32(
                    "proxy_on_response_headers",
                    (ctx as i32, n, end_of_stream as i32),
                )?;
                out.response_action = Some(Action::from_raw(raw));
                out.response_headers = self.store.data_mut().response_headers.take();
                let direct = self
                    .store
                    .data()
                    .local_responses
                    .get(locals_before)
                    .cloned();
                match direct {
                    // A local reply from the encoder path of an upstream response replaces it
                    // and goes straight to the codec (sendDirectLocalReply): no filter sees it.
                    Some(local) if !answered => {
                        let mut headers = Headers::new();
                        headers.add(b":status", local.status.to_string().as_bytes());
                        for (n, v) in local.headers.iter() {
                            headers.add(n, v);
                        }
                        if !local.body.is_empty() {
                            headers.add(b"content-length", local.body.len().to_string().as_bytes());
                        }
                        out.client_headers = Some(headers);
                        out.client_body = Some(local.body);
                    }
                    _ => out.client_headers = out.response_headers.clone(),
                }
                self.store.data_mut().encoding_local_reply = false;
            }
            // Stream end.
            {
                let s = self.store.data_mut();
                s.request_headers = None;
                s.phase = Phase::Other;
            }
            if self.exports.contains("proxy_on_done") {
                self.call_i32("proxy_on_done", (ctx as i32,))?;
            }
            if self.exports.contains("proxy_on_log") {
                self.call_void("proxy_on_log", (ctx as i32,))?;
            }
            if self.exports.contains("proxy_on_delete") {
                self.call_void("proxy_on_delete", (ctx as i32,))?;
            }
            Ok(())
        })();
        if let Err(e) = steps {
            out.trap = Some(e.0);
            if out.action != Action::Trapped && self.trapped.is_some() {
                // A later callback trapped: the request's outcome is still a trap.
                out.action = Action::Trapped;
            }
        }
        out.fuel = FUEL_BUDGET - self.fuel_left().min(FUEL_BUDGET);
        let s = self.store.data_mut();
        if req.keep_open {
            // The stream stays in flight: its maps and properties stay for its later callbacks.
            s.current_context = ROOT_ID;
            out.logs = s.logs.get(logs_before..).unwrap_or_default().to_vec();
            out.calls = s.calls.get(calls_before..).unwrap_or_default().to_vec();
            out.local_responses = s.local_responses.clone();
            return out;
        }
        s.in_request = false;
        s.current_context = ROOT_ID;
        s.stream_context = 0;
        s.phase = Phase::Other;
        s.properties.clear();
        s.request_headers = None;
        s.request_trailers = None;
        s.request_body = None;
        s.response_headers = None;
        s.encoding_local_reply = false;
        out.local_responses = std::mem::take(&mut s.local_responses);
        out.properties_set = std::mem::take(&mut s.properties_set);
        out.logs = s.logs.get(logs_before..).unwrap_or_default().to_vec();
        out.calls = s.calls.get(calls_before..).unwrap_or_default().to_vec();
        out.violations = s
            .violations
            .get(violations_before..)
            .unwrap_or_default()
            .to_vec();
        out
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if any of `secrets` appears in any of `logs`.
pub fn assert_no_secret_in(logs: &[LogLine], secrets: &[&str]) {
    for line in logs {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !contains(&line.raw, secret.as_bytes()),
                "secret {secret:?} appears in a log line: {:?}",
                line.message
            );
        }
    }
}

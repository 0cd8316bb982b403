//! The native host's primitive effects, for the core's interpreter (`core::perform`): each one
//! call of the binding layer's handles, deciding nothing. [`OnStream`] serves a stream's hooks
//! (header edits, the audit value, the local reply, the key service's callout and waits),
//! [`OnEnd`] a stream's end (a wake of its flight), [`OnConfig`] the configuration's work on the
//! main thread (its outcome, the revocation fetcher), which has no stream to edit or answer.

use std::fmt;

use super::bindings::{log, log_enabled, ConfigHost, HeaderMap, Host, LogLevel};
use super::keyservice::{registry, start_timer, KeyHold, StreamWaker};
use super::process::Process;
use crate::core::callout::{Callout, Wait};
use crate::core::counters::Table;
use crate::core::effects::{self, Effects, Failed, Gauge};
use crate::core::facts::Facts;
use crate::core::plan::{Level, Reply};

/// The filter state key of the audit value: the wasm build's, so that an access log
/// (`%FILTER_STATE(wasm.devgate_decision:PLAIN)%`) reads the same with either build.
const DECISION_KEY: &str = "wasm.devgate_decision";

/// Envoy's log level of a core [`Level`].
fn level_of(level: Level) -> LogLevel {
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

/// Envoy's header map of a plan's map.
fn map_of(map: effects::HeaderMap) -> HeaderMap {
    match map {
        effects::HeaderMap::RequestHeaders => HeaderMap::RequestHeader,
        effects::HeaderMap::RequestTrailers => HeaderMap::RequestTrailer,
    }
}

/// `Ok` when the handle said the call did what it was asked.
fn done(ok: bool) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(Failed)
    }
}

/// A stream hook's effects: its handle, its configuration's counters and key-service gauge, and
/// what the stream holds while its request waits for the key service.
pub(super) struct OnStream<'h> {
    pub(super) host: &'h mut Host,
    pub(super) counters: &'h Table<usize>,
    /// `devgate.key_service.entries`, when the configuration defined it.
    pub(super) entries: Option<usize>,
    /// `devgate.edge.keys_degraded`, when the configuration defined it.
    pub(super) keys_degraded: Option<usize>,
    /// The stream's callout id or waiting scheduler, written by `start_callout` and `wait`.
    pub(super) key: &'h mut KeyHold,
}

impl Effects for OnStream<'_> {
    type Id = usize;

    fn remove_header(&mut self, map: effects::HeaderMap, name: &[u8]) -> Result<(), Failed> {
        done(self.host.remove_header(map_of(map), name))
    }

    fn set_header(
        &mut self,
        map: effects::HeaderMap,
        name: &str,
        value: &[u8],
    ) -> Result<(), Failed> {
        done(self.host.set_header(map_of(map), name.as_bytes(), value))
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Failed> {
        done(
            self.host
                .add_header(HeaderMap::ResponseHeader, name.as_bytes(), value.as_bytes()),
        )
    }

    fn counters(&self) -> &Table<usize> {
        self.counters
    }

    fn increment(&mut self, id: usize) {
        self.host.increment(id);
    }

    /// The key service's cache gauge and the edge keys' (the revocation degraded gauge is the configuration's: [`OnConfig`]).
    fn set_gauge(&mut self, gauge: Gauge, value: u64) {
        let id = match gauge {
            Gauge::KeyServiceEntries => self.entries,
            Gauge::EdgeKeysDegraded => self.keys_degraded,
            Gauge::RevocationDegraded => None,
        };
        if let Some(id) = id {
            self.host.set_gauge(id, value);
        }
    }

    fn set_audit(&mut self, value: &str) -> Result<(), Failed> {
        done(self.host.set_filter_state(DECISION_KEY, value.as_bytes()))
    }

    fn log_enabled(&self, level: Level) -> bool {
        log_enabled(level_of(level))
    }

    fn log(&mut self, level: Level, line: fmt::Arguments<'_>) {
        log(level_of(level), &line.to_string());
    }

    fn send_reply(&mut self, reply: &Reply) -> Result<(), Failed> {
        self.host.send_response(
            reply.status,
            reply.headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            reply.body.as_bytes(),
            &reply.details,
        );
        Ok(())
    }

    /// Starts the stream's callout (no body); its answer comes to the stream's `callout_done`
    /// hook with the id kept here. `Failed`: Envoy did not start it (no such cluster, or it
    /// failed at once), and no answer will come.
    fn start_callout(&mut self, callout: &Callout) -> Result<(), Failed> {
        let headers = callout
            .headers
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_slice()));
        let id = self
            .host
            .http_callout(&callout.cluster, headers, b"", callout.timeout_ms)
            .map_err(|_| Failed)?;
        self.key.callout = Some(id);
        Ok(())
    }

    /// Registers the stream in the process's registry of waiters through a new scheduler of its
    /// own, which the stream keeps while it waits. `Failed`: no scheduler, or the registry is
    /// full or has no timer.
    fn wait(&mut self, wait: &Wait) -> Result<(), Failed> {
        let scheduler = self.host.scheduler().ok_or(Failed)?;
        let waker = StreamWaker::of(&scheduler);
        // Kept before registering: a registration may commit at once (the event runs after this
        // hook returns, on this worker, and finds the scheduler here).
        self.key.waiting = Some(scheduler);
        let registered = registry().register(
            wait.flight,
            wait.until_ms,
            waker,
            self.key.mark,
            Process.now_ms(),
            start_timer,
        );
        if registered.is_err() {
            self.key.waiting = None;
            return Err(Failed);
        }
        Ok(())
    }

    fn wake(&mut self, flight: u64) {
        registry().wake(flight, Process.now_ms());
    }
}

/// A stream's effects when Envoy destroys it (`on_http_filter_destroy` passes no filter to act
/// on): the only plan performed then is the stream's end (`core::stream::Stream::on_destroy`),
/// which may wake its flight's waiters. Anything else is not done: a header edit, an audit value
/// or a reply fails, a counter or a gauge is not counted.
pub(super) struct OnEnd<'h> {
    pub(super) counters: &'h Table<usize>,
}

impl Effects for OnEnd<'_> {
    type Id = usize;

    fn remove_header(&mut self, _map: effects::HeaderMap, _name: &[u8]) -> Result<(), Failed> {
        Err(Failed)
    }

    fn set_header(
        &mut self,
        _map: effects::HeaderMap,
        _name: &str,
        _value: &[u8],
    ) -> Result<(), Failed> {
        Err(Failed)
    }

    fn add_response_header(&mut self, _name: &str, _value: &str) -> Result<(), Failed> {
        Err(Failed)
    }

    fn counters(&self) -> &Table<usize> {
        self.counters
    }

    fn increment(&mut self, _id: usize) {}

    fn set_gauge(&mut self, _gauge: Gauge, _value: u64) {}

    fn set_audit(&mut self, _value: &str) -> Result<(), Failed> {
        Err(Failed)
    }

    fn log_enabled(&self, level: Level) -> bool {
        log_enabled(level_of(level))
    }

    fn log(&mut self, level: Level, line: fmt::Arguments<'_>) {
        log(level_of(level), &line.to_string());
    }

    fn send_reply(&mut self, _reply: &Reply) -> Result<(), Failed> {
        Err(Failed)
    }

    fn start_callout(&mut self, _callout: &Callout) -> Result<(), Failed> {
        Err(Failed)
    }

    fn wait(&mut self, _wait: &Wait) -> Result<(), Failed> {
        Err(Failed)
    }

    fn wake(&mut self, flight: u64) {
        registry().wake(flight, Process.now_ms());
    }
}

/// A configuration hook's effects (main thread): counters, the degraded gauge, log lines. It
/// has no stream: a header edit, an audit value or a reply asked of it fails.
pub(super) struct OnConfig<'h> {
    pub(super) host: &'h ConfigHost,
    pub(super) counters: &'h Table<usize>,
    /// `devgate.revocation.degraded`, when the configuration defined it.
    pub(super) degraded: Option<usize>,
}

impl Effects for OnConfig<'_> {
    type Id = usize;

    fn remove_header(&mut self, _map: effects::HeaderMap, _name: &[u8]) -> Result<(), Failed> {
        Err(Failed)
    }

    fn set_header(
        &mut self,
        _map: effects::HeaderMap,
        _name: &str,
        _value: &[u8],
    ) -> Result<(), Failed> {
        Err(Failed)
    }

    fn add_response_header(&mut self, _name: &str, _value: &str) -> Result<(), Failed> {
        Err(Failed)
    }

    fn counters(&self) -> &Table<usize> {
        self.counters
    }

    fn increment(&mut self, id: usize) {
        self.host.increment(id);
    }

    fn set_gauge(&mut self, gauge: Gauge, value: u64) {
        let id = match gauge {
            Gauge::RevocationDegraded => self.degraded,
            Gauge::KeyServiceEntries | Gauge::EdgeKeysDegraded => None,
        };
        if let Some(id) = id {
            self.host.set_gauge(id, value);
        }
    }

    fn set_audit(&mut self, _value: &str) -> Result<(), Failed> {
        Err(Failed)
    }

    fn log_enabled(&self, level: Level) -> bool {
        log_enabled(level_of(level))
    }

    fn log(&mut self, level: Level, line: fmt::Arguments<'_>) {
        log(level_of(level), &line.to_string());
    }

    fn send_reply(&mut self, _reply: &Reply) -> Result<(), Failed> {
        Err(Failed)
    }

    // The configuration makes no key-service callout (streams do): a callout "cannot start".
    fn start_callout(&mut self, _callout: &Callout) -> Result<(), Failed> {
        Err(Failed)
    }

    fn wait(&mut self, _wait: &Wait) -> Result<(), Failed> {
        Err(Failed)
    }

    fn wake(&mut self, _flight: u64) {}
}

//! The interpreter of the core's plans and reports: the one place that carries them out, for
//! every host, through the host's primitive [`Effects`].
//!
//! A [`Plan`] is performed in one fixed order: header removals, header sets, response headers
//! to add, the counter, the audit value, the log note, and then what comes [`Next`] (the local
//! reply, or "continue"). A header edit or a reply the host could not carry out ends the step in
//! the core's refusal ([`refuse`]): a generic 500, counted, audited and logged in that same
//! order, and never a forwarded request. A [`Report`] (the configuration, a revocation tick or
//! fetch) is its counter, the degraded gauge and its note.
//!
//! Counting goes through the host's [`Table`](crate::core::counters::Table): a counter the host
//! did not define is counted in `devgate.counter_missing` and logged once per table. A note is
//! formatted only when the host would write its level.

use crate::core::counters::Counter;
use crate::core::effects::{Effects, Gauge, HeaderMap};
use crate::core::plan::{Audit, Next, Note, Plan, Report};

/// How a performed step ends for the host: let the request go on, hold it (devgate answered
/// it), or hold it for an outside answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The request (or response) goes on.
    Continue,
    /// devgate answered the request (or refused it): nothing more of it goes on.
    Stop,
    /// The request waits: for its callout's answer (the host then calls
    /// [`crate::core::stream::Stream::on_callout_answer`]) or for a wake
    /// ([`crate::core::stream::Stream::resume`]). Nothing of it goes on meanwhile.
    Wait,
    /// The plan's callout could not start: the host hands the stream
    /// [`crate::core::callout::CalloutAnswer::FAILED`] at once, as for a callout that failed.
    CalloutNotStarted,
}

/// Performs `plan` for the hook whose header map is `map`.
pub fn perform<E: Effects + ?Sized>(plan: Plan<'_>, map: HeaderMap, fx: &mut E) -> Flow {
    match carry_out(&plan, map, fx) {
        Ok(flow) => flow,
        Err(what) => refuse(what, fx),
    }
}

/// Every effect of `plan` in the fixed order; `Err` names the step the host could not complete.
fn carry_out<E: Effects + ?Sized>(
    plan: &Plan<'_>,
    map: HeaderMap,
    fx: &mut E,
) -> Result<Flow, &'static str> {
    for name in &plan.remove {
        fx.remove_header(map, name)
            .map_err(|_| "header_edit_failed")?;
    }
    for (name, value) in &plan.set {
        fx.set_header(map, name, value)
            .map_err(|_| "header_edit_failed")?;
    }
    for (name, value) in &plan.add_response {
        // A response header that cannot be added changes no decision.
        let _ = fx.add_response_header(name, value);
    }
    for also in plan.also.into_iter().chain(plan.edge).flatten() {
        count(also, fx);
    }
    if let Some((gauge, value)) = plan.gauge {
        fx.set_gauge(gauge, value);
    }
    account(plan.counter, plan.audit, plan.note.as_ref(), fx);
    if let Some(flight) = plan.wake {
        fx.wake(flight);
    }
    match &plan.next {
        Next::Continue => Ok(Flow::Continue),
        Next::Reply(reply) => fx
            .send_reply(reply)
            .map(|()| Flow::Stop)
            .map_err(|_| "send_local_response_failed"),
        Next::Callout(callout) => Ok(match fx.start_callout(callout) {
            Ok(()) => Flow::Wait,
            Err(_) => Flow::CalloutNotStarted,
        }),
        Next::Wait(wait) => fx
            .wait(wait)
            .map(|()| Flow::Wait)
            .map_err(|_| "wait_failed"),
    }
}

/// Performs the core's refusal of a step the host could not complete (`what` names it, for the
/// log): [`Plan::refuse`], counted, audited and logged in the order of every plan. Nothing in
/// it fails over to anything else: if even its reply fails, the request still does not go on.
pub fn refuse<E: Effects + ?Sized>(what: &'static str, fx: &mut E) -> Flow {
    let plan = Plan::refuse(what);
    account(plan.counter, plan.audit, plan.note.as_ref(), fx);
    if let Next::Reply(reply) = &plan.next {
        let _ = fx.send_reply(reply);
    }
    Flow::Stop
}

/// Performs a worker-level report: its counter, the degraded gauge, its note.
pub fn perform_report<E: Effects + ?Sized>(report: &Report, fx: &mut E) {
    if let Some(counter) = report.counter {
        count(counter, fx);
    }
    if let Some(degraded) = report.degraded {
        fx.set_gauge(Gauge::RevocationDegraded, u64::from(degraded));
    }
    if let Some(note) = &report.note {
        log(note, fx);
    }
}

/// The counter, the audit value and the note of a step, in that order.
fn account<E: Effects + ?Sized>(
    counter: Option<Counter>,
    audit: Option<Audit>,
    note: Option<&Note>,
    fx: &mut E,
) {
    if let Some(counter) = counter {
        count(counter, fx);
    }
    if let Some(audit) = audit {
        // The audit value is for the access log; a host that cannot set it still answers.
        let _ = fx.set_audit(&audit.value());
    }
    if let Some(note) = note {
        log(note, fx);
    }
}

/// Adds one to `counter`. One the host did not define is never dropped silently: it is counted
/// in `devgate.counter_missing` and logged, once per table.
pub fn count<E: Effects + ?Sized>(counter: Counter, fx: &mut E) {
    if let Some(id) = fx.counters().id(counter) {
        fx.increment(id);
        return;
    }
    if fx.counters().first_missing() {
        log(&Note::CounterMissing(counter), fx);
    }
    if let Some(id) = fx.counters().id(Counter::Missing) {
        fx.increment(id);
    }
}

/// Writes `note` at its level, formatted only when the host would write that level.
pub fn log<E: Effects + ?Sized>(note: &Note, fx: &mut E) {
    let level = note.level();
    if fx.log_enabled(level) {
        fx.log(level, format_args!("{note}"));
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::fmt;

    use super::*;
    use crate::core::counters::{ConfigOutcome, Table};
    use crate::core::effects::Failed;
    use crate::core::plan::{Level, Reply};
    use crate::core::Reason;

    /// One primitive effect, as the recording host saw it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Event {
        Remove(HeaderMap, Vec<u8>),
        Set(HeaderMap, String, Vec<u8>),
        AddResponse(String, String),
        Increment(Counter),
        Gauge(Gauge, u64),
        Audit(String),
        Log(Level, String),
        Reply(u16, String),
    }

    /// A host that records every effect, and fails the calls it is told to fail.
    struct Recorder {
        table: Table<Counter>,
        events: Vec<Event>,
        /// Levels the host writes.
        enabled: Vec<Level>,
        fail_remove: bool,
        fail_set: bool,
        fail_add: bool,
        fail_audit: bool,
        /// Fail this many replies, then send.
        fail_replies: usize,
        /// Lines formatted (a disabled level must format none).
        formatted: usize,
    }

    impl Recorder {
        /// Every counter defined (its id is the counter itself), Info and above written.
        fn new() -> Recorder {
            Recorder::with_table(Table::define(|name| {
                Counter::all().find(|c| c.name() == name)
            }))
        }

        fn with_table(table: Table<Counter>) -> Recorder {
            Recorder {
                table,
                events: Vec::new(),
                enabled: vec![Level::Info, Level::Warn, Level::Error],
                fail_remove: false,
                fail_set: false,
                fail_add: false,
                fail_audit: false,
                fail_replies: 0,
                formatted: 0,
            }
        }

        fn fail(fail: bool) -> Result<(), Failed> {
            if fail {
                Err(Failed)
            } else {
                Ok(())
            }
        }
    }

    impl Effects for Recorder {
        type Id = Counter;

        fn remove_header(&mut self, map: HeaderMap, name: &[u8]) -> Result<(), Failed> {
            self.events.push(Event::Remove(map, name.to_vec()));
            Recorder::fail(self.fail_remove)
        }

        fn set_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), Failed> {
            self.events
                .push(Event::Set(map, name.to_string(), value.to_vec()));
            Recorder::fail(self.fail_set)
        }

        fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Failed> {
            self.events
                .push(Event::AddResponse(name.to_string(), value.to_string()));
            Recorder::fail(self.fail_add)
        }

        fn counters(&self) -> &Table<Counter> {
            &self.table
        }

        fn increment(&mut self, id: Counter) {
            self.events.push(Event::Increment(id));
        }

        fn set_gauge(&mut self, gauge: Gauge, value: u64) {
            self.events.push(Event::Gauge(gauge, value));
        }

        fn set_audit(&mut self, value: &str) -> Result<(), Failed> {
            self.events.push(Event::Audit(value.to_string()));
            Recorder::fail(self.fail_audit)
        }

        fn log_enabled(&self, level: Level) -> bool {
            self.enabled.contains(&level)
        }

        fn log(&mut self, level: Level, line: fmt::Arguments<'_>) {
            self.formatted += 1;
            self.events.push(Event::Log(level, line.to_string()));
        }

        fn start_callout(
            &mut self,
            _callout: &crate::core::callout::Callout,
        ) -> Result<(), Failed> {
            Err(Failed)
        }

        fn wait(&mut self, _wait: &crate::core::callout::Wait) -> Result<(), Failed> {
            Err(Failed)
        }

        fn wake(&mut self, _flight: u64) {}

        fn send_reply(&mut self, reply: &Reply) -> Result<(), Failed> {
            self.events
                .push(Event::Reply(reply.status, reply.details.to_string()));
            if self.fail_replies > 0 {
                self.fail_replies -= 1;
                return Err(Failed);
            }
            Ok(())
        }
    }

    fn deny_reply() -> Reply {
        Reply {
            status: 401,
            headers: vec![("www-authenticate", Cow::Borrowed("Bearer"))],
            body: Cow::Borrowed("no\n"),
            details: Cow::Borrowed("devgate_no_credential"),
        }
    }

    /// A plan with one of everything.
    fn full_plan() -> Plan<'static> {
        Plan {
            remove: vec![Cow::Borrowed(&b"authorization"[..])],
            set: vec![("x-user", b"alice".to_vec())],
            add_response: vec![("set-cookie", Cow::Borrowed("a=b"))],
            counter: Some(Counter::Denied(Reason::NoCredential)),
            audit: Some(Audit::Deny(Reason::NoCredential)),
            note: Some(Note::LoginSucceeded),
            next: Next::Reply(deny_reply()),
            ..Plan::default()
        }
    }

    /// What the core's refusal of `what` does, in order.
    fn refusal(what: &str) -> Vec<Event> {
        vec![
            Event::Increment(Counter::InternalError),
            Event::Audit("deny:internal_error".into()),
            Event::Log(Level::Warn, format!("devgate: request refused: {what}")),
            Event::Reply(500, "devgate_internal".into()),
        ]
    }

    #[test]
    fn a_plan_is_performed_in_the_one_order() {
        let mut fx = Recorder::new();
        let flow = perform(full_plan(), HeaderMap::RequestTrailers, &mut fx);
        assert_eq!(flow, Flow::Stop);
        assert_eq!(
            fx.events,
            vec![
                Event::Remove(HeaderMap::RequestTrailers, b"authorization".to_vec()),
                Event::Set(
                    HeaderMap::RequestTrailers,
                    "x-user".into(),
                    b"alice".to_vec()
                ),
                Event::AddResponse("set-cookie".into(), "a=b".into()),
                Event::Increment(Counter::Denied(Reason::NoCredential)),
                Event::Audit("deny:no_credential".into()),
                Event::Log(Level::Info, "devgate: login succeeded".into()),
                Event::Reply(401, "devgate_no_credential".into()),
            ]
        );
    }

    #[test]
    fn an_empty_plan_continues_and_does_nothing() {
        let mut fx = Recorder::new();
        let flow = perform(Plan::default(), HeaderMap::RequestHeaders, &mut fx);
        assert_eq!(flow, Flow::Continue);
        assert!(fx.events.is_empty());
    }

    #[test]
    fn a_failed_header_edit_ends_in_the_refusal_and_nothing_of_the_plan() {
        for (remove, set) in [(true, false), (false, true)] {
            let mut fx = Recorder::new();
            fx.fail_remove = remove;
            fx.fail_set = set;
            let mut plan = full_plan();
            plan.next = Next::Continue;
            let flow = perform(plan, HeaderMap::RequestHeaders, &mut fx);
            assert_eq!(flow, Flow::Stop, "a broken edit never lets the request on");
            let edits = if remove { 1 } else { 2 };
            assert_eq!(fx.events[edits..], refusal("header_edit_failed")[..]);
        }
    }

    #[test]
    fn a_failed_reply_is_refused_after_the_plan_was_accounted() {
        let mut fx = Recorder::new();
        fx.fail_replies = 1;
        let flow = perform(full_plan(), HeaderMap::RequestHeaders, &mut fx);
        assert_eq!(flow, Flow::Stop);
        assert_eq!(fx.events[7..], refusal("send_local_response_failed")[..]);
        assert_eq!(
            fx.events[6],
            Event::Reply(401, "devgate_no_credential".into())
        );
    }

    #[test]
    fn a_refusal_whose_reply_fails_still_stops_the_request() {
        let mut fx = Recorder::new();
        fx.fail_replies = 2;
        let flow = perform(full_plan(), HeaderMap::RequestHeaders, &mut fx);
        assert_eq!(flow, Flow::Stop);
        let replies = fx
            .events
            .iter()
            .filter(|e| matches!(e, Event::Reply(..)))
            .count();
        assert_eq!(
            replies, 2,
            "the refusal's reply is tried once, never retried"
        );
        let mut fx = Recorder::new();
        fx.fail_replies = 1;
        assert_eq!(refuse("not_configured", &mut fx), Flow::Stop);
        assert_eq!(fx.events, refusal("not_configured"));
    }

    #[test]
    fn a_refusal_counts_then_audits_then_logs_then_replies() {
        let mut fx = Recorder::new();
        assert_eq!(refuse("headers_unavailable", &mut fx), Flow::Stop);
        assert_eq!(fx.events, refusal("headers_unavailable"));
    }

    #[test]
    fn response_header_and_audit_failures_change_no_decision() {
        let mut fx = Recorder::new();
        fx.fail_add = true;
        fx.fail_audit = true;
        let mut plan = full_plan();
        plan.next = Next::Continue;
        assert_eq!(
            perform(plan, HeaderMap::RequestHeaders, &mut fx),
            Flow::Continue
        );
        assert!(!fx
            .events
            .contains(&Event::Increment(Counter::InternalError)));
    }

    #[test]
    fn an_undefined_counter_is_counted_as_missing_and_logged_once() {
        let undefined = Counter::Denied(Reason::NoCredential);
        let table =
            Table::define(|name| Counter::all().find(|c| c.name() == name && *c != undefined));
        let mut fx = Recorder::with_table(table);
        let plan = || Plan {
            counter: Some(undefined),
            ..Plan::default()
        };
        perform(plan(), HeaderMap::RequestHeaders, &mut fx);
        perform(plan(), HeaderMap::RequestHeaders, &mut fx);
        perform_report(
            &Report {
                counter: Some(undefined),
                ..Report::default()
            },
            &mut fx,
        );
        assert_eq!(
            fx.events,
            vec![
                Event::Log(
                    Level::Warn,
                    "devgate: counter devgate.requests.denied.no_credential is not defined".into()
                ),
                Event::Increment(Counter::Missing),
                Event::Increment(Counter::Missing),
                Event::Increment(Counter::Missing),
            ]
        );
        // Without even `counter_missing`: still logged once, nothing else happens.
        let mut fx = Recorder::with_table(Table::empty());
        count(undefined, &mut fx);
        count(Counter::InternalError, &mut fx);
        assert_eq!(fx.events.len(), 1);
        assert!(matches!(fx.events[0], Event::Log(Level::Warn, _)));
    }

    #[test]
    fn notes_are_written_at_their_level_and_formatted_only_when_enabled() {
        let denied = Note::Denied {
            status: 401,
            reason: Reason::NoCredential,
        };
        let plan = || Plan {
            note: Some(denied.clone()),
            ..Plan::default()
        };
        let mut fx = Recorder::new();
        perform(plan(), HeaderMap::RequestHeaders, &mut fx);
        assert_eq!(fx.formatted, 0, "a disabled level is not even formatted");
        assert!(fx.events.is_empty());
        fx.enabled.push(Level::Debug);
        perform(plan(), HeaderMap::RequestHeaders, &mut fx);
        assert_eq!(
            fx.events,
            vec![Event::Log(Level::Debug, denied.to_string())]
        );
    }

    #[test]
    fn a_report_is_its_counter_then_the_gauge_then_its_note() {
        let mut fx = Recorder::new();
        perform_report(
            &Report {
                counter: Some(Counter::Config(ConfigOutcome::Rejected)),
                degraded: Some(true),
                note: Some(Note::ConfigRejected("keys: missing".into())),
            },
            &mut fx,
        );
        perform_report(
            &Report {
                degraded: Some(false),
                ..Report::default()
            },
            &mut fx,
        );
        assert_eq!(
            fx.events,
            vec![
                Event::Increment(Counter::Config(ConfigOutcome::Rejected)),
                Event::Gauge(Gauge::RevocationDegraded, 1),
                Event::Log(
                    Level::Error,
                    "devgate: configuration rejected: keys: missing".into()
                ),
                Event::Gauge(Gauge::RevocationDegraded, 0),
            ]
        );
    }
}

//! What the core tells a host to do: the plan of one step of a stream, and the report of a
//! step of the worker (revocation ticks and fetches).
//!
//! The core's interpreter ([`crate::core::perform`]) carries out a [`Plan`] in one fixed order,
//! the same for every step and host: header removals, header sets, response headers to add, the
//! counter, the audit value, the log note, and then what comes [`Next`] (the local [`Reply`] or
//! "continue"). The host decides nothing on the way: every value its effects need (names,
//! codes, the reply's details string) is in the plan.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use crate::core::apikey::KeyKind;
use crate::core::callout::{Callout, Wait};
use crate::core::codes::{Outcome, Reason, ResponseHeaders, Source};
use crate::core::counters::{self, Counter};
use crate::core::effects::Gauge;

/// A response devgate sends itself, replacing the request (or the upstream's response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// devgate's headers of the reply.
    pub headers: ResponseHeaders,
    /// The reply's body.
    pub body: Cow<'static, str>,
    /// Envoy's response code details (`%RESPONSE_CODE_DETAILS%`): `devgate_<reason>`,
    /// `devgate_login_<outcome>`, `devgate_upstream_challenge`, `devgate_internal`.
    pub details: Cow<'static, str>,
}

/// The audit value of a request (`devgate_decision`): how it was answered, never a credential.
/// The developer's name is the identity header itself, which an access log reads with
/// `%REQ(x-wsgiorg-developer-user)%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audit {
    /// `allow:` and what let it through, an API key's kind followed by `+<source>` when a
    /// developer came with the key.
    Allow(Option<KeyKind>, Option<Source>),
    /// `deny:<reason>`.
    Deny(Reason),
    /// `deny:internal_error`.
    InternalError,
    /// `login:<outcome>`.
    Login(Outcome),
    /// `allow:` as [`Audit::Allow`] for a key the key service resolved and devgate served stale
    /// (the service unavailable), followed by `,served_stale`.
    AllowStale(KeyKind, Option<Source>),
}

impl Audit {
    /// The property's value: generated once per process from the code lists, then borrowed,
    /// so that no answer allocates for it.
    pub fn value(self) -> Cow<'static, str> {
        match self {
            Audit::Allow(key, source) => Cow::Borrowed(counters::allow_value(key, source)),
            Audit::Deny(reason) => {
                static VALUES: OnceLock<Vec<String>> = OnceLock::new();
                by_reason(&VALUES, "deny:", reason)
            }
            Audit::AllowStale(key, source) => {
                static VALUES: OnceLock<Vec<String>> = OnceLock::new();
                let values = VALUES.get_or_init(|| {
                    counters::allow_cases()
                        .map(|(k, s)| {
                            let mut v = counters::allow_decision(k, s);
                            v.push_str(",served_stale");
                            v
                        })
                        .collect()
                });
                let slot = counters::allow_slot(Some(key), source);
                match values.get(slot) {
                    Some(v) => Cow::Borrowed(v.as_str()),
                    None => Cow::Owned(format!(
                        "{},served_stale",
                        counters::allow_decision(Some(key), source)
                    )),
                }
            }
            Audit::InternalError => Cow::Borrowed("deny:internal_error"),
            Audit::Login(outcome) => {
                static VALUES: OnceLock<Vec<String>> = OnceLock::new();
                by_outcome(&VALUES, "login:", outcome)
            }
        }
    }
}

/// The response code details of a refusal: `devgate_<reason>`.
pub fn deny_details(reason: Reason) -> Cow<'static, str> {
    static DETAILS: OnceLock<Vec<String>> = OnceLock::new();
    by_reason(&DETAILS, "devgate_", reason)
}

/// The response code details of an answer under the login mount: `devgate_login_<outcome>`.
pub fn login_details(outcome: Outcome) -> Cow<'static, str> {
    static DETAILS: OnceLock<Vec<String>> = OnceLock::new();
    by_outcome(&DETAILS, "devgate_login_", outcome)
}

/// `prefix` and the reason's code, from `table` (built from [`Reason::all`] at the first use,
/// in [`Reason::slot`] order).
fn by_reason(
    table: &'static OnceLock<Vec<String>>,
    prefix: &str,
    reason: Reason,
) -> Cow<'static, str> {
    let values = table.get_or_init(|| {
        let mut values = vec![String::new(); Reason::COUNT];
        for r in Reason::all() {
            if let Some(v) = values.get_mut(r.slot()) {
                *v = join(prefix, r.code());
            }
        }
        values
    });
    borrowed_or_joined(values.get(reason.slot()), prefix, reason.code())
}

/// `prefix` and the outcome's code, from `table` (built from [`Outcome::ALL`] at the first use).
fn by_outcome(
    table: &'static OnceLock<Vec<String>>,
    prefix: &str,
    outcome: Outcome,
) -> Cow<'static, str> {
    let values = table.get_or_init(|| {
        Outcome::ALL
            .iter()
            .map(|o| join(prefix, o.code()))
            .collect()
    });
    let slot = Outcome::ALL.iter().position(|o| *o == outcome);
    borrowed_or_joined(slot.and_then(|i| values.get(i)), prefix, outcome.code())
}

/// The generated value; built on the spot should a list ever miss one.
fn borrowed_or_joined(
    value: Option<&'static String>,
    prefix: &str,
    code: &str,
) -> Cow<'static, str> {
    match value {
        Some(v) if !v.is_empty() => Cow::Borrowed(v.as_str()),
        _ => Cow::Owned(join(prefix, code)),
    }
}

fn join(prefix: &str, code: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + code.len());
    s.push_str(prefix);
    s.push_str(code);
    s
}

/// How loud a [`Note`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Details for a developer of devgate or an operator chasing one request.
    Debug,
    /// What an operator wants to see once: a configuration accepted, a login.
    Info,
    /// Something is wrong but devgate carries on (a refused request, a failed fetch).
    Warn,
    /// Something devgate cannot carry on with (a configuration refused).
    Error,
}

/// A log line. Formatted by the host only when its level is enabled; never holds a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A request answered locally.
    Denied {
        /// The reply's status.
        status: u16,
        /// Why.
        reason: Reason,
    },
    /// The host could not complete a request (`what` names the step).
    Refused(&'static str),
    /// A login set a session cookie.
    LoginSucceeded,
    /// A login POST reached the upstream before devgate had its body.
    LoginUnbuffered,
    /// A revocation fetch ended without a list (`code` says why).
    FetchFailed(&'static str),
    /// A revocation fetch could not be started.
    FetchNotStarted {
        /// The cluster the fetch was for.
        cluster: String,
    },
    /// A configuration was accepted.
    ConfigAccepted {
        /// How many path rules the policy has.
        rules: usize,
        /// The identity header's name.
        header: String,
    },
    /// A configuration was refused (the message names the field, never a value).
    ConfigRejected(String),
    /// A counter the host did not define was bumped (logged once per counter table; the bump
    /// is counted in `devgate.counter_missing`).
    CounterMissing(Counter),
}

impl Note {
    /// How loud the note is.
    pub fn level(&self) -> Level {
        match self {
            Note::Denied { .. } => Level::Debug,
            Note::LoginSucceeded | Note::ConfigAccepted { .. } => Level::Info,
            Note::Refused(_)
            | Note::LoginUnbuffered
            | Note::FetchFailed(_)
            | Note::FetchNotStarted { .. }
            | Note::CounterMissing(_) => Level::Warn,
            Note::ConfigRejected(_) => Level::Error,
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Denied { status, reason } => {
                write!(f, "devgate: denied {status} ({})", reason.code())
            }
            Note::Refused(what) => write!(f, "devgate: request refused: {what}"),
            Note::LoginSucceeded => f.write_str("devgate: login succeeded"),
            Note::LoginUnbuffered => f.write_str(
                "devgate: a login request reached the upstream; put Envoy's buffer filter after \
                 devgate on the login route (request refused: login_unbuffered)",
            ),
            Note::FetchFailed(code) => write!(
                f,
                "devgate: revocation list fetch failed: {code}; keeping the last good list"
            ),
            Note::FetchNotStarted { cluster } => write!(
                f,
                "devgate: revocation list fetch not started (cluster {cluster})"
            ),
            Note::ConfigAccepted { rules, header } => write!(
                f,
                "devgate: configuration accepted ({rules} path rules, header {header})"
            ),
            Note::ConfigRejected(message) => {
                write!(f, "devgate: configuration rejected: {message}")
            }
            Note::CounterMissing(counter) => {
                write!(f, "devgate: counter {} is not defined", counter.name())
            }
        }
    }
}

/// What to do at one step of a stream. Empty (the default) means "continue, change nothing".
/// `'p` is the policy the step was decided under: header names devgate knows (its own, the
/// policy's) are borrowed, so a plan owns only what the request made (a client's spelling of a
/// header to remove, the values it sets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan<'p> {
    /// Header names to remove (every value), exactly as the host holds them, from the map the
    /// step is about (request headers, or request trailers).
    pub remove: Vec<Cow<'p, [u8]>>,
    /// Headers to set (replacing any value), after the removals.
    pub set: Vec<(&'p str, Vec<u8>)>,
    /// Headers to add to the upstream's response (response step only).
    pub add_response: ResponseHeaders,
    /// The counter to add one to.
    pub counter: Option<Counter>,
    /// The `devgate_decision` property.
    pub audit: Option<Audit>,
    /// The log line of the step.
    pub note: Option<Note>,
    /// Counters counted before `counter`: what the key service's cache or callout did.
    pub also: [Option<Counter>; 2],
    /// Counters of the edge sources' key fetches and assertion cache, counted after `also`.
    pub edge: [Option<Counter>; 2],
    /// A gauge to set (the key service's cache entries).
    pub gauge: Option<(Gauge, u64)>,
    /// Streams waiting on this flight may go on (the key's callout ended or its owner left).
    pub wake: Option<u64>,
    /// What happens once the effects above are carried out: the request goes on, devgate
    /// answers it, or it waits for an outside answer.
    pub next: Next,
}

/// What a stream's step ends in, once its effects are carried out. A step that waits for an
/// outside answer (an HTTP callout, a check on a thread pool) and then resumes is one more
/// variant here, performed by [`crate::core::perform`] through one more primitive effect (see
/// docs/ARCHITECTURE.md, "Steps that wait").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Next {
    /// The request (or the upstream's response) goes on.
    #[default]
    Continue,
    /// devgate answers with this instead of going on.
    Reply(Reply),
    /// Ask the key service: the host starts the callout and holds the request until its answer
    /// ([`crate::core::stream::Stream::on_callout_answer`]).
    Callout(Callout),
    /// Hold the request until another stream's callout for the same key ends (a wake for
    /// [`Wait::flight`]) or [`Wait::until_ms`] passes, then run
    /// [`crate::core::stream::Stream::resume`].
    Wait(Wait),
}

impl Plan<'_> {
    /// The plan for a step the host could not complete (`what` names it, for the log): a
    /// generic 500, counted and audited as `internal_error`. No request passes a broken step.
    /// [`crate::core::perform::refuse`] performs it without further checks: if even the reply
    /// fails, nothing goes on.
    pub fn refuse(what: &'static str) -> Plan<'static> {
        Plan {
            counter: Some(Counter::InternalError),
            audit: Some(Audit::InternalError),
            note: Some(Note::Refused(what)),
            next: Next::Reply(Reply {
                status: 500,
                headers: vec![
                    ("content-type", Cow::Borrowed("text/plain; charset=utf-8")),
                    ("cache-control", Cow::Borrowed("no-store")),
                ],
                body: Cow::Borrowed("Internal Server Error\n"),
                details: Cow::Borrowed("devgate_internal"),
            }),
            ..Plan::default()
        }
    }

    /// Whether the host answers the request itself.
    pub fn replies(&self) -> bool {
        matches!(self.next, Next::Reply(_))
    }

    /// The local reply of this step, if devgate answers the request itself.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.next {
            Next::Reply(reply) => Some(reply),
            Next::Continue | Next::Callout(_) | Next::Wait(_) => None,
        }
    }
}

/// What a worker-level step (a revocation tick or fetch, a configuration) asks of the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The counter to add one to.
    pub counter: Option<Counter>,
    /// Set the `devgate.revocation.degraded` gauge (true: the list is stale).
    pub degraded: Option<bool>,
    /// The log line of the step.
    pub note: Option<Note>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_audit_values_name_key_then_source() {
        assert_eq!(
            Audit::Allow(Some(KeyKind::Public), Some(Source::Session)).value(),
            "allow:public_key+session"
        );
        assert_eq!(Audit::Allow(None, None).value(), "allow:anonymous");
        assert_eq!(
            Audit::Deny(Reason::NoCredential).value(),
            "deny:no_credential"
        );
        assert_eq!(Audit::Login(Outcome::Csrf).value(), "login:csrf");
    }

    #[test]
    fn every_refusal_and_login_answer_has_its_generated_value_and_details() {
        for reason in Reason::all() {
            let code = reason.code();
            let value = Audit::Deny(reason).value();
            assert!(matches!(value, Cow::Borrowed(_)), "{code}");
            assert_eq!(value, format!("deny:{code}"));
            let details = deny_details(reason);
            assert!(matches!(details, Cow::Borrowed(_)), "{code}");
            assert_eq!(details, format!("devgate_{code}"));
        }
        for outcome in Outcome::ALL {
            let code = outcome.code();
            let value = Audit::Login(outcome).value();
            assert!(matches!(value, Cow::Borrowed(_)), "{code}");
            assert_eq!(value, format!("login:{code}"));
            let details = login_details(outcome);
            assert!(matches!(details, Cow::Borrowed(_)), "{code}");
            assert_eq!(details, format!("devgate_login_{code}"));
        }
    }

    #[test]
    fn refusal_is_a_generic_500() {
        let p = Plan::refuse("header_edit_failed");
        let reply = p.reply().unwrap();
        assert_eq!(
            (reply.status, reply.details.as_ref()),
            (500, "devgate_internal")
        );
        assert_eq!(p.counter, Some(Counter::InternalError));
    }
}

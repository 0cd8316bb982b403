//! What the core tells a host to do: the plan of one step of a stream, and the report of a
//! step of the worker (revocation ticks and fetches).
//!
//! A host performs a [`Plan`] in one fixed order, the same for every step: header removals,
//! header sets, response headers to add, the counter, the audit value, the log note, and then
//! either the local [`Reply`] or "continue". It decides nothing on the way: every value it
//! needs (names, codes, the reply's details string) is in the plan.

use std::borrow::Cow;
use std::fmt;

use crate::core::apikey::KeyKind;
use crate::core::counters::{self, Counter};
use crate::core::session::Outcome;
use crate::core::{Reason, Source};

/// A response devgate sends itself, replacing the request (or the upstream's response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
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
}

impl Audit {
    /// The property's value. Static for allowed requests: no allocation on the common path.
    pub fn value(self) -> Cow<'static, str> {
        match self {
            Audit::Allow(key, source) => Cow::Borrowed(counters::allow_value(key, source)),
            Audit::Deny(reason) => Cow::Owned(join("deny:", reason.code())),
            Audit::InternalError => Cow::Borrowed("deny:internal_error"),
            Audit::Login(outcome) => Cow::Owned(join("login:", outcome.code())),
        }
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
    Debug,
    Info,
    Warn,
    Error,
}

/// A log line. Formatted by the host only when its level is enabled; never holds a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A request answered locally.
    Denied { status: u16, reason: Reason },
    /// The host could not complete a request (`what` names the step).
    Refused(&'static str),
    /// A login set a session cookie.
    LoginSucceeded,
    /// A login POST reached the upstream before devgate had its body.
    LoginUnbuffered,
    /// A revocation fetch ended without a list (`code` says why).
    FetchFailed(&'static str),
    /// A revocation fetch could not be started.
    FetchNotStarted { cluster: String },
    /// A configuration was accepted.
    ConfigAccepted { rules: usize, header: String },
    /// A configuration was refused (the message names the field, never a value).
    ConfigRejected(String),
}

impl Note {
    pub fn level(&self) -> Level {
        match self {
            Note::Denied { .. } => Level::Debug,
            Note::LoginSucceeded | Note::ConfigAccepted { .. } => Level::Info,
            Note::Refused(_)
            | Note::LoginUnbuffered
            | Note::FetchFailed(_)
            | Note::FetchNotStarted { .. } => Level::Warn,
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
        }
    }
}

/// What to do at one step of a stream. Empty (the default) means "continue, change nothing".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Header names to remove (every value), exactly as the host holds them, from the map the
    /// step is about (request headers, or request trailers).
    pub remove: Vec<Vec<u8>>,
    /// Headers to set (replacing any value), after the removals.
    pub set: Vec<(String, Vec<u8>)>,
    /// Headers to add to the upstream's response (response step only).
    pub add_response: Vec<(&'static str, String)>,
    pub counter: Option<Counter>,
    /// The `devgate_decision` property.
    pub audit: Option<Audit>,
    pub note: Option<Note>,
    /// Answer with this instead of going on.
    pub reply: Option<Reply>,
}

impl Plan {
    /// The plan for a step the host could not complete (`what` names it, for the log): a
    /// generic 500, counted and audited as `internal_error`. No request passes a broken step.
    /// A host performs it without further checks: if even the reply fails, nothing goes on.
    pub fn refuse(what: &'static str) -> Plan {
        Plan {
            counter: Some(Counter::InternalError),
            audit: Some(Audit::InternalError),
            note: Some(Note::Refused(what)),
            reply: Some(Reply {
                status: 500,
                headers: vec![
                    ("content-type", "text/plain; charset=utf-8".to_string()),
                    ("cache-control", "no-store".to_string()),
                ],
                body: Cow::Borrowed("Internal Server Error\n"),
                details: Cow::Borrowed("devgate_internal"),
            }),
            ..Plan::default()
        }
    }

    /// Whether the host answers the request itself.
    pub fn replies(&self) -> bool {
        self.reply.is_some()
    }
}

/// What a worker-level step (a revocation tick or fetch, a configuration) asks of the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub counter: Option<Counter>,
    /// Set the `devgate.revocation.degraded` gauge (true: the list is stale).
    pub degraded: Option<bool>,
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
    fn refusal_is_a_generic_500() {
        let p = Plan::refuse("header_edit_failed");
        let reply = p.reply.unwrap();
        assert_eq!(
            (reply.status, reply.details.as_ref()),
            (500, "devgate_internal")
        );
        assert_eq!(p.counter, Some(Counter::InternalError));
    }
}

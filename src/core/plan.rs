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
use crate::core::session::{Challenge, Outcome};
use crate::core::{Reason, Source};

/// The reason code of a request the host could not complete (a host call failed).
pub const INTERNAL_ERROR: &str = "internal_error";

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

/// The one counter a step bumps. Named by [`Counter::group`] and [`Counter::code`]: the metric
/// is `devgate.<group><code>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `requests.allowed.<what>`: the API key's kind, else the developer's source, else
    /// `anonymous`. Built with [`Counter::allowed`], which drops the source next to a key.
    Allowed(Option<KeyKind>, Option<Source>),
    /// `requests.denied.<reason>`.
    Denied(Reason),
    /// `requests.denied.internal_error`: the host could not complete the request.
    InternalError,
    /// `login.<outcome>`.
    Login(Outcome),
    /// `upstream_challenge.<forbid|login>`.
    Challenge(Challenge),
    /// `revocation.fetch_ok`.
    FetchOk,
    /// `revocation.fetch_failed`.
    FetchFailed,
    /// `config.accepted`.
    ConfigAccepted,
    /// `config.rejected`.
    ConfigRejected,
}

impl Counter {
    /// The counter of an allowed request: the key's kind wins over the developer's source.
    pub fn allowed(key: Option<KeyKind>, source: Option<Source>) -> Counter {
        Counter::Allowed(key, if key.is_some() { None } else { source })
    }

    /// How many counters [`Counter::all`] lists.
    pub const COUNT: usize = 7 + Reason::COUNT + 1 + Outcome::ALL.len() + Challenge::ALL.len() + 4;

    /// This counter's place in `0..COUNT`: a host keeps its metric ids in a vector indexed by
    /// it, so counting costs no hashing.
    pub fn slot(self) -> usize {
        const LOGIN: usize = 7 + Reason::COUNT + 1;
        const CHALLENGE: usize = LOGIN + Outcome::ALL.len();
        const REST: usize = CHALLENGE + Challenge::ALL.len();
        match self {
            Counter::Allowed(None, None) => 0,
            Counter::Allowed(None, Some(source)) => 1 + source as usize,
            Counter::Allowed(Some(kind), _) => 5 + kind as usize,
            Counter::Denied(reason) => 7 + reason.slot(),
            Counter::InternalError => 7 + Reason::COUNT,
            Counter::Login(outcome) => LOGIN + outcome as usize,
            Counter::Challenge(c) => CHALLENGE + c as usize,
            Counter::FetchOk => REST,
            Counter::FetchFailed => REST + 1,
            Counter::ConfigAccepted => REST + 2,
            Counter::ConfigRejected => REST + 3,
        }
    }

    /// Every counter, each once: a host defines these at configure time.
    pub fn all() -> impl Iterator<Item = Counter> {
        std::iter::once(Counter::Allowed(None, None))
            .chain(
                Source::ALL
                    .into_iter()
                    .map(|s| Counter::Allowed(None, Some(s))),
            )
            .chain(
                KeyKind::ALL
                    .into_iter()
                    .map(|k| Counter::Allowed(Some(k), None)),
            )
            .chain(Reason::all().map(Counter::Denied))
            .chain([Counter::InternalError])
            .chain(Outcome::ALL.into_iter().map(Counter::Login))
            .chain(Challenge::ALL.into_iter().map(Counter::Challenge))
            .chain([
                Counter::FetchOk,
                Counter::FetchFailed,
                Counter::ConfigAccepted,
                Counter::ConfigRejected,
            ])
    }

    /// The metric's name: `devgate.<group><code>`.
    pub fn name(self) -> String {
        let (group, code) = (self.group(), self.code());
        let mut name = String::with_capacity(8 + group.len() + code.len());
        name.push_str("devgate.");
        name.push_str(group);
        name.push_str(code);
        name
    }

    /// The metric's group, with its trailing dot.
    pub fn group(self) -> &'static str {
        match self {
            Counter::Allowed(..) => "requests.allowed.",
            Counter::Denied(_) | Counter::InternalError => "requests.denied.",
            Counter::Login(_) => "login.",
            Counter::Challenge(_) => "upstream_challenge.",
            Counter::FetchOk | Counter::FetchFailed => "revocation.",
            Counter::ConfigAccepted | Counter::ConfigRejected => "config.",
        }
    }

    /// The metric's code within its group.
    pub fn code(self) -> &'static str {
        match self {
            Counter::Allowed(Some(kind), _) => kind.as_str(),
            Counter::Allowed(None, Some(source)) => source.code(),
            Counter::Allowed(None, None) => "anonymous",
            Counter::Denied(reason) => reason.code(),
            Counter::InternalError => INTERNAL_ERROR,
            Counter::Login(outcome) => outcome.code(),
            Counter::Challenge(c) => c.code(),
            Counter::FetchOk => "fetch_ok",
            Counter::FetchFailed => "fetch_failed",
            Counter::ConfigAccepted => "accepted",
            Counter::ConfigRejected => "rejected",
        }
    }
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
            Audit::Allow(key, source) => Cow::Borrowed(allow_value(key, source)),
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

fn allow_value(key: Option<KeyKind>, source: Option<Source>) -> &'static str {
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
    fn allowed_counter_prefers_the_key_kind() {
        let c = Counter::Allowed(Some(KeyKind::Private), Some(Source::Bearer));
        assert_eq!((c.group(), c.code()), ("requests.allowed.", "private_key"));
        let c = Counter::Allowed(None, Some(Source::Bearer));
        assert_eq!(c.code(), "bearer");
    }

    #[test]
    fn every_counter_has_its_own_slot_and_name() {
        let all: Vec<Counter> = Counter::all().collect();
        assert_eq!(all.len(), Counter::COUNT);
        let mut slots: Vec<usize> = all.iter().map(|c| c.slot()).collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..Counter::COUNT).collect::<Vec<_>>());
        let names: std::collections::HashSet<String> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::COUNT, "two counters share a name");
        // Whatever an allowed request carried, its counter is one of them.
        for key in [None, Some(KeyKind::Public), Some(KeyKind::Private)] {
            for source in std::iter::once(None).chain(Source::ALL.map(Some)) {
                let c = Counter::allowed(key, source);
                assert_eq!(all.get(c.slot()).map(|c| c.slot()), Some(c.slot()));
                assert!(all.contains(&c), "{c:?}");
            }
        }
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

//! Every counter devgate keeps and every audit value of an allowed request, generated from the
//! lists that declare the codes ([`Reason::all`], [`Outcome::ALL`], [`Source::ALL`],
//! [`KeyKind::ALL`] and the small enums here), so a code can never lack its counter.
//!
//! Envoy lists the counters under `wasmcustom.devgate.*` (Wasm build) or
//! `dynamicmodulescustom.devgate.*` (native module): `requests.allowed.<what>`,
//! `requests.denied.<reason>` (and `internal_error`), `login.<outcome>`,
//! `upstream_challenge.<forbid|login>`, `revocation.<fetch_ok|fetch_failed>`,
//! `config.<accepted|rejected>`, `key_service.<event>`, and `counter_missing`, which counts bumps of a counter the host
//! did not define (never expected; a host may refuse to define a metric).

use std::sync::atomic::{AtomicBool, Ordering};

use super::apikey::KeyKind;
use super::codes::{Challenge, Outcome, Reason, Source};

/// The reason code of a request the glue itself could not complete.
pub const INTERNAL_ERROR: &str = "internal_error";

/// What let a request through: an API key's kind wins over the developer's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Admission {
    /// A developer, by how they proved who they are.
    Source(Source),
    /// An API key, by its kind.
    Key(KeyKind),
    /// Nobody: an unprotected path without a credential.
    Anonymous,
}

impl Admission {
    /// What admitted a request that came with `key` and `source`: the key wins.
    pub fn of(key: Option<KeyKind>, source: Option<Source>) -> Admission {
        match (key, source) {
            (Some(k), _) => Admission::Key(k),
            (None, Some(s)) => Admission::Source(s),
            (None, None) => Admission::Anonymous,
        }
    }

    /// The stable code (`devgate.requests.allowed.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            Admission::Source(s) => s.code(),
            Admission::Key(k) => k.as_str(),
            Admission::Anonymous => "anonymous",
        }
    }

    fn all() -> impl Iterator<Item = Admission> {
        Source::ALL
            .into_iter()
            .map(Admission::Source)
            .chain(KeyKind::ALL.into_iter().map(Admission::Key))
            .chain([Admission::Anonymous])
    }
}

/// How a revocation list fetch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fetch {
    /// A list was fetched and taken.
    Ok,
    /// A fetch ended without a list.
    Failed,
}

impl Fetch {
    /// Every fetch outcome (counters are generated from this list).
    pub const ALL: [Fetch; 2] = [Fetch::Ok, Fetch::Failed];

    /// The stable code (`devgate.revocation.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            Fetch::Ok => "fetch_ok",
            Fetch::Failed => "fetch_failed",
        }
    }
}

/// What the key service's cache and callouts did for a request (`devgate.key_service.<code>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyEvent {
    /// A fresh cached answer (a resolved key or a rejection) decided the request.
    Hit,
    /// Nothing fresh was cached: the request asked the service or waited for another's callout.
    Miss,
    /// An expired resolved key was served because the service is unavailable (degraded mode).
    StaleServed,
    /// A callout to the key service was started.
    Callout,
    /// A callout ended unavailable (no answer, timeout, 5xx, malformed or badly signed).
    Unavailable,
    /// The callout budget (per second, in flight, waiters) was spent: 503, nothing asked.
    OverBudget,
}

impl KeyEvent {
    /// Every event (counters are generated from this list).
    pub const ALL: [KeyEvent; 6] = [
        KeyEvent::Hit,
        KeyEvent::Miss,
        KeyEvent::StaleServed,
        KeyEvent::Callout,
        KeyEvent::Unavailable,
        KeyEvent::OverBudget,
    ];

    /// The stable code (`devgate.key_service.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            KeyEvent::Hit => "hit",
            KeyEvent::Miss => "miss",
            KeyEvent::StaleServed => "stale_served",
            KeyEvent::Callout => "callout",
            KeyEvent::Unavailable => "unavailable",
            KeyEvent::OverBudget => "over_budget",
        }
    }
}

/// What the edge sources' fetched keys and verified-assertion cache did
/// (`devgate.edge.<code>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeEvent {
    /// A fetch of an issuer's keys (a JWK set, or one PEM) answered a usable set, now stored.
    KeysFetched,
    /// A fetch of an issuer's keys failed (no answer, not 200, unusable): the last good set is
    /// kept.
    KeysFetchFailed,
    /// An assertion was found in the worker's verified-assertion cache (no signature check).
    CacheHit,
    /// An assertion was not in the cache: it was verified.
    CacheMiss,
}

impl EdgeEvent {
    /// Every event (counters are generated from this list).
    pub const ALL: [EdgeEvent; 4] = [
        EdgeEvent::KeysFetched,
        EdgeEvent::KeysFetchFailed,
        EdgeEvent::CacheHit,
        EdgeEvent::CacheMiss,
    ];

    /// The stable code (`devgate.edge.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            EdgeEvent::KeysFetched => "keys_fetched",
            EdgeEvent::KeysFetchFailed => "keys_fetch_failed",
            EdgeEvent::CacheHit => "cache_hit",
            EdgeEvent::CacheMiss => "cache_miss",
        }
    }
}

/// What became of a plugin configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigOutcome {
    /// The configuration was accepted.
    Accepted,
    /// The configuration was refused.
    Rejected,
}

impl ConfigOutcome {
    /// Every configuration outcome (counters are generated from this list).
    pub const ALL: [ConfigOutcome; 2] = [ConfigOutcome::Accepted, ConfigOutcome::Rejected];

    /// The stable code (`devgate.config.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            ConfigOutcome::Accepted => "accepted",
            ConfigOutcome::Rejected => "rejected",
        }
    }
}

/// One counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `requests.allowed.<what>`: a request let through.
    Allowed(Admission),
    /// `requests.denied.<reason>`: a request refused.
    Denied(Reason),
    /// `requests.denied.internal_error`: the glue could not complete a request.
    InternalError,
    /// `login.<outcome>`: a request under the login mount.
    Login(Outcome),
    /// `upstream_challenge.<forbid|login>`: an upstream 401 translated.
    Challenge(Challenge),
    /// `revocation.<fetch_ok|fetch_failed>`: a revocation list fetch.
    Revocation(Fetch),
    /// `config.<accepted|rejected>`: a configuration.
    Config(ConfigOutcome),
    /// `key_service.<event>`: what the key service's cache and callouts did.
    KeyService(KeyEvent),
    /// `edge.<event>`: what the edge sources' key fetches and assertion cache did.
    Edge(EdgeEvent),
    /// A bump of a counter the host did not define.
    Missing,
}

impl Counter {
    /// How many counters [`Counter::all`] lists.
    pub const COUNT: usize = Source::ALL.len()
        + 1
        + KeyKind::ALL.len()
        + Reason::COUNT
        + 1
        + Outcome::ALL.len()
        + Challenge::ALL.len()
        + Fetch::ALL.len()
        + ConfigOutcome::ALL.len()
        + 1
        + KeyEvent::ALL.len()
        + EdgeEvent::ALL.len();

    /// This counter's place in `0..COUNT`: a host keeps its metric ids in a vector indexed by
    /// it, so counting costs no hashing. A unit test checks that the slots of [`Counter::all`]
    /// are exactly `0..COUNT`.
    pub fn slot(self) -> usize {
        const SOURCES: usize = Source::ALL.len();
        const DENIED: usize = SOURCES + 1 + KeyKind::ALL.len();
        const LOGIN: usize = DENIED + Reason::COUNT + 1;
        const CHALLENGE: usize = LOGIN + Outcome::ALL.len();
        const FETCH: usize = CHALLENGE + Challenge::ALL.len();
        const CONFIG: usize = FETCH + Fetch::ALL.len();
        match self {
            Counter::Allowed(Admission::Source(source)) => source as usize,
            Counter::Allowed(Admission::Key(kind)) => SOURCES + kind as usize,
            Counter::Allowed(Admission::Anonymous) => SOURCES + KeyKind::ALL.len(),
            Counter::Denied(reason) => DENIED + reason.slot(),
            Counter::InternalError => DENIED + Reason::COUNT,
            Counter::Login(outcome) => LOGIN + outcome as usize,
            Counter::Challenge(c) => CHALLENGE + c as usize,
            Counter::Revocation(f) => FETCH + f as usize,
            Counter::Config(c) => CONFIG + c as usize,
            Counter::Missing => CONFIG + ConfigOutcome::ALL.len(),
            Counter::KeyService(e) => CONFIG + ConfigOutcome::ALL.len() + 1 + e as usize,
            Counter::Edge(e) => {
                CONFIG + ConfigOutcome::ALL.len() + 1 + KeyEvent::ALL.len() + e as usize
            }
        }
    }

    /// Every counter, each once.
    pub fn all() -> impl Iterator<Item = Counter> {
        Admission::all()
            .map(Counter::Allowed)
            .chain(Reason::all().map(Counter::Denied))
            .chain([Counter::InternalError])
            .chain(Outcome::ALL.into_iter().map(Counter::Login))
            .chain(Challenge::ALL.into_iter().map(Counter::Challenge))
            .chain(Fetch::ALL.into_iter().map(Counter::Revocation))
            .chain(ConfigOutcome::ALL.into_iter().map(Counter::Config))
            .chain([Counter::Missing])
            .chain(KeyEvent::ALL.into_iter().map(Counter::KeyService))
            .chain(EdgeEvent::ALL.into_iter().map(Counter::Edge))
    }

    /// The metric name (`devgate.requests.denied.expired`, ...).
    pub fn name(self) -> String {
        let (group, code) = match self {
            Counter::Allowed(a) => ("requests.allowed.", a.code()),
            Counter::Denied(r) => ("requests.denied.", r.code()),
            Counter::InternalError => ("requests.denied.", INTERNAL_ERROR),
            Counter::Login(o) => ("login.", o.code()),
            Counter::Challenge(c) => ("upstream_challenge.", c.code()),
            Counter::Revocation(f) => ("revocation.", f.code()),
            Counter::Config(c) => ("config.", c.code()),
            Counter::Missing => ("", "counter_missing"),
            Counter::KeyService(e) => ("key_service.", e.code()),
            Counter::Edge(e) => ("edge.", e.code()),
        };
        let mut name = String::with_capacity(8 + group.len() + code.len());
        name.push_str("devgate.");
        name.push_str(group);
        name.push_str(code);
        name
    }
}

/// A host's ids of every counter, at [`Counter::slot`]: defined once (per configuration or
/// VM) from [`Counter::all`], so that counting is a vector index and a host call. Generic over
/// the host's id type; one table serves both hosts.
#[derive(Debug)]
pub struct Table<Id> {
    /// The host's id of each counter, at its slot (`None`: the host did not define it).
    ids: Vec<Option<Id>>,
    /// A bump of an undefined counter was logged: [`Table::first_missing`] says so once.
    missing_logged: AtomicBool,
}

impl<Id: Copy> Table<Id> {
    /// Defines every counter of [`Counter::all`] with `define` (the host's call, given the
    /// metric name; `None`: the host refused it).
    pub fn define(mut define: impl FnMut(&str) -> Option<Id>) -> Table<Id> {
        let mut ids = Vec::with_capacity(Counter::COUNT);
        ids.resize_with(Counter::COUNT, || None);
        for counter in Counter::all() {
            if let Some(slot) = ids.get_mut(counter.slot()) {
                *slot = define(&counter.name());
            }
        }
        Table {
            ids,
            missing_logged: AtomicBool::new(false),
        }
    }

    /// A table with no counter defined (before a host defines them, or a host that counts
    /// nothing).
    pub fn empty() -> Table<Id> {
        Table {
            ids: Vec::new(),
            missing_logged: AtomicBool::new(false),
        }
    }

    /// Whether [`Table::define`] made this table.
    pub fn is_defined(&self) -> bool {
        !self.ids.is_empty()
    }

    /// The host's id of `counter`, if it defined it.
    pub fn id(&self, counter: Counter) -> Option<Id> {
        self.ids.get(counter.slot()).copied().flatten()
    }

    /// `true` the first time it is asked (per table): the one time a missing counter is logged.
    pub fn first_missing(&self) -> bool {
        !self.missing_logged.swap(true, Ordering::Relaxed)
    }
}

impl<Id: Copy> Default for Table<Id> {
    fn default() -> Table<Id> {
        Table::empty()
    }
}

/// `devgate_decision` of an allowed request: `allow:` and what let it through, an API key's kind
/// followed by `+<source>` when a developer came with the key.
pub fn allow_decision(key: Option<KeyKind>, source: Option<Source>) -> String {
    let mut out = String::from("allow:");
    match (key, source) {
        (None, None) => out.push_str("anonymous"),
        (None, Some(s)) => out.push_str(s.code()),
        (Some(k), s) => {
            out.push_str(k.as_str());
            if let Some(s) = s {
                out.push('+');
                out.push_str(s.code());
            }
        }
    }
    out
}

/// [`allow_decision`] for the stream's plan: generated once per process, then borrowed, so an
/// allowed request's audit value costs no allocation.
pub fn allow_value(key: Option<KeyKind>, source: Option<Source>) -> &'static str {
    static VALUES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    VALUES
        .get_or_init(|| allow_cases().map(|(k, s)| allow_decision(k, s)).collect())
        .get(allow_slot(key, source))
        .map_or("allow", String::as_str)
}

/// Every `(key, source)` an allowed request can have, in the order of [`allow_slot`].
pub fn allow_cases() -> impl Iterator<Item = (Option<KeyKind>, Option<Source>)> {
    let keys = [None].into_iter().chain(KeyKind::ALL.map(Some));
    keys.flat_map(|k| {
        [None]
            .into_iter()
            .chain(Source::ALL.map(Some))
            .map(move |s| (k, s))
    })
}

/// The position of `(key, source)` in [`allow_cases`]: a host builds the audit values once, in
/// that order, and looks them up per request without allocating.
pub fn allow_slot(key: Option<KeyKind>, source: Option<Source>) -> usize {
    let pos = |found: Option<usize>| found.map_or(0, |i| i + 1);
    let k = pos(key.and_then(|k| KeyKind::ALL.iter().position(|x| *x == k)));
    let s = pos(source.and_then(|s| Source::ALL.iter().position(|x| *x == s)));
    k * (Source::ALL.len() + 1) + s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::token::TokenError;
    use std::collections::HashSet;

    /// Tripwires: adding a variant to one of these enums stops this test from compiling. Add
    /// the variant to its list (`ALL`, `Reason::all`) as well, or it would have no counter.
    fn listed(c: Counter) -> bool {
        match c {
            Counter::Denied(r) => match r {
                Reason::NoCredential
                | Reason::BadPath
                | Reason::AmbiguousCredential
                | Reason::Token(_)
                | Reason::NetworkDenied
                | Reason::UnboundToken
                | Reason::Revoked
                | Reason::KeyMisplaced
                | Reason::WrongProduct
                | Reason::RefererDenied
                | Reason::WriteNeeded
                | Reason::PrivateKeyRequired
                | Reason::MethodNotAllowed
                | Reason::RevocationStale
                | Reason::KeyRejected
                | Reason::KeyForbidden
                | Reason::OverQuota
                | Reason::OverFreeQuota
                | Reason::KeyServiceUnavailable
                | Reason::KeyServiceBusy
                | Reason::NotAMember
                | Reason::NotAnOwner
                | Reason::NotStaff
                | Reason::OriginDenied
                | Reason::WrongIssuer
                | Reason::WrongAudience
                | Reason::WrongSigner
                | Reason::BadClaim
                | Reason::NotADeveloper
                | Reason::EdgeKeysUnavailable => Reason::all().any(|x| x == r),
            },
            Counter::KeyService(e) => match e {
                KeyEvent::Hit
                | KeyEvent::Miss
                | KeyEvent::StaleServed
                | KeyEvent::Callout
                | KeyEvent::Unavailable
                | KeyEvent::OverBudget => KeyEvent::ALL.contains(&e),
            },
            Counter::Edge(e) => match e {
                EdgeEvent::KeysFetched
                | EdgeEvent::KeysFetchFailed
                | EdgeEvent::CacheHit
                | EdgeEvent::CacheMiss => EdgeEvent::ALL.contains(&e),
            },
            Counter::Login(o) => match o {
                Outcome::Page
                | Outcome::Succeeded
                | Outcome::Failed
                | Outcome::RateLimited
                | Outcome::NetworkDenied
                | Outcome::Csrf
                | Outcome::BadContentType
                | Outcome::TooLarge
                | Outcome::Logout
                | Outcome::NotFound
                | Outcome::MethodNotAllowed
                | Outcome::OverBudget
                | Outcome::Internal => Outcome::ALL.contains(&o),
            },
            Counter::Allowed(a) => match a {
                Admission::Source(
                    Source::Network
                    | Source::Bearer
                    | Source::Cookie
                    | Source::Session
                    | Source::Assertion
                    | Source::ProxyHeader
                    | Source::ClientCert,
                )
                | Admission::Key(KeyKind::Public | KeyKind::Private | KeyKind::User)
                | Admission::Anonymous => Admission::all().any(|x| x == a),
            },
            Counter::InternalError
            | Counter::Challenge(Challenge::Forbid | Challenge::Login)
            | Counter::Revocation(Fetch::Ok | Fetch::Failed)
            | Counter::Config(ConfigOutcome::Accepted | ConfigOutcome::Rejected)
            | Counter::Missing => true,
        }
    }

    #[test]
    fn every_code_a_decision_can_produce_has_its_counter() {
        let all: Vec<Counter> = Counter::all().collect();
        let names: HashSet<String> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len(), "two counters share a name");
        assert!(all.iter().all(|c| listed(*c)));
        let mut expected: Vec<Counter> = Vec::new();
        expected.extend(Reason::all().map(Counter::Denied));
        expected.extend(TokenError::ALL.map(|e| Counter::Denied(Reason::Token(e))));
        expected.push(Counter::InternalError);
        expected.extend(Outcome::ALL.map(Counter::Login));
        expected.extend(Source::ALL.map(|s| Counter::Allowed(Admission::Source(s))));
        expected.extend(KeyKind::ALL.map(|k| Counter::Allowed(Admission::Key(k))));
        expected.push(Counter::Allowed(Admission::Anonymous));
        expected.extend(Challenge::ALL.map(Counter::Challenge));
        expected.extend(Fetch::ALL.map(Counter::Revocation));
        expected.extend(ConfigOutcome::ALL.map(Counter::Config));
        expected.push(Counter::Missing);
        for c in &expected {
            assert!(all.contains(c), "{c:?} has no counter");
        }
        // Every admission a decision can produce, from the decision's own facts.
        for (key, source) in allow_cases() {
            assert!(all.contains(&Counter::Allowed(Admission::of(key, source))));
        }
        // The names the README documents.
        for name in [
            "devgate.requests.allowed.network",
            "devgate.requests.allowed.public_key",
            "devgate.requests.allowed.anonymous",
            "devgate.requests.denied.no_credential",
            "devgate.requests.denied.expired",
            "devgate.requests.denied.internal_error",
            "devgate.login.internal_error",
            "devgate.upstream_challenge.login",
            "devgate.revocation.fetch_failed",
            "devgate.config.rejected",
            "devgate.counter_missing",
        ] {
            assert!(names.contains(name), "{name}");
        }
    }

    #[test]
    fn every_counter_has_its_own_slot() {
        let mut slots: Vec<usize> = Counter::all().map(Counter::slot).collect();
        assert_eq!(slots.len(), Counter::COUNT);
        slots.sort_unstable();
        assert_eq!(slots, (0..Counter::COUNT).collect::<Vec<_>>());
    }

    #[test]
    fn allow_values_are_the_generated_decisions() {
        for (key, source) in allow_cases() {
            assert_eq!(allow_value(key, source), allow_decision(key, source));
        }
    }

    #[test]
    fn allow_decisions_are_generated_in_slot_order() {
        let cases: Vec<_> = allow_cases().collect();
        assert_eq!(
            cases.len(),
            (KeyKind::ALL.len() + 1) * (Source::ALL.len() + 1)
        );
        for (i, (key, source)) in cases.iter().enumerate() {
            assert_eq!(allow_slot(*key, *source), i);
        }
        let values: HashSet<String> = cases.iter().map(|(k, s)| allow_decision(*k, *s)).collect();
        assert_eq!(values.len(), cases.len());
        assert_eq!(allow_decision(None, None), "allow:anonymous");
        assert_eq!(allow_decision(None, Some(Source::Session)), "allow:session");
        assert_eq!(
            allow_decision(Some(KeyKind::Private), Some(Source::Network)),
            "allow:private_key+network"
        );
        assert_eq!(
            allow_decision(Some(KeyKind::Public), None),
            "allow:public_key"
        );
    }

    /// The README's table of counters and audit values, generated from the code lists.
    fn docs_table() -> String {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for counter in Counter::all() {
            let name = counter.name();
            let rest = name.strip_prefix("devgate.").unwrap_or(&name);
            let (group, code) = match rest.rfind('.') {
                Some(i) => (
                    format!("`{}.<code>`", &rest[..i]),
                    rest[i + 1..].to_string(),
                ),
                None => (format!("`{rest}`"), String::new()),
            };
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, codes)) => codes.push(code),
                None => groups.push((group, vec![code])),
            }
        }
        let codes = |codes: &[String]| {
            codes
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // How Envoy 1.40 names them: admin /stats keeps the namespace; /stats/prometheus drops
        // the Wasm extension's (a registered custom namespace) but keeps the dynamic-modules one,
        // with Envoy's `envoy_` prefix (tests/e2e/test_observability.py checks both).
        let example = Counter::Denied(Reason::Token(TokenError::Expired)).name();
        let prom = example.replace('.', "_");
        let mut out = format!(
            "Names: admin `/stats` lists `wasmcustom.{example}` (Wasm build) or \
             `dynamicmodulescustom.{example}` (native module); `/stats/prometheus` exports \
             `{prom}` (Wasm) or `envoy_dynamicmodulescustom_{prom}` (native).\n\n"
        );
        out.push_str(
            "| counter (`wasmcustom.devgate.` in Wasm, `dynamicmodulescustom.devgate.` native) | codes |\n|---|---|\n",
        );
        for (group, list) in &groups {
            out.push_str(&format!("| {group} | {} |\n", codes(list)));
        }
        let gauge = crate::core::revocation::DEGRADED_GAUGE;
        out.push_str(&format!(
            "| gauge `{}` | 1 while the revocation list is stale (past `revocation.max_stale_seconds` without a good fetch, or before the first), else 0 |\n",
            gauge.strip_prefix("devgate.").unwrap_or(gauge)
        ));
        let entries = crate::core::keyservice::ENTRIES_GAUGE;
        out.push_str(&format!(
            "| gauge `{}` | slots of the key service's cache ever filled (resolved keys and rejections; at most `api.service.cache.entries` + `rejections`); the native build defines it only with `api.service` |\n",
            entries.strip_prefix("devgate.").unwrap_or(entries)
        ));
        let keys = crate::core::edge::keys::DEGRADED_GAUGE;
        out.push_str(&format!(
            "| gauge `{}` | 1 while an assertion source whose keys are fetched has none usable (none fetched within its `max_stale_seconds`: its assertions are refused `edge_keys_unavailable`), 0 once a fetch brings every source's back; per process, set by the requests and fetches that notice; the native build defines it only with such a source |\n",
            keys.strip_prefix("devgate.").unwrap_or(keys)
        ));
        let allow: Vec<String> = allow_cases().map(|(k, s)| allow_decision(k, s)).collect();
        out.push_str(&format!(
            "| audit `devgate_decision` | {}, an API key's value followed by `,served_stale` when the key service was unavailable and its expired answer was served, `deny:<reason>` (the `requests.denied` codes), `login:<outcome>` (the `login` codes) |\n",
            codes(&allow)
        ));
        out
    }

    /// The README lists every counter: regenerate with `DEVGATE_DOCS_UPDATE=1 cargo test --lib
    /// readme_counter_table`.
    #[test]
    fn readme_counter_table_is_generated_from_the_code_lists() {
        const BEGIN: &str = "<!-- counters: generated by core::counters tests -->\n";
        const END: &str = "<!-- counters end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
            panic!("README.md has no {BEGIN:?} ... {END:?} block");
        };
        let table = docs_table();
        if std::env::var_os("DEVGATE_DOCS_UPDATE").is_some() {
            let updated = format!("{}{BEGIN}{table}{}", &readme[..b], &readme[e..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert_eq!(
            &readme[b + BEGIN.len()..e],
            table,
            "README.md's counter table is stale: DEVGATE_DOCS_UPDATE=1 cargo test --lib readme_counter_table"
        );
    }
}

//! Plugin configuration: JSON in, an immutable, validated [`Policy`] out.
//!
//! Parsed once per configuration Envoy hands the filter (the Wasm filter's `on_configure`, the
//! native module's `config_new`), by [`load`]. Unknown fields are errors, every error names the field it is
//! about (`network.allow[1]`), and every security-relevant default is the closed one. The same
//! function backs `devgate check-config`, so the CLI and the filter can never disagree.

use std::fmt;

use crate::core::budget::Budget;
use crate::core::cookie::is_valid_cookie_name;
use crate::core::counters::{ConfigOutcome, Counter};
use crate::core::headers::HeaderName;
use crate::core::htpasswd::Users;
use crate::core::net::{Cidr, CidrList, NetPolicy};
use crate::core::path::Prefix;
use crate::core::plan::{Note, Report};
use crate::core::policy::{
    ApiHeaders, ApiPolicy, ApiRoute, LoginPolicy, Policy, RevocationPolicy, Rule, RuleKind,
    TokenPolicy, UpstreamChallenge,
};
use crate::core::revocation::source_keys;
use crate::core::token::{Key, KeyError, KeySet, Secret};

/// Largest plugin configuration accepted (bytes).
pub const MAX_CONFIG_LEN: usize = 256 * 1024;

/// The default identity header: the HTTP form of the spec's `x-wsgiorg.developer_user` key.
pub const DEFAULT_HEADER: &str = "x-wsgiorg-developer-user";

/// A configuration problem. `field` is a JSON path (`protect[2].methods[0]`, or `(root)`);
/// `message` never repeats a configured value, so a secret pasted into the wrong field is not
/// copied into Envoy's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The JSON path of the field (`keys[0].secret_env`), or `(root)`.
    pub field: String,
    /// What is wrong with it, without the configured value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// The message for an integer outside `bounds`: `between 1 and 3600` and the `unit`.
fn between(bounds: &Bounds, unit: &str) -> String {
    format!("between {} and {}{unit}", bounds.min, bounds.max)
}

/// The message for a leeway above [`LEEWAY_SECONDS`].
fn leeway_message() -> String {
    format!("at most {} seconds", LEEWAY_SECONDS.max)
}

/// Largest accepted `tokens.leeway_seconds`.
pub const MAX_LEEWAY: u64 = 300;

/// Longest accepted `login.session_seconds`: 30 days.
pub const MAX_SESSION_SECONDS: u64 = 30 * 24 * 3600;

/// Highest accepted `login.max_cost`: one verify at cost 12 takes about half a second of an
/// Envoy worker (see [`crate::core::htpasswd`]); anything above stalls it for seconds.
pub const MAX_LOGIN_COST: u32 = 12;

mod bounds;
mod edge;
mod keyservice;
mod publickeys;
mod raw;
mod usertokens;

use bounds::{
    Bounds, FAILURE_WINDOW_SECONDS, LEEWAY_SECONDS, MAX_COST, MAX_FAILURES, MAX_STALE_SECONDS,
    REFRESH_SECONDS, SESSION_SECONDS, TIMEOUT_MS, VERIFIES_PER_MINUTE, VERIFY_BURST,
};
use raw::{RawApi, RawConfig, RawKey, RawLogin, RawRevocation, RawRule, RawTokens};

/// An Envoy cluster name or an `:authority` devgate calls: 1-128 characters of `[A-Za-z0-9._:-]`.
fn envoy_name_ok(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

fn revocation_policy(raw: RawRevocation) -> Result<RevocationPolicy, ConfigError> {
    if !envoy_name_ok(&raw.cluster) {
        return Err(err(
            "revocation.cluster",
            "an Envoy cluster name: 1-128 characters of A-Za-z0-9._:-",
        ));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if !envoy_name_ok(&authority) {
        return Err(err(
            "revocation.authority",
            "a host name: 1-128 characters of A-Za-z0-9._:-",
        ));
    }
    let path_ok = raw.path.starts_with('/')
        && raw.path.len() <= 1024
        && raw.path.bytes().all(|b| b.is_ascii_graphic());
    if !path_ok {
        return Err(err(
            "revocation.path",
            "a request path starting with / (visible ASCII)",
        ));
    }
    if !REFRESH_SECONDS.contains(raw.refresh_seconds) {
        return Err(err(
            "revocation.refresh_seconds",
            between(&REFRESH_SECONDS, ""),
        ));
    }
    if !TIMEOUT_MS.contains(raw.timeout_ms) {
        return Err(err("revocation.timeout_ms", between(&TIMEOUT_MS, "")));
    }
    if raw.max_stale_seconds < raw.refresh_seconds
        || !MAX_STALE_SECONDS.contains(raw.max_stale_seconds)
    {
        return Err(err(
            "revocation.max_stale_seconds",
            "at least refresh_seconds and at most 7 days",
        ));
    }
    Ok(RevocationPolicy {
        keys: source_keys(&raw.cluster, &authority, &raw.path),
        cluster: raw.cluster,
        authority,
        path: raw.path,
        refresh_seconds: raw.refresh_seconds,
        timeout_ms: raw.timeout_ms,
        max_stale_seconds: raw.max_stale_seconds,
        when_stale: raw.when_stale,
    })
}

/// serde_json quotes offending string values in its messages (`invalid type: string "..."`).
/// Those values can be secrets in the wrong place, so they are cut out.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if in_quotes && c == '\\' {
            // serde quotes values Debug-style: `\"` inside is part of the value, not its end.
            chars.next();
        } else if c == '"' {
            if !in_quotes {
                out.push_str("\"…\"");
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(c);
        }
    }
    // "unknown variant `<value>`": the value is the operator's, possibly a secret in the wrong
    // place; the expected variants after it are devgate's and stay.
    if let Some(rest) = out.strip_prefix("unknown variant `") {
        // The value may hold backticks itself: cut to serde's own text after it, found from
        // the end (a value cannot contain what follows it).
        let tail = ["`, expected", "`, there are no variants"]
            .iter()
            .filter_map(|t| rest.rfind(t))
            .max()
            .and_then(|i| rest.get(i..))
            .unwrap_or("`");
        out = format!("unknown variant `…{tail}");
    }
    // serde_json appends " at line L column C"; the field path already says where.
    match out.find(" at line ") {
        Some(i) => out.get(..i).unwrap_or(&out).to_string(),
        None => out,
    }
}

fn cidrs(field: &str, items: &[String]) -> Result<CidrList, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Cidr::parse(s.trim()).map_err(|e| err(format!("{field}[{i}]"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(CidrList)
}

fn methods(field: &str, items: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if items.is_empty() {
        return Err(err(
            field,
            "must list at least one method (omit it for all methods)",
        ));
    }
    for (i, m) in items.iter().enumerate() {
        let ok = !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_uppercase());
        if !ok {
            return Err(err(
                format!("{field}[{i}]"),
                "must be an upper-case HTTP method such as GET or POST",
            ));
        }
    }
    Ok(items)
}

/// The JSON Schema (draft 2020-12) of the plugin configuration, generated from the types the
/// parser reads, for editors, `devgate schema` and the generated configuration reference.
/// Structure and integer ranges (from `bounds`, which the parser checks too); the other value
/// checks (CIDRs, prefixes, names, exactly-one-of pairs, one field against another) stay in
/// [`parse_policy`]. Native builds only.
#[cfg(not(target_arch = "wasm32"))]
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    schema.insert("title".into(), "devgate plugin configuration".into());
    schema.to_value()
}

/// A host's configure step: the policy to run with (`None`: refused, so nothing runs on a stale
/// one) and what to count and log about it.
pub fn load(raw: &[u8]) -> (Option<Policy>, Report) {
    match parse_policy(raw) {
        Ok(policy) => {
            let note = Note::ConfigAccepted {
                rules: policy.rules.len(),
                header: policy.header.as_str().to_string(),
            };
            let report = Report {
                counter: Some(Counter::Config(ConfigOutcome::Accepted)),
                degraded: None,
                note: Some(note),
            };
            (Some(policy), report)
        }
        Err(e) => {
            let report = Report {
                counter: Some(Counter::Config(ConfigOutcome::Rejected)),
                degraded: None,
                note: Some(Note::ConfigRejected(e.to_string())),
            };
            (None, report)
        }
    }
}

/// Where the Wasm filter reads `secret_env` and `users_env`, as an error names it.
pub const WASM_VM_ENVIRONMENT: &str = "the Wasm VM (vm_config.environment_variables)";

/// Where the native module reads `secret_env` and `users_env`, as an error names it.
pub const ENVOY_PROCESS_ENVIRONMENT: &str = "Envoy's process environment";

/// The environment [`parse_policy`] reads in this build: the Wasm VM's in devgate.wasm, the
/// process's (Envoy's, in libdevgate.so) in a native build.
pub const HOST_ENVIRONMENT: &str = if cfg!(target_arch = "wasm32") {
    WASM_VM_ENVIRONMENT
} else {
    ENVOY_PROCESS_ENVIRONMENT
};

/// The variables `secret_env` and `users_env` name: how to look one up, and where that is (for
/// the error when one is not set, so an operator knows where to set it).
pub struct Environment<'a> {
    /// The value of a variable, or `None` when it is not set.
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Where the variables come from, completing "is not set in …" ([`HOST_ENVIRONMENT`]).
    pub place: &'a str,
}

impl Environment<'_> {
    /// The value of `var`, or the error for `field` saying where it is not set.
    fn get(&self, field: &str, var: &str) -> Result<String, ConfigError> {
        (self.lookup)(var).ok_or_else(|| {
            err(
                field,
                format!("environment variable {var} is not set in {}", self.place),
            )
        })
    }
}

/// Parses and validates the plugin configuration, reading `secret_env` and `users_env` from
/// this process's environment: inside Envoy, the Wasm VM's `vm_config.environment_variables`
/// for devgate.wasm, Envoy's own environment for libdevgate.so ([`HOST_ENVIRONMENT`]).
pub fn parse_policy(json: &[u8]) -> Result<Policy, ConfigError> {
    parse_policy_with_env(json, &|name| std::env::var(name).ok())
}

/// [`parse_policy`] with an explicit environment, for tests and tools; a missing variable is
/// reported as missing from [`HOST_ENVIRONMENT`].
pub fn parse_policy_with_env(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Policy, ConfigError> {
    parse_policy_in(
        json,
        &Environment {
            lookup: env,
            place: HOST_ENVIRONMENT,
        },
    )
}

/// [`parse_policy`] with an explicit environment that names its own place (`devgate
/// check-config` checks configurations of either host).
pub fn parse_policy_in(json: &[u8], env: &Environment<'_>) -> Result<Policy, ConfigError> {
    if json.len() > MAX_CONFIG_LEN {
        return Err(err("(root)", format!("larger than {MAX_CONFIG_LEN} bytes")));
    }
    let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        json
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return err(
                "(root)",
                format!(
                    "not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                ),
            );
        }
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "(root)".into()
        } else {
            path
        };
        err(field, redact_values(&inner.to_string()))
    })?;
    de.end()
        .map_err(|e| err("(root)", redact_values(&e.to_string())))?;
    validate(raw, env)
}

/// The keys at `field` (`keys`, `api.service.keys`); errors name `<field>[i].secret_env` etc.
fn keyset(field: &str, raw: Vec<RawKey>, env: &Environment<'_>) -> Result<KeySet, ConfigError> {
    let mut keys = Vec::with_capacity(raw.len());
    for (i, k) in raw.into_iter().enumerate() {
        let secret = match (k.secret, k.secret_env) {
            (Some(inline), None) => Secret::from_b64url(inline.trim())
                .map_err(|e| err(format!("{field}[{i}].secret"), e.to_string()))?,
            (None, Some(var)) => {
                let value = env.get(&format!("{field}[{i}].secret_env"), &var)?;
                Secret::from_b64url(value.trim())
                    .map_err(|e| err(format!("{field}[{i}].secret_env"), format!("{var}: {e}")))?
            }
            _ => {
                return Err(err(
                    format!("{field}[{i}]"),
                    "needs exactly one of secret (inline base64url) or secret_env",
                ))
            }
        };
        keys.push(Key { id: k.id, secret });
    }
    KeySet::new(keys).map_err(|e| match e {
        KeyError::BadId { index } | KeyError::DuplicateId { index } => {
            let msg = e.to_string();
            let msg = msg
                .split_once(": ")
                .map_or(msg.as_str(), |(_, m)| m)
                .to_string();
            err(format!("{field}[{index}].id"), msg)
        }
        other => err(field, other.to_string()),
    })
}

fn tokens(raw: RawTokens, keys: KeySet) -> Result<TokenPolicy, ConfigError> {
    if let Some(name) = &raw.cookie {
        if !is_valid_cookie_name(name) {
            return Err(err(
                "tokens.cookie",
                "must be a cookie name (an RFC 6265 token)",
            ));
        }
    }
    if !raw.bearer && raw.cookie.is_none() {
        return Err(err(
            "tokens",
            "bearer is false and cookie is null: no token could ever be presented",
        ));
    }
    if !LEEWAY_SECONDS.contains(raw.leeway_seconds) {
        return Err(err("tokens.leeway_seconds", leeway_message()));
    }
    let allow_from = match &raw.allow_from {
        Some(list) => Some(cidrs("tokens.allow_from", list)?),
        None => None,
    };
    Ok(TokenPolicy {
        keys,
        bearer: raw.bearer,
        cookie: raw.cookie,
        allow_from,
        bind_peer: raw.bind_peer,
        leeway: raw.leeway_seconds,
        strip_credential: raw.strip_credential,
    })
}

fn api_policy(
    raw: RawApi,
    keys: Option<KeySet>,
    env: &Environment<'_>,
    rules: &mut Vec<Rule>,
) -> Result<ApiPolicy, ConfigError> {
    if raw.routes.is_empty() {
        return Err(err("api.routes", "must list at least one route"));
    }
    let service = match raw.service {
        Some(s) => Some(keyservice::key_service(s, env)?),
        None => None,
    };
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let prefix =
            Prefix::parse(&r.prefix).map_err(|m| err(format!("api.routes[{i}].prefix"), m))?;
        let methods = match r.methods {
            Some(ms) => Some(methods(&format!("api.routes[{i}].methods"), ms)?),
            None => None,
        };
        if !crate::core::apikey::is_valid_id(&r.product) {
            return Err(err(
                format!("api.routes[{i}].product"),
                "1-64 characters of [A-Za-z0-9._:-]",
            ));
        }
        rules.push(Rule {
            kind: RuleKind::Api(i),
            prefix,
            methods,
        });
        let user_tokens = match r.user_tokens {
            Some(u) => Some(usertokens::user_route(
                &format!("api.routes[{i}].user_tokens"),
                u,
            )?),
            None => None,
        };
        routes.push(ApiRoute {
            product: r.product,
            mode: r.mode,
            user_tokens,
        });
    }
    for (i, id) in raw.revoked.iter().enumerate() {
        if !crate::core::apikey::is_valid_id(id) {
            return Err(err(format!("api.revoked[{i}]"), "not a key id"));
        }
    }
    let h = raw.headers;
    let name = |field: &str, v: Option<String>, default: &str| {
        HeaderName::parse(v.as_deref().unwrap_or(default))
            .map_err(|m| err(format!("api.headers.{field}"), m))
    };
    let headers = ApiHeaders {
        organization: name("organization", h.organization, "x-devgate-organization")?,
        project: name("project", h.project, "x-devgate-project")?,
        kind: name("kind", h.kind, "x-devgate-key-kind")?,
        key_id: name("key_id", h.key_id, "x-devgate-key-id")?,
        count: name("count", h.count, "x-devgate-count")?,
        stale: name("stale", h.stale, "x-devgate-served-stale")?,
        source: name("source", h.source, "x-devgate-source")?,
        user: name("user", h.user, "x-devgate-user")?,
    };
    if !LEEWAY_SECONDS.contains(raw.leeway_seconds) {
        return Err(err("api.leeway_seconds", leeway_message()));
    }
    let user_tokens = if routes.iter().any(|r| r.user_tokens.is_some()) {
        Some(usertokens::user_tokens(
            raw.user_tokens,
            service.as_ref(),
            env,
        )?)
    } else if raw.user_tokens.is_some() {
        return Err(err(
            "api.user_tokens",
            "no route takes user tokens (add user_tokens to a route)",
        ));
    } else {
        None
    };
    Ok(ApiPolicy {
        keys,
        service,
        routes,
        revoked: raw.revoked,
        headers,
        strip_key: raw.strip_key,
        internal_from: cidrs("api.internal_from", &raw.internal_from)?,
        leeway: raw.leeway_seconds,
        key_header: HeaderName::parse("x-api-key").map_err(|m| err("api", m))?,
        user_tokens,
    })
}

/// A login mount: `/seg[/seg...]`, segments of `A-Za-z0-9._~-`, none of them `.` or `..`.
fn valid_mount(mount: &str) -> bool {
    let Some(rest) = mount.strip_prefix('/') else {
        return false;
    };
    mount.len() <= 128
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        })
}

fn login_policy(
    raw: RawLogin,
    keys: KeySet,
    token_cookie: Option<&str>,
    env: &Environment<'_>,
) -> Result<LoginPolicy, ConfigError> {
    if !valid_mount(&raw.mount) {
        return Err(err(
            "login.mount",
            "must be a path like /.devgate: segments of A-Za-z0-9._~- , no trailing /",
        ));
    }
    if !is_valid_cookie_name(&raw.cookie) {
        return Err(err(
            "login.cookie",
            "must be a cookie name (an RFC 6265 token)",
        ));
    }
    let prefixed = raw.cookie.starts_with("__Secure-") || raw.cookie.starts_with("__Host-");
    if prefixed && !raw.secure_cookie {
        return Err(err(
            "login.cookie",
            "a __Secure- or __Host- cookie needs secure_cookie: true (browsers drop it otherwise)",
        ));
    }
    if token_cookie == Some(raw.cookie.as_str()) {
        return Err(err(
            "login.cookie",
            "must differ from tokens.cookie (session and developer tokens have different purposes)",
        ));
    }
    if !SESSION_SECONDS.contains(raw.session_seconds) {
        return Err(err(
            "login.session_seconds",
            between(&SESSION_SECONDS, " seconds"),
        ));
    }
    if !MAX_COST.contains(u64::from(raw.max_cost)) {
        return Err(err(
            "login.max_cost",
            between(
                &MAX_COST,
                " (each bcrypt step doubles the time a login holds an Envoy worker)",
            ),
        ));
    }
    if !MAX_FAILURES.contains(u64::from(raw.max_failures)) {
        return Err(err("login.max_failures", between(&MAX_FAILURES, "")));
    }
    if !FAILURE_WINDOW_SECONDS.contains(raw.failure_window_seconds) {
        return Err(err(
            "login.failure_window_seconds",
            between(&FAILURE_WINDOW_SECONDS, " seconds"),
        ));
    }
    // There is no "off": 0 would refuse every login, and no budget would let a flood from
    // many addresses hold the workers (to turn the form off, remove `login`).
    if !VERIFIES_PER_MINUTE.contains(u64::from(raw.verifies_per_minute)) {
        return Err(err(
            "login.verifies_per_minute",
            between(
                &VERIFIES_PER_MINUTE,
                " (0 would refuse every login; to turn the form off, remove login)",
            ),
        ));
    }
    if !VERIFY_BURST.contains(u64::from(raw.verify_burst)) {
        return Err(err("login.verify_burst", between(&VERIFY_BURST, "")));
    }
    if !LEEWAY_SECONDS.contains(raw.leeway_seconds) {
        return Err(err("login.leeway_seconds", leeway_message()));
    }
    let (field, content) = match (raw.users, raw.users_env) {
        (Some(inline), None) => ("login.users", inline),
        (None, Some(var)) => {
            let value = env.get("login.users_env", &var)?;
            ("login.users_env", value)
        }
        _ => {
            return Err(err(
                "login",
                "needs exactly one of users (htpasswd lines) or users_env",
            ))
        }
    };
    // The error names a line and a problem, never a hash.
    let users = Users::parse(&content, raw.max_cost).map_err(|e| err(field, e.to_string()))?;
    let allow_from = match &raw.allow_from {
        Some(list) => Some(cidrs("login.allow_from", list)?),
        None => None,
    };
    Ok(LoginPolicy {
        mount: raw.mount,
        users,
        keys,
        cookie: raw.cookie,
        session_seconds: raw.session_seconds,
        allow_from,
        secure_cookie: raw.secure_cookie,
        max_failures: raw.max_failures,
        failure_window: raw.failure_window_seconds,
        verify_budget: Budget::per_minute(raw.verifies_per_minute, raw.verify_burst),
        bind_peer: raw.bind_peer,
        leeway: raw.leeway_seconds,
    })
}

fn validate(raw: RawConfig, env: &Environment<'_>) -> Result<Policy, ConfigError> {
    let header = HeaderName::parse(raw.header.as_deref().unwrap_or(DEFAULT_HEADER))
        .map_err(|m| err("header", m))?;

    let allow = match &raw.network.allow {
        Some(list) => cidrs("network.allow", list)?,
        None => CidrList::loopback(),
    };
    let deny = cidrs("network.deny", &raw.network.deny)?;
    let net = NetPolicy {
        allow,
        deny,
        trust_forwarded: raw.network.trust_forwarded,
    };

    let mut rules = Vec::new();
    let protect = raw
        .protect
        .unwrap_or_else(|| vec![RawRule::Prefix("/".into())]);
    for (i, r) in protect.into_iter().enumerate() {
        let (prefix, ms, pfield) = match r {
            RawRule::Prefix(p) => (p, None, format!("protect[{i}]")),
            RawRule::Rule(o) => (o.prefix, o.methods, format!("protect[{i}].prefix")),
        };
        let prefix = Prefix::parse(&prefix).map_err(|m| err(pfield, m))?;
        let methods = match ms {
            Some(ms) => Some(methods(&format!("protect[{i}].methods"), ms)?),
            None => None,
        };
        rules.push(Rule {
            kind: RuleKind::Protect,
            prefix,
            methods,
        });
    }
    for (i, p) in raw.public.iter().enumerate() {
        let prefix = Prefix::parse(p).map_err(|m| err(format!("public[{i}]"), m))?;
        rules.push(Rule {
            kind: RuleKind::Public,
            prefix,
            methods: None,
        });
    }
    let keys = if raw.keys.is_empty() {
        None
    } else {
        Some(keyset("keys", raw.keys, env)?)
    };
    let needs_keys = |field: &str| {
        keys.clone().ok_or_else(|| {
            err(
                "keys",
                format!("{field} is enabled, so at least one key is required"),
            )
        })
    };
    let tokens = match raw.tokens {
        Some(t) => Some(tokens(t, needs_keys("tokens")?)?),
        None => None,
    };
    let api = match raw.api {
        // devgate's own API keys need `keys`; with a key service they are optional.
        Some(a) if a.service.is_none() && keys.is_none() => {
            return Err(err(
                "keys",
                "api is enabled without api.service, so at least one key is required",
            ));
        }
        Some(a) => Some(api_policy(a, keys.clone(), env, &mut rules)?),
        None => None,
    };
    let login = match raw.login {
        Some(l) => {
            let token_cookie = tokens.as_ref().and_then(|t| t.cookie.as_deref());
            Some(login_policy(l, needs_keys("login")?, token_cookie, env)?)
        }
        None => None,
    };
    let revocation = match raw.revocation {
        Some(r) if tokens.is_none() && api.is_none() => {
            let _ = r;
            return Err(err(
                "revocation",
                "revokes developer tokens and API keys, and neither tokens nor api is configured",
            ));
        }
        Some(r) => Some(revocation_policy(r)?),
        None => None,
    };
    let edge = match raw.edge {
        Some(e) => {
            let mut reserved = vec![&header];
            if let Some(a) = &api {
                reserved.extend(a.headers.all());
            }
            Some(edge::edge_policy(e, &reserved)?)
        }
        None => None,
    };
    if raw.upstream_challenge == UpstreamChallenge::Login && login.is_none() {
        return Err(err(
            "upstream_challenge",
            "`login` sends clients to the login form, which is not configured (add `login`)",
        ));
    }
    let mut names = vec![&header];
    if let Some(a) = &api {
        names.extend(a.headers.all());
    }
    for (i, n) in names.iter().enumerate() {
        if names.iter().skip(i + 1).any(|m| m == n) {
            return Err(err("api.headers", format!("{} is used twice", n.as_str())));
        }
    }

    // Most specific first; on equal specificity the more closed kind first (fail closed).
    rules.sort_by(|a, b| {
        b.prefix
            .specificity()
            .cmp(&a.prefix.specificity())
            .then_with(|| a.kind.rank().cmp(&b.kind.rank()))
    });

    Ok(Policy {
        header,
        net,
        rules,
        unauthenticated: raw.unauthenticated,
        tokens,
        api,
        login,
        upstream_challenge: raw.upstream_challenge,
        revocation,
        edge,
    })
}

#[cfg(test)]
mod tests;

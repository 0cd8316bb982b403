//! Plugin configuration: JSON in, an immutable, validated [`Policy`] out.
//!
//! Parsed once, in `on_configure`. Unknown fields are errors, every error names the field it is
//! about (`network.allow[1]`), and every security-relevant default is the closed one. The same
//! function backs `devgate check-config`, so the CLI and the filter can never disagree.

use std::fmt;

use serde::Deserialize;

use crate::core::budget::Budget;
use crate::core::cookie::is_valid_cookie_name;
use crate::core::counters::{ConfigOutcome, Counter};
use crate::core::headers::HeaderName;
use crate::core::htpasswd::{Users, DEFAULT_MAX_COST, MIN_COST};
use crate::core::net::{Cidr, CidrList, NetPolicy};
use crate::core::path::Prefix;
use crate::core::plan::{Note, Report};
use crate::core::policy::{
    ApiHeaders, ApiPolicy, ApiRoute, LoginPolicy, Mode, Policy, RevocationPolicy, Rule, RuleKind,
    TokenPolicy, Unauthenticated, UpstreamChallenge, WhenStale,
};
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
    pub field: String,
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

/// Largest accepted `tokens.leeway_seconds`.
pub const MAX_LEEWAY: u64 = 300;

/// Longest accepted `login.session_seconds`: 30 days.
pub const MAX_SESSION_SECONDS: u64 = 30 * 24 * 3600;

/// Highest accepted `login.max_cost`: one verify at cost 12 takes about half a second of an
/// Envoy worker (see [`crate::core::htpasswd`]); anything above stalls it for seconds.
pub const MAX_LOGIN_COST: u32 = 12;

// ---- raw, as written ---------------------------------------------------------------------

/// The devgate plugin configuration (Envoy: `configuration` as a `google.protobuf.StringValue`;
/// Istio: `spec.pluginConfig`). Unknown fields are errors; absent fields take the closed default.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The identity header the upstream receives; every client-sent copy is removed.
    /// Default `x-wsgiorg-developer-user`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-wsgiorg-developer-user")))]
    header: Option<String>,
    /// Who is a developer by socket address.
    #[serde(default)]
    network: RawNetwork,
    /// Path prefixes only developers may reach: a prefix string, or `{prefix, methods}` for some
    /// methods only. Default `["/"]` (everything); `[]` protects nothing.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = ["/"])))]
    protect: Option<Vec<RawRule>>,
    /// Path prefixes never challenged (health checks), even under a protected prefix. Default `[]`.
    #[serde(default)]
    public: Vec<String>,
    /// What a protected path answers a non-developer. Default `challenge`.
    #[serde(default)]
    unauthenticated: Unauthenticated,
    /// Signing keys for tokens, sessions and API keys: the first signs, every one verifies.
    /// Default `[]`.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    keys: Vec<RawKey>,
    /// Signed developer tokens; needs `keys`. Absent: no tokens accepted.
    tokens: Option<RawTokens>,
    /// API keys and API routes; needs `keys`. Absent: no API keys, no API routes.
    api: Option<RawApi>,
    /// The hidden login form and its session cookie; needs `keys`. Absent: no form.
    login: Option<RawLogin>,
    /// What an upstream 401 with devgate's challenge becomes. Default `forbid`.
    #[serde(default)]
    upstream_challenge: UpstreamChallenge,
    /// A revocation list service (an Envoy cluster). Absent: only `api.revoked`.
    revocation: Option<RawRevocation>,
}

/// The revocation list service devgate fetches through an Envoy cluster.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Revocation"))]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    /// The Envoy cluster devgate calls; it must exist in Envoy's config. Required.
    cluster: String,
    /// `:authority` of the call. Default: the cluster name.
    authority: Option<String>,
    /// `:path` of the call. Default `/revoked.json`.
    #[serde(default = "default_revocation_path")]
    path: String,
    /// Seconds between fetches (one per Envoy process), 1 to 3600. Default 30.
    #[serde(default = "default_refresh_seconds")]
    refresh_seconds: u64,
    /// Timeout of one fetch in milliseconds, 100 to 60000. Default 2000.
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    /// How long the last good list stays in force without a good fetch, from `refresh_seconds`
    /// to 7 days. Default 300.
    #[serde(default = "default_max_stale_seconds")]
    max_stale_seconds: u64,
    /// Past `max_stale_seconds`: refuse tokens and API keys, or serve the last good list.
    /// Default `refuse`.
    #[serde(default)]
    when_stale: WhenStale,
}

fn default_revocation_path() -> String {
    "/revoked.json".into()
}

fn default_refresh_seconds() -> u64 {
    30
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_max_stale_seconds() -> u64 {
    300
}

fn revocation_policy(raw: RawRevocation) -> Result<RevocationPolicy, ConfigError> {
    let name_ok = |v: &str| {
        (1..=128).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    };
    if !name_ok(&raw.cluster) {
        return Err(err(
            "revocation.cluster",
            "an Envoy cluster name: 1-128 characters of A-Za-z0-9._:-",
        ));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if !name_ok(&authority) {
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
    if !(1..=3600).contains(&raw.refresh_seconds) {
        return Err(err("revocation.refresh_seconds", "between 1 and 3600"));
    }
    if !(100..=60_000).contains(&raw.timeout_ms) {
        return Err(err("revocation.timeout_ms", "between 100 and 60000"));
    }
    if raw.max_stale_seconds < raw.refresh_seconds || raw.max_stale_seconds > 7 * 86_400 {
        return Err(err(
            "revocation.max_stale_seconds",
            "at least refresh_seconds and at most 7 days",
        ));
    }
    Ok(RevocationPolicy {
        cluster: raw.cluster,
        authority,
        path: raw.path,
        refresh_seconds: raw.refresh_seconds,
        timeout_ms: raw.timeout_ms,
        max_stale_seconds: raw.max_stale_seconds,
        when_stale: raw.when_stale,
    })
}

/// The hidden login form (`<mount>/login`, `<mount>/logout`) and its signed session cookie.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Login"))]
#[serde(deny_unknown_fields)]
struct RawLogin {
    /// Where the form lives; devgate answers every path under it. Default `/.devgate`, no
    /// trailing `/`.
    #[serde(default = "default_mount")]
    mount: String,
    /// Sensitive: htpasswd lines (bcrypt only), inline. Exactly one of `users` and `users_env`.
    users: Option<String>,
    /// The Wasm VM environment variable holding the htpasswd lines. Exactly one of `users` and
    /// `users_env`.
    users_env: Option<String>,
    /// The session cookie's name; must differ from `tokens.cookie`. Default `devgate_session`.
    #[serde(default = "default_session_cookie")]
    cookie: String,
    /// Session lifetime in seconds, 60 to 30 days. Default 28800 (8 h).
    #[serde(default = "default_session_seconds")]
    session_seconds: u64,
    /// CIDRs the form and session cookies work from (elsewhere 403). Absent: any socket peer.
    allow_from: Option<Vec<String>>,
    /// Mark the cookie `Secure` even on plain-HTTP listeners. Default false.
    #[serde(default)]
    secure_cookie: bool,
    /// Highest bcrypt cost accepted in the users, 4 to 12. Default 10.
    #[serde(default = "default_max_cost")]
    max_cost: u32,
    /// Failed logins per peer before the form answers 429, 1 to 1000. Default 5.
    #[serde(default = "default_max_failures")]
    max_failures: u32,
    /// The window failures are counted in, 1 to 86400 seconds. Default 300.
    #[serde(default = "default_failure_window")]
    failure_window_seconds: u64,
    /// Password verifies the form may run per minute, shared by all workers of the Envoy
    /// process, whatever the number of addresses; beyond it the form answers 429 without
    /// bcrypt. 1 to 60000. Default 120 (2 a second: at bcrypt cost 10 about a fifth of one
    /// worker).
    #[serde(default = "default_verifies_per_minute")]
    verifies_per_minute: u32,
    /// Verifies allowed back to back when the budget is full, 1 to 1000. Default 3 (a worker
    /// stalls at most that many verifies in a row: ~0.27 s at cost 10).
    #[serde(default = "default_verify_burst")]
    verify_burst: u32,
    /// Bind each session to the address it logged in from (`cip`). Default false.
    #[serde(default)]
    bind_peer: bool,
    /// Clock skew tolerated on the session token, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
}

fn default_mount() -> String {
    "/.devgate".into()
}

fn default_session_cookie() -> String {
    "devgate_session".into()
}

fn default_session_seconds() -> u64 {
    8 * 3600
}

fn default_max_cost() -> u32 {
    DEFAULT_MAX_COST
}

fn default_max_failures() -> u32 {
    5
}

fn default_failure_window() -> u64 {
    300
}

fn default_verifies_per_minute() -> u32 {
    120
}

fn default_verify_burst() -> u32 {
    3
}

/// API keys: routes, revoked key ids and the headers devgate sets for the application.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Api"))]
#[serde(deny_unknown_fields)]
struct RawApi {
    /// The API routes, at least one. Required.
    routes: Vec<RawApiRoute>,
    /// API key ids answered with 401 `revoked`. Default `[]`.
    #[serde(default)]
    revoked: Vec<String>,
    /// Header names devgate sets for the application on API routes.
    #[serde(default)]
    headers: RawApiHeaders,
    /// Remove the key from the query string and `X-Api-Key` before the upstream. Default true.
    #[serde(default = "default_true")]
    strip_key: bool,
    /// CIDRs whose API traffic is marked `count: false` (internal). Default `[]`.
    #[serde(default)]
    internal_from: Vec<String>,
    /// Clock skew tolerated on API key expiry, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
}

/// An API route: a path prefix, the product it belongs to and its mode.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ApiRoute"))]
#[serde(deny_unknown_fields)]
struct RawApiRoute {
    /// The path prefix. Required.
    prefix: String,
    /// Upper-case HTTP methods the route applies to (at least one). Absent: every method.
    methods: Option<Vec<String>>,
    /// The product a key must carry for this route. Required.
    product: String,
    /// What keys may do on this route. Default `read_write`.
    #[serde(default)]
    mode: Mode,
}

/// Header names devgate sets for the application on API routes (client copies are stripped).
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ApiHeaders"))]
#[serde(deny_unknown_fields)]
struct RawApiHeaders {
    /// The key's organization. Default `x-devgate-organization`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-organization")))]
    organization: Option<String>,
    /// The key's project. Default `x-devgate-project`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-project")))]
    project: Option<String>,
    /// The key's kind (public or private). Default `x-devgate-key-kind`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-key-kind")))]
    kind: Option<String>,
    /// The key's id. Default `x-devgate-key-id`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-key-id")))]
    key_id: Option<String>,
    /// `true`, or `false` for `internal_from` traffic. Default `x-devgate-count`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-count")))]
    count: Option<String>,
}

/// A signing key: an id and exactly one of `secret` or `secret_env`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Key"))]
#[serde(deny_unknown_fields)]
struct RawKey {
    /// The key id tokens and API keys name (`kid`), 1-64 of `[A-Za-z0-9._-]`. Required.
    id: String,
    /// Secret: the key inline, base64url, at least 32 bytes. Prefer `secret_env`.
    secret: Option<String>,
    /// The Wasm VM environment variable holding the base64url secret (Envoy
    /// `vm_config.environment_variables`), so the config carries no secret.
    secret_env: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_cookie() -> Option<String> {
    Some("devgate_token".into())
}

fn default_leeway() -> u64 {
    30
}

/// Signed developer tokens (HS256), presented as a Bearer header or a cookie.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Tokens"))]
#[serde(deny_unknown_fields)]
struct RawTokens {
    /// Accept `Authorization: Bearer <token>`. Default true.
    #[serde(default = "default_true")]
    bearer: bool,
    /// Accept the token in this cookie; `null` turns cookies off. Default `devgate_token`.
    #[serde(default = "default_cookie")]
    cookie: Option<String>,
    /// CIDRs a token is honoured from (socket peers). Absent: any peer.
    allow_from: Option<Vec<String>>,
    /// Require tokens bound to the peer IP (`cip` claim). Default false.
    #[serde(default)]
    bind_peer: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
    /// Remove devgate's credential before the upstream. Default true.
    #[serde(default = "default_true")]
    strip_credential: bool,
}

/// Who is a developer by socket address.
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Network"))]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    /// IPs and CIDRs whose socket peers are developers. Default `["127.0.0.0/8", "::1"]`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = ["127.0.0.0/8", "::1"])))]
    allow: Option<Vec<String>>,
    /// IPs and CIDRs that are never developers, even inside `allow`. Default `[]`.
    #[serde(default)]
    deny: Vec<String>,
    /// Use the address Envoy took from `X-Forwarded-For` as the peer. Default false.
    #[serde(default)]
    trust_forwarded: bool,
}

/// A protect item: a prefix string, or an object with `prefix` and `methods`.
enum RawRule {
    Prefix(String),
    Rule(RawRuleObject),
}

// Hand-written instead of `#[serde(untagged)]`: an untagged enum buffers the value and reports
// only "did not match any variant", losing the name of an unknown field inside the object.
impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawRule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path prefix string or an object with prefix and methods")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawRule, E> {
                Ok(RawRule::Prefix(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawRule, A::Error> {
                RawRuleObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawRule::Rule)
            }
        }
        d.deserialize_any(V)
    }
}

// Hand-written like its Deserialize: a prefix string, or the object form.
#[cfg(not(target_arch = "wasm32"))]
impl schemars::JsonSchema for RawRule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rule".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A protect rule: a path prefix (every method), or an object with \
                            `prefix` and `methods`.",
            "anyOf": [
                {"type": "string", "description": "A path prefix such as `/_debug/`."},
                generator.subschema_for::<RawRuleObject>(),
            ],
        })
    }
}

/// A protect rule limited to some methods.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "RuleObject"))]
#[serde(deny_unknown_fields)]
struct RawRuleObject {
    /// The path prefix. Required.
    prefix: String,
    /// Upper-case HTTP methods (at least one); `GET` covers `HEAD`. Absent: every method.
    methods: Option<Vec<String>>,
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
/// parser reads, for editors and `devgate check-config`. Structure only: value checks (CIDRs,
/// prefixes, ranges, exactly-one-of pairs) stay in [`parse_policy`]. Native builds only.
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

/// Parses and validates the plugin configuration, reading `secret_env` keys from the process
/// environment (inside Envoy: the Wasm VM's `vm_config.environment_variables`).
pub fn parse_policy(json: &[u8]) -> Result<Policy, ConfigError> {
    parse_policy_with_env(json, &|name| std::env::var(name).ok())
}

/// [`parse_policy`] with an explicit environment, for tests and tools.
pub fn parse_policy_with_env(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Policy, ConfigError> {
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

fn keyset(raw: Vec<RawKey>, env: &dyn Fn(&str) -> Option<String>) -> Result<KeySet, ConfigError> {
    let mut keys = Vec::with_capacity(raw.len());
    for (i, k) in raw.into_iter().enumerate() {
        let secret = match (k.secret, k.secret_env) {
            (Some(inline), None) => Secret::from_b64url(inline.trim())
                .map_err(|e| err(format!("keys[{i}].secret"), e.to_string()))?,
            (None, Some(var)) => {
                let value = env(&var).ok_or_else(|| {
                    err(
                        format!("keys[{i}].secret_env"),
                        format!(
                            "environment variable {var} is not set in the Wasm VM \
                             (vm_config.environment_variables)"
                        ),
                    )
                })?;
                Secret::from_b64url(value.trim())
                    .map_err(|e| err(format!("keys[{i}].secret_env"), format!("{var}: {e}")))?
            }
            _ => {
                return Err(err(
                    format!("keys[{i}]"),
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
            err(format!("keys[{index}].id"), msg)
        }
        other => err("keys", other.to_string()),
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
    if raw.leeway_seconds > MAX_LEEWAY {
        return Err(err(
            "tokens.leeway_seconds",
            format!("at most {MAX_LEEWAY} seconds"),
        ));
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

fn api_policy(raw: RawApi, keys: KeySet, rules: &mut Vec<Rule>) -> Result<ApiPolicy, ConfigError> {
    if raw.routes.is_empty() {
        return Err(err("api.routes", "must list at least one route"));
    }
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
        routes.push(ApiRoute {
            product: r.product,
            mode: r.mode,
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
    };
    if raw.leeway_seconds > MAX_LEEWAY {
        return Err(err(
            "api.leeway_seconds",
            format!("at most {MAX_LEEWAY} seconds"),
        ));
    }
    Ok(ApiPolicy {
        keys,
        routes,
        revoked: raw.revoked,
        headers,
        strip_key: raw.strip_key,
        internal_from: cidrs("api.internal_from", &raw.internal_from)?,
        leeway: raw.leeway_seconds,
        key_header: HeaderName::parse("x-api-key").map_err(|m| err("api", m))?,
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
    env: &dyn Fn(&str) -> Option<String>,
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
    if !(60..=MAX_SESSION_SECONDS).contains(&raw.session_seconds) {
        return Err(err(
            "login.session_seconds",
            format!("between 60 and {MAX_SESSION_SECONDS} seconds"),
        ));
    }
    if !(MIN_COST..=MAX_LOGIN_COST).contains(&raw.max_cost) {
        return Err(err(
            "login.max_cost",
            format!(
                "between {MIN_COST} and {MAX_LOGIN_COST} (each bcrypt step doubles the time a \
                 login holds an Envoy worker)"
            ),
        ));
    }
    if raw.max_failures == 0 || raw.max_failures > 1000 {
        return Err(err("login.max_failures", "between 1 and 1000"));
    }
    if !(1..=86_400).contains(&raw.failure_window_seconds) {
        return Err(err(
            "login.failure_window_seconds",
            "between 1 and 86400 seconds",
        ));
    }
    // There is no "off": 0 would refuse every login, and no budget would let a flood from
    // many addresses hold the workers (to turn the form off, remove `login`).
    if !(1..=60_000).contains(&raw.verifies_per_minute) {
        return Err(err(
            "login.verifies_per_minute",
            "between 1 and 60000 (0 would refuse every login; to turn the form off, remove login)",
        ));
    }
    if !(1..=1000).contains(&raw.verify_burst) {
        return Err(err("login.verify_burst", "between 1 and 1000"));
    }
    if raw.leeway_seconds > MAX_LEEWAY {
        return Err(err(
            "login.leeway_seconds",
            format!("at most {MAX_LEEWAY} seconds"),
        ));
    }
    let (field, content) = match (raw.users, raw.users_env) {
        (Some(inline), None) => ("login.users", inline),
        (None, Some(var)) => {
            let value = env(&var).ok_or_else(|| {
                err(
                    "login.users_env",
                    format!(
                        "environment variable {var} is not set in the Wasm VM \
                         (vm_config.environment_variables)"
                    ),
                )
            })?;
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

fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Policy, ConfigError> {
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
        Some(keyset(raw.keys, env)?)
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
        Some(a) => Some(api_policy(a, needs_keys("api")?, &mut rules)?),
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
    if raw.upstream_challenge == UpstreamChallenge::Login && login.is_none() {
        return Err(err(
            "upstream_challenge",
            "`login` sends clients to the login form, which is not configured (add `login`)",
        ));
    }
    let mut names = vec![&header];
    if let Some(a) = &api {
        let h = &a.headers;
        names.extend([&h.organization, &h.project, &h.kind, &h.key_id, &h.count]);
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(json: &str) -> String {
        parse_policy(json.as_bytes()).unwrap_err().field
    }

    #[test]
    fn empty_config_is_closed_defaults() {
        for json in ["", "  \n", "{}"] {
            let p = parse_policy(json.as_bytes()).unwrap();
            assert_eq!(p.header.as_str(), "x-wsgiorg-developer-user");
            assert_eq!(p.net.allow, CidrList::loopback());
            assert!(p.net.deny.0.is_empty());
            assert!(!p.net.trust_forwarded);
            assert!(
                p.is_protected(b"GET", b"/"),
                "everything is protected by default"
            );
            assert!(p.is_protected(b"POST", b"/any/thing"));
            assert_eq!(p.unauthenticated, Unauthenticated::Challenge);
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"nope": 1}"#), "nope");
        assert_eq!(field_of(r#"{"network": {"alow": []}}"#), "network.alow");
        assert_eq!(
            field_of(r#"{"network": {"allow": ["10.0.0.1/8"]}}"#),
            "network.allow[0]"
        );
        assert_eq!(
            field_of(r#"{"network": {"allow": ["::1"], "deny": ["::1", "x"]}}"#),
            "network.deny[1]"
        );
        assert_eq!(
            field_of(r#"{"network": {"trust_forwarded": "yes"}}"#),
            "network.trust_forwarded"
        );
        assert_eq!(
            field_of(r#"{"unauthenticated": "maybe"}"#),
            "unauthenticated"
        );
        assert_eq!(field_of(r#"{"header": "bad header"}"#), "header");
        assert_eq!(field_of(r#"{"protect": ["debug"]}"#), "protect[0]");
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a/../b"}]}"#),
            "protect[0].prefix"
        );
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a", "methods": ["get"]}]}"#),
            "protect[0].methods[0]"
        );
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a", "methods": []}]}"#),
            "protect[0].methods"
        );
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a", "x": 1}]}"#),
            "protect[0].x"
        );
        assert_eq!(field_of(r#"{"protect": [7]}"#), "protect[0]");
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/x/", "verbs": ["GET"]}]}"#),
            "protect[0].verbs"
        );
        assert_eq!(field_of(r#"{"public": ["/ok", "nope"]}"#), "public[1]");
        assert_eq!(field_of(r#"[]"#), "(root)");
        assert_eq!(field_of(r#"{} {}"#), "(root)");
        assert_eq!(field_of(r#"{"header": "\u0000"}"#), "header");
    }

    #[test]
    fn messages_are_pinned() {
        let e = parse_policy(br#"{"network": {"allow": ["10.0.0.1/8"]}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `network.allow[0]`: host bits set after the prefix; did you mean 10.0.0.0/8?"
        );
        let e = parse_policy(br#"{"unauthenticated": "maybe"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `unauthenticated`: unknown variant `…`, expected `challenge` or `forbid`"
        );
        let e = parse_policy(br#"{"extra": true}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("field `extra`: unknown field `extra`"),
            "{e}"
        );
    }

    #[test]
    fn misplaced_values_are_not_echoed() {
        let e = parse_policy(br#"{"network": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}"#).unwrap_err();
        assert_eq!(e.field, "network");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let e = parse_policy(br#"{"unauthenticated": "config-secret-a1b2"}"#).unwrap_err();
        assert!(!e.to_string().contains("config-secret"), "regression: {e}");
        let e = parse_policy(br#"{"network": {"deny": "topsecretvalue"}}"#).unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        assert!(!e.message.contains("line"), "{e}");
    }

    #[test]
    fn longest_rule_wins_and_ties_protect() {
        let p = parse_policy(br#"{"protect": ["/"], "public": ["/healthz", "/static/"]}"#).unwrap();
        assert!(p.is_protected(b"GET", b"/"));
        assert!(!p.is_protected(b"GET", b"/healthz"));
        assert!(!p.is_protected(b"GET", b"/static/app.js"));
        assert!(
            p.is_protected(b"GET", b"/HEALTHZ"),
            "public rules do not fold case"
        );
        let p = parse_policy(br#"{"protect": ["/a"], "public": ["/a"]}"#).unwrap();
        assert!(p.is_protected(b"GET", b"/a/x"));
        let p = parse_policy(br#"{"protect": ["/_debug/"], "public": ["/"]}"#).unwrap();
        assert!(p.is_protected(b"GET", b"/_DEBUG/x"));
        assert!(!p.is_protected(b"GET", b"/other"));
    }

    #[test]
    fn method_rules() {
        let p =
            parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["POST", "DELETE"]}]}"#)
                .unwrap();
        assert!(p.is_protected(b"POST", b"/api/x"));
        assert!(!p.is_protected(b"GET", b"/api/x"));
        assert!(
            !p.is_protected(b"post", b"/api/x"),
            "methods are case-sensitive"
        );
        assert!(!p.is_protected(b"POST", b"/"));
        let p = parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["GET"]}]}"#).unwrap();
        assert!(
            p.is_protected(b"HEAD", b"/api/x"),
            "GET handlers answer HEAD"
        );
        let p = parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["HEAD"]}]}"#).unwrap();
        assert!(p.is_protected(b"HEAD", b"/api/x"));
    }

    #[test]
    fn invalid_json_says_so() {
        let e = parse_policy(br#"{"protect": ["/"]"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `(root)`: not valid JSON (line 1, column 17)"
        );
        let e = parse_policy(b"{\"header\": \"x\" secret}").unwrap_err();
        assert_eq!(e.field, "(root)");
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn protect_nothing_is_explicit() {
        let p = parse_policy(br#"{"protect": []}"#).unwrap();
        assert!(!p.is_protected(b"GET", b"/_debug/"));
    }

    #[test]
    fn oversized_config_is_refused() {
        let big = vec![b' '; MAX_CONFIG_LEN + 1];
        assert_eq!(parse_policy(&big).unwrap_err().field, "(root)");
    }

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn tok_err(json: &str) -> ConfigError {
        parse_policy_with_env(json.as_bytes(), &|v| match v {
            "GOOD" => Some(SECRET.to_string()),
            "SHORT" => Some("c2hvcnQ".to_string()),
            _ => None,
        })
        .unwrap_err()
    }

    #[test]
    fn token_config_errors_name_the_field() {
        let e = tok_err(r#"{"tokens": {}}"#);
        assert_eq!(e.field, "keys");
        let e = tok_err(r#"{"keys": [{"id": "k1", "secret_env": "MISSING"}], "tokens": {}}"#);
        assert_eq!(e.to_string(), "field `keys[0].secret_env`: environment variable MISSING is not set in the Wasm VM (vm_config.environment_variables)");
        let e = tok_err(r#"{"keys": [{"id": "k1", "secret_env": "SHORT"}], "tokens": {}}"#);
        assert_eq!(e.field, "keys[0].secret_env");
        assert!(!e.message.contains("c2hvcnQ"));
        let e = tok_err(r#"{"keys": [{"id": "k1", "secret": "c2VjcmV0LXRvby1zaG9ydA"}]}"#);
        assert_eq!(e.field, "keys[0].secret");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let e = tok_err(&format!(
            r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}", "secret_env": "GOOD"}}]}}"#
        ));
        assert_eq!(e.field, "keys[0]");
        let e = tok_err(
            r#"{"keys": [{"id": "k1", "secret_env": "GOOD"}, {"id": "k1", "secret_env": "GOOD"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "field `keys[1].id`: duplicates an earlier key id"
        );
        let e = tok_err(r#"{"keys": [{"id": "bad id", "secret_env": "GOOD"}]}"#);
        assert_eq!(e.field, "keys[0].id");
        let base = r#"{"keys": [{"id": "k1", "secret_env": "GOOD"}], "tokens": "#;
        assert_eq!(
            tok_err(&format!(r#"{base}{{"leeway_seconds": 301}}}}"#)).field,
            "tokens.leeway_seconds"
        );
        assert_eq!(
            tok_err(&format!(r#"{base}{{"cookie": "a b"}}}}"#)).field,
            "tokens.cookie"
        );
        assert_eq!(
            tok_err(&format!(r#"{base}{{"bearer": false, "cookie": null}}}}"#)).field,
            "tokens"
        );
        assert_eq!(
            tok_err(&format!(r#"{base}{{"allow_from": ["1.2.3.4/8"]}}}}"#)).field,
            "tokens.allow_from[0]"
        );
        assert_eq!(
            tok_err(&format!(r#"{base}{{"cokie": "x"}}}}"#)).field,
            "tokens.cokie"
        );
    }

    #[test]
    fn token_defaults() {
        let json = r#"{"keys": [{"id": "new", "secret_env": "GOOD"}, {"id": "old", "secret_env": "GOOD"}], "tokens": {}}"#;
        let p = parse_policy_with_env(json.as_bytes(), &|_| Some(SECRET.to_string())).unwrap();
        let t = p.tokens.unwrap();
        assert!(t.bearer);
        assert_eq!(t.cookie.as_deref(), Some("devgate_token"));
        assert!(t.allow_from.is_none());
        assert!(!t.bind_peer);
        assert_eq!(t.leeway, 30);
        assert!(t.strip_credential);
        assert_eq!(t.keys.signing_key().id, "new", "the first key signs");
        assert!(t.keys.get("old").is_some(), "every key verifies");
        assert!(
            parse_policy(b"{}").unwrap().tokens.is_none(),
            "tokens are off by default"
        );
    }

    const HTPASSWD: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";

    fn login_err(login: &str, extra: &str) -> ConfigError {
        let json = format!(
            r#"{{"keys": [{{"id": "k1", "secret_env": "GOOD"}}], "login": {login} {extra}}}"#
        );
        tok_err(&json)
    }

    #[test]
    fn login_config_errors_name_the_field() {
        let users = format!(r#""users": "{HTPASSWD}""#);
        let cases: Vec<(String, &str, &str)> = vec![
            (
                format!(r#"{{{users}, "mount": "/"}}"#),
                "login.mount",
                "segments",
            ),
            (
                format!(r#"{{{users}, "mount": "/a/"}}"#),
                "login.mount",
                "segments",
            ),
            (
                format!(r#"{{{users}, "mount": "/a/../b"}}"#),
                "login.mount",
                "segments",
            ),
            (
                format!(r#"{{{users}, "cookie": "a b"}}"#),
                "login.cookie",
                "cookie name",
            ),
            (
                format!(r#"{{{users}, "cookie": "devgate_token"}}"#),
                "login.cookie",
                "differ",
            ),
            (
                format!(r#"{{{users}, "cookie": "__Host-s"}}"#),
                "login.cookie",
                "secure_cookie",
            ),
            (
                format!(r#"{{{users}, "session_seconds": 10}}"#),
                "login.session_seconds",
                "between",
            ),
            (
                format!(r#"{{{users}, "max_cost": 13}}"#),
                "login.max_cost",
                "between 4 and 12",
            ),
            (
                format!(r#"{{{users}, "max_failures": 0}}"#),
                "login.max_failures",
                "between",
            ),
            (
                format!(r#"{{{users}, "verifies_per_minute": 0}}"#),
                "login.verifies_per_minute",
                "0 would refuse every login",
            ),
            (
                format!(r#"{{{users}, "verifies_per_minute": 60001}}"#),
                "login.verifies_per_minute",
                "between 1 and 60000",
            ),
            (
                format!(r#"{{{users}, "verify_burst": 0}}"#),
                "login.verify_burst",
                "between 1 and 1000",
            ),
            (
                format!(r#"{{{users}, "verify_burst": 1001}}"#),
                "login.verify_burst",
                "between 1 and 1000",
            ),
            (
                format!(r#"{{{users}, "failure_window_seconds": 0}}"#),
                "login.failure_window_seconds",
                "between",
            ),
            (
                format!(r#"{{{users}, "allow_from": ["10.0.0.1/8"]}}"#),
                "login.allow_from[0]",
                "",
            ),
            (
                format!(r#"{{{users}, "users_env": "X"}}"#),
                "login",
                "exactly one",
            ),
            ("{}".to_string(), "login", "exactly one"),
            (
                r#"{"users_env": "NOPE"}"#.to_string(),
                "login.users_env",
                "not set",
            ),
            (
                r#"{"users": "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}"#.to_string(),
                "login.users",
                "only bcrypt",
            ),
            (
                r#"{"users": "bob:$apr1$x$y"}"#.to_string(),
                "login.users",
                "only bcrypt",
            ),
            (
                format!(r#"{{{users}, "colour": 1}}"#),
                "login.colour",
                "unknown field",
            ),
        ];
        for (login, field, msg) in cases {
            let e = login_err(&login, r#", "tokens": {}"#);
            assert_eq!(e.field, field, "{login}: {e}");
            assert!(e.message.contains(msg), "{login}: {e}");
            for secret_part in ["WBNRJBi", "W6ph5Mm5", "$x$y"] {
                assert!(!e.to_string().contains(secret_part), "{e}");
            }
        }
        // No keys to sign sessions with.
        let e = tok_err(&format!(r#"{{"login": {{{users}}}}}"#));
        assert_eq!(e.field, "keys");
        // upstream_challenge: login needs the form.
        let e = tok_err(r#"{"upstream_challenge": "login"}"#);
        assert_eq!(e.field, "upstream_challenge");
    }

    #[test]
    fn login_defaults() {
        let json = format!(
            r#"{{"keys": [{{"id": "k1", "secret_env": "GOOD"}}], "login": {{"users": "{HTPASSWD}"}}}}"#
        );
        let p = parse_policy_with_env(json.as_bytes(), &|_| Some(SECRET.to_string())).unwrap();
        let l = p.login.unwrap();
        assert_eq!(l.mount, "/.devgate");
        assert_eq!(l.cookie, "devgate_session");
        assert_eq!(l.session_seconds, 8 * 3600);
        assert!(l.allow_from.is_none() && !l.secure_cookie && !l.bind_peer);
        assert_eq!((l.max_failures, l.failure_window, l.leeway), (5, 300, 30));
        // Two verifies a second, three at once.
        assert_eq!(l.verify_budget, Budget::per_minute(120, 3));
        assert_eq!(
            (l.verify_budget.interval_ms, l.verify_budget.burst),
            (500, 3)
        );
        assert_eq!(l.users.len(), 1);
        assert_eq!(p.upstream_challenge, UpstreamChallenge::Forbid);
    }

    #[test]
    fn revocation_config() {
        let base = r#"{"keys": [{"id": "k1", "secret_env": "GOOD"}], "tokens": {}, "revocation": "#;
        let ok = parse_policy_with_env(
            format!(r#"{base} {{"cluster": "revocation"}}}}"#).as_bytes(),
            &|_| Some(SECRET.to_string()),
        )
        .unwrap();
        let r = ok.revocation.unwrap();
        assert_eq!(
            (r.authority.as_str(), r.path.as_str()),
            ("revocation", "/revoked.json")
        );
        assert_eq!(
            (r.refresh_seconds, r.timeout_ms, r.max_stale_seconds),
            (30, 2000, 300)
        );
        assert_eq!(r.when_stale, WhenStale::Refuse);
        for (json, field) in [
            (r#"{"cluster": ""}"#, "revocation.cluster"),
            (r#"{"cluster": "a b"}"#, "revocation.cluster"),
            (r#"{"cluster": "c", "path": "x"}"#, "revocation.path"),
            (
                r#"{"cluster": "c", "refresh_seconds": 0}"#,
                "revocation.refresh_seconds",
            ),
            (
                r#"{"cluster": "c", "timeout_ms": 5}"#,
                "revocation.timeout_ms",
            ),
            (
                r#"{"cluster": "c", "refresh_seconds": 60, "max_stale_seconds": 30}"#,
                "revocation.max_stale_seconds",
            ),
            (
                r#"{"cluster": "c", "when_stale": "open"}"#,
                "revocation.when_stale",
            ),
            (r#"{"cluster": "c", "url": "x"}"#, "revocation.url"),
        ] {
            assert_eq!(tok_err(&format!("{base} {json}}}")).field, field, "{json}");
        }
        let e = tok_err(r#"{"revocation": {"cluster": "c"}}"#);
        assert_eq!(e.field, "revocation");
    }

    #[test]
    fn quoted_values_with_escaped_quotes_are_redacted_whole() {
        // Found by the config fuzz target: a string value holding `"` was quoted by serde as
        // "\"session_sEconds\"", and the redaction ended at the first escaped quote, echoing
        // the rest of the value.
        for json in [
            r#""\"session_sEconds\"""#,
            r#"{"login": "\"s3cret-value\" and more"}"#,
            r#"{"keys": [{"id": "k\\\"x-secret-part"}]}"#,
        ] {
            let e = parse_policy(json.as_bytes()).unwrap_err();
            let text = e.to_string();
            for part in ["session_sEconds", "s3cret-value", "secret-part"] {
                assert!(!text.contains(part), "{text}");
            }
        }
    }

    #[test]
    fn unknown_variants_with_backticks_are_redacted_whole() {
        // Found by the config fuzz target (fuzz/corpus/config/regression_backtick_in_variant.json):
        // the redaction of an unknown variant ended at the first backtick inside the value.
        for json in [
            r#"{"unauthenticated": "ab`SECRETSECRETSECRET"}"#,
            r#"{"unauthenticated": "ab`, expected `SECRETSECRETSECRET"}"#,
        ] {
            let e = parse_policy(json.as_bytes()).unwrap_err();
            let text = e.to_string();
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("expected"), "{text}");
        }
    }
}

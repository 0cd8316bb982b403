//! The configuration as written: serde structs with the schema's documentation and the
//! closed defaults. `super` validates them into the core's policy. Their doc comments are the
//! descriptions of the JSON Schema (`devgate schema`) and of docs/config-reference.md; the
//! integer fields' ranges come from `super::bounds`, which the parser checks.

use std::fmt;

use serde::Deserialize;

use super::edge::RawPublicKeys;

use crate::core::htpasswd::DEFAULT_MAX_COST;
use crate::core::policy::{Mode, Unauthenticated, UpstreamChallenge, WhenStale};

/// The devgate plugin configuration (Envoy: `configuration` as a `google.protobuf.StringValue`;
/// Istio: `spec.pluginConfig`). Unknown fields are errors; absent fields take the closed default.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// The identity header the upstream receives; every client-sent copy is removed.
    /// Default `x-wsgiorg-developer-user`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-wsgiorg-developer-user")))]
    pub(super) header: Option<String>,
    /// Who is a developer by socket address.
    #[serde(default)]
    pub(super) network: RawNetwork,
    /// Path prefixes only developers may reach: a prefix string, or `{prefix, methods}` for some
    /// methods only. Default `["/"]` (everything); `[]` protects nothing.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = ["/"])))]
    pub(super) protect: Option<Vec<RawRule>>,
    /// Path prefixes never challenged (health checks), even under a protected prefix. Default `[]`.
    #[serde(default)]
    pub(super) public: Vec<String>,
    /// What a protected path answers a non-developer. Default `challenge`.
    #[serde(default)]
    pub(super) unauthenticated: Unauthenticated,
    /// Signing keys for tokens, sessions and API keys: the first signs, every one verifies. To
    /// rotate, add the new key second on every Envoy, move it first once all have it, and remove
    /// the old one after the longest token or session lifetime. Default `[]`.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    pub(super) keys: Vec<RawKey>,
    /// Signed developer tokens; needs `keys`. Absent: no tokens accepted.
    pub(super) tokens: Option<RawTokens>,
    /// API keys and API routes; needs `keys`, `api.service` or both. Absent: no API keys, no API
    /// routes.
    pub(super) api: Option<RawApi>,
    /// The hidden login form and its session cookie; needs `keys`. Absent: no form.
    pub(super) login: Option<RawLogin>,
    /// What an upstream 401 with devgate's challenge becomes. Default `forbid`.
    #[serde(default)]
    pub(super) upstream_challenge: UpstreamChallenge,
    /// A revocation list service (an Envoy cluster); needs `tokens` or `api`. Absent: only
    /// `api.revoked`.
    pub(super) revocation: Option<RawRevocation>,
    /// Developers as the team's edge already knows them: signed assertions (Google IAP,
    /// Cloudflare Access, Pomerium, AWS ALB, any OIDC issuer), trusted proxy headers, client
    /// certificates. Absent: none.
    pub(super) edge: Option<super::edge::RawEdge>,
}

/// The revocation list service devgate fetches through an Envoy cluster.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Revocation"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    /// The Envoy cluster devgate calls, 1-128 characters of `[A-Za-z0-9._:-]`; it must exist in
    /// Envoy's config. Required.
    pub(super) cluster: String,
    /// `:authority` of the call, 1-128 characters of `[A-Za-z0-9._:-]`. Default: the cluster
    /// name.
    pub(super) authority: Option<String>,
    /// `:path` of the call: starts with `/`, visible ASCII, at most 1024 bytes. Default
    /// `/revoked.json`.
    #[serde(default = "default_revocation_path")]
    pub(super) path: String,
    /// Seconds between fetches (one per Envoy process), 1 to 3600. Default 30.
    #[serde(default = "default_refresh_seconds")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::REFRESH_SECONDS.min, max = super::bounds::REFRESH_SECONDS.max))
    )]
    pub(super) refresh_seconds: u64,
    /// Timeout of one fetch in milliseconds, 100 to 60000. Default 2000.
    #[serde(default = "default_timeout_ms")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::TIMEOUT_MS.min, max = super::bounds::TIMEOUT_MS.max))
    )]
    pub(super) timeout_ms: u64,
    /// How long the last good list stays in force without a good fetch, from `refresh_seconds`
    /// to 7 days. Default 300.
    #[serde(default = "default_max_stale_seconds")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::MAX_STALE_SECONDS.min, max = super::bounds::MAX_STALE_SECONDS.max))
    )]
    pub(super) max_stale_seconds: u64,
    /// Past `max_stale_seconds`: refuse tokens and API keys, or serve the last good list.
    /// Default `refuse`.
    #[serde(default)]
    pub(super) when_stale: WhenStale,
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

/// The hidden login form (`<mount>/login`, `<mount>/logout`) and its signed session cookie.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Login"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    /// Where the form lives; devgate answers every path under it. A path of one or more
    /// segments of `[A-Za-z0-9._~-]` (none `.` or `..`), each after a `/`, no trailing `/`, at
    /// most 128 bytes. Default `/.devgate`.
    #[serde(default = "default_mount")]
    pub(super) mount: String,
    /// Sensitive: htpasswd lines (bcrypt only), inline. Exactly one of `users` and `users_env`.
    pub(super) users: Option<String>,
    /// The environment variable holding the htpasswd lines: the Wasm VM's
    /// (`vm_config.environment_variables`), or Envoy's process environment for the native
    /// module. Exactly one of `users` and `users_env`.
    pub(super) users_env: Option<String>,
    /// The session cookie's name (an RFC 6265 token); must differ from `tokens.cookie`, and a
    /// `__Host-` or `__Secure-` name needs `secure_cookie`. Default `devgate_session`.
    #[serde(default = "default_session_cookie")]
    pub(super) cookie: String,
    /// Session lifetime in seconds, 60 to 30 days. Default 28800 (8 h).
    #[serde(default = "default_session_seconds")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::SESSION_SECONDS.min, max = super::bounds::SESSION_SECONDS.max))
    )]
    pub(super) session_seconds: u64,
    /// CIDRs the form and session cookies work from (elsewhere 403). Absent: any socket peer.
    pub(super) allow_from: Option<Vec<String>>,
    /// Mark the cookie `Secure` even on plain-HTTP listeners. Default false.
    #[serde(default)]
    pub(super) secure_cookie: bool,
    /// Highest bcrypt cost accepted in the users, 4 to 12. Default 10.
    #[serde(default = "default_max_cost")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::MAX_COST.min, max = super::bounds::MAX_COST.max))
    )]
    pub(super) max_cost: u32,
    /// Failed logins per peer before the form answers 429, 1 to 1000. Default 5.
    #[serde(default = "default_max_failures")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::MAX_FAILURES.min, max = super::bounds::MAX_FAILURES.max))
    )]
    pub(super) max_failures: u32,
    /// The window failures are counted in, 1 to 86400 seconds. Default 300.
    #[serde(default = "default_failure_window")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::FAILURE_WINDOW_SECONDS.min, max = super::bounds::FAILURE_WINDOW_SECONDS.max))
    )]
    pub(super) failure_window_seconds: u64,
    /// Password verifies the form may run per minute, shared by all workers of the Envoy
    /// process, whatever the number of addresses; beyond it the form answers 429 without
    /// bcrypt. 1 to 60000. Default 120 (2 a second: at bcrypt cost 10 about a fifth of one
    /// worker).
    #[serde(default = "default_verifies_per_minute")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::VERIFIES_PER_MINUTE.min, max = super::bounds::VERIFIES_PER_MINUTE.max))
    )]
    pub(super) verifies_per_minute: u32,
    /// Verifies allowed back to back when the budget is full, 1 to 1000. Default 3 (a worker
    /// stalls at most that many verifies in a row: ~0.27 s at cost 10).
    #[serde(default = "default_verify_burst")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::VERIFY_BURST.min, max = super::bounds::VERIFY_BURST.max))
    )]
    pub(super) verify_burst: u32,
    /// Bind each session to the address it logged in from (`cip`). Default false.
    #[serde(default)]
    pub(super) bind_peer: bool,
    /// Clock skew tolerated on the session token, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::LEEWAY_SECONDS.min, max = super::bounds::LEEWAY_SECONDS.max))
    )]
    pub(super) leeway_seconds: u64,
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
pub(super) struct RawApi {
    /// The API routes, at least one. Required.
    pub(super) routes: Vec<RawApiRoute>,
    /// API key ids answered with 401 `revoked`. Default `[]`.
    #[serde(default)]
    pub(super) revoked: Vec<String>,
    /// Header names devgate sets for the application on API routes.
    #[serde(default)]
    pub(super) headers: RawApiHeaders,
    /// Remove the key from the query string and `X-Api-Key` before the upstream. Default true.
    #[serde(default = "default_true")]
    pub(super) strip_key: bool,
    /// CIDRs whose API traffic is marked `count: false` (internal). Default `[]`.
    #[serde(default)]
    pub(super) internal_from: Vec<String>,
    /// Clock skew tolerated on API key expiry, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::LEEWAY_SECONDS.min, max = super::bounds::LEEWAY_SECONDS.max))
    )]
    pub(super) leeway_seconds: u64,
    /// The authentication service that resolves API keys devgate did not sign (those without a
    /// `dgpk_` or `dgsk_` prefix). With it, the top-level `keys` are optional for `api` (they
    /// then only verify devgate's own keys). Absent: only devgate's own keys.
    pub(super) service: Option<RawKeyService>,
    /// User tokens, for the routes with `user_tokens`. Absent: the defaults (the key
    /// service's keys).
    pub(super) user_tokens: Option<super::usertokens::RawUserTokens>,
}

/// The authentication service (an Envoy cluster) devgate asks about API keys it did not sign:
/// `GET <path>` with the key in `<key_header>`, answered by an HS256 access token describing
/// the key (200), or a rejection (401, 403, 402, 429). Answers are cached for every worker of
/// the Envoy process.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "KeyService"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyService {
    /// The Envoy cluster devgate calls, 1-128 characters of `[A-Za-z0-9._:-]`; it must exist in
    /// Envoy's config. Required.
    pub(super) cluster: String,
    /// `:authority` of the call, 1-128 characters of `[A-Za-z0-9._:-]`. Default: the cluster
    /// name.
    pub(super) authority: Option<String>,
    /// `:path` of the call, an origin-form path: starts with `/`, visible ASCII, no `?` or `#`,
    /// at most 1024 bytes. The key never goes in it. Default `/access_tokens/`.
    #[serde(default = "default_service_path")]
    pub(super) path: String,
    /// The header that carries the key to the service: a header name, not a pseudo-header,
    /// `host`, `authorization`, `content-length` or a hop-by-hop header. Default `x-api-key`.
    #[serde(default = "default_service_key_header")]
    pub(super) key_header: String,
    /// Timeout of one callout in milliseconds, 50 to 30000; requests for the key wait on it.
    /// Default 1000.
    #[serde(default = "default_service_timeout_ms")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::SERVICE_TIMEOUT_MS.min, max = super::bounds::SERVICE_TIMEOUT_MS.max))
    )]
    pub(super) timeout_ms: u64,
    /// The keys the service signs its access tokens with (HS256; the token's `kid` names one),
    /// at least one. Exactly one of `keys` and `public_keys` is required.
    pub(super) keys: Option<Vec<RawKey>>,
    /// The public keys the service signs its access tokens with (inline `jwks` or `pem`; the
    /// token's `kid` names one), instead of HS256 `keys`; `jwks_url`/`pem_url` are refused here.
    /// Exactly one of `keys` and `public_keys` is required.
    pub(super) public_keys: Option<RawPublicKeys>,
    /// The algorithms accepted with `public_keys`, from `ES256`, `ES384`, `RS256`, `PS256`,
    /// `EdDSA`; each must fit one of the keys. Required with `public_keys`. Absent: `keys`
    /// (HS256).
    pub(super) algorithms: Option<Vec<String>>,
    /// The `iss` every access token must carry. Absent: not checked.
    pub(super) issuer: Option<String>,
    /// The `aud` every access token must carry (or list). Absent: not checked.
    pub(super) audience: Option<String>,
    /// Clock skew tolerated on the access token's `exp`, `nbf` and `iat`, at most 300 seconds.
    /// Default 30.
    #[serde(default = "default_leeway")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::LEEWAY_SECONDS.min, max = super::bounds::LEEWAY_SECONDS.max))
    )]
    pub(super) leeway_seconds: u64,
    /// The claim names of the access tokens.
    #[serde(default)]
    pub(super) claims: RawClaimNames,
    /// How many answers the cache keeps and for how long.
    #[serde(default)]
    pub(super) cache: RawServiceCache,
    /// The Envoy process's budget of callouts.
    #[serde(default)]
    pub(super) budget: RawServiceBudget,
    /// Which keys are worth asking about; any other is refused as malformed (401) without a
    /// callout.
    #[serde(default)]
    pub(super) shape: RawKeyShape,
}

fn default_service_path() -> String {
    "/access_tokens/".into()
}

fn default_service_key_header() -> String {
    "x-api-key".into()
}

fn default_service_timeout_ms() -> u64 {
    1000
}

/// The claim names of the key service's access tokens, so an existing service fits; each
/// non-empty, all different, none of `exp`, `nbf`, `iat`, `iss`, `aud`.
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "KeyServiceClaims"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimNames {
    /// The key's kind: `public_key` or `private_key`. Default `kind`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "kind")))]
    pub(super) kind: Option<String>,
    /// The key's organization id. Default `organization_id`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "organization_id")))]
    pub(super) organization: Option<String>,
    /// The key's project id. Default `project_id`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "project_id")))]
    pub(super) project: Option<String>,
    /// The key's products (an array of strings). Default `products`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "products")))]
    pub(super) products: Option<String>,
    /// Whether the key may write (a boolean). Default `write`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "write")))]
    pub(super) write: Option<String>,
    /// The referer hosts a public key is allowed from (an array). Default `referers`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "referers")))]
    pub(super) referers: Option<String>,
    /// The networks a private key is allowed from (an array of IPs and CIDRs). Default `ips`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "ips")))]
    pub(super) ips: Option<String>,
    /// The key's id (`api.revoked`, the `api.headers.key_id` header). Default `jti`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "jti")))]
    pub(super) id: Option<String>,
}

/// The key service's cache, shared by the workers of the Envoy process: resolved keys and
/// rejections in separate slots (junk keys cannot evict good ones).
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "KeyServiceCache"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawServiceCache {
    /// Slots for resolved keys, 1 to 1000000. Default 4096.
    #[serde(default = "default_cache_slots")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::CACHE_SLOTS.min, max = super::bounds::CACHE_SLOTS.max))
    )]
    pub(super) entries: u64,
    /// Slots for rejections, apart from resolved keys, 1 to 1000000. Default 4096.
    #[serde(default = "default_cache_slots")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::CACHE_SLOTS.min, max = super::bounds::CACHE_SLOTS.max))
    )]
    pub(super) rejections: u64,
    /// The longest a resolved key is fresh, whatever its access token's `exp` says, 1 to 86400
    /// seconds. Default 300.
    #[serde(default = "default_max_ttl_seconds")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::MAX_TTL_SECONDS.min, max = super::bounds::MAX_TTL_SECONDS.max))
    )]
    pub(super) max_ttl_seconds: u64,
    /// How long a rejection is fresh, 1 to 3600 seconds; while the service is unavailable it
    /// keeps rejecting. Default 30.
    #[serde(default = "default_rejection_ttl_seconds")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::REJECTION_TTL_SECONDS.min, max = super::bounds::REJECTION_TTL_SECONDS.max))
    )]
    pub(super) rejection_ttl_seconds: u64,
    /// How long past its freshness a resolved key may still be served while the service is
    /// unavailable (marked with `api.headers.stale`), 0 (never) to 7 days. Default 3600.
    #[serde(default = "default_service_max_stale_seconds")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::SERVICE_MAX_STALE_SECONDS.min, max = super::bounds::SERVICE_MAX_STALE_SECONDS.max))
    )]
    pub(super) max_stale_seconds: u64,
    /// After a callout found the service unavailable, how long requests for that key use what
    /// is cached (or get 503) before one asks again, 100 to 60000 milliseconds. Default 1000.
    #[serde(default = "default_retry_ms")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::RETRY_MS.min, max = super::bounds::RETRY_MS.max))
    )]
    pub(super) retry_ms: u64,
}

impl Default for RawServiceCache {
    fn default() -> Self {
        RawServiceCache {
            entries: default_cache_slots(),
            rejections: default_cache_slots(),
            max_ttl_seconds: default_max_ttl_seconds(),
            rejection_ttl_seconds: default_rejection_ttl_seconds(),
            max_stale_seconds: default_service_max_stale_seconds(),
            retry_ms: default_retry_ms(),
        }
    }
}

fn default_cache_slots() -> u64 {
    4096
}

fn default_max_ttl_seconds() -> u64 {
    300
}

fn default_rejection_ttl_seconds() -> u64 {
    30
}

fn default_service_max_stale_seconds() -> u64 {
    3600
}

fn default_retry_ms() -> u64 {
    1000
}

/// The budget of callouts to the key service, shared by the workers of the Envoy process:
/// beyond it a request whose key is not cached gets 503 `key_service_busy`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "KeyServiceBudget"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawServiceBudget {
    /// Callouts started per second, sustained, 1 to 100000. Default 50.
    #[serde(default = "default_per_second")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::CALLOUTS_PER_SECOND.min, max = super::bounds::CALLOUTS_PER_SECOND.max))
    )]
    pub(super) per_second: u64,
    /// Callouts that may start back to back when the budget is full, 1 to 100000. Default 100.
    #[serde(default = "default_burst")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::CALLOUT_BURST.min, max = super::bounds::CALLOUT_BURST.max))
    )]
    pub(super) burst: u64,
    /// Callouts in flight at once, 1 to 10000. Default 64.
    #[serde(default = "default_in_flight")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::CALLOUTS_IN_FLIGHT.min, max = super::bounds::CALLOUTS_IN_FLIGHT.max))
    )]
    pub(super) in_flight: u64,
    /// Requests that may wait on one key's callout, 1 to 10000. Default 64.
    #[serde(default = "default_waiters")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::CALLOUT_WAITERS.min, max = super::bounds::CALLOUT_WAITERS.max))
    )]
    pub(super) waiters: u64,
}

impl Default for RawServiceBudget {
    fn default() -> Self {
        RawServiceBudget {
            per_second: default_per_second(),
            burst: default_burst(),
            in_flight: default_in_flight(),
            waiters: default_waiters(),
        }
    }
}

fn default_per_second() -> u64 {
    50
}

fn default_burst() -> u64 {
    100
}

fn default_in_flight() -> u64 {
    64
}

fn default_waiters() -> u64 {
    64
}

/// Which keys are worth a callout: length, alphabet (`[A-Za-z0-9._~-]`) and a prefix per kind.
/// Any other key is refused as malformed (401) without asking the service.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "KeyServiceShape"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyShape {
    /// Shortest key in bytes (prefix included), 1 to 4096, at most `max_length`. Default 16.
    #[serde(default = "default_min_length")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::KEY_LENGTH.min, max = super::bounds::KEY_LENGTH.max))
    )]
    pub(super) min_length: u64,
    /// Longest key in bytes (prefix included), 1 to 4096. Default 256.
    #[serde(default = "default_max_length")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::KEY_LENGTH.min, max = super::bounds::KEY_LENGTH.max))
    )]
    pub(super) max_length: u64,
    /// What every public key (the `key` query parameter) starts with, at most 32 characters of
    /// `[A-Za-z0-9._~-]`, shorter than `max_length`, not `dgpk_` or `dgsk_` (devgate checks
    /// those itself). Absent or empty: any.
    pub(super) public_prefix: Option<String>,
    /// What every private key (`private_key`, `X-Api-Key`) starts with, as `public_prefix`.
    /// Absent or empty: any.
    pub(super) private_prefix: Option<String>,
}

impl Default for RawKeyShape {
    fn default() -> Self {
        RawKeyShape {
            min_length: default_min_length(),
            max_length: default_max_length(),
            public_prefix: None,
            private_prefix: None,
        }
    }
}

fn default_min_length() -> u64 {
    16
}

fn default_max_length() -> u64 {
    256
}

/// An API route: a path prefix, the product it belongs to and its mode.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ApiRoute"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiRoute {
    /// The path prefix. Required.
    pub(super) prefix: String,
    /// Upper-case HTTP methods the route applies to (at least one); `GET` covers `HEAD` and
    /// `HEAD` covers `GET` (frameworks answer HEAD with the GET handler). Absent: every method.
    pub(super) methods: Option<Vec<String>>,
    /// The product a key must carry for this route, 1-64 characters of `[A-Za-z0-9._:-]`.
    /// Required.
    pub(super) product: String,
    /// What keys may do on this route. Default `read_write`. For user tokens only
    /// `read_only`'s method limit applies.
    #[serde(default)]
    pub(super) mode: Mode,
    /// Take user tokens (`Authorization: Bearer`) on this route: a Bearer token here is always
    /// read as a user token, never as a developer token. Absent: API keys only.
    pub(super) user_tokens: Option<super::usertokens::RawRouteUserTokens>,
}

/// Header names devgate sets for the application on API routes (client copies are stripped);
/// each must differ from the others and from `header`.
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ApiHeaders"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiHeaders {
    /// The key's organization. Default `x-devgate-organization`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-organization")))]
    pub(super) organization: Option<String>,
    /// The key's project. Default `x-devgate-project`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-project")))]
    pub(super) project: Option<String>,
    /// The key's kind (public or private). Default `x-devgate-key-kind`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-key-kind")))]
    pub(super) kind: Option<String>,
    /// The key's id. Default `x-devgate-key-id`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-key-id")))]
    pub(super) key_id: Option<String>,
    /// `true`, or `false` for `internal_from` traffic. Default `x-devgate-count`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-count")))]
    pub(super) count: Option<String>,
    /// `true` when the key service was unavailable and devgate served the key's expired
    /// answer (degraded mode); absent otherwise. Default `x-devgate-served-stale`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-served-stale")))]
    pub(super) stale: Option<String>,
    /// The request's source: the client's `X-SDK-Source` (1-64 token characters), or
    /// `ai-context` for `AI-Context: true`; absent when neither is valid. Set on API routes
    /// only. Default `x-devgate-source`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-source")))]
    pub(super) source: Option<String>,
    /// The user's id, for requests admitted by a user token. Default `x-devgate-user`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-devgate-user")))]
    pub(super) user: Option<String>,
}

/// A signing key: an id and exactly one of `secret` or `secret_env`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Key"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    /// The key id tokens and API keys name (`kid`), 1-64 of `[A-Za-z0-9._-]`. Required.
    pub(super) id: String,
    /// Secret: the key inline, base64url, at least 32 bytes. Prefer `secret_env`. Exactly one of
    /// `secret` and `secret_env`.
    pub(super) secret: Option<String>,
    /// The environment variable holding the base64url secret, so the config carries no secret:
    /// the Wasm VM's (`vm_config.environment_variables`), or Envoy's process environment for
    /// the native module. Exactly one of `secret` and `secret_env`.
    pub(super) secret_env: Option<String>,
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

/// The default leeway, for the raw types of other modules.
pub(super) fn default_leeway_pub() -> u64 {
    default_leeway()
}

/// Signed developer tokens (HS256), presented as a Bearer header or a cookie.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Tokens"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    /// Accept `Authorization: Bearer <token>`. Default true.
    #[serde(default = "default_true")]
    pub(super) bearer: bool,
    /// Accept the token in this cookie; `null` turns cookies off. Default `devgate_token`.
    #[serde(default = "default_cookie")]
    pub(super) cookie: Option<String>,
    /// CIDRs a token is honoured from (socket peers). Absent: any peer.
    pub(super) allow_from: Option<Vec<String>>,
    /// Require tokens bound to the peer IP (`cip` claim). Default false.
    #[serde(default)]
    pub(super) bind_peer: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::LEEWAY_SECONDS.min, max = super::bounds::LEEWAY_SECONDS.max))
    )]
    pub(super) leeway_seconds: u64,
    /// Remove the token credential before the upstream: the token cookie in every spelling an
    /// upstream may read as it, and a Bearer header whose token names one of devgate's key ids
    /// (the login session cookie is removed either way). Default true.
    #[serde(default = "default_true")]
    pub(super) strip_credential: bool,
}

/// Who is a developer by socket address.
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Network"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    /// IPs and CIDRs whose socket peers are developers. Default `["127.0.0.0/8", "::1"]`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = ["127.0.0.0/8", "::1"])))]
    pub(super) allow: Option<Vec<String>>,
    /// IPs and CIDRs that are never developers, even inside `allow`. Default `[]`.
    #[serde(default)]
    pub(super) deny: Vec<String>,
    /// Use the address Envoy took from `X-Forwarded-For` as the peer. Default false.
    #[serde(default)]
    pub(super) trust_forwarded: bool,
}

/// A protect item: a prefix string, or an object with `prefix` and `methods`.
pub(super) enum RawRule {
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
pub(super) struct RawRuleObject {
    /// The path prefix. Required.
    pub(super) prefix: String,
    /// Upper-case HTTP methods (at least one); `GET` covers `HEAD` and `HEAD` covers `GET`
    /// (frameworks answer HEAD with the GET handler). Absent: every method.
    pub(super) methods: Option<Vec<String>>,
}

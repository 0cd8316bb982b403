//! `api.service`: the key service's configuration, validated into the core's [`KeyService`].
//! Every error names its field under `api.service`; the integer ranges are `super::bounds`'s.

use super::bounds::{
    Bounds, CACHE_SLOTS, CALLOUTS_IN_FLIGHT, CALLOUTS_PER_SECOND, CALLOUT_BURST, CALLOUT_WAITERS,
    KEY_LENGTH, LEEWAY_SECONDS, MAX_TTL_SECONDS, REJECTION_TTL_SECONDS, RETRY_MS,
    SERVICE_MAX_STALE_SECONDS, SERVICE_TIMEOUT_MS,
};
use super::edge::RawPublicKeys;
use super::publickeys::inline_key_source;
use super::raw::{
    RawClaimNames, RawKey, RawKeyService, RawKeyShape, RawServiceBudget, RawServiceCache,
};
use super::{between, envoy_name_ok, err, keyset, leeway_message, ConfigError, Environment};
use crate::core::apikey::KeyKind;
use crate::core::headers::HeaderName;
use crate::core::keyservice::{
    store_prefix, CacheLimits, CalloutBudget, ClaimNames, KeyService, KeyShape,
};
use crate::core::keysource::KeySource;

/// Where every field of this section lives.
const FIELD: &str = "api.service";

/// The longest `shape.public_prefix` / `shape.private_prefix` (bytes).
const MAX_SHAPE_PREFIX: usize = 32;

/// The longest `path` (bytes), as `revocation.path`.
const MAX_PATH: usize = 1024;

/// The longest `issuer` / `audience` (bytes).
const MAX_ISS_AUD: usize = 1024;

/// Headers the key may not travel in: the request's framing and routing (`host`,
/// `content-length`, the hop-by-hop headers, which proxies drop or act on) and the
/// credentials headers (`authorization`, `proxy-authorization`), which a key service reads as
/// the caller's own credentials.
const FORBIDDEN_KEY_HEADERS: [&str; 11] = [
    "host",
    "authorization",
    "proxy-authorization",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Claims the access token carries with their own meaning, read by the token check itself.
const REGISTERED_CLAIMS: [&str; 5] = ["exp", "nbf", "iat", "iss", "aud"];

/// `value` within `bounds`, as a `u32`, or the error for `field` (`api.service.<field>`).
fn bounded_u32(field: &str, value: u64, bounds: &Bounds) -> Result<u32, ConfigError> {
    match u32::try_from(value) {
        Ok(v) if bounds.contains(value) => Ok(v),
        _ => Err(err(format!("{FIELD}.{field}"), between(bounds, ""))),
    }
}

/// `value` within `bounds`, or the error for `field` (`api.service.<field>`).
fn bounded(field: &str, value: u64, bounds: &Bounds, unit: &str) -> Result<u64, ConfigError> {
    if bounds.contains(value) {
        Ok(value)
    } else {
        Err(err(format!("{FIELD}.{field}"), between(bounds, unit)))
    }
}

/// Validates `api.service` into the policy of the key service.
pub(super) fn key_service(
    raw: RawKeyService,
    env: &Environment<'_>,
) -> Result<KeyService, ConfigError> {
    if !envoy_name_ok(&raw.cluster) {
        return Err(err(
            format!("{FIELD}.cluster"),
            "an Envoy cluster name: 1-128 characters of A-Za-z0-9._:-",
        ));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if !envoy_name_ok(&authority) {
        return Err(err(
            format!("{FIELD}.authority"),
            "a host name: 1-128 characters of A-Za-z0-9._:-",
        ));
    }
    if !path_ok(&raw.path) {
        return Err(err(
            format!("{FIELD}.path"),
            "an origin-form path: starts with /, visible ASCII, no ? or #, at most 1024 bytes",
        ));
    }
    let key_header = key_header(&raw.key_header)?;
    let timeout_ms = bounded("timeout_ms", raw.timeout_ms, &SERVICE_TIMEOUT_MS, "")?;
    let signing = signing(raw.keys, raw.public_keys, raw.algorithms, env)?;
    let issuer = iss_aud("issuer", raw.issuer)?;
    let audience = iss_aud("audience", raw.audience)?;
    if !LEEWAY_SECONDS.contains(raw.leeway_seconds) {
        return Err(err(format!("{FIELD}.leeway_seconds"), leeway_message()));
    }
    let claims = claim_names(raw.claims)?;
    let cache = cache_limits(raw.cache)?;
    let budget = callout_budget(raw.budget)?;
    let shape = key_shape(raw.shape)?;
    Ok(KeyService {
        store_prefix: store_prefix(&raw.cluster, &authority, &raw.path, &key_header),
        cluster: raw.cluster,
        authority,
        path: raw.path,
        key_header,
        timeout_ms,
        signing,
        issuer,
        audience,
        claims,
        cache,
        budget,
        shape,
        leeway: raw.leeway_seconds,
    })
}

/// The keys of the service's access tokens: HS256 `keys` or `public_keys` with `algorithms`.
fn signing(
    keys: Option<Vec<RawKey>>,
    public_keys: Option<RawPublicKeys>,
    algorithms: Option<Vec<String>>,
    env: &Environment<'_>,
) -> Result<KeySource, ConfigError> {
    match (keys, public_keys) {
        (Some(_), Some(_)) => Err(err(
            FIELD,
            "exactly one of keys (HS256) and public_keys, not both",
        )),
        (Some(_), None) if algorithms.is_some() => Err(err(
            format!("{FIELD}.algorithms"),
            "only with public_keys (keys are HS256)",
        )),
        (Some(keys), None) if keys.is_empty() => Err(err(
            format!("{FIELD}.keys"),
            "must list at least one key (the service's access tokens are checked with them)",
        )),
        (Some(keys), None) => Ok(KeySource::Hmac(keyset(
            &format!("{FIELD}.keys"),
            keys,
            env,
        )?)),
        (None, Some(public)) => inline_key_source(FIELD, &public, algorithms.as_deref()),
        (None, None) => Err(err(
            FIELD,
            "keys (HS256) or public_keys is required: the service's access tokens are checked \
             with them",
        )),
    }
}

/// An origin-form path (RFC 9112 3.2.1) without a query: the callout asks exactly it.
fn path_ok(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_PATH
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

/// `key_header`, lower case (`_` read as `-`, as every configured header name).
fn key_header(text: &str) -> Result<String, ConfigError> {
    let field = format!("{FIELD}.key_header");
    if text.starts_with(':') {
        return Err(err(field, "must not be a pseudo-header"));
    }
    let name = HeaderName::parse(text).map_err(|m| err(field.as_str(), m))?;
    if FORBIDDEN_KEY_HEADERS.contains(&name.as_str()) {
        return Err(err(
            field,
            "must not be host, authorization, proxy-authorization, content-length or a \
             hop-by-hop header: those frame, route or authenticate the callout itself",
        ));
    }
    Ok(name.as_str().to_string())
}

/// `issuer` / `audience`: absent, or a non-empty string of at most 1024 bytes.
fn iss_aud(field: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_ISS_AUD => Err(err(
            format!("{FIELD}.{field}"),
            "must be 1 to 1024 bytes (omit it to not check it)",
        )),
        other => Ok(other),
    }
}

fn claim_names(raw: RawClaimNames) -> Result<ClaimNames, ConfigError> {
    let d = ClaimNames::default();
    let names = ClaimNames {
        kind: raw.kind.unwrap_or(d.kind),
        organization: raw.organization.unwrap_or(d.organization),
        project: raw.project.unwrap_or(d.project),
        products: raw.products.unwrap_or(d.products),
        write: raw.write.unwrap_or(d.write),
        referers: raw.referers.unwrap_or(d.referers),
        ips: raw.ips.unwrap_or(d.ips),
        id: raw.id.unwrap_or(d.id),
    };
    let all = [
        ("kind", &names.kind),
        ("organization", &names.organization),
        ("project", &names.project),
        ("products", &names.products),
        ("write", &names.write),
        ("referers", &names.referers),
        ("ips", &names.ips),
        ("id", &names.id),
    ];
    check_claim_names(FIELD, &all)?;
    Ok(names)
}

/// The claim names of a token devgate reads (`<section>.claims.<field>`, each given with its
/// field): 1 to 128 bytes, none a registered claim the token check reads itself, no two alike.
pub(super) fn check_claim_names(section: &str, all: &[(&str, &String)]) -> Result<(), ConfigError> {
    for (i, (field, name)) in all.iter().enumerate() {
        let field = format!("{section}.claims.{field}");
        if name.is_empty() || name.len() > 128 {
            return Err(err(field, "must be 1 to 128 bytes"));
        }
        if REGISTERED_CLAIMS.contains(&name.as_str()) {
            return Err(err(
                field,
                "must not be exp, nbf, iat, iss or aud (the token check reads those itself)",
            ));
        }
        if let Some((other, _)) = all.iter().take(i).find(|(_, n)| n == name) {
            return Err(err(
                field,
                format!("names the same claim as claims.{other}"),
            ));
        }
    }
    Ok(())
}

fn cache_limits(raw: RawServiceCache) -> Result<CacheLimits, ConfigError> {
    Ok(CacheLimits {
        entries: bounded_u32("cache.entries", raw.entries, &CACHE_SLOTS)?,
        rejections: bounded_u32("cache.rejections", raw.rejections, &CACHE_SLOTS)?,
        max_ttl_s: bounded(
            "cache.max_ttl_seconds",
            raw.max_ttl_seconds,
            &MAX_TTL_SECONDS,
            " seconds",
        )?,
        rejection_ttl_s: bounded(
            "cache.rejection_ttl_seconds",
            raw.rejection_ttl_seconds,
            &REJECTION_TTL_SECONDS,
            " seconds",
        )?,
        max_stale_s: bounded(
            "cache.max_stale_seconds",
            raw.max_stale_seconds,
            &SERVICE_MAX_STALE_SECONDS,
            " seconds",
        )?,
        retry_ms: bounded("cache.retry_ms", raw.retry_ms, &RETRY_MS, " milliseconds")?,
    })
}

fn callout_budget(raw: RawServiceBudget) -> Result<CalloutBudget, ConfigError> {
    Ok(CalloutBudget {
        per_second: bounded_u32("budget.per_second", raw.per_second, &CALLOUTS_PER_SECOND)?,
        burst: bounded_u32("budget.burst", raw.burst, &CALLOUT_BURST)?,
        in_flight: bounded_u32("budget.in_flight", raw.in_flight, &CALLOUTS_IN_FLIGHT)?,
        waiters: bounded_u32("budget.waiters", raw.waiters, &CALLOUT_WAITERS)?,
    })
}

fn key_shape(raw: RawKeyShape) -> Result<KeyShape, ConfigError> {
    let min_len = bounded_u32("shape.min_length", raw.min_length, &KEY_LENGTH)?;
    let max_len = bounded_u32("shape.max_length", raw.max_length, &KEY_LENGTH)?;
    if min_len > max_len {
        return Err(err(
            format!("{FIELD}.shape.min_length"),
            "must be at most max_length",
        ));
    }
    let (min_len, max_len) = (min_len as usize, max_len as usize);
    let public_prefix = raw.public_prefix.unwrap_or_default();
    let private_prefix = raw.private_prefix.unwrap_or_default();
    for (field, prefix) in [
        ("public_prefix", &public_prefix),
        ("private_prefix", &private_prefix),
    ] {
        let field = format!("{FIELD}.shape.{field}");
        let alphabet = prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        if prefix.len() > MAX_SHAPE_PREFIX || !alphabet {
            return Err(err(field, "at most 32 characters of A-Za-z0-9._~-"));
        }
        if prefix.len() >= max_len {
            return Err(err(
                field,
                "must be shorter than max_length (a key is the prefix and more)",
            ));
        }
        if KeyKind::of(prefix.as_bytes()).is_some() {
            return Err(err(
                field,
                "must not start with dgpk_ or dgsk_ (devgate checks those keys itself, so none \
                 would reach the service)",
            ));
        }
    }
    Ok(KeyShape {
        min_len,
        max_len,
        public_prefix,
        private_prefix,
    })
}

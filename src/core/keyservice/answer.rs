//! The key service's side of a callout: what devgate asks ([`callout`]) and what the answer
//! means ([`classify`]).
//!
//! | answer | meaning |
//! |---|---|
//! | 200 with a valid access token | the key, described by the token's claims |
//! | 401 | `key_rejected` (authoritative) |
//! | 403 | `key_forbidden` (authoritative) |
//! | 402 | `over_free_quota` (authoritative; `Retry-After` passed on) |
//! | 429 | `over_quota` (authoritative; `Retry-After` passed on) |
//! | anything else: no answer, a timeout, 5xx, another status, a body that is not an access token, a bad signature, claims that do not fit | **unavailable**: never a verdict on the key |
//!
//! The access token is a compact JWS, the body itself or the `access_token` member of a JSON
//! object. It is verified as devgate verifies its own: shape, header, `kid`, the signature over
//! the raw bytes ([`crate::core::keysource::KeySource`]), and only then its claims: `exp`
//! (required, with leeway), `nbf`/`iat` (with leeway), `iss` and `aud` when configured, and the
//! key's facts under the configured [`super::ClaimNames`], checked as strictly as the facts of a
//! key devgate signed ([`crate::core::apikey`]).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::core::apikey::{self, ApiKey, KeyKind, MAX_LIST};
use crate::core::callout::{Callout, CalloutAnswer, MAX_ANSWER_BODY};
use crate::core::codes::Reason;
use crate::core::net::{Cidr, CidrList};
use crate::core::token::MAX_TOKEN_LEN;

use super::{KeyService, Resolution};

/// Longest `Retry-After` passed on (seconds): a day.
pub const MAX_RETRY_AFTER: u64 = 86_400;

/// The callout that resolves `key`: `GET <path>` to the service's cluster, the key in the
/// configured header (never in the URL, so it never reaches an access log).
pub fn callout(service: &KeyService, key: &[u8]) -> Callout {
    Callout {
        cluster: service.cluster.clone(),
        headers: vec![
            (Cow::Borrowed(":method"), b"GET".to_vec()),
            (Cow::Borrowed(":path"), service.path.as_bytes().to_vec()),
            (
                Cow::Borrowed(":authority"),
                service.authority.as_bytes().to_vec(),
            ),
            (
                Cow::Borrowed("accept"),
                b"application/json, application/jwt".to_vec(),
            ),
            (Cow::Owned(service.key_header.clone()), key.to_vec()),
        ],
        timeout_ms: service.timeout_ms,
    }
}

/// What `answer` means for the key, at `now` (seconds since the epoch).
pub fn classify(service: &KeyService, answer: CalloutAnswer<'_>, now: u64) -> Resolution {
    let retry_after = answer.retry_after.and_then(retry_after_seconds);
    let rejected = |reason| Resolution::Rejected {
        reason,
        retry_after: None,
    };
    match answer.status {
        Some(200) => match resolved(service, answer.body, now) {
            Some(r) => r,
            None => Resolution::Unavailable,
        },
        Some(401) => rejected(Reason::KeyRejected),
        Some(403) => rejected(Reason::KeyForbidden),
        Some(402) => Resolution::Rejected {
            reason: Reason::OverFreeQuota,
            retry_after,
        },
        Some(429) => Resolution::Rejected {
            reason: Reason::OverQuota,
            retry_after,
        },
        _ => Resolution::Unavailable,
    }
}

/// `Retry-After` in delta-seconds (an HTTP date is not passed on), at most a day.
pub fn retry_after_seconds(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(v).ok()?.parse().ok()?;
    Some(n.min(MAX_RETRY_AFTER))
}

/// The access token in a 200's body: the body itself, or its JSON `access_token` member.
fn token_of(body: &[u8]) -> Option<Cow<'_, [u8]>> {
    if body.len() > MAX_ANSWER_BODY {
        return None;
    }
    let trimmed = body.trim_ascii();
    if trimmed.first() == Some(&b'{') {
        let object: Map<String, Value> = serde_json::from_slice(trimmed).ok()?;
        match object.get("access_token") {
            Some(Value::String(t)) => Some(Cow::Owned(t.as_bytes().to_vec())),
            _ => None,
        }
    } else {
        Some(Cow::Borrowed(trimmed))
    }
}

fn resolved(service: &KeyService, body: &[u8], now: u64) -> Option<Resolution> {
    let token = token_of(body)?;
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = service.signing.authenticate(&token).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
    let leeway = service.leeway;
    let exp = claims.get("exp")?.as_u64()?;
    if now >= exp.saturating_add(leeway) {
        return None;
    }
    let late = now.saturating_add(leeway);
    for name in ["nbf", "iat"] {
        if let Some(v) = claims.get(name) {
            if late < v.as_u64()? {
                return None;
            }
        }
    }
    if let Some(iss) = &service.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
            return None;
        }
    }
    if let Some(aud) = &service.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud.as_str())),
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    let key = facts(service, &claims, exp)?;
    let fresh_until = exp.min(now.saturating_add(service.cache.max_ttl_s));
    Some(Resolution::Resolved { key, fresh_until })
}

/// The key's facts under the configured claim names, as strict as a devgate key's.
fn facts(service: &KeyService, claims: &Map<String, Value>, exp: u64) -> Option<ApiKey> {
    let names = &service.claims;
    let text = |name: &str| -> Option<String> {
        let s = claims.get(name)?.as_str()?;
        apikey::is_valid_id(s).then(|| s.to_string())
    };
    let list = |name: &str| -> Option<Vec<String>> {
        match claims.get(name) {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_LIST => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => None,
        }
    };
    let kind = match claims.get(&names.kind)?.as_str()? {
        "public_key" | "public" => KeyKind::Public,
        "private_key" | "private" => KeyKind::Private,
        _ => return None,
    };
    let write = match claims.get(&names.write) {
        None | Some(Value::Null) => false,
        Some(v) => v.as_bool()?,
    };
    let products = list(&names.products)?;
    let referers = list(&names.referers)?;
    let ips = list(&names.ips)?;
    let ok = !products.is_empty()
        && products.iter().all(|p| apikey::is_valid_id(p))
        && referers.iter().all(|r| apikey::is_valid_referer_pattern(r))
        && match kind {
            KeyKind::Public => !write && ips.is_empty(),
            KeyKind::Private => referers.is_empty(),
        };
    if !ok {
        return None;
    }
    let ips = ips
        .iter()
        .map(|s| Cidr::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(ApiKey {
        kind,
        id: text(&names.id)?,
        org: text(&names.organization)?,
        project: text(&names.project)?,
        products,
        write,
        referers,
        ips: CidrList(ips),
        exp: Some(exp),
    })
}

//! Signed assertions from the team's edge: the header, the signature against the issuer's keys
//! (`core::jose`), the claims (`iss`, `aud`, `exp`, `nbf`, `iat`), the developer claim and the
//! mapping.
//!
//! Order, cheapest and least trusting first: the assertion found (one value, every spelling of
//! its header, or `Authorization: Bearer`); the peer in `allow_from`; the verified-assertion
//! cache; the keys (inline, or fetched: an unknown `kid` or no usable keys plans one fetch and
//! the request waits for it); the signature ([`jose::verify`], which checks size, shape, `alg`
//! and `kid` first); and only then the payload's claims ([`check_claims`]). The assertion
//! header itself is left for the application (it may want the other claims; it is signed, so it
//! cannot be forged on the way).

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::core::codes::{Reason, Source};
use crate::core::jose::{self, PublicKeys, Rules, Verified};
use crate::core::token::{is_valid_subject, TokenError};

use super::super::credential::bearer_token;
use super::super::decision::{Identity, Request};
use super::{proxy, AssertionSource, Carrier, EdgeKeys, KeyLocation, KeysAt, Profile};

/// What one assertion source says of a request that carries its assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The assertion proves this developer.
    Developer(Identity),
    /// Refused, for this reason.
    Refused(Reason),
    /// The issuer's keys must be fetched first (a fetch is planned): the decision asks.
    Ask,
}

const MALFORMED: Reason = Reason::Token(TokenError::Malformed);

/// The assertion `src` reads from `req`: `None` when absent, a refusal when there are several.
pub(super) fn find<'a>(
    src: &AssertionSource,
    req: &Request<'a>,
) -> Option<Result<&'a [u8], Reason>> {
    let found: Vec<&'a [u8]> = match &src.carrier {
        Carrier::Header(name) => proxy::values(req, name),
        // Envoy joins repeated Authorization headers with ','; a token never holds one.
        Carrier::Bearer => req
            .headers
            .iter()
            .filter(|(n, _)| *n == b"authorization")
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .filter_map(bearer_token)
            .collect(),
    };
    match found.as_slice() {
        [] => None,
        [one] if !one.is_empty() => Some(Ok(*one)),
        _ => Some(Err(MALFORMED)),
    }
}

/// Runs source `index` (`src`) on `req`. `None`: the request carries no such assertion.
pub fn check(
    src: &AssertionSource,
    index: usize,
    req: &Request<'_>,
    peer_ip: Option<IpAddr>,
    keys: Option<&dyn EdgeKeys>,
) -> Option<Found> {
    let token = match find(src, req)? {
        Ok(token) => token,
        Err(reason) => return Some(Found::Refused(reason)),
    };
    // Checked first: a peer the assertion is not honoured from never makes devgate fetch keys.
    if let Some(nets) = &src.allow_from {
        if !peer_ip.is_some_and(|ip| nets.contains(ip)) {
            return Some(Found::Refused(Reason::NetworkDenied));
        }
    }
    if let Some(id) = keys.and_then(|k| k.cached(index, token, req.now)) {
        return Some(Found::Developer(id));
    }
    let fetched = !matches!(src.keys, KeyLocation::Inline(_));
    let public: &PublicKeys = match (&src.keys, keys) {
        (KeyLocation::Inline(k), _) => k,
        (KeyLocation::Jwks(_) | KeyLocation::PemPerKid(_), None) => {
            return Some(Found::Refused(Reason::EdgeKeysUnavailable))
        }
        (KeyLocation::Jwks(_) | KeyLocation::PemPerKid(_), Some(k)) => match k.keys(index) {
            KeysAt::Ready(public) => public,
            KeysAt::Unavailable => {
                let kid = jose::unverified_kid(token, src.padded);
                return Some(match k.want(index, kid.as_deref()) {
                    true => Found::Ask,
                    false => Found::Refused(Reason::EdgeKeysUnavailable),
                });
            }
        },
    };
    let rules = Rules {
        algorithms: &src.algorithms,
        padded: src.padded,
    };
    let verified = match jose::verify(token, public, &rules) {
        Ok(v) => v,
        Err(TokenError::UnknownKid) if fetched => {
            // A key the set does not have yet (rotation): one refetch, rate-limited by the keys.
            let kid = jose::unverified_kid(token, src.padded);
            let wants = keys.is_some_and(|k| k.want(index, kid.as_deref()));
            return Some(match wants {
                true => Found::Ask,
                false => Found::Refused(Reason::Token(TokenError::UnknownKid)),
            });
        }
        Err(e) => return Some(Found::Refused(Reason::Token(e))),
    };
    Some(match check_claims(src, &verified, req.now) {
        Ok((identity, exp)) => {
            if let Some(k) = keys {
                k.remember(index, token, &identity, exp);
            }
            Found::Developer(identity)
        }
        Err(reason) => Found::Refused(reason),
    })
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional), as whole seconds. `Err`: not a
/// non-negative number.
fn numeric_date(value: &Value) -> Result<u64, Reason> {
    if let Some(n) = value.as_u64() {
        return Ok(n);
    }
    match value.as_f64() {
        // `as` saturates: a finite, non-negative value far in the future stays far.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f.floor() as u64),
        _ => Err(Reason::BadClaim),
    }
}

/// The optional NumericDate claim `name`.
fn optional_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, Reason> {
    claims.get(name).map(numeric_date).transpose()
}

/// Whether `aud` (a string, or an array of strings) names one of `audiences`. A value of
/// another type, or an array holding a non-string, is `bad_claim`.
fn audience_ok(aud: &Value, audiences: &[String]) -> Result<bool, Reason> {
    match aud {
        Value::String(s) => Ok(audiences.iter().any(|a| a == s)),
        Value::Array(items) => {
            let mut ok = false;
            for item in items {
                let s = item.as_str().ok_or(Reason::BadClaim)?;
                ok |= audiences.iter().any(|a| a == s);
            }
            Ok(ok)
        }
        _ => Err(Reason::BadClaim),
    }
}

/// The claims of an assertion whose signature verified: the developer and the assertion's
/// `exp`, or why not. Checks, in order: AWS ALB's header `signer` (`wrong_signer`); `iss`
/// equal to the source's issuer (`wrong_issuer`); the audience (`aud` naming one of
/// `audiences`; for AWS ALB, whose payload has none, the signed header's `client`:
/// `wrong_audience`); `exp` required, `nbf` and `iat` optional, each a number, with `leeway`
/// (`expired`, `not_yet_valid`); the developer claim a string that is a valid header value
/// (`bad_claim`); the groups claim, when the mapping lists groups, absent or an array of
/// strings (`bad_claim`); then the mapping (`not_a_developer`). A claim of the wrong type is a
/// refusal (`bad_claim`), never a crash.
pub fn check_claims(
    src: &AssertionSource,
    verified: &Verified,
    now: u64,
) -> Result<(Identity, u64), Reason> {
    let claims: Map<String, Value> =
        serde_json::from_slice(&verified.payload).map_err(|_| MALFORMED)?;
    let alb = src.profile == Profile::AwsAlb;
    if alb || src.signer.is_some() {
        let signer_ok = match (&src.signer, &verified.signer) {
            (Some(want), Some(got)) => want == got,
            _ => false,
        };
        if !signer_ok {
            return Err(Reason::WrongSigner);
        }
    }
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == src.issuer => {}
        _ => return Err(Reason::WrongIssuer),
    }
    let audience_ok = if alb {
        verified
            .client
            .as_ref()
            .is_some_and(|c| src.audiences.iter().any(|a| a == c))
    } else {
        match claims.get("aud") {
            Some(aud) => audience_ok(aud, &src.audiences)?,
            None => false,
        }
    };
    if !audience_ok {
        return Err(Reason::WrongAudience);
    }
    let exp = numeric_date(claims.get("exp").ok_or(Reason::BadClaim)?)?;
    if now >= exp.saturating_add(src.leeway) {
        return Err(Reason::Token(TokenError::Expired));
    }
    let early = |at: Option<u64>| at.is_some_and(|t| now.saturating_add(src.leeway) < t);
    if early(optional_date(&claims, "nbf")?) || early(optional_date(&claims, "iat")?) {
        return Err(Reason::Token(TokenError::NotYetValid));
    }
    let name = match claims.get(&src.claim) {
        Some(Value::String(name)) if is_valid_subject(name) => name,
        _ => return Err(Reason::BadClaim),
    };
    let mut groups: Vec<&str> = Vec::new();
    if src.developers.uses_groups() {
        let claim = src.developers.groups_claim.as_deref().unwrap_or("groups");
        match claims.get(claim) {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    groups.push(item.as_str().ok_or(Reason::BadClaim)?);
                }
            }
            Some(_) => return Err(Reason::BadClaim),
        }
    }
    if !src.developers.admits(name, &groups) {
        return Err(Reason::NotADeveloper);
    }
    let identity = Identity {
        name: name.clone(),
        source: Source::Assertion,
    };
    Ok((identity, exp))
}

//! API routes: the API key of a request, its placement, products, referers, networks and the
//! endpoint-mode table, and the headers that pass the project reference on.

use std::borrow::Cow;

use crate::core::apikey::{ApiKey, KeyKind};
use crate::core::codes::Reason;
use crate::core::keyservice::{self, KeyService, Lookup};
use crate::core::policy::{ApiPolicy, ApiRoute, Mode};
use crate::core::token::TokenError;
use crate::core::usertoken::{self, UserRoute, UserTokens};
use crate::core::{apikey, headers, query, source};

use super::credential::bearer_token;

use super::decision::{Ctx, Edits};

/// Where an API key was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyPlace {
    QueryKey,
    QueryPrivateKey,
    Header,
}

/// Why an API key did not admit the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyStop {
    /// Refused; with the seconds to send in `Retry-After`, for over-quota answers.
    Deny(Reason, Option<u64>),
    /// Only the key service can tell, and nothing usable is cached.
    Ask,
}

impl From<Reason> for KeyStop {
    fn from(reason: Reason) -> KeyStop {
        KeyStop::Deny(reason, None)
    }
}

/// Reads are GET, HEAD and OPTIONS; every other method (unknown ones too) is a write.
pub(super) fn is_read(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS")
}

pub(super) fn need_write(key: &ApiKey) -> Result<(), Reason> {
    match (key.kind, key.write) {
        (KeyKind::Public, _) => Err(Reason::PrivateKeyRequired),
        (KeyKind::Private, false) => Err(Reason::WriteNeeded),
        (KeyKind::Private, true) => Ok(()),
        (KeyKind::User, _) => Err(Reason::PrivateKeyRequired),
    }
}

/// The endpoint-mode table (README, "API keys").
pub fn mode_allows(mode: Mode, method: &[u8], key: &ApiKey) -> Result<(), Reason> {
    match mode {
        Mode::ReadWrite if is_read(method) => Ok(()),
        Mode::ReadWrite => need_write(key),
        Mode::ReadOnly if is_read(method) || method == b"POST" => Ok(()),
        Mode::ReadOnly => Err(Reason::MethodNotAllowed),
        Mode::WriteOnly => need_write(key),
    }
}

/// Checks the API key of a request on an API route, decided as `method`: the key's kind and
/// the edits that pass the project reference on and take the key out.
pub(super) fn api_key<'p>(
    api: &'p ApiPolicy,
    route: &ApiRoute,
    method: &[u8],
    ctx: &Ctx<'_, '_, '_>,
) -> Result<(KeyKind, Edits<'p>), KeyStop> {
    let req = ctx.req;
    let mut edits = Edits::default();
    let raw_path = req.header(b":path").unwrap_or_default();
    let (_, query) = query::split(raw_path);
    let mut found: Vec<(KeyPlace, Vec<u8>)> = query
        .map(|q| query::find(q, &["key", "private_key"]))
        .unwrap_or_default()
        .into_iter()
        .map(|(name, v)| {
            let place = if name == "key" {
                KeyPlace::QueryKey
            } else {
                KeyPlace::QueryPrivateKey
            };
            (place, v)
        })
        .collect();
    // Every spelling (case, `_` for `-`) is the same header to some upstream, so every spelling
    // is read as a credential and removed.
    let spellings = headers::spellings_present(req.headers, &[&api.key_header]);
    for (_, v) in req
        .headers
        .iter()
        .filter(|(n, _)| api.key_header.is_spelling(n))
    {
        // Envoy joins repeated headers with ','; a key never contains one.
        for part in v
            .split(|&b| b == b',')
            .filter(|p| !p.trim_ascii().is_empty())
        {
            found.push((KeyPlace::Header, part.trim_ascii().to_vec()));
        }
    }
    if api.strip_key {
        if let Some(stripped) = query::remove(raw_path, &["key", "private_key"]) {
            edits.set.push((":path", stripped));
        }
        edits
            .remove
            .extend(spellings.iter().map(|n| Cow::Owned(n.to_vec())));
    }
    if let (Some(user_route), Some(users)) = (&route.user_tokens, &api.user_tokens) {
        if let Some(bearer) = user_bearer(req.headers)? {
            if !found.is_empty() {
                return Err(Reason::AmbiguousCredential.into());
            }
            user_token(
                api, users, user_route, route, bearer, method, ctx, &mut edits,
            )?;
            return Ok((KeyKind::User, edits));
        }
    }
    let (place, text) = match found.as_slice() {
        [] => return Err(Reason::NoCredential.into()),
        [one] => one,
        _ => return Err(Reason::AmbiguousCredential.into()),
    };
    let (key, stale) = match (KeyKind::of(text), &api.service) {
        (Some(_), _) | (None, None) => match &api.keys {
            Some(keys) => (
                apikey::verify(text, keys, req.now, api.leeway).map_err(Reason::Token)?,
                false,
            ),
            None => return Err(Reason::Token(TokenError::Malformed).into()),
        },
        (None, Some(service)) => resolved(service, *place, text, ctx)?,
    };
    let placed_right = match key.kind {
        KeyKind::Public => *place == KeyPlace::QueryKey,
        KeyKind::Private => *place != KeyPlace::QueryKey,
        KeyKind::User => false,
    };
    if !placed_right {
        return Err(Reason::KeyMisplaced.into());
    }
    if api.revoked.contains(&key.id) {
        return Err(Reason::Revoked.into());
    }
    if let Some(r) = ctx.revocation {
        if r.refuse {
            return Err(Reason::RevocationStale.into());
        }
        if r.key_revoked(&key.id) {
            return Err(Reason::Revoked.into());
        }
    }
    if !key.products.contains(&route.product) {
        return Err(Reason::WrongProduct.into());
    }
    let peer_ip = ctx.peer_ip;
    match key.kind {
        KeyKind::Public if !key.referers.is_empty() => {
            // Every page header the browser sent must name an allowed host, and one must exist.
            let pages: Vec<Option<String>> = req
                .headers
                .iter()
                .filter(|(n, _)| *n == b"origin" || *n == b"referer")
                .map(|(_, v)| apikey::page_host(v))
                .collect();
            let ok = !pages.is_empty()
                && pages.iter().all(|h| {
                    h.as_deref()
                        .is_some_and(|h| apikey::referer_allowed(&key.referers, h))
                });
            if !ok {
                return Err(Reason::RefererDenied.into());
            }
        }
        KeyKind::Private if !apikey::ip_allowed(&key, peer_ip) => {
            return Err(Reason::NetworkDenied.into())
        }
        _ => {}
    }
    mode_allows(route.mode, method, &key)?;
    if stale {
        edits
            .set
            .push((api.headers.stale.as_str(), b"true".to_vec()));
    }

    let h = &api.headers;
    let internal = peer_ip.is_some_and(|ip| api.internal_from.contains(ip));
    for (name, value) in [
        (&h.organization, key.org.as_str()),
        (&h.project, key.project.as_str()),
        (&h.kind, key.kind.as_str()),
        (&h.key_id, key.id.as_str()),
        (&h.count, if internal { "false" } else { "true" }),
    ] {
        edits.set.push((name.as_str(), value.as_bytes().to_vec()));
    }
    if let Some(src) = source::of(req.headers) {
        edits.set.push((h.source.as_str(), src.to_vec()));
    }
    Ok((key.kind, edits))
}

/// The user token in `Authorization: Bearer`, if any; a Bearer element beside any other
/// `Authorization` element is ambiguous.
fn user_bearer<'a>(headers: &[(&'a [u8], &'a [u8])]) -> Result<Option<&'a [u8]>, Reason> {
    let mut elements = headers
        .iter()
        .filter(|(n, _)| *n == b"authorization")
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .filter(|e| !e.trim_ascii().is_empty());
    let first = elements.next().and_then(bearer_token);
    let mut more = false;
    let mut rest_has_bearer = false;
    for e in elements {
        more = true;
        rest_has_bearer |= bearer_token(e).is_some();
    }
    if more && (first.is_some() || rest_has_bearer) {
        return Err(Reason::AmbiguousCredential);
    }
    Ok(first)
}

/// Checks a user token on a route that takes them: verification, path parameters, the
/// requirement, the origin, revocation and the route's method limits, then the upstream
/// headers (kind `user_token`, organization and project from the path, the user's id).
#[allow(clippy::too_many_arguments)]
fn user_token<'p>(
    api: &'p ApiPolicy,
    users: &UserTokens,
    user_route: &UserRoute,
    route: &ApiRoute,
    bearer: &[u8],
    method: &[u8],
    ctx: &Ctx<'_, '_, '_>,
    edits: &mut Edits<'p>,
) -> Result<(), Reason> {
    let req = ctx.req;
    let user = usertoken::verify(users, bearer, req.now).map_err(Reason::Token)?;
    let raw_path = req.header(b":path").unwrap_or_default();
    let (raw, _) = query::split(raw_path);
    let (org, project) = usertoken::params(user_route, raw, &ctx.canonical)?;
    usertoken::allowed(user_route.require, &user, org)?;
    let origins = req
        .headers
        .iter()
        .filter(|(n, _)| *n == b"origin")
        .map(|(_, v)| *v);
    if !usertoken::origin_ok(&user_route.origins, origins) {
        return Err(Reason::OriginDenied);
    }
    if let Some(r) = ctx.revocation {
        if r.refuse {
            return Err(Reason::RevocationStale);
        }
        if r.token_revoked(user.jti.as_deref()) {
            return Err(Reason::Revoked);
        }
    }
    if route.mode == Mode::ReadOnly && !is_read(method) && method != b"POST" {
        return Err(Reason::MethodNotAllowed);
    }
    let h = &api.headers;
    let internal = ctx.peer_ip.is_some_and(|ip| api.internal_from.contains(ip));
    for (name, value) in [
        (&h.organization, org),
        (&h.project, project),
        (&h.kind, Some(KeyKind::User.as_str())),
        (&h.user, Some(user.id.as_str())),
        (&h.count, Some(if internal { "false" } else { "true" })),
    ] {
        if let Some(value) = value {
            edits.set.push((name.as_str(), value.as_bytes().to_vec()));
        }
    }
    if let Some(src) = source::of(req.headers) {
        edits.set.push((h.source.as_str(), src.to_vec()));
    }
    Ok(())
}

/// A key devgate did not sign, as the key service's answer (cached or just fetched) describes
/// it: shape-checked first, so junk never costs a callout. `true`: served stale.
fn resolved(
    service: &KeyService,
    place: KeyPlace,
    text: &[u8],
    ctx: &Ctx<'_, '_, '_>,
) -> Result<(ApiKey, bool), KeyStop> {
    let kind = if place == KeyPlace::QueryKey {
        KeyKind::Public
    } else {
        KeyKind::Private
    };
    if !keyservice::shape_ok(&service.shape, kind, text) {
        return Err(Reason::Token(TokenError::Malformed).into());
    }
    let Some(resolver) = ctx.keys else {
        return Err(Reason::KeyServiceUnavailable.into());
    };
    match resolver.resolve(kind, text) {
        Lookup::Known { key, stale } => Ok((key, stale)),
        Lookup::Rejected {
            reason,
            retry_after,
        } => Err(KeyStop::Deny(reason, retry_after)),
        Lookup::Unavailable => Err(Reason::KeyServiceUnavailable.into()),
        Lookup::Ask => Err(KeyStop::Ask),
    }
}

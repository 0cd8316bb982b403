//! Edits: keeping devgate's credentials and headers from reaching the upstream (headers and
//! trailers).

use std::borrow::Cow;

use crate::core::codes::Source;
use crate::core::policy::{Policy, TokenPolicy};
use crate::core::{cookie, headers};

use super::credential::Credential;
use super::decision::{Edits, Request};

/// Removes `Authorization` (devgate's Bearer token travels there).
pub(super) fn strip_bearer(edits: &mut Edits<'_>) {
    edits.remove.push(Cow::Borrowed(b"authorization"));
}

/// devgate's own cookies, as the upstream must never see them: the token cookie (unless
/// `tokens.strip_credential` is off) and the session cookie.
pub(super) fn own_cookies(policy: &Policy) -> [&str; 2] {
    let token = policy
        .tokens
        .as_ref()
        .filter(|t| t.strip_credential)
        .and_then(|t| t.cookie.as_deref());
    let session = policy.login.as_ref().map(|l| l.cookie.as_str());
    [token.unwrap_or_default(), session.unwrap_or_default()]
}

/// Rewrites the `Cookie` headers without devgate's own cookies in any spelling an upstream may
/// read as them ([`cookie::scrub`]: also after a comma, any case, percent-encoded, ...), keeping
/// every other cookie. Runs on every allowed request, whether or not devgate found a credential;
/// a header without such a spelling costs a scan and no allocation.
pub(super) fn strip_cookies(policy: &Policy, req: &Request<'_>, edits: &mut Edits<'_>) {
    let names = own_cookies(policy);
    if names.iter().all(|n| n.is_empty()) {
        return;
    }
    let cookies = || {
        req.headers
            .iter()
            .filter(|(n, _)| *n == b"cookie")
            .map(|(_, v)| *v)
    };
    // One `Cookie` header (HTTP/1.1 always): its rewrite is the new value, nothing to join.
    if let (Some(only), None) = (cookies().next(), cookies().nth(1)) {
        if let Some(s) = cookie::scrub(only, &names) {
            edits.remove.push(Cow::Borrowed(b"cookie"));
            if !s.is_empty() {
                edits.set.push(("cookie", s));
            }
        }
        return;
    }
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut rewritten = false;
    for (i, v) in cookies().enumerate() {
        match (cookie::scrub(v, &names), rewritten) {
            (Some(s), false) => {
                // The headers before the first one with a devgate cookie stay as they were.
                rewritten = true;
                kept.extend(cookies().take(i).map(<[u8]>::to_vec));
                kept.push(s);
            }
            (Some(s), true) => kept.push(s),
            (None, true) => kept.push(v.to_vec()),
            (None, false) => {}
        }
    }
    if !rewritten {
        return;
    }
    kept.retain(|v| !v.is_empty());
    edits.remove.push(Cow::Borrowed(b"cookie"));
    if !kept.is_empty() {
        edits.set.push(("cookie", kept.join(&b"; "[..])));
    }
}

/// Header edits that keep devgate's Bearer credential from reaching the upstream (its cookie
/// goes in [`strip_cookies`], with every other spelling of it).
pub(super) fn strip_credential(
    tokens: &TokenPolicy,
    cred: Credential<'_>,
    ours: bool,
    edits: &mut Edits<'_>,
) {
    if tokens.strip_credential && cred.source == Source::Bearer && ours {
        strip_bearer(edits);
    }
}

/// On an ambiguous request: removes every place a devgate Bearer credential can be (its
/// cookies go in [`strip_cookies`]).
pub(super) fn strip_all_credentials(
    tokens: &TokenPolicy,
    req: &Request<'_>,
    edits: &mut Edits<'_>,
) {
    if tokens.strip_credential
        && tokens.bearer
        && req.headers.iter().any(|(n, _)| *n == b"authorization")
    {
        strip_bearer(edits);
    }
}

/// The request trailers to remove before the upstream: every spelling of the identity header,
/// of the API headers devgate sets and of the API key header, as the host holds them. HTTP/2
/// and chunked HTTP/1.1 requests can carry "headers" after the body, and upstreams that merge
/// trailers into headers would read these as devgate's. Empty (no allocation) when none.
pub fn trailer_removals<'a>(policy: &Policy, trailers: &[(&'a [u8], &'a [u8])]) -> Vec<&'a [u8]> {
    let mut names = vec![&policy.header];
    if let Some(api) = &policy.api {
        names.extend(api.headers.all());
        names.push(&api.key_header);
    }
    headers::spellings_present(trailers, &names)
}

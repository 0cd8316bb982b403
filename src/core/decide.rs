//! The decision itself: a request under every method it may run as, one answer.

use std::borrow::Cow;

use crate::core::codes::{Reason, Source};
use crate::core::edge::{self, EdgeKeys, EdgeVerdict};
use crate::core::keyservice::Resolver;
use crate::core::net::NetVerdict;
use crate::core::policy::{Policy, RuleKind};
use crate::core::revocation::Revocation;
use crate::core::{headers, login, method, net, path, session};

use super::api::{api_key, KeyStop};
use super::credential::{check_token, find_credential, session_cookie, SessionCookie};
use super::decision::{deny, Ctx, Decision, Edits, Identity, Request, Response};
use super::edits::{strip_all_credentials, strip_cookies, strip_credential};

/// Decides one request.
pub fn decide<'p>(policy: &'p Policy, req: &Request<'_>) -> Decision<'p> {
    decide_with(policy, req, None)
}

/// [`decide`] with the revocation list's state (`None`: no `revocation` configured).
///
/// The request is decided under its wire method and under every method an upstream framework
/// may execute it as ([`method::candidates`]: override headers, `_method`, form POSTs, whose
/// body is taken to ask for PUT, PATCH and DELETE: [`decide_form`] reads it instead); the
/// first refusal wins, the wire method's first. Otherwise the wire method's answer (its edits)
/// goes on. A request with no override is decided once.
pub fn decide_with<'p>(
    policy: &'p Policy,
    req: &Request<'_>,
    revocation: Option<Revocation<'_>>,
) -> Decision<'p> {
    decide_keyed(policy, req, revocation, None)
}

/// [`decide_with`] with what is known of keys the key service resolves.
pub fn decide_keyed<'p>(
    policy: &'p Policy,
    req: &Request<'_>,
    revocation: Option<Revocation<'_>>,
    keys: Option<&dyn Resolver>,
) -> Decision<'p> {
    let views = Views {
        revocation,
        keys,
        edge: None,
    };
    decide_all(policy, req, views, false).0
}

/// What a decision sees beyond the request: the worker's views of state other requests share.
#[derive(Clone, Copy, Default)]
pub struct Views<'r> {
    /// The revocation list's state (`None`: no `revocation` configured).
    pub revocation: Option<Revocation<'r>>,
    /// What is known of keys the key service resolves (`None`: no `api.service`, or a caller
    /// without a cache).
    pub keys: Option<&'r dyn Resolver>,
    /// Fetched edge keys and the verified-assertion cache (`None`: a caller without them:
    /// inline keys still verify, fetched ones are unavailable).
    pub edge: Option<&'r dyn EdgeKeys>,
}

/// The decision with every view, as the stream makes it: [`decide_form`] when `read_form`,
/// [`decide_keyed`] otherwise.
pub fn decide_views<'p>(
    policy: &'p Policy,
    req: &Request<'_>,
    views: Views<'_>,
    read_form: bool,
) -> (Decision<'p>, Option<FormVerdicts>) {
    decide_all(policy, req, views, read_form)
}

/// How a form POST is decided once its body is read: the refusal, if any, of each method its
/// `_method` may ask for ([`decide_form`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormVerdicts {
    /// The answer when the body cannot be read: the refusal [`decide_keyed`] gives.
    strict: (Reason, Response),
    /// The methods the policy tells apart that are refused, each with its refusal.
    refused: Vec<(Vec<u8>, Reason, Response)>,
}

impl FormVerdicts {
    /// The refusal of the request when its body cannot be read (too large, unreadable).
    pub fn strict(&self) -> (Reason, Response) {
        self.strict.clone()
    }

    /// The refusal of the request when its form body's `_method` values are `methods` (as
    /// sent): the first refused one's; `None`: allowed (no `_method`, or only allowed ones).
    pub fn refusal(&self, policy: &Policy, methods: &[Vec<u8>]) -> Option<(Reason, Response)> {
        methods.iter().find_map(|m| {
            let m = method::as_listed(policy, m)?;
            self.refused
                .iter()
                .find(|(r, _, _)| *r == m)
                .map(|(_, reason, response)| (*reason, response.clone()))
        })
    }
}

/// [`decide_keyed`] for a request whose body devgate can read: a form POST refused only under
/// the methods a body's `_method` stands for is allowed as its wire method, with the
/// [`FormVerdicts`] that decide it once its body is read. Every other request: `None`, and the
/// decision [`decide_keyed`] gives.
pub fn decide_form<'p>(
    policy: &'p Policy,
    req: &Request<'_>,
    revocation: Option<Revocation<'_>>,
    keys: Option<&dyn Resolver>,
) -> (Decision<'p>, Option<FormVerdicts>) {
    let views = Views {
        revocation,
        keys,
        edge: None,
    };
    decide_all(policy, req, views, true)
}

fn decide_all<'p>(
    policy: &'p Policy,
    req: &Request<'_>,
    views: Views<'_>,
    read_form: bool,
) -> (Decision<'p>, Option<FormVerdicts>) {
    let canonical = match req.header(b":path").map(path::canonical) {
        Some(Ok(c)) => c,
        Some(Err(_)) | None => return (deny(Reason::BadPath, policy), None),
    };
    // The login mount is devgate's own: answered locally, whatever the rules say.
    if let Some(ep) = policy
        .login
        .as_ref()
        .and_then(|l| session::endpoint(l, &canonical))
    {
        return (Decision::Login(ep), None);
    }
    let mut ctx = Ctx::new(policy, req, canonical, views.revocation, views.keys);
    // The edge sources do not depend on the method: run once, whatever methods are decided.
    if let Some(e) = &policy.edge {
        ctx.edge = edge::identify(e, req, ctx.peer_ip, views.edge);
    }
    let wire = req.header(b":method").unwrap_or_default();
    let decision = decide_as(&ctx, wire);
    if !matches!(decision, Decision::Allow { .. }) {
        return (decision, None);
    }
    let (candidates, overrides) = method::split_candidates(policy, req, wire);
    for (i, method) in candidates.iter().enumerate() {
        let other = decide_as(&ctx, method);
        match other {
            Decision::Deny { reason, response } if read_form && i >= overrides => {
                // Only the methods a form body's `_method` stands for are refused: the body
                // tells which one, if any, the request asks for.
                let strict = (reason, response);
                return match form_verdicts(&ctx, wire, strict.clone()) {
                    Some(verdicts) => (decision, Some(verdicts)),
                    None => (deny_with(strict), None),
                };
            }
            Decision::Deny { .. } | Decision::Ask => return (other, None),
            Decision::Allow { .. } | Decision::Login(_) => {}
        }
    }
    (decision, None)
}

fn deny_with<'p>((reason, response): (Reason, Response)) -> Decision<'p> {
    Decision::Deny { reason, response }
}

/// The refusal of every method a form body's `_method` may ask for ([`method::form_methods`]);
/// `None` when one of them needs the key service (the request is then decided strictly).
fn form_verdicts(
    ctx: &Ctx<'_, '_, '_>,
    wire: &[u8],
    strict: (Reason, Response),
) -> Option<FormVerdicts> {
    let mut refused = Vec::new();
    for m in method::form_methods(ctx.policy, wire)? {
        match decide_as(ctx, &m) {
            Decision::Deny { reason, response } => refused.push((m, reason, response)),
            Decision::Ask | Decision::Login(_) => return None,
            Decision::Allow { .. } => {}
        }
    }
    Some(FormVerdicts { strict, refused })
}

/// Decides the request as if its method were `method`.
fn decide_as<'p>(ctx: &Ctx<'p, '_, '_>, method: &[u8]) -> Decision<'p> {
    let (policy, req) = (ctx.policy, ctx.req);
    let route = policy.route(method, &ctx.canonical);
    let protected = route == Some(RuleKind::Protect);

    let verdict = ctx.verdict;
    let by_network = match verdict {
        NetVerdict::Developer(ip) => Some(Identity {
            name: net::ip_text(ip),
            source: Source::Network,
        }),
        NetVerdict::Denied
        | NetVerdict::NotAllowed
        | NetVerdict::Forwarded
        | NetVerdict::Unknown => None,
    };

    let mut edits = Edits::default();
    // A token names a person, so it is preferred to the address; a bad one never locks out a
    // developer the network rule already admits, and never admits anyone by itself.
    let mut refusal = Reason::NoCredential;
    // A Bearer token devgate refused before it named one of its keys may be an edge source's
    // (an OIDC ID token): then the edge's refusal, if any, is the one to give.
    let mut foreign_bearer = false;
    let mut identity = None;
    let mut expired = false;
    let session = match &policy.login {
        Some(login) => match session_cookie(login, ctx) {
            Ok(SessionCookie::Expired) => {
                expired = true;
                Ok(None)
            }
            Ok(SessionCookie::Absent) => Ok(None),
            Ok(SessionCookie::Checked(verdict)) => Ok(Some(verdict)),
            Err(reason) => Err(reason),
        },
        None => Ok(None),
    };
    let token = match &policy.tokens {
        Some(tokens) => find_credential(tokens, req).map(|c| c.map(|c| (tokens, c))),
        None => Ok(None),
    };
    match (session, token) {
        (Err(reason), _) | (_, Err(reason)) => {
            // Whatever the pieces were, none of them goes upstream.
            if let Some(tokens) = &policy.tokens {
                strip_all_credentials(tokens, req, &mut edits);
            }
            refusal = reason;
        }
        (Ok(Some(_)), Ok(Some(_))) => {
            if let Some(tokens) = &policy.tokens {
                strip_all_credentials(tokens, req, &mut edits);
            }
            refusal = Reason::AmbiguousCredential;
        }
        (Ok(Some(session)), Ok(None)) => match session {
            Ok(id) => identity = Some(id),
            Err(reason) => refusal = reason,
        },
        (Ok(None), Ok(Some((tokens, cred)))) => {
            let (verdict, ours) = check_token(tokens, cred, ctx);
            match verdict {
                Ok(id) => identity = Some(id),
                Err(reason) => {
                    refusal = reason;
                    foreign_bearer = !ours && cred.source == Source::Bearer;
                }
            }
            strip_credential(tokens, cred, ours, &mut edits);
        }
        (Ok(None), Ok(None)) => {}
    }
    // The edge's sources (assertions, proxy headers, client certificates) after devgate's own
    // credentials and before the address; a failing one never locks out a developer another
    // source admits. An assertion whose keys must be fetched first asks, unless devgate's own
    // credential already named the developer.
    let EdgeVerdict {
        identity: by_edge,
        refusal: edge_refusal,
        ask: edge_ask,
        remove: edge_remove,
    } = &ctx.edge;
    edits
        .remove
        .extend(edge_remove.iter().map(|n| Cow::Owned(n.clone())));
    if identity.is_none() {
        if *edge_ask {
            return Decision::Ask;
        }
        identity = by_edge.clone();
        if let Some(reason) = edge_refusal {
            if refusal == Reason::NoCredential || foreign_bearer {
                refusal = *reason;
            }
        }
    }
    // `network.deny` means "never a developer from there" (DevAuth's deny list): no token or
    // session makes one either. Credentials are still stripped above; API keys, which name an
    // application rather than a developer, are checked below as for anyone.
    let identity = if verdict == NetVerdict::Denied {
        refusal = Reason::NetworkDenied;
        None
    } else {
        identity.or(by_network)
    };

    // An expired session is cleared, on whatever answer the request gets.
    let mut response_headers = Vec::new();
    if let (true, Some(login)) = (expired, &policy.login) {
        if let Ok(clear) = login::clear_session_cookie(&login.cookie, login.secure_cookie) {
            response_headers.push(("set-cookie", Cow::Owned(clear)));
        }
    }
    let deny = |reason: Reason| {
        let mut d = deny(reason, policy);
        if let Decision::Deny { response, .. } = &mut d {
            response.headers.extend(response_headers.iter().cloned());
        }
        d
    };

    if identity.is_none() && protected {
        return deny(refusal);
    }

    let mut admitted_key = None;
    if let Some(api) = &policy.api {
        let route = match route {
            Some(RuleKind::Api(i)) => api.routes.get(i),
            _ => None,
        };
        if let Some(route) = route {
            let (kind, api_edits) = match api_key(api, route, method, ctx) {
                Ok(admitted) => admitted,
                Err(KeyStop::Deny(reason, retry_after)) => {
                    let mut d = deny(reason);
                    if let (Decision::Deny { response, .. }, Some(secs)) = (&mut d, retry_after) {
                        response
                            .headers
                            .push(("retry-after", Cow::Owned(secs.to_string())));
                    }
                    return d;
                }
                Err(KeyStop::Ask) => return Decision::Ask,
            };
            admitted_key = Some(kind);
            edits.remove.extend(api_edits.remove);
            edits.set.extend(api_edits.set);
        }
    }

    // Client copies are removed first, so the sets below are the only values upstream.
    let only = [&policy.header];
    let with_api;
    let identity_headers: &[&headers::HeaderName] = match &policy.api {
        Some(api) => {
            // On the stack: the network path allocates nothing for this list.
            let [a, b, c, d, e, f, g, h] = api.headers.all();
            with_api = [&policy.header, a, b, c, d, e, f, g, h];
            &with_api
        }
        None => &only,
    };
    let stripped = headers::spellings_present(req.headers, identity_headers);
    if !stripped.is_empty() {
        edits
            .remove
            .splice(0..0, stripped.into_iter().map(|n| Cow::Owned(n.to_vec())));
    }
    strip_cookies(policy, req, &mut edits);
    if let Some(id) = &identity {
        edits
            .set
            .push((policy.header.as_str(), id.name.clone().into_bytes()));
    }
    Decision::Allow {
        identity,
        api_key: admitted_key,
        edits,
        response_headers,
    }
}

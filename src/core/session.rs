//! The login form's endpoints and the upstream-challenge translation: the pure flow.
//!
//! [`login`] has the building blocks (form parsing, pages, the CSRF and
//! redirect checks, rate-limit records, cookies); this module strings them into the two steps
//! the glue runs for a request under the login mount, and decides what an upstream 401 with
//! devgate's challenge becomes. Nothing here calls the host, reads a clock or logs.
//!
//! # Steps
//!
//! 1. [`start`], with the request headers: every endpoint but `POST <mount>/login` is answered
//!    here. For that one, the checks that need no body run first (login network, CSRF,
//!    content type, declared length, rate limit) and the answer is [`Step::ReadBody`].
//! 2. [`finish`], with the whole body (the glue buffers it, refusing more than
//!    [`MAX_BODY`] bytes): rate limit again, parse, and either
//!    an answer or [`Checked::Verify`].
//! 3. For [`Checked::Verify`]: one verify from the Envoy process's budget
//!    ([`budget`](crate::core::budget), shared data), then [`verify`]: bcrypt, and either the
//!    session cookie and a 303 or the form again with one generic message; or, with the budget
//!    spent, [`over_budget`] (429) without bcrypt. The [`Store`] says what to write back to the
//!    failure counter.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::core::codes::{Challenge, Outcome};
use crate::core::login::{self, Attempts, LoginForm, Page, Verdict, MAX_BODY};
use crate::core::policy::{LoginPolicy, Policy, UpstreamChallenge};
use crate::core::query;
use crate::core::token;

/// A path under the login mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `<mount>/login`: the form (GET, HEAD) and its submission (POST).
    Login,
    /// `<mount>/logout`: clears the session cookie.
    Logout,
    /// Anything else under the mount, or the mount itself: 404, never forwarded.
    Other,
}

/// Which endpoint a canonical path names, if it is under `login.mount`.
pub fn endpoint(login: &LoginPolicy, canonical: &[u8]) -> Option<Endpoint> {
    let rest = canonical.strip_prefix(login.mount.as_bytes())?;
    match rest {
        b"/login" => Some(Endpoint::Login),
        b"/logout" => Some(Endpoint::Logout),
        [] => Some(Endpoint::Other),
        [b'/', ..] => Some(Endpoint::Other),
        _ => None,
    }
}

/// A request under the login mount, as the glue saw it.
#[derive(Clone, Copy, Debug)]
pub struct LoginRequest<'a> {
    /// Which endpoint of the mount.
    pub endpoint: Endpoint,
    /// Every request header (pseudo-headers included), as bytes.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// The peer's address when it is a usable one (a socket address, or a forwarded one with
    /// `network.trust_forwarded`) outside `network.deny`
    /// ([`NetPolicy::undenied_ip`](crate::core::net::NetPolicy::undenied_ip)); `None`
    /// otherwise, which refuses the form and the login (403) before anything else is read.
    pub peer: Option<IpAddr>,
    /// The request came over TLS: the session cookie gets `Secure`.
    pub tls: bool,
    /// The peer's failed-login record (only read for `POST <mount>/login`).
    pub attempts: Option<Attempts>,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

impl LoginRequest<'_> {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn method(&self) -> &[u8] {
        self.header(b":method").unwrap_or_default()
    }
}

/// Whether the glue must read the peer's failure record before calling [`start`].
pub fn needs_attempts(endpoint: Endpoint, method: &[u8]) -> bool {
    endpoint == Endpoint::Login && method == b"POST"
}

/// The first step's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer now.
    Respond(Outcome, Page),
    /// Buffer the body (at most [`MAX_BODY`] bytes) and call [`finish`].
    ReadBody,
}

/// What to write to the peer's failure record after [`finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Leave the record as it is.
    Nothing,
    /// One more failure: [`login::record_failure`] on the current record.
    Failure,
    /// A successful login: [`Attempts::CLEARED`].
    Clear,
}

fn secure(login: &LoginPolicy, tls: bool) -> bool {
    tls || login.secure_cookie
}

fn method_not_allowed(allow: &str) -> Step {
    let mut page = login::text_page(405, "Method Not Allowed\n");
    page.headers.push(("allow", Cow::Owned(allow.to_string())));
    Step::Respond(Outcome::MethodNotAllowed, page)
}

/// The `back` query parameter of the form's URL, when it is there once and UTF-8.
fn back_param(raw_path: &[u8]) -> String {
    let (_, query) = query::split(raw_path);
    match query.map(|q| query::find(q, &["back"])).as_deref() {
        Some([(_, value)]) => String::from_utf8(value.clone()).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Whether the peer may use the form.
fn peer_allowed(login: &LoginPolicy, peer: Option<IpAddr>) -> bool {
    match (peer, &login.allow_from) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(ip), Some(nets)) => nets.contains(ip),
    }
}

/// The first step: everything that can be answered from the request headers.
pub fn start(login: &LoginPolicy, req: &LoginRequest<'_>) -> Step {
    let method = req.method();
    match req.endpoint {
        Endpoint::Other => Step::Respond(Outcome::NotFound, login::text_page(404, "Not Found\n")),
        Endpoint::Logout => match method {
            // Logging out is harmless from anywhere, so no network or CSRF check.
            b"GET" | b"HEAD" | b"POST" => {
                let mut page = login::redirect("/");
                match login::clear_session_cookie(&login.cookie, secure(login, req.tls)) {
                    Ok(cookie) => page.headers.push(("set-cookie", Cow::Owned(cookie))),
                    Err(_) => {
                        return Step::Respond(
                            Outcome::Internal,
                            login::text_page(500, "Internal Server Error\n"),
                        )
                    }
                }
                Step::Respond(Outcome::Logout, page)
            }
            _ => method_not_allowed("GET, HEAD, POST"),
        },
        Endpoint::Login => {
            if !matches!(method, b"GET" | b"HEAD" | b"POST") {
                return method_not_allowed("GET, HEAD, POST");
            }
            if !peer_allowed(login, req.peer) {
                return Step::Respond(Outcome::NetworkDenied, login::text_page(403, "Forbidden\n"));
            }
            if method != b"POST" {
                let back = back_param(req.header(b":path").unwrap_or_default());
                return Step::Respond(Outcome::Page, login::login_page(&login.mount, &back, false));
            }
            // Origin whenever present (even `null`); Referer only without one.
            let origin = req.header(b"origin").or_else(|| req.header(b"referer"));
            let authority = req
                .header(b":authority")
                .or_else(|| req.header(b"host"))
                .unwrap_or_default();
            // The site's scheme is the connection's (as for the cookie's `Secure`).
            if !login::same_origin(origin, authority, secure(login, req.tls)) {
                return Step::Respond(Outcome::Csrf, login::text_page(403, "Forbidden\n"));
            }
            if !req
                .header(b"content-type")
                .is_some_and(login::is_form_content_type)
            {
                return Step::Respond(
                    Outcome::BadContentType,
                    login::text_page(415, "Unsupported Media Type\n"),
                );
            }
            let declared = req
                .header(b"content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_BODY as u64) {
                return Step::Respond(Outcome::TooLarge, too_large());
            }
            if let Some(page) = limited(login, req.attempts, req.now) {
                return Step::Respond(Outcome::RateLimited, page);
            }
            Step::ReadBody
        }
    }
}

/// The 413 for a login body over [`MAX_BODY`] ([`Outcome::TooLarge`]).
pub fn too_large() -> Page {
    login::text_page(413, "Payload Too Large\n")
}

fn limited(login: &LoginPolicy, attempts: Option<Attempts>, now: u64) -> Option<Page> {
    match login::check(attempts, now, login.max_failures, login.failure_window) {
        Verdict::Allow => None,
        Verdict::Limited { retry_after } => Some(login::too_many_attempts(retry_after)),
    }
}

/// The second step's answer.
#[derive(Debug)]
pub enum Checked {
    /// Answer now, and write the [`Store`] to the peer's failure record.
    Respond(Outcome, Page, Store),
    /// A well-formed form from a peer that is not limited: take one verify from the process's
    /// budget ([`budget::take`](crate::core::budget::take) on the state under
    /// [`budget::KEY`](crate::core::budget::KEY)), then call [`verify`]; when none is left,
    /// answer [`over_budget`] instead, without running bcrypt.
    Verify(LoginForm),
}

/// The second step, with the whole body of `POST <mount>/login` and the peer's current
/// failure record: every check that costs no bcrypt.
pub fn finish(login: &LoginPolicy, body: &[u8], attempts: Option<Attempts>, now: u64) -> Checked {
    if body.len() > MAX_BODY {
        return Checked::Respond(Outcome::TooLarge, too_large(), Store::Nothing);
    }
    // Another worker may have counted failures since the headers were checked.
    if let Some(page) = limited(login, attempts, now) {
        return Checked::Respond(Outcome::RateLimited, page, Store::Nothing);
    }
    match login::parse_form(body) {
        Ok(form) => Checked::Verify(form),
        // A form no browser sends counts as a failed attempt, so it cannot probe for free.
        Err(_) => Checked::Respond(
            Outcome::Failed,
            login::login_page(&login.mount, "", true),
            Store::Failure,
        ),
    }
}

/// The answer when the process's verify budget is spent: 429 with `Retry-After`, the form
/// not checked, nothing stored (the attempt was not a failure of this peer).
pub fn over_budget(retry_after: u64) -> (Outcome, Page, Store) {
    (
        Outcome::OverBudget,
        login::too_many_attempts(retry_after),
        Store::Nothing,
    )
}

/// The last step, once a verify was taken from the budget: bcrypt, then the session cookie
/// and a 303, or the form again with one generic message. `peer` is the address [`start`]
/// accepted.
pub fn verify(
    login: &LoginPolicy,
    form: &LoginForm,
    peer: IpAddr,
    tls: bool,
    now: u64,
) -> (Outcome, Page, Store) {
    let back = form.back.clone().unwrap_or_default();
    if !login.users.verify(&form.username, &form.password) {
        return (
            Outcome::Failed,
            login::login_page(&login.mount, &back, true),
            Store::Failure,
        );
    }
    let claims = login::session_claims(
        &form.username,
        &login.cookie,
        now,
        login.session_seconds,
        login.bind_peer.then_some(peer),
    );
    let token = token::mint(&claims, login.keys.signing_key());
    let secure = secure(login, tls);
    match login::session_cookie(&login.cookie, &token, login.session_seconds, secure) {
        Ok(cookie) => {
            let mut page = login::redirect(&back);
            page.headers.push(("set-cookie", Cow::Owned(cookie)));
            (Outcome::Succeeded, page, Store::Clear)
        }
        Err(_) => (
            Outcome::Internal,
            login::text_page(500, "Internal Server Error\n"),
            Store::Nothing,
        ),
    }
}

/// Whether `values` (every `WWW-Authenticate` of a response) carries devgate's challenge,
/// `x-wsgiorg.developer_user`, as one of its challenges (scheme compared case-insensitively).
pub fn has_developer_challenge(values: &[&[u8]]) -> bool {
    values
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .filter_map(|challenge| {
            challenge
                .trim_ascii()
                .split(|&b| b == b' ' || b == b'\t')
                .next()
        })
        .any(|scheme| scheme.eq_ignore_ascii_case(b"x-wsgiorg.developer_user"))
}

/// Percent-encodes everything but unreserved characters and `/`, for a query value.
fn encode_query_value(raw: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(raw.len() * 3);
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(HEX.get(usize::from(nibble)).map_or('0', |&h| char::from(h)));
            }
        }
    }
    out
}

/// What an upstream response with `status` and `WWW-Authenticate` values becomes, per
/// `policy.upstream_challenge`; `None`: pass it on unchanged. `had_identity`: devgate sent a
/// developer with the request; `raw_path`: the request's `:path`, for `back`.
pub fn translate_challenge(
    policy: &Policy,
    status: &[u8],
    www_authenticate: &[&[u8]],
    had_identity: bool,
    raw_path: &[u8],
) -> Option<(Challenge, Page)> {
    if status != b"401" || !has_developer_challenge(www_authenticate) {
        return None;
    }
    match (policy.upstream_challenge, &policy.login) {
        (UpstreamChallenge::Pass, _) => None,
        (UpstreamChallenge::Login, Some(login)) if !had_identity => {
            let back = login::safe_back(std::str::from_utf8(raw_path).unwrap_or("/"));
            let location = format!("{}/login?back={}", login.mount, encode_query_value(&back));
            Some((Challenge::Login, login::redirect(&location)))
        }
        _ => Some((Challenge::Forbid, login::text_page(403, "Forbidden\n"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;
    use crate::core::login::{Attempts, LOGIN_FAILED};

    /// Password: correct horse (cost 5, `htpasswd -nbB -C 5 alice 'correct horse'`).
    const ALICE: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

    fn policy(extra: &str) -> Policy {
        let json = format!(
            r#"{{"keys": [{{"id": "k1", "secret": "{KEY}"}}],
                 "login": {{"users": "{ALICE}", "allow_from": ["127.0.0.0/8"] {extra}}}}}"#
        );
        parse_policy(json.as_bytes()).unwrap()
    }

    fn login(p: &Policy) -> &LoginPolicy {
        p.login.as_ref().unwrap()
    }

    fn req<'a>(
        endpoint: Endpoint,
        headers: &'a [(&'a [u8], &'a [u8])],
        peer: &str,
    ) -> LoginRequest<'a> {
        LoginRequest {
            endpoint,
            headers,
            peer: peer.parse().ok(),
            tls: false,
            attempts: None,
            now: 1_700_000_000,
        }
    }

    /// The body step and, for a well-formed form, the verify (with budget to spare).
    fn finish_all(
        l: &LoginPolicy,
        body: &[u8],
        ip: IpAddr,
        tls: bool,
        attempts: Option<Attempts>,
        now: u64,
    ) -> (Outcome, Page, Store) {
        match finish(l, body, attempts, now) {
            Checked::Respond(o, p, s) => (o, p, s),
            Checked::Verify(form) => verify(l, &form, ip, tls, now),
        }
    }

    #[test]
    fn only_a_well_formed_unlimited_form_asks_for_a_verify() {
        let p = policy("");
        let l = login(&p);
        let good = b"username=alice&password=correct+horse";
        assert!(matches!(finish(l, good, None, 1), Checked::Verify(_)));
        // Malformed: a failure without bcrypt, so no budget is spent on it.
        let step = finish(l, b"username=alice", None, 1);
        assert!(matches!(
            step,
            Checked::Respond(Outcome::Failed, _, Store::Failure)
        ));
        // Limited: nothing spent either.
        let limited = Some(Attempts {
            count: 5,
            window_start: 1,
        });
        let step = finish(l, good, limited, 2);
        assert!(matches!(
            step,
            Checked::Respond(Outcome::RateLimited, _, Store::Nothing)
        ));
        let big = vec![b'a'; MAX_BODY + 1];
        assert!(matches!(
            finish(l, &big, None, 1),
            Checked::Respond(Outcome::TooLarge, _, Store::Nothing)
        ));
        // Over budget: 429 with Retry-After, nothing stored, no cookie.
        let (o, page, store) = over_budget(3);
        assert_eq!(
            (o, page.status, store),
            (Outcome::OverBudget, 429, Store::Nothing)
        );
        assert_eq!(page.header("retry-after"), Some("3"));
        assert!(page.header("set-cookie").is_none());
        assert_eq!(Outcome::OverBudget.code(), "over_budget");
    }

    fn respond(step: Step) -> (Outcome, Page) {
        match step {
            Step::Respond(o, p) => (o, p),
            Step::ReadBody => panic!("expected a response"),
        }
    }

    const POST: &[(&[u8], &[u8])] = &[
        (b":method", b"POST"),
        (b":path", b"/.devgate/login"),
        (b":authority", b"localhost:10000"),
        (b"origin", b"http://localhost:10000"),
        (b"content-type", b"application/x-www-form-urlencoded"),
    ];

    #[test]
    fn endpoints_under_the_mount() {
        let p = policy("");
        let l = login(&p);
        assert_eq!(endpoint(l, b"/.devgate/login"), Some(Endpoint::Login));
        assert_eq!(endpoint(l, b"/.devgate/logout"), Some(Endpoint::Logout));
        assert_eq!(endpoint(l, b"/.devgate"), Some(Endpoint::Other));
        assert_eq!(endpoint(l, b"/.devgate/"), Some(Endpoint::Other));
        assert_eq!(endpoint(l, b"/.devgate/login/x"), Some(Endpoint::Other));
        assert_eq!(endpoint(l, b"/.devgatex/login"), None);
        assert_eq!(endpoint(l, b"/login"), None);
    }

    #[test]
    fn form_is_served_from_login_networks_only() {
        let p = policy("");
        let get: &[(&[u8], &[u8])] = &[
            (b":method", b"GET"),
            (b":path", b"/.devgate/login?back=%2F_debug%2F"),
        ];
        let (o, page) = respond(start(login(&p), &req(Endpoint::Login, get, "127.0.0.1")));
        assert_eq!((o, page.status), (Outcome::Page, 200));
        assert!(page.body.contains("value=\"/_debug/\""));
        let (o, page) = respond(start(login(&p), &req(Endpoint::Login, get, "10.0.0.1")));
        assert_eq!((o, page.status), (Outcome::NetworkDenied, 403));
        // No usable peer (forwarded, unparseable): refused.
        let mut r = req(Endpoint::Login, get, "");
        r.peer = None;
        assert_eq!(respond(start(login(&p), &r)).0, Outcome::NetworkDenied);
    }

    #[test]
    fn post_checks_before_the_body() {
        let p = policy("");
        let l = login(&p);
        assert_eq!(
            start(l, &req(Endpoint::Login, POST, "127.0.0.1")),
            Step::ReadBody
        );

        let mut cross = POST.to_vec();
        cross[3] = (b"origin", b"https://evil.example");
        assert_eq!(
            respond(start(l, &req(Endpoint::Login, &cross, "127.0.0.1"))).0,
            Outcome::Csrf
        );
        let no_origin: Vec<_> = POST
            .iter()
            .copied()
            .filter(|(n, _)| *n != b"origin")
            .collect();
        assert_eq!(
            respond(start(l, &req(Endpoint::Login, &no_origin, "127.0.0.1"))).0,
            Outcome::Csrf
        );

        let mut json = POST.to_vec();
        json[4] = (b"content-type", b"application/json");
        let (o, page) = respond(start(l, &req(Endpoint::Login, &json, "127.0.0.1")));
        assert_eq!((o, page.status), (Outcome::BadContentType, 415));

        let mut big = POST.to_vec();
        big.push((b"content-length", b"4097"));
        let (o, page) = respond(start(l, &req(Endpoint::Login, &big, "127.0.0.1")));
        assert_eq!((o, page.status), (Outcome::TooLarge, 413));

        let mut r = req(Endpoint::Login, POST, "127.0.0.1");
        r.attempts = Some(Attempts {
            count: 5,
            window_start: r.now - 10,
        });
        let (o, page) = respond(start(l, &r));
        assert_eq!((o, page.status), (Outcome::RateLimited, 429));
        assert_eq!(page.header("retry-after"), Some("290"));

        let put: &[(&[u8], &[u8])] = &[(b":method", b"PUT")];
        let (o, page) = respond(start(l, &req(Endpoint::Login, put, "127.0.0.1")));
        assert_eq!((o, page.status), (Outcome::MethodNotAllowed, 405));
        assert_eq!(page.header("allow"), Some("GET, HEAD, POST"));
    }

    #[test]
    fn csrf_scheme_is_the_connections() {
        let p = policy("");
        let l = login(&p);
        let with = |origin: &'static [u8], authority: &'static [u8]| {
            let mut h = POST.to_vec();
            h[2] = (b":authority", authority);
            h[3] = (b"origin", origin);
            h
        };
        // Plain listener: https:// is another site, whatever :scheme or X-Forwarded-Proto say.
        let mut h = with(b"https://localhost:10000", b"localhost:10000");
        h.push((b":scheme", b"https"));
        h.push((b"x-forwarded-proto", b"https"));
        let step = start(l, &req(Endpoint::Login, &h, "127.0.0.1"));
        assert_eq!(respond(step).0, Outcome::Csrf);
        let h = with(b"http://localhost", b"localhost:80");
        assert_eq!(
            start(l, &req(Endpoint::Login, &h, "127.0.0.1")),
            Step::ReadBody
        );
        // TLS: http:// is another site; `Host: h` is https://h:443.
        let mut r = req(Endpoint::Login, POST, "127.0.0.1");
        r.tls = true;
        assert_eq!(respond(start(l, &r)).0, Outcome::Csrf);
        let h = with(b"https://localhost:443", b"localhost");
        let mut r = req(Endpoint::Login, &h, "127.0.0.1");
        r.tls = true;
        assert_eq!(start(l, &r), Step::ReadBody);
        // secure_cookie: the operator says a TLS proxy is in front, so the site is https.
        let p = policy(r#", "secure_cookie": true"#);
        let h = with(b"https://localhost", b"localhost");
        let step = start(login(&p), &req(Endpoint::Login, &h, "127.0.0.1"));
        assert_eq!(step, Step::ReadBody);
        let step = start(login(&p), &req(Endpoint::Login, POST, "127.0.0.1"));
        assert_eq!(respond(step).0, Outcome::Csrf);
    }

    #[test]
    fn login_success_sets_a_session_cookie_and_redirects() {
        let p = policy("");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let body = b"username=alice&password=correct+horse&back=%2F_debug%2F";
        let (o, page, store) = finish_all(login(&p), body, ip, false, None, 1_700_000_000);
        assert_eq!(
            (o, page.status, store),
            (Outcome::Succeeded, 303, Store::Clear)
        );
        assert_eq!(page.header("location"), Some("/_debug/"));
        let cookie = page.header("set-cookie").unwrap();
        assert!(cookie.starts_with("devgate_session=ey"), "{cookie}");
        for attr in ["Path=/", "Max-Age=28800", "HttpOnly", "SameSite=Strict"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        assert!(!cookie.contains("Secure"));
        // Over TLS, Secure.
        let (_, page, _) = finish_all(login(&p), body, ip, true, None, 1_700_000_000);
        assert!(page.header("set-cookie").unwrap().contains("; Secure"));
    }

    #[test]
    fn login_failure_is_generic_and_counted() {
        let p = policy("");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for body in [
            &b"username=alice&password=wrong"[..],
            b"username=mallory&password=correct+horse",
            b"username=alice",
            b"username=%zz&password=x",
        ] {
            let (o, page, store) = finish_all(login(&p), body, ip, false, None, 1);
            assert_eq!(
                (o, page.status, store),
                (Outcome::Failed, 401, Store::Failure)
            );
            assert!(page.body.contains(LOGIN_FAILED));
            assert!(page.header("set-cookie").is_none());
        }
        let limited = Some(Attempts {
            count: 5,
            window_start: 1,
        });
        let (o, page, store) = finish_all(
            login(&p),
            b"username=alice&password=correct+horse",
            ip,
            false,
            limited,
            2,
        );
        assert_eq!(
            (o, page.status, store),
            (Outcome::RateLimited, 429, Store::Nothing)
        );
    }

    #[test]
    fn unsafe_back_targets_become_root() {
        let p = policy("");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for back in [
            "https%3A%2F%2Fevil",
            "%2F%2Fevil",
            "%2F%5Cevil",
            "%2F%252F%252Fevil",
        ] {
            let body = format!("username=alice&password=correct+horse&back={back}");
            let (_, page, _) = finish_all(login(&p), body.as_bytes(), ip, false, None, 1);
            assert_eq!(page.header("location"), Some("/"), "{back}");
        }
    }

    #[test]
    fn logout_clears_the_cookie() {
        let p = policy(r#", "secure_cookie": true"#);
        let get: &[(&[u8], &[u8])] = &[(b":method", b"GET")];
        let (o, page) = respond(start(login(&p), &req(Endpoint::Logout, get, "10.9.9.9")));
        assert_eq!((o, page.status), (Outcome::Logout, 303));
        assert_eq!(page.header("location"), Some("/"));
        let cookie = page.header("set-cookie").unwrap();
        assert!(cookie.starts_with("devgate_session=;"), "{cookie}");
        assert!(
            cookie.contains("Max-Age=0") && cookie.contains("Secure"),
            "{cookie}"
        );
    }

    #[test]
    fn upstream_challenge_translation() {
        let hdr: &[&[u8]] = &[b"x-wsgiorg.developer_user"];
        let other: &[&[u8]] = &[b"Basic realm=x"];
        let forbid = policy("");
        let t = |p: &Policy, status: &[u8], www: &[&[u8]], id: bool| {
            translate_challenge(p, status, www, id, b"/app/page?x=1 2").map(|(_, page)| page)
        };
        assert_eq!(t(&forbid, b"401", hdr, false).unwrap().status, 403);
        assert!(t(&forbid, b"401", other, false).is_none());
        assert!(t(&forbid, b"200", hdr, false).is_none());
        assert!(t(&forbid, b"403", hdr, false).is_none());
        // A challenge among others, in any case.
        let mixed: &[&[u8]] = &[b"Basic realm=x, X-WSGIOrg.Developer_User"];
        assert!(t(&forbid, b"401", mixed, false).is_some());

        let login_mode = {
            let json = format!(
                r#"{{"keys": [{{"id": "k1", "secret": "{KEY}"}}], "upstream_challenge": "login",
                     "login": {{"users": "{ALICE}"}}}}"#
            );
            parse_policy(json.as_bytes()).unwrap()
        };
        let (challenge, page) =
            translate_challenge(&login_mode, b"401", hdr, false, b"/app/page?x=1").unwrap();
        assert_eq!(challenge, Challenge::Login);
        assert_eq!(page.status, 303);
        assert_eq!(
            page.header("location"),
            Some("/.devgate/login?back=/app/page%3Fx%3D1")
        );
        // An unsafe path is not carried into back.
        let (_, page) = translate_challenge(&login_mode, b"401", hdr, false, b"//evil/x").unwrap();
        assert_eq!(page.header("location"), Some("/.devgate/login?back=/"));
        // A developer devgate already vouched for is not sent round the loop.
        assert_eq!(
            translate_challenge(&login_mode, b"401", hdr, true, b"/")
                .map(|(c, page)| (c, page.status)),
            Some((Challenge::Forbid, 403))
        );

        let pass = {
            let json = r#"{"upstream_challenge": "pass"}"#;
            parse_policy(json.as_bytes()).unwrap()
        };
        assert!(translate_challenge(&pass, b"401", hdr, false, b"/").is_none());
    }

    #[test]
    fn encode_query_value_round_trips() {
        let raw = "/a b?c=d&e=%2F#f";
        let enc = encode_query_value(raw);
        assert_eq!(enc, "/a%20b%3Fc%3Dd%26e%3D%252F%23f");
        assert_eq!(query::decode(enc.as_bytes()), raw.as_bytes());
    }
}

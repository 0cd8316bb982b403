//! Method overrides: the methods an upstream may execute a request as, besides its wire method.
//!
//! Frameworks run a request under another method when asked to: Express's method-override,
//! Rails, Laravel, Symfony and Spring's `HiddenHttpMethodFilter` read `X-HTTP-Method-Override`
//! (also `X-HTTP-Method`, `X-Method-Override`) or a `_method` parameter in the query or in a
//! form body, so `POST` + `X-HTTP-Method-Override: DELETE` is a DELETE to them. devgate decides
//! such a request under every method it may be executed as, and the strictest answer wins
//! ([`crate::core::decide_with`]). The override itself goes on upstream untouched.
//!
//! The candidates besides the wire method:
//! - every comma-separated value of every override header, in every spelling an upstream may
//!   read as one (case, `_` for `-`), upper-cased as frameworks do;
//! - every `_method` value in the query (names and values percent-decoded);
//! - for a `POST` whose `Content-Type` is a form (`application/x-www-form-urlencoded`,
//!   `multipart/form-data`): `PUT`, `PATCH` and `DELETE`, the methods `_method` in a form body
//!   stands for while the body is unread. When only these refuse the request, a stream reads the
//!   body instead ([`crate::core::decide_form`], [`crate::core::form`]) and decides it under the
//!   methods the body asks for ([`form_methods`], [`as_listed`]).
//!
//! Methods that no rule names and that the endpoint modes do not tell apart (anything but GET,
//! HEAD, OPTIONS, POST, PUT, PATCH, DELETE and the methods in `protect`/`api.routes` lists) get
//! the same answer as each other, so at most one of them is kept: the number of evaluations is
//! bounded by the configuration, whatever the request carries.

use super::headers;
use super::query;
use super::Request;
use crate::core::policy::Policy;

/// The override headers, lower-case with `-` (their HTTP/2 spelling).
const HEADERS: [&[u8]; 3] = [
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
];

/// The query and form parameter frameworks read.
const PARAM: &str = "_method";

/// Methods the endpoint modes or the defaults tell apart.
const KNOWN: [&[u8]; 7] = [
    b"GET", b"HEAD", b"OPTIONS", b"POST", b"PUT", b"PATCH", b"DELETE",
];

/// What a form body's `_method` is used for.
const FORM_METHODS: [&[u8]; 3] = [b"PUT", b"PATCH", b"DELETE"];

/// A method that no rule names, standing for every such method (they all get the same answer).
pub const UNNAMED: &[u8] = b"DEVGATE-UNNAMED-METHOD";

/// The methods, other than `wire`, an upstream may execute the request as; each answers
/// differently from `wire` and from each other as far as the policy can tell. Empty (and no
/// allocation) for a request without an override header, `_method` or form body.
pub fn candidates(policy: &Policy, req: &Request<'_>, wire: &[u8]) -> Vec<Vec<u8>> {
    split_candidates(policy, req, wire).0
}

/// [`candidates`], and how many of them come first from the override headers and the query:
/// the rest are the methods a form body's `_method` stands for.
pub fn split_candidates(policy: &Policy, req: &Request<'_>, wire: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut add = |m: &[u8]| add_distinct(policy, wire, &mut out, m);
    for (name, value) in req.headers {
        if HEADERS.iter().any(|h| headers::is_spelling_of(name, h)) {
            value.split(|&b| b == b',').for_each(&mut add);
        }
    }
    if let Some(q) = req.header(b":path").and_then(|p| query::split(p).1) {
        // Only a query that could spell `_method` is decoded.
        if q.contains(&b'%') || q.windows(PARAM.len()).any(|w| w == PARAM.as_bytes()) {
            for (_, v) in query::find(q, &[PARAM]) {
                add(&v);
            }
        }
    }
    let overrides = out.len();
    if is_form_post(req, wire) {
        for m in FORM_METHODS {
            add_distinct(policy, wire, &mut out, m);
        }
    }
    (out, overrides)
}

/// Adds `m` (trimmed, upper-cased) to `out` unless it is empty or answers like `wire` or a
/// method already there, as far as the policy can tell.
fn add_distinct(policy: &Policy, wire: &[u8], out: &mut Vec<Vec<u8>>, m: &[u8]) {
    let m = m.trim_ascii();
    if m.is_empty() {
        return;
    }
    let m = m.to_ascii_uppercase();
    let distinct =
        |other: &[u8]| other != m.as_slice() && (is_named(policy, other) || is_named(policy, &m));
    if distinct(wire) && out.iter().all(|o| distinct(o)) {
        out.push(m);
    }
}

/// Whether the request is a form POST: its body may carry `_method`.
pub fn is_form_post(req: &Request<'_>, wire: &[u8]) -> bool {
    wire == b"POST"
        && req
            .headers
            .iter()
            .any(|(n, v)| *n == b"content-type" && is_form(v))
}

/// Every method, other than `wire`, that a form body's `_method` may make a request run as and
/// the policy answers differently from another: [`KNOWN`] and the methods rules name, each
/// once, then [`UNNAMED`] for all the others. `None` when a rule names [`UNNAMED`] itself.
pub fn form_methods(policy: &Policy, wire: &[u8]) -> Option<Vec<Vec<u8>>> {
    if policy.names_method(UNNAMED) {
        return None;
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    let named = policy
        .rules
        .iter()
        .filter_map(|r| r.methods.as_ref())
        .flatten()
        .map(|m| m.as_bytes());
    for m in KNOWN.into_iter().chain(named).chain([UNNAMED]) {
        if m != wire && !out.iter().any(|o| o == m) {
            out.push(m.to_vec());
        }
    }
    Some(out)
}

/// A method as frameworks read it from `_method` (trimmed, upper-cased) and as
/// [`form_methods`] lists it: [`UNNAMED`] for one the policy does not tell apart. `None`: empty,
/// no method.
pub fn as_listed(policy: &Policy, method: &[u8]) -> Option<Vec<u8>> {
    let m = method.trim_ascii();
    if m.is_empty() {
        return None;
    }
    let m = m.to_ascii_uppercase();
    Some(if is_named(policy, &m) {
        m
    } else {
        UNNAMED.to_vec()
    })
}

/// Whether the policy can answer `method` differently from a method it does not know: one of
/// [`KNOWN`], or named by a rule.
fn is_named(policy: &Policy, method: &[u8]) -> bool {
    KNOWN.contains(&method) || policy.names_method(method)
}

/// Whether a `Content-Type` value is a form frameworks parse (`_method` may be in it).
pub fn is_form(value: &[u8]) -> bool {
    let media = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        || media.eq_ignore_ascii_case(b"multipart/form-data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;

    fn methods(policy: &str, wire: &str, path: &str, extra: &[(&[u8], &[u8])]) -> Vec<String> {
        let p = parse_policy(policy.as_bytes()).unwrap();
        let mut h: Vec<(&[u8], &[u8])> =
            vec![(b":method", wire.as_bytes()), (b":path", path.as_bytes())];
        h.extend_from_slice(extra);
        let req = Request {
            peer: None,
            headers: &h,
            now: 0,
            cert: None,
        };
        candidates(&p, &req, wire.as_bytes())
            .into_iter()
            .map(|m| String::from_utf8(m).unwrap())
            .collect()
    }

    #[test]
    fn every_override_spelling_and_value_is_a_candidate() {
        let p = "{}";
        assert!(methods(p, "POST", "/", &[]).is_empty());
        assert!(methods(p, "GET", "/?a=1&b=%41", &[(b"content-type", b"text/plain")]).is_empty());
        let h: [(&[u8], &[u8]); 4] = [
            (b"x-http-method-override", b"delete"),
            (b"X_HTTP_Method", b" PUT , patch"),
            (b"x-method-override", b"POST"),
            (b"x-http-method-overrides", b"OPTIONS"),
        ];
        assert_eq!(methods(p, "POST", "/", &h), ["DELETE", "PUT", "PATCH"]);
        assert_eq!(
            methods(p, "GET", "/x?_method=delete&%5Fmethod=PUT&_method=get", &[]),
            ["DELETE", "PUT"]
        );
        let form: [(&[u8], &[u8]); 1] = [(
            b"content-type",
            b"Application/X-WWW-Form-Urlencoded; charset=utf-8",
        )];
        assert_eq!(methods(p, "POST", "/", &form), ["PUT", "PATCH", "DELETE"]);
        let multipart: [(&[u8], &[u8]); 1] =
            [(b"content-type", b"multipart/form-data; boundary=x")];
        assert_eq!(
            methods(p, "POST", "/", &multipart),
            ["PUT", "PATCH", "DELETE"]
        );
        assert!(
            methods(p, "PUT", "/", &form).is_empty(),
            "only a POST is a form"
        );
    }

    #[test]
    fn methods_nothing_tells_apart_count_once() {
        let h: [(&[u8], &[u8]); 1] = [(b"x-http-method-override", b"FOO, BAR, PROPFIND, DELETE")];
        assert_eq!(methods("{}", "POST", "/", &h), ["FOO", "DELETE"]);
        assert_eq!(
            methods("{}", "MKCOL", "/", &h),
            ["DELETE"],
            "as the wire method"
        );
        let named = r#"{"protect": [{"prefix": "/dav", "methods": ["PROPFIND"]}]}"#;
        assert_eq!(
            methods(named, "POST", "/", &h),
            ["FOO", "PROPFIND", "DELETE"]
        );
    }
}

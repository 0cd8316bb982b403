//! The decision: request facts and a policy in, a [`Decision`] out.
//!
//! Nothing here calls the host, reads a clock or logs a credential. The glue gathers the facts
//! (one header-map read, one property read), calls [`decide`], and applies the result.

pub mod cookie;
pub mod headers;
pub mod net;
pub mod path;
pub mod token;

use std::net::IpAddr;

use crate::config::{Policy, TokenPolicy, Unauthenticated};
use cookie::CookieLookup;
use net::NetVerdict;
use token::{Expect, TokenError};

/// The facts of one request, as the host gave them.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Envoy's `source.address`, raw (`None` when the host has none).
    pub peer: Option<&'a [u8]>,
    /// Every request header, pseudo-headers included, as bytes, repeated ones kept.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// Seconds since the Unix epoch.
    pub now: u64,
}

impl<'a> Request<'a> {
    /// The first value of `name` (lower-case, as Envoy stores names).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// How the developer proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Their socket address is in `network.allow` and not in `network.deny`.
    Network,
    /// A developer token in `Authorization: Bearer`.
    Bearer,
    /// A developer token in the configured cookie.
    Cookie,
}

impl Source {
    /// Stable snake_case name for logs and stats.
    pub fn code(self) -> &'static str {
        match self {
            Source::Network => "network",
            Source::Bearer => "bearer",
            Source::Cookie => "cookie",
        }
    }
}

/// A developer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// What the upstream receives in the identity header.
    pub name: String,
    pub source: Source,
}

/// Why a request was refused. Codes are stable: logs, stats and tests use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Protected path and no credential at all (or a peer that is not a developer).
    NoCredential,
    /// The path cannot be read one way only (bad escape, double encoding, not origin-form).
    BadPath,
    /// More than one credential (Bearer and cookie, two Authorization headers, a cookie sent
    /// twice with different values): devgate never picks one.
    AmbiguousCredential,
    /// The token failed verification; the code says why (`expired`, `bad_signature`, ...).
    Token(TokenError),
    /// A valid token from a peer outside `tokens.allow_from`.
    NetworkDenied,
    /// A valid token without the peer binding `tokens.bind_peer` requires.
    UnboundToken,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::NoCredential => "no_credential",
            Reason::BadPath => "bad_path",
            Reason::AmbiguousCredential => "ambiguous_credential",
            Reason::Token(e) => e.code(),
            Reason::NetworkDenied => "network_denied",
            Reason::UnboundToken => "unbound_token",
        }
    }

    /// Whether the reason is "who are you?" (401) or "not you, not from there" (403).
    fn is_forbidden(self) -> bool {
        matches!(
            self,
            Reason::NetworkDenied | Reason::UnboundToken | Reason::Token(TokenError::WrongPeer)
        )
    }
}

/// A response devgate sends itself instead of forwarding the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static str,
}

/// Header changes to make before the request goes upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// Header names to remove (every value), exactly as the host holds them.
    pub remove: Vec<Vec<u8>>,
    /// Headers to set (replacing any value), after the removals.
    pub set: Vec<(String, Vec<u8>)>,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward it, after the edits; `identity` is `None` for an anonymous request on an
    /// unprotected path.
    Allow {
        identity: Option<Identity>,
        edits: Edits,
    },
    /// Answer locally.
    Deny { reason: Reason, response: Response },
}

/// The one place a deny response is built: generic bodies, nothing about why.
fn deny(reason: Reason, policy: &Policy) -> Decision {
    let no_store = ("cache-control", "no-store".to_string());
    let text = ("content-type", "text/plain; charset=utf-8".to_string());
    let response = match reason {
        Reason::BadPath => Response {
            status: 400,
            headers: vec![text, no_store],
            body: "Bad Request\n",
        },
        _ if reason.is_forbidden() => Response {
            status: 403,
            headers: vec![text, no_store],
            body: "Forbidden\n",
        },
        _ => match policy.unauthenticated {
            Unauthenticated::Challenge => Response {
                status: 401,
                headers: vec![
                    ("www-authenticate", "x-wsgiorg.developer_user".to_string()),
                    text,
                    no_store,
                ],
                body: "Unauthorized\n",
            },
            Unauthenticated::Forbid => Response {
                status: 403,
                headers: vec![text, no_store],
                body: "Forbidden\n",
            },
        },
    };
    Decision::Deny { reason, response }
}

/// A credential the request carries.
#[derive(Clone, Copy, Debug)]
struct Credential<'a> {
    source: Source,
    token: &'a [u8],
}

/// Finds devgate's credential: `Ok(None)` when there is none, an error when there are several.
fn find_credential<'a>(
    tokens: &TokenPolicy,
    req: &Request<'a>,
) -> Result<Option<Credential<'a>>, Reason> {
    let mut found: Option<Credential<'a>> = None;
    if tokens.bearer {
        // Envoy joins repeated Authorization headers with ',' (and a bearer token never holds
        // one), so every comma-separated element is a credential of its own.
        let mut elements = req
            .headers
            .iter()
            .filter(|(n, _)| *n == b"authorization")
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .filter(|e| !e.trim_ascii().is_empty());
        let first = elements.next();
        let bearer = first.and_then(bearer_token);
        let mut rest_has_bearer = false;
        let mut more = false;
        for e in elements {
            more = true;
            rest_has_bearer |= bearer_token(e).is_some();
        }
        if more && (bearer.is_some() || rest_has_bearer) {
            return Err(Reason::AmbiguousCredential);
        }
        if let Some(token) = bearer {
            found = Some(Credential {
                source: Source::Bearer,
                token,
            });
        }
    }
    if let Some(name) = &tokens.cookie {
        let values = req
            .headers
            .iter()
            .filter(|(n, _)| *n == b"cookie")
            .map(|(_, v)| *v);
        match cookie::find_cookie(values, name) {
            CookieLookup::NotFound => {}
            CookieLookup::Found(token) => {
                if found.is_some() {
                    return Err(Reason::AmbiguousCredential);
                }
                found = Some(Credential {
                    source: Source::Cookie,
                    token,
                });
            }
            CookieLookup::Ambiguous => return Err(Reason::AmbiguousCredential),
            CookieLookup::TooLarge => return Err(Reason::Token(TokenError::TooLong)),
        }
    }
    Ok(found)
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(value.get(7..)?.trim_ascii())
}

/// Errors raised before devgate knew the token was meant for one of its keys. A Bearer token
/// that fails this early may belong to the application, so it is not stripped.
fn names_our_key(result: &Result<token::Claims, TokenError>) -> bool {
    !matches!(
        result,
        Err(TokenError::TooLong
            | TokenError::Malformed
            | TokenError::UnsupportedAlg
            | TokenError::UnsupportedHeader
            | TokenError::MissingKid
            | TokenError::UnknownKid)
    )
}

/// Checks a credential: the developer it names, or why not.
fn check_token(
    tokens: &TokenPolicy,
    policy: &Policy,
    cred: Credential<'_>,
    peer: Result<net::Peer, net::PeerError>,
    now: u64,
) -> (Result<Identity, Reason>, bool) {
    let peer_ip: Option<IpAddr> = policy.net.peer_ip(peer).ok();
    let mut expect = Expect::developer(tokens.leeway);
    if let Some(ip) = peer_ip {
        expect = expect.with_peer(ip);
    }
    let result = token::verify(cred.token, &tokens.keys, &expect, now);
    let ours = names_our_key(&result);
    let verdict = match result {
        Err(e) => Err(Reason::Token(e)),
        Ok(claims) => {
            if tokens.bind_peer && claims.cip.is_none() {
                Err(Reason::UnboundToken)
            } else if tokens
                .allow_from
                .as_ref()
                .is_some_and(|nets| !peer_ip.is_some_and(|ip| nets.contains(ip)))
            {
                Err(Reason::NetworkDenied)
            } else {
                Ok(Identity {
                    name: claims.sub,
                    source: cred.source,
                })
            }
        }
    };
    (verdict, ours)
}

/// Header edits that keep devgate's credential from reaching the upstream.
fn strip_credential(
    tokens: &TokenPolicy,
    req: &Request<'_>,
    cred: Credential<'_>,
    ours: bool,
    edits: &mut Edits,
) {
    if !tokens.strip_credential {
        return;
    }
    match cred.source {
        Source::Bearer if ours => edits.remove.push(b"authorization".to_vec()),
        Source::Cookie => {
            let Some(name) = &tokens.cookie else { return };
            let kept: Vec<Vec<u8>> = req
                .headers
                .iter()
                .filter(|(n, _)| *n == b"cookie")
                .filter_map(|(_, v)| match cookie::strip_cookie(v, name) {
                    None => Some(v.to_vec()),
                    Some(rest) if rest.is_empty() => None,
                    Some(rest) => Some(rest),
                })
                .collect();
            edits.remove.push(b"cookie".to_vec());
            if !kept.is_empty() {
                edits
                    .set
                    .push(("cookie".to_string(), kept.join(&b"; "[..])));
            }
        }
        Source::Bearer | Source::Network => {}
    }
}

/// On an ambiguous request: removes every place a devgate credential can be.
fn strip_all_credentials(tokens: &TokenPolicy, req: &Request<'_>, edits: &mut Edits) {
    let has = |name: &[u8]| req.headers.iter().any(|(n, _)| *n == name);
    if tokens.bearer && has(b"authorization") {
        strip_credential(
            tokens,
            req,
            Credential {
                source: Source::Bearer,
                token: b"",
            },
            true,
            edits,
        );
    }
    if tokens.cookie.is_some() && has(b"cookie") {
        strip_credential(
            tokens,
            req,
            Credential {
                source: Source::Cookie,
                token: b"",
            },
            true,
            edits,
        );
    }
}

/// Decides one request.
pub fn decide(policy: &Policy, req: &Request<'_>) -> Decision {
    let method = req.header(b":method").unwrap_or_default();
    let canonical = match req.header(b":path").map(path::canonicalize) {
        Some(Ok(c)) => c,
        Some(Err(_)) | None => return deny(Reason::BadPath, policy),
    };
    let protected = policy.is_protected(method, &canonical);

    let peer = net::parse_peer(req.peer.unwrap_or_default());
    let by_network = match policy.net.verdict(peer) {
        NetVerdict::Developer(ip) => Some(Identity {
            name: ip.to_string(),
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
    let mut identity = None;
    if let Some(tokens) = &policy.tokens {
        match find_credential(tokens, req) {
            Err(reason) => {
                // Whatever the pieces were, none of them goes upstream.
                strip_all_credentials(tokens, req, &mut edits);
                refusal = reason;
            }
            Ok(None) => {}
            Ok(Some(cred)) => {
                let (verdict, ours) = check_token(tokens, policy, cred, peer, req.now);
                match verdict {
                    Ok(id) => identity = Some(id),
                    Err(reason) => refusal = reason,
                }
                strip_credential(tokens, req, cred, ours, &mut edits);
            }
        }
    }
    let identity = identity.or(by_network);

    if identity.is_none() && protected {
        return deny(refusal, policy);
    }

    edits.remove.extend(
        headers::spellings_present(req.headers, &[&policy.header])
            .into_iter()
            .map(<[u8]>::to_vec),
    );
    if let Some(id) = &identity {
        edits.set.push((
            policy.header.as_str().to_string(),
            id.name.clone().into_bytes(),
        ));
    }
    Decision::Allow { identity, edits }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;

    struct Case {
        peer: &'static str,
        method: &'static str,
        path: &'static [u8],
        extra: Vec<(&'static [u8], &'static [u8])>,
    }

    fn run(policy: &str, c: Case) -> Decision {
        let policy = parse_policy(policy.as_bytes()).unwrap();
        let mut headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", c.method.as_bytes()),
            (b":path", c.path),
            (b":authority", b"example"),
        ];
        headers.extend(c.extra);
        decide(
            &policy,
            &Request {
                peer: Some(c.peer.as_bytes()),
                headers: &headers,
                now: 1_700_000_000,
            },
        )
    }

    fn get(peer: &'static str, path: &'static [u8]) -> Case {
        Case {
            peer,
            method: "GET",
            path,
            extra: vec![],
        }
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Allow { .. } => 200,
            Decision::Deny { response, .. } => response.status,
        }
    }

    const DEMO: &str = r#"{"protect": ["/_debug/"], "public": ["/healthz"]}"#;

    #[test]
    fn loopback_developer_gets_the_header() {
        let d = run(DEMO, get("127.0.0.1:4000", b"/_debug/"));
        let Decision::Allow { identity, edits } = d else {
            panic!("{d:?}")
        };
        assert_eq!(identity.unwrap().name, "127.0.0.1");
        assert_eq!(
            edits.set,
            vec![("x-wsgiorg-developer-user".into(), b"127.0.0.1".to_vec())]
        );
        let d = run(DEMO, get("[::1]:4000", b"/"));
        assert!(matches!(d, Decision::Allow { identity: Some(ref i), .. } if i.name == "::1"));
    }

    #[test]
    fn non_developer_is_challenged_on_protected_paths_only() {
        let policy = r#"{"network": {"allow": ["127.0.0.1"]}, "protect": ["/_debug/"], "public": ["/healthz"]}"#;
        let d = run(policy, get("127.0.0.77:1", b"/_debug/x"));
        let Decision::Deny { reason, response } = d else {
            panic!()
        };
        assert_eq!(reason, Reason::NoCredential);
        assert_eq!(response.status, 401);
        assert!(response
            .headers
            .contains(&("www-authenticate", "x-wsgiorg.developer_user".into())));
        let d = run(policy, get("127.0.0.77:1", b"/"));
        assert_eq!(
            d,
            Decision::Allow {
                identity: None,
                edits: Edits::default()
            }
        );
        assert_eq!(status(&run(policy, get("127.0.0.77:1", b"/healthz"))), 200);
    }

    #[test]
    fn forbid_mode_answers_403_without_challenge() {
        let d = run(
            r#"{"network": {"allow": []}, "unauthenticated": "forbid"}"#,
            get("127.0.0.1:1", b"/"),
        );
        let Decision::Deny { response, .. } = d else {
            panic!()
        };
        assert_eq!(response.status, 403);
        assert!(response
            .headers
            .iter()
            .all(|(n, _)| *n != "www-authenticate"));
    }

    #[test]
    fn xff_derived_peer_is_not_a_developer() {
        // Envoy with use_remote_address: false took 127.0.0.1 from X-Forwarded-For: port 0.
        assert_eq!(status(&run("{}", get("127.0.0.1:0", b"/"))), 401);
        let trusting = r#"{"network": {"trust_forwarded": true}}"#;
        assert_eq!(status(&run(trusting, get("127.0.0.1:0", b"/"))), 200);
    }

    #[test]
    fn client_sent_identity_headers_are_stripped_for_everyone() {
        let spoof: Vec<(&[u8], &[u8])> = vec![
            (b"x-wsgiorg-developer-user", b"evil"),
            (b"x_wsgiorg_developer_user", b"evil2"),
            (b"x-wsgiorg-developer-user", b"evil3"),
        ];
        for peer in ["127.0.0.1:9", "10.0.0.1:9"] {
            let d = run(
                r#"{"protect": []}"#,
                Case {
                    peer,
                    method: "GET",
                    path: b"/",
                    extra: spoof.clone(),
                },
            );
            let Decision::Allow { edits, .. } = d else {
                panic!()
            };
            assert_eq!(
                edits.remove,
                vec![
                    b"x-wsgiorg-developer-user".to_vec(),
                    b"x_wsgiorg_developer_user".to_vec()
                ]
            );
        }
    }

    #[test]
    fn bad_paths_are_400_before_anything_else() {
        assert_eq!(status(&run("{}", get("127.0.0.1:1", b"/%zz"))), 400);
        assert_eq!(status(&run("{}", get("127.0.0.1:1", b"/%255Fdebug"))), 400);
        let d = run(
            "{}",
            Case {
                peer: "127.0.0.1:1",
                method: "GET",
                path: b"*",
                extra: vec![],
            },
        );
        assert_eq!(status(&d), 400);
    }

    #[test]
    fn path_tricks_do_not_dodge_protection() {
        let policy = r#"{"network": {"allow": []}, "protect": ["/_debug/"]}"#;
        for p in [
            &b"/%5Fdebug/"[..],
            b"/_DEBUG/",
            b"//_debug/",
            b"/x/../_debug/",
            b"/_debug;a=b/",
            b"/_debug?x",
            b"/\\_debug/",
        ] {
            assert_eq!(status(&run(policy, get("127.0.0.1:1", p))), 401, "{p:?}");
        }
        assert_eq!(status(&run(policy, get("127.0.0.1:1", b"/_debugger"))), 200);
    }

    #[test]
    fn missing_peer_or_garbage_is_not_a_developer() {
        assert_eq!(status(&run("{}", get("", b"/"))), 401);
        assert_eq!(status(&run("{}", get("\u{0}\u{1}", b"/"))), 401);
    }

    // ---- tokens ----------------------------------------------------------------------------

    use crate::config::parse_policy_with_env;
    use token::{mint, Claims, Key, Purpose, Secret};

    const NOW: u64 = 1_700_000_000;
    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn key(id: &str) -> Key {
        Key {
            id: id.into(),
            secret: Secret::from_b64url(SECRET).unwrap(),
        }
    }

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            purpose: Purpose::Developer,
            cookie: None,
            cip: None,
            jti: None,
            iat: Some(NOW - 10),
            nbf: None,
            exp,
        }
    }

    fn alice() -> String {
        mint(&claims("alice", NOW + 3600), &key("k1"))
    }

    fn token_policy(tokens: &str) -> Policy {
        let json = format!(
            r#"{{"network": {{"allow": ["127.0.0.1"]}}, "protect": ["/_debug/"],
                "keys": [{{"id": "k1", "secret_env": "K1"}}], "tokens": {tokens}}}"#
        );
        parse_policy_with_env(json.as_bytes(), &|v| {
            (v == "K1").then(|| SECRET.to_string())
        })
        .unwrap()
    }

    fn send(policy: &Policy, peer: &str, path: &[u8], extra: &[(&[u8], &[u8])]) -> Decision {
        let mut headers: Vec<(&[u8], &[u8])> = vec![(b":method", b"GET"), (b":path", path)];
        headers.extend_from_slice(extra);
        decide(
            policy,
            &Request {
                peer: Some(peer.as_bytes()),
                headers: &headers,
                now: NOW,
            },
        )
    }

    fn reason(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Deny { reason, .. } => Some(reason.code()),
            Decision::Allow { .. } => None,
        }
    }

    fn allowed(d: &Decision) -> (Option<(String, Source)>, Edits) {
        match d {
            Decision::Allow { identity, edits } => (
                identity.as_ref().map(|i| (i.name.clone(), i.source)),
                edits.clone(),
            ),
            Decision::Deny { reason, .. } => panic!("denied: {}", reason.code()),
        }
    }

    #[test]
    fn bearer_developer_gets_the_header_and_loses_the_token() {
        let p = token_policy("{}");
        let auth = format!("Bearer {}", alice());
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[(b"authorization", auth.as_bytes())],
        );
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("alice".into(), Source::Bearer)));
        assert!(edits.remove.contains(&b"authorization".to_vec()));
        assert!(edits
            .set
            .contains(&("x-wsgiorg-developer-user".into(), b"alice".to_vec())));
    }

    #[test]
    fn cookie_developer_and_the_other_cookies_survive() {
        let p = token_policy("{}");
        let c = format!("a=1; devgate_token={}; b=2", alice());
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[(b"cookie", c.as_bytes()), (b"cookie", b"z=9")],
        );
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("alice".into(), Source::Cookie)));
        assert!(edits.remove.contains(&b"cookie".to_vec()));
        assert!(edits
            .set
            .contains(&("cookie".into(), b"a=1; b=2; z=9".to_vec())));
    }

    #[test]
    fn token_failures_are_401_with_their_code() {
        let p = token_policy("{}");
        let expired = mint(&claims("alice", NOW - 3600), &key("k1"));
        let mut other = key("k1");
        other.secret = Secret::from_bytes(vec![7; 32]).unwrap();
        let forged = mint(&claims("alice", NOW + 3600), &other);
        let unknown = mint(&claims("alice", NOW + 3600), &key("k9"));
        let mut tampered = alice();
        tampered.pop();
        for (tok, code) in [
            (expired.as_str(), "expired"),
            (forged.as_str(), "bad_signature"),
            (unknown.as_str(), "unknown_kid"),
            (tampered.as_str(), "bad_signature"),
            ("garbage", "malformed"),
        ] {
            let auth = format!("Bearer {tok}");
            let d = send(
                &p,
                "10.1.1.1:9",
                b"/_debug/",
                &[(b"authorization", auth.as_bytes())],
            );
            assert_eq!(reason(&d), Some(code), "{tok}");
            assert_eq!(status(&d), 401);
        }
    }

    #[test]
    fn bad_token_on_an_open_path_is_just_anonymous() {
        let p = token_policy("{}");
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/",
            &[(b"authorization", b"Bearer app-owned.token.x")],
        );
        let (id, edits) = allowed(&d);
        assert_eq!(id, None);
        assert!(
            edits.remove.is_empty(),
            "the application's own bearer token is left alone"
        );
    }

    #[test]
    fn bad_token_does_not_lock_out_a_network_developer() {
        let p = token_policy("{}");
        let d = send(
            &p,
            "127.0.0.1:9",
            b"/_debug/",
            &[(b"authorization", b"Bearer x.y.z")],
        );
        assert_eq!(allowed(&d).0, Some(("127.0.0.1".into(), Source::Network)));
    }

    #[test]
    fn two_credentials_are_never_a_choice() {
        let p = token_policy("{}");
        let t = alice();
        let auth = format!("Bearer {t}");
        let c = format!("devgate_token={t}");
        let both: [(&[u8], &[u8]); 2] = [
            (b"authorization", auth.as_bytes()),
            (b"cookie", c.as_bytes()),
        ];
        assert_eq!(
            reason(&send(&p, "10.1.1.1:9", b"/_debug/", &both)),
            Some("ambiguous_credential")
        );
        let twice: [(&[u8], &[u8]); 2] = [
            (b"authorization", auth.as_bytes()),
            (b"authorization", b"Basic eA=="),
        ];
        assert_eq!(
            reason(&send(&p, "10.1.1.1:9", b"/_debug/", &twice)),
            Some("ambiguous_credential")
        );
        // Envoy's HTTP/1 codec joins repeated Authorization headers with ','.
        let merged = format!("Bearer {t},Basic eA==");
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", merged.as_bytes())];
        assert_eq!(
            reason(&send(&p, "10.1.1.1:9", b"/_debug/", &h)),
            Some("ambiguous_credential")
        );
        let merged = format!("Basic eA==, Bearer {t}");
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", merged.as_bytes())];
        let d = send(&p, "127.0.0.1:9", b"/", &h);
        let (id, edits) = allowed(&d);
        assert_eq!(id, Some(("127.0.0.1".into(), Source::Network)));
        assert!(
            edits.remove.contains(&b"authorization".to_vec()),
            "regression: a devgate token in a merged Authorization header reached the upstream"
        );
        let c2 = format!("devgate_token={t}; devgate_token=other");
        let d = send(&p, "10.1.1.1:9", b"/_debug/", &[(b"cookie", c2.as_bytes())]);
        assert_eq!(reason(&d), Some("ambiguous_credential"));
    }

    #[test]
    fn allow_from_makes_a_valid_token_403_elsewhere() {
        let p = token_policy(r#"{"allow_from": ["10.0.0.0/8"]}"#);
        let auth = format!("Bearer {}", alice());
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", auth.as_bytes())];
        assert_eq!(status(&send(&p, "10.1.1.1:9", b"/_debug/", &h)), 200);
        let d = send(&p, "192.0.2.1:9", b"/_debug/", &h);
        assert_eq!((status(&d), reason(&d)), (403, Some("network_denied")));
        let d = send(&p, "10.1.1.1:0", b"/_debug/", &h);
        assert_eq!(
            reason(&d),
            Some("network_denied"),
            "a forwarded address is not the socket"
        );
    }

    #[test]
    fn peer_binding() {
        let p = token_policy(r#"{"bind_peer": true}"#);
        let auth = format!("Bearer {}", alice());
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/_debug/",
            &[(b"authorization", auth.as_bytes())],
        );
        assert_eq!((status(&d), reason(&d)), (403, Some("unbound_token")));
        let mut c = claims("alice", NOW + 60);
        c.cip = Some("10.1.1.1".parse().unwrap());
        let bound = format!("Bearer {}", mint(&c, &key("k1")));
        let h: [(&[u8], &[u8]); 1] = [(b"authorization", bound.as_bytes())];
        assert_eq!(status(&send(&p, "10.1.1.1:9", b"/_debug/", &h)), 200);
        let d = send(&p, "10.1.1.2:9", b"/_debug/", &h);
        assert_eq!((status(&d), reason(&d)), (403, Some("wrong_peer")));
    }

    #[test]
    fn session_purpose_tokens_are_not_developer_tokens() {
        let p = token_policy("{}");
        let mut c = claims("alice", NOW + 60);
        c.purpose = Purpose::Session;
        c.cookie = Some("devgate_token".into());
        let t = format!("devgate_token={}", mint(&c, &key("k1")));
        let d = send(&p, "10.1.1.1:9", b"/_debug/", &[(b"cookie", t.as_bytes())]);
        assert_eq!(reason(&d), Some("wrong_purpose"));
    }

    #[test]
    fn forbid_mode_hides_token_reasons_behind_403() {
        let json = format!(
            r#"{{"unauthenticated": "forbid", "keys": [{{"id": "k1", "secret": "{SECRET}"}}], "tokens": {{}}}}"#
        );
        let p = crate::config::parse_policy(json.as_bytes()).unwrap();
        let d = send(
            &p,
            "10.1.1.1:9",
            b"/",
            &[(b"authorization", b"Bearer x.y.z")],
        );
        assert_eq!(status(&d), 403);
    }
}

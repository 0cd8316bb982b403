//! The decision: request facts and a policy in, a [`Decision`] out.
//!
//! Nothing here calls the host, reads a clock or logs a credential. The glue gathers the facts
//! (one header-map read, one property read), calls [`decide`], and applies the result.

pub mod cookie;
pub mod headers;
pub mod net;
pub mod path;
pub mod token;

use crate::config::{Policy, Unauthenticated};
use net::NetVerdict;

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
}

impl Source {
    /// Stable snake_case name for logs and stats.
    pub fn code(self) -> &'static str {
        match self {
            Source::Network => "network",
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
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::NoCredential => "no_credential",
            Reason::BadPath => "bad_path",
        }
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
    pub set: Vec<(String, String)>,
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
        Reason::NoCredential => match policy.unauthenticated {
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

/// Decides one request.
pub fn decide(policy: &Policy, req: &Request<'_>) -> Decision {
    let method = req.header(b":method").unwrap_or_default();
    let canonical = match req.header(b":path").map(path::canonicalize) {
        Some(Ok(c)) => c,
        Some(Err(_)) | None => return deny(Reason::BadPath, policy),
    };
    let protected = policy.is_protected(method, &canonical);

    let peer = net::parse_peer(req.peer.unwrap_or_default());
    let identity = match policy.net.verdict(peer) {
        NetVerdict::Developer(ip) => Some(Identity {
            name: ip.to_string(),
            source: Source::Network,
        }),
        NetVerdict::Denied
        | NetVerdict::NotAllowed
        | NetVerdict::Forwarded
        | NetVerdict::Unknown => None,
    };

    if identity.is_none() && protected {
        return deny(Reason::NoCredential, policy);
    }

    let mut edits = Edits {
        remove: headers::spellings_present(req.headers, &[&policy.header])
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect(),
        set: Vec::new(),
    };
    if let Some(id) = &identity {
        edits
            .set
            .push((policy.header.as_str().to_string(), id.name.clone()));
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
            vec![("x-wsgiorg-developer-user".into(), "127.0.0.1".into())]
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
}

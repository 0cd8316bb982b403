//! The reference the `decide` target checks every decision against, written here from the
//! specification and not with devgate's own helpers.

use std::net::{IpAddr, SocketAddr};

use devgate::core::path::canonicalize;
use devgate::core::{Decision, Request, Source};

use super::pool::{api_keys, tokens, Fixture, Nets};
use crate::common;

/// Whether `ip` is inside one of `nets` (an independent 128-bit mask check).
fn in_nets(nets: Nets, ip: IpAddr) -> bool {
    let (v6, bits) = match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    };
    nets.iter().any(|&(nv6, base, prefix)| {
        let width = if nv6 { 128 } else { 32 };
        nv6 == v6 && (prefix == 0 || (bits >> (width - prefix)) == (base >> (width - prefix)))
    })
}

/// The socket peer a correct reader sees: std's grammar, no scope id, 5-digit port at most.
fn reference_peer(raw: Option<&[u8]>) -> Option<(IpAddr, u16)> {
    let s = std::str::from_utf8(raw?).ok()?;
    if s.is_empty() || s.len() > 64 || s.contains('%') || s.rsplit(':').next()?.len() > 5 {
        return None;
    }
    let sa: SocketAddr = s.parse().ok()?;
    let ip = match sa.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    Some((ip, sa.port()))
}

fn fold(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|&b| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect()
}

/// The values of cookie `name` in the `cookie` headers (RFC 6265 pairs, trimmed, unquoted).
fn cookie_values<'a>(name: &str, headers: &[(&'a [u8], &'a [u8])]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for (n, v) in headers {
        if *n != b"cookie" {
            continue;
        }
        for pair in v.split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                if pair[..eq].trim_ascii() == name.as_bytes() {
                    let mut val = pair[eq + 1..].trim_ascii();
                    if val.len() >= 2 && val[0] == b'"' && val[val.len() - 1] == b'"' {
                        val = &val[1..val.len() - 1];
                    }
                    out.push(val);
                }
            }
        }
    }
    out
}

/// Bearer tokens and devgate-cookie values the request carries, as the spec reads them.
fn credentials<'a>(f: &Fixture, headers: &[(&'a [u8], &'a [u8])]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for (n, v) in headers {
        if f.bearer && *n == b"authorization" {
            for e in v.split(|&b| b == b',') {
                let e = e.trim_ascii();
                if e.len() >= 7 && e[..7].eq_ignore_ascii_case(b"bearer ") {
                    out.push(e[7..].trim_ascii());
                }
            }
        }
    }
    if let Some(c) = f.cookie {
        out.extend(cookie_values(c, headers));
    }
    out
}

pub fn check(f: &Fixture, req: &Request<'_>, d: &Decision) {
    let debug = format!("{d:?}");
    common::assert_no_secret("Decision Debug", debug.as_bytes());
    let peer = reference_peer(req.peer);
    let socket_ip = peer.and_then(|(ip, port)| (port != 0 || f.trust_forwarded).then_some(ip));
    let path = req
        .headers
        .iter()
        .find(|(n, _)| *n == b":path")
        .map(|(_, v)| *v);
    let method = req
        .headers
        .iter()
        .find(|(n, _)| *n == b":method")
        .map_or(&b""[..], |(_, v)| *v);

    match d {
        Decision::Deny { reason, response } => {
            let code = reason.code();
            common::assert_no_secret("reason", code.as_bytes());
            assert!(matches!(response.status, 400 | 401 | 403), "{response:?}");
            assert!(matches!(
                response.body,
                "Bad Request\n" | "Unauthorized\n" | "Forbidden\n"
            ));
            if f.forbid {
                assert_ne!(response.status, 401, "forbid mode answered 401");
            }
            if response.status == 401 {
                assert!(response
                    .headers
                    .iter()
                    .any(|(n, v)| *n == "www-authenticate" && v == "x-wsgiorg.developer_user"));
            }
            for (_, v) in &response.headers {
                common::assert_no_secret("response header", v.as_bytes());
            }
        }
        Decision::Allow {
            identity,
            api_key,
            edits,
            ..
        } => {
            for (n, v) in &edits.set {
                common::assert_no_secret("edit", n.as_bytes());
                common::assert_no_secret("edit", v);
            }
            let canonical = path
                .and_then(|p| canonicalize(p).ok())
                .expect("allowed => a readable path");
            if f.policy.is_protected(method, &canonical) {
                assert!(
                    identity.is_some(),
                    "protected path allowed without an identity"
                );
            }
            if let Some(id) = identity {
                match id.source {
                    Source::Network => {
                        let ip = socket_ip.expect("network developer without a socket peer");
                        assert!(
                            in_nets(f.allow, ip) && !in_nets(f.deny, ip),
                            "peer {ip} is not allowed"
                        );
                        assert_eq!(id.name, ip.to_string());
                    }
                    Source::Bearer | Source::Cookie => {
                        let creds = credentials(f, req.headers);
                        let mut distinct = creds.clone();
                        distinct.sort();
                        distinct.dedup();
                        assert_eq!(
                            distinct.len(),
                            1,
                            "identity from {} credentials",
                            distinct.len()
                        );
                        let t = tokens()
                            .iter()
                            .find(|t| t.text.as_bytes() == distinct[0])
                            .expect("FORGERY: an identity from a token that is not in the pool");
                        assert!(
                            t.genuine && t.developer && f.kids.contains(&t.kid),
                            "bad token admitted: {}",
                            t.sub
                        );
                        assert_eq!(id.name, t.sub);
                        assert!(
                            req.now < t.exp.saturating_add(f.leeway),
                            "expired token admitted"
                        );
                        assert!(
                            t.iat <= req.now.saturating_add(f.leeway),
                            "future token admitted"
                        );
                        assert!(t.sub.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                        if let Some(cip) = t.cip {
                            assert_eq!(socket_ip, Some(cip), "bound token from another peer");
                        }
                        if f.bind_peer {
                            assert!(t.cip.is_some(), "unbound token with bind_peer");
                        }
                        if let Some(nets) = f.allow_from {
                            assert!(
                                socket_ip.is_some_and(|ip| in_nets(nets, ip)),
                                "token outside allow_from"
                            );
                        }
                    }
                    Source::Session => {
                        let s = f
                            .session
                            .as_ref()
                            .expect("a session without a login policy");
                        let values = cookie_values(s.cookie, req.headers);
                        let mut distinct = values.clone();
                        distinct.sort();
                        distinct.dedup();
                        assert_eq!(
                            distinct.len(),
                            1,
                            "session from {} cookie values",
                            distinct.len()
                        );
                        assert!(
                            credentials(f, req.headers).is_empty(),
                            "session and a token at once"
                        );
                        let t = tokens()
                            .iter()
                            .find(|t| t.text.as_bytes() == distinct[0])
                            .expect("FORGERY: a session that is not in the pool");
                        assert!(
                            t.genuine && f.kids.contains(&t.kid),
                            "bad session admitted: {}",
                            t.sub
                        );
                        assert_eq!(
                            t.dgc,
                            Some(s.cookie),
                            "session bound to another cookie admitted"
                        );
                        assert_eq!(id.name, t.sub);
                        assert!(
                            req.now < t.exp.saturating_add(s.leeway),
                            "expired session admitted"
                        );
                        assert!(
                            t.iat <= req.now.saturating_add(s.leeway),
                            "future session admitted"
                        );
                        if let Some(cip) = t.cip {
                            assert_eq!(socket_ip, Some(cip), "bound session from another peer");
                        }
                        if s.bind_peer {
                            assert!(t.cip.is_some());
                        }
                        if let Some(nets) = s.allow_from {
                            assert!(
                                socket_ip.is_some_and(|ip| in_nets(nets, ip)),
                                "session outside allow_from"
                            );
                        }
                    }
                }
            }
            if let Some(kind) = api_key {
                assert!(f.api);
                let text = req
                    .headers
                    .iter()
                    .map(|(_, v)| String::from_utf8_lossy(v))
                    .collect::<Vec<_>>()
                    .join("\n");
                let k = api_keys()
                    .iter()
                    .find(|k| k.kind == *kind && text.contains(&k.text))
                    .expect("FORGERY: API access without a pool key");
                assert!(!k.text.is_empty() && !k.org.is_empty());
            }

            // The upstream's view: removals (as an upstream folds names), then the sets.
            let removed: Vec<Vec<u8>> = edits.remove.iter().map(|n| fold(n)).collect();
            let mut upstream: Vec<(Vec<u8>, Vec<u8>)> = req
                .headers
                .iter()
                .filter(|(n, _)| !removed.contains(&fold(n)))
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            for (n, v) in &edits.set {
                upstream.retain(|(m, _)| fold(m) != fold(n.as_bytes()));
                upstream.push((n.as_bytes().to_vec(), v.clone()));
            }
            let ident: Vec<&Vec<u8>> = upstream
                .iter()
                .filter(|(n, _)| fold(n) == f.header.as_bytes())
                .map(|(_, v)| v)
                .collect();
            match identity {
                Some(id) => assert_eq!(
                    ident,
                    vec![&id.name.clone().into_bytes()],
                    "identity header upstream"
                ),
                None => assert!(
                    ident.is_empty(),
                    "SPOOF: an identity header reached the upstream without a developer"
                ),
            }
            if f.api && api_key.is_none() {
                for h in [
                    "x-devgate-organization",
                    "x-devgate-project",
                    "x-devgate-key-kind",
                    "x-devgate-key-id",
                    "x-devgate-count",
                ] {
                    assert!(
                        !upstream.iter().any(|(n, _)| fold(n) == h.as_bytes()),
                        "SPOOF: {h} reached the upstream without an API key"
                    );
                }
            }
            if let Some(id) = identity {
                if matches!(id.source, Source::Bearer | Source::Cookie) && f.strip_credential {
                    let used = tokens()
                        .iter()
                        .find(|t| t.sub == id.name)
                        .map(|t| t.text.as_bytes())
                        .unwrap_or_default();
                    let view: Vec<(&[u8], &[u8])> = upstream
                        .iter()
                        .map(|(n, v)| (n.as_slice(), v.as_slice()))
                        .collect();
                    for c in credentials(f, &view) {
                        assert_ne!(c, used, "the credential reached the upstream");
                    }
                }
            }
            if let Some(s) = &f.session {
                let view: Vec<(&[u8], &[u8])> = upstream
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice()))
                    .collect();
                assert!(
                    cookie_values(s.cookie, &view).is_empty(),
                    "the session cookie reached the upstream"
                );
            }
            if api_key.is_some() {
                if let Some((_, p)) = upstream.iter().find(|(n, _)| n == b":path") {
                    let q = p.splitn(2, |&b| b == b'?').nth(1).unwrap_or_default();
                    assert!(
                        devgate::core::query::find(q, &["key", "private_key"]).is_empty(),
                        "the API key reached the upstream in the query"
                    );
                }
                assert!(
                    !upstream.iter().any(|(n, _)| fold(n) == b"x-api-key"),
                    "X-Api-Key reached the upstream"
                );
            }
        }
        _ => {}
    }
}

//! The connection's client certificate, as Envoy's TLS listener validated it, and, from a proxy
//! the operator lists, the certificate that proxy saw (`x-forwarded-client-cert`).
//!
//! **What a host can tell.** Both hosts read Envoy's `connection.mtls` (a peer certificate was
//! *presented*), the first URI SAN, the first DNS SAN and the RFC 2253 subject of the peer
//! certificate; neither can read whether Envoy *validated* it, nor email SANs. A presented
//! certificate is a validated one only on a listener whose `DownstreamTlsContext` has a
//! `validation_context` with a `trusted_ca` and without `trust_chain_verification:
//! ACCEPT_UNTRUSTED` (there an unverifiable certificate fails the handshake). `devgate
//! check-config` refuses `edge.client_certs` on an Envoy bootstrap whose TLS listener carrying
//! devgate is not so configured; see docs/client-certificates.md.
//!
//! **Matching.** The developer is the first of the certificate's values, URI SANs, then DNS SANs,
//! then email SANs, then the subject, that the source lists, compared exactly; the name is that
//! value. A certificate that matches nothing is [`Reason::NotADeveloper`].
//!
//! **`x-forwarded-client-cert`** (XFCC, Envoy's format: `By=…;Hash=…;Cert=…;Subject="…";URI=…;
//! DNS=…`, one element per proxy, comma-separated) is read only when the request's **socket**
//! peer (never an address from `X-Forwarded-For`) is in `forwarded_from`. Of several elements the
//! **last** is used: a proxy that appends (`APPEND_FORWARD`) puts its own after whatever its client
//! sent, so only the last is the nearest proxy's word. Its `URI`, `DNS` and `Subject` are matched
//! as a connection's certificate's are. A malformed or oversized header from a listed proxy is a
//! refusal, never a guess.

use std::net::IpAddr;

use crate::core::codes::{Reason, Source};
use crate::core::net::{parse_peer, CidrList};

use super::super::decision::{Identity, Request};

/// What the host reports of the downstream connection's peer certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// Envoy validated the certificate against the listener's trusted CA. The hosts report a
    /// *presented* certificate here (Envoy tells them no more): true only because a listener
    /// configured as the module doc says fails the handshake of any other.
    pub validated: bool,
    /// URI SANs (a SPIFFE ID in a mesh). The hosts read the first only.
    pub uri_sans: Vec<String>,
    /// DNS SANs. The hosts read the first only.
    pub dns_sans: Vec<String>,
    /// Email SANs, where the host can read them (neither host can, with Envoy 1.40).
    pub emails: Vec<String>,
    /// The subject, RFC 2253 (`CN=alice,O=example`).
    pub subject: Option<String>,
}

/// Who is a developer by client certificate (`edge.client_certs`): the matched value is the
/// developer's name.
#[derive(Clone, Debug, Default)]
pub struct ClientCertSource {
    /// URI SANs (SPIFFE IDs) of developers.
    pub uri_sans: Vec<String>,
    /// DNS SANs of developers.
    pub dns_sans: Vec<String>,
    /// Email SANs of developers.
    pub emails: Vec<String>,
    /// Subjects (RFC 2253) of developers.
    pub subjects: Vec<String>,
    /// Believe `x-forwarded-client-cert` from these socket peers (a proxy that terminated TLS);
    /// `None`: never (the default).
    pub forwarded_from: Option<CidrList>,
}

/// The header a proxy forwards its client's certificate in (as Envoy stores names).
pub const XFCC: &[u8] = b"x-forwarded-client-cert";

/// Longest `x-forwarded-client-cert` (all its values together) read; a longer one from a listed
/// proxy is refused. Envoy's own element with `Cert` and `Chain` can be several KiB.
pub const MAX_XFCC: usize = 16 * 1024;

/// Most `URI` plus `DNS` values read from one element.
const MAX_VALUES: usize = 64;

/// The developer the connection's validated client certificate names (or, from a proxy in
/// `forwarded_from`, its `x-forwarded-client-cert`). `None`: no validated certificate (and no
/// believed XFCC). `socket_peer`: the request's socket peer; it is believed only when the
/// request's `source.address` is that address with a port (port 0: Envoy took it from
/// `X-Forwarded-For`).
///
/// The connection's certificate is tried first, then a believed XFCC: the first that names a
/// developer wins; when one was there and none did, [`Reason::NotADeveloper`].
pub fn check(
    src: &ClientCertSource,
    req: &Request<'_>,
    socket_peer: Option<IpAddr>,
) -> Option<Result<Identity, Reason>> {
    let mut seen = false;
    if let Some(cert) = req.cert.filter(|c| c.validated) {
        seen = true;
        if let Some(name) = developer(src, cert) {
            return Some(Ok(identity(name)));
        }
    }
    if from_listed_proxy(src, req, socket_peer) {
        match forwarded(req.headers) {
            Forwarded::Absent => {}
            Forwarded::Malformed => seen = true,
            Forwarded::Cert(cert) => {
                seen = true;
                if let Some(name) = developer(src, &cert) {
                    return Some(Ok(identity(name)));
                }
            }
        }
    }
    seen.then_some(Err(Reason::NotADeveloper))
}

fn identity(name: &str) -> Identity {
    Identity {
        name: name.to_string(),
        source: Source::ClientCert,
    }
}

/// The first of `cert`'s values the source lists (the source's spelling, which is the same).
fn developer<'s>(src: &'s ClientCertSource, cert: &ClientCert) -> Option<&'s str> {
    fn first<'s>(listed: &'s [String], values: &[String]) -> Option<&'s str> {
        values
            .iter()
            .find_map(|v| listed.iter().find(|l| *l == v))
            .map(String::as_str)
    }
    first(&src.uri_sans, &cert.uri_sans)
        .or_else(|| first(&src.dns_sans, &cert.dns_sans))
        .or_else(|| first(&src.emails, &cert.emails))
        .or_else(|| {
            let subject = cert.subject.as_deref()?;
            src.subjects
                .iter()
                .find(|s| s.as_str() == subject)
                .map(String::as_str)
        })
}

/// Whether the request's socket peer is one of `forwarded_from`: `socket_peer` must be the
/// request's own `source.address`, and that a socket address (a port, not 0).
fn from_listed_proxy(
    src: &ClientCertSource,
    req: &Request<'_>,
    socket_peer: Option<IpAddr>,
) -> bool {
    let (Some(list), Some(ip), Some(raw)) = (&src.forwarded_from, socket_peer, req.peer) else {
        return false;
    };
    match parse_peer(raw) {
        Ok(peer) => !peer.is_forwarded() && peer.ip == ip && list.contains(ip),
        Err(_) => false,
    }
}

/// What a believed `x-forwarded-client-cert` says.
#[derive(Debug, PartialEq, Eq)]
enum Forwarded {
    /// No such header.
    Absent,
    /// Present but not Envoy's format, or too long: refused.
    Malformed,
    /// The last element's certificate.
    Cert(ClientCert),
}

/// Every value of XFCC, joined as one list (`a, b` and two headers `a` and `b` are the same list),
/// its last element parsed.
fn forwarded(headers: &[(&[u8], &[u8])]) -> Forwarded {
    let mut joined: Vec<u8> = Vec::new();
    let mut any = false;
    for (_, value) in headers.iter().filter(|(n, _)| *n == XFCC) {
        if any {
            joined.push(b',');
        }
        any = true;
        if joined.len() + value.len() > MAX_XFCC {
            return Forwarded::Malformed;
        }
        joined.extend_from_slice(value);
    }
    if !any {
        return Forwarded::Absent;
    }
    let Ok(text) = std::str::from_utf8(&joined) else {
        return Forwarded::Malformed;
    };
    let Some(elements) = split_outside_quotes(text, ',') else {
        return Forwarded::Malformed;
    };
    match elements.last().map(|e| parse_element(e.trim())) {
        Some(Some(cert)) => Forwarded::Cert(cert),
        _ => Forwarded::Malformed,
    }
}

/// `s` split at `sep` where it is not inside a double-quoted stretch (in which `\` escapes the
/// next character). `None`: a quote is left open or ends in a lone `\`.
fn split_outside_quotes(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == sep {
            parts.push(s.get(start..i)?);
            start = i + c.len_utf8();
        }
    }
    if quoted || escaped {
        return None;
    }
    parts.push(s.get(start..)?);
    Some(parts)
}

/// A value as written: bare, or double-quoted with `\` escapes (the quotes must enclose it all).
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains('"') && !v.contains('\\')).then(|| v.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// One element, `Key=value` pairs separated by `;`. Keys are case-insensitive; `URI` and `DNS`
/// may repeat, `Subject` may not; `By`, `Hash`, `Cert`, `Chain` and unknown keys are skipped.
/// `None`: not of that form, or an element naming nothing devgate can match.
fn parse_element(element: &str) -> Option<ClientCert> {
    if element.is_empty() {
        return None;
    }
    let mut cert = ClientCert {
        validated: true,
        ..ClientCert::default()
    };
    for pair in split_outside_quotes(element, ';')? {
        let (key, value) = pair.trim().split_once('=')?;
        let value = value.trim();
        if key.eq_ignore_ascii_case("uri") || key.eq_ignore_ascii_case("dns") {
            if cert.uri_sans.len() + cert.dns_sans.len() >= MAX_VALUES {
                return None;
            }
            let value = unquote(value)?;
            if value.is_empty() {
                return None;
            }
            if key.eq_ignore_ascii_case("uri") {
                cert.uri_sans.push(value);
            } else {
                cert.dns_sans.push(value);
            }
        } else if key.eq_ignore_ascii_case("subject") {
            let value = unquote(value)?;
            if cert.subject.is_some() || value.is_empty() {
                return None;
            }
            cert.subject = Some(value);
        } else if key.is_empty() || key.contains(|c: char| !c.is_ascii_alphanumeric()) {
            return None;
        } else {
            // By, Hash, Cert, Chain: not an identity here. Still well-formed.
            unquote(value)?;
        }
    }
    (!cert.uri_sans.is_empty() || !cert.dns_sans.is_empty() || cert.subject.is_some())
        .then_some(cert)
}

#[cfg(test)]
#[path = "../tests/edge_cert.rs"]
mod tests;

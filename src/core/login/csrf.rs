//! CSRF: the form POST must come from the same origin (scheme, host and port).

/// `(host, port)` of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`); `None` when it
/// is not one (empty, empty or non-numeric port, bare IPv6, userinfo).
pub(super) fn split_authority(authority: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if authority.starts_with(b"[") {
        let close = authority.iter().position(|&b| b == b']')?;
        let host = authority.get(..=close)?;
        match authority.get(close + 1..)? {
            [] => (host, None),
            [b':', port @ ..] => (host, Some(port)),
            _ => return None,
        }
    } else {
        match authority.iter().filter(|&&b| b == b':').count() {
            0 => (authority, None),
            1 => {
                let colon = authority.iter().position(|&b| b == b':')?;
                (authority.get(..colon)?, Some(authority.get(colon + 1..)?))
            }
            _ => return None,
        }
    };
    let valid_host = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'@' | b'/' | b'\\' | b'?' | b'#'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit) => {
            Some(std::str::from_utf8(p).ok()?.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// True if `origin_or_referer` (the request's `Origin`, or when it has none its `Referer`)
/// names this site's origin: scheme, host and port (RFC 6454), where the scheme is `https`
/// when `https` is true and `http` otherwise, and host and port are the request's
/// `:authority` (`host`).
///
/// `https` is a fact of the connection, never of the request: the listener's TLS state (or
/// `login.secure_cookie`, the operator saying a TLS-terminating proxy is in front), not
/// `:scheme` or `X-Forwarded-Proto`, which a client writes. A port left out on either side is
/// that scheme's default (80 or 443), so on a plain listener `Host: h` is `http://h:80` and on
/// TLS `https://h:443`.
///
/// Refused: no header at all (see "Choices" in the module documentation), `Origin: null`, the
/// other scheme or any scheme but `http`/`https`, userinfo, anything unparseable. Host names
/// compare case-insensitively. Never panics.
pub fn same_origin(origin_or_referer: Option<&[u8]>, host: &[u8], https: bool) -> bool {
    let Some(url) = origin_or_referer.map(<[u8]>::trim_ascii) else {
        return false;
    };
    let Some(sep) = url.windows(3).position(|w| w == b"://") else {
        return false;
    };
    let scheme = url.get(..sep).unwrap_or_default();
    let (expected, default_port): (&[u8], u16) = if https {
        (b"https", 443)
    } else {
        (b"http", 80)
    };
    if !scheme.eq_ignore_ascii_case(expected) {
        return false;
    }
    let rest = url.get(sep + 3..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    let (Some((url_host, url_port)), Some((req_host, req_port))) = (
        split_authority(authority),
        split_authority(host.trim_ascii()),
    ) else {
        return false;
    };
    url_host.eq_ignore_ascii_case(req_host)
        && url_port.unwrap_or(default_port) == req_port.unwrap_or(default_port)
}

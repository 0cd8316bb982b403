//! The identity header and its spellings.
//!
//! devgate tells the upstream who the developer is with one request header (by default
//! `x-wsgiorg-developer-user`). A client must never be able to send that header itself, in any
//! spelling the upstream might read as the same key: HTTP header names are case-insensitive, and
//! WSGI/CGI servers fold `-` and `_` into the same environ key (`HTTP_X_WSGIORG_DEVELOPER_USER`),
//! so `x_wsgiorg_developer_user` is the same header to them. devgate strips every name that
//! equals the configured one after ASCII lower-casing and mapping `_` to `-`.

use std::fmt;

/// A validated header name, stored lower-case with `-` (its HTTP/2 spelling).
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderName(String);

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Folds a header name to the key an upstream could read it as: ASCII lower case, `_` as `-`.
fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// An RFC 9110 (RFC 7230) `tchar`: a character of a token.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl HeaderName {
    /// A header name from config: an RFC 9110 token, at most 128 bytes, not a pseudo-header.
    pub fn parse(text: &str) -> Result<HeaderName, String> {
        if text.is_empty() || text.len() > 128 {
            return Err("must be 1 to 128 characters".into());
        }
        if !text.bytes().all(is_tchar) {
            return Err("must be an HTTP header name (letters, digits, '-', '_', ...)".into());
        }
        let folded: Vec<u8> = text.bytes().map(fold).collect();
        String::from_utf8(folded)
            .map(HeaderName)
            .map_err(|_| "must be ASCII".to_string())
    }

    /// The name, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `name`, as the client sent it, is a spelling of this header.
    pub fn is_spelling(&self, name: &[u8]) -> bool {
        is_spelling_of(name, self.0.as_bytes())
    }
}

/// True when `name`, as the client sent it, is a spelling of `target` (lower-case, with `-`).
pub fn is_spelling_of(name: &[u8], target: &[u8]) -> bool {
    name.len() == target.len() && name.iter().zip(target).all(|(&a, &b)| fold(a) == b)
}

/// The distinct names in `headers` that are spellings of any of `targets`, each once, in the
/// form the host has them (so that a host-side remove by name hits them).
pub fn spellings_present<'a>(
    headers: &[(&'a [u8], &'a [u8])],
    targets: &[&HeaderName],
) -> Vec<&'a [u8]> {
    let mut found: Vec<&'a [u8]> = Vec::new();
    for (name, _) in headers {
        if targets.iter().any(|t| t.is_spelling(name)) && !found.contains(name) {
            found.push(name);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_is_the_same_header() {
        let h = HeaderName::parse("X-Wsgiorg-Developer-User").unwrap();
        assert_eq!(h.as_str(), "x-wsgiorg-developer-user");
        for s in [
            "x-wsgiorg-developer-user",
            "X-WSGIORG-DEVELOPER-USER",
            "x_wsgiorg_developer_user",
            "X_Wsgiorg-Developer_USER",
        ] {
            assert!(h.is_spelling(s.as_bytes()), "{s}");
        }
        for s in [
            "x-wsgiorg-developer-users",
            "x-wsgiorg-developer-use",
            "x.wsgiorg.developer_user",
            "",
        ] {
            assert!(!h.is_spelling(s.as_bytes()), "{s}");
        }
        assert!(!h.is_spelling(b"x-wsgiorg-developer-us\xc5"));
    }

    #[test]
    fn config_names_are_tokens() {
        assert!(HeaderName::parse("").is_err());
        assert!(HeaderName::parse("has space").is_err());
        assert!(HeaderName::parse(":authority").is_err());
        assert!(HeaderName::parse("x-é").is_err());
        assert!(HeaderName::parse(&"a".repeat(129)).is_err());
        assert_eq!(
            HeaderName::parse("X_Dev").unwrap(),
            HeaderName::parse("x-dev").unwrap()
        );
    }

    #[test]
    fn repeated_spellings_are_listed_once() {
        let h = HeaderName::parse("x-dev").unwrap();
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"x-dev", b"a"),
            (b"host", b"h"),
            (b"x_dev", b"b"),
            (b"x-dev", b"c"),
        ];
        assert_eq!(
            spellings_present(&headers, &[&h]),
            vec![&b"x-dev"[..], &b"x_dev"[..]]
        );
    }
}

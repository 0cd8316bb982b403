//! The request's source: the seed's `ProjectTokenContext.source`, what kind of client sent an
//! API request, passed on to the application in one header (`api.headers.source`).
//!
//! The value is the `X-SDK-Source` header's, or `ai-context` when `AI-Context: true` (the value
//! compared case-insensitively) and there is no usable `X-SDK-Source`. It is the client's word,
//! not a credential: it is validated only so that what the upstream gets is one well-formed
//! token ([`MAX_LEN`] bytes at most, RFC 7230 `tchar`s). Anything else (empty, too long, another
//! character, the header sent twice) is dropped, as if absent, never forwarded. The client's own
//! `X-SDK-Source` and `AI-Context` headers go on untouched.

use super::headers;

/// The longest source passed on, in bytes.
pub const MAX_LEN: usize = 64;

/// The header an SDK names itself in (the seed's `X-SDK-Source`), as the hosts hold it.
const SDK_SOURCE: &[u8] = b"x-sdk-source";

/// The header an AI assistant's requests carry (`AI-Context: true`), as the hosts hold it.
const AI_CONTEXT: &[u8] = b"ai-context";

/// The source of a request sent with `AI-Context: true`.
pub const AI_SOURCE: &[u8] = b"ai-context";

/// The request's source, if it has a valid one (module docs).
pub fn of<'a>(req_headers: &[(&'a [u8], &'a [u8])]) -> Option<&'a [u8]> {
    let only = |name: &[u8]| {
        let mut values = req_headers
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.trim_ascii());
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    if let Some(sdk) = only(SDK_SOURCE).filter(|v| is_valid(v)) {
        return Some(sdk);
    }
    only(AI_CONTEXT)
        .filter(|v| v.eq_ignore_ascii_case(b"true"))
        .map(|_| AI_SOURCE)
}

/// 1 to [`MAX_LEN`] bytes, every one an RFC 7230 `tchar`.
fn is_valid(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len()) && value.iter().all(|&b| headers::is_tchar(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(h: &[(&'static [u8], &'static [u8])]) -> Option<&'static str> {
        of(h).map(|s| std::str::from_utf8(s).unwrap())
    }

    #[test]
    fn sdk_source_then_ai_context() {
        assert_eq!(source(&[]), None);
        assert_eq!(
            source(&[(b"x-sdk-source", b"woosmap-js")]),
            Some("woosmap-js")
        );
        assert_eq!(source(&[(b"x-sdk-source", b" a.b_c~1 ")]), Some("a.b_c~1"));
        for v in [&b"true"[..], b"TRUE", b"True", b" true "] {
            assert_eq!(source(&[(b"ai-context", v)]), Some("ai-context"), "{v:?}");
        }
        for v in [&b"false"[..], b"1", b"yes", b"", b"true, true"] {
            assert_eq!(source(&[(b"ai-context", v)]), None, "{v:?}");
        }
        assert_eq!(
            source(&[(b"ai-context", b"true"), (b"x-sdk-source", b"sdk")]),
            Some("sdk"),
            "X-SDK-Source first"
        );
    }

    #[test]
    fn anything_but_one_token_is_dropped() {
        let max: &'static [u8] = &[b'a'; MAX_LEN];
        let long: &'static [u8] = &[b'a'; MAX_LEN + 1];
        assert_eq!(
            source(&[(b"x-sdk-source", max)]).map(str::len),
            Some(MAX_LEN)
        );
        for v in [
            long,
            b"",
            b"  ",
            b"a b",
            b"sdk/1.0",
            b"a,b",
            b"a\"b",
            b"caf\xc3\xa9",
            b"a\tb",
            b"a;b=c",
        ] {
            assert_eq!(source(&[(b"x-sdk-source", v)]), None, "{v:?}");
        }
        assert_eq!(
            source(&[(b"x-sdk-source", b"a"), (b"x-sdk-source", b"a")]),
            None,
            "twice is not one value"
        );
        assert_eq!(
            source(&[(b"x-sdk-source", b"a b"), (b"ai-context", b"true")]),
            Some("ai-context"),
            "an invalid X-SDK-Source is absent"
        );
        assert_eq!(
            source(&[(b"ai-context", b"true"), (b"ai-context", b"true")]),
            None
        );
        // Only the header's own name: other spellings are other headers to devgate.
        assert_eq!(source(&[(b"x_sdk_source", b"a")]), None);
    }
}

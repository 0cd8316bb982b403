//! Form POST bodies: the `_method` values a framework reads from them.
//!
//! A form POST may be decided as the method its body's `_method` asks for
//! ([`crate::core::decide_form`]); then devgate reads the body, up to [`MAX_BODY`], and finds
//! every `_method` in it as frameworks do: in `application/x-www-form-urlencoded` (`&` or `;`
//! between pairs, `+` for a space, names and values percent-decoded) and in the `_method` parts
//! of `multipart/form-data`. A body it cannot read that way (encoded, a multipart body without
//! its closing delimiter, ...) is decided the strict way, as if it asked for every method.

use super::method;
use super::query;

/// The largest form body devgate reads for its `_method`; a larger one is decided strictly.
pub const MAX_BODY: usize = 64 * 1024;

/// The parameter frameworks read.
const PARAM: &[u8] = b"_method";

/// How a form body is encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `application/x-www-form-urlencoded`.
    Urlencoded,
    /// `multipart/form-data` with this boundary.
    Multipart(Vec<u8>),
}

impl Kind {
    /// The form a request's body is, if devgate can read it: exactly one `Content-Type`, a
    /// form one (a multipart one with its boundary), and no `Content-Encoding` but `identity`.
    pub fn of(headers: &[(&[u8], &[u8])]) -> Option<Kind> {
        let mut types = headers.iter().filter(|(n, _)| *n == b"content-type");
        let (Some((_, value)), None) = (types.next(), types.next()) else {
            return None;
        };
        let encoded = headers.iter().any(|(n, v)| {
            *n == b"content-encoding" && !v.trim_ascii().eq_ignore_ascii_case(b"identity")
        });
        if encoded || !method::is_form(value) {
            return None;
        }
        let mut parts = value.split(|&b| b == b';');
        let media = parts.next().unwrap_or_default().trim_ascii();
        if media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
            return Some(Kind::Urlencoded);
        }
        let boundary = parts.find_map(|p| {
            let (name, v) = query::split_pair(p.trim_ascii());
            name.trim_ascii()
                .eq_ignore_ascii_case(b"boundary")
                .then(|| unquote(v.trim_ascii()))
        })?;
        // RFC 2046: 1 to 70 characters.
        (1..=70)
            .contains(&boundary.len())
            .then(|| Kind::Multipart(boundary.to_vec()))
    }

    /// Every `_method` value of a whole body, as sent; `None`: the body cannot be read.
    pub fn methods(&self, body: &[u8]) -> Option<Vec<Vec<u8>>> {
        match self {
            Kind::Urlencoded => Some(urlencoded(body)),
            Kind::Multipart(boundary) => multipart(boundary, body),
        }
    }
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

fn urlencoded(body: &[u8]) -> Vec<Vec<u8>> {
    let plus = |b: &u8| if *b == b'+' { b' ' } else { *b };
    body.split(|&b| b == b'&' || b == b';')
        .filter_map(|pair| {
            let (name, value) = query::split_pair(pair);
            let name: Vec<u8> = name.iter().map(plus).collect();
            (query::decode(&name) == PARAM).then(|| {
                let value: Vec<u8> = value.iter().map(plus).collect();
                query::decode(&value)
            })
        })
        .collect()
}

/// The position of `needle` in `hay`, from `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The `_method` parts of a multipart body; `None` without a closing delimiter, or with a part
/// whose headers do not end.
fn multipart(boundary: &[u8], body: &[u8]) -> Option<Vec<Vec<u8>>> {
    // Every delimiter is at the start of a line: the first one may open the body.
    let mut text = b"\r\n".to_vec();
    text.extend_from_slice(body);
    let mut delimiter = b"\r\n--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut out = Vec::new();
    let mut at = find(&text, &delimiter, 0)?;
    loop {
        let after = at + delimiter.len();
        if text.get(after..after + 2) == Some(b"--") {
            return Some(out);
        }
        // The rest of the delimiter's line (transport padding), then the part's headers.
        let start = find(&text, b"\r\n", after)? + 2;
        let next = find(&text, &delimiter, start)?;
        let part = text.get(start..next)?;
        let (head, content) = match find(part, b"\r\n\r\n", 0) {
            Some(i) => (part.get(..i)?, part.get(i + 4..)?),
            // A part with no headers starts with its blank line.
            None if part.starts_with(b"\r\n") => (&b""[..], part.get(2..)?),
            None => return None,
        };
        if names_method(head) {
            out.push(content.to_vec());
        }
        at = next;
    }
}

/// Whether a part's headers name it `_method` (`Content-Disposition: form-data; name=...`).
fn names_method(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii();
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (line.get(..colon), line.get(colon + 1..));
        name.is_some_and(|n| n.trim_ascii().eq_ignore_ascii_case(b"content-disposition"))
            && value.is_some_and(|v| {
                v.split(|&b| b == b';').skip(1).any(|p| {
                    let (k, v) = query::split_pair(p.trim_ascii());
                    k.trim_ascii().eq_ignore_ascii_case(b"name") && unquote(v.trim_ascii()) == PARAM
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ct: &str) -> Option<Kind> {
        Kind::of(&[(b"content-type", ct.as_bytes())])
    }

    fn text(v: Option<Vec<Vec<u8>>>) -> Option<Vec<String>> {
        v.map(|v| {
            v.into_iter()
                .map(|m| String::from_utf8(m).unwrap())
                .collect()
        })
    }

    #[test]
    fn which_bodies_are_read() {
        assert_eq!(
            kind("application/x-www-form-urlencoded; charset=utf-8"),
            Some(Kind::Urlencoded)
        );
        assert_eq!(
            kind("multipart/form-data; charset=x; Boundary=\"a b\""),
            Some(Kind::Multipart(b"a b".to_vec()))
        );
        assert_eq!(kind("multipart/form-data"), None, "no boundary");
        assert_eq!(
            kind(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            None
        );
        assert_eq!(kind("application/json"), None);
        let encoded: [(&[u8], &[u8]); 2] = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-encoding", b"gzip"),
        ];
        assert_eq!(Kind::of(&encoded), None);
        let twice: [(&[u8], &[u8]); 2] = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-type", b"application/x-www-form-urlencoded"),
        ];
        assert_eq!(Kind::of(&twice), None);
    }

    #[test]
    fn urlencoded_method_values() {
        let m = |body: &str| text(Kind::Urlencoded.methods(body.as_bytes())).unwrap();
        assert!(m("").is_empty());
        assert!(m("a=1&b=_method&method=PUT&_methods=PUT").is_empty());
        assert_eq!(m("a=1&_method=DELETE"), ["DELETE"]);
        assert_eq!(
            m("%5Fmethod=put;_method=pa%74ch&_method+=x&_method=de+lete+"),
            ["put", "patch", "de lete "]
        );
        assert_eq!(m("_method"), [""]);
    }

    #[test]
    fn multipart_method_parts() {
        let k = Kind::Multipart(b"XyZ".to_vec());
        let m = |body: &str| text(k.methods(body.replace('\n', "\r\n").as_bytes()));
        let body = "preamble\n--XyZ\nContent-Disposition: form-data; name=\"title\"\n\nhi _method\n\
                    --XyZ\ncontent-disposition: form-data; name=_method\n\nDELETE\n\
                    --XyZ  \nContent-Type: text/plain\nContent-Disposition: form-data; filename=\"a\"; name=\"_method\"\n\nPUT\n\
                    --XyZ--\nepilogue";
        assert_eq!(m(body), Some(vec!["DELETE".into(), "PUT".into()]));
        let body = "--XyZ\nContent-Disposition: form-data; name=\"_method_x\"\n\nDELETE\n--XyZ--";
        assert_eq!(m(body), Some(vec![]));
        assert_eq!(m("--XyZ\n\nno headers\n--XyZ--"), Some(vec![]));
        // Unreadable: no closing delimiter, no delimiter at all, headers that never end.
        let open = "--XyZ\nContent-Disposition: form-data; name=\"_method\"\n\nDELETE\n--XyZ\n";
        assert_eq!(m(open), None);
        assert_eq!(m("_method=DELETE"), None);
        assert_eq!(
            m("--XyZ\nContent-Disposition: form-data; name=_method\n--XyZ--"),
            None
        );
        // The boundary must start a line: inside a value it is data.
        let inner = "--XyZ\nContent-Disposition: form-data; name=a\n\nx--XyZ--\n--XyZ--";
        assert_eq!(m(inner), Some(vec![]));
    }
}

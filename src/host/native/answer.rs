//! A key-service callout's answer as the native host reads it from Envoy's views (its headers,
//! its body in chunks) and hands it to the core (`core::callout::CalloutAnswer`): the status, the
//! `retry-after` header and the body in one piece, bounded by [`MAX_ANSWER_BODY`].
//!
//! Std only, no `unsafe`: compiled and unit-tested without the `native-module` feature.

use std::borrow::Cow;

use crate::core::callout::{CalloutAnswer, MAX_ANSWER_BODY};

/// An answer's views, valid during Envoy's callout hook: every header (names lower-case,
/// `:status` included) and the body's chunks.
pub type Views<'a> = (&'a [(&'a [u8], &'a [u8])], &'a [&'a [u8]]);

/// A callout's answer as the host read it: its status, `retry-after`, and its body in one piece
/// (copied only when Envoy hands it in several chunks).
pub struct Answer<'a> {
    status: Option<u16>,
    retry_after: Option<&'a [u8]>,
    body: Cow<'a, [u8]>,
}

impl<'a> Answer<'a> {
    /// Reads an answer's views. No answer (the call failed: reset, timeout, no cluster), no
    /// readable `:status`, or a body over [`MAX_ANSWER_BODY`]: [`CalloutAnswer::FAILED`].
    pub fn of(views: Option<Views<'a>>) -> Answer<'a> {
        let failed = Answer {
            status: None,
            retry_after: None,
            body: Cow::Borrowed(&b""[..]),
        };
        let Some(views) = views else {
            return failed;
        };
        let (headers, chunks) = views;
        let header = |name: &[u8]| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let status = header(b":status")
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok());
        let size: usize = chunks.iter().map(|c| c.len()).sum();
        if status.is_none() || size > MAX_ANSWER_BODY {
            return failed;
        }
        let body = match chunks {
            [] => Cow::Borrowed(&b""[..]),
            [one] => Cow::Borrowed(*one),
            many => Cow::Owned(many.concat()),
        };
        Answer {
            status,
            retry_after: header(b"retry-after"),
            body,
        }
    }

    /// The answer as the core reads it.
    pub fn core(&self) -> CalloutAnswer<'_> {
        if self.status.is_none() {
            return CalloutAnswer::FAILED;
        }
        CalloutAnswer {
            status: self.status,
            retry_after: self.retry_after,
            body: &self.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<'a>(headers: &'a [(&'a [u8], &'a [u8])], body: &'a [&'a [u8]]) -> Answer<'a> {
        Answer::of(Some((headers, body)))
    }

    #[test]
    fn no_answer_or_no_status_is_failed() {
        assert_eq!(Answer::of(None).core(), CalloutAnswer::FAILED);
        let headers: [(&[u8], &[u8]); 1] = [(b"content-type", b"text/plain")];
        assert_eq!(read(&headers, &[b"x"]).core(), CalloutAnswer::FAILED);
        let headers: [(&[u8], &[u8]); 1] = [(b":status", b"2oo")];
        assert_eq!(read(&headers, &[]).core(), CalloutAnswer::FAILED);
    }

    #[test]
    fn status_retry_after_and_chunks_in_one_piece() {
        let headers: [(&[u8], &[u8]); 2] = [(b":status", b"429"), (b"retry-after", b"7")];
        let chunks: [&[u8]; 3] = [b"ab", b"", b"cd"];
        let answer = read(&headers, &chunks);
        let core = answer.core();
        assert_eq!(core.status, Some(429));
        assert_eq!(core.retry_after, Some(&b"7"[..]));
        assert_eq!(core.body, b"abcd");
        let headers: [(&[u8], &[u8]); 1] = [(b":status", b"200")];
        let answer = read(&headers, &[]);
        assert_eq!(answer.core().status, Some(200));
        assert_eq!(answer.core().body, b"");
        assert_eq!(answer.core().retry_after, None);
    }

    #[test]
    fn a_body_over_the_bound_is_failed() {
        let headers: [(&[u8], &[u8]); 1] = [(b":status", b"200")];
        let big = vec![b'a'; MAX_ANSWER_BODY];
        let chunks: [&[u8]; 1] = [&big];
        assert_eq!(read(&headers, &chunks).core().body.len(), MAX_ANSWER_BODY);
        let chunks: [&[u8]; 2] = [&big, b"b"];
        assert_eq!(read(&headers, &chunks).core(), CalloutAnswer::FAILED);
    }
}

//! Steps that wait for an outside answer: an HTTP callout the host makes for a stream (the key
//! service today; JWKS fetches next), and a wait for another stream's callout to the same place
//! (single flight). The core says what to ask ([`Callout`]) or how long to wait ([`Wait`]); the
//! host starts it, holds the request, and hands back what came ([`CalloutAnswer`]).
//!
//! A callout carries a credential (the API key to resolve), so nothing here prints a header
//! value: `Debug` shows names only.

use std::borrow::Cow;
use std::fmt;

/// Most bytes of a callout answer's body devgate reads (a key service answer, an issuer's JWK
/// set or PEM: 64 KiB, several times the largest public JWK sets); a longer answer is a
/// malformed one.
pub const MAX_ANSWER_BODY: usize = 64 * 1024;

/// An HTTP request the host sends on the stream's behalf, then holds the request until the
/// answer (or the timeout) comes.
#[derive(Clone, PartialEq, Eq)]
pub struct Callout {
    /// The Envoy cluster to send it to.
    pub cluster: String,
    /// Every header, pseudo-headers first (`:method`, `:path`, `:authority`), then the rest.
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
    /// How long the host waits for the whole answer.
    pub timeout_ms: u64,
}

impl fmt::Debug for Callout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_ref()).collect();
        f.debug_struct("Callout")
            .field("cluster", &self.cluster)
            .field("headers", &names)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Hold the request until the callout another stream made for the same thing (`flight`) ends,
/// or until `until_ms` (milliseconds since the epoch) at the latest, then run the stream's step
/// again ([`crate::core::stream::Stream::resume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// What is awaited: the same number for every stream waiting on one callout.
    pub flight: u64,
    /// When to stop waiting whatever happened.
    pub until_ms: u64,
}

/// What a callout came back with, as the host read it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CalloutAnswer<'a> {
    /// The answer's status; `None` when none came (reset, refused, timed out, no cluster).
    pub status: Option<u16>,
    /// The answer's `retry-after` header, if any.
    pub retry_after: Option<&'a [u8]>,
    /// The answer's body (at most [`MAX_ANSWER_BODY`] bytes; a host that got more hands
    /// [`CalloutAnswer::FAILED`]).
    pub body: &'a [u8],
}

impl CalloutAnswer<'_> {
    /// No answer: the callout failed, timed out or could not start.
    pub const FAILED: CalloutAnswer<'static> = CalloutAnswer {
        status: None,
        retry_after: None,
        body: b"",
    };
}

impl fmt::Debug for CalloutAnswer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloutAnswer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

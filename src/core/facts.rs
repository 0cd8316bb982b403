//! The facts a host gathers for the core: the request's headers step as plain data, and the
//! facts read lazily, only when a step needs them (each is a host call).

/// Request facts a host reads only when asked.
pub trait Facts {
    /// Seconds since the Unix epoch (0 for a clock before it: then no token is valid).
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }
    /// Milliseconds since the Unix epoch (0 before it): the login verify budget's clock.
    fn now_ms(&self) -> u64;
    /// Whether the downstream connection is TLS.
    fn tls(&self) -> bool;
    /// The downstream connection's client certificate as Envoy reports it (`None`: plain text,
    /// no certificate, or the host cannot read it). Asked only when `edge.client_certs` is
    /// configured.
    fn client_cert(&self) -> Option<crate::core::edge::ClientCert>;
}

/// The upstream's response headers, read only when asked.
pub trait ResponseFacts {
    /// Whether the response has header `name` (lower-case), without copying its value.
    fn has_header(&self, name: &[u8]) -> bool;
    /// Calls `f` with every response header, pseudo-headers included; `None` when they cannot
    /// be read.
    fn with_headers<R>(&self, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> Option<R>;
}

/// The facts of a request's headers step, as the host gathered them.
#[derive(Clone, Copy, Debug)]
pub struct RequestHeaders<'a> {
    /// The socket peer (Envoy's `source.address`), raw; `None` when the host has none.
    pub peer: Option<&'a [u8]>,
    /// Every request header, pseudo-headers included, as bytes, repeated ones kept.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// The request has no body and no trailers.
    pub end_of_stream: bool,
}

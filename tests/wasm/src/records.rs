//! What the host records: log lines, host calls, local responses, body calls.

use crate::headers::Headers;
use crate::shared::Action;

/// One `proxy_log` line, or one line the module wrote to stdout/stderr (level `None`).
#[derive(Clone, Debug)]
pub struct LogLine {
    pub level: Option<u32>,
    pub message: String,
    pub raw: Vec<u8>,
}

/// One host call made by the module: its name and a short rendering of its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCall {
    pub name: &'static str,
    pub args: String,
}

/// The stream callback the module is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    RequestHeaders,
    /// `proxy_on_request_body` for chunk `n` (0-based).
    RequestBody(usize),
    RequestTrailers,
    ResponseHeaders,
    /// A root callback while the request is held: a callout's answer or a tick (a local reply
    /// sent then needs no callback's pause: Envoy sends it from outside the filter chain).
    Held,
    /// done / log / delete, or outside a stream.
    Other,
}

/// What `proxy_send_local_response` asked for.
#[derive(Clone, Debug)]
pub struct LocalResponse {
    pub status: u32,
    pub details: Vec<u8>,
    pub body: Vec<u8>,
    pub headers: Headers,
    pub grpc_status: i32,
    /// The callback that sent it.
    pub phase: Phase,
}

/// One `proxy_on_request_body` call.
#[derive(Clone, Debug)]
pub struct BodyCall {
    /// The chunk the host delivered with this call.
    pub delivered: Vec<u8>,
    /// The `body_size` argument: the buffer's size (earlier paused chunks included).
    pub size: usize,
    pub end_of_stream: bool,
    pub action: Action,
    /// What went on to the next filter: the buffer as the module left it, when it returned
    /// Continue with no local reply; `None` when it paused (buffered) or answered.
    pub passed_on: Option<Vec<u8>>,
}

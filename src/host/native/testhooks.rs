//! Test build only (`test-hooks` feature, `make fault-native`): request headers that drive the
//! bindings the shipped build does not call yet, so that each is proven in the real Envoy
//! (`tests/e2e/test_native_bindings.py`) before the plan (issue #16) relies on it. A wrong
//! signature in `bindings/imports.rs` is otherwise silent. The shipped `libdevgate.so` has none of this.
//!
//! `filter_name: devgate-noop` makes a configuration that does nothing (the `native_noop`
//! benchmark: the module's fixed cost). A request asks with `x-devgate-test: <command>`. Every command but `allocations` runs only
//! after devgate let the request through (its edits made), so none of them bypasses the policy:
//!
//! | command | bindings | what the upstream / client sees |
//! |---|---|---|
//! | `allocations` | (the counting allocator) | a local 200: `total=<n> core=<m>`, the module's allocations so far and those inside the core |
//! | `defer:<ms>` | pool, `scheduler_new/commit/delete`, `on_scheduled`, `continue_decoding` | the request held while a pool thread sleeps `<ms>`, then resumed with `x-devgate-test-deferred: resumed`; 503 `devgate_test_pool_full` when the pool refuses |
//! | `body:<n>` | `get_body_chunks(_size)` (received and buffered), `drain_body`, body "stop and buffer" | `x-devgate-test-body-seen: <length>`, and the body without its first `<n>` bytes |
//! | `add-header` | `add_header` (request and response) | a second `x-devgate-test-added` value; `x-devgate-test-response: added` on the response |
//! | `gauge:<n>` | `define_gauge`, `set_gauge` | the gauge `devgate.test.gauge` = `<n>` in the admin stats |
//! | `tls` | the `connection.tls_version` attribute | `x-devgate-test-tls: <version>` or `none` |
//! | `callout` | `http_callout`, `on_http_callout_done`, `continue_decoding` | the request held while the module calls the `demo_upstream` cluster, then `x-devgate-test-callout: <status> <body bytes>` (or `failed`) |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bindings::{
    counting, log, Body, BodyStatus, CalloutAnswer, ConfigHost, HeaderMap, Host, LogLevel,
    Scheduler,
};
use super::filter::Stream;
use crate::host::native::pool::Pool;

/// The request header that asks for a test hook.
const TEST_HEADER: &[u8] = b"x-devgate-test";
/// The one event the `defer` hook schedules.
const RESUME: u64 = 1;

/// Allocations made by the core's code (its request step, and a plan's audit value), the rest of
/// a request's being the glue's.
static CORE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Runs `f` (the core's code) and counts the allocations it makes.
pub fn in_core<T>(f: impl FnOnce() -> T) -> T {
    let before = counting::allocations();
    let out = f();
    CORE_ALLOCATIONS.fetch_add(counting::allocations() - before, Ordering::Relaxed);
    out
}

/// What a configuration keeps for the test hooks.
pub struct ConfigTest {
    gauge: Option<usize>,
    /// One thread, no queue: a second deferred request while one is in hand is refused, so the
    /// e2e test can show the fail-closed answer.
    pool: Pool,
}

impl ConfigTest {
    pub fn new(host: &ConfigHost) -> Option<ConfigTest> {
        let pool = match Pool::new("devgate-test", 1, 0) {
            Ok(p) => p,
            Err(_) => {
                log(LogLevel::Error, "devgate: test build: pool did not start");
                return None;
            }
        };
        Some(ConfigTest {
            gauge: host.define_gauge("devgate.test.gauge"),
            pool,
        })
    }
}

/// What a stream keeps for the test hooks.
#[derive(Default)]
pub struct StreamTest {
    /// `body:<n>`: bytes to drain once the whole body is in.
    body_drain: Option<usize>,
    /// `add-header`: add a response header too.
    add_response_header: bool,
    /// `callout`: the id of the call in flight.
    callout: Option<u64>,
    /// `defer`: the scheduler of the job in hand (withdrawn from it when the stream ends).
    deferred: Option<Scheduler>,
}

/// A test command, parsed from the request (owned: it outlives the header views).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    None,
    Allocations,
    Defer(u64),
    Body(usize),
    AddHeader,
    Gauge(u64),
    Tls,
    Callout,
}

impl Command {
    pub fn of(headers: &[(&[u8], &[u8])]) -> Command {
        let Some(v) = headers
            .iter()
            .find(|(n, _)| *n == TEST_HEADER)
            .map(|(_, v)| *v)
        else {
            return Command::None;
        };
        let v = std::str::from_utf8(v).unwrap_or_default();
        let (cmd, arg) = v.split_once(':').unwrap_or((v, ""));
        match (cmd, arg.parse::<u64>()) {
            ("allocations", _) => Command::Allocations,
            ("defer", Ok(ms)) => Command::Defer(ms),
            ("body", Ok(n)) => Command::Body(usize::try_from(n).unwrap_or(0)),
            ("add-header", _) => Command::AddHeader,
            ("gauge", Ok(n)) => Command::Gauge(n),
            ("tls", _) => Command::Tls,
            ("callout", _) => Command::Callout,
            _ => Command::None,
        }
    }
}

/// `allocations`: answers with the module's allocation counts so far.
pub fn allocations(host: &mut Host) -> bool {
    let body = format!(
        "total={} core={}\n",
        counting::allocations(),
        CORE_ALLOCATIONS.load(Ordering::Relaxed)
    );
    let headers: [(&str, &[u8]); 1] = [("content-type", b"text/plain")];
    host.send_response(200, headers, body.as_bytes(), "devgate_test");
    false
}

fn answer(host: &mut Host, status: u16, details: &str) -> bool {
    let headers: [(&str, &[u8]); 1] = [("content-type", b"text/plain")];
    host.send_response(status, headers, b"test hook\n", details);
    false
}

/// After devgate let the request through: runs the command. `true`: continue now.
pub fn after_allow(cmd: Command, s: &mut Stream, host: &mut Host) -> bool {
    match cmd {
        Command::None | Command::Allocations => true,
        Command::Defer(ms) => {
            let Some(scheduler) = host.scheduler() else {
                return s.refuse(host, "scheduler_unavailable");
            };
            let resumer = scheduler.resumer();
            let job = move || {
                std::thread::sleep(Duration::from_millis(ms));
                resumer.commit(RESUME);
            };
            match s.config().test.pool.submit(job) {
                Ok(()) => {
                    s.test.deferred = Some(scheduler);
                    false
                }
                Err(_) => answer(host, 503, "devgate_test_pool_full"),
            }
        }
        Command::Body(n) => {
            s.test.body_drain = Some(n);
            // The body changes length: the upstream must not be told the old one.
            host.remove_header(HeaderMap::RequestHeader, b"content-length");
            false
        }
        Command::AddHeader => {
            s.test.add_response_header = true;
            host.add_header(HeaderMap::RequestHeader, b"x-devgate-test-added", b"two")
        }
        Command::Gauge(n) => {
            if let Some(id) = s.config().test.gauge {
                host.set_gauge(id, n);
            }
            true
        }
        Command::Tls => {
            let v = host.tls_version().unwrap_or(b"none").to_vec();
            host.set_header(HeaderMap::RequestHeader, b"x-devgate-test-tls", &v)
        }
        Command::Callout => {
            let headers: [(&str, &[u8]); 3] = [
                (":method", b"GET"),
                (":path", b"/devgate-test-callout"),
                ("host", b"callout.test"),
            ];
            match host.http_callout("demo_upstream", headers, b"", 5000) {
                Ok(id) => {
                    s.test.callout = Some(id);
                    false
                }
                Err(_) => answer(host, 502, "devgate_test_callout_refused"),
            }
        }
    }
}

/// `body:<n>`: buffers the body, then reads it whole, drains `n` bytes and resumes.
pub fn request_body(s: &mut Stream, host: &mut Host, end_of_stream: bool) -> Option<BodyStatus> {
    let n = s.test.body_drain?;
    if !end_of_stream {
        return Some(BodyStatus::StopAndBuffer);
    }
    let buffered: usize = host
        .body_chunks(Body::BufferedRequest)
        .iter()
        .map(|c| c.len())
        .sum();
    let received: usize = host
        .body_chunks(Body::ReceivedRequest)
        .iter()
        .map(|c| c.len())
        .sum();
    let from_buffered = n.min(buffered);
    let from_received = (n - from_buffered).min(received);
    let ok = (from_buffered == 0 || host.drain_body(Body::BufferedRequest, from_buffered))
        && (from_received == 0 || host.drain_body(Body::ReceivedRequest, from_received));
    let seen = (buffered + received).to_string();
    if !ok
        || !host.set_header(
            HeaderMap::RequestHeader,
            b"x-devgate-test-body-seen",
            seen.as_bytes(),
        )
    {
        s.refuse(host, "body_edit_failed");
        return Some(BodyStatus::Stop);
    }
    s.test.body_drain = None;
    Some(BodyStatus::Continue)
}

/// `defer`: the pool's job is done; resume the request on its worker.
pub fn scheduled(s: &mut Stream, host: &mut Host, event_id: u64) {
    if event_id != RESUME {
        return;
    }
    s.test.deferred = None;
    if host.set_header(
        HeaderMap::RequestHeader,
        b"x-devgate-test-deferred",
        b"resumed",
    ) {
        host.continue_decoding();
    } else {
        s.refuse(host, "header_edit_failed");
    }
}

/// `callout`: the answer arrived; note it on the request and resume it.
pub fn callout_done(s: &mut Stream, host: &mut Host, id: u64, answer: Option<CalloutAnswer<'_>>) {
    if s.test.callout != Some(id) {
        return;
    }
    s.test.callout = None;
    let note = match answer {
        Some(CalloutAnswer { headers, body }) => {
            let status = headers
                .iter()
                .find(|(n, _)| *n == b":status")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let bytes: usize = body.iter().map(|c| c.len()).sum();
            format!("{status} {bytes}")
        }
        None => "failed".to_string(),
    };
    if host.set_header(
        HeaderMap::RequestHeader,
        b"x-devgate-test-callout",
        note.as_bytes(),
    ) {
        host.continue_decoding();
    } else {
        s.refuse(host, "header_edit_failed");
    }
}

/// `add-header`: the response header.
pub fn response_headers(s: &mut Stream, host: &mut Host) {
    if s.test.add_response_header {
        s.test.add_response_header = false;
        host.add_header(
            HeaderMap::ResponseHeader,
            b"x-devgate-test-response",
            b"added",
        );
    }
}

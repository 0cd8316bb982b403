//! Test build only (`test-hooks` feature, `make fault-native`): request headers that drive the
//! bindings the shipped build does not call yet, so that each is proven in the real Envoy
//! (`tests/e2e/test_native_bindings.py`) before a plan relies on it. A wrong
//! signature in `bindings/imports.rs` is otherwise silent. The shipped `libdevgate.so` has none of this.
//!
//! The stream's filter calls these functions with the test state it keeps ([`StreamTest`],
//! [`ConfigTest`]); a command that must refuse the request returns the refusal's code
//! (`Err(code)`) and the filter performs it, so this module does not import the filter.
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
    /// The test gauge and pool of a new configuration; `None` (the configuration refused) when
    /// the pool's thread did not start.
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
    /// No test command.
    None,
    /// `allocations`.
    Allocations,
    /// `defer:<ms>`.
    Defer(u64),
    /// `body:<n>`.
    Body(usize),
    /// `add-header`.
    AddHeader,
    /// `gauge:<n>`.
    Gauge(u64),
    /// `tls`.
    Tls,
    /// `callout`.
    Callout,
}

impl Command {
    /// The command the request's `x-devgate-test` header asks for (`None` if none or unknown).
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

/// After devgate let the request through: runs the command. `Ok(true)`: continue now;
/// `Err(code)`: the stream refuses the request with the core's refusal for `code`.
pub fn after_allow(
    cmd: Command,
    t: &mut StreamTest,
    config: &ConfigTest,
    host: &mut Host,
) -> Result<bool, &'static str> {
    Ok(match cmd {
        Command::None | Command::Allocations => true,
        Command::Defer(ms) => {
            let Some(scheduler) = host.scheduler() else {
                return Err("scheduler_unavailable");
            };
            let resumer = scheduler.resumer();
            let job = move || {
                std::thread::sleep(Duration::from_millis(ms));
                resumer.commit(RESUME);
            };
            match config.pool.submit(job) {
                Ok(()) => {
                    t.deferred = Some(scheduler);
                    false
                }
                Err(_) => answer(host, 503, "devgate_test_pool_full"),
            }
        }
        Command::Body(n) => {
            t.body_drain = Some(n);
            // The body changes length: the upstream must not be told the old one.
            host.remove_header(HeaderMap::RequestHeader, b"content-length");
            false
        }
        Command::AddHeader => {
            t.add_response_header = true;
            host.add_header(HeaderMap::RequestHeader, b"x-devgate-test-added", b"two")
        }
        Command::Gauge(n) => {
            if let Some(id) = config.gauge {
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
                    t.callout = Some(id);
                    false
                }
                Err(_) => answer(host, 502, "devgate_test_callout_refused"),
            }
        }
    })
}

/// `body:<n>`: buffers the body, then reads it whole, drains `n` bytes and resumes. `None`: no
/// body command; `Some(Err(code))`: the stream refuses the request (and stops the body).
pub fn request_body(
    t: &mut StreamTest,
    host: &mut Host,
    end_of_stream: bool,
) -> Option<Result<BodyStatus, &'static str>> {
    let n = t.body_drain?;
    if !end_of_stream {
        return Some(Ok(BodyStatus::StopAndBuffer));
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
        return Some(Err("body_edit_failed"));
    }
    t.body_drain = None;
    Some(Ok(BodyStatus::Continue))
}

/// `defer`: the pool's job is done; resume the request on its worker. `Err(code)`: the stream
/// refuses the request.
pub fn scheduled(t: &mut StreamTest, host: &mut Host, event_id: u64) -> Result<(), &'static str> {
    if event_id != RESUME {
        return Ok(());
    }
    t.deferred = None;
    if host.set_header(
        HeaderMap::RequestHeader,
        b"x-devgate-test-deferred",
        b"resumed",
    ) {
        host.continue_decoding();
        Ok(())
    } else {
        Err("header_edit_failed")
    }
}

/// `callout`: the answer arrived; note it on the request and resume it. `Err(code)`: the stream
/// refuses the request.
pub fn callout_done(
    t: &mut StreamTest,
    host: &mut Host,
    id: u64,
    answer: Option<CalloutAnswer<'_>>,
) -> Result<(), &'static str> {
    if t.callout != Some(id) {
        return Ok(());
    }
    t.callout = None;
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
        Ok(())
    } else {
        Err("header_edit_failed")
    }
}

/// `add-header`: the response header.
pub fn response_headers(t: &mut StreamTest, host: &mut Host) {
    if t.add_response_header {
        t.add_response_header = false;
        host.add_header(
            HeaderMap::ResponseHeader,
            b"x-devgate-test-response",
            b"added",
        );
    }
}

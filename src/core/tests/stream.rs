//! The stream's steps apart from the key service (login, challenges, refusals).

use std::borrow::Cow;

use crate::config::parse_policy;
use crate::core::budget;
use crate::core::codes::Challenge;
use crate::core::codes::Outcome;
use crate::core::counters::{Admission, Counter};
use crate::core::facts::{Facts, RequestHeaders, ResponseFacts};
use crate::core::login::{self, MAX_BODY};
use crate::core::plan::Audit;
use crate::core::plan::{Note, Plan};
use crate::core::policy::Policy;
use crate::core::shared::MemoryStore;
use crate::core::shared::{self, SharedStore};
use crate::core::stream::WorkerState;
use crate::core::stream::{finish_with, BodyPlan, Collected, Stream};
use crate::core::Reason;

/// A same-origin login form POST from a browser on the plain listener.
const LOGIN_POST: [(&[u8], &[u8]); 5] = [
    (b":method", b"POST"),
    (b":path", b"/.devgate/login"),
    (b":authority", b"localhost"),
    (b"origin", b"http://localhost"),
    (b"content-type", b"application/x-www-form-urlencoded"),
];

/// Password: correct horse (cost 5).
const ALICE: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
const NOW_MS: u64 = 1_700_000_000_000;

/// A host in memory that counts the lazy reads it was asked for.
#[derive(Default)]
struct Fake {
    store: MemoryStore,
    clock_reads: std::cell::Cell<u32>,
    tls_reads: std::cell::Cell<u32>,
    response: Vec<(&'static [u8], &'static [u8])>,
    full_reads: std::cell::Cell<u32>,
}

impl Facts for Fake {
    fn client_cert(&self) -> Option<crate::core::edge::ClientCert> {
        None
    }
    fn now_ms(&self) -> u64 {
        self.clock_reads.set(self.clock_reads.get() + 1);
        NOW_MS
    }
    fn tls(&self) -> bool {
        self.tls_reads.set(self.tls_reads.get() + 1);
        false
    }
}

impl SharedStore for Fake {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), shared::Unavailable> {
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, shared::Unavailable> {
        self.store.set(key, value, cas)
    }
}

impl ResponseFacts for Fake {
    fn has_header(&self, name: &[u8]) -> bool {
        self.response.iter().any(|(n, _)| *n == name)
    }
    fn with_headers<R>(&self, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> Option<R> {
        self.full_reads.set(self.full_reads.get() + 1);
        let pairs: Vec<(&[u8], &[u8])> = self.response.to_vec();
        Some(f(&pairs))
    }
}

fn headers_step<'p>(
    stream: &mut Stream,
    policy: &'p Policy,
    host: &Fake,
    peer: &str,
    headers: &[(&[u8], &[u8])],
    end_of_stream: bool,
) -> Plan<'p> {
    let req = RequestHeaders {
        peer: Some(peer.as_bytes()),
        headers,
        end_of_stream,
    };
    stream.on_request_headers(policy, req, &mut WorkerState::default(), host)
}

fn login_policy(extra: &str) -> Policy {
    let json = format!(
        r#"{{"keys": [{{"id": "k1", "secret": "{KEY}"}}], "protect": ["/_debug/"]
             {extra}, "login": {{"users": "{ALICE}", "allow_from": ["127.0.0.0/8"]}}}}"#
    );
    parse_policy(json.as_bytes()).unwrap()
}

#[test]
fn an_allowed_request_is_counted_and_audited_by_the_core_and_needs_no_clock() {
    let policy = parse_policy(br#"{"protect": ["/_debug/"]}"#).unwrap();
    let host = Fake::default();
    let mut s = Stream::new();
    let h: [(&[u8], &[u8]); 3] = [
        (b":method", b"GET"),
        (b":path", b"/_debug/"),
        (b"X-Wsgiorg-Developer-User", b"mallory"),
    ];
    let plan = headers_step(&mut s, &policy, &host, "127.0.0.1:5", &h, true);
    assert_eq!(
        plan.counter,
        Some(Counter::Allowed(Admission::Source(
            crate::core::Source::Network
        )))
    );
    assert_eq!(
        plan.audit.map(Audit::value).as_deref(),
        Some("allow:network")
    );
    assert!(plan
        .remove
        .contains(&Cow::Borrowed(b"X-Wsgiorg-Developer-User")));
    assert!(plan.reply().is_none());
    assert_eq!(
        host.clock_reads.get(),
        0,
        "no tokens, keys or login: no clock"
    );
    assert_eq!(s.body_plan(), BodyPlan::Pass);
}

#[test]
fn a_denied_request_is_answered_with_its_reason_in_the_details() {
    let policy = parse_policy(br#"{"protect": ["/_debug/"]}"#).unwrap();
    let host = Fake::default();
    let h: [(&[u8], &[u8]); 3] = [
        (b":method", b"GET"),
        (b":path", b"/_debug/"),
        (b"x_wsgiorg_developer_user", b"mallory"),
    ];
    let plan = headers_step(&mut Stream::new(), &policy, &host, "192.0.2.1:5", &h, true);
    let reply = plan.reply().cloned().unwrap();
    assert_eq!(
        (reply.status, reply.details.as_ref()),
        (401, "devgate_no_credential")
    );
    assert_eq!(plan.counter, Some(Counter::Denied(Reason::NoCredential)));
    assert_eq!(plan.remove, vec![b"x_wsgiorg_developer_user".to_vec()]);
}

#[test]
fn login_post_collects_the_body_then_verifies_within_the_budget() {
    let policy = login_policy("");
    let host = Fake::default();
    let mut s = Stream::new();
    let h: [(&[u8], &[u8]); 6] = [
        (b":method", b"POST"),
        (b":path", b"/.devgate/login"),
        (b":authority", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"cookie", b"devgate_session=x"),
    ];
    let plan = headers_step(&mut s, &policy, &host, "127.0.0.1:5", &h, false);
    assert!(plan.reply().is_none());
    for name in ["cookie", "authorization", "proxy-authorization"] {
        assert!(
            plan.remove.contains(&Cow::Borrowed(name.as_bytes())),
            "{name}"
        );
    }
    assert_eq!(host.tls_reads.get(), 1, "TLS state is read under the mount");
    assert_eq!(s.body_plan(), BodyPlan::Collect);
    assert_eq!(
        s.on_request_body(&policy, b"username=alice&", false, &host),
        Plan::default()
    );
    let plan = s.on_request_body(&policy, b"password=correct+horse", true, &host);
    let reply = plan.reply().cloned().unwrap();
    assert_eq!(
        (reply.status, reply.details.as_ref()),
        (303, "devgate_login_succeeded")
    );
    assert_eq!(plan.counter, Some(Counter::Login(Outcome::Succeeded)));
    assert_eq!(plan.note, Some(Note::LoginSucceeded));
    assert_eq!(s.body_plan(), BodyPlan::Pass);
    // The verify was taken from the shared budget.
    assert!(host.store.get(budget::KEY).unwrap().0.is_some());
}

#[test]
fn login_body_over_the_cap_is_413_and_trailers_finish_the_form() {
    let policy = login_policy("");
    let host = Fake::default();
    let h = LOGIN_POST;
    let mut s = Stream::new();
    headers_step(&mut s, &policy, &host, "127.0.0.1:5", &h, false);
    let plan = s.on_request_body(&policy, &vec![b'a'; MAX_BODY + 1], false, &host);
    assert_eq!(plan.counter, Some(Counter::Login(Outcome::TooLarge)));
    let mut s = Stream::new();
    headers_step(&mut s, &policy, &host, "127.0.0.1:5", &h, false);
    s.on_request_body(&policy, b"username=alice&password=wrong", false, &host);
    let plan = s.on_request_trailers(&policy, &[], &host);
    assert_eq!(plan.counter, Some(Counter::Login(Outcome::Failed)));
    // The failure was counted for the peer.
    let key = login::rate_key("127.0.0.1".parse().unwrap());
    assert!(host.store.get(&key).unwrap().0.is_some());
}

#[test]
fn collected_login_form_finishes_on_another_thread_like_the_inline_step() {
    let policy = login_policy("");
    let host = Fake::default();
    let h = LOGIN_POST;
    let mut s = Stream::new();
    headers_step(&mut s, &policy, &host, "127.0.0.1:5", &h, false);
    assert!(matches!(
        s.collect_body(b"username=alice&", false),
        Collected::Plan(p) if p == Plan::default()
    ));
    let Collected::Finish(pending) = s.collect_body(b"password=correct+horse", true) else {
        panic!("the whole form comes back to the host");
    };
    assert_eq!(s.body_plan(), BodyPlan::Pass);
    let plan = std::thread::spawn(move || finish_with(&policy, pending, &Fake::default()))
        .join()
        .unwrap();
    assert_eq!(plan.counter, Some(Counter::Login(Outcome::Succeeded)));
    // Trailers end a form the same way: taken whole, once.
    let policy = login_policy("");
    let mut s = Stream::new();
    headers_step(&mut s, &policy, &host, "127.0.0.1:5", &h, false);
    assert!(s.take_login().is_some());
    assert!(s.take_login().is_none());
}

#[test]
fn login_post_that_reaches_the_upstream_is_refused_at_the_response() {
    let policy = login_policy("");
    let host = Fake::default();
    let h = LOGIN_POST;
    let mut s = Stream::new();
    headers_step(&mut s, &policy, &host, "127.0.0.1:5", &h, false);
    let plan = s.on_response_headers(&policy, &host);
    assert_eq!(plan.counter, Some(Counter::InternalError));
    assert_eq!(plan.note, Some(Note::LoginUnbuffered));
    assert_eq!(plan.reply().map(|r| r.status), Some(500));
}

#[test]
fn upstream_challenge_reads_the_response_only_when_the_probe_hits() {
    let policy = login_policy(r#", "upstream_challenge": "login""#);
    let mut host = Fake::default();
    let h: [(&[u8], &[u8]); 2] = [(b":method", b"GET"), (b":path", b"/app?x=1")];
    let mut s = Stream::new();
    headers_step(&mut s, &policy, &host, "192.0.2.1:5", &h, true);
    // No WWW-Authenticate: nothing read beyond the probe.
    host.response = vec![(b":status", b"401")];
    assert_eq!(s.on_response_headers(&policy, &host), Plan::default());
    assert_eq!(host.full_reads.get(), 0);
    let mut s = Stream::new();
    headers_step(&mut s, &policy, &host, "192.0.2.1:5", &h, true);
    host.response = vec![
        (b":status", b"401"),
        (b"www-authenticate", b"x-wsgiorg.developer_user"),
    ];
    let plan = s.on_response_headers(&policy, &host);
    assert_eq!(host.full_reads.get(), 1);
    assert_eq!(plan.counter, Some(Counter::Challenge(Challenge::Login)));
    let reply = plan.reply().cloned().unwrap();
    assert_eq!(reply.status, 303);
    assert!(reply
        .headers
        .contains(&("location", "/.devgate/login?back=/app%3Fx%3D1".into())));
}

#[test]
fn refused_plans_carry_the_identity_scrub() {
    // The login mount with a shared store that fails: a 500, and still no identity copy.
    struct Broken;
    impl Facts for Broken {
        fn client_cert(&self) -> Option<crate::core::edge::ClientCert> {
            None
        }
        fn now_ms(&self) -> u64 {
            NOW_MS
        }
        fn tls(&self) -> bool {
            false
        }
    }
    impl SharedStore for Broken {
        fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, u32), shared::Unavailable> {
            Err(shared::Unavailable)
        }
        fn set(&self, _: &str, _: &[u8], _: u32) -> Result<bool, shared::Unavailable> {
            Err(shared::Unavailable)
        }
    }
    let policy = login_policy("");
    let h: [(&[u8], &[u8]); 6] = [
        (b":method", b"POST"),
        (b":path", b"/.devgate/login"),
        (b":authority", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"x-wsgiorg-developer-user", b"mallory"),
    ];
    let req = RequestHeaders {
        peer: Some(b"127.0.0.1:5"),
        headers: &h,
        end_of_stream: false,
    };
    let plan = Stream::new().on_request_headers(&policy, req, &mut WorkerState::default(), &Broken);
    assert_eq!(plan.counter, Some(Counter::InternalError));
    assert_eq!(plan.remove, vec![b"x-wsgiorg-developer-user".to_vec()]);
}

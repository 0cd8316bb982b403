//! Whole streams (headers step, body step) for the request's source and form POSTs.

use crate::core::facts::{Facts, RequestHeaders};
use crate::core::plan::{Next, Plan};
use crate::core::policy::Policy;
use crate::core::shared::{self, MemoryStore, SharedStore};
use crate::core::stream::Stream;
use crate::core::stream::WorkerState;

use super::parse_policy;

const NOW_MS: u64 = 1_700_000_000_000;

#[derive(Default)]
struct Host {
    store: MemoryStore,
}

impl Facts for Host {
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

impl SharedStore for Host {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), shared::Unavailable> {
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, shared::Unavailable> {
        self.store.set(key, value, cas)
    }
}

fn headers_step<'p>(
    stream: &mut Stream,
    policy: &'p Policy,
    peer: &str,
    headers: &[(&[u8], &[u8])],
    end_of_stream: bool,
) -> Plan<'p> {
    let req = RequestHeaders {
        peer: Some(peer.as_bytes()),
        headers,
        end_of_stream,
    };
    stream.on_request_headers(policy, req, &mut WorkerState::default(), &Host::default())
}

fn status(plan: &Plan) -> Option<u16> {
    match &plan.next {
        Next::Reply(r) => Some(r.status),
        _ => None,
    }
}

#[test]
fn a_refused_request_keeps_no_client_copy_of_the_source_header() {
    let policy = parse_policy(
        br#"{"keys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}],
             "api": {"routes": [{"prefix": "/v1", "product": "maps"}]}}"#,
    )
    .unwrap();
    let h: [(&[u8], &[u8]); 5] = [
        (b":method", b"GET"),
        (b":path", b"/v1/x"),
        (b"x_devgate_source", b"spoof"),
        (b"x-sdk-source", b"sdk"),
        (b"x-wsgiorg-developer-user", b"mallory"),
    ];
    let plan = headers_step(&mut Stream::new(), &policy, "192.0.2.1:5", &h, true);
    assert_eq!(status(&plan), Some(401));
    let removed: Vec<&[u8]> = plan.remove.iter().map(|n| n.as_ref()).collect();
    assert_eq!(
        removed,
        [&b"x_devgate_source"[..], b"x-wsgiorg-developer-user"]
    );
}

// ---- form POSTs whose `_method` decides them -------------------------------------------

use crate::core::apikey::KeyKind;
use crate::core::counters::{Admission, Counter};
use crate::core::plan::Audit;
use crate::core::stream::BodyPlan;
use crate::core::Reason;

const OUTSIDER: &str = "192.0.2.1:9";
const URLENCODED: &[u8] = b"application/x-www-form-urlencoded";
const MULTIPART: &[u8] = b"multipart/form-data; boundary=b0";

fn admin_policy() -> Policy {
    parse_policy(
        br#"{"network": {"allow": ["127.0.0.1"]},
             "protect": [{"prefix": "/admin", "methods": ["DELETE"]}]}"#,
    )
    .unwrap()
}

/// A form POST's headers (its body to come), then its body in `chunks`: the plan of each step.
fn form_post<'p>(
    policy: &'p Policy,
    peer: &str,
    path: &str,
    content_type: &[u8],
    extra: &[(&[u8], &[u8])],
    chunks: &[&[u8]],
) -> (Stream, Vec<Plan<'p>>) {
    let mut h: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":path", path.as_bytes()),
        (b"content-type", content_type),
    ];
    h.extend_from_slice(extra);
    let mut stream = Stream::new();
    let mut plans = vec![headers_step(&mut stream, policy, peer, &h, false)];
    let mut buffered: Vec<u8> = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        if stream.body_plan() != BodyPlan::Inspect {
            break;
        }
        buffered.extend_from_slice(chunk);
        let end = i + 1 == chunks.len();
        let whole = buffered.clone();
        plans.push(stream.on_form_body(policy, buffered.len(), end, || Some(whole)));
    }
    (stream, plans)
}

fn refused(plan: &Plan) -> Option<(u16, Reason)> {
    match (&plan.next, plan.counter) {
        (Next::Reply(r), Some(Counter::Denied(reason))) => Some((r.status, reason)),
        _ => None,
    }
}

#[test]
fn a_plain_form_post_is_the_post_it_is() {
    let p = admin_policy();
    for (ct, body) in [
        (URLENCODED, &b"a=1&b=2"[..]),
        (
            MULTIPART,
            b"--b0\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b0--\r\n",
        ),
    ] {
        let (stream, plans) = form_post(&p, OUTSIDER, "/admin/x", ct, &[], &[body]);
        let [headers, body] = plans.as_slice() else {
            panic!("{plans:?}")
        };
        // The headers go on, the answer waits for the body.
        assert_eq!(headers.next, Next::Continue);
        assert_eq!((headers.counter, headers.audit), (None, None));
        assert_eq!(body.next, Next::Continue);
        assert_eq!(
            body.counter,
            Some(Counter::Allowed(Admission::of(None, None)))
        );
        assert_eq!(body.audit, Some(Audit::Allow(None, None)));
        assert_eq!(stream.body_plan(), BodyPlan::Pass, "the body goes on");
    }
}

#[test]
fn a_form_post_is_decided_as_the_method_its_body_asks_for() {
    let p = admin_policy();
    let multipart =
        b"--b0\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b0--";
    for (ct, chunks) in [
        (URLENCODED, vec![&b"a=1&_meth"[..], b"od=delete"]),
        (URLENCODED, vec![b"_method=PUT&%5Fmethod=+DELETE+"]),
        (MULTIPART, vec![&multipart[..10], &multipart[10..]]),
    ] {
        let (stream, plans) = form_post(&p, OUTSIDER, "/admin/x", ct, &[], &chunks);
        assert_eq!(plans.len(), chunks.len() + 1);
        assert!(plans[1..chunks.len()].iter().all(|p| *p == Plan::default()));
        let last = plans.last().unwrap();
        assert_eq!(
            refused(last),
            Some((401, Reason::NoCredential)),
            "{chunks:?}"
        );
        assert_eq!(stream.body_plan(), BodyPlan::Pass);
    }
    // A developer may DELETE: decided at once, nothing held.
    let body: &[&[u8]] = &[b"_method=DELETE"];
    let (stream, plans) = form_post(&p, "127.0.0.1:9", "/admin/x", URLENCODED, &[], body);
    assert_eq!(plans.len(), 1);
    assert!(plans[0].counter.is_some());
    assert_eq!(stream.body_plan(), BodyPlan::Pass);
}

#[test]
fn what_cannot_be_read_stays_strict() {
    let p = admin_policy();
    let strict = Some((401, Reason::NoCredential));
    // Too large: refused as soon as the bound is passed, the body never read.
    let big = vec![b'a'; crate::core::form::MAX_BODY];
    let mut stream = form_post(&p, OUTSIDER, "/admin/x", URLENCODED, &[], &[]).0;
    assert_eq!(stream.body_plan(), BodyPlan::Inspect);
    let plan = stream.on_form_body(&p, big.len(), false, || panic!("read"));
    assert_eq!(plan, Plan::default());
    let plan = stream.on_form_body(&p, big.len() + 1, false, || panic!("read"));
    assert_eq!(refused(&plan), strict);
    // Unreadable: the host could not read it, or a multipart body without its end.
    let mut stream = form_post(&p, OUTSIDER, "/admin/x", URLENCODED, &[], &[]).0;
    assert_eq!(refused(&stream.on_form_body(&p, 3, true, || None)), strict);
    let open: &[&[u8]] = &[b"--b0\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"];
    let (_, plans) = form_post(&p, OUTSIDER, "/admin/x", MULTIPART, &[], open);
    assert_eq!(refused(&plans[1]), strict);
    // Trailers: the body ended without its last data frame saying so.
    let mut stream = form_post(&p, OUTSIDER, "/admin/x", URLENCODED, &[], &[]).0;
    let host = Host::default();
    assert_eq!(refused(&stream.on_request_trailers(&p, &[], &host)), strict);
    // Not read at all: an encoded body, a multipart one without a boundary, an override header.
    for (ct, extra) in [
        (URLENCODED, vec![(&b"content-encoding"[..], &b"gzip"[..])]),
        (&b"multipart/form-data"[..], vec![]),
        (URLENCODED, vec![(b"x-http-method-override", b"DELETE")]),
    ] {
        let (_, plans) = form_post(&p, OUTSIDER, "/admin/x", ct, &extra, &[b"a=1"]);
        assert_eq!(plans.len(), 1);
        assert_eq!(refused(&plans[0]), strict, "{extra:?}");
    }
    // A form POST without a body (its headers end the stream) asks for no other method.
    let h: [(&[u8], &[u8]); 3] = [
        (b":method", b"POST"),
        (b":path", b"/admin/x"),
        (b"content-type", URLENCODED),
    ];
    let plan = headers_step(&mut Stream::new(), &p, OUTSIDER, &h, true);
    assert_eq!(plan.audit, Some(Audit::Allow(None, None)));
    // The upstream answering while the body is held (no buffer filter before the router).
    let mut stream = form_post(&p, OUTSIDER, "/admin/x", URLENCODED, &[], &[]).0;
    let plan = stream.on_response_headers(&p, &NoResponse);
    assert_eq!(plan.counter, Some(Counter::InternalError));
}

struct NoResponse;

impl crate::core::facts::ResponseFacts for NoResponse {
    fn has_header(&self, _: &[u8]) -> bool {
        false
    }
    fn with_headers<R>(&self, _: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> Option<R> {
        None
    }
}

#[test]
fn api_endpoint_modes_read_the_form_body() {
    use super::{key, SECRET};
    use crate::core::apikey::{mint, NewKey};
    let p = parse_policy(
        format!(
            r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}"}}],
                "api": {{"routes": [{{"prefix": "/v1/search", "product": "maps",
                                      "mode": "read_only"}}]}}}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    let sk = mint(
        &NewKey {
            kind: KeyKind::Private,
            id: "sk1",
            org: "o",
            project: "p",
            products: &["maps".to_string()],
            write: false,
            referers: &[],
            ips: &[],
            iat: NOW_MS / 1000 - 10,
            exp: None,
        },
        &key("k1"),
    )
    .unwrap();
    let key: (&[u8], &[u8]) = (b"x-api-key", sk.as_bytes());
    // A query as a form POST: allowed, the key taken out with the headers.
    let (_, plans) = form_post(&p, OUTSIDER, "/v1/search", URLENCODED, &[key], &[b"q=x"]);
    assert!(plans[0].remove.iter().any(|n| n.as_ref() == b"x-api-key"));
    assert_eq!(
        plans[1].audit,
        Some(Audit::Allow(Some(KeyKind::Private), None))
    );
    // PUT, or a method no rule names (a write), is not a read_only route's.
    for body in [&b"_method=put"[..], b"_method=FROB"] {
        let (_, plans) = form_post(&p, OUTSIDER, "/v1/search", URLENCODED, &[key], &[body]);
        assert_eq!(
            refused(&plans[1]),
            Some((403, Reason::MethodNotAllowed)),
            "{body:?}"
        );
    }
    let (_, plans) = form_post(
        &p,
        OUTSIDER,
        "/v1/search",
        URLENCODED,
        &[key],
        &[b"_method=GET"],
    );
    assert!(refused(&plans[1]).is_none());
}

#[test]
fn after_a_wait_for_the_key_service_a_form_post_is_decided_strictly() {
    use super::{key, SECRET};
    use crate::core::callout::CalloutAnswer;
    use crate::core::keyservice::{
        store_prefix, CacheLimits, CalloutBudget, ClaimNames, KeyService, KeyShape,
    };
    use crate::core::keysource::KeySource;
    use crate::core::token::{sign, KeySet};
    let mut p = parse_policy(
        format!(
            r#"{{"keys": [{{"id": "k1", "secret": "{SECRET}"}}],
                "api": {{"routes": [{{"prefix": "/v1/search", "product": "maps",
                                      "mode": "read_only"}}]}}}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    let service = KeyService {
        cluster: "ks".into(),
        authority: "ks".into(),
        path: "/access_tokens/".into(),
        key_header: "x-api-key".into(),
        timeout_ms: 1000,
        signing: KeySource::Hmac(KeySet::new(vec![key("ks1")]).unwrap()),
        issuer: None,
        audience: None,
        claims: ClaimNames::default(),
        cache: CacheLimits {
            entries: 16,
            rejections: 16,
            max_ttl_s: 300,
            rejection_ttl_s: 30,
            max_stale_s: 0,
            retry_ms: 1000,
        },
        budget: CalloutBudget {
            per_second: 10,
            burst: 10,
            in_flight: 10,
            waiters: 10,
        },
        shape: KeyShape {
            min_len: 16,
            max_len: 256,
            public_prefix: String::new(),
            private_prefix: String::new(),
        },
        leeway: 30,
        store_prefix: store_prefix("ks", "ks", "/access_tokens/", "x-api-key"),
    };
    p.api.as_mut().unwrap().service = Some(service);
    let h: [(&[u8], &[u8]); 4] = [
        (b":method", b"POST"),
        (b":path", b"/v1/search"),
        (b"content-type", URLENCODED),
        (b"x-api-key", b"opaque-key-0123456789"),
    ];
    let req = RequestHeaders {
        peer: Some(OUTSIDER.as_bytes()),
        headers: &h,
        end_of_stream: false,
    };
    let host = Host::default();
    let mut stream = Stream::new();
    let plan = stream.on_request_headers(&p, req, &mut WorkerState::default(), &host);
    assert!(matches!(plan.next, Next::Callout(_)), "{plan:?}");
    let claims = format!(
        r#"{{"exp": {}, "kind": "private_key", "organization_id": "o", "project_id": "p",
            "products": ["maps"], "write": false, "jti": "ks-key-1"}}"#,
        NOW_MS / 1000 + 600
    );
    let token = sign(claims.as_bytes(), &key("ks1"), b"");
    let answer = CalloutAnswer {
        status: Some(200),
        retry_after: None,
        body: token.as_bytes(),
    };
    // The body chunks that came during the wait went by unread: strict (PUT is refused).
    let plan = stream.on_callout_answer(&p, answer, req, &mut WorkerState::default(), &host);
    assert_eq!(refused(&plan), Some((403, Reason::MethodNotAllowed)));
    // The key now cached, a new request's body is read, and a plain form query passes.
    let mut stream = Stream::new();
    let plan = stream.on_request_headers(&p, req, &mut WorkerState::default(), &host);
    assert_eq!((plan.next, plan.counter), (Next::Continue, None));
    assert_eq!(stream.body_plan(), BodyPlan::Inspect);
    let plan = stream.on_form_body(&p, 3, true, || Some(b"q=x".to_vec()));
    assert_eq!(plan.audit, Some(Audit::Allow(Some(KeyKind::Private), None)));
}

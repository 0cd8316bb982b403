//! Whole streams (headers step, body step) for the request's source and form POSTs.

use crate::core::facts::{Facts, RequestHeaders};
use crate::core::plan::{Next, Plan};
use crate::core::policy::Policy;
use crate::core::revocation::Worker;
use crate::core::shared::{self, MemoryStore, SharedStore};
use crate::core::stream::Stream;

use super::parse_policy;

const NOW_MS: u64 = 1_700_000_000_000;

#[derive(Default)]
struct Host {
    store: MemoryStore,
}

impl Facts for Host {
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
    stream.on_request_headers(policy, req, &mut Worker::default(), &Host::default())
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

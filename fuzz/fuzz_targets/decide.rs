//! The whole decision (src/core/mod.rs `decide`): fixed policies with tokens, API keys, a
//! login session cookie and network rules; arbitrary request facts (peer string, header pairs as bytes, `:method`,
//! `:path`, `now`), with real credentials from a pool minted at start-up spliced in.
//!
//! Invariants (each checked against a reference written here, not against devgate's own
//! helpers):
//! * never panics;
//! * **an identity only from a valid credential or an allowed peer**: `Network` only for a
//!   socket peer (std's `SocketAddr` grammar; port 0 only when forwarded addresses are
//!   trusted) inside `allow` and outside `deny`, named by its IP; `Bearer`/`Cookie` only when
//!   the request carries, in that place, a pool token that is a developer token signed by a
//!   configured key, unexpired at `now` (leeway included), bound to this peer if bound, from
//!   `allow_from` if set, and no other credential;
//! * a protected path is never allowed without an identity; an API route only with a pool
//!   key of the admitted kind;
//! * **the upstream sees the identity header only when allowed**: after the edits (removals
//!   case-insensitive, `_` = `-`, as an upstream reads names), the identity header is there
//!   exactly once with the identity's name if there is one, and in no spelling otherwise;
//!   the API headers likewise only with an admitted key; a credential devgate used is gone
//!   when `strip_credential`/`strip_key` say so;
//! * **no secret in any output**: the test keys' bytes or base64url never appear in the
//!   decision's `Debug`, the response, the edits or the reason code;
//! * a login session (fourth policy) names a developer only from a pool session token for
//!   that cookie, signed, unexpired, from `login.allow_from`, with no token beside it; the
//!   session cookie never reaches the upstream;
//! * deny responses are 400/401/403 with a generic body; `forbid` never answers 401.
//!
//! The policies and credential pools are in `decide_support/pool.rs`, the fuzzed request in
//! `decide_support/input.rs`, the reference in `decide_support/reference.rs`.
#![no_main]

mod common;
mod decide_support;

use arbitrary::{Arbitrary, Unstructured};
use devgate::core::{decide, Request};
use libfuzzer_sys::fuzz_target;

use common::NOW;
use decide_support::input::{render, Input, PeerC, METHODS, NAMES, PATHS, PEERS};
use decide_support::pool::fixtures;
use decide_support::reference::check;

fuzz_target!(|data: &[u8]| {
    common::set_input(data);
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let fx = fixtures();
    let f = &fx[usize::from(input.fixture) % fx.len()];
    let peer: Option<Vec<u8>> = match &input.peer {
        PeerC::None => None,
        PeerC::Known(i, port) => {
            Some(format!("{}:{port}", PEERS[usize::from(*i) % PEERS.len()]).into_bytes())
        }
        PeerC::Raw(b) => Some(b.clone()),
    };
    let mut owned: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if let Some(m) = &input.method {
        owned.push((b":method".to_vec(), render(m, METHODS)));
    }
    if let Some((p, q)) = &input.path {
        let mut path = render(p, PATHS);
        if let Some(q) = q {
            path.extend(render(q, &["?key=", "&private_key=", "?a=b"]));
        }
        owned.push((b":path".to_vec(), path));
    }
    for (name, value) in input.headers.iter().take(12) {
        let name = match name {
            Ok(i) => NAMES[usize::from(*i) % NAMES.len()].as_bytes().to_vec(),
            Err(raw) => raw.clone(),
        };
        owned.push((name, render(value, NAMES)));
    }
    let headers: Vec<(&[u8], &[u8])> = owned
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let now = match input.now {
        Ok(delta) => NOW.saturating_add_signed(i64::from(delta)),
        Err(raw) => raw,
    };
    let req = Request {
        peer: peer.as_deref(),
        headers: &headers,
        now,
        cert: None,
    };
    let d = decide(&f.policy, &req);
    check(f, &req, &d);
});

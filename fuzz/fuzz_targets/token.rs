//! Developer and session tokens (src/core/token.rs): `authenticate` and `verify` under a fixed
//! key set {k1, k2} (the public test keys of tests/vectors/tokens.json).
//!
//! Invariants:
//! * never panics, on any bytes;
//! * **only minted tokens verify**: the fuzzer is never given a key, so any input that
//!   authenticates under {k1, k2} must be one of the known-answer vectors (the only K1/K2
//!   tokens it has seen); anything else that authenticates is a forgery and a crash. No input
//!   authenticates under the API-key domains (`dgpk_`, `dgsk_`) at all;
//! * a token minted from arbitrary claims verifies exactly as the documented checks say
//!   (purpose, expiry, not-before, subject, jti, cookie, peer, in that order) and returns the
//!   claims it was minted with; after any byte edit that changes it, it no longer verifies;
//!   with a `kid` naming the other key it fails with `bad_signature`;
//! * no error or claim `Debug` output carries secret bytes.
#![no_main]

mod common;

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use devgate::core::token::{
    authenticate, check_claims, is_valid_subject, mint, sign, verify, Claims, Expect, Key, Purpose,
    Secret, TokenError, MAX_JTI_LEN, MAX_TOKEN_LEN,
};
use libfuzzer_sys::fuzz_target;

fn expectations(peer: Option<IpAddr>) -> Vec<Expect<'static>> {
    let mut out = vec![
        Expect::developer(30),
        Expect::developer(0),
        Expect::session("devgate_token", 30),
        Expect::session("devgate_session", 300),
    ];
    if let Some(ip) = peer {
        out.extend(out.clone().into_iter().map(|e| e.with_peer(ip)));
    }
    out
}

/// Raw bytes as a token.
fn check_raw(data: &[u8], now: u64, peer: Option<IpAddr>) {
    let keys = common::keyset();
    let known = common::vector_tokens();
    let is_known = known.iter().any(|t| t.as_bytes() == data);
    match authenticate(data, keys, b"") {
        Ok(payload) => {
            assert!(
                is_known,
                "FORGERY: a token that was never minted authenticates"
            );
            assert_eq!(
                payload.iter().find(|b| !b.is_ascii_whitespace()),
                Some(&b'{')
            );
        }
        Err(e) => common::assert_no_secret("TokenError", format!("{e:?} {e}").as_bytes()),
    }
    for domain in [&b"dgpk_"[..], b"dgsk_"] {
        assert!(
            authenticate(data, keys, domain).is_err(),
            "FORGERY: authenticates under domain {domain:?}"
        );
    }
    for expect in expectations(peer) {
        let result = verify(data, keys, &expect, now);
        common::assert_no_secret("verify result", format!("{result:?}").as_bytes());
        if let Ok(c) = result {
            assert!(is_known, "FORGERY: a token that was never minted verifies");
            assert_eq!(c.purpose, expect.purpose);
            assert!(is_valid_subject(&c.sub));
            assert!(
                now < c.exp.saturating_add(expect.leeway),
                "expired token accepted"
            );
            if let Some(cip) = c.cip {
                assert_eq!(
                    expect.peer.map(|p| p.to_canonical()),
                    Some(cip.to_canonical())
                );
            }
            if c.purpose == Purpose::Session {
                assert_eq!(c.cookie.as_deref(), expect.cookie);
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct MintCase {
    sub: String,
    session: bool,
    cookie: Option<String>,
    cip: Option<IpAddr>,
    jti: Option<String>,
    iat: Option<u64>,
    nbf: Option<u64>,
    exp: u64,
    use_k2: bool,
    /// Seconds relative to exp (so both sides of expiry are reached).
    now_delta: i32,
    leeway: u16,
    expect_session: bool,
    expect_cookie_matches: bool,
    peer: Option<IpAddr>,
    peer_is_cip: bool,
    edits: Vec<(u16, u8)>,
}

/// What verify must say of a correctly signed token with these claims (module docs, step 5).
fn reference(c: &Claims, e: &Expect<'_>, now: u64, len: usize) -> Result<Claims, TokenError> {
    if len > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    if c.purpose != e.purpose {
        return Err(TokenError::WrongPurpose);
    }
    if now >= c.exp.saturating_add(e.leeway) {
        return Err(TokenError::Expired);
    }
    let late = now.saturating_add(e.leeway);
    if c.nbf.is_some_and(|n| late < n) || c.iat.is_some_and(|i| late < i) {
        return Err(TokenError::NotYetValid);
    }
    if !is_valid_subject(&c.sub) {
        return Err(TokenError::BadSubject);
    }
    if c.jti.as_ref().is_some_and(|j| j.len() > MAX_JTI_LEN) {
        return Err(TokenError::Malformed);
    }
    if c.purpose == Purpose::Session && (c.cookie.is_none() || c.cookie.as_deref() != e.cookie) {
        return Err(TokenError::WrongCookie);
    }
    if let Some(cip) = c.cip {
        if e.peer.map(|p| p.to_canonical()) != Some(cip.to_canonical()) {
            return Err(TokenError::WrongPeer);
        }
    }
    Ok(c.clone())
}

fn check_minted(m: &MintCase) {
    let keys = common::keyset();
    let key = if m.use_k2 { common::k2() } else { common::k1() };
    let claims = Claims {
        sub: m.sub.clone(),
        purpose: if m.session {
            Purpose::Session
        } else {
            Purpose::Developer
        },
        cookie: m.cookie.clone(),
        cip: m.cip,
        jti: m.jti.clone(),
        iat: m.iat,
        nbf: m.nbf,
        exp: m.exp,
    };
    let _ = check_claims(&claims);
    let token = mint(&claims, &key);
    let now = m.exp.saturating_add_signed(i64::from(m.now_delta));
    let cookie = if m.expect_cookie_matches {
        m.cookie.as_deref().unwrap_or("devgate_token")
    } else {
        "devgate_token"
    };
    let leeway = u64::from(m.leeway % 301);
    let mut expect = if m.expect_session {
        Expect::session(cookie, leeway)
    } else {
        Expect::developer(leeway)
    };
    let peer = if m.peer_is_cip {
        m.cip.or(m.peer)
    } else {
        m.peer
    };
    if let Some(p) = peer {
        expect = expect.with_peer(p);
    }
    let got = verify(token.as_bytes(), keys, &expect, now);
    let want = reference(&claims, &expect, now, token.len());
    assert_eq!(got, want, "minted token: {token}");
    common::assert_no_secret("minted token", token.as_bytes());

    // Any change to the bytes breaks it.
    let mut edited = token.clone().into_bytes();
    for &(pos, byte) in m.edits.iter().take(8) {
        if edited.is_empty() {
            break;
        }
        let i = usize::from(pos) % (edited.len() + 1);
        match byte % 4 {
            0 => edited.truncate(i),
            1 => edited.insert(i, byte >> 2),
            2 if i < edited.len() => edited[i] = byte,
            _ if i < edited.len() => {
                // A base64url neighbour: the edits most likely to decode to the same bytes.
                edited[i] = match edited[i] {
                    b'z' => b'0',
                    b'9' => b'-',
                    b'-' => b'_',
                    b'_' => b'A',
                    c => c.wrapping_add(1),
                }
            }
            _ => {}
        }
    }
    if edited != token.as_bytes() {
        let e = Expect {
            leeway: 300,
            ..expect
        };
        assert!(
            authenticate(&edited, keys, b"").is_err() && verify(&edited, keys, &e, now).is_err(),
            "FORGERY: an edited token still authenticates: {:?} from {token}",
            String::from_utf8_lossy(&edited)
        );
    }

    // The kid names the key: signed with one key's secret under the other's id, it fails.
    let other_id = if m.use_k2 { "k1" } else { "k2" };
    let b64 = if m.use_k2 {
        common::K2_B64
    } else {
        common::K1_B64
    };
    let crossed = Key {
        id: other_id.to_string(),
        secret: Secret::from_b64url(b64).expect("test key"),
    };
    let crossed = mint(&claims, &crossed);
    if crossed.len() <= MAX_TOKEN_LEN {
        assert_eq!(
            authenticate(crossed.as_bytes(), keys, b""),
            Err(TokenError::BadSignature),
            "kid is not bound to the key"
        );
    }
    // Domain separation: an API-key signature is not a token signature and vice versa.
    let payload = serde_json::to_vec(&claims).expect("claims");
    let api_signed = sign(&payload, &key, b"dgsk_");
    assert!(authenticate(api_signed.as_bytes(), keys, b"").is_err());
    assert!(authenticate(token.as_bytes(), keys, b"dgsk_").is_err());
}

fuzz_target!(|data: &[u8]| {
    common::set_input(data);
    check_raw(data, common::NOW, None);
    let mut u = Unstructured::new(data);
    if let Ok(peer) = IpAddr::arbitrary(&mut u) {
        check_raw(
            data,
            u64::arbitrary(&mut u).unwrap_or(common::NOW),
            Some(peer),
        );
    }
    if let Ok(m) = MintCase::arbitrary(&mut Unstructured::new(data)) {
        check_minted(&m);
    }
});

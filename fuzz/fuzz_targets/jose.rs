//! Tokens others sign (src/core/jose/): `PublicKeys::from_jwks` on arbitrary bytes, and
//! `verify` / `unverified_kid` of arbitrary tokens under the fixed public keys of
//! tests/vectors/jose.json (PyJWT-signed).
//!
//! Invariants:
//! * never panics, on any bytes;
//! * a JWK set that reads has 1 to 32 keys, and its `Debug` is short (kids and types, no key
//!   material);
//! * **only signed inputs verify**: the fuzzer has no private key, so a token that verifies under
//!   the vectors' keys must carry the signing input (header and payload bytes) of one of the
//!   vectors' valid tokens; anything else is a forgery. (ECDSA's other-S signature of the same
//!   input is valid by design and keeps the input.) A verified payload is a JSON object;
//! * `unverified_kid` is 1-128 bytes of `[A-Za-z0-9._-]` when it is anything.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use devgate::core::jose::{unverified_kid, verify, Alg, PublicKeys, Rules};
use libfuzzer_sys::fuzz_target;

const VECTORS: &str = include_str!("../../tests/vectors/jose.json");

struct Fixed {
    keys: PublicKeys,
    /// The signing inputs of the vectors' valid tokens.
    signed: Vec<Vec<u8>>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let v: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors");
        let keys = PublicKeys::from_jwks(v["jwks"].to_string().as_bytes()).expect("jwks");
        let signed = v["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .filter(|c| c["expect"] == "ok")
            .filter_map(|c| {
                let t = c["token"].as_str()?;
                Some(t.rsplit_once('.')?.0.as_bytes().to_vec())
            })
            .collect();
        Fixed { keys, signed }
    })
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    algorithms: u8,
    padded: bool,
    use_own_keys: bool,
    jwks: &'a [u8],
    token: &'a [u8],
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let algorithms: Vec<Alg> = Alg::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| input.algorithms & (1 << i) != 0)
        .map(|(_, a)| a)
        .collect();
    let rules = Rules {
        algorithms: &algorithms,
        padded: input.padded,
    };

    let own = PublicKeys::from_jwks(input.jwks);
    if let Ok(keys) = &own {
        assert!((1..=32).contains(&keys.len()));
        let debug = format!("{keys:?}");
        assert!(debug.len() <= keys.len() * (256 + 32) + 2, "{debug}");
    }

    if let Some(kid) = unverified_kid(input.token, input.padded) {
        assert!((1..=128).contains(&kid.len()));
        assert!(kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')));
    }

    let fixed = fixed();
    let keys = match (&own, input.use_own_keys) {
        (Ok(keys), true) => keys,
        _ => &fixed.keys,
    };
    if let Ok(verified) = verify(input.token, keys, &rules) {
        let first = verified.payload.iter().find(|b| !b.is_ascii_whitespace());
        assert_eq!(first, Some(&b'{'));
        assert!(serde_json::from_slice::<serde_json::Value>(&verified.payload).is_ok());
        if std::ptr::eq(keys, &fixed.keys) {
            let input_bytes = input
                .token
                .rsplitn(2, |&b| b == b'.')
                .nth(1)
                .unwrap_or_default();
            assert!(
                fixed.signed.iter().any(|s| s.as_slice() == input_bytes),
                "a token verified that no vector signed: forgery"
            );
        }
    }
});

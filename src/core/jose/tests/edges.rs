//! Edge cases of the verifier, the JWK set reader and the PEM reader, with an ES256 key signed
//! here (p256's signer; the independent signer's answers are in `vectors.rs`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};

use crate::core::jose::{unverified_kid, verify, Alg, KeysError, PublicKeys, Rules, MAX_TOKEN_LEN};
use crate::core::token::TokenError;

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).unwrap()
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn jwk(kid: &str) -> String {
    let point = signing_key().verifying_key().to_encoded_point(false);
    format!(
        r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"{}","y":"{}"}}"#,
        b64(point.x().unwrap()),
        b64(point.y().unwrap())
    )
}

fn keys() -> PublicKeys {
    PublicKeys::from_jwks(format!(r#"{{"keys":[{}]}}"#, jwk("k1")).as_bytes()).unwrap()
}

/// A token of `header` and `payload` (JSON text), signed with the ES256 key.
fn token(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig: Signature = signing_key().sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

fn check(token: &str) -> Result<Vec<u8>, TokenError> {
    let rules = Rules {
        algorithms: &[Alg::Es256],
        padded: false,
    };
    verify(token.as_bytes(), &keys(), &rules).map(|v| v.payload)
}

const H: &str = r#"{"alg":"ES256","kid":"k1"}"#;

#[test]
fn a_good_token_gives_its_payload() {
    assert_eq!(
        check(&token(H, r#"{"sub":"a"}"#)).unwrap(),
        br#"{"sub":"a"}"#
    );
    let typ = r#"{"typ":"at+jwt","alg":"ES256","kid":"k1","x5t":"zz","nested":{"a":[1]}}"#;
    assert!(check(&token(typ, "{}")).is_ok());
}

#[test]
fn size_bytes_and_segments() {
    let big = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(check(&big), Err(TokenError::TooLong));
    let good = token(H, "{}");
    for bad in [
        format!("{good}="),
        format!(" {good}"),
        good.replace('.', ".."),
        format!("{good}.x"),
        good.rsplit_once('.').unwrap().0.to_string(),
        format!(".{good}"),
        good.replacen('-', "+", 1),
        String::new(),
    ] {
        let got = check(&bad);
        assert!(
            matches!(got, Err(TokenError::Malformed | TokenError::BadSignature)),
            "{bad}: {got:?}"
        );
    }
    let (input, _) = good.rsplit_once('.').unwrap();
    assert_eq!(check(&format!("{input}.")), Err(TokenError::Malformed));
}

#[test]
fn header_rules() {
    let cases = [
        ("[]", TokenError::Malformed),
        ("not json", TokenError::Malformed),
        (
            r#"{"alg":"ES256","kid":"k1","alg":"ES256"}"#,
            TokenError::Malformed,
        ),
        (
            r#"{"alg":"ES256","kid":"k1","x":1,"x":1}"#,
            TokenError::Malformed,
        ),
        (r#"{"alg":"ES256","kid":5}"#, TokenError::Malformed),
        (
            r#"{"alg":"ES256","kid":"k1","signer":5}"#,
            TokenError::Malformed,
        ),
        (
            r#"{"alg":"ES256","kid":"k1","client":[]}"#,
            TokenError::Malformed,
        ),
        (r#"{"alg":"es256","kid":"k1"}"#, TokenError::UnsupportedAlg),
        (
            r#"{"alg":["ES256"],"kid":"k1"}"#,
            TokenError::UnsupportedAlg,
        ),
        (r#"{"kid":"k1"}"#, TokenError::UnsupportedAlg),
        (r#"{"alg":"HS256","kid":"k1"}"#, TokenError::UnsupportedAlg),
        (r#"{"alg":"none","kid":"k1"}"#, TokenError::UnsupportedAlg),
        (r#"{"alg":"ES384","kid":"k1"}"#, TokenError::UnsupportedAlg),
        (r#"{"alg":"ES256"}"#, TokenError::MissingKid),
        (
            r#"{"alg":"ES256","kid":"k1","crit":[]}"#,
            TokenError::UnsupportedHeader,
        ),
        (r#"{"alg":"ES256","kid":"k2"}"#, TokenError::UnknownKid),
        (r#"{"alg":"ES256","kid":"K1"}"#, TokenError::UnknownKid),
    ];
    for (header, want) in cases {
        assert_eq!(check(&token(header, "{}")), Err(want), "{header}");
    }
    let long = format!(r#"{{"alg":"ES256","kid":"k1","x":"{}"}}"#, "a".repeat(2048));
    assert_eq!(check(&token(&long, "{}")), Err(TokenError::Malformed));
}

#[test]
fn the_payload_is_read_only_once_signed_and_must_be_an_object() {
    for payload in ["[]", "1", "\"s\"", "{", "{} x", "null"] {
        assert_eq!(
            check(&token(H, payload)),
            Err(TokenError::Malformed),
            "{payload}"
        );
    }
    // A bad payload under a bad signature is a bad signature.
    let good = token(H, "[]");
    let (input, _) = good.rsplit_once('.').unwrap();
    let other = token(H, "{}");
    let (_, sig) = other.rsplit_once('.').unwrap();
    assert_eq!(
        check(&format!("{input}.{sig}")),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn signatures_of_the_wrong_shape_are_bad() {
    let good = token(H, "{}");
    let (input, sig) = good.rsplit_once('.').unwrap();
    let raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let der = Signature::from_slice(&raw).unwrap().to_der();
    for bad in [
        b64(der.as_bytes()),
        b64(&raw[..63]),
        b64(&[raw.as_slice(), &[0]].concat()),
        b64(&[0u8; 64]),
        "A".repeat(2000),
        "!!".to_string(),
    ] {
        let got = check(&format!("{input}.{bad}"));
        assert!(
            matches!(got, Err(TokenError::BadSignature | TokenError::Malformed)),
            "{got:?}"
        );
        assert_ne!(got, Ok(vec![]));
    }
    // High-S: the other valid signature of the same input.
    let sig = Signature::from_slice(&raw).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = Signature::from_scalars(r, -*s).unwrap();
    assert!(check(&format!("{input}.{}", b64(&flipped.to_bytes()))).is_ok());
}

#[test]
fn unverified_kid_is_only_a_url_safe_kid() {
    assert_eq!(
        unverified_kid(token(H, "{}").as_bytes(), false).as_deref(),
        Some("k1")
    );
    let long = "a".repeat(128);
    let h = format!(r#"{{"alg":"ES256","kid":"{long}"}}"#);
    assert_eq!(
        unverified_kid(token(&h, "{}").as_bytes(), false),
        Some(long.clone())
    );
    for kid in [
        "".to_string(),
        "a".repeat(129),
        "../x".into(),
        "a/b".into(),
        "a b".into(),
        "a%2f".into(),
    ] {
        let h = format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#);
        assert_eq!(
            unverified_kid(token(&h, "{}").as_bytes(), false),
            None,
            "{kid}"
        );
    }
    assert_eq!(unverified_kid(b"garbage", false), None);
    assert_eq!(
        unverified_kid(token(r#"{"kid":5}"#, "{}").as_bytes(), false),
        None
    );
}

#[test]
fn jwks_what_is_skipped_and_what_is_malformed() {
    let k = jwk("k1");
    let set =
        |entries: &str| PublicKeys::from_jwks(format!(r#"{{"keys":[{entries}]}}"#).as_bytes());
    let skipped = [
        r#"{"kty":"oct","k":"c2VjcmV0","kid":"h"}"#,
        r#"{"kty":"EC","crv":"P-521","kid":"p521","x":5}"#,
        r#"{"kty":"OKP","crv":"X25519","kid":"x","x":"AA"}"#,
        &k.replace(r#""kty""#, r#""use":"enc","kty""#),
        &k.replace(r#""kty""#, r#""alg":"ES512","kty""#),
        &k.replace(r#""kty""#, r#""alg":"HS256","kty""#),
        &k.replace(r#""kid":"k1","#, ""),
    ];
    for entry in skipped {
        assert_eq!(set(entry).unwrap_err(), KeysError::NoUsableKey, "{entry}");
        assert_eq!(
            set(&format!("{entry},{}", jwk("k9"))).unwrap().len(),
            1,
            "{entry}"
        );
    }
    let point = signing_key().verifying_key().to_encoded_point(false);
    let x = b64(point.x().unwrap());
    let malformed = [
        format!("{k},{k}"),
        k.replace(r#""kty""#, r#""d":"AAAA","kty""#),
        k.replace(r#""kty""#, r#""use":5,"kty""#),
        k.replace(r#""kty""#, r#""kid":"k1","kty""#),
        k.replace(r#""kid":"k1""#, r#""kid":7"#),
        k.replace(r#""kid":"k1""#, r#""kid":"""#),
        k.replace(&x, &x[1..]),
        k.replace(&x, &b64(&[1u8; 32])),
        k.replace(&x, &format!("{x}=")),
        r#"{"crv":"P-256"}"#.to_string(),
    ];
    for entry in &malformed {
        assert_eq!(set(entry).unwrap_err(), KeysError::Malformed, "{entry}");
    }
    for bad in ["", "[]", "{}", r#"{"keys":{}}"#, r#"{"keys":[1]}"#, "null"] {
        assert_eq!(
            PublicKeys::from_jwks(bad.as_bytes()).unwrap_err(),
            KeysError::Malformed,
            "{bad}"
        );
    }
    assert_eq!(set("").unwrap_err(), KeysError::NoUsableKey);
    let many: Vec<String> = (0..33).map(|i| jwk(&format!("k{i}"))).collect();
    assert_eq!(set(&many.join(",")).unwrap_err(), KeysError::TooLarge);
    assert_eq!(set(&many[..32].join(",")).unwrap().len(), 32);
    let huge = format!(r#"{{"keys":[],"pad":"{}"}}"#, "a".repeat(64 * 1024));
    assert_eq!(
        PublicKeys::from_jwks(huge.as_bytes()).unwrap_err(),
        KeysError::TooLarge
    );
}

#[test]
fn keys_merge_and_debug_without_material() {
    let a = keys();
    assert!(a.has_kid("k1") && !a.has_kid("k2") && a.len() == 1 && !a.is_empty());
    let b =
        PublicKeys::from_jwks(format!(r#"{{"keys":[{},{}]}}"#, jwk("k1"), jwk("k2")).as_bytes())
            .unwrap();
    let m = a.merged(b);
    assert_eq!(m.len(), 2);
    assert!(m.has_kid("k2"));
    assert!(m.fits(Alg::Es256) && !m.fits(Alg::Rs256));
    let debug = format!("{m:?}");
    assert_eq!(debug, r#"{"k1": EC P-256, "k2": EC P-256}"#);
    assert!(PublicKeys::default().is_empty());
}

#[test]
fn pem_shapes() {
    let bad = [
        "",
        "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
        "-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\nmore",
    ];
    for pem in bad {
        assert_eq!(
            PublicKeys::from_pem("k", pem.as_bytes()).unwrap_err(),
            KeysError::Malformed,
            "{pem}"
        );
    }
    let huge = "a".repeat(16 * 1024 + 1);
    assert_eq!(
        PublicKeys::from_pem("k", huge.as_bytes()).unwrap_err(),
        KeysError::TooLarge
    );
}

#[test]
fn rsa_moduli_and_exponents() {
    let rsa = |n: &[u8], e: &[u8]| {
        let jwk = format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"r","n":"{}","e":"{}"}}]}}"#,
            b64(n),
            b64(e)
        );
        PublicKeys::from_jwks(jwk.as_bytes())
    };
    let mut n2048 = vec![0xffu8; 256];
    if let Some(last) = n2048.last_mut() {
        *last = 0xfb;
    }
    let keys = rsa(&n2048, &[1, 0, 1]).unwrap();
    assert!(keys.fits(Alg::Rs256) && keys.fits(Alg::Ps256) && !keys.fits(Alg::Es256));
    assert_eq!(format!("{keys:?}"), r#"{"r": RSA}"#);
    // Leading zero bytes do not make a modulus larger.
    assert!(rsa(&[&[0u8, 0][..], &n2048].concat(), &[3]).is_ok());
    // 2047 and 8193 bits: unusable, skipped.
    let mut n2047 = n2048.clone();
    n2047[0] = 0x7f;
    assert_eq!(rsa(&n2047, &[1, 0, 1]).unwrap_err(), KeysError::NoUsableKey);
    let n8193 = [&[1u8][..], &[0xff; 1024]].concat();
    assert_eq!(rsa(&n8193, &[1, 0, 1]).unwrap_err(), KeysError::NoUsableKey);
    assert!(rsa(&[0xff; 1024], &[1, 0, 1]).is_ok());
    // Exponents RSA does not take.
    for e in [&[1u8][..], &[], &[1, 0, 0, 0, 0, 0]] {
        assert_eq!(rsa(&n2048, e).unwrap_err(), KeysError::Malformed, "{e:?}");
    }
}

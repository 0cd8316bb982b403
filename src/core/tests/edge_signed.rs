//! Assertions signed by an independent signer (PyJWT 2.10.1 with `cryptography`, one P-256
//! key; nobody here signed them by hand), verified end to end: `jose::verify` over the raw
//! bytes, then the claims, through `check` and `identify`. Expiries are in 2100.

use super::*;
use crate::core::jose::PublicKeys;

/// The issuer's JWK set (key `k1`, P-256).
const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "QulmS3-MwRJ6vJPoS_tO8PJHubbBdqtoWhYOjtaJLg4", "y": "uum9aWLax8tv5OWkgBq0q2XtULnV92PfUuGtRbxCUX0", "kid": "k1", "alg": "ES256", "use": "sig"}]}"#;
/// The same key as SPKI PEM (the ALB's form).
const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQulmS3+MwRJ6vJPoS/tO8PJHubbB\ndqtoWhYOjtaJLg666b1pYtrHy2/k5aSAGrSrZe1QudX3Y99S4a1FvEJRfQ==\n-----END PUBLIC KEY-----\n";
const GOOD: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.nEniVwrBZD0pU4-wjRQnN0xsRq4xUPvj96np8DsbaiNNiT-1Yk79mez_ePIzy8fNg0idFpaK6qFCIuRmhevFPA";
const WRONG_AUD: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTkiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.-IY7-h6eXtrDmcQmnxtYWmSjU9gMrdzRiVo1WAuWj72fpdrFiUGS-JGop49EKCQJG5Q8rILV-TAfY1loIVOgFw";
const WRONG_ISS: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2V2aWwuZXhhbXBsZSIsImF1ZCI6ImFwcC0xIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE2MDAwMDAwMDAsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20iLCJncm91cHMiOlsiZGV2cyJdfQ.-iKRwGJouJXfg6mRmYPd3KEjT_CLFoD_pQsEBMSVv2uxXqivhDiqNx1FlR5LysD3kHYLKlwW0CG60DnGdwqqtA";
const EXPIRED: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjE2MDAwMDAxMDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.9WTQsZ80ZCrsvdyKawakSCW2gHq2nYLJas8qQ2UfvGS96mMtQ1459dgmB5CO3srx2yuTuiQKlHYyAlk0Vi67Mg";
const EMAIL_NOT_STRING: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOjQyLCJncm91cHMiOlsiZGV2cyJdfQ.4kykJuGfUq8YwKFFvcT2QNoeQeSFp8AJ8kZMgN_YiIzDY6vBciqubAARmbhsZDRjyGIyDmB6cwY63AWQ06bjCA";
const OTHER_KEY: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.eAuHIqtO-ibak2JabKEvMnw88CPtcLkVpo7S3OMlaqcYCzSl9XK7MhJVPNSUvyCkMI3z6aoOsSDN0Tfd7On8aQ";
const UNKNOWN_KID: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsyIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.uKS-aCq2TlFzLHa45akDmnCvNmXv25YCFwIm_7dUpHkwQ2Vq9woT4h81Pgy3XuKpHIz5y_AFZtPnkTxLHDeEmg";
const HS256_CONFUSION: &str = "eyJhbGciOiAiSFMyNTYiLCAia2lkIjogImsxIiwgInR5cCI6ICJKV1QifQ.eyJpc3MiOiAiaHR0cHM6Ly9pc3N1ZXIuZXhhbXBsZSIsICJhdWQiOiAiYXBwLTEiLCAiZXhwIjogNDEwMjQ0NDgwMCwgImlhdCI6IDE2MDAwMDAwMDAsICJlbWFpbCI6ICJhbGljZUBleGFtcGxlLmNvbSIsICJncm91cHMiOiBbImRldnMiXX0.PYdxZezZJ5XyGs0W0pM8L8CQU9tVcKjSlnUzuvxdAFA";
const GOOD_PADDED: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBwLTEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTYwMDAwMDAwMCwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJkZXZzIl19.nEniVwrBZD0pU4-wjRQnN0xsRq4xUPvj96np8DsbaiNNiT-1Yk79mez_ePIzy8fNg0idFpaK6qFCIuRmhevFPA==";
const ALB: &str = "eyJhbGciOiAiRVMyNTYiLCAia2lkIjogImsxIiwgInNpZ25lciI6ICJhcm46YXdzOmVsYXN0aWNsb2FkYmFsYW5jaW5nOmV1LXdlc3QtMToxMjM0NTY3ODkwMTI6bG9hZGJhbGFuY2VyL2FwcC9kZXYvNTBkYzZjNDk1YzBjOTE4OCIsICJpc3MiOiAiaHR0cHM6Ly9pc3N1ZXIuZXhhbXBsZSIsICJjbGllbnQiOiAiY2xpZW50LWlkIiwgImV4cCI6IDQxMDI0NDQ4MDAsICJ0eXAiOiAiSldUIn0=.eyJzdWIiOiAiMTIzNCIsICJlbWFpbCI6ICJhbGljZUBleGFtcGxlLmNvbSIsICJleHAiOiA0MTAyNDQ0ODAwLCAiaXNzIjogImh0dHBzOi8vaXNzdWVyLmV4YW1wbGUifQ==.upXe8-h_dRT-Z6X4tLMUZe3haVEXyMLSPsMOuI28Oiat_-Rh3M4fAYa_ToF7RAypNOEi-uK5yHXJZFjK5PWNkg==";
const ALB_OTHER_SIGNER: &str = "eyJhbGciOiAiRVMyNTYiLCAia2lkIjogImsxIiwgInNpZ25lciI6ICJhcm46YXdzOmVsYXN0aWNsb2FkYmFsYW5jaW5nOmV1LXdlc3QtMToxMjM0NTY3ODkwMTI6bG9hZGJhbGFuY2VyL2FwcC9wcm9kLzUwZGM2YzQ5NWMwYzkxODgiLCAiaXNzIjogImh0dHBzOi8vaXNzdWVyLmV4YW1wbGUiLCAiY2xpZW50IjogImNsaWVudC1pZCIsICJleHAiOiA0MTAyNDQ0ODAwLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiMTIzNCIsICJlbWFpbCI6ICJhbGljZUBleGFtcGxlLmNvbSIsICJleHAiOiA0MTAyNDQ0ODAwLCAiaXNzIjogImh0dHBzOi8vaXNzdWVyLmV4YW1wbGUifQ==.5mcE3xbO7XshOB8ISaGHw0inKDTpLZMyw4vIpMiOydQrekL79ktDu-dE9GS2dhfNIhWvKAGw_LZT1BJdtY_1fQ==";
const ALB_OTHER_CLIENT: &str = "eyJhbGciOiAiRVMyNTYiLCAia2lkIjogImsxIiwgInNpZ25lciI6ICJhcm46YXdzOmVsYXN0aWNsb2FkYmFsYW5jaW5nOmV1LXdlc3QtMToxMjM0NTY3ODkwMTI6bG9hZGJhbGFuY2VyL2FwcC9kZXYvNTBkYzZjNDk1YzBjOTE4OCIsICJpc3MiOiAiaHR0cHM6Ly9pc3N1ZXIuZXhhbXBsZSIsICJjbGllbnQiOiAib3RoZXItY2xpZW50IiwgImV4cCI6IDQxMDI0NDQ4MDAsICJ0eXAiOiAiSldUIn0=.eyJzdWIiOiAiMTIzNCIsICJlbWFpbCI6ICJhbGljZUBleGFtcGxlLmNvbSIsICJleHAiOiA0MTAyNDQ0ODAwLCAiaXNzIjogImh0dHBzOi8vaXNzdWVyLmV4YW1wbGUifQ==.AlkfSYU6i7vgXFqhEthypGq15nOBPWheSm8SQQvY9zrjET99d3IXb6A6Oa6xic8uv1povRQ3E18Komhno3QMCw==";

const ARN: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/dev/50dc6c495c0c9188";

fn jwks() -> PublicKeys {
    PublicKeys::from_jwks(JWKS.as_bytes()).unwrap()
}

fn carrying(token: &str) -> Vec<(&[u8], &[u8])> {
    vec![(b"x-assert", token.as_bytes())]
}

fn inline() -> AssertionSource {
    let mut src = source(Profile::Oidc);
    src.keys = KeyLocation::Inline(jwks());
    src
}

#[test]
fn signed_assertions_and_their_forgeries() {
    let src = inline();
    let run = |token: &str| {
        let h = carrying(token);
        check(&src, 0, &req("10.0.0.1:1", &h), None, None)
    };
    assert_eq!(run(GOOD), Some(Found::Developer(alice())));
    let refused = |r: Reason| Some(Found::Refused(r));
    assert_eq!(run(WRONG_AUD), refused(Reason::WrongAudience));
    assert_eq!(run(WRONG_ISS), refused(Reason::WrongIssuer));
    assert_eq!(run(EXPIRED), refused(Reason::Token(TokenError::Expired)));
    assert_eq!(run(EMAIL_NOT_STRING), refused(Reason::BadClaim));
    assert_eq!(
        run(OTHER_KEY),
        refused(Reason::Token(TokenError::BadSignature))
    );
    assert_eq!(
        run(UNKNOWN_KID),
        refused(Reason::Token(TokenError::UnknownKid))
    );
    // The public key as an HMAC secret: never an HS* algorithm.
    assert_eq!(
        run(HS256_CONFUSION),
        refused(Reason::Token(TokenError::UnsupportedAlg))
    );
    // Padding is the ALB's quirk only.
    assert!(matches!(
        run(GOOD_PADDED),
        Some(Found::Refused(Reason::Token(_)))
    ));
    // An algorithm the source does not allow.
    let mut rs = inline();
    rs.algorithms = vec![crate::core::jose::Alg::Rs256];
    let h = carrying(GOOD);
    assert_eq!(
        check(&rs, 0, &req("10.0.0.1:1", &h), None, None),
        refused(Reason::Token(TokenError::UnsupportedAlg))
    );
}

#[test]
fn fetched_keys_rotate_through_want() {
    let mut src = source(Profile::Oidc);
    src.keys = fetched();
    let h = carrying(UNKNOWN_KID);
    let keys = FakeKeys {
        ready: Some(jwks()),
        want: true,
        ..FakeKeys::default()
    };
    // A kid the set lacks: one refetch is planned for it, and the request waits.
    assert_eq!(
        check(&src, 2, &req("10.0.0.1:1", &h), None, Some(&keys)),
        Some(Found::Ask)
    );
    assert_eq!(
        keys.wanted.borrow().as_slice(),
        &[(2, Some("k2".to_string()))]
    );
    // None may be made now: refused, never admitted.
    let keys = FakeKeys {
        ready: Some(jwks()),
        ..FakeKeys::default()
    };
    assert_eq!(
        check(&src, 0, &req("10.0.0.1:1", &h), None, Some(&keys)),
        Some(Found::Refused(Reason::Token(TokenError::UnknownKid)))
    );
    let h = carrying(GOOD);
    assert_eq!(
        check(&src, 0, &req("10.0.0.1:1", &h), None, Some(&keys)),
        Some(Found::Developer(alice()))
    );
}

#[test]
fn aws_alb_padded_signed_header() {
    let mut src = source(Profile::AwsAlb);
    src.keys = KeyLocation::Inline(PublicKeys::from_pem("k1", PEM.as_bytes()).unwrap());
    src.padded = true;
    src.signer = Some(ARN.into());
    src.audiences = vec!["client-id".into()];
    let run = |src: &AssertionSource, token: &str| {
        let h = carrying(token);
        check(src, 0, &req("10.0.0.1:1", &h), None, None)
    };
    assert_eq!(run(&src, ALB), Some(Found::Developer(alice())));
    assert_eq!(
        run(&src, ALB_OTHER_SIGNER),
        Some(Found::Refused(Reason::WrongSigner))
    );
    assert_eq!(
        run(&src, ALB_OTHER_CLIENT),
        Some(Found::Refused(Reason::WrongAudience))
    );
    // The same padded token outside the ALB profile: refused.
    let mut strict = src.clone();
    strict.profile = Profile::Oidc;
    strict.padded = false;
    strict.signer = None;
    assert!(matches!(
        run(&strict, ALB),
        Some(Found::Refused(Reason::Token(_)))
    ));
}

/// A policy whose one assertion source takes `keys` (JSON) with `extra` members.
fn signed_policy(profile_and_more: &str, keys: &str) -> &'static Policy {
    let json = format!(
        r#"{{"network": {{"allow": ["127.0.0.1/32"], "deny": ["10.0.0.0/24"]}},
            "edge": {{"assertions": [{{"name": "idp", {profile_and_more},
                "issuer": "https://issuer.example", "keys": {keys},
                "developers": {{"domains": ["example.com"]}}}}]}}}}"#
    );
    policy(&json)
}

#[test]
fn configured_inline_keys_verify_through_the_decision() {
    let jwks = format!(r#"{{"jwks": {JWKS}}}"#);
    let p = signed_policy(
        r#""profile": "oidc", "header": "x-assert", "algorithms": ["ES256"], "audiences": ["app-1"]"#,
        &jwks,
    );
    let h = carrying(GOOD);
    let d = decide_at(p, "192.0.2.1:1", &h, None);
    let Decision::Allow {
        identity, edits, ..
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(identity, Some(alice()));
    assert_eq!(
        edits.set,
        vec![("x-wsgiorg-developer-user", b"alice@example.com".to_vec())]
    );
    // The assertion itself is left for the application.
    assert!(!edits.remove.iter().any(|n| &**n == b"x-assert"));
    // network.deny wins over a good signature.
    let d = decide_at(p, "10.0.0.9:1", &h, None);
    assert!(
        matches!(
            d,
            Decision::Deny {
                reason: Reason::NetworkDenied,
                ..
            }
        ),
        "{d:?}"
    );
    // A forgery is refused with its reason on a protected path.
    for (token, reason) in [
        (WRONG_AUD, Reason::WrongAudience),
        (HS256_CONFUSION, Reason::Token(TokenError::UnsupportedAlg)),
        (OTHER_KEY, Reason::Token(TokenError::BadSignature)),
    ] {
        let h = carrying(token);
        let d = decide_at(p, "192.0.2.1:1", &h, None);
        assert!(
            matches!(d, Decision::Deny { reason: r, .. } if r == reason),
            "{d:?}"
        );
    }
}

#[test]
fn configured_alb_pem_verifies_padded_assertions() {
    let pem = format!(
        r#"{{"pem": [{{"id": "k1", "pem": "{}"}}]}}"#,
        PEM.replace('\n', "\\n")
    );
    let p = signed_policy(
        &format!(r#""profile": "aws_alb", "signer": "{ARN}", "audiences": ["client-id"]"#),
        &pem,
    );
    let h: Vec<(&[u8], &[u8])> = vec![
        (b"x-amzn-oidc-data", ALB.as_bytes()),
        (b"X-Amzn-Oidc-Identity", b"1234"),
    ];
    let d = decide_at(p, "192.0.2.1:1", &h, None);
    let Decision::Allow {
        identity, edits, ..
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(identity, Some(alice()));
    assert!(edits.remove.iter().any(|n| &**n == b"X-Amzn-Oidc-Identity"));
    let h: Vec<(&[u8], &[u8])> = vec![(b"x-amzn-oidc-data", ALB_OTHER_SIGNER.as_bytes())];
    let d = decide_at(p, "192.0.2.1:1", &h, None);
    assert!(
        matches!(
            d,
            Decision::Deny {
                reason: Reason::WrongSigner,
                ..
            }
        ),
        "{d:?}"
    );
}

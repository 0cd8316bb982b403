use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;

use super::mint::mac;
use super::*;

const NOW: u64 = 1_700_000_000;

fn secret(fill: u8) -> Secret {
    Secret::from_bytes(vec![fill; 32]).unwrap()
}

fn key(id: &str, fill: u8) -> Key {
    Key {
        id: id.to_owned(),
        secret: secret(fill),
    }
}

fn keys() -> KeySet {
    KeySet::new(vec![key("k2", 2), key("k1", 1)]).unwrap()
}

fn claims() -> Claims {
    Claims {
        sub: "alice".to_owned(),
        purpose: Purpose::Developer,
        cookie: None,
        cip: None,
        jti: None,
        iat: Some(NOW),
        nbf: None,
        exp: NOW + 3600,
    }
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// A token with arbitrary header and payload JSON, signed with `secret`.
fn forge(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    // Keyed here, not through `Secret`: the oracle does not share the code under test.
    let mut m = HmacSha256::new_from_slice(secret).unwrap();
    m.update(input.as_bytes());
    format!("{input}.{}", b64(&m.finalize().into_bytes()))
}

const HDR: &str = r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#;

fn payload(extra: &str) -> String {
    format!(
        r#"{{"sub":"alice","dgp":"developer","exp":{}{extra}}}"#,
        NOW + 60
    )
}

fn dev() -> Expect<'static> {
    Expect::developer(0)
}

fn check_forged(header: &str, payload: &str) -> Result<Claims, TokenError> {
    verify(
        forge(header, payload, &[1; 32]).as_bytes(),
        &keys(),
        &dev(),
        NOW,
    )
}

// --- RFC 7515 appendix A.1 -----------------------------------------------------------

const RFC_HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
const RFC_PAYLOAD_B64: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const RFC_SIG_B64: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC_KEY_B64: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

#[test]
fn rfc7515_a1_mac_known_answer() {
    let secret = Secret::from_b64url(RFC_KEY_B64).unwrap();
    assert_eq!(secret.len(), 64);
    let input = format!("{RFC_HEADER_B64}.{RFC_PAYLOAD_B64}");
    assert_eq!(b64(&mac(&secret, b"", input.as_bytes())), RFC_SIG_B64);
    // The header bytes of the example, CR LF included.
    let header = URL_SAFE_NO_PAD.decode(RFC_HEADER_B64).unwrap();
    assert_eq!(header, b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}");
}

#[test]
fn prepared_hmac_state_equals_keying_per_message() {
    // Short, block-sized and longer-than-a-block (hashed first) secrets; fresh clones each time.
    for len in [32usize, 63, 64, 65, 200] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let secret = Secret::from_bytes(bytes.clone()).unwrap();
        for msg in [&b""[..], b"a", &[0x5a; 1000][..]] {
            let mut fresh = HmacSha256::new_from_slice(&bytes).unwrap();
            fresh.update(b"dom");
            fresh.update(msg);
            let want: [u8; MAC_LEN] = fresh.finalize().into_bytes().into();
            assert_eq!(mac(&secret, b"dom", msg), want, "len {len}");
            assert_eq!(
                mac(&secret, b"dom", msg),
                want,
                "a second use of the same state"
            );
        }
    }
}

#[test]
fn rfc7515_a1_full_verify_is_missing_kid() {
    let keys = KeySet::new(vec![Key {
        id: "rfc7515".to_owned(),
        secret: Secret::from_b64url(RFC_KEY_B64).unwrap(),
    }])
    .unwrap();
    let token = format!("{RFC_HEADER_B64}.{RFC_PAYLOAD_B64}.{RFC_SIG_B64}");
    assert_eq!(
        verify(token.as_bytes(), &keys, &dev(), 1_300_000_000),
        Err(TokenError::MissingKid)
    );
}

// --- docs/token-format.md worked example (cross-checked with PyJWT) -----------------

#[test]
fn worked_example_of_the_spec() {
    let key = Key {
        id: "k1".to_owned(),
        secret: Secret::from_b64url("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap(),
    };
    assert_eq!(key.secret.bytes(), (0u8..32).collect::<Vec<_>>().as_slice());
    let c = Claims {
        sub: "alice".to_owned(),
        purpose: Purpose::Developer,
        cookie: None,
        cip: None,
        jti: None,
        iat: Some(1_700_000_000),
        nbf: None,
        exp: 1_700_028_800,
    };
    let input = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0\
                 .eyJzdWIiOiJhbGljZSIsImRncCI6ImRldmVsb3BlciIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDI4ODAwfQ";
    let tag = mac(&key.secret, b"", input.as_bytes());
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "2788d4524b46da06b8cb410e302c13204884a8243a1e1bedb718b7085909fa26"
    );
    let token = mint(&c, &key);
    assert_eq!(
        token,
        format!("{input}.J4jUUktG2ga4y0EOMCwTIEiEqCQ6Hhvttxi3CFkJ-iY")
    );
    let keys = KeySet::new(vec![key]).unwrap();
    assert_eq!(
        verify(token.as_bytes(), &keys, &dev(), 1_700_000_000),
        Ok(c)
    );
}

// --- round trips ---------------------------------------------------------------------

#[test]
fn mint_verify_round_trip() {
    let keys = keys();
    let c = claims();
    let token = mint(&c, keys.signing_key());
    assert_eq!(verify(token.as_bytes(), &keys, &dev(), NOW), Ok(c));
    assert!(!token.contains('='));
    let header = token.split('.').next().unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(header).unwrap(),
        HDR.replace("k1", "k2").as_bytes()
    );
}

#[test]
fn rotation_old_key_still_verifies() {
    let old = KeySet::new(vec![key("k1", 1)]).unwrap();
    let token = mint(&claims(), old.signing_key());
    assert_eq!(keys().signing_key().id, "k2");
    assert!(verify(token.as_bytes(), &keys(), &dev(), NOW).is_ok());
    // Once k1 is removed, its tokens are refused.
    let new_only = KeySet::new(vec![key("k2", 2)]).unwrap();
    assert_eq!(
        verify(token.as_bytes(), &new_only, &dev(), NOW),
        Err(TokenError::UnknownKid)
    );
}

#[test]
fn same_kid_other_secret_is_bad_signature() {
    let token = mint(&claims(), &key("k1", 9));
    assert_eq!(
        verify(token.as_bytes(), &keys(), &dev(), NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn session_round_trip_and_cookie_binding() {
    let keys = keys();
    let mut c = claims();
    c.purpose = Purpose::Session;
    c.cookie = Some("devgate_token".to_owned());
    let token = mint(&c, keys.signing_key());
    let t = token.as_bytes();
    assert_eq!(
        verify(t, &keys, &Expect::session("devgate_token", 0), NOW),
        Ok(c.clone())
    );
    assert_eq!(
        verify(t, &keys, &Expect::session("other", 0), NOW),
        Err(TokenError::WrongCookie)
    );
    let no_cookie = Expect {
        cookie: None,
        ..Expect::session("x", 0)
    };
    assert_eq!(
        verify(t, &keys, &no_cookie, NOW),
        Err(TokenError::WrongCookie)
    );
    assert_eq!(verify(t, &keys, &dev(), NOW), Err(TokenError::WrongPurpose));
    // A session token without dgc.
    c.cookie = None;
    let token = mint(&c, keys.signing_key());
    assert_eq!(
        verify(
            token.as_bytes(),
            &keys,
            &Expect::session("devgate_token", 0),
            NOW
        ),
        Err(TokenError::WrongCookie)
    );
    assert_eq!(check_claims(&c), Err(TokenError::WrongCookie));
}

#[test]
fn developer_token_refused_as_session() {
    let token = mint(&claims(), keys().signing_key());
    assert_eq!(
        verify(
            token.as_bytes(),
            &keys(),
            &Expect::session("devgate_token", 0),
            NOW
        ),
        Err(TokenError::WrongPurpose)
    );
}

#[test]
fn unknown_purpose_is_wrong_purpose() {
    let p = r#"{"sub":"alice","dgp":"apikey","exp":9999999999}"#;
    assert_eq!(check_forged(HDR, p), Err(TokenError::WrongPurpose));
}

#[test]
fn peer_binding() {
    let keys = keys();
    let mut c = claims();
    c.cip = Some("192.0.2.7".parse().unwrap());
    let token = mint(&c, keys.signing_key());
    let t = token.as_bytes();
    let at = |ip: &str| dev().with_peer(ip.parse().unwrap());
    assert!(verify(t, &keys, &at("192.0.2.7"), NOW).is_ok());
    assert!(verify(t, &keys, &at("::ffff:192.0.2.7"), NOW).is_ok());
    assert_eq!(
        verify(t, &keys, &at("192.0.2.8"), NOW),
        Err(TokenError::WrongPeer)
    );
    assert_eq!(verify(t, &keys, &dev(), NOW), Err(TokenError::WrongPeer));
    // Unbound tokens ignore the peer.
    let token = mint(&claims(), keys.signing_key());
    assert!(verify(token.as_bytes(), &keys, &at("192.0.2.8"), NOW).is_ok());
    // cip that is not an address.
    assert_eq!(
        check_forged(HDR, &payload(r#","cip":"host""#)),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        check_forged(HDR, &payload(r#","cip":"fe80::1%eth0""#)),
        Err(TokenError::Malformed)
    );
    let t = forge(HDR, &payload(r#","cip":"2001:db8::1""#), &[1; 32]);
    assert_eq!(
        verify(t.as_bytes(), &keys, &at("2001:0db8:0::1"), NOW)
            .unwrap()
            .cip,
        Some("2001:db8::1".parse().unwrap())
    );
}

// --- time ----------------------------------------------------------------------------

#[test]
fn expiry_boundaries() {
    let keys = keys();
    let mut c = claims();
    c.exp = NOW;
    c.iat = None;
    let token = mint(&c, keys.signing_key());
    let t = token.as_bytes();
    assert_eq!(verify(t, &keys, &dev(), NOW - 1).map(|c| c.exp), Ok(NOW));
    assert_eq!(verify(t, &keys, &dev(), NOW), Err(TokenError::Expired));
    assert!(verify(t, &keys, &Expect::developer(30), NOW + 29).is_ok());
    assert_eq!(
        verify(t, &keys, &Expect::developer(30), NOW + 30),
        Err(TokenError::Expired)
    );
    assert_eq!(
        verify(t, &keys, &Expect::developer(u64::MAX), u64::MAX),
        Err(TokenError::Expired)
    );
    c.exp = u64::MAX;
    let token = mint(&c, keys.signing_key());
    assert!(verify(token.as_bytes(), &keys, &Expect::developer(u64::MAX), NOW).is_ok());
}

#[test]
fn not_before_and_issued_at() {
    let keys = keys();
    let mut c = claims();
    c.nbf = Some(NOW + 10);
    let token = mint(&c, keys.signing_key());
    let t = token.as_bytes();
    assert_eq!(verify(t, &keys, &dev(), NOW), Err(TokenError::NotYetValid));
    assert!(verify(t, &keys, &dev(), NOW + 10).is_ok());
    assert!(verify(t, &keys, &Expect::developer(10), NOW).is_ok());
    assert_eq!(
        verify(t, &keys, &Expect::developer(9), NOW),
        Err(TokenError::NotYetValid)
    );
    let mut c = claims();
    c.iat = Some(NOW + 100);
    let token = mint(&c, keys.signing_key());
    assert_eq!(
        verify(token.as_bytes(), &keys, &dev(), NOW),
        Err(TokenError::NotYetValid)
    );
    assert!(verify(token.as_bytes(), &keys, &Expect::developer(100), NOW).is_ok());
}

#[test]
fn time_claims_must_be_non_negative_integers() {
    for bad in [
        r#"{"sub":"a","dgp":"developer","exp":-1}"#,
        r#"{"sub":"a","dgp":"developer","exp":1.7e9}"#,
        r#"{"sub":"a","dgp":"developer","exp":1800000000.0}"#,
        r#"{"sub":"a","dgp":"developer","exp":"1800000000"}"#,
        r#"{"sub":"a","dgp":"developer","exp":18446744073709551616}"#,
        r#"{"sub":"a","dgp":"developer","exp":1e400}"#,
        r#"{"sub":"a","dgp":"developer","exp":99999999999999999999999999999999999999999}"#,
        r#"{"sub":"a","dgp":"developer","exp":null}"#,
        r#"{"sub":"a","dgp":"developer"}"#,
        r#"{"sub":"a","dgp":"developer","exp":1800000000,"nbf":null}"#,
        r#"{"sub":"a","dgp":"developer","exp":1800000000,"iat":-5}"#,
        r#"{"sub":"a","dgp":"developer","exp":1800000000,"nbf":true}"#,
    ] {
        assert_eq!(check_forged(HDR, bad), Err(TokenError::Malformed), "{bad}");
    }
}

// --- claims --------------------------------------------------------------------------

#[test]
fn subject_rules() {
    assert!(is_valid_subject("alice"));
    assert!(is_valid_subject("Alice Smith <alice@example.com>"));
    assert!(is_valid_subject(&"x".repeat(256)));
    assert!(is_valid_subject("~!"));
    for bad in [
        "", " alice", "alice ", "al\tice", "al\nice", "al\rice", "\u{7f}", "é", "a\0b",
    ] {
        assert!(!is_valid_subject(bad), "{bad:?}");
    }
    assert!(!is_valid_subject(&"x".repeat(257)));
    for bad in [
        r#""""#,
        r#"" a""#,
        r#""a\r\nx-admin: 1""#,
        r#""\u0000""#,
        r#""é""#,
        r#""\u00e9""#,
    ] {
        let p = format!(r#"{{"sub":{bad},"dgp":"developer","exp":9999999999}}"#);
        assert_eq!(check_forged(HDR, &p), Err(TokenError::BadSubject), "{bad}");
    }
    for bad in ["1", "null", "[\"a\"]", "{}"] {
        let p = format!(r#"{{"sub":{bad},"dgp":"developer","exp":9999999999}}"#);
        assert_eq!(check_forged(HDR, &p), Err(TokenError::Malformed), "{bad}");
    }
    let mut c = claims();
    c.sub = " x".to_owned();
    assert_eq!(check_claims(&c), Err(TokenError::BadSubject));
}

#[test]
fn jti_limit() {
    let ok = format!(r#","jti":"{}""#, "j".repeat(128));
    assert_eq!(
        check_forged(HDR, &payload(&ok))
            .unwrap()
            .jti
            .map(|j| j.len()),
        Some(128)
    );
    let long = format!(r#","jti":"{}""#, "j".repeat(129));
    assert_eq!(
        check_forged(HDR, &payload(&long)),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        check_forged(HDR, &payload(r#","jti":7"#)),
        Err(TokenError::Malformed)
    );
}

#[test]
fn unknown_claims_ignored_duplicates_refused() {
    let p =
        payload(r#","iss":"me","aud":["x",{"deep":[1,2,{"a":null}]}],"admin":true,"iss":"again""#);
    assert_eq!(check_forged(HDR, &p).unwrap().sub, "alice");
    let dup = r#"{"sub":"alice","sub":"root","dgp":"developer","exp":9999999999}"#;
    assert_eq!(check_forged(HDR, dup), Err(TokenError::Malformed));
    let dup = r#"{"sub":"alice","dgp":"developer","dgp":"developer","exp":9999999999}"#;
    assert_eq!(check_forged(HDR, dup), Err(TokenError::Malformed));
}

#[test]
fn payload_must_be_an_object() {
    for bad in [
        r#"["alice","developer",null,null,null,null,null,9999999999]"#,
        "null",
        "\"x\"",
        "",
        " ",
        "{",
        r#"{"sub":"alice","dgp":"developer","exp":9999999999} x"#,
        "\u{feff}{\"sub\":\"alice\",\"dgp\":\"developer\",\"exp\":9999999999}",
    ] {
        assert_eq!(check_forged(HDR, bad), Err(TokenError::Malformed), "{bad}");
    }
    assert!(check_forged(
        HDR,
        " \n{\"sub\":\"alice\",\"dgp\":\"developer\",\"exp\":9999999999} "
    )
    .is_ok());
}

#[test]
fn deeply_nested_json_does_not_panic() {
    // serde_json skips unknown members without recursion: deep nesting there is harmless.
    let deep = format!(
        r#"{{"sub":"alice","dgp":"developer","exp":9999999999,"x":{}{}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    assert!(check_forged(HDR, &deep).is_ok());
    // In a member we read, its recursion limit (128) applies.
    let deep = format!(
        r#"{{"sub":{}"a"{},"dgp":"developer","exp":9999999999}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    assert_eq!(check_forged(HDR, &deep), Err(TokenError::Malformed));
    let deep = format!(
        r#"{{"alg":{}1{},"kid":"k1"}}"#,
        "[".repeat(400),
        "]".repeat(400)
    );
    assert_eq!(
        check_forged(&deep, &payload("")),
        Err(TokenError::UnsupportedAlg)
    );
    let deep = format!(
        r#"{{"alg":"HS256","kid":"k1","x":{}1{}}}"#,
        "{\"a\":".repeat(100),
        "}".repeat(100)
    );
    assert_eq!(
        check_forged(&deep, &payload("")),
        Err(TokenError::UnsupportedHeader)
    );
    let unclosed = format!(r#"{{"alg":"HS256","kid":"k1","x":{}"#, "[".repeat(1000));
    assert_eq!(
        check_forged(&unclosed, &payload("")),
        Err(TokenError::Malformed)
    );
}

mod format;

//! Header, framing, error codes, keys and the known-answer vectors.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use super::*;

// --- header --------------------------------------------------------------------------

#[test]
fn header_rules() {
    let p = payload("");
    let cases: &[(&str, Result<(), TokenError>)] = &[
        (r#"{"alg":"HS256","kid":"k1"}"#, Ok(())),
        (r#"{"kid":"k1","alg":"HS256","typ":"JWT"}"#, Ok(())),
        (
            r#"{"alg":"none","kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (
            r#"{"alg":"None","kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (
            r#"{"alg":"hs256","kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (
            r#"{"alg":"HS512","kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (
            r#"{"alg":"RS256","kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (
            r#"{"alg":"HS256 ","kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (
            r#"{"alg":null,"kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (
            r#"{"alg":["HS256"],"kid":"k1"}"#,
            Err(TokenError::UnsupportedAlg),
        ),
        (r#"{"kid":"k1"}"#, Err(TokenError::UnsupportedAlg)),
        (
            r#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","crit":[]}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","b64":false}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","jku":"http://x"}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","cty":"JWT"}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","typ":"jwt"}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","typ":null}"#,
            Err(TokenError::UnsupportedHeader),
        ),
        (r#"{"alg":"HS256"}"#, Err(TokenError::MissingKid)),
        (
            r#"{"alg":"HS256","typ":"JWT"}"#,
            Err(TokenError::MissingKid),
        ),
        (r#"{"alg":"HS256","kid":"k9"}"#, Err(TokenError::UnknownKid)),
        (r#"{"alg":"HS256","kid":""}"#, Err(TokenError::UnknownKid)),
        (r#"{"alg":"HS256","kid":"K1"}"#, Err(TokenError::UnknownKid)),
        (r#"{"alg":"HS256","kid":1}"#, Err(TokenError::Malformed)),
        (r#"{"alg":"HS256","kid":null}"#, Err(TokenError::Malformed)),
        (
            r#"{"alg":"HS256","alg":"HS256","kid":"k1"}"#,
            Err(TokenError::Malformed),
        ),
        (
            r#"{"alg":"none","alg":"HS256","kid":"k1"}"#,
            Err(TokenError::Malformed),
        ),
        (
            r#"{"alg":"HS256","kid":"k9","kid":"k1"}"#,
            Err(TokenError::Malformed),
        ),
        (
            r#"{"alg":"HS256","kid":"k1","x":1,"x":2}"#,
            Err(TokenError::Malformed),
        ),
        (r#"["HS256","k1"]"#, Err(TokenError::Malformed)),
        (r#""HS256""#, Err(TokenError::Malformed)),
        (
            r#"{"alg":"HS256","kid":"k1"} {}"#,
            Err(TokenError::Malformed),
        ),
    ];
    for (header, want) in cases {
        let got = check_forged(header, &p).map(|_| ());
        assert_eq!(&got, want, "{header}");
    }
}

#[test]
fn header_size_cap() {
    let pad = "x".repeat(MAX_HEADER_LEN);
    let h = format!(r#"{{"alg":"HS256","kid":"k1","p":"{pad}"}}"#);
    assert_eq!(check_forged(&h, &payload("")), Err(TokenError::Malformed));
    // Exactly at the cap, the header is read (and refused for its extra member).
    let fill = "x".repeat(MAX_HEADER_LEN - r#"{"alg":"HS256","kid":"k1","p":""}"#.len());
    let h = format!(r#"{{"alg":"HS256","kid":"k1","p":"{fill}"}}"#);
    assert_eq!(h.len(), MAX_HEADER_LEN);
    assert_eq!(
        check_forged(&h, &payload("")),
        Err(TokenError::UnsupportedHeader)
    );
}

#[test]
fn header_checked_before_signature_and_payload_after() {
    // Wrong key AND alg none: the header decides.
    let t = forge(r#"{"alg":"none","kid":"k1"}"#, &payload(""), &[7; 32]);
    assert_eq!(
        verify(t.as_bytes(), &keys(), &dev(), NOW),
        Err(TokenError::UnsupportedAlg)
    );
    // Garbage payload with a bad signature: the signature decides.
    let t = forge(HDR, "not json", &[7; 32]);
    assert_eq!(
        verify(t.as_bytes(), &keys(), &dev(), NOW),
        Err(TokenError::BadSignature)
    );
    let t = forge(HDR, "not json", &[1; 32]);
    assert_eq!(
        verify(t.as_bytes(), &keys(), &dev(), NOW),
        Err(TokenError::Malformed)
    );
    // Expired AND wrong purpose: purpose first.
    let t = forge(HDR, r#"{"sub":"a","dgp":"session","exp":1}"#, &[1; 32]);
    assert_eq!(
        verify(t.as_bytes(), &keys(), &dev(), NOW),
        Err(TokenError::WrongPurpose)
    );
}

// --- framing -------------------------------------------------------------------------

#[test]
fn framing() {
    let good = mint(&claims(), keys().signing_key());
    let v = |t: &[u8]| verify(t, &keys(), &dev(), NOW);
    assert!(v(good.as_bytes()).is_ok());
    let mut parts = good.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let m = Err(TokenError::Malformed);
    assert_eq!(v(b""), m);
    assert_eq!(v(b"."), m);
    assert_eq!(v(b".."), m);
    assert_eq!(v(format!("{h}.{p}").as_bytes()), m);
    assert_eq!(v(format!("{h}.{p}.").as_bytes()), m);
    assert_eq!(v(format!("{h}..{s}").as_bytes()), m);
    assert_eq!(v(format!(".{p}.{s}").as_bytes()), m);
    assert_eq!(v(format!("{h}.{p}.{s}.").as_bytes()), m);
    assert_eq!(v(format!("{h}.{p}.{s}.{s}").as_bytes()), m);
    assert_eq!(v(format!(" {good}").as_bytes()), m);
    assert_eq!(v(format!("{good}\n").as_bytes()), m);
    assert_eq!(v(format!("{h}=.{p}.{s}").as_bytes()), m);
    assert_eq!(v(format!("{h}.{p}.{s}=").as_bytes()), m);
    assert_eq!(
        v(good.replace('-', "+").replace('_', "/").as_bytes()),
        if good.contains(['-', '_']) {
            m.clone()
        } else {
            Ok(claims())
        }
    );
    assert_eq!(v(&[0xff, 0xfe, b'.', b'a', b'.', b'b']), m);
    // Header of 4n+1 base64 characters cannot decode.
    assert_eq!(v(format!("{h}A.{p}.{s}").as_bytes()), m);
}

#[test]
fn signature_must_be_canonical_32_bytes() {
    let good = mint(&claims(), keys().signing_key());
    let (input, s) = good.rsplit_once('.').unwrap();
    let v = |t: String| verify(t.as_bytes(), &keys(), &dev(), NOW);
    let bs = Err(TokenError::BadSignature);
    assert_eq!(v(format!("{input}.{}", &s[..42])), bs);
    assert_eq!(v(format!("{input}.{s}AA")), bs);
    assert_eq!(v(format!("{input}.{s}A")), bs);
    assert_eq!(v(format!("{input}.{}", b64(&[0; 32]))), bs);
    assert_eq!(v(format!("{input}.{}", b64(&[0; 31]))), bs);
    // 43 characters encode 258 bits; the last 2 must be zero. Flipping them changes
    // nothing in the decoded tag, but the encoding is not canonical: refused.
    let last = s.as_bytes()[42];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|&c| c == last).unwrap();
    let sibling = alphabet[(idx & !3) | ((idx + 1) & 3)] as char;
    let mut other = s[..42].to_owned();
    other.push(sibling);
    assert_eq!(v(format!("{input}.{other}")), bs);
}

#[test]
fn tampering_any_byte_is_refused() {
    let good = mint(&claims(), keys().signing_key());
    for i in 0..good.len() {
        let mut t = good.clone().into_bytes();
        for c in [b'A', b'z', b'-', b'.', b'0'] {
            if good.as_bytes()[i] == c {
                continue;
            }
            t[i] = c;
            assert!(verify(&t, &keys(), &dev(), NOW).is_err(), "byte {i} -> {c}");
        }
    }
}

#[test]
fn length_cap() {
    let mut c = claims();
    c.jti = Some("j".repeat(128));
    c.sub = "s".repeat(256);
    let token = mint(&c, keys().signing_key());
    assert!(token.len() < MAX_TOKEN_LEN);
    assert!(verify(token.as_bytes(), &keys(), &dev(), NOW).is_ok());
    let long = vec![b'a'; MAX_TOKEN_LEN + 1];
    assert_eq!(
        verify(&long, &keys(), &dev(), NOW),
        Err(TokenError::TooLong)
    );
    let long = vec![0xffu8; 1 << 20];
    assert_eq!(
        verify(&long, &keys(), &dev(), NOW),
        Err(TokenError::TooLong)
    );
    // A validly signed token just above the cap.
    let big = payload(&format!(r#","pad":"{}""#, "p".repeat(3000)));
    let t = forge(HDR, &big, &[1; 32]);
    assert!(t.len() > MAX_TOKEN_LEN);
    assert_eq!(
        verify(t.as_bytes(), &keys(), &dev(), NOW),
        Err(TokenError::TooLong)
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator (xorshift), biased towards token-like bytes.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let good = mint(&claims(), keys().signing_key()).into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    for round in 0..20_000 {
        let r = next();
        let mut t: Vec<u8> = if round % 2 == 0 {
            let len = (r % 300) as usize;
            (0..len).map(|_| alphabet[(next() % 65) as usize]).collect()
        } else {
            good.clone()
        };
        let edits = (r >> 32) % 4;
        for _ in 0..edits {
            if t.is_empty() {
                break;
            }
            let i = (next() % t.len() as u64) as usize;
            t[i] = (next() & 0xff) as u8;
        }
        let _ = verify(&t, &keys(), &dev(), NOW);
    }
}

#[test]
fn arbitrary_json_never_panics() {
    for junk in [
        "{}",
        "[]",
        "{\"a\":",
        "\"\\ud800\"",
        "{\"sub\":\"\\ud800\",\"dgp\":\"developer\",\"exp\":1}",
        "{\"sub\":\"a\\u0000\",\"dgp\":\"developer\",\"exp\":9999999999}",
        "1e99999",
        "-0",
        "\u{0}",
    ] {
        let _ = check_forged(HDR, junk);
        let _ = check_forged(junk, &payload(""));
    }
}

// --- errors and keys -----------------------------------------------------------------

#[test]
fn error_codes_are_stable_and_distinct() {
    let codes: Vec<&str> = TokenError::ALL.iter().map(|e| e.code()).collect();
    assert_eq!(
        codes,
        [
            "too_long",
            "malformed",
            "unsupported_alg",
            "unsupported_header",
            "missing_kid",
            "unknown_kid",
            "bad_signature",
            "wrong_purpose",
            "expired",
            "not_yet_valid",
            "bad_subject",
            "wrong_cookie",
            "wrong_peer"
        ]
    );
    for e in TokenError::ALL {
        assert_eq!(e.to_string(), e.code());
    }
}

#[test]
fn secret_from_b64url() {
    let raw: Vec<u8> = (0u8..32).collect();
    let unpadded = URL_SAFE_NO_PAD.encode(&raw);
    let padded = base64::engine::general_purpose::URL_SAFE.encode(&raw);
    assert!(padded.ends_with('='));
    assert_eq!(
        Secret::from_b64url(&unpadded).unwrap().bytes(),
        raw.as_slice()
    );
    assert_eq!(
        Secret::from_b64url(&padded).unwrap().bytes(),
        raw.as_slice()
    );
    let std = base64::engine::general_purpose::STANDARD.encode([0xfb_u8; 33]);
    assert!(std.contains('+') || std.contains('/'));
    assert_eq!(
        Secret::from_b64url(&std).unwrap_err(),
        KeyError::SecretStdAlphabet
    );
    assert!(KeyError::SecretStdAlphabet
        .to_string()
        .contains("base64url"));
    assert_eq!(
        Secret::from_b64url(&URL_SAFE_NO_PAD.encode([1u8; 31])).unwrap_err(),
        KeyError::SecretTooShort { len: 31 }
    );
    assert_eq!(
        Secret::from_b64url("").unwrap_err(),
        KeyError::SecretTooShort { len: 0 }
    );
    for bad in [
        "!!!!",
        "AAAA=AAA",
        "A",
        &format!("{unpadded}==="),
        &format!(" {unpadded}"),
    ] {
        assert_eq!(
            Secret::from_b64url(bad).unwrap_err(),
            KeyError::SecretEncoding,
            "{bad}"
        );
    }
    assert!(Secret::from_bytes(vec![0; 32]).is_ok());
    assert_eq!(
        Secret::from_bytes(vec![0; 5]).unwrap_err(),
        KeyError::SecretTooShort { len: 5 }
    );
}

#[test]
fn secret_is_redacted() {
    let s = Secret::from_bytes(b"super-secret-value-0123456789abcdef".to_vec()).unwrap();
    assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    let k = Key {
        id: "k1".to_owned(),
        secret: s,
    };
    let dbg = format!("{k:?} {:?}", KeySet::new(vec![k.clone()]).unwrap());
    assert!(!dbg.contains("super"), "{dbg}");
}

#[test]
fn key_set_validation() {
    assert_eq!(KeySet::new(vec![]).unwrap_err(), KeyError::NoKeys);
    assert_eq!(
        KeySet::new(vec![key("a", 1), key("b", 2), key("a", 3)]).unwrap_err(),
        KeyError::DuplicateId { index: 2 }
    );
    assert_eq!(
        KeySet::new(vec![key("a", 1), key("b c", 2)]).unwrap_err(),
        KeyError::BadId { index: 1 }
    );
    assert_eq!(
        KeySet::new(vec![key("", 1)]).unwrap_err(),
        KeyError::BadId { index: 0 }
    );
    assert_eq!(
        KeySet::new(vec![key(&"x".repeat(65), 1)]).unwrap_err(),
        KeyError::BadId { index: 0 }
    );
    assert!(KeyError::BadId { index: 1 }
        .to_string()
        .starts_with("keys[1].id: "));
    assert!(KeyError::DuplicateId { index: 2 }
        .to_string()
        .starts_with("keys[2].id: "));
    let ks = KeySet::new(vec![key("2024-06.b_x", 1), key(&"x".repeat(64), 2)]).unwrap();
    assert_eq!(ks.len(), 2);
    assert_eq!(ks.signing_key().id, "2024-06.b_x");
    assert_eq!(ks.iter().map(|k| k.id.len()).collect::<Vec<_>>(), [11, 64]);
    assert!(ks.get("missing").is_none());
    for bad in ["é", "a/b", "a:b", "a\0"] {
        assert!(!is_valid_kid(bad));
    }
}

// --- known-answer vectors (tests/vectors/tokens.json) --------------------------------

#[derive(Deserialize)]
struct VectorFile {
    pyjwt_version: String,
    generated_by: Vec<String>,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    token: String,
    key_id: String,
    secret_b64url: String,
    #[serde(default)]
    extra_keys: Vec<(String, String)>,
    now: u64,
    purpose: String,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    leeway: u64,
    #[serde(default)]
    peer: Option<IpAddr>,
    expect: String,
    #[serde(default)]
    claims: Option<serde_json::Value>,
    #[serde(default)]
    mint: bool,
}

#[test]
fn known_answer_vectors() {
    let file: VectorFile =
        serde_json::from_str(include_str!("../../../../tests/vectors/tokens.json")).unwrap();
    assert!(file
        .generated_by
        .iter()
        .any(|line| line.contains("import jwt")));
    assert!(!file.pyjwt_version.is_empty());
    assert!(file.vectors.len() >= 20);
    assert!(file.vectors.iter().filter(|v| v.mint).count() >= 5);
    let mut seen_codes = std::collections::BTreeSet::new();
    for v in &file.vectors {
        let mut list = vec![Key {
            id: v.key_id.clone(),
            secret: Secret::from_b64url(&v.secret_b64url).unwrap(),
        }];
        for (id, s) in &v.extra_keys {
            list.push(Key {
                id: id.clone(),
                secret: Secret::from_b64url(s).unwrap(),
            });
        }
        let keys = KeySet::new(list).unwrap();
        let expect = Expect {
            purpose: Purpose::parse(&v.purpose).unwrap(),
            leeway: v.leeway,
            cookie: v.cookie.as_deref(),
            peer: v.peer,
        };
        let got = verify(v.token.as_bytes(), &keys, &expect, v.now);
        match &got {
            Ok(claims) => {
                assert_eq!(v.expect, "ok", "{}: got ok", v.name);
                let want = v
                    .claims
                    .as_ref()
                    .unwrap_or_else(|| panic!("{}: claims", v.name));
                assert_eq!(&serde_json::to_value(claims).unwrap(), want, "{}", v.name);
                if v.mint {
                    // Our minting reproduces the token byte for byte.
                    assert_eq!(mint(claims, keys.signing_key()), v.token, "{}", v.name);
                }
            }
            Err(e) => assert_eq!(v.expect, e.code(), "{}", v.name),
        }
        seen_codes.insert(v.expect.clone());
    }
    for e in TokenError::ALL {
        assert!(seen_codes.contains(e.code()), "no vector for {}", e.code());
    }
}

//! Shared by the fuzz targets: the fixed test keys, the known-answer token vectors, and a few
//! helpers. The keys are the public test keys of `tests/vectors/tokens.json`
//! (`sha256("devgate test vector key k1")`, `... k2`): nothing here is a real secret.
#![allow(dead_code)]

use std::sync::OnceLock;

use devgate::core::token::{Key, KeySet, Secret};

/// The vectors' clock.
pub const NOW: u64 = 1_700_000_000;
/// base64url of the vectors' K1 and K2.
pub const K1_B64: &str = "aCbzv71ILHbh5l-sR_bVTq7lQgh2lvnPBfA4qPbBvxs";
pub const K2_B64: &str = "gogHJoaxZb0ZDxkZqlho-20mUVdL2iL4uYyD3E9a0mo";

pub fn key(id: &str, b64: &str) -> Key {
    Key {
        id: id.to_string(),
        secret: Secret::from_b64url(b64).expect("test key"),
    }
}

pub fn k1() -> Key {
    key("k1", K1_B64)
}

pub fn k2() -> Key {
    key("k2", K2_B64)
}

/// `{k1, k2}`, k1 signing.
pub fn keyset() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::new(vec![k1(), k2()]).expect("test key set"))
}

/// The raw secret bytes of every test key, for "never in any output" checks.
pub fn secret_bytes() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        [K1_B64, K2_B64]
            .iter()
            .map(|s| b64url_decode(s).expect("test key"))
            .collect()
    })
}

/// Every token in `tests/vectors/tokens.json`: the only tokens signed with K1/K2 the fuzzer
/// is given. A token that authenticates under {k1, k2} must be one of them.
pub fn vector_tokens() -> &'static [String] {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/vectors/tokens.json"))
                .expect("tokens.json");
        let vectors = doc["vectors"].as_array().expect("vectors");
        // The file's keys must be ours, or the "not minted by the key" check means nothing.
        for v in vectors {
            match (v["key_id"].as_str(), v["secret_b64url"].as_str()) {
                (Some("k1"), Some(s))
                    if v["name"] != "long_secret" && v["name"] != "wrong_secret" =>
                {
                    assert_eq!(s, K1_B64, "{}", v["name"])
                }
                (Some("k2"), Some(s)) => assert_eq!(s, K2_B64, "{}", v["name"]),
                _ => {}
            }
        }
        vectors
            .iter()
            .filter_map(|v| v["token"].as_str().map(str::to_string))
            .collect()
    })
}

/// Minimal base64url (no padding) decoder, independent of the crate under test.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// True if `needle` occurs in `hay` (empty needles never do).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

/// The forms a test secret can leak in: raw bytes, base64url, Rust's `Debug` of a byte list.
fn secret_forms() -> &'static [(usize, Vec<u8>)] {
    static F: OnceLock<Vec<(usize, Vec<u8>)>> = OnceLock::new();
    F.get_or_init(|| {
        secret_bytes()
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let b64 = [K1_B64, K2_B64][i].as_bytes().to_vec();
                [(i, s.clone()), (i, b64), (i, format!("{s:?}").into_bytes())]
            })
            .collect()
    })
}

thread_local! {
    /// Which of [`secret_forms`] the current input holds itself.
    static IN_INPUT: std::cell::RefCell<Vec<bool>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records which secret forms the fuzzer's input holds, for [`assert_no_secret`]. Call first
/// in every target that uses it.
pub fn set_input(data: &[u8]) {
    IN_INPUT.with(|p| {
        *p.borrow_mut() = secret_forms()
            .iter()
            .map(|(_, f)| contains(data, f))
            .collect();
    });
}

/// Panics if any test secret (raw, base64url, or as Rust's `Debug` of a byte list) is in `text`,
/// unless the fuzzer's own input holds that very form (it learns the secret's text from the
/// comparisons these checks make, and may then echo it through a header or a name).
pub fn assert_no_secret(what: &str, text: &[u8]) {
    IN_INPUT.with(|p| {
        let present = p.borrow();
        for (j, (i, form)) in secret_forms().iter().enumerate() {
            assert!(
                present.get(j).copied().unwrap_or(false) || !contains(text, form),
                "secret k{} leaked into {what}",
                i + 1
            );
        }
    });
}

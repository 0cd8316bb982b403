//! The plugin configuration (src/config.rs): `parse_policy_with_env` on arbitrary bytes.
//!
//! Invariants:
//! * never panics, whatever the bytes (JSON or not);
//! * **errors never repeat a configured value**: the message of an error contains no string
//!   value of the input of 8 or more characters, nor any 8+ character piece of one between
//!   spaces and the characters Rust's `{:?}` escapes (quotes, backslashes, controls) or a
//!   backtick, which is how serde quotes values (`string "..."`, ``unknown variant `...` ``).
//!   Exempt, by design: values of `secret_env`/`users_env` (the name of an environment
//!   variable, not a secret), the suggestion after "did you mean" / "write it as"
//!   (derived from a CIDR or path prefix the operator wrote), text that is devgate's own
//!   (it occurs in devgate's source: field names, messages) or a number, and text that is
//!   also an object key of the input (`unknown field `...`` names the key). A value made only
//!   of such pieces is not a leak even when the message contains it (the fuzzer learns to
//!   write values that spell out the message);
//! * a policy's `Debug` output carries no inline `secret`, no test key, and no htpasswd hash;
//! * rules are ordered most specific first, and on a tie protect, then API, then public.
#![no_main]

mod common;

use std::cell::RefCell;
use std::fmt;

use devgate::config::parse_policy_with_env;
use devgate::core::policy::RuleKind;
use libfuzzer_sys::fuzz_target;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// devgate's own text: a fragment found here is not the operator's.
const VOCAB: &[&str] = &[
    include_str!("../../src/config/mod.rs"),
    include_str!("../../src/config/raw.rs"),
    include_str!("../../src/config/keyservice.rs"),
    include_str!("../../src/core/policy.rs"),
    include_str!("../../src/core/net.rs"),
    include_str!("../../src/core/path.rs"),
    include_str!("../../src/core/token/mod.rs"),
    include_str!("../../src/core/token/keys.rs"),
    include_str!("../../src/core/token/claims.rs"),
    include_str!("../../src/core/token/error.rs"),
    include_str!("../../src/core/headers.rs"),
    include_str!("../../src/core/cookie.rs"),
    include_str!("../../src/core/apikey.rs"),
    include_str!("../../src/core/htpasswd.rs"),
    // serde / serde_json message text
    "invalid type: expected a string sequence map boolean integer floating point unit value \
     unknown field duplicate field missing field invalid length invalid value unknown variant \
     there are no variants expected one of expected struct RawConfig enum option null \
     newtype struct char bytes byte array tuple u64 u32 u16 u8 i64 usize",
    // serde's snake_case names of devgate's enums (the source spells them in CamelCase)
    "read_write read_only write_only challenge forbid login pass",
];

const HASH: &str = "JZvtNra6rAJeuvkYEvBT1OJU4X";
const USERS: &str = "alice:$2y$04$JZvtNra6rAJeuvkYEvBT1OJU4Xart.tMqynAn8LVPA77/z4HIdAEq\n";

fn env(name: &str) -> Option<String> {
    match name {
        "DEVGATE_K1" => Some(common::K1_B64.to_string()),
        "DEVGATE_K2" => Some(format!(" {} \n", common::K2_B64)),
        "DEVGATE_SHORT" => Some("c2hvcnQ".to_string()),
        "DEVGATE_USERS" => Some(USERS.to_string()),
        _ => None,
    }
}

/// Every string in a JSON document, with the key it is the value of (as far as the document
/// parses: a later syntax error does not hide the strings serde already handed out).
#[derive(Default)]
struct Strings {
    values: RefCell<Vec<(Option<String>, String)>>,
    keys: RefCell<Vec<String>>,
}

struct Walk<'a> {
    out: &'a Strings,
    key: Option<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.values.borrow_mut().push((self.key, v.to_string()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walk {
                out: self.out,
                key: self.key.clone(),
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<String>()? {
            self.out.keys.borrow_mut().push(k.clone());
            map.next_value_seed(Walk {
                out: self.out,
                key: Some(k),
            })?;
        }
        Ok(())
    }
}

type Found = (Vec<(Option<String>, String)>, Vec<String>);

fn strings(data: &[u8]) -> Found {
    let out = Strings::default();
    let mut de = serde_json::Deserializer::from_slice(data);
    let _ = Walk {
        out: &out,
        key: None,
    }
    .deserialize(&mut de);
    (out.values.into_inner(), out.keys.into_inner())
}

/// The pieces of `v` between the characters serde's quoting escapes or delimits (`"`, `\`,
/// controls, backticks) and spaces.
fn pieces(v: &str) -> Vec<&str> {
    v.split(|c: char| c == '`' || c == ' ' || c.escape_debug().count() > 1)
        .filter(|p| !p.is_empty())
        .collect()
}

/// devgate's (or serde's) own text, or a number: not something only the operator wrote.
fn ours(piece: &str) -> bool {
    VOCAB.iter().any(|v| v.contains(piece))
        || piece
            .chars()
            .all(|c| c.is_ascii_digit() || ".eE+-:,;()[]".contains(c))
}

/// Whether `message` repeats `v`: all of it (8+ characters, with a piece of 4+ that is not
/// devgate's own text), or a piece of 8+ characters that is not devgate's own text.
fn repeats<'a>(message: &str, v: &'a str, keys: &[String]) -> Option<&'a str> {
    // Pieces under 4 characters are no one's secret; unknown field names are quoted back by
    // design (a key is not a value).
    let foreign =
        |p: &str| p.chars().count() >= 4 && !ours(p) && !keys.iter().any(|k| k.contains(p));
    let ps = pieces(v);
    if v.chars().count() >= 8 && message.contains(v) && ps.iter().any(|p| foreign(p)) {
        return Some(v);
    }
    ps.into_iter()
        .find(|p| p.chars().count() >= 8 && message.contains(p) && foreign(p))
}

fuzz_target!(|data: &[u8]| {
    common::set_input(data);
    let result = parse_policy_with_env(data, &env);
    let (values, keys) = strings(data);
    let from_input = [common::K1_B64, common::K2_B64, HASH]
        .iter()
        .any(|s| common::contains(data, s.as_bytes()));
    match result {
        Err(e) => {
            let shown = e.to_string();
            // The message, not the field: a field is a JSON path of key names and indices.
            let mut checked = e.message.as_str();
            for cut in ["did you mean ", "write it as "] {
                if let Some(i) = checked.find(cut) {
                    checked = &checked[..i];
                }
            }
            for (key, v) in &values {
                if matches!(key.as_deref(), Some("secret_env" | "users_env")) {
                    continue;
                }
                if let Some(f) = repeats(checked, v, &keys) {
                    panic!("config error repeats a configured value {f:?} (of {key:?}): {shown}");
                }
            }
            // The environment's secrets and hashes, unless the input wrote them itself.
            if !from_input {
                common::assert_no_secret("ConfigError", shown.as_bytes());
                assert!(!shown.contains(HASH), "htpasswd hash in {shown}");
            }
        }
        Ok(policy) => {
            let debug = format!("{policy:?}");
            if !from_input {
                common::assert_no_secret("Policy Debug", debug.as_bytes());
                assert!(!debug.contains(HASH), "htpasswd hash in Policy Debug");
            }
            // A secret is only a secret where it is one: the same text elsewhere is shown.
            let elsewhere = |v: &str, k: &str| {
                values.iter().any(|(k2, v2)| {
                    k2.as_deref() != Some(k) && common::contains(v2.as_bytes(), v.as_bytes())
                })
            };
            for (key, v) in &values {
                match key.as_deref() {
                    Some("secret") if v.trim().len() >= 8 && !elsewhere(v.trim(), "secret") => {
                        assert!(!debug.contains(v.trim()), "inline secret in Policy Debug");
                        if let Some(bytes) = common::b64url_decode(v.trim().trim_end_matches('=')) {
                            let list = format!("{bytes:?}");
                            assert!(
                                !debug.contains(&list[1..list.len() - 1]),
                                "secret bytes in Debug"
                            );
                        }
                    }
                    Some("users") => {
                        for line in v.lines() {
                            if let Some((_, hash)) = line.split_once(':') {
                                let hash = hash.trim_end();
                                if hash.len() >= 8 && !elsewhere(hash, "users") {
                                    assert!(!debug.contains(hash), "htpasswd hash in Policy Debug");
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            let rank = |k: RuleKind| match k {
                RuleKind::Protect => 0,
                RuleKind::Api(_) => 1,
                RuleKind::Public => 2,
            };
            for w in policy.rules.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                let (sa, sb) = (a.prefix.specificity(), b.prefix.specificity());
                assert!(
                    sa > sb || (sa == sb && rank(a.kind) <= rank(b.kind)),
                    "rules out of order: {:?} before {:?}",
                    a,
                    b
                );
            }
        }
    }
});

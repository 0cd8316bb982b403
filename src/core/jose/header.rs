//! The JOSE header of a token others sign, read member by member: duplicates are an error,
//! `crit` is noted, `typ` and members devgate does not know are skipped (AWS ALB's header
//! carries `signer`, `client`, `iss`, `exp`; `signer` and `client` are kept).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// A member's value as devgate reads it: a string, or anything else.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Text {
    /// A JSON string.
    Str(String),
    /// Any other JSON value (number, bool, null, array, object).
    Other,
}

impl Text {
    /// The string, if it is one.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Text::Str(s) => Some(s),
            Text::Other => None,
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text::Str(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
                Ok(Text::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
                Ok(Text::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
                Ok(Text::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
                Ok(Text::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The members of a header devgate reads.
#[derive(Debug, Default)]
pub(super) struct Header {
    pub(super) alg: Option<Text>,
    pub(super) kid: Option<Text>,
    pub(super) signer: Option<Text>,
    pub(super) client: Option<Text>,
    pub(super) crit: bool,
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut header = Header::default();
        // Every member name seen: the header is at most a few KiB, so a list will do.
        let mut seen: Vec<String> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom("duplicate header parameter"));
            }
            let slot = match name.as_str() {
                "alg" => Some(&mut header.alg),
                "kid" => Some(&mut header.kid),
                "signer" => Some(&mut header.signer),
                "client" => Some(&mut header.client),
                _ => None,
            };
            match slot {
                Some(slot) => *slot = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                    header.crit |= name == "crit";
                }
            }
            seen.push(name);
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Option<Header> {
        serde_json::from_str(json).ok()
    }

    #[test]
    fn members_are_read_and_duplicates_refused() {
        let h =
            parse(r#"{"alg":"ES256","kid":"k","typ":7,"signer":"arn","x":[1,{"a":2}]}"#).unwrap();
        assert_eq!(h.alg, Some(Text::Str("ES256".into())));
        assert_eq!(h.kid.as_ref().and_then(Text::as_str), Some("k"));
        assert_eq!(h.signer.as_ref().and_then(Text::as_str), Some("arn"));
        assert!(h.client.is_none());
        assert!(!h.crit);
        assert!(parse(r#"{"alg":"ES256","crit":["b64"]}"#).unwrap().crit);
        assert_eq!(parse(r#"{"kid":5}"#).unwrap().kid, Some(Text::Other));
        for dup in [
            r#"{"alg":"ES256","alg":"ES256"}"#,
            r#"{"kid":"a","kid":"a"}"#,
            r#"{"typ":"JWT","typ":"JWT"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"crit":[],"crit":[]}"#,
        ] {
            assert!(parse(dup).is_none(), "{dup}");
        }
        assert!(parse("[]").is_none());
        assert!(parse(r#""alg""#).is_none());
    }
}

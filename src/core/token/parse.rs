//! Parsing: the strict JSON readers for the header and the claims (duplicates refused).

use super::*;

/// The JOSE header, read member by member: duplicates are errors, other members are noted.
#[derive(Default)]
pub(super) struct RawHeader {
    pub(super) alg: Option<JsonStr>,
    pub(super) typ: Option<JsonStr>,
    pub(super) kid: Option<JsonStr>,
    pub(super) crit: bool,
    pub(super) other: bool,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderVisitor)
    }
}

pub(super) struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut header = RawHeader::default();
        let mut seen: Vec<String> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom("duplicate header parameter"));
            }
            let slot = match name.as_str() {
                "alg" => Some(&mut header.alg),
                "typ" => Some(&mut header.typ),
                "kid" => Some(&mut header.kid),
                _ => None,
            };
            match slot {
                Some(slot) => *slot = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                    if name == "crit" {
                        header.crit = true;
                    } else {
                        header.other = true;
                    }
                }
            }
            seen.push(name);
        }
        Ok(header)
    }
}

/// A JSON value that is a string, or anything else (kept only as "not a string"; arrays and
/// objects are skipped without recursion).
pub(super) enum JsonStr {
    Str(String),
    Other,
}

impl JsonStr {
    pub(super) fn is(&self, want: &str) -> bool {
        matches!(self, JsonStr::Str(s) if s == want)
    }
}

impl<'de> Deserialize<'de> for JsonStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonStr, E> {
                Ok(JsonStr::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonStr, E> {
                Ok(JsonStr::Str(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<JsonStr, E> {
                Ok(JsonStr::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonStr, E> {
                Ok(JsonStr::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonStr, E> {
                Ok(JsonStr::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonStr, E> {
                Ok(JsonStr::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonStr, E> {
                Ok(JsonStr::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonStr, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonStr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonStr, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonStr::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The payload as it arrives. Optional claims may be absent but not `null`; duplicates of
/// these members are errors (serde's derive); other members are skipped.
#[derive(Deserialize)]
pub(super) struct RawClaims {
    pub(super) sub: String,
    pub(super) exp: u64,
    #[serde(default, deserialize_with = "present")]
    pub(super) nbf: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub(super) iat: Option<u64>,
    pub(super) dgp: String,
    #[serde(default, deserialize_with = "present")]
    pub(super) dgc: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) cip: Option<IpAddr>,
    #[serde(default, deserialize_with = "present")]
    pub(super) jti: Option<String>,
}

/// An optional member that, when present, must hold a `T` (so `null` is refused).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

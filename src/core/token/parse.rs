//! Parsing: the strict JSON readers for the header and the claims (duplicates refused).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{de, Deserialize};

/// The JOSE header, read member by member: duplicates are errors, other members are noted.
/// Its strings borrow from the decoded header where JSON lets them (no escape): reading a
/// token's header allocates nothing.
#[derive(Default)]
pub(super) struct RawHeader<'a> {
    pub(super) alg: Option<JsonStr<'a>>,
    pub(super) typ: Option<JsonStr<'a>>,
    pub(super) kid: Option<JsonStr<'a>>,
    pub(super) crit: bool,
    pub(super) other: bool,
}

impl<'de> Deserialize<'de> for RawHeader<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderVisitor)
    }
}

pub(super) struct HeaderVisitor;

/// A header member's name: the ones devgate reads by name, and any other (kept, to catch its
/// duplicates; only a token devgate refuses anyway has one).
#[derive(PartialEq, Eq)]
enum Member {
    Alg,
    Typ,
    Kid,
    Crit,
    Other(String),
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header parameter name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Member, E> {
                Ok(match v {
                    "alg" => Member::Alg,
                    "typ" => Member::Typ,
                    "kid" => Member::Kid,
                    "crit" => Member::Crit,
                    other => Member::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = RawHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader<'de>, A::Error> {
        let mut header = RawHeader::default();
        // The known members seen so far (`alg`, `typ`, `kid`, `crit`), then any others.
        let mut seen = [false; 4];
        let mut others: Vec<String> = Vec::new();
        while let Some(member) = map.next_key::<Member>()? {
            let (index, slot) = match &member {
                Member::Alg => (0, Some(&mut header.alg)),
                Member::Typ => (1, Some(&mut header.typ)),
                Member::Kid => (2, Some(&mut header.kid)),
                Member::Crit => (3, None),
                Member::Other(_) => (4, None),
            };
            let duplicate = match (seen.get_mut(index), member) {
                (Some(seen), _) => std::mem::replace(seen, true),
                (None, Member::Other(name)) => {
                    let again = others.contains(&name);
                    others.push(name);
                    again
                }
                (None, _) => false,
            };
            if duplicate {
                return Err(de::Error::custom("duplicate header parameter"));
            }
            match slot {
                Some(slot) => *slot = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                    if index == 3 {
                        header.crit = true;
                    } else {
                        header.other = true;
                    }
                }
            }
        }
        Ok(header)
    }
}

/// A JSON value that is a string, or anything else (kept only as "not a string"; arrays and
/// objects are skipped without recursion). The string borrows from the input unless JSON
/// escapes made it differ.
pub(super) enum JsonStr<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl JsonStr<'_> {
    pub(super) fn is(&self, want: &str) -> bool {
        matches!(self, JsonStr::Str(s) if s == want)
    }
}

impl<'de> Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<JsonStr<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonStr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonStr<'de>, A::Error> {
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
pub(super) struct RawClaims<'a> {
    pub(super) sub: String,
    pub(super) exp: u64,
    #[serde(default, deserialize_with = "present")]
    pub(super) nbf: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub(super) iat: Option<u64>,
    /// Borrowed from the payload unless escaped: only compared.
    #[serde(borrow)]
    pub(super) dgp: Cow<'a, str>,
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

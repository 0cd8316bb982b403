//! The revocation list: revoked API key ids and token ids (`jti`), fetched from a configured
//! Envoy cluster and shared by every worker. Pure: parsing, the stored form, and freshness.
//!
//! # Format
//!
//! The service answers `200` with a JSON object, `{"keys": ["<key id>", ...], "tokens": ["<jti>",
//! ...]}`; both fields optional, nothing else allowed. At most [`MAX_LIST_BYTES`] bytes and
//! [`MAX_ENTRIES`] ids. Anything else (another status, a body that does not parse, too big) is a
//! failed fetch: the last good list stays in force, a malformed one never replaces it.
//!
//! # Staleness
//!
//! A list is fresh for `max_stale_seconds` after the fetch that produced it. Past that (or before
//! any fetch succeeded since the filter started), devgate is *degraded*: per `when_stale`, the
//! credentials that need the list (developer tokens, API keys) are refused (`revocation_stale`,
//! the default), or served against the last good list.

use std::collections::HashSet;

use serde::Deserialize;

/// Largest list body accepted.
pub const MAX_LIST_BYTES: usize = 1024 * 1024;
/// Most ids in one list (keys and tokens together).
pub const MAX_ENTRIES: usize = 100_000;

/// A parsed revocation list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationList {
    pub keys: HashSet<String>,
    pub tokens: HashSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    tokens: Vec<String>,
}

/// Why a fetched list was not taken. Codes are stable (logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    TooLarge,
    Malformed,
    TooManyEntries,
}

impl ListError {
    pub fn code(self) -> &'static str {
        match self {
            ListError::TooLarge => "list_too_large",
            ListError::Malformed => "list_malformed",
            ListError::TooManyEntries => "list_too_many_entries",
        }
    }
}

/// Parses a list body. Never panics.
pub fn parse_list(body: &[u8]) -> Result<RevocationList, ListError> {
    if body.len() > MAX_LIST_BYTES {
        return Err(ListError::TooLarge);
    }
    // An object, not serde's other spelling of a struct (a JSON array of its fields).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ListError::Malformed);
    }
    let raw: RawList = serde_json::from_slice(body).map_err(|_| ListError::Malformed)?;
    if raw.keys.len().saturating_add(raw.tokens.len()) > MAX_ENTRIES {
        return Err(ListError::TooManyEntries);
    }
    let ok = |id: &String| !id.is_empty() && id.len() <= 128;
    if !raw.keys.iter().all(ok) || !raw.tokens.iter().all(ok) {
        return Err(ListError::Malformed);
    }
    Ok(RevocationList {
        keys: raw.keys.into_iter().collect(),
        tokens: raw.tokens.into_iter().collect(),
    })
}

/// The form kept in shared data: the fetch time in seconds, a newline, the body as fetched.
pub fn encode_stored(fetched_at: u64, body: &[u8]) -> Vec<u8> {
    let mut out = fetched_at.to_string().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Reads [`encode_stored`]: the fetch time and the list, or `None` for anything else.
pub fn decode_stored(stored: &[u8]) -> Option<(u64, RevocationList)> {
    let newline = stored.iter().position(|&b| b == b'\n')?;
    let (time, rest) = stored.split_at(newline);
    let fetched_at = std::str::from_utf8(time).ok()?.parse().ok()?;
    let list = parse_list(rest.get(1..)?).ok()?;
    Some((fetched_at, list))
}

/// What the decision sees of the list.
#[derive(Clone, Copy, Debug)]
pub struct Revocation<'a> {
    /// The last good list, if any fetch ever succeeded.
    pub list: Option<&'a RevocationList>,
    /// Past `max_stale_seconds` (or never fetched) and configured to refuse then.
    pub refuse: bool,
}

impl Revocation<'_> {
    /// Whether a token id is revoked.
    pub fn token_revoked(&self, jti: Option<&str>) -> bool {
        match (self.list, jti) {
            (Some(list), Some(jti)) => list.tokens.contains(jti),
            _ => false,
        }
    }

    /// Whether an API key id is revoked.
    pub fn key_revoked(&self, id: &str) -> bool {
        self.list.is_some_and(|l| l.keys.contains(id))
    }
}

/// Whether a list fetched at `fetched_at` (`None`: never) is stale at `now`.
pub fn is_stale(fetched_at: Option<u64>, now: u64, max_stale: u64) -> bool {
    match fetched_at {
        None => true,
        Some(t) => now.saturating_sub(t) > max_stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_strictly() {
        let l = parse_list(br#"{"keys": ["k-1"], "tokens": ["t-1", "t-2"]}"#).unwrap();
        assert!(l.keys.contains("k-1") && l.tokens.contains("t-2"));
        assert_eq!(parse_list(b"{}").unwrap(), RevocationList::default());
        for bad in [
            &b""[..],
            b"[]",
            b"{\"keys\": [1]}",
            b"{\"keys\": [\"\"]}",
            b"{\"other\": []}",
            b"{\"keys\": []",
            b"\xff",
        ] {
            assert_eq!(parse_list(bad), Err(ListError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_list(&vec![b' '; MAX_LIST_BYTES + 1]),
            Err(ListError::TooLarge)
        );
    }

    #[test]
    fn stored_form_round_trips_and_refuses_garbage() {
        let stored = encode_stored(1_700_000_000, br#"{"tokens": ["t"]}"#);
        let (at, list) = decode_stored(&stored).unwrap();
        assert_eq!(at, 1_700_000_000);
        assert!(list.tokens.contains("t"));
        for bad in [&b""[..], b"x\n{}", b"12", b"12\n{", b"\n{}"] {
            assert!(decode_stored(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn staleness() {
        assert!(is_stale(None, 10, 100));
        assert!(!is_stale(Some(10), 110, 100));
        assert!(is_stale(Some(10), 111, 100));
        // A clock that stepped back is not stale.
        assert!(!is_stale(Some(200), 100, 100));
    }
}

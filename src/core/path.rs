//! The path devgate matches rules against.
//!
//! Upstream applications and frameworks disagree about what a path means: some decode `%5F`,
//! some strip `;jsessionid=...` from segments, some treat `\` as `/`, most resolve `..`. devgate
//! does not rely on Envoy's normalization being switched on: it computes its own canonical
//! form, the most "resolved" reading any common upstream could make, and matches rules on it.
//! Anything that would need a second interpretation is refused with 400:
//!
//! 1. The query (`?`) and fragment (`#`) are cut off.
//! 2. The path must start with `/` (origin form); anything else is refused.
//! 3. Percent escapes are decoded once. A malformed escape, an encoded NUL, or an escape that
//!    is still there after decoding (double encoding, `%255F`) is refused.
//!    The decoded path must be UTF-8 without control characters (overlong `%c0%af`, `%0a`,
//!    `%09` are refused).
//! 4. `\` counts as `/`.
//! 5. Each segment loses its `;parameters` (as Tomcat and Spring do) and its trailing dots and
//!    spaces (as Windows and IIS do: `/_debug./` is `/_debug/` there).
//! 6. Empty segments (`//`) and `.` are dropped, `..` removes the segment before it (never
//!    above the root).
//! 7. A decoded `%`, `?` or `#` is written back as `%25`, `%3F`, `%23`, so that the canonical
//!    form reads as the same path again: the canonical form of a canonical path is itself.
//!
//! The canonical path is only used for matching; the request goes upstream unchanged.

use std::borrow::Cow;

use super::query::hex_digit;

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// No `:path`, or not starting with `/`.
    NotOriginForm,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%00`.
    EncodedNul,
    /// An escape that survives one round of decoding.
    DoubleEncoded,
    /// After decoding: not UTF-8, or a control character.
    BadBytes,
}

/// Longest path devgate will look at; Envoy's default header limit is far above typical paths but
/// this keeps the work per request bounded whatever the listener allows.
pub const MAX_PATH_LEN: usize = 16 * 1024;

fn is_escape_at(bytes: &[u8], i: usize) -> bool {
    matches!(
        (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)),
        (Some(b'%'), Some(a), Some(b)) if hex_digit(*a).is_some() && hex_digit(*b).is_some()
    )
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut iter = raw.iter().copied();
    while let Some(b) = iter.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = iter
            .next()
            .and_then(hex_digit)
            .ok_or(PathError::BadEscape)?;
        let lo = iter
            .next()
            .and_then(hex_digit)
            .ok_or(PathError::BadEscape)?;
        let byte = (hi << 4) | lo;
        if byte == 0 {
            return Err(PathError::EncodedNul);
        }
        out.push(byte);
    }
    if (0..out.len()).any(|i| is_escape_at(&out, i)) {
        return Err(PathError::DoubleEncoded);
    }
    match std::str::from_utf8(&out) {
        Ok(text) if !text.chars().any(char::is_control) => Ok(out),
        _ => Err(PathError::BadBytes),
    }
}

/// Appends a decoded segment, escaping the three bytes that would read differently in a path
/// (a bare `%` starts an escape, `?` and `#` end the path); each came from a three-byte escape,
/// so the canonical form is never longer than the input.
fn push_segment(out: &mut Vec<u8>, seg: &[u8]) {
    for &b in seg {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'?' => out.extend_from_slice(b"%3F"),
            b'#' => out.extend_from_slice(b"%23"),
            _ => out.push(b),
        }
    }
}

/// [`canonicalize`], borrowing the raw path when it is canonical already (the common case:
/// then no copy is made). A path is taken as it is only when canonicalising could not change
/// it: `/`-separated segments of letters, digits, `-`, `_`, `~` and `.` (never a segment's last
/// byte, which rules out `.`, `..` and trailing dots), no empty segment but a final one (the
/// trailing slash), and no query or fragment. Anything else goes through [`canonicalize`].
pub fn canonical(raw: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    if is_canonical(raw) {
        Ok(Cow::Borrowed(raw))
    } else {
        canonicalize(raw).map(Cow::Owned)
    }
}

fn is_canonical(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"/") else {
        return false;
    };
    if rest.is_empty() {
        return raw.len() <= MAX_PATH_LEN;
    }
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let ok = match seg.last() {
            // Only the final segment may be empty (the trailing slash), and only after another.
            None => last,
            Some(&end) => {
                end != b'.'
                    && seg.iter().all(|&b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b'.')
                    })
            }
        };
        if !ok {
            return false;
        }
    }
    raw.len() <= MAX_PATH_LEN
}

/// The canonical path of a raw `:path` value (bytes as the client sent them).
pub fn canonicalize(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::NotOriginForm);
    }
    let end = raw
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(raw.len());
    let path = raw.get(..end).unwrap_or_default();
    if path.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = percent_decode(path)?;
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded.split(|&b| b == b'/' || b == b'\\') {
        let seg = match seg.iter().position(|&b| b == b';') {
            Some(i) => seg.get(..i).unwrap_or_default(),
            None => seg,
        };
        let seg = match seg {
            b"." | b".." => seg,
            s => {
                let keep = s.len()
                    - s.iter()
                        .rev()
                        .take_while(|&&b| b == b'.' || b == b' ')
                        .count();
                s.get(..keep).unwrap_or_default()
            }
        };
        trailing_slash = true;
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push(b'/');
        push_segment(&mut out, s);
    }
    if trailing_slash || segments.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// A rule's path prefix, matched segment by segment: `/_debug/` and `/_debug` both match
/// `/_debug`, `/_debug/` and `/_debug/x`, and neither matches `/_debugger`. `/` matches all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// Canonical, without the trailing slash (empty for `/`).
    stem: Vec<u8>,
}

impl Prefix {
    /// A prefix from config. It must already be canonical (so what the operator wrote is what
    /// is matched); returns the canonical form it should have been otherwise.
    pub fn parse(text: &str) -> Result<Prefix, String> {
        let canon = canonicalize(text.as_bytes()).map_err(|e| match e {
            PathError::NotOriginForm => "must be a path starting with '/'".to_string(),
            _ => "must not contain percent escapes".to_string(),
        })?;
        let given = text.as_bytes();
        let given_trimmed = given.strip_suffix(b"/").unwrap_or(given);
        let canon_trimmed = canon.strip_suffix(b"/").unwrap_or(&canon);
        if given_trimmed != canon_trimmed || text.contains(['?', '#']) {
            return Err(format!(
                "not a canonical path; write it as {:?}",
                String::from_utf8_lossy(&canon)
            ));
        }
        Ok(Prefix {
            stem: canon_trimmed.to_vec(),
        })
    }

    /// Length used to pick the most specific rule.
    pub fn specificity(&self) -> usize {
        self.stem.len()
    }

    /// Matches a canonical path. `fold_case` makes ASCII letters compare case-insensitively.
    pub fn matches(&self, canonical: &[u8], fold_case: bool) -> bool {
        let Some(head) = canonical.get(..self.stem.len()) else {
            return false;
        };
        let same = if fold_case {
            head.eq_ignore_ascii_case(&self.stem)
        } else {
            head == self.stem.as_slice()
        };
        same && matches!(canonical.get(self.stem.len()), None | Some(b'/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn already_canonical_paths_are_borrowed_and_read_as_canonicalize_reads_them() {
        for raw in [
            "/",
            "/a",
            "/a/",
            "/_debug/",
            "/_debug/vars",
            "/a.b/c-d_e~f",
            "/v1/x.json",
            "/a.",
            "/a/.",
            "/a/..",
            "/a/../b",
            "//",
            "//a",
            "/a//b",
            "/a/./b",
            "/a..",
            "/a%2Fb",
            "/a;x",
            "/a\\b",
            "/a?q=1",
            "/a#f",
            "/a b",
            "/.x",
            "/x./",
            "a",
            "",
            "/a/b/../../..",
            "/%2e%2e/",
            "/A/B",
            "/a~/",
            "/a/b/",
        ] {
            let full = canonicalize(raw.as_bytes());
            let fast = canonical(raw.as_bytes());
            assert_eq!(
                fast.as_deref().map_err(|e| *e),
                full.as_deref().map_err(|e| *e),
                "{raw:?}"
            );
            if let Ok(Cow::Borrowed(b)) = fast {
                assert_eq!(b, raw.as_bytes(), "{raw:?}");
            }
        }
        assert!(matches!(canonical(b"/_debug/vars"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonical(b"/a/../b"), Ok(Cow::Owned(_))));
        let long = [b"/".as_slice(), &vec![b'a'; MAX_PATH_LEN]].concat();
        assert!(canonical(&long).is_err());
    }

    fn canon(s: &str) -> Result<String, PathError> {
        canonicalize(s.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn path_tricks_resolve_to_the_protected_path() {
        for trick in [
            "/_debug/",
            "/%5Fdebug/",
            "/%5fdebug/",
            "//_debug/",
            "/_debug//",
            "/x/../_debug/",
            "/./_debug/",
            "/_debug;a=b/",
            "/_debug/?q=1",
            "/_debug/#frag",
            "/healthz/../_debug/",
            "/\\_debug/",
            "/_debug/.",
            "/x/..;/_debug/",
            "/%2e%2e/_debug/",
            "/x/%2e%2e/_debug/",
            "/x%2f..%2f_debug/",
        ] {
            assert_eq!(canon(trick).as_deref(), Ok("/_debug/"), "{trick}");
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("/").as_deref(), Ok("/"));
        assert_eq!(canon("/..").as_deref(), Ok("/"));
        assert_eq!(canon("/../../etc").as_deref(), Ok("/etc"));
        assert_eq!(canon("/a/b").as_deref(), Ok("/a/b"));
        assert_eq!(canon("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(canon("/?x").as_deref(), Ok("/"));
    }

    #[test]
    fn canonical_form_of_escaped_percent_question_mark_and_hash_is_canonical() {
        // Found by fuzzing (fuzz/fuzz_targets/path.rs, idempotence): `/100%25` used to
        // canonicalize to `/100%`, a bad escape when read again, and `/a%3Fb` to `/a?b`, which
        // reads as `/a`; a config prefix could then never be written for such a path.
        for (raw, want) in [
            ("/100%25", "/100%25"),
            ("/a%3Fb", "/a%3Fb"),
            ("/a%3fb/", "/a%3Fb/"),
            ("/a%23b", "/a%23b"),
            ("/%25/x", "/%25/x"),
            ("/_debug%3F/x", "/_debug%3F/x"),
        ] {
            assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
            assert_eq!(canon(want).as_deref(), Ok(want), "{want} is not canonical");
        }
        let p = Prefix::parse("/100%25").unwrap();
        assert!(p.matches(canonicalize(b"/100%25/x").unwrap().as_slice(), false));
        assert!(!Prefix::parse("/_debug")
            .unwrap()
            .matches(b"/_debug%3F/x", true));
    }

    #[test]
    fn refused_paths() {
        assert_eq!(canon(""), Err(PathError::NotOriginForm));
        assert_eq!(canon("*"), Err(PathError::NotOriginForm));
        assert_eq!(canon("http://h/_debug/"), Err(PathError::NotOriginForm));
        assert_eq!(canon("?/_debug/"), Err(PathError::NotOriginForm));
        assert_eq!(canon("/%"), Err(PathError::BadEscape));
        assert_eq!(canon("/%5"), Err(PathError::BadEscape));
        assert_eq!(canon("/%zz"), Err(PathError::BadEscape));
        assert_eq!(canon("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(canon("/%255Fdebug/"), Err(PathError::DoubleEncoded));
        assert_eq!(canon("/%25%35%46debug/"), Err(PathError::DoubleEncoded));
        assert!(canonicalize(&vec![b'/'; MAX_PATH_LEN + 1]).is_err());
    }

    #[test]
    fn undecodable_or_control_bytes_are_refused() {
        for bad in [
            &b"/\xff/../_debug/"[..],
            b"/%ff",
            b"/%c0%af_debug/",
            b"/_debug%0a/",
            b"/_debug%09/",
            b"/_debug%7f/",
            b"/a\x01b",
        ] {
            assert_eq!(canonicalize(bad), Err(PathError::BadBytes), "{bad:?}");
        }
        assert_eq!(canon("/caf%C3%A9/").as_deref(), Ok("/café/"));
    }

    #[test]
    fn trailing_dots_and_spaces_fold_like_windows() {
        assert_eq!(canon("/_debug./").as_deref(), Ok("/_debug/"));
        assert_eq!(canon("/_debug%2e/").as_deref(), Ok("/_debug/"));
        assert_eq!(canon("/_debug%20/x").as_deref(), Ok("/_debug/x"));
        assert_eq!(canon("/_debug.../x").as_deref(), Ok("/_debug/x"));
        assert_eq!(canon("/.../x").as_deref(), Ok("/x"));
        assert_eq!(canon("/a.b/").as_deref(), Ok("/a.b/"));
    }

    #[test]
    fn prefixes_are_segment_aware() {
        let p = Prefix::parse("/_debug/").unwrap();
        assert_eq!(p, Prefix::parse("/_debug").unwrap());
        assert!(p.matches(b"/_debug", false));
        assert!(p.matches(b"/_debug/", false));
        assert!(p.matches(b"/_debug/x/y", false));
        assert!(!p.matches(b"/_debugger", false));
        assert!(!p.matches(b"/_DEBUG/", false));
        assert!(p.matches(b"/_DEBUG/", true));
        assert!(!p.matches(b"/", true));
        let root = Prefix::parse("/").unwrap();
        assert!(root.matches(b"/", false));
        assert!(root.matches(b"/anything", false));
    }

    #[test]
    fn config_prefixes_must_be_canonical() {
        assert!(Prefix::parse("_debug").is_err());
        assert!(Prefix::parse("").is_err());
        assert!(Prefix::parse("/a/../b").is_err());
        assert!(Prefix::parse("//a").is_err());
        assert!(Prefix::parse("/%5Fdebug").is_err());
        assert!(Prefix::parse("/a?b").is_err());
        assert!(Prefix::parse("/a;b").is_err());
        assert!(Prefix::parse("/a/b/").is_ok());
    }
}

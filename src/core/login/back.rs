//! The redirect target: only ever a same-origin path.

use crate::core::query;

use super::MAX_BACK;

/// The path part (before `?` or `#`) is normalised: no empty segment but a trailing one, no
/// `.` or `..` segment. Expects a leading `/`.
pub(super) fn is_normal_path(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/") else {
        return false;
    };
    let segments: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let last = segments.len().saturating_sub(1);
    segments.iter().enumerate().all(|(i, s)| {
        let empty_inside = s.is_empty() && i != last;
        !empty_inside && *s != b"." && *s != b".."
    })
}

pub(super) fn split_path(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(b.len());
    b.get(..end).unwrap_or_default()
}

/// The checks on `back` as written.
pub(super) fn is_safe_raw(b: &[u8]) -> bool {
    (1..=MAX_BACK).contains(&b.len())
        && b.iter().all(|c| (0x21..=0x7e).contains(c))
        && !b.contains(&b'\\')
        && b.starts_with(b"/")
        && !b.starts_with(b"//")
        && is_normal_path(split_path(b))
}

/// The checks on `back` percent-decoded once: what a server that decodes before redirecting
/// again would see.
pub(super) fn is_safe_decoded(raw: &[u8]) -> bool {
    let all = query::decode(raw);
    let path = query::decode(split_path(raw));
    !all.iter().any(|&c| c < 0x20 || c == 0x7f || c == b'\\')
        && !path.starts_with(b"//")
        && is_normal_path(&path)
}

/// `back` if it is a same-origin path to send the browser to after the login, else `/`.
///
/// Accepted: 1 to [`MAX_BACK`] bytes of visible ASCII (no space, no control character, no
/// non-ASCII: the value a browser was at is percent-encoded), starting with exactly one `/`
/// (so no scheme, no `//host`), no `\` anywhere (browsers read `\` as `/`), and a normalised
/// path part (no `//` and no `.`/`..` segments before any `?` or `#`). The same holds after
/// percent-decoding once, so `/%2F%2Fevil.com`, `/%5Cevil`, `/%2e%2e/` and `/%09/evil` are
/// refused too. The query and fragment may hold anything else.
pub fn safe_back(back: &str) -> String {
    let b = back.as_bytes();
    if is_safe_raw(b) && is_safe_decoded(b) {
        back.to_string()
    } else {
        "/".to_string()
    }
}

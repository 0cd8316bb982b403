//! Path canonicalization (src/core/path.rs) and prefix matching.
//!
//! Invariants:
//! * never panics;
//! * an accepted path's canonical form starts with `/`, is at most as long as the input, has
//!   no empty, `.` or `..` segment, no `\`, no `;`, no segment ending in `.` or space, and no
//!   control character;
//! * **idempotence**: the canonical form of a canonical path is itself (matching never depends
//!   on how many times something was normalised);
//! * the canonical form does not depend on the query or fragment;
//! * a prefix accepted by `Prefix::parse` matches its own path and everything below it, and
//!   nothing that merely starts with the same characters (`/_debug` vs `/_debugger`);
//!   case folding only widens a match.
#![no_main]

use devgate::core::path::{canonicalize, Prefix, MAX_PATH_LEN};
use libfuzzer_sys::fuzz_target;

fn check_canonical(raw: &[u8]) {
    let Ok(c) = canonicalize(raw) else {
        return;
    };
    assert_eq!(c.first(), Some(&b'/'));
    assert!(
        c.len() <= raw.len().max(1),
        "canonical form longer than the input"
    );
    assert!(!c.contains(&b'\\') && !c.contains(&b';'));
    let text = std::str::from_utf8(&c).expect("canonical is UTF-8");
    assert!(!text.chars().any(char::is_control), "{text:?}");
    let inner = text.strip_suffix('/').unwrap_or(text);
    if !inner.is_empty() {
        for seg in inner[1..].split('/') {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "segment {seg:?} in {text:?}"
            );
            assert!(
                !seg.ends_with('.') && !seg.ends_with(' '),
                "segment {seg:?} in {text:?}"
            );
        }
    }
    assert_eq!(
        canonicalize(&c).as_deref(),
        Ok(&c[..]),
        "not idempotent: {:?} -> {text:?}",
        String::from_utf8_lossy(raw)
    );
    let mut with_query = raw.to_vec();
    if !raw.contains(&b'?') && !raw.contains(&b'#') && raw.len() + 12 <= MAX_PATH_LEN {
        with_query.extend_from_slice(b"?a=%zz#/../x");
        assert_eq!(canonicalize(&with_query), Ok(c.clone()));
    }
}

fn check_prefix(text: &str, path: &[u8]) {
    let Ok(p) = Prefix::parse(text) else {
        return;
    };
    let own = canonicalize(text.as_bytes()).expect("a prefix is a path");
    assert!(p.matches(&own, false), "{text:?} does not match itself");
    let stem = own.strip_suffix(b"/").unwrap_or(&own);
    let mut below = stem.to_vec();
    below.extend_from_slice(b"/x");
    assert!(
        p.matches(&below, false),
        "{text:?} does not match below itself"
    );
    let mut longer = stem.to_vec();
    longer.extend_from_slice(b"x");
    assert!(
        !p.matches(&longer, false) && !p.matches(&longer, true),
        "{text:?} matches {longer:?}"
    );
    if let Ok(c) = canonicalize(path) {
        let exact = p.matches(&c, false);
        let folded = p.matches(&c, true);
        assert!(!exact || folded, "case folding narrowed a match");
        if exact {
            assert!(c.starts_with(stem));
            assert!(matches!(c.get(stem.len()), None | Some(b'/')));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_canonical(data);
    let mut parts = data.splitn(2, |&b| b == b'\n');
    let (first, rest) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    check_canonical(rest);
    if let Ok(prefix) = std::str::from_utf8(first) {
        check_prefix(prefix, rest);
    }
});

//! `Cookie` parsing (src/core/cookie.rs): `find_cookie`, `cookie_pairs`, `scrub`, and
//! the `Set-Cookie` builders.
//!
//! Input: line 1 is the cookie name to look up, every further line one `Cookie` header value.
//! The same bytes also drive `set_cookie`/`clear_cookie` attributes through `arbitrary`.
//!
//! Invariants: never panics; `find_cookie` agrees with the pairs `cookie_pairs` yields
//! (NotFound / Found(the one value) / Ambiguous, TooLarge only past the cap); a scrubbed header
//! has exactly the other `;`/`,`-separated parts, in order, no spelling of the name left (so no
//! copy `find_cookie` finds), and scrubbing again changes nothing; a built `Set-Cookie` is one header line of visible ASCII whose first
//! pair reads back as (name, value).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use devgate::core::cookie::{
    clear_cookie, cookie_pairs, find_cookie, is_valid_cookie_name, is_valid_cookie_value,
    is_spelling, scrub, set_cookie, CookieAttrs, CookieLookup, SameSite, MAX_COOKIE_BYTES,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Attrs {
    path: String,
    max_age: Option<u64>,
    secure: bool,
    http_only: bool,
    same_site: u8,
}

fn check_lookup(headers: &[&[u8]], name: &str) {
    let got = find_cookie(headers.iter().copied(), name);
    let total: usize = headers.iter().map(|h| h.len()).sum();
    let values: Vec<&[u8]> = headers
        .iter()
        .flat_map(|h| cookie_pairs(h))
        .filter(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| v)
        .collect();
    let distinct = {
        let mut d = values.clone();
        d.sort();
        d.dedup();
        d
    };
    if total <= MAX_COOKIE_BYTES {
        let want = if name.is_empty() || distinct.is_empty() {
            CookieLookup::NotFound
        } else if distinct.len() == 1 {
            CookieLookup::Found(distinct[0])
        } else {
            CookieLookup::Ambiguous
        };
        assert_eq!(got, want, "find_cookie({name:?})");
    } else {
        // Past the cap: never a partial answer (an ambiguity seen before the cap may win).
        assert!(
            matches!(got, CookieLookup::TooLarge | CookieLookup::Ambiguous),
            "{got:?} past the cap"
        );
    }
}

fn check_pairs(header: &[u8]) {
    for (n, v) in cookie_pairs(header) {
        assert!(!n.contains(&b';') && !v.contains(&b';'));
        assert!(
            !matches!(n.first(), Some(b' ' | b'\t')) && !matches!(n.last(), Some(b' ' | b'\t')),
            "untrimmed name {n:?}"
        );
        assert!(!n.contains(&b'='), "name with '=' {n:?}");
    }
}

/// `p` without the whitespace an upstream's cookie parser may skip: SP, HTAB, LF, VT, FF, CR
/// (C's `isspace`, Python's `\s`), written out here independently of the code under test.
fn trim_space(p: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = p.iter().position(|b| !space(b)).unwrap_or(p.len());
    let end = p.iter().rposition(|b| !space(b)).map_or(start, |i| i + 1);
    &p[start..end]
}

/// The trimmed, non-empty `;`/`,`-separated parts of a header value.
fn parts(header: &[u8]) -> Vec<&[u8]> {
    header
        .split(|&b| b == b';' || b == b',')
        .map(|p| trim_space(p))
        .filter(|p| !p.is_empty())
        .collect()
}

fn check_strip(header: &[u8], name: &str) {
    let ours = |p: &&[u8]| {
        let mut it = p.splitn(2, |&b| b == b'=');
        matches!((it.next(), it.next()), (Some(n), Some(_)) if !name.is_empty() && is_spelling(n, name))
    };
    let before = parts(header);
    match scrub(header, &[name]) {
        None => assert!(
            !before.iter().any(ours),
            "scrub left a spelling of {name:?} in place"
        ),
        Some(out) => {
            assert!(!name.is_empty());
            let want: Vec<&[u8]> = before.iter().copied().filter(|p| !ours(p)).collect();
            assert_eq!(parts(&out), want, "scrub changed other cookies");
            assert_eq!(scrub(&out, &[name]), None, "a second scrub removed more");
            assert_eq!(find_cookie([&out[..]], name), CookieLookup::NotFound);
            let separators = header.iter().filter(|&&b| b == b';' || b == b',').count();
            assert!(
                out.len() <= header.len() + separators,
                "scrub grew the header"
            );
        }
    }
}

fn check_set_cookie(name: &str, value: &str, a: &Attrs) {
    let attrs = CookieAttrs {
        path: &a.path,
        max_age: a.max_age,
        secure: a.secure,
        http_only: a.http_only,
        same_site: match a.same_site % 3 {
            0 => SameSite::Strict,
            1 => SameSite::Lax,
            _ => SameSite::None,
        },
    };
    let visible = |s: &str| s.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if let Ok(out) = set_cookie(name, value, &attrs) {
        assert!(is_valid_cookie_name(name) && is_valid_cookie_value(value.as_bytes()));
        assert!(
            visible(&out),
            "Set-Cookie with a control or non-ASCII byte: {out:?}"
        );
        assert_eq!(
            cookie_pairs(out.as_bytes()).next(),
            Some((name.as_bytes(), value.as_bytes())),
            "{out:?}"
        );
        if attrs.same_site == SameSite::None {
            assert!(attrs.secure);
        }
    }
    if let Ok(out) = clear_cookie(name, &attrs) {
        assert!(visible(&out), "{out:?}");
        assert_eq!(
            cookie_pairs(out.as_bytes()).next(),
            Some((name.as_bytes(), &b""[..]))
        );
        assert!(out.contains("; Max-Age=0"));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let name = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let headers: Vec<&[u8]> = lines.collect();
    check_lookup(&headers, &name);
    for h in &headers {
        check_pairs(h);
        check_strip(h, &name);
    }
    if let Ok(attrs) = Attrs::arbitrary(&mut Unstructured::new(data)) {
        let value = String::from_utf8_lossy(headers.first().copied().unwrap_or_default());
        check_set_cookie(&name, &value, &attrs);
    }
});

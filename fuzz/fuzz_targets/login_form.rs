//! The login form's pure half (src/core/login.rs): `parse_form`, `safe_back` and what is built
//! from it (`login_page`, `redirect`), `same_origin`, and the rate-limit record.
//!
//! Invariants:
//! * never panics;
//! * `parse_form`: fields within `MAX_FIELD`; a form re-encoded from what was parsed parses
//!   to the same form; `Debug` of a form never shows the password;
//! * **`safe_back` never returns an off-site target**: it returns `/` or its input unchanged,
//!   and what it returns is a single-slash, visible-ASCII, backslash-free path whose path part
//!   has no `//`, `.` or `..` segment, before and after one percent-decoding, so no browser
//!   resolves it to another host;
//! * `back` cannot inject markup: the login page has exactly the tags and quotes of the page
//!   built for `/`; `redirect`'s `Location` is `safe_back` of its input;
//! * `same_origin` is true only for an `https://` URL on an https site and an `http://` one
//!   on a plain site, without userinfo;
//! * the rate-limit record round-trips through its bytes, and a limited verdict waits
//!   between 1 second and the window.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use devgate::core::login::{
    check, login_page, parse_form, rate_key, record_failure, redirect, safe_back, same_origin,
    Attempts, Verdict, MAX_BACK, MAX_BODY, MAX_FIELD, RATE_KEY_PREFIX,
};
use devgate::core::query;
use libfuzzer_sys::fuzz_target;

fn form_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_form(body: &[u8]) {
    let Ok(form) = parse_form(body) else {
        return;
    };
    assert!(form.username.len() <= MAX_FIELD && form.password.len() <= MAX_FIELD);
    assert!(form.back.as_ref().is_none_or(|b| b.len() <= MAX_FIELD));
    let mut again = format!(
        "username={}&password={}",
        form_encode(form.username.as_bytes()),
        form_encode(&form.password)
    );
    if let Some(b) = &form.back {
        again.push_str(&format!("&back={}", form_encode(b.as_bytes())));
    }
    if again.len() <= MAX_BODY {
        let reparsed = parse_form(again.as_bytes()).expect("a re-encoded form parses");
        assert_eq!(reparsed, form);
    }
    let debug = format!("{form:?}");
    let pw = String::from_utf8_lossy(&form.password);
    if pw.len() >= 8
        && !form.username.contains(pw.as_ref())
        && !form.back.as_deref().unwrap_or("").contains(pw.as_ref())
    {
        assert!(!debug.contains(pw.as_ref()), "password in Debug");
    }
}

/// How many of each markup character a page has.
fn shape(body: &str) -> [usize; 4] {
    ['<', '>', '"', '\''].map(|c| body.matches(c).count())
}

/// The shape of the login page for `back` = `/`, computed once per variant.
fn baseline(mount: &'static str, error: bool) -> [usize; 4] {
    static B: OnceLock<Vec<(&'static str, bool, [usize; 4])>> = OnceLock::new();
    let all = B.get_or_init(|| {
        [("/.devgate", false), ("/m", false), ("/m", true)]
            .map(|(m, e)| (m, e, shape(&login_page(m, "/", e).body)))
            .to_vec()
    });
    all.iter()
        .find(|(m, e, _)| *m == mount && *e == error)
        .map(|(_, _, s)| *s)
        .expect("a baseline")
}

/// A path part that a browser or a normalising server could read as `//host` or walk out of.
fn normal(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/") else {
        return false;
    };
    let segs: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    segs.iter()
        .enumerate()
        .all(|(i, s)| (!s.is_empty() || i + 1 == segs.len()) && *s != b"." && *s != b"..")
}

fn path_part(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(b.len());
    &b[..end]
}

fn check_back(back: &str) {
    let out = safe_back(back);
    assert!(
        out == "/" || out == back,
        "safe_back rewrote {back:?} to {out:?}"
    );
    let b = out.as_bytes();
    assert!(!b.is_empty() && b.len() <= MAX_BACK);
    assert!(b.iter().all(|c| (0x21..=0x7e).contains(c)), "{out:?}");
    assert!(
        b[0] == b'/' && b.get(1) != Some(&b'/') && !b.contains(&b'\\'),
        "{out:?}"
    );
    assert!(normal(path_part(b)), "{out:?}");
    let decoded = query::decode(b);
    assert!(
        !decoded.iter().any(|&c| c < 0x20 || c == 0x7f || c == b'\\'),
        "{out:?}"
    );
    let dpath = query::decode(path_part(b));
    assert!(!dpath.starts_with(b"//") && normal(&dpath), "{out:?}");

    // No markup through `back`: the page's structure is the baseline's.
    let page = login_page("/.devgate", back, false);
    assert_eq!(
        shape(&page.body),
        baseline("/.devgate", false),
        "back {back:?} changed the page"
    );
    assert_eq!(redirect(back).header("location"), Some(out.as_str()));
}

#[derive(Arbitrary, Debug)]
struct Case {
    mount: String,
    error: bool,
    origin: Option<Vec<u8>>,
    host: Vec<u8>,
    https: bool,
    count: u32,
    window_start: u64,
    now: u64,
    limit: u32,
    window: u64,
    record: Vec<u8>,
    peer: IpAddr,
}

fn check_case(c: &Case) {
    let page = login_page(&c.mount, "/", c.error);
    assert_eq!(
        shape(&page.body),
        baseline("/m", c.error),
        "mount {:?} changed the page",
        c.mount
    );
    assert_eq!(page.status, if c.error { 401 } else { 200 });

    if same_origin(c.origin.as_deref(), &c.host, c.https) {
        let o = c
            .origin
            .as_deref()
            .expect("no header is never same-origin")
            .trim_ascii();
        let lower = o.to_ascii_lowercase();
        let scheme: &[u8] = if c.https { b"https://" } else { b"http://" };
        assert!(lower.starts_with(scheme), "{o:?} on https={}", c.https);
        let rest = &o[o.iter().position(|&b| b == b':').expect("scheme") + 3..];
        let end = rest
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        assert!(!rest[..end].contains(&b'@'), "userinfo accepted: {o:?}");
    }

    let a = Attempts {
        count: c.count,
        window_start: c.window_start,
    };
    assert_eq!(Attempts::from_bytes(&a.to_bytes()), Some(a));
    let _ = Attempts::from_bytes(&c.record);
    assert_eq!(Attempts::from_bytes(Attempts::CLEARED), None);
    if let Verdict::Limited { retry_after } = check(Some(a), c.now, c.limit, c.window) {
        assert!(
            retry_after >= 1 && retry_after <= c.window.max(1),
            "{retry_after}"
        );
        assert!(c.window > 0, "window 0 never limits");
    }
    let next = record_failure(Some(a), c.now, c.window);
    assert!(next.count >= 1 && next.window_start <= c.now.max(c.window_start));
    let key = rate_key(c.peer);
    assert!(key.starts_with(RATE_KEY_PREFIX));
    if let IpAddr::V6(v6) = c.peer {
        if v6.to_ipv4_mapped().is_none() {
            assert!(key.ends_with("/64"), "{key}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_form(data);
    let text = String::from_utf8_lossy(data);
    check_back(&text);
    for line in text.lines().take(8) {
        check_back(line);
    }
    if let Ok(c) = Case::arbitrary(&mut Unstructured::new(data)) {
        check_case(&c);
    }
});

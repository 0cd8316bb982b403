use std::net::{Ipv4Addr, Ipv6Addr};

use crate::core::token::{self, Expect, Key, KeySet, Secret, TokenError};

use super::pages::{html_escape, STYLE};
use super::*;

// -----------------------------------------------------------------------------------------
// parse_form

fn form(body: &str) -> Result<LoginForm, FormError> {
    parse_form(body.as_bytes())
}

#[test]
fn form_basic() {
    let f = form("username=alice&password=s3cret&back=%2F_debug%2F").unwrap();
    assert_eq!(f.username, "alice");
    assert_eq!(f.password, b"s3cret");
    assert_eq!(f.back.as_deref(), Some("/_debug/"));
    // Any order, unknown fields ignored, no back.
    let f = form("csrf=x&password=pw&remember=on&username=bob").unwrap();
    assert_eq!(f.username, "bob");
    assert_eq!(f.password, b"pw");
    assert_eq!(f.back, None);
    // Empty values are values.
    let f = form("username=&password=").unwrap();
    assert_eq!(f.username, "");
    assert_eq!(f.password, b"");
    let f = form("username&password").unwrap();
    assert_eq!((f.username.as_str(), f.password.as_slice()), ("", &b""[..]));
    // Empty pairs are skipped.
    let f = form("&&username=a&&password=b&").unwrap();
    assert_eq!(
        (f.username.as_str(), f.password.as_slice()),
        ("a", &b"b"[..])
    );
}

#[test]
fn form_decoding() {
    // What browsers send for `Jane Doe` / `p+ss wörd%&=` / `/a b?c=d&e`.
    let f = form("username=Jane+Doe&password=p%2Bss+w%C3%B6rd%25%26%3D&back=%2Fa+b%3Fc%3Dd%26e")
        .unwrap();
    assert_eq!(f.username, "Jane Doe");
    assert_eq!(f.password, "p+ss wörd%&=".as_bytes());
    assert_eq!(f.back.as_deref(), Some("/a b?c=d&e"));
    // Names are decoded before comparison; a value may contain `=`.
    let f = form("user%6Eame=a&pass%77ord=x=y").unwrap();
    assert_eq!(f.username, "a");
    assert_eq!(f.password, b"x=y");
    // Lower- and upper-case hex.
    assert_eq!(
        form("username=%c3%a9&password=%C3%A9").unwrap().username,
        "é"
    );
    // Names are case-sensitive: `Username` is an unknown field.
    assert_eq!(
        form("Username=a&password=b"),
        Err(FormError::Missing(Field::Username))
    );
    // The password stays bytes, even when not UTF-8.
    let f = form("username=a&password=%FF%00%FE").unwrap();
    assert_eq!(f.password, [0xff, 0x00, 0xfe]);
    // A non-UTF-8 back is dropped, not an error.
    let f = form("username=a&password=b&back=%FF").unwrap();
    assert_eq!(f.back, None);
}

#[test]
fn form_errors() {
    assert_eq!(form("password=b"), Err(FormError::Missing(Field::Username)));
    assert_eq!(form("username=a"), Err(FormError::Missing(Field::Password)));
    assert_eq!(form(""), Err(FormError::Missing(Field::Username)));
    assert_eq!(
        form("username=a&password=b&username=c"),
        Err(FormError::Duplicate(Field::Username))
    );
    assert_eq!(
        form("username=a&password=b&pass%77ord=c"),
        Err(FormError::Duplicate(Field::Password))
    );
    assert_eq!(
        form("back=/&username=a&password=b&back=/x"),
        Err(FormError::Duplicate(Field::Back))
    );
    // Duplicates of unknown fields are fine.
    assert!(form("x=1&x=2&username=a&password=b").is_ok());
    for bad in [
        "username=%&password=b",
        "username=%4&password=b",
        "username=%zz&password=b",
        "username=a&password=%G0",
        "username=a&password=b&x=%",
        "username=a&password=b&%=1",
        "username=a&password=b&back=%2",
    ] {
        assert_eq!(form(bad), Err(FormError::BadEncoding), "{bad}");
    }
    assert_eq!(form("username=%FF&password=b"), Err(FormError::BadUsername));
    assert_eq!(form("username=%C3&password=b"), Err(FormError::BadUsername));
}

#[test]
fn form_caps() {
    let field = |name: &str, n: usize| format!("{name}={}", "x".repeat(n));
    let ok = format!(
        "{}&{}",
        field("username", MAX_FIELD),
        field("password", MAX_FIELD)
    );
    assert!(form(&ok).is_ok());
    let long = format!("{}&password=b", field("username", MAX_FIELD + 1));
    assert_eq!(form(&long), Err(FormError::FieldTooLong(Field::Username)));
    let long = format!("username=a&{}", field("password", MAX_FIELD + 1));
    assert_eq!(form(&long), Err(FormError::FieldTooLong(Field::Password)));
    let long = format!("username=a&password=b&{}", field("back", MAX_FIELD + 1));
    assert_eq!(form(&long), Err(FormError::FieldTooLong(Field::Back)));
    // The cap is on decoded bytes: 1024 escapes are 3072 bytes on the wire, and fine.
    let escaped = format!("username=a&password={}", "%41".repeat(MAX_FIELD));
    assert_eq!(form(&escaped).unwrap().password.len(), MAX_FIELD);
    // Unknown fields may be long, within the body cap.
    let unknown = format!("username=a&password=b&{}", field("pad", 3000));
    assert!(form(&unknown).is_ok());
    // The body cap.
    let body = format!("username=a&password=b&pad={}", "x".repeat(MAX_BODY));
    assert_eq!(form(&body[..MAX_BODY + 1]), Err(FormError::TooLarge));
    let exact = "username=a&password=b&pad=".to_string();
    let exact = format!("{exact}{}", "x".repeat(MAX_BODY - exact.len()));
    assert_eq!(exact.len(), MAX_BODY);
    assert!(form(&exact).is_ok());
}

#[test]
fn form_debug_redacts_the_password() {
    let f = form("username=alice&password=hunter2&back=/x").unwrap();
    let debug = format!("{f:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("104, 117"), "{debug}"); // the bytes, as a Vec would print
    assert!(
        debug.contains("<redacted>") && debug.contains("alice"),
        "{debug}"
    );
    for e in [
        FormError::TooLarge,
        FormError::FieldTooLong(Field::Password),
        FormError::Duplicate(Field::Back),
        FormError::Missing(Field::Username),
        FormError::BadEncoding,
        FormError::BadUsername,
    ] {
        assert!(e.code().starts_with("form_"));
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        FormError::FieldTooLong(Field::Password).to_string(),
        "login form field `password` longer than 1024 bytes"
    );
}

#[test]
fn form_never_panics() {
    let alphabet = [b'u', b'=', b'&', b'%', b'+', b'2', b'F', 0xff, 0x00];
    let mut buf = Vec::new();
    let n = alphabet.len() as u32;
    for i in 0..n.pow(6) {
        buf.clear();
        let mut k = i;
        for _ in 0..6 {
            buf.push(alphabet[(k % n) as usize]);
            k /= n;
        }
        let _ = parse_form(&buf);
        let mut with_fields = b"username=a&password=".to_vec();
        with_fields.extend_from_slice(&buf);
        let _ = parse_form(&with_fields);
    }
    let _ = parse_form(&[0xff; MAX_BODY + 10]);
    let _ = parse_form(&[b'%'; MAX_BODY]);
}

#[test]
fn content_type() {
    for ok in [
        &b"application/x-www-form-urlencoded"[..],
        b"Application/X-WWW-Form-URLEncoded",
        b"application/x-www-form-urlencoded; charset=UTF-8",
        b" application/x-www-form-urlencoded ;charset=utf-8",
    ] {
        assert!(is_form_content_type(ok));
    }
    for bad in [
        &b""[..],
        b"multipart/form-data; boundary=x",
        b"text/plain",
        b"application/json",
        b"application/x-www-form-urlencodedx",
        b"application/x-www-form-urlencoded, text/plain",
        b"\xff",
    ] {
        assert!(!is_form_content_type(bad));
    }
}

// -----------------------------------------------------------------------------------------
// safe_back

#[test]
fn back_accepts_same_origin_paths() {
    for ok in [
        "/",
        "/_debug/",
        "/_debug/profile?id=42&sort=desc",
        "/a/b/c",
        "/a/b/",
        "/a#section",
        "/a?next=//evil.com",
        "/a?next=http://evil.com/x",
        "/?q=%2F%2Fevil",
        "/#//evil.com",
        "/search?q=a%20b&r=%E2%82%AC",
        "/a%2Fb",
        "/%C3%A9t%C3%A9",
        "/...",
        "/.well-known/x",
        "/a..b/c.",
        "/@evil.com",
        "/javascript:alert(1)",
        "/a;b=c",
    ] {
        assert_eq!(safe_back(ok), ok, "{ok}");
    }
    let long = format!("/{}", "a".repeat(MAX_BACK - 1));
    assert_eq!(safe_back(&long), long);
}

#[test]
fn back_refuses_everything_else() {
    let too_long = format!("/{}", "a".repeat(MAX_BACK));
    let cases: Vec<&str> = vec![
        // Empty and relative.
        "",
        "a",
        "a/b",
        ".",
        "./a",
        "../a",
        "?x=1",
        "#x",
        // Absolute URLs and other schemes.
        "http://evil.com",
        "https://evil.com/",
        "HTTPS://evil.com",
        "ftp://evil.com",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "mailto:a@b.c",
        "//evil.com",
        "//evil.com/",
        "///evil.com",
        "////evil.com",
        // Backslashes, which browsers read as `/`.
        "/\\evil.com",
        "\\/evil.com",
        "\\\\evil.com",
        "\\evil.com",
        "/a\\b",
        "/a?b=\\",
        // Encoded variants, caught after decoding once.
        "/%2F%2Fevil.com",
        "/%2fevil.com",
        "/%2F/evil.com",
        "%2F%2Fevil.com",
        "/%5Cevil",
        "/%5cevil",
        "/%5C%5Cevil",
        "/a?x=%5C",
        "/%2e%2e/evil",
        "/%2E/evil",
        "/a/%2E%2E",
        "/a%2F%2Fb",
        // Controls, spaces and non-ASCII, raw and encoded.
        "/\t/evil.com",
        "/\n/evil.com",
        "/\r\n/evil.com",
        "/a\tb",
        "/a b",
        " /a",
        "/a ",
        "/\u{0}",
        "/\u{7f}",
        "/é",
        "/\u{ff0f}evil.com",
        "/%09/evil.com",
        "/%0d%0aSet-Cookie:x=1",
        "/a?x=%0A",
        "/%00",
        "/%7F",
        // Not normalised.
        "/a//b",
        "/./a",
        "/../a",
        "/a/../b",
        "/a/./b",
        "/a/..",
        "/a/.",
        "/.",
        "/..",
        "/..?x",
        too_long.as_str(),
    ];
    for bad in cases {
        assert_eq!(safe_back(bad), "/", "{bad:?}");
    }
}

#[test]
fn back_decodes_only_once() {
    // Double-encoded slashes survive one decoding as `%2F`: a path, not an authority.
    assert_eq!(safe_back("/%252F%252Fevil.com"), "/%252F%252Fevil.com");
    // Malformed escapes stay as written (and are harmless).
    assert_eq!(safe_back("/%zz"), "/%zz");
    assert_eq!(safe_back("/%"), "/%");
}

#[test]
fn back_never_panics() {
    let alphabet = ["/", "\\", "%", "2", "F", "5", "C", ".", "?", "é", "\t", "a"];
    let n = alphabet.len();
    let mut s = String::new();
    for i in 0..n.pow(5) {
        s.clear();
        let mut k = i;
        for _ in 0..5 {
            s.push_str(alphabet[k % n]);
            k /= n;
        }
        let out = safe_back(&s);
        // Whatever comes out is itself safe, and stable.
        assert!(out.starts_with('/') && !out.starts_with("//"), "{s:?}");
        assert!(!out.contains('\\'), "{s:?}");
        assert_eq!(safe_back(&out), out);
    }
}

// -----------------------------------------------------------------------------------------
// Pages

fn csp_hash(style: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(style.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[test]
fn login_page_headers() {
    let page = login_page("/_devgate", "/_debug/", false);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("www-authenticate"), None);
    let csp = page.header("content-security-policy").unwrap();
    assert_eq!(csp, LOGIN_CSP);
    for directive in [
        "default-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive}");
    }
    assert!(!csp.contains("unsafe"));
    // The hash in the CSP is the hash of the style sheet the page carries.
    assert!(csp.contains(&format!("style-src 'sha256-{}'", csp_hash(STYLE))));
    assert!(page.body.contains(&format!("<style>{STYLE}</style>")));
    // Header names are lower-case and values have no line breaks.
    for (name, value) in &page.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
        assert!(!value.contains(['\r', '\n']));
    }
}

#[test]
fn login_page_body() {
    let page = login_page("/_devgate", "/_debug/?a=1&b=2", false);
    let body = &page.body;
    assert!(body.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(body.contains("<meta charset=\"utf-8\">"));
    assert!(body.contains("<main>") && body.contains("</main>"));
    assert!(body.contains("<form method=\"post\" action=\"/_devgate/login\""));
    assert!(body.contains("<input type=\"hidden\" name=\"back\" value=\"/_debug/?a=1&amp;b=2\">"));
    assert!(body.contains("<label for=\"username\">"));
    assert!(body.contains("<label for=\"password\">"));
    assert!(body.contains("id=\"username\" name=\"username\""));
    assert!(body.contains("id=\"password\" name=\"password\" type=\"password\""));
    assert!(body.contains("autocomplete=\"username\""));
    assert!(body.contains("autocomplete=\"current-password\""));
    assert!(!body.contains(LOGIN_FAILED));
    assert!(!body.contains("role=\"alert\""));
    // Self-contained: no script, no external asset, no inline handler.
    let lower = body.to_ascii_lowercase();
    for banned in [
        "<script", "src=", "href=", "<link", "@import", "url(", "onload", "onclick", "http:",
        "https:",
    ] {
        assert!(!lower.contains(banned), "{banned}");
    }
    // A trailing slash on the mount is not doubled.
    assert!(login_page("/_devgate/", "/", false)
        .body
        .contains("action=\"/_devgate/login\""));
    assert!(login_page("", "/", false)
        .body
        .contains("action=\"/login\""));
}

#[test]
fn login_page_error() {
    let page = login_page("/_devgate", "/x", true);
    assert_eq!(page.status, 401);
    assert_eq!(
        page.header("www-authenticate"),
        Some("x-wsgiorg.developer_user")
    );
    assert!(page
        .body
        .contains("<p class=\"error\" role=\"alert\">Login failed.</p>"));
    assert_eq!(page.body.matches(LOGIN_FAILED).count(), 1);
    assert!(page.header("content-security-policy").is_some());
}

#[test]
fn login_page_escapes_and_sanitises() {
    // An unsafe back becomes `/`; a safe one with HTML-special characters is escaped.
    let page = login_page("/m", "https://evil.com/\"><script>", false);
    assert!(page.body.contains("name=\"back\" value=\"/\""));
    assert!(!page.body.contains("evil"));
    let page = login_page("/m", "/a?x=\"'<>&", false);
    assert!(page
        .body
        .contains("name=\"back\" value=\"/a?x=&quot;&#39;&lt;&gt;&amp;\""));
    assert!(!page.body.contains("<>"));
    // The mount is escaped too (configuration, but still).
    let page = login_page("/m\"><b>", "/", false);
    assert!(page.body.contains("action=\"/m&quot;&gt;&lt;b&gt;/login\""));
    assert_eq!(
        html_escape("a&b<c>d\"e'f é"),
        "a&amp;b&lt;c&gt;d&quot;e&#39;f é"
    );
}

#[test]
fn redirect_and_limit_pages() {
    let page = redirect("/_debug/?x=1");
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/_debug/?x=1"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    assert!(page.body.is_empty());
    assert_eq!(redirect("//evil.com").header("location"), Some("/"));
    assert_eq!(redirect("https://evil.com").header("location"), Some("/"));
    assert_eq!(
        redirect("/\r\nset-cookie: x=1").header("location"),
        Some("/")
    );

    let page = too_many_attempts(42);
    assert_eq!(page.status, 429);
    assert_eq!(page.header("retry-after"), Some("42"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

mod guards;

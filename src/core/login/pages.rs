//! The pages devgate writes: the form, redirects, plain answers, 429.

use std::borrow::Cow;

use crate::core::codes::ResponseHeaders;

use super::back::safe_back;
use super::{Page, LOGIN_FAILED, MAX_FIELD};

/// The page's only style sheet, inline; the CSP allows exactly this text by hash.
pub(super) const STYLE: &str =
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f4f5;\
color:#18181b}main{max-width:22rem;margin:4rem auto;padding:2rem;background:#fff;\
border-radius:.5rem;box-shadow:0 1px 3px #0003}h1{font-size:1.25rem;margin:0 0 1rem}\
label{display:block;margin:.75rem 0 .25rem;font-weight:600}input{box-sizing:border-box;\
width:100%;padding:.5rem;font:inherit;border:1px solid #71717a;border-radius:.25rem}\
button{margin-top:1.25rem;width:100%;padding:.6rem;font:inherit;font-weight:600;color:#fff;\
background:#1d4ed8;border:0;border-radius:.25rem;cursor:pointer}\
input:focus-visible,button:focus-visible{outline:3px solid #93c5fd;outline-offset:1px}\
.error{color:#b91c1c;font-weight:600}";

/// `Content-Security-Policy` of the login page: nothing loads, nothing runs, the style sheet
/// is allowed by its SHA-256 (checked by a test), the form posts only to this origin, and no
/// one may frame it.
pub const LOGIN_CSP: &str = "default-src 'none'; \
style-src 'sha256-EwtRBMYcqXZsRWkawgOLTfd03hgbadrV/W2xEKi4fjY='; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for an HTML attribute value or element content.
pub(super) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The headers every devgate page carries.
pub(super) fn page_headers(content_type: Option<&'static str>) -> ResponseHeaders {
    let mut headers = Vec::with_capacity(8);
    if let Some(ct) = content_type {
        headers.push(("content-type", Cow::Borrowed(ct)));
    }
    headers.push(("cache-control", Cow::Borrowed("no-store")));
    headers.push(("referrer-policy", Cow::Borrowed("same-origin")));
    headers.push(("x-content-type-options", Cow::Borrowed("nosniff")));
    headers
}

/// The login form. It posts `username`, `password` and `back` (= [`safe_back`]`(back)`, escaped
/// into a hidden field) to `<mount>/login` (`mount` without its trailing `/`). With `error`,
/// the page says [`LOGIN_FAILED`] and nothing else about why, and answers 401 with devgate's
/// challenge; without, 200. Self-contained: no script, no external asset, one inline style
/// sheet allowed by hash ([`LOGIN_CSP`]).
pub fn login_page(mount: &str, back: &str, error: bool) -> Page {
    let action = format!("{}/login", mount.trim_end_matches('/'));
    let message = if error {
        format!("<p class=\"error\" role=\"alert\">{LOGIN_FAILED}</p>\n")
    } else {
        String::new()
    };
    let body = format!(
        "<!DOCTYPE html>\n\
<html lang=\"en\">\n\
<head>\n\
<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"robots\" content=\"noindex, nofollow\">\n\
<title>Developer login</title>\n\
<style>{STYLE}</style>\n\
</head>\n\
<body>\n\
<main>\n\
<h1>Developer login</h1>\n\
{message}\
<form method=\"post\" action=\"{action}\" accept-charset=\"utf-8\">\n\
<input type=\"hidden\" name=\"back\" value=\"{back}\">\n\
<label for=\"username\">User name</label>\n\
<input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
autocapitalize=\"none\" spellcheck=\"false\" maxlength=\"256\" required autofocus>\n\
<label for=\"password\">Password</label>\n\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" \
maxlength=\"{MAX_FIELD}\" required>\n\
<button type=\"submit\">Log in</button>\n\
</form>\n\
</main>\n\
</body>\n\
</html>\n",
        action = html_escape(&action),
        back = html_escape(&safe_back(back)),
    );
    let mut headers = page_headers(Some("text/html; charset=utf-8"));
    headers.push(("content-security-policy", Cow::Borrowed(LOGIN_CSP)));
    headers.push(("x-frame-options", Cow::Borrowed("DENY")));
    let status = if error {
        headers.push((
            "www-authenticate",
            Cow::Borrowed("x-wsgiorg.developer_user"),
        ));
        401
    } else {
        200
    };
    Page {
        status,
        headers,
        body,
    }
}

/// `303 See Other` to [`safe_back`]`(location)`, not cached. The glue adds `set-cookie`.
pub fn redirect(location: &str) -> Page {
    let mut headers = vec![("location", Cow::Owned(safe_back(location)))];
    headers.extend(page_headers(None));
    Page {
        status: 303,
        headers,
        body: String::new(),
    }
}

/// A plain-text page with devgate's headers (`no-store`, `nosniff`, ...): 403, 404, 405, 413,
/// 415, 500 under the mount.
pub fn text_page(status: u16, body: &str) -> Page {
    Page {
        status,
        headers: page_headers(Some("text/plain; charset=utf-8")),
        body: body.to_string(),
    }
}

/// `429 Too Many Requests` with `Retry-After`, for [`Verdict::Limited`](super::Verdict::Limited).
pub fn too_many_attempts(retry_after: u64) -> Page {
    let mut headers = page_headers(Some("text/plain; charset=utf-8"));
    headers.push(("retry-after", Cow::Owned(retry_after.to_string())));
    Page {
        status: 429,
        headers,
        body: "Too Many Requests\n".to_string(),
    }
}

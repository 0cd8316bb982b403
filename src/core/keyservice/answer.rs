//! The key service's side of a callout: what devgate asks ([`callout`]) and what the answer
//! means ([`classify`]).
//!
//! | answer | meaning |
//! |---|---|
//! | 200 with a valid access token | the key, described by the token's claims |
//! | 401 | `key_rejected` (authoritative) |
//! | 403 | `key_forbidden` (authoritative) |
//! | 402 | `over_free_quota` (authoritative; `Retry-After` passed on) |
//! | 429 | `over_quota` (authoritative; `Retry-After` passed on) |
//! | anything else: no answer, a timeout, 5xx, another status, a body that is not an access token, a bad signature, claims that do not fit | **unavailable**: never a verdict on the key |
//!
//! The access token is a compact JWS, the body itself or the `access_token` member of a JSON
//! object. It is verified as devgate verifies its own: shape, header, `kid`, the signature over
//! the raw bytes ([`crate::core::keysource::KeySource`]), and only then its claims: `exp`
//! (required, with leeway), `nbf`/`iat` (with leeway), `iss` and `aud` when configured, and the
//! key's facts under the configured [`super::ClaimNames`], checked as strictly as the facts of a
//! key devgate signed ([`crate::core::apikey`]).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::core::apikey::{self, ApiKey, KeyKind, MAX_LIST};
use crate::core::callout::{Callout, CalloutAnswer, MAX_ANSWER_BODY};
use crate::core::codes::Reason;
use crate::core::net::{Cidr, CidrList};
use crate::core::token::MAX_TOKEN_LEN;

use super::{KeyService, Resolution};

/// Longest `Retry-After` passed on (seconds): a day.
pub const MAX_RETRY_AFTER: u64 = 86_400;

/// The callout that resolves `key`: `GET <path>` to the service's cluster, the key in the
/// configured header (never in the URL, so it never reaches an access log).
pub fn callout(service: &KeyService, key: &[u8]) -> Callout {
    Callout {
        cluster: service.cluster.clone(),
        headers: vec![
            (Cow::Borrowed(":method"), b"GET".to_vec()),
            (Cow::Borrowed(":path"), service.path.as_bytes().to_vec()),
            (
                Cow::Borrowed(":authority"),
                service.authority.as_bytes().to_vec(),
            ),
            (
                Cow::Borrowed("accept"),
                b"application/json, application/jwt".to_vec(),
            ),
            (Cow::Owned(service.key_header.clone()), key.to_vec()),
        ],
        timeout_ms: service.timeout_ms,
    }
}

/// What `answer` means for the key, at `now` (seconds since the epoch).
pub fn classify(service: &KeyService, answer: CalloutAnswer<'_>, now: u64) -> Resolution {
    let retry_after = answer.retry_after.and_then(retry_after_seconds);
    let rejected = |reason| Resolution::Rejected {
        reason,
        retry_after: None,
    };
    match answer.status {
        Some(200) => match resolved(service, answer.body, now) {
            Some(r) => r,
            None => Resolution::Unavailable,
        },
        Some(401) => rejected(Reason::KeyRejected),
        Some(403) => rejected(Reason::KeyForbidden),
        Some(402) => Resolution::Rejected {
            reason: Reason::OverFreeQuota,
            retry_after,
        },
        Some(429) => Resolution::Rejected {
            reason: Reason::OverQuota,
            retry_after,
        },
        _ => Resolution::Unavailable,
    }
}

/// `Retry-After` in delta-seconds (an HTTP date is not passed on), at most a day.
pub fn retry_after_seconds(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(v).ok()?.parse().ok()?;
    Some(n.min(MAX_RETRY_AFTER))
}

/// The access token in a 200's body: the body itself, or its JSON `access_token` member.
fn token_of(body: &[u8]) -> Option<Cow<'_, [u8]>> {
    if body.len() > MAX_ANSWER_BODY {
        return None;
    }
    let trimmed = body.trim_ascii();
    if trimmed.first() == Some(&b'{') {
        let object: Map<String, Value> = serde_json::from_slice(trimmed).ok()?;
        match object.get("access_token") {
            Some(Value::String(t)) => Some(Cow::Owned(t.as_bytes().to_vec())),
            _ => None,
        }
    } else {
        Some(Cow::Borrowed(trimmed))
    }
}

fn resolved(service: &KeyService, body: &[u8], now: u64) -> Option<Resolution> {
    let token = token_of(body)?;
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = service.signing.authenticate(&token).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
    let leeway = service.leeway;
    let exp = claims.get("exp")?.as_u64()?;
    if now >= exp.saturating_add(leeway) {
        return None;
    }
    let late = now.saturating_add(leeway);
    for name in ["nbf", "iat"] {
        if let Some(v) = claims.get(name) {
            if late < v.as_u64()? {
                return None;
            }
        }
    }
    if let Some(iss) = &service.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
            return None;
        }
    }
    if let Some(aud) = &service.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud.as_str())),
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    let key = facts(service, &claims, exp)?;
    let fresh_until = exp.min(now.saturating_add(service.cache.max_ttl_s));
    Some(Resolution::Resolved { key, fresh_until })
}

/// The key's facts under the configured claim names, as strict as a devgate key's.
fn facts(service: &KeyService, claims: &Map<String, Value>, exp: u64) -> Option<ApiKey> {
    let names = &service.claims;
    let text = |name: &str| -> Option<String> {
        let s = claims.get(name)?.as_str()?;
        apikey::is_valid_id(s).then(|| s.to_string())
    };
    let list = |name: &str| -> Option<Vec<String>> {
        match claims.get(name) {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_LIST => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => None,
        }
    };
    let kind = match claims.get(&names.kind)?.as_str()? {
        "public_key" | "public" => KeyKind::Public,
        "private_key" | "private" => KeyKind::Private,
        _ => return None,
    };
    let write = match claims.get(&names.write) {
        None | Some(Value::Null) => false,
        Some(v) => v.as_bool()?,
    };
    let products = list(&names.products)?;
    let referers = list(&names.referers)?;
    let ips = list(&names.ips)?;
    let ok = !products.is_empty()
        && products.iter().all(|p| apikey::is_valid_id(p))
        && referers.iter().all(|r| apikey::is_valid_referer_pattern(r))
        && match kind {
            KeyKind::Public => !write && ips.is_empty(),
            KeyKind::Private => referers.is_empty(),
            KeyKind::User => false,
        };
    if !ok {
        return None;
    }
    let ips = ips
        .iter()
        .map(|s| Cidr::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(ApiKey {
        kind,
        id: text(&names.id)?,
        org: text(&names.organization)?,
        project: text(&names.project)?,
        products,
        write,
        referers,
        ips: CidrList(ips),
        exp: Some(exp),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::core::keyservice::testing::{
        claims, named_key, service, signing_key, token, token_by, NOW,
    };

    fn ok(body: &[u8]) -> CalloutAnswer<'_> {
        CalloutAnswer {
            status: Some(200),
            retry_after: None,
            body,
        }
    }

    fn status(status: u16, retry_after: Option<&[u8]>) -> CalloutAnswer<'_> {
        CalloutAnswer {
            status: Some(status),
            retry_after,
            body: b"",
        }
    }

    /// The claims of a private key valid for an hour, with `change` applied.
    fn with(change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut c = claims("private_key", NOW + 3600);
        if let Value::Object(map) = &mut c {
            change(map);
        }
        token(&c)
    }

    fn classify_token(service: &KeyService, t: &str) -> Resolution {
        classify(service, ok(t.as_bytes()), NOW)
    }

    fn key_of(r: Resolution) -> ApiKey {
        match r {
            Resolution::Resolved { key, .. } => key,
            other => panic!("not resolved: {other:?}"),
        }
    }

    #[test]
    fn a_bare_jws_and_an_access_token_member_resolve_the_key() {
        let s = service();
        let t = token(&claims("private_key", NOW + 3600));
        let r = classify_token(&s, &t);
        let Resolution::Resolved { key, fresh_until } = r.clone() else {
            panic!("{r:?}")
        };
        // Fresh until the token's exp, capped by max_ttl.
        assert_eq!(fresh_until, NOW + 300);
        assert_eq!(key.kind, KeyKind::Private);
        assert_eq!(
            (key.id.as_str(), key.org.as_str(), key.project.as_str()),
            ("key-1", "org1", "proj1")
        );
        assert_eq!(key.products, vec!["maps".to_string()]);
        assert!(!key.write);
        assert_eq!(key.exp, Some(NOW + 3600));
        let body = format!("  {{\"access_token\": \"{t}\", \"token_type\": \"Bearer\"}}\n");
        assert_eq!(classify(&s, ok(body.as_bytes()), NOW), r);
        // A body with surrounding whitespace is the same token.
        assert_eq!(classify(&s, ok(format!("{t}\r\n").as_bytes()), NOW), r);
        // A short-lived token is fresh until its own exp.
        let short = token(&claims("public_key", NOW + 20));
        assert!(matches!(
            classify_token(&s, &short),
            Resolution::Resolved { fresh_until, .. } if fresh_until == NOW + 20
        ));
    }

    #[test]
    fn a_token_that_does_not_verify_is_unavailable_never_a_rejection() {
        let s = service();
        let c = claims("private_key", NOW + 3600);
        // Signed by another secret under the known kid, and by an unknown kid.
        let forged = token_by(&c, &named_key("ks1", 9));
        let unknown = token_by(&c, &named_key("ks2", 7));
        assert_eq!(classify_token(&s, &forged), Resolution::Unavailable);
        assert_eq!(classify_token(&s, &unknown), Resolution::Unavailable);
        // A token whose signature was cut or whose payload was changed.
        let good = token(&c);
        let cut = good.rsplit_once('.').unwrap().0;
        assert_eq!(classify_token(&s, cut), Resolution::Unavailable);
        let mut parts: Vec<&str> = good.split('.').collect();
        let other = token(&claims("private_key", NOW + 7200));
        parts[1] = other.split('.').nth(1).unwrap();
        assert_eq!(
            classify_token(&s, &parts.join(".")),
            Resolution::Unavailable
        );
        for body in [
            &b""[..],
            b"not a token",
            b"{}",
            b"{\"access_token\": 5}",
            b"{\"token\": \"a.b.c\"}",
            b"[1]",
        ] {
            assert_eq!(classify(&s, ok(body), NOW), Resolution::Unavailable);
        }
        // The right claims in a JSON body that is not a token at all.
        assert_eq!(
            classify(&s, ok(c.to_string().as_bytes()), NOW),
            Resolution::Unavailable
        );
        assert!(matches!(
            classify_token(&s, &good),
            Resolution::Resolved { .. }
        ));
        let _ = signing_key();
    }

    #[test]
    fn time_claims_are_checked_with_leeway() {
        let s = service();
        let missing = with(|m| {
            m.remove("exp");
        });
        assert_eq!(classify_token(&s, &missing), Resolution::Unavailable);
        let expired = token(&claims("private_key", NOW - 31));
        assert_eq!(classify_token(&s, &expired), Resolution::Unavailable);
        let text_exp = with(|m| {
            m.insert("exp".into(), json!((NOW + 60).to_string()));
        });
        assert_eq!(classify_token(&s, &text_exp), Resolution::Unavailable);
        let early = with(|m| {
            m.insert("nbf".into(), json!(NOW + 31));
        });
        assert_eq!(classify_token(&s, &early), Resolution::Unavailable);
        let future_iat = with(|m| {
            m.insert("iat".into(), json!(NOW + 31));
        });
        assert_eq!(classify_token(&s, &future_iat), Resolution::Unavailable);
        let skewed = with(|m| {
            m.insert("nbf".into(), json!(NOW + 29));
        });
        assert!(matches!(
            classify_token(&s, &skewed),
            Resolution::Resolved { .. }
        ));
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let mut s = service();
        s.issuer = Some("https://auth.example".into());
        s.audience = Some("devgate".into());
        let good = with(|m| {
            m.insert("iss".into(), json!("https://auth.example"));
            m.insert("aud".into(), json!("devgate"));
        });
        assert!(matches!(
            classify_token(&s, &good),
            Resolution::Resolved { .. }
        ));
        let listed = with(|m| {
            m.insert("iss".into(), json!("https://auth.example"));
            m.insert("aud".into(), json!(["other", "devgate"]));
        });
        assert!(matches!(
            classify_token(&s, &listed),
            Resolution::Resolved { .. }
        ));
        for (iss, aud) in [
            (json!("https://evil.example"), json!("devgate")),
            (json!("https://auth.example"), json!("other")),
            (json!("https://auth.example"), json!(["other"])),
            (json!(["https://auth.example"]), json!("devgate")),
            (Value::Null, json!("devgate")),
        ] {
            let t = with(|m| {
                m.insert("iss".into(), iss.clone());
                m.insert("aud".into(), aud.clone());
            });
            assert_eq!(
                classify_token(&s, &t),
                Resolution::Unavailable,
                "{iss} {aud}"
            );
        }
        let none = token(&claims("private_key", NOW + 60));
        assert_eq!(classify_token(&s, &none), Resolution::Unavailable);
    }

    #[test]
    fn claims_that_do_not_fit_a_key_are_unavailable() {
        let s = service();
        let cases: Vec<(&str, Value)> = vec![
            ("kind", json!("secret_key")),
            ("kind", json!(1)),
            ("organization_id", json!(42)),
            ("organization_id", json!("has space")),
            ("project_id", Value::Null),
            ("products", json!("maps")),
            ("products", json!([])),
            ("products", json!(["maps", 3])),
            ("products", json!(["bad product"])),
            ("write", json!("true")),
            ("ips", json!("10.0.0.0/8")),
            ("ips", json!(["not an ip"])),
            ("referers", json!(["UPPER.example"])),
            ("jti", json!(7)),
            ("products", json!(vec!["maps"; MAX_LIST + 1])),
        ];
        for (name, value) in cases {
            let t = with(|m| {
                m.insert(name.into(), value.clone());
            });
            assert_eq!(
                classify_token(&s, &t),
                Resolution::Unavailable,
                "{name}: {value}"
            );
        }
        for name in ["kind", "organization_id", "project_id", "products", "jti"] {
            let t = with(|m| {
                m.remove(name);
            });
            assert_eq!(classify_token(&s, &t), Resolution::Unavailable, "no {name}");
        }
    }

    #[test]
    fn public_and_private_keys_keep_to_their_kind() {
        let s = service();
        let public = |change: &dyn Fn(&mut Map<String, Value>)| {
            let mut c = claims("public_key", NOW + 60);
            if let Value::Object(map) = &mut c {
                change(map);
            }
            classify_token(&s, &token(&c))
        };
        let write = public(&|m| {
            m.insert("write".into(), json!(true));
        });
        assert_eq!(write, Resolution::Unavailable, "a public key never writes");
        let ips = public(&|m| {
            m.insert("ips".into(), json!(["10.0.0.0/8"]));
        });
        assert_eq!(ips, Resolution::Unavailable, "a public key has no networks");
        let key = key_of(public(&|m| {
            m.insert("referers".into(), json!(["app.example", "*.example.org"]));
            m.insert("write".into(), json!(false));
        }));
        assert_eq!((key.kind, key.referers.len()), (KeyKind::Public, 2));
        let referers = with(|m| {
            m.insert("referers".into(), json!(["app.example"]));
        });
        assert_eq!(
            classify_token(&s, &referers),
            Resolution::Unavailable,
            "a private key has no referers"
        );
        let key = key_of(classify_token(
            &s,
            &with(|m| {
                m.insert("ips".into(), json!(["10.0.0.0/8", "192.0.2.7"]));
                m.insert("write".into(), json!(true));
                m.insert("referers".into(), Value::Null);
            }),
        ));
        assert_eq!(
            (key.kind, key.write, key.ips.0.len()),
            (KeyKind::Private, true, 2)
        );
    }

    #[test]
    fn custom_claim_names_are_read_instead_of_the_defaults() {
        let mut s = service();
        s.claims = crate::core::keyservice::ClaimNames {
            kind: "key_type".into(),
            organization: "org".into(),
            project: "app".into(),
            products: "scopes".into(),
            write: "can_write".into(),
            referers: "origins".into(),
            ips: "cidrs".into(),
            id: "key_id".into(),
        };
        let t = token(&json!({
            "exp": NOW + 60, "key_type": "private", "org": "o2", "app": "p2",
            "scopes": ["maps", "search"], "can_write": true, "cidrs": ["10.1.0.0/16"],
            "key_id": "kid-9",
        }));
        let key = key_of(classify_token(&s, &t));
        assert_eq!(
            (
                key.id.as_str(),
                key.org.as_str(),
                key.project.as_str(),
                key.write
            ),
            ("kid-9", "o2", "p2", true)
        );
        assert_eq!(key.products.len(), 2);
        // The default names mean nothing now.
        let defaults = token(&claims("private_key", NOW + 60));
        assert_eq!(classify_token(&s, &defaults), Resolution::Unavailable);
    }

    #[test]
    fn rejections_and_quota_answers() {
        let s = service();
        let rejected = |reason, retry_after| Resolution::Rejected {
            reason,
            retry_after,
        };
        assert_eq!(
            classify(&s, status(401, Some(b"5")), NOW),
            rejected(Reason::KeyRejected, None)
        );
        assert_eq!(
            classify(&s, status(403, None), NOW),
            rejected(Reason::KeyForbidden, None)
        );
        assert_eq!(
            classify(&s, status(402, Some(b"120")), NOW),
            rejected(Reason::OverFreeQuota, Some(120))
        );
        assert_eq!(
            classify(&s, status(429, Some(b" 30 ")), NOW),
            rejected(Reason::OverQuota, Some(30))
        );
        assert_eq!(
            classify(&s, status(429, Some(b"Wed, 21 Oct 2015 07:28:00 GMT")), NOW),
            rejected(Reason::OverQuota, None)
        );
        assert_eq!(
            classify(&s, status(429, Some(b"9999999999")), NOW),
            rejected(Reason::OverQuota, Some(MAX_RETRY_AFTER))
        );
        assert_eq!(
            classify(&s, status(429, None), NOW),
            rejected(Reason::OverQuota, None)
        );
        for bad in [&b""[..], b"-1", b"1.5", b"12345678901", b"+3", b"0x10"] {
            assert_eq!(retry_after_seconds(bad), None, "{bad:?}");
        }
        assert_eq!(retry_after_seconds(b"0"), Some(0));
    }

    #[test]
    fn anything_else_is_unavailable() {
        let s = service();
        let t = token(&claims("private_key", NOW + 60));
        for code in [500, 502, 503, 404, 400, 201, 204, 301, 302] {
            let answer = CalloutAnswer {
                status: Some(code),
                retry_after: Some(b"1"),
                body: t.as_bytes(),
            };
            assert_eq!(classify(&s, answer, NOW), Resolution::Unavailable, "{code}");
        }
        assert_eq!(
            classify(&s, CalloutAnswer::FAILED, NOW),
            Resolution::Unavailable
        );
    }

    #[test]
    fn a_body_over_the_cap_is_unavailable() {
        let s = service();
        let t = token(&claims("private_key", NOW + 60));
        let fits = format!("{{\"access_token\": \"{t}\"}}");
        let pad = " ".repeat(MAX_ANSWER_BODY - fits.len());
        let at_cap = format!("{fits}{pad}");
        assert_eq!(at_cap.len(), MAX_ANSWER_BODY);
        assert!(matches!(
            classify(&s, ok(at_cap.as_bytes()), NOW),
            Resolution::Resolved { .. }
        ));
        let over = format!("{at_cap} ");
        assert_eq!(
            classify(&s, ok(over.as_bytes()), NOW),
            Resolution::Unavailable
        );
    }

    #[test]
    fn the_callout_carries_the_key_in_its_header_only() {
        let s = service();
        let key = b"opaque-private-key-0123456789";
        let c = callout(&s, key);
        assert_eq!(c.cluster, "key_service");
        assert_eq!(c.timeout_ms, 1000);
        let header = |name: &str| {
            c.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
        };
        assert_eq!(header(":method"), Some(&b"GET"[..]));
        assert_eq!(header(":path"), Some(&b"/access_tokens/"[..]));
        assert_eq!(header(":authority"), Some(&b"key-service"[..]));
        assert_eq!(header("x-api-key"), Some(&key[..]));
        // Pseudo-headers first.
        assert!(c.headers.iter().take(3).all(|(n, _)| n.starts_with(':')));
        let shown = format!("{c:?}");
        assert!(!shown.contains("opaque-private-key"), "{shown}");
        assert!(shown.contains("x-api-key"));
    }
}

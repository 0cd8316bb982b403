//! Plugin configuration: JSON in, an immutable, validated [`Policy`] out.
//!
//! Parsed once, in `on_configure`. Unknown fields are errors, every error names the field it is
//! about (`network.allow[1]`), and every security-relevant default is the closed one. The same
//! function backs `devgate check-config`, so the CLI and the filter can never disagree.

use std::fmt;

use serde::Deserialize;

use crate::core::headers::HeaderName;
use crate::core::net::{Cidr, CidrList, NetPolicy};
use crate::core::path::Prefix;

/// Largest plugin configuration accepted (bytes).
pub const MAX_CONFIG_LEN: usize = 256 * 1024;

/// The default identity header: the HTTP form of the spec's `x-wsgiorg.developer_user` key.
pub const DEFAULT_HEADER: &str = "x-wsgiorg-developer-user";

/// A configuration problem. `field` is a JSON path (`protect[2].methods[0]`, or `(root)`);
/// `message` never repeats a configured value, so a secret pasted into the wrong field is not
/// copied into Envoy's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// What a protected path answers to a request without a usable credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unauthenticated {
    /// 401 with `WWW-Authenticate: x-wsgiorg.developer_user` (the spec's open issue, answered).
    #[default]
    Challenge,
    /// Always 403, the spec's "distinctly unhelpful" mode: nothing hints that a login exists.
    Forbid,
}

/// Whether a rule protects a path or exempts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Protect,
    Public,
}

/// One path rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    pub prefix: Prefix,
    /// `None`: every method.
    pub methods: Option<Vec<String>>,
}

impl Rule {
    fn applies(&self, method: &[u8], canonical: &[u8]) -> bool {
        // Protect rules fold case: an upstream on a case-insensitive file system or router
        // serves /_DEBUG/ as /_debug/. Public rules do not: exemptions stay as narrow as written.
        let fold = self.kind == RuleKind::Protect;
        // Frameworks answer HEAD with the GET handler, so a rule naming GET covers HEAD too.
        let method = if method == b"HEAD" {
            &b"GET"[..]
        } else {
            method
        };
        self.prefix.matches(canonical, fold)
            && self.methods.as_ref().is_none_or(|ms| {
                ms.iter()
                    .any(|m| m.as_bytes() == method || (m == "HEAD" && method == b"GET"))
            })
    }
}

/// The validated, immutable policy the core decides with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The identity header injected for the upstream. Defaults to `x-wsgiorg-developer-user`.
    pub header: HeaderName,
    /// Who is a developer by socket address.
    pub net: NetPolicy,
    /// Protect and public rules, most specific first (protect before public on a tie).
    pub rules: Vec<Rule>,
    pub unauthenticated: Unauthenticated,
}

impl Policy {
    /// True when `method` on `canonical` path needs a developer.
    pub fn is_protected(&self, method: &[u8], canonical: &[u8]) -> bool {
        self.rules
            .iter()
            .find(|r| r.applies(method, canonical))
            .is_some_and(|r| r.kind == RuleKind::Protect)
    }
}

// ---- raw, as written ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    header: Option<String>,
    #[serde(default)]
    network: RawNetwork,
    protect: Option<Vec<RawRule>>,
    #[serde(default)]
    public: Vec<String>,
    #[serde(default)]
    unauthenticated: Unauthenticated,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    trust_forwarded: bool,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a path prefix string or {\"prefix\": ..., \"methods\": [...]}"
)]
enum RawRule {
    Prefix(String),
    Rule(RawRuleObject),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleObject {
    prefix: String,
    methods: Option<Vec<String>>,
}

/// serde_json quotes offending string values in its messages (`invalid type: string "..."`).
/// Those values can be secrets in the wrong place, so they are cut out.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        if c == '"' {
            if !in_quotes {
                out.push_str("\"…\"");
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(c);
        }
    }
    // serde_json appends " at line L column C"; the field path already says where.
    match out.find(" at line ") {
        Some(i) => out.get(..i).unwrap_or(&out).to_string(),
        None => out,
    }
}

fn cidrs(field: &str, items: &[String]) -> Result<CidrList, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Cidr::parse(s.trim()).map_err(|e| err(format!("{field}[{i}]"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(CidrList)
}

fn methods(field: &str, items: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if items.is_empty() {
        return Err(err(
            field,
            "must list at least one method (omit it for all methods)",
        ));
    }
    for (i, m) in items.iter().enumerate() {
        let ok = !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_uppercase());
        if !ok {
            return Err(err(
                format!("{field}[{i}]"),
                "must be an upper-case HTTP method such as GET or POST",
            ));
        }
    }
    Ok(items)
}

/// Parses and validates the plugin configuration. An empty configuration means all defaults.
pub fn parse_policy(json: &[u8]) -> Result<Policy, ConfigError> {
    if json.len() > MAX_CONFIG_LEN {
        return Err(err("(root)", format!("larger than {MAX_CONFIG_LEN} bytes")));
    }
    let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        json
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return err(
                "(root)",
                format!(
                    "not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                ),
            );
        }
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "(root)".into()
        } else {
            path
        };
        err(field, redact_values(&inner.to_string()))
    })?;
    de.end()
        .map_err(|e| err("(root)", redact_values(&e.to_string())))?;
    validate(raw)
}

fn validate(raw: RawConfig) -> Result<Policy, ConfigError> {
    let header = HeaderName::parse(raw.header.as_deref().unwrap_or(DEFAULT_HEADER))
        .map_err(|m| err("header", m))?;

    let allow = match &raw.network.allow {
        Some(list) => cidrs("network.allow", list)?,
        None => CidrList::loopback(),
    };
    let deny = cidrs("network.deny", &raw.network.deny)?;
    let net = NetPolicy {
        allow,
        deny,
        trust_forwarded: raw.network.trust_forwarded,
    };

    let mut rules = Vec::new();
    let protect = raw
        .protect
        .unwrap_or_else(|| vec![RawRule::Prefix("/".into())]);
    for (i, r) in protect.into_iter().enumerate() {
        let (prefix, ms, pfield) = match r {
            RawRule::Prefix(p) => (p, None, format!("protect[{i}]")),
            RawRule::Rule(o) => (o.prefix, o.methods, format!("protect[{i}].prefix")),
        };
        let prefix = Prefix::parse(&prefix).map_err(|m| err(pfield, m))?;
        let methods = match ms {
            Some(ms) => Some(methods(&format!("protect[{i}].methods"), ms)?),
            None => None,
        };
        rules.push(Rule {
            kind: RuleKind::Protect,
            prefix,
            methods,
        });
    }
    for (i, p) in raw.public.iter().enumerate() {
        let prefix = Prefix::parse(p).map_err(|m| err(format!("public[{i}]"), m))?;
        rules.push(Rule {
            kind: RuleKind::Public,
            prefix,
            methods: None,
        });
    }
    // Most specific first; on equal specificity Protect sorts first (fail closed).
    rules.sort_by(|a, b| {
        b.prefix
            .specificity()
            .cmp(&a.prefix.specificity())
            .then_with(|| (a.kind == RuleKind::Public).cmp(&(b.kind == RuleKind::Public)))
    });

    Ok(Policy {
        header,
        net,
        rules,
        unauthenticated: raw.unauthenticated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(json: &str) -> String {
        parse_policy(json.as_bytes()).unwrap_err().field
    }

    #[test]
    fn empty_config_is_closed_defaults() {
        for json in ["", "  \n", "{}"] {
            let p = parse_policy(json.as_bytes()).unwrap();
            assert_eq!(p.header.as_str(), "x-wsgiorg-developer-user");
            assert_eq!(p.net.allow, CidrList::loopback());
            assert!(p.net.deny.0.is_empty());
            assert!(!p.net.trust_forwarded);
            assert!(
                p.is_protected(b"GET", b"/"),
                "everything is protected by default"
            );
            assert!(p.is_protected(b"POST", b"/any/thing"));
            assert_eq!(p.unauthenticated, Unauthenticated::Challenge);
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"nope": 1}"#), "nope");
        assert_eq!(field_of(r#"{"network": {"alow": []}}"#), "network.alow");
        assert_eq!(
            field_of(r#"{"network": {"allow": ["10.0.0.1/8"]}}"#),
            "network.allow[0]"
        );
        assert_eq!(
            field_of(r#"{"network": {"allow": ["::1"], "deny": ["::1", "x"]}}"#),
            "network.deny[1]"
        );
        assert_eq!(
            field_of(r#"{"network": {"trust_forwarded": "yes"}}"#),
            "network.trust_forwarded"
        );
        assert_eq!(
            field_of(r#"{"unauthenticated": "maybe"}"#),
            "unauthenticated"
        );
        assert_eq!(field_of(r#"{"header": "bad header"}"#), "header");
        assert_eq!(field_of(r#"{"protect": ["debug"]}"#), "protect[0]");
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a/../b"}]}"#),
            "protect[0].prefix"
        );
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a", "methods": ["get"]}]}"#),
            "protect[0].methods[0]"
        );
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a", "methods": []}]}"#),
            "protect[0].methods"
        );
        assert_eq!(
            field_of(r#"{"protect": [{"prefix": "/a", "x": 1}]}"#),
            "protect[0]"
        );
        assert_eq!(field_of(r#"{"protect": [7]}"#), "protect[0]");
        assert_eq!(field_of(r#"{"public": ["/ok", "nope"]}"#), "public[1]");
        assert_eq!(field_of(r#"[]"#), "(root)");
        assert_eq!(field_of(r#"{} {}"#), "(root)");
        assert_eq!(field_of(r#"{"header": "\u0000"}"#), "header");
    }

    #[test]
    fn messages_are_pinned() {
        let e = parse_policy(br#"{"network": {"allow": ["10.0.0.1/8"]}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `network.allow[0]`: host bits set after the prefix; did you mean 10.0.0.0/8?"
        );
        let e = parse_policy(br#"{"unauthenticated": "maybe"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `unauthenticated`: unknown variant `maybe`, expected `challenge` or `forbid`"
        );
        let e = parse_policy(br#"{"extra": true}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("field `extra`: unknown field `extra`"),
            "{e}"
        );
    }

    #[test]
    fn misplaced_values_are_not_echoed() {
        let e = parse_policy(br#"{"network": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}"#).unwrap_err();
        assert_eq!(e.field, "network");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let e = parse_policy(br#"{"network": {"deny": "topsecretvalue"}}"#).unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        assert!(!e.message.contains("line"), "{e}");
    }

    #[test]
    fn longest_rule_wins_and_ties_protect() {
        let p = parse_policy(br#"{"protect": ["/"], "public": ["/healthz", "/static/"]}"#).unwrap();
        assert!(p.is_protected(b"GET", b"/"));
        assert!(!p.is_protected(b"GET", b"/healthz"));
        assert!(!p.is_protected(b"GET", b"/static/app.js"));
        assert!(
            p.is_protected(b"GET", b"/HEALTHZ"),
            "public rules do not fold case"
        );
        let p = parse_policy(br#"{"protect": ["/a"], "public": ["/a"]}"#).unwrap();
        assert!(p.is_protected(b"GET", b"/a/x"));
        let p = parse_policy(br#"{"protect": ["/_debug/"], "public": ["/"]}"#).unwrap();
        assert!(p.is_protected(b"GET", b"/_DEBUG/x"));
        assert!(!p.is_protected(b"GET", b"/other"));
    }

    #[test]
    fn method_rules() {
        let p =
            parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["POST", "DELETE"]}]}"#)
                .unwrap();
        assert!(p.is_protected(b"POST", b"/api/x"));
        assert!(!p.is_protected(b"GET", b"/api/x"));
        assert!(
            !p.is_protected(b"post", b"/api/x"),
            "methods are case-sensitive"
        );
        assert!(!p.is_protected(b"POST", b"/"));
        let p = parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["GET"]}]}"#).unwrap();
        assert!(
            p.is_protected(b"HEAD", b"/api/x"),
            "GET handlers answer HEAD"
        );
        let p = parse_policy(br#"{"protect": [{"prefix": "/api", "methods": ["HEAD"]}]}"#).unwrap();
        assert!(p.is_protected(b"HEAD", b"/api/x"));
    }

    #[test]
    fn invalid_json_says_so() {
        let e = parse_policy(br#"{"protect": ["/"]"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `(root)`: not valid JSON (line 1, column 17)"
        );
        let e = parse_policy(b"{\"header\": \"x\" secret}").unwrap_err();
        assert_eq!(e.field, "(root)");
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn protect_nothing_is_explicit() {
        let p = parse_policy(br#"{"protect": []}"#).unwrap();
        assert!(!p.is_protected(b"GET", b"/_debug/"));
    }

    #[test]
    fn oversized_config_is_refused() {
        let big = vec![b' '; MAX_CONFIG_LEN + 1];
        assert_eq!(parse_policy(&big).unwrap_err().field, "(root)");
    }
}

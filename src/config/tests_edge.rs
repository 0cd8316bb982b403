//! `edge`: each profile's defaults, the fields every error names, masks on proxy addresses,
//! and the keys' fetch settings.

use super::*;
use crate::config::parse_policy;
use crate::core::edge::{Carrier, EdgePolicy, KeyLocation, Profile};
use crate::core::jose::Alg;

fn edge(json: &str) -> EdgePolicy {
    let p = parse_policy(format!(r#"{{"edge": {json}}}"#).as_bytes()).unwrap();
    p.edge.unwrap()
}

fn error(json: &str) -> ConfigError {
    parse_policy(json.as_bytes()).unwrap_err()
}

fn edge_error(json: &str) -> ConfigError {
    error(&format!(r#"{{"edge": {json}}}"#))
}

const JWKS_URL: &str = r#"{"jwks_url": {"cluster": "keys", "path": "/jwks"}}"#;
const PEM_URL: &str = r#"{"pem_url": {"cluster": "alb_keys", "authority":
    "public-keys.auth.elb.eu-west-1.amazonaws.com", "path": "/"}}"#;
const DEVS: &str = r#"{"domains": ["example.com"]}"#;

fn one(profile: &str, extra: &str, keys: &str) -> String {
    format!(
        r#"{{"assertions": [{{"name": "a", "profile": "{profile}", "keys": {keys},
            "developers": {DEVS} {extra}}}]}}"#
    )
}

#[test]
fn google_iap_defaults() {
    let e = edge(&one(
        "google_iap",
        r#", "audiences": ["/projects/123/global/backendServices/456", "/projects/123/apps/my-proj"]"#,
        JWKS_URL,
    ));
    let a = e.assertions.first().unwrap();
    assert_eq!(a.profile, Profile::GoogleIap);
    assert_eq!(
        a.carrier,
        Carrier::Header(HeaderName::parse("x-goog-iap-jwt-assertion").unwrap())
    );
    assert_eq!(a.algorithms, vec![Alg::Es256]);
    assert_eq!(a.issuer, "https://cloud.google.com/iap");
    assert_eq!(a.claim, "email");
    assert_eq!(a.leeway, 30);
    assert!(!a.padded);
    assert_eq!(a.signer, None);
    assert_eq!(
        e.strip_prefixes,
        vec!["x-goog-authenticated-user-".to_string()]
    );
    let KeyLocation::Jwks(f) = &a.keys else {
        panic!()
    };
    assert_eq!((f.cluster.as_str(), f.authority.as_str()), ("keys", "keys"));
    assert_eq!(
        (
            f.refresh_seconds,
            f.max_stale_seconds,
            f.refetch_seconds,
            f.timeout_ms
        ),
        (300, 86_400, 30, 2000)
    );
    for bad in [
        "/projects/abc/global/backendServices/456",
        "/projects/123/global/backendServices/",
        "projects/123/apps/x",
        "/projects/123/apps/",
        "app-aud-tag",
    ] {
        let e = edge_error(&one(
            "google_iap",
            &format!(r#", "audiences": ["/projects/1/apps/ok", "{bad}"]"#),
            JWKS_URL,
        ));
        assert_eq!(e.field, "edge.assertions[0].audiences[1]", "{bad}");
        assert!(!e.message.contains(bad), "{bad}");
    }
}

#[test]
fn cloudflare_access_defaults() {
    let e = edge(&one(
        "cloudflare_access",
        r#", "audiences": ["4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"],
            "issuer": "https://myteam.cloudflareaccess.com""#,
        JWKS_URL,
    ));
    let a = e.assertions.first().unwrap();
    assert_eq!(
        a.carrier,
        Carrier::Header(HeaderName::parse("cf-access-jwt-assertion").unwrap())
    );
    assert_eq!(a.algorithms, vec![Alg::Rs256]);
    assert_eq!(a.issuer, "https://myteam.cloudflareaccess.com");
    assert_eq!(
        e.strip,
        vec![HeaderName::parse("cf-access-authenticated-user-email").unwrap()]
    );
    let no_issuer = one("cloudflare_access", r#", "audiences": ["x"]"#, JWKS_URL);
    assert_eq!(edge_error(&no_issuer).field, "edge.assertions[0].issuer");
    for bad in [
        "http://myteam.cloudflareaccess.com",
        "https://myteam.cloudflareaccess.com.evil.com",
        "https://.cloudflareaccess.com",
        "https://my.team.cloudflareaccess.com",
    ] {
        let e = edge_error(&one(
            "cloudflare_access",
            &format!(r#", "audiences": ["x"], "issuer": "{bad}""#),
            JWKS_URL,
        ));
        assert_eq!(e.field, "edge.assertions[0].issuer", "{bad}");
        assert!(!e.message.contains(bad));
    }
}

#[test]
fn pomerium_defaults() {
    let json = one(
        "pomerium",
        r#", "audiences": ["app.example.com"], "issuer": "app.example.com""#,
        JWKS_URL,
    );
    let e = edge(&json);
    let a = e.assertions.first().unwrap();
    assert_eq!(
        a.carrier,
        Carrier::Header(HeaderName::parse("x-pomerium-jwt-assertion").unwrap())
    );
    assert_eq!(a.algorithms, vec![Alg::Es256]);
    assert_eq!(e.strip_prefixes, vec!["x-pomerium-claim-".to_string()]);
    let no_issuer = one("pomerium", r#", "audiences": ["x"]"#, JWKS_URL);
    assert_eq!(edge_error(&no_issuer).field, "edge.assertions[0].issuer");
}

const ARN: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/dev/50dc6c495c0c9188";

#[test]
fn aws_alb_defaults() {
    let extra = format!(
        r#", "audiences": ["client-id"], "issuer": "https://idp.example", "signer": "{ARN}""#
    );
    let e = edge(&one("aws_alb", &extra, PEM_URL));
    let a = e.assertions.first().unwrap();
    assert_eq!(
        a.carrier,
        Carrier::Header(HeaderName::parse("x-amzn-oidc-data").unwrap())
    );
    assert_eq!(a.algorithms, vec![Alg::Es256]);
    assert!(a.padded, "the ALB pads its base64url");
    assert_eq!(a.signer.as_deref(), Some(ARN));
    assert_eq!(
        e.strip,
        vec![HeaderName::parse("x-amzn-oidc-identity").unwrap()]
    );
    let KeyLocation::PemPerKid(f) = &a.keys else {
        panic!()
    };
    assert_eq!(f.authority, "public-keys.auth.elb.eu-west-1.amazonaws.com");
    assert_eq!(f.path, "/");
    // The signer is required; a JWK set is not the ALB's.
    let no_signer = one(
        "aws_alb",
        r#", "audiences": ["c"], "issuer": "https://idp.example""#,
        PEM_URL,
    );
    assert_eq!(edge_error(&no_signer).field, "edge.assertions[0].signer");
    let bad_signer = one(
        "aws_alb",
        r#", "audiences": ["c"], "issuer": "https://idp.example", "signer": "lb-1""#,
        PEM_URL,
    );
    assert_eq!(edge_error(&bad_signer).field, "edge.assertions[0].signer");
    assert_eq!(
        edge_error(&one("aws_alb", &extra, JWKS_URL)).field,
        "edge.assertions[0].keys"
    );
    // The PEM prefix ends in `/`.
    let no_slash = one(
        "aws_alb",
        &extra,
        r#"{"pem_url": {"cluster": "k", "path": "/keys"}}"#,
    );
    assert_eq!(
        edge_error(&no_slash).field,
        "edge.assertions[0].keys.pem_url.path"
    );
    // Padding and a signer belong to the ALB only.
    let other = one(
        "oidc",
        &format!(
            r#", "algorithms": ["ES256"], "audiences": ["c"], "issuer": "https://i", "signer": "{ARN}""#
        ),
        JWKS_URL,
    );
    assert_eq!(edge_error(&other).field, "edge.assertions[0].signer");
}

#[test]
fn oidc_defaults() {
    let json = one(
        "oidc",
        r#", "algorithms": ["RS256", "PS256", "RS256"], "audiences": ["client"], "issuer": "https://accounts.example""#,
        JWKS_URL,
    );
    let e = edge(&json);
    let a = e.assertions.first().unwrap();
    assert_eq!(a.carrier, Carrier::Bearer);
    assert_eq!(a.algorithms, vec![Alg::Rs256, Alg::Ps256]);
    assert!(!a.padded);
    assert!(e.strip.is_empty() && e.strip_prefixes.is_empty());
    let header = one(
        "oidc",
        r#", "header": "X-Id-Token", "algorithms": ["EdDSA"], "audiences": ["c"], "issuer": "https://i""#,
        JWKS_URL,
    );
    let e = edge(&header);
    assert_eq!(
        e.assertions.first().unwrap().carrier,
        Carrier::Header(HeaderName::parse("x-id-token").unwrap())
    );
    let no_algs = one(
        "oidc",
        r#", "audiences": ["c"], "issuer": "https://i""#,
        JWKS_URL,
    );
    assert_eq!(edge_error(&no_algs).field, "edge.assertions[0].algorithms");
    for alg in ["HS256", "none", "es256"] {
        let json = one(
            "oidc",
            &format!(r#", "algorithms": ["{alg}"], "audiences": ["c"], "issuer": "https://i""#),
            JWKS_URL,
        );
        assert_eq!(
            edge_error(&json).field,
            "edge.assertions[0].algorithms[0]",
            "{alg}"
        );
    }
    let no_issuer = one(
        "oidc",
        r#", "algorithms": ["ES256"], "audiences": ["c"]"#,
        JWKS_URL,
    );
    assert_eq!(edge_error(&no_issuer).field, "edge.assertions[0].issuer");
}

fn iap(extra: &str, keys: &str, developers: &str) -> String {
    format!(
        r#"{{"assertions": [{{"name": "iap", "profile": "google_iap",
            "audiences": ["/projects/1/apps/p"], "keys": {keys},
            "developers": {developers} {extra}}}]}}"#
    )
}

#[test]
fn assertion_errors_name_the_field() {
    let f = |json: String| edge_error(&json).field;
    assert_eq!(
        f(iap(r#", "name": "Bad-Name""#, JWKS_URL, DEVS).replacen(r#""name": "iap", "#, "", 1)),
        "edge.assertions[0].name"
    );
    let empty_aud = iap("", JWKS_URL, DEVS).replace(r#"["/projects/1/apps/p"]"#, "[]");
    assert_eq!(f(empty_aud), "edge.assertions[0].audiences");
    assert_eq!(f(iap("", "{}", DEVS)), "edge.assertions[0].keys");
    let two_keys =
        r#"{"jwks_url": {"cluster": "k", "path": "/j"}, "pem_url": {"cluster": "k", "path": "/"}}"#;
    assert_eq!(f(iap("", two_keys, DEVS)), "edge.assertions[0].keys");
    assert_eq!(f(iap("", JWKS_URL, "{}")), "edge.assertions[0].developers");
    assert_eq!(
        f(iap("", JWKS_URL, r#"{"domains": ["@example.com"]}"#)),
        "edge.assertions[0].developers.domains[0]"
    );
    assert_eq!(
        f(iap("", JWKS_URL, r#"{"names": [""]}"#)),
        "edge.assertions[0].developers.names[0]"
    );
    assert_eq!(
        f(iap(r#", "claim": "exp""#, JWKS_URL, DEVS)),
        "edge.assertions[0].claim"
    );
    assert_eq!(
        f(iap(r#", "leeway_seconds": 301"#, JWKS_URL, DEVS)),
        "edge.assertions[0].leeway_seconds"
    );
    assert_eq!(
        f(iap(r#", "allow_from": ["10.0.0.1/8"]"#, JWKS_URL, DEVS)),
        "edge.assertions[0].allow_from[0]"
    );
    assert_eq!(
        f(iap(r#", "header": "bad header""#, JWKS_URL, DEVS)),
        "edge.assertions[0].header"
    );
    let fetch = |body: &str| format!(r#"{{"jwks_url": {{{body}}}}}"#);
    for (body, field) in [
        (r#""cluster": "bad cluster", "path": "/j""#, "cluster"),
        (
            r#""cluster": "k", "authority": "a/b", "path": "/j""#,
            "authority",
        ),
        (r#""cluster": "k", "path": "j""#, "path"),
        (r#""cluster": "k", "path": "/j?x=1""#, "path"),
        (
            r#""cluster": "k", "path": "/j", "refresh_seconds": 9"#,
            "refresh_seconds",
        ),
        (
            r#""cluster": "k", "path": "/j", "max_stale_seconds": 604801"#,
            "max_stale_seconds",
        ),
        (
            r#""cluster": "k", "path": "/j", "refresh_seconds": 3600, "max_stale_seconds": 600"#,
            "max_stale_seconds",
        ),
        (
            r#""cluster": "k", "path": "/j", "refetch_seconds": 0"#,
            "refetch_seconds",
        ),
        (
            r#""cluster": "k", "path": "/j", "timeout_ms": 99"#,
            "timeout_ms",
        ),
    ] {
        assert_eq!(
            f(iap("", &fetch(body), DEVS)),
            format!("edge.assertions[0].keys.jwks_url.{field}"),
            "{body}"
        );
    }
    // Names are unique.
    let twice = format!(
        r#"{{"assertions": [{a}, {a}]}}"#,
        a = r#"{"name": "x", "profile": "google_iap", "audiences": ["/projects/1/apps/p"],
               "keys": {"jwks_url": {"cluster": "k", "path": "/j"}}, "developers": {"anyone": true}}"#
    );
    assert_eq!(f(twice), "edge.assertions[1].name");
}

#[test]
fn domains_are_lower_cased_and_groups_default_their_claim() {
    let e = edge(&iap(
        "",
        JWKS_URL,
        r#"{"domains": ["Example.COM"], "groups": ["devs"]}"#,
    ));
    let d = &e.assertions.first().unwrap().developers;
    assert_eq!(d.domains, vec!["example.com".to_string()]);
    assert_eq!(d.groups_claim.as_deref(), Some("groups"));
}

#[test]
fn proxy_headers_need_masks_and_their_own_name() {
    let proxy = |header: &str, from: &str, devs: &str| {
        format!(
            r#"{{"proxy_headers": [{{"header": "{header}", "from": {from}, "developers": {devs}}}]}}"#
        )
    };
    let e = edge(&proxy(
        "X-Auth-Request-Email",
        r#"["10.0.0.5/32", "2001:db8::5/128"]"#,
        DEVS,
    ));
    let p = e.proxy_headers.first().unwrap();
    assert_eq!(p.header.as_str(), "x-auth-request-email");
    assert!(p.from.contains("10.0.0.5".parse().unwrap()));
    assert!(!p.from.contains("10.0.0.6".parse().unwrap()));
    let f = |json: String| edge_error(&json).field;
    // A bare address is refused, IPv4 or IPv6 (never widened, never guessed).
    for bare in [r#"["10.0.0.5"]"#, r#"["10.0.0.0/24", "2001:db8::5"]"#] {
        let field = f(proxy("x-user", bare, DEVS));
        assert!(field.starts_with("edge.proxy_headers[0].from["), "{field}");
    }
    assert_eq!(f(proxy("x-user", "[]", DEVS)), "edge.proxy_headers[0].from");
    assert_eq!(
        f(proxy("x-user", r#"["10.0.0.1/8"]"#, DEVS)),
        "edge.proxy_headers[0].from[0]"
    );
    assert_eq!(
        f(proxy(
            "x-user",
            r#"["10.0.0.5/32"]"#,
            r#"{"groups": ["devs"]}"#
        )),
        "edge.proxy_headers[0].developers"
    );
    // Not the identity header (any spelling), not an API header, not another source's.
    assert_eq!(
        f(proxy(
            "X_Wsgiorg_Developer_User",
            r#"["10.0.0.5/32"]"#,
            DEVS
        )),
        "edge.proxy_headers[0].header"
    );
    let api = r#"{"keys": [{"id": "k1", "secret": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}],
        "api": {"routes": [{"prefix": "/api/", "product": "p"}]},
        "edge": {"proxy_headers": [{"header": "x-devgate-user", "from": ["10.0.0.5/32"],
                                    "developers": {"anyone": true}}]}}"#;
    assert_eq!(error(api).field, "edge.proxy_headers[0].header");
    let two = r#"{"proxy_headers": [
        {"header": "x-user", "from": ["10.0.0.5/32"], "developers": {"anyone": true}},
        {"header": "X_User", "from": ["10.0.0.6/32"], "developers": {"anyone": true}}]}"#;
    assert_eq!(edge_error(two).field, "edge.proxy_headers[1].header");
    let same_as_assertion = format!(
        r#"{{"assertions": [{}], "proxy_headers": [{{"header": "x-goog-iap-jwt-assertion",
            "from": ["10.0.0.5/32"], "developers": {{"anyone": true}}}}]}}"#,
        r#"{"name": "x", "profile": "google_iap", "audiences": ["/projects/1/apps/p"],
            "keys": {"jwks_url": {"cluster": "k", "path": "/j"}}, "developers": {"anyone": true}}"#
    );
    assert_eq!(
        edge_error(&same_as_assertion).field,
        "edge.proxy_headers[0].header"
    );
}

#[test]
fn client_certs_need_a_list_and_masked_proxies() {
    let e = edge(r#"{"client_certs": {"uri_sans": ["spiffe://example.org/ns/dev/sa/alice"]}}"#);
    let c = e.client_certs.unwrap();
    assert_eq!(c.uri_sans.len(), 1);
    assert!(c.forwarded_from.is_none());
    assert_eq!(
        edge_error(r#"{"client_certs": {}}"#).field,
        "edge.client_certs"
    );
    assert_eq!(
        edge_error(r#"{"client_certs": {"subjects": ["CN=a"], "forwarded_from": ["10.0.0.5"]}}"#)
            .field,
        "edge.client_certs.forwarded_from[0]"
    );
    // Envoy shows filters no email SAN: a list that could only match nothing is refused.
    assert_eq!(
        edge_error(r#"{"client_certs": {"emails": ["a@example.com"]}}"#).field,
        "edge.client_certs.emails"
    );
    assert_eq!(
        edge_error(r#"{"client_certs": {"dns_sans": [""]}}"#).field,
        "edge.client_certs.dns_sans[0]"
    );
}

#[test]
fn store_keys_are_per_source() {
    let k = store_key("cluster", "authority", "/path");
    assert!(k.starts_with("devgate.edge.keys."));
    assert_eq!(k.len(), "devgate.edge.keys.".len() + 32);
    assert_eq!(k, store_key("cluster", "authority", "/path"));
    // Length-prefixed: moving a byte from one part to the next is another source.
    assert_ne!(k, store_key("cluste", "rauthority", "/path"));
    assert_ne!(k, store_key("cluster", "authority", "/path2"));
    let e = edge(&iap("", JWKS_URL, DEVS));
    let KeyLocation::Jwks(f) = &e.assertions.first().unwrap().keys else {
        panic!()
    };
    assert_eq!(f.store_key, store_key("keys", "keys", "/jwks"));
}

#[test]
fn errors_never_echo_a_value() {
    let secret = "c2VjcmV0LXRoYXQtd2FzLXBhc3RlZC1oZXJl";
    for json in [
        format!(
            r#"{{"assertions": [{{"name": "x", "profile": "cloudflare_access", "issuer": "{secret}",
            "audiences": ["a"], "keys": {JWKS_URL}, "developers": {DEVS}}}]}}"#
        ),
        iap(&format!(r#", "signer": "{secret}""#), JWKS_URL, DEVS),
        iap("", JWKS_URL, &format!(r#"{{"domains": ["{secret}@x"]}}"#)),
        format!(
            r#"{{"proxy_headers": [{{"header": "x-u", "from": ["{secret}"], "developers": {DEVS}}}]}}"#
        ),
    ] {
        let e = edge_error(&json);
        assert!(!e.to_string().contains(secret), "{e}");
    }
}

#[test]
fn inline_keys_errors_name_the_keys() {
    for keys in [
        r#"{"jwks": {"keys": []}}"#,
        r#"{"jwks": {"nope": 1}}"#,
        r#"{"pem": [{"id": "k1", "pem": "not a pem"}]}"#,
        r#"{"pem": []}"#,
    ] {
        let e = edge_error(&iap("", keys, DEVS));
        assert!(
            e.field.starts_with("edge.assertions[0].keys"),
            "{keys}: {}",
            e.field
        );
        assert!(!e.message.contains("not a pem"));
    }
    let alb = one(
        "aws_alb",
        &format!(r#", "audiences": ["c"], "issuer": "https://i", "signer": "{ARN}""#),
        r#"{"jwks": {"keys": []}}"#,
    );
    assert_eq!(edge_error(&alb).field, "edge.assertions[0].keys");
}

//! `edge`: assertions, proxy headers and client certificates, validated into the core's
//! [`EdgePolicy`]. Every error names its field under `edge` and never repeats a configured value
//! (a secret pasted into the wrong field stays out of Envoy's log). The raw types are here,
//! beside their validation; `RawConfig.edge` holds them.

use serde::Deserialize;

use super::bounds::{
    Bounds, KEY_MAX_STALE_SECONDS, KEY_REFETCH_SECONDS, KEY_REFRESH_SECONDS, KEY_TIMEOUT_MS,
    LEEWAY_SECONDS,
};
use super::publickeys::{algorithms, inline_keys};
use super::{between, cidrs, envoy_name_ok, err, leeway_message, ConfigError};
use crate::core::edge::{
    AssertionSource, Carrier, ClientCertSource, Developers, EdgePolicy, KeyFetch, KeyLocation,
    Profile, ProxyHeaderSource,
};
use crate::core::headers::HeaderName;
use crate::core::jose::Alg;
use crate::core::net::CidrList;
use crate::core::token::is_valid_subject;

/// Developers as the team's edge already knows them: signed assertions from an identity-aware
/// proxy or an IdP, identity headers from a trusted proxy, client certificates.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Edge"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawEdge {
    /// Signed assertions (JWTs) verified against their issuer's public keys, tried in order;
    /// the first that proves a developer wins. Default `[]`.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    pub(super) assertions: Vec<RawAssertion>,
    /// Headers naming the user, believed only from the listed proxies' socket addresses, tried
    /// after the assertions. Default `[]`.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    pub(super) proxy_headers: Vec<RawProxyHeader>,
    /// Developers by the connection's client certificate, as Envoy's TLS listener validated it.
    /// Absent: certificates make no developer.
    pub(super) client_certs: Option<RawClientCerts>,
}

/// A provider whose header, algorithms, issuer and quirks devgate knows. Each profile fills the
/// defaults below from the provider's documentation; anything it leaves open is required.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub(super) enum RawProfile {
    /// Google Cloud Identity-Aware Proxy
    /// (<https://cloud.google.com/iap/docs/signed-headers-howto>). Header
    /// `x-goog-iap-jwt-assertion`; ES256; issuer `https://cloud.google.com/iap` (the default);
    /// audience `/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID` (load balancers,
    /// GKE, Compute Engine) or `/projects/PROJECT_NUMBER/apps/PROJECT_ID` (App Engine), checked
    /// for that shape; keys as a JWK set at `https://www.gstatic.com/iap/verify/public_key-jwk`
    /// (`jwks_url` on a cluster for `www.gstatic.com`). Quirks: the unsigned
    /// `x-goog-authenticated-user-*` headers (email, id) can be forged by anyone who bypasses
    /// IAP, so every `x-goog-authenticated-user-` header is removed, never believed; the
    /// developer is the `email` claim (plain, without the headers' `accounts.google.com:`
    /// prefix); health checks carry no assertion.
    GoogleIap,
    /// Cloudflare Access
    /// (<https://developers.cloudflare.com/cloudflare-one/identity/users/validating-json/>).
    /// Header `cf-access-jwt-assertion` (the `CF_Authorization` cookie carries the same token
    /// but is not guaranteed to be sent, so it is not read); RS256; `issuer` required,
    /// `https://<team>.cloudflareaccess.com` (checked for that shape); audience the
    /// application's AUD tag (`aud` is an array); keys as a JWK set at
    /// `https://<team>.cloudflareaccess.com/cdn-cgi/access/certs`, holding the current and the
    /// previous key (rotated every 6 weeks by default, the previous one valid 7 more days).
    /// Quirk: the unsigned `cf-access-authenticated-user-email` header is removed, never
    /// believed.
    CloudflareAccess,
    /// Pomerium (<https://www.pomerium.com/docs/capabilities/getting-users-identity>). Header
    /// `x-pomerium-jwt-assertion`; ES256; `issuer` required and the audience, both the route's
    /// host name as Pomerium signs them (for example `app.example.com`); keys as a JWK set at
    /// `/.well-known/pomerium/jwks.json` on the route's host (Pomerium needs a `signing_key`
    /// configured for it). Quirks: the unsigned `x-pomerium-claim-*` headers are removed, never
    /// believed; the `groups` claim lists the user's groups.
    Pomerium,
    /// AWS Application Load Balancer with OIDC authentication
    /// (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html>).
    /// Header `x-amzn-oidc-data`; ES256; keys one PEM per `kid` at
    /// `https://public-keys.auth.elb.<region>.amazonaws.com/<kid>` (`keys.pem_url` with `path`
    /// `/`, or inline `pem`; a JWK set is refused); `issuer` required (the IdP's issuer, which
    /// the ALB copies into the payload); `signer` required, the load balancer's ARN, which the
    /// signed header's `signer` must equal; the payload has no `aud`: `audiences` lists the
    /// OIDC client ids the signed header's `client` may name. Quirks: the ALB pads its
    /// base64url with `=`, which strict libraries refuse: accepted for this profile only; the
    /// unsigned `x-amzn-oidc-identity` header is removed, never believed
    /// (`x-amzn-oidc-accesstoken` is left for the application).
    AwsAlb,
    /// Any OpenID Connect issuer's ID token
    /// (<https://openid.net/specs/openid-connect-core-1_0.html#IDToken>) as `Authorization:
    /// Bearer` (or in `header`); `algorithms`, `issuer` and `keys` required (the keys are the
    /// `jwks_uri` of the issuer's `/.well-known/openid-configuration`); the audience is the
    /// client id. devgate's own tokens are tried first on the same header.
    Oidc,
}

/// A signed assertion source.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Assertion"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssertion {
    /// The source's name in logs and stats: 1-32 of `[a-z0-9_]`, unique. Required.
    pub(super) name: String,
    /// The provider. Required.
    pub(super) profile: RawProfile,
    /// The header the assertion travels in (every spelling read; two values are refused
    /// `malformed`). Default: the profile's (`oidc`: `Authorization: Bearer`). The assertion
    /// itself still reaches the application (it is signed, and the application may read other
    /// claims); the profiles' unsigned companion headers never do.
    pub(super) header: Option<String>,
    /// The algorithms accepted, from `ES256`, `ES384`, `RS256`, `PS256`, `EdDSA`. Default: the
    /// profile's; required for `oidc`.
    pub(super) algorithms: Option<Vec<String>>,
    /// `iss` must equal this. Default: the profile's where it has one (`google_iap`); required
    /// otherwise.
    pub(super) issuer: Option<String>,
    /// `aud` must name one of these. Required, at least one: an assertion meant for another
    /// application is refused.
    pub(super) audiences: Vec<String>,
    /// The issuer's public keys. Required.
    pub(super) keys: RawPublicKeys,
    /// The claim naming the developer: a string of 1-256 visible ASCII characters (it becomes
    /// the identity header), otherwise refused `bad_claim`. Default `email`.
    pub(super) claim: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, 0 to 300 seconds. Default 30.
    #[serde(default = "super::raw::default_leeway_pub")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::LEEWAY_SECONDS.min, max = super::bounds::LEEWAY_SECONDS.max))
    )]
    pub(super) leeway_seconds: u64,
    /// `aws_alb` only, required there: the load balancer's ARN, which the assertion header's
    /// `signer` must equal. Absent (every other profile): no `signer` check.
    pub(super) signer: Option<String>,
    /// Who is a developer. Required.
    pub(super) developers: RawDevelopers,
    /// CIDRs the assertion is honoured from: the edge proxy's addresses, compared with the peer
    /// as `network` lets it be used (the socket's address, or `X-Forwarded-For`'s with
    /// `trust_forwarded`), as tokens' `allow_from`; from elsewhere it is refused
    /// `network_denied`. Absent: any peer.
    pub(super) allow_from: Option<Vec<String>>,
}

/// Public keys: exactly one of `jwks`, `pem`, `jwks_url`, `pem_url`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "PublicKeys"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublicKeys {
    /// A JWK set inline (`{"keys": [...]}`). Exactly one of the four fields.
    pub(super) jwks: Option<serde_json::Value>,
    /// PEM public keys inline, each with its `kid`. Exactly one of the four fields.
    pub(super) pem: Option<Vec<RawPemKey>>,
    /// A JWK set fetched from an Envoy cluster. Exactly one of the four fields.
    pub(super) jwks_url: Option<RawKeyFetch>,
    /// One PEM per `kid`, fetched from `<path><kid>` on an Envoy cluster (AWS ALB). Exactly one
    /// of the four fields.
    pub(super) pem_url: Option<RawKeyFetch>,
}

/// A PEM public key and its `kid`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "PemKey"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawPemKey {
    /// The key id tokens name. Required.
    pub(super) id: String,
    /// The SPKI PEM (`-----BEGIN PUBLIC KEY-----`). Required.
    pub(super) pem: String,
}

/// Where keys are fetched from, and how often.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "KeyFetch"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyFetch {
    /// The Envoy cluster, 1-128 characters of `[A-Za-z0-9._:-]`. Required.
    pub(super) cluster: String,
    /// `:authority` of the fetch. Default: the cluster name.
    pub(super) authority: Option<String>,
    /// `:path` of the JWK set; for `pem_url`, the prefix the `kid` is appended to (ends in
    /// `/`). Required.
    pub(super) path: String,
    /// A good set is fetched again after this many seconds, 10 to 86400. Default 300.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::KEY_REFRESH_SECONDS.min, max = super::bounds::KEY_REFRESH_SECONDS.max))
    )]
    pub(super) refresh_seconds: Option<u64>,
    /// Past this many seconds without a good fetch the source is degraded and its assertions
    /// refused, 60 to 604800. Default 86400.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::KEY_MAX_STALE_SECONDS.min, max = super::bounds::KEY_MAX_STALE_SECONDS.max))
    )]
    pub(super) max_stale_seconds: Option<u64>,
    /// An unknown `kid` fetches again at most once per this many seconds per Envoy process, 1 to
    /// 3600. Default 30.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::KEY_REFETCH_SECONDS.min, max = super::bounds::KEY_REFETCH_SECONDS.max))
    )]
    pub(super) refetch_seconds: Option<u64>,
    /// Timeout of one fetch, 100 to 60000 ms. Default 2000.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = super::bounds::KEY_TIMEOUT_MS.min, max = super::bounds::KEY_TIMEOUT_MS.max))
    )]
    pub(super) timeout_ms: Option<u64>,
}

/// Who is a developer among the identities a source proves: at least one of `names`,
/// `domains`, `groups`, or `anyone: true`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Developers"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevelopers {
    /// Exact names (emails, holding `@`, compare ASCII case-insensitively). Default `[]`.
    #[serde(default)]
    pub(super) names: Vec<String>,
    /// Domains, without `@`: `user@<domain>` whose whole domain after the last `@` is listed,
    /// case-insensitively (`example.com` does not admit `evil-example.com`, `a.example.com` nor
    /// `x@example.com@evil.com`). Default `[]`.
    #[serde(default)]
    pub(super) domains: Vec<String>,
    /// The claim listing the user's groups (assertions only; an array of strings, absent: no
    /// groups, another type: `bad_claim`). Default `groups`.
    pub(super) groups_claim: Option<String>,
    /// A developer is in one of these groups (assertions only). Default `[]`.
    #[serde(default)]
    pub(super) groups: Vec<String>,
    /// Everyone the source proves is a developer. Default false.
    #[serde(default)]
    pub(super) anyone: bool,
}

/// A header naming the user, from a trusted proxy.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ProxyHeader"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxyHeader {
    /// The header (`x-auth-request-email`, `tailscale-user-login`), read in every spelling (two
    /// values are refused `malformed`); never devgate's identity or API headers nor another
    /// source's header. Removed before the upstream whoever sent it. Required.
    pub(super) header: String,
    /// The proxies' socket addresses: CIDRs with an explicit mask (`10.0.0.5/32`,
    /// `2001:db8::5/128`; a bare address is refused). Only the socket's address counts, never
    /// one Envoy took from `X-Forwarded-For`. Required.
    pub(super) from: Vec<String>,
    /// Who is a developer. Required.
    pub(super) developers: RawDevelopers,
}

/// Developers by client certificate. The developer's name is the matched value.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ClientCerts"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientCerts {
    /// URI SANs of developers (SPIFFE IDs). Default `[]`.
    #[serde(default)]
    pub(super) uri_sans: Vec<String>,
    /// DNS SANs of developers. Default `[]`.
    #[serde(default)]
    pub(super) dns_sans: Vec<String>,
    /// Email SANs of developers. Envoy 1.40 reports no email SAN to filters (neither the
    /// connection's attributes nor `x-forwarded-client-cert` carry one), so a non-empty list is
    /// refused at load rather than silently matching nothing: match the subject or a URI or DNS
    /// SAN instead. Default `[]`.
    #[serde(default)]
    pub(super) emails: Vec<String>,
    /// Subjects (RFC 2253) of developers. Default `[]`.
    #[serde(default)]
    pub(super) subjects: Vec<String>,
    /// Believe `x-forwarded-client-cert` from these socket peers (CIDRs with explicit masks):
    /// a proxy in front that terminated TLS. Absent: never.
    pub(super) forwarded_from: Option<Vec<String>>,
}

/// Validates `edge` into the core's policy. `reserved`: the headers devgate itself sets (the
/// identity header, the API headers), which no source may read.
pub(super) fn edge_policy(
    raw: RawEdge,
    reserved: &[&HeaderName],
) -> Result<EdgePolicy, ConfigError> {
    let mut policy = EdgePolicy::default();
    // Every header a source reads, with its field: none twice, none devgate's own.
    let mut read: Vec<(HeaderName, String)> = Vec::new();
    for (i, a) in raw.assertions.into_iter().enumerate() {
        let field = format!("edge.assertions[{i}]");
        let src = assertion(&field, a, &mut policy)?;
        if policy.assertions.iter().any(|s| s.name == src.name) {
            return Err(err(format!("{field}.name"), "used by another assertion"));
        }
        if let Carrier::Header(h) = &src.carrier {
            claim_header(&mut read, reserved, h, format!("{field}.header"))?;
        }
        policy.assertions.push(src);
    }
    for (i, p) in raw.proxy_headers.into_iter().enumerate() {
        let field = format!("edge.proxy_headers[{i}]");
        let header = HeaderName::parse(&p.header).map_err(|m| err(format!("{field}.header"), m))?;
        claim_header(&mut read, reserved, &header, format!("{field}.header"))?;
        let from = masked_cidrs(&format!("{field}.from"), &p.from)?;
        let developers = developers(&format!("{field}.developers"), p.developers, false)?;
        policy.proxy_headers.push(ProxyHeaderSource {
            header,
            from,
            developers,
        });
    }
    if let Some(c) = raw.client_certs {
        policy.client_certs = Some(client_certs(c)?);
    }
    Ok(policy)
}

/// Records that a source reads `header` (`field`): refused when devgate sets it or another
/// source reads it.
fn claim_header(
    read: &mut Vec<(HeaderName, String)>,
    reserved: &[&HeaderName],
    header: &HeaderName,
    field: String,
) -> Result<(), ConfigError> {
    if reserved.contains(&header) {
        return Err(err(
            field,
            "is a header devgate sets itself (the identity header or an API header)",
        ));
    }
    if let Some((_, other)) = read.iter().find(|(h, _)| h == header) {
        return Err(err(field, format!("is already read by {other}")));
    }
    read.push((header.clone(), field));
    Ok(())
}

/// A profile's defaults: header (`None`: `Authorization: Bearer`), algorithms, issuer, headers
/// and header prefixes to strip.
struct Defaults {
    header: Option<&'static str>,
    algorithms: &'static [Alg],
    issuer: Option<&'static str>,
    strip: &'static [&'static str],
    strip_prefixes: &'static [&'static str],
}

fn defaults(profile: RawProfile) -> Defaults {
    match profile {
        RawProfile::GoogleIap => Defaults {
            header: Some("x-goog-iap-jwt-assertion"),
            algorithms: &[Alg::Es256],
            issuer: Some("https://cloud.google.com/iap"),
            strip: &[],
            strip_prefixes: &["x-goog-authenticated-user-"],
        },
        RawProfile::CloudflareAccess => Defaults {
            header: Some("cf-access-jwt-assertion"),
            algorithms: &[Alg::Rs256],
            issuer: None,
            strip: &["cf-access-authenticated-user-email"],
            strip_prefixes: &[],
        },
        RawProfile::Pomerium => Defaults {
            header: Some("x-pomerium-jwt-assertion"),
            algorithms: &[Alg::Es256],
            issuer: None,
            strip: &[],
            strip_prefixes: &["x-pomerium-claim-"],
        },
        RawProfile::AwsAlb => Defaults {
            header: Some("x-amzn-oidc-data"),
            algorithms: &[Alg::Es256],
            issuer: None,
            strip: &["x-amzn-oidc-identity"],
            strip_prefixes: &[],
        },
        RawProfile::Oidc => Defaults {
            header: None,
            algorithms: &[],
            issuer: None,
            strip: &[],
            strip_prefixes: &[],
        },
    }
}

fn profile(raw: RawProfile) -> Profile {
    match raw {
        RawProfile::GoogleIap => Profile::GoogleIap,
        RawProfile::CloudflareAccess => Profile::CloudflareAccess,
        RawProfile::Pomerium => Profile::Pomerium,
        RawProfile::AwsAlb => Profile::AwsAlb,
        RawProfile::Oidc => Profile::Oidc,
    }
}

/// A source name: 1-32 of `[a-z0-9_]`.
fn name_ok(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// An issuer or audience: 1 to 1024 bytes, no control characters.
fn text_ok(v: &str) -> bool {
    (1..=1024).contains(&v.len()) && !v.chars().any(char::is_control)
}

/// The registered claims devgate checks itself: never the developer's or the groups' claim.
const REGISTERED: [&str; 5] = ["iss", "aud", "exp", "nbf", "iat"];

fn claim_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 128 {
        return Err(err(field, "must be 1 to 128 bytes"));
    }
    if REGISTERED.contains(&name) {
        return Err(err(field, "is a registered claim devgate checks itself"));
    }
    Ok(())
}

/// `/projects/NUM/global/backendServices/ID` or `/projects/NUM/apps/PROJECT`.
fn iap_audience_ok(aud: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = aud.strip_prefix("/projects/") else {
        return false;
    };
    let Some((number, rest)) = rest.split_once('/') else {
        return false;
    };
    if !digits(number) {
        return false;
    }
    if let Some(id) = rest.strip_prefix("global/backendServices/") {
        return digits(id);
    }
    rest.strip_prefix("apps/").is_some_and(|project| {
        (1..=128).contains(&project.len())
            && project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'))
    })
}

/// `https://<team>.cloudflareaccess.com`.
fn cloudflare_issuer_ok(iss: &str) -> bool {
    iss.strip_prefix("https://")
        .and_then(|h| h.strip_suffix(".cloudflareaccess.com"))
        .is_some_and(|team| {
            (1..=63).contains(&team.len())
                && team
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn assertion(
    field: &str,
    a: RawAssertion,
    policy: &mut EdgePolicy,
) -> Result<AssertionSource, ConfigError> {
    if !name_ok(&a.name) {
        return Err(err(format!("{field}.name"), "1-32 characters of a-z0-9_"));
    }
    let d = defaults(a.profile);
    let alb = a.profile == RawProfile::AwsAlb;
    let carrier = match a.header.as_deref().or(d.header) {
        Some(h) => {
            Carrier::Header(HeaderName::parse(h).map_err(|m| err(format!("{field}.header"), m))?)
        }
        None => Carrier::Bearer,
    };
    let algorithms = algorithms(
        &format!("{field}.algorithms"),
        a.algorithms.as_deref(),
        d.algorithms,
    )?;
    let issuer = match (a.issuer, d.issuer) {
        (Some(i), _) => i,
        (None, Some(i)) => i.to_string(),
        (None, None) => {
            return Err(err(
                format!("{field}.issuer"),
                format!("required for the {} profile", profile(a.profile).code()),
            ))
        }
    };
    if !text_ok(&issuer) {
        return Err(err(
            format!("{field}.issuer"),
            "must be 1 to 1024 bytes without control characters",
        ));
    }
    if a.profile == RawProfile::CloudflareAccess && !cloudflare_issuer_ok(&issuer) {
        return Err(err(
            format!("{field}.issuer"),
            "must be https://<team>.cloudflareaccess.com (the team's domain)",
        ));
    }
    if a.audiences.is_empty() {
        return Err(err(
            format!("{field}.audiences"),
            "must list at least one audience (an assertion meant for another application is refused)",
        ));
    }
    for (j, aud) in a.audiences.iter().enumerate() {
        if !text_ok(aud) {
            return Err(err(
                format!("{field}.audiences[{j}]"),
                "must be 1 to 1024 bytes without control characters",
            ));
        }
        if a.profile == RawProfile::GoogleIap && !iap_audience_ok(aud) {
            return Err(err(
                format!("{field}.audiences[{j}]"),
                "must be /projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID or /projects/PROJECT_NUMBER/apps/PROJECT_ID",
            ));
        }
    }
    let claim = a.claim.unwrap_or_else(|| "email".to_string());
    claim_name(&format!("{field}.claim"), &claim)?;
    if !LEEWAY_SECONDS.contains(a.leeway_seconds) {
        return Err(err(format!("{field}.leeway_seconds"), leeway_message()));
    }
    let signer = match (alb, a.signer) {
        (true, Some(s)) if s.starts_with("arn:") && text_ok(&s) => Some(s),
        (true, Some(_)) => {
            return Err(err(
                format!("{field}.signer"),
                "must be the load balancer's ARN (arn:aws:elasticloadbalancing:...)",
            ))
        }
        (true, None) => {
            return Err(err(
                format!("{field}.signer"),
                "required for the aws_alb profile: the load balancer's ARN",
            ))
        }
        (false, Some(_)) => {
            return Err(err(
                format!("{field}.signer"),
                "only for the aws_alb profile",
            ))
        }
        (false, None) => None,
    };
    let keys = public_keys(&format!("{field}.keys"), a.keys, alb)?;
    let developers = developers(&format!("{field}.developers"), a.developers, true)?;
    if developers.uses_groups() {
        if let Some(g) = &developers.groups_claim {
            if *g == claim {
                return Err(err(
                    format!("{field}.developers.groups_claim"),
                    "must differ from claim",
                ));
            }
        }
    }
    let allow_from = match &a.allow_from {
        Some(list) => Some(cidrs(&format!("{field}.allow_from"), list)?),
        None => None,
    };
    for s in d.strip {
        let h = HeaderName::parse(s).map_err(|m| err(field, m))?;
        if !policy.strip.contains(&h) {
            policy.strip.push(h);
        }
    }
    for p in d.strip_prefixes {
        if !policy.strip_prefixes.iter().any(|q| q == p) {
            policy.strip_prefixes.push((*p).to_string());
        }
    }
    Ok(AssertionSource {
        name: a.name,
        profile: profile(a.profile),
        carrier,
        algorithms,
        keys,
        issuer,
        audiences: a.audiences,
        claim,
        leeway: a.leeway_seconds,
        signer,
        padded: alb,
        developers,
        allow_from,
    })
}

/// `keys`: exactly one of `jwks`, `pem`, `jwks_url`, `pem_url` (`alb`: `pem` or `pem_url`).
fn public_keys(field: &str, k: RawPublicKeys, alb: bool) -> Result<KeyLocation, ConfigError> {
    let given = [
        k.jwks.is_some(),
        k.pem.is_some(),
        k.jwks_url.is_some(),
        k.pem_url.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(err(
            field,
            "needs exactly one of jwks, pem, jwks_url, pem_url",
        ));
    }
    if alb && (k.jwks.is_some() || k.jwks_url.is_some()) {
        return Err(err(
            field,
            "the aws_alb profile's keys are one PEM per kid: pem_url (or pem)",
        ));
    }
    if let Some(fetch) = k.jwks_url {
        return Ok(KeyLocation::Jwks(key_fetch(
            &format!("{field}.jwks_url"),
            fetch,
            false,
        )?));
    }
    if let Some(fetch) = k.pem_url {
        return Ok(KeyLocation::PemPerKid(key_fetch(
            &format!("{field}.pem_url"),
            fetch,
            true,
        )?));
    }
    match inline_keys(field, k.jwks.as_ref(), k.pem.as_deref())? {
        Some(keys) => Ok(KeyLocation::Inline(keys)),
        None => Err(err(
            field,
            "needs exactly one of jwks, pem, jwks_url, pem_url",
        )),
    }
}

fn bounded(
    field: String,
    value: Option<u64>,
    default: u64,
    b: &Bounds,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    match b.contains(v) {
        true => Ok(v),
        false => Err(err(field, between(b, ""))),
    }
}

/// A key fetch (`per_kid`: the path is a prefix the `kid` is appended to).
fn key_fetch(field: &str, f: RawKeyFetch, per_kid: bool) -> Result<KeyFetch, ConfigError> {
    if !envoy_name_ok(&f.cluster) {
        return Err(err(
            format!("{field}.cluster"),
            "an Envoy cluster name: 1-128 characters of A-Za-z0-9._:-",
        ));
    }
    let authority = f.authority.unwrap_or_else(|| f.cluster.clone());
    if !envoy_name_ok(&authority) {
        return Err(err(
            format!("{field}.authority"),
            "a host name: 1-128 characters of A-Za-z0-9._:-",
        ));
    }
    let path_ok = f.path.starts_with('/')
        && f.path.len() <= 1024
        && f.path.bytes().all(|b| b.is_ascii_graphic())
        && !f.path.contains('?')
        && !f.path.contains('#');
    if !path_ok {
        return Err(err(
            format!("{field}.path"),
            "a request path starting with / (visible ASCII, no query)",
        ));
    }
    if per_kid && !f.path.ends_with('/') {
        return Err(err(
            format!("{field}.path"),
            "ends with / (the kid is appended to it)",
        ));
    }
    let refresh_seconds = bounded(
        format!("{field}.refresh_seconds"),
        f.refresh_seconds,
        300,
        &KEY_REFRESH_SECONDS,
    )?;
    let max_stale_seconds = bounded(
        format!("{field}.max_stale_seconds"),
        f.max_stale_seconds,
        86_400,
        &KEY_MAX_STALE_SECONDS,
    )?;
    if max_stale_seconds < refresh_seconds {
        return Err(err(
            format!("{field}.max_stale_seconds"),
            "at least refresh_seconds",
        ));
    }
    let refetch_seconds = bounded(
        format!("{field}.refetch_seconds"),
        f.refetch_seconds,
        30,
        &KEY_REFETCH_SECONDS,
    )?;
    let timeout_ms = bounded(
        format!("{field}.timeout_ms"),
        f.timeout_ms,
        2000,
        &KEY_TIMEOUT_MS,
    )?;
    Ok(KeyFetch {
        store_key: store_key(&f.cluster, &authority, &f.path),
        cluster: f.cluster,
        authority,
        path: f.path,
        refresh_seconds,
        max_stale_seconds,
        refetch_seconds,
        timeout_ms,
    })
}

/// Where the keys fetched from `cluster`, `authority` and `path` live in shared data:
/// `devgate.edge.keys.` and 32 hex digits of a SHA-256 over the three, each length-prefixed (as
/// [`crate::core::revocation::source_keys`]): every source fetching the same keys shares them,
/// two different ones never do.
pub(super) fn store_key(cluster: &str, authority: &str, path: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut hash = Sha256::new();
    for part in [cluster, authority, path] {
        hash.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let mut key = String::from("devgate.edge.keys.");
    for b in hash.finalize().iter().take(16) {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// CIDRs that must each carry an explicit `/mask`: a bare address is refused, so an entry
/// never means more (or less) than the operator wrote (Grafana's CVE-2026-33376 widened such
/// entries).
fn masked_cidrs(field: &str, items: &[String]) -> Result<CidrList, ConfigError> {
    if items.is_empty() {
        return Err(err(field, "must list at least one proxy address"));
    }
    for (i, s) in items.iter().enumerate() {
        if !s.contains('/') {
            return Err(err(
                format!("{field}[{i}]"),
                "needs an explicit mask (10.0.0.5/32, 2001:db8::5/128)",
            ));
        }
    }
    cidrs(field, items)
}

/// `developers`; `groups_allowed`: the source has a groups claim (assertions).
fn developers(
    field: &str,
    d: RawDevelopers,
    groups_allowed: bool,
) -> Result<Developers, ConfigError> {
    if !groups_allowed && (d.groups_claim.is_some() || !d.groups.is_empty()) {
        return Err(err(
            field,
            "groups and groups_claim apply to assertions only",
        ));
    }
    if d.names.is_empty() && d.domains.is_empty() && d.groups.is_empty() && !d.anyone {
        return Err(err(
            field,
            "needs at least one of names, domains, groups, or anyone: true",
        ));
    }
    for (i, n) in d.names.iter().enumerate() {
        if !is_valid_subject(n) {
            return Err(err(
                format!("{field}.names[{i}]"),
                "1 to 256 visible ASCII characters",
            ));
        }
    }
    let mut domains = Vec::with_capacity(d.domains.len());
    for (i, dom) in d.domains.iter().enumerate() {
        let ok = (1..=253).contains(&dom.len())
            && dom
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
            && !dom.starts_with('.')
            && !dom.ends_with('.');
        if !ok {
            return Err(err(
                format!("{field}.domains[{i}]"),
                "a domain without @ (example.com): letters, digits, . and -",
            ));
        }
        domains.push(dom.to_ascii_lowercase());
    }
    if let Some(g) = &d.groups_claim {
        claim_name(&format!("{field}.groups_claim"), g)?;
    }
    for (i, g) in d.groups.iter().enumerate() {
        if g.is_empty() || g.len() > 256 {
            return Err(err(format!("{field}.groups[{i}]"), "1 to 256 bytes"));
        }
    }
    let groups_claim = match d.groups.is_empty() {
        true => d.groups_claim,
        false => Some(d.groups_claim.unwrap_or_else(|| "groups".to_string())),
    };
    Ok(Developers {
        names: d.names,
        domains,
        groups_claim,
        groups: d.groups,
        anyone: d.anyone,
    })
}

fn client_certs(c: RawClientCerts) -> Result<ClientCertSource, ConfigError> {
    const FIELD: &str = "edge.client_certs";
    if !c.emails.is_empty() {
        return Err(err(
            format!("{FIELD}.emails"),
            "Envoy reports no email SAN to filters, so this would match nothing: list the \
             certificate's subject, URI SAN or DNS SAN instead",
        ));
    }
    if c.uri_sans.is_empty() && c.dns_sans.is_empty() && c.subjects.is_empty() {
        return Err(err(
            FIELD,
            "needs at least one of uri_sans, dns_sans, subjects",
        ));
    }
    for (name, list) in [
        ("uri_sans", &c.uri_sans),
        ("dns_sans", &c.dns_sans),
        ("emails", &c.emails),
        ("subjects", &c.subjects),
    ] {
        for (i, v) in list.iter().enumerate() {
            if !is_valid_subject(v) {
                return Err(err(
                    format!("{FIELD}.{name}[{i}]"),
                    "1 to 256 visible ASCII characters (it becomes the identity header)",
                ));
            }
        }
    }
    let forwarded_from = match &c.forwarded_from {
        Some(list) => Some(masked_cidrs(&format!("{FIELD}.forwarded_from"), list)?),
        None => None,
    };
    Ok(ClientCertSource {
        uri_sans: c.uri_sans,
        dns_sans: c.dns_sans,
        emails: c.emails,
        subjects: c.subjects,
        forwarded_from,
    })
}

#[cfg(test)]
#[path = "tests_edge.rs"]
mod tests;

//! `edge`: assertions, proxy headers and client certificates, validated into the core's
//! [`EdgePolicy`]. Every error names its field under `edge`. The raw types are here, beside their
//! validation; `RawConfig.edge` holds them. SKELETON: validation filled in by the edge work.

#![allow(dead_code)] // SKELETON: read once the validation is filled in.

use serde::Deserialize;

use super::{err, ConfigError, Environment};
use crate::core::edge::EdgePolicy;

/// Developers as the team's edge already knows them: signed assertions from an identity-aware
/// proxy or an IdP, identity headers from a trusted proxy, client certificates.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Edge"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawEdge {
    /// Signed assertions (JWTs) verified against their issuer's public keys, tried in order.
    /// Default `[]`.
    #[serde(default)]
    pub(super) assertions: Vec<RawAssertion>,
    /// Headers naming the user, believed only from the listed proxies' socket addresses.
    /// Default `[]`.
    #[serde(default)]
    pub(super) proxy_headers: Vec<RawProxyHeader>,
    /// Developers by the connection's client certificate, as Envoy's TLS listener validated it.
    /// Absent: certificates make no developer.
    pub(super) client_certs: Option<RawClientCerts>,
}

/// A provider whose header, algorithms, issuer and quirks devgate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub(super) enum RawProfile {
    /// Google Cloud IAP: `x-goog-iap-jwt-assertion`, ES256, issuer
    /// `https://cloud.google.com/iap`; the unsigned `x-goog-authenticated-user-*` headers are
    /// stripped, never believed.
    GoogleIap,
    /// Cloudflare Access: `cf-access-jwt-assertion`, RS256; `issuer` is
    /// `https://<team>.cloudflareaccess.com`, keys at its `/cdn-cgi/access/certs`.
    CloudflareAccess,
    /// Pomerium: `x-pomerium-jwt-assertion`, ES256, keys at `/.well-known/pomerium/jwks.json`;
    /// the unsigned `x-pomerium-claim-*` headers are stripped, never believed.
    Pomerium,
    /// AWS ALB: `x-amzn-oidc-data`, ES256, one PEM per `kid` (`keys.pem_url`), the header's
    /// `signer` must equal `signer`, padded base64url accepted.
    AwsAlb,
    /// Any OpenID Connect issuer's ID token as `Authorization: Bearer`; `algorithms`,
    /// `issuer` and `keys` required.
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
    /// The header the assertion travels in. Default: the profile's (`oidc`: `Authorization:
    /// Bearer`).
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
    /// The claim naming the developer. Default `email`.
    pub(super) claim: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, 0 to 300 seconds. Default 30.
    #[serde(default = "super::raw::default_leeway_pub")]
    pub(super) leeway_seconds: u64,
    /// `aws_alb` only, required there: the load balancer's ARN, which the assertion header's
    /// `signer` must equal.
    pub(super) signer: Option<String>,
    /// Who is a developer. Required.
    pub(super) developers: RawDevelopers,
    /// CIDRs (socket peers) the assertion is honoured from: the edge proxy's addresses.
    /// Absent: any peer.
    pub(super) allow_from: Option<Vec<String>>,
}

/// Public keys: exactly one of `jwks`, `pem`, `jwks_url`, `pem_url`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "PublicKeys"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublicKeys {
    /// A JWK set inline (`{"keys": [...]}`).
    pub(super) jwks: Option<serde_json::Value>,
    /// PEM public keys inline, each with its `kid`.
    pub(super) pem: Option<Vec<RawPemKey>>,
    /// A JWK set fetched from an Envoy cluster.
    pub(super) jwks_url: Option<RawKeyFetch>,
    /// One PEM per `kid`, fetched from `<path><kid>` on an Envoy cluster (AWS ALB).
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
    pub(super) refresh_seconds: Option<u64>,
    /// Past this many seconds without a good fetch the source is degraded and its assertions
    /// refused, 60 to 604800. Default 86400.
    pub(super) max_stale_seconds: Option<u64>,
    /// An unknown `kid` fetches again at most once per this many seconds per Envoy process, 1 to
    /// 3600. Default 30.
    pub(super) refetch_seconds: Option<u64>,
    /// Timeout of one fetch, 100 to 60000 ms. Default 2000.
    pub(super) timeout_ms: Option<u64>,
}

/// Who is a developer among the identities a source proves: at least one of `names`,
/// `domains`, `groups`, or `anyone: true`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Developers"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevelopers {
    /// Exact names (emails compare case-insensitively). Default `[]`.
    #[serde(default)]
    pub(super) names: Vec<String>,
    /// Domains: `user@<domain>` whose whole domain after `@` is listed (`example.com` does not
    /// admit `evil-example.com` nor `a.example.com`). Default `[]`.
    #[serde(default)]
    pub(super) domains: Vec<String>,
    /// The claim listing the user's groups (assertions only). Default `groups`.
    pub(super) groups_claim: Option<String>,
    /// A developer is in one of these groups. Default `[]`.
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
    /// The header (`x-auth-request-email`, `tailscale-user-login`). Required.
    pub(super) header: String,
    /// The proxies' socket addresses: CIDRs with an explicit mask (`10.0.0.5/32`). Required.
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
    /// Email SANs of developers. Default `[]`.
    #[serde(default)]
    pub(super) emails: Vec<String>,
    /// Subjects (RFC 2253) of developers. Default `[]`.
    #[serde(default)]
    pub(super) subjects: Vec<String>,
    /// Believe `x-forwarded-client-cert` from these socket peers (CIDRs with explicit masks):
    /// a proxy in front that terminated TLS. Absent: never.
    pub(super) forwarded_from: Option<Vec<String>>,
}

/// Validates `edge` into the core's policy.
pub(super) fn edge_policy(raw: RawEdge, env: &Environment<'_>) -> Result<EdgePolicy, ConfigError> {
    let _ = (raw, env);
    Err(err("edge", "not supported yet"))
}

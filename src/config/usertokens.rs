//! `api.user_tokens` and each route's `user_tokens`: user tokens on API routes, validated into
//! the core's [`UserTokens`] and [`UserRoute`]. Every error names its field.

use serde::Deserialize;

use super::bounds::LEEWAY_SECONDS;
use super::edge::RawPublicKeys;
use super::keyservice::check_claim_names;
use super::publickeys::inline_key_source;
use super::raw::RawKey;
use super::{err, keyset, leeway_message, ConfigError, Environment};
use crate::core::apikey::{is_valid_id, MAX_LIST};
use crate::core::keyservice::KeyService;
use crate::core::keysource::KeySource;
use crate::core::usertoken::{Require, Segment, UserClaimNames, UserRoute, UserTokens};

/// The longest `issuer` / `audience` / origin (bytes).
const MAX_TEXT: usize = 1024;

/// User tokens (`Authorization: Bearer <JWT>`) the authentication service issues to the
/// application's users, accepted on API routes with `user_tokens`; verified locally (HS256
/// `keys`, or `public_keys` with `algorithms`).
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "UserTokens"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserTokens {
    /// The HS256 keys user tokens are signed with (`kid`); at most one of `keys` and
    /// `public_keys`. Default (neither given): the key service's keys when `api.service` is set;
    /// required otherwise.
    pub(super) keys: Option<Vec<RawKey>>,
    /// The public keys user tokens are signed with (inline `jwks` or `pem`; `kid`), instead of
    /// HS256 `keys`; `jwks_url`/`pem_url` are refused here. Default (neither given): the key
    /// service's keys.
    pub(super) public_keys: Option<RawPublicKeys>,
    /// The algorithms accepted with `public_keys`, from `ES256`, `ES384`, `RS256`, `PS256`,
    /// `EdDSA`; each must fit one of the keys. Required with `public_keys`. Absent otherwise.
    pub(super) algorithms: Option<Vec<String>>,
    /// Required `iss`, 1-1024 bytes. Absent: not checked.
    pub(super) issuer: Option<String>,
    /// Required `aud` (or one of its members), 1-1024 bytes. Absent: not checked.
    pub(super) audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub(super) leeway_seconds: u64,
    /// The claim names a user token is read with.
    #[serde(default)]
    pub(super) claims: RawUserClaims,
}

fn default_leeway() -> u64 {
    30
}

impl Default for RawUserTokens {
    fn default() -> Self {
        RawUserTokens {
            keys: None,
            public_keys: None,
            algorithms: None,
            issuer: None,
            audience: None,
            leeway_seconds: default_leeway(),
            claims: RawUserClaims::default(),
        }
    }
}

/// The claim names of a user token: 1-128 bytes each, all different, none of `exp`, `nbf`,
/// `iat`, `iss`, `aud`.
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "UserTokenClaims"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserClaims {
    /// The user's id (a string, 1-64 of `[A-Za-z0-9._:-]`). Default `sub`.
    pub(super) user: Option<String>,
    /// The organizations the user is a member of (an array of ids). Default `organizations`.
    pub(super) organizations: Option<String>,
    /// The organizations the user owns (an array of ids). Default `owned_organizations`.
    pub(super) owned: Option<String>,
    /// Whether the user is staff (a boolean). Default `is_staff`.
    pub(super) staff: Option<String>,
    /// Whether the user is a superuser (a boolean). Default `is_superuser`.
    pub(super) superuser: Option<String>,
    /// The token's id, refused when the revocation list's `tokens` names it. Default `jti`.
    pub(super) id: Option<String>,
}

/// What an API route requires of a user token.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "RouteUserTokens"))]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouteUserTokens {
    /// `member` or `owner` of the organization in the path, `staff`, `superuser` or
    /// `staff_or_superuser`. Required.
    pub(super) require: Require,
    /// Browser origins (`https://host[:port]`, lower case) allowed to send user tokens; a
    /// request without `Origin` is a non-browser client and allowed. Default `[]`.
    #[serde(default)]
    pub(super) origins: Vec<String>,
    /// The path template the route's paths start with, e.g.
    /// `/v1/organizations/{organization}/projects/{project}/`: literal segments and the
    /// parameters `{organization}` and `{project}` (each at most once). A request whose path
    /// does not start with it, or whose parameter is not a plain segment, is refused
    /// `bad_path`. Required when `require` is `member` or `owner` (with `{organization}`);
    /// Absent: no path parameters.
    pub(super) path: Option<String>,
}

/// Validates `api.user_tokens` (absent: defaults) against the key service's keys.
pub(super) fn user_tokens(
    raw: Option<RawUserTokens>,
    service: Option<&KeyService>,
    env: &Environment<'_>,
) -> Result<UserTokens, ConfigError> {
    const FIELD: &str = "api.user_tokens";
    let raw = raw.unwrap_or_default();
    if raw.algorithms.is_some() && raw.public_keys.is_none() {
        return Err(err(
            format!("{FIELD}.algorithms"),
            "only with public_keys (keys are HS256)",
        ));
    }
    let keys = match (raw.keys, raw.public_keys, service) {
        (Some(_), Some(_), _) => {
            return Err(err(
                FIELD,
                "exactly one of keys (HS256) and public_keys, not both",
            ))
        }
        (Some(keys), None, _) if keys.is_empty() => {
            return Err(err(format!("{FIELD}.keys"), "must list at least one key"))
        }
        (Some(keys), None, _) => KeySource::Hmac(keyset(&format!("{FIELD}.keys"), keys, env)?),
        (None, Some(public), _) => inline_key_source(FIELD, &public, raw.algorithms.as_deref())?,
        (None, None, Some(s)) => s.signing.clone(),
        (None, None, None) => {
            return Err(err(
                format!("{FIELD}.keys"),
                "required (or public_keys) when api.service is not set (routes take user tokens)",
            ))
        }
    };
    let text = |field: &str, v: Option<String>| match v {
        Some(v) if v.is_empty() || v.len() > MAX_TEXT => Err(err(
            format!("{FIELD}.{field}"),
            "must be 1 to 1024 bytes (omit it to not check it)",
        )),
        other => Ok(other),
    };
    let issuer = text("issuer", raw.issuer)?;
    let audience = text("audience", raw.audience)?;
    if !LEEWAY_SECONDS.contains(raw.leeway_seconds) {
        return Err(err(format!("{FIELD}.leeway_seconds"), leeway_message()));
    }
    let d = UserClaimNames::default();
    let c = raw.claims;
    let claims = UserClaimNames {
        user: c.user.unwrap_or(d.user),
        organizations: c.organizations.unwrap_or(d.organizations),
        owned: c.owned.unwrap_or(d.owned),
        staff: c.staff.unwrap_or(d.staff),
        superuser: c.superuser.unwrap_or(d.superuser),
        id: c.id.unwrap_or(d.id),
    };
    let all = [
        ("user", &claims.user),
        ("organizations", &claims.organizations),
        ("owned", &claims.owned),
        ("staff", &claims.staff),
        ("superuser", &claims.superuser),
        ("id", &claims.id),
    ];
    check_claim_names(FIELD, &all)?;
    Ok(UserTokens {
        keys,
        issuer,
        audience,
        leeway: raw.leeway_seconds,
        claims,
    })
}

/// Validates `api.routes[i].user_tokens`.
pub(super) fn user_route(field: &str, raw: RawRouteUserTokens) -> Result<UserRoute, ConfigError> {
    if raw.origins.len() > MAX_LIST {
        return Err(err(format!("{field}.origins"), "at most 32 origins"));
    }
    for (i, o) in raw.origins.iter().enumerate() {
        if !origin_ok(o) {
            return Err(err(
                format!("{field}.origins[{i}]"),
                "an origin: http:// or https:// and a lower-case host[:port], no path",
            ));
        }
    }
    let path = match &raw.path {
        Some(p) => template(p).map_err(|m| err(format!("{field}.path"), m))?,
        None => Vec::new(),
    };
    if raw.require.needs_organization() && !path.contains(&Segment::Organization) {
        return Err(err(
            format!("{field}.path"),
            "member and owner need the organization in the path: a template with \
             {organization}",
        ));
    }
    Ok(UserRoute {
        require: raw.require,
        origins: raw.origins,
        path,
    })
}

fn origin_ok(o: &str) -> bool {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && o.len() <= MAX_TEXT
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b))
    })
}

fn template(text: &str) -> Result<Vec<Segment>, String> {
    let bad = || {
        "a path template: /, then segments of [A-Za-z0-9._:~-] or {organization} or {project} \
         (each once), at most 1024 bytes"
            .to_string()
    };
    let rest = text.strip_prefix('/').ok_or_else(bad)?;
    if text.len() > MAX_TEXT {
        return Err(bad());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = Vec::new();
    if rest.is_empty() {
        return Ok(out);
    }
    for seg in rest.split('/') {
        let s = match seg {
            "{organization}" => Segment::Organization,
            "{project}" => Segment::Project,
            _ if is_valid_id(seg.trim_matches('~')) && !seg.ends_with('.') => {
                Segment::Literal(seg.to_string())
            }
            _ => return Err(bad()),
        };
        if s != Segment::Literal(seg.to_string()) && out.contains(&s) {
            return Err(format!("{seg} appears twice"));
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::parse_policy_with_env;
    use crate::core::usertoken::{Require, Segment};

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn env(v: &str) -> Option<String> {
        matches!(v, "KS" | "UT").then(|| SECRET.to_string())
    }

    /// `api` with the key service (or not), one route with `route_users` and `users` as
    /// `api.user_tokens` (empty: absent).
    fn config(service: bool, route_users: &str, users: &str) -> String {
        let service = if service {
            r#", "service": {"cluster": "ks", "keys": [{"id": "ks1", "secret_env": "KS"}]}"#
        } else {
            ""
        };
        let users = if users.is_empty() {
            String::new()
        } else {
            format!(r#", "user_tokens": {users}"#)
        };
        let keys = if service.is_empty() {
            r#""keys": [{"id": "k1", "secret_env": "KS"}], "#
        } else {
            ""
        };
        format!(
            r#"{{{keys}"api": {{"routes": [{{"prefix": "/v1/", "product": "p",
                "user_tokens": {route_users}}}]{service}{users}}}}}"#
        )
    }

    fn field(service: bool, route_users: &str, users: &str) -> String {
        parse_policy_with_env(config(service, route_users, users).as_bytes(), &env)
            .unwrap_err()
            .field
    }

    #[test]
    fn defaults_take_the_key_services_keys_and_claim_names() {
        let route = r#"{"require": "member", "path": "/v1/organizations/{organization}/projects/{project}/"}"#;
        let p = parse_policy_with_env(config(true, route, "").as_bytes(), &env).unwrap();
        let api = p.api.unwrap();
        let users = api.user_tokens.unwrap();
        assert_eq!(users.leeway, 30);
        assert_eq!(users.claims.user, "sub");
        assert_eq!(users.claims.owned, "owned_organizations");
        assert_eq!(api.headers.user.as_str(), "x-devgate-user");
        let r = api.routes[0].user_tokens.clone().unwrap();
        assert_eq!(r.require, Require::Member);
        assert_eq!(
            r.path,
            vec![
                Segment::Literal("v1".into()),
                Segment::Literal("organizations".into()),
                Segment::Organization,
                Segment::Literal("projects".into()),
                Segment::Project,
            ]
        );
        assert!(r.origins.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let staff = r#"{"require": "staff"}"#;
        let f = "api.routes[0].user_tokens";
        assert_eq!(field(false, staff, ""), "api.user_tokens.keys");
        assert_eq!(
            field(false, staff, r#"{"keys": []}"#),
            "api.user_tokens.keys"
        );
        assert_eq!(
            field(
                false,
                staff,
                r#"{"keys": [{"id": "u1", "secret_env": "NOPE"}]}"#
            ),
            "api.user_tokens.keys[0].secret_env"
        );
        assert_eq!(
            field(true, staff, r#"{"issuer": ""}"#),
            "api.user_tokens.issuer"
        );
        assert_eq!(
            field(true, staff, r#"{"audience": ""}"#),
            "api.user_tokens.audience"
        );
        assert_eq!(
            field(true, staff, r#"{"leeway_seconds": 301}"#),
            "api.user_tokens.leeway_seconds"
        );
        assert_eq!(
            field(true, staff, r#"{"claims": {"user": "exp"}}"#),
            "api.user_tokens.claims.user"
        );
        assert_eq!(
            field(true, staff, r#"{"claims": {"staff": "sub"}}"#),
            "api.user_tokens.claims.staff"
        );
        assert_eq!(
            field(true, staff, r#"{"extra": 1}"#),
            "api.user_tokens.extra"
        );
        assert_eq!(
            field(true, r#"{"require": "admin"}"#, ""),
            format!("{f}.require")
        );
        assert_eq!(
            field(true, r#"{"require": "member"}"#, ""),
            format!("{f}.path")
        );
        assert_eq!(
            field(true, r#"{"require": "owner", "path": "/v1/{project}"}"#, ""),
            format!("{f}.path")
        );
        for bad in [
            "v1/{organization}",
            "/v1/{org}",
            "/v1/a%2F/{organization}",
            "/{organization}/{organization}",
            "/v1/../{organization}",
        ] {
            let route = format!(r#"{{"require": "member", "path": "{bad}"}}"#);
            assert_eq!(field(true, &route, ""), format!("{f}.path"), "{bad}");
        }
        for bad in [
            "console.example.com",
            "https://Console.example.com",
            "https://a/b",
            "ftp://a",
        ] {
            let route =
                format!(r#"{{"require": "staff", "origins": ["https://ok.example", "{bad}"]}}"#);
            assert_eq!(field(true, &route, ""), format!("{f}.origins[1]"), "{bad}");
        }
        // user_tokens without a route that takes them.
        let json = r#"{"keys": [{"id": "k1", "secret_env": "KS"}],
            "api": {"routes": [{"prefix": "/v1/", "product": "p"}], "user_tokens": {}}}"#;
        assert_eq!(
            parse_policy_with_env(json.as_bytes(), &env)
                .unwrap_err()
                .field,
            "api.user_tokens"
        );
        // The user header is one of the API headers: distinct from the others.
        let json = r#"{"keys": [{"id": "k1", "secret_env": "KS"}],
            "api": {"routes": [{"prefix": "/v1/", "product": "p"}],
                    "headers": {"user": "x-devgate-key-id"}}}"#;
        assert_eq!(
            parse_policy_with_env(json.as_bytes(), &env)
                .unwrap_err()
                .field,
            "api.headers"
        );
    }
}

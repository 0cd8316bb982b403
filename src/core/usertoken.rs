//! User tokens on API routes: access tokens the authentication service issued to the
//! application's users (`Authorization: Bearer <JWT>`), verified locally with the service's
//! keys ([`KeySource`]), and the route's requirement on them (member or owner of the
//! organization named in the path, staff, superuser), its browser origins and its path
//! parameters (`{organization}`, `{project}`), read from devgate's canonical path.

use serde_json::{Map, Value};

use crate::core::apikey::{self, MAX_LIST};
use crate::core::codes::Reason;
use crate::core::keysource::KeySource;
use crate::core::token::{TokenError, MAX_TOKEN_LEN};

/// The claim names a user token is read with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserClaimNames {
    /// The user's id (a string). Default `sub`.
    pub user: String,
    /// The organizations the user is a member of (an array of ids). Default `organizations`.
    pub organizations: String,
    /// The organizations the user owns (an array of ids). Default `owned_organizations`.
    pub owned: String,
    /// Staff (a boolean). Default `is_staff`.
    pub staff: String,
    /// Superuser (a boolean). Default `is_superuser`.
    pub superuser: String,
    /// The token's id, checked against the revocation list's `tokens`. Default `jti`.
    pub id: String,
}

impl Default for UserClaimNames {
    fn default() -> Self {
        UserClaimNames {
            user: "sub".into(),
            organizations: "organizations".into(),
            owned: "owned_organizations".into(),
            staff: "is_staff".into(),
            superuser: "is_superuser".into(),
            id: "jti".into(),
        }
    }
}

/// `api.user_tokens`: how user tokens are verified.
#[derive(Clone, Debug)]
pub struct UserTokens {
    /// The keys user tokens are signed with.
    pub keys: KeySource,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud` (or one of its members), if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// The claim names.
    pub claims: UserClaimNames,
}

/// What a route requires of the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(serde::Serialize, schemars::JsonSchema)
)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// A member of the organization in the path (owners are members too when the service lists
    /// them so; devgate does not infer it).
    Member,
    /// An owner of the organization in the path.
    Owner,
    /// Staff.
    Staff,
    /// A superuser.
    Superuser,
    /// Staff or a superuser.
    StaffOrSuperuser,
}

impl Require {
    /// Whether the requirement names the organization in the path.
    pub fn needs_organization(self) -> bool {
        matches!(self, Require::Member | Require::Owner)
    }
}

/// One segment of a route's path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A literal segment (compared ignoring ASCII case, as API routes match).
    Literal(String),
    /// `{organization}`.
    Organization,
    /// `{project}`.
    Project,
}

/// A route's `user_tokens`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRoute {
    /// What the user must be.
    pub require: Require,
    /// Browser origins allowed (`scheme://host[:port]`, exact); a request without `Origin` is
    /// a non-browser client and allowed.
    pub origins: Vec<String>,
    /// The path template's segments (`/v1/organizations/{organization}/...`); the request's
    /// path starts with them and may go on.
    pub path: Vec<Segment>,
}

/// A verified user token's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: String,
    /// Organizations the user is a member of.
    pub organizations: Vec<String>,
    /// Organizations the user owns.
    pub owned: Vec<String>,
    /// Staff.
    pub staff: bool,
    /// Superuser.
    pub superuser: bool,
    /// The token's id, if it has one.
    pub jti: Option<String>,
}

/// Verifies `token` at `now`: the signature first, then `exp` (required), `nbf`/`iat` with
/// leeway, `iss`/`aud` when configured, and the claims' types. Claims that do not fit are
/// `malformed`.
pub fn verify(policy: &UserTokens, token: &[u8], now: u64) -> Result<User, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let payload = policy.keys.authenticate(token)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    let leeway = policy.leeway;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(TokenError::Malformed)?;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let late = now.saturating_add(leeway);
    for name in ["nbf", "iat"] {
        if let Some(v) = claims.get(name) {
            if late < v.as_u64().ok_or(TokenError::Malformed)? {
                return Err(TokenError::NotYetValid);
            }
        }
    }
    if let Some(iss) = &policy.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
            return Err(TokenError::WrongPurpose);
        }
    }
    if let Some(aud) = &policy.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud.as_str())),
            _ => false,
        };
        if !ok {
            return Err(TokenError::WrongPurpose);
        }
    }
    facts(&policy.claims, &claims).ok_or(TokenError::Malformed)
}

fn facts(names: &UserClaimNames, claims: &Map<String, Value>) -> Option<User> {
    let list = |name: &str| -> Option<Vec<String>> {
        match claims.get(name) {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_LIST * 8 => items
                .iter()
                .map(|v| {
                    let s = v.as_str()?;
                    apikey::is_valid_id(s).then(|| s.to_string())
                })
                .collect(),
            Some(_) => None,
        }
    };
    let flag = |name: &str| -> Option<bool> {
        match claims.get(name) {
            None | Some(Value::Null) => Some(false),
            Some(v) => v.as_bool(),
        }
    };
    let id = claims.get(&names.user)?.as_str()?;
    if !apikey::is_valid_id(id) {
        return None;
    }
    let jti = match claims.get(&names.id) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_str().filter(|s| apikey::is_valid_id(s))?.to_string()),
    };
    Some(User {
        id: id.to_string(),
        organizations: list(&names.organizations)?,
        owned: list(&names.owned)?,
        staff: flag(&names.staff)?,
        superuser: flag(&names.superuser)?,
        jti,
    })
}

/// The path parameters: `(organization, project)`.
pub type Params<'a> = (Option<&'a str>, Option<&'a str>);

/// The parameters of `canonical` under the route's template; `raw` (the `:path` without its
/// query) must be the canonical path itself, byte for byte: any percent escape, `..`, `.`,
/// `//`, `;param` or trailing dot is refused (`bad_path`), so the upstream router and devgate
/// read the same segments. A parameter is a plain segment `[A-Za-z0-9._:-]`, 1-64 bytes.
pub fn params<'a>(
    route: &UserRoute,
    raw: &[u8],
    canonical: &'a [u8],
) -> Result<Params<'a>, Reason> {
    if raw != canonical || raw.contains(&b'%') {
        return Err(Reason::BadPath);
    }
    let text = std::str::from_utf8(canonical).map_err(|_| Reason::BadPath)?;
    let mut segments = text.strip_prefix('/').ok_or(Reason::BadPath)?.split('/');
    let (mut org, mut project) = (None, None);
    for want in &route.path {
        let seg = segments.next().ok_or(Reason::BadPath)?;
        match want {
            Segment::Literal(l) => {
                if !seg.eq_ignore_ascii_case(l) {
                    return Err(Reason::BadPath);
                }
            }
            Segment::Organization | Segment::Project => {
                if !apikey::is_valid_id(seg) || seg == "." || seg == ".." {
                    return Err(Reason::BadPath);
                }
                if *want == Segment::Organization {
                    org = Some(seg);
                } else {
                    project = Some(seg);
                }
            }
        }
    }
    Ok((org, project))
}

/// Whether `user` meets `require` for organization `org`.
pub fn allowed(require: Require, user: &User, org: Option<&str>) -> Result<(), Reason> {
    let within = |list: &[String]| org.is_some_and(|o| list.iter().any(|x| x == o));
    let ok = match require {
        Require::Member => within(&user.organizations),
        Require::Owner => within(&user.owned),
        Require::Staff => user.staff,
        Require::Superuser => user.superuser,
        Require::StaffOrSuperuser => user.staff || user.superuser,
    };
    match (ok, require) {
        (true, _) => Ok(()),
        (false, Require::Member) => Err(Reason::NotAMember),
        (false, Require::Owner) => Err(Reason::NotAnOwner),
        (false, _) => Err(Reason::NotStaff),
    }
}

/// The `Origin` check: every `Origin` header must be one of `origins` (exact, ASCII case
/// ignored); none at all is a non-browser client.
pub fn origin_ok(origins: &[String], values: impl Iterator<Item = impl AsRef<[u8]>>) -> bool {
    let mut ok = true;
    for v in values {
        let v = v.as_ref().trim_ascii();
        ok &= origins.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(v));
    }
    ok
}

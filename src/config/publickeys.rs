#![allow(dead_code)] // SKELETON: called once the edge and key-service configs use it.
//! Public keys and algorithms in the configuration, shared by every reader of tokens others sign
//! (edge assertions, the key service's access tokens, user tokens): one mechanism. SKELETON:
//! filled in by the jose work.

use super::edge::RawPemKey;
use super::{err, ConfigError};
use crate::core::jose::{Alg, PublicKeys};

/// The inline keys of `field` (`jwks` or `pem`, at most one of them given): `None` when neither.
pub(super) fn inline_keys(
    field: &str,
    jwks: Option<&serde_json::Value>,
    pem: Option<&[RawPemKey]>,
) -> Result<Option<PublicKeys>, ConfigError> {
    match (jwks, pem) {
        (None, None) => Ok(None),
        _ => Err(err(field, "not supported yet")),
    }
}

/// `raw` (`field`) as algorithms, or `default` when absent; never empty, never an HS* or `none`.
pub(super) fn algorithms(
    field: &str,
    raw: Option<&[String]>,
    default: &[Alg],
) -> Result<Vec<Alg>, ConfigError> {
    let Some(raw) = raw else {
        return match default.is_empty() {
            true => Err(err(field, "required")),
            false => Ok(default.to_vec()),
        };
    };
    if raw.is_empty() {
        return Err(err(field, "must list at least one algorithm"));
    }
    let mut out = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let alg = Alg::parse(name).ok_or_else(|| {
            err(
                format!("{field}[{i}]"),
                "one of ES256, ES384, RS256, PS256, EdDSA",
            )
        })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

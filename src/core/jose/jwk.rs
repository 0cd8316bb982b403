//! A JWK set (RFC 7517) read into [`PublicKeys`].
//!
//! What is taken and what is refused:
//! - the set: a JSON object with a `keys` array (other members ignored), at most
//!   [`MAX_JWKS_LEN`] bytes and [`MAX_JWKS_ENTRIES`] entries (`too_large`);
//! - an entry is **skipped** when devgate cannot use it: `use` other than `sig`, a `kty`/`crv`
//!   devgate does not verify (`oct`, P-521, X25519, ...), an `alg` devgate does not verify, no
//!   `kid` (tokens must name their key), or an RSA modulus outside 2048-8192 bits;
//! - the **whole set is malformed** when an entry devgate would use is broken (a member of the
//!   wrong JSON type, coordinates of the wrong length, a point off the curve, private key members
//!   such as `d`, a `kid` over 256 bytes), when a member repeats within an entry, or when two
//!   usable entries share a `kid`: a set that is wrong in a way devgate can see is not one to
//!   half-trust, and a fetch of it keeps the previous good set;
//! - no usable entry at all: `no_usable_key`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::key::{Material, PublicKey};
use super::{Alg, KeysError, PublicKeys, MAX_KEY_ID_LEN};

/// The largest JWK set read (bytes): real sets hold a handful of keys, a few KiB.
pub const MAX_JWKS_LEN: usize = 64 * 1024;

/// The most entries a JWK set may have.
pub const MAX_JWKS_ENTRIES: usize = 32;

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<RawJwk>,
}

/// One entry; every member as any JSON value, so that entries devgate skips may hold anything.
/// serde's derive refuses a repeated member it names.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<Value>,
    crv: Option<Value>,
    x: Option<Value>,
    y: Option<Value>,
    n: Option<Value>,
    e: Option<Value>,
    kid: Option<Value>,
    alg: Option<Value>,
    #[serde(rename = "use")]
    use_: Option<Value>,
    // Private key members: their presence means a private key was pasted where a public one
    // belongs.
    d: Option<Value>,
    p: Option<Value>,
    q: Option<Value>,
    dp: Option<Value>,
    dq: Option<Value>,
    qi: Option<Value>,
}

/// `value` as a string: `Malformed` when another JSON type.
fn text(value: Option<&Value>) -> Result<Option<&str>, KeysError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeysError::Malformed),
    }
}

/// The base64url (unpadded) member `value`, required.
fn bytes(value: Option<&Value>) -> Result<Vec<u8>, KeysError> {
    let s = text(value)?.ok_or(KeysError::Malformed)?;
    URL_SAFE_NO_PAD.decode(s).map_err(|_| KeysError::Malformed)
}

/// The base64url member `value`, required to be exactly `len` bytes.
fn exact(value: Option<&Value>, len: usize) -> Result<Vec<u8>, KeysError> {
    let b = bytes(value)?;
    if b.len() == len {
        Ok(b)
    } else {
        Err(KeysError::Malformed)
    }
}

/// An EC point from exact-length coordinates, as SEC1 uncompressed (`04 || x || y`).
fn ec_point(jwk: &RawJwk, len: usize) -> Result<Vec<u8>, KeysError> {
    let mut sec1 = vec![0x04];
    sec1.extend(exact(jwk.x.as_ref(), len)?);
    sec1.extend(exact(jwk.y.as_ref(), len)?);
    Ok(sec1)
}

/// One entry: `Ok(None)` when skipped.
fn entry(jwk: &RawJwk) -> Result<Option<(String, PublicKey)>, KeysError> {
    let kty = text(jwk.kty.as_ref())?.ok_or(KeysError::Malformed)?;
    let crv = text(jwk.crv.as_ref())?;
    let supported = matches!(
        (kty, crv),
        ("EC", Some("P-256" | "P-384")) | ("RSA", None) | ("OKP", Some("Ed25519"))
    );
    if !supported {
        return Ok(None);
    }
    if [&jwk.d, &jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi]
        .iter()
        .any(|m| m.is_some())
    {
        return Err(KeysError::Malformed);
    }
    if text(jwk.use_.as_ref())?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match text(jwk.alg.as_ref())? {
        None => None,
        Some(name) => match Alg::parse(name) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };
    let kid = match text(jwk.kid.as_ref())? {
        None => return Ok(None),
        Some(kid) if kid.is_empty() || kid.len() > MAX_KEY_ID_LEN => {
            return Err(KeysError::Malformed)
        }
        Some(kid) => kid.to_owned(),
    };
    let material = match (kty, crv) {
        ("EC", Some("P-256")) => Material::p256(&ec_point(jwk, 32)?)?,
        ("EC", Some("P-384")) => Material::p384(&ec_point(jwk, 48)?)?,
        ("OKP", Some("Ed25519")) => Material::ed25519(&exact(jwk.x.as_ref(), 32)?)?,
        ("RSA", None) => match Material::rsa(&bytes(jwk.n.as_ref())?, &bytes(jwk.e.as_ref())?) {
            Err(KeysError::NoUsableKey) => return Ok(None),
            other => other?,
        },
        _ => return Ok(None),
    };
    Ok(Some((kid, PublicKey { material, alg })))
}

/// See [`PublicKeys::from_jwks`].
pub(super) fn from_jwks(json: &[u8]) -> Result<PublicKeys, KeysError> {
    if json.len() > MAX_JWKS_LEN {
        return Err(KeysError::TooLarge);
    }
    let set: RawSet = serde_json::from_slice(json).map_err(|_| KeysError::Malformed)?;
    if set.keys.len() > MAX_JWKS_ENTRIES {
        return Err(KeysError::TooLarge);
    }
    let mut keys: Vec<(String, PublicKey)> = Vec::new();
    for jwk in &set.keys {
        if let Some((kid, key)) = entry(jwk)? {
            if keys.iter().any(|(k, _)| *k == kid) {
                return Err(KeysError::Malformed);
            }
            keys.push((kid, key));
        }
    }
    if keys.is_empty() {
        return Err(KeysError::NoUsableKey);
    }
    Ok(PublicKeys { keys })
}

//! Tokens signed by someone else with a public-key algorithm (JWS, RFC 7515): the algorithms
//! devgate accepts, the public keys (a JWK set, RFC 7517, or PEM), and verification over the raw
//! bytes before anything of the payload is read.
//!
//! Verification order, as for devgate's own tokens (`core::token`): size and shape, the header,
//! `alg` in the caller's allow list, `kid` known (and its key's type and `alg` matching), the
//! signature over the raw signing input, and only then the payload's bytes. Never `none`, never
//! an HS* algorithm: a public key is never used as an HMAC secret (algorithm confusion).
//!
//! Bounds: a token is at most [`MAX_TOKEN_LEN`] bytes (16 KiB: an IdP's ID token with groups is
//! larger than devgate's own tokens), its decoded header at most [`MAX_HEADER_LEN`], its
//! signature at most [`MAX_SIGNATURE_LEN`] (RSA-8192); a JWK set at most
//! [`jwk::MAX_JWKS_LEN`] bytes and [`jwk::MAX_JWKS_ENTRIES`] entries; a PEM at most
//! [`pem::MAX_PEM_LEN`] bytes. RSA moduli are 2048 to 8192 bits.
//!
//! Files: `header.rs` reads the JOSE header, `key.rs` one key and its signature check,
//! `jwk.rs` JWK sets, `pem.rs` SPKI PEM, `verify.rs` the order above.

use std::fmt;

use crate::core::token::TokenError;

mod header;
pub mod jwk;
mod key;
pub mod pem;
mod verify;

#[cfg(test)]
mod tests;

use key::PublicKey;

/// The longest token read (bytes).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The longest decoded header read (bytes): AWS ALB's, the longest known, is a few hundred.
pub const MAX_HEADER_LEN: usize = 2048;

/// The longest decoded signature (bytes): an RSA-8192 signature.
pub const MAX_SIGNATURE_LEN: usize = 1024;

/// The longest `kid` of a key (bytes).
pub const MAX_KEY_ID_LEN: usize = 256;

/// The longest `kid` [`unverified_kid`] returns (bytes).
pub const MAX_URL_KID_LEN: usize = 128;

/// A public-key JWS algorithm devgate verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256 (Google IAP, Pomerium, AWS ALB).
    Es256,
    /// ECDSA P-384 with SHA-384 (AWS Verified Access).
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Cloudflare Access, most OIDC providers).
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    Ps256,
    /// EdDSA over Ed25519.
    EdDsa,
}

impl Alg {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Alg; 5] = [Alg::Es256, Alg::Es384, Alg::Rs256, Alg::Ps256, Alg::EdDsa];

    /// The JOSE name (`ES256`, ..., `EdDSA`).
    pub fn code(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named exactly `name` (case-sensitive, as JOSE spells it).
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.code() == name)
    }
}

/// Why a key set (JWKS or PEM) was not taken. Codes are stable (logs, config errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeysError {
    /// Not a JSON object with a `keys` array, or not PEM.
    Malformed,
    /// Larger than devgate reads.
    TooLarge,
    /// No key devgate can use (every entry of an unsupported type, or the set empty).
    NoUsableKey,
}

impl KeysError {
    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            KeysError::Malformed => "malformed",
            KeysError::TooLarge => "too_large",
            KeysError::NoUsableKey => "no_usable_key",
        }
    }
}

/// An issuer's public keys, each named by its `kid`. Holds nothing secret.
#[derive(Clone, Default)]
pub struct PublicKeys {
    /// `(kid, key)`, no `kid` twice.
    keys: Vec<(String, PublicKey)>,
}

impl fmt::Debug for PublicKeys {
    // The kids and key types only, never the material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.keys.iter().map(|(kid, key)| (kid, key)))
            .finish()
    }
}

impl PublicKeys {
    /// The keys of a JWK set (`{"keys": [...]}`): `kty` EC (P-256, P-384), RSA, OKP (Ed25519);
    /// entries with `use` other than `sig`, or of a type devgate does not use, are skipped.
    /// What is skipped and what makes the whole set malformed: see [`jwk`].
    pub fn from_jwks(json: &[u8]) -> Result<PublicKeys, KeysError> {
        jwk::from_jwks(json)
    }

    /// One PEM public key (SPKI, `-----BEGIN PUBLIC KEY-----`) named `kid` (1 to
    /// [`MAX_KEY_ID_LEN`] bytes, else `malformed`). See [`pem`].
    pub fn from_pem(kid: &str, pem: &[u8]) -> Result<PublicKeys, KeysError> {
        if kid.is_empty() || kid.len() > MAX_KEY_ID_LEN {
            return Err(KeysError::Malformed);
        }
        let material = pem::material(pem)?;
        Ok(PublicKeys {
            keys: vec![(
                kid.to_owned(),
                PublicKey {
                    material,
                    alg: None,
                },
            )],
        })
    }

    /// These keys and `other`'s (a key of `other` replaces one of these with the same `kid`).
    pub fn merged(mut self, other: PublicKeys) -> PublicKeys {
        for (kid, key) in other.keys {
            match self.keys.iter_mut().find(|(k, _)| *k == kid) {
                Some(slot) => slot.1 = key,
                None => self.keys.push((kid, key)),
            }
        }
        self
    }

    /// Whether a key is named `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.get(kid).is_some()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether some key could verify a token signed with `alg` (its type fits, its JWK's
    /// `alg` allows it): a configuration whose algorithms no key fits verifies nothing.
    pub fn fits(&self, alg: Alg) -> bool {
        self.keys.iter().any(|(_, key)| key.accepts(alg))
    }

    fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a caller asks of a token besides a good signature.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// The algorithms accepted (the issuer's allow list); anything else is `unsupported_alg`.
    pub algorithms: &'a [Alg],
    /// Accept base64url segments with `=` padding (AWS ALB's quirk; no other issuer).
    pub padded: bool,
}

/// A token whose signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The payload's bytes (a JSON object, not yet parsed).
    pub payload: Vec<u8>,
    /// The signed header's `signer` (AWS ALB's load balancer ARN), when it has one.
    pub signer: Option<String>,
    /// The signed header's `client` (AWS ALB's OIDC client id, its audience), when it has one.
    pub client: Option<String>,
}

/// The `kid` of `token`'s header, read without verifying anything: only to know which key to
/// fetch (a PEM-per-`kid` URL, a JWKS refetch). `None` when the token has no usable header or
/// the `kid` is not 1-128 bytes of `[A-Za-z0-9._-]` (it is put into a URL path).
pub fn unverified_kid(token: &[u8], padded: bool) -> Option<String> {
    verify::unverified_kid(token, padded)
}

/// A `kid` fit for a URL path: 1 to [`MAX_URL_KID_LEN`] bytes of `[A-Za-z0-9._-]`.
fn is_url_kid(kid: &str) -> bool {
    (1..=MAX_URL_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Verifies `token` (compact JWS) against `keys` under `rules`, in the order of the module
/// documentation: the payload's bytes (a JSON object) once the signature verifies, with the
/// header's `signer`. Never panics.
pub fn verify(token: &[u8], keys: &PublicKeys, rules: &Rules<'_>) -> Result<Verified, TokenError> {
    verify::verify(token, keys, rules)
}

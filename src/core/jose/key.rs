//! One public key: its material, the algorithm its JWK pins (if any), which algorithms its type
//! fits, and the signature check itself.

use std::fmt;

use p256::ecdsa::signature::Verifier as _;

use super::{Alg, KeysError};

/// The key material, by type.
#[derive(Clone)]
pub(super) enum Material {
    /// EC P-256 (ES256).
    P256(p256::ecdsa::VerifyingKey),
    /// EC P-384 (ES384).
    P384(p384::ecdsa::VerifyingKey),
}

impl Material {
    /// An EC P-256 key from its SEC1 point (`04 || x || y`, or compressed): `Malformed` when
    /// not a point of the curve.
    pub(super) fn p256(sec1: &[u8]) -> Result<Material, KeysError> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .map(Material::P256)
            .map_err(|_| KeysError::Malformed)
    }

    /// An EC P-384 key from its SEC1 point.
    pub(super) fn p384(sec1: &[u8]) -> Result<Material, KeysError> {
        p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .map(Material::P384)
            .map_err(|_| KeysError::Malformed)
    }

    /// Whether a key of this type signs with `alg`.
    fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (Material::P256(_), Alg::Es256) | (Material::P384(_), Alg::Es384)
        )
    }

    /// The type's name, for Debug.
    fn name(&self) -> &'static str {
        match self {
            Material::P256(_) => "EC P-256",
            Material::P384(_) => "EC P-384",
        }
    }
}

/// A public key and the algorithm its JWK pins (`alg`), if it pins one.
#[derive(Clone)]
pub(super) struct PublicKey {
    pub(super) material: Material,
    pub(super) alg: Option<Alg>,
}

impl fmt::Debug for PublicKey {
    // The type only: key material is public, but dumping it helps no one reading a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alg {
            Some(alg) => write!(f, "{} ({})", self.material.name(), alg.code()),
            None => f.write_str(self.material.name()),
        }
    }
}

impl PublicKey {
    /// Whether this key may verify a token signed with `alg`: its type fits, and its JWK's own
    /// `alg`, when it has one, is `alg`.
    pub(super) fn accepts(&self, alg: Alg) -> bool {
        self.material.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }

    /// Whether `signature` is this key's signature of `input` under `alg` (which it accepts).
    /// ECDSA signatures are JWS's raw `r || s` of fixed length (DER is refused); high-S
    /// signatures verify (issuers do not normalize them).
    pub(super) fn verifies(&self, alg: Alg, input: &[u8], signature: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match &self.material {
            Material::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(input, &sig).is_ok()),
            Material::P384(key) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(input, &sig).is_ok()),
        }
    }
}

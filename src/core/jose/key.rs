//! One public key: its material, the algorithm its JWK pins (if any), which algorithms its type
//! fits, and the signature check itself.

use std::fmt;

use p256::ecdsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest as _, Sha256};

use super::{Alg, KeysError};

/// The smallest RSA modulus devgate takes (bits): NIST's floor since 2013.
pub const RSA_MIN_BITS: usize = 2048;

/// The largest RSA modulus devgate takes (bits): verification cost grows with it.
pub const RSA_MAX_BITS: usize = 8192;

/// The key material, by type.
#[derive(Clone)]
pub(super) enum Material {
    /// EC P-256 (ES256).
    P256(p256::ecdsa::VerifyingKey),
    /// EC P-384 (ES384).
    P384(p384::ecdsa::VerifyingKey),
    /// RSA (RS256, PS256), 2048 to 8192 bits.
    Rsa(RsaPublicKey),
    /// OKP Ed25519 (EdDSA).
    Ed25519(ed25519_dalek::VerifyingKey),
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

    /// An RSA key from its modulus and public exponent (big-endian): `NoUsableKey` when the
    /// modulus is outside [`RSA_MIN_BITS`]..=[`RSA_MAX_BITS`], `Malformed` when the exponent is
    /// not one RSA takes.
    pub(super) fn rsa(n: &[u8], e: &[u8]) -> Result<Material, KeysError> {
        let n = BigUint::from_bytes_be(n);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&n.bits()) {
            return Err(KeysError::NoUsableKey);
        }
        RsaPublicKey::new_with_max_size(n, BigUint::from_bytes_be(e), RSA_MAX_BITS)
            .map(Material::Rsa)
            .map_err(|_| KeysError::Malformed)
    }

    /// An Ed25519 key from its 32 bytes: `Malformed` when not a point of the curve.
    pub(super) fn ed25519(bytes: &[u8]) -> Result<Material, KeysError> {
        let bytes: &[u8; 32] = bytes.try_into().map_err(|_| KeysError::Malformed)?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Material::Ed25519)
            .map_err(|_| KeysError::Malformed)
    }

    /// Whether a key of this type signs with `alg`.
    fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (Material::P256(_), Alg::Es256)
                | (Material::P384(_), Alg::Es384)
                | (Material::Rsa(_), Alg::Rs256 | Alg::Ps256)
                | (Material::Ed25519(_), Alg::EdDsa)
        )
    }

    /// The type's name, for Debug.
    fn name(&self) -> &'static str {
        match self {
            Material::P256(_) => "EC P-256",
            Material::P384(_) => "EC P-384",
            Material::Rsa(_) => "RSA",
            Material::Ed25519(_) => "OKP Ed25519",
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
            // The signature is exactly the modulus's length (rsa checks), as RFC 8017 says.
            Material::Rsa(key) => {
                let hashed = Sha256::digest(input);
                let checked = match alg {
                    Alg::Ps256 => key.verify(Pss::new::<Sha256>(), &hashed, signature),
                    _ => key.verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, signature),
                };
                checked.is_ok() && signature.len() == key.size()
            }
            Material::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(input, &sig).is_ok()),
        }
    }
}

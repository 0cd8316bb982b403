//! Tokens signed by someone else with a public-key algorithm (JWS, RFC 7515): the algorithms
//! devgate accepts, the public keys (a JWK set, RFC 7517, or PEM), and verification over the raw
//! bytes before anything of the payload is read.
//!
//! Verification order, as for devgate's own tokens (`core::token`): size and shape, the header,
//! `alg` in the caller's allow list, `kid` known (and its key's type and `alg` matching), the
//! signature over the raw signing input, and only then the payload's bytes. Never `none`, never
//! an HS* algorithm: a public key is never used as an HMAC secret (algorithm confusion).
//!
//! SKELETON: the interface below is fixed; the bodies are filled in by the jose work.

use crate::core::token::TokenError;

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
#[derive(Clone, Debug, Default)]
pub struct PublicKeys {
    // Filled in by the jose work.
}

impl PublicKeys {
    /// The keys of a JWK set (`{"keys": [...]}`): `kty` EC (P-256, P-384), RSA, OKP (Ed25519);
    /// entries with `use` other than `sig`, or of a type devgate does not use, are skipped.
    pub fn from_jwks(_json: &[u8]) -> Result<PublicKeys, KeysError> {
        Err(KeysError::Malformed)
    }

    /// One PEM public key (SPKI, `-----BEGIN PUBLIC KEY-----`) named `kid`.
    pub fn from_pem(_kid: &str, _pem: &[u8]) -> Result<PublicKeys, KeysError> {
        Err(KeysError::Malformed)
    }

    /// These keys and `other`'s (a key of `other` replaces one of these with the same `kid`).
    pub fn merged(self, _other: PublicKeys) -> PublicKeys {
        self
    }

    /// Whether a key is named `kid`.
    pub fn has_kid(&self, _kid: &str) -> bool {
        false
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        0
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
pub fn unverified_kid(_token: &[u8], _padded: bool) -> Option<String> {
    None
}

/// Verifies `token` (compact JWS) against `keys` under `rules`, in the order of the module
/// documentation: the payload's bytes (a JSON object) once the signature verifies, with the
/// header's `signer`. Never panics.
pub fn verify(
    _token: &[u8],
    _keys: &PublicKeys,
    _rules: &Rules<'_>,
) -> Result<Verified, TokenError> {
    Err(TokenError::UnsupportedAlg)
}

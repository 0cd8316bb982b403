//! Where the signatures of tokens devgate did not sign are checked: the key service's access
//! tokens and user tokens (HS256 secrets, or an issuer's public keys), and the same public-key
//! verification as edge assertions. One type, so every reader of outside tokens verifies the
//! same way: size and shape, header, `alg` allowed, `kid` known, the signature over the raw
//! bytes, and only then the payload.

use crate::core::jose::{self, Alg, PublicKeys, Rules};
use crate::core::token::{authenticate, KeySet, TokenError};

/// The keys an outside issuer signs with.
// One or two per configuration, built once: the size of the HS256 variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum KeySource {
    /// HS256 with shared secrets, each named by its `kid` (from the environment, like every
    /// devgate secret).
    Hmac(KeySet),
    /// An issuer's public keys (inline JWKS or PEM), with the algorithms accepted
    /// ([`jose::verify`]).
    Public {
        /// The algorithms accepted, never empty.
        algorithms: Vec<Alg>,
        /// The issuer's keys.
        keys: PublicKeys,
    },
}

impl KeySource {
    /// The payload of `token` (compact JWS) once its signature verifies: the JSON object's bytes.
    pub fn authenticate(&self, token: &[u8]) -> Result<Vec<u8>, TokenError> {
        match self {
            KeySource::Hmac(keys) => authenticate(token, keys, b""),
            KeySource::Public { algorithms, keys } => {
                let rules = Rules {
                    algorithms,
                    padded: false,
                };
                jose::verify(token, keys, &rules).map(|v| v.payload)
            }
        }
    }
}

//! Where the signatures of tokens devgate did not sign are checked: the key service's access
//! tokens today, and the same kind of source for user tokens and edge assertions next (JWKS,
//! asymmetric algorithms). One type, so every reader of outside tokens verifies the same way:
//! size and shape, header, `alg` allowed, `kid` known, the signature over the raw bytes, and
//! only then the payload.

use crate::core::token::{authenticate, KeySet, TokenError};

/// The keys an outside issuer signs with.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// HS256 with shared secrets, each named by its `kid` (from the environment, like every
    /// devgate secret).
    Hmac(KeySet),
}

impl KeySource {
    /// The payload of `token` (compact JWS) once its signature verifies: the JSON object's bytes.
    pub fn authenticate(&self, token: &[u8]) -> Result<Vec<u8>, TokenError> {
        match self {
            KeySource::Hmac(keys) => authenticate(token, keys, b""),
        }
    }
}

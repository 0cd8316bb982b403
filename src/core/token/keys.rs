//! Keys: secrets (zeroed on drop, never printed), key ids, and the key set a policy holds.

use std::fmt;

use base64::Engine as _;
use hmac::Mac;

use super::{HmacSha256, MAX_KID_LEN, MIN_SECRET_LEN, SECRET_B64};

/// An HMAC secret. Never printed (`Debug` shows `Secret(<redacted>)`, there is no `Display`)
/// and overwritten with zeros when dropped (`zeroize`: writes the compiler may not elide).
///
/// It also holds the HMAC state keyed with it, computed once: HMAC-SHA256 hashes the padded key
/// twice (inner and outer pad) before any data, which was a third of the SHA-256 work of every
/// token check (`make bench-calls`, token path). That state is as sensitive as the key; it lives
/// exactly as long, is never printed either, and is not wiped on drop (the `hmac` crate keeps
/// it private).
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    keyed: HmacSha256,
}

impl Secret {
    /// Takes raw secret bytes; at least [`MIN_SECRET_LEN`].
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Secret, KeyError> {
        let len = bytes.len();
        // HMAC takes keys of any length, so only the length check can refuse.
        match HmacSha256::new_from_slice(&bytes) {
            Ok(keyed) if len >= MIN_SECRET_LEN => Ok(Secret { bytes, keyed }),
            _ => {
                zeroize::Zeroize::zeroize(&mut bytes);
                Err(KeyError::SecretTooShort { len })
            }
        }
    }

    /// Decodes a base64url secret (RFC 4648 §5; `=` padding optional). The standard alphabet
    /// (`+`, `/`) is refused with its own error, as a common copy-paste mistake. Surrounding
    /// whitespace is not trimmed here.
    pub fn from_b64url(text: &str) -> Result<Secret, KeyError> {
        if text.bytes().any(|b| b == b'+' || b == b'/') {
            return Err(KeyError::SecretStdAlphabet);
        }
        let bytes = SECRET_B64
            .decode(text.as_bytes())
            .map_err(|_| KeyError::SecretEncoding)?;
        Secret::from_bytes(bytes)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false for a constructed secret; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A fresh HMAC-SHA256 computation keyed with this secret (a copy of the prepared state).
    pub(super) fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    #[cfg(test)]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    /// Zeros the bytes, spare capacity included.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }
}

/// A named secret. `id` is what tokens carry in their `kid` header.
#[derive(Clone, Debug)]
pub struct Key {
    /// The key id tokens carry in their `kid` header.
    pub id: String,
    /// The secret.
    pub secret: Secret,
}

/// True if `id` is a valid key id: 1..=64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_kid(id: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The configured keys, in order: the first signs, every one verifies (rotation: put the new
/// key first, keep the old one after it until its tokens have expired, then remove it).
/// Never empty; ids are unique and valid.
#[derive(Clone, Debug)]
pub struct KeySet {
    signing: Key,
    others: Vec<Key>,
}

impl KeySet {
    /// Validates ids (syntax, uniqueness) and non-emptiness. Errors name the key index.
    pub fn new(keys: Vec<Key>) -> Result<KeySet, KeyError> {
        for (index, key) in keys.iter().enumerate() {
            if !is_valid_kid(&key.id) {
                return Err(KeyError::BadId { index });
            }
            if keys.iter().take(index).any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateId { index });
            }
        }
        let mut keys = keys.into_iter();
        let signing = keys.next().ok_or(KeyError::NoKeys)?;
        Ok(KeySet {
            signing,
            others: keys.collect(),
        })
    }

    /// The key new tokens are signed with (the first one).
    pub fn signing_key(&self) -> &Key {
        &self.signing
    }

    /// The key named `kid`, if configured.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.iter().find(|k| k.id == kid)
    }

    /// All keys, signing key first.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.signing).chain(self.others.iter())
    }

    /// Number of keys (at least 1).
    pub fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// Always false; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a secret or a key set was refused. Never contains secret bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Decoded secret shorter than [`MIN_SECRET_LEN`].
    SecretTooShort {
        /// The decoded length, in bytes.
        len: usize,
    },
    /// Secret written with the standard base64 alphabet (`+` or `/`).
    SecretStdAlphabet,
    /// Secret is not base64url.
    SecretEncoding,
    /// No keys at all.
    NoKeys,
    /// `keys[index].id` is not 1..=64 characters of `[A-Za-z0-9._-]`.
    BadId {
        /// The key's position in the list.
        index: usize,
    },
    /// `keys[index].id` repeats an earlier id.
    DuplicateId {
        /// The key's position in the list.
        index: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::SecretTooShort { len } => write!(
                f,
                "secret is {len} bytes, at least {MIN_SECRET_LEN} are required"
            ),
            KeyError::SecretStdAlphabet => f.write_str(
                "secret uses the standard base64 alphabet ('+' or '/'); write it as base64url ('-' and '_')",
            ),
            KeyError::SecretEncoding => f.write_str("secret is not valid base64url"),
            KeyError::NoKeys => f.write_str("keys: at least one key is required"),
            KeyError::BadId { index } => write!(
                f,
                "keys[{index}].id: must be 1..={MAX_KID_LEN} characters of [A-Za-z0-9._-]"
            ),
            KeyError::DuplicateId { index } => {
                write!(f, "keys[{index}].id: duplicates an earlier key id")
            }
        }
    }
}

impl std::error::Error for KeyError {}

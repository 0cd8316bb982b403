//! Signed developer tokens: compact JWS (RFC 7515) / JWT (RFC 7519), HS256 only.
//!
//! Pure code: no I/O and no clock (`now` is always a parameter), so it runs the same natively
//! and inside the wasm filter. The full format is specified in `docs/token-format.md`.
//!
//! # Verify, then parse
//!
//! [`verify`] looks at as little attacker-controlled data as possible before the MAC is checked:
//!
//! 1. length cap ([`MAX_TOKEN_LEN`]) → `too_long`;
//! 2. only base64url characters and `.`, exactly three segments, none empty → `malformed`;
//! 3. header: at most [`MAX_HEADER_LEN`] decoded bytes of JSON object → `malformed`;
//!    `alg` exactly `"HS256"` → `unsupported_alg`; no `crit`, no parameter other than
//!    `alg`, `typ` (which must be `"JWT"`) and `kid` → `unsupported_header`; `kid` present →
//!    `missing_kid` and naming a configured key → `unknown_kid`;
//! 4. HMAC-SHA256 of the ASCII signing input `header_b64 "." payload_b64` with that key,
//!    compared in constant time; the signature must decode to exactly 32 bytes → `bad_signature`;
//! 5. only then the payload JSON → `malformed`, and the claims: `dgp` → `wrong_purpose`,
//!    `exp` → `expired`, `nbf` / `iat` → `not_yet_valid`, `sub` → `bad_subject`,
//!    `dgc` → `wrong_cookie`, `cip` → `wrong_peer`.
//!
//! Duplicate members (in the header or among the known claims) are `malformed`: a token must
//! not mean different things to different JSON parsers. Unknown claims are ignored, so tokens
//! minted by other JWT libraries (which add e.g. `iss` or `aud`) still verify: they are covered
//! by the MAC, and only a holder of a configured secret can mint a token at all.
//!
//! No error carries token bytes or secret bytes: [`TokenError`] is a fieldless code and
//! [`KeyError`] only names lengths and key indices.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use hmac::Hmac;
use sha2::Sha256;

/// Longest token [`verify`] looks at, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest decoded header JSON, in bytes.
pub const MAX_HEADER_LEN: usize = 1024;
/// Shortest accepted secret, in bytes (HS256 wants at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;
/// Longest `sub` claim, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Longest `jti` claim, in bytes.
pub const MAX_JTI_LEN: usize = 128;
/// Longest key id, in characters.
pub const MAX_KID_LEN: usize = 64;
/// The only algorithm.
pub const ALG: &str = "HS256";

/// Size of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;
/// Base64url length of [`MAX_HEADER_LEN`] bytes, unpadded.
const MAX_HEADER_B64_LEN: usize = MAX_HEADER_LEN.div_ceil(3) * 4;

type HmacSha256 = Hmac<Sha256>;

/// Base64url for secrets: padding optional, canonical trailing bits.
const SECRET_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

mod claims;
mod error;
mod keys;
mod mint;
mod parse;
mod verify;

pub use claims::{check_claims, is_valid_subject, Claims, Purpose};
pub use error::TokenError;
pub use keys::{is_valid_kid, Key, KeyError, KeySet, Secret};
pub use mint::{mint, sign};
pub use verify::{authenticate, verify, Expect};

#[cfg(test)]
mod tests;

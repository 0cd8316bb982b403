//! Why a token was refused: fieldless, stable codes.

use std::fmt;

/// Why a token was refused. Fieldless on purpose: nothing of the token or the key leaks into
/// logs. [`TokenError::code`] is stable and used in logs and the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN).
    TooLong,
    /// Not three base64url segments, bad base64, bad JSON, wrong JSON types, duplicate members,
    /// over-long header or `jti`.
    Malformed,
    /// `alg` is not exactly `HS256` (includes `none`).
    UnsupportedAlg,
    /// `crit`, a header parameter other than `alg`/`typ`/`kid`, or `typ` other than `JWT`.
    UnsupportedHeader,
    /// No `kid` header.
    MissingKid,
    /// `kid` names no configured key.
    UnknownKid,
    /// The MAC does not match (or the signature is not 32 bytes).
    BadSignature,
    /// `dgp` is not the expected purpose.
    WrongPurpose,
    /// `now >= exp + leeway`.
    Expired,
    /// `now + leeway < nbf`, or `now + leeway < iat`.
    NotYetValid,
    /// `sub` is not a valid header value (see [`is_valid_subject`](super::is_valid_subject)).
    BadSubject,
    /// A session token without `dgc`, or with a `dgc` other than the expected cookie name.
    WrongCookie,
    /// The token is bound (`cip`) to another peer address, or the peer is unknown.
    WrongPeer,
}

impl TokenError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLong => "too_long",
            TokenError::Malformed => "malformed",
            TokenError::UnsupportedAlg => "unsupported_alg",
            TokenError::UnsupportedHeader => "unsupported_header",
            TokenError::MissingKid => "missing_kid",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongPurpose => "wrong_purpose",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::BadSubject => "bad_subject",
            TokenError::WrongCookie => "wrong_cookie",
            TokenError::WrongPeer => "wrong_peer",
        }
    }

    /// Every error, for tests and documentation.
    pub const ALL: [TokenError; 13] = [
        TokenError::TooLong,
        TokenError::Malformed,
        TokenError::UnsupportedAlg,
        TokenError::UnsupportedHeader,
        TokenError::MissingKid,
        TokenError::UnknownKid,
        TokenError::BadSignature,
        TokenError::WrongPurpose,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::BadSubject,
        TokenError::WrongCookie,
        TokenError::WrongPeer,
    ];
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for TokenError {}

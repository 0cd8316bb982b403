//! Verification: the MAC over the raw bytes first, the claims after.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;

use super::claims::{is_valid_subject, Claims, Purpose};
use super::error::TokenError;
use super::keys::KeySet;
use super::parse::{JsonStr, RawClaims, RawHeader};
use super::{ALG, MAC_LEN, MAX_HEADER_B64_LEN, MAX_HEADER_LEN, MAX_JTI_LEN, MAX_TOKEN_LEN};

/// What the caller expects of a token, besides a valid MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect<'a> {
    /// The purpose the token must carry in `dgp`.
    pub purpose: Purpose,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// For [`Purpose::Session`]: the name of the cookie the token came from; `dgc` must equal
    /// it. `None` refuses every session token (`wrong_cookie`). Ignored for other purposes.
    pub cookie: Option<&'a str>,
    /// The request's peer address. A token with `cip` is accepted only when this is `Some`
    /// and equal to it (IPv4-mapped IPv6 addresses compare equal to their IPv4 form).
    /// Tokens without `cip` ignore it.
    pub peer: Option<IpAddr>,
}

impl<'a> Expect<'a> {
    /// A developer (bearer) token.
    pub fn developer(leeway: u64) -> Expect<'a> {
        Expect {
            purpose: Purpose::Developer,
            leeway,
            cookie: None,
            peer: None,
        }
    }

    /// A session token read from cookie `cookie`.
    pub fn session(cookie: &'a str, leeway: u64) -> Expect<'a> {
        Expect {
            purpose: Purpose::Session,
            leeway,
            cookie: Some(cookie),
            peer: None,
        }
    }

    /// The same expectation, with the request's peer address for `cip`-bound tokens.
    pub fn with_peer(self, peer: IpAddr) -> Expect<'a> {
        Expect {
            peer: Some(peer),
            ..self
        }
    }
}

/// Verifies a compact HS256 token against `keys` at time `now` (seconds since the epoch),
/// in the order described in the module documentation. Never panics on any input.
/// The token must be exactly the compact serialization: no surrounding whitespace, no padding.
pub fn verify(
    token: &[u8],
    keys: &KeySet,
    expect: &Expect<'_>,
    now: u64,
) -> Result<Claims, TokenError> {
    let payload_json = authenticate(token, keys, b"")?;
    let raw: RawClaims =
        serde_json::from_slice(&payload_json).map_err(|_| TokenError::Malformed)?;
    check(raw, expect, now)
}

/// The first half of [`verify`], shared by every signed format devgate reads: the shape and
/// header checks, then the MAC over `domain || header_b64 "." payload_b64` in constant time,
/// then the payload bytes, which are only returned once authentic (and only if they hold a JSON
/// object). `domain` is empty for developer and session tokens (plain JWS, interoperable with
/// any JWT library); API keys put their prefix there so that the prefix is signed too.
pub fn authenticate(token: &[u8], keys: &KeySet, domain: &[u8]) -> Result<Vec<u8>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    if !token.iter().all(|&b| is_token_byte(b)) {
        return Err(TokenError::Malformed);
    }
    let mut segments = token.split(|&b| b == b'.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if header_b64.is_empty() || payload_b64.is_empty() || sig_b64.is_empty() {
        return Err(TokenError::Malformed);
    }

    // Header.
    if header_b64.len() > MAX_HEADER_B64_LEN {
        return Err(TokenError::Malformed);
    }
    // The header and the signature are short and bounded: decoded on the stack.
    let mut header_buf = [0u8; MAX_HEADER_LEN + 3];
    let header_json = decode_into(header_b64, &mut header_buf).ok_or(TokenError::Malformed)?;
    if header_json.len() > MAX_HEADER_LEN {
        return Err(TokenError::Malformed);
    }
    let header: RawHeader<'_> =
        serde_json::from_slice(header_json).map_err(|_| TokenError::Malformed)?;
    if !header.alg.as_ref().is_some_and(|alg| alg.is(ALG)) {
        return Err(TokenError::UnsupportedAlg);
    }
    if header.crit || header.other || header.typ.as_ref().is_some_and(|typ| !typ.is("JWT")) {
        return Err(TokenError::UnsupportedHeader);
    }
    let kid = match header.kid {
        None => return Err(TokenError::MissingKid),
        Some(JsonStr::Other) => return Err(TokenError::Malformed),
        Some(JsonStr::Str(kid)) => kid,
    };
    let key = keys.get(&kid).ok_or(TokenError::UnknownKid)?;

    // Signature, over the raw signing input.
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(TokenError::Malformed)?;
    let mut signature_buf = [0u8; MAC_LEN + 3];
    let signature = decode_into(sig_b64, &mut signature_buf).ok_or(TokenError::BadSignature)?;
    if signature.len() != MAC_LEN {
        return Err(TokenError::BadSignature);
    }
    let mut mac = key.secret.mac();
    mac.update(domain);
    mac.update(signing_input);
    mac.verify_slice(signature)
        .map_err(|_| TokenError::BadSignature)?;

    // Only now: the payload.
    let payload_json = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    // serde would also map a JSON array onto the struct; a claims set is an object.
    if payload_json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(TokenError::Malformed);
    }
    Ok(payload_json)
}

pub(super) fn check(
    raw: RawClaims<'_>,
    expect: &Expect<'_>,
    now: u64,
) -> Result<Claims, TokenError> {
    let purpose = Purpose::parse(&raw.dgp).ok_or(TokenError::WrongPurpose)?;
    if purpose != expect.purpose {
        return Err(TokenError::WrongPurpose);
    }
    if now >= raw.exp.saturating_add(expect.leeway) {
        return Err(TokenError::Expired);
    }
    let late = now.saturating_add(expect.leeway);
    if raw.nbf.is_some_and(|nbf| late < nbf) || raw.iat.is_some_and(|iat| late < iat) {
        return Err(TokenError::NotYetValid);
    }
    if !is_valid_subject(&raw.sub) {
        return Err(TokenError::BadSubject);
    }
    if raw.jti.as_ref().is_some_and(|j| j.len() > MAX_JTI_LEN) {
        return Err(TokenError::Malformed);
    }
    if purpose == Purpose::Session {
        match (raw.dgc.as_deref(), expect.cookie) {
            (Some(have), Some(want)) if have == want => {}
            _ => return Err(TokenError::WrongCookie),
        }
    }
    if let Some(bound) = raw.cip {
        match expect.peer {
            Some(peer) if peer.to_canonical() == bound.to_canonical() => {}
            _ => return Err(TokenError::WrongPeer),
        }
    }
    Ok(Claims {
        sub: raw.sub,
        purpose,
        cookie: raw.dgc,
        cip: raw.cip,
        jti: raw.jti,
        iat: raw.iat,
        nbf: raw.nbf,
        exp: raw.exp,
    })
}

/// The bytes a compact token is made of (base64url and `.`), by value: one load per byte on
/// the check every token gets before anything else.
const TOKEN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut rest: &mut [bool] = &mut table;
    let mut b: u8 = 0;
    while let Some((slot, tail)) = rest.split_first_mut() {
        *slot = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        rest = tail;
        b = b.wrapping_add(1);
    }
    table
};

fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTE.get(usize::from(b)) == Some(&true)
}

/// Decodes base64url (unpadded) into `buf`: the decoded bytes, or `None` when the input is not
/// base64url or does not fit (then it is longer than anything read this way).
fn decode_into<'b>(b64: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    if base64::decoded_len_estimate(b64.len()) > buf.len() {
        return None;
    }
    let n = URL_SAFE_NO_PAD.decode_slice(b64, buf).ok()?;
    buf.get(..n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bytes_are_exactly_base64url_and_the_dot() {
        for b in 0..=u8::MAX {
            let want = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
            assert_eq!(is_token_byte(b), want, "{b:#04x}");
        }
    }

    #[test]
    fn stack_decoding_refuses_what_does_not_fit() {
        let mut buf = [0u8; 4];
        assert_eq!(decode_into(b"YWJj", &mut buf), Some(&b"abc"[..]));
        assert_eq!(decode_into(b"YWJjZGVm", &mut buf), None);
        assert_eq!(decode_into(b"Y!", &mut buf), None);
    }
}

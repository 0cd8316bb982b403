//! Verification of a compact JWS others signed: shape, header, key, signature, then payload.

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::IgnoredAny;

use super::header::{Header, Text};
use super::{
    is_url_kid, Alg, PublicKeys, Rules, Verified, MAX_HEADER_LEN, MAX_SIGNATURE_LEN, MAX_TOKEN_LEN,
};
use crate::core::token::TokenError;

/// base64url with or without `=` padding (AWS ALB pads; the bits must still be canonical).
const PADDED: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A token cut into its parts, with its header read.
struct Parts<'t> {
    header: Header,
    signing_input: &'t [u8],
    payload_b64: &'t [u8],
    signature_b64: &'t [u8],
}

/// Decodes one base64url segment, padded only when `padded`.
fn decode(b64: &[u8], padded: bool) -> Option<Vec<u8>> {
    let engine = if padded { &PADDED } else { &URL_SAFE_NO_PAD };
    engine.decode(b64).ok()
}

fn is_token_byte(b: u8, padded: bool) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') || (padded && b == b'=')
}

/// Size, bytes, three non-empty segments, the header decoded and read.
fn split(token: &[u8], padded: bool) -> Result<Parts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    if !token.iter().all(|&b| is_token_byte(b, padded)) {
        return Err(TokenError::Malformed);
    }
    let mut segments = token.split(|&b| b == b'.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(TokenError::Malformed);
    }
    if header_b64.len() > MAX_HEADER_LEN.div_ceil(3) * 4 {
        return Err(TokenError::Malformed);
    }
    let header_json = decode(header_b64, padded).ok_or(TokenError::Malformed)?;
    if header_json.len() > MAX_HEADER_LEN {
        return Err(TokenError::Malformed);
    }
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(TokenError::Malformed)?;
    Ok(Parts {
        header,
        signing_input,
        payload_b64,
        signature_b64,
    })
}

/// The optional string member `text` of the header: `Malformed` when not a string.
fn optional_str(text: Option<Text>) -> Result<Option<String>, TokenError> {
    match text {
        None => Ok(None),
        Some(Text::Str(s)) => Ok(Some(s)),
        Some(Text::Other) => Err(TokenError::Malformed),
    }
}

/// See [`super::unverified_kid`].
pub(super) fn unverified_kid(token: &[u8], padded: bool) -> Option<String> {
    let parts = split(token, padded).ok()?;
    match parts.header.kid {
        Some(Text::Str(kid)) if is_url_kid(&kid) => Some(kid),
        _ => None,
    }
}

/// See [`super::verify`].
pub(super) fn verify(
    token: &[u8],
    keys: &PublicKeys,
    rules: &Rules<'_>,
) -> Result<Verified, TokenError> {
    let parts = split(token, rules.padded)?;
    let header = parts.header;
    let alg = header
        .alg
        .as_ref()
        .and_then(Text::as_str)
        .and_then(Alg::parse)
        .filter(|alg| rules.algorithms.contains(alg))
        .ok_or(TokenError::UnsupportedAlg)?;
    let kid = match header.kid {
        None => return Err(TokenError::MissingKid),
        Some(Text::Other) => return Err(TokenError::Malformed),
        Some(Text::Str(kid)) => kid,
    };
    if header.crit {
        return Err(TokenError::UnsupportedHeader);
    }
    let signer = optional_str(header.signer)?;
    let client = optional_str(header.client)?;
    let key = keys.get(&kid).ok_or(TokenError::UnknownKid)?;
    if !key.accepts(alg) {
        return Err(TokenError::UnsupportedAlg);
    }

    // The signature, over the raw signing input (as sent, padding and all).
    if parts.signature_b64.len() > MAX_SIGNATURE_LEN.div_ceil(3) * 4 {
        return Err(TokenError::BadSignature);
    }
    let signature = decode(parts.signature_b64, rules.padded).ok_or(TokenError::BadSignature)?;
    if !key.verifies(alg, parts.signing_input, &signature) {
        return Err(TokenError::BadSignature);
    }

    // Only now: the payload, which must be a JSON object.
    let payload = decode(parts.payload_b64, rules.padded).ok_or(TokenError::Malformed)?;
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
        || serde_json::from_slice::<IgnoredAny>(&payload).is_err()
    {
        return Err(TokenError::Malformed);
    }
    Ok(Verified {
        payload,
        signer,
        client,
    })
}

//! Minting: what the CLI and the login form sign.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;
use serde::Serialize;

use super::claims::Claims;
use super::keys::{Key, Secret};
use super::{ALG, MAC_LEN};

#[derive(Serialize)]
pub(super) struct MintHeader<'a> {
    // Sorted member order: the same bytes PyJWT's default `jwt.encode` produces.
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// Mints a compact token: header `{"alg":"HS256","kid":<key.id>,"typ":"JWT"}` (members sorted,
/// as PyJWT writes them), the claims as compact JSON, unpadded base64url, HMAC-SHA256 with
/// `key`. Does not validate the claims: see [`check_claims`](super::check_claims).
pub fn mint(claims: &Claims, key: &Key) -> String {
    // Serializing this plain struct cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    sign(&payload, key, b"")
}

/// Signs `payload` (a JSON object) under `key`, with `domain` prepended to the MAC input (see
/// [`authenticate`](super::authenticate)). The result does not include `domain`.
pub fn sign(payload: &[u8], key: &Key, domain: &[u8]) -> String {
    let header = MintHeader {
        alg: ALG,
        kid: &key.id,
        typ: "JWT",
    };
    // Serializing this plain struct cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut token = String::with_capacity((header.len() + payload.len() + MAC_LEN) * 4 / 3 + 8);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let tag = mac(&key.secret, domain, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// HMAC-SHA256 of `domain || signing_input` under `secret`.
pub(super) fn mac(secret: &Secret, domain: &[u8], signing_input: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = secret.mac();
    mac.update(domain);
    mac.update(signing_input);
    mac.finalize().into_bytes().into()
}

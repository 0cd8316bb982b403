//! One PEM public key (RFC 7468 `PUBLIC KEY`, a DER SubjectPublicKeyInfo of RFC 5280) read into
//! key material: EC P-256 / P-384, RSA, Ed25519. The DER reader takes exactly the shapes those
//! keys have (definite, minimal lengths; nothing after the structure): a key is a few hundred
//! bytes, so a general ASN.1 parser would buy nothing.
//!
//! Another algorithm or curve, or an RSA modulus outside 2048-8192 bits: `no_usable_key`.
//! Anything not PEM, not DER of that shape, or a point off its curve: `malformed`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::key::Material;
use super::KeysError;

/// The largest PEM text read (bytes): an RSA-8192 key is under 1.5 KiB.
pub const MAX_PEM_LEN: usize = 16 * 1024;

const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const END: &str = "-----END PUBLIC KEY-----";

/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (1.3.132.0.34).
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// rsaEncryption (1.2.840.113549.1.1.1).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// id-Ed25519 (1.3.101.112).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const INTEGER: u8 = 0x02;
const NULL: u8 = 0x05;
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;

/// A reader of DER TLVs from the front of a slice.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The value of the next TLV, which must have tag `tag`.
    fn take(&mut self, tag: u8) -> Result<&'a [u8], KeysError> {
        let bad = KeysError::Malformed;
        let (&t, rest) = self.0.split_first().ok_or(bad)?;
        if t != tag {
            return Err(bad);
        }
        let (&first, mut rest) = rest.split_first().ok_or(bad)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: 1 or 2 length bytes (keys are under 64 KiB), minimal.
            let n = usize::from(first & 0x7f);
            if !(1..=2).contains(&n) {
                return Err(bad);
            }
            let (len_bytes, r) = rest.split_at_checked(n).ok_or(bad)?;
            rest = r;
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 || len_bytes.first() == Some(&0) {
                return Err(bad);
            }
            len
        };
        let (value, rest) = rest.split_at_checked(len).ok_or(bad)?;
        self.0 = rest;
        Ok(value)
    }

    /// A positive INTEGER's magnitude (big-endian, leading zero bytes dropped).
    fn positive(&mut self) -> Result<&'a [u8], KeysError> {
        let value = self.take(INTEGER)?;
        match value.first() {
            Some(b) if b & 0x80 == 0 => {
                let zeros = value.iter().take_while(|&&b| b == 0).count();
                value.get(zeros..).ok_or(KeysError::Malformed)
            }
            _ => Err(KeysError::Malformed),
        }
    }

    /// Nothing left: `Malformed` otherwise.
    fn end(&self) -> Result<(), KeysError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(KeysError::Malformed)
        }
    }
}

/// The DER inside a `PUBLIC KEY` PEM block (surrounding whitespace allowed, nothing else).
fn pem_body(pem: &[u8]) -> Result<Vec<u8>, KeysError> {
    let text = std::str::from_utf8(pem).map_err(|_| KeysError::Malformed)?;
    let body = text
        .trim()
        .strip_prefix(BEGIN)
        .and_then(|t| t.strip_suffix(END))
        .ok_or(KeysError::Malformed)?;
    let b64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    STANDARD.decode(b64).map_err(|_| KeysError::Malformed)
}

/// The key material of one SPKI PEM.
pub(super) fn material(pem: &[u8]) -> Result<Material, KeysError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(KeysError::TooLarge);
    }
    let der = pem_body(pem)?;
    let mut outer = Der(&der);
    let mut spki = Der(outer.take(SEQUENCE)?);
    outer.end()?;
    let mut algorithm = Der(spki.take(SEQUENCE)?);
    let bits = spki.take(BIT_STRING)?;
    spki.end()?;
    // A key's BIT STRING has no unused bits.
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(KeysError::Malformed),
    };
    let oid = algorithm.take(OID)?;
    if oid == OID_EC {
        let curve = algorithm.take(OID)?;
        algorithm.end()?;
        return match curve {
            OID_P256 => Material::p256(key),
            OID_P384 => Material::p384(key),
            _ => Err(KeysError::NoUsableKey),
        };
    }
    if oid == OID_ED25519 {
        // No parameters (RFC 8410).
        algorithm.end()?;
        return Material::ed25519(key);
    }
    if oid == OID_RSA {
        // Parameters NULL (RFC 3279), or absent as some encoders write them.
        if !algorithm.0.is_empty() && !algorithm.take(NULL)?.is_empty() {
            return Err(KeysError::Malformed);
        }
        algorithm.end()?;
        let mut outer = Der(key);
        let mut rsa = Der(outer.take(SEQUENCE)?);
        outer.end()?;
        let n = rsa.positive()?;
        let e = rsa.positive()?;
        rsa.end()?;
        return Material::rsa(n, e);
    }
    Err(KeysError::NoUsableKey)
}

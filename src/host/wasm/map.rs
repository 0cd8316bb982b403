//! The proxy-wasm ABI's map serialization, as pure functions so that they are unit-tested and
//! fuzzed natively. The host calls that use them live in the wasm32-only glue.

fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at.checked_add(4)?)?;
    let arr: [u8; 4] = b.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(arr)).ok()
}

/// Parses the ABI's map serialization without copying: a little-endian u32 count, then a
/// (key length, value length) u32 pair per entry, then each key and value followed by a NUL.
/// `None` if the buffer is not well formed (it never is from Envoy, but a host bug must not
/// become a trap).
pub fn parse_pairs(buf: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    // The ABI allows an empty map to come back as no buffer at all.
    if buf.is_empty() {
        return Some(Vec::new());
    }
    let n = read_u32(buf, 0)?;
    // Each entry needs at least 8 bytes of sizes and 2 NULs: bounds `n` by the buffer.
    if n > buf.len() / 10 + 1 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut data = 4usize.checked_add(n.checked_mul(8)?)?;
    for i in 0..n {
        let klen = read_u32(buf, 4 + i * 8)?;
        let vlen = read_u32(buf, 8 + i * 8)?;
        let key = buf.get(data..data.checked_add(klen)?)?;
        data = data.checked_add(klen)?.checked_add(1)?;
        let value = buf.get(data..data.checked_add(vlen)?)?;
        data = data.checked_add(vlen)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

/// The ABI's map serialization of `pairs` (the inverse of [`parse_pairs`]).
pub fn serialize_pairs(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let len = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(len);
    let count = u32::try_from(pairs.len()).unwrap_or(0);
    out.extend_from_slice(&count.to_le_bytes());
    for (k, v) in pairs {
        let kl = u32::try_from(k.len()).unwrap_or(0);
        let vl = u32::try_from(v.len()).unwrap_or(0);
        out.extend_from_slice(&kl.to_le_bytes());
        out.extend_from_slice(&vl.to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_binary_values() {
        let pairs: Vec<(&str, &[u8])> = vec![(":path", b"/x"), ("a", b""), ("b", b"\xff\x00\xfe")];
        let buf = serialize_pairs(&pairs);
        let back = parse_pairs(&buf).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2], (&b"b"[..], &b"\xff\x00\xfe"[..]));
        assert_eq!(parse_pairs(&serialize_pairs(&[])).unwrap(), vec![]);
    }

    #[test]
    fn malformed_buffers_are_none_not_panics() {
        assert_eq!(
            parse_pairs(b""),
            Some(vec![]),
            "an empty map may come as no buffer"
        );
        assert!(parse_pairs(b"\x01\x00").is_none());
        assert!(parse_pairs(&[0xff, 0xff, 0xff, 0xff]).is_none());
        let mut buf = serialize_pairs(&[("k", b"v")]);
        buf.truncate(buf.len() - 2);
        assert!(parse_pairs(&buf).is_none());
        let mut lying = serialize_pairs(&[("k", b"v")]);
        lying[8] = 0xff; // value length far past the end
        assert!(parse_pairs(&lying).is_none());
    }
}

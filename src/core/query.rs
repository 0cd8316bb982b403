//! Query strings: finding parameters by their decoded name, and removing them.
//!
//! Names and values are percent-decoded before comparison (`k%65y` is `key` to every
//! framework), `+` is left as is (it is not in any key devgate issues), and `&` is the only
//! separator.

/// The value of one hexadecimal digit (either case). Shared by every percent-decoder.
pub fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Splits `name=value` at the first `=`; a part without `=` is a name with an empty value.
pub fn split_pair(part: &[u8]) -> (&[u8], &[u8]) {
    match part.iter().position(|&b| b == b'=') {
        Some(i) => (
            part.get(..i).unwrap_or_default(),
            part.get(i + 1..).unwrap_or_default(),
        ),
        None => (part, &b""[..]),
    }
}

/// Percent-decodes; malformed escapes are kept as written.
pub fn decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let escaped = match (
            b,
            raw.get(i + 1).copied().and_then(hex_digit),
            raw.get(i + 2).copied().and_then(hex_digit),
        ) {
            (b'%', Some(h), Some(l)) => Some((h << 4) | l),
            _ => None,
        };
        match escaped {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Splits a `:path` into the path and the query (without `?`).
pub fn split(path: &[u8]) -> (&[u8], Option<&[u8]>) {
    match path.iter().position(|&b| b == b'?') {
        Some(i) => (path.get(..i).unwrap_or_default(), path.get(i + 1..)),
        None => (path, None),
    }
}

/// The decoded values of every parameter whose decoded name is in `names`, with that name.
pub fn find<'n>(query: &[u8], names: &[&'n str]) -> Vec<(&'n str, Vec<u8>)> {
    let mut out = Vec::new();
    for part in query.split(|&b| b == b'&') {
        let (name, value) = split_pair(part);
        let name = decode(name);
        if let Some(n) = names.iter().find(|n| n.as_bytes() == name.as_slice()) {
            out.push((*n, decode(value)));
        }
    }
    out
}

/// `path` without the parameters whose decoded name is in `names`; `None` if there were none.
pub fn remove(path: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    let (head, query) = split(path);
    let query = query?;
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut removed = false;
    for part in query.split(|&b| b == b'&') {
        let (name, _) = split_pair(part);
        if names
            .iter()
            .any(|n| n.as_bytes() == decode(name).as_slice())
        {
            removed = true;
        } else {
            kept.push(part);
        }
    }
    if !removed {
        return None;
    }
    let mut out = head.to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_decodes_names_and_values() {
        let q = b"a=1&key=dgpk_x&k%65y=two&private_key=s%2Ek&x";
        let f = find(q, &["key", "private_key"]);
        assert_eq!(
            f,
            vec![
                ("key", b"dgpk_x".to_vec()),
                ("key", b"two".to_vec()),
                ("private_key", b"s.k".to_vec())
            ]
        );
        assert!(find(b"", &["key"]).is_empty());
        assert!(find(b"keys=1&akey=2", &["key"]).is_empty());
    }

    #[test]
    fn remove_keeps_everything_else_in_order() {
        assert_eq!(
            remove(b"/v1/x?a=1&key=k&b=2", &["key"]).unwrap(),
            b"/v1/x?a=1&b=2"
        );
        assert_eq!(remove(b"/v1/x?key=k", &["key"]).unwrap(), b"/v1/x");
        assert_eq!(remove(b"/v1/x?k%65y=k&z", &["key"]).unwrap(), b"/v1/x?z");
        assert_eq!(remove(b"/v1/x?a=1", &["key"]), None);
        assert_eq!(remove(b"/v1/x", &["key"]), None);
    }

    #[test]
    fn malformed_escapes_are_literal() {
        assert_eq!(decode(b"%zz%4"), b"%zz%4");
        assert_eq!(decode(b"%41%"), b"A%");
    }
}

//! Header maps: ordered multimaps of byte strings, with Envoy's semantics.

use std::fmt;

/// An ordered multimap of byte strings, as Envoy's header maps (names stored lowercase).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(Vec<u8>, Vec<u8>)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in &self.0 {
            list.entry(&format!("{}: {}", show(name, 60), show(value, 60)));
        }
        list.finish()
    }
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a header; the name is lowercased (ASCII) as Envoy's `LowerCaseString` does.
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.0.push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Appends a header with the name exactly as given (for adversarial inputs).
    pub fn add_raw(&mut self, name: &[u8], value: &[u8]) {
        self.0.push((name.to_vec(), value.to_vec()));
    }

    /// Every value of `name` (ASCII case-insensitive), in order.
    pub fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The first value of `name`, as Envoy's `getHeaderMapValue` answers.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).into_iter().next()
    }

    /// The first value of `name` as (lossy) UTF-8.
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.count(name) > 0
    }

    /// Envoy `remove`: every copy of the (lowercased) name.
    pub fn remove(&mut self, name: &[u8]) {
        let lower = name.to_ascii_lowercase();
        self.0.retain(|(n, _)| *n != lower);
    }

    /// Envoy `setCopy` (1.40): removes every copy, then appends one.
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }

    /// Pre-2021 Envoy `setCopy`: replaces the first copy only, leaving the others.
    pub fn replace_first_only(&mut self, name: &[u8], value: &[u8]) {
        let lower = name.to_ascii_lowercase();
        match self.0.iter_mut().find(|(n, _)| *n == lower) {
            Some(entry) => entry.1 = value.to_vec(),
            None => self.add(name, value),
        }
    }

    /// Envoy `byteSize`: the sum of name and value lengths.
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    /// Serialized as the ABI's map format: count, (name len, value len)*, (name\0 value\0)*.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.byte_size() + self.0.len() * 10);
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for (n, v) in &self.0 {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in &self.0 {
            out.extend_from_slice(n);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    /// Parses the ABI's map format strictly (every length and terminator checked).
    pub fn deserialize(bytes: &[u8]) -> Result<Headers, String> {
        if bytes.is_empty() {
            return Ok(Headers::new());
        }
        let word = |at: usize| -> Result<usize, String> {
            bytes
                .get(at..at + 4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
                .ok_or_else(|| format!("map truncated at byte {at}"))
        };
        let count = word(0)?;
        if count > bytes.len() / 8 {
            return Err(format!("map claims {count} pairs in {} bytes", bytes.len()));
        }
        let mut pos = 4 + count * 8;
        let mut map = Headers::new();
        for i in 0..count {
            let name_len = word(4 + i * 8)?;
            let value_len = word(8 + i * 8)?;
            let mut take = |len: usize| -> Result<Vec<u8>, String> {
                let s = bytes
                    .get(pos..pos + len)
                    .ok_or_else(|| format!("map entry {i} runs past the end"))?
                    .to_vec();
                if bytes.get(pos + len) != Some(&0) {
                    return Err(format!("map entry {i} lacks its NUL terminator"));
                }
                pos += len + 1;
                Ok(s)
            };
            let name = take(name_len)?;
            let value = take(value_len)?;
            map.0.push((name, value));
        }
        if pos != bytes.len() {
            return Err(format!("map has {} trailing bytes", bytes.len() - pos));
        }
        Ok(map)
    }
}

/// A short, printable rendering of bytes for records and messages.
pub fn show(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push_str(&format!("…({} bytes)", bytes.len()));
    }
    out.escape_debug().to_string()
}

//! The verified-assertion cache of one worker: an edge proxy sends the same assertion on every
//! request, so a token whose signature and claims were checked once is remembered, bounded
//! ([`CAPACITY`] slots of tokens up to [`MAX_CACHED_TOKEN`] bytes), and found again only by the
//! **whole token**: an entry holds its token, and a hit is a byte-for-byte match of it and of its
//! source. An entry never outlives the token's `exp`, nor a change of its source's keys: each
//! entry carries its source's key generation, and an entry of another generation is gone.
//!
//! The slot is chosen by a cheap hash of the token's last bytes (its signature's text), not a
//! cryptographic one: measured by `make bench-calls` (2026-12-08), a SHA-256 of the whole token per
//! request made a cache hit cost more than devgate's own HS256 token path (Wasm 1.08×, native
//! 1.24×); the slot only says where to look, the comparison of the whole token decides. A token
//! crafted to land in a developer's slot must first verify to be stored there, and then only
//! evicts it (the developer's next request verifies again).

use crate::core::decision::Identity;

/// Slots per worker.
pub const CAPACITY: usize = 256;

/// Longer tokens are verified every time, never stored: the cache holds at most
/// `CAPACITY * MAX_CACHED_TOKEN` bytes of tokens (1 MiB) per worker.
pub const MAX_CACHED_TOKEN: usize = 4096;

/// The bytes of the token's end the slot is chosen by.
const TAIL: usize = 16;

#[derive(Clone, Debug)]
struct Entry {
    source: usize,
    token: Box<[u8]>,
    identity: Identity,
    exp: u64,
    generation: u64,
}

/// One worker's verified assertions.
#[derive(Debug, Default)]
pub struct AssertionCache {
    /// Direct-mapped: [`slot`] of a token is its only place.
    slots: Vec<Option<Entry>>,
}

/// FNV-1a over the source and the token's last [`TAIL`] bytes, folded to a slot.
fn slot(source: usize, token: &[u8]) -> usize {
    let tail = token
        .get(token.len().saturating_sub(TAIL)..)
        .unwrap_or(token);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (source as u64);
    for &b in tail {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Fold the high bits in: FNV's low bits alone mix the last byte weakly.
    let folded = h ^ (h >> 32) ^ (h >> 16);
    usize::try_from(folded % CAPACITY as u64).unwrap_or(0)
}

impl AssertionCache {
    /// The developer `token` of `source` verified to, while `now < exp` and the source's keys
    /// are still at `generation`. An entry past either is dropped.
    pub fn get(
        &mut self,
        source: usize,
        token: &[u8],
        now: u64,
        generation: u64,
    ) -> Option<Identity> {
        let place = self.slots.get_mut(slot(source, token))?;
        let entry = place.as_ref()?;
        if entry.source != source || *entry.token != *token {
            return None;
        }
        if now < entry.exp && entry.generation == generation {
            return Some(entry.identity.clone());
        }
        *place = None;
        None
    }

    /// Remembers that `token` of `source` verified to `identity` until `exp`, under its
    /// source's key `generation`; it takes the slot of whatever was there. A token longer than
    /// [`MAX_CACHED_TOKEN`] is not remembered.
    pub fn put(
        &mut self,
        source: usize,
        token: &[u8],
        identity: &Identity,
        exp: u64,
        generation: u64,
    ) {
        if token.len() > MAX_CACHED_TOKEN {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(CAPACITY, || None);
        }
        if let Some(place) = self.slots.get_mut(slot(source, token)) {
            *place = Some(Entry {
                source,
                token: token.into(),
                identity: identity.clone(),
                exp,
                generation,
            });
        }
    }

    /// Forgets every entry of `source` (its keys changed, or it is another source now).
    pub fn drop_source(&mut self, source: usize) {
        for place in &mut self.slots {
            if place.as_ref().is_some_and(|e| e.source == source) {
                *place = None;
            }
        }
    }

    /// Forgets everything (another policy).
    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|e| e.is_some()).count()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Source;

    fn dev(name: &str) -> Identity {
        Identity {
            name: name.into(),
            source: Source::Assertion,
        }
    }

    #[test]
    fn a_hit_until_exp_then_gone() {
        let mut c = AssertionCache::default();
        c.put(0, b"tok", &dev("ada"), 100, 1);
        assert_eq!(c.get(0, b"tok", 99, 1), Some(dev("ada")));
        assert_eq!(c.get(1, b"tok", 99, 1), None);
        assert_eq!(c.get(0, b"tok2", 99, 1), None);
        assert_eq!(c.get(0, b"tok", 100, 1), None);
        assert!(c.is_empty(), "an expired entry is dropped");
    }

    #[test]
    fn a_new_key_generation_drops_the_entry() {
        let mut c = AssertionCache::default();
        c.put(0, b"tok", &dev("ada"), 100, 1);
        c.put(1, b"tok", &dev("bob"), 100, 1);
        assert_eq!(c.get(0, b"tok", 50, 2), None);
        assert_eq!(c.get(0, b"tok", 50, 1), None, "gone for good");
        c.drop_source(1);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_and_never_more_than_its_slots() {
        let mut c = AssertionCache::default();
        for i in 0..(CAPACITY * 4) {
            c.put(0, format!("token-{i}").as_bytes(), &dev("x"), 100, 0);
        }
        assert!(c.len() <= CAPACITY);
        let last = format!("token-{}", CAPACITY * 4 - 1);
        assert_eq!(c.get(0, last.as_bytes(), 1, 0), Some(dev("x")));
    }

    #[test]
    fn a_hit_needs_the_whole_token_not_only_its_tail() {
        // Same last 16 bytes (same slot), another header and payload: never the cached identity.
        let mut c = AssertionCache::default();
        let sig = "0123456789abcdefSIGNATURE-TAIL-16";
        let good = format!("header.payload.{sig}");
        let forged = format!("HEADER.PAYLOAD.{sig}");
        c.put(0, good.as_bytes(), &dev("ada"), 100, 0);
        assert_eq!(c.get(0, forged.as_bytes(), 1, 0), None);
        assert_eq!(c.get(0, good.as_bytes(), 1, 0), Some(dev("ada")));
        // The forged one, once verified itself, takes the slot; the other verifies again.
        c.put(0, forged.as_bytes(), &dev("mallory"), 100, 0);
        assert_eq!(c.get(0, good.as_bytes(), 1, 0), None);
    }

    #[test]
    fn long_tokens_are_never_stored() {
        let mut c = AssertionCache::default();
        let long = vec![b'a'; MAX_CACHED_TOKEN + 1];
        c.put(0, &long, &dev("ada"), 100, 0);
        assert!(c.is_empty());
        assert_eq!(c.get(0, &long, 1, 0), None);
    }
}

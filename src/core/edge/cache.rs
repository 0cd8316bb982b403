//! The verified-assertion cache of one worker: an edge proxy sends the same assertion on every
//! request, so a token whose signature and claims were checked once is remembered, bounded
//! ([`CAPACITY`] entries, the oldest out), keyed by the SHA-256 of the whole token and its
//! source. An entry never outlives the token's `exp`, nor a change of its source's keys: each
//! entry carries its source's key generation, and an entry of another generation is gone.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::core::decision::Identity;

/// Entries kept at most per worker.
pub const CAPACITY: usize = 256;

type Key = (usize, [u8; 32]);

#[derive(Clone, Debug)]
struct Entry {
    identity: Identity,
    exp: u64,
    generation: u64,
}

/// One worker's verified assertions.
#[derive(Debug, Default)]
pub struct AssertionCache {
    entries: HashMap<Key, Entry>,
    /// Insertion order, for the oldest-out bound (a key may be listed after it left `entries`).
    order: VecDeque<Key>,
}

fn key(source: usize, token: &[u8]) -> Key {
    (source, Sha256::digest(token).into())
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
        let k = key(source, token);
        let entry = self.entries.get(&k)?;
        if now < entry.exp && entry.generation == generation {
            return Some(entry.identity.clone());
        }
        self.entries.remove(&k);
        None
    }

    /// Remembers that `token` of `source` verified to `identity` until `exp`, under the source's
    /// key `generation`.
    pub fn put(
        &mut self,
        source: usize,
        token: &[u8],
        identity: &Identity,
        exp: u64,
        generation: u64,
    ) {
        let k = key(source, token);
        let entry = Entry {
            identity: identity.clone(),
            exp,
            generation,
        };
        if self.entries.insert(k, entry).is_none() {
            self.order.push_back(k);
        }
        while self.entries.len() > CAPACITY {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        // Keys whose entries went (expired, another generation) are trimmed with the order.
        if self.order.len() > CAPACITY.saturating_mul(2) {
            let entries = &self.entries;
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            self.order
                .retain(|k| entries.contains_key(k) && seen.insert(*k));
        }
    }

    /// Drops every entry of `source` (its keys changed).
    pub fn drop_source(&mut self, source: usize) {
        self.entries.retain(|(s, _), _| *s != source);
    }

    /// Drops everything (another configuration).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
        // Another source, another token: misses.
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
    fn bounded_oldest_out() {
        let mut c = AssertionCache::default();
        for i in 0..(CAPACITY + 10) {
            c.put(0, format!("t{i}").as_bytes(), &dev("x"), 100, 0);
        }
        assert_eq!(c.len(), CAPACITY);
        assert_eq!(c.get(0, b"t0", 1, 0), None);
        assert_eq!(c.get(0, b"t9", 1, 0), None);
        assert!(c.get(0, b"t10", 1, 0).is_some());
        assert!(c
            .get(0, format!("t{}", CAPACITY + 9).as_bytes(), 1, 0)
            .is_some());
        // Putting the same token again does not grow the order without bound.
        for _ in 0..(CAPACITY * 3) {
            c.put(0, b"same", &dev("x"), 100, 0);
            c.get(0, b"same", 200, 0);
        }
        assert!(c.order.len() <= CAPACITY * 2 + 1);
    }
}

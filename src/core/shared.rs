//! State shared by every worker of one Envoy process, behind the small interface each host
//! implements: proxy-wasm shared data in Wasm, a locked map natively. The compare-and-swap
//! loops that race other workers (login failure counts, the revocation lease) live here once.

/// The store could not be read or written (the host call failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

/// A process-wide key-value store with compare-and-swap versions.
pub trait SharedStore {
    /// The value under `key` (`None`: never set) and its version, for [`SharedStore::set`].
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable>;
    /// Stores `value` if the entry is still at version `cas` (0: whatever it is). `Ok(false)`:
    /// another worker wrote it first.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, Unavailable>;
    /// The version of the entry under `key` (0: never set): what a reader that keeps its own
    /// decoded copy asks before copying the value again. A native host answers it without
    /// copying; proxy-wasm has no such call, so the default reads the value too.
    fn version(&self, key: &str) -> Result<u32, Unavailable> {
        self.get(key).map(|(_, cas)| cas)
    }
}

/// How often [`update`] re-reads an entry another worker keeps changing before it gives up.
const TRIES: usize = 8;

/// Replaces the value under `key` with `next(current)`, racing other workers: re-read and retry
/// while another worker wrote in between. `Err` when the store fails or the race is lost
/// eight times.
pub fn update<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    next: impl Fn(Option<&[u8]>) -> Vec<u8>,
) -> Result<(), Unavailable> {
    try_update(store, key, |prev| Ok::<_, ()>(next(prev))).map(|_| ())
}

/// [`update`] where `next` may decline to write: `Ok(Err(why))` leaves the entry as it is.
pub fn try_update<S: SharedStore + ?Sized, T>(
    store: &S,
    key: &str,
    next: impl Fn(Option<&[u8]>) -> Result<Vec<u8>, T>,
) -> Result<Result<(), T>, Unavailable> {
    for _ in 0..TRIES {
        let (prev, cas) = store.get(key)?;
        match next(prev.as_deref()) {
            Err(why) => return Ok(Err(why)),
            Ok(value) => {
                if store.set(key, &value, cas)? {
                    return Ok(Ok(()));
                }
            }
        }
    }
    Err(Unavailable)
}

/// A [`SharedStore`] in memory, for one thread: the core's tests, and a model of what a native
/// host does behind its lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable> {
        let entries = self.entries.try_borrow().map_err(|_| Unavailable)?;
        Ok(match entries.get(key) {
            Some((value, cas)) => (Some(value.clone()), *cas),
            None => (None, 0),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, Unavailable> {
        let mut entries = self.entries.try_borrow_mut().map_err(|_| Unavailable)?;
        let current = entries.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Ok(false);
        }
        entries.insert(
            key.to_string(),
            (value.to_vec(), current.wrapping_add(1).max(1)),
        );
        Ok(true)
    }

    fn version(&self, key: &str) -> Result<u32, Unavailable> {
        let entries = self.entries.try_borrow().map_err(|_| Unavailable)?;
        Ok(entries.get(key).map_or(0, |(_, cas)| *cas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store where another worker writes between every read and write, `races` times.
    struct Racing {
        inner: MemoryStore,
        races: std::cell::Cell<usize>,
    }

    impl SharedStore for Racing {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable> {
            let got = self.inner.get(key);
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                self.inner.set(key, b"other", 0)?;
            }
            got
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, Unavailable> {
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn update_retries_a_lost_race_and_gives_up_after_eight() {
        let store = Racing {
            inner: MemoryStore::default(),
            races: std::cell::Cell::new(3),
        };
        update(&store, "k", |_| b"mine".to_vec()).unwrap();
        assert_eq!(
            store.inner.get("k").unwrap().0.as_deref(),
            Some(&b"mine"[..])
        );
        store.races.set(TRIES);
        assert_eq!(update(&store, "k", |_| b"x".to_vec()), Err(Unavailable));
    }

    #[test]
    fn memory_store_compares_versions() {
        let s = MemoryStore::default();
        assert!(s.set("k", b"1", 0).unwrap());
        let (_, cas) = s.get("k").unwrap();
        assert!(s.set("k", b"2", cas).unwrap());
        assert!(!s.set("k", b"3", cas).unwrap(), "a stale version loses");
    }
}

//! What the native host keeps for the whole process, below the glue and above the bindings:
//! [`Process`] (the clock and the shared store, as the core reads them off a stream: on the login
//! pool's threads and in the revocation fetcher on the main thread), the store itself (the native
//! form of proxy-wasm shared data, one locked map for every worker). `filter` and `revocation`
//! both use it; it uses no other module of the host.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::facts::Facts;
use crate::core::shared::{SharedStore, Unavailable};

/// Values and their compare-and-swap versions, by key.
type Entries = HashMap<String, (Vec<u8>, u32)>;

/// State shared by every worker of the process: the native form of proxy-wasm shared data.
fn store() -> &'static Mutex<Entries> {
    static STORE: std::sync::OnceLock<Mutex<Entries>> = std::sync::OnceLock::new();
    STORE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The facts of a login form's finish step on a pool thread, and of the revocation fetcher on the
/// main thread: the clock and the shared store. (The TLS fact travels in the [`PendingLogin`](crate::core::stream::PendingLogin),
/// read on the worker.)
pub(super) struct Process;

impl Facts for Process {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Never read by the finish step (the form carries it); a stream's is read through its `Host`.
    fn tls(&self) -> bool {
        false
    }
    /// The process has no connection.
    fn client_cert(&self) -> Option<crate::core::edge::ClientCert> {
        None
    }
}

impl SharedStore for Process {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable> {
        let map = store().lock().map_err(|_| Unavailable)?;
        Ok(match map.get(key) {
            Some((value, cas)) => (Some(value.clone()), *cas),
            None => (None, 0),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, Unavailable> {
        let mut map = store().lock().map_err(|_| Unavailable)?;
        let current = map.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Ok(false);
        }
        map.insert(
            key.to_string(),
            (value.to_vec(), current.wrapping_add(1).max(1)),
        );
        Ok(true)
    }

    fn version(&self, key: &str) -> Result<u32, Unavailable> {
        let map = store().lock().map_err(|_| Unavailable)?;
        Ok(map.get(key).map_or(0, |(_, cas)| *cas))
    }
}

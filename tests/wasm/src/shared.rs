//! Shared data, with proxy-wasm-cpp-host's CAS semantics, shareable between hosts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::codes::status;
use crate::headers::Headers;

/// Envoy's shared data for one `vm_id`: key -> (value, CAS), shared by every VM (worker) of the
/// plugin in the process. Clone the handle into several
/// [`HostBuilder::shared_data`](crate::HostBuilder::shared_data) to have several VMs share it, as
/// Envoy's workers do.
///
/// Semantics of proxy-wasm-cpp-host's `SharedData`: get of a missing key is NotFound; set with
/// CAS 0 always stores; set with a CAS that is not the key's current one is CasMismatch (a
/// missing key is stored whatever the CAS); every store takes the next value of one
/// process-wide CAS counter (starting at 1, skipping 0).
#[derive(Clone, Default)]
pub struct SharedData(Arc<Mutex<SharedInner>>);

#[derive(Default)]
pub(crate) struct SharedInner {
    map: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    last_cas: u32,
    /// Writes "another worker" makes just before the module's next CAS writes to a key.
    interference: Vec<(Vec<u8>, Vec<u8>, u32)>,
    /// Every set the module attempted: (key, CAS it passed, status answered).
    sets: Vec<(Vec<u8>, u32, i32)>,
}

impl SharedInner {
    fn next_cas(&mut self) -> u32 {
        self.last_cas = self.last_cas.wrapping_add(1);
        if self.last_cas == 0 {
            self.last_cas = 1;
        }
        self.last_cas
    }

    fn store(&mut self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        if let Some((_, current)) = self.map.get(key) {
            if cas != 0 && cas != *current {
                return status::CAS_MISMATCH;
            }
        }
        let next = self.next_cas();
        self.map.insert(key.to_vec(), (value.to_vec(), next));
        status::OK
    }
}

impl SharedData {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SharedInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value and CAS under `key`.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().map.get(key.as_bytes()).cloned()
    }

    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).map(|(v, _)| v)
    }

    /// What another worker (or a test) writes: an unconditional store (CAS 0).
    pub fn put(&self, key: &[u8], value: &[u8]) {
        self.lock().store(key, value, 0);
    }

    /// The next `times` CAS writes (CAS != 0) the module makes to `key` each find that another
    /// worker stored `value` between its read and its write: the write answers CasMismatch.
    pub fn interfere(&self, key: &str, value: &[u8], times: u32) {
        self.lock()
            .interference
            .push((key.as_bytes().to_vec(), value.to_vec(), times));
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self.lock().map.keys().cloned().collect();
        k.sort();
        k
    }

    /// Every `proxy_set_shared_data` so far: (key, CAS passed, status answered).
    pub fn sets(&self) -> Vec<(Vec<u8>, u32, i32)> {
        self.lock().sets.clone()
    }

    /// `proxy_get_shared_data`.
    pub(crate) fn module_get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock().map.get(key).cloned()
    }

    /// `proxy_set_shared_data`.
    pub(crate) fn module_set(&self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        let mut inner = self.lock();
        if cas != 0 {
            let pending = inner
                .interference
                .iter()
                .position(|(k, _, times)| k == key && *times > 0);
            if let Some(i) = pending {
                let (k, v, _) = inner.interference[i].clone();
                inner.interference[i].2 -= 1;
                inner.store(&k, &v, 0);
            }
        }
        let rc = inner.store(key, value, cas);
        inner.sets.push((key.to_vec(), cas, rc));
        rc
    }
}

/// One `proxy_http_call`, recorded for the test to answer later.
#[derive(Clone, Debug)]
pub struct HttpCall {
    pub token: u32,
    pub context_id: u32,
    pub upstream: Vec<u8>,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout_ms: u32,
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub kind: u32,
    pub name: String,
    pub value: i64,
}

/// The action a callback returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
    /// A value outside the ABI's 0.2.1 header action set ({0, 1}).
    Invalid(i32),
    /// The callback trapped (or an earlier one did), so there is no action.
    Trapped,
}

impl Action {
    pub(crate) fn from_raw(raw: i32) -> Action {
        match raw {
            0 => Action::Continue,
            1 => Action::Pause,
            other => Action::Invalid(other),
        }
    }
}

//! Test helpers of the key service: a policy built by hand, a clocked host in memory, and
//! access tokens signed with the core's own signing (plain HS256 JWS with `kid`), so every
//! test verifies for real.

use std::cell::Cell;

use serde_json::{json, Value};

use crate::core::facts::Facts;
use crate::core::keysource::KeySource;
use crate::core::shared::{MemoryStore, SharedStore, Unavailable};
use crate::core::token::{sign, Key, KeySet, Secret};

use super::{store_prefix, CacheLimits, CalloutBudget, ClaimNames, KeyService, KeyShape};

/// Seconds since the epoch the tests start at.
pub(crate) const NOW: u64 = 1_700_000_000;

/// The service's signing key `ks1`.
pub(crate) fn signing_key() -> Key {
    named_key("ks1", 7)
}

/// A key named `id`, its 32-byte secret filled with `fill`.
pub(crate) fn named_key(id: &str, fill: u8) -> Key {
    Key {
        id: id.to_string(),
        secret: Secret::from_bytes(vec![fill; 32]).unwrap(),
    }
}

/// The service as the defaults of the configuration describe it, with small caches.
pub(crate) fn service() -> KeyService {
    let (cluster, authority, path, key_header) =
        ("key_service", "key-service", "/access_tokens/", "x-api-key");
    KeyService {
        cluster: cluster.into(),
        authority: authority.into(),
        path: path.into(),
        key_header: key_header.into(),
        timeout_ms: 1000,
        signing: KeySource::Hmac(KeySet::new(vec![signing_key()]).unwrap()),
        issuer: None,
        audience: None,
        claims: ClaimNames::default(),
        cache: CacheLimits {
            entries: 64,
            rejections: 64,
            max_ttl_s: 300,
            rejection_ttl_s: 30,
            max_stale_s: 3600,
            retry_ms: 1000,
        },
        budget: CalloutBudget {
            per_second: 50,
            burst: 100,
            in_flight: 64,
            waiters: 64,
        },
        shape: KeyShape {
            min_len: 16,
            max_len: 256,
            public_prefix: String::new(),
            private_prefix: String::new(),
        },
        leeway: 30,
        store_prefix: store_prefix(cluster, authority, path, key_header),
    }
}

/// The claims of a key of `kind` (`public_key`/`private_key`) expiring at `exp`, under the
/// default claim names.
pub(crate) fn claims(kind: &str, exp: u64) -> Value {
    json!({
        "exp": exp,
        "iat": NOW - 5,
        "kind": kind,
        "organization_id": "org1",
        "project_id": "proj1",
        "products": ["maps"],
        "jti": "key-1",
    })
}

/// `claims` signed by `key` as a compact JWS.
pub(crate) fn token_by(claims: &Value, key: &Key) -> String {
    sign(&serde_json::to_vec(claims).unwrap(), key, b"")
}

/// `claims` signed by the service.
pub(crate) fn token(claims: &Value) -> String {
    token_by(claims, &signing_key())
}

/// A host in memory with a clock the test moves.
pub(crate) struct Host {
    pub(crate) store: MemoryStore,
    pub(crate) now_ms: Cell<u64>,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            store: MemoryStore::default(),
            now_ms: Cell::new(NOW * 1000),
        }
    }
}

impl Host {
    /// Moves the clock on by `ms`.
    pub(crate) fn advance_ms(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }
}

impl Facts for Host {
    fn client_cert(&self) -> Option<crate::core::edge::ClientCert> {
        None
    }
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }
    fn tls(&self) -> bool {
        false
    }
}

impl SharedStore for Host {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable> {
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, Unavailable> {
        self.store.set(key, value, cas)
    }
}

//! Fetched issuer keys and the verified-assertion cache, as the decision sees them.
//!
//! SKELETON: [`EdgeKeys`] is the interface between the decision and the worker's keys; the
//! fetch itself (single flight through `Next::Callout`, the keys kept in shared data) is filled
//! in by the fetch work.

use crate::core::jose::PublicKeys;

use super::super::decision::Identity;

/// Where and how often a source's keys are fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFetch {
    /// The Envoy cluster.
    pub cluster: String,
    /// `:authority` of the fetch. Defaults to the cluster name.
    pub authority: String,
    /// `:path` of the JWK set, or the prefix a `kid` is appended to (PEM per `kid`).
    pub path: String,
    /// A good key set is fetched again after this many seconds.
    pub refresh_seconds: u64,
    /// Past this many seconds without a good fetch the source is degraded: its assertions are
    /// refused (`edge_keys_unavailable`), never accepted unchecked.
    pub max_stale_seconds: u64,
    /// An unknown `kid` fetches again at most once per this many seconds (per process).
    pub refetch_seconds: u64,
    /// Timeout of one fetch.
    pub timeout_ms: u64,
    /// Where this source's keys live in shared data (made from the cluster, authority and path).
    pub store_key: String,
}

/// The keys of a fetched source as this worker knows them.
#[derive(Clone, Copy, Debug)]
pub enum KeysAt<'a> {
    /// Usable keys (fetched within `max_stale_seconds`).
    Ready(&'a PublicKeys),
    /// None usable: never fetched, or too long ago.
    Unavailable,
}

/// The decision's view of fetched keys and of the verified-assertion cache (one per worker).
pub trait EdgeKeys {
    /// The keys of the fetched assertion source at `source` (its index in `edge.assertions`).
    fn keys(&self, source: usize) -> KeysAt<'_>;
    /// The token names `kid` (`None`: unreadable) and the keys have none such, or there are no
    /// usable keys: plan a fetch. `true`: a fetch is planned and the request must wait for it
    /// (the decision asks); `false`: none may be made now (one was made too recently, or just
    /// failed): decide with what there is.
    fn want(&self, source: usize, kid: Option<&str>) -> bool;
    /// A verified assertion of `source` seen before, still valid at `now`: its developer.
    fn cached(&self, source: usize, token: &[u8], now: u64) -> Option<Identity>;
    /// Remembers that `token` of `source` verified to `identity` until `exp`.
    fn remember(&self, source: usize, token: &[u8], identity: &Identity, exp: u64);
}

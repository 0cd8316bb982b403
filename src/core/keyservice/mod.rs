//! API keys devgate did not sign, resolved at the team's authentication service (the seed's
//! `application_kit.authenticator` model, one layer down): the service turns a key into a
//! signed access token describing it; devgate caches that answer for every worker of the Envoy
//! process and keeps serving through the service's outages without ever softening a rejection.
//!
//! - [`answer`]: what a callout's answer means (a resolved key, an authoritative rejection, or
//!   "unavailable", which is never a verdict on the key), and the access token's claims.
//! - [`cache`]: the shared cache, resolved keys and rejections in separate bounded slot tables
//!   (a flood of junk keys cannot evict good ones), fresh until the token's `exp`, served stale
//!   up to `max_stale` while the service is unavailable.
//! - [`flight`]: one callout per key at a time across the process (others wait for it), and
//!   the process-wide budget of callouts per second and in flight.
//!
//! The decision reads a key's state through [`lookup`]; a stream that must ask the service
//! ends its step in a [`crate::core::callout::Callout`] and resumes with the answer.

pub mod answer;
pub mod cache;
pub mod flight;
#[cfg(test)]
pub(crate) mod testing;

use sha2::{Digest, Sha256};

use crate::core::apikey::{ApiKey, KeyKind};
use crate::core::codes::Reason;
use crate::core::keysource::KeySource;

pub use cache::lookup;

/// The gauge of the cache's filled slots.
pub const ENTRIES_GAUGE: &str = "devgate.key_service.entries";

/// The claim names of the service's access tokens (configurable, so an existing service fits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimNames {
    /// The key's kind: `public_key` or `private_key`. Default `kind`.
    pub kind: String,
    /// The organization id. Default `organization_id`.
    pub organization: String,
    /// The project id. Default `project_id`.
    pub project: String,
    /// The products (array of strings). Default `products`.
    pub products: String,
    /// Write permission (boolean). Default `write`.
    pub write: String,
    /// Allowed referer hosts of a public key (array). Default `referers`.
    pub referers: String,
    /// Allowed networks of a private key (array of IPs/CIDRs). Default `ips`.
    pub ips: String,
    /// The key's id (revocation, the upstream's key-id header). Default `jti`.
    pub id: String,
}

impl Default for ClaimNames {
    fn default() -> ClaimNames {
        ClaimNames {
            kind: "kind".into(),
            organization: "organization_id".into(),
            project: "project_id".into(),
            products: "products".into(),
            write: "write".into(),
            referers: "referers".into(),
            ips: "ips".into(),
            id: "jti".into(),
        }
    }
}

/// How long answers live in the cache, and how many it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Slots for resolved keys (each holds one key; a key's slot is fixed by its hash).
    pub entries: u32,
    /// Slots for rejections, apart from resolved keys.
    pub rejections: u32,
    /// The longest a resolved key is fresh, whatever its token's `exp` says (seconds).
    pub max_ttl_s: u64,
    /// How long a rejection is fresh (seconds). Past it the service is asked again, and while
    /// it is unavailable the rejection keeps rejecting.
    pub rejection_ttl_s: u64,
    /// How long past its freshness an expired resolved key may be served while the service is
    /// unavailable (seconds; 0: never).
    pub max_stale_s: u64,
    /// After a callout ended unavailable, how long requests for that key use what is cached
    /// (or get 503) before one asks again (milliseconds).
    pub retry_ms: u64,
}

/// The process-wide budget of callouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalloutBudget {
    /// Callouts started per second, sustained.
    pub per_second: u32,
    /// Callouts that may start back to back when the budget is full.
    pub burst: u32,
    /// Callouts in flight at once, across the process.
    pub in_flight: u32,
    /// Requests that may wait on one key's callout.
    pub waiters: u32,
}

/// Which keys are worth a callout: anything else is refused without asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyShape {
    /// Shortest key (bytes, prefix included).
    pub min_len: usize,
    /// Longest key (bytes, prefix included).
    pub max_len: usize,
    /// What a public key (the `key` parameter) starts with (the seed's `woos-`); empty: any.
    pub public_prefix: String,
    /// What a private key starts with; empty: any.
    pub private_prefix: String,
}

/// The authentication service (`api.service`).
#[derive(Clone, Debug)]
pub struct KeyService {
    /// The Envoy cluster of the service.
    pub cluster: String,
    /// The `:authority` of the callout.
    pub authority: String,
    /// The path asked (the seed's `/access_tokens/`); the key never goes in it.
    pub path: String,
    /// The header that carries the key to the service (lower case).
    pub key_header: String,
    /// How long a callout may take (milliseconds).
    pub timeout_ms: u64,
    /// How the service signs its access tokens.
    pub signing: KeySource,
    /// The access token's required `iss`, if any.
    pub issuer: Option<String>,
    /// The access token's required `aud`, if any.
    pub audience: Option<String>,
    /// The claim names.
    pub claims: ClaimNames,
    /// Cache sizes and lifetimes.
    pub cache: CacheLimits,
    /// The callout budget.
    pub budget: CalloutBudget,
    /// The shape check.
    pub shape: KeyShape,
    /// Seconds of clock skew tolerated on the access token's `exp`/`iat`/`nbf`.
    pub leeway: u64,
    /// The prefix of every shared-store key of this service's cache and flights: derived from
    /// what identifies the service (cluster, authority, path, key header), so configurations
    /// that ask different services never share answers. Made by [`store_prefix`].
    pub store_prefix: String,
}

/// The shared-store prefix of a service: `devgate.keys.<16 hex digits>`.
pub fn store_prefix(cluster: &str, authority: &str, path: &str, key_header: &str) -> String {
    let mut h = Sha256::new();
    for part in [cluster, authority, path, key_header] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::from("devgate.keys.");
    for b in digest.iter().take(8) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A key's identity in the cache: SHA-256 over the service's prefix and the key. The key
/// itself is never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of `key` for `service`.
    pub fn of(service: &KeyService, key: &[u8]) -> KeyHash {
        let mut h = Sha256::new();
        h.update(service.store_prefix.as_bytes());
        h.update([0u8]);
        h.update(key);
        KeyHash(h.finalize().into())
    }

    /// The first 8 bytes, as a number: the flight id waiters wait on, and the slot choice.
    pub fn short(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.0.get(..8).unwrap_or(&[0u8; 8]));
        u64::from_be_bytes(b)
    }
}

/// Whether `key`, found where a key of `kind` travels, is worth asking the service about:
/// length, alphabet (URL-safe base64 and `-._~`), and the configured prefix.
pub fn shape_ok(shape: &KeyShape, kind: KeyKind, key: &[u8]) -> bool {
    let prefix = match kind {
        KeyKind::Public => shape.public_prefix.as_bytes(),
        KeyKind::Private => shape.private_prefix.as_bytes(),
        KeyKind::User => return false,
    };
    key.len() >= shape.min_len
        && key.len() <= shape.max_len
        && key.starts_with(prefix)
        && key
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// What the decision knows about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The key as the service described it; `stale` when served past its freshness in degraded
    /// mode.
    Known {
        /// The key's facts.
        key: ApiKey,
        /// Served stale (the service is unavailable).
        stale: bool,
    },
    /// An authoritative rejection (fresh, or kept through an outage).
    Rejected {
        /// `key_rejected`, `key_forbidden`, `over_quota`, `over_free_quota`.
        reason: Reason,
        /// Seconds the client should wait (the service's `Retry-After`), for over-quota.
        retry_after: Option<u64>,
    },
    /// The service is unavailable and nothing cached may answer: 503.
    Unavailable,
    /// Nothing usable: the service must be asked.
    Ask,
}

/// What a stream's own callout came to (kept by the stream, used by its resumed decision ahead
/// of the cache, so an answer counts even when the cache could not keep it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The service described the key; fresh until `fresh_until` (seconds since the epoch).
    Resolved {
        /// The key's facts.
        key: ApiKey,
        /// The token's `exp`, capped by `max_ttl`.
        fresh_until: u64,
    },
    /// An authoritative rejection.
    Rejected {
        /// `key_rejected`, `key_forbidden`, `over_quota`, `over_free_quota`.
        reason: Reason,
        /// The service's `Retry-After` (seconds), for over-quota answers.
        retry_after: Option<u64>,
    },
    /// No usable answer: never a verdict on the key.
    Unavailable,
}

/// How the decision learns what is known about a key it did not sign (one call per request:
/// an implementation remembers its answer, since a request may be decided under several
/// methods).
pub trait Resolver {
    /// What is known about `key`, found where keys of `kind` travel.
    fn resolve(&self, kind: KeyKind, key: &[u8]) -> Lookup;
}

/// The [`Resolver`] of a stream: the stream's own callout answer first, then the shared cache.
/// It remembers the key it was asked about (for the callout), the event to count, and whether
/// it served a stale entry.
pub struct CacheResolver<'a, S: crate::core::shared::SharedStore + ?Sized> {
    service: &'a KeyService,
    store: &'a S,
    now: u64,
    now_ms: u64,
    in_hand: Option<(&'a KeyHash, &'a Resolution)>,
    memo: std::cell::RefCell<Option<Asked>>,
}

/// What a [`CacheResolver`] was asked and answered.
#[derive(Clone)]
pub struct Asked {
    /// The key's hash.
    pub hash: KeyHash,
    /// The key itself, for the callout (wiped on drop).
    pub key: zeroize::Zeroizing<Vec<u8>>,
    /// The answer given.
    pub lookup: Lookup,
    /// The counter event of the lookup.
    pub event: Option<crate::core::counters::KeyEvent>,
}

impl std::fmt::Debug for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asked")
            .field("lookup", &self.lookup)
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

impl<'a, S: crate::core::shared::SharedStore + ?Sized> CacheResolver<'a, S> {
    /// A resolver for one request's decision at `now` / `now_ms`. `in_hand`: the answer of
    /// the stream's own callout and the key it was about; it speaks for that key only.
    pub fn new(
        service: &'a KeyService,
        store: &'a S,
        now: u64,
        now_ms: u64,
        in_hand: Option<(&'a KeyHash, &'a Resolution)>,
    ) -> Self {
        CacheResolver {
            service,
            store,
            now,
            now_ms,
            in_hand,
            memo: std::cell::RefCell::new(None),
        }
    }

    /// What the decision asked about, if it did.
    pub fn asked(self) -> Option<Asked> {
        self.memo.into_inner()
    }
}

impl<S: crate::core::shared::SharedStore + ?Sized> Resolver for CacheResolver<'_, S> {
    fn resolve(&self, _kind: KeyKind, key: &[u8]) -> Lookup {
        let hash = KeyHash::of(self.service, key);
        if let Ok(memo) = self.memo.try_borrow() {
            if let Some(asked) = memo.as_ref().filter(|a| a.hash == hash) {
                return asked.lookup.clone();
            }
        }
        let (lookup, event) = match cache::lookup(
            self.service,
            self.store,
            &hash,
            self.now,
            self.now_ms,
            // The stream's answer is about the key it asked; any other key is looked up.
            self.in_hand
                .filter(|(asked, _)| **asked == hash)
                .map(|(_, answer)| answer),
        ) {
            Ok(found) => found,
            // The store failed: no verdict on the key, and no callout either.
            Err(_) => (Lookup::Unavailable, None),
        };
        if let Ok(mut memo) = self.memo.try_borrow_mut() {
            *memo = Some(Asked {
                hash,
                key: zeroize::Zeroizing::new(key.to_vec()),
                lookup: lookup.clone(),
                event,
            });
        }
        lookup
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{service, NOW};
    use super::*;
    use crate::core::counters::KeyEvent;
    use crate::core::net::CidrList;
    use crate::core::shared::{MemoryStore, SharedStore, Unavailable};

    #[test]
    fn the_shape_check_takes_length_alphabet_and_prefix() {
        let mut shape = service().shape;
        let ok = |shape: &KeyShape, kind, key: &[u8]| shape_ok(shape, kind, key);
        assert!(ok(&shape, KeyKind::Private, b"0123456789abcdef"));
        assert!(ok(&shape, KeyKind::Public, b"Aa-_.~0123456789"));
        assert!(!ok(&shape, KeyKind::Private, b"0123456789abcde"), "short");
        assert!(ok(&shape, KeyKind::Private, &[b'a'; 256]));
        assert!(!ok(&shape, KeyKind::Private, &[b'a'; 257]), "long");
        for bad in [
            &b"0123456789abcdef+"[..],
            b"0123456789 abcdef",
            b"0123456789abcdef\xff",
        ] {
            assert!(!ok(&shape, KeyKind::Private, bad), "{bad:?}");
        }
        shape.public_prefix = "woos-".into();
        shape.private_prefix = "woss-".into();
        assert!(ok(&shape, KeyKind::Public, b"woos-0123456789ab"));
        assert!(!ok(&shape, KeyKind::Private, b"woos-0123456789ab"));
        assert!(ok(&shape, KeyKind::Private, b"woss-0123456789ab"));
        assert!(!ok(&shape, KeyKind::Public, b"0123456789abcdefgh"));
    }

    #[test]
    fn store_prefixes_and_hashes_separate_services_and_keys() {
        let a = store_prefix("c", "a", "/p", "x-api-key");
        assert_eq!(a.len(), "devgate.keys.".len() + 16);
        assert!(a.starts_with("devgate.keys."));
        assert_eq!(a, store_prefix("c", "a", "/p", "x-api-key"));
        // Lengths are hashed too: moving a byte between parts is another service.
        assert_ne!(a, store_prefix("ca", "", "/p", "x-api-key"));
        assert_ne!(a, store_prefix("c", "a", "/p", "x-key"));
        let s = service();
        let mut other = service();
        other.store_prefix = store_prefix("other", "a", "/p", "x-api-key");
        let key = b"0123456789abcdef";
        assert_eq!(KeyHash::of(&s, key), KeyHash::of(&s, key));
        assert_ne!(KeyHash::of(&s, key), KeyHash::of(&other, key));
        assert_ne!(KeyHash::of(&s, key), KeyHash::of(&s, b"0123456789abcdeg"));
        let h = KeyHash::of(&s, key);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.0[..8]);
        assert_eq!(h.short(), u64::from_be_bytes(first));
    }

    fn private(id: &str) -> ApiKey {
        ApiKey {
            kind: KeyKind::Private,
            id: id.into(),
            org: "o".into(),
            project: "p".into(),
            products: vec!["maps".into()],
            write: false,
            referers: Vec::new(),
            ips: CidrList(Vec::new()),
            exp: None,
        }
    }

    #[test]
    fn the_resolver_applies_the_streams_answer_to_its_own_key_only_and_remembers() {
        let s = service();
        let db = MemoryStore::default();
        let mine = b"my-key-0123456789";
        let hash = KeyHash::of(&s, mine);
        let answer = Resolution::Resolved {
            key: private("k1"),
            fresh_until: NOW + 60,
        };
        let r = CacheResolver::new(&s, &db, NOW, NOW * 1000, Some((&hash, &answer)));
        assert_eq!(
            r.resolve(KeyKind::Private, b"another-key-0123456789"),
            Lookup::Ask,
            "another key is never admitted by this stream's answer"
        );
        let r = CacheResolver::new(&s, &db, NOW, NOW * 1000, Some((&hash, &answer)));
        let known = Lookup::Known {
            key: private("k1"),
            stale: false,
        };
        assert_eq!(r.resolve(KeyKind::Private, mine), known);
        assert_eq!(r.resolve(KeyKind::Private, mine), known);
        let asked = r.asked().unwrap();
        assert_eq!((asked.hash, asked.event), (hash, None));
        assert_eq!(asked.key.as_slice(), mine);
        assert!(!format!("{asked:?}").contains("my-key"));
        // Asked once, looked up once: a miss.
        let r = CacheResolver::new(&s, &db, NOW, NOW * 1000, None);
        assert_eq!(r.resolve(KeyKind::Private, mine), Lookup::Ask);
        assert_eq!(r.asked().unwrap().event, Some(KeyEvent::Miss));
    }

    #[test]
    fn a_failing_store_is_unavailable_not_a_callout() {
        struct Broken;
        impl SharedStore for Broken {
            fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, u32), Unavailable> {
                Err(Unavailable)
            }
            fn set(&self, _: &str, _: &[u8], _: u32) -> Result<bool, Unavailable> {
                Err(Unavailable)
            }
        }
        let s = service();
        let r = CacheResolver::new(&s, &Broken, NOW, NOW * 1000, None);
        assert_eq!(
            r.resolve(KeyKind::Private, b"0123456789abcdef"),
            Lookup::Unavailable
        );
    }
}

//! The inclusive bounds of every integer field, stated once: the parser refuses a value outside
//! them, and the JSON Schema (`minimum`, `maximum`) and so docs/config-reference.md are generated
//! from the same constants.

use super::{MAX_LEEWAY, MAX_LOGIN_COST, MAX_SESSION_SECONDS};
use crate::core::htpasswd::MIN_COST;

/// The inclusive bounds of one integer field.
pub(super) struct Bounds {
    /// The smallest value accepted.
    pub(super) min: u64,
    /// The largest value accepted.
    pub(super) max: u64,
}

impl Bounds {
    /// `value` lies within the bounds.
    pub(super) fn contains(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// `tokens.leeway_seconds`, `api.leeway_seconds`, `login.leeway_seconds`.
pub(super) const LEEWAY_SECONDS: Bounds = Bounds {
    min: 0,
    max: MAX_LEEWAY,
};

/// `revocation.refresh_seconds`.
pub(super) const REFRESH_SECONDS: Bounds = Bounds { min: 1, max: 3600 };

/// `revocation.timeout_ms`.
pub(super) const TIMEOUT_MS: Bounds = Bounds {
    min: 100,
    max: 60_000,
};

/// `revocation.max_stale_seconds`: at most 7 days; the parser also refuses a value below the
/// configuration's `refresh_seconds`, so the smallest value is the smallest refresh.
pub(super) const MAX_STALE_SECONDS: Bounds = Bounds {
    min: REFRESH_SECONDS.min,
    max: 7 * 86_400,
};

/// `login.session_seconds`.
pub(super) const SESSION_SECONDS: Bounds = Bounds {
    min: 60,
    max: MAX_SESSION_SECONDS,
};

/// `login.max_cost`.
pub(super) const MAX_COST: Bounds = Bounds {
    min: MIN_COST as u64,
    max: MAX_LOGIN_COST as u64,
};

/// `login.max_failures`.
pub(super) const MAX_FAILURES: Bounds = Bounds { min: 1, max: 1000 };

/// `login.failure_window_seconds`.
pub(super) const FAILURE_WINDOW_SECONDS: Bounds = Bounds {
    min: 1,
    max: 86_400,
};

/// `login.verifies_per_minute`: there is no "off" (0 would refuse every login, and no budget
/// would let a flood from many addresses hold the workers).
pub(super) const VERIFIES_PER_MINUTE: Bounds = Bounds {
    min: 1,
    max: 60_000,
};

/// `login.verify_burst`.
pub(super) const VERIFY_BURST: Bounds = Bounds { min: 1, max: 1000 };

/// `api.service.timeout_ms`: one callout holds the requests waiting on it, so at most 30 s.
pub(super) const SERVICE_TIMEOUT_MS: Bounds = Bounds {
    min: 50,
    max: 30_000,
};

/// `api.service.cache.entries` and `api.service.cache.rejections`: slots of the cache shared by
/// the Envoy process's workers.
pub(super) const CACHE_SLOTS: Bounds = Bounds {
    min: 1,
    max: 1_000_000,
};

/// `api.service.cache.max_ttl_seconds`.
pub(super) const MAX_TTL_SECONDS: Bounds = Bounds {
    min: 1,
    max: 86_400,
};

/// `api.service.cache.rejection_ttl_seconds`.
pub(super) const REJECTION_TTL_SECONDS: Bounds = Bounds { min: 1, max: 3600 };

/// `api.service.cache.max_stale_seconds`: 0 never serves an expired answer; at most 7 days.
pub(super) const SERVICE_MAX_STALE_SECONDS: Bounds = Bounds {
    min: 0,
    max: 7 * 86_400,
};

/// `api.service.cache.retry_ms`.
pub(super) const RETRY_MS: Bounds = Bounds {
    min: 100,
    max: 60_000,
};

/// `api.service.budget.per_second`.
pub(super) const CALLOUTS_PER_SECOND: Bounds = Bounds {
    min: 1,
    max: 100_000,
};

/// `api.service.budget.burst`.
pub(super) const CALLOUT_BURST: Bounds = Bounds {
    min: 1,
    max: 100_000,
};

/// `api.service.budget.in_flight`.
pub(super) const CALLOUTS_IN_FLIGHT: Bounds = Bounds {
    min: 1,
    max: 10_000,
};

/// `api.service.budget.waiters`.
pub(super) const CALLOUT_WAITERS: Bounds = Bounds {
    min: 1,
    max: 10_000,
};

/// `api.service.shape.min_length` and `api.service.shape.max_length` (bytes, prefix included);
/// the parser also refuses a `min_length` above `max_length`.
pub(super) const KEY_LENGTH: Bounds = Bounds { min: 1, max: 4096 };

/// `edge.assertions[].keys.*_url.refresh_seconds`: a good key set is fetched again after this.
pub(super) const KEY_REFRESH_SECONDS: Bounds = Bounds {
    min: 10,
    max: 86_400,
};

/// `edge.assertions[].keys.*_url.max_stale_seconds`: at most 7 days; the parser also refuses a
/// value below the source's `refresh_seconds`.
pub(super) const KEY_MAX_STALE_SECONDS: Bounds = Bounds {
    min: 60,
    max: 7 * 86_400,
};

/// `edge.assertions[].keys.*_url.refetch_seconds`: an unknown `kid` fetches again at most once
/// per this many seconds per Envoy process.
pub(super) const KEY_REFETCH_SECONDS: Bounds = Bounds { min: 1, max: 3600 };

/// `edge.assertions[].keys.*_url.timeout_ms`.
pub(super) const KEY_TIMEOUT_MS: Bounds = Bounds {
    min: 100,
    max: 60_000,
};

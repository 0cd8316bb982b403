//! Rate limiting: failed logins per peer (per /64 for IPv6), stored in shared data.

use std::net::IpAddr;

use crate::core::net::normalize_ip;

use super::RATE_KEY_PREFIX;

/// Failed logins of one peer in the current window, as kept in proxy-wasm shared data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// Failures since `window_start`.
    pub count: u32,
    /// Seconds since the epoch at the first failure of the window.
    pub window_start: u64,
}

/// Whether a login attempt may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt may go ahead.
    Allow,
    /// Too many failures: try again in `retry_after` seconds (at least 1).
    Limited {
        /// Seconds until the next attempt may go ahead.
        retry_after: u64,
    },
}

/// Format version of [`Attempts::to_bytes`].
pub(super) const ATTEMPTS_VERSION: u8 = 1;

impl Attempts {
    /// Size of [`Attempts::to_bytes`].
    pub const LEN: usize = 13;

    /// What to store after a successful login: [`Attempts::from_bytes`] reads it as no
    /// failures. (Shared data cannot be deleted, only overwritten.)
    pub const CLEARED: &'static [u8] = &[];

    /// A version byte, then `count` and `window_start`, big-endian.
    pub fn to_bytes(&self) -> [u8; Attempts::LEN] {
        let mut out = [0u8; Attempts::LEN];
        let (version, rest) = out.split_at_mut(1);
        let (count, start) = rest.split_at_mut(4);
        version.copy_from_slice(&[ATTEMPTS_VERSION]);
        count.copy_from_slice(&self.count.to_be_bytes());
        start.copy_from_slice(&self.window_start.to_be_bytes());
        out
    }

    /// Reads [`Attempts::to_bytes`]; `None` for anything else ([`Attempts::CLEARED`], absent,
    /// another version, garbage), which counts as no failures.
    pub fn from_bytes(bytes: &[u8]) -> Option<Attempts> {
        let [version, rest @ ..] = bytes else {
            return None;
        };
        if *version != ATTEMPTS_VERSION || rest.len() != Attempts::LEN - 1 {
            return None;
        }
        let (count, start) = rest.split_at(4);
        Some(Attempts {
            count: u32::from_be_bytes(count.try_into().ok()?),
            window_start: u64::from_be_bytes(start.try_into().ok()?),
        })
    }
}

/// Whether `prev` is over: older than `window` seconds, or (clock stepped back, corrupt
/// data) starting in the future. A record that cannot be trusted never locks anyone out.
pub(super) fn expired(prev: &Attempts, now: u64, window: u64) -> bool {
    prev.window_start > now || now.saturating_sub(prev.window_start) >= window
}

/// A fixed window: after `limit` failures within `window` seconds of the first one, further
/// attempts are refused until the window ends. `limit` 0 refuses from the first failure on;
/// `window` 0 never limits.
pub fn check(prev: Option<Attempts>, now: u64, limit: u32, window: u64) -> Verdict {
    match prev {
        Some(p) if !expired(&p, now, window) && p.count >= limit => Verdict::Limited {
            retry_after: p
                .window_start
                .saturating_add(window)
                .saturating_sub(now)
                .max(1),
        },
        _ => Verdict::Allow,
    }
}

/// The record after one more failure at `now`: a new window if `prev` is absent or over.
pub fn record_failure(prev: Option<Attempts>, now: u64, window: u64) -> Attempts {
    match prev {
        Some(p) if !expired(&p, now, window) => Attempts {
            count: p.count.saturating_add(1),
            window_start: p.window_start,
        },
        _ => Attempts {
            count: 1,
            window_start: now,
        },
    }
}

/// The shared-data key counting `peer`'s failures: `devgate.login.<ip>`, IPv4-mapped IPv6
/// folded to IPv4, IPv6 reduced to its /64 (`devgate.login.2001:db8:1:2::/64`).
pub fn rate_key(peer: IpAddr) -> String {
    match normalize_ip(peer) {
        IpAddr::V4(v4) => format!("{RATE_KEY_PREFIX}{v4}"),
        IpAddr::V6(v6) => {
            let net = std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1));
            format!("{RATE_KEY_PREFIX}{net}/64")
        }
    }
}

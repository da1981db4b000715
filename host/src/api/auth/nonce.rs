//! The replay cache: every (AccessKey, nonce) seen within the clock-skew window.
//!
//! Entries are bucketed by the minute of the request's own (signed) timestamp. A replay carries
//! the same timestamp, so it lands in the same bucket; once a bucket is older than the skew
//! window, any request stamped in it fails the clock check before reaching the cache, so the
//! bucket can go. Entries are 64-bit keyed SipHash digests (random key per process): eight
//! bytes per request seen, and no attacker-chosen collisions.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use time::OffsetDateTime;

use super::MAX_SKEW_SECONDS;

/// Remembers recent nonces.
#[derive(Debug)]
pub struct NonceCache {
    hasher: RandomState,
    /// The clock-skew window in seconds: how far a request's time may be from the server's,
    /// and so how long its nonce is remembered.
    window: i64,
    buckets: Mutex<BTreeMap<i64, HashSet<u64>>>,
}

impl Default for NonceCache {
    /// Alibaba's 15-minute window.
    fn default() -> Self {
        Self::with_window(MAX_SKEW_SECONDS)
    }
}

impl NonceCache {
    /// A cache for a clock-skew window of `seconds` (at least one).
    pub fn with_window(seconds: i64) -> Self {
        Self {
            hasher: RandomState::new(),
            window: seconds.max(1),
            buckets: Mutex::default(),
        }
    }

    /// The clock-skew window in seconds.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Records `nonce` for `access_key`; `false` if it was already seen (a replay).
    pub fn insert(
        &self,
        access_key: &str,
        nonce: &str,
        stamped: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        let digest = self.hasher.hash_one((access_key, nonce));
        let minute = stamped.unix_timestamp().div_euclid(60);
        let oldest_live = (now.unix_timestamp() - self.window).div_euclid(60) - 1;
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; refusing is the safe answer.
            return false;
        };
        while let Some(entry) = buckets.first_entry() {
            if *entry.key() >= oldest_live {
                break;
            }
            entry.remove();
        }
        buckets.entry(minute).or_default().insert(digest)
    }

    /// How many nonces are remembered (for metrics and tests).
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .map(|b| b.values().map(HashSet::len).sum())
            .unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    #[test]
    fn replays_are_caught_and_old_buckets_expire() {
        let c = NonceCache::default();
        let now = t(1_700_000_000);
        assert!(c.insert("ak", "n1", now, now));
        assert!(!c.insert("ak", "n1", now, now), "replay");
        assert!(
            c.insert("other", "n1", now, now),
            "nonces are per AccessKey"
        );
        // Still remembered near the end of the window.
        assert!(!c.insert("ak", "n1", now, t(1_700_000_000 + MAX_SKEW_SECONDS)));
        // Long after, the bucket is gone (and such a request fails the clock check anyway).
        assert!(c.insert("ak", "n2", t(1_700_010_000), t(1_700_010_000)));
        assert_eq!(c.len(), 1);
    }
}

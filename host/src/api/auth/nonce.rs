//! The replay cache: every (AccessKey, nonce) seen within the clock-skew window, kept across
//! restarts.
//!
//! Entries are bucketed by the minute of the request's own (signed) timestamp. A replay carries
//! the same timestamp, so it lands in the same bucket; once a bucket is older than the skew
//! window, any request stamped in it fails the clock check before reaching the cache, so the
//! bucket can go. Entries are 64-bit SipHash digests under a key derived from the root key:
//! eight bytes per request seen, no attacker-chosen collisions, and the same digests after a
//! restart.
//!
//! Each new entry is also copied (16 bytes: its minute and digest) into a journal, a file
//! mapped shared into memory and used as a ring, as the audit trail's journal is: the copy is in
//! the kernel's page cache, so it survives a crash of the process, and the next start reloads
//! what is still in the window. A request captured before a restart is then still a replay
//! after it. When the ring has wrapped within the window (more than [`SLOTS`] requests in it),
//! the minutes it no longer fully covers are fenced: requests stamped in them are refused as
//! expired until they would have expired anyway.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Mutex;

use time::OffsetDateTime;

use super::MAX_SKEW_SECONDS;
use crate::secret::SecretBytes;

/// Entries the journal holds: 16 MiB.
pub(super) const SLOTS: usize = 1 << 20;
const SLOT: usize = 16;

/// Remembers recent nonces.
#[derive(Debug)]
pub struct NonceCache {
    keys: (u64, u64),
    /// The clock-skew window in seconds: how far a request's time may be from the server's,
    /// and so how long its nonce is remembered.
    window: i64,
    /// Requests stamped in this minute or before are refused (see the module doc).
    fence: i64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: BTreeMap<i64, HashSet<u64>>,
    journal: Option<NonceJournal>,
}

/// The file where nonces outlive the process.
#[derive(Debug)]
pub struct NonceJournal {
    map: memmap2::MmapMut,
    next: usize,
    keys: (u64, u64),
    /// What the file held at open that may still be in a window (the longest is a day).
    loaded: Vec<(i64, u64)>,
    /// Whether the ring had wrapped, and the oldest minute it held: see the module doc.
    wrapped_since: Option<i64>,
}

/// The longest clock-skew window (`--max-clock-skew` allows a day), in minutes.
const LONGEST_WINDOW_MINUTES: i64 = 24 * 60 + 1;

impl NonceJournal {
    /// Opens (creating) the journal at `path`, with digests keyed by `key` (derived from the
    /// root key, so that they are the same after a restart), and reads what it holds from
    /// within a day of `now`, rewriting the file with just that. Done at start-up, before the
    /// listeners: a scan of the whole ring.
    #[allow(
        unsafe_code,
        reason = "mapping a file: memmap2 cannot rule out another process changing it"
    )]
    pub fn open(path: &Path, key: &SecretBytes, now: OffsetDateTime) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let len = (SLOTS * SLOT) as u64;
        if file.metadata()?.len() != len {
            file.set_len(len)?;
        }
        // SAFETY: the journal lives in the data directory, private to the server (0700) beside
        // the root key; nobody else maps or truncates it (whoever can, can do worse).
        let map = unsafe { memmap2::MmapOptions::new().map_mut(&file)? };
        let k = key.expose();
        let word = |i: usize| {
            k.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let oldest_kept = now.unix_timestamp().div_euclid(60) - LONGEST_WINDOW_MINUTES;
        let (mut loaded, mut full, mut oldest) = (Vec::new(), true, i64::MAX);
        for slot in map.chunks_exact(SLOT) {
            let (minute, digest) = slot.split_at(8);
            let minute = i64::from_le_bytes(minute.try_into().unwrap_or([0; 8]));
            if minute == 0 {
                full = false;
                continue;
            }
            oldest = oldest.min(minute);
            if minute >= oldest_kept {
                loaded.push((
                    minute,
                    u64::from_le_bytes(digest.try_into().unwrap_or([0; 8])),
                ));
            }
        }
        let mut journal = Self {
            map,
            next: 0,
            keys: (word(0), word(8)),
            loaded: Vec::new(),
            wrapped_since: full.then_some(oldest),
        };
        journal.map.fill(0);
        for (minute, digest) in &loaded {
            journal.put(*minute, *digest);
        }
        journal.loaded = loaded;
        Ok(journal)
    }

    fn put(&mut self, minute: i64, digest: u64) {
        let at = (self.next % SLOTS) * SLOT;
        if let Some(slot) = self.map.get_mut(at..at + SLOT) {
            slot[..8].copy_from_slice(&minute.to_le_bytes());
            slot[8..].copy_from_slice(&digest.to_le_bytes());
        }
        self.next += 1;
    }
}

impl Default for NonceCache {
    /// Alibaba's 15-minute window, in memory only (tests).
    fn default() -> Self {
        Self::with_window(MAX_SKEW_SECONDS)
    }
}

impl NonceCache {
    /// A cache for a clock-skew window of `seconds` (at least one), in memory only.
    pub fn with_window(seconds: i64) -> Self {
        let mut key = [0u8; 16];
        crate::crypto::fill_random(&mut key);
        let word = |b: &[u8]| b.try_into().map_or(0, u64::from_le_bytes);
        Self {
            keys: (word(&key[..8]), word(&key[8..])),
            window: seconds.max(1),
            fence: i64::MIN,
            inner: Mutex::default(),
        }
    }

    /// A cache that keeps its nonces in `journal`, reloading those still in the window at
    /// `now` (the journal is rewritten with just them).
    pub fn with_journal(seconds: i64, mut journal: NonceJournal, now: OffsetDateTime) -> Self {
        let window = seconds.max(1);
        let oldest_live = oldest_live(now, window);
        let mut buckets: BTreeMap<i64, HashSet<u64>> = BTreeMap::new();
        for (minute, digest) in std::mem::take(&mut journal.loaded) {
            if minute >= oldest_live {
                buckets.entry(minute).or_default().insert(digest);
            }
        }
        // A ring that wrapped lost entries older than its oldest: fence those minutes (and
        // that one, which it may hold only in part) while they are in the window.
        let fence = match journal.wrapped_since {
            Some(oldest) if oldest >= oldest_live => oldest,
            _ => i64::MIN,
        };
        let keys = journal.keys;
        Self {
            keys,
            window,
            fence,
            inner: Mutex::new(Inner {
                buckets,
                journal: Some(journal),
            }),
        }
    }

    /// The clock-skew window in seconds.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Whether a request stamped `stamped` falls in a minute the cache no longer fully
    /// remembers after a restart (see the module doc): it must be refused.
    pub fn fenced(&self, stamped: OffsetDateTime) -> bool {
        stamped.unix_timestamp().div_euclid(60) <= self.fence
    }

    #[allow(
        deprecated,
        reason = "std's SipHasher is the keyed SipHash-2-4 it still ships"
    )]
    fn digest(&self, access_key: &str, nonce: &str) -> u64 {
        let mut h = std::hash::SipHasher::new_with_keys(self.keys.0, self.keys.1);
        (access_key, nonce).hash(&mut h);
        h.finish()
    }

    /// Records `nonce` for `access_key`; `false` if it was already seen (a replay).
    pub fn insert(
        &self,
        access_key: &str,
        nonce: &str,
        stamped: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        let digest = self.digest(access_key, nonce);
        let minute = stamped.unix_timestamp().div_euclid(60);
        let oldest_live = oldest_live(now, self.window);
        let Ok(mut inner) = self.inner.lock() else {
            // A poisoned lock means a panic elsewhere; refusing is the safe answer.
            return false;
        };
        while let Some(entry) = inner.buckets.first_entry() {
            if *entry.key() >= oldest_live {
                break;
            }
            entry.remove();
        }
        let fresh = inner.buckets.entry(minute).or_default().insert(digest);
        if fresh && let Some(journal) = &mut inner.journal {
            journal.put(minute, digest);
        }
        fresh
    }

    /// How many nonces are remembered (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.buckets.values().map(HashSet::len).sum())
            .unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The oldest minute whose requests can still pass the clock check at `now`.
fn oldest_live(now: OffsetDateTime, window: i64) -> i64 {
    (now.unix_timestamp() - window).div_euclid(60) - 1
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

    /// Nonces outlive the process: a cache reopened on the same journal (as after a restart,
    /// or a crash: the journal is mapped shared) still refuses them, and forgets those that
    /// left the window.
    #[test]
    fn replays_stay_refused_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.journal");
        let key = SecretBytes::random(32);
        let now = t(1_700_000_000);
        let c = NonceCache::with_journal(900, NonceJournal::open(&path, &key, now).unwrap(), now);
        assert!(c.insert("ak", "n1", now, now));
        assert!(c.insert("ak", "n2", t(1_700_000_000 - 600), now));
        drop(c);
        let c = NonceCache::with_journal(900, NonceJournal::open(&path, &key, now).unwrap(), now);
        assert!(
            !c.insert("ak", "n1", now, now),
            "a replay after the restart"
        );
        assert!(!c.insert("ak", "n2", t(1_700_000_000 - 600), now));
        assert!(c.insert("ak", "n3", now, now));
        assert!(!c.fenced(now));
        drop(c);
        // Twenty minutes on, n1 left the window: it is forgotten (and would fail the clock
        // check); n3 again twice.
        let later = t(1_700_000_000 + 1200);
        let c =
            NonceCache::with_journal(900, NonceJournal::open(&path, &key, later).unwrap(), later);
        assert_eq!(c.len(), 0);
        drop(c);
        // Another root key: other digests, so nothing matches (and nothing is wrongly refused).
        let other = SecretBytes::random(32);
        let c = NonceCache::with_journal(900, NonceJournal::open(&path, &other, now).unwrap(), now);
        assert!(c.insert("ak", "n-new", now, now));
    }
}

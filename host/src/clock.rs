//! Time as a dependency: everything that reads the clock takes a [`Clock`], so tests can move time
//! (deletion windows, rotation intervals, timestamp skew) without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current UTC time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to: for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `unix_seconds`.
    pub fn at(unix_seconds: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(unix_seconds)))
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.0.load(Ordering::SeqCst))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Formats a time the way the SDK models expect: `2024-05-20T06:34:21Z` (UTC, whole seconds).
pub use arca_client::signing::format_utc;

/// Parses an RFC 3339 UTC time such as the SDKs' `x-acs-date` / `Timestamp`.
pub fn parse_utc(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_sdk_dates() {
        let t = parse_utc("2024-01-01T00:00:05Z").unwrap();
        assert_eq!(format_utc(t), "2024-01-01T00:00:05Z");
        assert!(parse_utc("2024-01-01 00:00:05").is_none());
    }
}

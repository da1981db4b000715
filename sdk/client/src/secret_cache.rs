//! A caching reader of secrets, like Alibaba's secret cache client: applications read through
//! it on every use, and it asks Arca only when a cached value is due for a refresh.
//!
//! A value is refreshed when its TTL runs out, or shortly after the secret's next scheduled
//! rotation (`NextRotationDate`), whichever comes first, so a rotated value is picked up
//! without waiting out a long TTL. An application whose login fails with a cached value calls
//! [`SecretCache::refresh`] (a rotation may have happened outside the schedule). If Arca cannot
//! be reached when a refresh is due, the last value keeps being served and the refresh is tried
//! again after [`RETRY_AFTER_ERROR`]: a brief outage of the KMS must not take the application's
//! database login down with it.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::{Client, Error};

/// How long after a failed refresh the next one is tried.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);
/// How long after `NextRotationDate` the cache refreshes (the rotation takes a moment).
pub const AFTER_ROTATION: Duration = Duration::from_secs(30);

/// One secret as last read.
#[derive(Clone)]
pub struct CachedSecret {
    /// The secret's name.
    pub name: String,
    /// The version read (ACSCurrent's at the time).
    pub version_id: String,
    /// `text` or `binary` (base64).
    pub data_type: String,
    /// The value; zeroized when the last copy is dropped.
    pub data: std::sync::Arc<Zeroizing<String>>,
}

impl fmt::Debug for CachedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSecret")
            .field("name", &self.name)
            .field("version_id", &self.version_id)
            .field("data", &"[REDACTED]")
            .finish()
    }
}

struct Entry {
    secret: CachedSecret,
    refresh_at: Instant,
}

/// The cache. Cheap to share behind an `Arc`.
pub struct SecretCache {
    client: Client,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// When a value read at `now` should be read again: after `ttl`, or [`AFTER_ROTATION`] past
/// the next rotation if that is sooner. `until_rotation` is the time left until
/// `NextRotationDate` (zero if it has passed).
pub fn refresh_time(now: Instant, ttl: Duration, until_rotation: Option<Duration>) -> Instant {
    let by_ttl = now + ttl;
    match until_rotation {
        Some(left) => by_ttl.min(now + left + AFTER_ROTATION),
        None => by_ttl,
    }
}

/// The time left until an SDK date-time (`2026-11-24T01:02:03Z`), zero if past; `None` if the
/// text is not such a date.
fn until(date: &str) -> Option<Duration> {
    let at =
        time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339).ok()?;
    let left = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

impl SecretCache {
    /// A cache reading through `client`, keeping values at most `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's ACSCurrent value, from the cache unless it is due for a refresh.
    pub async fn get(&self, name: &str) -> Result<CachedSecret, Error> {
        if let Some(e) = self.entries.lock().await.get(name)
            && Instant::now() < e.refresh_at
        {
            return Ok(e.secret.clone());
        }
        // Not under the lock: a slow read of one secret must not hold up reads of the others.
        let fetched = self.fetch(name).await;
        let mut entries = self.entries.lock().await;
        match fetched {
            Ok(entry) => {
                let secret = entry.secret.clone();
                entries.insert(name.to_owned(), entry);
                Ok(secret)
            }
            Err(err) => match entries.get_mut(name) {
                // Serve the last value through an outage; try again soon.
                Some(e) if matches!(err, Error::Transport(_)) || is_unavailable(&err) => {
                    e.refresh_at = Instant::now() + RETRY_AFTER_ERROR;
                    Ok(e.secret.clone())
                }
                _ => Err(err),
            },
        }
    }

    /// Reads the secret from Arca now (after a login with the cached value failed, say).
    pub async fn refresh(&self, name: &str) -> Result<CachedSecret, Error> {
        let entry = self.fetch(name).await?;
        let secret = entry.secret.clone();
        self.entries.lock().await.insert(name.to_owned(), entry);
        Ok(secret)
    }

    /// Forgets a secret; the next `get` reads it from Arca.
    pub async fn invalidate(&self, name: &str) {
        self.entries.lock().await.remove(name);
    }

    async fn fetch(&self, name: &str) -> Result<Entry, Error> {
        let reply = self
            .client
            .call("GetSecretValue", &[("SecretName", name)])
            .await?;
        let field = |k: &str| reply[k].as_str().unwrap_or_default().to_owned();
        let data = Zeroizing::new(field("SecretData"));
        let now = Instant::now();
        let until_rotation = reply["NextRotationDate"].as_str().and_then(until);
        Ok(Entry {
            secret: CachedSecret {
                name: name.to_owned(),
                version_id: field("VersionId"),
                data_type: field("SecretDataType"),
                data: std::sync::Arc::new(data),
            },
            refresh_at: refresh_time(now, self.ttl, until_rotation),
        })
    }
}

fn is_unavailable(e: &Error) -> bool {
    matches!(e, Error::Api { status, .. } if *status >= 500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_rotation_brings_the_refresh_forward() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_time(now, hour, None), now + hour);
        assert_eq!(
            refresh_time(now, hour, Some(Duration::from_secs(60))),
            now + Duration::from_secs(60) + AFTER_ROTATION
        );
        assert_eq!(refresh_time(now, hour, Some(10 * hour)), now + hour);
        assert!(until("2000-01-01T00:00:00Z") == Some(Duration::ZERO));
        assert!(until("2999-01-01T00:00:00Z").unwrap() > hour);
        assert_eq!(until("soon"), None);
    }
}

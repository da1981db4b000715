//! Tags on keys: at most 20 per resource, keys and values of at most 128 characters from
//! letters, digits, space and `/ \ _ - . + = : @`; keys may not start with `aliyun` or `acs:`.

use std::collections::BTreeMap;

use super::model::KeyRecord;
use super::{Caller, Error, Kms};
use crate::ids::KeyRef;
use crate::kms::Field;
use crate::store::Table;

/// Most tags one resource may carry.
pub const MAX_TAGS: usize = 20;

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || " /\\_-.+=:@".contains(c)
}

/// Checks one tag against the limits.
pub fn validate(key: &str, value: &str) -> Result<(), Error> {
    let len_ok = |s: &str, min: usize| (min..=128).contains(&s.chars().count());
    if !len_ok(key, 1) || !key.chars().all(allowed) {
        return Err(Error::invalid(
            Field::TagKey,
            "1-128 letters, digits, spaces or / \\ _ - . + = : @",
        ));
    }
    if key.starts_with("aliyun") || key.starts_with("acs:") {
        return Err(Error::invalid(
            Field::TagKey,
            "tag keys may not start with aliyun or acs:",
        ));
    }
    if !len_ok(value, 0) || !value.chars().all(allowed) {
        return Err(Error::invalid(
            Field::TagValue,
            "0-128 letters, digits, spaces or / \\ _ - . + = : @",
        ));
    }
    Ok(())
}

/// Merges `tags` into `existing` (a new value replaces the old), enforcing the limits.
pub fn merge(
    existing: &mut BTreeMap<String, String>,
    tags: &[(String, String)],
) -> Result<(), Error> {
    for (k, v) in tags {
        validate(k, v)?;
        existing.insert(k.clone(), v.clone());
    }
    if existing.len() > MAX_TAGS {
        return Err(Error::invalid(
            Field::Tags,
            "a resource carries at most 20 tags",
        ));
    }
    Ok(())
}

/// What to remove: named keys, or every tag.
#[derive(Debug, Clone)]
pub enum Untag {
    /// These tag keys (absent ones are ignored).
    Keys(Vec<String>),
    /// Everything.
    All,
}

impl Kms {
    /// `TagResource` / `TagResources` on a key.
    pub async fn tag_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        tags: &[(String, String)],
    ) -> Result<KeyRecord, Error> {
        self.update_key(caller, key, |k| merge(&mut k.tags, tags))
            .await
    }

    /// `UntagResource` / `UntagResources` on a key.
    pub async fn untag_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        what: &Untag,
    ) -> Result<KeyRecord, Error> {
        self.update_key(caller, key, |k| {
            match what {
                Untag::All => k.tags.clear(),
                Untag::Keys(keys) => keys.iter().for_each(|t| {
                    k.tags.remove(t);
                }),
            }
            Ok(())
        })
        .await
    }

    /// `ListTagResources` for keys: every (key, tag) pair of the named keys (all of the
    /// caller's keys when none are named) that matches one of `filter` (all when empty; an
    /// empty filter value matches any value).
    pub fn list_key_tags(
        &self,
        caller: &Caller,
        keys: &[KeyRef],
        filter: &[(String, String)],
    ) -> Result<Vec<(KeyRecord, String, String)>, Error> {
        let records = if keys.is_empty() {
            self.scan::<KeyRecord>(Table::Keys, &format!("{}/", caller.account))?
        } else {
            keys.iter()
                .map(|k| self.resolve(caller, k))
                .collect::<Result<_, _>>()?
        };
        let matches = |k: &str, v: &str| {
            filter.is_empty()
                || filter
                    .iter()
                    .any(|(fk, fv)| fk == k && (fv.is_empty() || fv == v))
        };
        Ok(records
            .into_iter()
            .flat_map(|r| {
                let pairs: Vec<(String, String)> = r
                    .tags
                    .iter()
                    .filter(|(k, v)| matches(k, v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                pairs.into_iter().map(move |(k, v)| (r.clone(), k, v))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(validate("env", "prod").is_ok());
        assert!(validate("a b/c\\d_e-f.g+h=i:j@k", "").is_ok());
        assert!(validate("", "x").is_err());
        assert!(validate("aliyun-x", "x").is_err());
        assert!(validate("acs:x", "x").is_err());
        assert!(validate("k", &"v".repeat(129)).is_err());
        assert!(validate("k#", "v").is_err());
        let mut tags = BTreeMap::new();
        let twenty: Vec<(String, String)> =
            (0..20).map(|i| (format!("k{i}"), "v".into())).collect();
        merge(&mut tags, &twenty).unwrap();
        merge(&mut tags, &[("k0".into(), "new".into())]).unwrap();
        assert_eq!(tags["k0"], "new");
        assert!(merge(&mut tags, &[("k20".into(), "v".into())]).is_err());
    }
}

//! The RAMCredentials rotator: a new AccessKey pair for an Arca account; the old pair keeps
//! working for a grace period, then stops.
//!
//! The secret is created with `SecretName=$Auto` (named `acs/ram/user/<UserName>`), a value of
//! `{"AccessKeys": [{"AccessKeyId": "...", "AccessKeySecret": "..."}]}` or
//! `{"AccessKeyId": "...", "AccessKeySecret": "..."}`, and an ExtendedConfig of
//!
//! ```json
//! {"SecretSubType": "RamUserAccessKey", "UserName": "<account id>", "GracePeriodSeconds": 3600}
//! ```
//!
//! - `create-pending` makes the new pair (`{"AccessKeyId", "AccessKeySecret",
//!   "GenerateTimestamp"}`, the form GetSecretValue returns for RAM secrets). A retried
//!   create-pending makes another pair; the one never stored is unused and can be retired.
//! - `set-pending`: nothing to do, the pair exists.
//! - `test-pending`: the new pair must authenticate.
//! - `finish`: the old pair (ACSCurrent's) retires after the grace period (default 1 hour).
//!   Calling it again keeps the earlier retirement time.

use arca_plugin_sdk::rotator::{Error, RotationRequest, Rotator, SecretData};
use arca_plugin_sdk::{access_keys, clock, log};
use serde_json::{Value, json};

struct Ram;

struct Config {
    account: String,
    grace: u64,
}

impl Config {
    fn parse(text: &str) -> Result<Self, Error> {
        let v: Value = serde_json::from_str(text)
            .map_err(|_| Error::invalid("ExtendedConfig is not a JSON object"))?;
        let account = v["UserName"]
            .as_str()
            .ok_or_else(|| Error::invalid("ExtendedConfig.UserName names no account"))?
            .to_owned();
        let grace = match v.get("GracePeriodSeconds") {
            None => 3600,
            Some(g) => g
                .as_u64()
                .filter(|g| *g <= 30 * 86_400)
                .ok_or_else(|| Error::invalid("GracePeriodSeconds must be 0-2592000"))?,
        };
        Ok(Self { account, grace })
    }
}

/// (AccessKeyId, AccessKeySecret) of a version's value.
fn pair(data: &SecretData) -> Result<(String, String), Error> {
    let SecretData::Text(text) = data else {
        return Err(Error::invalid("a RAMCredentials secret holds JSON text"));
    };
    let v: Value =
        serde_json::from_str(text).map_err(|_| Error::invalid("the secret value is not JSON"))?;
    let one = if v["AccessKeys"].is_array() {
        &v["AccessKeys"][0]
    } else {
        &v
    };
    match (one["AccessKeyId"].as_str(), one["AccessKeySecret"].as_str()) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => Err(Error::invalid(
            "the secret value needs AccessKeyId and AccessKeySecret",
        )),
    }
}

fn pending(req: &RotationRequest) -> Result<(String, String), Error> {
    let v = req
        .pending
        .as_ref()
        .ok_or_else(|| Error::invalid("the pending version is missing"))?;
    pair(&v.value)
}

/// `2026-11-24T01:02:03Z` from unix seconds (civil-from-days, proleptic Gregorian).
fn timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Rotator for Ram {
    fn create_pending(req: RotationRequest) -> Result<SecretData, Error> {
        let config = Config::parse(&req.extended_config)?;
        let key = access_keys::create(&config.account)?;
        let value = json!({
            "AccessKeyId": key.id,
            "AccessKeySecret": key.secret,
            "GenerateTimestamp": timestamp(clock::now().seconds),
        });
        Ok(SecretData::Text(value.to_string()))
    }

    fn set_pending(req: RotationRequest) -> Result<(), Error> {
        pending(&req).map(|_| ())
    }

    fn test_pending(req: RotationRequest) -> Result<(), Error> {
        let config = Config::parse(&req.extended_config)?;
        let (id, secret) = pending(&req)?;
        access_keys::check(&config.account, &id, &secret)
    }

    fn finish(req: RotationRequest) -> Result<(), Error> {
        let config = Config::parse(&req.extended_config)?;
        let (new_id, _) = pending(&req)?;
        if let Some(current) = &req.current {
            let (old_id, _) = pair(&current.value)?;
            if old_id != new_id {
                access_keys::retire(&config.account, &old_id, config.grace)?;
                log::info(&format!(
                    "AccessKey {old_id} retires in {} s; {new_id} replaces it",
                    config.grace
                ));
            }
        }
        Ok(())
    }
}

arca_plugin_sdk::export_rotator!(Ram);

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::timestamp(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }
}

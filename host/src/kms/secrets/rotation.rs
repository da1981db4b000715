//! The persistent half of secret rotation: every step's outcome is written to the secret's
//! record (compare-and-swap) before the next step starts, so a crash or a failed step leaves a
//! rotation that resumes where it stopped. ACSCurrent moves only in [`Kms::finish_rotation`],
//! together with the end of the rotation, in one write. The plugin-driving half is
//! `crate::rotation`.

use super::stages;
use super::{DataType, RotationState, SecretRecord};
use crate::ids::{SecretRef, SecretVersionId};
use crate::kms::Field;
use crate::kms::{Caller, Error, Kms};
use crate::secret::SecretBytes;

/// The steps, by the name stored in [`RotationState::done`].
pub const STEPS: [&str; 4] = ["create-pending", "set-pending", "test-pending", "finish"];

/// Longest back-off between failed attempts.
const MAX_BACKOFF: i64 = 3600;

/// Where `RotateSecret` (or the scheduler) finds a secret.
#[derive(Debug)]
pub enum Begin {
    /// The token names a version that exists and is not being made: nothing to do.
    AlreadyDone(SecretRecord),
    /// A rotation to the token is under way (just started, or resumed).
    Running(SecretRecord),
}

/// A version's value, for a rotation request.
#[derive(Debug)]
pub struct StagedValue {
    /// Its id.
    pub version_id: SecretVersionId,
    /// Its stages.
    pub stages: Vec<String>,
    /// Text or binary.
    pub data_type: DataType,
    /// The bytes.
    pub bytes: SecretBytes,
}

fn owner(record: &SecretRecord) -> (Caller, SecretRef) {
    (
        Caller {
            account: record.account_id.clone(),
            admin: false,
            action: "RotateSecret".into(),
            service: None,
        },
        SecretRef::Name(record.name.clone()),
    )
}

impl Kms {
    /// Starts a rotation to version `token`, or finds the one under way. A different token
    /// while a rotation is under way is refused: the running one must finish first.
    pub async fn begin_rotation(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        token: &SecretVersionId,
    ) -> Result<Begin, Error> {
        let record = self.secret(caller, secret)?;
        record.live()?;
        match &record.rotation {
            Some(r) if r.version == *token => return Ok(Begin::Running(record)),
            Some(r) => {
                return Err(Error::invalid(
                    Field::VersionId,
                    format!("a rotation to version {} is under way", r.version),
                ));
            }
            None => {}
        }
        if self.version(&record, token)?.is_some() {
            return Ok(Begin::AlreadyDone(record));
        }
        let now = self.now();
        let record = self
            .update_secret_record(caller, secret, |s| {
                s.live()?;
                match &s.rotation {
                    Some(r) if r.version != *token => Err(Error::invalid(
                        Field::VersionId,
                        format!("a rotation to version {} is under way", r.version),
                    )),
                    Some(_) => Ok(()),
                    None => {
                        s.rotation = Some(RotationState {
                            version: token.clone(),
                            done: None,
                            started: now,
                            attempts: 0,
                            last_error: None,
                            retry_after: now,
                        });
                        Ok(())
                    }
                }
            })
            .await?;
        Ok(Begin::Running(record))
    }

    /// Reads version `version` of `record` (for the rotator's request).
    pub async fn staged_value(
        &self,
        record: &SecretRecord,
        version: &SecretVersionId,
    ) -> Result<Option<StagedValue>, Error> {
        let Some(v) = self.version(record, version)? else {
            return Ok(None);
        };
        let bytes = self.open_version(record, &v).await?;
        Ok(Some(StagedValue {
            stages: stages::of(&record.stages, version),
            version_id: v.version_id,
            data_type: v.data_type,
            bytes,
        }))
    }

    /// Step 1 done: stores the new value as the rotation's version with ACSPending, and
    /// records the step, in one write.
    pub async fn store_pending(
        &self,
        record: &SecretRecord,
        value: &super::NewValue,
    ) -> Result<SecretRecord, Error> {
        let token = rotation_token(record)?;
        let (caller, secret) = owner(record);
        let sealed = self.seal_version(record, &token, value).await?;
        let (record, _) = self
            .store_version(
                &caller,
                &secret,
                sealed,
                &[stages::PENDING.to_owned()],
                |s| mark(s, &token, STEPS[0]),
            )
            .await?;
        Ok(record)
    }

    /// Records that `step` completed.
    pub async fn rotation_step_done(
        &self,
        record: &SecretRecord,
        step: &'static str,
    ) -> Result<SecretRecord, Error> {
        let token = rotation_token(record)?;
        let (caller, secret) = owner(record);
        self.update_secret_record(&caller, &secret, |s| mark(s, &token, step))
            .await
    }

    /// Records a failed attempt: the rotation stays where it was and is tried again after a
    /// back-off (1, 2, 4, ... minutes, at most an hour). ACSCurrent is not touched.
    pub async fn rotation_failed(
        &self,
        record: &SecretRecord,
        message: &str,
    ) -> Result<SecretRecord, Error> {
        let token = rotation_token(record)?;
        let (caller, secret) = owner(record);
        let now = self.now();
        let message: String = message.chars().take(1024).collect();
        self.update_secret_record(&caller, &secret, |s| {
            let r = s
                .rotation
                .as_mut()
                .filter(|r| r.version == token)
                .ok_or_else(|| Error::Internal("the rotation ended meanwhile".into()))?;
            r.attempts = r.attempts.saturating_add(1);
            r.last_error = Some(message.clone());
            let backoff = 60_i64
                .saturating_mul(1_i64 << r.attempts.saturating_sub(1).min(6))
                .min(MAX_BACKOFF);
            r.retry_after = now + backoff;
            Ok(())
        })
        .await
    }

    /// The last step: ACSCurrent moves to the new version (the old one becomes ACSPrevious),
    /// ACSPending goes, the rotation ends and the schedule advances, all in one write.
    pub async fn finish_rotation(&self, record: &SecretRecord) -> Result<SecretRecord, Error> {
        let token = rotation_token(record)?;
        let (caller, secret) = owner(record);
        let now = self.now();
        self.update_secret_record(&caller, &secret, |s| {
            if s.rotation.as_ref().map(|r| &r.version) != Some(&token) {
                return Err(Error::Internal("the rotation ended meanwhile".into()));
            }
            stages::attach(&mut s.stages, stages::CURRENT, &token);
            if s.stages.get(stages::PENDING) == Some(&token) {
                s.stages.remove(stages::PENDING);
            }
            s.rotation = None;
            s.last_rotation = Some(now);
            s.next_rotation = s
                .automatic_rotation
                .then_some(s.rotation_interval)
                .flatten()
                .map(|i| now.saturating_add_unsigned(i));
            Ok(())
        })
        .await
    }
}

fn rotation_token(record: &SecretRecord) -> Result<SecretVersionId, Error> {
    record
        .rotation
        .as_ref()
        .map(|r| r.version.clone())
        .ok_or_else(|| Error::Internal("no rotation under way".into()))
}

/// Marks `step` done on the rotation to `token` (a step is never recorded twice backwards).
fn mark(s: &mut SecretRecord, token: &SecretVersionId, step: &str) -> Result<(), Error> {
    let r = s
        .rotation
        .as_mut()
        .filter(|r| r.version == *token)
        .ok_or_else(|| Error::Internal("the rotation ended meanwhile".into()))?;
    r.done = Some(step.to_owned());
    r.attempts = 0;
    r.last_error = None;
    Ok(())
}

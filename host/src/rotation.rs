//! The rotation engine: drives a rotator plugin through create-pending, set-pending,
//! test-pending and finish, persisting each step before the next (`kms::secrets::rotation`).
//!
//! Which rotator: the secret's ExtendedConfig may name one (`"Rotator": "<plugin>"`); otherwise
//! the secret type decides (`Generic` → `rotator-generic`, `Rds` → `rotator-postgres`,
//! `RAMCredentials` → `rotator-ram`). Loading a rotator entrusts it with the values of the
//! secrets routed to it, as a Lambda rotation function is in AWS.
//!
//! A secret is driven by one task at a time (an in-process set of secrets in flight: this
//! process is the store's only writer). A failed step is recorded with a back-off and retried
//! by the scheduler from the same step; ACSCurrent moves only when every step has succeeded.

use crate::metrics::{Rotated, metrics};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::ids::{SecretRef, SecretVersionId};
use crate::kms::secrets::rotation::{Begin, STEPS, StagedValue};
use crate::kms::secrets::{DataType, NewValue, SecretRecord, SecretType};
use crate::kms::{Caller, Error, Kms};
use crate::plugin::{
    PluginError, PluginHost, RotationRequest, RotationStep, SecretData, SecretVersion,
};
use crate::secret::SecretBytes;

/// Why a rotation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The domain refused (not found, deletion window, another rotation under way, ...).
    #[error(transparent)]
    Kms(#[from] Error),
    /// No rotator plugin is loaded for this secret.
    #[error("no rotator plugin `{0}` is loaded for this secret")]
    NoRotator(String),
    /// The rotator the secret names is not meant for its type.
    #[error("rotator `{rotator}` does not rotate {secret_type} secrets")]
    WrongRotator {
        /// The rotator named.
        rotator: String,
        /// The secret's type.
        secret_type: &'static str,
    },
    /// Another task is driving this secret's rotation right now.
    #[error("the secret is being rotated by another request")]
    Busy,
    /// A step failed; the rotation is recorded and will resume from that step.
    #[error(
        "rotation step {step} failed: {message}; ACSCurrent is unchanged and the rotation will resume"
    )]
    Step {
        /// The step.
        step: &'static str,
        /// What the plugin (or the host) reported; never a secret value.
        message: String,
    },
}

/// The engine.
#[derive(Debug)]
pub struct Rotations {
    kms: Arc<Kms>,
    plugins: Arc<PluginHost>,
    in_flight: Mutex<HashSet<String>>,
    /// Where scheduled rotations are recorded (API-driven ones are audited by the pipeline).
    audit: Option<crate::audit::AuditLog>,
}

/// Marks a secret in flight until dropped.
struct Flight<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.key);
        }
    }
}

impl Rotations {
    /// The loaded rotator for `record`, if it is meant for the secret's type.
    fn rotator(&self, record: &SecretRecord) -> Result<String, RotationError> {
        let rotator = rotator_for(record);
        if !self.plugins.has(&rotator, crate::plugin::World::Rotator) {
            return Err(RotationError::NoRotator(rotator));
        }
        let secret_type = record.secret_type.as_str();
        if !self.plugins.rotates(&rotator, secret_type) {
            return Err(RotationError::WrongRotator {
                rotator,
                secret_type,
            });
        }
        Ok(rotator)
    }
}

impl Rotations {
    /// Refuses, when a secret is made, an `ExtendedConfig.Rotator` that names no loaded
    /// rotator for the secret's type: said then, not at its first rotation.
    pub fn check_named(
        &self,
        secret_type: SecretType,
        extended_config: Option<&str>,
    ) -> Result<(), RotationError> {
        let Some(rotator) = named_rotator(extended_config) else {
            return Ok(());
        };
        if !self.plugins.has(&rotator, crate::plugin::World::Rotator) {
            return Err(RotationError::NoRotator(rotator));
        }
        if !self.plugins.rotates(&rotator, secret_type.as_str()) {
            return Err(RotationError::WrongRotator {
                rotator,
                secret_type: secret_type.as_str(),
            });
        }
        Ok(())
    }
}

/// The rotator an ExtendedConfig names (`"Rotator": "<plugin>"`), if any.
fn named_rotator(extended_config: Option<&str>) -> Option<String> {
    extended_config
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|c| c.get("Rotator").and_then(|r| r.as_str()).map(str::to_owned))
}

/// The rotator a secret goes to.
pub fn rotator_for(record: &SecretRecord) -> String {
    let named = named_rotator(record.extended_config.as_deref());
    named.unwrap_or_else(|| {
        match record.secret_type {
            SecretType::Generic => "rotator-generic",
            SecretType::Rds | SecretType::PolarDb => "rotator-postgres",
            SecretType::RamCredentials => "rotator-ram",
            SecretType::Redis => "rotator-redis",
            SecretType::Ecs => "rotator-ecs",
        }
        .to_owned()
    })
}

fn to_wire(v: StagedValue) -> SecretVersion {
    let value = match v.data_type {
        DataType::Text => SecretData::Text(String::from_utf8_lossy(v.bytes.expose()).into_owned()),
        DataType::Binary => SecretData::Binary(v.bytes.expose().to_vec()),
    };
    SecretVersion {
        version_id: v.version_id.to_string(),
        stages: v.stages,
        value,
    }
}

impl Rotations {
    /// An engine over `kms` and the rotators in `plugins`.
    pub fn new(kms: Arc<Kms>, plugins: Arc<PluginHost>) -> Self {
        Self {
            kms,
            plugins,
            in_flight: Mutex::default(),
            audit: None,
        }
    }

    /// Records every scheduled rotation attempt in `audit`: action `RotateSecret`, source
    /// `scheduler`, the secret's ARN, and the outcome (never a value).
    pub fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    async fn audit_scheduled(&self, record: &SecretRecord, code: &'static str, status: u16) {
        let Some(audit) = &self.audit else {
            return;
        };
        let recorded = audit
            .record(crate::audit::AuditEvent {
                time: self.kms.clock().now(),
                request_id: format!("scheduler-{}", SecretVersionId::generate()),
                action: "RotateSecret".into(),
                account: Some(record.account_id.to_string()),
                access_key_id: None,
                source_ip: "scheduler".into(),
                resource: Some(crate::ids::secret_arn(
                    self.kms.region(),
                    &record.account_id,
                    &record.name,
                )),
                key_version: None,
                result: code,
                status,
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, "scheduled rotation not recorded in the audit trail");
        }
    }

    /// `RotateSecret`: starts (or resumes) the rotation to `token` and drives it to the end.
    /// A token that names an existing version is an idempotent success.
    pub async fn rotate_now(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        token: &SecretVersionId,
    ) -> Result<SecretRecord, RotationError> {
        let record = self.kms.secret(caller, secret)?;
        self.rotator(&record)?;
        match self.kms.begin_rotation(caller, secret, token).await? {
            Begin::AlreadyDone(record) => Ok(record),
            Begin::Running(record) => self.drive(record).await,
        }
    }

    /// Starts every scheduled rotation that is due and resumes every interrupted one whose
    /// back-off has passed. Returns how many completed.
    pub async fn sweep(&self) -> Result<usize, Error> {
        let now = self.kms.clock().now().unix_timestamp();
        let mut completed = 0;
        for record in self.kms.secrets_due_for_rotation(now)? {
            if let Err(e) = self.rotator(&record) {
                tracing::warn!(secret = %record.name, error = %e, "scheduled rotation waits");
                continue;
            }
            let result = match &record.rotation {
                Some(_) => self.drive(record.clone()).await,
                None => {
                    let caller = Caller {
                        account: record.account_id.clone(),
                        admin: false,
                        action: "RotateSecret".into(),
                        service: None,
                    };
                    let token = SecretVersionId::generate();
                    match self
                        .kms
                        .begin_rotation(&caller, &SecretRef::Name(record.name.clone()), &token)
                        .await
                    {
                        Ok(Begin::Running(r)) => self.drive(r).await,
                        Ok(Begin::AlreadyDone(r)) => Ok(r),
                        Err(e) => Err(e.into()),
                    }
                }
            };
            match result {
                Ok(_) => {
                    completed += 1;
                    self.audit_scheduled(&record, "OK", 200).await;
                }
                // Another task is driving it; that task's outcome is what counts.
                Err(RotationError::Busy) => {}
                Err(e) => {
                    tracing::warn!(secret = %record.name, error = %e, "scheduled rotation did not complete");
                    let api = crate::error::ApiError::from(e);
                    self.audit_scheduled(&record, api.code(), api.status().as_u16())
                        .await;
                }
            }
        }
        Ok(completed)
    }

    /// Runs the remaining steps of the rotation recorded on `record`, counting the outcome.
    async fn drive(&self, record: SecretRecord) -> Result<SecretRecord, RotationError> {
        let result = self.drive_steps(record).await;
        if !matches!(result, Err(RotationError::Busy)) {
            metrics().rotation(Rotated::Secret, result.is_ok());
        }
        result
    }

    async fn drive_steps(&self, mut record: SecretRecord) -> Result<SecretRecord, RotationError> {
        let key = format!("{}/{}", record.account_id, record.name);
        {
            let mut set = self.in_flight.lock().map_err(|_| RotationError::Busy)?;
            if !set.insert(key.clone()) {
                return Err(RotationError::Busy);
            }
        }
        let _flight = Flight {
            set: &self.in_flight,
            key,
        };
        let rotator = self.rotator(&record)?;
        loop {
            let Some(state) = record.rotation.clone() else {
                return Ok(record);
            };
            let next = match state.done.as_deref() {
                None => 0,
                Some(done) => STEPS.iter().position(|s| *s == done).map_or(0, |i| i + 1),
            };
            let step_name = STEPS[next.min(3)];
            let step = match next {
                0 => RotationStep::CreatePending,
                1 => RotationStep::SetPending,
                2 => RotationStep::TestPending,
                _ => RotationStep::Finish,
            };
            let req = self.request(&record, &state.version, step).await?;
            let outcome = self
                .plugins
                .rotate(&rotator, &record.account_id, step, &req)
                .await;
            drop(req);
            match outcome {
                Ok(value) => {
                    record = match step {
                        RotationStep::CreatePending => {
                            let Some(value) = value else {
                                return self
                                    .failed(
                                        &record,
                                        step_name,
                                        "create-pending returned no value".into(),
                                    )
                                    .await;
                            };
                            let value = match value {
                                SecretData::Text(t) => NewValue {
                                    data_type: DataType::Text,
                                    bytes: SecretBytes::new(t.into_bytes()),
                                },
                                SecretData::Binary(b) => NewValue {
                                    data_type: DataType::Binary,
                                    bytes: SecretBytes::new(b),
                                },
                            };
                            self.kms.store_pending(&record, &value).await?
                        }
                        RotationStep::Finish => {
                            let done = self.kms.finish_rotation(&record).await?;
                            tracing::info!(secret = %done.name, version = %state.version, "secret rotated");
                            return Ok(done);
                        }
                        _ => self.kms.rotation_step_done(&record, step_name).await?,
                    };
                }
                Err(e) => return self.failed(&record, step_name, plugin_message(&e)).await,
            }
        }
    }

    async fn failed(
        &self,
        record: &SecretRecord,
        step: &'static str,
        message: String,
    ) -> Result<SecretRecord, RotationError> {
        tracing::warn!(secret = %record.name, step, error = %message, "rotation step failed");
        self.kms.rotation_failed(record, &message).await?;
        Err(RotationError::Step { step, message })
    }

    async fn request(
        &self,
        record: &SecretRecord,
        token: &SecretVersionId,
        step: RotationStep,
    ) -> Result<RotationRequest, Error> {
        let current = match record.stages.get(crate::kms::secrets::stages::CURRENT) {
            Some(v) => self.kms.staged_value(record, v).await?.map(to_wire),
            None => None,
        };
        let pending = if step == RotationStep::CreatePending {
            None
        } else {
            self.kms.staged_value(record, token).await?.map(to_wire)
        };
        Ok(RotationRequest {
            secret_name: record.name.to_string(),
            secret_type: record.secret_type.as_str().to_owned(),
            extended_config: record
                .extended_config
                .clone()
                .unwrap_or_else(|| "{}".to_owned()),
            token: token.to_string(),
            current,
            pending,
        })
    }
}

/// A plugin failure as the secret's `last_error` and the API message: the plugin's own message
/// for its typed errors, the host's description for traps and limits.
fn plugin_message(e: &PluginError) -> String {
    e.to_string()
}

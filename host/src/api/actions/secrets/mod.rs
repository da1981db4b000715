//! Secrets Manager actions (spec §6.9, §10 "Secrets Manager").

mod lifecycle;
mod manage;
mod values;

pub(crate) use lifecycle::{
    DeleteSecret, GetSecretPolicy, RestoreSecret, RotateSecret, SetSecretPolicy,
    UpdateSecretRotationPolicy,
};
pub(crate) use manage::{
    DescribeSecret, ListSecretVersionIds, ListSecrets, UpdateSecret, UpdateSecretVersionStage,
};
pub(crate) use values::{BatchGetSecretValue, CreateSecret, GetSecretValue, PutSecretValue};

use serde::Serialize;

use super::keys::date;
use super::wrap;
use crate::api::params::Params;
use crate::error::ApiError;
use crate::ids::{SecretRef, SecretVersionId};
use crate::kms::secrets::SecretRecord;

/// The required `VersionId`: 1–64 printable ASCII characters.
pub(super) fn version_id(p: &Params) -> Result<SecretVersionId, ApiError> {
    p.required("VersionId")?
        .parse()
        .map_err(|_| ApiError::invalid("VersionId", "1-64 printable characters"))
}

pub(super) fn secret_ref(p: &Params) -> Result<SecretRef, ApiError> {
    p.required_as("SecretName")
}

/// The audit and access-check form of a secret: `secret/<name>` (the pipeline makes it an ARN
/// in the caller's account) or the ARN as given.
pub(super) fn resource(secret: &SecretRef) -> Option<String> {
    Some(match secret {
        SecretRef::Name(n) => format!("secret/{n}"),
        arn @ SecretRef::Arn { .. } => arn.to_string(),
    })
}

/// `VersionStages.VersionStage[]`.
#[derive(Serialize)]
pub(super) struct StageList {
    #[serde(rename = "VersionStage")]
    pub(super) stages: Vec<String>,
}

/// Seconds as the SDKs show intervals: `604800s`.
pub(super) fn interval(seconds: Option<u64>) -> Option<String> {
    seconds.map(|s| format!("{s}s"))
}

/// Rotation fields shared by CreateSecret, GetSecretValue and DescribeSecret.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RotationFields {
    pub(super) automatic_rotation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rotation_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) next_rotation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) last_rotation_date: Option<String>,
}

impl RotationFields {
    fn new(s: &SecretRecord) -> Self {
        Self {
            automatic_rotation: s.rotation_status(),
            rotation_interval: interval(
                s.automatic_rotation
                    .then_some(s.rotation_interval)
                    .flatten(),
            ),
            next_rotation_date: s
                .automatic_rotation
                .then_some(s.next_rotation)
                .flatten()
                .map(date),
            last_rotation_date: s.last_rotation.map(date),
        }
    }
}

pub(super) fn tag_list(s: &SecretRecord) -> serde_json::Value {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Tag<'a> {
        tag_key: &'a str,
        tag_value: &'a str,
    }
    wrap(
        "Tag",
        s.tags
            .iter()
            .map(|(k, v)| Tag {
                tag_key: k,
                tag_value: v,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_print_in_seconds() {
        assert_eq!(interval(Some(604_800)).as_deref(), Some("604800s"));
        assert_eq!(interval(None), None);
    }
}

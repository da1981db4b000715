//! Version stages: which version carries which label.
//!
//! A stage is on at most one version of a secret at a time. `ACSCurrent` is what readers get by
//! default; when it moves, the version it leaves gets `ACSPrevious` (spec §6.9). `ACSPending`
//! marks the version a rotation is preparing. Other names are the client's own stages.

use std::collections::BTreeMap;

use crate::ids::SecretVersionId;
use crate::kms::Error;
use crate::kms::Field;

/// The version readers get by default.
pub const CURRENT: &str = "ACSCurrent";
/// The version ACSCurrent last left.
pub const PREVIOUS: &str = "ACSPrevious";
/// The version a rotation is preparing.
pub const PENDING: &str = "ACSPending";

/// Most stages one `PutSecretValue` may attach.
pub const MAX_STAGES_PER_PUT: usize = 10;

/// Stage → version.
pub type Stages = BTreeMap<String, SecretVersionId>;

/// Checks a stage name: 1–64 of `[A-Za-z0-9_-]`.
pub fn validate(stage: &str) -> Result<(), Error> {
    let ok = !stage.is_empty()
        && stage.len() <= 64
        && stage
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            Field::VersionStage,
            "a stage is 1-64 letters, digits, _ or -",
        ))
    }
}

/// Attaches `stage` to `to`, taking it from whichever version had it. When ACSCurrent moves,
/// the version it leaves becomes ACSPrevious.
pub fn attach(stages: &mut Stages, stage: &str, to: &SecretVersionId) {
    let old = stages.insert(stage.to_owned(), to.clone());
    if stage == CURRENT
        && let Some(old) = old
        && old != *to
    {
        stages.insert(PREVIOUS.to_owned(), old);
    }
}

/// The stages on `version`, in name order.
pub fn of(stages: &Stages, version: &SecretVersionId) -> Vec<String> {
    stages
        .iter()
        .filter(|(_, v)| *v == version)
        .map(|(s, _)| s.clone())
        .collect()
}

/// `UpdateSecretVersionStage`: removes `stage` from `remove_from`, attaches it to `move_to`,
/// or both. ACSCurrent and ACSPrevious can only be moved, never just removed. `move_to` must
/// be an existing version (the caller checks).
pub fn update(
    stages: &mut Stages,
    stage: &str,
    remove_from: Option<&SecretVersionId>,
    move_to: Option<&SecretVersionId>,
) -> Result<(), Error> {
    validate(stage)?;
    if remove_from.is_none() && move_to.is_none() {
        return Err(Error::invalid(
            Field::MoveToVersion,
            "give RemoveFromVersion, MoveToVersion or both",
        ));
    }
    if (stage == CURRENT || stage == PREVIOUS) && move_to.is_none() {
        return Err(Error::invalid(
            Field::MoveToVersion,
            "ACSCurrent and ACSPrevious can only be moved to another version",
        ));
    }
    if let Some(from) = remove_from
        && stages.get(stage) != Some(from)
    {
        return Err(Error::invalid(
            Field::RemoveFromVersion,
            format!("stage {stage} is not attached to version {from}"),
        ));
    }
    match move_to {
        Some(to) => attach(stages, stage, to),
        None => {
            stages.remove(stage);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SecretVersionId {
        s.parse().unwrap()
    }

    #[test]
    fn current_moving_leaves_previous_behind() {
        let mut s = Stages::new();
        attach(&mut s, CURRENT, &v("v1"));
        assert_eq!(of(&s, &v("v1")), vec![CURRENT]);
        attach(&mut s, CURRENT, &v("v2"));
        assert_eq!(of(&s, &v("v1")), vec![PREVIOUS]);
        assert_eq!(of(&s, &v("v2")), vec![CURRENT]);
        attach(&mut s, CURRENT, &v("v3"));
        assert_eq!(of(&s, &v("v1")), Vec::<String>::new(), "deprecated");
        assert_eq!(of(&s, &v("v2")), vec![PREVIOUS]);
        // Re-attaching to the same version changes nothing.
        attach(&mut s, CURRENT, &v("v3"));
        assert_eq!(of(&s, &v("v2")), vec![PREVIOUS]);
        // Rolling back: current returns to v2, v3 becomes previous.
        attach(&mut s, CURRENT, &v("v2"));
        assert_eq!(of(&s, &v("v2")), vec![CURRENT]);
        assert_eq!(of(&s, &v("v3")), vec![PREVIOUS]);
    }

    #[test]
    fn update_follows_the_documented_scenarios() {
        let mut s = Stages::new();
        attach(&mut s, CURRENT, &v("v1"));
        attach(&mut s, CURRENT, &v("v2"));
        // Scenario 1: add a custom stage.
        update(&mut s, "Blue", None, Some(&v("v1"))).unwrap();
        assert_eq!(of(&s, &v("v1")), vec![PREVIOUS, "Blue"]);
        // Scenario 2: remove a custom stage.
        update(&mut s, "Blue", Some(&v("v1")), None).unwrap();
        assert_eq!(of(&s, &v("v1")), vec![PREVIOUS]);
        // ... but never ACSCurrent or ACSPrevious alone.
        assert!(update(&mut s, CURRENT, Some(&v("v2")), None).is_err());
        assert!(update(&mut s, PREVIOUS, Some(&v("v1")), None).is_err());
        // Scenario 3: move, naming where it was.
        update(&mut s, CURRENT, Some(&v("v2")), Some(&v("v1"))).unwrap();
        assert_eq!(of(&s, &v("v1")), vec![CURRENT]);
        assert_eq!(of(&s, &v("v2")), vec![PREVIOUS]);
        // RemoveFromVersion must name the version that has the stage.
        assert!(update(&mut s, CURRENT, Some(&v("v2")), Some(&v("v2"))).is_err());
        assert!(update(&mut s, "Blue", None, None).is_err());
        assert!(update(&mut s, "bad stage", None, Some(&v("v1"))).is_err());
    }
}

//! A rotator that fails on demand. The secret's `ExtendedConfig.CustomData` decides:
//!
//! ```json
//! {"CustomData": {"FailAt": "set-pending", "How": "error"}}
//! ```
//!
//! `FailAt` is a step name; `How` is `error` (a typed error), `trap` (a panic) or `loop` (spin
//! until the host's deadline). Without `FailAt` every step succeeds. `create-pending` returns
//! a fresh random hex value; the later steps check that the pending value is there.

use arca_plugin_sdk::random;
use arca_plugin_sdk::rotator::{Error, RotationRequest, Rotator, SecretData};

struct Flaky;

fn maybe_fail(req: &RotationRequest, step: &str) -> Result<(), Error> {
    let config: serde_json::Value =
        serde_json::from_str(&req.extended_config).unwrap_or(serde_json::Value::Null);
    let custom = &config["CustomData"];
    if custom["FailAt"].as_str() != Some(step) {
        return Ok(());
    }
    match custom["How"].as_str().unwrap_or("error") {
        "trap" => panic!("flaky rotator trapped at {step} on purpose"),
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        _ => Err(Error::failed(format!(
            "flaky rotator failed at {step} on purpose"
        ))),
    }
}

fn needs_pending(req: &RotationRequest) -> Result<(), Error> {
    match &req.pending {
        Some(p) if p.version_id == req.token && p.stages.iter().any(|s| s == "ACSPending") => {
            Ok(())
        }
        _ => Err(Error::invalid("the pending version is missing")),
    }
}

impl Rotator for Flaky {
    fn create_pending(req: RotationRequest) -> Result<SecretData, Error> {
        maybe_fail(&req, "create-pending")?;
        if req.pending.is_some() {
            return Err(Error::invalid("create-pending saw a pending value"));
        }
        let hex: String = random::get_random_bytes(16)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(SecretData::Text(format!("flaky-{hex}")))
    }

    fn set_pending(req: RotationRequest) -> Result<(), Error> {
        maybe_fail(&req, "set-pending")?;
        needs_pending(&req)
    }

    fn test_pending(req: RotationRequest) -> Result<(), Error> {
        maybe_fail(&req, "test-pending")?;
        needs_pending(&req)
    }

    fn finish(req: RotationRequest) -> Result<(), Error> {
        maybe_fail(&req, "finish")?;
        needs_pending(&req)
    }
}

arca_plugin_sdk::export_rotator!(Flaky);

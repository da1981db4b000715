//! A rotator: each rotation makes a new random 32-character hex value. A real rotator also
//! sets the value in its target system (`set_pending`) and proves it works there
//! (`test_pending`), through the `sql` or `http` capability.
//! Build: `cargo build --release --target wasm32-wasip2`.

use arca_plugin_sdk::rotator::{Error, RotationRequest, Rotator, SecretData};
use arca_plugin_sdk::{log, random};

struct MyRotator;

impl Rotator for MyRotator {
    fn create_pending(req: RotationRequest) -> Result<SecretData, Error> {
        log::info(&format!("new value for {}", req.secret_name));
        let hex: String = random::get_random_bytes(16)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(SecretData::Text(hex))
    }

    fn set_pending(_req: RotationRequest) -> Result<(), Error> {
        Ok(())
    }

    fn test_pending(req: RotationRequest) -> Result<(), Error> {
        match req.pending {
            Some(_) => Ok(()),
            None => Err(Error::invalid("no pending version to test")),
        }
    }
}

arca_plugin_sdk::export_rotator!(MyRotator);

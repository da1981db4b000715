//! An access policy: read-only use of keys, no key deletion, for everyone.
//! Build: `cargo build --release --target wasm32-wasip2`.

use arca_plugin_sdk::policy::{AccessPolicy, Decision, Request};

struct MyPolicy;

impl AccessPolicy for MyPolicy {
    fn decide(req: Request) -> Decision {
        let action = req.action.as_str();
        if action.starts_with("Describe") || action.starts_with("List") || action.starts_with("Get")
        {
            Decision::Allow("read-only actions are allowed".into())
        } else if action == "Encrypt"
            || action == "Decrypt"
            || action.starts_with("GenerateDataKey")
        {
            Decision::Allow("cryptographic use is allowed".into())
        } else {
            Decision::Deny(format!("{action} is not allowed by my-access-policy"))
        }
    }
}

arca_plugin_sdk::export_access_policy!(MyPolicy);

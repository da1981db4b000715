//! Server-side encryption for block storage (service code `ecs`): encrypted cloud disks.
//!
//! `resource-name` is a disk id (`d-` and letters or digits). A disk is encrypted when it is
//! created (`create-disk`) and its data key opened when it is attached (`attach-disk`) or
//! snapshotted (`create-snapshot`); other operations are refused. With no CMK requested the
//! service key `acs/ecs` protects the disk, with one the customer's CMK does. The data key is
//! bound to the disk id, so a key copied to another disk does not open.

use arca_plugin_sdk::sse::{Error, KeyChoice, KeyRequest, Protection, ServiceInfo, SseIntegration};

struct Ecs;

const OPERATIONS: &[&str] = &["create-disk", "attach-disk", "create-snapshot"];

impl SseIntegration for Ecs {
    fn describe() -> ServiceInfo {
        ServiceInfo {
            service_code: "ecs".into(),
            description: "Block storage: encrypted cloud disks with the service key or a customer CMK".into(),
            key_policy: r#"{"Version":"1","Statement":[{"Effect":"Allow","Principal":{"Service":["ecs.aliyuncs.com"]},"Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":["*"]}]}"#.into(),
            allow_customer_keys: true,
        }
    }

    fn choose_key(req: KeyRequest) -> Result<Protection, Error> {
        let disk = req.resource_name.as_str();
        let well_formed = disk
            .strip_prefix("d-")
            .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()));
        if !well_formed {
            return Err(Error::invalid("resource must be a disk id (d-...)"));
        }
        if !OPERATIONS.contains(&req.operation.as_str()) {
            return Err(Error::invalid(
                "operation must be create-disk, attach-disk or create-snapshot",
            ));
        }
        let key = match req.requested_key_id {
            Some(id) if !id.is_empty() => KeyChoice::CustomerKey(id),
            _ => KeyChoice::ServiceKey,
        };
        Ok(Protection {
            key,
            context: vec![("acs:ecs:disk".into(), disk.into())],
        })
    }
}

arca_plugin_sdk::export_sse_integration!(Ecs);

//! Server-side encryption for object storage (service code `oss`).
//!
//! `resource-name` is `<bucket>/<object>`. With no CMK requested, the service key `acs/oss`
//! protects the object (SSE-KMS default); with one, the customer's CMK does (BYOK for SSE).
//! Either way the data key is bound to the bucket and object, so a ciphertext copied to
//! another object does not decrypt.

use arca_plugin_sdk::sse::{Error, KeyChoice, KeyRequest, Protection, ServiceInfo, SseIntegration};

struct Oss;

impl SseIntegration for Oss {
    fn describe() -> ServiceInfo {
        ServiceInfo {
            service_code: "oss".into(),
            description: "Object storage: SSE-KMS with the service key or a customer CMK".into(),
            key_policy: r#"{"Version":"1","Statement":[{"Effect":"Allow","Principal":{"Service":["oss.aliyuncs.com"]},"Action":["kms:Encrypt","kms:Decrypt","kms:GenerateDataKey"],"Resource":["*"]}]}"#.into(),
            allow_customer_keys: true,
        }
    }

    fn choose_key(req: KeyRequest) -> Result<Protection, Error> {
        let (bucket, object) = req
            .resource_name
            .split_once('/')
            .filter(|(b, o)| !b.is_empty() && !o.is_empty())
            .ok_or_else(|| Error::invalid("resource must be <bucket>/<object>"))?;
        let key = match req.requested_key_id {
            Some(id) if !id.is_empty() => KeyChoice::CustomerKey(id),
            _ => KeyChoice::ServiceKey,
        };
        Ok(Protection {
            key,
            context: vec![
                ("acs:oss:bucket".into(), bucket.into()),
                ("acs:oss:object".into(), object.into()),
            ],
        })
    }
}

arca_plugin_sdk::export_sse_integration!(Oss);

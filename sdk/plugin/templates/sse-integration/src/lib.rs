//! A server-side-encryption integration for a service called `example`: the service key
//! protects data unless the customer names a CMK, and the data key is bound to the resource.
//! Build: `cargo build --release --target wasm32-wasip2`.

use arca_plugin_sdk::sse::{Error, KeyChoice, KeyRequest, Protection, ServiceInfo, SseIntegration};

struct MyIntegration;

impl SseIntegration for MyIntegration {
    fn describe() -> ServiceInfo {
        ServiceInfo {
            service_code: "example".into(),
            description: "An example service".into(),
            key_policy: r#"{"Version":"1","Statement":[]}"#.into(),
            allow_customer_keys: true,
        }
    }

    fn choose_key(req: KeyRequest) -> Result<Protection, Error> {
        if req.resource_name.is_empty() {
            return Err(Error::invalid("resource name is empty"));
        }
        let key = match req.requested_key_id {
            Some(id) => KeyChoice::CustomerKey(id),
            None => KeyChoice::ServiceKey,
        };
        Ok(Protection {
            key,
            context: vec![("acs:example:resource".into(), req.resource_name)],
        })
    }
}

arca_plugin_sdk::export_sse_integration!(MyIntegration);

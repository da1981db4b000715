//! Arca's default access policy: the semantics of application access points (AAP).
//!
//! A request signed with an account's AccessKey is governed by the account and by key policies,
//! not by AAPs, so it is allowed here. A request signed with a ClientKey is allowed when one of
//! its access point's policies covers it: the policy applies to the instance the request
//! reached, the action's permission class is among the policy's permissions
//! (`CryptoServiceKeyUser` for cryptographic calls, `CryptoServiceSecretUser` for reading
//! secrets), the resource matches one of the policy's resources (`key/*`, `key/<id>`,
//! `secret/*`, `secret/<name>`), and the source IP matches one of its network rules (a policy
//! without network rules admits any source).

use std::net::IpAddr;

use arca_plugin_sdk::policy::{AccessPolicy, AttachedPolicy, Decision, PrincipalKind, Request};

const KEY_USER: &str = "RbacPermission/Template/CryptoServiceKeyUser";
const SECRET_USER: &str = "RbacPermission/Template/CryptoServiceSecretUser";

struct DefaultPolicy;

impl AccessPolicy for DefaultPolicy {
    fn decide(req: Request) -> Decision {
        if req.principal.kind == PrincipalKind::AccessKey {
            return Decision::Allow("account AccessKey".into());
        }
        let Some(permission) = permission_for(&req.action) else {
            return Decision::Deny(format!("{} is not available to client keys", req.action));
        };
        let resource = req.resource_arn.as_deref().map(resource_of);
        // Every request that uses a key or reads a secret must say which: one that names
        // none would otherwise pass every policy's resource list.
        if resource.is_none() && req.action != "GenerateRandom" {
            return Decision::Deny(format!("{} names no resource", req.action));
        }
        for policy in &req.policies {
            if covers(policy, &req, permission, resource) {
                return Decision::Allow(format!("policy {}", policy.name));
            }
        }
        Decision::Deny(format!(
            "no policy of the access point allows {} on {} from {}",
            req.action,
            resource.unwrap_or("*"),
            req.source_ip
        ))
    }
}

fn covers(
    policy: &AttachedPolicy,
    req: &Request,
    permission: &str,
    resource: Option<&str>,
) -> bool {
    let instance_ok = match &req.instance {
        Some(instance) => policy.kms_instance == *instance,
        None => policy.kms_instance == "shared",
    };
    instance_ok
        && policy.permissions.iter().any(|p| p == permission)
        && resource.is_none_or(|r| policy.resources.iter().any(|pattern| matches(pattern, r)))
        // (no resource: GenerateRandom only, see `decide`)
        && (policy.network_rules.is_empty()
            || policy
                .network_rules
                .iter()
                .flat_map(|rule| &rule.source_private_ips)
                .any(|cidr| in_cidr(&req.source_ip, cidr)))
}

/// The permission class an action needs.
fn permission_for(action: &str) -> Option<&'static str> {
    const CRYPTO: &[&str] = &[
        "Encrypt",
        "Decrypt",
        "ReEncrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateAndExportDataKey",
        "ExportDataKey",
        "AdvanceEncrypt",
        "AdvanceDecrypt",
        "AdvanceGenerateDataKey",
        "AdvanceGenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "AdvanceGenerateDataKeyPair",
        "AdvanceGenerateDataKeyPairWithoutPlaintext",
        "GenerateMac",
        "VerifyMac",
        "AsymmetricEncrypt",
        "AsymmetricDecrypt",
        "AsymmetricSign",
        "AsymmetricVerify",
        "Sign",
        "Verify",
        "GetPublicKey",
        "Hmac",
        "GenerateRandom",
        "DescribeKey",
    ];
    if CRYPTO.contains(&action) {
        Some(KEY_USER)
    } else if action == "GetSecretValue" || action == "BatchGetSecretValue" {
        Some(SECRET_USER)
    } else {
        None
    }
}

/// `acs:kms:<region>:<account>:key/<id>` → `key/<id>`; anything else as it is.
fn resource_of(arn: &str) -> &str {
    if arn.starts_with("acs:") {
        arn.splitn(5, ':').nth(4).unwrap_or(arn)
    } else {
        arn
    }
}

fn matches(pattern: &str, resource: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => resource.starts_with(prefix),
        None => pattern == resource,
    }
}

/// Whether `ip` lies in `cidr` (`10.0.0.0/8`, or a single address).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let (net, bits) = match cidr.split_once('/') {
        Some((net, bits)) => (net, bits.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.trim().parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => prefix_eq(
            ip.to_bits().into(),
            net.to_bits().into(),
            bits.unwrap_or(32),
            32,
        ),
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            prefix_eq(ip.to_bits(), net.to_bits(), bits.unwrap_or(128), 128)
        }
        _ => false,
    }
}

fn prefix_eq(a: u128, b: u128, bits: u32, width: u32) -> bool {
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift == width || (a >> shift) == (b >> shift)
}

arca_plugin_sdk::export_access_policy!(DefaultPolicy);

//! Application access points (spec §8): network rules, permission policies, access points and
//! the client keys that authenticate applications on an instance's data plane.
//!
//! ```text
//! NetworkRule --(by name)--> Policy --(by name, ≤ 3)--> AAP <--(AapName)-- ClientKey(s)
//! ```
//!
//! All four live in the owning account and are named within it (client keys by id). Names
//! that others refer to cannot be deleted while referred to, so a policy never silently loses
//! its network restriction. Whether a request is allowed is decided by the access-policy
//! plugin from what [`Kms::client_key_context`] gathers, never here.

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Caller, Error, Kms, encode};
use crate::ids::{AccountId, InstanceId};
use crate::kms::Field;
use crate::store::{Batch, StoreError, Table};

/// The permission for cryptographic operations.
pub const KEY_USER: &str = "RbacPermission/Template/CryptoServiceKeyUser";
/// The permission for reading secrets.
pub const SECRET_USER: &str = "RbacPermission/Template/CryptoServiceSecretUser";

/// A network rule: the source addresses a policy admits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRuleRecord {
    /// The owner.
    pub account_id: AccountId,
    /// Unique in the account.
    pub name: String,
    /// IP addresses and CIDR blocks, validated.
    pub source_private_ips: Vec<String>,
    /// Free text.
    pub description: String,
    /// Unix seconds.
    pub created: i64,
}

/// A permission policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessPolicyRecord {
    /// The owner.
    pub account_id: AccountId,
    /// Unique in the account.
    pub name: String,
    /// [`KEY_USER`] and/or [`SECRET_USER`].
    pub permissions: Vec<String>,
    /// `key/<id>`, `key/*`, `secret/<name>`, `secret/*`.
    pub resources: Vec<String>,
    /// The KMS instance the policy applies to.
    pub kms_instance: String,
    /// Names of network rules; a request must come from one of them.
    pub network_rules: Vec<String>,
    /// Free text.
    pub description: String,
    /// Unix seconds.
    pub created: i64,
}

/// An application access point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessPointRecord {
    /// The owner.
    pub account_id: AccountId,
    /// Unique in the account.
    pub name: String,
    /// Names of its policies (at most three).
    pub policies: Vec<String>,
    /// Free text.
    pub description: String,
    /// Unix seconds.
    pub created: i64,
}

/// A client key. Arca keeps only the certificate: the private key left once, in the PKCS#12
/// file CreateClientKey returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientKeyRecord {
    /// `KAAP.<uuid>`.
    pub client_key_id: String,
    /// The owner.
    pub account_id: AccountId,
    /// The access point it authenticates for.
    pub aap_name: String,
    /// The X.509 certificate, PEM.
    pub certificate_pem: String,
    /// SubjectPublicKeyInfo DER, base64: what signatures are checked with.
    pub public_key: String,
    /// Unix seconds from which the key is valid.
    pub not_before: i64,
    /// Unix seconds after which the key is refused.
    pub not_after: i64,
    /// Unix seconds.
    pub created: i64,
}

/// What a data-plane request signed with a client key is decided on.
#[derive(Debug, Clone)]
pub struct ClientKeyContext {
    /// The key.
    pub key: ClientKeyRecord,
    /// Its access point's policies, with their network rules resolved.
    pub policies: Vec<(AccessPolicyRecord, Vec<NetworkRuleRecord>)>,
}

/// What `CreatePolicy`/`UpdatePolicy` set.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// Permissions.
    pub permissions: Vec<String>,
    /// Resources.
    pub resources: Vec<String>,
    /// Network rule names.
    pub network_rules: Vec<String>,
    /// Free text.
    pub description: String,
}

fn path(account: &AccountId, name: &str) -> String {
    format!("{account}/{name}")
}

/// Names of rules, policies and access points: 1–64 of `A-Z a-z 0-9 _ - .`.
pub fn check_name(field: Field, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, "1-64 of A-Z a-z 0-9 _ - ."))
    }
}

/// Parses `SourcePrivateIp`: a JSON array (the documented example) or a comma-separated list
/// (the documented description) of IP addresses and CIDR blocks.
pub fn parse_sources(text: &str) -> Result<Vec<String>, Error> {
    let items: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|_| Error::invalid(Field::SourcePrivateIp, "not a JSON array of strings"))?
    } else {
        text.split(',').map(|s| s.trim().to_owned()).collect()
    };
    if items.is_empty() || items.len() > 40 {
        return Err(Error::invalid(
            Field::SourcePrivateIp,
            "1-40 addresses or CIDR blocks",
        ));
    }
    for item in &items {
        let (ip, bits) = match item.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (item.as_str(), None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| {
            Error::invalid(
                Field::SourcePrivateIp,
                format!("{item:?} is not an IP or CIDR"),
            )
        })?;
        let width = if ip.is_ipv4() { 32 } else { 128 };
        if let Some(bits) = bits
            && bits.parse::<u32>().map_or(true, |b| b > width)
        {
            return Err(Error::invalid(
                Field::SourcePrivateIp,
                format!("{item:?} has a bad prefix length"),
            ));
        }
    }
    Ok(items)
}

impl Kms {
    fn named<T: DeserializeOwned>(
        &self,
        table: Table,
        caller: &Caller,
        name: &str,
    ) -> Result<(T, Vec<u8>), Error> {
        self.get_raw::<T>(table, &path(&caller.account, name))?
            .ok_or(Error::ResourceNotFound)
    }

    fn all_named<T: DeserializeOwned>(
        &self,
        table: Table,
        caller: &Caller,
    ) -> Result<Vec<T>, Error> {
        self.scan(table, &format!("{}/", caller.account))
    }

    async fn insert_named<T: Serialize>(
        &self,
        table: Table,
        caller: &Caller,
        name: &str,
        record: &T,
    ) -> Result<(), Error> {
        let p = path(&caller.account, name);
        let batch = Batch::new()
            .expect(table, p.clone(), None)
            .put(table, p, encode(record)?);
        match self.commit(batch).await {
            Err(StoreError::Conflict) => Err(Error::ResourceExists),
            other => Ok(other?),
        }
    }

    /// Replaces a record read as `old` (compare-and-swap: a concurrent change conflicts).
    async fn replace_named<T: Serialize>(
        &self,
        table: Table,
        caller: &Caller,
        name: &str,
        old: Vec<u8>,
        record: &T,
    ) -> Result<(), Error> {
        let p = path(&caller.account, name);
        let batch = Batch::new()
            .expect(table, p.clone(), Some(old))
            .put(table, p, encode(record)?);
        match self.commit(batch).await {
            Err(StoreError::Conflict) => Err(Error::Internal("concurrent update".into())),
            other => Ok(other?),
        }
    }

    async fn delete_named(&self, table: Table, caller: &Caller, name: &str) -> Result<(), Error> {
        let (_, raw) = self.named::<serde_json::Value>(table, caller, name)?;
        let p = path(&caller.account, name);
        let batch = Batch::new()
            .expect(table, p.clone(), Some(raw))
            .delete(table, p);
        Ok(self.commit(batch).await?)
    }

    // ---- network rules ----

    /// `CreateNetworkRule`.
    pub async fn create_network_rule(
        &self,
        caller: &Caller,
        name: &str,
        sources: Vec<String>,
        description: String,
    ) -> Result<NetworkRuleRecord, Error> {
        check_name(Field::Name, name)?;
        let record = NetworkRuleRecord {
            account_id: caller.account.clone(),
            name: name.to_owned(),
            source_private_ips: sources,
            description,
            created: self.now(),
        };
        self.insert_named(Table::NetworkRules, caller, name, &record)
            .await?;
        Ok(record)
    }

    /// `DescribeNetworkRule`.
    pub fn network_rule(&self, caller: &Caller, name: &str) -> Result<NetworkRuleRecord, Error> {
        Ok(self.named(Table::NetworkRules, caller, name)?.0)
    }

    /// `ListNetworkRules`.
    pub fn network_rules(&self, caller: &Caller) -> Result<Vec<NetworkRuleRecord>, Error> {
        self.all_named(Table::NetworkRules, caller)
    }

    /// `UpdateNetworkRule`: new sources and/or description.
    pub async fn update_network_rule(
        &self,
        caller: &Caller,
        name: &str,
        sources: Option<Vec<String>>,
        description: Option<String>,
    ) -> Result<(), Error> {
        let (mut r, raw) = self.named::<NetworkRuleRecord>(Table::NetworkRules, caller, name)?;
        if let Some(s) = sources {
            r.source_private_ips = s;
        }
        if let Some(d) = description {
            r.description = d;
        }
        self.replace_named(Table::NetworkRules, caller, name, raw, &r)
            .await
    }

    /// `DeleteNetworkRule`: refused while a policy names it.
    pub async fn delete_network_rule(&self, caller: &Caller, name: &str) -> Result<(), Error> {
        if let Some(p) = self
            .policies(caller)?
            .into_iter()
            .find(|p| p.network_rules.iter().any(|r| r == name))
        {
            return Err(Error::InUse(format!(
                "the network rule is used by the policy {}",
                p.name
            )));
        }
        self.delete_named(Table::NetworkRules, caller, name).await
    }

    // ---- policies ----

    fn check_policy(&self, caller: &Caller, spec: &PolicySpec) -> Result<(), Error> {
        if spec.permissions.is_empty()
            || spec
                .permissions
                .iter()
                .any(|p| p != KEY_USER && p != SECRET_USER)
        {
            return Err(Error::invalid(
                Field::Permissions,
                format!("a JSON array of {KEY_USER} and/or {SECRET_USER}"),
            ));
        }
        let resource_ok = |r: &String| {
            r.strip_prefix("key/")
                .or_else(|| r.strip_prefix("secret/"))
                .is_some_and(|rest| !rest.is_empty())
        };
        if spec.resources.is_empty() || !spec.resources.iter().all(resource_ok) {
            return Err(Error::invalid(
                Field::Resources,
                "a JSON array of key/<KeyId>, key/*, secret/<SecretName> or secret/*",
            ));
        }
        if spec.network_rules.len() > 40 {
            return Err(Error::invalid(
                Field::AccessControlRules,
                "at most 40 network rules",
            ));
        }
        for rule in &spec.network_rules {
            if self.network_rule(caller, rule).is_err() {
                return Err(Error::invalid(
                    Field::AccessControlRules,
                    format!("no network rule named {rule:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `CreatePolicy`.
    pub async fn create_policy(
        &self,
        caller: &Caller,
        name: &str,
        instance: &InstanceId,
        spec: PolicySpec,
    ) -> Result<AccessPolicyRecord, Error> {
        check_name(Field::Name, name)?;
        self.instance(caller, instance).map_err(|_| {
            Error::invalid(Field::KmsInstance, "no such KMS instance in this account")
        })?;
        self.check_policy(caller, &spec)?;
        let record = AccessPolicyRecord {
            account_id: caller.account.clone(),
            name: name.to_owned(),
            permissions: spec.permissions,
            resources: spec.resources,
            kms_instance: instance.to_string(),
            network_rules: spec.network_rules,
            description: spec.description,
            created: self.now(),
        };
        self.insert_named(Table::AccessPolicies, caller, name, &record)
            .await?;
        Ok(record)
    }

    /// `DescribePolicy`.
    pub fn policy(&self, caller: &Caller, name: &str) -> Result<AccessPolicyRecord, Error> {
        Ok(self.named(Table::AccessPolicies, caller, name)?.0)
    }

    /// `ListPolicies`.
    pub fn policies(&self, caller: &Caller) -> Result<Vec<AccessPolicyRecord>, Error> {
        self.all_named(Table::AccessPolicies, caller)
    }

    /// `UpdatePolicy`: absent fields keep their values.
    pub async fn update_policy(
        &self,
        caller: &Caller,
        name: &str,
        permissions: Option<Vec<String>>,
        resources: Option<Vec<String>>,
        network_rules: Option<Vec<String>>,
        description: Option<String>,
    ) -> Result<(), Error> {
        let (mut p, raw) = self.named::<AccessPolicyRecord>(Table::AccessPolicies, caller, name)?;
        let spec = PolicySpec {
            permissions: permissions.unwrap_or(p.permissions),
            resources: resources.unwrap_or(p.resources),
            network_rules: network_rules.unwrap_or(p.network_rules),
            description: description.unwrap_or(p.description),
        };
        self.check_policy(caller, &spec)?;
        p.permissions = spec.permissions;
        p.resources = spec.resources;
        p.network_rules = spec.network_rules;
        p.description = spec.description;
        self.replace_named(Table::AccessPolicies, caller, name, raw, &p)
            .await
    }

    /// `DeletePolicy`: refused while an access point names it.
    pub async fn delete_policy(&self, caller: &Caller, name: &str) -> Result<(), Error> {
        if let Some(a) = self
            .access_points(caller)?
            .into_iter()
            .find(|a| a.policies.iter().any(|p| p == name))
        {
            return Err(Error::InUse(format!(
                "the policy is attached to the application access point {}",
                a.name
            )));
        }
        self.delete_named(Table::AccessPolicies, caller, name).await
    }

    // ---- access points ----

    fn check_policies(&self, caller: &Caller, policies: &[String]) -> Result<(), Error> {
        if policies.is_empty() || policies.len() > 3 {
            return Err(Error::invalid(
                Field::Policies,
                "a JSON array of 1-3 policy names",
            ));
        }
        for p in policies {
            if self.policy(caller, p).is_err() {
                return Err(Error::invalid(
                    Field::Policies,
                    format!("no policy named {p:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `CreateApplicationAccessPoint`.
    pub async fn create_access_point(
        &self,
        caller: &Caller,
        name: &str,
        policies: Vec<String>,
        description: String,
    ) -> Result<AccessPointRecord, Error> {
        check_name(Field::Name, name)?;
        self.check_policies(caller, &policies)?;
        let record = AccessPointRecord {
            account_id: caller.account.clone(),
            name: name.to_owned(),
            policies,
            description,
            created: self.now(),
        };
        self.insert_named(Table::AccessPoints, caller, name, &record)
            .await?;
        Ok(record)
    }

    /// `DescribeApplicationAccessPoint`.
    pub fn access_point(&self, caller: &Caller, name: &str) -> Result<AccessPointRecord, Error> {
        Ok(self.named(Table::AccessPoints, caller, name)?.0)
    }

    /// `ListApplicationAccessPoints`.
    pub fn access_points(&self, caller: &Caller) -> Result<Vec<AccessPointRecord>, Error> {
        self.all_named(Table::AccessPoints, caller)
    }

    /// `UpdateApplicationAccessPoint`.
    pub async fn update_access_point(
        &self,
        caller: &Caller,
        name: &str,
        policies: Option<Vec<String>>,
        description: Option<String>,
    ) -> Result<(), Error> {
        let (mut a, raw) = self.named::<AccessPointRecord>(Table::AccessPoints, caller, name)?;
        if let Some(p) = policies {
            self.check_policies(caller, &p)?;
            a.policies = p;
        }
        if let Some(d) = description {
            a.description = d;
        }
        self.replace_named(Table::AccessPoints, caller, name, raw, &a)
            .await
    }

    /// `DeleteApplicationAccessPoint`: refused while client keys authenticate for it.
    pub async fn delete_access_point(&self, caller: &Caller, name: &str) -> Result<(), Error> {
        let keys = self.client_keys(caller, Some(name))?;
        if !keys.is_empty() {
            return Err(Error::InUse(format!(
                "{} client keys belong to the application access point; delete them first",
                keys.len()
            )));
        }
        self.delete_named(Table::AccessPoints, caller, name).await
    }

    // ---- client keys ----

    /// `CreateClientKey`: a new RSA-2048 key for `aap`, valid `not_before..not_after`; the
    /// reply's PKCS#12 file, under `password`, is the only copy of the private key.
    pub async fn create_client_key(
        &self,
        caller: &Caller,
        aap: &str,
        password: crate::secret::SecretString,
        validity: Option<(i64, i64)>,
    ) -> Result<(ClientKeyRecord, crate::secret::SecretBytes), Error> {
        self.access_point(caller, aap)?;
        let now = self.now();
        let (not_before, not_after) = validity.unwrap_or((now, now + 5 * 365 * 86_400));
        if not_after <= not_before {
            return Err(Error::invalid(Field::NotAfter, "must be after NotBefore"));
        }
        let id = format!("KAAP.{}", crate::ids::KeyVersionId::generate());
        let at = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .map_err(|_| Error::invalid(Field::NotAfter, "out of range"))
        };
        let (from, until) = (at(not_before)?, at(not_after)?);
        let cert_id = id.clone();
        let issued = tokio::task::spawn_blocking(move || {
            crate::pki::issue_client_key(&cert_id, from, until, password.expose())
        })
        .await
        .map_err(|e| Error::Internal(format!("client key task: {e}")))?
        .map_err(|e| Error::Internal(e.to_string()))?;
        use base64::Engine;
        let record = ClientKeyRecord {
            client_key_id: id.clone(),
            account_id: caller.account.clone(),
            aap_name: aap.to_owned(),
            certificate_pem: issued.certificate_pem,
            public_key: base64::engine::general_purpose::STANDARD.encode(issued.public_key_der),
            not_before,
            not_after,
            created: now,
        };
        let batch = Batch::new()
            .expect(Table::ClientKeys, id.clone(), None)
            .put(Table::ClientKeys, id, encode(&record)?);
        self.commit(batch).await?;
        Ok((record, issued.pkcs12))
    }

    /// `GetClientKey`.
    pub fn client_key(&self, caller: &Caller, id: &str) -> Result<ClientKeyRecord, Error> {
        match self.get::<ClientKeyRecord>(Table::ClientKeys, id)? {
            Some(k) if k.account_id == caller.account => Ok(k),
            _ => Err(Error::ResourceNotFound),
        }
    }

    /// `ListClientKeys`, optionally of one access point.
    pub fn client_keys(
        &self,
        caller: &Caller,
        aap: Option<&str>,
    ) -> Result<Vec<ClientKeyRecord>, Error> {
        let mut keys: Vec<ClientKeyRecord> = self
            .scan::<ClientKeyRecord>(Table::ClientKeys, "KAAP.")?
            .into_iter()
            .filter(|k| k.account_id == caller.account && aap.is_none_or(|a| k.aap_name == a))
            .collect();
        keys.sort_by(|a, b| (a.created, &a.client_key_id).cmp(&(b.created, &b.client_key_id)));
        Ok(keys)
    }

    /// `DeleteClientKey`: the key is refused from the next request on.
    pub async fn delete_client_key(&self, caller: &Caller, id: &str) -> Result<(), Error> {
        self.client_key(caller, id)?;
        Ok(self
            .commit(Batch::new().delete(Table::ClientKeys, id))
            .await?)
    }

    /// Everything a data-plane request signed by client key `id` is decided on, or `None`
    /// for an unknown key. The caller checks the signature and the validity period.
    pub fn client_key_context(&self, id: &str) -> Result<Option<ClientKeyContext>, Error> {
        let Some(key) = self.get::<ClientKeyRecord>(Table::ClientKeys, id)? else {
            return Ok(None);
        };
        let owner = Caller {
            account: key.account_id.clone(),
            admin: false,
            action: String::new(),
            service: None,
        };
        let mut policies = Vec::new();
        // An access point or policy deleted under a key leaves it with fewer policies, which
        // can only deny more.
        if let Ok(aap) = self.access_point(&owner, &key.aap_name) {
            for name in &aap.policies {
                let Ok(p) = self.policy(&owner, name) else {
                    continue;
                };
                // A rule that went missing must not turn into "any source": drop the policy.
                let rules: Result<Vec<_>, _> = p
                    .network_rules
                    .iter()
                    .map(|r| self.network_rule(&owner, r))
                    .collect();
                if let Ok(rules) = rules {
                    policies.push((p, rules));
                }
            }
        }
        Ok(Some(ClientKeyContext { key, policies }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_json_or_commas() {
        let json = parse_sources(r#"["10.0.0.1","192.168.0.0/24"]"#);
        assert_eq!(
            json.ok(),
            Some(vec!["10.0.0.1".into(), "192.168.0.0/24".into()])
        );
        let commas = parse_sources("127.0.0.2, 127.0.0.0/30");
        assert_eq!(
            commas.ok(),
            Some(vec!["127.0.0.2".into(), "127.0.0.0/30".into()])
        );
        assert!(parse_sources("10.0.0.1/33").is_err());
        assert!(parse_sources("example.com").is_err());
        assert!(parse_sources("[]").is_err());
    }
}

//! Key policies: who besides the owner may use a key, and for which actions.
//!
//! The accepted form is Alibaba's (spec §6.7):
//! `{"Version":"1","Statement":[{"Effect":"Allow"|"Deny","Principal":{"RAM":[…]},
//! "Action":["kms:…"],"Resource":["*"]}]}`. A principal names an account as
//! `acs:ram::<uid>:*`, `acs:ram::<uid>:root` or the bare uid; `*` is everyone;
//! `{"Service":[…]}` names a cloud service (service keys), which is no account. A Deny wins
//! over an Allow. Without a stored policy, only the owner may use the key. Another account
//! reaches a key only by its ARN.

use serde_json::Value;

use super::model::KeyRecord;
use super::{Caller, Error};
use crate::ids::AccountId;
use crate::kms::Field;

/// Largest policy document, in bytes.
pub const MAX_POLICY: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    allow: bool,
    principals: Vec<String>,
    actions: Vec<String>,
}

/// A parsed key policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy(Vec<Statement>);

fn strings(v: &Value, what: &'static str) -> Result<Vec<String>, Error> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::invalid(Field::Policy, format!("{what} must be strings")))
            })
            .collect(),
        _ => Err(Error::invalid(
            Field::Policy,
            format!("{what} must be a string or a list of strings"),
        )),
    }
}

impl KeyPolicy {
    /// Parses and validates a policy document.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_POLICY {
            return Err(Error::invalid(Field::Policy, "longer than 32768 bytes"));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|_| Error::invalid(Field::Policy, "not JSON"))?;
        let statements = doc
            .get("Statement")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::invalid(Field::Policy, "needs a Statement list"))?;
        statements
            .iter()
            .map(|st| {
                let allow = match st.get("Effect").and_then(Value::as_str) {
                    Some("Allow") => true,
                    Some("Deny") => false,
                    _ => {
                        return Err(Error::invalid(
                            Field::Policy,
                            "Effect must be Allow or Deny",
                        ));
                    }
                };
                let principal = st.get("Principal").ok_or_else(|| {
                    Error::invalid(Field::Policy, "a Statement needs a Principal")
                })?;
                let principals = match principal {
                    Value::String(s) if s == "*" => vec!["*".to_owned()],
                    // A cloud service (`{"Service":["oss.aliyuncs.com"]}`, as service keys carry)
                    // names no account: it is kept as `service:<name>` and matches none.
                    p if p.get("RAM").is_none() && p.get("Service").is_some() => strings(
                        p.get("Service").unwrap_or(&Value::Null),
                        "Principal.Service",
                    )?
                    .into_iter()
                    .map(|s| format!("service:{s}"))
                    .collect(),
                    p => strings(p.get("RAM").unwrap_or(&Value::Null), "Principal.RAM")?,
                };
                let actions = strings(st.get("Action").unwrap_or(&Value::Null), "Action")?;
                if actions.iter().any(|a| !a.starts_with("kms:")) {
                    return Err(Error::invalid(
                        Field::Policy,
                        "actions look like kms:<Action> or kms:*",
                    ));
                }
                Ok(Statement {
                    allow,
                    principals,
                    actions,
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `account` may call `action` (its API name, e.g. `Encrypt`).
    pub fn allows(&self, account: &AccountId, action: &str) -> bool {
        let principal = |p: &String| {
            p == "*"
                || p == account.as_str()
                || *p == format!("acs:ram::{account}:*")
                || *p == format!("acs:ram::{account}:root")
        };
        let act = |a: &String| {
            a == "kms:*"
                || a.strip_prefix("kms:")
                    .is_some_and(|x| x.eq_ignore_ascii_case(action))
        };
        let matching =
            |st: &&Statement| st.principals.iter().any(principal) && st.actions.iter().any(act);
        let mut matched = self.0.iter().filter(matching).peekable();
        matched.peek().is_some() && self.0.iter().filter(matching).all(|st| st.allow)
    }
}

/// The policy a key has until one is set: everything for its owner.
pub fn default_policy(owner: &AccountId) -> String {
    format!(
        r#"{{"Version":"1","Statement":[{{"Sid":"Enable RAM User Permissions","Effect":"Allow","Principal":{{"RAM":["acs:ram::{owner}:*"]}},"Action":["kms:*"],"Resource":["*"]}}]}}"#
    )
}

impl super::Kms {
    /// `GetKeyPolicy` (`PolicyName` is always `default`).
    pub fn get_key_policy(
        &self,
        caller: &Caller,
        key: &crate::ids::KeyRef,
    ) -> Result<String, Error> {
        let k = self.resolve(caller, key)?;
        Ok(k.policy.unwrap_or_else(|| default_policy(&k.account_id)))
    }

    /// `SetKeyPolicy`: only the key's owner may change it.
    pub async fn set_key_policy(
        &self,
        caller: &Caller,
        key: &crate::ids::KeyRef,
        policy: &str,
    ) -> Result<KeyRecord, Error> {
        KeyPolicy::parse(policy)?;
        let owner = self.resolve(caller, key)?.account_id;
        if owner != caller.account {
            return Err(Error::NoPermission);
        }
        self.update_key(caller, key, |k| {
            k.policy = Some(policy.to_owned());
            Ok(())
        })
        .await
    }
}

/// Refuses `caller` unless the key is theirs or its policy grants them the current action.
pub fn check(caller: &Caller, key: &KeyRecord) -> Result<(), Error> {
    if key.account_id == caller.account {
        return Ok(());
    }
    let granted = key
        .policy
        .as_deref()
        .and_then(|p| KeyPolicy::parse(p).ok())
        .is_some_and(|p| p.allows(&caller.account, &caller.action));
    if granted {
        Ok(())
    } else {
        Err(Error::NoPermission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_grant_and_deny() {
        let a: AccountId = "1111".parse().unwrap();
        let b: AccountId = "2222".parse().unwrap();
        let p = KeyPolicy::parse(
            r#"{"Version":"1","Statement":[
              {"Effect":"Allow","Principal":{"RAM":["acs:ram::1111:*"]},"Action":["kms:Encrypt","kms:GenerateDataKey"],"Resource":["*"]},
              {"Effect":"Allow","Principal":{"RAM":"2222"},"Action":"kms:*","Resource":["*"]},
              {"Effect":"Deny","Principal":{"RAM":["acs:ram::2222:root"]},"Action":["kms:Decrypt"],"Resource":["*"]}]}"#,
        )
        .unwrap();
        assert!(p.allows(&a, "Encrypt"));
        assert!(!p.allows(&a, "Decrypt"));
        assert!(p.allows(&b, "DescribeKey"));
        assert!(!p.allows(&b, "Decrypt"), "Deny wins");
        let c: AccountId = "3333".parse().unwrap();
        assert!(!p.allows(&c, "Encrypt"));
        assert!(
            KeyPolicy::parse(&default_policy(&a))
                .unwrap()
                .allows(&a, "Encrypt")
        );
        assert!(KeyPolicy::parse("{}").is_err());
        assert!(
            KeyPolicy::parse(
                r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*"}]}"#
            )
            .is_err()
        );
        assert!(
            KeyPolicy::parse(
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*"}]}"#
            )
            .is_err()
        );
    }
}

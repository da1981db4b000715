//! The Rds rotator for PostgreSQL.
//!
//! The secret's value is `{"AccountName": "<role>", "AccountPassword": "<password>"}` (the
//! form Alibaba's RDS secrets return; a CreateSecret value of `{"Accounts": [{...}]}` is read
//! too). Its ExtendedConfig:
//!
//! ```json
//! {"SecretSubType": "SingleUser", "DBInstanceId": "orders-db", "PasswordLength": 32}
//! ```
//!
//! `DBInstanceId` names the admin connection (in the operator's `connections.toml`) through
//! which passwords change; the same server is used to test logins.
//!
//! - `SingleUser`: the role keeps its name and gets a new password. Between `set-pending` and
//!   `finish` (one test login apart) the new password is already in force while ACSCurrent
//!   still holds the old one; clients that fail to log in should re-read the secret.
//! - `DoubleUsers`: two roles, `<name>` and `<name>_clone`, take turns. Each rotation gives the
//!   role *not* in ACSCurrent a new password and makes it current, so the current credentials
//!   never stop working. The clone role is created (LOGIN, member of the base role, so it has
//!   the same privileges) if it does not exist.
//!
//! Every step is idempotent: setting the same password twice, or testing it twice, is harmless.
//!
//! Roles change only through the host's `set-login-password` and `create-login-role`, which
//! refuse the connection's own user, roles outside the connection's `roles`, and roles with
//! (or inheriting) superuser, CREATEROLE, REPLICATION or BYPASSRLS power: the role name comes
//! from the tenant's secret value.

use arca_plugin_sdk::rotator::{Error, ErrorKind, RotationRequest, Rotator, SecretData};
use arca_plugin_sdk::{log, random, sql};
use serde_json::{Value, json};

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const CLONE_SUFFIX: &str = "_clone";

struct Postgres;

struct Config {
    double: bool,
    connection: String,
    length: usize,
}

impl Config {
    fn parse(text: &str) -> Result<Self, Error> {
        let v: Value = serde_json::from_str(text)
            .map_err(|_| Error::invalid("ExtendedConfig is not a JSON object"))?;
        let double = match v["SecretSubType"].as_str().unwrap_or("SingleUser") {
            "SingleUser" => false,
            "DoubleUsers" => true,
            other => return Err(Error::invalid(format!("unknown SecretSubType {other}"))),
        };
        let connection = v["DBInstanceId"]
            .as_str()
            .ok_or_else(|| Error::invalid("ExtendedConfig.DBInstanceId names no connection"))?
            .to_owned();
        let length = match v.get("PasswordLength") {
            None => 32,
            Some(n) => n
                .as_u64()
                .filter(|n| (16..=128).contains(n))
                .ok_or_else(|| Error::invalid("PasswordLength must be 16-128"))?
                as usize,
        };
        Ok(Self {
            double,
            connection,
            length,
        })
    }
}

/// (role, password) of a version's value.
fn account(data: &SecretData) -> Result<(String, String), Error> {
    let SecretData::Text(text) = data else {
        return Err(Error::invalid("an Rds secret holds JSON text"));
    };
    let v: Value =
        serde_json::from_str(text).map_err(|_| Error::invalid("the secret value is not JSON"))?;
    let one = if v["Accounts"].is_array() {
        &v["Accounts"][0]
    } else {
        &v
    };
    match (one["AccountName"].as_str(), one["AccountPassword"].as_str()) {
        (Some(n), Some(p)) if !n.is_empty() => Ok((n.to_owned(), p.to_owned())),
        _ => Err(Error::invalid(
            "the secret value needs AccountName and AccountPassword",
        )),
    }
}

fn password(length: usize) -> String {
    // Rejection sampling keeps the choice uniform over the 62 characters.
    let limit = 256 - (256 % ALPHABET.len());
    let mut out = String::with_capacity(length);
    while out.len() < length {
        for b in random::get_random_bytes(64) {
            if (b as usize) < limit && out.len() < length {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

fn current(req: &RotationRequest) -> Result<(String, String), Error> {
    let v = req
        .current
        .as_ref()
        .ok_or_else(|| Error::invalid("the secret has no ACSCurrent version"))?;
    account(&v.value)
}

fn pending(req: &RotationRequest) -> Result<(String, String), Error> {
    let v = req
        .pending
        .as_ref()
        .ok_or_else(|| Error::invalid("the pending version is missing"))?;
    account(&v.value)
}

fn sql_error(what: &str, e: Error) -> Error {
    Error::new(e.kind, format!("{what}: {}", e.message))
}

impl Rotator for Postgres {
    fn create_pending(req: RotationRequest) -> Result<SecretData, Error> {
        let config = Config::parse(&req.extended_config)?;
        let (name, _) = current(&req)?;
        let role = if !config.double {
            name
        } else if let Some(base) = name.strip_suffix(CLONE_SUFFIX) {
            base.to_owned()
        } else {
            format!("{name}{CLONE_SUFFIX}")
        };
        let value = json!({"AccountName": role, "AccountPassword": password(config.length)});
        Ok(SecretData::Text(value.to_string()))
    }

    fn set_pending(req: RotationRequest) -> Result<(), Error> {
        let config = Config::parse(&req.extended_config)?;
        let (role, new_password) = pending(&req)?;
        // The host changes the role, and refuses what a tenant must never reach (the
        // connection's own user, roles outside the connection's list, privileged roles).
        if config.double {
            let base = role.strip_suffix(CLONE_SUFFIX).unwrap_or(&role).to_owned();
            // The clone takes the base role's privileges by membership.
            let member_of = (role != base).then_some(base.as_str());
            sql::create_login_role(&config.connection, &role, &new_password, member_of)
                .map_err(|e| sql_error("setting up the role", e))?;
            log::info(&format!("set the password of {role}"));
            return Ok(());
        }
        sql::set_login_password(&config.connection, &role, &new_password)
            .map_err(|e| sql_error("changing the password", e))
    }

    fn test_pending(req: RotationRequest) -> Result<(), Error> {
        let config = Config::parse(&req.extended_config)?;
        let (role, new_password) = pending(&req)?;
        sql::check_login(&config.connection, &role, &new_password).map_err(|e| {
            Error::new(
                if e.kind == ErrorKind::Denied {
                    ErrorKind::Failed
                } else {
                    e.kind
                },
                format!("the new password of {role} does not log in: {}", e.message),
            )
        })
    }

    fn finish(req: RotationRequest) -> Result<(), Error> {
        // Nothing to clean up: the host moves the stages. Check the value is still sane.
        pending(&req).map(|_| ())
    }
}

arca_plugin_sdk::export_rotator!(Postgres);

//! A rotator that exercises the host imports. `extended-config` is a command; the step's
//! result reports what the host answered:
//!
//! - `random:<n>`: `n` random bytes (hex) — above 65536 the host traps the call.
//! - `clock`: the host's time in seconds.
//! - `kms:<key>`: encrypt `probe` under the key and decrypt it back.
//! - `datakey:<key>`: a 32-byte data key; returns its plaintext length.
//! - `decrypt:<blob>`: decrypt a ciphertext (with the context `purpose=other`).
//! - `secret:<name>`: read a secret.
//! - `sql:<connection>:<statement>`: run a query, return the first column of the first row.
//! - `login:<connection>:<user>:<password>`: check a login.
//! - `http:<url>`: GET the URL, return status and body.
//! - anything else: a fixed value.
//!
//! `set-pending`, `test-pending` and `finish` succeed when the pending value is present.

use arca_plugin_sdk::rotator::{Error, ErrorKind, RotationRequest, Rotator, SecretData};
use arca_plugin_sdk::{clock, http, kms, random, secrets, sql};

struct Probe;

fn show(e: Error) -> Error {
    Error::new(e.kind, format!("host said {:?}: {}", e.kind, e.message))
}

impl Rotator for Probe {
    fn create_pending(req: RotationRequest) -> Result<SecretData, Error> {
        let cmd = req.extended_config.as_str();
        let text = if let Some(n) = cmd.strip_prefix("random:") {
            let n: u32 = n.parse().map_err(|_| Error::invalid("bad n"))?;
            random::get_random_bytes(n)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        } else if cmd == "clock" {
            clock::now().seconds.to_string()
        } else if let Some(key) = cmd.strip_prefix("kms:") {
            let blob =
                kms::encrypt(key, "probe", &[("purpose".into(), "probe".into())]).map_err(show)?;
            kms::decrypt(&blob, &[("purpose".into(), "probe".into())]).map_err(show)?
        } else if let Some(blob) = cmd.strip_prefix("decrypt:") {
            kms::decrypt(blob, &[("purpose".into(), "other".into())]).map_err(show)?
        } else if let Some(key) = cmd.strip_prefix("datakey:") {
            let dk = kms::generate_data_key(key, 32, &[]).map_err(show)?;
            format!("{} {}", dk.key_id, dk.plaintext.len())
        } else if let Some(name) = cmd.strip_prefix("secret:") {
            match secrets::get_secret_value(name, None).map_err(show)?.value {
                SecretData::Text(t) => t,
                SecretData::Binary(b) => format!("{} bytes", b.len()),
            }
        } else if let Some(rest) = cmd.strip_prefix("sql:") {
            let (conn, statement) = rest
                .split_once(':')
                .ok_or_else(|| Error::invalid("sql:<conn>:<stmt>"))?;
            let rows = sql::query(conn, statement, &[]).map_err(show)?;
            match rows.rows.first().and_then(|r| r.first()) {
                Some(sql::Value::Text(t)) => t.clone(),
                Some(sql::Value::Int(i)) => i.to_string(),
                other => format!("{other:?}"),
            }
        } else if let Some(rest) = cmd.strip_prefix("login:") {
            let mut parts = rest.splitn(3, ':');
            let (conn, user, password) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            sql::check_login(conn, user, password).map_err(show)?;
            "login ok".into()
        } else if let Some(url) = cmd.strip_prefix("http:") {
            let resp = http::send(&http::Request {
                method: "GET".into(),
                url: url.into(),
                headers: vec![],
                body: vec![],
            })
            .map_err(show)?;
            format!("{} {}", resp.status, String::from_utf8_lossy(&resp.body))
        } else {
            "probe-value".into()
        };
        Ok(SecretData::Text(text))
    }

    fn set_pending(req: RotationRequest) -> Result<(), Error> {
        pending(&req)
    }

    fn test_pending(req: RotationRequest) -> Result<(), Error> {
        pending(&req)
    }

    fn finish(req: RotationRequest) -> Result<(), Error> {
        pending(&req)
    }
}

fn pending(req: &RotationRequest) -> Result<(), Error> {
    match &req.pending {
        Some(_) => Ok(()),
        None => Err(Error::new(ErrorKind::InvalidArgument, "no pending version")),
    }
}

arca_plugin_sdk::export_rotator!(Probe);

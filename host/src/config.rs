//! `arca.toml`: every setting of a server, with its default.
//!
//! A setting comes from its flag (or the flag's environment variable), else the file given to
//! `arca serve --config`, else the default here. Unknown keys are errors, so a misspelt
//! setting never silently falls back to its default. Secrets are never values in the file,
//! only references: the HSM PIN is read from `hsm.pin-file` or the variable `hsm.pin-env`
//! names, the root key from `root-key.file` (or `ARCA_ROOT_KEY`), database passwords from
//! `connections.toml`'s `password-file`/`password-env`.
//!
//! [`SETTINGS`] is the reference table; `docs/configuration.md` carries it (as
//! `arca config reference` prints it) and the tests below keep the three in step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A whole server configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Where keys, the root key, credentials and the audit trail live.
    pub data_dir: PathBuf,
    /// The region this server answers for.
    pub region: String,
    /// Where plugins live; `None`: `./plugins` when it exists.
    pub plugins_dir: Option<PathBuf>,
    /// The access-policy plugin asked before every non-admin action.
    pub access_policy: Option<String>,
    /// How the server logs.
    pub log_format: LogFormat,
    /// The RPC gateway.
    pub api: Api,
    /// The unauthenticated operations listener.
    pub admin: Admin,
    /// Where the root key comes from.
    pub root_key: RootKey,
    /// The PKCS#11 token for HSM keys.
    pub hsm: Hsm,
    /// The KMS instances' data planes.
    pub instances: Instances,
    /// Bounds on what one client may hold.
    pub limits: Limits,
}

/// The RPC gateway's listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Api {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The host names requests must be addressed to; empty: any.
    pub server_names: Vec<String>,
    /// Seconds a request's signed time may be from this server's clock.
    pub max_clock_skew: u64,
    /// HTTPS certificate chain (PEM, leaf first).
    pub tls_cert: Option<PathBuf>,
    /// The private key for `tls-cert` (PEM).
    pub tls_key: Option<PathBuf>,
}

/// The operations listener (`/metrics`, `/healthz`, `/readyz`, `/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Admin {
    /// Address to listen on; `None`: not served.
    pub listen: Option<SocketAddr>,
}

/// Where the root key comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RootKey {
    /// A file holding it; `None`: `ARCA_ROOT_KEY`, else `DATA_DIR/root.key`.
    pub file: Option<PathBuf>,
    /// Keep it wrapped by the HSM (`DATA_DIR/root.key.hsm`).
    pub hsm: bool,
}

/// The PKCS#11 token for `ProtectionLevel=HSM` keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Hsm {
    /// The PKCS#11 module.
    pub module: Option<PathBuf>,
    /// The token's label.
    pub token: Option<String>,
    /// A file holding the user PIN.
    pub pin_file: Option<PathBuf>,
    /// The environment variable holding the user PIN, when there is no `pin-file`.
    pub pin_env: String,
}

/// The KMS instances' data planes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Instances {
    /// The access-policy plugin deciding client-key requests.
    pub aap_policy: String,
    /// Where new instances' data planes listen.
    pub host: IpAddr,
}

/// Bounds on one client's request and connection, for the gateway and the data planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// The largest gateway request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a client has to send its request headers (and TLS handshake).
    pub header_read_timeout: u64,
    /// Seconds a client has to send the whole body once its headers arrived.
    pub body_read_timeout: u64,
    /// Most gateway connections served at once.
    pub max_connections: usize,
    /// Seconds a stopping server lets in-flight requests finish.
    pub shutdown_grace: u64,
}

/// How the server writes its log to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object a line, for a log pipeline.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./arca-data"),
            region: "cn-hangzhou".into(),
            plugins_dir: None,
            access_policy: None,
            log_format: LogFormat::Text,
            api: Api::default(),
            admin: Admin::default(),
            root_key: RootKey::default(),
            hsm: Hsm::default(),
            instances: Instances::default(),
            limits: Limits::default(),
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            server_names: Vec::new(),
            max_clock_skew: 900,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for Hsm {
    fn default() -> Self {
        Self {
            module: None,
            token: None,
            pin_file: None,
            pin_env: "ARCA_HSM_PIN".into(),
        }
    }
}

impl Default for Instances {
    fn default() -> Self {
        Self {
            aap_policy: crate::dataplane::DEFAULT_POLICY.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            header_read_timeout: 10,
            body_read_timeout: 10,
            max_connections: 4096,
            shutdown_grace: 10,
        }
    }
}

impl Limits {
    /// `header-read-timeout` as a duration.
    pub fn header_read(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout)
    }

    /// `body-read-timeout` as a duration.
    pub fn body_read(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout)
    }

    /// `shutdown-grace` as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }
}

/// A configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not TOML, or holds an unknown key or a value of the wrong kind.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where (line and column).
        error: String,
    },
    /// The settings contradict each other or are out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { error, .. } => ConfigError::Parse {
                path: path.to_owned(),
                error,
            },
            e => e,
        })
    }

    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            error: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// What no single key's type can say: pairs that go together, ranges.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return invalid("api.tls-cert and api.tls-key go together: give both or neither");
        }
        if self.hsm.module.is_some() != self.hsm.token.is_some() {
            return invalid("hsm.module and hsm.token go together: give both or neither");
        }
        if self.root_key.hsm && self.hsm.module.is_none() {
            return invalid("root-key.hsm needs the HSM: give hsm.module and hsm.token");
        }
        if self.root_key.hsm && self.root_key.file.is_some() {
            return invalid("root-key.file and root-key.hsm exclude each other");
        }
        if !(1..=86_400).contains(&self.api.max_clock_skew) {
            return invalid("api.max-clock-skew must be 1 to 86400 seconds");
        }
        let limits = &self.limits;
        if limits.max_body_bytes < 1024
            || !(1..=1_000_000).contains(&limits.max_connections)
            || limits.header_read_timeout == 0
            || limits.body_read_timeout == 0
        {
            return invalid(
                "limits: max-body-bytes must be at least 1024, max-connections 1 to 1000000, \
                 and the read timeouts at least 1",
            );
        }
        if self.hsm.pin_env.is_empty() {
            return invalid("hsm.pin-env must name an environment variable");
        }
        Ok(())
    }
}

/// One row of the reference table.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key in `arca.toml` (`section.key`).
    pub key: &'static str,
    /// The `arca serve` flag that overrides it, and the flag's environment variable.
    pub flag: &'static str,
    /// The default as a TOML value; empty: unset (what unset means is in `about`).
    pub default: &'static str,
    /// A TOML value that the tests set it to.
    pub example: &'static str,
    /// What it does.
    pub about: &'static str,
}

/// Every setting: the one list the docs page and the tests read.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "data-dir",
        flag: "--data-dir",
        default: "\"./arca-data\"",
        example: "\"/var/lib/arca\"",
        about: "Where keys, the root key, credentials and the audit trail live; made on first start.",
    },
    Setting {
        key: "region",
        flag: "--region",
        default: "\"cn-hangzhou\"",
        example: "\"cn-shanghai\"",
        about: "The region this server answers for (in ARNs and the SDKs' endpoints).",
    },
    Setting {
        key: "plugins-dir",
        flag: "--plugins-dir, ARCA_PLUGINS_DIR",
        default: "",
        example: "\"/etc/arca/plugins\"",
        about: "Where plugins live (`<dir>/<name>/plugin.toml`); unset: `./plugins` when it exists.",
    },
    Setting {
        key: "access-policy",
        flag: "--access-policy",
        default: "",
        example: "\"policy-default\"",
        about: "An access-policy plugin asked before every action but the `Arca*` admin ones; fails closed.",
    },
    Setting {
        key: "log-format",
        flag: "--log-format, ARCA_LOG_FORMAT",
        default: "\"text\"",
        example: "\"json\"",
        about: "`text` for people, `json` for one object a line; every line a request causes has its request id.",
    },
    Setting {
        key: "api.listen",
        flag: "--listen",
        default: "\"127.0.0.1:8080\"",
        example: "\"0.0.0.0:8443\"",
        about: "The RPC gateway's address. Off loopback without TLS, Arca warns at start.",
    },
    Setting {
        key: "api.server-names",
        flag: "--server-name (repeat)",
        default: "[]",
        example: "[\"kms.example.com\"]",
        about: "Host names (with or without `:port`) requests must be addressed to; empty: any. V3 signatures cover `Host`.",
    },
    Setting {
        key: "api.max-clock-skew",
        flag: "--max-clock-skew",
        default: "900",
        example: "300",
        about: "Seconds a request's signed time may differ from the server's clock (1 to 86400); nonces are kept this long.",
    },
    Setting {
        key: "api.tls-cert",
        flag: "--tls-cert",
        default: "",
        example: "\"/etc/arca/tls.crt\"",
        about: "Serve the gateway over HTTPS only, with this PEM certificate chain (leaf first); needs `api.tls-key`.",
    },
    Setting {
        key: "api.tls-key",
        flag: "--tls-key",
        default: "",
        example: "\"/etc/arca/tls.key\"",
        about: "The PEM private key (PKCS#8, PKCS#1 or SEC1) for `api.tls-cert`.",
    },
    Setting {
        key: "admin.listen",
        flag: "--admin-listen",
        default: "",
        example: "\"127.0.0.1:9464\"",
        about: "Serve `/metrics`, `/healthz`, `/readyz` and `/status` here (unauthenticated: loopback or a monitoring network); unset: not served.",
    },
    Setting {
        key: "root-key.file",
        flag: "--root-key-file",
        default: "",
        example: "\"/run/secrets/arca-root.key\"",
        about: "Read the root key from this file; unset: the variable `ARCA_ROOT_KEY`, else `DATA_DIR/root.key` (made on first start).",
    },
    Setting {
        key: "root-key.hsm",
        flag: "--root-key-hsm",
        default: "false",
        example: "true",
        about: "Keep the root key wrapped by a non-extractable HSM key (`DATA_DIR/root.key.hsm`); needs `hsm.module`.",
    },
    Setting {
        key: "hsm.module",
        flag: "--hsm-module, ARCA_HSM_MODULE",
        default: "",
        example: "\"/usr/lib/softhsm/libsofthsm2.so\"",
        about: "The PKCS#11 module for `ProtectionLevel=HSM` keys; needs `hsm.token`.",
    },
    Setting {
        key: "hsm.token",
        flag: "--hsm-token, ARCA_HSM_TOKEN",
        default: "",
        example: "\"arca\"",
        about: "The label of the token (its slot is found by it).",
    },
    Setting {
        key: "hsm.pin-file",
        flag: "--hsm-pin-file",
        default: "",
        example: "\"/run/secrets/hsm.pin\"",
        about: "A file holding the user PIN; unset: the variable `hsm.pin-env` names. The PIN itself is never a setting.",
    },
    Setting {
        key: "hsm.pin-env",
        flag: "",
        default: "\"ARCA_HSM_PIN\"",
        example: "\"HSM_USER_PIN\"",
        about: "The environment variable holding the user PIN when there is no `hsm.pin-file`.",
    },
    Setting {
        key: "instances.aap-policy",
        flag: "--aap-policy",
        default: "\"policy-default\"",
        example: "\"policy-strict\"",
        about: "The access-policy plugin deciding client-key requests on KMS-instance data planes (they refuse them while it is not loaded).",
    },
    Setting {
        key: "instances.host",
        flag: "--instance-host",
        default: "\"127.0.0.1\"",
        example: "\"0.0.0.0\"",
        about: "Where new instances' data planes listen, each on a port of its own kept across restarts.",
    },
    Setting {
        key: "limits.max-body-bytes",
        flag: "",
        default: "262144",
        example: "131072",
        about: "The largest gateway request body (a 64 KiB secret value, base64 and form-encoded, fits); larger ones get 413.",
    },
    Setting {
        key: "limits.header-read-timeout",
        flag: "",
        default: "10",
        example: "5",
        about: "Seconds a client has to finish its TLS handshake and request headers (gateway and data planes).",
    },
    Setting {
        key: "limits.body-read-timeout",
        flag: "",
        default: "10",
        example: "5",
        about: "Seconds a client has to send the whole body once its headers arrived; later: 408 (gateway and data planes).",
    },
    Setting {
        key: "limits.max-connections",
        flag: "",
        default: "4096",
        example: "1024",
        about: "Most gateway connections served at once (1 to 1000000); further clients wait in the listen backlog.",
    },
    Setting {
        key: "limits.shutdown-grace",
        flag: "",
        default: "10",
        example: "30",
        about: "Seconds a stopping server lets in-flight requests finish before it closes their connections.",
    },
];

/// The reference table as `docs/configuration.md` carries it.
pub fn reference_markdown() -> String {
    let mut out =
        String::from("| key | flag / environment | default | what it does |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let cell = |v: &str| {
            if v.is_empty() {
                "—".to_owned()
            } else {
                format!("`{v}`")
            }
        };
        let flag = if s.flag.is_empty() {
            "—".to_owned()
        } else {
            s.flag
                .split(", ")
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.key,
            flag,
            cell(s.default),
            s.about
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOML document setting every key in [`SETTINGS`] to its example.
    fn every_setting() -> String {
        let mut top = String::new();
        let mut sections: Vec<(&str, String)> = Vec::new();
        for s in SETTINGS {
            match s.key.split_once('.') {
                None => top.push_str(&format!("{} = {}\n", s.key, s.example)),
                Some((section, key)) => {
                    let line = format!("{key} = {}\n", s.example);
                    match sections.iter_mut().find(|(name, _)| *name == section) {
                        Some((_, body)) => body.push_str(&line),
                        None => sections.push((section, line)),
                    }
                }
            }
        }
        for (name, body) in sections {
            top.push_str(&format!("\n[{name}]\n{body}"));
        }
        top
    }

    /// The configuration's keys as `section.key`, with their values.
    fn flatten(config: &Config) -> Vec<(String, serde_json::Value)> {
        let mut out = Vec::new();
        let Ok(serde_json::Value::Object(top)) = serde_json::to_value(config) else {
            panic!("a config serialises to an object");
        };
        for (key, value) in top {
            match value {
                serde_json::Value::Object(section) => {
                    for (k, v) in section {
                        out.push((format!("{key}.{k}"), v));
                    }
                }
                v => out.push((key, v)),
            }
        }
        out
    }

    /// A JSON value as the TOML literal the table shows.
    fn toml_literal(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(toml_literal)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            v => v.to_string(),
        }
    }

    #[test]
    fn every_setting_in_the_table_is_a_key_and_every_key_is_in_the_table() {
        let text = every_setting();
        // Parsed only: the examples need not go together (a root-key file and the HSM).
        let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let keys = flatten(&config);
        let documented: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        for (key, value) in &keys {
            assert!(
                documented.contains(&key.as_str()),
                "{key} is not in SETTINGS"
            );
            let example = SETTINGS.iter().find(|s| s.key == key).map(|s| s.example);
            assert_eq!(Some(toml_literal(value).as_str()), example, "{key}");
        }
        assert_eq!(keys.len(), SETTINGS.len());
    }

    #[test]
    fn the_table_says_each_default() {
        for (key, value) in flatten(&Config::default()) {
            let row = SETTINGS.iter().find(|s| s.key == key);
            assert_eq!(
                row.map(|s| s.default),
                Some(toml_literal(&value).as_str()),
                "{key}"
            );
        }
        assert_eq!(Config::from_toml("").ok(), Some(Config::default()));
    }

    #[test]
    fn the_docs_page_carries_the_table() {
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let text = std::fs::read_to_string(&page).unwrap_or_default();
        assert!(
            text.contains(&reference_markdown()),
            "docs/configuration.md does not carry the current table: paste the output of \
             `arca config reference` into it"
        );
    }

    #[test]
    fn unknown_keys_and_secret_values_are_errors() {
        for text in [
            "data_dir = \"x\"",
            "[api]\nlisten = \"127.0.0.1:1\"\nport = 2",
            "[hsm]\npin = \"1234\"",
            "[root-key]\nvalue = \"c2VjcmV0\"",
            "[nope]",
        ] {
            let e = Config::from_toml(text).err();
            assert!(
                matches!(&e, Some(ConfigError::Parse { error, .. }) if error.contains("unknown field")),
                "{text}: {e:?}"
            );
        }
    }

    #[test]
    fn settings_that_go_together_are_checked() {
        for (text, says) in [
            ("[api]\ntls-cert = \"c\"", "tls-key"),
            ("[hsm]\nmodule = \"m\"", "hsm.token"),
            ("[root-key]\nhsm = true", "root-key.hsm"),
            ("[api]\nmax-clock-skew = 0", "max-clock-skew"),
            ("[limits]\nmax-body-bytes = 10", "max-body-bytes"),
            ("[limits]\nmax-connections = 10000000", "max-connections"),
        ] {
            let e = Config::from_toml(text).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains(says)),
                "{text}: {e:?}"
            );
        }
    }
}

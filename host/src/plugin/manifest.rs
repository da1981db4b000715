//! `plugin.toml`: what a plugin is, what it may reach, and how much it may use.
//!
//! ```toml
//! name = "rotator-postgres"
//! world = "rotator"              # rotator | sse-integration | access-policy
//! version = "0.1.0"
//! component = "rotator_postgres.wasm"   # relative to this file
//! capabilities = ["log", "random", "sql"]
//!
//! [grants]
//! keys = ["alias/app/*"]          # kms: key ids, ARNs or aliases; `prefix*` patterns
//! secrets = ["db/*"]              # secrets: names or `prefix*` patterns
//! sql-connections = ["orders-db"] # sql: connection names from the operator's connections file
//! http-hosts = ["127.0.0.1:9000"] # http: host:port pairs
//!
//! [limits]
//! memory-mib = 16     # linear memory per instance
//! time-ms = 1000      # wall time per call, host calls included
//! concurrency = 4     # calls in flight at once
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// The most memory a manifest may ask for (the pooling allocator reserves this per slot).
pub const MAX_MEMORY_MIB: u32 = 64;
/// The longest a single call may run.
pub const MAX_TIME_MS: u64 = 60_000;

/// The world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// Secret rotation steps.
    Rotator,
    /// A server-side-encryption integration.
    SseIntegration,
    /// An access policy.
    AccessPolicy,
}

impl World {
    /// The WIT world name.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Rotator => "rotator",
            World::SseIntegration => "sse-integration",
            World::AccessPolicy => "access-policy",
        }
    }

    /// The capabilities this world may import at all (WIT: the world's `import`s).
    pub fn allowed(self) -> &'static [Capability] {
        use Capability::*;
        match self {
            World::Rotator => &[Log, Random, Clock, Kms, Secrets, Sql, Http, AccessKeys],
            World::SseIntegration => &[Log, Random, Clock, Kms],
            World::AccessPolicy => &[Log, Clock],
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for World {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rotator" => Ok(World::Rotator),
            "sse-integration" => Ok(World::SseIntegration),
            "access-policy" => Ok(World::AccessPolicy),
            other => Err(format!(
                "unknown world `{other}` (expected rotator, sse-integration or access-policy)"
            )),
        }
    }
}

/// A host interface a plugin may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Log,
    Random,
    Clock,
    Kms,
    Secrets,
    Sql,
    Http,
    AccessKeys,
}

impl Capability {
    /// Every capability, in WIT order.
    pub const ALL: [Capability; 8] = [
        Capability::Log,
        Capability::Random,
        Capability::Clock,
        Capability::Kms,
        Capability::Secrets,
        Capability::Sql,
        Capability::Http,
        Capability::AccessKeys,
    ];

    /// The WIT interface name (`arca:plugin/<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Random => "random",
            Capability::Clock => "clock",
            Capability::Kms => "kms",
            Capability::Secrets => "secrets",
            Capability::Sql => "sql",
            Capability::Http => "http",
            Capability::AccessKeys => "access-keys",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown capability `{s}` (expected one of log, random, clock, kms, secrets, sql, http, access-keys)"))
    }
}

/// Per-resource grants inside the capabilities.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    /// Keys the `kms` capability may use.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Secrets the `secrets` capability may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Connections the `sql` capability may use.
    #[serde(default)]
    pub sql_connections: Vec<String>,
    /// `host:port` pairs the `http` capability may reach.
    #[serde(default)]
    pub http_hosts: Vec<String>,
}

/// What a call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance, bytes.
    pub memory_bytes: usize,
    /// Wall time per call.
    pub time: std::time::Duration,
    /// Calls in flight at once.
    pub concurrency: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    memory_mib: Option<u32>,
    time_ms: Option<u64>,
    concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    name: String,
    world: String,
    version: String,
    component: PathBuf,
    /// The component's SHA-256 (hex), when the author or operator pins it.
    #[serde(default)]
    component_sha256: Option<String>,
    /// A rotator's secret types (`Generic`, `Rds`, `PolarDB`, `Redis`, `RAMCredentials`, `ECS`).
    #[serde(default)]
    secret_types: Option<Vec<String>>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    grants: Grants,
    #[serde(default)]
    limits: RawLimits,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The plugin's name (unique in the plugins directory).
    pub name: String,
    /// The world it implements.
    pub world: World,
    /// Its version, as the author gave it.
    pub version: String,
    /// The component file (absolute).
    pub component: PathBuf,
    /// The SHA-256 the component's bytes must have (lower-case hex), when pinned: a file
    /// swapped beside the manifest is then refused instead of run with the manifest's grants.
    pub component_sha256: Option<String>,
    /// The secret types a rotator may rotate (`secret-types`, default `["Generic"]`): a
    /// secret's `ExtendedConfig.Rotator` can pick only a rotator meant for its type, so that a
    /// tenant cannot send, say, a Generic secret's value to the database rotator.
    pub secret_types: Vec<String>,
    /// Granted capabilities, sorted.
    pub capabilities: Vec<Capability>,
    /// Per-resource grants.
    pub grants: Grants,
    /// Limits per call.
    pub limits: Limits,
    /// The manifest file.
    pub path: PathBuf,
}

impl Manifest {
    /// Reads and validates `path`. Errors say what is wrong; the caller, which reports every
    /// failure under the manifest's path, names the file (once).
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Manifest::parse(&text, path)
    }

    /// Parses manifest `text` read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if raw.name.is_empty()
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "name `{}` must be letters, digits, `-` or `_`",
                raw.name
            ));
        }
        let world: World = raw.world.parse()?;
        let mut capabilities = Vec::new();
        for name in &raw.capabilities {
            let capability: Capability = name.parse()?;
            if !world.allowed().contains(&capability) {
                return Err(format!(
                    "capability `{capability}` is not available to the {world} world"
                ));
            }
            if !capabilities.contains(&capability) {
                capabilities.push(capability);
            }
        }
        capabilities.sort();
        let grants = raw.grants;
        for (list, capability, what) in [
            (&grants.keys, Capability::Kms, "keys"),
            (&grants.secrets, Capability::Secrets, "secrets"),
            (&grants.sql_connections, Capability::Sql, "sql-connections"),
            (&grants.http_hosts, Capability::Http, "http-hosts"),
        ] {
            if !list.is_empty() && !capabilities.contains(&capability) {
                return Err(format!("grants.{what} needs the `{capability}` capability"));
            }
        }
        let memory_mib = raw.limits.memory_mib.unwrap_or(16);
        if memory_mib == 0 || memory_mib > MAX_MEMORY_MIB {
            return Err(format!("limits.memory-mib must be 1..={MAX_MEMORY_MIB}"));
        }
        let time_ms = raw.limits.time_ms.unwrap_or(1000);
        if time_ms == 0 || time_ms > MAX_TIME_MS {
            return Err(format!("limits.time-ms must be 1..={MAX_TIME_MS}"));
        }
        let concurrency = raw.limits.concurrency.unwrap_or(8);
        if concurrency == 0 || concurrency > 256 {
            return Err("limits.concurrency must be 1..=256".into());
        }
        let component_sha256 = match raw.component_sha256 {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(h.to_ascii_lowercase())
            }
            Some(_) => return Err("component-sha256 must be 64 hex digits".into()),
            None => None,
        };
        const SECRET_TYPES: [&str; 6] = [
            "Generic",
            "Rds",
            "PolarDB",
            "Redis",
            "RAMCredentials",
            "ECS",
        ];
        let secret_types = match (raw.secret_types, world) {
            (None, _) => vec!["Generic".to_owned()],
            (Some(types), World::Rotator) => {
                if let Some(bad) = types.iter().find(|t| !SECRET_TYPES.contains(&t.as_str())) {
                    return Err(format!(
                        "secret-types: `{bad}` is not a secret type ({})",
                        SECRET_TYPES.join(", ")
                    ));
                }
                types
            }
            (Some(_), _) => return Err("secret-types is for rotators only".into()),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        Ok(Manifest {
            name: raw.name,
            world,
            version: raw.version,
            component: dir.join(raw.component),
            component_sha256,
            secret_types,
            capabilities,
            grants,
            limits: Limits {
                memory_bytes: memory_mib as usize * 1024 * 1024,
                time: std::time::Duration::from_millis(time_ms),
                concurrency,
            },
            path: path.to_path_buf(),
        })
    }

    /// Whether `capability` is granted.
    pub fn grants(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// Whether `name` matches one of `patterns` (exact, `prefix*`, or `*`).
pub fn pattern_match(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("/p/x/plugin.toml"))
    }

    #[test]
    fn parses_a_full_manifest() {
        let m = parse(
            r#"name = "r"
world = "rotator"
version = "1.0.0"
component = "r.wasm"
capabilities = ["sql", "log", "kms"]
[grants]
keys = ["alias/a/*"]
sql-connections = ["db"]
[limits]
memory-mib = 8
time-ms = 200
concurrency = 2
"#,
        )
        .unwrap();
        assert_eq!(m.world, World::Rotator);
        assert_eq!(
            m.capabilities,
            vec![Capability::Log, Capability::Kms, Capability::Sql]
        );
        assert_eq!(m.component, Path::new("/p/x/r.wasm"));
        assert_eq!(m.limits.memory_bytes, 8 << 20);
        assert!(pattern_match(&m.grants.keys, "alias/a/b"));
        assert!(!pattern_match(&m.grants.keys, "alias/b"));
    }

    #[test]
    fn refuses_what_the_world_cannot_import_and_orphan_grants() {
        let base =
            "name = \"p\"\nworld = \"access-policy\"\nversion = \"1\"\ncomponent = \"p.wasm\"\n";
        let e = parse(&format!("{base}capabilities = [\"sql\"]\n")).unwrap_err();
        assert!(
            e.contains("`sql` is not available to the access-policy world"),
            "{e}"
        );
        let e = parse(&format!("{base}[grants]\nkeys = [\"*\"]\n")).unwrap_err();
        assert!(e.contains("grants.keys needs the `kms` capability"), "{e}");
        let e = parse(&format!("{base}[limits]\nmemory-mib = 1000\n")).unwrap_err();
        assert!(e.contains("memory-mib"), "{e}");
        let e = parse(&format!("{base}colour = 1\n")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse("name = \"a b\"\nworld = \"rotator\"\nversion = \"1\"\ncomponent = \"x\"\n")
            .unwrap_err();
        assert!(e.contains("name"), "{e}");
    }
}

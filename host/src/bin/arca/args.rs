//! The command line's subcommands and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use arca_host::config::{self, Config};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Every plugin, loaded or failed, with call counters.
    List,
    /// One plugin in detail: imports, exports, grants, limits, precompile cache.
    Inspect {
        /// The plugin's name.
        name: String,
    },
    /// Reload the plugins directory (a plugin that fails keeps its previous version).
    Reload,
    /// Make a new plugin that builds: `<dir>/<name>/` with its manifest, from the SDK's
    /// template for `world` (rotator, sse-integration or access-policy). Local; no server.
    New {
        /// rotator, sse-integration or access-policy.
        world: arca_host::plugin::World,
        /// The plugin's name (lower-case letters, digits and `-`).
        name: String,
        /// Where to make it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK (`sdk/plugin` of an Arca checkout) the plugin depends on; by default the
        /// one this binary was built from.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/plugin"))]
        sdk: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Read and check a configuration file (keys, values, the TLS files, the HSM PIN's
    /// reference, the plugins directory's connections.toml) without serving; prints the
    /// settings it makes, with every default filled in.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the reference table of every setting (as docs/configuration.md carries it).
    Reference,
}

/// `arca serve` flags: each overrides its setting in the configuration file (see
/// docs/configuration.md for the defaults).
#[derive(Debug, clap::Args)]
pub(crate) struct ServeFlags {
    /// Where keys, the root key, credentials and the audit log live [data-dir].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to listen on; default 127.0.0.1:8080 [api.listen].
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// The region this server answers for; default cn-hangzhou [region].
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// Serve `/metrics` (Prometheus), `/healthz`, `/readyz` and `/status` on this address
    /// (unauthenticated: keep it on loopback or a monitoring network) [admin.listen].
    #[arg(long)]
    pub(crate) admin_listen: Option<SocketAddr>,
    /// How far a request's signed time may be from this server's clock, in seconds; default
    /// 900, the SDKs' 15 minutes [api.max-clock-skew].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) max_clock_skew: Option<u64>,
    /// A host name (with or without `:port`) this deployment answers to; repeat for several.
    /// A request whose `Host` is none of them is refused; V3 signatures cover `host`
    /// [api.server-names].
    #[arg(long = "server-name")]
    pub(crate) server_names: Vec<String>,
    /// Serve the API over HTTPS only, with the certificate chain in this PEM file (leaf
    /// first); needs --tls-key [api.tls-cert].
    #[arg(long)]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) for --tls-cert [api.tls-key].
    #[arg(long)]
    pub(crate) tls_key: Option<PathBuf>,
    /// Read the root key from this file instead of DATA_DIR/root.key (or ARCA_ROOT_KEY)
    /// [root-key.file].
    #[arg(long)]
    pub(crate) root_key_file: Option<PathBuf>,
    /// Keep the root key wrapped by a non-extractable key in the HSM (DATA_DIR/root.key.hsm),
    /// so the data directory alone cannot be decrypted. An existing DATA_DIR/root.key is
    /// wrapped and then removed [root-key.hsm].
    #[arg(long)]
    pub(crate) root_key_hsm: bool,
    /// Where plugins live (`<dir>/<name>/plugin.toml`); default `./plugins` when it exists
    /// [plugins-dir].
    #[arg(long, env = "ARCA_PLUGINS_DIR")]
    pub(crate) plugins_dir: Option<PathBuf>,
    /// An access-policy plugin to ask before every non-admin action (fails closed)
    /// [access-policy].
    #[arg(long)]
    pub(crate) access_policy: Option<String>,
    /// The access-policy plugin that decides client-key requests on instance data planes;
    /// default policy-default [instances.aap-policy].
    #[arg(long)]
    pub(crate) aap_policy: Option<String>,
    /// Where new instances' data planes listen (each on a port of its own, kept across
    /// restarts); default 127.0.0.1 [instances.host].
    #[arg(long)]
    pub(crate) instance_host: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub(crate) hsm: HsmArgs,
}

impl ServeFlags {
    /// The file's settings (or the defaults), with every given flag put over them.
    pub(crate) fn over(self, mut c: Config) -> Config {
        fn set<T>(to: &mut T, flag: Option<T>) {
            if let Some(v) = flag {
                *to = v;
            }
        }
        fn set_some<T>(to: &mut Option<T>, flag: Option<T>) {
            if flag.is_some() {
                *to = flag;
            }
        }
        set(&mut c.data_dir, self.data_dir);
        set(&mut c.api.listen, self.listen);
        set(&mut c.region, self.region);
        set_some(&mut c.admin.listen, self.admin_listen);
        set(&mut c.api.max_clock_skew, self.max_clock_skew);
        if !self.server_names.is_empty() {
            c.api.server_names = self.server_names;
        }
        set_some(&mut c.api.tls_cert, self.tls_cert);
        set_some(&mut c.api.tls_key, self.tls_key);
        set_some(&mut c.root_key.file, self.root_key_file);
        c.root_key.hsm |= self.root_key_hsm;
        set_some(&mut c.plugins_dir, self.plugins_dir);
        set_some(&mut c.access_policy, self.access_policy);
        set(&mut c.instances.aap_policy, self.aap_policy);
        set(&mut c.instances.host, self.instance_host);
        self.hsm.over(&mut c.hsm);
        c
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain, the seals and the sealed head; names the first bad line and
    /// exits non-zero on any edit, deletion, reordering or truncation.
    Verify {
        /// The data directory.
        #[arg(long, default_value = "./arca-data")]
        data_dir: PathBuf,
        /// A sealed head recorded outside this machine earlier (`SEQ:HASH`, from `arca audit
        /// head` or `/status`): the trail must still hold that line, which catches a rollback
        /// of the trail and its head file together.
        #[arg(long)]
        anchor: Option<arca_host::audit::Anchor>,
        #[command(flatten)]
        root: RootKeyArgs,
    },
    /// Print the sealed head (`seq`, `hash`, and `SEQ:HASH` as `--anchor` takes it), checked
    /// against the root key, to record outside this machine.
    Head {
        /// The data directory.
        #[arg(long, default_value = "./arca-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        root: RootKeyArgs,
    },
    /// With the server stopped: accept that the trail does not hold its sealed head (lines
    /// were removed), by writing a sealed gap record into the chain so that the server can
    /// start again. The gap stays visible to `arca audit verify` for good.
    AcceptGap {
        /// The data directory.
        #[arg(long, default_value = "./arca-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        root: RootKeyArgs,
    },
    /// Print the events that match every given filter, one JSON line each.
    Query {
        /// The data directory.
        #[arg(long, default_value = "./arca-data")]
        data_dir: PathBuf,
        /// Events at or after this time (RFC 3339, e.g. 2026-11-24T10:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Events before this time.
        #[arg(long)]
        until: Option<String>,
        /// The action, e.g. Encrypt.
        #[arg(long)]
        action: Option<String>,
        /// A part of the resource: an ARN, a key id, secret/<name>.
        #[arg(long)]
        resource: Option<String>,
        /// The account id.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InstanceCommand {
    /// Create a KMS instance for an account; prints it as JSON.
    Create {
        /// The account that gets the instance.
        #[arg(long)]
        account_id: String,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
        /// The performance quota: cryptographic requests per second.
        #[arg(long, default_value_t = 1000)]
        spec: u32,
        /// How many keys the instance may hold.
        #[arg(long, default_value_t = 1000)]
        keys: u32,
        /// How many secrets the instance may hold.
        #[arg(long, default_value_t = 100)]
        secrets: u32,
        /// Keep the instance's keys in the server's HSM (`--hsm-module` on `serve`).
        #[arg(long)]
        hsm: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessKeyCommand {
    /// Create another AccessKey for an account; prints it as JSON.
    Create {
        /// The account that gets the new key.
        #[arg(long)]
        account_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account with one AccessKey; prints its credentials as JSON.
    Create,
    /// List every account.
    List,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    pub(crate) endpoint: String,
    /// Admin credentials (the `credentials.json` written at first start).
    #[arg(long, default_value = "./arca-data/credentials.json", global = true)]
    pub(crate) credentials: PathBuf,
}

/// The PKCS#11 token for `ProtectionLevel=HSM` keys. The PIN comes from `ARCA_HSM_PIN` or a
/// file, never from a flag (flags show in `ps`).
#[derive(Debug, clap::Args)]
pub(crate) struct HsmArgs {
    /// The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so [hsm.module].
    #[arg(long, env = "ARCA_HSM_MODULE")]
    pub(crate) hsm_module: Option<PathBuf>,
    /// The label of the token to use (the slot is found by it) [hsm.token].
    #[arg(long, env = "ARCA_HSM_TOKEN")]
    pub(crate) hsm_token: Option<String>,
    /// A file holding the user PIN (else ARCA_HSM_PIN) [hsm.pin-file].
    #[arg(long)]
    pub(crate) hsm_pin_file: Option<PathBuf>,
}

impl HsmArgs {
    pub(crate) fn over(self, hsm: &mut config::Hsm) {
        if self.hsm_module.is_some() {
            hsm.module = self.hsm_module;
        }
        if self.hsm_token.is_some() {
            hsm.token = self.hsm_token;
        }
        if self.hsm_pin_file.is_some() {
            hsm.pin_file = self.hsm_pin_file;
        }
    }

    pub(crate) fn config(self) -> anyhow::Result<config::Hsm> {
        let mut hsm = config::Hsm::default();
        self.over(&mut hsm);
        anyhow::ensure!(
            hsm.module.is_some() == hsm.token.is_some(),
            "--hsm-module and --hsm-token go together"
        );
        Ok(hsm)
    }
}

/// Where the tools (backup, restore, audit verify) find an existing root key.
#[derive(Debug, clap::Args)]
pub(crate) struct RootKeyArgs {
    /// The root key, when it is not DATA_DIR/root.key (or ARCA_ROOT_KEY).
    #[arg(long, conflicts_with = "root_key_hsm")]
    pub(crate) root_key_file: Option<PathBuf>,
    /// The root key is DATA_DIR/root.key.hsm, wrapped by the HSM (`serve --root-key-hsm`).
    #[arg(long, requires = "hsm_module")]
    pub(crate) root_key_hsm: bool,
    #[command(flatten)]
    pub(crate) hsm: HsmArgs,
}

//! `arca`: the server and its administration commands.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arca_host::config::{self, Config, LogFormat};
use arca_host::startup::RootKeySource;
use clap::{Parser, Subcommand};

/// mimalloc: the request path allocates many small, short-lived buffers; glibc malloc cost
/// about a tenth of Encrypt throughput in profiles (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Arca, an open-source Key Management Service compatible with the Alibaba Cloud KMS SDKs.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Log lines as text for people, or as one JSON object a line for a log pipeline. Every
    /// line a request causes carries its request id.
    /// Log lines as text for people, or as one JSON object a line for a log pipeline. Every
    /// line a request causes carries its request id [log-format].
    #[arg(long, value_enum, global = true, env = "ARCA_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start; `serve` simply takes the most flags"
)]
enum Command {
    /// Serve the API (creating the data directory on first start).
    Serve {
        /// A configuration file (every setting, its default and its flag:
        /// docs/configuration.md); flags given here override it.
        #[arg(long, env = "ARCA_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: ServeFlags,
    },
    /// Check a configuration file without serving, or print the settings' reference.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show a running server's health, inventory, audit trail, HSM and plugins (its
    /// `--admin-listen` address's `/status`); exits 1 when the server is not ready.
    Status {
        /// The server's admin address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin: String,
    },
    /// Write a consistent, sealed backup of a data directory (through the running server if
    /// there is one, else directly from the store).
    Backup {
        /// The data directory to back up.
        #[arg(long, default_value = "./arca-data")]
        data_dir: PathBuf,
        /// The backup file to write.
        #[arg(long)]
        out: PathBuf,
        /// The running server's address (used when the store is in use).
        #[arg(long, default_value = "127.0.0.1:8080")]
        endpoint: String,
        #[command(flatten)]
        root: RootKeyArgs,
    },
    /// Restore a backup into an empty data directory (needs the backup's root key: a
    /// `--root-key-file` is copied to DATA_DIR/root.key; with `--root-key-hsm`, copy the old
    /// DATA_DIR/root.key.hsm into the empty data directory first).
    Restore {
        /// The empty data directory to fill.
        #[arg(long)]
        data_dir: PathBuf,
        /// The backup file.
        #[arg(long = "in")]
        input: PathBuf,
        #[command(flatten)]
        root: RootKeyArgs,
    },
    /// Manage accounts through a running server (needs admin credentials).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Manage AccessKeys through a running server (needs admin credentials).
    AccessKey {
        #[command(subcommand)]
        command: AccessKeyCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Provision KMS instances through a running server (needs admin credentials).
    Instance {
        #[command(subcommand)]
        command: InstanceCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Check or search the audit trail of a data directory (works while the server runs).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Look into the HSM directly (the operator's check that key material stays in it).
    Hsm {
        /// A key version id: show what the token says about its object, and try (and fail)
        /// to read or wrap its value.
        #[arg(long)]
        key_version: String,
        #[command(flatten)]
        hsm: HsmArgs,
    },
    /// Inspect and reload the plugins of a running server (needs admin credentials).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
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
enum ConfigCommand {
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
struct ServeFlags {
    /// Where keys, the root key, credentials and the audit log live [data-dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on; default 127.0.0.1:8080 [api.listen].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The region this server answers for; default cn-hangzhou [region].
    #[arg(long)]
    region: Option<String>,
    /// Serve `/metrics` (Prometheus), `/healthz`, `/readyz` and `/status` on this address
    /// (unauthenticated: keep it on loopback or a monitoring network) [admin.listen].
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// How far a request's signed time may be from this server's clock, in seconds; default
    /// 900, the SDKs' 15 minutes [api.max-clock-skew].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_clock_skew: Option<u64>,
    /// A host name (with or without `:port`) this deployment answers to; repeat for several.
    /// A request whose `Host` is none of them is refused; V3 signatures cover `host`
    /// [api.server-names].
    #[arg(long = "server-name")]
    server_names: Vec<String>,
    /// Serve the API over HTTPS only, with the certificate chain in this PEM file (leaf
    /// first); needs --tls-key [api.tls-cert].
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) for --tls-cert [api.tls-key].
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Read the root key from this file instead of DATA_DIR/root.key (or ARCA_ROOT_KEY)
    /// [root-key.file].
    #[arg(long)]
    root_key_file: Option<PathBuf>,
    /// Keep the root key wrapped by a non-extractable key in the HSM (DATA_DIR/root.key.hsm),
    /// so the data directory alone cannot be decrypted. An existing DATA_DIR/root.key is
    /// wrapped and then removed [root-key.hsm].
    #[arg(long)]
    root_key_hsm: bool,
    /// Where plugins live (`<dir>/<name>/plugin.toml`); default `./plugins` when it exists
    /// [plugins-dir].
    #[arg(long, env = "ARCA_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// An access-policy plugin to ask before every non-admin action (fails closed)
    /// [access-policy].
    #[arg(long)]
    access_policy: Option<String>,
    /// The access-policy plugin that decides client-key requests on instance data planes;
    /// default policy-default [instances.aap-policy].
    #[arg(long)]
    aap_policy: Option<String>,
    /// Where new instances' data planes listen (each on a port of its own, kept across
    /// restarts); default 127.0.0.1 [instances.host].
    #[arg(long)]
    instance_host: Option<std::net::IpAddr>,
    #[command(flatten)]
    hsm: HsmArgs,
}

impl ServeFlags {
    /// The file's settings (or the defaults), with every given flag put over them.
    fn over(self, mut c: Config) -> Config {
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
enum AuditCommand {
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
enum InstanceCommand {
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
enum AccessKeyCommand {
    /// Create another AccessKey for an account; prints it as JSON.
    Create {
        /// The account that gets the new key.
        #[arg(long)]
        account_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Create an account with one AccessKey; prints its credentials as JSON.
    Create,
    /// List every account.
    List,
}

#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    endpoint: String,
    /// Admin credentials (the `credentials.json` written at first start).
    #[arg(long, default_value = "./arca-data/credentials.json", global = true)]
    credentials: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` reads its configuration first: the file may set the log format.
    let (command, serving) = match cli.command {
        Command::Serve { config, flags } => {
            let file = match &config {
                Some(path) => Config::from_file(path)?,
                None => Config::default(),
            };
            let config = flags.over(file);
            config.check()?;
            (None, Some(config))
        }
        command => (Some(command), None),
    };
    let format = cli
        .log_format
        .or(serving.as_ref().map(|c| c.log_format))
        .unwrap_or_default();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match (serving, command) {
            (Some(config), _) => Ok(arca_host::serve(&config, shutdown_signal()).await?),
            (None, Some(command)) => run(command).await,
            (None, None) => Ok(()),
        }
    })
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => anyhow::bail!("serve is started by main"),
        Command::Config {
            command: ConfigCommand::Reference,
        } => {
            let mut out = std::io::stdout().lock();
            out.write_all(config::reference_markdown().as_bytes())?;
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => check_config(&file),
        Command::Status { admin } => status(&admin).await,
        Command::Backup {
            data_dir,
            out,
            endpoint,
            root,
        } => {
            let root = tool_root_key(root).await?;
            backup(&data_dir, &out, &endpoint, root).await
        }
        Command::Restore {
            data_dir,
            input,
            root,
        } => {
            let copy_from = root.root_key_file.clone();
            let root = tool_root_key(root).await?;
            tokio::task::spawn_blocking(move || restore(&data_dir, &input, root, copy_from)).await?
        }
        Command::Account { command, admin } => {
            let client = admin_client(&admin)?;
            let reply = match command {
                AccountCommand::Create => client.call("ArcaCreateAccount", &[]).await?,
                AccountCommand::List => client.call("ArcaListAccounts", &[]).await?,
            };
            print_json(&reply)
        }
        Command::Hsm { key_version, hsm } => {
            let version: arca_host::ids::KeyVersionId = key_version
                .parse()
                .map_err(|_| anyhow::anyhow!("not a key version id: {key_version}"))?;
            let hsm = arca_host::server::open_hsm(&hsm.config()?)
                .await?
                .context("give --hsm-module and --hsm-token")?;
            let report = tokio::task::spawn_blocking(move || hsm.inspect(&version))
                .await?
                .context("inspecting the key object")?;
            print_json(&serde_json::to_value(report)?)
        }
        Command::Plugin { command, admin } => {
            let (action, name) = match command {
                PluginCommand::New {
                    world,
                    name,
                    dir,
                    sdk,
                } => {
                    let made = arca_host::plugin::scaffold::scaffold(world, &name, &dir, &sdk)
                        .map_err(anyhow::Error::msg)?;
                    return print_json(&serde_json::json!({
                        "Directory": made.display().to_string(),
                        "Build": "cargo build --release --target wasm32-wasip2, then copy the .wasm next to plugin.toml",
                    }));
                }
                PluginCommand::List => ("ArcaListPlugins", None),
                PluginCommand::Inspect { name } => ("ArcaInspectPlugin", Some(name)),
                PluginCommand::Reload => ("ArcaReloadPlugins", None),
            };
            let client = admin_client(&admin)?;
            let params: Vec<(&str, &str)> = name.iter().map(|n| ("Name", n.as_str())).collect();
            print_json(&client.call(action, &params).await?)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    data_dir,
                    anchor,
                    root,
                },
        } => {
            let root = tool_root_key(root).await?;
            let key = root.load_existing(&data_dir)?.audit_key();
            let found = arca_host::audit::verify_anchored(
                &data_dir.join("audit.log"),
                &data_dir.join("audit.head"),
                &key,
                anchor.as_ref(),
            );
            match found {
                Ok(v) => print_json(&serde_json::json!({
                    "Verified": true,
                    "Lines": v.lines,
                    "Seals": v.seals,
                    "UnsealedTail": v.unsealed,
                    "InJournal": v.in_journal,
                    "Anchored": anchor.is_some(),
                    "Gaps": v.gaps,
                })),
                Err(tamper) => anyhow::bail!("audit trail does not verify: {tamper}"),
            }
        }
        Command::Audit {
            command: AuditCommand::Head { data_dir, root },
        } => {
            let root = tool_root_key(root).await?;
            let key = root.load_existing(&data_dir)?.audit_key();
            let head = arca_host::audit::sealed_head(&data_dir.join("audit.head"), &key)?
                .context("the trail has not been sealed yet")?;
            print_json(&serde_json::json!({
                "Seq": head.seq,
                "Hash": head.hash,
                "Anchor": format!("{}:{}", head.seq, head.hash),
            }))
        }
        Command::Audit {
            command: AuditCommand::AcceptGap { data_dir, root },
        } => {
            let root = tool_root_key(root).await?;
            let key = root.load_existing(&data_dir)?.audit_key();
            let gap = arca_host::audit::accept_gap(&data_dir.join("audit.log"), &key)?;
            print_json(&serde_json::json!({
                "GapSeq": gap.seq,
                "Missing": gap.what,
                "Anchor": format!("{}:{}", gap.head.seq, gap.head.hash),
            }))
        }
        Command::Audit {
            command:
                AuditCommand::Query {
                    data_dir,
                    since,
                    until,
                    action,
                    resource,
                    account,
                },
        } => {
            let time = |t: Option<String>| -> anyhow::Result<Option<time::OffsetDateTime>> {
                t.map(|t| {
                    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("{t:?} is not an RFC 3339 time"))
                })
                .transpose()
            };
            let query = arca_host::audit::Query {
                since: time(since)?,
                until: time(until)?,
                action,
                resource,
                account,
            };
            let lines = arca_host::audit::query(&data_dir.join("audit.log"), &query)?;
            let mut out = std::io::stdout().lock();
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        Command::Instance {
            command:
                InstanceCommand::Create {
                    account_id,
                    name,
                    spec,
                    keys,
                    secrets,
                    hsm,
                },
            admin,
        } => {
            let client = admin_client(&admin)?;
            let (spec, keys, secrets) = (spec.to_string(), keys.to_string(), secrets.to_string());
            let mut params = vec![
                ("AccountId", account_id.as_str()),
                ("Spec", spec.as_str()),
                ("KeyNum", keys.as_str()),
                ("SecretNum", secrets.as_str()),
                ("ProtectionLevel", if hsm { "HSM" } else { "SOFTWARE" }),
            ];
            if let Some(name) = &name {
                params.push(("InstanceName", name));
            }
            print_json(&client.call("ArcaCreateKmsInstance", &params).await?)
        }
        Command::AccessKey {
            command: AccessKeyCommand::Create { account_id },
            admin,
        } => {
            let client = admin_client(&admin)?;
            let reply = client
                .call("ArcaCreateAccessKey", &[("AccountId", &account_id)])
                .await?;
            print_json(&reply)
        }
    }
}

/// The PKCS#11 token for `ProtectionLevel=HSM` keys. The PIN comes from `ARCA_HSM_PIN` or a
/// file, never from a flag (flags show in `ps`).
#[derive(Debug, clap::Args)]
struct HsmArgs {
    /// The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so [hsm.module].
    #[arg(long, env = "ARCA_HSM_MODULE")]
    hsm_module: Option<PathBuf>,
    /// The label of the token to use (the slot is found by it) [hsm.token].
    #[arg(long, env = "ARCA_HSM_TOKEN")]
    hsm_token: Option<String>,
    /// A file holding the user PIN (else ARCA_HSM_PIN) [hsm.pin-file].
    #[arg(long)]
    hsm_pin_file: Option<PathBuf>,
}

impl HsmArgs {
    fn over(self, hsm: &mut config::Hsm) {
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

    fn config(self) -> anyhow::Result<config::Hsm> {
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
struct RootKeyArgs {
    /// The root key, when it is not DATA_DIR/root.key (or ARCA_ROOT_KEY).
    #[arg(long, conflicts_with = "root_key_hsm")]
    root_key_file: Option<PathBuf>,
    /// The root key is DATA_DIR/root.key.hsm, wrapped by the HSM (`serve --root-key-hsm`).
    #[arg(long, requires = "hsm_module")]
    root_key_hsm: bool,
    #[command(flatten)]
    hsm: HsmArgs,
}

async fn backup(
    data_dir: &Path,
    out: &Path,
    endpoint: &str,
    root: RootKeySource,
) -> anyhow::Result<()> {
    use arca_host::store::{RedbStore, StoreError};
    let spinner =
        indicatif::ProgressBar::new_spinner().with_message("taking a consistent snapshot");
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let bytes = match RedbStore::open(&data_dir.join("arca.redb")) {
        Ok(store) => {
            let key = root.load_existing(data_dir)?;
            arca_host::kms::backup::seal_snapshot(&store, &key.sealer())
                .map_err(|e| anyhow::anyhow!("snapshot: {e}"))?
        }
        Err(StoreError::Locked) => {
            // The server holds the store: ask it for the snapshot.
            let creds = arca_client::Credentials::from_file(&data_dir.join("credentials.json"))?;
            let reply = arca_client::Client::new(endpoint, creds)
                .call("ArcaBackup", &[])
                .await?;
            let b64 = reply["Backup"].as_str().unwrap_or_default();
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)?
        }
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", data_dir.display())),
    };
    spinner.finish_and_clear();
    let bar = indicatif::ProgressBar::new(u64::try_from(bytes.len())?).with_style(
        indicatif::ProgressStyle::with_template("writing {bytes}/{total_bytes} {wide_bar}")?,
    );
    let tmp = out.with_extension("partial");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    for chunk in bytes.chunks(64 * 1024) {
        f.write_all(chunk)?;
        bar.inc(u64::try_from(chunk.len())?);
    }
    f.sync_all()?;
    std::fs::rename(&tmp, out)?;
    bar.finish_and_clear();
    tracing::info!(file = %out.display(), bytes = bytes.len(), "backup written");
    Ok(())
}

/// The root key of a data directory for `backup` and `restore`: from a file, the environment,
/// the data directory, or unwrapped by the HSM.
async fn tool_root_key(args: RootKeyArgs) -> anyhow::Result<RootKeySource> {
    if !args.root_key_hsm {
        return Ok(arca_host::server::root_key_source(args.root_key_file));
    }
    let hsm = arca_host::server::open_hsm(&args.hsm.config()?)
        .await?
        .context("--root-key-hsm needs --hsm-module and --hsm-token")?;
    Ok(RootKeySource::Hsm(std::sync::Arc::new(hsm)))
}

fn restore(
    data_dir: &Path,
    input: &Path,
    root: RootKeySource,
    copy_from: Option<PathBuf>,
) -> anyhow::Result<()> {
    let key = root.load_existing(data_dir)?;
    let bytes = std::fs::read(input)?;
    let bar = indicatif::ProgressBar::new(0).with_style(indicatif::ProgressStyle::with_template(
        "restoring {pos}/{len} records {wide_bar}",
    )?);
    let count = arca_host::kms::backup::restore(data_dir, &key, &bytes, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if let Some(from) = copy_from {
        let to = data_dir.join("root.key");
        if !to.exists() {
            let text = std::fs::read(&from)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&to)?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
    }
    tracing::info!(records = count, data_dir = %data_dir.display(), "restored; start the server on it");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `arca status`: prints the admin listener's `/status`; fails when the server is not ready.
async fn status(admin: &str) -> anyhow::Result<()> {
    let base = if admin.contains("://") {
        admin.to_owned()
    } else {
        format!("http://{admin}")
    };
    let (code, body) = arca_client::get(&format!("{base}/status"))
        .await
        .with_context(|| format!("cannot reach the admin listener at {base}"))?;
    anyhow::ensure!(code == 200, "{base}/status answered {code}");
    let status: serde_json::Value = serde_json::from_slice(&body).context("/status is not JSON")?;
    print_json(&status)?;
    anyhow::ensure!(
        status["Ready"] == serde_json::Value::Bool(true),
        "the server is not ready (see Checks)"
    );
    Ok(())
}

/// `arca config check`: the file's settings, checked as far as they can be without serving.
fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = Config::from_file(file)?;
    arca_host::server::tls_acceptor(&config.api)?;
    if config.hsm.module.is_some() {
        arca_host::server::hsm_pin(&config.hsm)?;
    }
    if let Some(dir) = arca_host::server::plugins_dir(&config) {
        arca_host::plugin::SqlConnections::load(&dir.join("connections.toml"))
            .map_err(anyhow::Error::msg)?;
    }
    print_json(&serde_json::json!({ "Valid": true, "Settings": config }))
}

fn admin_client(args: &AdminArgs) -> anyhow::Result<arca_client::Client> {
    let creds = arca_client::Credentials::from_file(&args.credentials)?;
    Ok(arca_client::Client::new(&args.endpoint, creds))
}

/// Command output goes to stdout on purpose; logs go to stderr.
fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

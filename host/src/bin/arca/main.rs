//! `arca`: the command line. Serving is one library call (`arca_host::serve`); the other
//! commands are administration tools (`tools`, `audit`) or clients of a running server.

mod args;
mod audit;
mod tools;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use arca_host::config::{self, Config, LogFormat};
use clap::{Parser, Subcommand};

use crate::args::{
    AccessKeyCommand, AccountCommand, AdminArgs, AuditCommand, ConfigCommand, HsmArgs,
    InstanceCommand, PluginCommand, RootKeyArgs, ServeFlags,
};
use crate::tools::{
    admin_client, backup, check_config, print_json, restore, shutdown_signal, status, tool_root_key,
};

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
            let hsm: Box<dyn arca_host::keystore::Token> = Box::new(
                arca_host::server::open_hsm(&hsm.config()?)
                    .await?
                    .context("give --hsm-module and --hsm-token")?,
            );
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
        Command::Audit { command } => audit::run(command).await,
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

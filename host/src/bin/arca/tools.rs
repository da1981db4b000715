//! What the commands do besides serving: backup, restore, status, config check, output.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arca_host::config::Config;
use arca_host::startup::RootKeySource;

use crate::args::{AdminArgs, RootKeyArgs};

pub(crate) async fn backup(
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
pub(crate) async fn tool_root_key(args: RootKeyArgs) -> anyhow::Result<RootKeySource> {
    if !args.root_key_hsm {
        return Ok(arca_host::server::root_key_source(args.root_key_file));
    }
    let hsm = arca_host::server::open_hsm(&args.hsm.config()?)
        .await?
        .context("--root-key-hsm needs --hsm-module and --hsm-token")?;
    Ok(RootKeySource::Hsm(std::sync::Arc::new(hsm)))
}

pub(crate) fn restore(
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

pub(crate) async fn shutdown_signal() {
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
pub(crate) async fn status(admin: &str) -> anyhow::Result<()> {
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
pub(crate) fn check_config(file: &Path) -> anyhow::Result<()> {
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

pub(crate) fn admin_client(args: &AdminArgs) -> anyhow::Result<arca_client::Client> {
    let creds = arca_client::Credentials::from_file(&args.credentials)?;
    Ok(arca_client::Client::new(&args.endpoint, creds))
}

/// Command output goes to stdout on purpose; logs go to stderr.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

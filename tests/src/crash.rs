//! The crash-safety suite behind `arca-crash` and its CI-sized e2e test.
//!
//! Workers run a mixed load (CreateKey, CreateKeyVersion, Encrypt with an EncryptionContext,
//! CreateSecret and PutSecretValue, CreateAlias and UpdateAlias) while the server is SIGKILLed
//! at random moments (some right after a restart, during recovery). Each success the server
//! answered goes into a ledger; after every restart the writes acknowledged since the last check
//! are read back, and at the end everything is read back: every key, version, secret version and
//! alias is there, and every ciphertext ever returned still decrypts to its plaintext. Finally
//! the audit trail, after all those kills, must still verify.
//!
//! A write in flight at the kill may or may not have happened; the only such case the ledger
//! must reason about is an alias, which may then point at either its last acknowledged key or
//! the key of the interrupted change.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use arca_client::Client;
use serde::Serialize;

use crate::{Served, TestServer};

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Config {
    /// SIGKILLs.
    pub kills: u32,
    /// Concurrent workers.
    pub workers: u32,
    /// Random load time before a kill is drawn from 0..max.
    pub max_load: Duration,
    /// The random seed (print it to reproduce a run).
    pub seed: u64,
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// SIGKILLs delivered.
    pub kills: u32,
    /// Kills delivered right after a restart (during recovery, before any load).
    pub kills_at_start: u32,
    /// Acknowledged writes checked.
    pub keys: usize,
    /// Key versions made by CreateKeyVersion.
    pub key_versions: usize,
    /// Ciphertexts decrypted again.
    pub ciphertexts: usize,
    /// Secret versions read back.
    pub secret_versions: usize,
    /// Alias changes acknowledged.
    pub alias_changes: usize,
    /// Aliases found on an interrupted change's key (allowed: it was not acknowledged).
    pub aliases_on_unacknowledged_change: usize,
    /// Audit lines that verified at the end.
    pub audit_events: u64,
    /// Workers whose call in flight at a kill never returned on the client side and were
    /// abandoned after [`ABANDON_AFTER`] (their call was not acknowledged, so nothing is
    /// owed for it). Once in about 500 kills hyper's client left such a call waiting forever
    /// on its connection pool (a long-known client hang, hyperium/hyper#2312).
    pub workers_abandoned: usize,
    /// Seconds the run took.
    pub seconds: f64,
}

#[derive(Debug, Clone)]
struct Alias {
    name: String,
    /// The key of the last acknowledged CreateAlias/UpdateAlias.
    acked: Option<String>,
    /// The key of a change sent but not answered (the kill came first).
    pending: Option<String>,
}

#[derive(Debug, Default)]
struct Ledger {
    keys: Vec<String>,
    versions: Vec<(String, String)>,
    blobs: Vec<(String, String, String)>,
    secrets: Vec<(String, String, String)>,
    aliases: Vec<Alias>,
    alias_changes: usize,
}

impl Ledger {
    fn counts(&self) -> [usize; 4] {
        [
            self.keys.len(),
            self.versions.len(),
            self.blobs.len(),
            self.secrets.len(),
        ]
    }
}

/// One worker's own keys, aliases and secrets, so its changes are sequential per resource.
struct Worker {
    id: u32,
    round: u32,
    c: Client,
    rng: fastrand::Rng,
    ledger: Arc<Mutex<Ledger>>,
    keys: Vec<String>,
    aliases: Vec<usize>,
    secrets: Vec<(String, u32)>,
}

fn field(v: &serde_json::Value, path: &[&str]) -> Result<String> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} missing in {v}", path.join(".")))
}

fn lock(l: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Worker {
    /// Runs until a call fails: a transport error is the kill; an API error is a finding.
    async fn run(mut self) -> Result<()> {
        let mut n = 0u32;
        loop {
            n += 1;
            match self.step(n).await {
                Ok(()) => {}
                Err(e) => {
                    return match e.downcast_ref::<arca_client::Error>() {
                        Some(arca_client::Error::Transport(_)) => Ok(()),
                        _ => Err(e),
                    };
                }
            }
        }
    }

    async fn step(&mut self, n: u32) -> Result<()> {
        let tag = format!("w{}-r{}-{n}", self.id, self.round);
        if self.keys.is_empty() || self.rng.u8(..100) < 8 {
            let r = self.c.call("CreateKey", &[]).await?;
            let key = field(&r, &["KeyMetadata", "KeyId"])?;
            lock(&self.ledger).keys.push(key.clone());
            self.keys.push(key);
            return Ok(());
        }
        let key = self.keys[self.rng.usize(..self.keys.len())].clone();
        match self.rng.u8(..100) {
            0..8 => {
                let r = self.c.call("CreateKeyVersion", &[("KeyId", &key)]).await?;
                let v = field(&r, &["KeyVersion", "KeyVersionId"])?;
                lock(&self.ledger).versions.push((key, v));
            }
            8..50 => {
                let plain = format!("plaintext {tag}");
                let ctx = format!("{{\"run\":\"{tag}\"}}");
                let r = self
                    .c
                    .call(
                        "Encrypt",
                        &[
                            ("KeyId", &key),
                            ("Plaintext", &plain),
                            ("EncryptionContext", &ctx),
                        ],
                    )
                    .await?;
                let blob = field(&r, &["CiphertextBlob"])?;
                lock(&self.ledger).blobs.push((blob, plain, ctx));
            }
            50..80 => self.put_secret(&tag).await?,
            _ => self.change_alias(&tag).await?,
        }
        Ok(())
    }

    async fn put_secret(&mut self, tag: &str) -> Result<()> {
        let value = format!("secret value {tag}");
        let version = format!("v-{tag}");
        if self.secrets.is_empty() || self.rng.u8(..100) < 10 {
            let name = format!("crash/{tag}");
            self.c
                .call(
                    "CreateSecret",
                    &[
                        ("SecretName", &name),
                        ("SecretData", &value),
                        ("VersionId", &version),
                    ],
                )
                .await?;
            lock(&self.ledger)
                .secrets
                .push((name.clone(), version, value));
            self.secrets.push((name, 0));
            return Ok(());
        }
        let i = self.rng.usize(..self.secrets.len());
        let name = self.secrets[i].0.clone();
        self.c
            .call(
                "PutSecretValue",
                &[
                    ("SecretName", &name),
                    ("SecretData", &value),
                    ("VersionId", &version),
                ],
            )
            .await?;
        self.secrets[i].1 += 1;
        lock(&self.ledger).secrets.push((name, version, value));
        Ok(())
    }

    async fn change_alias(&mut self, tag: &str) -> Result<()> {
        let key = self.keys[self.rng.usize(..self.keys.len())].clone();
        let update = !self.aliases.is_empty() && self.rng.bool();
        let slot = if update {
            self.aliases[self.rng.usize(..self.aliases.len())]
        } else {
            let mut l = lock(&self.ledger);
            l.aliases.push(Alias {
                name: format!("alias/crash-{tag}"),
                acked: None,
                pending: None,
            });
            let slot = l.aliases.len() - 1;
            self.aliases.push(slot);
            slot
        };
        let name = {
            let mut l = lock(&self.ledger);
            l.aliases[slot].pending = Some(key.clone());
            l.aliases[slot].name.clone()
        };
        let action = if update { "UpdateAlias" } else { "CreateAlias" };
        self.c
            .call(action, &[("AliasName", &name), ("KeyId", &key)])
            .await?;
        let mut l = lock(&self.ledger);
        l.aliases[slot].acked = Some(key);
        l.aliases[slot].pending = None;
        l.alias_changes += 1;
        Ok(())
    }
}

/// Reads back everything the ledger holds from `from` on (per kind); returns how many aliases
/// sat on an interrupted change's key.
async fn check(c: &Client, l: &Ledger, from: [usize; 4]) -> Result<usize> {
    for key in &l.keys[from[0]..] {
        c.call("DescribeKey", &[("KeyId", key)])
            .await
            .with_context(|| format!("acknowledged key {key} is gone"))?;
    }
    for (key, version) in &l.versions[from[1]..] {
        c.call(
            "DescribeKeyVersion",
            &[("KeyId", key), ("KeyVersionId", version)],
        )
        .await
        .with_context(|| format!("acknowledged version {version} of {key} is gone"))?;
    }
    for (blob, plain, ctx) in &l.blobs[from[2]..] {
        let r = c
            .call(
                "Decrypt",
                &[("CiphertextBlob", blob), ("EncryptionContext", ctx)],
            )
            .await
            .with_context(|| format!("a returned ciphertext no longer decrypts ({plain})"))?;
        ensure!(
            r["Plaintext"] == plain.as_str(),
            "{plain} decrypted to {}",
            r["Plaintext"]
        );
    }
    for (name, version, value) in &l.secrets[from[3]..] {
        let r = c
            .call(
                "GetSecretValue",
                &[("SecretName", name), ("VersionId", version)],
            )
            .await
            .with_context(|| format!("acknowledged secret version {name}/{version} is gone"))?;
        ensure!(
            r["SecretData"] == value.as_str(),
            "{name}/{version} reads {}",
            r["SecretData"]
        );
    }
    let mut on_pending = 0;
    for a in &l.aliases {
        let found = match c.call("DescribeKey", &[("KeyId", &a.name)]).await {
            Ok(r) => Some(field(&r, &["KeyMetadata", "KeyId"])?),
            // An alias whose CreateAlias never got through names nothing.
            Err(e)
                if matches!(
                    e.code(),
                    Some("Forbidden.AliasNotFound" | "Forbidden.KeyNotFound")
                ) =>
            {
                None
            }
            Err(e) => return Err(e.into()),
        };
        if found == a.acked {
            continue;
        }
        if found.is_some() && found == a.pending {
            on_pending += 1;
            continue;
        }
        bail!(
            "{} points at {found:?}; acknowledged {:?} (in flight at a kill: {:?})",
            a.name,
            a.acked,
            a.pending
        );
    }
    Ok(on_pending)
}

/// How long a worker may take to notice a kill before it is abandoned: its calls fail with a
/// transport error within milliseconds of one.
pub const ABANDON_AFTER: Duration = Duration::from_secs(30);

/// Runs the suite against `server` (killed and restarted `config.kills` times).
pub async fn run(server: &mut TestServer, config: &Config) -> Result<Report> {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut report = Report {
        seed: config.seed,
        ..Report::default()
    };
    let mut checked = [0usize; 4];
    for round in 0..config.kills {
        // One kill in eight lands right after a restart, while the store and the audit trail
        // recover, before any load.
        if round > 0 && rng.u8(..8) == 0 {
            server.kill9()?;
            server.restart()?;
            server.kill9()?;
            report.kills_at_start += 1;
            report.kills += 1;
            server.restart()?;
        }
        let c = server.client()?;
        let workers: Vec<_> = (0..config.workers)
            .map(|id| {
                tokio::spawn(
                    Worker {
                        id,
                        round,
                        c: c.clone(),
                        rng: fastrand::Rng::with_seed(rng.u64(..)),
                        ledger: Arc::clone(&ledger),
                        keys: Vec::new(),
                        aliases: Vec::new(),
                        secrets: Vec::new(),
                    }
                    .run(),
                )
            })
            .collect();
        let load = config.max_load.mul_f64(rng.f64());
        tokio::time::sleep(load).await;
        server.kill9()?;
        report.kills += 1;
        for mut w in workers {
            match tokio::time::timeout(ABANDON_AFTER, &mut w).await {
                Ok(done) => done.context("worker panicked")??,
                Err(_) => {
                    // Counted in the report, which the callers print.
                    w.abort();
                    report.workers_abandoned += 1;
                }
            }
        }
        server.restart()?;
        let c = server.client()?;
        // The workers are done: the ledger is read without its lock across the checks.
        let l = std::mem::take(&mut *lock(&ledger));
        report.aliases_on_unacknowledged_change = check(&c, &l, checked).await?;
        checked = l.counts();
        *lock(&ledger) = l;
    }
    let c = server.client()?;
    let l = std::mem::take(&mut *lock(&ledger));
    report.aliases_on_unacknowledged_change = check(&c, &l, [0; 4]).await?;
    report.keys = l.keys.len();
    report.key_versions = l.versions.len();
    report.ciphertexts = l.blobs.len();
    report.secret_versions = l.secrets.len();
    report.alias_changes = l.alias_changes;
    server.kill9()?;
    report.audit_events = verify_audit(server)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `arca audit verify` on the killed server's data dir: the chain must hold.
fn verify_audit(server: &TestServer) -> Result<u64> {
    let out = std::process::Command::new(crate::arca_bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(&server.data_dir)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "the audit trail does not verify after the kills: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).context("audit verify output")?;
    v["Lines"]
        .as_u64()
        .with_context(|| format!("no Lines in {v}"))
}

//! `arca-crash`: the crash-safety suite. Runs a mixed write load against a fresh `arca serve`,
//! SIGKILLs it at random moments, restarts it, and checks that every acknowledged write is
//! there, every ciphertext ever returned still decrypts, and the audit trail still verifies.
//! Prints a JSON report; exits non-zero on the first loss.
//!
//! ```text
//! cargo build --release --bins
//! ARCA_BIN=target/release/arca target/release/arca-crash --kills 500
//! ```

use std::time::Duration;

use anyhow::Result;
use arca_tests::TestServer;
use arca_tests::crash::{Config, run};
use clap::Parser;

/// The crash-safety suite.
#[derive(Debug, Parser)]
struct Args {
    /// SIGKILLs to deliver.
    #[arg(long, default_value_t = 50)]
    kills: u32,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Longest load before a kill, in milliseconds (each kill draws from 0..this).
    #[arg(long, default_value_t = 400)]
    max_load_ms: u64,
    /// Random seed; default from the clock (printed in the report, to reproduce a run).
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let config = Config {
        kills: args.kills,
        workers: args.workers,
        max_load: Duration::from_millis(args.max_load_ms),
        seed,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let mut server = TestServer::start()?;
        run(&mut server, &config).await
    })?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)?;
    std::io::Write::write_all(&mut out, b"\n")?;
    Ok(())
}

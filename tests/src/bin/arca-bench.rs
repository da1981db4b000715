//! The bench harness: Encrypt (1 KiB), GenerateDataKey and AsymmetricSign (RSA-2048 PSS,
//! ECDSA P-256) requests/s against Arca, and the same load against a bare hyper server that
//! answers a fixed JSON body, in one run with one load generator.
//!
//! Both servers are separate processes on loopback sharing the machine with the generator the
//! same way, so the ratio is what Arca's pipeline costs over plain HTTP. Every request is
//! V3-signed with a fresh nonce, for both servers, so the generator's work is identical.
//!
//! Two plugin measurements (`--plugins`, needs `plugins/build.sh` first):
//! - a plugin call: instantiate + `decide` of the default access policy, in process, median
//!   of many calls, on a fresh instance each time and on a reused instance;
//! - the access-policy check on every request: Encrypt against Arca without a policy, with
//!   `--access-policy policy-default` (decision cache on) and with an uncached twin, in one run.
//!
//! Bad-signature flood (`--flood`): valid Encrypt requests/s alone and while 10,000 requests
//! with a wrong secret arrive over the same seconds.
//!
//! Soak mode (`--soak-minutes M [--soak-fraction 0.7]`, [`arca_tests::soak`]): a fixed rate
//! for minutes, with errors, latency and the server's memory every 30 s.
//!
//! ```text
//! cargo build --release --bins && target/release/arca-bench [--seconds 5] [--concurrency 1,4,16,64] [--plugins]
//! ARCA_BIN=target/release/arca target/release/arca-bench --soak-minutes 10
//! ```

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arca_client::Credentials;
use arca_tests::{Served, TestServer, arca_bin, free_port};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1 as server_http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Parser)]
struct Args {
    /// Seconds of load per (server, concurrency) cell.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent keep-alive connections to try, comma-separated.
    #[arg(long, default_value = "1,4,16,64", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Workloads, comma-separated: encrypt, gdk, sign-rsa, sign-ec.
    #[arg(
        long,
        default_value = "encrypt,gdk,sign-rsa,sign-ec",
        value_delimiter = ','
    )]
    workloads: Vec<String>,
    /// Also measure plugin calls and the access-policy overhead (plugins/build.sh first).
    #[arg(long)]
    plugins: bool,
    /// Only the plugin measurements.
    #[arg(long)]
    plugins_only: bool,
    /// Only the bad-signature flood: valid Encrypt requests/s alone and while 10,000
    /// wrong-secret requests arrive over the same seconds (ABBA, `--seconds` per cell).
    #[arg(long)]
    flood: bool,
    /// Only the audit trail's cost: Encrypt requests/s against this `arca` (`ARCA_BIN`) and
    /// against PATH, the same source built without the trail (`cargo build --release --bin
    /// arca --features arca-host/unaudited-benchmark-baseline --target-dir target/unaudited`),
    /// ABBA cells at each `--concurrency`. Reports each server's CPU per request and the rest
    /// of the machine's (busy elsewhere, idle, stolen), to tell added work from added waiting.
    #[arg(long, value_name = "PATH")]
    audit_baseline: Option<std::path::PathBuf>,
    /// ABBA rounds per concurrency for `--audit-baseline`; the cut is over all of them, and
    /// the table also shows each round's. Single rounds on a shared 2-vCPU VM spread by a
    /// few points.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Also measure Encrypt and Sign on HSM keys (SoftHSM2) against direct PKCS#11 calls.
    #[arg(long)]
    hsm: bool,
    /// Only the HSM measurement.
    #[arg(long)]
    hsm_only: bool,
    /// Soak mode: hold a fixed rate (a mix of Encrypt, Decrypt, GenerateDataKey and
    /// GetSecretValue) for this many minutes, reporting errors, latency and the server's
    /// memory every 30 s. Nothing else runs.
    #[arg(long)]
    soak_minutes: Option<f64>,
    /// The soak rate as a fraction of the peak measured just before.
    #[arg(long, default_value_t = 0.7)]
    soak_fraction: f64,
    /// The server's `--max-clock-skew` for the soak, in seconds. Nonces are kept that long,
    /// so the replay cache reaches its steady size only after it; the default (60 s) lets a
    /// 10-minute soak show the rest of memory flat. 900 is Alibaba's (and Arca's) default.
    #[arg(long, default_value_t = 60)]
    soak_clock_skew: u64,
    /// Only what recording one audit event costs a request (`AuditLog::record` into the
    /// journal, in this process, no server): this many events, fewer than the journal holds,
    /// so it measures the request path and not a wait for the appender.
    #[arg(long, value_name = "EVENTS")]
    audit_record: Option<u32>,
    /// Internal: run as the bare hyper server on this port.
    #[arg(long, hide = true)]
    bare_server: Option<u16>,
    /// Internal: `seconds,threads,op,token-label`: direct calls into the token.
    #[arg(long, hide = true)]
    hsm_direct: Option<String>,
}

/// A reply shaped like Encrypt's (same size class), served without any work.
const BARE_BODY: &str = r#"{"RequestId":"6F2C0D4A-8B1E-4C53-9A77-2E5D1B0C3F19","CiphertextBlob":"MTVmZTI5Y2MtYTdkYi00YmQxLWE3NDUtYzJkOWFmYzJkMTVlC3aYikfVblGhLcUY2SigFYA2V5zDeoI2iZoIISoKYA4Eaw==","KeyId":"key-hanvo1zwv0309rd7vik5","KeyVersionId":"15fe29cc-a7db-4bd1-a745-c2d9afc2d15e"}"#;

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(spec) = &args.hsm_direct {
        return hsm_direct(spec);
    }
    if let Some(port) = args.bare_server {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(bare(port));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

/// The bare server: hyper http1, keep-alive, reads the body, answers `BARE_BODY`.
async fn bare(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut resp =
                        http::Response::new(Full::new(Bytes::from_static(BARE_BODY.as_bytes())));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json;charset=utf-8"),
                    );
                    Ok::<_, Infallible>(resp)
                },
            );
            let _ = server_http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct Cell {
    requests: u64,
    errors: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

/// One workload: an action and its parameters, sent freshly signed each time.
struct Workload {
    name: &'static str,
    action: &'static str,
    params: Vec<(String, String)>,
}

/// Drives `addr` with `concurrency` connections for `seconds`, each request freshly V3-signed.
async fn load(
    addr: SocketAddr,
    creds: Arc<Credentials>,
    work: Arc<Workload>,
    concurrency: usize,
    seconds: u64,
) -> Result<Cell> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (creds, work) = (Arc::clone(&creds), Arc::clone(&work));
        tasks.push(tokio::spawn(async move {
            let mut sender = arca_tests::http1_connection(addr).await?;
            let host = addr.to_string();
            let (mut lat, mut errors) = (Vec::with_capacity(100_000), 0u64);
            while Instant::now() < deadline {
                let req = arca_tests::signed(
                    &host,
                    &creds.access_key_id,
                    creds.access_key_secret.as_bytes(),
                    work.action,
                    &work.params,
                );
                let t = Instant::now();
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await?;
                lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                if !ok {
                    errors += 1;
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Ok(Cell {
        requests: all.len() as u64,
        errors,
        rps: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

/// Creates the key a workload needs and checks one request succeeds.
async fn workload(client: &arca_client::Client, name: &str) -> Result<Workload> {
    let key = |spec: &'static str, usage: &'static str| async move {
        let k = client
            .call("CreateKey", &[("KeySpec", spec), ("KeyUsage", usage)])
            .await?;
        let meta = &k["KeyMetadata"];
        anyhow::Ok((
            meta["KeyId"].as_str().unwrap_or_default().to_owned(),
            meta["PrimaryKeyVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    };
    let digest = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    let w = match name {
        "encrypt" => {
            let (id, _) = key("Aliyun_AES_256", "ENCRYPT/DECRYPT").await?;
            Workload {
                name: "Encrypt 1 KiB",
                action: "Encrypt",
                params: vec![("KeyId".into(), id), ("Plaintext".into(), "a".repeat(1024))],
            }
        }
        "gdk" => {
            let (id, _) = key("Aliyun_AES_256", "ENCRYPT/DECRYPT").await?;
            Workload {
                name: "GenerateDataKey",
                action: "GenerateDataKey",
                params: vec![("KeyId".into(), id)],
            }
        }
        "sign-rsa" | "sign-ec" | "sign-k1" => {
            let (spec, alg, label) = match name {
                "sign-rsa" => ("RSA_2048", "RSA_PSS_SHA_256", "AsymmetricSign RSA-2048 PSS"),
                "sign-ec" => ("EC_P256", "ECDSA_SHA_256", "AsymmetricSign EC P-256"),
                _ => ("EC_P256K", "ECDSA_SHA_256", "AsymmetricSign secp256k1"),
            };
            let (id, version) = key(spec, "SIGN/VERIFY").await?;
            Workload {
                name: label,
                action: "AsymmetricSign",
                params: vec![
                    ("KeyId".into(), id),
                    ("KeyVersionId".into(), version),
                    ("Algorithm".into(), alg.into()),
                    ("Digest".into(), digest),
                ],
            }
        }
        other => bail!("unknown workload {other}"),
    };
    let params: Vec<(&str, &str)> = w
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    client
        .call(w.action, &params)
        .await
        .with_context(|| format!("a {name} request failed"))?;
    Ok(w)
}

async fn run(args: Args) -> Result<()> {
    if let Some(minutes) = args.soak_minutes {
        return soak(minutes, args.soak_fraction, args.soak_clock_skew).await;
    }
    if args.flood {
        return flood(&args).await;
    }
    if let Some(baseline) = &args.audit_baseline {
        return audit_cost(&args, baseline).await;
    }
    if let Some(events) = args.audit_record {
        return audit_record(events).await;
    }
    if args.hsm || args.hsm_only {
        hsm_table(&args).await?;
        if args.hsm_only {
            return Ok(());
        }
    }
    if !args.plugins_only {
        tables(&args).await?;
    }
    if args.plugins || args.plugins_only {
        plugin_calls().await?;
        if args.seconds > 0 {
            policy_overhead(&args).await?;
        }
    }
    Ok(())
}

/// The soak: peak first, then `fraction` of it for `minutes`, one table row a window.
async fn soak(minutes: f64, fraction: f64, clock_skew: u64) -> Result<()> {
    let admin = format!("127.0.0.1:{}", free_port());
    let skew = clock_skew.to_string();
    let arca = TestServer::start_with_args(&["--admin-listen", &admin, "--max-clock-skew", &skew])
        .context("starting arca (build it with `cargo build --release --bins`)")?;
    let config = arca_tests::soak::Config {
        duration: Duration::from_secs_f64(minutes * 60.0),
        fraction,
        connections: 16,
        peak_for: Duration::from_secs(10),
        window: Duration::from_secs(30),
        admin: Some(admin),
    };
    println_flush(&format!(
        "soak: Encrypt 1 KiB / Decrypt / GenerateDataKey / GetSecretValue, {} connections, \
         {:.0}% of the peak for {minutes} min, --max-clock-skew {clock_skew}; arca = {}\n\n\
         | at s | requests | errors | p50 µs | p99 µs | RSS MiB | replay-cache nonces |\n\
         |---:|---:|---:|---:|---:|---:|---:|",
        config.connections,
        fraction * 100.0,
        arca_bin().display()
    ))?;
    let report = arca_tests::soak::run(&arca, &config, |w| {
        let _ = println_flush(&format!(
            "| {} | {} | {} | {} | {} | {:.1} | {} |",
            w.at_s,
            w.requests,
            w.errors,
            w.p50_us,
            w.p99_us,
            w.rss_mib,
            w.nonces.map_or_else(|| "?".into(), |n| n.to_string())
        ));
    })
    .await?;
    println_flush(&format!(
        "\npeak {:.0} req/s; target {:.0} req/s; achieved {:.0} req/s; {} requests, {} errors; \
         RSS {:.1} MiB after the first window, {:.1} MiB at the end ({:+.1} MiB)",
        report.peak_rps,
        report.target_rps,
        report.achieved_rps,
        report.requests,
        report.errors,
        report.rss_warm_mib,
        report.rss_end_mib,
        report.rss_end_mib - report.rss_warm_mib
    ))?;
    if report.errors > 0 {
        bail!("{} requests failed during the soak", report.errors);
    }
    Ok(())
}

/// One line to stdout, flushed (a soak's rows should show as they come).
fn println_flush(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Median and p99 of per-call times, in µs.
fn percentiles(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort_unstable();
    let at = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// Instantiate + decide on the default policy, fresh instance vs reused, in process.
async fn plugin_calls() -> Result<()> {
    use arca_host::plugin::{
        AccessRequest, PluginHost, Principal, PrincipalKind, Services, SqlConnections,
    };
    let tmp = tempfile::tempdir()?;
    let opened = arca_host::open(arca_host::ServeConfig {
        data_dir: tmp.path().join("data"),
        region: "cn-hangzhou".into(),
        root_key: arca_host::startup::RootKeySource::DataDir,
    })
    .await?;
    let plugins = arca_tests::repo_root().join("plugins");
    let services = Services::new(opened.kms, SqlConnections::none());
    let host = Arc::new(
        PluginHost::new(Some(plugins), tmp.path().join("cache"), services)
            .map_err(anyhow::Error::msg)?,
    );
    let report = host.load().await;
    if !host.has("policy-default", arca_host::plugin::World::AccessPolicy) {
        bail!(
            "policy-default did not load (run plugins/build.sh): {:?}",
            report.failed
        );
    }
    let req = AccessRequest {
        principal: Principal {
            kind: PrincipalKind::ClientKey,
            account: "1".into(),
            id: "ck".into(),
            application: None,
        },
        action: "Encrypt".into(),
        resource_arn: Some("acs:kms:cn-hangzhou:1:key/key-1".into()),
        source_ip: "127.0.0.1".into(),
        instance: Some("kst-1".into()),
        policies: vec![],
    };
    const N: usize = 20_000;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nplugin call: instantiate + decide (policy-default), {N} sequential calls each"
    )?;
    writeln!(out, "| mode | median µs | p99 µs |")?;
    writeln!(out, "|---|---:|---:|")?;
    // Distinct requests (by source address) miss the decision cache, so each reaches a reused
    // instance; repeating one request measures the cache.
    let distinct: Vec<AccessRequest> = (0..N)
        .map(|i| AccessRequest {
            source_ip: format!("10.0.{}.{}", i >> 8 & 255, i & 255),
            ..req.clone()
        })
        .collect();
    for (mode, fresh, vary) in [
        ("fresh instance per call", true, false),
        ("reused instance (distinct requests)", false, true),
        ("decision cache hit (the same request)", false, false),
    ] {
        let mut times = Vec::with_capacity(N);
        for one in &distinct {
            let r = if vary { one } else { &req };
            let t = Instant::now();
            let d = if fresh {
                host.decide_fresh("policy-default", r).await
            } else {
                host.decide("policy-default", r).await
            };
            times.push(t.elapsed());
            d.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let (p50, p99) = percentiles(times);
        writeln!(out, "| {mode} | {p50:.1} | {p99:.1} |")?;
    }
    Ok(())
}

/// Encrypt against Arca without a policy, with `policy-default` (answered from the decision
/// cache after the first request), and with the same component granted `clock`, which turns
/// the cache off so that every request calls the plugin. Cells interleaved, ABBA.
async fn policy_overhead(args: &Args) -> Result<()> {
    let root = arca_tests::repo_root();
    let plugins = root.join("plugins").display().to_string();
    // The uncached twin: the same component under another name, granted `clock`.
    let twin = tempfile::tempdir()?;
    let twin_dir = twin.path().join("policy-uncached");
    std::fs::create_dir_all(&twin_dir)?;
    let wasm = root.join("plugins/policy-default/policy_default.wasm");
    std::fs::write(
        twin_dir.join("plugin.toml"),
        format!(
            "name = \"policy-uncached\"\nworld = \"access-policy\"\nversion = \"0.1.0\"\n\
             component = {:?}\ncapabilities = [\"clock\"]\n[limits]\nmemory-mib = 4\n\
             time-ms = 50\nconcurrency = 64\n",
            wasm.display().to_string()
        ),
    )?;
    let twin_path = twin.path().display().to_string();
    // ARCA_BENCH_CONTROL=1 runs the same cells with no policy anywhere (an A/A control).
    let control = std::env::var_os("ARCA_BENCH_CONTROL").is_some();
    let start = |dir: &str, policy: &str| {
        if control {
            TestServer::start_with_args(&["--plugins-dir", dir])
        } else {
            TestServer::start_with_args(&["--plugins-dir", dir, "--access-policy", policy])
        }
    };
    let servers = [
        TestServer::start_with_args(&["--plugins-dir", &plugins])?,
        start(&plugins, "policy-default")?,
        start(&twin_path, "policy-uncached")?,
    ];
    let mut work = Vec::new();
    for s in &servers {
        work.push(Arc::new(workload(&s.client()?, "encrypt").await?));
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\naccess-policy check on every request: Encrypt 1 KiB, {} s per cell, order ABCCBA",
        args.seconds
    )?;
    writeln!(
        out,
        "| conns | no policy req/s | cached req/s | uncached req/s | uncached p50/p99 µs | cached/none | uncached/none |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|")?;
    for &c in &args.concurrency {
        let mut runs: [Vec<Cell>; 3] = Default::default();
        for i in [0, 1, 2, 2, 1, 0] {
            let r = load(
                servers[i].endpoint.parse()?,
                Arc::new(servers[i].credentials()?),
                Arc::clone(&work[i]),
                c,
                args.seconds,
            )
            .await?;
            if r.errors > 0 {
                bail!("{} errors on server {i}", r.errors);
            }
            runs[i].push(r);
        }
        let mean = |v: &[Cell]| v.iter().map(|r| r.rps).sum::<f64>() / v.len() as f64;
        let [a, b, u] = [mean(&runs[0]), mean(&runs[1]), mean(&runs[2])];
        writeln!(
            out,
            "| {c} | {a:.0} | {b:.0} | {u:.0} | {}/{} | {:.2} | {:.2} |",
            runs[2][0].p50_us,
            runs[2][0].p99_us,
            b / a,
            u / a
        )?;
    }
    Ok(())
}

/// Valid Encrypt throughput without and with a flood of 10,000 bad-signature requests spread
/// evenly over the cell (open loop, two connections), cells in ABBA order.
async fn flood(args: &Args) -> Result<()> {
    const BAD: u64 = 10_000;
    let arca = TestServer::start()
        .context("starting arca (build it with `cargo build --release --bins`)")?;
    let creds = Arc::new(arca.credentials()?);
    let work = Arc::new(workload(&arca.client()?, "encrypt").await?);
    let addr: SocketAddr = arca.endpoint.parse()?;
    let seconds = args.seconds;
    let conns = args.concurrency.first().copied().unwrap_or(4);
    let mut quiet = Vec::new();
    let mut flooded = Vec::new();
    for with_flood in [false, true, true, false] {
        let bad = with_flood.then(|| {
            let (id, work) = (creds.access_key_id.clone(), Arc::clone(&work));
            tokio::spawn(async move {
                let per_conn = BAD / 2;
                let mut tasks = Vec::new();
                for c in 0..2u64 {
                    let (id, work) = (id.clone(), Arc::clone(&work));
                    tasks.push(tokio::spawn(async move {
                        let mut sender = arca_tests::http1_connection(addr).await?;
                        let start = Instant::now();
                        let mut refused = 0u64;
                        for k in 0..per_conn {
                            let due = start
                                + Duration::from_secs_f64(
                                    (k * 2 + c) as f64 * seconds as f64 / BAD as f64,
                                );
                            tokio::time::sleep_until(due.into()).await;
                            let req = arca_tests::signed(
                                &addr.to_string(),
                                &id,
                                b"not-the-secret",
                                work.action,
                                &work.params,
                            );
                            sender.ready().await?;
                            let resp = sender.send_request(req).await?;
                            refused += u64::from(resp.status() == 400);
                            resp.into_body().collect().await?;
                        }
                        anyhow::Ok(refused)
                    }));
                }
                let mut refused = 0;
                for t in tasks {
                    refused += t.await??;
                }
                anyhow::Ok(refused)
            })
        });
        let cell = load(addr, Arc::clone(&creds), Arc::clone(&work), conns, seconds).await?;
        if let Some(bad) = bad {
            let refused = bad.await??;
            if refused != BAD {
                bail!("only {refused} of {BAD} bad-signature requests were refused");
            }
            flooded.push(cell);
        } else {
            quiet.push(cell);
        }
    }
    let mean = |cells: &[Cell]| cells.iter().map(|c| c.rps).sum::<f64>() / cells.len() as f64;
    let p99 = |cells: &[Cell]| cells.iter().map(|c| c.p99_us).max().unwrap_or(0);
    let (q, f) = (mean(&quiet), mean(&flooded));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "bad-signature flood: valid Encrypt 1 KiB on {conns} connections, {seconds} s cells, ABBA; \
         {BAD} wrong-secret requests spread over each flooded cell"
    )?;
    writeln!(out, "| | valid req/s | valid p99 µs |")?;
    writeln!(out, "|---|---:|---:|")?;
    writeln!(out, "| no flood | {q:.0} | {} |", p99(&quiet))?;
    writeln!(
        out,
        "| 10,000 bad signatures | {f:.0} | {} |",
        p99(&flooded)
    )?;
    writeln!(out, "\nflooded/quiet = {:.2}", f / q)?;
    Ok(())
}

/// CPU seconds (user and system) the process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("unreadable /proc stat")?;
    let field = |i: usize| -> Result<f64> {
        Ok(rest
            .split(' ')
            .nth(i)
            .context("short /proc stat")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; in clock
    // ticks, which are 100 a second on Linux.
    Ok((field(11)? + field(12)?) / 100.0)
}

/// The machine's CPU seconds so far from `/proc/stat`: busy (user, nice, system, irq,
/// softirq), idle (idle and iowait), and stolen by the hypervisor.
fn machine_cpu_seconds() -> Result<[f64; 3]> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let n: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse::<f64>)
        .collect::<Result<_, _>>()?;
    let at = |i: usize| n.get(i).copied().unwrap_or(0.0) / 100.0;
    Ok([at(0) + at(1) + at(2) + at(5) + at(6), at(3) + at(4), at(7)])
}

/// Encrypt requests/s with and without the audit trail: two builds of the same source, each
/// on its own fresh data dir, cells in ABBA order at each concurrency.
/// `--audit-record`: the request path's share of the trail, through the public API.
async fn audit_record(events: u32) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = arca_host::audit::AuditLog::open(
        &dir.path().join("audit.log"),
        arca_host::secret::SecretBytes::random(32),
    )?;
    let event = arca_host::audit::AuditEvent {
        time: time::OffsetDateTime::now_utc(),
        request_id: "6F2C0D4A-8B1E-4C53-9A77-00000000002A".into(),
        action: "Encrypt".into(),
        account: Some("1234567890123456".into()),
        access_key_id: Some("LTAIeyph5q9gjbejegy72vnt".into()),
        source_ip: "127.0.0.1".into(),
        resource: Some("acs:kms:cn-hangzhou:1234567890123456:key/key-hanvo1zwv0309rd7vik5".into()),
        key_version: Some("15fe29cc-a7db-4bd1-a745-c2d9afc2d15e".into()),
        result: "OK",
        status: 200,
    };
    let started = Instant::now();
    for _ in 0..events {
        log.record(event.clone()).await?;
    }
    let per = started.elapsed() / events.max(1);
    let mut out = std::io::stdout().lock();
    writeln!(out, "audit record: {per:?} per event over {events} events")?;
    Ok(())
}

async fn audit_cost(args: &Args, baseline: &std::path::Path) -> Result<()> {
    struct Target {
        server: TestServer,
        addr: SocketAddr,
        creds: Arc<Credentials>,
        work: Arc<Workload>,
    }
    let start = |server: TestServer| async move {
        let creds = Arc::new(server.credentials()?);
        let work = Arc::new(workload(&server.client()?, "encrypt").await?);
        let addr: SocketAddr = server.endpoint.parse()?;
        anyhow::Ok(Target {
            server,
            addr,
            creds,
            work,
        })
    };
    // The audited server's admin listener tells which thread made its lines.
    let admin = format!("127.0.0.1:{}", free_port());
    let audited = start(
        TestServer::start_with(&["--admin-listen", &admin], Vec::new()).context("starting arca")?,
    )
    .await?;
    let unaudited = start(
        TestServer::start_bin(
            baseline.to_path_buf(),
            // The baseline build refuses to start without this.
            vec![("ARCA_UNAUDITED_BENCHMARK_BASELINE".into(), "1".into())],
        )
        .context("starting the baseline build")?,
    )
    .await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "audit trail cost: Encrypt 1 KiB, {} s cells, ABBA; audited = {}, unaudited = {}",
        args.seconds,
        arca_bin().display(),
        baseline.display()
    )?;
    writeln!(
        out,
        "| conns | unaudited req/s | audited req/s | audited p50/p99 µs | audited/unaudited | cut | cut per round | server CPU µs/req unaudited / audited | rest busy/idle/steal µs/req unaudited / audited |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---|---:|---:|")?;
    let (mut requests, mut errors) = (0, 0);
    for &c in &args.concurrency {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        // Server CPU seconds and requests per side, to tell time spent computing from time
        // spent waiting.
        let (mut cpu_with, mut cpu_without) = ((0.0, 0), (0.0, 0));
        // The rest of the machine per side: busy CPU outside the server and this generator,
        // idle, and stolen, to see work the trail causes elsewhere (the kernel's writeback).
        let (mut rest_with, mut rest_without) = ([0.0; 3], [0.0; 3]);
        let cells = [true, false, false, true];
        for audit in cells
            .iter()
            .cycle()
            .take(cells.len() * args.rounds.max(1))
            .copied()
        {
            let t = if audit { &audited } else { &unaudited };
            let pid = t.server.pid().context("a server is not running")?;
            let cpu_before = cpu_seconds(pid)?;
            let me_before = cpu_seconds(std::process::id())?;
            let machine_before = machine_cpu_seconds()?;
            let cell = load(
                t.addr,
                Arc::clone(&t.creds),
                Arc::clone(&t.work),
                c,
                args.seconds,
            )
            .await?;
            let cpu = cpu_seconds(pid)? - cpu_before;
            let me = cpu_seconds(std::process::id())? - me_before;
            let machine = machine_cpu_seconds()?;
            let rest = if audit {
                &mut rest_with
            } else {
                &mut rest_without
            };
            rest[0] += machine[0] - machine_before[0] - cpu - me;
            rest[1] += machine[1] - machine_before[1];
            rest[2] += machine[2] - machine_before[2];
            let side = if audit {
                &mut cpu_with
            } else {
                &mut cpu_without
            };
            *side = (side.0 + cpu, side.1 + cell.requests);
            errors += cell.errors;
            if audit {
                requests += cell.requests;
                with.push(cell);
            } else {
                without.push(cell);
            }
        }
        let per_request = |(cpu, n): (f64, u64)| cpu * 1e6 / n.max(1) as f64;
        let rest_per_request = |rest: [f64; 3], n: u64| {
            let [busy, idle, steal] = rest.map(|s| s * 1e6 / n.max(1) as f64);
            format!("{busy:.1}/{idle:.1}/{steal:.1}")
        };
        let mean = |cells: &[Cell]| cells.iter().map(|c| c.rps).sum::<f64>() / cells.len() as f64;
        let (a, u) = (mean(&with), mean(&without));
        let rounds: Vec<String> = with
            .chunks(2)
            .zip(without.chunks(2))
            .map(|(w, o)| format!("{:.1}%", (1.0 - mean(w) / mean(o)) * 100.0))
            .collect();
        let p50 = with.iter().map(|c| c.p50_us).max().unwrap_or(0);
        let p99 = with.iter().map(|c| c.p99_us).max().unwrap_or(0);
        writeln!(
            out,
            "| {c} | {u:.0} | {a:.0} | {p50}/{p99} | {:.3} | {:.1}% | {} | {:.1} / {:.1} | {} / {} |",
            a / u,
            (1.0 - a / u) * 100.0,
            rounds.join(", "),
            per_request(cpu_without),
            per_request(cpu_with),
            rest_per_request(rest_without, cpu_without.1),
            rest_per_request(rest_with, cpu_with.1),
        )?;
    }
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    // The comparison means something only if one side audits every call and the other none.
    // The last lines reach the trail file from the journal within the appender's 50 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = |t: &Target| {
        std::fs::read(t.server.data_dir.join("audit.log"))
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0)
    };
    let (a, u) = (lines(&audited), lines(&unaudited));
    writeln!(
        out,
        "audit lines: audited {a} (for {requests} measured requests), unaudited {u}"
    )?;
    let (_, metrics) = arca_client::get(&format!("http://{admin}/metrics")).await?;
    let made_by = String::from_utf8_lossy(&metrics)
        .lines()
        .filter(|l| l.starts_with("arca_audit_lines_total"))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(out, "audited lines made by: {made_by}")?;
    if a < requests || u > 0 {
        bail!("the baseline is not an unaudited build, or the audited one missed events");
    }
    Ok(())
}

async fn tables(args: &Args) -> Result<()> {
    let arca = TestServer::start()
        .context("starting arca (build it with `cargo build --release --bins`)")?;
    let creds = Arc::new(arca.credentials()?);
    let client = arca.client()?;
    let mut workloads = Vec::new();
    for name in &args.workloads {
        workloads.push(Arc::new(workload(&client, name).await?));
    }

    let bare_port = free_port();
    let mut bare = std::process::Command::new(std::env::current_exe()?)
        .args(["--bare-server", &bare_port.to_string()])
        .spawn()?;
    let bare_addr: SocketAddr = format!("127.0.0.1:{bare_port}").parse()?;
    let arca_addr: SocketAddr = arca.endpoint.parse()?;
    for _ in 0..200 {
        if TcpStream::connect(bare_addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "arca-bench: V3-signed keep-alive requests, {} s per cell; arca = {}",
        args.seconds,
        arca_bin().display()
    )?;
    writeln!(
        out,
        "| workload | conns | bare req/s | bare p50/p99 µs | Arca req/s | Arca p50/p99 µs | Arca/bare |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    let mut failed = false;
    for work in &workloads {
        for &c in &args.concurrency {
            let b = load(
                bare_addr,
                Arc::clone(&creds),
                Arc::clone(work),
                c,
                args.seconds,
            )
            .await?;
            let a = load(
                arca_addr,
                Arc::clone(&creds),
                Arc::clone(work),
                c,
                args.seconds,
            )
            .await?;
            writeln!(
                out,
                "| {} | {c} | {:.0} | {}/{} | {:.0} | {}/{} | {:.2} |",
                work.name,
                b.rps,
                b.p50_us,
                b.p99_us,
                a.rps,
                a.p50_us,
                a.p99_us,
                a.rps / b.rps
            )?;
            if a.errors > 0 || b.errors > 0 {
                writeln!(
                    out,
                    "  errors: arca {} of {}, bare {} of {}",
                    a.errors, a.requests, b.errors, b.requests
                )?;
                failed = true;
            }
        }
    }
    let _ = bare.kill();
    let _ = bare.wait();
    if failed {
        bail!("some requests failed");
    }
    Ok(())
}

/// What the HSM comparison measures: the token operation behind one Arca action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HsmOp {
    /// Encrypt 1 KiB under an `Aliyun_AES_256` key: AES-256-GCM in the token.
    Aes,
    /// AsymmetricSign with `RSA_2048`, RSA_PSS_SHA_256.
    Rsa,
    /// AsymmetricSign with `EC_P256`, ECDSA_SHA_256.
    Ec,
}

impl HsmOp {
    const ALL: [HsmOp; 3] = [HsmOp::Aes, HsmOp::Rsa, HsmOp::Ec];

    fn name(self) -> &'static str {
        match self {
            HsmOp::Aes => "aes",
            HsmOp::Rsa => "rsa",
            HsmOp::Ec => "ec",
        }
    }

    fn title(self) -> &'static str {
        match self {
            HsmOp::Aes => "Encrypt 1 KiB, Aliyun_AES_256 (AES-256-GCM in the token)",
            HsmOp::Rsa => "AsymmetricSign, RSA_2048 RSA_PSS_SHA_256",
            HsmOp::Ec => "AsymmetricSign, EC_P256 ECDSA_SHA_256",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| anyhow::anyhow!("unknown HSM operation {name}"))
    }
}

/// The direct side of the HSM comparison, in a child process (SoftHSM reads `SOFTHSM2_CONF`
/// when the library initialises, so the token's environment is the child's): `threads`
/// threads calling the token for `seconds` through the same session pool Arca uses
/// (`keystore::hsm`), on a key of their own. Prints the calls per second.
fn hsm_direct(spec: &str) -> Result<()> {
    use arca_host::keystore::hsm::{Hsm, HsmConfig, PairSpec, RsaPadding, SignMechanism};
    let mut parts = spec.splitn(4, ',');
    let (Some(seconds), Some(threads), Some(op), Some(label)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("--hsm-direct seconds,threads,op,label");
    };
    let (seconds, threads, op): (u64, usize, HsmOp) =
        (seconds.parse()?, threads.parse()?, HsmOp::parse(op)?);
    let hsm: Arc<dyn arca_host::keystore::Token> = Arc::new(Hsm::open(HsmConfig {
        module: arca_tests::SoftHsm::MODULE.into(),
        token_label: label.to_owned(),
        pin: arca_host::secret::SecretString::new(std::env::var("ARCA_HSM_PIN")?),
    })?);
    let version = arca_host::ids::KeyVersionId::generate();
    match op {
        HsmOp::Aes => hsm.generate_aes(&version, 32)?,
        HsmOp::Rsa => hsm.generate_pair(&version, PairSpec::Rsa(2048), true)?,
        HsmOp::Ec => hsm.generate_pair(&version, PairSpec::P256, true)?,
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (hsm, version) = (Arc::clone(&hsm), version.clone());
            std::thread::spawn(move || -> Result<u64> {
                let plaintext = vec![b'a'; 1024];
                let aad = [0u8; 52];
                let digest = [7u8; 32];
                let mut n: u64 = 0;
                while Instant::now() < deadline {
                    match op {
                        HsmOp::Aes => {
                            let mut nonce = [0u8; 12];
                            nonce[..8].copy_from_slice(&n.to_be_bytes());
                            nonce[8] = t as u8;
                            hsm.gcm_seal(&version, &nonce, &aad, &plaintext)?;
                        }
                        HsmOp::Rsa => {
                            hsm.sign(&version, SignMechanism::Rsa(RsaPadding::Pss), &digest)?;
                        }
                        HsmOp::Ec => {
                            hsm.sign(&version, SignMechanism::Ecdsa, &digest)?;
                        }
                    }
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    writeln!(
        std::io::stdout().lock(),
        "{:.0}",
        total as f64 / started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// The Arca request for `op` on a new HSM key.
async fn hsm_workload(
    client: &arca_client::Client,
    op: HsmOp,
    protection: &str,
) -> Result<Workload> {
    use base64::Engine;
    let spec = match op {
        HsmOp::Aes => "Aliyun_AES_256",
        HsmOp::Rsa => "RSA_2048",
        HsmOp::Ec => "EC_P256",
    };
    let usage = if op == HsmOp::Aes {
        "ENCRYPT/DECRYPT"
    } else {
        "SIGN/VERIFY"
    };
    let key = client
        .call(
            "CreateKey",
            &[
                ("KeySpec", spec),
                ("KeyUsage", usage),
                ("ProtectionLevel", protection),
            ],
        )
        .await?;
    let id = key["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let version = key["KeyMetadata"]["PrimaryKeyVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let digest = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    Ok(match op {
        HsmOp::Aes => Workload {
            name: "Encrypt 1 KiB (HSM key)",
            action: "Encrypt",
            params: vec![("KeyId".into(), id), ("Plaintext".into(), "a".repeat(1024))],
        },
        HsmOp::Rsa | HsmOp::Ec => Workload {
            name: "AsymmetricSign (HSM key)",
            action: "AsymmetricSign",
            params: vec![
                ("KeyId".into(), id),
                ("KeyVersionId".into(), version),
                (
                    "Algorithm".into(),
                    if op == HsmOp::Rsa {
                        "RSA_PSS_SHA_256"
                    } else {
                        "ECDSA_SHA_256"
                    }
                    .into(),
                ),
                ("Digest".into(), digest),
            ],
        },
    })
}

/// Each HSM operation through Arca against direct token calls at the same concurrency, in one
/// run, on one SoftHSM2 token.
async fn hsm_table(args: &Args) -> Result<()> {
    let hsm = arca_tests::SoftHsm::start("arca-bench")?;
    let flags = hsm.args();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let arca = TestServer::start_with(&flags, hsm.env())?;
    let client = arca.client()?;
    let mut out = std::io::stdout().lock();
    for op in HsmOp::ALL {
        let work = Arc::new(hsm_workload(&client, op, "HSM").await?);
        let software = Arc::new(hsm_workload(&client, op, "SOFTWARE").await?);
        writeln!(
            out,
            "\nHSM (SoftHSM2): {}, {} s per cell",
            op.title(),
            args.seconds
        )?;
        writeln!(
            out,
            "| conns / threads | direct cryptoki calls/s | Arca req/s | Arca p50/p99 µs | Arca/direct | same action, SOFTWARE key, req/s |"
        )?;
        writeln!(out, "|---:|---:|---:|---:|---:|---:|")?;
        for &c in &args.concurrency {
            let threads = c.min(8);
            let direct = std::process::Command::new(std::env::current_exe()?)
                .arg("--hsm-direct")
                .arg(format!(
                    "{},{threads},{},{}",
                    args.seconds,
                    op.name(),
                    hsm.label
                ))
                .envs(hsm.env())
                .output()?;
            if !direct.status.success() {
                bail!(
                    "direct HSM run: {}",
                    String::from_utf8_lossy(&direct.stderr)
                );
            }
            let direct: f64 = String::from_utf8_lossy(&direct.stdout).trim().parse()?;
            let cell = load(
                arca.endpoint.parse()?,
                Arc::new(arca.credentials()?),
                Arc::clone(&work),
                c,
                args.seconds,
            )
            .await?;
            let soft = load(
                arca.endpoint.parse()?,
                Arc::new(arca.credentials()?),
                Arc::clone(&software),
                c,
                args.seconds,
            )
            .await?;
            if cell.errors + soft.errors > 0 {
                bail!("{} errors", cell.errors + soft.errors);
            }
            writeln!(
                out,
                "| {c} / {threads} | {direct:.0} | {:.0} | {}/{} | {:.2} | {:.0} |",
                cell.rps,
                cell.p50_us,
                cell.p99_us,
                cell.rps / direct,
                soft.rps
            )?;
        }
    }
    Ok(())
}

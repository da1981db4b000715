//! Soak mode of the bench harness (`arca-bench --soak-minutes M`): a fixed request rate for
//! minutes, reporting errors, latency and the server's memory as it goes.
//!
//! The load is a mix of Encrypt (1 KiB), Decrypt, GenerateDataKey and GetSecretValue, each
//! request freshly V3-signed. The peak is measured first with the same mix (closed loop, as
//! many requests as the connections carry); the soak then sends at a fraction of it open loop:
//! request k of connection i is due at `start + (k·C + i) / rate`, so a slow server cannot slow
//! the generator down and hide its backlog. The server's resident memory (`VmRSS`) is sampled
//! every window, with the replay cache's size: every nonce is kept for the clock-skew window
//! (15 minutes by default), so memory grows by design until the first nonces expire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arca_client::Credentials;
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::{Served, TestServer};

/// How a soak goes.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long to hold the rate.
    pub duration: Duration,
    /// The rate as a fraction of the measured peak.
    pub fraction: f64,
    /// Keep-alive connections.
    pub connections: usize,
    /// How long the peak is measured.
    pub peak_for: Duration,
    /// Report window.
    pub window: Duration,
    /// The server's admin listener, to read the replay cache's size from `/metrics`.
    pub admin: Option<String>,
}

/// One report window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Seconds since the soak began, at the window's end.
    pub at_s: u64,
    /// Requests answered in the window.
    pub requests: u64,
    /// Of which non-2xx or failed.
    pub errors: u64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// The server's resident memory at the window's end, MiB.
    pub rss_mib: f64,
    /// Nonces in the replay cache then (when the admin listener is known).
    pub nonces: Option<u64>,
}

/// What a soak did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Requests/s of the mix at saturation.
    pub peak_rps: f64,
    /// The rate asked for.
    pub target_rps: f64,
    /// The rate achieved over the soak.
    pub achieved_rps: f64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (non-2xx or transport).
    pub errors: u64,
    /// The windows.
    pub windows: Vec<Window>,
    /// Resident memory after the first window (warm), and at the end, MiB.
    pub rss_warm_mib: f64,
    /// Resident memory at the end, MiB.
    pub rss_end_mib: f64,
}

/// The mix's requests, signed afresh each time.
struct Mix {
    requests: Vec<(&'static str, Vec<(String, String)>)>,
}

async fn mix(client: &arca_client::Client) -> Result<Mix> {
    let key = client.call("CreateKey", &[]).await?["KeyMetadata"]["KeyId"]
        .as_str()
        .context("KeyId")?
        .to_owned();
    let blob = client
        .call("Encrypt", &[("KeyId", &key), ("Plaintext", "soak")])
        .await?["CiphertextBlob"]
        .as_str()
        .context("CiphertextBlob")?
        .to_owned();
    client
        .call(
            "CreateSecret",
            &[
                ("SecretName", "soak"),
                ("SecretData", "soak value"),
                ("VersionId", "v1"),
            ],
        )
        .await?;
    let s = |v: &str| v.to_owned();
    Ok(Mix {
        requests: vec![
            (
                "Encrypt",
                vec![
                    (s("KeyId"), key.clone()),
                    (s("Plaintext"), "a".repeat(1024)),
                ],
            ),
            ("Decrypt", vec![(s("CiphertextBlob"), blob)]),
            ("GenerateDataKey", vec![(s("KeyId"), key)]),
            ("GetSecretValue", vec![(s("SecretName"), s("soak"))]),
        ],
    })
}

/// Latencies (µs) and errors since the last window.
#[derive(Default)]
struct Tally {
    lat: Vec<u64>,
    errors: u64,
}

/// Sends requests on one connection until `until`; with `schedule` (start, rate, index, of),
/// each at its due time, else back to back.
async fn connection(
    addr: SocketAddr,
    creds: Arc<Credentials>,
    mix: Arc<Mix>,
    tally: Arc<Mutex<Tally>>,
    until: Instant,
    schedule: Option<(Instant, f64, usize, usize)>,
) -> Result<u64> {
    let mut sender = crate::http1_connection(addr).await?;
    let host = addr.to_string();
    let mut sent = 0u64;
    loop {
        if let Some((start, rate, i, of)) = schedule {
            let due = start + Duration::from_secs_f64((sent as f64 * of as f64 + i as f64) / rate);
            if due >= until {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        } else if Instant::now() >= until {
            break;
        }
        let (action, params) = &mix.requests[sent as usize % mix.requests.len()];
        let req = crate::signed(
            &host,
            &creds.access_key_id,
            creds.access_key_secret.as_bytes(),
            action,
            params,
        );
        let t = Instant::now();
        sender.ready().await?;
        let ok = match sender.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                resp.into_body().collect().await.is_ok() && ok
            }
            Err(_) => false,
        };
        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut tally = tally.lock().await;
        tally.lat.push(us);
        tally.errors += u64::from(!ok);
        sent += 1;
    }
    Ok(sent)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// The server's resident memory in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// `arca_replay_cache_nonces` from the admin listener's `/metrics`.
async fn replay_cache(admin: &str) -> Option<u64> {
    let (_, body) = arca_client::get(&format!("http://{admin}/metrics"))
        .await
        .ok()?;
    String::from_utf8_lossy(&body).lines().find_map(|l| {
        l.strip_prefix("arca_replay_cache_nonces ")?
            .trim()
            .parse()
            .ok()
    })
}

/// Measures the peak, then holds `config.fraction` of it for `config.duration`, calling
/// `on_window` after each window.
pub async fn run(
    server: &TestServer,
    config: &Config,
    mut on_window: impl FnMut(&Window),
) -> Result<Report> {
    let pid = server.pid().context("the server is not running")?;
    let addr: SocketAddr = server.endpoint.parse()?;
    let creds = Arc::new(server.credentials()?);
    let mix = Arc::new(mix(&server.client()?).await?);

    let peak_tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + config.peak_for;
    let mut peak = Vec::new();
    let t0 = Instant::now();
    for _ in 0..config.connections {
        peak.push(tokio::spawn(connection(
            addr,
            Arc::clone(&creds),
            Arc::clone(&mix),
            Arc::clone(&peak_tally),
            until,
            None,
        )));
    }
    let mut peak_requests = 0;
    for p in peak {
        peak_requests += p.await??;
    }
    let peak_rps = peak_requests as f64 / t0.elapsed().as_secs_f64();
    if peak_tally.lock().await.errors > 0 {
        bail!("requests failed while measuring the peak");
    }

    let target = peak_rps * config.fraction;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let until = start + config.duration;
    let mut conns = Vec::new();
    for i in 0..config.connections {
        conns.push(tokio::spawn(connection(
            addr,
            Arc::clone(&creds),
            Arc::clone(&mix),
            Arc::clone(&tally),
            until,
            Some((start, target, i, config.connections)),
        )));
    }
    let mut windows = Vec::new();
    let mut next = start + config.window;
    while next <= until {
        tokio::time::sleep_until(next.into()).await;
        let mut taken = std::mem::take(&mut *tally.lock().await);
        taken.lat.sort_unstable();
        let w = Window {
            at_s: (next - start).as_secs(),
            requests: taken.lat.len() as u64,
            errors: taken.errors,
            p50_us: percentile(&taken.lat, 0.5),
            p99_us: percentile(&taken.lat, 0.99),
            rss_mib: rss_mib(pid)?,
            nonces: match &config.admin {
                Some(admin) => replay_cache(admin).await,
                None => None,
            },
        };
        on_window(&w);
        windows.push(w);
        next += config.window;
    }
    let mut requests = 0;
    for c in conns {
        requests += c.await??;
    }
    let rest = std::mem::take(&mut *tally.lock().await);
    let errors = windows.iter().map(|w| w.errors).sum::<u64>() + rest.errors;
    Ok(Report {
        peak_rps,
        target_rps: target,
        achieved_rps: requests as f64 / config.duration.as_secs_f64(),
        requests,
        errors,
        rss_warm_mib: windows.first().map_or(0.0, |w| w.rss_mib),
        rss_end_mib: rss_mib(pid)?,
        windows,
    })
}

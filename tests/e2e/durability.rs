//! Nothing acknowledged is lost: SIGKILL at any moment, restart, and every key, version, alias
//! and ciphertext the server ever acknowledged is still there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arca_tests::Served;

use crate::{new_key, process_server};

#[tokio::test]
async fn acknowledged_state_survives_kill_9() {
    let mut s = process_server();
    let c = s.client().unwrap();
    let mut sealed = Vec::new();
    for i in 0..5 {
        let key = new_key(
            &c,
            if i % 2 == 0 {
                "Aliyun_AES_256"
            } else {
                "Aliyun_SM4"
            },
        )
        .await;
        let alias = format!("alias/durable-{i}");
        c.call("CreateAlias", &[("AliasName", &alias), ("KeyId", &key)])
            .await
            .unwrap();
        c.call(
            "UpdateKeyDescription",
            &[("KeyId", &key), ("Description", &format!("d{i}"))],
        )
        .await
        .unwrap();
        let e = c
            .call(
                "Encrypt",
                &[("KeyId", &alias), ("Plaintext", &format!("p{i}"))],
            )
            .await
            .unwrap();
        sealed.push((
            key,
            alias,
            e["CiphertextBlob"].as_str().unwrap().to_owned(),
            format!("p{i}"),
        ));
    }
    c.call("DisableKey", &[("KeyId", &sealed[0].0)])
        .await
        .unwrap();
    s.kill9().unwrap();
    s.restart().unwrap();
    let c = s.client().unwrap();
    let list = c.call("ListKeys", &[("PageSize", "100")]).await.unwrap();
    assert_eq!(list["TotalCount"], 5);
    for (i, (key, alias, blob, plain)) in sealed.iter().enumerate() {
        let d = c.call("DescribeKey", &[("KeyId", alias)]).await.unwrap();
        assert_eq!(d["KeyMetadata"]["KeyId"], key.as_str());
        assert_eq!(d["KeyMetadata"]["Description"], format!("d{i}"));
        if i == 0 {
            assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");
            c.call("EnableKey", &[("KeyId", key)]).await.unwrap();
        }
        let p = c
            .call("Decrypt", &[("CiphertextBlob", blob)])
            .await
            .unwrap();
        assert_eq!(p["Plaintext"], plain.as_str());
    }
}

#[derive(Default)]
struct Acked {
    keys: Vec<String>,
    aliases: Vec<(String, String)>,
    blobs: Vec<(String, String)>,
}

/// A mixed write load runs while the server is SIGKILLed at varying moments; after each restart
/// every write that was answered with success must be present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_under_load_lose_no_acknowledged_write() {
    let mut s = process_server();
    let acked = Arc::new(Mutex::new(Acked::default()));
    for round in 0..6u64 {
        let c = s.client().unwrap();
        let mut workers = Vec::new();
        for w in 0..3u64 {
            let (c, acked) = (c.clone(), Arc::clone(&acked));
            workers.push(tokio::spawn(async move {
                for i in 0.. {
                    let Ok(r) = c.call("CreateKey", &[]).await else {
                        return;
                    };
                    let key = r["KeyMetadata"]["KeyId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    acked.lock().unwrap().keys.push(key.clone());
                    let alias = format!("alias/r{round}-w{w}-{i}");
                    if c.call("CreateAlias", &[("AliasName", &alias), ("KeyId", &key)])
                        .await
                        .is_err()
                    {
                        return;
                    }
                    acked.lock().unwrap().aliases.push((alias, key.clone()));
                    let plain = format!("{round}/{w}/{i}");
                    let Ok(e) = c
                        .call("Encrypt", &[("KeyId", &key), ("Plaintext", &plain)])
                        .await
                    else {
                        return;
                    };
                    let blob = e["CiphertextBlob"].as_str().unwrap_or_default().to_owned();
                    acked.lock().unwrap().blobs.push((blob, plain));
                }
            }));
        }
        // Kill at a different point of the load each round.
        tokio::time::sleep(Duration::from_millis(150 + 97 * round)).await;
        s.kill9().unwrap();
        for w in workers {
            let _ = w.await;
        }
        s.restart().unwrap();
    }
    let c = s.client().unwrap();
    let acked = Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap();
    assert!(
        acked.keys.len() >= 6,
        "the load made progress: {} keys",
        acked.keys.len()
    );
    let listed = c.call("ListKeys", &[("PageSize", "100")]).await.unwrap();
    assert!(listed["TotalCount"].as_u64().unwrap() >= acked.keys.len() as u64);
    for key in &acked.keys {
        c.call("DescribeKey", &[("KeyId", key)]).await.unwrap();
    }
    for (alias, key) in &acked.aliases {
        let d = c.call("DescribeKey", &[("KeyId", alias)]).await.unwrap();
        assert_eq!(d["KeyMetadata"]["KeyId"], key.as_str());
    }
    for (blob, plain) in &acked.blobs {
        let p = c
            .call("Decrypt", &[("CiphertextBlob", blob)])
            .await
            .unwrap();
        assert_eq!(p["Plaintext"], plain.as_str());
    }
}

/// The crash-safety suite, CI-sized: 50 SIGKILLs at random moments under a mixed load (the
/// seed is printed; `arca-crash --seed S` replays a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_random_kills_lose_nothing_acknowledged() {
    let seed = fastrand::u64(..);
    eprintln!("crash suite seed {seed}");
    let mut s = process_server();
    let config = arca_tests::crash::Config {
        kills: 50,
        workers: 3,
        max_load: Duration::from_millis(300),
        seed,
    };
    let report = arca_tests::crash::run(&mut s, &config)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
    eprintln!("{report:?}");
    assert_eq!(report.kills, 50 + report.kills_at_start);
    // The load made progress between kills, so the checks covered real writes.
    assert!(report.keys >= 50, "{report:?}");
    assert!(report.ciphertexts >= 50, "{report:?}");
    assert!(report.secret_versions >= 20, "{report:?}");
    assert!(report.alias_changes >= 10, "{report:?}");
    assert!(report.key_versions >= 5, "{report:?}");
    assert!(report.audit_events > 0);
    // A call that never returns after a kill is a client-side rarity, not a habit.
    assert!(report.workers_abandoned <= 2, "{report:?}");
}

/// The bench harness's soak mode, seconds-sized: it holds the asked rate (open loop) with no
/// errors and samples the server's memory each window. The README quotes a 10-minute run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_mode_holds_a_fixed_rate_and_samples_memory() {
    let s = process_server();
    let config = arca_tests::soak::Config {
        duration: Duration::from_secs(4),
        fraction: 0.5,
        connections: 4,
        peak_for: Duration::from_secs(2),
        window: Duration::from_secs(1),
        admin: None,
    };
    let mut seen = 0;
    let report = arca_tests::soak::run(&s, &config, |_| seen += 1)
        .await
        .unwrap();
    eprintln!("{report:?}");
    assert_eq!(seen, 4);
    assert_eq!(report.windows.len(), 4);
    assert_eq!(report.errors, 0);
    assert!(report.peak_rps > 0.0);
    let ratio = report.achieved_rps / report.target_rps;
    assert!((0.9..=1.05).contains(&ratio), "{report:?}");
    assert!(
        report
            .windows
            .iter()
            .all(|w| w.rss_mib > 1.0 && w.requests > 0)
    );
}

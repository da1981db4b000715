//! The admin listener: Prometheus `/metrics` with exact request counts, keys by state and
//! plugin counters; `/healthz`, `/readyz` and `arca status`; JSON logs carrying request ids.

use std::process::Command;

use arca_tests::{Served, TestServer, arca_bin, free_port, json_output};

use crate::new_key;

async fn get(admin: &str, path: &str) -> (u16, String) {
    let (code, body) = arca_client::get(&format!("http://{admin}{path}"))
        .await
        .unwrap();
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// The value of the sample named exactly `series` (name and labels) in a Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_health_readiness_and_status() {
    let admin = format!("127.0.0.1:{}", free_port());
    let s = TestServer::start_with_args(&["--admin-listen", &admin]).unwrap();
    let c = s.client().unwrap();

    assert_eq!(get(&admin, "/healthz").await, (200, "ok\n".into()));
    let (code, ready) = get(&admin, "/readyz").await;
    assert_eq!(code, 200, "{ready}");
    for check in ["serving: ok", "store: ok", "audit: ok"] {
        assert!(ready.contains(check), "{ready}");
    }

    let key = new_key(&c, "Aliyun_AES_256").await;
    let disabled = new_key(&c, "Aliyun_AES_256").await;
    c.call("DisableKey", &[("KeyId", &disabled)]).await.unwrap();
    for _ in 0..3 {
        c.call("Encrypt", &[("KeyId", &key), ("Plaintext", "aGk=")])
            .await
            .unwrap();
    }
    let missing = c
        .call(
            "Encrypt",
            &[("KeyId", "key-missing"), ("Plaintext", "aGk=")],
        )
        .await;
    assert_eq!(missing.unwrap_err().code(), Some("Forbidden.KeyNotFound"));
    // A made-up action is counted, but under one shared label, not its own.
    let made_up = c.call("NoSuchAction1234", &[]).await;
    assert!(made_up.is_err());

    let (code, text) = get(&admin, "/metrics").await;
    assert_eq!(code, 200);
    let api = |action: &str, code: &str| {
        sample(
            &text,
            &format!(r#"arca_requests_total{{plane="api",action="{action}",code="{code}"}}"#),
        )
    };
    assert_eq!(api("Encrypt", "OK"), Some(3.0), "{text}");
    assert_eq!(api("Encrypt", "Forbidden.KeyNotFound"), Some(1.0));
    assert_eq!(api("CreateKey", "OK"), Some(2.0));
    assert_eq!(api("unknown", "InvalidApi.NotFound"), Some(1.0), "{text}");
    assert!(!text.contains("NoSuchAction1234"));
    assert_eq!(
        sample(
            &text,
            r#"arca_request_duration_seconds_count{plane="api",action="Encrypt"}"#
        ),
        Some(4.0)
    );
    assert_eq!(sample(&text, r#"arca_keys{state="Enabled"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"arca_keys{state="Disabled"}"#), Some(1.0));
    assert_eq!(
        sample(&text, r#"arca_keys{state="PendingDeletion"}"#),
        Some(0.0)
    );
    assert_eq!(sample(&text, "arca_ready"), Some(1.0));
    assert_eq!(sample(&text, "arca_audit_up"), Some(1.0));
    for by in ["appender", "preparer"] {
        let name = format!(r#"arca_audit_lines_total{{by="{by}"}}"#);
        assert!(sample(&text, &name).is_some(), "{name} missing");
    }
    assert!(text.ends_with("# EOF\n"));

    let status = json_output(Command::new(arca_bin()).args(["status", "--admin", &admin])).unwrap();
    assert_eq!(status["Ready"], true);
    assert_eq!(status["Inventory"]["Secrets"], 0);
    assert!(status["Audit"]["Events"].as_u64().unwrap() >= 8, "{status}");
    assert_eq!(status["Inventory"]["Keys"]["Disabled"], 1);
    assert!(status["Audit"]["Error"].is_null());

    assert_eq!(get(&admin, "/nope").await.0, 404);
}

#[tokio::test]
async fn status_fails_when_nothing_answers() {
    let out = Command::new(arca_bin())
        .args(["status", "--admin", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin listener"));
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let s = TestServer::start_with(
        &["--log-format", "json"],
        vec![("RUST_LOG".into(), "warn,arca_host=debug".into())],
    )
    .unwrap();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let reply = c
        .call(
            "Encrypt",
            &[("KeyId", &key), ("Plaintext", "cGxhaW50ZXh0LW1hcmtlcg==")],
        )
        .await
        .unwrap();
    let request_id = reply["RequestId"].as_str().unwrap();
    // The line is written as the reply goes out; give a loaded machine (the soak test may run
    // beside this one) a few seconds.
    let mut found = None;
    for _ in 0..250 {
        let log = std::fs::read_to_string(s.log_path()).unwrap();
        found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["span"]["request_id"] == request_id);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let line = found.expect("a JSON log line with the reply's request id");
    assert_eq!(line["fields"]["action"], "Encrypt");
    assert_eq!(line["fields"]["code"], "OK");
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(!log.contains("cGxhaW50ZXh0LW1hcmtlcg"));
}

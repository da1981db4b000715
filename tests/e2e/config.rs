//! `arca.toml`: `arca config check`, `arca serve --config` with flags over the file, and every
//! setting's flag being the one the reference names.

use std::process::Command;

use arca_client::signing::format_utc;
use arca_tests::{Served, TestServer, arca_bin};

use crate::{describe_regions_signed_at, server};

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arca.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(arca_bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_fills_in_defaults_and_names_what_is_wrong() {
    let (ok, out, err) = check("region = \"cn-shanghai\"\n[api]\nmax-clock-skew = 60\n");
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Valid"], true);
    assert_eq!(v["Settings"]["region"], "cn-shanghai");
    assert_eq!(v["Settings"]["api"]["max-clock-skew"], 60);
    assert_eq!(
        v["Settings"]["api"]["listen"], "127.0.0.1:8080",
        "a default"
    );
    assert_eq!(v["Settings"]["instances"]["aap-policy"], "policy-default");

    for (text, says) in [
        ("[api]\nlisen = \"127.0.0.1:1\"\n", "unknown field `lisen`"),
        ("[hsm]\npin = \"1234\"\n", "unknown field `pin`"),
        ("[api]\nlisten = 8080\n", "line 2"),
        (
            "[api]\ntls-key = \"k.pem\"\n",
            "api.tls-cert and api.tls-key",
        ),
        (
            "[api]\ntls-cert = \"/nonexistent/c.pem\"\ntls-key = \"/nonexistent/k.pem\"\n",
            "TLS",
        ),
        (
            "[hsm]\nmodule = \"/m.so\"\ntoken = \"t\"\npin-env = \"ARCA_TEST_NO_SUCH_PIN\"\n",
            "ARCA_TEST_NO_SUCH_PIN",
        ),
    ] {
        let (ok, _, err) = check(text);
        assert!(!ok, "{text} was accepted");
        assert!(err.contains(says), "{text}: {err}");
    }
}

/// The file's settings serve, and a flag beats the file: the file's listener and data
/// directory are replaced by the harness's flags, its region and clock-skew window hold.
#[tokio::test]
async fn serve_takes_the_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arca.toml");
    std::fs::write(
        &file,
        format!(
            "data-dir = \"{}\"\nregion = \"cn-shanghai\"\n[api]\nlisten = \"127.0.0.1:1\"\nmax-clock-skew = 60\n",
            dir.path().join("not-this-one").display()
        ),
    )
    .unwrap();
    let s = TestServer::start_with_args(&["--config", file.to_str().unwrap()]).unwrap();
    assert!(
        !dir.path().join("not-this-one").exists(),
        "--data-dir beats data-dir"
    );
    let c = s.client().unwrap();
    let key = c.call("CreateKey", &[]).await.unwrap();
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap();
    assert!(arn.starts_with("acs:kms:cn-shanghai:"), "{arn}");

    let two_minutes_ago = format_utc(time::OffsetDateTime::now_utc() - time::Duration::minutes(2));
    let (status, body) = describe_regions_signed_at(&s, &two_minutes_ago).await;
    assert_eq!(status, 400, "the file's 60 s window holds: {body}");

    // A flag given as well beats the file's window.
    let wide = TestServer::start_with_args(&[
        "--config",
        file.to_str().unwrap(),
        "--max-clock-skew",
        "900",
    ])
    .unwrap();
    let (status, body) = describe_regions_signed_at(&wide, &two_minutes_ago).await;
    assert_eq!(status, 200, "{body}");
}

/// Every flag the reference table names is a flag of `arca serve`, and every `arca serve`
/// flag but `--config` is in the table.
#[test]
fn every_setting_has_the_flag_the_reference_names() {
    let help = Command::new(arca_bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut named = vec![
        "--config".to_owned(),
        "--help".to_owned(),
        "--log-format".to_owned(),
    ];
    for s in arca_host::config::SETTINGS {
        for flag in s.flag.split(", ").filter(|f| f.starts_with("--")) {
            let flag = flag.split(' ').next().unwrap_or_default();
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "{flag} of {} is not a serve flag:\n{help}",
                s.key
            );
            named.push(flag.to_owned());
        }
        assert!(
            help.contains(&format!("[{}]", s.key)) || s.flag.is_empty(),
            "serve --help does not say which setting a flag sets: {}",
            s.key
        );
    }
    for word in help.split_whitespace() {
        let flag = word.trim_end_matches([',', '.']);
        if flag.starts_with("--") && flag.len() > 2 && !flag.contains('=') {
            assert!(
                named.iter().any(|n| n == flag),
                "{flag} is not in the reference table"
            );
        }
    }
}

/// README command 1's server: from the repository root with no plugin flags, every shipped
/// plugin loads, and a Generic secret rotates through `rotator-generic` with nothing else set up.
#[tokio::test]
async fn the_quick_start_serves_every_shipped_plugin_and_rotates_a_secret() {
    let s = TestServer::start_as_quick_start().unwrap();
    let listed = s.cli(&["plugin", "list"]).unwrap();
    let mut loaded: Vec<&str> = listed["Plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["Status"] == "loaded")
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    loaded.sort_unstable();
    assert_eq!(
        loaded,
        [
            "policy-default",
            "rotator-generic",
            "rotator-postgres",
            "rotator-ram",
            "sse-ecs",
            "sse-oss"
        ],
        "{listed}"
    );
    let c = s.client().unwrap();
    c.call(
        "CreateSecret",
        &[
            ("SecretName", "app-token"),
            ("SecretData", "first"),
            ("VersionId", "v1"),
        ],
    )
    .await
    .unwrap();
    c.call(
        "RotateSecret",
        &[("SecretName", "app-token"), ("VersionId", "v2")],
    )
    .await
    .unwrap();
    let v = c
        .call("GetSecretValue", &[("SecretName", "app-token")])
        .await
        .unwrap();
    assert_eq!(v["VersionId"], "v2", "{v}");
    assert_ne!(v["SecretData"], "first", "{v}");
}

/// An in-process server takes a `Config` the same way (the harness's `LocalServer`).
#[tokio::test]
async fn an_in_process_server_serves_on_the_port_the_kernel_chose() {
    let s = server();
    assert!(!s.endpoint.ends_with(":0"), "{}", s.endpoint);
    let c = s.client().unwrap();
    let regions = c.call("DescribeRegions", &[]).await.unwrap();
    assert!(regions.to_string().contains("cn-hangzhou"), "{regions}");
}

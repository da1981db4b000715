//! Secret rotation through rotator plugins: RotateSecret with the shipped generic rotator, a
//! rotator that fails (error or trap) at each step, a kill -9 in the middle of a step, and the
//! schedule (in process, on a manual clock).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arca_client::Client;
use arca_tests::{Postgres, Served, TestServer, component, repo_root};

use crate::api_error;
use serde_json::{Value, json};

const STEPS: [&str; 4] = ["create-pending", "set-pending", "test-pending", "finish"];

/// A plugins directory with the shipped generic rotator and the flaky test rotator.
fn rotators(dir: &Path) -> PathBuf {
    let plugins = dir.join("plugins");
    for (name, source) in [
        ("rotator-generic", "plugins/rotator-generic"),
        ("flaky-rotator", "tests/components/flaky-rotator"),
        ("rotator-postgres", "plugins/rotator-postgres"),
        ("rotator-ram", "plugins/rotator-ram"),
    ] {
        let text = std::fs::read_to_string(repo_root().join(source).join("plugin.toml")).unwrap();
        let wasm_name = text
            .lines()
            .find_map(|l| l.strip_prefix("component = \""))
            .unwrap()
            .trim_end_matches('"');
        let wasm = component(&format!("{source}/{wasm_name}"));
        let text = text.replace(
            &format!("component = \"{wasm_name}\""),
            &format!("component = {:?}", wasm.display().to_string()),
        );
        let d = plugins.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("plugin.toml"), text).unwrap();
    }
    plugins
}

fn server(tmp: &Path) -> TestServer {
    let plugins = rotators(tmp).display().to_string();
    TestServer::start_with_args(&["--plugins-dir", &plugins]).unwrap()
}

async fn create(c: &Client, name: &str, data: &str, config: Value) -> Value {
    c.call(
        "CreateSecret",
        &[
            ("SecretName", name),
            ("SecretData", data),
            ("VersionId", "v1"),
            ("ExtendedConfig", &config.to_string()),
        ],
    )
    .await
    .unwrap()
}

async fn value(c: &Client, name: &str, stage: &str) -> Result<Value, arca_client::Error> {
    c.call(
        "GetSecretValue",
        &[("SecretName", name), ("VersionStage", stage)],
    )
    .await
}

async fn rotate(c: &Client, name: &str, token: &str) -> Result<Value, arca_client::Error> {
    c.call(
        "RotateSecret",
        &[("SecretName", name), ("VersionId", token)],
    )
    .await
}

#[tokio::test]
async fn rotate_secret_with_the_generic_rotator() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let c = s.client().unwrap();
    let old = json!({"user": "app", "password": "old-password"}).to_string();
    create(
        &c,
        "db/app",
        &old,
        json!({"PasswordLength": 24, "Fields": ["password"], "ExcludePunctuation": true}),
    )
    .await;
    let r = rotate(&c, "db/app", "r1").await.unwrap();
    assert_eq!(r["VersionId"], "r1");
    assert!(r["Arn"].as_str().unwrap().ends_with(":secret/db/app"));
    let now = value(&c, "db/app", "ACSCurrent").await.unwrap();
    assert_eq!(now["VersionId"], "r1");
    assert_eq!(now["VersionStages"]["VersionStage"], json!(["ACSCurrent"]));
    let data: Value = serde_json::from_str(now["SecretData"].as_str().unwrap()).unwrap();
    assert_eq!(data["user"], "app", "fields not in the template carry over");
    let password = data["password"].as_str().unwrap();
    assert_eq!(password.len(), 24);
    assert!(password.chars().all(|ch| ch.is_ascii_alphanumeric()));
    let previous = value(&c, "db/app", "ACSPrevious").await.unwrap();
    assert_eq!(
        (
            previous["VersionId"].as_str(),
            previous["SecretData"].as_str()
        ),
        (Some("v1"), Some(old.as_str()))
    );
    // No ACSPending is left behind.
    let e = value(&c, "db/app", "ACSPending").await.unwrap_err();
    assert_eq!(api_error(&e).1, "Forbidden.ResourceNotFound");
    // Idempotent by VersionId.
    rotate(&c, "db/app", "r1").await.unwrap();
    let listed = c
        .call(
            "ListSecretVersionIds",
            &[("SecretName", "db/app"), ("IncludeDeprecated", "true")],
        )
        .await
        .unwrap();
    assert_eq!(
        listed["VersionIds"]["VersionId"].as_array().unwrap().len(),
        2
    );
    let d = c
        .call("DescribeSecret", &[("SecretName", "db/app")])
        .await
        .unwrap();
    assert!(d["LastRotationDate"].as_str().unwrap().ends_with('Z'));
    // A secret naming a rotator that is not loaded is refused when it is made.
    let e = c
        .call(
            "CreateSecret",
            &[
                ("SecretName", "db/other"),
                ("SecretData", "x"),
                ("VersionId", "v1"),
                ("ExtendedConfig", r#"{"Rotator": "rotator-nope"}"#),
            ],
        )
        .await
        .unwrap_err();
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code), (400, "InvalidParameter"));
    assert!(message.contains("rotator-nope"), "{message}");
    // A secret whose type's rotator is not loaded (none ships for Redis) is kept, and its
    // rotation answers that no such rotator is loaded.
    c.call(
        "CreateSecret",
        &[
            ("SecretName", "cache/other"),
            ("SecretType", "Redis"),
            (
                "SecretData",
                r#"{"AccountName": "app", "AccountPassword": "x"}"#,
            ),
            ("VersionId", "v1"),
            ("ExtendedConfig", r#"{"SecretSubType": "SingleUser"}"#),
        ],
    )
    .await
    .unwrap();
    let e = rotate(&c, "cache/other", "r1").await.unwrap_err();
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code), (400, "Rejected.UnsupportedOperation"));
    assert!(message.contains("rotator-redis"), "{message}");
}

#[tokio::test]
async fn a_failing_step_leaves_current_working_and_the_rotation_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let c = s.client().unwrap();
    for how in ["error", "trap"] {
        for step in STEPS {
            let name = format!("flaky/{how}/{step}");
            let config =
                json!({"Rotator": "flaky-rotator", "CustomData": {"FailAt": step, "How": how}});
            create(&c, &name, "original", config).await;
            let e = rotate(&c, &name, "t1").await.unwrap_err();
            let (status, code, message) = api_error(&e);
            assert_eq!(
                (status, code),
                (503, "ServiceUnavailableTemporary"),
                "{message}"
            );
            assert!(message.contains(step), "{message}");
            // The current value is untouched.
            let now = value(&c, &name, "ACSCurrent").await.unwrap();
            assert_eq!(
                (now["VersionId"].as_str(), now["SecretData"].as_str()),
                (Some("v1"), Some("original"))
            );
            let pending = value(&c, &name, "ACSPending").await;
            let kept = if step == "create-pending" {
                assert_eq!(
                    api_error(&pending.unwrap_err()).1,
                    "Forbidden.ResourceNotFound"
                );
                None
            } else {
                let p = pending.unwrap();
                assert_eq!(p["VersionId"], "t1");
                Some(p["SecretData"].as_str().unwrap().to_owned())
            };
            let d = c
                .call("DescribeSecret", &[("SecretName", &name)])
                .await
                .unwrap();
            assert!(d["UpdateTime"].is_string());
            // Another rotation cannot start over this one.
            let e = rotate(&c, &name, "t2").await.unwrap_err();
            let (_, code, message) = api_error(&e);
            assert_eq!(code, "InvalidParameter");
            assert!(message.contains("t1"), "{message}");
            // The cause goes away; the same token resumes from the failed step.
            c.call(
                "UpdateSecret",
                &[("SecretName", &name), ("ExtendedConfig.CustomData", "{}")],
            )
            .await
            .unwrap();
            rotate(&c, &name, "t1").await.unwrap();
            let now = value(&c, &name, "ACSCurrent").await.unwrap();
            assert_eq!(now["VersionId"], "t1");
            let rotated = now["SecretData"].as_str().unwrap();
            assert!(rotated.starts_with("flaky-"), "{rotated}");
            if let Some(p) = kept {
                assert_eq!(rotated, p, "create-pending is not repeated on resume");
            }
            let prev = value(&c, &name, "ACSPrevious").await.unwrap();
            assert_eq!(prev["SecretData"], "original");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_a_step_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = server(tmp.path());
    for step in STEPS {
        let c = s.client().unwrap();
        let name = format!("killed/{step}");
        let config =
            json!({"Rotator": "flaky-rotator", "CustomData": {"FailAt": step, "How": "loop"}});
        create(&c, &name, "original", config).await;
        // The step spins (up to the rotator's 3 s limit); kill the server while it does.
        let call = {
            let (c, name) = (s.client().unwrap(), name.clone());
            tokio::spawn(async move { rotate(&c, &name, "t1").await })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.kill9().unwrap();
        assert!(call.await.unwrap().is_err(), "the reply never came");
        s.restart().unwrap();
        let c = s.client().unwrap();
        let now = value(&c, &name, "ACSCurrent").await.unwrap();
        assert_eq!(
            (now["VersionId"].as_str(), now["SecretData"].as_str()),
            (Some("v1"), Some("original")),
            "killed during {step}"
        );
        let kept = value(&c, &name, "ACSPending")
            .await
            .ok()
            .map(|p| p["SecretData"].as_str().unwrap().to_owned());
        assert_eq!(kept.is_some(), step != "create-pending", "after {step}");
        c.call(
            "UpdateSecret",
            &[("SecretName", &name), ("ExtendedConfig.CustomData", "{}")],
        )
        .await
        .unwrap();
        rotate(&c, &name, "t1").await.unwrap();
        let now = value(&c, &name, "ACSCurrent").await.unwrap();
        assert_eq!(now["VersionId"], "t1");
        if let Some(p) = kept {
            assert_eq!(now["SecretData"].as_str(), Some(p.as_str()));
        }
    }
}

/// An in-process Arca on a manual clock with the rotators loaded: the kms, the clock, the
/// plugin host and the admin account's caller, for scheduled rotations.
struct InProcess {
    kms: Arc<arca_host::kms::Kms>,
    clock: Arc<arca_host::clock::ManualClock>,
    host: Arc<arca_host::plugin::PluginHost>,
    caller: arca_host::kms::Caller,
}

async fn in_process(
    dir: &Path,
    plugins: PathBuf,
    sql: arca_host::plugin::SqlConnections,
) -> InProcess {
    use arca_host::plugin::{PluginHost, Services};
    let (kms, clock, caller) = arca_tests::in_process_kms(dir, "CreateSecret")
        .await
        .unwrap();
    let host = Arc::new(
        PluginHost::new(
            Some(plugins),
            dir.join("cache"),
            Services::new(Arc::clone(&kms), sql),
        )
        .unwrap(),
    );
    let report = host.load().await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    InProcess {
        kms,
        clock,
        host,
        caller,
    }
}

#[tokio::test]
async fn scheduled_rotations_run_when_due_and_retry_after_failures() {
    use arca_host::clock::Clock;
    use arca_host::ids::{SecretName, SecretRef, SecretVersionId};
    use arca_host::kms::secrets::{DataType, NewSecret, NewValue};
    use arca_host::plugin::SqlConnections;
    use arca_host::rotation::Rotations;
    use arca_host::secret::SecretBytes;

    let tmp = tempfile::tempdir().unwrap();
    let InProcess {
        kms,
        clock,
        host,
        caller,
    } = in_process(tmp.path(), rotators(tmp.path()), SqlConnections::none()).await;
    let audit_path = tmp.path().join("scheduled-audit.log");
    let engine = Rotations::new(Arc::clone(&kms), host).with_audit(
        arca_host::audit::AuditLog::open(&audit_path, arca_host::secret::SecretBytes::random(32))
            .unwrap(),
    );
    let make = |name: &str, config: Value| NewSecret {
        name: name.parse::<SecretName>().unwrap(),
        secret_type: arca_host::kms::secrets::SecretType::Generic,
        version: "v1".parse::<SecretVersionId>().unwrap(),
        value: NewValue {
            data_type: DataType::Text,
            bytes: SecretBytes::new(b"original".to_vec()),
        },
        description: String::new(),
        encryption_key: None,
        extended_config: Some(config.to_string()),
        rotation: Some(6 * 3600),
        tags: Vec::new(),
        policy: None,
        instance: None,
    };
    kms.create_secret(
        &caller,
        make("sched/ok", json!({"Rotator": "flaky-rotator"})),
    )
    .await
    .unwrap();
    kms.create_secret(
        &caller,
        make(
            "sched/failing",
            json!({"Rotator": "flaky-rotator", "CustomData": {"FailAt": "test-pending", "How": "error"}}),
        ),
    )
    .await
    .unwrap();
    let current = async |name: &str| {
        kms.get_secret_value(&caller, &SecretRef::Name(name.parse().unwrap()), None, None)
            .await
            .unwrap()
    };
    assert_eq!(engine.sweep().await.unwrap(), 0, "nothing due yet");
    clock.advance(7 * 3600);
    assert_eq!(engine.sweep().await.unwrap(), 1, "the healthy one rotated");
    let ok = current("sched/ok").await;
    assert_ne!(ok.version_id.as_str(), "v1");
    assert!(ok.data.expose().starts_with("flaky-"));
    assert!(ok.secret.next_rotation.unwrap() > clock.now().unix_timestamp() + 5 * 3600);
    // Both attempts are in the audit trail, by the scheduler, without any value.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let events: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["action"] != arca_host::audit::SEAL_ACTION)
        .map(|e| {
            assert_eq!(
                (e["action"].as_str(), e["source_ip"].as_str()),
                (Some("RotateSecret"), Some("scheduler"))
            );
            (
                e["resource"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("failing".into(), "ServiceUnavailableTemporary".into()),
            ("ok".into(), "OK".into())
        ]
    );
    assert!(!audit.contains(ok.data.expose()));
    let failing = current("sched/failing").await;
    assert_eq!(failing.version_id.as_str(), "v1");
    let state = failing.secret.rotation.clone().unwrap();
    assert_eq!(
        (state.done.as_deref(), state.attempts),
        (Some("set-pending"), 1)
    );
    assert!(state.last_error.unwrap().contains("test-pending"));
    // Within the back-off nothing is retried; after it, the rotation resumes and (the cause
    // gone) completes with the version made before the failure.
    assert_eq!(engine.sweep().await.unwrap(), 0);
    kms.update_secret(
        &caller,
        &SecretRef::Name("sched/failing".parse().unwrap()),
        None,
        Some(json!({})),
    )
    .await
    .unwrap();
    clock.advance(120);
    assert_eq!(engine.sweep().await.unwrap(), 1);
    let done = current("sched/failing").await;
    assert_eq!(done.version_id, state.version);
    assert!(done.secret.rotation.is_none());
    assert_eq!(done.secret.rotation_status(), "Enabled");
}

/// An Rds secret for `user` on the test's `pg` connection.
async fn create_rds(c: &Client, name: &str, user: &str, password: &str, sub_type: &str) {
    let config = json!({"SecretSubType": sub_type, "DBInstanceId": "pg"});
    create_db_secret(c, name, "Rds", user, password, config).await;
}

/// A database secret of `secret_type` for `role`, with `config` as its ExtendedConfig.
async fn create_db_secret(
    c: &Client,
    name: &str,
    secret_type: &str,
    role: &str,
    password: &str,
    config: Value,
) {
    let data = json!({"AccountName": role, "AccountPassword": password}).to_string();
    c.call(
        "CreateSecret",
        &[
            ("SecretName", name),
            ("SecretType", secret_type),
            ("SecretData", &data),
            ("VersionId", "v1"),
            ("ExtendedConfig", &config.to_string()),
        ],
    )
    .await
    .unwrap();
}

fn account(v: &Value) -> (String, String) {
    let data: Value = serde_json::from_str(v["SecretData"].as_str().unwrap()).unwrap();
    (
        data["AccountName"].as_str().unwrap().to_owned(),
        data["AccountPassword"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rds_secrets_rotate_against_a_real_postgres() {
    let pg = Postgres::start().unwrap();
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'app-initial'")
        .unwrap();
    pg.psql("CREATE ROLE team LOGIN PASSWORD 'team-initial'")
        .unwrap();
    pg.psql("CREATE TABLE orders (id int); GRANT SELECT ON orders TO team")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plugins = rotators(tmp.path());
    std::fs::write(
        plugins.join("connections.toml"),
        pg.connection_entry(&plugins, "pg", &["*"]).unwrap(),
    )
    .unwrap();
    let s =
        TestServer::start_with_args(&["--plugins-dir", &plugins.display().to_string()]).unwrap();
    let c = s.client().unwrap();

    // Single user: the role keeps its name; the new password logs in, the old one stops.
    create_rds(&c, "db/single", "app", "app-initial", "SingleUser").await;
    rotate(&c, "db/single", "r1").await.unwrap();
    let (user, password) = account(&value(&c, "db/single", "ACSCurrent").await.unwrap());
    assert_eq!(user, "app");
    assert_eq!(password.len(), 32);
    assert!(pg.login("app", &password), "the new password logs in");
    assert!(
        !pg.login("app", "app-initial"),
        "the old password no longer does"
    );

    // Alternating users: the role not in ACSCurrent gets the new password and becomes current,
    // so whatever ACSCurrent holds works at every instant, checked by a reader throughout.
    create_rds(&c, "db/double", "team", "team-initial", "DoubleUsers").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pg = Arc::new(pg);
    let reader = {
        let (c, stop, pg) = (s.client().unwrap(), Arc::clone(&stop), Arc::clone(&pg));
        tokio::spawn(async move {
            let (mut checks, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (user, password) =
                    account(&value(&c, "db/double", "ACSCurrent").await.unwrap());
                let pg = Arc::clone(&pg);
                let ok = tokio::task::spawn_blocking(move || {
                    pg.psql("SELECT 1").is_ok() && pg.login(&user, &password)
                })
                .await
                .unwrap();
                checks += 1;
                if !ok {
                    failures.push(checks);
                }
            }
            (checks, failures)
        })
    };
    let mut seen = Vec::new();
    for token in ["r1", "r2", "r3"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        rotate(&c, "db/double", token).await.unwrap();
        let (user, password) = account(&value(&c, "db/double", "ACSCurrent").await.unwrap());
        let (prev_user, prev_password) =
            account(&value(&c, "db/double", "ACSPrevious").await.unwrap());
        assert_ne!(user, prev_user, "the roles alternate");
        assert!(pg.login(&user, &password));
        assert!(
            pg.login(&prev_user, &prev_password),
            "ACSPrevious still works"
        );
        seen.push(user);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (checks, failures) = reader.await.unwrap();
    assert_eq!(seen, ["team_clone", "team", "team_clone"]);
    assert!(checks >= 5, "only {checks} checks");
    assert!(
        failures.is_empty(),
        "ACSCurrent failed to log in at checks {failures:?}"
    );
    // The clone has the base role's privileges.
    let (user, password) = account(&value(&c, "db/double", "ACSCurrent").await.unwrap());
    assert_eq!(user, "team_clone");
    assert!(pg.login(&user, &password));
    assert_eq!(
        pg.psql("SELECT pg_has_role('team_clone', 'team', 'MEMBER')")
            .unwrap(),
        "t"
    );
    assert!(
        !pg.login("team", "team-initial"),
        "the first password is gone"
    );
}

fn creds_of(v: &Value, account: &str) -> arca_client::Credentials {
    arca_client::Credentials {
        access_key_id: v["AccessKeyId"].as_str().unwrap().to_owned(),
        access_key_secret: v["AccessKeySecret"].as_str().unwrap().to_owned(),
        account_id: account.to_owned(),
        region_id: "cn-hangzhou".into(),
    }
}

#[tokio::test]
async fn ram_credentials_rotate_and_the_old_pair_retires_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let admin = s.client().unwrap();
    // A non-admin account whose application key lives in its own RAMCredentials secret.
    let made = admin.call("ArcaCreateAccount", &[]).await.unwrap();
    let account = made["AccountId"].as_str().unwrap().to_owned();
    let app = s.client_for(creds_of(&made, &account));
    let first = creds_of(&made, &account);
    let value_in = json!({"AccessKeys": [{"AccessKeyId": first.access_key_id, "AccessKeySecret": first.access_key_secret}]});
    let created = app
        .call(
            "CreateSecret",
            &[
                ("SecretName", "$Auto"),
                ("SecretType", "RAMCredentials"),
                ("SecretData", &value_in.to_string()),
                ("VersionId", "v1"),
                (
                    "ExtendedConfig",
                    &json!({"SecretSubType": "RamUserAccessKey", "UserName": account, "GracePeriodSeconds": 2})
                        .to_string(),
                ),
            ],
        )
        .await
        .unwrap();
    let name = format!("acs/ram/user/{account}");
    assert_eq!(created["SecretName"], name.as_str());
    rotate(&app, &name, "r1").await.unwrap();
    let now = value(&app, &name, "ACSCurrent").await.unwrap();
    let data: Value = serde_json::from_str(now["SecretData"].as_str().unwrap()).unwrap();
    assert!(data["GenerateTimestamp"].as_str().unwrap().ends_with('Z'));
    let fresh = s.client_for(creds_of(&data, &account));
    fresh.call("DescribeRegions", &[]).await.unwrap();
    assert_ne!(
        data["AccessKeyId"].as_str(),
        Some(first.access_key_id.as_str())
    );
    // The old pair works through the grace period, then stops.
    let old = s.client_for(first.clone());
    old.call("DescribeRegions", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = old.call("DescribeRegions", &[]).await.unwrap_err();
    assert_eq!(api_error(&e).1, "InvalidAccessKeyId.NotFound");
    fresh.call("DescribeRegions", &[]).await.unwrap();

    // Another account's keys are out of reach of a non-admin's rotation.
    let other = admin.call("ArcaCreateAccount", &[]).await.unwrap();
    let other_account = other["AccountId"].as_str().unwrap();
    let app = fresh;
    app.call(
        "CreateSecret",
        &[
            ("SecretName", "$Auto"),
            ("SecretType", "RAMCredentials"),
            (
                "SecretData",
                &json!({"AccessKeyId": "LTAIx", "AccessKeySecret": "y"}).to_string(),
            ),
            ("VersionId", "v1"),
            (
                "ExtendedConfig",
                &json!({"SecretSubType": "RamUserAccessKey", "UserName": other_account})
                    .to_string(),
            ),
        ],
    )
    .await
    .unwrap();
    let e = rotate(&app, &format!("acs/ram/user/{other_account}"), "r1")
        .await
        .unwrap_err();
    let (status, _, message) = api_error(&e);
    assert_eq!(status, 503);
    assert!(message.contains("only its own account"), "{message}");
}

#[tokio::test]
async fn the_secret_cache_serves_until_its_ttl_and_through_an_outage() {
    use arca_client::secret_cache::SecretCache;
    let mut s = TestServer::start().unwrap();
    let c = s.client().unwrap();
    let put = |v: &'static str, data: &'static str| {
        let c = s.client().unwrap();
        async move {
            c.call(
                "PutSecretValue",
                &[
                    ("SecretName", "cache/x"),
                    ("SecretData", data),
                    ("VersionId", v),
                ],
            )
            .await
            .unwrap()
        }
    };
    create(&c, "cache/x", "one", json!({})).await;
    let cache = SecretCache::new(s.client().unwrap(), Duration::from_millis(800));
    let got = cache.get("cache/x").await.unwrap();
    assert_eq!((got.version_id.as_str(), got.data.as_str()), ("v1", "one"));
    assert!(!format!("{got:?}").contains("one"), "values are redacted");
    put("v2", "two").await;
    assert_eq!(
        cache.get("cache/x").await.unwrap().data.as_str(),
        "one",
        "cached"
    );
    assert_eq!(cache.refresh("cache/x").await.unwrap().data.as_str(), "two");
    put("v3", "three").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        cache.get("cache/x").await.unwrap().data.as_str(),
        "three",
        "past the TTL"
    );
    // Arca goes away: the last value keeps being served.
    s.kill9().unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(cache.get("cache/x").await.unwrap().data.as_str(), "three");
    cache.invalidate("cache/x").await;
    assert!(matches!(
        cache.get("cache/x").await,
        Err(arca_client::Error::Transport(_))
    ));
}

/// The whole promise in one: a database password kept in Arca, rotated on schedule against a
/// real PostgreSQL (alternating users), with ACSCurrent logging in before, during and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_rds_rotation_against_postgres() {
    use arca_host::ids::SecretRef;
    use arca_host::kms::secrets::{DataType, NewSecret, NewValue, SecretType};
    use arca_host::plugin::SqlConnections;
    use arca_host::rotation::Rotations;
    use arca_host::secret::SecretBytes;

    let pg = Postgres::start().unwrap();
    pg.psql("CREATE ROLE svc LOGIN PASSWORD 'svc-initial'")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plugins = rotators(tmp.path());
    let connections = plugins.join("connections.toml");
    std::fs::write(
        &connections,
        pg.connection_entry(&plugins, "pg", &["*"]).unwrap(),
    )
    .unwrap();
    let InProcess {
        kms,
        clock,
        host,
        caller,
    } = in_process(
        tmp.path(),
        plugins,
        SqlConnections::load(&connections).unwrap(),
    )
    .await;
    let engine = Rotations::new(Arc::clone(&kms), host);
    kms.create_secret(
        &caller,
        NewSecret {
            name: "db/svc".parse().unwrap(),
            secret_type: SecretType::Rds,
            version: "v1".parse().unwrap(),
            value: NewValue {
                data_type: DataType::Text,
                bytes: SecretBytes::new(
                    json!({"AccountName": "svc", "AccountPassword": "svc-initial"})
                        .to_string()
                        .into_bytes(),
                ),
            },
            description: String::new(),
            encryption_key: None,
            extended_config: Some(
                json!({"SecretSubType": "DoubleUsers", "DBInstanceId": "pg"}).to_string(),
            ),
            rotation: Some(24 * 3600),
            tags: Vec::new(),
            policy: None,
            instance: None,
        },
    )
    .await
    .unwrap();
    let secret = SecretRef::Name("db/svc".parse().unwrap());
    let current = async || {
        let v = kms
            .get_secret_value(&caller, &secret, None, None)
            .await
            .unwrap();
        let data: Value = serde_json::from_str(v.data.expose()).unwrap();
        (
            data["AccountName"].as_str().unwrap().to_owned(),
            data["AccountPassword"].as_str().unwrap().to_owned(),
        )
    };
    let mut users = Vec::new();
    for day in 1..=3 {
        let (user, password) = current().await;
        assert!(
            pg.login(&user, &password),
            "day {day}: ACSCurrent logs in before"
        );
        clock.advance(24 * 3600 + 60);
        assert_eq!(engine.sweep().await.unwrap(), 1, "day {day}");
        let (new_user, new_password) = current().await;
        assert!(pg.login(&new_user, &new_password), "day {day}: and after");
        assert!(
            pg.login(&user, &password),
            "day {day}: ACSPrevious still works"
        );
        users.push(new_user);
    }
    assert_eq!(users, ["svc_clone", "svc", "svc_clone"]);
}

/// Tenancy on database connections, with a real PostgreSQL and two accounts. Each connection
/// names the accounts that may use it and the roles it may rotate; the host never rotates the
/// connection's own user or a role with (or inheriting) superuser or CREATEROLE power; and a
/// secret can name only a rotator meant for its type. Before, any account could rotate (take
/// over) any role on any connection, the connection's admin role included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_reach_only_their_connections_and_unprivileged_roles() {
    let pg = Postgres::start().unwrap();
    for sql in [
        "CREATE ROLE a_app LOGIN PASSWORD 'a-initial'",
        "CREATE ROLE b_app LOGIN PASSWORD 'b-initial'",
        "CREATE ROLE boss LOGIN CREATEROLE PASSWORD 'boss-initial'",
        "CREATE ROLE a_heir LOGIN PASSWORD 'heir-initial' IN ROLE boss",
    ] {
        pg.psql(sql).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let plugins = rotators(tmp.path());
    let mut s =
        TestServer::start_with_args(&["--plugins-dir", &plugins.display().to_string()]).unwrap();
    let admin = s.client().unwrap();
    let made_a = admin.call("ArcaCreateAccount", &[]).await.unwrap();
    let made_b = admin.call("ArcaCreateAccount", &[]).await.unwrap();
    let a_id = made_a["AccountId"].as_str().unwrap().to_owned();
    let b_id = made_b["AccountId"].as_str().unwrap().to_owned();
    let connections = format!(
        "{}roles = [\"a_*\", \"boss\", \"postgres\"]\n\n{}",
        pg.connection_entry(&plugins, "pg-a", &[&a_id]).unwrap(),
        pg.connection_entry(&plugins, "pg-b", &[&b_id]).unwrap()
    );
    std::fs::write(plugins.join("connections.toml"), connections).unwrap();
    s.restart().unwrap();
    let a = s.client_for(creds_of(&made_a, &a_id));
    let b = s.client_for(creds_of(&made_b, &b_id));
    let refused = |c: Client,
                   name: &'static str,
                   role: &'static str,
                   connection: &'static str,
                   secret_type: &'static str| async move {
        let config = json!({"DBInstanceId": connection, "Rotator": "rotator-postgres"});
        create_db_secret(&c, name, secret_type, role, "unknown", config).await;
        let e = rotate(&c, name, "r1").await.unwrap_err();
        api_error(&e).2.to_owned()
    };
    let b_client = || s.client_for(creds_of(&made_b, &b_id));
    let a_client = || s.client_for(creds_of(&made_a, &a_id));
    // Another account's connection.
    let why = refused(b_client(), "b/takeover", "a_app", "pg-a", "Rds").await;
    assert!(why.contains("not open to this account"), "{why}");
    // The connection's own user, a privileged role, one that inherits privilege, one outside
    // the connection's roles.
    let why = refused(a_client(), "a/own", "postgres", "pg-a", "Rds").await;
    assert!(why.contains("own user"), "{why}");
    let why = refused(a_client(), "a/boss", "boss", "pg-a", "Rds").await;
    assert!(why.contains("CREATEROLE"), "{why}");
    let why = refused(a_client(), "a/heir", "a_heir", "pg-a", "Rds").await;
    assert!(why.contains("CREATEROLE"), "{why}");
    let why = refused(a_client(), "a/other", "b_app", "pg-a", "Rds").await;
    assert!(why.contains("not among the roles"), "{why}");
    // A rotator not meant for the secret's type is refused when the secret is made (and again
    // at rotation, should the rotator's manifest change meanwhile).
    let e = a
        .call(
            "CreateSecret",
            &[
                ("SecretName", "a/generic"),
                (
                    "SecretData",
                    r#"{"AccountName": "a_app", "AccountPassword": "x"}"#,
                ),
                ("VersionId", "v1"),
                (
                    "ExtendedConfig",
                    r#"{"DBInstanceId": "pg-a", "Rotator": "rotator-postgres"}"#,
                ),
            ],
        )
        .await
        .unwrap_err();
    let (_, code, why) = api_error(&e);
    assert_eq!(code, "InvalidParameter");
    assert!(why.contains("does not rotate Generic secrets"), "{why}");
    for (role, password) in [
        ("a_app", "a-initial"),
        ("b_app", "b-initial"),
        ("boss", "boss-initial"),
        ("a_heir", "heir-initial"),
        ("postgres", pg.password.as_str()),
    ] {
        assert!(pg.login(role, password), "{role} was left alone");
    }
    // What is allowed still works: each account its own role on its own connection.
    for (c, name, role, connection) in [
        (&a, "a/app", "a_app", "pg-a"),
        (&b, "b/app", "b_app", "pg-b"),
    ] {
        let config = json!({"DBInstanceId": connection});
        create_db_secret(c, name, "Rds", role, "x", config).await;
        rotate(c, name, "r1").await.unwrap();
        let (user, password) = account(&value(c, name, "ACSCurrent").await.unwrap());
        assert_eq!(user, role);
        assert!(pg.login(role, &password), "{role}'s new password logs in");
    }
}

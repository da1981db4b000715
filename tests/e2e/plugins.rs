//! The plugin host with real components: the shipped plugins (one contract per world), the
//! probe (every host import, and what each grant lets through), hostile plugins (each fails
//! its call cleanly while the server keeps serving), the precompile cache, templates built
//! outside the workspace, and the admin actions and CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_host::ids::{AliasName, KeyRef};
use arca_host::kms::keys::NewKey;
use arca_host::kms::model::{KeySpec, Origin, ProtectionLevel};
use arca_host::kms::{Caller, Kms};
use arca_host::plugin::{
    AccessRequest, AttachedPolicy, Decision, KeyChoice, KeyRequest, NetworkRule, PluginError,
    PluginHost, Principal, PrincipalKind, RotationRequest, RotationStep, SecretData, SecretVersion,
    Services, SqlConnections,
};
use arca_tests::{Served, TestServer, arca_bin, component, repo_root};

/// An opened data directory and its admin caller, for in-process plugin calls.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    kms: Arc<Kms>,
    caller: Caller,
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let opened = arca_host::open(arca_host::ServeConfig {
        data_dir: data.clone(),
        region: "cn-hangzhou".into(),
        root_key: arca_host::startup::RootKeySource::DataDir,
    })
    .await
    .unwrap();
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("credentials.json")).unwrap()).unwrap();
    let caller = Caller {
        account: creds["account_id"].as_str().unwrap().parse().unwrap(),
        admin: true,
        action: "CreateKey".into(),
        service: None,
    };
    Fixture {
        dir: tmp.path().to_path_buf(),
        _tmp: tmp,
        kms: opened.kms,
        caller,
    }
}

impl Fixture {
    /// A plugins directory holding `plugins` (name, manifest text, component path).
    fn plugins_dir(&self, name: &str, plugins: &[(&str, String, PathBuf)]) -> PathBuf {
        let dir = self.dir.join(name);
        for (plugin, manifest, wasm) in plugins {
            let d = dir.join(plugin);
            std::fs::create_dir_all(&d).unwrap();
            let manifest = manifest.replace("@WASM@", &wasm.display().to_string());
            std::fs::write(d.join("plugin.toml"), manifest).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn host(&self, dir: PathBuf) -> Arc<PluginHost> {
        let services = Services::new(Arc::clone(&self.kms), SqlConnections::none());
        let host = Arc::new(PluginHost::new(Some(dir), self.dir.join("cache"), services).unwrap());
        let report = host.load().await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        host
    }

    async fn key(&self, alias: Option<&str>) -> String {
        let key = self
            .kms
            .create_key(
                &self.caller,
                NewKey {
                    spec: KeySpec::Aes256,
                    usage: None,
                    origin: Origin::Kms,
                    protection: ProtectionLevel::Software,
                    description: String::new(),
                    rotation: None,
                    tags: vec![],
                    policy: None,
                    instance: None,
                },
            )
            .await
            .unwrap();
        let id = key.key_id.to_string();
        if let Some(alias) = alias {
            let alias: AliasName = alias.parse().unwrap();
            self.kms
                .create_alias(&self.caller, &alias, &KeyRef::Id(key.key_id))
                .await
                .unwrap();
        }
        id
    }
}

/// Runs the probe rotator's create-pending with `cmd` and returns its text result.
async fn probe(
    host: &PluginHost,
    account: &arca_host::ids::AccountId,
    cmd: String,
) -> Result<String, PluginError> {
    host.rotate(
        "probe",
        account,
        RotationStep::CreatePending,
        &rotation(&cmd, None, None),
    )
    .await
    .map(|v| match v {
        Some(SecretData::Text(t)) => t,
        other => panic!("{other:?}"),
    })
}

fn shipped(name: &str) -> (&str, String, PathBuf) {
    let manifest = repo_root().join("plugins").join(name).join("plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let wasm = text
        .lines()
        .find_map(|l| l.strip_prefix("component = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let wasm = component(&format!("plugins/{name}/{wasm}"));
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("component = ") {
                "component = \"@WASM@\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    (name, text, wasm)
}

fn rotation(config: &str, current: Option<&str>, pending: Option<&str>) -> RotationRequest {
    let version = |id: &str, stage: &str, v: &str| SecretVersion {
        version_id: id.into(),
        stages: vec![stage.into()],
        value: SecretData::Text(v.into()),
    };
    RotationRequest {
        secret_name: "db/app".into(),
        secret_type: "Generic".into(),
        extended_config: config.into(),
        token: "v2".into(),
        current: current.map(|v| version("v1", "ACSCurrent", v)),
        pending: pending.map(|v| version("v2", "ACSPending", v)),
    }
}

fn access(
    kind: PrincipalKind,
    action: &str,
    resource: Option<&str>,
    ip: &str,
    policies: Vec<AttachedPolicy>,
) -> AccessRequest {
    AccessRequest {
        principal: Principal {
            kind,
            account: "1".into(),
            id: "ck-1".into(),
            application: Some("app".into()),
        },
        action: action.into(),
        resource_arn: resource.map(String::from),
        source_ip: ip.into(),
        instance: Some("kst-1".into()),
        policies,
    }
}

#[tokio::test]
async fn rotator_world_contract_with_the_generic_rotator() {
    let f = fixture().await;
    let host = f
        .host(f.plugins_dir("p", &[shipped("rotator-generic")]))
        .await;
    let account = f.caller.account.clone();
    let config = r#"{"PasswordLength": 24, "ExcludePunctuation": true, "Fields": ["password"]}"#;
    let current = r#"{"user":"app","password":"old"}"#;
    let made = host
        .rotate(
            "rotator-generic",
            &account,
            RotationStep::CreatePending,
            &rotation(config, Some(current), None),
        )
        .await
        .unwrap();
    let Some(SecretData::Text(text)) = made else {
        panic!("{made:?}")
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["user"], "app");
    let password = v["password"].as_str().unwrap();
    assert_eq!(password.len(), 24);
    assert!(
        password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password}"
    );
    assert!(
        password.chars().any(|c| c.is_ascii_digit())
            && password.chars().any(|c| c.is_ascii_uppercase())
    );
    // Two rotations never give the same value.
    let again = host
        .rotate(
            "rotator-generic",
            &account,
            RotationStep::CreatePending,
            &rotation(config, Some(current), None),
        )
        .await
        .unwrap();
    assert_ne!(Some(SecretData::Text(text.clone())), again);
    for step in [
        RotationStep::SetPending,
        RotationStep::TestPending,
        RotationStep::Finish,
    ] {
        let r = host
            .rotate(
                "rotator-generic",
                &account,
                step,
                &rotation(config, Some(current), Some(&text)),
            )
            .await
            .unwrap();
        assert_eq!(r, None, "{step:?}");
    }
    // A step without a pending version is the plugin's own error, reported with its kind.
    let e = host
        .rotate(
            "rotator-generic",
            &account,
            RotationStep::TestPending,
            &rotation(config, Some(current), None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::Failed { kind, .. } if kind == "invalid-argument"),
        "{e}"
    );
    let e = host
        .rotate(
            "rotator-generic",
            &account,
            RotationStep::CreatePending,
            &rotation("{\"PasswordLength\": 3}", None, None),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("PasswordLength must be 8-128"),
        "{e}"
    );
    // The wrong world is refused before anything runs.
    let e = host
        .decide(
            "rotator-generic",
            &access(
                PrincipalKind::AccessKey,
                "Encrypt",
                None,
                "127.0.0.1",
                vec![],
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PluginError::WrongWorld { .. }), "{e}");
}

#[tokio::test]
async fn sse_world_contract_with_the_object_storage_integration() {
    let f = fixture().await;
    let host = f.host(f.plugins_dir("p", &[shipped("sse-oss")])).await;
    let info = host.service_info("sse-oss").unwrap();
    assert_eq!(info.service_code, "oss");
    assert!(info.allow_customer_keys);
    serde_json::from_str::<serde_json::Value>(&info.key_policy).unwrap();
    let req = |requested: Option<&str>, resource: &str| KeyRequest {
        account: f.caller.account.to_string(),
        region: "cn-hangzhou".into(),
        resource_name: resource.into(),
        operation: "put-object".into(),
        requested_key_id: requested.map(String::from),
        context: vec![],
    };
    let p = host
        .choose_key("sse-oss", &req(None, "photos/cat.jpg"))
        .await
        .unwrap();
    assert_eq!(p.key, KeyChoice::ServiceKey);
    assert!(
        p.context
            .contains(&("acs:oss:object".to_string(), "cat.jpg".to_string()))
    );
    let p = host
        .choose_key("sse-oss", &req(Some("alias/mine"), "photos/cat.jpg"))
        .await
        .unwrap();
    assert_eq!(p.key, KeyChoice::CustomerKey("alias/mine".into()));
    let e = host
        .choose_key("sse-oss", &req(None, "no-object"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("resource must be <bucket>/<object>"),
        "{e}"
    );
    let detail = host.inspect("sse-oss").unwrap();
    assert_eq!(detail.service.unwrap()["ServiceCode"], "oss");
}

#[tokio::test]
async fn policy_world_contract_with_the_default_policy() {
    let f = fixture().await;
    let host = f
        .host(f.plugins_dir("p", &[shipped("policy-default")]))
        .await;
    let policy = |resources: &[&str], permissions: &[&str], ips: &[&str]| AttachedPolicy {
        name: "p1".into(),
        kms_instance: "kst-1".into(),
        permissions: permissions
            .iter()
            .map(|p| format!("RbacPermission/Template/{p}"))
            .collect(),
        resources: resources.iter().map(|r| r.to_string()).collect(),
        network_rules: if ips.is_empty() {
            vec![]
        } else {
            vec![NetworkRule {
                name: "n".into(),
                source_private_ips: ips.iter().map(|i| i.to_string()).collect(),
            }]
        },
    };
    let key = Some("acs:kms:cn-hangzhou:1:key/key-abc");
    let secret = Some("acs:kms:cn-hangzhou:1:secret/db-password");
    let ck = PrincipalKind::ClientKey;
    let cases: Vec<(AccessRequest, bool)> = vec![
        (
            access(PrincipalKind::AccessKey, "Encrypt", key, "10.0.0.1", vec![]),
            true,
        ),
        (access(ck, "Encrypt", key, "10.0.0.1", vec![]), false),
        (
            access(
                ck,
                "Encrypt",
                key,
                "10.0.0.1",
                vec![policy(&["key/*"], &["CryptoServiceKeyUser"], &[])],
            ),
            true,
        ),
        (
            access(
                ck,
                "Encrypt",
                key,
                "10.0.0.1",
                vec![policy(
                    &["key/key-abc"],
                    &["CryptoServiceKeyUser"],
                    &["10.0.0.0/8"],
                )],
            ),
            true,
        ),
        (
            access(
                ck,
                "Encrypt",
                key,
                "192.168.1.1",
                vec![policy(
                    &["key/*"],
                    &["CryptoServiceKeyUser"],
                    &["10.0.0.0/8"],
                )],
            ),
            false,
        ),
        (
            access(
                ck,
                "Encrypt",
                key,
                "10.0.0.1",
                vec![policy(&["key/other"], &["CryptoServiceKeyUser"], &[])],
            ),
            false,
        ),
        (
            access(
                ck,
                "Encrypt",
                key,
                "10.0.0.1",
                vec![policy(&["key/*"], &["CryptoServiceSecretUser"], &[])],
            ),
            false,
        ),
        (
            access(
                ck,
                "GetSecretValue",
                secret,
                "10.0.0.1",
                vec![policy(&["secret/*"], &["CryptoServiceSecretUser"], &[])],
            ),
            true,
        ),
        (
            access(
                ck,
                "GetSecretValue",
                secret,
                "10.0.0.1",
                vec![policy(&["key/*"], &["CryptoServiceKeyUser"], &[])],
            ),
            false,
        ),
        (
            access(
                ck,
                "CreateKey",
                None,
                "10.0.0.1",
                vec![policy(&["key/*"], &["CryptoServiceKeyUser"], &[])],
            ),
            false,
        ),
        (
            access(
                ck,
                "Encrypt",
                key,
                "::1",
                vec![policy(&["key/*"], &["CryptoServiceKeyUser"], &["::1"])],
            ),
            true,
        ),
        // A key-using request that names no key is denied, whatever the policies say (it
        // used to pass every resource list); GenerateRandom uses none.
        (
            access(
                ck,
                "Decrypt",
                None,
                "10.0.0.1",
                vec![policy(&["key/one"], &["CryptoServiceKeyUser"], &[])],
            ),
            false,
        ),
        (
            access(
                ck,
                "GenerateRandom",
                None,
                "10.0.0.1",
                vec![policy(&["key/one"], &["CryptoServiceKeyUser"], &[])],
            ),
            true,
        ),
    ];
    for (i, (req, allow)) in cases.iter().enumerate() {
        let d = host.decide("policy-default", req).await.unwrap();
        assert_eq!(matches!(d, Decision::Allow(_)), *allow, "case {i}: {d:?}");
    }
    // A policy for another instance does not apply.
    let mut other = policy(&["key/*"], &["CryptoServiceKeyUser"], &[]);
    other.kms_instance = "kst-2".into();
    let d = host
        .decide(
            "policy-default",
            &access(ck, "Encrypt", key, "10.0.0.1", vec![other]),
        )
        .await
        .unwrap();
    assert!(
        matches!(d, Decision::Deny(ref r) if r.contains("no policy")),
        "{d:?}"
    );
}

/// A plugins directory with the probe rotator granted the sql connections `connections`.
fn probe_with_sql(f: &Fixture, connections: &str) -> PathBuf {
    let manifest = format!(
        r#"name = "probe"
world = "rotator"
version = "0.1.0"
component = "@WASM@"
capabilities = ["log", "random", "clock", "kms", "secrets", "sql", "http"]
[grants]
sql-connections = ["{connections}"]
[limits]
time-ms = 10000
"#
    );
    f.plugins_dir(
        "p",
        &[(
            "probe",
            manifest,
            component("tests/components/probe-rotator/probe_rotator.wasm"),
        )],
    )
}

/// A server whose `--access-policy` is the hostile test policy (with `extra` serve
/// arguments); the temp dir holds its plugins.
fn hostile_policy_server(extra: &[&str]) -> (tempfile::TempDir, TestServer) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let d = plugins.join("hostile");
    std::fs::create_dir_all(&d).unwrap();
    let wasm = component("tests/components/hostile-policy/hostile_policy.wasm");
    std::fs::write(
        d.join("plugin.toml"),
        hostile_manifest(4).replace("@WASM@", &wasm.display().to_string()),
    )
    .unwrap();
    let plugins_arg = plugins.display().to_string();
    let mut args = vec!["--plugins-dir", &plugins_arg, "--access-policy", "hostile"];
    args.extend_from_slice(extra);
    let s = TestServer::start_with_args(&args).unwrap();
    (tmp, s)
}

/// A loopback HTTP server answering `hello` to everything; returns its `host:port`.
async fn hello_server() -> String {
    arca_tests::serve_http(|_req| async {
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("hello")))
    })
    .await
    .unwrap()
    .to_string()
}

#[tokio::test]
async fn host_imports_reach_only_what_the_manifest_grants() {
    let f = fixture().await;
    let granted_key = f.key(Some("alias/granted")).await;
    let other_key = f.key(Some("alias/other")).await;
    let web = hello_server().await;
    let manifest = format!(
        r#"name = "probe"
world = "rotator"
version = "0.1.0"
component = "@WASM@"
capabilities = ["log", "random", "clock", "kms", "secrets", "sql", "http"]
[grants]
keys = ["alias/granted"]
secrets = ["db/*"]
sql-connections = ["unconfigured"]
http-hosts = ["{web}", "localhost:9"]
[limits]
time-ms = 5000
"#
    );
    let host = f
        .host(f.plugins_dir(
            "p",
            &[(
                "probe",
                manifest,
                component("tests/components/probe-rotator/probe_rotator.wasm"),
            )],
        ))
        .await;
    let account = f.caller.account.clone();
    let run = |cmd: String| probe(&host, &f.caller.account, cmd);
    // kms: the granted key by alias, by id and by ARN; another key is denied however named.
    assert_eq!(run("kms:alias/granted".into()).await.unwrap(), "probe");
    assert_eq!(run(format!("kms:{granted_key}")).await.unwrap(), "probe");
    assert_eq!(
        run(format!(
            "kms:acs:kms:cn-hangzhou:{account}:key/{granted_key}"
        ))
        .await
        .unwrap(),
        "probe"
    );
    for named in [
        format!("kms:{other_key}"),
        "kms:alias/other".into(),
        "kms:alias/missing".into(),
    ] {
        let e = run(named.clone()).await.unwrap_err();
        assert!(
            e.to_string().contains("Denied") && e.to_string().contains("not granted"),
            "{named}: {e}"
        );
    }
    // A ciphertext of a key outside the grant is refused before it is opened: the answer is
    // the same whether its context is right or wrong, so it tells nothing about the blob.
    let foreign = f
        .kms
        .encrypt(
            &f.caller,
            &"alias/other".parse().unwrap(),
            &arca_host::secret::SecretBytes::new(b"x".to_vec()),
            &Default::default(),
        )
        .await
        .unwrap()
        .blob;
    let e = run(format!("decrypt:{foreign}")).await.unwrap_err();
    assert!(
        e.to_string().contains("Denied") && e.to_string().contains("not granted"),
        "{e}"
    );
    let dk = run("datakey:alias/granted".into()).await.unwrap();
    assert_eq!(dk, format!("{granted_key} 44"), "base64 of 32 bytes");
    // random: bytes from the host, and a trap beyond the documented maximum.
    assert_eq!(run("random:16".into()).await.unwrap().len(), 32);
    let e = run("random:100000".into()).await.unwrap_err();
    assert!(
        matches!(&e, PluginError::Trap { detail, .. } if detail.contains("more than the 65536 allowed")),
        "{e}"
    );
    // clock: the host's clock.
    let now = f.kms.clock().now().unix_timestamp();
    let t: i64 = run("clock".into()).await.unwrap().parse().unwrap();
    assert!((t - now).abs() < 60, "{t} vs {now}");
    // http: the allowed host answers; any other is refused before a connection is made.
    assert_eq!(
        run(format!("http:http://{web}/x")).await.unwrap(),
        "200 hello"
    );
    let e = run("http:http://127.0.0.1:9/".into()).await.unwrap_err();
    assert!(
        e.to_string().contains("host `127.0.0.1:9` is not allowed"),
        "{e}"
    );
    let e = run(format!("http:https://{web}/")).await.unwrap_err();
    assert!(
        e.to_string().contains("https egress is not supported"),
        "{e}"
    );
    // A granted name that resolves to an internal address (as a rebinding DNS answer would)
    // is refused: the connection goes only where the check looked, and a name only to public
    // addresses unless they are granted by address.
    let e = run("http:http://localhost:9/x".into()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("internal addresses are reached only when granted"),
        "{e}"
    );
    // secrets: outside the grant is denied; inside it, looked up (none exist here).
    let e = run("secret:other/x".into()).await.unwrap_err();
    assert!(e.to_string().contains("Denied"), "{e}");
    let e = run("secret:db/x".into()).await.unwrap_err();
    assert!(e.to_string().contains("NotFound"), "{e}");
    // sql: a granted name the operator never configured; an ungranted name.
    let e = run("sql:unconfigured:select 1".into()).await.unwrap_err();
    assert!(
        e.to_string().contains("is not configured on this host"),
        "{e}"
    );
    let e = run("sql:prod:select 1".into()).await.unwrap_err();
    assert!(
        e.to_string().contains("connection `prod` is not granted"),
        "{e}"
    );
    let stats = host.inspect("probe").unwrap().summary.stats;
    assert!(
        stats.ok >= 7 && stats.errors >= 8 && stats.traps == 1,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_plugin_importing_what_it_was_not_granted_does_not_load() {
    let f = fixture().await;
    let probe = component("tests/components/probe-rotator/probe_rotator.wasm");
    let hostile = component("tests/components/hostile-policy/hostile_policy.wasm");
    let no_sql = r#"name = "probe"
world = "rotator"
version = "0.1.0"
component = "@WASM@"
capabilities = ["log", "random", "clock", "kms", "secrets", "http"]
"#;
    let wrong_world = r#"name = "wrong"
world = "rotator"
version = "0.1.0"
component = "@WASM@"
capabilities = ["log"]
"#;
    let no_log = r#"name = "nolog"
world = "access-policy"
version = "0.1.0"
component = "@WASM@"
"#;
    let dir = f.plugins_dir(
        "p",
        &[
            ("probe", no_sql.into(), probe),
            ("wrong", wrong_world.into(), hostile.clone()),
            ("nolog", no_log.into(), hostile),
        ],
    );
    let services = Services::new(Arc::clone(&f.kms), SqlConnections::none());
    let host = Arc::new(PluginHost::new(Some(dir), f.dir.join("cache"), services).unwrap());
    let report = host.load().await;
    assert!(report.loaded.is_empty(), "{report:?}");
    let all = report.failed.join("\n");
    assert!(
        all.contains(
            "imports `arca:plugin/sql@0.1.0` but its manifest does not grant the `sql` capability"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "imports `arca:plugin/log@0.1.0` but its manifest does not grant the `log` capability"
        ),
        "{all}"
    );
    assert!(
        all.contains("does not implement the rotator world"),
        "{all}"
    );
    let listed = host.list();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .all(|p| p.status == "failed" && p.error.is_some()),
        "{listed:?}"
    );
    let e = host
        .rotate(
            "probe",
            &f.caller.account,
            RotationStep::CreatePending,
            &rotation("", None, None),
        )
        .await
        .unwrap_err();
    assert_eq!(e, PluginError::NotLoaded("probe".into()));
}

fn hostile_manifest(concurrency: usize) -> String {
    format!(
        r#"name = "hostile"
world = "access-policy"
version = "0.1.0"
component = "@WASM@"
capabilities = ["log"]
[limits]
memory-mib = 8
time-ms = 200
concurrency = {concurrency}
"#
    )
}

fn hostile(mode: &str) -> AccessRequest {
    let arn = format!("acs:kms:cn-hangzhou:1:alias/hostile-{mode}");
    access(
        PrincipalKind::AccessKey,
        "DescribeKey",
        Some(&arn),
        "127.0.0.1",
        vec![],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_their_call_and_nothing_else() {
    let f = fixture().await;
    let wasm = component("tests/components/hostile-policy/hostile_policy.wasm");
    let host = f
        .host(f.plugins_dir("p", &[("hostile", hostile_manifest(4), wasm)]))
        .await;
    // Well-behaved calls keep succeeding on another task throughout.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let (host, stop) = (Arc::clone(&host), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut ok, mut max) = (0u32, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A new source address each time, so every call reaches the plugin rather
                // than the decision cache.
                let mut req = hostile("fine");
                req.source_ip = format!("10.{}.{}.{}", ok >> 16 & 255, ok >> 8 & 255, ok & 255);
                let t = Instant::now();
                let d = host.decide("hostile", &req).await.unwrap();
                assert!(matches!(d, Decision::Allow(_)));
                max = max.max(t.elapsed());
                ok += 1;
                tokio::task::yield_now().await;
            }
            (ok, max)
        })
    };
    let t = Instant::now();
    let e = host.decide("hostile", &hostile("loop")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin `hostile` exceeded its time limit of 200 ms"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let e = host.decide("hostile", &hostile("bomb")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin `hostile` exceeded its memory limit of 8 MiB"
    );
    let e = host.decide("hostile", &hostile("trap")).await.unwrap_err();
    assert!(
        matches!(&e, PluginError::Trap { detail, .. } if detail.contains("the hostile policy panicked on purpose")),
        "{e}"
    );
    // Deep recursion overflows the guest's shadow stack (in its linear memory) or the wasm
    // stack, whichever comes first: a trap either way.
    let e = host
        .decide("hostile", &hostile("recurse"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::Trap { detail, .. } if detail.contains("stack overflow") || detail.contains("out of bounds memory access")),
        "{e}"
    );
    let e = host.decide("hostile", &hostile("huge")).await.unwrap_err();
    assert!(
        matches!(&e, PluginError::Invalid { detail, .. } if detail.contains("more than the 1048576 allowed")),
        "{e}"
    );
    let e = host
        .decide("hostile", &hostile("garbage"))
        .await
        .unwrap_err();
    assert!(matches!(&e, PluginError::Invalid { .. }), "{e}");
    let d = host.decide("hostile", &hostile("deny")).await.unwrap();
    assert_eq!(d, Decision::Deny("ck-1 may not Deny".into()));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, max) = background.await.unwrap();
    assert!(ok > 100, "only {ok} good calls completed meanwhile");
    // A spinning guest yields every epoch tick, so good calls were never stuck behind it.
    assert!(max < Duration::from_millis(150), "a good call took {max:?}");
    let stats = host.inspect("hostile").unwrap().summary.stats;
    assert_eq!(
        (
            stats.timeouts,
            stats.out_of_memory,
            stats.traps,
            stats.invalid
        ),
        (1, 1, 2, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_deterministic_policy_s_decisions_are_cached_until_reload() {
    let f = fixture().await;
    let wasm = component("tests/components/hostile-policy/hostile_policy.wasm");
    let clocked = hostile_manifest(4).replace(r#"["log"]"#, r#"["log", "clock"]"#);
    let host = f
        .host(f.plugins_dir(
            "p",
            &[
                ("hostile", hostile_manifest(4), wasm.clone()),
                (
                    "clocked",
                    clocked.replace("\"hostile\"", "\"clocked\""),
                    wasm,
                ),
            ],
        ))
        .await;
    let stats = |name: &str| host.inspect(name).unwrap().summary.stats;
    for name in ["hostile", "clocked"] {
        for _ in 0..3 {
            let d = host.decide(name, &hostile("fine")).await.unwrap();
            assert!(matches!(d, Decision::Allow(_)), "{d:?}");
            let d = host.decide(name, &hostile("deny")).await.unwrap();
            assert_eq!(d, Decision::Deny("ck-1 may not Deny".into()));
            // Failures are never cached: each one reaches the plugin again.
            let e = host.decide(name, &hostile("trap")).await.unwrap_err();
            assert!(matches!(e, PluginError::Trap { .. }), "{e}");
        }
    }
    // Without `clock`, the plugin saw each distinct request once (plus every failing one).
    let s = stats("hostile");
    assert_eq!((s.calls, s.ok, s.traps, s.cached), (5, 2, 3, 4), "{s:?}");
    // A policy that may read the clock is asked every time.
    let s = stats("clocked");
    assert_eq!((s.calls, s.ok, s.traps, s.cached), (9, 6, 3, 0), "{s:?}");
    // A reload starts with an empty cache.
    host.load().await;
    host.decide("hostile", &hostile("fine")).await.unwrap();
    assert_eq!(stats("hostile").calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_holds() {
    let f = fixture().await;
    let wasm = component("tests/components/hostile-policy/hostile_policy.wasm");
    let host = f
        .host(f.plugins_dir("p", &[("hostile", hostile_manifest(1), wasm)]))
        .await;
    let t = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let host = Arc::clone(&host);
            tokio::spawn(async move { host.decide("hostile", &hostile("loop")).await })
        })
        .collect();
    let mut busy = 0;
    for c in calls {
        match c.await.unwrap() {
            Err(PluginError::Busy(_)) => busy += 1,
            Err(PluginError::Timeout { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    // One call ran (and timed out); the others waited for the slot until their own deadline.
    assert!(busy >= 2, "{busy} busy");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn the_precompile_cache_follows_the_component() {
    let f = fixture().await;
    let copy = f.dir.join("policy.wasm");
    std::fs::copy(
        component("plugins/policy-default/policy_default.wasm"),
        &copy,
    )
    .unwrap();
    let manifest = r#"name = "p"
world = "access-policy"
version = "0.1.0"
component = "@WASM@"
capabilities = ["log"]
"#;
    let dir = f.plugins_dir("p", &[("p", manifest.into(), copy.clone())]);
    let host = f.host(dir.clone()).await;
    let first = host.inspect("p").unwrap().component.unwrap();
    assert_eq!(first.cache, "miss");
    // Reloading (or restarting: a new host over the same cache) hits the cache.
    host.load().await;
    let again = host.inspect("p").unwrap().component.unwrap();
    assert_eq!(
        (again.cache.as_str(), &again.cache_key),
        ("hit", &first.cache_key)
    );
    let fresh_host = f.host(dir.clone()).await;
    assert_eq!(
        fresh_host.inspect("p").unwrap().component.unwrap().cache,
        "hit"
    );
    // A changed component gets a new key and is compiled again.
    std::fs::copy(
        component("tests/components/hostile-policy/hostile_policy.wasm"),
        &copy,
    )
    .unwrap();
    host.load().await;
    let changed = host.inspect("p").unwrap().component.unwrap();
    assert_eq!(changed.cache, "miss");
    assert_ne!(changed.cache_key, first.cache_key);
    // A damaged artifact is discarded and rebuilt, not trusted.
    let artifact = f
        .dir
        .join("cache")
        .join(format!("{}.cwasm", changed.cache_key));
    std::fs::write(&artifact, b"not an artifact").unwrap();
    let report = host.load().await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(host.inspect("p").unwrap().component.unwrap().cache, "miss");
    let d = host.decide("p", &hostile("deny")).await.unwrap();
    assert!(matches!(d, Decision::Deny(_)));
}

/// A plugin of `world` made by `arca plugin new` (from the SDK's template) in `into`, built
/// for wasm32-wasip2 outside the workspace, its component beside its manifest.
fn build_template(world: &str, into: &Path) -> PathBuf {
    let name = format!("my-{world}");
    let made = arca_tests::json_output(
        Command::new(arca_bin())
            .args(["plugin", "new", world, &name, "--dir"])
            .arg(into),
    )
    .unwrap();
    let dst = into.join(&name);
    assert_eq!(made["Directory"], dst.display().to_string());
    let out = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .current_dir(&dst)
        // Shared with plugins/build.sh, so the SDK's dependencies are compiled once.
        .env(
            "CARGO_TARGET_DIR",
            repo_root().join("target/wasm-templates"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{world}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_name = format!("my_{}", world.replace('-', "_"));
    let wasm = repo_root().join(format!(
        "target/wasm-templates/wasm32-wasip2/release/{crate_name}.wasm"
    ));
    std::fs::copy(&wasm, dst.join(format!("{crate_name}.wasm"))).unwrap();
    dst
}

#[tokio::test]
async fn templates_built_outside_the_workspace_load() {
    let f = fixture().await;
    let plugins = f.dir.join("authored");
    for world in ["access-policy", "rotator", "sse-integration"] {
        build_template(world, &plugins);
    }
    let host = f.host(plugins).await;
    let names: Vec<String> = host
        .list()
        .into_iter()
        .map(|p| format!("{}:{}", p.name, p.world))
        .collect();
    assert_eq!(
        names,
        [
            "my-access-policy:access-policy",
            "my-rotator:rotator",
            "my-sse-integration:sse-integration"
        ]
    );
    let d = host
        .decide(
            "my-access-policy",
            &access(
                PrincipalKind::AccessKey,
                "DescribeKey",
                None,
                "127.0.0.1",
                vec![],
            ),
        )
        .await
        .unwrap();
    assert!(matches!(d, Decision::Allow(_)), "{d:?}");
    let d = host
        .decide(
            "my-access-policy",
            &access(
                PrincipalKind::AccessKey,
                "ScheduleKeyDeletion",
                None,
                "127.0.0.1",
                vec![],
            ),
        )
        .await
        .unwrap();
    assert!(matches!(d, Decision::Deny(_)), "{d:?}");
    let v = host
        .rotate(
            "my-rotator",
            &f.caller.account,
            RotationStep::CreatePending,
            &rotation("", None, None),
        )
        .await
        .unwrap();
    assert!(
        matches!(v, Some(SecretData::Text(ref t)) if t.len() == 32),
        "{v:?}"
    );
    assert_eq!(
        host.service_info("my-sse-integration")
            .unwrap()
            .service_code,
        "example"
    );
}

fn cli(s: &TestServer, args: &[&str]) -> serde_json::Value {
    s.cli(args).unwrap()
}

#[tokio::test]
async fn a_server_wide_access_policy_gates_every_request_and_fails_closed() {
    let admin = format!("127.0.0.1:{}", arca_tests::free_port());
    let (_tmp, s) = hostile_policy_server(&["--admin-listen", &admin]);
    let c = s.client().unwrap();
    let key = crate::new_key(&c, "Aliyun_AES_256").await;
    // Encrypts keep flowing on another task while the policy misbehaves.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let (c, key, stop) = (s.client().unwrap(), key.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut ok = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.call("Encrypt", &[("KeyId", &key), ("Plaintext", "hi")])
                    .await
                    .unwrap();
                ok += 1;
            }
            ok
        })
    };
    for mode in ["loop", "bomb", "trap", "recurse", "huge", "garbage"] {
        let alias = format!("alias/hostile-{mode}");
        let e = c
            .call("DescribeKey", &[("KeyId", &alias)])
            .await
            .unwrap_err();
        let (status, code, message) = crate::api_error(&e);
        assert_eq!(
            (status, code),
            (503, "ServiceUnavailableTemporary"),
            "{mode}: {e}"
        );
        // The caller learns why, not a bare 503.
        let why = match mode {
            "loop" => "exceeded its time limit",
            "bomb" => "exceeded its memory limit",
            _ => "plugin `hostile`",
        };
        assert!(message.contains(why), "{mode}: {message}");
    }
    let e = c
        .call("DescribeKey", &[("KeyId", "alias/hostile-deny")])
        .await
        .unwrap_err();
    let arca_client::Error::Api {
        status,
        code,
        message,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!((*status, code.as_str()), (403, "Forbidden.NoPermission"));
    assert!(message.contains("may not Deny"), "{message}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(background.await.unwrap() > 20);
    // Admin actions are exempt (an operator can always look and repair), and show the counts.
    let detail = cli(&s, &["plugin", "inspect", "hostile"]);
    assert_eq!(detail["Stats"]["Timeouts"], 1);
    assert_eq!(detail["Stats"]["OutOfMemory"], 1);
    assert_eq!(detail["Stats"]["Traps"], 2);
    assert_eq!(detail["Stats"]["Invalid"], 2);
    // The same counts on /metrics.
    let (_, metrics) = arca_client::get(&format!("http://{admin}/metrics"))
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    for (outcome, n) in [
        ("timeout", 1),
        ("out_of_memory", 1),
        ("trap", 2),
        ("invalid", 2),
    ] {
        let series =
            format!("arca_plugin_calls_total{{plugin=\"hostile\",outcome=\"{outcome}\"}} {n}\n");
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    assert!(metrics.contains("arca_plugin_loaded{plugin=\"hostile\"} 1\n"));
    assert!(
        detail["Component"]["Imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "arca:plugin/log@0.1.0")
    );
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(
        log.contains("plugin `hostile` exceeded its time limit of 200 ms"),
        "{log}"
    );
}

#[tokio::test]
async fn plugins_are_listed_and_reloaded_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let plugins_arg = plugins.display().to_string();
    let s = TestServer::start_with_args(&["--plugins-dir", &plugins_arg]).unwrap();
    assert_eq!(
        cli(&s, &["plugin", "list"])["Plugins"],
        serde_json::json!([])
    );
    // Drop in a plugin and a broken manifest, reload.
    let (name, text, wasm) = shipped("policy-default");
    let d = plugins.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("plugin.toml"),
        text.replace("@WASM@", &wasm.display().to_string()),
    )
    .unwrap();
    let broken = plugins.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("plugin.toml"),
        "name = \"broken\"\nworld = \"nope\"\nversion = \"1\"\ncomponent = \"x\"\n",
    )
    .unwrap();
    let report = cli(&s, &["plugin", "reload"]);
    assert_eq!(report["Loaded"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        report["Failed"][0]
            .as_str()
            .unwrap()
            .contains("unknown world `nope`"),
        "{report}"
    );
    assert_eq!(
        report["Failed"][0]
            .as_str()
            .unwrap()
            .matches("plugin.toml")
            .count(),
        1,
        "the manifest's path is named once: {report}"
    );
    let list = cli(&s, &["plugin", "list"]);
    let names: Vec<(&str, &str)> = list["Plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["Name"].as_str().unwrap(), p["Status"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("broken", "failed"), ("policy-default", "loaded")]);
    // Non-admins may not administer plugins.
    let user = cli(&s, &["account", "create"]);
    let creds = arca_client::Credentials {
        access_key_id: user["AccessKeyId"].as_str().unwrap().into(),
        access_key_secret: user["AccessKeySecret"].as_str().unwrap().into(),
        account_id: user["AccountId"].as_str().unwrap().into(),
        region_id: "cn-hangzhou".into(),
    };
    let e = s
        .client_for(creds)
        .call("ArcaListPlugins", &[])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Forbidden.NoPermission"), "{e}");
}

#[test]
fn an_unloadable_access_policy_stops_the_server_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(arca_bin())
        .args(["serve", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--plugins-dir"])
        .arg(tmp.path())
        .args(["--access-policy", "missing"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access-policy missing: no access-policy plugin of that name loaded"),
        "{err}"
    );
}

#[tokio::test]
async fn the_sql_capability_reaches_only_the_operator_connections_on_a_real_postgres() {
    let pg = arca_tests::Postgres::start().unwrap();
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'app-pw-1'; CREATE TABLE t (n int); INSERT INTO t VALUES (41)")
        .unwrap();
    let f = fixture().await;
    let dir = probe_with_sql(&f, "pg");
    // The operator's connection file: the plugin sees the name, never the address or password.
    std::fs::write(dir.join("pg.password"), format!("{}\n", pg.password)).unwrap();
    std::fs::write(
        dir.join("connections.toml"),
        format!(
            "[pg]\nengine = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"postgres\"\nuser = \"postgres\"\npassword-file = \"pg.password\"\naccounts = [\"{}\"]\n",
            pg.port, f.caller.account
        ),
    )
    .unwrap();
    let sql = SqlConnections::load(&dir.join("connections.toml")).unwrap();
    assert_eq!(sql.names(), ["pg"]);
    let services = Services::new(Arc::clone(&f.kms), sql);
    let host = Arc::new(PluginHost::new(Some(dir), f.dir.join("cache"), services).unwrap());
    assert!(host.load().await.failed.is_empty());
    let run = |cmd: &str| probe(&host, &f.caller.account, cmd.to_string());
    assert_eq!(run("sql:pg:SELECT n + 1 FROM t").await.unwrap(), "42");
    assert_eq!(
        run("sql:pg:SELECT current_user::text").await.unwrap(),
        "postgres"
    );
    let e = run("sql:pg:SELEC oops").await.unwrap_err();
    assert!(
        e.to_string().contains("syntax error") && e.to_string().contains("42601"),
        "{e}"
    );
    // check-login opens a separate session with the given credentials.
    assert_eq!(run("login:pg:app:app-pw-1").await.unwrap(), "login ok");
    let e = run("login:pg:app:wrong").await.unwrap_err();
    assert!(
        e.to_string().contains("Denied")
            && e.to_string().contains("password authentication failed"),
        "{e}"
    );
    // The host's session survives a server-side disconnect: it reconnects on the next call.
    let killed = pg
        .psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'arca-plugin'")
        .unwrap();
    assert_eq!(killed, "1");
    assert_eq!(run("sql:pg:SELECT 7").await.unwrap(), "7");
}

/// The server-wide access policy sees the key each request uses: the key that sealed a
/// Decrypt's, ReEncrypt's or ExportDataKey's ciphertext (which names no key), and the key
/// behind an alias. The hostile policy denies those actions on any key it is shown; before,
/// Decrypt reached it with no resource and an alias only as the alias, and both were allowed.
#[tokio::test]
async fn the_access_policy_sees_every_key_a_request_uses() {
    let (_tmp, s) = hostile_policy_server(&[]);
    let c = s.client().unwrap();
    let key = crate::new_key(&c, "Aliyun_AES_256").await;
    c.call(
        "CreateAlias",
        &[("AliasName", "alias/app"), ("KeyId", &key)],
    )
    .await
    .unwrap();
    let sealed = c
        .call("Encrypt", &[("KeyId", "alias/app"), ("Plaintext", "hi")])
        .await
        .unwrap();
    let blob = sealed["CiphertextBlob"].as_str().unwrap();
    let denied = |e: arca_client::Error| {
        let (status, code, message) = crate::api_error(&e);
        assert_eq!((status, code), (403, "Forbidden.NoPermission"), "{e}");
        assert!(message.contains(&format!(":key/{key}")), "{message}");
    };
    denied(
        c.call("Decrypt", &[("CiphertextBlob", blob)])
            .await
            .unwrap_err(),
    );
    denied(
        c.call(
            "ReEncrypt",
            &[("CiphertextBlob", blob), ("DestinationKeyId", &key)],
        )
        .await
        .unwrap_err(),
    );
    denied(
        c.call("GenerateDataKey", &[("KeyId", "alias/app")])
            .await
            .unwrap_err(),
    );
}

/// A manifest may pin its component's SHA-256: the right bytes load, other bytes (a file
/// swapped beside the manifest) are refused with both hashes named.
#[tokio::test]
async fn a_pinned_component_loads_only_with_its_hash() {
    let f = fixture().await;
    let wasm = component("tests/components/hostile-policy/hostile_policy.wasm");
    let actual = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &std::fs::read(&wasm).unwrap(),
    ));
    let pinned = |name: &str, hash: &str| {
        format!(
            "name = \"{name}\"\nworld = \"access-policy\"\nversion = \"1\"\ncomponent = \"@WASM@\"\n\
             component-sha256 = \"{hash}\"\ncapabilities = [\"log\"]\n"
        )
    };
    let wrong = "ab".repeat(32);
    let dir = f.plugins_dir(
        "p",
        &[
            ("good", pinned("good", &actual.to_uppercase()), wasm.clone()),
            ("swapped", pinned("swapped", &wrong), wasm),
        ],
    );
    let services = Services::new(Arc::clone(&f.kms), SqlConnections::none());
    let host = Arc::new(PluginHost::new(Some(dir), f.dir.join("cache"), services).unwrap());
    let report = host.load().await;
    assert!(
        report.loaded.len() == 1 && report.loaded[0].starts_with("good"),
        "{report:?}"
    );
    let all = report.failed.join("\n");
    assert!(
        all.contains(&format!(
            "has SHA-256 {actual}, but the manifest pins {wrong}"
        )),
        "{all}"
    );
}

/// A connection with `sslmode = "verify-full"` reaches PostgreSQL over TLS, trusting only its
/// `ca-file`: the server's CA works (and the session is encrypted), another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_connections_use_tls_with_the_operators_ca() {
    let (pg, ca) = arca_tests::Postgres::start_tls().unwrap();
    let f = fixture().await;
    let dir = probe_with_sql(&f, "*");
    let other_ca = arca_host::pki::instance_tls("another", vec!["127.0.0.1".into()])
        .unwrap()
        .ca_pem;
    std::fs::write(dir.join("pg-ca.pem"), ca).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other_ca).unwrap();
    let mut text = String::new();
    for (name, ca) in [("good", "pg-ca.pem"), ("wrong", "other-ca.pem")] {
        text.push_str(
            &pg.connection_entry(&dir, name, &[f.caller.account.as_str()])
                .unwrap(),
        );
        text.push_str(&format!(
            "sslmode = \"verify-full\"\nca-file = \"{ca}\"\n\n"
        ));
    }
    std::fs::write(dir.join("connections.toml"), text).unwrap();
    let sql = SqlConnections::load(&dir.join("connections.toml")).unwrap();
    let services = Services::new(Arc::clone(&f.kms), sql);
    let host = Arc::new(PluginHost::new(Some(dir), f.dir.join("cache"), services).unwrap());
    assert!(host.load().await.failed.is_empty());
    let run = |cmd: &str| probe(&host, &f.caller.account, cmd.to_string());
    assert_eq!(
        run("sql:good:SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .await
            .unwrap(),
        "true"
    );
    let e = run("sql:wrong:SELECT 1").await.unwrap_err();
    assert!(e.to_string().contains("Unavailable"), "{e}");
}

//! Accounts: the admin CLI creates them, and each sees only its own resources.

use std::process::Command;

use arca_client::Credentials;
use arca_tests::arca_bin;

use crate::{new_key, server};

fn cli(s: &arca_tests::TestServer, args: &[&str]) -> serde_json::Value {
    let out = Command::new(arca_bin())
        .args(args)
        .arg("--endpoint")
        .arg(&s.endpoint)
        .arg("--credentials")
        .arg(s.data_dir.join("credentials.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn creds(v: &serde_json::Value) -> Credentials {
    Credentials {
        access_key_id: v["AccessKeyId"].as_str().unwrap().to_owned(),
        access_key_secret: v["AccessKeySecret"].as_str().unwrap().to_owned(),
        account_id: v["AccountId"].as_str().unwrap().to_owned(),
        region_id: "cn-hangzhou".into(),
    }
}

#[tokio::test]
async fn accounts_see_only_their_own_keys() {
    let s = server();
    let admin = s.client().unwrap();
    let admin_key = new_key(&admin, "Aliyun_AES_256").await;
    admin
        .call(
            "CreateAlias",
            &[("AliasName", "alias/shared-name"), ("KeyId", &admin_key)],
        )
        .await
        .unwrap();
    let sealed = admin
        .call("Encrypt", &[("KeyId", &admin_key), ("Plaintext", "mine")])
        .await
        .unwrap();
    let admin_arn = admin
        .call("DescribeKey", &[("KeyId", &admin_key)])
        .await
        .unwrap()["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();

    let made = cli(&s, &["account", "create"]);
    let other = s.client_for(creds(&made));
    assert_ne!(
        made["AccountId"],
        s.credentials().unwrap().account_id.as_str()
    );

    assert_eq!(other.call("ListKeys", &[]).await.unwrap()["TotalCount"], 0);
    for key in [admin_key.as_str(), admin_arn.as_str(), "alias/shared-name"] {
        let e = other
            .call("DescribeKey", &[("KeyId", key)])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("Forbidden.KeyNotFound"), "{key}");
        let e = other
            .call("Encrypt", &[("KeyId", key), ("Plaintext", "x")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("Forbidden.KeyNotFound"), "{key}");
    }
    let e = other
        .call(
            "Decrypt",
            &[("CiphertextBlob", sealed["CiphertextBlob"].as_str().unwrap())],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some("InvalidCiphertext"),
        "another account's ciphertext does not open"
    );
    let e = other
        .call("DisableKey", &[("KeyId", &admin_key)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("Forbidden.KeyNotFound"));

    // Alias names are per account: the same name is free in the other one.
    let own = new_key(&other, "Aliyun_AES_256").await;
    other
        .call(
            "CreateAlias",
            &[("AliasName", "alias/shared-name"), ("KeyId", &own)],
        )
        .await
        .unwrap();
    let d = other
        .call("DescribeKey", &[("KeyId", "alias/shared-name")])
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyId"], own.as_str());
    assert_eq!(d["KeyMetadata"]["Creator"], made["AccountId"]);

    // Only admins administer.
    let e = other.call("ArcaCreateAccount", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some("Forbidden.NoPermission"));
    let second = cli(
        &s,
        &[
            "access-key",
            "create",
            "--account-id",
            made["AccountId"].as_str().unwrap(),
        ],
    );
    assert_eq!(second["AccountId"], made["AccountId"]);
    let again = s.client_for(creds(&second));
    assert_eq!(again.call("ListKeys", &[]).await.unwrap()["TotalCount"], 1);
    let listed = cli(&s, &["account", "list"]);
    assert_eq!(listed["Accounts"]["Account"].as_array().unwrap().len(), 2);
}

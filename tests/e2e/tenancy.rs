//! Accounts: the admin CLI creates them, and each sees only its own resources.

use arca_client::Credentials;

use arca_tests::Served;

use crate::{new_key, server};

fn cli(s: &impl Served, args: &[&str]) -> serde_json::Value {
    s.cli(args).unwrap()
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
    for key in [admin_key.as_str(), "alias/shared-name"] {
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
    // By ARN the key is found, and its default (owner-only) policy refuses.
    let e = other
        .call("Encrypt", &[("KeyId", &admin_arn), ("Plaintext", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("Forbidden.NoPermission"));
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

#[tokio::test]
async fn a_key_policy_grants_another_account_use_by_arn() {
    let s = server();
    let owner = s.client().unwrap();
    let grantee_creds = creds(&cli(&s, &["account", "create"]));
    let grantee_account = grantee_creds.account_id.clone();
    let grantee = s.client_for(grantee_creds);
    let stranger = s.client_for(creds(&cli(&s, &["account", "create"])));
    let made = owner.call("CreateKey", &[]).await.unwrap();
    let (key, arn) = (
        made["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned(),
        made["KeyMetadata"]["Arn"].as_str().unwrap().to_owned(),
    );
    let default = owner
        .call("GetKeyPolicy", &[("KeyId", &key)])
        .await
        .unwrap();
    assert!(default["Policy"].as_str().unwrap().contains("kms:*"));
    let policy = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Principal":{{"RAM":["acs:ram::{grantee_account}:*"]}},"Action":["kms:Encrypt","kms:GenerateDataKey"],"Resource":["*"]}}]}}"#
    );
    let e = grantee
        .call("SetKeyPolicy", &[("KeyId", &arn), ("Policy", &policy)])
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some("Forbidden.NoPermission"),
        "only the owner sets the policy"
    );
    owner
        .call("SetKeyPolicy", &[("KeyId", &key), ("Policy", &policy)])
        .await
        .unwrap();
    assert_eq!(
        owner
            .call("GetKeyPolicy", &[("KeyId", &key)])
            .await
            .unwrap()["Policy"],
        policy.as_str()
    );
    let e = owner
        .call("SetKeyPolicy", &[("KeyId", &key), ("Policy", "{not json")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameter"));

    // Granted actions work by ARN; the owner can decrypt what the grantee sealed.
    let sealed = grantee
        .call("Encrypt", &[("KeyId", &arn), ("Plaintext", "shared")])
        .await
        .unwrap();
    assert_eq!(sealed["KeyId"], key.as_str());
    grantee
        .call("GenerateDataKey", &[("KeyId", &arn)])
        .await
        .unwrap();
    let blob = sealed["CiphertextBlob"].as_str().unwrap();
    assert_eq!(
        owner
            .call("Decrypt", &[("CiphertextBlob", blob)])
            .await
            .unwrap()["Plaintext"],
        "shared"
    );
    // Not granted: Decrypt (opaque), management, and everything for a stranger.
    let e = grantee
        .call("Decrypt", &[("CiphertextBlob", blob)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidCiphertext"));
    let e = grantee
        .call("DisableKey", &[("KeyId", &arn)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("Forbidden.NoPermission"));
    let e = stranger
        .call("Encrypt", &[("KeyId", &arn), ("Plaintext", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("Forbidden.NoPermission"));
    let e = grantee
        .call(
            "CreateAlias",
            &[("AliasName", "alias/borrowed"), ("KeyId", &arn)],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some("Forbidden.NoPermission"),
        "aliases name own keys only"
    );
    // Granting Decrypt opens the owner's ciphertexts to the grantee.
    let with_decrypt = policy.replace(r#""kms:Encrypt""#, r#""kms:Encrypt","kms:Decrypt""#);
    owner
        .call(
            "SetKeyPolicy",
            &[("KeyId", &key), ("Policy", &with_decrypt)],
        )
        .await
        .unwrap();
    assert_eq!(
        grantee
            .call("Decrypt", &[("CiphertextBlob", blob)])
            .await
            .unwrap()["Plaintext"],
        "shared"
    );
}

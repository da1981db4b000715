"""Secrets Manager through the official SDKs: every action and every stage transition, in each
signing mode (the legacy SDK has no BatchGetSecretValue, so that one runs on the current SDK)."""

import base64
import json
import time
import uuid

import pytest

from conftest import MODES, sdk
from test_policy import new_account
from test_sdk import create_key, fails


def name(prefix="app"):
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def create(kms, secret=None, data="s3cr3t-value", version="v1", **params):
    secret = secret or name()
    reply = kms("CreateSecret", SecretName=secret, SecretData=data, VersionId=version, **params)
    return secret, reply


def value(kms, secret, **params):
    return kms("GetSecretValue", SecretName=secret, **params)


def stages(reply):
    return sorted(reply["VersionStages"]["VersionStage"])


def versions(kms, secret, deprecated=False):
    listed = kms("ListSecretVersionIds", SecretName=secret,
                 IncludeDeprecated="true" if deprecated else "false")["VersionIds"]["VersionId"]
    return {v["VersionId"]: sorted(v["VersionStages"]["VersionStage"]) for v in listed}


def test_create_get_describe(kms, server):
    secret, made = create(kms, Description="db password",
                          Tags=json.dumps([{"TagKey": "env", "TagValue": "prod"}]))
    account = server.credentials["account_id"]
    assert made["Arn"] == f"acs:kms:cn-hangzhou:{account}:secret/{secret}"
    assert (made["SecretName"], made["VersionId"], made["SecretType"]) == (secret, "v1", "Generic")
    got = value(kms, secret)
    assert (got["SecretData"], got["SecretDataType"], got["VersionId"]) == ("s3cr3t-value", "text", "v1")
    assert stages(got) == ["ACSCurrent"]
    assert got["CreateTime"].endswith("Z")
    # By ARN, by version id, by stage.
    assert value(kms, made["Arn"])["SecretData"] == "s3cr3t-value"
    assert value(kms, secret, VersionId="v1")["SecretData"] == "s3cr3t-value"
    assert value(kms, secret, VersionStage="ACSCurrent")["VersionId"] == "v1"
    d = kms("DescribeSecret", SecretName=secret, FetchTags="true")
    assert (d["Description"], d["Arn"], d["AutomaticRotation"]) == ("db password", made["Arn"], "Disabled")
    assert d["Tags"]["Tag"] == [{"TagKey": "env", "TagValue": "prod"}]
    assert d["EncryptionKeyId"].startswith("key-")
    assert "PlannedDeleteTime" not in d


def test_binary_values_round_trip(kms):
    raw = bytes(range(256))
    secret, _ = create(kms, data=base64.b64encode(raw).decode(), SecretDataType="binary")
    got = value(kms, secret)
    assert got["SecretDataType"] == "binary"
    assert base64.b64decode(got["SecretData"]) == raw
    fails("InvalidParameter", 400, kms, "CreateSecret", SecretName=name(), SecretData="not base64!",
          VersionId="v1", SecretDataType="binary")


def test_put_secret_value_moves_current_and_previous(kms):
    secret, _ = create(kms)
    put = kms("PutSecretValue", SecretName=secret, SecretData="two", VersionId="v2")
    assert put["VersionStages"]["VersionStage"] == ["ACSCurrent"]
    assert value(kms, secret)["SecretData"] == "two"
    assert value(kms, secret, VersionStage="ACSPrevious")["SecretData"] == "s3cr3t-value"
    assert versions(kms, secret) == {"v1": ["ACSPrevious"], "v2": ["ACSCurrent"]}
    kms("PutSecretValue", SecretName=secret, SecretData="three", VersionId="v3")
    # v1 lost its last stage: deprecated, hidden unless asked for, still readable by id.
    assert versions(kms, secret) == {"v2": ["ACSPrevious"], "v3": ["ACSCurrent"]}
    assert versions(kms, secret, deprecated=True)["v1"] == []
    assert value(kms, secret, VersionId="v1")["SecretData"] == "s3cr3t-value"
    # Idempotent by VersionId: a repeat changes nothing, not even the value.
    again = kms("PutSecretValue", SecretName=secret, SecretData="other", VersionId="v2")
    assert again["VersionStages"]["VersionStage"] == ["ACSPrevious"]
    assert value(kms, secret, VersionId="v2")["SecretData"] == "two"
    # Custom stages, and a version put without ACSCurrent.
    kms("PutSecretValue", SecretName=secret, SecretData="next", VersionId="v4",
        VersionStages=json.dumps(["ACSNext", "Blue"]))
    assert value(kms, secret)["SecretData"] == "three"
    assert value(kms, secret, VersionStage="Blue")["VersionId"] == "v4"
    fails("Forbidden.ResourceNotFound", 404, kms, "GetSecretValue", SecretName=secret, VersionStage="Green")
    fails("Forbidden.ResourceNotFound", 404, kms, "GetSecretValue", SecretName=secret, VersionId="v9")
    fails("Forbidden.ResourceNotFound", 404, kms, "GetSecretValue", SecretName=secret,
          VersionId="v1", VersionStage="ACSCurrent")
    fails("InvalidParameter", 400, kms, "PutSecretValue", SecretName=secret, SecretData="x",
          VersionId="v5", VersionStages="not json")


def test_update_secret_version_stage(kms):
    secret, _ = create(kms)
    kms("PutSecretValue", SecretName=secret, SecretData="two", VersionId="v2")
    # Scenario 1: attach a custom stage.
    kms("UpdateSecretVersionStage", SecretName=secret, VersionStage="Green", MoveToVersion="v1")
    assert versions(kms, secret)["v1"] == ["ACSPrevious", "Green"]
    # Scenario 2: remove it.
    kms("UpdateSecretVersionStage", SecretName=secret, VersionStage="Green", RemoveFromVersion="v1")
    assert versions(kms, secret)["v1"] == ["ACSPrevious"]
    # Scenario 3: roll ACSCurrent back; the version it leaves becomes ACSPrevious.
    kms("UpdateSecretVersionStage", SecretName=secret, VersionStage="ACSCurrent",
        RemoveFromVersion="v2", MoveToVersion="v1")
    assert versions(kms, secret) == {"v1": ["ACSCurrent"], "v2": ["ACSPrevious"]}
    assert value(kms, secret)["SecretData"] == "s3cr3t-value"
    # ACSCurrent and ACSPrevious only move; a wrong RemoveFromVersion is refused.
    fails("InvalidParameter", 400, kms, "UpdateSecretVersionStage", SecretName=secret,
          VersionStage="ACSCurrent", RemoveFromVersion="v1")
    fails("InvalidParameter", 400, kms, "UpdateSecretVersionStage", SecretName=secret,
          VersionStage="ACSCurrent", RemoveFromVersion="v2", MoveToVersion="v2")
    fails("InvalidParameter", 400, kms, "UpdateSecretVersionStage", SecretName=secret, VersionStage="Green")
    fails("Forbidden.ResourceNotFound", 404, kms, "UpdateSecretVersionStage", SecretName=secret,
          VersionStage="Green", MoveToVersion="nope")


def update_custom_data(kms, secret, data):
    if kms.mode == "legacy":
        return kms("UpdateSecret", SecretName=secret, ExtendedConfigCustomData=json.dumps(data))
    from alibabacloud_kms20160120 import models
    return kms("UpdateSecret", SecretName=secret,
               ExtendedConfig=models.UpdateSecretRequestExtendedConfig(custom_data=data))


def test_update_secret_and_extended_config(kms):
    config = {"SecretSubType": "SingleUser", "DBInstanceId": "pg-local", "CustomData": {}}
    secret, made = create(kms, data=json.dumps({"AccountName": "app", "AccountPassword": "pw"}),
                          SecretType="Rds", ExtendedConfig=config)
    assert made["SecretType"] == "Rds"
    assert json.loads(made["ExtendedConfig"])["DBInstanceId"] == "pg-local"
    kms("UpdateSecret", SecretName=secret, Description="changed")
    update_custom_data(kms, secret, {"owner": "team-a"})
    d = kms("DescribeSecret", SecretName=secret)
    assert d["Description"] == "changed"
    extended = json.loads(d["ExtendedConfig"])
    assert extended["CustomData"] == {"owner": "team-a"}
    assert extended["SecretSubType"] == "SingleUser"
    assert "ExtendedConfig" not in value(kms, secret)
    got = value(kms, secret, FetchExtendedConfig=True)
    assert json.loads(got["ExtendedConfig"])["CustomData"] == {"owner": "team-a"}
    # Managed secrets need their ExtendedConfig and hold text.
    fails("MissingParameter", 400, kms, "CreateSecret", SecretName=name(), SecretData="x",
          VersionId="v1", SecretType="Rds")
    fails("InvalidParameter", 400, kms, "CreateSecret", SecretName=name(), SecretData="eA==",
          VersionId="v1", SecretType="Rds", SecretDataType="binary", ExtendedConfig=config)


def test_rotation_policy(kms):
    secret, _ = create(kms)
    kms("UpdateSecretRotationPolicy", SecretName=secret, EnableAutomaticRotation=True,
        RotationInterval="7d")
    d = kms("DescribeSecret", SecretName=secret)
    assert (d["AutomaticRotation"], d["RotationInterval"]) == ("Enabled", "604800s")
    assert d["NextRotationDate"].endswith("Z")
    for bad in ("5h", "8761h", "x"):
        fails("InvalidParameter", 400, kms, "UpdateSecretRotationPolicy", SecretName=secret,
              EnableAutomaticRotation=True, RotationInterval=bad)
    kms("UpdateSecretRotationPolicy", SecretName=secret, EnableAutomaticRotation=True,
        RotationInterval="6h")
    assert kms("DescribeSecret", SecretName=secret)["RotationInterval"] == "21600s"
    kms("UpdateSecretRotationPolicy", SecretName=secret, EnableAutomaticRotation=False)
    d = kms("DescribeSecret", SecretName=secret)
    assert d["AutomaticRotation"] == "Disabled" and "NextRotationDate" not in d
    _, made = create(kms, EnableAutomaticRotation=True, RotationInterval="8760h")
    assert (made["AutomaticRotation"], made["RotationInterval"]) == ("Enabled", "31536000s")


def test_delete_window_restore_and_force(kms):
    secret, _ = create(kms)
    deleted = kms("DeleteSecret", SecretName=secret, RecoveryWindowInDays="10")
    assert deleted["PlannedDeleteTime"].endswith("Z")
    for action, extra in [("GetSecretValue", {}), ("PutSecretValue", {"SecretData": "x", "VersionId": "v2"}),
                          ("UpdateSecret", {"Description": "x"})]:
        err = fails("Rejected.ResourceInDeleteWindow", 409, kms, action, SecretName=secret, **extra)
        assert "secret in delete peroid" in err.message
    d = kms("DescribeSecret", SecretName=secret)
    assert d["PlannedDeleteTime"] == deleted["PlannedDeleteTime"]
    listed = kms("ListSecrets", Filters=json.dumps([{"Key": "SecretName", "Values": [secret]}]))
    assert listed["SecretList"]["Secret"][0]["PlannedDeleteTime"] == deleted["PlannedDeleteTime"]
    # The name stays taken while the secret can come back.
    fails("Rejected.ResourceExist", 409, kms, "CreateSecret", SecretName=secret, SecretData="x", VersionId="v1")
    kms("RestoreSecret", SecretName=secret)
    assert value(kms, secret)["SecretData"] == "s3cr3t-value"
    fails("InvalidParameter", 400, kms, "RestoreSecret", SecretName=secret)
    fails("InvalidParameter", 400, kms, "DeleteSecret", SecretName=secret, RecoveryWindowInDays="3")
    # Forced: gone at once, and the name is free again with none of the old versions.
    kms("PutSecretValue", SecretName=secret, SecretData="two", VersionId="v2")
    kms("DeleteSecret", SecretName=secret, ForceDeleteWithoutRecovery="true")
    fails("Forbidden.ResourceNotFound", 404, kms, "DescribeSecret", SecretName=secret)
    create(kms, secret, data="reborn")
    assert versions(kms, secret, deprecated=True) == {"v1": ["ACSCurrent"]}
    assert value(kms, secret)["SecretData"] == "reborn"


def test_list_secrets_filters_tags_and_paging(fresh_server):
    for mode in MODES:
        kms = sdk(mode, fresh_server)
        prefix = f"list-{mode}"
        made = [create(kms, f"{prefix}/{i}", Description=f"number {i}",
                       Tags=json.dumps([{"TagKey": "idx", "TagValue": str(i % 2)}]))[0]
                for i in range(5)]
        everything = kms("ListSecrets", PageSize=100)["SecretList"]["Secret"]
        mine = [s for s in everything if s["SecretName"].startswith(prefix)]
        assert [s["SecretName"] for s in mine] == made
        assert all(s["SecretType"] == "Generic" and "Tags" not in s for s in mine)
        page = kms("ListSecrets", PageSize=2, PageNumber=2)
        assert page["PageSize"] == 2 and page["PageNumber"] == 2 and len(page["SecretList"]["Secret"]) == 2
        assert isinstance(page["TotalCount"], int)
        odd = kms("ListSecrets", FetchTags="true", PageSize=100,
                  Filters=json.dumps([{"Key": "TagValue", "Values": ["1"]},
                                      {"Key": "SecretName", "Values": made}]))["SecretList"]["Secret"]
        assert [s["SecretName"] for s in odd] == [made[1], made[3]]
        assert odd[0]["Tags"]["Tag"] == [{"TagKey": "idx", "TagValue": "1"}]
        desc = kms("ListSecrets", Filters=json.dumps([{"Key": "Description", "Values": ["number 4"]},
                                                      {"Key": "SecretName", "Values": made}]))
        assert [s["SecretName"] for s in desc["SecretList"]["Secret"]] == [made[4]]
        fails("InvalidParameter", 400, kms, "ListSecrets", Filters=json.dumps([{"Key": "Color", "Values": ["x"]}]))


def secret_tags(kms, secret):
    d = kms("DescribeSecret", SecretName=secret, FetchTags="true")
    return {t["TagKey"]: t["TagValue"] for t in d["Tags"]["Tag"]}


def test_tags_on_secrets(kms):
    secret, _ = create(kms)
    kms("TagResource", SecretName=secret, Tags=json.dumps([{"TagKey": "team", "TagValue": "a"}]))
    assert secret_tags(kms, secret) == {"team": "a"}
    kms("UntagResource", SecretName=secret, TagKeys=json.dumps(["team"]))
    assert secret_tags(kms, secret) == {}
    fails("Forbidden.ResourceNotFound", 404, kms, "TagResource", SecretName="no/such",
          Tags=json.dumps([{"TagKey": "k", "TagValue": "v"}]))


@pytest.mark.parametrize("mode", ["v3", "v2"])
def test_batch_tags_on_secrets(server, mode):
    from alibabacloud_kms20160120 import models
    kms = sdk(mode, server)
    a, _ = create(kms)
    b, _ = create(kms)
    kms("TagResources", RegionId="cn-hangzhou", ResourceType="secret", ResourceId=[a, b],
        Tag=[models.TagResourcesRequestTag(key="app", value="billing")])
    assert secret_tags(kms, a) == secret_tags(kms, b) == {"app": "billing"}
    listed = kms("ListTagResources", RegionId="cn-hangzhou", ResourceType="secret",
                 ResourceId=[a])["TagResources"]["TagResource"]
    assert listed == [{"ResourceId": a, "ResourceType": "secret", "TagKey": "app", "TagValue": "billing"}]
    kms("UntagResources", RegionId="cn-hangzhou", ResourceType="secret", ResourceId=[a, b], TagKey=["app"])
    assert secret_tags(kms, a) == secret_tags(kms, b) == {}


def test_policies_and_cross_account_reads(server):
    reader_creds = new_account(server)
    for mode in MODES:
        owner, reader = sdk(mode, server), sdk(mode, server, reader_creds)
        secret, made = create(owner)
        default = json.loads(owner("GetSecretPolicy", SecretName=secret)["Policy"])
        assert default["Statement"][0]["Action"] == ["kms:*"]
        fails("Forbidden.NoPermission", 403, reader, "GetSecretValue", SecretName=made["Arn"])
        fails("Forbidden.ResourceNotFound", 404, reader, "GetSecretValue", SecretName=secret)
        policy = json.dumps({"Version": "1", "Statement": [{
            "Effect": "Allow", "Principal": {"RAM": [f"acs:ram::{reader_creds['account_id']}:*"]},
            "Action": ["kms:GetSecretValue"], "Resource": ["*"]}]})
        owner("SetSecretPolicy", SecretName=secret, Policy=policy, PolicyName="default")
        assert json.loads(owner("GetSecretPolicy", SecretName=secret)["Policy"]) == json.loads(policy)
        assert reader("GetSecretValue", SecretName=made["Arn"])["SecretData"] == "s3cr3t-value"
        fails("Forbidden.NoPermission", 403, reader, "PutSecretValue", SecretName=made["Arn"],
              SecretData="x", VersionId="v2")
        fails("Forbidden.NoPermission", 403, reader, "SetSecretPolicy", SecretName=made["Arn"], Policy=policy)
        fails("InvalidParameter", 400, owner, "SetSecretPolicy", SecretName=secret, Policy="{}")


def test_disabling_the_cmk_stops_reads_until_enabled(kms):
    key = create_key(kms)["KeyId"]
    secret, _ = create(kms, EncryptionKeyId=key)
    assert kms("DescribeSecret", SecretName=secret)["EncryptionKeyId"] == key
    kms("DisableKey", KeyId=key)
    err = fails("Rejected.Disabled", 409, kms, "GetSecretValue", SecretName=secret)
    assert "Disabled" in err.message
    fails("Rejected.Disabled", 409, kms, "PutSecretValue", SecretName=secret, SecretData="x", VersionId="v2")
    kms("EnableKey", KeyId=key)
    assert value(kms, secret)["SecretData"] == "s3cr3t-value"
    sign = create_key(kms, KeySpec="EC_P256", KeyUsage="SIGN/VERIFY")["KeyId"]
    fails("InvalidParameter", 400, kms, "CreateSecret", SecretName=name(), SecretData="x",
          VersionId="v1", EncryptionKeyId=sign)


def test_secrets_without_a_key_share_the_account_default_key(kms):
    a, _ = create(kms)
    b, _ = create(kms)
    ka = kms("DescribeSecret", SecretName=a)["EncryptionKeyId"]
    assert ka == kms("DescribeSecret", SecretName=b)["EncryptionKeyId"]
    assert kms("DescribeKey", KeyId=ka)["KeyMetadata"]["KeySpec"] == "Aliyun_AES_256"


def test_error_codes(kms):
    secret, _ = create(kms)
    fails("Rejected.ResourceExist", 409, kms, "CreateSecret", SecretName=secret, SecretData="x", VersionId="v1")
    fails("Forbidden.ResourceNotFound", 404, kms, "GetSecretValue", SecretName="no/such/secret")
    fails("InvalidParameter", 400, kms, "CreateSecret", SecretName="bad name!", SecretData="x", VersionId="v1")
    fails("InvalidParameter", 400, kms, "CreateSecret", SecretName="acs/mine", SecretData="x", VersionId="v1")
    fails("InvalidParameter", 400, kms, "CreateSecret", SecretName=name(), SecretData="x" * 30721, VersionId="v1")
    fails("MissingParameter", 400, kms, "CreateSecret", SecretName=name(), SecretData="x")
    fails("InvalidParameter", 400, kms, "CreateSecret", SecretName=name(), SecretData="x",
          VersionId="v1", SecretType="Vault")


@pytest.mark.parametrize("mode", ["v3", "v2"])
def test_batch_get_secret_value(server, mode):
    from alibabacloud_kms20160120 import models
    kms = sdk(mode, server)
    a, _ = create(kms, data="alpha")
    b, _ = create(kms, data="beta")
    kms("PutSecretValue", SecretName=b, SecretData="beta-2", VersionId="v2")
    items = [models.BatchGetSecretValueRequestSecretsList(secret_name=a),
             models.BatchGetSecretValueRequestSecretsList(secret_name=b, version_stage="ACSPrevious"),
             models.BatchGetSecretValueRequestSecretsList(secret_name="missing/secret")]
    got = kms("BatchGetSecretValue", SecretsList=items)
    values = {(v["SecretName"], v["VersionId"]): v["SecretData"] for v in got["SecretValues"]}
    assert values == {(a, "v1"): "alpha", (b, "v1"): "beta"}
    assert got["Errors"] == [{"SecretName": "missing/secret", "Code": "Forbidden.ResourceNotFound",
                              "Message": "The resource is not found.", "HttpStatus": 404}]


def test_values_stay_out_of_logs_and_audit(fresh_server):
    kms = sdk("legacy", fresh_server)
    marker = "never-log-this-" + uuid.uuid4().hex
    secret, _ = create(kms, data=marker)
    kms("PutSecretValue", SecretName=secret, SecretData=marker + "-2", VersionId="v2")
    assert value(kms, secret)["SecretData"] == marker + "-2"
    fails("InvalidParameter", 400, kms, "PutSecretValue", SecretName=secret, SecretData=marker,
          VersionId="v3", VersionStages="[bad")
    time.sleep(0.3)  # the audit writer flushes every 20 ms
    audit = (fresh_server.data_dir / "audit.log").read_text()
    assert "GetSecretValue" in audit and secret in audit
    log = (fresh_server.data_dir.parent / f"{fresh_server.data_dir.name}.log").read_text()
    store = (fresh_server.data_dir / "arca.redb").read_bytes()
    for text in (audit, log):
        assert marker not in text
    assert marker.encode() not in store, "values are stored sealed"


def test_kill_9_loses_no_acknowledged_version(fresh_server):
    kms = sdk("v3", fresh_server)
    secret, _ = create(kms)
    for i in range(2, 12):
        kms("PutSecretValue", SecretName=secret, SecretData=f"value-{i}", VersionId=f"v{i}")
    fresh_server.kill9()
    fresh_server.start()
    kms = sdk("v3", fresh_server)
    assert value(kms, secret)["SecretData"] == "value-11"
    assert value(kms, secret, VersionStage="ACSPrevious")["VersionId"] == "v10"
    assert len(versions(kms, secret, deprecated=True)) == 11


def test_rotate_secret_through_the_sdk(kms):
    """RotateSecret with the shipped generic rotator (the server loads ./plugins)."""
    old = json.dumps({"user": "app", "password": "old"})
    secret, _ = create(kms, data=old, ExtendedConfig={"PasswordLength": 20, "Fields": ["password"]})
    rotated = kms("RotateSecret", SecretName=secret, VersionId="rot-1")
    assert (rotated["VersionId"], rotated["SecretName"]) == ("rot-1", secret)
    assert rotated["Arn"].endswith(f":secret/{secret}")
    now = value(kms, secret)
    assert (now["VersionId"], stages(now)) == ("rot-1", ["ACSCurrent"])
    data = json.loads(now["SecretData"])
    assert data["user"] == "app" and len(data["password"]) == 20 and data["password"] != "old"
    assert value(kms, secret, VersionStage="ACSPrevious")["SecretData"] == old
    kms("RotateSecret", SecretName=secret, VersionId="rot-1")  # idempotent
    assert versions(kms, secret, deprecated=True) == {"v1": ["ACSPrevious"], "rot-1": ["ACSCurrent"]}
    assert kms("DescribeSecret", SecretName=secret)["LastRotationDate"].endswith("Z")
    fails("MissingParameter", 400, kms, "RotateSecret", SecretName=secret)

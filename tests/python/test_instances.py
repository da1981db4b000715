"""KMS instances through the official SDKs: provisioning (admin CLI), the instance actions,
placing keys and secrets with DKMSInstanceId, limits, per-instance throttling under load, and
release."""

import json
import subprocess
import threading
import time

import pytest

from conftest import MODES, ApiError, arca_bin, sdk
from test_policy import new_account
from test_sdk import create_key, fails


def new_instance(server, account_id, spec=1000, keys=1000, secrets=100, name=None):
    args = [arca_bin(), "instance", "create", "--endpoint", server.endpoint,
            "--credentials", str(server.data_dir / "credentials.json"),
            "--account-id", account_id, "--spec", str(spec), "--keys", str(keys),
            "--secrets", str(secrets)]
    if name:
        args += ["--name", name]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["KmsInstance"]["InstanceId"]


@pytest.fixture(scope="module")
def tenant(server):
    return new_account(server)


def test_provision_list_get_and_quota_infos(server, tenant):
    inst = new_instance(server, tenant["account_id"], spec=300, keys=2, secrets=1, name="payments")
    assert inst.startswith("kst-")
    # The current SDK (V3 and V1 signatures) models every instance action; the legacy SDK has
    # ListKmsInstances and GetKmsInstance.
    for mode in MODES:
        kms = sdk(mode, server, tenant)
        listed = kms("ListKmsInstances", PageSize=100)
        ids = [i["KmsInstanceId"] for i in listed["KmsInstances"]["KmsInstance"]]
        assert inst in ids and listed["TotalCount"] == len(ids)
        arn = next(i["KmsInstanceArn"] for i in listed["KmsInstances"]["KmsInstance"]
                   if i["KmsInstanceId"] == inst)
        assert arn == f"acs:kms:cn-hangzhou:{tenant['account_id']}:keystore/{inst}"
        got = kms("GetKmsInstance", KmsInstanceId=inst)["KmsInstance"]
        assert (got["InstanceId"], got["InstanceName"], got["Spec"], got["KeyNum"], got["SecretNum"],
                got["Status"]) == (inst, "payments", 300, 2, "1", "Connected")
    kms = sdk("v3", server, tenant)
    assert kms("GetDefaultKmsInstance")["DefaultKmsInstanceId"] == ids[0]
    infos = kms("GetKmsInstanceQuotaInfos", KmsInstanceId=inst)["KmsInstanceQuotaInfos"]
    by_type = {q["ResourceType"]: (q["ResourceQuota"], q["UsedQuantity"]) for q in infos}
    assert by_type["key"] == (2, 0) and by_type["secret"] == (1, 0) and by_type["qps"][0] == 300
    only_keys = kms("GetKmsInstanceQuotaInfos", KmsInstanceId=inst, ResourceType="key")
    assert [q["ResourceType"] for q in only_keys["KmsInstanceQuotaInfos"]] == ["key"]
    fails("InvalidParameter", 400, kms, "GetKmsInstanceQuotaInfos", KmsInstanceId=inst,
          ResourceType="disk")
    # Another account cannot see it, nor place keys in it.
    other = sdk("v3", server)
    fails("Forbidden.ResourceNotFound", 404, other, "GetKmsInstance", KmsInstanceId=inst)
    fails("Forbidden.ResourceNotFound", 404, other, "CreateKey", DKMSInstanceId=inst)
    assert inst not in json.dumps(other("ListKmsInstances"))
    fails("InvalidParameter", 400, kms, "GetKmsInstance", KmsInstanceId="not-an-instance")


def test_instance_create_is_for_admins_only(server, tenant, tmp_path):
    creds = tmp_path / "tenant.json"
    creds.write_text(json.dumps(tenant))
    run = subprocess.run(
        [arca_bin(), "instance", "create", "--endpoint", server.endpoint, "--credentials",
         str(creds), "--account-id", tenant["account_id"]], capture_output=True, text=True)
    assert run.returncode != 0 and "Forbidden.NoPermission" in run.stderr, run.stderr


def test_keys_and_secrets_in_an_instance(server, tenant):
    for mode in MODES:
        kms = sdk(mode, server, tenant)
        inst = new_instance(server, tenant["account_id"], keys=2, secrets=1)
        meta = create_key(kms, DKMSInstanceId=inst)
        assert meta["DKMSInstanceId"] == inst and meta["ProtectionLevel"] == "SOFTWARE"
        assert kms("DescribeKey", KeyId=meta["KeyId"])["KeyMetadata"]["DKMSInstanceId"] == inst
        blob = kms("Encrypt", KeyId=meta["KeyId"], Plaintext="in-instance")["CiphertextBlob"]
        assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "in-instance"
        # A secret in the instance needs a CMK of the same instance.
        fails("MissingParameter", 400, kms, "CreateSecret", SecretName=f"s-{mode}", SecretData="v",
              VersionId="v1", DKMSInstanceId=inst)
        outside = create_key(kms)
        fails("InvalidParameter", 400, kms, "CreateSecret", SecretName=f"s-{mode}", SecretData="v",
              VersionId="v1", DKMSInstanceId=inst, EncryptionKeyId=outside["KeyId"])
        kms("CreateSecret", SecretName=f"s-{mode}", SecretData="value", VersionId="v1",
            DKMSInstanceId=inst, EncryptionKeyId=meta["KeyId"])
        assert kms("GetSecretValue", SecretName=f"s-{mode}")["SecretData"] == "value"
        if mode != "legacy":
            assert kms("DescribeSecret", SecretName=f"s-{mode}")["DKMSInstanceId"] == inst
        # The limits: 2 keys, 1 secret.
        create_key(kms, DKMSInstanceId=inst)
        fails("Rejected.LimitExceeded", 409, kms, "CreateKey", DKMSInstanceId=inst)
        fails("Rejected.LimitExceeded", 409, kms, "CreateSecret", SecretName=f"t-{mode}",
              SecretData="v", VersionId="v1", DKMSInstanceId=inst, EncryptionKeyId=meta["KeyId"])
        listed = kms("ListKeys", PageSize=100, Filters=json.dumps(
            [{"Key": "DKMSInstanceId", "Values": [inst]}]))
        assert len(listed["Keys"]["Key"]) == 2
        secrets = kms("ListSecrets", PageSize=100, Filters=json.dumps(
            [{"Key": "DKMSInstanceId", "Values": [inst]}]))
        assert [s["SecretName"] for s in secrets["SecretList"]["Secret"]] == [f"s-{mode}"]
    kms = sdk("v3", server, tenant)
    infos = kms("GetKmsInstanceQuotaInfos", KmsInstanceId=inst)["KmsInstanceQuotaInfos"]
    used = {q["ResourceType"]: q["UsedQuantity"] for q in infos}
    assert (used["key"], used["secret"]) == (2, 1)


def hammer(kms, key_id, seconds, results):
    """Encrypts in a loop, counting outcomes by code."""
    end = time.time() + seconds
    while time.time() < end:
        try:
            kms("Encrypt", KeyId=key_id, Plaintext="x")
            results["ok"] = results.get("ok", 0) + 1
        except ApiError as e:
            results[(e.code, e.status)] = results.get((e.code, e.status), 0) + 1


def test_throttling_is_per_instance(server, tenant):
    slow = new_instance(server, tenant["account_id"], spec=5)
    fast = new_instance(server, tenant["account_id"], spec=100000)
    kms = sdk("v3", server, tenant)
    slow_key = create_key(kms, DKMSInstanceId=slow)["KeyId"]
    fast_key = create_key(kms, DKMSInstanceId=fast)["KeyId"]
    plain_key = create_key(kms)["KeyId"]
    results = {n: {} for n in ("slow1", "slow2", "slow3", "fast", "plain")}
    threads = [threading.Thread(target=hammer, args=(sdk("v3", server, tenant), k, 2.0, results[n]))
               for n, k in (("slow1", slow_key), ("slow2", slow_key), ("slow3", slow_key),
                            ("fast", fast_key), ("plain", plain_key))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow_ok = sum(results[n].get("ok", 0) for n in ("slow1", "slow2", "slow3"))
    throttled = sum(results[n].get(("Rejected.Throttling", 429), 0) for n in ("slow1", "slow2", "slow3"))
    # 5/s with a one-second burst over ~2 s: at most 5 + 5*2 (+1 for timing) admitted.
    assert 5 <= slow_ok <= 16, results
    assert throttled > 0, results
    assert set(results["slow1"]) <= {"ok", ("Rejected.Throttling", 429)}, results
    # The other instance and keys outside instances are unaffected: no refusals at all.
    assert list(results["fast"]) == ["ok"] and results["fast"]["ok"] > slow_ok, results
    assert list(results["plain"]) == ["ok"] and results["plain"]["ok"] > slow_ok, results
    # The quota refills.
    time.sleep(1.1)
    kms("Encrypt", KeyId=slow_key, Plaintext="after")


def test_release(server, tenant):
    kms = sdk("v3", server, tenant)
    empty = new_instance(server, tenant["account_id"])
    kms("ReleaseKmsInstance", KmsInstanceId=empty)
    fails("Forbidden.ResourceNotFound", 404, kms, "GetKmsInstance", KmsInstanceId=empty)
    inst = new_instance(server, tenant["account_id"])
    key = create_key(kms, DKMSInstanceId=inst)["KeyId"]
    kms("CreateSecret", SecretName="released-secret", SecretData="v", VersionId="v1",
        DKMSInstanceId=inst, EncryptionKeyId=key)
    e = fails("Rejected.ResourceInUse", 409, kms, "ReleaseKmsInstance", KmsInstanceId=inst)
    assert "1 keys and 1 secrets" in e.message
    kms("SetDeletionProtection", ProtectedResourceArn=kms("DescribeKey", KeyId=key)["KeyMetadata"]["Arn"],
        EnableDeletionProtection=True, DeletionProtectionDescription="keep")
    fails("Forbidden.DeletionProtection", 403, kms, "ReleaseKmsInstance", KmsInstanceId=inst,
          ForceDeleteWithoutBackup="true")
    kms("SetDeletionProtection", ProtectedResourceArn=kms("DescribeKey", KeyId=key)["KeyMetadata"]["Arn"],
        EnableDeletionProtection=False)
    kms("ReleaseKmsInstance", KmsInstanceId=inst, ForceDeleteWithoutBackup="true")
    fails("Forbidden.ResourceNotFound", 404, kms, "GetKmsInstance", KmsInstanceId=inst)
    # Its resources wait out a 7-day recovery window, and can be brought back.
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert "PlannedDeleteTime" in kms("DescribeSecret", SecretName="released-secret")
    kms("CancelKeyDeletion", KeyId=key)
    kms("RestoreSecret", SecretName="released-secret")
    assert kms("GetSecretValue", SecretName="released-secret")["SecretData"] == "v"


def test_hsm_instances_need_an_hsm(server, tenant):
    run = subprocess.run(
        [arca_bin(), "instance", "create", "--hsm", "--endpoint", server.endpoint, "--credentials",
         str(server.data_dir / "credentials.json"), "--account-id", tenant["account_id"]],
        capture_output=True, text=True)
    assert run.returncode != 0 and "Unsupported.ProtectionLevel" in run.stderr, run.stderr

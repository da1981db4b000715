"""Key policies and cross-account use by ARN through the official SDKs. The second account is
made with Arca's admin CLI, as an operator would."""

import json
import subprocess

from conftest import MODES, arca_bin, sdk
from test_sdk import create_key, fails


def new_account(server):
    out = subprocess.run(
        [arca_bin(), "account", "create", "--endpoint", server.endpoint,
         "--credentials", str(server.data_dir / "credentials.json")],
        check=True, capture_output=True, text=True).stdout
    made = json.loads(out)
    return {"access_key_id": made["AccessKeyId"], "access_key_secret": made["AccessKeySecret"],
            "account_id": made["AccountId"], "region_id": "cn-hangzhou"}


def test_cross_account_grants(server):
    grantee_creds = new_account(server)
    for mode in MODES:
        owner = sdk(mode, server)
        grantee = sdk(mode, server, grantee_creds)
        meta = create_key(owner)
        default = json.loads(owner("GetKeyPolicy", KeyId=meta["KeyId"], PolicyName="default")["Policy"])
        assert default["Statement"][0]["Action"] == ["kms:*"]
        fails("Forbidden.NoPermission", 403, grantee, "Encrypt", KeyId=meta["Arn"], Plaintext="x")
        fails("Forbidden.KeyNotFound", 404, grantee, "Encrypt", KeyId=meta["KeyId"], Plaintext="x")
        policy = json.dumps({"Version": "1", "Statement": [{
            "Effect": "Allow", "Principal": {"RAM": [f"acs:ram::{grantee_creds['account_id']}:*"]},
            "Action": ["kms:Encrypt", "kms:DescribeKey"], "Resource": ["*"]}]})
        owner("SetKeyPolicy", KeyId=meta["KeyId"], PolicyName="default", Policy=policy)
        assert json.loads(owner("GetKeyPolicy", KeyId=meta["KeyId"])["Policy"]) == json.loads(policy)
        blob = grantee("Encrypt", KeyId=meta["Arn"], Plaintext="granted")["CiphertextBlob"]
        assert grantee("DescribeKey", KeyId=meta["Arn"])["KeyMetadata"]["KeyId"] == meta["KeyId"]
        assert owner("Decrypt", CiphertextBlob=blob)["Plaintext"] == "granted"
        fails("InvalidCiphertext", 400, grantee, "Decrypt", CiphertextBlob=blob)
        fails("Forbidden.NoPermission", 403, grantee, "DisableKey", KeyId=meta["Arn"])
        fails("Forbidden.NoPermission", 403, grantee, "SetKeyPolicy", KeyId=meta["Arn"], Policy=policy)
        fails("InvalidParameter", 400, owner, "SetKeyPolicy", KeyId=meta["KeyId"], Policy="[]")
        fails("InvalidParameter", 400, owner, "GetKeyPolicy", KeyId=meta["KeyId"], PolicyName="other")

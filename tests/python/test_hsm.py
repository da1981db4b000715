"""HSM keys (ProtectionLevel=HSM) through the official SDKs, against a SoftHSM2 token that the
test makes in a temp dir."""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import MODES, Server, sdk
from test_sdk import fails

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture(scope="module")
def hsm_server():
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.mkdir()
        conf = Path(tmp) / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        env = {"SOFTHSM2_CONF": str(conf), "ARCA_HSM_PIN": "py-pin-4711"}
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "arca-py",
                        "--so-pin", "so-pin-1", "--pin", env["ARCA_HSM_PIN"]],
                       check=True, capture_output=True, env={**os.environ, **env})
        s = Server(Path(tmp) / "data", args=["--hsm-module", MODULE, "--hsm-token", "arca-py"],
                   env=env).start()
        yield s
        s.kill9()


@pytest.mark.parametrize("mode", MODES)
def test_hsm_keys_through_the_sdks(hsm_server, mode):
    kms = sdk(mode, hsm_server)
    meta = kms("CreateKey", KeySpec="Aliyun_AES_256", ProtectionLevel="HSM")["KeyMetadata"]
    assert meta["ProtectionLevel"] == "HSM"
    key = meta["KeyId"]
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["ProtectionLevel"] == "HSM"
    ctx = {"app": mode}
    blob = kms("Encrypt", KeyId=key, Plaintext="hello token", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms("Decrypt", CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == "hello token"
    fails("InvalidCiphertext", 400, kms, "Decrypt", CiphertextBlob=blob, EncryptionContext={"app": "x"})
    dk = kms("GenerateDataKey", KeyId=key, NumberOfBytes=32)
    assert kms("Decrypt", CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    new_version = kms("CreateKeyVersion", KeyId=key)["KeyVersion"]["KeyVersionId"]
    assert kms("Encrypt", KeyId=key, Plaintext="v2")["KeyVersionId"] == new_version
    assert kms("Decrypt", CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == "hello token"
    listed = kms("ListKeys", Filters=json.dumps([{"Key": "ProtectionLevel", "Values": ["HSM"]}]))
    assert key in [k["KeyId"] for k in listed["Keys"]["Key"]]
    fails("Rejected.UnsupportedOperation", 400, kms, "CreateKey", KeySpec="Aliyun_SM4", ProtectionLevel="HSM")

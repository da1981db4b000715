"""HSM keys (ProtectionLevel=HSM) through the official SDKs, against a SoftHSM2 token that the
test makes in a temp dir."""

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from conftest import MODES, Server, arca_bin, sdk
from test_sdk import fails
from test_asymmetric import b64, unb64
from test_byok import wrap

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
    for spec in ["Aliyun_SM4", "EC_SM2"]:
        e = fails("Unsupported.ProtectionLevel", 400, kms, "CreateKey", KeySpec=spec, ProtectionLevel="HSM")
        assert spec in e.message and "EC_P256K" in e.message, e.message


PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
PREHASHED = utils.Prehashed(hashes.SHA256())


def hsm_pair(kms, spec, usage):
    meta = kms("CreateKey", KeySpec=spec, KeyUsage=usage, ProtectionLevel="HSM")["KeyMetadata"]
    assert (meta["KeySpec"], meta["ProtectionLevel"]) == (spec, "HSM")
    key, version = meta["KeyId"], meta["PrimaryKeyVersion"]
    pem = kms("GetPublicKey", KeyId=key, KeyVersionId=version)["PublicKey"]
    return key, version, serialization.load_pem_public_key(pem.encode())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec,alg", [
    ("RSA_2048", "RSA_PSS_SHA_256"), ("RSA_3072", "RSA_PKCS1_SHA_256"),
    ("EC_P256", "ECDSA_SHA_256"), ("EC_P256K", "ECDSA_SHA_256"),
])
def test_hsm_signatures_interoperate(hsm_server, mode, spec, alg):
    """Signatures made in the token verify in `cryptography`, and signatures made by
    `cryptography`'s verification counterpart are checked in the token."""
    kms = sdk(mode, hsm_server)
    key, version, pub = hsm_pair(kms, spec, "SIGN/VERIFY")
    digest = hashlib.sha256(f"signed in the token via {mode}".encode()).digest()
    sig = kms("AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm=alg, Digest=b64(digest))["Value"]
    other = hashlib.sha256(b"something else").digest()
    if alg == "RSA_PSS_SHA_256":
        check = lambda d: pub.verify(unb64(sig), d, PSS, PREHASHED)
    elif alg == "RSA_PKCS1_SHA_256":
        check = lambda d: pub.verify(unb64(sig), d, padding.PKCS1v15(), PREHASHED)
    else:
        assert isinstance(pub.curve, ec.SECP256K1 if spec == "EC_P256K" else ec.SECP256R1)
        check = lambda d: pub.verify(unb64(sig), d, ec.ECDSA(PREHASHED))
        if spec == "EC_P256K":
            # Low-S, like the software secp256k1 keys (SoftHSM2 itself emits either).
            from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
            _, s_ = decode_dss_signature(unb64(sig))
            n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
            assert s_ <= n // 2
    check(digest)
    with pytest.raises(InvalidSignature):
        check(other)
    verify = lambda d, v: kms("AsymmetricVerify", KeyId=key, KeyVersionId=version, Algorithm=alg,
                              Digest=b64(d), Value=v)["Value"]
    assert verify(digest, sig) is True
    assert verify(other, sig) is False
    assert verify(digest, b64(b"\x30\x02garbage")) is False
    fails("InvalidParameter", 400, kms, "AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm=alg,
          Digest=b64(b"short"))
    wrong = "ECDSA_SHA_256" if alg.startswith("RSA") else "RSA_PSS_SHA_256"
    fails("InvalidParameter", 400, kms, "AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm=wrong,
          Digest=b64(digest))
    # The token enforces the usage as well: a signing key does not decrypt.
    fails("Rejected.UnsupportedOperation", 400, kms, "AsymmetricDecrypt", KeyId=key, KeyVersionId=version,
          Algorithm="RSAES_OAEP_SHA_1", CiphertextBlob=b64(b"x" * 256))


@pytest.mark.parametrize("mode", MODES)
def test_hsm_rsa_decryption(hsm_server, mode):
    kms = sdk(mode, hsm_server)
    key, version, pub = hsm_pair(kms, "RSA_2048", "ENCRYPT/DECRYPT")
    sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    ct = pub.encrypt(b"sealed outside, opened in the token", sha1)
    out = kms("AsymmetricDecrypt", KeyId=key, KeyVersionId=version, Algorithm="RSAES_OAEP_SHA_1", CiphertextBlob=b64(ct))
    assert unb64(out["Plaintext"]) == b"sealed outside, opened in the token"
    sealed = kms("AsymmetricEncrypt", KeyId=key, KeyVersionId=version, Algorithm="RSAES_OAEP_SHA_1",
                 Plaintext=b64(b"x" * 214))["CiphertextBlob"]
    back = kms("AsymmetricDecrypt", KeyId=key, KeyVersionId=version, Algorithm="RSAES_OAEP_SHA_1", CiphertextBlob=sealed)
    assert unb64(back["Plaintext"]) == b"x" * 214
    fails("InvalidParameter", 400, kms, "AsymmetricEncrypt", KeyId=key, KeyVersionId=version,
          Algorithm="RSAES_OAEP_SHA_1", Plaintext=b64(b"x" * 215))
    tampered = bytearray(ct)
    tampered[3] ^= 1
    fails("InvalidCiphertext", 400, kms, "AsymmetricDecrypt", KeyId=key, KeyVersionId=version,
          Algorithm="RSAES_OAEP_SHA_1", CiphertextBlob=b64(bytes(tampered)))
    # SoftHSM2 has no OAEP with SHA-256: a clear refusal, never a software fallback.
    sha256_ct = pub.encrypt(b"x", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    for action, param in [("AsymmetricDecrypt", {"CiphertextBlob": b64(sha256_ct)}),
                          ("AsymmetricEncrypt", {"Plaintext": b64(b"x")})]:
        e = fails("Rejected.UnsupportedOperation", 400, kms, action, KeyId=key, KeyVersionId=version,
                  Algorithm="RSAES_OAEP_SHA_256", **param)
        assert "RSAES_OAEP_SHA_1" in e.message, e.message
    fails("Rejected.UnsupportedOperation", 400, kms, "AsymmetricSign", KeyId=key, KeyVersionId=version,
          Algorithm="RSA_PSS_SHA_256", Digest=b64(hashlib.sha256(b"x").digest()))


def test_hsm_rsa_4096(hsm_server):
    kms = sdk("v3", hsm_server)
    key, version, pub = hsm_pair(kms, "RSA_4096", "SIGN/VERIFY")
    assert pub.key_size == 4096
    digest = hashlib.sha256(b"big").digest()
    sig = kms("AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm="RSA_PSS_SHA_256", Digest=b64(digest))["Value"]
    pub.verify(unb64(sig), digest, PSS, PREHASHED)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5"])
def test_hsm_byok_unwraps_in_the_token(hsm_server, mode, algorithm):
    kms = sdk(mode, hsm_server)
    meta = kms("CreateKey", KeySpec="Aliyun_AES_256", Origin="EXTERNAL", ProtectionLevel="HSM")["KeyMetadata"]
    key = meta["KeyId"]
    assert (meta["ProtectionLevel"], meta["KeyState"]) == ("HSM", "PendingImport")
    material = os.urandom(32)
    p = kms("GetParametersForImport", KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    kms("ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p, algorithm, material), KeyMaterialExpireUnix=0)
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    blob = kms("Encrypt", KeyId=key, Plaintext="imported into the token")["CiphertextBlob"]
    assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "imported into the token"
    # The material leaves the token with DeleteKeyMaterial; only the same material brings the
    # old ciphertexts back.
    kms("DeleteKeyMaterial", KeyId=key)
    fails("Rejected.PendingImport", 409, kms, "Decrypt", CiphertextBlob=blob)
    p = kms("GetParametersForImport", KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    fails("InvalidKeyMaterial", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=wrap(p, algorithm, os.urandom(32)), KeyMaterialExpireUnix=0)
    fails("InvalidKeyMaterial", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=wrap(p, algorithm, os.urandom(16)), KeyMaterialExpireUnix=0)
    fails("InvalidKeyMaterial", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=b64(os.urandom(256)), KeyMaterialExpireUnix=0)
    kms("ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p, algorithm, material), KeyMaterialExpireUnix=0)
    assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "imported into the token"


def test_hsm_byok_refuses_what_the_token_cannot_unwrap(hsm_server):
    kms = sdk("v3", hsm_server)
    key = kms("CreateKey", KeySpec="Aliyun_AES_128", Origin="EXTERNAL", ProtectionLevel="HSM")["KeyMetadata"]["KeyId"]
    for algorithm, spec in [("RSAES_OAEP_SHA_256", "RSA_2048"), ("SM2PKE", "EC_SM2")]:
        e = fails("Rejected.UnsupportedOperation", 400, kms, "GetParametersForImport", KeyId=key,
                  WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
        assert "RSAES_OAEP_SHA_1" in e.message and "RSAES_PKCS1_V1_5" in e.message, e.message
    fails("Rejected.UnsupportedOperation", 400, kms, "CreateKey", KeySpec="RSA_2048", Origin="EXTERNAL",
          ProtectionLevel="HSM")


def test_hsm_instance_keeps_its_keys_in_the_token(hsm_server):
    admin = hsm_server.credentials
    out = subprocess.run(
        [arca_bin(), "instance", "create", "--hsm", "--endpoint", hsm_server.endpoint,
         "--credentials", str(hsm_server.data_dir / "credentials.json"),
         "--account-id", admin["account_id"]], check=True, capture_output=True, text=True).stdout
    inst = json.loads(out)["KmsInstance"]
    assert inst["ProtectionLevel"] == "HSM"
    for mode in MODES:
        kms = sdk(mode, hsm_server)
        meta = kms("CreateKey", DKMSInstanceId=inst["InstanceId"])["KeyMetadata"]
        assert (meta["ProtectionLevel"], meta["DKMSInstanceId"]) == ("HSM", inst["InstanceId"])
        blob = kms("Encrypt", KeyId=meta["KeyId"], Plaintext="in the token")["CiphertextBlob"]
        assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "in the token"
        e = fails("InvalidParameter", 400, kms, "CreateKey", DKMSInstanceId=inst["InstanceId"],
                  ProtectionLevel="SOFTWARE")
        assert "HSM" in e.message

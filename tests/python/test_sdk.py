"""The official Alibaba Cloud KMS SDKs, unchanged, against Arca: every action of the core host,
in all three signing modes (see conftest.py)."""

import base64
import json
import re
import uuid

import pytest

from conftest import MODES, ApiError, sdk

SYMMETRIC_SPECS = ["Aliyun_AES_256", "Aliyun_AES_192", "Aliyun_AES_128", "Aliyun_SM4"]
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def create_key(kms, **params):
    return kms("CreateKey", **params)["KeyMetadata"]


def fails(code, status, fn, *args, **kwargs):
    with pytest.raises(ApiError) as e:
        fn(*args, **kwargs)
    assert (e.value.code, e.value.status) == (code, status), e.value
    assert e.value.request_id
    return e.value


@pytest.mark.parametrize("spec", SYMMETRIC_SPECS)
def test_create_and_describe_every_symmetric_spec(kms, server, spec):
    meta = create_key(kms, KeySpec=spec, Description="made by " + kms.mode)
    account = server.credentials["account_id"]
    assert meta["KeySpec"] == spec
    assert meta["KeyState"] == "Enabled"
    assert meta["KeyUsage"] == "ENCRYPT/DECRYPT"
    assert meta["Origin"] == "Aliyun_KMS"
    assert meta["ProtectionLevel"] == "SOFTWARE"
    assert meta["Creator"] == account
    assert meta["Arn"] == f"acs:kms:cn-hangzhou:{account}:key/{meta['KeyId']}"
    assert DATE.match(meta["CreationDate"])
    assert len(meta["PrimaryKeyVersion"]) == 36
    described = kms("DescribeKey", KeyId=meta["KeyId"])["KeyMetadata"]
    # The current SDK's CreateKey model has no DeletionProtection field, so compare what it has.
    assert {k: described[k] for k in meta} == meta
    assert described["DeletionProtection"] == "Disabled"


def test_default_key_is_aes_256(kms):
    assert create_key(kms)["KeySpec"] == "Aliyun_AES_256"


def test_encrypt_decrypt_round_trip_bound_to_context(kms):
    key = create_key(kms)["KeyId"]
    ctx = {"purpose": "test", "tenant": "a b"}
    sealed = kms("Encrypt", KeyId=key, Plaintext="aGVsbG8gd29ybGQ=", EncryptionContext=ctx)
    assert sealed["KeyId"] == key
    raw = base64.b64decode(sealed["CiphertextBlob"])
    assert raw[:36].decode() == sealed["KeyVersionId"]
    opened = kms("Decrypt", CiphertextBlob=sealed["CiphertextBlob"],
                 EncryptionContext={"tenant": "a b", "purpose": "test"})
    # Plaintext comes back as the exact string that was sent (spec §6.1).
    assert opened["Plaintext"] == "aGVsbG8gd29ybGQ="
    assert opened["KeyVersionId"] == sealed["KeyVersionId"]
    fails("InvalidCiphertext", 400, kms, "Decrypt", CiphertextBlob=sealed["CiphertextBlob"],
          EncryptionContext={"purpose": "other", "tenant": "a b"})
    fails("InvalidCiphertext", 400, kms, "Decrypt", CiphertextBlob=sealed["CiphertextBlob"])
    tampered = bytearray(raw)
    tampered[-1] ^= 1
    fails("InvalidCiphertext", 400, kms, "Decrypt",
          CiphertextBlob=base64.b64encode(bytes(tampered)).decode(), EncryptionContext=ctx)


def test_ciphertexts_cross_between_sdks(server):
    clients = [sdk(m, server) for m in MODES]
    key = create_key(clients[0])["KeyId"]
    for a in clients:
        blob = a("Encrypt", KeyId=key, Plaintext="from " + a.mode, EncryptionContext={"k": "v"})["CiphertextBlob"]
        for b in clients:
            assert b("Decrypt", CiphertextBlob=blob, EncryptionContext={"k": "v"})["Plaintext"] == "from " + a.mode


def test_data_keys_and_re_encrypt(kms):
    a = create_key(kms)["KeyId"]
    b = create_key(kms, KeySpec="Aliyun_SM4")["KeyId"]
    dk = kms("GenerateDataKey", KeyId=a, EncryptionContext={"file": "x"})
    assert len(base64.b64decode(dk["Plaintext"])) == 32
    assert kms("Decrypt", CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"file": "x"})["Plaintext"] == dk["Plaintext"]
    dk16 = kms("GenerateDataKey", KeyId=a, KeySpec="AES_128")
    assert len(base64.b64decode(dk16["Plaintext"])) == 16
    dk7 = kms("GenerateDataKey", KeyId=a, NumberOfBytes=7)
    assert len(base64.b64decode(dk7["Plaintext"])) == 7
    np = kms("GenerateDataKeyWithoutPlaintext", KeyId=a, NumberOfBytes=64)
    assert "Plaintext" not in np
    re_enc = kms("ReEncrypt", CiphertextBlob=np["CiphertextBlob"], DestinationKeyId=b,
                 DestinationEncryptionContext={"to": "b"})
    assert re_enc["KeyId"] == b
    plain = kms("Decrypt", CiphertextBlob=re_enc["CiphertextBlob"], EncryptionContext={"to": "b"})["Plaintext"]
    assert len(base64.b64decode(plain)) == 64
    fails("InvalidParameter", 400, kms, "GenerateDataKey", KeyId=a, NumberOfBytes=2000)
    fails("InvalidParameter", 400, kms, "GenerateDataKey", KeyId=a, KeySpec="AES_512")


def test_aliases(kms):
    key = create_key(kms)["KeyId"]
    other = create_key(kms)["KeyId"]
    alias = f"alias/sdk-{kms.mode}-{uuid.uuid4().hex[:8]}"
    kms("CreateAlias", AliasName=alias, KeyId=key)
    assert kms("DescribeKey", KeyId=alias)["KeyMetadata"]["KeyId"] == key
    blob = kms("Encrypt", KeyId=alias, Plaintext="via alias")["CiphertextBlob"]
    assert kms("Decrypt", CiphertextBlob=blob)["KeyId"] == key
    fails("AliasAlreadyExists", 400, kms, "CreateAlias", AliasName=alias, KeyId=other)
    by_key = kms("ListAliasesByKeyId", KeyId=key)
    assert [a["AliasName"] for a in by_key["Aliases"]["Alias"]] == [alias]
    listed = kms("ListAliases", PageSize=100)
    entry = next(a for a in listed["Aliases"]["Alias"] if a["AliasName"] == alias)
    assert entry["KeyId"] == key
    assert entry["AliasArn"].endswith(":alias/" + alias[len("alias/"):])
    assert isinstance(listed["TotalCount"], int)
    kms("UpdateAlias", AliasName=alias, KeyId=other)
    assert kms("DescribeKey", KeyId=alias)["KeyMetadata"]["KeyId"] == other
    assert kms("ListAliasesByKeyId", KeyId=key)["TotalCount"] == 0
    kms("DeleteAlias", AliasName=alias)
    fails("Forbidden.KeyNotFound", 404, kms, "DescribeKey", KeyId=alias)
    fails("Forbidden.AliasNotFound", 404, kms, "DeleteAlias", AliasName=alias)
    fails("Forbidden.AliasNotFound", 404, kms, "UpdateAlias", AliasName=alias, KeyId=key)
    fails("Unsupported.Alias", 400, kms, "CreateAlias", AliasName="alias/acs/oss", KeyId=key)
    fails("InvalidParameter", 400, kms, "CreateAlias", AliasName="no-prefix", KeyId=key)


def test_arns_name_keys_and_aliases(kms, server):
    meta = create_key(kms)
    alias = f"alias/arn-{kms.mode}-{uuid.uuid4().hex[:8]}"
    kms("CreateAlias", AliasName=alias, KeyId=meta["KeyId"])
    account = server.credentials["account_id"]
    alias_arn = f"acs:kms:cn-hangzhou:{account}:{alias}"
    for ref in [meta["Arn"], alias_arn]:
        assert kms("DescribeKey", KeyId=ref)["KeyMetadata"]["KeyId"] == meta["KeyId"]
        blob = kms("Encrypt", KeyId=ref, Plaintext="arn")["CiphertextBlob"]
        assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "arn"
    fails("Forbidden.KeyNotFound", 404, kms, "DescribeKey",
          KeyId=f"acs:kms:cn-hangzhou:1234567890123456:key/{meta['KeyId']}")
    fails("Forbidden.KeyNotFound", 404, kms, "DescribeKey",
          KeyId=f"acs:kms:cn-beijing:{account}:key/{meta['KeyId']}")


def test_enable_disable_and_description(kms):
    key = create_key(kms)["KeyId"]
    blob = kms("Encrypt", KeyId=key, Plaintext="x")["CiphertextBlob"]
    kms("DisableKey", KeyId=key)
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    fails("Rejected.Disabled", 409, kms, "Encrypt", KeyId=key, Plaintext="x")
    fails("Rejected.Disabled", 409, kms, "Decrypt", CiphertextBlob=blob)
    fails("Rejected.Disabled", 409, kms, "GenerateDataKey", KeyId=key)
    kms("EnableKey", KeyId=key)
    assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "x"
    kms("UpdateKeyDescription", KeyId=key, Description="new words")
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["Description"] == "new words"


def test_list_keys_pages_and_filters(fresh_server):
    clients = [sdk(m, fresh_server) for m in MODES]
    a = clients[0]
    ids = [create_key(a, KeySpec=spec)["KeyId"] for spec in ["Aliyun_AES_256"] * 3 + ["Aliyun_SM4"] * 2]
    a("DisableKey", KeyId=ids[0])
    for kms in clients:
        page1 = kms("ListKeys", PageSize=2, PageNumber=1)
        assert (page1["TotalCount"], page1["PageNumber"], page1["PageSize"]) == (5, 1, 2)
        pages = [kms("ListKeys", PageSize=2, PageNumber=n)["Keys"]["Key"] for n in (1, 2, 3)]
        seen = [k["KeyId"] for p in pages for k in p]
        assert sorted(seen) == sorted(ids) and [len(p) for p in pages] == [2, 2, 1]
        assert all(k["KeyArn"].endswith(":key/" + k["KeyId"]) for p in pages for k in p)
        sm4 = kms("ListKeys", Filters=json.dumps([{"Key": "KeySpec", "Values": ["Aliyun_SM4"]}]))
        assert sorted(k["KeyId"] for k in sm4["Keys"]["Key"]) == sorted(ids[3:])
        both = kms("ListKeys", Filters=json.dumps([
            {"Key": "KeySpec", "Values": ["Aliyun_AES_256"]},
            {"Key": "KeyState", "Values": ["Enabled"]}]))
        assert sorted(k["KeyId"] for k in both["Keys"]["Key"]) == sorted(ids[1:3])
        fails("InvalidParameter", 400, kms, "ListKeys", Filters="[{")
        fails("InvalidParameter", 400, kms, "ListKeys", PageSize=101)


def test_error_codes(kms):
    fails("Forbidden.KeyNotFound", 404, kms, "DescribeKey", KeyId="key-doesnotexist")
    fails("Forbidden.KeyNotFound", 404, kms, "Encrypt", KeyId="alias/nothing-here", Plaintext="x")
    fails("MissingParameter", 400, kms, "Encrypt", KeyId="key-x")
    fails("MissingParameter", 400, kms, "DescribeKey")
    fails("InvalidParameter", 400, kms, "CreateKey", KeySpec="AES_9000")
    fails("Unsupported.ProtectionLevel", 400, kms, "CreateKey", ProtectionLevel="HSM")
    fails("InvalidParameter", 400, kms, "CreateKey", Origin="Elsewhere")
    fails("InvalidParameter", 400, kms, "Decrypt", CiphertextBlob="bm90IGEgYmxvYg==")


def test_regions_and_account_status(kms):
    regions = kms("DescribeRegions")["Regions"]["Region"]
    assert [r["RegionId"] for r in regions] == ["cn-hangzhou"]
    assert kms("DescribeAccountKmsStatus")["AccountStatus"] == "Enabled"


@pytest.mark.parametrize("mode", MODES)
def test_wrong_secret_is_refused(server, mode):
    creds = dict(server.credentials, access_key_secret="x" * 30)
    with pytest.raises(ApiError) as err:
        sdk(mode, server, creds)("DescribeRegions")
    # The legacy SDK compares its own string-to-sign with the server's and, when they match,
    # reports the wrong secret as InvalidAccessKeySecret.
    assert err.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeySecret"), err.value
    assert err.value.status == 400
    # The refusal never echoes request values: V1's string-to-sign contains every parameter,
    # and the SDKs log this message.
    marker = "PLAINTEXT-MARKER-5d2c"
    with pytest.raises(ApiError) as err:
        sdk(mode, server, creds)("Encrypt", KeyId="alias/any", Plaintext=marker)
    assert err.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeySecret"), err.value
    assert marker not in (err.value.message or ""), err.value.message


def test_replayed_sdk_request_is_refused(server, monkeypatch):
    """The SDK itself sends the same signed request twice (its nonce source pinned)."""
    from alibabacloud_tea_openapi.utils import Utils
    from aliyunsdkcore.utils import parameter_helper
    fixed = uuid.uuid4().hex
    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: fixed))
    v3 = sdk("v3", server)
    v3("DescribeRegions")
    fails("SignatureNonceUsed", 400, v3, "DescribeRegions")
    fixed_legacy = str(uuid.uuid4())
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: fixed_legacy)
    legacy = sdk("legacy", server)
    legacy("DescribeRegions")
    fails("SignatureNonceUsed", 400, legacy, "DescribeRegions")


def test_kill_9_and_restart_lose_nothing(fresh_server):
    clients = {m: sdk(m, fresh_server) for m in MODES}
    made = []
    for mode, kms in clients.items():
        meta = create_key(kms, KeySpec="Aliyun_SM4" if mode == "legacy" else "Aliyun_AES_256")
        alias = f"alias/crash-{mode}"
        kms("CreateAlias", AliasName=alias, KeyId=meta["KeyId"])
        blob = kms("Encrypt", KeyId=alias, Plaintext="survives " + mode, EncryptionContext={"m": mode})
        made.append((mode, meta, alias, blob["CiphertextBlob"]))
    fresh_server.kill9()
    fresh_server.start()
    for mode, meta, alias, blob in made:
        for kms in (sdk(m, fresh_server) for m in MODES):
            described = kms("DescribeKey", KeyId=alias)["KeyMetadata"]
            assert {k: described[k] for k in meta} == meta
            assert kms("Decrypt", CiphertextBlob=blob, EncryptionContext={"m": mode})["Plaintext"] == "survives " + mode

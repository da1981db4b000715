"""Key versions, rotation policy, deletion, deletion protection and GetRandomPassword through
the official SDKs (all three signing modes). The time-driven parts (scheduled rotation, the
end of a deletion window) are covered in-process with an injected clock
(host/src/kms/lifecycle.rs)."""

import datetime
import string

from conftest import ApiError
from test_sdk import create_key, fails


def parse_date(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")


def test_manual_rotation_keeps_old_versions_usable(kms):
    meta = create_key(kms)
    key, first = meta["KeyId"], meta["PrimaryKeyVersion"]
    old_blob = kms("Encrypt", KeyId=key, Plaintext="v1")["CiphertextBlob"]
    v2 = kms("CreateKeyVersion", KeyId=key)["KeyVersion"]
    assert v2["KeyId"] == key and v2["KeyVersionId"] != first and len(v2["KeyVersionId"]) == 36
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["PrimaryKeyVersion"] == v2["KeyVersionId"]
    sealed = kms("Encrypt", KeyId=key, Plaintext="v2")
    assert sealed["KeyVersionId"] == v2["KeyVersionId"]
    old = kms("Decrypt", CiphertextBlob=old_blob)
    assert (old["Plaintext"], old["KeyVersionId"]) == ("v1", first)
    listed = kms("ListKeyVersions", KeyId=key, PageSize=1, PageNumber=2)
    assert listed["TotalCount"] == 2
    assert [v["KeyVersionId"] for v in listed["KeyVersions"]["KeyVersion"]] == [v2["KeyVersionId"]]
    described = kms("DescribeKeyVersion", KeyId=key, KeyVersionId=first)["KeyVersion"]
    assert described["KeyVersionId"] == first and described["CreationDate"] == meta["CreationDate"]
    other = create_key(kms)
    fails("Forbidden.KeyVersionNotFound", 404, kms, "DescribeKeyVersion",
          KeyId=key, KeyVersionId=other["PrimaryKeyVersion"])


def test_rotation_policy(kms):
    meta = create_key(kms, EnableAutomaticRotation=True, RotationInterval="30d")
    assert meta["AutomaticRotation"] == "Enabled"
    assert meta["RotationInterval"] == "2592000s"
    key = meta["KeyId"]
    d = kms("DescribeKey", KeyId=key)["KeyMetadata"]
    assert parse_date(d["NextRotationDate"]) - parse_date(d["CreationDate"]) == datetime.timedelta(days=30)
    kms("UpdateRotationPolicy", KeyId=key, EnableAutomaticRotation=True, RotationInterval="604800s")
    d = kms("DescribeKey", KeyId=key)["KeyMetadata"]
    assert d["RotationInterval"] == "604800s"
    kms("DisableKey", KeyId=key)
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["AutomaticRotation"] == "Suspended"
    kms("EnableKey", KeyId=key)
    kms("UpdateRotationPolicy", KeyId=key, EnableAutomaticRotation=False)
    d = kms("DescribeKey", KeyId=key)["KeyMetadata"]
    assert d["AutomaticRotation"] == "Disabled" and "NextRotationDate" not in d
    fails("InvalidParameter", 400, kms, "UpdateRotationPolicy", KeyId=key,
          EnableAutomaticRotation=True, RotationInterval="6d")
    fails("InvalidParameter", 400, kms, "UpdateRotationPolicy", KeyId=key,
          EnableAutomaticRotation=True, RotationInterval="731d")
    fails("MissingParameter", 400, kms, "UpdateRotationPolicy", KeyId=key, EnableAutomaticRotation=True)
    fails("InvalidParameter", 400, kms, "CreateKey", EnableAutomaticRotation=True, RotationInterval="1h")


def test_deletion_window_cancel_and_protection(kms):
    meta = create_key(kms)
    key = meta["KeyId"]
    blob = kms("Encrypt", KeyId=key, Plaintext="keep")["CiphertextBlob"]
    fails("InvalidParameter", 400, kms, "ScheduleKeyDeletion", KeyId=key, PendingWindowInDays=6)
    fails("InvalidParameter", 400, kms, "ScheduleKeyDeletion", KeyId=key, PendingWindowInDays=367)
    kms("SetDeletionProtection", ProtectedResourceArn=meta["Arn"], EnableDeletionProtection=True,
        DeletionProtectionDescription="used by billing")
    d = kms("DescribeKey", KeyId=key)["KeyMetadata"]
    assert d["DeletionProtection"] == "Enabled"
    assert d["DeletionProtectionDescription"] == "used by billing"
    fails("Forbidden.DeletionProtection", 403, kms, "ScheduleKeyDeletion", KeyId=key, PendingWindowInDays=7)
    kms("SetDeletionProtection", ProtectedResourceArn=meta["Arn"], EnableDeletionProtection=False)
    kms("ScheduleKeyDeletion", KeyId=key, PendingWindowInDays=7)
    d = kms("DescribeKey", KeyId=key)["KeyMetadata"]
    assert d["KeyState"] == "PendingDeletion"
    assert parse_date(d["DeleteDate"]) - datetime.datetime.utcnow() > datetime.timedelta(days=6, hours=23)
    fails("Rejected.PendingDeletion", 409, kms, "Encrypt", KeyId=key, Plaintext="x")
    fails("Rejected.PendingDeletion", 409, kms, "Decrypt", CiphertextBlob=blob)
    fails("Rejected.PendingDeletion", 409, kms, "EnableKey", KeyId=key)
    fails("Rejected.PendingDeletion", 409, kms, "CreateKeyVersion", KeyId=key)
    kms("CancelKeyDeletion", KeyId=key)
    d = kms("DescribeKey", KeyId=key)["KeyMetadata"]
    assert d["KeyState"] == "Enabled" and "DeleteDate" not in d
    assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "keep"
    fails("Rejected.StateModifiedFailed", 409, kms, "CancelKeyDeletion", KeyId=key)


def test_random_passwords(kms):
    pw = kms("GetRandomPassword")["RandomPassword"]
    assert len(pw) == 32
    for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits, string.punctuation):
        assert any(c in cls for c in pw), (cls, pw)
    pw = kms("GetRandomPassword", PasswordLength="64", ExcludePunctuation="true",
             ExcludeUppercase="true", ExcludeCharacters="abc123")["RandomPassword"]
    assert len(pw) == 64
    assert all(c in string.ascii_lowercase + string.digits and c not in "abc123" for c in pw)
    fails("InvalidParameter", 400, kms, "GetRandomPassword", PasswordLength="7")
    fails("InvalidParameter", 400, kms, "GetRandomPassword", ExcludeLowercase="true",
          ExcludeUppercase="true", ExcludeNumbers="true", ExcludePunctuation="true")

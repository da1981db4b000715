"""Asymmetric keys through the official SDKs, cross-checked with independent libraries:
Python `cryptography` for RSA and ECDSA, `gmssl` for SM2 (its own SM3(Z‖M) and verifier)."""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.exceptions import InvalidSignature

from test_sdk import create_key, fails

b64 = lambda b: base64.b64encode(b).decode()
unb64 = base64.b64decode


def public_key(kms, key, version):
    pem = kms("GetPublicKey", KeyId=key, KeyVersionId=version)["PublicKey"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    return pem


@pytest.mark.parametrize("spec,alg", [
    ("RSA_2048", "RSA_PSS_SHA_256"), ("RSA_3072", "RSA_PKCS1_SHA_256"),
    ("EC_P256", "ECDSA_SHA_256"), ("EC_P256K", "ECDSA_SHA_256"),
])
def test_signatures_verify_with_an_independent_library(kms, spec, alg):
    meta = create_key(kms, KeySpec=spec, KeyUsage="SIGN/VERIFY")
    assert (meta["KeySpec"], meta["KeyUsage"]) == (spec, "SIGN/VERIFY")
    key, version = meta["KeyId"], meta["PrimaryKeyVersion"]
    digest = hashlib.sha256(b"the message").digest()
    signed = kms("AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm=alg, Digest=b64(digest))
    assert (signed["KeyId"], signed["KeyVersionId"]) == (key, version)
    sig = unb64(signed["Value"])
    pub = serialization.load_pem_public_key(public_key(kms, key, version).encode())
    prehashed = utils.Prehashed(hashes.SHA256())
    if alg == "RSA_PSS_SHA_256":
        pub.verify(sig, digest, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), prehashed)
    elif alg == "RSA_PKCS1_SHA_256":
        pub.verify(sig, digest, padding.PKCS1v15(), prehashed)
    else:
        curve = ec.SECP256K1 if spec == "EC_P256K" else ec.SECP256R1
        assert isinstance(pub.curve, curve)
        pub.verify(sig, digest, ec.ECDSA(prehashed))
    with pytest.raises(InvalidSignature):
        other = hashlib.sha256(b"another message").digest()
        if alg.startswith("RSA_PSS"):
            pub.verify(sig, other, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), prehashed)
        elif alg.startswith("RSA"):
            pub.verify(sig, other, padding.PKCS1v15(), prehashed)
        else:
            pub.verify(sig, other, ec.ECDSA(prehashed))
    ok = kms("AsymmetricVerify", KeyId=key, KeyVersionId=version, Algorithm=alg, Digest=b64(digest), Value=signed["Value"])
    assert ok["Value"] is True
    bad = kms("AsymmetricVerify", KeyId=key, KeyVersionId=version, Algorithm=alg,
              Digest=b64(hashlib.sha256(b"x").digest()), Value=signed["Value"])
    assert bad["Value"] is False
    fails("InvalidParameter", 400, kms, "AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm=alg, Digest=b64(b"short"))
    fails("InvalidParameter", 400, kms, "AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm="SM2DSA", Digest=b64(digest))
    fails("Rejected.UnsupportedOperation", 400, kms, "AsymmetricEncrypt", KeyId=key, KeyVersionId=version,
          Algorithm="RSAES_OAEP_SHA_256", Plaintext=b64(b"x"))
    fails("Rejected.UnsupportedOperation", 400, kms, "Encrypt", KeyId=key, Plaintext="x")


@pytest.mark.parametrize("alg,hash_", [("RSAES_OAEP_SHA_256", hashes.SHA256), ("RSAES_OAEP_SHA_1", hashes.SHA1)])
def test_rsa_encryption_interoperates(kms, alg, hash_):
    meta = create_key(kms, KeySpec="RSA_2048", KeyUsage="ENCRYPT/DECRYPT")
    key, version = meta["KeyId"], meta["PrimaryKeyVersion"]
    pub = serialization.load_pem_public_key(public_key(kms, key, version).encode())
    oaep = padding.OAEP(mgf=padding.MGF1(hash_()), algorithm=hash_(), label=None)
    ct = pub.encrypt(b"made elsewhere", oaep)
    out = kms("AsymmetricDecrypt", KeyId=key, KeyVersionId=version, Algorithm=alg, CiphertextBlob=b64(ct))
    assert unb64(out["Plaintext"]) == b"made elsewhere"
    sealed = kms("AsymmetricEncrypt", KeyId=key, KeyVersionId=version, Algorithm=alg, Plaintext=b64(b"made here"))
    back = kms("AsymmetricDecrypt", KeyId=key, KeyVersionId=version, Algorithm=alg, CiphertextBlob=sealed["CiphertextBlob"])
    assert unb64(back["Plaintext"]) == b"made here"
    limit = 190 if alg.endswith("256") else 214
    kms("AsymmetricEncrypt", KeyId=key, KeyVersionId=version, Algorithm=alg, Plaintext=b64(b"x" * limit))
    fails("InvalidParameter", 400, kms, "AsymmetricEncrypt", KeyId=key, KeyVersionId=version, Algorithm=alg,
          Plaintext=b64(b"x" * (limit + 1)))
    tampered = bytearray(ct)
    tampered[5] ^= 1
    fails("InvalidCiphertext", 400, kms, "AsymmetricDecrypt", KeyId=key, KeyVersionId=version, Algorithm=alg,
          CiphertextBlob=b64(bytes(tampered)))
    fails("Rejected.UnsupportedOperation", 400, kms, "AsymmetricSign", KeyId=key, KeyVersionId=version,
          Algorithm="RSA_PSS_SHA_256", Digest=b64(hashlib.sha256(b"x").digest()))


def gmssl_sm2(point_hex, private_key="", **kwargs):
    """A gmssl SM2 context for the 64-byte point `x ‖ y` (hex).

    gmssl's constructor strips its key with `lstrip("04")`, which also eats leading `0`/`4`
    digits of x (about one key in 256), so the point is set after construction.
    """
    from gmssl import sm2
    gm = sm2.CryptSM2(private_key=private_key, public_key="00" * 64, **kwargs)
    gm.public_key = point_hex
    return gm


def sm2_point_hex(pem):
    der = unb64("".join(pem.strip().splitlines()[1:-1]))
    return der[-64:].hex()  # the BIT STRING ends with 04 ‖ x ‖ y


def der_len(n):
    return bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else bytes([0x82, n >> 8, n & 0xFF])


def der_int(b):
    b = b.lstrip(b"\x00") or b"\x00"
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + der_len(len(b)) + b


def sm2_c1c3c2_to_der(raw):
    """GM/T 0009 SM2Cipher: SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, ct OCTET STRING }."""
    x, y, c3, c2 = raw[:32], raw[32:64], raw[64:96], raw[96:]
    body = der_int(x) + der_int(y) + b"\x04" + der_len(32) + c3 + b"\x04" + der_len(len(c2)) + c2
    return b"\x30" + der_len(len(body)) + body


def test_sm2_interoperates_with_gmssl(kms):
    from gmssl import sm2
    meta = create_key(kms, KeySpec="EC_SM2")
    assert meta["KeyUsage"] == "SIGN/VERIFY", "signing is the default where the spec supports it"
    key, version = meta["KeyId"], meta["PrimaryKeyVersion"]
    point = sm2_point_hex(public_key(kms, key, version))
    gm = gmssl_sm2(point, asn1=True)
    message = b"GB/T 32918 message"
    digest = bytes.fromhex(gm._sm3_z(message))  # SM3(Z_A ‖ M) with the default ID, by gmssl
    sig = kms("AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm="SM2DSA", Digest=b64(digest))["Value"]
    assert gm.verify_with_sm3(unb64(sig).hex(), message)
    assert not gm.verify_with_sm3(unb64(sig).hex(), b"other message")
    assert kms("AsymmetricVerify", KeyId=key, KeyVersionId=version, Algorithm="SM2DSA",
               Digest=b64(digest), Value=sig)["Value"] is True

    enc = create_key(kms, KeySpec="EC_SM2", KeyUsage="ENCRYPT/DECRYPT")
    key, version = enc["KeyId"], enc["PrimaryKeyVersion"]
    gm = gmssl_sm2(sm2_point_hex(public_key(kms, key, version)), mode=1)
    ct = sm2_c1c3c2_to_der(gm.encrypt(b"sealed by gmssl"))
    out = kms("AsymmetricDecrypt", KeyId=key, KeyVersionId=version, Algorithm="SM2PKE", CiphertextBlob=b64(ct))
    assert unb64(out["Plaintext"]) == b"sealed by gmssl"
    sealed = kms("AsymmetricEncrypt", KeyId=key, KeyVersionId=version, Algorithm="SM2PKE", Plaintext=b64(b"round"))
    back = kms("AsymmetricDecrypt", KeyId=key, KeyVersionId=version, Algorithm="SM2PKE", CiphertextBlob=sealed["CiphertextBlob"])
    assert unb64(back["Plaintext"]) == b"round"


def test_versions_and_refusals(kms):
    meta = create_key(kms, KeySpec="EC_P256")
    key, v1 = meta["KeyId"], meta["PrimaryKeyVersion"]
    v2 = kms("CreateKeyVersion", KeyId=key)["KeyVersion"]["KeyVersionId"]
    assert public_key(kms, key, v1) != public_key(kms, key, v2)
    digest = b64(hashlib.sha256(b"m").digest())
    sig = kms("AsymmetricSign", KeyId=key, KeyVersionId=v1, Algorithm="ECDSA_SHA_256", Digest=digest)["Value"]
    assert kms("AsymmetricVerify", KeyId=key, KeyVersionId=v1, Algorithm="ECDSA_SHA_256", Digest=digest, Value=sig)["Value"] is True
    assert kms("AsymmetricVerify", KeyId=key, KeyVersionId=v2, Algorithm="ECDSA_SHA_256", Digest=digest, Value=sig)["Value"] is False
    other = create_key(kms, KeySpec="EC_P256")["PrimaryKeyVersion"]
    fails("Forbidden.KeyVersionNotFound", 404, kms, "GetPublicKey", KeyId=key, KeyVersionId=other)
    fails("MissingParameter", 400, kms, "AsymmetricSign", KeyId=key, Algorithm="ECDSA_SHA_256", Digest=digest)
    fails("InvalidParameter", 400, kms, "CreateKey", KeySpec="EC_P256", KeyUsage="ENCRYPT/DECRYPT")
    fails("Rejected.UnsupportedOperation", 400, kms, "CreateKey", KeySpec="RSA_2048",
          EnableAutomaticRotation=True, RotationInterval="30d")
    kms("DisableKey", KeyId=key)
    fails("Rejected.Disabled", 409, kms, "AsymmetricSign", KeyId=key, KeyVersionId=v2, Algorithm="ECDSA_SHA_256", Digest=digest)
    rsa4096 = create_key(kms, KeySpec="RSA_4096")
    assert "BEGIN PUBLIC KEY" in public_key(kms, rsa4096["KeyId"], rsa4096["PrimaryKeyVersion"])

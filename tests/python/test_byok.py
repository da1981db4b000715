"""BYOK through the official SDKs: key material wrapped by an independent library
(`cryptography` for RSA, `gmssl` for SM2) and imported into EXTERNAL keys."""

import base64
import os
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from test_export import sm2_point_hex_from_der
from test_asymmetric import gmssl_sm2, sm2_c1c3c2_to_der
from test_sdk import create_key, fails

b64 = lambda b: base64.b64encode(b).decode()
unb64 = base64.b64decode


def wrap(params, algorithm, material):
    der = unb64(params["PublicKey"])
    if algorithm == "SM2PKE":
        from gmssl import sm2
        gm = gmssl_sm2(sm2_point_hex_from_der(der), mode=1)
        return b64(sm2_c1c3c2_to_der(gm.encrypt(material)))
    pub = serialization.load_der_public_key(der)
    pad = {
        "RSAES_PKCS1_V1_5": padding.PKCS1v15(),
        "RSAES_OAEP_SHA_1": padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
        "RSAES_OAEP_SHA_256": padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    }[algorithm]
    return b64(pub.encrypt(material, pad))


def params_for(kms, key, algorithm):
    spec = "EC_SM2" if algorithm == "SM2PKE" else "RSA_2048"
    p = kms("GetParametersForImport", KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    assert p["KeyId"] == key and p["ImportToken"]
    return p


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5", "SM2PKE"])
def test_import_use_delete_and_reimport(kms, algorithm):
    meta = create_key(kms, Origin="EXTERNAL")
    key = meta["KeyId"]
    assert (meta["Origin"], meta["KeyState"]) == ("EXTERNAL", "PendingImport")
    fails("Rejected.PendingImport", 409, kms, "Encrypt", KeyId=key, Plaintext="x")
    material = os.urandom(32)
    p = params_for(kms, key, algorithm)
    expire = int(time.time()) + 86400 * 30
    kms("ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p, algorithm, material), KeyMaterialExpireUnix=expire)
    d = kms("DescribeKey", KeyId=key)["KeyMetadata"]
    assert d["KeyState"] == "Enabled" and d["MaterialExpireTime"]
    blob = kms("Encrypt", KeyId=key, Plaintext="imported")["CiphertextBlob"]
    assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "imported"
    # The token is single use.
    fails("InvalidImportToken", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=wrap(p, algorithm, material), KeyMaterialExpireUnix=0)

    kms("DeleteKeyMaterial", KeyId=key)
    assert kms("DescribeKey", KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    fails("Rejected.PendingImport", 409, kms, "Decrypt", CiphertextBlob=blob)
    # Other material is refused; the same material brings the old ciphertexts back.
    p = params_for(kms, key, algorithm)
    fails("InvalidKeyMaterial", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=wrap(p, algorithm, os.urandom(32)), KeyMaterialExpireUnix=0)
    kms("ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p, algorithm, material), KeyMaterialExpireUnix=0)
    assert kms("Decrypt", CiphertextBlob=blob)["Plaintext"] == "imported"


def test_import_refusals(kms):
    key = create_key(kms, Origin="EXTERNAL", KeySpec="Aliyun_AES_128")["KeyId"]
    other = create_key(kms, Origin="EXTERNAL")["KeyId"]
    p = params_for(kms, key, "RSAES_OAEP_SHA_256")
    wrong_len = wrap(p, "RSAES_OAEP_SHA_256", os.urandom(32))
    fails("InvalidKeyMaterial", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=wrong_len, KeyMaterialExpireUnix=0)
    fails("InvalidImportToken", 400, kms, "ImportKeyMaterial", KeyId=other, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=wrong_len, KeyMaterialExpireUnix=0)
    fails("InvalidImportToken", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=b64(os.urandom(32)),
          EncryptedKeyMaterial=wrong_len, KeyMaterialExpireUnix=0)
    fails("InvalidKeyMaterial", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=b64(os.urandom(256)), KeyMaterialExpireUnix=0)
    fails("InvalidParameter", 400, kms, "ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=wrap(p, "RSAES_OAEP_SHA_256", os.urandom(16)), KeyMaterialExpireUnix=1)
    fails("InvalidParameter", 400, kms, "GetParametersForImport", KeyId=key,
          WrappingAlgorithm="SM2PKE", WrappingKeySpec="RSA_2048")
    normal = create_key(kms)["KeyId"]
    fails("Unsupported.Origin", 400, kms, "GetParametersForImport", KeyId=normal,
          WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    fails("Unsupported.Origin", 400, kms, "DeleteKeyMaterial", KeyId=normal)
    asym = create_key(kms, Origin="EXTERNAL", KeySpec="RSA_2048")["KeyId"]
    fails("InvalidParameter", 400, kms, "GetParametersForImport", KeyId=asym,
          WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")


def rsa_envelope(params, private_der):
    """RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD: OAEP(AES key) ‖ AES-256-ECB-PKCS7(PKCS#8)."""
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    aes_key = os.urandom(32)
    wrap_pub = serialization.load_der_public_key(unb64(params["PublicKey"]))
    head = wrap_pub.encrypt(aes_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    padder = sympad.PKCS7(128).padder()
    padded = padder.update(private_der) + padder.finalize()
    enc = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
    return b64(head + enc.update(padded) + enc.finalize())


@pytest.mark.parametrize("spec", ["RSA_2048", "EC_P256"])
def test_import_asymmetric_material(kms, spec):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
    import hashlib
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if spec == "RSA_2048" \
        else ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    meta = create_key(kms, Origin="EXTERNAL", KeySpec=spec, KeyUsage="SIGN/VERIFY")
    key, version = meta["KeyId"], meta["PrimaryKeyVersion"]
    p = kms("GetParametersForImport", KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD",
            WrappingKeySpec="RSA_2048")
    kms("ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=rsa_envelope(p, der),
        KeyMaterialExpireUnix=0)
    digest = hashlib.sha256(b"signed with imported material").digest()
    alg = "RSA_PKCS1_SHA_256" if spec == "RSA_2048" else "ECDSA_SHA_256"
    sig = unb64(kms("AsymmetricSign", KeyId=key, KeyVersionId=version, Algorithm=alg, Digest=b64(digest))["Value"])
    prehashed = utils.Prehashed(hashes.SHA256())
    if spec == "RSA_2048":
        private.public_key().verify(sig, digest, padding.PKCS1v15(), prehashed)
    else:
        private.public_key().verify(sig, digest, ec.ECDSA(prehashed))
    # Material of the wrong kind is refused.
    other = create_key(kms, Origin="EXTERNAL", KeySpec="RSA_3072")["KeyId"]
    p = kms("GetParametersForImport", KeyId=other, WrappingAlgorithm="RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD",
            WrappingKeySpec="RSA_2048")
    fails("InvalidKeyMaterial", 400, kms, "ImportKeyMaterial", KeyId=other, ImportToken=p["ImportToken"],
          EncryptedKeyMaterial=rsa_envelope(p, der), KeyMaterialExpireUnix=0)


def test_import_sm2_material(kms):
    import secrets
    from gmssl import sm2
    from gmssl.sm4 import CryptSM4, SM4_ENCRYPT
    n = int(sm2.default_ecc_table["n"], 16)
    d = secrets.randbelow(n - 2) + 1
    probe = sm2.CryptSM2(private_key=f"{d:064x}", public_key="00" * 64)
    point = probe._kg(d, sm2.default_ecc_table["g"])
    meta = create_key(kms, Origin="EXTERNAL", KeySpec="EC_SM2", KeyUsage="SIGN/VERIFY")
    key, version = meta["KeyId"], meta["PrimaryKeyVersion"]
    p = kms("GetParametersForImport", KeyId=key, WrappingAlgorithm="SM2PKE_SM4_ECB", WrappingKeySpec="EC_SM2")
    wrapper = gmssl_sm2(sm2_point_hex_from_der(unb64(p["PublicKey"])), mode=1)
    sm4_key = os.urandom(16)
    head = sm2_c1c3c2_to_der(wrapper.encrypt(sm4_key))
    cipher = CryptSM4()
    cipher.set_key(sm4_key, SM4_ENCRYPT)
    body = cipher.crypt_ecb(d.to_bytes(32, "big"))
    kms("ImportKeyMaterial", KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=b64(head + body),
        KeyMaterialExpireUnix=0)
    pem = kms("GetPublicKey", KeyId=key, KeyVersionId=version)["PublicKey"]
    assert sm2_point_hex_from_der(unb64("".join(pem.strip().splitlines()[1:-1]))) == point

"""Data-key export to a caller's public key (RSA with `cryptography`, SM2 with `gmssl`) and
ReEncrypt of public-key ciphertexts, through the official SDKs."""

import base64
import secrets

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from test_asymmetric import gmssl_sm2, public_key
from test_sdk import create_key, fails

b64 = lambda b: base64.b64encode(b).decode()
unb64 = base64.b64decode

# DER SubjectPublicKeyInfo prefix of an SM2 point: id-ecPublicKey + sm2p256v1, BIT STRING 04‖x‖y.
SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")


def sm2_point_hex_from_der(spki):
    return spki[-64:].hex()  # the BIT STRING ends with 04 ‖ x ‖ y


def der_read(buf, i):
    tag, n = buf[i], buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[i:i + k], "big")
        i += k
    return tag, buf[i:i + n], i + n


def sm2_der_to_c1c3c2(der):
    _, body, _ = der_read(der, 0)
    parts, i = [], 0
    while i < len(body):
        _, value, i = der_read(body, i)
        parts.append(value)
    x, y, c3, c2 = parts
    coord = lambda v: v.lstrip(b"\x00").rjust(32, b"\x00")
    return coord(x) + coord(y) + c3 + c2


def test_rsa_export(kms):
    key = create_key(kms)["KeyId"]
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    blob = b64(private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    for alg, h in [("RSAES_OAEP_SHA_256", hashes.SHA256), ("RSAES_OAEP_SHA_1", hashes.SHA1)]:
        oaep = padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None)
        out = kms("GenerateAndExportDataKey", KeyId=key, KeySpec="AES_128", PublicKeyBlob=blob,
                  WrappingAlgorithm=alg, WrappingKeySpec="RSA_2048", EncryptionContext={"f": "1"})
        exported = private.decrypt(unb64(out["ExportedDataKey"]), oaep)
        same = kms("Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"f": "1"})["Plaintext"]
        assert exported.decode() == same and len(unb64(same)) == 16
        again = kms("ExportDataKey", CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"f": "1"},
                    PublicKeyBlob=blob, WrappingAlgorithm=alg, WrappingKeySpec="RSA_2048")
        assert private.decrypt(unb64(again["ExportedDataKey"]), oaep) == exported
        assert again["KeyId"] == key
    fails("InvalidParameter", 400, kms, "ExportDataKey", CiphertextBlob=out["CiphertextBlob"],
          EncryptionContext={"f": "1"}, PublicKeyBlob=blob, WrappingAlgorithm="SM2PKE", WrappingKeySpec="RSA_2048")
    fails("InvalidParameter", 400, kms, "GenerateAndExportDataKey", KeyId=key, PublicKeyBlob=b64(b"junk"),
          WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    small = rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key()
    fails("InvalidParameter", 400, kms, "GenerateAndExportDataKey", KeyId=key,
          PublicKeyBlob=b64(small.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
          WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    fails("InvalidCiphertext", 400, kms, "ExportDataKey", CiphertextBlob=out["CiphertextBlob"],
          PublicKeyBlob=blob, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")


def test_sm2_export(kms):
    from gmssl import sm2
    gm_order = int(sm2.default_ecc_table["n"], 16)
    d = secrets.randbelow(gm_order - 1) + 1
    probe = sm2.CryptSM2(private_key=f"{d:064x}", public_key="00" * 64, mode=1)
    point = probe._kg(d, sm2.default_ecc_table["g"])
    gm = gmssl_sm2(point, private_key=f"{d:064x}", mode=1)
    blob = b64(SM2_SPKI_PREFIX + bytes.fromhex(point))
    key = create_key(kms, KeySpec="Aliyun_SM4")["KeyId"]
    out = kms("GenerateAndExportDataKey", KeyId=key, PublicKeyBlob=blob, WrappingAlgorithm="SM2PKE", WrappingKeySpec="EC_SM2")
    exported = gm.decrypt(sm2_der_to_c1c3c2(unb64(out["ExportedDataKey"])))
    assert exported.decode() == kms("Decrypt", CiphertextBlob=out["CiphertextBlob"])["Plaintext"]


def test_re_encrypt_of_public_key_ciphertexts(kms):
    source = create_key(kms, KeySpec="RSA_2048", KeyUsage="ENCRYPT/DECRYPT")
    dest = create_key(kms)["KeyId"]
    pub = serialization.load_pem_public_key(public_key(kms, source["KeyId"], source["PrimaryKeyVersion"]).encode())
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    ct = pub.encrypt(b"dGV4dCBkYXRhIGtleQ==", oaep)
    out = kms("ReEncrypt", CiphertextBlob=b64(ct), SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
              SourceKeyId=source["KeyId"], SourceKeyVersionId=source["PrimaryKeyVersion"],
              DestinationKeyId=dest, DestinationEncryptionContext={"to": "dest"})
    assert out["KeyId"] == dest
    assert kms("Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"to": "dest"})["Plaintext"] == "dGV4dCBkYXRhIGtleQ=="
    fails("MissingParameter", 400, kms, "ReEncrypt", CiphertextBlob=b64(ct), SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
          DestinationKeyId=dest)

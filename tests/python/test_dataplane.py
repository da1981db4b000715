"""The KMS-instance data plane through the official instance SDK (`alibabacloud-dkms-gcs`):
TLS against the instance's own CA, client keys from CreateClientKey (PKCS#12 + password), every
operation, and the AAP allow/deny matrix decided by the policy plugin, including network rules
by source address on loopback aliases. Management goes through the official 2016-01-20 SDK."""

import base64
import contextlib
import json
import subprocess
import time

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's pyOpenSSL use
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from conftest import arca_bin, sdk
from test_policy import new_account
from test_sdk import fails

KEY_USER = "RbacPermission/Template/CryptoServiceKeyUser"
SECRET_USER = "RbacPermission/Template/CryptoServiceSecretUser"
PASSWORD = "client-key-pw1"


class Tenant:
    """An account with one KMS instance, managed through the 2016-01-20 SDK."""

    def __init__(self, server, tmp_path, name):
        self.server, self.tmp, self.name = server, tmp_path, name
        self.creds = new_account(server)
        self.kms = sdk("v3", server, self.creds)
        self.instance = self.new_instance()

    def new_instance(self):
        out = subprocess.run(
            [arca_bin(), "instance", "create", "--endpoint", self.server.endpoint,
             "--credentials", str(self.server.data_dir / "credentials.json"),
             "--account-id", self.creds["account_id"]],
            check=True, capture_output=True, text=True).stdout
        # The CLI's JSON carries Arca's `Endpoint`; the SDK's model drops fields it does not
        # know, but has the CA the SDK is pointed at.
        inst = json.loads(out)["KmsInstance"]
        got = self.kms("GetKmsInstance", KmsInstanceId=inst["InstanceId"])["KmsInstance"]
        assert got["CaCertificateChainPem"] == inst["CaCertificateChainPem"]
        return inst

    def key(self, instance=None, **params):
        inst = instance or self.instance
        return self.kms("CreateKey", DKMSInstanceId=inst["InstanceId"], **params)["KeyMetadata"]["KeyId"]

    def app(self, name, permissions, resources, sources=None, instance=None):
        """An access point with one policy (and a network rule when `sources` is given) and a
        client key for it; returns the key's JSON file."""
        rules = []
        if sources is not None:
            self.kms("CreateNetworkRule", Name=f"{name}-net", Type="Private",
                     SourcePrivateIp=json.dumps(sources), Description="loopback")
            rules = [f"{name}-net"]
        self.kms("CreatePolicy", Name=f"{name}-policy",
                 KmsInstance=(instance or self.instance)["InstanceId"],
                 Permissions=json.dumps(permissions), Resources=json.dumps(resources),
                 AccessControlRules=json.dumps({"NetworkRules": rules}))
        self.kms("CreateApplicationAccessPoint", Name=name, Policies=json.dumps([f"{name}-policy"]),
                 AuthenticationMethod="ClientKey", Description="test app")
        made = self.kms("CreateClientKey", AapName=name, Password=PASSWORD)
        path = self.tmp / f"clientKey_{made['ClientKeyId']}.json"
        path.write_text(json.dumps({"KeyId": made["ClientKeyId"],
                                    "PrivateKeyData": made["PrivateKeyData"]}))
        return path

    def client(self, key_file, instance=None):
        from openapi.models import Config
        from sdk.client import Client
        inst = instance or self.instance
        ca = self.tmp / f"{inst['InstanceId']}-ca.pem"
        ca.write_text(inst["CaCertificateChainPem"])
        return Client(Config(protocol="https", endpoint=inst["Endpoint"],
                             client_key_file=str(key_file), password=PASSWORD,
                             ca_file_path=str(ca)))


def refused(code, status, fn, *args):
    from Tea.exceptions import TeaException, UnretryableException
    with pytest.raises((TeaException, UnretryableException)) as e:
        fn(*args)
    err = e.value if isinstance(e.value, TeaException) else e.value.inner_exception
    assert (err.code, err.data.get("httpCode")) == (code, status), (err.code, err.message, err.data)
    assert err.data.get("requestId")
    return err


@contextlib.contextmanager
def source_address(ip):
    """New connections from this process leave from `ip` (a loopback alias), as an application
    on another host of the network rule would."""
    import urllib3.util.connection as conn
    from Tea.core import TeaCore
    original = conn.create_connection

    def bound(address, *args, **kwargs):
        kwargs["source_address"] = (ip, 0)
        return original(address, *args, **kwargs)

    TeaCore._sessions.clear()  # no kept-alive connection from another address
    conn.create_connection = bound
    try:
        yield
    finally:
        conn.create_connection = original
        TeaCore._sessions.clear()


@pytest.fixture(scope="module")
def tenant(server, tmp_path_factory):
    return Tenant(server, tmp_path_factory.mktemp("dkms"), "t1")


def test_every_operation_through_the_instance_sdk(tenant):
    from sdk import models
    aes = tenant.key()
    rsa = tenant.key(KeySpec="RSA_2048", KeyUsage="SIGN/VERIFY")
    p256 = tenant.key(KeySpec="EC_P256", KeyUsage="SIGN/VERIFY")
    tenant.kms("CreateSecret", SecretName="db-pass", SecretData="s3cr3t-value", VersionId="v1",
               DKMSInstanceId=tenant.instance["InstanceId"], EncryptionKeyId=aes)
    client = tenant.client(tenant.app("all", [KEY_USER, SECRET_USER], ["key/*", "secret/*"]))

    enc = client.encrypt(models.EncryptRequest(key_id=aes, plaintext=b"hello instance", aad=b"ctx"))
    assert enc.key_id == aes and len(enc.iv) == 12 and enc.algorithm == "AES_GCM"
    dec = client.decrypt(models.DecryptRequest(key_id=aes, ciphertext_blob=enc.ciphertext_blob,
                                               iv=enc.iv, aad=b"ctx"))
    assert dec.plaintext == b"hello instance"
    refused("InvalidCiphertext", 400, client.decrypt, models.DecryptRequest(
        key_id=aes, ciphertext_blob=enc.ciphertext_blob, iv=enc.iv, aad=b"other"))
    refused("UnsupportedOperation", 400, client.encrypt, models.EncryptRequest(
        key_id=aes, plaintext=b"x", algorithm="AES_CBC", padding_mode="PKCS7_PADDING"))

    # Rotation: old raw ciphertexts still open (the tag tells which version sealed).
    tenant.kms("CreateKeyVersion", KeyId=aes)
    dec = client.decrypt(models.DecryptRequest(key_id=aes, ciphertext_blob=enc.ciphertext_blob,
                                               iv=enc.iv, aad=b"ctx"))
    assert dec.plaintext == b"hello instance"

    dk = client.generate_data_key(models.GenerateDataKeyRequest(key_id=aes, number_of_bytes=32, aad=b"a"))
    assert len(dk.plaintext) == 32
    assert client.decrypt(models.DecryptRequest(key_id=aes, ciphertext_blob=dk.ciphertext_blob,
                                                iv=dk.iv, aad=b"a")).plaintext == dk.plaintext

    adv = client.advance_encrypt(models.AdvanceEncryptRequest(key_id=aes, plaintext=b"advance", aad=b"z"))
    assert adv.ciphertext_blob[:3] == b"$\x00\x02"
    assert adv.ciphertext_blob[3:39].decode() == adv.key_version_id
    # Self-describing: no KeyId needed to open it.
    opened = client.advance_decrypt(models.AdvanceDecryptRequest(ciphertext_blob=adv.ciphertext_blob, aad=b"z"))
    assert (opened.plaintext, opened.key_id, opened.key_version_id) == (b"advance", aes, adv.key_version_id)
    refused("InvalidCiphertext", 400, client.advance_decrypt,
            models.AdvanceDecryptRequest(ciphertext_blob=adv.ciphertext_blob, aad=b"y"))
    adk = client.advance_generate_data_key(models.AdvanceGenerateDataKeyRequest(key_id=aes, number_of_bytes=16))
    assert client.advance_decrypt(models.AdvanceDecryptRequest(
        ciphertext_blob=adk.ciphertext_blob)).plaintext == adk.plaintext and len(adk.plaintext) == 16

    # Signatures, checked with the public key GetPublicKey returns.
    message = b"sign me on the instance"
    sig = client.sign(models.SignRequest(key_id=rsa, algorithm="RSA_PKCS1_SHA_256", message=message))
    pem = client.get_public_key(models.GetPublicKeyRequest(key_id=rsa)).public_key
    serialization.load_pem_public_key(pem.encode()).verify(
        sig.signature, message, padding.PKCS1v15(), hashes.SHA256())
    assert client.verify(models.VerifyRequest(key_id=rsa, algorithm="RSA_PKCS1_SHA_256",
                                              message=message, signature=sig.signature)).value
    assert not client.verify(models.VerifyRequest(key_id=rsa, algorithm="RSA_PKCS1_SHA_256",
                                                  message=b"other", signature=sig.signature)).value
    digest = hashes.Hash(hashes.SHA256()); digest.update(message); digest = digest.finalize()
    esig = client.sign(models.SignRequest(key_id=p256, algorithm="ECDSA_SHA_256", message=digest,
                                          message_type="DIGEST"))
    epem = client.get_public_key(models.GetPublicKeyRequest(key_id=p256)).public_key
    serialization.load_pem_public_key(epem.encode()).verify(
        esig.signature, message, ec.ECDSA(hashes.SHA256()))

    secret = client.get_secret_value(models.GetSecretValueRequest(secret_name="db-pass"))
    assert (secret.secret_data, secret.version_id, secret.version_stages) == ("s3cr3t-value", "v1", ["ACSCurrent"])
    rnd = client.generate_random(models.GenerateRandomRequest(length=48))
    assert len(rnd.random) == 48

    # A disabled key refuses, as on the shared gateway.
    tenant.kms("DisableKey", KeyId=aes)
    refused("Rejected.Disabled", 409, client.encrypt, models.EncryptRequest(key_id=aes, plaintext=b"x"))
    tenant.kms("EnableKey", KeyId=aes)


def test_allow_deny_matrix(tenant, server):
    from sdk import models
    k1, k2 = tenant.key(), tenant.key()
    for name in ("s-allowed", "s-other"):
        tenant.kms("CreateSecret", SecretName=name, SecretData="v", VersionId="v1",
                   DKMSInstanceId=tenant.instance["InstanceId"], EncryptionKeyId=k1)
    one_key = tenant.client(tenant.app("one-key", [KEY_USER], [f"key/{k1}"]))
    secrets_only = tenant.client(tenant.app("secrets", [SECRET_USER], ["secret/s-allowed"]))
    alias_two = tenant.client(tenant.app("net", [KEY_USER], ["key/*"], sources=["127.0.0.2"]))
    cidr = tenant.client(tenant.app("cidr", [KEY_USER], ["key/*"], sources=["127.0.0.0/31"]))

    enc = lambda c, k: c.encrypt(models.EncryptRequest(key_id=k, plaintext=b"m"))
    get = lambda c, n: c.get_secret_value(models.GetSecretValueRequest(secret_name=n))
    assert enc(one_key, k1).key_id == k1
    e = refused("Forbidden.NoPermission", 403, enc, one_key, k2)
    assert "no policy" in e.message
    refused("Forbidden.NoPermission", 403, get, one_key, "s-allowed")
    assert get(secrets_only, "s-allowed").secret_data == "v"
    refused("Forbidden.NoPermission", 403, get, secrets_only, "s-other")
    refused("Forbidden.NoPermission", 403, enc, secrets_only, k1)
    # Network rules: 127.0.0.1 is outside 127.0.0.2 and inside 127.0.0.0/31.
    refused("Forbidden.NoPermission", 403, enc, alias_two, k1)
    assert enc(cidr, k1)
    with source_address("127.0.0.2"):
        assert enc(alias_two, k1).key_id == k1
    with source_address("127.0.0.3"):
        refused("Forbidden.NoPermission", 403, enc, alias_two, k1)
        refused("Forbidden.NoPermission", 403, enc, cidr, k1)
    # A policy change applies to the next request.
    tenant.kms("UpdateNetworkRule", Name="net-net", SourcePrivateIp="127.0.0.1,127.0.0.2")
    assert enc(alias_two, k1)

    # Denials are audited with the client key and the source address.
    time.sleep(0.3)
    audit = [json.loads(line) for line in (server.data_dir / "audit.log").read_text().splitlines()]
    denied = [a for a in audit if a["result"] == "Forbidden.NoPermission"
              and (a.get("access_key_id") or "").startswith("KAAP.")]
    assert any(a["source_ip"] == "127.0.0.3" for a in denied), denied[-3:]
    assert all(a["account"] == tenant.creds["account_id"] for a in denied)


def test_instances_are_isolated_and_keys_authenticate(tenant, server, tmp_path):
    from sdk import models
    other_instance = tenant.new_instance()
    here, there = tenant.key(), tenant.key(instance=other_instance)
    outside = tenant.kms("CreateKey")["KeyMetadata"]["KeyId"]
    key_file = tenant.app("iso", [KEY_USER], ["key/*"])
    client = tenant.client(key_file)
    enc = lambda c, k: c.encrypt(models.EncryptRequest(key_id=k, plaintext=b"m"))
    assert enc(client, here)
    # Another instance's key and a key outside instances do not exist on this endpoint.
    refused("Forbidden.KeyNotFound", 404, enc, client, there)
    refused("Forbidden.KeyNotFound", 404, enc, client, outside)
    # The same client key on the other instance's endpoint: its policy names this instance.
    refused("Forbidden.NoPermission", 403, enc, tenant.client(key_file, other_instance), there)
    # Another tenant's client key is unknown here.
    stranger = Tenant(server, tmp_path, "t2")
    foreign = stranger.app("foreign", [KEY_USER], ["key/*"], instance=stranger.instance)
    refused("Unauthorized", 401, enc, tenant.client(foreign), here)
    # A key file whose private key is not the named client key's: the signature fails.
    second = json.loads(tenant.app("iso2", [KEY_USER], ["key/*"]).read_text())
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({"KeyId": json.loads(key_file.read_text())["KeyId"],
                                  "PrivateKeyData": second["PrivateKeyData"]}))
    refused("Unauthorized", 401, enc, tenant.client(forged), here)
    # The management view of client keys, and deletion.
    key_id = json.loads(key_file.read_text())["KeyId"]
    got = tenant.kms("GetClientKey", ClientKeyId=key_id)
    assert got["AapName"] == "iso" and got["KeyOrigin"] == "KMS_PROVIDED"
    assert got["PublicKeyData"].startswith("-----BEGIN CERTIFICATE-----")
    listed = tenant.kms("ListClientKeys", AapName="iso")["ClientKeys"]
    assert [k["ClientKeyId"] for k in listed] == [key_id]
    fails("Rejected.ResourceInUse", 409, tenant.kms, "DeleteApplicationAccessPoint", Name="iso")
    tenant.kms("DeleteClientKey", ClientKeyId=key_id)
    refused("Unauthorized", 401, enc, client, here)
    tenant.kms("DeleteApplicationAccessPoint", Name="iso")


def test_aap_management_through_the_sdks(tenant):
    from conftest import MODES
    for mode in MODES:
        kms = sdk(mode, tenant.server, tenant.creds)
        rule, policy, app = f"r-{mode}", f"p-{mode}", f"a-{mode}"
        made = kms("CreateNetworkRule", Name=rule, Type="Private", SourcePrivateIp="10.0.0.0/8,127.0.0.1")
        assert made["Arn"].endswith(f":network/{rule}")
        assert json.loads(kms("DescribeNetworkRule", Name=rule)["SourcePrivateIp"]) == ["10.0.0.0/8", "127.0.0.1"]
        fails("InvalidParameter", 400, kms, "CreateNetworkRule", Name="bad", Type="Private",
              SourcePrivateIp="10.0.0.0/40")
        fails("Rejected.ResourceExist", 409, kms, "CreateNetworkRule", Name=rule, Type="Private",
              SourcePrivateIp="10.0.0.1")
        kms("CreatePolicy", Name=policy, KmsInstance=tenant.instance["InstanceId"],
            Permissions=json.dumps([KEY_USER]), Resources=json.dumps(["key/*"]),
            AccessControlRules=json.dumps({"NetworkRules": [rule]}))
        fails("InvalidParameter", 400, kms, "CreatePolicy", Name="bad", KmsInstance=tenant.instance["InstanceId"],
              Permissions=json.dumps(["Admin"]), Resources=json.dumps(["key/*"]),
              AccessControlRules=json.dumps({"NetworkRules": []}))
        fails("InvalidParameter", 400, kms, "CreatePolicy", Name="bad", KmsInstance=tenant.instance["InstanceId"],
              Permissions=json.dumps([KEY_USER]), Resources=json.dumps(["key/*"]),
              AccessControlRules=json.dumps({"NetworkRules": ["missing"]}))
        described = kms("DescribePolicy", Name=policy)
        assert described["Permissions"] == [KEY_USER] and described["Resources"] == ["key/*"]
        kms("UpdatePolicy", Name=policy, Resources=json.dumps(["key/*", "secret/*"]))
        assert kms("DescribePolicy", Name=policy)["Resources"] == ["key/*", "secret/*"]
        kms("CreateApplicationAccessPoint", Name=app, Policies=json.dumps([policy]),
            AuthenticationMethod="ClientKey")
        assert json.loads(kms("DescribeApplicationAccessPoint", Name=app)["Policies"]) == [policy]
        kms("UpdateApplicationAccessPoint", Name=app, Description="updated")
        assert kms("DescribeApplicationAccessPoint", Name=app)["Description"] == "updated"
        names = lambda action, outer, item: [x["Name"] for x in kms(action, PageSize=100)[outer][item]]
        assert rule in names("ListNetworkRules", "NetworkRules", "NetworkRule")
        assert policy in names("ListPolicies", "Policies", "Policy")
        assert app in names("ListApplicationAccessPoints", "ApplicationAccessPoints", "ApplicationAccessPoint")
        # Referenced things cannot go; in order they can.
        fails("Rejected.ResourceInUse", 409, kms, "DeleteNetworkRule", Name=rule)
        fails("Rejected.ResourceInUse", 409, kms, "DeletePolicy", Name=policy)
        fails("InvalidParameter", 400, kms, "CreateClientKey", AapName=app, Password="short")
        kms("DeleteApplicationAccessPoint", Name=app)
        kms("DeletePolicy", Name=policy)
        kms("DeleteNetworkRule", Name=rule)
        fails("Forbidden.ResourceNotFound", 404, kms, "DescribeNetworkRule", Name=rule)


def test_data_plane_fails_closed_without_its_policy(tmp_path):
    """An operator's --aap-policy that is not loaded refuses every client-key request (503),
    never lets one through."""
    from conftest import Server
    from sdk import models
    server = Server(tmp_path / "data", args=["--aap-policy", "no-such-policy"]).start()
    try:
        tenant = Tenant(server, tmp_path, "closed")
        key = tenant.key()
        client = tenant.client(tenant.app("app", [KEY_USER], ["key/*"]))
        refused("ServiceUnavailableTemporary", 503, client.encrypt,
                models.EncryptRequest(key_id=key, plaintext=b"m"))
    finally:
        server.kill9()


def test_instance_endpoints_survive_a_restart(tmp_path):
    from conftest import Server
    from sdk import models
    server = Server(tmp_path / "data").start()
    try:
        tenant = Tenant(server, tmp_path, "restart")
        key = tenant.key()
        client = tenant.client(tenant.app("app", [KEY_USER], ["key/*"]))
        enc = client.encrypt(models.EncryptRequest(key_id=key, plaintext=b"before"))
        server.kill9()
        server.start()
        # Same endpoint, same CA and client key, same key.
        deadline = time.time() + 10
        while True:
            try:
                dec = client.decrypt(models.DecryptRequest(key_id=key, ciphertext_blob=enc.ciphertext_blob,
                                                           iv=enc.iv))
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        assert dec.plaintext == b"before"
    finally:
        server.kill9()


def test_hmac_keys_and_data_key_pairs(tenant):
    """HMAC keys (GenerateMac/VerifyMac on the shared gateway, Hmac on the data plane) and the
    four data-key-pair operations."""
    import hashlib
    import hmac as py_hmac
    from openapi_util import models as util_models
    from openapi_util.protobuf import api_pb2
    from sdk import models

    mac_key = tenant.key(KeySpec="HMAC_SHA256")
    meta = tenant.kms("DescribeKey", KeyId=mac_key)["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("HMAC_SHA256", "GENERATE/VERIFY_MAC")
    message = b"authenticate me"
    b64 = lambda b: base64.b64encode(b).decode()
    for mode in ("v3", "v2"):  # the legacy SDK has no GenerateMac
        kms = sdk(mode, tenant.server, tenant.creds)
        made = kms("GenerateMac", KeyId=mac_key, Algorithm="HMAC_SHA_256", Message=b64(message))
        assert kms("VerifyMac", KeyId=mac_key, Algorithm="HMAC_SHA_256", Message=b64(message),
                   Mac=made["Mac"])["Value"] is True
        assert kms("VerifyMac", KeyId=mac_key, Algorithm="HMAC_SHA_256", Message=b64(b"other"),
                   Mac=made["Mac"])["Value"] is False
        fails("InvalidParameter", 400, kms, "GenerateMac", KeyId=mac_key, Algorithm="HMAC_SHA_512",
              Message=b64(message))
        fails("Rejected.UnsupportedOperation", 400, kms, "Encrypt", KeyId=mac_key, Plaintext="x")
    before = tenant.kms("GenerateMac", KeyId=mac_key, Algorithm="HMAC_SHA_256", Message=b64(message))["Mac"]
    tenant.kms("CreateKeyVersion", KeyId=mac_key)
    assert tenant.kms("VerifyMac", KeyId=mac_key, Algorithm="HMAC_SHA_256", Message=b64(message),
                      Mac=before)["Value"] is True
    fails("Rejected.UnsupportedOperation", 400, tenant.kms, "CreateKey", KeySpec="HMAC_SHA256",
          Origin="EXTERNAL")

    aes = tenant.key()
    client = tenant.client(tenant.app("pairs", [KEY_USER], ["key/*"]))
    # Hmac has a protobuf message but no SDK method: send it through the SDK's own signed
    # transport.
    body = api_pb2.HmacRequest(KeyId=mac_key, Message=message).SerializeToString()
    raw = client.do_request("Hmac", "dkms-gcs-0.2", "https", "POST", "RSA_PKCS1_SHA_256", body,
                            util_models.RuntimeOptions(), {})
    resp = api_pb2.HmacResponse()
    resp.ParseFromString(raw["bodyBytes"])
    assert resp.KeyId == mac_key
    assert tenant.kms("VerifyMac", KeyId=mac_key, Algorithm="HMAC_SHA_256", Message=b64(message),
                      Mac=b64(resp.Signature))["Value"] is True

    pair = client.generate_data_key_pair(models.GenerateDataKeyPairRequest(
        key_id=aes, key_pair_spec="EC_P256", key_format="PEM", aad=b"pair"))
    private = serialization.load_pem_private_key(pair.private_key_plaintext, password=None)
    public = serialization.load_pem_public_key(pair.public_key)
    sig = private.sign(b"m", ec.ECDSA(hashes.SHA256()))
    public.verify(sig, b"m", ec.ECDSA(hashes.SHA256()))
    opened = client.decrypt(models.DecryptRequest(key_id=aes, ciphertext_blob=pair.private_key_ciphertext_blob,
                                                  iv=pair.iv, aad=b"pair"))
    assert opened.plaintext == pair.private_key_plaintext
    bare = client.generate_data_key_pair_without_plaintext(models.GenerateDataKeyPairWithoutPlaintextRequest(
        key_id=aes, key_pair_spec="RSA_2048", key_format="DER"))
    rsa_public = serialization.load_der_public_key(bare.public_key)
    assert rsa_public.key_size == 2048
    rsa_private = serialization.load_der_private_key(client.decrypt(models.DecryptRequest(
        key_id=aes, ciphertext_blob=bare.private_key_ciphertext_blob, iv=bare.iv)).plaintext, password=None)
    assert rsa_private.public_key().public_numbers() == rsa_public.public_numbers()
    adv = client.advance_generate_data_key_pair(models.AdvanceGenerateDataKeyPairRequest(
        key_id=aes, key_pair_spec="EC_SM2", key_format="DER"))
    assert adv.private_key_ciphertext_blob[:3] == b"$\x00\x02"
    assert client.advance_decrypt(models.AdvanceDecryptRequest(
        ciphertext_blob=adv.private_key_ciphertext_blob)).plaintext == adv.private_key_plaintext
    adv_bare = client.advance_generate_data_key_pair_without_plaintext(
        models.AdvanceGenerateDataKeyPairWithoutPlaintextRequest(key_id=aes, key_pair_spec="EC_P256K"))
    assert adv_bare.key_version_id and adv_bare.public_key.startswith(b"-----BEGIN PUBLIC KEY-----")
    refused("InvalidParameter", 400, client.generate_data_key_pair, models.GenerateDataKeyPairRequest(
        key_id=aes, key_pair_spec="Aliyun_AES_256"))


def test_a_chosen_iv_or_aad_reaches_nothing_of_the_gateway(tenant):
    """The data plane takes the caller's Iv and raw Aad. Sealing under the same key as the
    gateway's blobs let a data-plane caller Encrypt zeros under a blob's IV and read its
    keystream (opening the blob without its EncryptionContext), and choose an Aad that mints a
    gateway blob. The instance domain now has a key (and AAD tag) of its own."""
    from sdk import models
    aes = tenant.key()
    client = tenant.client(tenant.app("ivs", [KEY_USER], ["key/*"]))
    payload = "the gateway's secret payload"
    blob_b64 = tenant.kms("Encrypt", KeyId=aes, Plaintext=payload,
                          EncryptionContext={"tenant": "t1"})["CiphertextBlob"]
    blob = base64.b64decode(blob_b64)
    version, iv, sealed = blob[:36], blob[36:48], blob[48:]
    ciphertext = sealed[:-16]

    # The keystream attack: zeros under the blob's IV.
    zeros = client.encrypt(models.EncryptRequest(key_id=aes, plaintext=bytes(len(ciphertext)), iv=iv))
    recovered = bytes(a ^ b for a, b in zip(ciphertext, zeros.ciphertext_blob))
    assert recovered != payload.encode()

    # A forged gateway blob: the data plane sealing with a gateway blob's AAD (no context).
    gateway_aad = version + b"arca-ec/1" + b"\x00\x00\x00\x00"
    forged = client.encrypt(models.EncryptRequest(key_id=aes, plaintext=b"forged", iv=iv, aad=gateway_aad))
    forged_blob = base64.b64encode(version + iv + forged.ciphertext_blob).decode()
    fails("InvalidCiphertext", 400, tenant.kms, "Decrypt", CiphertextBlob=forged_blob)

    # And the data plane does not open the gateway's blob even with its exact AAD.
    context_aad = (version + b"arca-ec/1" + (1).to_bytes(4, "big") + (6).to_bytes(4, "big") + b"tenant"
                   + b"s" + (2).to_bytes(4, "big") + b"t1")
    refused("InvalidCiphertext", 400, client.decrypt, models.DecryptRequest(
        key_id=aes, ciphertext_blob=sealed, iv=iv, aad=context_aad))
    # The gateway still opens its own blob, and the data plane its own ciphertexts.
    assert tenant.kms("Decrypt", CiphertextBlob=blob_b64,
                      EncryptionContext={"tenant": "t1"})["Plaintext"] == payload
    mine = client.encrypt(models.EncryptRequest(key_id=aes, plaintext=b"mine", iv=iv, aad=b"a"))
    assert client.decrypt(models.DecryptRequest(key_id=aes, ciphertext_blob=mine.ciphertext_blob,
                                                iv=iv, aad=b"a")).plaintext == b"mine"


def test_a_slow_body_is_cut_off(tenant):
    """A body trickled in (here: promised and never sent) gets 408 after the gateway's 10 s
    deadline instead of holding a connection slot forever."""
    import socket
    import ssl
    host, port = tenant.instance["Endpoint"].rsplit(":", 1)
    ctx = ssl.create_default_context(cadata=tenant.instance["CaCertificateChainPem"])
    ctx.check_hostname = False
    started = time.time()
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Type: application/x-protobuf\r\n"
                        b"Content-Length: 100\r\n\r\n")
            reply = tls.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert time.time() - started < 25

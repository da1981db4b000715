"""TLS on the main API: `arca serve --tls-cert --tls-key` serves HTTPS only, and the official SDK
works with `protocol="HTTPS"` and the operator's CA, with both of its signatures. Plain HTTP on a
non-loopback address is served with a warning in the log."""

import datetime
import ipaddress
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Server, free_port


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(dir: Path):
    """An operator's CA and a server certificate for 127.0.0.1 it issued; returns the paths
    (ca, cert, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Test Operator CA")).issuer_name(_name("Test Operator CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("arca.test")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = dir / "ca.pem", dir / "server.pem", dir / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def client(server, ca, protocol="HTTPS", signature=None):
    from alibabacloud_tea_openapi.models import Config
    from alibabacloud_kms20160120.client import Client
    c = server.credentials
    cfg = Config(access_key_id=c["access_key_id"], access_key_secret=c["access_key_secret"],
                 endpoint=server.endpoint, protocol=protocol, region_id=c["region_id"], ca=str(ca))
    if signature:
        cfg.signature_algorithm = signature
    return Client(cfg)


def test_the_sdk_works_over_https_with_the_operators_ca():
    from alibabacloud_kms20160120 import models
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = make_pki(Path(tmp))
        s = Server(Path(tmp) / "data", args=["--tls-cert", str(cert), "--tls-key", str(key)]).start()
        try:
            for signature in (None, "v2"):
                kms = client(s, ca, signature=signature)
                key_id = kms.create_key(models.CreateKeyRequest()).body.key_metadata.key_id
                blob = kms.encrypt(models.EncryptRequest(key_id=key_id, plaintext="over tls")).body.ciphertext_blob
                assert kms.decrypt(models.DecryptRequest(ciphertext_blob=blob)).body.plaintext == "over tls"
            # HTTPS only: a plain-HTTP client gets no answer from it.
            with pytest.raises(Exception):
                client(s, ca, protocol="HTTP").describe_regions()
            # And a client that does not trust the operator's CA refuses the server.
            other = Path(tmp) / "other"
            other.mkdir()
            other_ca, _, _ = make_pki(other)
            from darabonba.core import DaraCore
            DaraCore._sessions.clear()  # no kept-alive connection verified under the right CA
            with pytest.raises(Exception):
                client(s, other_ca).describe_regions()
        finally:
            s.kill9()


def test_plain_http_off_loopback_logs_a_warning():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(Path(tmp) / "data")
        s.endpoint = f"0.0.0.0:{free_port()}"  # every local address; the test talks to loopback
        s.start()
        try:
            log = Path(tmp) / "data.log"
            deadline = time.time() + 10
            while "plain HTTP on a non-loopback address" not in log.read_text() and time.time() < deadline:
                time.sleep(0.1)
            assert "plain HTTP on a non-loopback address" in log.read_text()
        finally:
            s.kill9()
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(Path(tmp) / "data").start()
        try:
            time.sleep(0.5)
            assert "plain HTTP" not in (Path(tmp) / "data.log").read_text(), "loopback: no warning"
        finally:
            s.kill9()

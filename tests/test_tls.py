"""Transport security: every provider call verifies TLS; a private CA is trusted only when given."""

import datetime
import ipaddress
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import serve


def _name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A private CA and a server certificate for 127.0.0.1 that it signed, made now."""
    root = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("cauterize test CA")).issuer_name(_name("cauterize test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (root / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return root


def _verify(env):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", "verify", "--provider", "openai",
         "--key-env", "LEAKED", "--json"],
        capture_output=True, text=True, env={**{k: v for k, v in os.environ.items()
                                                 if k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CAUTERIZE_CA_BUNDLE")},
                                              **env}, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_a_self_signed_server_is_refused_without_its_ca_and_trusted_with_it(pki):
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    _, key = emulator.add_user_key(emulator.add_project("p"))
    with serve(emulator, tls=(str(pki / "server.pem"), str(pki / "server.key"))) as app:
        assert app.url.startswith("https://")
        env = {"OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin, "LEAKED": key}
        refused = _verify(env)
        assert refused.returncode == 3, refused.stderr
        assert "TLS certificate was not trusted" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert not emulator.requests, "nothing reached the server over an untrusted connection"
        for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            trusted = _verify({**env, variable: str(pki / "ca.pem")})
            assert trusted.returncode == 0, trusted.stderr
            assert '"liveness": "live"' in trusted.stdout

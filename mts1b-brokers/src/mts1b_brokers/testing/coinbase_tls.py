"""Test keys and certificates for :mod:`~mts1b_brokers.testing.coinbase_server`.

- :func:`tls_files`: a throw-away certificate authority and a server certificate for
  ``127.0.0.1`` / ``localhost``, written to a temporary folder once per process, so the local
  server speaks HTTPS and WSS like Coinbase and the client verifies it (``ca_file``) instead of
  switching verification off.
- :func:`new_api_key`: a CDP-style API key (``organizations/<org>/apiKeys/<id>`` and a private
  key) of either kind Coinbase issues: Ed25519 (its secret as base64 of seed and public key, as
  CDP hands it out) or ES256 (EC P-256, as a PEM). Never a real key: each is generated here.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

__all__ = ["ApiKey", "TlsFiles", "new_api_key", "tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ApiKey:
    """A generated API key: ``name`` (the JWT's ``kid`` and ``sub``), ``secret`` (what the
    client is configured with) and ``public_pem`` (what the server verifies with)."""

    name: str
    secret: str
    public_pem: bytes
    algorithm: str

    def __repr__(self) -> str:  # the secret never reaches a log or an assertion message
        return f"ApiKey(name={self.name!r}, algorithm={self.algorithm!r})"


_TLS: TlsFiles | None = None


def tls_files() -> TlsFiles:
    """The process's test CA and server certificate (made on first use, about 10 ms)."""
    global _TLS
    if _TLS is not None and _TLS.ca_file.exists():
        return _TLS
    folder = Path(tempfile.mkdtemp(prefix="mts1b-coinbase-tls-"))
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mts1b test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=True,
              crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    _TLS = files
    return files


def new_api_key(algorithm: str = "EdDSA") -> ApiKey:
    """A fresh API key: ``algorithm`` ``"EdDSA"`` (Ed25519) or ``"ES256"`` (EC P-256)."""
    name = f"organizations/{uuid.uuid4()}/apiKeys/{uuid.uuid4()}"
    public: bytes
    if algorithm == "EdDSA":
        ed = ed25519.Ed25519PrivateKey.generate()
        seed = ed.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        pub = ed.public_key()
        raw_pub = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        secret = base64.b64encode(seed + raw_pub).decode()
        public = pub.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    elif algorithm == "ES256":
        eck = ec.generate_private_key(ec.SECP256R1())
        secret = eck.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()).decode()
        public = eck.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        raise ValueError(f"algorithm must be 'EdDSA' or 'ES256', got {algorithm!r}")
    return ApiKey(name=name, secret=secret, public_pem=public, algorithm=algorithm)

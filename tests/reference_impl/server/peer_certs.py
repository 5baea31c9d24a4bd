"""Certificates for peer-TLS tests: a CA and node certificates naming the node id.

Made with ``cryptography`` (installed with paramiko, a runtime dependency); P-256 keys, since
RSA key generation would cost a good part of the test budget. A node certificate carries no
extended key usage, so it serves as both server and client certificate, as mutual TLS needs.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reference_impl.server.config import PeerTlsConfig

VALIDITY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A certificate authority in ``directory`` (``<name>.crt``) that issues node certificates."""

    name: str
    directory: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str = "ca") -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(f"lockbench test {name}"))
            .issuer_name(_name(f"lockbench test {name}"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        ca = cls(name, directory, key, certificate)
        ca.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return ca

    @property
    def cert_path(self) -> Path:
        return self.directory / f"{self.name}.crt"

    def issue(self, node_id: str, *, dns_name: str | None = None) -> PeerTlsConfig:
        """A certificate for ``node_id`` naming ``dns_name`` (default: the node id), with its key
        and this CA, as a node's ``peer_tls`` section."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(node_id))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(dns_name or node_id)]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        stem = self.directory / f"{self.name}-{node_id}"
        cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return PeerTlsConfig(cert=cert_path, key=key_path, ca=self.cert_path)

"""A throwaway certificate authority for mutual-TLS tests: a server certificate for 127.0.0.1
and client certificates with a chosen subject, written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    """A PEM certificate and its unencrypted PEM key."""

    certificate: bytes
    key: bytes


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


class TestAuthority:
    """A CA that issues certificates for one test."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name("idservice test CA")
        own = self._builder(self._name, self._key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
        self.pem = own.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(self, common_name: str, organization: str | None = None, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(_name(common_name, organization), key.public_key())
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        certificate = builder.sign(self._key, hashes.SHA256())
        return Issued(
            certificate=certificate.public_bytes(serialization.Encoding.PEM),
            key=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    def write_server_files(self, directory: Path) -> dict[str, Path]:
        """The server's certificate, key and this CA as the client CA: Settings' TLS fields."""
        server = self.issue("127.0.0.1", server=True)
        paths = {
            "tls_cert_file": directory / "server.pem",
            "tls_key_file": directory / "server.key",
            "tls_client_ca_file": directory / "ca.pem",
        }
        paths["tls_cert_file"].write_bytes(server.certificate)
        paths["tls_key_file"].write_bytes(server.key)
        paths["tls_client_ca_file"].write_bytes(self.pem)
        return paths

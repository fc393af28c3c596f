"""The TLS material of a secure local Kafka: a local CA and the brokers' certificate.

Made at first use by ``edgebus kafka up --secure`` (with the ``cryptography``
package), in ``<state dir>/tls`` (0700, every file 0600):

    ca.pem                 the local CA's certificate: what clients trust
                           (``kafka.security.ca_file``) and what the brokers trust
                           as the issuer of the certificate presented on the
                           controller listener
    broker.p12             the brokers' private key and certificate chain (PKCS#12),
                           for 127.0.0.1 and localhost (SAN IP and DNS), usable as a
                           server and as a client certificate
    broker.p12.password    the keystore's random password (the brokers'
                           ``ssl.keystore.password``)

The CA's private key is never written anywhere: once the brokers' certificate is
signed it is dropped, so nothing on this machine can issue another certificate this
CA vouches for (the controller listener admits a client by such a certificate).
When the material is incomplete or the certificate expires within
:data:`RENEW_BEFORE`, all of it is made anew; clients read ``ca.pem`` again on their
next connection.

Why PKCS#12 and not a PEM keystore: Kafka reads a PEM key file only encrypted
(``ssl.key.password`` is required with ``ssl.keystore.location``), and Java 17 cannot
decrypt the PBES2 scheme that current tools (``cryptography``, OpenSSL 3) encrypt
PKCS#8 keys with ("PBES2 SecretKeyFactory not available"); it reads a PBES2 (AES)
PKCS#12 file. The trust store stays PEM (``ssl.truststore.type=PEM``), the same
``ca.pem`` clients use.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgebus.localkafka.credentials import new_password, private_dir, write_private

__all__ = [
    "BROKER_COMMON_NAME",
    "BROKER_PRINCIPAL",
    "RENEW_BEFORE",
    "TLS_DIR",
    "TlsFiles",
    "ensure_tls",
]

#: the directory of the TLS material, in the state directory
TLS_DIR = "tls"
#: the subject of the brokers' certificate
BROKER_COMMON_NAME = "edgebus-local-kafka-broker"
#: the principal a broker has on the controller listener (mutual TLS): a super user
BROKER_PRINCIPAL = f"User:CN={BROKER_COMMON_NAME}"
#: how long the certificates are valid
VALIDITY = datetime.timedelta(days=825)
#: material whose certificate expires sooner than this is made anew
RENEW_BEFORE = datetime.timedelta(days=30)

_CA_FILE = "ca.pem"
_KEYSTORE = "broker.p12"
_KEYSTORE_PASSWORD = "broker.p12.password"
_ALIAS = b"kafka"


@dataclass(frozen=True)
class TlsFiles:
    """Where the TLS material is, and the keystore's password (for the brokers' config)."""

    ca_file: Path
    keystore: Path
    keystore_password: str


def ensure_tls(directory: Path) -> TlsFiles:
    """The TLS material in ``directory/tls``, made now unless complete and valid."""
    tls = private_dir(directory / TLS_DIR)
    files = TlsFiles(tls / _CA_FILE, tls / _KEYSTORE, "")
    password_path = tls / _KEYSTORE_PASSWORD
    if _usable(files, password_path):
        for path in (files.ca_file, files.keystore, password_path):
            path.chmod(0o600)
        return TlsFiles(files.ca_file, files.keystore, password_path.read_text().strip())
    password = new_password()
    ca_pem, keystore = _make_material(password.encode())
    # the keystore and its password first: ca.pem, written last, marks it complete
    write_private(files.keystore, keystore)
    write_private(password_path, password)
    write_private(files.ca_file, ca_pem)
    return TlsFiles(files.ca_file, files.keystore, password)


def _usable(files: TlsFiles, password_path: Path) -> bool:
    """Complete material whose certificates stay valid beyond :data:`RENEW_BEFORE`."""
    try:
        password = password_path.read_text().strip().encode()
        ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
        _key, cert, _chain = pkcs12.load_key_and_certificates(files.keystore.read_bytes(), password)
    except (OSError, ValueError):
        return False
    if cert is None or not password:
        return False
    horizon = datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
    return (
        cert.issuer == ca.subject
        and cert.not_valid_after_utc > horizon
        and ca.not_valid_after_utc > horizon
    )


def _make_material(password: bytes) -> tuple[bytes, bytes]:
    """A new CA and a brokers' certificate it signs: (ca.pem, broker.p12)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + VALIDITY
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgebus"),
        x509.NameAttribute(NameOID.COMMON_NAME, "edgebus local Kafka CA"),
    ])  # fmt: skip
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName([
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
    ])  # fmt: skip
    usages = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_COMMON_NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(usages, critical=False)
        .add_extension(names, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    keystore = pkcs12.serialize_key_and_certificates(
        _ALIAS, key, cert, [ca], serialization.BestAvailableEncryption(password)
    )
    return ca.public_bytes(serialization.Encoding.PEM), keystore


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """A CA signs certificates; a broker's key signs its TLS handshakes."""
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip

"""The bundle's private CA and one server certificate per host, kept in the secrets directory.

Clients verify with `sslmode=verify-full` against ca.crt; the server certificate names the host and
its addresses in subjectAltName. Certificates are issued once and reused (idempotent deploys); a
host whose names changed, or whose certificate expires within 30 days, gets a new one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.secrets import secrets_dir, write_private

_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class ServerCert:
    cert_pem: str
    key_pem: str
    ca_pem: str


def ca_paths() -> tuple[Path, Path]:
    d = secrets_dir() / "ca"
    d.mkdir(mode=0o700, exist_ok=True)
    return d / "ca.crt", d / "ca.key"


def ensure_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt_path, key_path = ca_paths()
    if crt_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(crt_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "background-agents-db CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def server_cert(host: str, names: list[str], addresses: list[str],
                client: bool = False) -> ServerCert:
    """The host's certificate for these DNS names and IP addresses, issuing one if needed;
    `client` also lets it authenticate as a client (etcd's peers are both)."""
    ca, ca_key = ensure_ca()
    d = secrets_dir() / "certs"
    d.mkdir(mode=0o700, exist_ok=True)
    crt_path, key_path = d / f"{host}.crt", d / f"{host}.key"
    # Addresses also as DNS names: libpq before 14 (Debian 11's clients) matches a host given as
    # an IP against dNSName entries only; newer clients use the iPAddress entries.
    wanted = sorted(set(names) | set(addresses)) + sorted(set(addresses))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    if crt_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(crt_path.read_bytes())
        if _san(cert) == wanted and cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > \
                _RENEW_BEFORE and cert.issuer == ca.subject:
            return ServerCert(crt_path.read_text(), key_path.read_text(), ca_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(set(names) | set(addresses))]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(set(addresses))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, *(
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    write_private(key_path, key_pem)
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ServerCert(crt_path.read_text(), key_pem, ca_pem)


def _san(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return sorted(ext.get_values_for_type(x509.DNSName)) + sorted(
        str(a) for a in ext.get_values_for_type(x509.IPAddress))

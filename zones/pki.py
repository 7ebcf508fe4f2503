"""A small private PKI: a CA and the certificates it signs (EC P-256).

Used by the lab (`python -m zones.lab up --tls`) to give a zone on 127.0.0.1 real TLS,
and by the tests. Production zones bring their own certificates ([tls] in oned.toml).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOCAL_NAMES = ("localhost", "127.0.0.1")


def make_cert(
    name: str,
    issuer_key=None,
    issuer_name: x509.Name | None = None,
    ca: bool = False,
    days: int = 1,
    hosts: tuple[str, ...] = LOCAL_NAMES,
):
    """A certificate for CN=`name` signed by `issuer_key` (self-signed without one).

    Returns (certificate, certificate PEM, private key PEM, private key). A non-CA
    certificate names `hosts` (DNS names or IP addresses) as subject alternative names.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert, cert.public_bytes(serialization.Encoding.PEM), pem_key, key


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, private: bool = False) -> str:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)
    return str(path)


def issue(directory: str | os.PathLike, name: str, days: int = 30) -> tuple[str, str]:
    """One more certificate + key signed by the CA write_pki left in `directory`."""
    d = Path(directory)
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    _, pem, key_pem, _ = make_cert(name, ca_key, ca.subject, days=days)
    return _write(d / f"{name}.crt", pem), _write(d / f"{name}.key", key_pem, True)


def write_pki(directory: str | os.PathLike, names: list[str], days: int = 30) -> dict[str, str]:
    """A CA and one certificate + key per name in `directory`; returns their paths:
    "ca" and "<name>.crt" / "<name>.key" for each name."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_pem, ca_key_pem, ca_key = make_cert("one-lab-ca", ca=True, days=days)
    paths = {"ca": _write(d / "ca.crt", ca_pem), "ca.key": _write(d / "ca.key", ca_key_pem, True)}
    for name in names:
        _, pem, key_pem, _ = make_cert(name, ca_key, ca.subject, days=days)
        paths[f"{name}.crt"] = _write(d / f"{name}.crt", pem)
        paths[f"{name}.key"] = _write(d / f"{name}.key", key_pem, True)
    return paths

"""The ``x509`` driver: log in with the client certificate of the TLS connection.

The user record's password field holds the certificate's subject DN as an RFC 4514
string, the way `cryptography` prints it (``cert.subject.rfc4514_string()``, e.g.
``CN=alice,O=Example``). The login secret is empty; the certificate is the one the client
presented in the mutual-TLS handshake, which the gRPC server has already verified
against ``[tls] client_ca`` (chain and validity). This driver only matches its subject
against the stored DN with `zones.authdrivers.dn.normalize_dn`: attribute by attribute
(``CN``, ``cn``, ``commonName`` and ``2.5.4.3`` are one type), ignoring the case of the
values and runs of spaces (as caseIgnoreMatch does).

How the API gets the PEM: in grpc python, ``context.auth_context()`` is a dict of auth
property name -> list of bytes values; on a TLS connection where the client sent a
certificate it has the key ``"x509_pem_cert"`` whose single value is that certificate in
PEM (gRPC C-core also sets ``"x509_common_name"``, ``"x509_subject_alternative_name"``,
``"transport_security_type": [b"ssl"]``). `peer_cert_from_context` reads it.
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509

from zones.authdrivers import BAD_LOGIN, AuthFailed, Credentials, Identity, check_user
from zones.authdrivers.dn import normalize_dn

PEM_CERT_KEY = "x509_pem_cert"


def peer_cert_from_context(context: Any) -> bytes | None:
    """The client's certificate (PEM) of a gRPC call, or None (no TLS, no client cert)."""
    try:
        values = context.auth_context().get(PEM_CERT_KEY)
    except (AttributeError, TypeError):
        return None
    if not values:
        return None
    value = values[0]
    return value if isinstance(value, bytes) else str(value).encode()


def subject_of(pem: bytes) -> str:
    """The RFC 4514 subject DN of a PEM certificate (what to store for the user)."""
    return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()


class X509Driver:
    name = "x509"

    def authenticate(self, creds: Credentials, user: dict | None) -> Identity:
        if not creds.peer_cert_pem:
            raise AuthFailed(
                "x509 login needs a client certificate: connect with mutual TLS "
                "(a certificate signed by the zone's client CA)"
            )
        try:
            cert = x509.load_pem_x509_certificate(creds.peer_cert_pem)
        except ValueError:
            raise AuthFailed("the client certificate is not a valid PEM certificate") from None
        now = datetime.datetime.now(datetime.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise AuthFailed("the client certificate is not valid at this time")
        record = check_user(user, self.name)
        stored = record.get("password")
        try:
            expected = normalize_dn(stored)
        except (ValueError, TypeError):
            raise AuthFailed(
                "the stored certificate subject of this user is not valid (ask an administrator)"
            ) from None
        try:
            presented = normalize_dn(cert.subject.rfc4514_string())
        except ValueError:
            raise AuthFailed("the client certificate has an unusable subject") from None
        if presented != expected:
            raise AuthFailed(BAD_LOGIN)
        return Identity(username=record["name"], driver=self.name, stored_secret=stored)

"""Authentication drivers: who a login is, behind one small interface.

A driver checks a login's `Credentials` against the stored user record and answers with
an `Identity`, or raises `AuthFailed` whose message is safe to show the client (it never
contains the secret). The drivers, after OpenNebula's:

- ``core`` (always on): the record's password field holds an scrypt hash.
- ``ssh``: it holds an OpenSSH public key; the login secret is ``"<unix_ts>:<base64
  signature>"`` over ``one-login:<username>:<unix_ts>`` (see `zones.authdrivers.ssh`).
- ``x509``: it holds the subject DN of the user's client certificate; the certificate
  comes from the mutual-TLS handshake (see `zones.authdrivers.x509`).
- ``ldap``: it holds the user's directory DN; the password is checked by binding to the
  directory, and the directory groups map to zone groups (see `zones.authdrivers.ldap`).

The user record is a dict (``name``, ``password``, ``auth_driver``, ...), or None when the
user does not exist in the zone yet: only ``ldap`` may then succeed, and the caller
creates the user from the returned `Identity`.

A driver refuses a user whose record names another driver: an LDAP account called
``oneadmin`` cannot log in as the zone's own ``oneadmin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from zones.config import AuthConfig

DRIVER_NAMES = ("core", "ssh", "x509", "ldap")
# The one message for a wrong user name or secret, whichever was wrong: a client cannot
# tell an unknown user from a bad password.
BAD_LOGIN = "invalid username or password"


@dataclass(frozen=True)
class Credentials:
    """What a client presented at login."""

    username: str
    secret: str  # password, or ssh "ts:signature", or "" for x509
    peer_cert_pem: bytes | None = None  # the client's TLS certificate (mutual TLS), if any

    def __repr__(self) -> str:  # never print the secret (tracebacks, logs)
        cert = "yes" if self.peer_cert_pem else "no"
        return f"Credentials(username={self.username!r}, secret=<hidden>, peer_cert={cert})"


@dataclass(frozen=True)
class Identity:
    """Who the login is, as the driver established it."""

    username: str
    driver: str  # "core" | "ssh" | "x509" | "ldap"
    # What the user record's password field holds for this driver (ldap: the user's DN;
    # x509: the subject DN; core: the scrypt hash; ssh: the public key line).
    stored_secret: str | None
    groups: tuple[int, ...] = ()  # zone group ids from the driver's mapping, primary first


class AuthFailed(Exception):
    """The login is refused; the message is safe to show the client (never the secret)."""


@runtime_checkable
class AuthDriver(Protocol):
    name: str

    def authenticate(self, creds: Credentials, user: dict | None) -> Identity: ...


def check_user(user: dict | None, driver: str) -> dict:
    """The record if it exists and uses `driver`; AuthFailed otherwise (for drivers)."""
    if user is None or user.get("auth_driver", "core") != driver:
        raise AuthFailed(BAD_LOGIN)
    return user


def drivers_from_config(cfg: AuthConfig | None) -> dict[str, AuthDriver]:
    """The enabled drivers by name; ``core`` is always present."""
    from zones.authdrivers.core import CoreDriver

    drivers: dict[str, AuthDriver] = {"core": CoreDriver()}
    if cfg is None:
        return drivers
    for name in cfg.drivers:
        if name in drivers:
            continue
        if name == "ssh":
            from zones.authdrivers.ssh import SSHDriver

            drivers[name] = SSHDriver()
        elif name == "x509":
            from zones.authdrivers.x509 import X509Driver

            drivers[name] = X509Driver()
        elif name == "ldap":
            if cfg.ldap is None:
                raise ValueError("[auth] drivers lists 'ldap' but [auth.ldap] is missing")
            from zones.authdrivers.ldap import LDAPDriver

            drivers[name] = LDAPDriver(cfg.ldap, bind_password=cfg.ldap.read_bind_password())
        else:
            raise ValueError(f"unknown authentication driver {name!r}")
    return drivers


def authenticate(drivers: dict[str, AuthDriver], creds: Credentials, user: dict | None) -> Identity:
    """Pick the driver for `user` (its ``auth_driver``; ``ldap`` for an unknown user when
    it is enabled) and authenticate. AuthFailed if that driver is not enabled."""
    if user is None:
        driver = drivers.get("ldap")
    else:
        driver = drivers.get(user.get("auth_driver", "core"))
    if driver is None:
        raise AuthFailed(BAD_LOGIN)
    return driver.authenticate(creds, user)

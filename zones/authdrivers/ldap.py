"""The ``ldap`` driver: check the password by binding to a directory, map its groups.

A login, with ``[auth.ldap]`` (`zones.config.LDAPConfig`):

1. refuse an empty password outright: an LDAP simple bind with a DN and an empty
   password is an *unauthenticated* bind (RFC 4513 5.1.2), which many servers answer
   with success as an anonymous session (slapd does with ``allow bind_anon_dn``);
2. bind as the service account (``bind_dn``), or anonymously without one, and search
   ``base_dn`` (subtree) for ``(<user_attribute>=<username>)``, the user name escaped
   as RFC 4515 says (``*``, ``(``, ``)``, ``\\`` and NUL), so ``*)(uid=*`` is a name, not a
   filter. Exactly one entry must match, and its attribute must hold the name exactly
   (case included, so ``Alice`` and ``alice`` never become two zone users of one entry);
3. bind as that entry's DN with the password;
4. search ``group_base_dn`` for the groups whose ``member_attribute`` holds that DN and
   map them through ``[auth.ldap.groups]``: the first listed group the user is in is the
   primary group.

The calls block (up to a few times ``timeout``): run them on a worker thread, not on an
event loop. The user record's password field holds the DN. A user unknown to the zone may log in:
the caller creates it from the returned Identity. Every connection uses ``timeout`` for
connecting and for each answer, so a dead or silent server fails the login quickly
with "LDAP server unreachable".
"""

from __future__ import annotations

import math
import ssl
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException
from ldap3.utils.conv import escape_filter_chars

from zones.authdrivers import BAD_LOGIN, AuthFailed, Credentials, Identity, check_user
from zones.authdrivers.dn import normalize_dn
from zones.config import LDAP_SCHEMES, LDAPConfig

MAX_USERNAME_CHARS = 256


def _reason(error: Exception) -> str:
    """A short, secret-free reason for a communication failure (ldap3 nests the socket
    error: args[1] is a list of (exception, address), whose args may be a tuple)."""
    history = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], list) else []
    reason: object = error
    if history and isinstance(history[-1], tuple | list) and history[-1]:
        reason = history[-1][0]
    for _ in range(5):  # unwrap ("message",) and exceptions down to a string
        if isinstance(reason, BaseException | tuple) and not isinstance(reason, str):
            args = reason.args if isinstance(reason, BaseException) else reason
            if not args:
                break
            reason = args[0]
    text = str(reason) if not isinstance(reason, BaseException) else type(reason).__name__
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "no answer (timed out)"
    return text


class LDAPDriver:
    name = "ldap"

    def __init__(self, cfg: LDAPConfig, bind_password: str | None = None) -> None:
        if (cfg.bind_dn is None) != (bind_password is None):
            raise ValueError("bind_dn and bind_password go together")
        self.cfg = cfg
        self._bind_password = bind_password
        parts = urlsplit(cfg.uri)
        self._host = parts.hostname or ""
        self._use_ssl = parts.scheme == "ldaps"
        self._port = parts.port or LDAP_SCHEMES[parts.scheme]
        self._tls = None
        if self._use_ssl:
            self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=cfg.ca_file)
        # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds (a float makes
        # struct.pack fail) and 0 would make the socket non-blocking: round up, >= 1.
        self._receive_timeout = max(1, math.ceil(cfg.timeout))
        # (normalized group DN, zone group id) in the configured order.
        self._groups = [(normalize_dn(dn), gid) for dn, gid in cfg.groups]

    def __repr__(self) -> str:
        return f"LDAPDriver(uri={self.cfg.uri!r}, base_dn={self.cfg.base_dn!r})"

    def _connection(self, user: str | None, password: str | None) -> ldap3.Connection:
        server = ldap3.Server(
            self._host,
            port=self._port,
            use_ssl=self._use_ssl,
            tls=self._tls,
            get_info=ldap3.NONE,
            connect_timeout=self.cfg.timeout,
        )
        return ldap3.Connection(
            server,
            user=user,
            password=password,
            auto_bind=ldap3.AUTO_BIND_NONE,
            receive_timeout=self._receive_timeout,
            auto_referrals=False,
            raise_exceptions=False,
            read_only=True,
        )

    def authenticate(self, creds: Credentials, user: dict | None) -> Identity:
        if user is not None:
            check_user(user, self.name)
        username, password = creds.username, creds.secret
        if not username or not password or len(username) > MAX_USERNAME_CHARS:
            raise AuthFailed(BAD_LOGIN)
        try:
            return self._authenticate(username, password)
        except LDAPCommunicationError as e:
            raise AuthFailed(f"LDAP server unreachable: {self.cfg.uri}: {_reason(e)}") from None
        except LDAPException as e:
            # Never the exception's text: it could echo what was sent.
            raise AuthFailed(f"LDAP error ({type(e).__name__}) talking to {self.cfg.uri}") from None

    def _authenticate(self, username: str, password: str) -> Identity:
        cfg = self.cfg
        service = self._connection(cfg.bind_dn, self._bind_password)
        bound: ldap3.Connection | None = None
        try:
            if not service.bind():
                raise AuthFailed(
                    "the LDAP directory refused the zone's service account "
                    "(check [auth.ldap] bind_dn and bind_password_file)"
                )
            user_dn = self._find_user(service, username)
            bound = self._connection(user_dn, password)
            if not bound.bind():
                raise AuthFailed(BAD_LOGIN)
            groups = self._groups_of(service if cfg.bind_dn else bound, user_dn)
        finally:
            for conn in (bound, service):
                if conn is not None and not conn.closed:
                    conn.unbind()  # also closes a socket that never bound
        return Identity(username=username, driver=self.name, stored_secret=user_dn, groups=groups)

    def _find_user(self, conn: ldap3.Connection, username: str) -> str:
        attr = self.cfg.user_attribute
        conn.search(
            self.cfg.base_dn,
            f"({attr}={escape_filter_chars(username)})",
            search_scope=ldap3.SUBTREE,
            attributes=[attr],
            size_limit=2,
            time_limit=self._receive_timeout,
        )
        entries = [r for r in conn.response or () if r.get("type") == "searchResEntry"]
        if len(entries) > 1:
            raise AuthFailed(
                f"the user name matches several LDAP entries ({attr} is not unique under "
                f"the base DN; ask an administrator)"
            )
        if not entries:
            raise AuthFailed(BAD_LOGIN)
        values = entries[0].get("attributes", {}).get(attr, [])
        values = values if isinstance(values, list) else [values]
        if username not in [str(v) for v in values]:  # matched only case-insensitively
            raise AuthFailed(BAD_LOGIN)
        return entries[0]["dn"]

    def _groups_of(self, conn: ldap3.Connection, user_dn: str) -> tuple[int, ...]:
        if not self._groups:
            return ()
        base = self.cfg.group_base_dn or self.cfg.base_dn
        conn.search(
            base,
            f"({self.cfg.member_attribute}={escape_filter_chars(user_dn)})",
            search_scope=ldap3.SUBTREE,
            attributes=ldap3.NO_ATTRIBUTES,
            time_limit=self._receive_timeout,
        )
        found = set()
        for r in conn.response or ():
            if r.get("type") == "searchResEntry":
                try:
                    found.add(normalize_dn(r["dn"]))
                except ValueError:
                    continue
        ids = [gid for dn, gid in self._groups if dn in found]
        return tuple(dict.fromkeys(ids))

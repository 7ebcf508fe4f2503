"""Who is calling, and may they: tokens, peer signatures, and the table of requirements.

Clients send `authorization: Bearer <token>` (a token from AuthService.Login). Tokens are
validated against the replicated store: the sha256 of the token must be in the "tokens"
db, not expired against this front-end's wall clock, and its user must be enabled.

Front-ends calling each other (ZoneService.LocalStatus) sign with the cluster secret:
`x-one-peer: <server_id>:<unix_ts>:<hex hmac-sha256(secret, "<server_id>:<unix_ts>")>`,
accepted within PEER_SKEW seconds of this front-end's clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from enum import Enum

from raftcore import schema
from raftcore.auth import token_hash
from raftcore.replica import CONSISTENCY_LOCAL
from zones.api.errors import ApiError, denied, unauthenticated

AUTH_KEY = "authorization"
PEER_KEY = "x-one-peer"
FORWARDED_KEY = "x-one-forwarded"
# A follower forwarding a call relays the client's TLS certificate (base64 PEM), signed.
RELAYED_CERT_KEY = "x-one-client-cert"
RELAYED_SIG_KEY = "x-one-client-cert-sig"
RELAYED_KEYS = (RELAYED_CERT_KEY, RELAYED_SIG_KEY)
PEER_SKEW = 60.0
# Token checks remembered per API process, dropped wholesale when full.
TOKEN_CACHE_MAX = 10_000
ADMIN_UID = 0


class Need(Enum):
    NOTHING = "nothing"
    TOKEN = "token"  # any valid token
    ADMIN = "admin"  # a valid token of oneadmin (uid 0)
    TOKEN_OR_PEER = "token_or_peer"  # a valid token, or a front-end's peer signature


# What each RPC needs before its handler runs. Every RPC served must be listed here:
# an RPC missing from the table is refused (see Authenticator.authenticate). Rights over
# the objects a call touches are then checked by raftcore.authz: in the state machine
# for writes, in the service for reads (docs/tenancy.md).
REQUIREMENTS: dict[str, Need] = {
    "/one.v1.AuthService/Login": Need.NOTHING,
    "/one.v1.AuthService/Logout": Need.TOKEN,
    "/one.v1.KVService/Put": Need.TOKEN,
    "/one.v1.KVService/Get": Need.TOKEN,
    "/one.v1.KVService/Delete": Need.TOKEN,
    "/one.v1.ZoneService/Info": Need.TOKEN,
    "/one.v1.ZoneService/LocalStatus": Need.TOKEN_OR_PEER,
    "/one.v1.ZoneService/ServerAdd": Need.ADMIN,
    "/one.v1.ZoneService/ServerDel": Need.ADMIN,
    "/one.v1.ZoneService/ServerReset": Need.ADMIN,
    **{
        f"/one.v1.{service}/{method}": Need.TOKEN
        for service, methods in (
            (
                "UserService",
                "Allocate Delete Passwd Chauth Chgrp AddGroup DelGroup Enable Update Info List",
            ),
            ("GroupService", "Allocate Delete AddAdmin DelAdmin Update Info List"),
            ("AclService", "Add Delete List"),
            ("QuotaService", "Set SetDefault Get GetDefault"),
            ("PoolService", "Action Allocate Delete Info List Chown Chmod Rename Update"),
            ("AccountingService", "Accounting Showback"),
        )
        for method in methods.split()
    },
}


@dataclass(frozen=True)
class Caller:
    """The authenticated party of a call."""

    uid: int  # -1 for a peer front-end or an anonymous call (Login)
    token_hash: str | None = None
    peer_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.uid == ADMIN_UID


ANONYMOUS = Caller(uid=-1)


class UnknownToken(ApiError):
    """The token is not in this front-end's store (yet): a follower may ask the leader."""

    def __init__(self) -> None:
        super().__init__(
            unauthenticated("invalid token").code,
            "invalid token: unknown or revoked (log in again)",
        )


def sign_peer(secret: str, server_id: int, now: float | None = None) -> str:
    """The x-one-peer value a front-end sends to another one."""
    ts = int(time.time() if now is None else now)
    msg = f"{server_id}:{ts}"
    mac = hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()
    return f"{msg}:{mac}"


def verify_peer(secret: str, value: str, now: float | None = None) -> int:
    """The server id of a valid x-one-peer value; raises ApiError otherwise."""
    parts = value.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise unauthenticated("malformed x-one-peer metadata")
    server_id, ts, mac = int(parts[0]), int(parts[1]), parts[2]
    expected = hmac.new(secret.encode(), f"{parts[0]}:{parts[1]}".encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), mac):
        raise unauthenticated("bad peer signature (is the cluster secret the same everywhere?)")
    skew = abs((time.time() if now is None else now) - ts)
    if skew > PEER_SKEW:
        raise unauthenticated(f"peer signature is {skew:.0f} s off this front-end's clock")
    return server_id


def _cert_mac(secret: str, server_id: int, ts: int, pem: bytes) -> str:
    msg = f"{server_id}:{ts}:{hashlib.sha256(pem).hexdigest()}"
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def relay_cert(secret: str, server_id: int, pem: bytes, now: float | None = None) -> list:
    """Metadata with which a forwarding front-end vouches for its client's certificate."""
    ts = int(time.time() if now is None else now)
    return [
        (RELAYED_CERT_KEY, base64.b64encode(pem).decode()),
        (RELAYED_SIG_KEY, f"{server_id}:{ts}:{_cert_mac(secret, server_id, ts, pem)}"),
    ]


def verify_relayed_cert(secret: str, metadata: dict[str, str], now: float | None = None):
    """The client certificate a front-end relayed, if present and signed with the
    cluster secret within PEER_SKEW; None otherwise (the call then has no certificate)."""
    cert, sig = metadata.get(RELAYED_CERT_KEY), metadata.get(RELAYED_SIG_KEY)
    if not cert or not sig:
        return None
    parts = sig.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    try:
        pem = base64.b64decode(cert, validate=True)
    except (ValueError, binascii.Error):
        return None
    server_id, ts = int(parts[0]), int(parts[1])
    if not hmac.compare_digest(_cert_mac(secret, server_id, ts, pem), parts[2]):
        return None
    if abs((time.time() if now is None else now) - ts) > PEER_SKEW:
        return None
    return pem


def bearer(metadata: dict[str, str]) -> str | None:
    """The token of `authorization: Bearer <token>`; None if absent, ApiError if malformed."""
    value = metadata.get(AUTH_KEY)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("malformed authorization metadata (expected 'Bearer <token>')")
    return token


class Authenticator:
    """Checks credentials against the replicated user and token tables.

    A token check reads two records; on the write path that is a good part of a call's
    cost. So checks that passed are remembered with the replica's `auth_epoch`, which the
    store bumps on every committed change to tokens or users (raftcore.store.AUTH_DBS): a
    remembered check is used only while nothing it read can have changed, and only until
    the token expires. Replicas without an `auth_epoch` get no cache.
    """

    def __init__(self, replica, secret: str) -> None:
        self._replica = replica
        self._secret = secret
        # token -> (caller, expires, epoch); keyed by the token itself, as held in memory
        # for the call anyway: hashing it (OpenSSL) costs more than the whole lookup.
        self._checked: dict[str, tuple[Caller, int, int]] = {}

    def authenticate(self, method: str, metadata: dict[str, str]) -> Caller:
        need = REQUIREMENTS.get(method)
        if need is None:
            raise denied(f"{method} is not in the authorization table")
        if need is Need.NOTHING:
            return ANONYMOUS
        if need is Need.TOKEN_OR_PEER and PEER_KEY in metadata and AUTH_KEY not in metadata:
            return Caller(uid=-1, peer_id=verify_peer(self._secret, metadata[PEER_KEY]))
        token = bearer(metadata)
        if token is None:
            raise unauthenticated(
                "authentication required: send metadata 'authorization: Bearer <token>' "
                "(get a token with AuthService.Login)"
            )
        caller = self.check_token(token)
        if need is Need.ADMIN and not caller.is_admin:
            raise denied(f"{method} requires oneadmin (uid 0); you are uid {caller.uid}")
        return caller

    def check_token(self, token: str, now_ms: int | None = None) -> Caller:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        # Read the epoch before the records: a change committed in between then bumps it
        # past what the entry is stored with.
        epoch = getattr(self._replica, "auth_epoch", None)
        if epoch is not None:
            hit = self._checked.get(token)
            if hit is not None and hit[2] == epoch and hit[1] > now_ms:
                return hit[0]
        thash = token_hash(token)
        with self._replica.read(CONSISTENCY_LOCAL) as view:
            record = view.get(schema.TOKENS, schema.str_key(thash))
            if record is None:
                raise UnknownToken()
            expires = record.get("expires", 0)
            if expires <= now_ms:
                raise unauthenticated("token expired (log in again)")
            uid = record.get("uid")
            user = view.get(schema.USERS, schema.id_key(uid)) if isinstance(uid, int) else None
            if user is None or not user.get("enabled", False):
                raise unauthenticated(f"user {uid} is disabled or does not exist")
        caller = Caller(uid=uid, token_hash=thash)
        if epoch is not None:
            if len(self._checked) >= TOKEN_CACHE_MAX:
                self._checked.clear()
            self._checked[token] = (caller, expires, epoch)
        return caller

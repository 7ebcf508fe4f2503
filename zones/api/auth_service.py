"""AuthService: Login (password -> token through the log) and Logout (revoke)."""

from __future__ import annotations

import math
import time

import grpc

from raftcore import schema
from raftcore.auth import new_token, token_hash
from raftcore.commands import MAX_RID_CHARS
from raftcore.ops.tenancy import ADMIN_UID
from raftcore.replica import CONSISTENCY_LOCAL
from zones.api.auth import FORWARDED_KEY, Caller, verify_relayed_cert
from zones.api.core import Api, Rpc, rid_accessors
from zones.api.errors import ApiError, invalid, unauthenticated
from zones.api.gen import auth_pb2, auth_pb2_grpc
from zones.api.ratelimit import LoginLimiter
from zones.authdrivers import AuthFailed, Credentials, Identity, authenticate, drivers_from_config
from zones.authdrivers.x509 import peer_cert_from_context

DEFAULT_TTL = 10 * 3600  # seconds, as OpenNebula's default login token
MAX_TTL = 366 * 24 * 3600
MAX_NAME = 128
MAX_PASSWORD = 1024
_SERVICE = "/one.v1.AuthService/"
_BAD_LOGIN = "invalid username or password"


def _check_login(req: auth_pb2.LoginRequest) -> None:
    if not req.username:
        raise invalid("username must not be empty")
    if len(req.username) > MAX_NAME:
        raise invalid(f"username must be at most {MAX_NAME} characters")
    if len(req.password) > MAX_PASSWORD:
        raise invalid(f"password must be at most {MAX_PASSWORD} characters")
    if req.ttl_seconds > MAX_TTL:
        raise invalid(f"ttl_seconds must be at most {MAX_TTL} (a year)")


LOGIN = Rpc(
    _SERVICE + "Login",
    auth_pb2.LoginResponse,
    leader_only=True,
    rid=rid_accessors(),
    validate=_check_login,
)
LOGOUT = Rpc(_SERVICE + "Logout", auth_pb2.LogoutResponse, leader_only=True, rid=rid_accessors())


def _throttled(name: str, wait: float) -> ApiError:
    return ApiError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"too many failed logins for {name!r}: try again in {math.ceil(wait)} s",
    )


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, api: Api, limiter: LoginLimiter | None = None) -> None:
        self.api = api
        self.limiter = limiter or LoginLimiter()
        self.drivers = drivers_from_config(getattr(api.config, "auth", None))

    def Login(self, request, context):
        return self.api.handle(LOGIN, request, context, self._login)

    def Logout(self, request, context):
        return self.api.handle(LOGOUT, request, context, self._logout)

    def _login(self, request, context, caller: Caller):
        name = request.username
        wait = self.limiter.wait_for(name)
        if wait > 0:
            raise _throttled(name, wait)
        with self.api.replica.read(CONSISTENCY_LOCAL) as view:
            uid = view.get(schema.USERS_BY_NAME, schema.str_key(name))
            user = view.get(schema.USERS, schema.id_key(uid)) if isinstance(uid, int) else None
        creds = Credentials(name, request.password, self._client_cert(context))
        try:
            identity = authenticate(self.drivers, creds, user)
        except AuthFailed as e:
            self.limiter.failed(name)
            raise unauthenticated(str(e)) from None
        self.limiter.succeeded(name)
        if user is None:
            uid = self._create_user(identity, caller, context)
        elif not user.get("enabled", False):
            raise unauthenticated(f"user {request.username!r} is disabled")
        token = new_token()
        thash = token_hash(token)
        ttl = request.ttl_seconds or DEFAULT_TTL
        expires = int(time.time() * 1000) + ttl * 1000
        # Each Login creates a new token, so the request id is per token: a retried
        # Login with the client's id must not be handed an earlier token's result.
        rid = f"login-{thash[:48]}"
        args = {"token_hash": thash, "uid": uid, "expires": expires}
        self.api.propose("token.create", args, rid, caller, context, uid=uid)
        return auth_pb2.LoginResponse(token=token, expires_unix_ms=expires, user_id=uid)

    def _client_cert(self, context) -> bytes | None:
        """The client's TLS certificate: from this call's handshake, or, for a call a
        follower forwarded, the one that follower relayed and signed (the handshake here
        is the follower's own)."""
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get(FORWARDED_KEY) == "1":
            return verify_relayed_cert(self.api.secret, metadata)
        return peer_cert_from_context(context)

    def _create_user(self, identity: Identity, caller: Caller, context) -> int:
        """A user the directory knows and the zone not yet (ldap): create it, in the
        groups the driver mapped (OpenNebula does the same at first login)."""
        args = {"name": identity.username, "driver": identity.driver}
        args["password"] = identity.stored_secret or ""
        if identity.groups:
            args["gid"], args["groups"] = identity.groups[0], list(identity.groups[1:])
        # The driver vouched for the user: the front-end creates it as oneadmin.
        rid = f"autocreate-{identity.driver}-{identity.username}"[:MAX_RID_CHARS]
        value = self.api.propose("user.allocate", args, rid, caller, context, uid=ADMIN_UID)
        return value["id"]

    def _logout(self, request, context, caller: Caller):
        self.api.propose(
            "token.revoke", {"token_hash": caller.token_hash}, request.request_id, caller, context
        )
        return auth_pb2.LogoutResponse()

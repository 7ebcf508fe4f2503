"""AuthService: Login (password -> token through the log) and Logout (revoke)."""

from __future__ import annotations

import time

from raftcore import schema
from raftcore.auth import new_token, token_hash, verify_password
from raftcore.replica import CONSISTENCY_LOCAL
from zones.api.auth import Caller
from zones.api.core import Api, Rpc, rid_accessors
from zones.api.errors import invalid, unauthenticated
from zones.api.gen import auth_pb2, auth_pb2_grpc

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


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    def Login(self, request, context):
        return self.api.handle(LOGIN, request, context, self._login)

    def Logout(self, request, context):
        return self.api.handle(LOGOUT, request, context, self._logout)

    def _login(self, request, context, caller: Caller):
        with self.api.replica.read(CONSISTENCY_LOCAL) as view:
            uid = view.get(schema.USERS_BY_NAME, schema.str_key(request.username))
            user = view.get(schema.USERS, schema.id_key(uid)) if isinstance(uid, int) else None
        # Same message whether the user is unknown or the password wrong.
        if user is None or not verify_password(request.password, user.get("password", "")):
            raise unauthenticated(_BAD_LOGIN)
        if not user.get("enabled", False):
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

    def _logout(self, request, context, caller: Caller):
        self.api.propose(
            "token.revoke", {"token_hash": caller.token_hash}, request.request_id, caller, context
        )
        return auth_pb2.LogoutResponse()

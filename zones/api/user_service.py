"""UserService: users as OpenNebula has them (oneuser). Writes are authorized by the state
machine (raftcore.ops.users); reads here, with the same rules."""

from __future__ import annotations

from raftcore import schema
from raftcore.auth import hash_password
from raftcore.ops.tenancy import ADMIN_GID, ADMIN_UID, user_object
from raftcore.ops.users import AUTH_DRIVERS
from zones.api.auth import Caller
from zones.api.core import Api, Rpc, rid_accessors
from zones.api.errors import invalid, not_found
from zones.api.gen import common_pb2, user_pb2, user_pb2_grpc
from zones.api.methods import Method, build, check, local_view, may, new_id, read, write
from zones.api.quota_view import quota_text

MAX_PASSWORD = 1024
_S = "UserService"


def _check_driver(driver: str) -> None:
    if driver and driver not in AUTH_DRIVERS:
        raise invalid(
            f"unknown authentication driver {driver!r} (known: {', '.join(AUTH_DRIVERS)})"
        )


def _check_secret(driver: str, password: str) -> None:
    if not password:
        raise invalid("password must not be empty")
    if (driver or "core") == "core" and len(password) > MAX_PASSWORD:
        raise invalid(f"password must be at most {MAX_PASSWORD} characters")


def _check_allocate(req: user_pb2.UserAllocateRequest) -> None:
    if not req.name:
        raise invalid("name must not be empty")
    _check_driver(req.driver)
    _check_secret(req.driver, req.password)


def _check_chauth(req: user_pb2.UserChauthRequest) -> None:
    if not req.driver:
        raise invalid("driver must not be empty")
    _check_driver(req.driver)


def _stored_secret(driver: str, password: str) -> str:
    """What the user record keeps: core passwords hashed here, before the log sees them."""
    return hash_password(password) if (driver or "core") == "core" else password


def _allocate_args(req: user_pb2.UserAllocateRequest) -> dict:
    args = {
        "name": req.name,
        "driver": req.driver or "core",
        "password": _stored_secret(req.driver, req.password),
    }
    if req.HasField("gid") and req.gid >= 0:
        args["gid"] = req.gid
    if req.groups:
        args["groups"] = list(req.groups)
    return args


def _chauth_args(req: user_pb2.UserChauthRequest) -> dict:
    args = {"id": req.id, "driver": req.driver}
    if req.password:
        args["password"] = _stored_secret(req.driver, req.password)
    return args


def _passwd(api: Api, request, context, caller: Caller) -> common_pb2.Ack:
    # The secret's form depends on the user's driver (hashed for core): read it here, on
    # the leader (a leader-only call), then the op checks the caller may change it.
    with local_view(api, context) as view:
        user = view.get(schema.USERS, schema.id_key(request.id)) or {}
    secret = _stored_secret(user.get("auth_driver", "core"), request.password)
    args = {"id": request.id, "password": secret}
    api.propose("user.passwd", args, request.request_id, caller, context)
    return common_pb2.Ack()


def _user_message(view, user: dict) -> user_pb2.User:
    group = view.get(schema.GROUPS, schema.id_key(user["gid"])) or {}
    admin_of = [
        g
        for g in user["groups"]
        if user["id"] in (view.get(schema.GROUPS, schema.id_key(g)) or {}).get("admins", ())
    ]
    return user_pb2.User(
        id=user["id"],
        name=user["name"],
        gid=user["gid"],
        gname=group.get("name", ""),
        groups=user["groups"],
        enabled=user["enabled"],
        auth_driver=user["auth_driver"],
        template=user.get("template", ""),
        created_unix_ms=user.get("created", 0),
        admin_of=admin_of,
        quota=quota_text(view, "user", user["id"]),
    )


def _info(api: Api, request, context, caller: Caller) -> user_pb2.User:
    uid = caller.uid if request.id == -1 else request.id
    with local_view(api, context) as view:
        user = view.get(schema.USERS, schema.id_key(uid))
        if user is None:
            raise not_found(f"user {uid} does not exist")
        check(view, caller, user_object(user, "USE"))
        return _user_message(view, user)


def _visible_uids(view, caller: Caller) -> list[int] | None:
    """The users `caller` may see; None for all (oneadmin)."""
    me = view.get(schema.USERS, schema.id_key(caller.uid))
    if me is None:
        return []
    if caller.uid == ADMIN_UID or ADMIN_GID in me["groups"]:
        return None
    uids = {caller.uid}
    for gid in me["groups"]:
        group = view.get(schema.GROUPS, schema.id_key(gid)) or {}
        if caller.uid in group.get("admins", ()):
            prefix = schema.id_key(gid)
            uids.update(schema.key_id(k[8:]) for k, _ in view.iter(schema.GROUP_USERS, prefix))
    return sorted(uids)


def _list(api: Api, request, context, caller: Caller) -> user_pb2.UserList:
    with local_view(api, context) as view:
        uids = _visible_uids(view, caller)
        if uids is None:
            users = [u for _, u in view.iter(schema.USERS)]
        else:
            found = (view.get(schema.USERS, schema.id_key(u)) for u in uids)
            users = [u for u in found if u is not None and may(view, caller, user_object(u, "USE"))]
        if request.HasField("gid"):
            users = [u for u in users if u["gid"] == request.gid]
        return user_pb2.UserList(users=[_user_message(view, u) for u in users])


METHODS = [
    write(
        _S,
        "Allocate",
        "user.allocate",
        _allocate_args,
        new_id,
        common_pb2.IdResponse,
        _check_allocate,
    ),
    write(_S, "Delete", "user.delete", lambda r: {"id": r.id}),
    Method(
        Rpc(
            f"/one.v1.{_S}/Passwd",
            common_pb2.Ack,
            leader_only=True,
            rid=rid_accessors(),
            validate=lambda r: _check_secret("", r.password),
        ),
        _passwd,
    ),
    write(_S, "Chauth", "user.chauth", _chauth_args, validate=_check_chauth),
    write(_S, "Chgrp", "user.chgrp", lambda r: {"id": r.id, "gid": r.other}),
    write(_S, "AddGroup", "user.addgroup", lambda r: {"id": r.id, "gid": r.other}),
    write(_S, "DelGroup", "user.delgroup", lambda r: {"id": r.id, "gid": r.other}),
    write(_S, "Enable", "user.enable", lambda r: {"id": r.id, "enabled": r.enabled}),
    write(
        _S,
        "Update",
        "user.update",
        lambda r: {"id": r.id, "template": r.template, "append": r.append},
    ),
    read(_S, "Info", user_pb2.User, _info),
    read(_S, "List", user_pb2.UserList, _list),
]


def servicer(api: Api) -> user_pb2_grpc.UserServiceServicer:
    return build(user_pb2_grpc.UserServiceServicer, api, METHODS)

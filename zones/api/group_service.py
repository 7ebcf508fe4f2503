"""GroupService: groups as OpenNebula has them (onegroup). Writes are authorized by the
state machine (raftcore.ops.groups); reads here, with the same rules."""

from __future__ import annotations

from raftcore import schema
from raftcore.ops.tenancy import ADMIN_GID, ADMIN_UID, group_object
from zones.api.auth import Caller
from zones.api.core import Api
from zones.api.errors import invalid, not_found
from zones.api.gen import common_pb2, group_pb2, group_pb2_grpc
from zones.api.methods import build, check, local_view, may, new_id, read, write
from zones.api.quota_view import quota_text

_S = "GroupService"


def _check_allocate(req: group_pb2.GroupAllocateRequest) -> None:
    if not req.name:
        raise invalid("name must not be empty")


def _group_message(view, group: dict) -> group_pb2.Group:
    prefix = schema.id_key(group["id"])
    users = [schema.key_id(k[8:]) for k, _ in view.iter(schema.GROUP_USERS, prefix)]
    return group_pb2.Group(
        id=group["id"],
        name=group["name"],
        users=users,
        admins=group["admins"],
        template=group.get("template", ""),
        created_unix_ms=group.get("created", 0),
        quota=quota_text(view, "group", group["id"]),
    )


def _info(api: Api, request, context, caller: Caller) -> group_pb2.Group:
    with local_view(api, context) as view:
        group = view.get(schema.GROUPS, schema.id_key(request.id))
        if group is None:
            raise not_found(f"group {request.id} does not exist")
        check(view, caller, group_object(group, "USE"))
        return _group_message(view, group)


def _list(api: Api, request, context, caller: Caller) -> group_pb2.GroupList:
    with local_view(api, context) as view:
        me = view.get(schema.USERS, schema.id_key(caller.uid)) or {"groups": []}
        if caller.uid == ADMIN_UID or ADMIN_GID in me["groups"]:
            groups = [g for _, g in view.iter(schema.GROUPS)]
        else:
            found = (view.get(schema.GROUPS, schema.id_key(g)) for g in me["groups"])
            groups = [g for g in found if g and may(view, caller, group_object(g, "USE"))]
        return group_pb2.GroupList(groups=[_group_message(view, g) for g in groups])


def _pair(r) -> dict:
    return {"id": r.id, "uid": r.other}


METHODS = [
    write(
        _S,
        "Allocate",
        "group.allocate",
        lambda r: {"name": r.name},
        new_id,
        common_pb2.IdResponse,
        _check_allocate,
    ),
    write(_S, "Delete", "group.delete", lambda r: {"id": r.id}),
    write(_S, "AddAdmin", "group.addadmin", _pair),
    write(_S, "DelAdmin", "group.deladmin", _pair),
    write(
        _S,
        "Update",
        "group.update",
        lambda r: {"id": r.id, "template": r.template, "append": r.append},
    ),
    read(_S, "Info", group_pb2.Group, _info),
    read(_S, "List", group_pb2.GroupList, _list),
]


def servicer(api: Api) -> group_pb2_grpc.GroupServiceServicer:
    return build(group_pb2_grpc.GroupServiceServicer, api, METHODS)
